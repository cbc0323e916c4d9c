//! The real network path to the card processor: the server talks to the simulator served over
//! HTTP on a socket, with a short timeout, so timeouts, outages and retries are exercised for
//! real. Money is never half-moved: a customer is charged once or not at all, and the wallet
//! is credited exactly when the processor captured.

mod common;
use common::*;
use konbini_server::config::ProcessorConfig;
use konbini_server::processor::{Simulator, simulator_router};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_authorization_is_retried_and_charged_once() {
    let (sim, url) = simulator_over_http(1_500).await;
    let u = url.clone();
    for app in apps_with(move |c| {
        c.processor = ProcessorConfig::Http {
            url: u.clone(),
            timeout_ms: 300,
        }
    })
    .await
    {
        let l = app.label;
        let before = (sim.authorization_count(), sim.net_charged_minor());
        let c = app.customer(&format!("slow-{l}@example.com")).await;
        let card = app.link_card(&c, "4000000000006975").await;
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("slow-1"),
                Some(json!({"amount": 2_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(r.body["status"], "succeeded", "{l}");
        assert_eq!(app.wallet(&c).await["balance"], 2_000, "{l}");
        assert_eq!(
            sim.authorization_count() - before.0,
            1,
            "{l}: the retry reused the authorization"
        );
        assert_eq!(
            sim.net_charged_minor() - before.1,
            2_000,
            "{l}: charged exactly once"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_processor_charges_nothing_and_credits_nothing() {
    let (sim, url) = simulator_over_http(1_500).await;
    let u = url.clone();
    for app in apps_with(move |c| {
        c.processor = ProcessorConfig::Http {
            url: u.clone(),
            timeout_ms: 300,
        }
    })
    .await
    {
        let l = app.label;
        let before = sim.net_charged_minor();
        let c = app.customer(&format!("fail-{l}@example.com")).await;
        let card = app.link_card(&c, "4000000000000119").await;
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("fail-1"),
                Some(json!({"amount": 2_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (502, "processor_unavailable"),
            "{l}: {}",
            r.text
        );
        assert_eq!(app.wallet(&c).await["balance"], 0, "{l}");
        assert_eq!(sim.net_charged_minor(), before, "{l}: nothing charged");
        // The same key replays the stored failure; it does not charge on a retry.
        let again = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("fail-1"),
                Some(json!({"amount": 2_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_eq!(again.text, r.text, "{l}");
        let h = app
            .send("GET", "/v1/transactions", Some(&c.token), None, None)
            .await;
        assert_eq!(h.body["data"][0]["status"], "failed", "{l}: {}", h.text);
        // Card-funded POS payment through the network client: charged once, refunded once.
        let good = app.link_card(&c, "4242424242424242").await;
        let f = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": good})),
            )
            .await;
        assert_eq!(f.status, 200, "{l}: {}", f.text);
        let (_, term) = app.store_with_terminal(&format!("st_{l}")).await;
        let code = app.offline_code(&c, 0);
        let p = app.pay(&term, &code, 1_500, "card-pay").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(p.body["funding"], "card", "{l}");
        assert_eq!(sim.net_charged_minor() - before, 1_500, "{l}");
        let id = p.body["id"].as_str().expect("id");
        let re = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("card-refund"),
                Some(json!({"amount": 500})),
            )
            .await;
        assert_eq!(re.status, 201, "{l}: {}", re.text);
        assert_eq!(
            sim.net_charged_minor() - before,
            1_000,
            "{l}: the refund reached the card"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_processor_is_a_clear_error() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    for app in apps_with(move |c| {
        c.processor = ProcessorConfig::Http {
            url: format!("http://127.0.0.1:{port}"),
            timeout_ms: 300,
        }
    })
    .await
    {
        let c = app
            .customer(&format!("down-{}@example.com", app.label))
            .await;
        let r = app
            .send("POST", "/v1/cards", Some(&c.token), None, Some(json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"})))
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (502, "processor_unavailable"),
            "{}: {}",
            app.label,
            r.text
        );
        assert!(!r.text.contains("4242424242424242"), "{}", app.label);
        let cards = app
            .send("GET", "/v1/cards", Some(&c.token), None, None)
            .await;
        assert_eq!(
            cards.body["data"].as_array().map(Vec::len),
            Some(0),
            "{}",
            app.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_refund_during_an_outage_reaches_the_card_later() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let sim = Simulator::new(100);
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    // The processor behind a switch: while `down`, every call answers 503.
    let app_router = simulator_router(sim.clone()).layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let d = d.clone();
            async move {
                if d.load(Ordering::SeqCst) {
                    return axum::response::IntoResponse::into_response(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    );
                }
                next.run(req).await
            }
        },
    ));
    let url = serve_local(app_router).await;
    let u = url.clone();
    for app in apps_with(move |c| {
        c.processor = ProcessorConfig::Http {
            url: u.clone(),
            timeout_ms: 300,
        };
        c.reconcile_interval_ms = 50;
        c.card_op_stuck_after_ms = 60_000;
    })
    .await
    {
        let l = app.label;
        let before = sim.net_charged_minor();
        let c = app.customer(&format!("outage-{l}@example.com")).await;
        let card = app.link_card(&c, "4242424242424242").await;
        let f = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": card})),
            )
            .await;
        assert_eq!(f.status, 200, "{l}");
        let (_, term) = app.store_with_terminal(&format!("st_out_{l}")).await;
        let p = app
            .pay(&term, &app.offline_code(&c, 0), 1_500, "out-pay")
            .await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        let id = p.body["id"].as_str().expect("id").to_string();

        down.store(true, Ordering::SeqCst);
        let re = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("out-refund"),
                Some(json!({"amount": 500})),
            )
            .await;
        assert_eq!(re.status, 201, "{l}: the refund is recorded: {}", re.text);
        assert_eq!(
            sim.net_charged_minor() - before,
            1_500,
            "{l}: not yet at the card"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM card_ops WHERE kind = 'refund'")
                .await,
            1,
            "{l}"
        );

        down.store(false, Ordering::SeqCst);
        app.clock.advance_ms(61_000);
        let mut left = 1;
        for _ in 0..100 {
            left = app.count("SELECT COUNT(*) FROM card_ops").await;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "{l}: the reconciler finished the refund");
        assert_eq!(
            sim.net_charged_minor() - before,
            1_000,
            "{l}: refunded exactly once"
        );
        app.ledger_ok().await;
    }
}
