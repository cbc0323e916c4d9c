//! The same behaviour checks run on the in-process simulator and through `HttpProcessor` against the
//! simulator service on a real socket.

use super::http::redact_digit_runs;
use super::simulator::{brand_of, luhn_ok, validate, year_month_from_days};
use super::*;

fn card(number: &str) -> CardDetails {
    CardDetails {
        number: number.to_owned(),
        exp_month: 12,
        exp_year: 2099,
        cvc: "123".to_owned(),
    }
}

async fn token_for(p: &Processor, number: &str) -> String {
    match p.tokenize(&card(number)).await {
        Ok(Ok(t)) => t.token,
        other => panic!("tokenize {}: {other:?}", card(number)),
    }
}

fn approved_id(outcome: AuthOutcome) -> String {
    match outcome {
        AuthOutcome::Approved { authorization_id } => authorization_id,
        other => panic!("expected approval, got {other:?}"),
    }
}

/// Serves `sim` on 127.0.0.1:<free port> and returns its base URL.
async fn serve(sim: Simulator) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, simulator_router(sim)).await });
    format!("http://{addr}")
}

/// Every test card and every money rule, on whichever processor is given.
async fn exercise(p: &Processor) {
    // Tokenization: brand, last4, no PAN in the token.
    for (number, brand) in [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("3566002020360505", "jcb"),
    ] {
        let Ok(Ok(t)) = p.tokenize(&card(number)).await else {
            panic!("tokenize {number}")
        };
        assert_eq!((t.brand.as_str(), t.last4.as_str()), (brand, &number[12..]));
        assert!(
            t.token.starts_with("tok_") && t.token.len() == 28,
            "{}",
            t.token
        );
        assert!(!t.token.contains(number));
        let id = approved_id(
            p.authorize(&t.token, 1000, "JPY", &format!("ok-{number}"))
                .await
                .expect("authorize"),
        );
        assert!(id.starts_with("auth_"));
    }
    let typed = CardDetails {
        number: "4242 4242-4242 4242".into(),
        exp_month: 1,
        exp_year: 99,
        cvc: "1234".into(),
    };
    let Ok(Ok(t)) = p.tokenize(&typed).await else {
        panic!("typed card")
    };
    assert_eq!((t.last4.as_str(), t.exp_year), ("4242", 2099));

    // Tokenization declines.
    let bad = |number: &str, exp_month, exp_year, cvc: &str| CardDetails {
        number: number.into(),
        exp_month,
        exp_year,
        cvc: cvc.into(),
    };
    for (c, code) in [
        (
            bad("4242424242424241", 12, 2099, "123"),
            DeclineCode::InvalidCard,
        ), // Luhn
        (
            bad("42424242426", 12, 2099, "123"),
            DeclineCode::InvalidCard,
        ), // too short
        (
            bad("4242x24242424242", 12, 2099, "123"),
            DeclineCode::InvalidCard,
        ),
        (
            bad("4242424242424242", 1, 2001, "123"),
            DeclineCode::ExpiredCard,
        ),
        (
            bad("4242424242424242", 13, 2099, "123"),
            DeclineCode::ExpiredCard,
        ),
        (
            bad("4242424242424242", 0, 2099, "123"),
            DeclineCode::ExpiredCard,
        ),
        (
            bad("4242424242424242", 12, 2099, "12"),
            DeclineCode::InvalidCard,
        ),
        (
            bad("4242424242424242", 12, 2099, "12a"),
            DeclineCode::InvalidCard,
        ),
    ] {
        assert_eq!(p.tokenize(&c).await.expect("answer"), Err(code), "{c:?}");
    }

    // Authorization declines and the processor error.
    for (number, code) in [
        ("4000000000000002", DeclineCode::CardDeclined),
        ("4000000000009995", DeclineCode::InsufficientFunds),
        ("4000000000000069", DeclineCode::ExpiredCard),
    ] {
        let tok = token_for(p, number).await;
        let reference = format!("decl-{number}");
        let outcome = p
            .authorize(&tok, 500, "JPY", &reference)
            .await
            .expect("answer");
        assert_eq!(outcome, AuthOutcome::Declined { code });
        assert_eq!(p.lookup(&reference).await.expect("lookup"), Some(outcome));
    }
    let tok = token_for(p, "4000000000000119").await;
    assert!(matches!(
        p.authorize(&tok, 500, "JPY", "fail-1").await,
        Err(ProcessorError::Unavailable(_))
    ));
    assert_eq!(p.lookup("fail-1").await.expect("lookup"), None);
    assert_eq!(p.lookup("never-sent").await.expect("lookup"), None);
    let outcome = p
        .authorize("tok_unknown", 500, "JPY", "unknown-tok")
        .await
        .expect("answer");
    assert_eq!(
        outcome,
        AuthOutcome::Declined {
            code: DeclineCode::InvalidCard
        }
    );

    // The slow card answers, late (slow_ms is small in these runs).
    let tok = token_for(p, "4000000000006975").await;
    approved_id(
        p.authorize(&tok, 500, "JPY", "slow-1")
            .await
            .expect("slow card"),
    );

    // Idempotent authorize; a reference reused with other parameters is rejected.
    let tok = token_for(p, "4242424242424242").await;
    let first = p
        .authorize(&tok, 5000, "JPY", "pay-1")
        .await
        .expect("authorize");
    assert_eq!(
        p.authorize(&tok, 5000, "JPY", "pay-1")
            .await
            .expect("replay"),
        first
    );
    assert!(matches!(
        p.authorize(&tok, 5001, "JPY", "pay-1").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.authorize(&tok, 0, "JPY", "pay-0").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.authorize(&tok, -5, "JPY", "pay-neg").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.authorize(&tok, 5, "yen", "pay-cur").await,
        Err(ProcessorError::Rejected(_))
    ));
    let auth = approved_id(first);

    // Capture ≤ authorized, once; refunds ≤ captured, idempotent per reference.
    assert!(matches!(
        p.capture(&auth, 5001).await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.capture(&auth, 0).await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.refund(&auth, 100, "early").await,
        Err(ProcessorError::Rejected(_))
    ));
    p.capture(&auth, 4000).await.expect("capture");
    p.capture(&auth, 4000).await.expect("retried capture");
    assert!(matches!(
        p.capture(&auth, 1000).await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.void(&auth).await,
        Err(ProcessorError::Rejected(_))
    ));
    p.refund(&auth, 3000, "r-1").await.expect("refund");
    p.refund(&auth, 3000, "r-1")
        .await
        .expect("retried refund is not a second refund");
    assert!(matches!(
        p.refund(&auth, 2000, "r-1").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.refund(&auth, 1001, "r-2").await,
        Err(ProcessorError::Rejected(_))
    ));
    p.refund(&auth, 1000, "r-3")
        .await
        .expect("the remaining 1000");
    assert!(matches!(
        p.refund(&auth, 1, "r-4").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.refund(&auth, i64::MAX, "r-5").await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.capture("auth_nope", 1).await,
        Err(ProcessorError::Rejected(_))
    ));

    // Void: idempotent, and a voided authorization cannot be captured.
    let auth = approved_id(
        p.authorize(&tok, 700, "JPY", "pay-2")
            .await
            .expect("authorize"),
    );
    p.void(&auth).await.expect("void");
    p.void(&auth).await.expect("void again");
    assert!(matches!(
        p.capture(&auth, 700).await,
        Err(ProcessorError::Rejected(_))
    ));
    assert!(matches!(
        p.void("auth_nope").await,
        Err(ProcessorError::Rejected(_))
    ));
}

#[tokio::test]
async fn simulator_in_process() {
    let sim = Simulator::new(30);
    exercise(&Processor::Simulator(sim.clone())).await;

    // The slow card really stalls before answering.
    let p = Processor::Simulator(sim);
    let tok = token_for(&p, "4000000000006975").await;
    let started = std::time::Instant::now();
    approved_id(p.authorize(&tok, 1, "JPY", "slow-2").await.expect("slow"));
    assert!(started.elapsed() >= std::time::Duration::from_millis(30));
}

#[tokio::test]
async fn simulator_over_http() {
    let base = serve(Simulator::new(30)).await;
    let p = Processor::Http(HttpProcessor::new(&base, 5_000).expect("client"));
    exercise(&p).await;
}

#[tokio::test]
async fn http_timeout_then_lookup_and_retry_do_not_authorize_twice() {
    let sim = Simulator::new(3_000);
    let base = serve(sim.clone()).await;
    let p = Processor::Http(HttpProcessor::new(&base, 300).expect("client"));
    let tok = token_for(&p, "4000000000006975").await;

    let first = p.authorize(&tok, 2500, "JPY", "slow-ref").await;
    assert!(matches!(first, Err(ProcessorError::Timeout)), "{first:?}");
    let seen = p
        .lookup("slow-ref")
        .await
        .expect("lookup")
        .expect("the processor saw it");
    let id = approved_id(seen.clone());
    let retried = p
        .authorize(&tok, 2500, "JPY", "slow-ref")
        .await
        .expect("retry answers at once");
    assert_eq!(retried, seen);
    assert_eq!(sim.authorization_count(), 1);
    p.capture(&id, 2500)
        .await
        .expect("capture the one authorization");
}

#[tokio::test]
async fn http_processor_not_listening_is_unavailable() {
    // Take a free port, then close it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let p = Processor::Http(HttpProcessor::new(&format!("http://{addr}/"), 2_000).expect("client"));
    let err = p
        .tokenize(&card("4242424242424242"))
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, ProcessorError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("4242424242424242"));
    assert!(matches!(
        p.lookup("x").await,
        Err(ProcessorError::Unavailable(_))
    ));
}

#[tokio::test]
async fn http_service_rejects_bad_bodies_with_json_errors() {
    let base = serve(Simulator::new(0)).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let post = |path: &str, body: serde_json::Value| {
        client.post(format!("{base}{path}")).json(&body).send()
    };

    // Unknown field.
    let r = post("/lookup", serde_json::json!({"reference": "a", "extra": 1}))
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // A mistyped card number is not echoed back.
    let r = post("/tokenize", serde_json::json!({"number": 4242424242424242_u64, "exp_month": 1, "exp_year": 2099, "cvc": "123"}))
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert!(!r.text().await.expect("text").contains("4242424242424242"));

    // A rule violation is a 4xx with a JSON error; the failing card is a 500.
    let r = post(
        "/capture",
        serde_json::json!({"authorization_id": "auth_nope", "amount_minor": 1}),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rejected");

    let r = post("/tokenize", serde_json::json!({"number": "4000000000000119", "exp_month": 1, "exp_year": 2099, "cvc": "123"}))
        .await
        .expect("send");
    let body: serde_json::Value = r.json().await.expect("json");
    let token = body["tokenized"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let r = post(
        "/authorize",
        serde_json::json!({"token": token, "amount_minor": 1, "currency": "JPY", "reference": "f"}),
    )
    .await
    .expect("send");
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "processor_error");

    // Non-JSON bodies.
    let r = client
        .post(format!("{base}/void"))
        .body("{")
        .send()
        .await
        .expect("send");
    assert!(r.status().is_client_error());
}

#[test]
fn http_processor_rejects_unusable_urls() {
    assert!(HttpProcessor::new("not a url", 100).is_err());
    assert!(HttpProcessor::new("https://processor.example/", 100).is_err());
    assert!(HttpProcessor::new("http://processor.example/api", 100).is_ok());
}

#[test]
fn card_details_are_redacted() {
    let c = card("4242424242424242");
    for shown in [format!("{c:?}"), format!("{c}"), format!("{c:#?}")] {
        assert!(!shown.contains("4242424242424242"), "{shown}");
        assert!(!shown.contains("123"), "{shown}");
        assert!(shown.contains("****4242"), "{shown}");
    }
    assert_eq!(format!("{c:?}"), "CardDetails { number: ****4242, .. }");
    assert_eq!(
        format!("{:?}", card("4242 42")),
        "CardDetails { number: ****, .. }"
    );
}

#[test]
fn remote_error_messages_lose_card_numbers() {
    assert_eq!(
        redact_digit_runs("bad card 4242 4242-4242 4242 here"),
        "bad card [redacted] here"
    );
    assert_eq!(
        redact_digit_runs("bad card 4242424242424242"),
        "bad card [redacted]"
    );
    assert_eq!(
        redact_digit_runs("capture 5000 exceeds 4000"),
        "capture 5000 exceeds 4000"
    );
}

#[test]
fn test_cards_are_valid_and_card_rules_hold() {
    for (number, _) in TEST_CARDS {
        assert!(luhn_ok(number), "{number}");
        assert!(validate(&card(number), (2026, 1)).is_ok(), "{number}");
    }
    assert_eq!(TEST_CARDS.len(), 8);
    assert!(!luhn_ok("4242424242424241"));
    for (pan, brand) in [
        ("4111", "visa"),
        ("5105", "mastercard"),
        ("2221", "mastercard"),
        ("2720", "mastercard"),
        ("2721", "unknown"),
        ("3400", "amex"),
        ("3700", "amex"),
        ("3530", "jcb"),
        ("6011", "unknown"),
    ] {
        assert_eq!(brand_of(pan), brand, "{pan}");
    }
    // Valid through the end of the expiry month.
    let exp = |m, y| CardDetails {
        exp_month: m,
        exp_year: y,
        ..card("4242424242424242")
    };
    assert!(validate(&exp(3, 2026), (2026, 3)).is_ok());
    assert_eq!(
        validate(&exp(2, 2026), (2026, 3)),
        Err(DeclineCode::ExpiredCard)
    );
    assert_eq!(
        validate(&exp(12, 25), (2026, 3)),
        Err(DeclineCode::ExpiredCard)
    );
    assert!(validate(&exp(1, 27), (2026, 3)).is_ok());
}

#[test]
fn calendar_months_from_days() {
    assert_eq!(year_month_from_days(0), (1970, 1));
    assert_eq!(year_month_from_days(19_782), (2024, 2)); // 2024-02-29
    assert_eq!(year_month_from_days(19_783), (2024, 3)); // 2024-03-01
    assert_eq!(year_month_from_days(20_818), (2026, 12)); // 2026-12-31
    assert_eq!(year_month_from_days(20_819), (2027, 1));
}

#[test]
fn decline_codes_match_their_wire_names() {
    for code in [
        DeclineCode::CardDeclined,
        DeclineCode::InsufficientFunds,
        DeclineCode::ExpiredCard,
        DeclineCode::InvalidCard,
    ] {
        assert_eq!(
            serde_json::to_value(code).expect("serialize"),
            code.as_str()
        );
    }
}

#[tokio::test]
async fn simulator_debug_does_not_show_cards() {
    let sim = Simulator::new(0);
    let p = Processor::Simulator(sim.clone());
    token_for(&p, "4242424242424242").await;
    assert!(!format!("{p:?} {sim:?}").contains("4242424242424242"));
}
