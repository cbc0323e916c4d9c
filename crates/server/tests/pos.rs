//! POS payments over HTTP on both backends: offline and online codes, one-time use, expiry,
//! malformed codes, declines, idempotency, cancel, refunds and payments that wait for the
//! customer's confirmation.

mod common;
use common::*;
use serde_json::json;

/// Full-width digits (U+FF10..U+FF19) for every ASCII digit.
fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| {
            c.to_digit(10)
                .map_or(c, |d| char::from_u32(0xFF10 + d).unwrap_or(c))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_online_codes_are_accepted() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("aiko@example.com", 10_000).await;
        let (store, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);

        // Offline: the phone makes the code from its key, the server has never seen it.
        let code = app.offline_code(&c, 0);
        assert_eq!(code.len(), 20, "{l}");
        let p = app.pay(&term, &code, 1_200, "k1").await;
        assert_eq!(
            (p.status, p.body["status"].as_str()),
            (201, Some("succeeded")),
            "{l}: {}",
            p.text
        );
        assert_eq!(p.body["amount"], 1_200, "{l}");
        assert_eq!(p.body["currency"], "JPY", "{l}");
        assert_eq!(p.body["funding"], "wallet", "{l}");
        assert_eq!(p.body["store_id"], store.as_str(), "{l}");
        assert_eq!(p.body["decline_code"], serde_json::Value::Null, "{l}");
        assert_eq!(app.balances(&c).await, (8_800, 0, 8_800), "{l}");

        // Online: the next code of the same step is sub-index 1 (0 was used).
        app.clock.advance_ms(1_000);
        let online = app.online_code(&c).await;
        assert_eq!(&online[11..12], "1", "{l}: sub-index of {online}");
        assert_eq!(
            online,
            app.offline_code(&c, 1),
            "{l}: online and offline codes agree"
        );
        let p2 = app.pay(&term, &online, 800, "k2").await;
        assert_eq!(
            (p2.status, p2.body["status"].as_str()),
            (201, Some("succeeded")),
            "{l}: {}",
            p2.text
        );
        assert_eq!(app.balance(&c).await, 8_000, "{l}");

        // The terminal can read both payments back.
        for (p, amount) in [(&p, 1_200), (&p2, 800)] {
            let g = app.get_payment(&term, &id_of(p)).await;
            assert_eq!(g.status, 200, "{l}: {}", g.text);
            assert_eq!(g.body["id"], p.body["id"], "{l}");
            assert_eq!(g.body["status"], "succeeded", "{l}");
            assert_eq!(g.body["amount"], amount, "{l}");
            assert_eq!(g.body["refunded"], 0, "{l}");
        }
        let g = app.get_payment(&term, "pay_000000000000000000000000").await;
        assert_error(l, &g, 404, "invalid_request_error", "resource_missing");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_is_spent_even_when_declined() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("bunta@example.com", 1_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);

        let code = app.offline_code(&c, 0);
        let p = app.pay(&term, &code, 5_000, "k1").await;
        assert_eq!(p.status, 201, "{l}: {}", p.text);
        assert_eq!(
            (p.body["status"].as_str(), p.body["decline_code"].as_str()),
            (Some("declined"), Some("insufficient_funds")),
            "{l}: {}",
            p.text
        );
        assert_eq!(
            app.balances(&c).await,
            (1_000, 0, 1_000),
            "{l}: wallet unchanged"
        );

        // Same code again, now for an amount the wallet could pay: the code is gone.
        app.clock.advance_ms(1_000);
        let again = app.pay(&term, &code, 500, "k2").await;
        assert_eq!(again.status, 201, "{l}: {}", again.text);
        assert_eq!(
            (
                again.body["status"].as_str(),
                again.body["decline_code"].as_str()
            ),
            (Some("declined"), Some("invalid_code")),
            "{l}: {}",
            again.text
        );
        assert_ne!(again.body["id"], p.body["id"], "{l}");
        assert_eq!(app.balance(&c).await, 1_000, "{l}");

        // A succeeded code replayed: declined, and charged once only.
        app.clock.advance_ms(1_000);
        let code1 = app.offline_code(&c, 1);
        let ok = app.pay(&term, &code1, 300, "k3").await;
        assert_eq!(ok.body["status"], "succeeded", "{l}: {}", ok.text);
        app.clock.advance_ms(1_000);
        let replay = app.pay(&term, &code1, 300, "k4").await;
        assert_eq!(
            (replay.status, replay.body["decline_code"].as_str()),
            (201, Some("invalid_code")),
            "{l}: {}",
            replay.text
        );
        assert_eq!(app.balance(&c).await, 700, "{l}");
        // Both declines are recorded as payments; the invalid-code ones carry no customer.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM payments WHERE status = 'declined'")
                .await,
            3,
            "{l}"
        );
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM payments WHERE status = 'declined' AND customer_id IS NULL"
            )
            .await,
            2,
            "{l}"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_code_kills_older_unused_ones() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("chie@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);

        // Within one step: d=0 and d=1 shown, d=1 used, then d=0 is dead.
        let old = app.offline_code(&c, 0);
        let new = app.offline_code(&c, 1);
        assert_ne!(old, new, "{l}");
        let p = app.pay(&term, &new, 100, "k1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &old, 100, "k2").await;
        assert_eq!(
            (p.status, p.body["decline_code"].as_str()),
            (201, Some("invalid_code")),
            "{l}: {}",
            p.text
        );

        // Across steps: a code of step s, still inside its 60 s, dies once a code of step s+1
        // is used.
        app.clock.advance_ms(1_000);
        let older = app.offline_code(&c, 2);
        app.clock.advance_ms(30_000);
        let newer = app.online_code(&c).await;
        assert_eq!(&newer[11..12], "0", "{l}: first code of a new step");
        let p = app.pay(&term, &newer, 100, "k3").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &older, 100, "k4").await;
        assert_eq!(
            (p.status, p.body["decline_code"].as_str()),
            (201, Some("invalid_code")),
            "{l}: {}",
            p.text
        );
        assert_eq!(app.balance(&c).await, 9_800, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_lives_at_most_sixty_seconds() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("daiki@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;

        // Made at the start of a step and used 55 s later: still valid (own step + next).
        app.clock.advance_ms(1_000);
        let code = app.offline_code(&c, 0);
        app.clock.advance_ms(55_000);
        let p = app.pay(&term, &code, 100, "k1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);

        // Made now, used 61 s later: expired.
        app.clock.advance_ms(1_000);
        let code = app.online_code(&c).await;
        app.clock.advance_ms(61_000);
        let p = app.pay(&term, &code, 100, "k2").await;
        assert_eq!(
            (
                p.status,
                p.body["status"].as_str(),
                p.body["decline_code"].as_str()
            ),
            (201, Some("declined"), Some("invalid_code")),
            "{l}: {}",
            p.text
        );
        assert_eq!(app.balance(&c).await, 9_900, "{l}");

        // A code from the future (next step) is not accepted either.
        let future = konbini_core::paycode::generate(
            &c.code_key,
            c.slot,
            konbini_core::paycode::step_of(app.clock_ms()) + 1,
            0,
        )
        .to_string();
        let p = app.pay(&term, &future, 100, "k3").await;
        assert_eq!(p.body["decline_code"], "invalid_code", "{l}: {}", p.text);
        assert_eq!(app.balance(&c).await, 9_900, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_codes_are_refused_before_any_lookup() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("eri@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let good = app.offline_code(&c, 0);
        let last = good.as_bytes()[19] - b'0';
        let bad_check = format!("{}{}", &good[..19], (last + 1) % 10);
        let mut wrong_brand = format!("77{}", &good[2..19]);
        let digits: Vec<u8> = wrong_brand.bytes().map(|b| b - b'0').collect();
        wrong_brand.push(char::from(
            b'0' + konbini_core::paycode::luhn_check_digit(&digits),
        ));
        let bad = [
            bad_check,
            good[..19].to_string(),
            format!("{good}0"),
            full_width(&good),
            format!("{} {}", &good[..10], &good[10..]),
            format!("{}\u{200b}{}", &good[..10], &good[10..]),
            format!("\u{202e}{good}"),
            format!("+{}", &good[1..]),
            String::new(),
            wrong_brand,
        ];
        for (i, code) in bad.iter().enumerate() {
            // Every attempt reuses the key "k": a refused request must not claim it.
            let r = app.pay(&term, code, 100, "k").await;
            assert_error_param(
                &format!("{l} #{i} {code:?}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_code",
                "code",
            );
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM payments").await,
            0,
            "{l}: no payment recorded"
        );
        // The genuine code was not burnt by its mistyped versions, and the key is still free.
        let p = app.pay(&term, &good, 100, "k").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(app.balance(&c).await, 9_900, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_funds_declines_and_leaves_the_wallet_alone() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("fumi@example.com", 2_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 2_001, "k1").await;
        assert_eq!(
            (
                p.status,
                p.body["status"].as_str(),
                p.body["decline_code"].as_str()
            ),
            (201, Some("declined"), Some("insufficient_funds")),
            "{l}: {}",
            p.text
        );
        assert_eq!(app.balances(&c).await, (2_000, 0, 2_000), "{l}");
        let g = app.get_payment(&term, &id_of(&p)).await;
        assert_eq!(
            (g.body["status"].as_str(), g.body["decline_code"].as_str()),
            (Some("declined"), Some("insufficient_funds")),
            "{l}: {}",
            g.text
        );
        // Refunding or canceling a declined payment is refused.
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{}/refunds", id_of(&p)),
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 1})),
            )
            .await;
        assert_error(
            l,
            &r,
            409,
            "invalid_request_error",
            "payment_not_refundable",
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{}/cancel", id_of(&p)),
                Some(&term),
                Some("c1"),
                None,
            )
            .await;
        assert_error(
            l,
            &r,
            409,
            "invalid_request_error",
            "payment_not_cancelable",
        );
        assert_eq!(app.balance(&c).await, 2_000, "{l}");

        // Exactly the balance goes through, to zero; then one more yen does not.
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 1), 2_000, "k2").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(app.balances(&c).await, (0, 0, 0), "{l}");
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 2), 1, "k3").await;
        assert_eq!(
            p.body["decline_code"], "insufficient_funds",
            "{l}: {}",
            p.text
        );
        assert_eq!(app.balance(&c).await, 0, "{l}");
        // The customer's history shows both declines and the payment.
        let h = app
            .send(
                "GET",
                "/v1/transactions?limit=10",
                Some(&c.token),
                None,
                None,
            )
            .await;
        let rows: Vec<(&str, &str, i64)> = h.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .take(3)
            .map(|x| {
                (
                    x["type"].as_str().unwrap_or(""),
                    x["status"].as_str().unwrap_or(""),
                    x["amount"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("payment", "declined", -1),
                ("payment", "succeeded", -2_000),
                ("payment", "declined", -2_001)
            ],
            "{l}: {}",
            h.text
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_idempotency() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("goro@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        let (_, term2) = app.store_with_terminal("st_2").await;
        app.clock.advance_ms(1_000);
        let code = app.offline_code(&c, 0);
        let first = app.pay(&term, &code, 1_000, "same").await;
        assert_eq!(first.body["status"], "succeeded", "{l}: {}", first.text);
        app.clock.advance_ms(1_000);
        // A retry with the same key and body: the same answer, byte for byte; charged once.
        let replay = app.pay(&term, &code, 1_000, "same").await;
        assert_eq!((replay.status, &replay.text), (201, &first.text), "{l}");
        assert_eq!(app.balance(&c).await, 9_000, "{l}");

        // Same key, different body: refused, and the new code is not spent by it.
        let code1 = app.offline_code(&c, 1);
        let r = app.pay(&term, &code1, 1_000, "same").await;
        assert_error(l, &r, 422, "idempotency_error", "idempotency_key_reused");
        let r = app.pay(&term, &code, 999, "same").await;
        assert_error(l, &r, 422, "idempotency_error", "idempotency_key_reused");
        assert_eq!(app.balance(&c).await, 9_000, "{l}");
        let ok = app.pay(&term, &code1, 1_000, "other").await;
        assert_eq!(ok.body["status"], "succeeded", "{l}: {}", ok.text);
        assert_ne!(ok.body["id"], first.body["id"], "{l}");

        // Keys are per terminal: another terminal's "same" is a new payment.
        app.clock.advance_ms(1_000);
        let t2 = app
            .pay(&term2, &app.offline_code(&c, 2), 1_000, "same")
            .await;
        assert_eq!(t2.body["status"], "succeeded", "{l}: {}", t2.text);
        assert_ne!(t2.body["id"], first.body["id"], "{l}");
        assert_eq!(app.balance(&c).await, 7_000, "{l}");

        // No key, or an unusable one: refused before anything happens.
        let code3 = app.offline_code(&c, 3);
        let r = app
            .send(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                None,
                Some(payment_body(&code3, 100, "o")),
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "idempotency_key_missing",
        );
        for bad in [String::new(), "has space".into(), "x".repeat(256)] {
            let r = app
                .send(
                    "POST",
                    "/v1/pos/payments",
                    Some(&term),
                    Some(bad.as_str()),
                    Some(payment_body(&code3, 100, "o")),
                )
                .await;
            assert_error(
                &format!("{l} key {bad:?}"),
                &r,
                400,
                "invalid_request_error",
                "idempotency_key_invalid",
            );
        }
        let ok = app
            .send(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some(&"k".repeat(255)),
                Some(payment_body(&code3, 100, "o")),
            )
            .await;
        assert_eq!(ok.body["status"], "succeeded", "{l}: {}", ok.text);
        assert_eq!(app.balance(&c).await, 6_900, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reverses_a_payment_once() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("hana@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 1_500, "k1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        let id = id_of(&p);
        assert_eq!(app.balance(&c).await, 8_500, "{l}");

        app.clock.advance_ms(1_000);
        let cancel = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&term),
                Some("c1"),
                None,
            )
            .await;
        assert_eq!(
            (cancel.status, cancel.body["status"].as_str()),
            (200, Some("canceled")),
            "{l}: {}",
            cancel.text
        );
        assert_eq!(
            app.balances(&c).await,
            (10_000, 0, 10_000),
            "{l}: balance restored"
        );
        // Same key: the stored answer; another key: the payment is already canceled.
        let again = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&term),
                Some("c1"),
                None,
            )
            .await;
        assert_eq!((again.status, &again.text), (200, &cancel.text), "{l}");
        let other = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&term),
                Some("c2"),
                None,
            )
            .await;
        assert_error(
            l,
            &other,
            409,
            "invalid_request_error",
            "payment_not_cancelable",
        );
        assert_eq!(app.balance(&c).await, 10_000, "{l}: not reversed twice");
        let g = app.get_payment(&term, &id).await;
        assert_eq!(g.body["status"], "canceled", "{l}");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 100})),
            )
            .await;
        assert_error(
            l,
            &r,
            409,
            "invalid_request_error",
            "payment_not_refundable",
        );
        let r = app
            .send(
                "POST",
                "/v1/pos/payments/pay_nope/cancel",
                Some(&term),
                Some("c3"),
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&term),
                None,
                None,
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "idempotency_key_missing",
        );

        // A partly refunded payment cannot be canceled (refund the rest instead).
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 1), 1_000, "k2").await;
        let id2 = id_of(&p);
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id2}/refunds"),
                Some(&term),
                Some("r2"),
                Some(json!({"amount": 400})),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id2}/cancel"),
                Some(&term),
                Some("c4"),
                None,
            )
            .await;
        assert_error(
            l,
            &r,
            409,
            "invalid_request_error",
            "payment_not_cancelable",
        );
        assert_eq!(app.balance(&c).await, 9_400, "{l}");
        let h = app
            .send(
                "GET",
                "/v1/transactions?limit=10",
                Some(&c.token),
                None,
                None,
            )
            .await;
        let first_payment = h.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|x| x["id"] == id.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(first_payment["status"], "canceled", "{l}: {}", h.text);
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_partial_full_over_and_idempotent() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("isamu@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 3_000, "k1").await;
        let id = id_of(&p);
        let url = format!("/v1/pos/payments/{id}/refunds");
        assert_eq!(app.balance(&c).await, 7_000, "{l}");

        app.clock.advance_ms(1_000);
        let r1 = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 1_000})),
            )
            .await;
        assert_eq!(
            (
                r1.status,
                r1.body["amount"].as_i64(),
                r1.body["payment_id"].as_str()
            ),
            (201, Some(1_000), Some(id.as_str())),
            "{l}: {}",
            r1.text
        );
        assert_eq!(app.balance(&c).await, 8_000, "{l}");
        // Replay: same answer, no second refund.
        let again = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 1_000})),
            )
            .await;
        assert_eq!((again.status, &again.text), (201, &r1.text), "{l}");
        assert_eq!(app.balance(&c).await, 8_000, "{l}: refunded once");
        let r = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 500})),
            )
            .await;
        assert_error(l, &r, 422, "idempotency_error", "idempotency_key_reused");

        // Over-refund.
        let r = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r2"),
                Some(json!({"amount": 2_001})),
            )
            .await;
        assert_error_param(
            l,
            &r,
            422,
            "invalid_request_error",
            "refund_exceeds_payment",
            "amount",
        );
        for (k, bad) in [("r3", json!({"amount": 0})), ("r4", json!({"amount": -5}))] {
            let r = app
                .send("POST", &url, Some(&term), Some(k), Some(bad))
                .await;
            assert_error_param(
                l,
                &r,
                400,
                "invalid_request_error",
                "invalid_amount",
                "amount",
            );
        }
        let r = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r5"),
                Some(json!({"amount": 5, "reason": "x"})),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        assert_eq!(app.balance(&c).await, 8_000, "{l}");

        // No body: refund whatever remains (2,000).
        app.clock.advance_ms(1_000);
        let rest = app.send("POST", &url, Some(&term), Some("r6"), None).await;
        assert_eq!(
            (rest.status, rest.body["amount"].as_i64()),
            (201, Some(2_000)),
            "{l}: {}",
            rest.text
        );
        assert_eq!(app.balance(&c).await, 10_000, "{l}");
        let g = app.get_payment(&term, &id).await;
        assert_eq!(
            (g.body["refunded"].as_i64(), g.body["status"].as_str()),
            (Some(3_000), Some("succeeded")),
            "{l}: {}",
            g.text
        );
        // Nothing left: explicit or implicit amounts are refused the same way.
        let r = app
            .send(
                "POST",
                &url,
                Some(&term),
                Some("r7"),
                Some(json!({"amount": 1})),
            )
            .await;
        assert_error_param(
            l,
            &r,
            422,
            "invalid_request_error",
            "refund_exceeds_payment",
            "amount",
        );
        let r = app.send("POST", &url, Some(&term), Some("r8"), None).await;
        assert_error_param(
            l,
            &r,
            422,
            "invalid_request_error",
            "refund_exceeds_payment",
            "amount",
        );
        assert_eq!(app.balance(&c).await, 10_000, "{l}");
        let r = app
            .send(
                "POST",
                "/v1/pos/payments/pay_nope/refunds",
                Some(&term),
                Some("r9"),
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let h = app
            .send(
                "GET",
                "/v1/transactions?limit=3",
                Some(&c.token),
                None,
                None,
            )
            .await;
        let kinds: Vec<(&str, i64)> = h.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| {
                (
                    x["type"].as_str().unwrap_or(""),
                    x["amount"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [("refund", 2_000), ("refund", 1_000), ("payment", -3_000)],
            "{l}: {}",
            h.text
        );
        app.ledger_ok().await;
    }
}

/// Payments at or above 3,000 wait for the customer (the default is 50,000, above the
/// balance limit's comfortable range for a test).
async fn confirm_apps() -> Vec<TestApp> {
    apps_with(|c| c.limits.confirm_at_or_above_minor = 3_000).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_confirmation_then_confirmed() {
    for app in confirm_apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("jun@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let now = app.clock_ms();
        let p = app.pay(&term, &app.offline_code(&c, 0), 5_000, "k1").await;
        assert_eq!(
            (p.status, p.body["status"].as_str()),
            (201, Some("pending_confirmation")),
            "{l}: {}",
            p.text
        );
        assert_eq!(p.body["expires_at_ms"].as_i64(), Some(now + 60_000), "{l}");
        let id = id_of(&p);
        assert_eq!(
            app.balances(&c).await,
            (10_000, 5_000, 5_000),
            "{l}: held, not moved"
        );

        // The held money cannot be spent twice: a second large payment is short...
        app.clock.advance_ms(1_000);
        let p2 = app.pay(&term, &app.offline_code(&c, 1), 6_000, "k2").await;
        assert_eq!(
            p2.body["decline_code"], "insufficient_funds",
            "{l}: {}",
            p2.text
        );
        // ...and so is a small one above what is available.
        app.clock.advance_ms(1_000);
        let p3 = app.pay(&term, &app.offline_code(&c, 2), 2_999, "k3").await;
        assert_eq!(p3.body["status"], "succeeded", "{l}: {}", p3.text);
        app.clock.advance_ms(1_000);
        let p4 = app.pay(&term, &app.offline_code(&c, 3), 2_002, "k4").await;
        assert_eq!(
            p4.body["decline_code"], "insufficient_funds",
            "{l}: {}",
            p4.text
        );
        assert_eq!(app.balances(&c).await, (7_001, 5_000, 2_001), "{l}");

        // The customer sees it, with its basket, and confirms.
        let pending = app
            .send("GET", "/v1/payments/pending", Some(&c.token), None, None)
            .await;
        assert_eq!(pending.status, 200, "{l}: {}", pending.text);
        let data = pending.body["data"].as_array().expect("data");
        assert_eq!(data.len(), 1, "{l}: {}", pending.text);
        assert_eq!(
            (data[0]["id"].as_str(), data[0]["amount"].as_i64()),
            (Some(id.as_str()), Some(5_000)),
            "{l}"
        );
        assert_eq!(
            data[0]["basket"][0]["unit_price"], 5_000,
            "{l}: {}",
            pending.text
        );
        let g = app.get_payment(&term, &id).await;
        assert_eq!(g.body["status"], "pending_confirmation", "{l}");

        let conf = app
            .send(
                "POST",
                &format!("/v1/payments/{id}/confirm"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_eq!(
            (conf.status, conf.body["status"].as_str()),
            (200, Some("succeeded")),
            "{l}: {}",
            conf.text
        );
        assert_eq!(
            app.balances(&c).await,
            (2_001, 0, 2_001),
            "{l}: money moved, hold gone"
        );
        let g = app.get_payment(&term, &id).await;
        assert_eq!(g.body["status"], "succeeded", "{l}");
        let pending = app
            .send("GET", "/v1/payments/pending", Some(&c.token), None, None)
            .await;
        assert_eq!(
            pending.body["data"].as_array().map(Vec::len),
            Some(0),
            "{l}: {}",
            pending.text
        );
        for action in ["confirm", "reject"] {
            let r = app
                .send(
                    "POST",
                    &format!("/v1/payments/{id}/{action}"),
                    Some(&c.token),
                    None,
                    None,
                )
                .await;
            assert_error(l, &r, 409, "invalid_request_error", "payment_not_pending");
        }
        assert_eq!(app.balance(&c).await, 2_001, "{l}: confirmed once");
        // A confirmed payment refunds like any other.
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("r1"),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(app.balance(&c).await, 7_001, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_confirmation_rejected_or_canceled() {
    for app in confirm_apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("kana@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 4_000, "k1").await;
        assert_eq!(p.body["status"], "pending_confirmation", "{l}: {}", p.text);
        let id = id_of(&p);
        assert_eq!(app.balances(&c).await, (10_000, 4_000, 6_000), "{l}");
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id}/reject"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_eq!(
            (
                r.status,
                r.body["status"].as_str(),
                r.body["decline_code"].as_str()
            ),
            (200, Some("declined"), Some("rejected_by_customer")),
            "{l}: {}",
            r.text
        );
        assert_eq!(
            app.balances(&c).await,
            (10_000, 0, 10_000),
            "{l}: hold released"
        );
        let g = app.get_payment(&term, &id).await;
        assert_eq!(
            (g.body["status"].as_str(), g.body["decline_code"].as_str()),
            (Some("declined"), Some("rejected_by_customer")),
            "{l}: {}",
            g.text
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id}/confirm"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "payment_not_pending");
        assert_eq!(app.balance(&c).await, 10_000, "{l}");

        // The till gives up on a pending payment: canceled, hold released.
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 1), 4_000, "k2").await;
        let id2 = id_of(&p);
        assert_eq!(app.balances(&c).await, (10_000, 4_000, 6_000), "{l}");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id2}/cancel"),
                Some(&term),
                Some("c1"),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("canceled")),
            "{l}: {}",
            r.text
        );
        assert_eq!(app.balances(&c).await, (10_000, 0, 10_000), "{l}");
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id2}/confirm"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "payment_not_pending");
        assert_eq!(app.balance(&c).await, 10_000, "{l}");

        // Large and short: declined at once, nothing held.
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 2), 10_001, "k3").await;
        assert_eq!(
            (p.body["status"].as_str(), p.body["decline_code"].as_str()),
            (Some("declined"), Some("insufficient_funds")),
            "{l}: {}",
            p.text
        );
        assert_eq!(app.balances(&c).await, (10_000, 0, 10_000), "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_confirmation_expires() {
    for app in confirm_apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("ken@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 5_000, "k1").await;
        assert_eq!(p.body["status"], "pending_confirmation", "{l}: {}", p.text);
        let id = id_of(&p);
        // Nobody answers for 61 s: the POS poll sees it expired and the money is free again.
        app.clock.advance_ms(61_000);
        let g = app.get_payment(&term, &id).await;
        assert_eq!(
            (
                g.status,
                g.body["status"].as_str(),
                g.body["decline_code"].as_str()
            ),
            (200, Some("expired"), Some("confirmation_timeout")),
            "{l}: {}",
            g.text
        );
        assert_eq!(app.balances(&c).await, (10_000, 0, 10_000), "{l}");
        let pending = app
            .send("GET", "/v1/payments/pending", Some(&c.token), None, None)
            .await;
        assert_eq!(
            pending.body["data"].as_array().map(Vec::len),
            Some(0),
            "{l}: {}",
            pending.text
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id}/confirm"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "payment_not_pending");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&term),
                Some("c1"),
                None,
            )
            .await;
        assert_error(
            l,
            &r,
            409,
            "invalid_request_error",
            "payment_not_cancelable",
        );

        // The customer confirms too late, before anyone else looked: refused, and the hold is
        // released by that very request.
        let p = app
            .pay(&term, &app.online_code(&c).await, 5_000, "k2")
            .await;
        assert_eq!(p.body["status"], "pending_confirmation", "{l}: {}", p.text);
        let id2 = id_of(&p);
        app.clock.advance_ms(60_000);
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id2}/confirm"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        // `payment_not_pending` when the background sweeper (every real second) got there first.
        assert_error_shape(l, &r);
        assert!(
            r.status == 409 && ["payment_expired", "payment_not_pending"].contains(&r.error_code()),
            "{l}: {}",
            r.text
        );
        assert_eq!(
            app.balances(&c).await,
            (10_000, 0, 10_000),
            "{l}: hold released by the late confirmation"
        );
        let g = app.get_payment(&term, &id2).await;
        assert_eq!(g.body["status"], "expired", "{l}: {}", g.text);
        app.ledger_ok().await;
    }
}
