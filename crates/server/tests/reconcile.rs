//! A card operation cut off between its two transactions (the server died after the first
//! transaction and the processor call) is finished by the reconciler: money captured by the
//! processor reaches the wallet exactly once; an authorization the processor never saw is
//! recorded as failed; the idempotency key then replays the final answer.

mod common;
use common::*;
use konbini_server::app::funding::TopupRequest;
use konbini_server::app::idem::Idem;
use konbini_server::config::ProcessorConfig;
use konbini_server::processor::Processor;
use konbini_store::payments::{self, Activity, CardOp, Topup};
use konbini_store::{StoreError, idempotency, params};
use std::time::Duration;

/// Writes exactly what the first transaction of `POST /v1/topups` writes, as if the server
/// then died before the second.
async fn interrupted_topup(
    app: &TestApp,
    c: &Customer,
    card_id: &str,
    id: &str,
    key: &str,
    amount: i64,
) {
    let now = app.clock_ms();
    let req = TopupRequest {
        amount,
        currency: "JPY".into(),
        card_id: card_id.into(),
    };
    let idem = Idem::new(&c.customer_id, key, "POST /v1/topups", &req);
    let (cus, card, id, key) = (
        c.customer_id.clone(),
        card_id.to_string(),
        id.to_string(),
        key.to_string(),
    );
    let _: () = app
        .db
        .write(move |conn| {
            assert_eq!(
                idempotency::claim(conn, &cus, &key, &idem.request_hash, now)?,
                idempotency::Claim::New
            );
            payments::insert_topup(
                conn,
                &Topup {
                    id: id.clone(),
                    customer_id: cus.clone(),
                    source: "card".into(),
                    card_id: Some(card.clone()),
                    store_id: None,
                    amount,
                    currency: "JPY".into(),
                    status: "pending".into(),
                    decline_code: None,
                    processor_auth: None,
                    created_ms: now,
                },
            )?;
            payments::insert_activity(
                conn,
                &Activity {
                    id: id.clone(),
                    customer_id: cus.clone(),
                    kind: "topup".into(),
                    amount,
                    currency: "JPY".into(),
                    status: "pending".into(),
                    description: "Top-up".into(),
                    created_ms: now,
                },
            )?;
            payments::insert_card_op(
                conn,
                &CardOp {
                    ref_id: id.clone(),
                    kind: "topup".into(),
                    idem_scope: cus.clone(),
                    idem_key: key.clone(),
                    processor_auth: None,
                    amount: None,
                    created_ms: now,
                },
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("phase 1");
}

async fn token_of(app: &TestApp, card_id: &str) -> String {
    let id = card_id.to_string();
    app.db
        .read(move |c| {
            c.query_one(
                "SELECT processor_token FROM cards WHERE id = $1",
                params![&id],
            )?
            .text(0)
        })
        .await
        .expect("token")
}

async fn wait_for_status(app: &TestApp, topup_id: &str, want: &str) {
    for _ in 0..100 {
        let id = topup_id.to_string();
        let status: String = app
            .db
            .read(move |c| {
                c.query_one("SELECT status FROM topups WHERE id = $1", params![&id])?
                    .text(0)
            })
            .await
            .expect("status");
        if status == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{}: top-up {topup_id} never became {want}", app.label);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_top_ups_are_finished_by_the_reconciler() {
    let (sim, url) = simulator_over_http(100).await;
    let u = url.clone();
    let apps = apps_with(move |c| {
        c.processor = ProcessorConfig::Http {
            url: u.clone(),
            timeout_ms: 500,
        };
        c.reconcile_interval_ms = 50;
        c.card_op_stuck_after_ms = 60_000;
    })
    .await;
    for app in apps {
        let l = app.label;
        let c = app.customer(&format!("crash-{l}@example.com")).await;
        let card = app.link_card(&c, "4242424242424242").await;
        let charged_before = sim.net_charged_minor();

        // 1. Authorized at the processor, then the server died.
        let captured_id = format!("top_crash_a_{l}");
        interrupted_topup(&app, &c, &card, &captured_id, "crash-a", 2_000).await;
        let token = token_of(&app, &card).await;
        let auth = Processor::Simulator(sim.clone())
            .authorize(&token, 2_000, "JPY", &captured_id)
            .await
            .expect("authorize");
        assert!(
            matches!(
                auth,
                konbini_server::processor::AuthOutcome::Approved { .. }
            ),
            "{l}"
        );
        // 2. The processor never heard of this one.
        let lost_id = format!("top_crash_b_{l}");
        interrupted_topup(&app, &c, &card, &lost_id, "crash-b", 3_000).await;

        // While the operation is unfinished, a retry with the key is told it is in flight.
        let body = serde_json::json!({"amount": 2_000, "currency": "JPY", "card_id": card});
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("crash-a"),
                Some(body.clone()),
            )
            .await;
        assert_error(l, &r, 409, "idempotency_error", "idempotency_key_in_use");
        // Young markers are left alone (the live request may still be at the processor).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            app.wallet(&c).await["balance"],
            0,
            "{l}: nothing settled before the deadline"
        );

        app.clock.advance_ms(61_000);
        wait_for_status(&app, &captured_id, "succeeded").await;
        wait_for_status(&app, &lost_id, "failed").await;
        assert_eq!(app.wallet(&c).await["balance"], 2_000, "{l}: credited once");
        assert_eq!(
            sim.net_charged_minor() - charged_before,
            2_000,
            "{l}: captured once"
        );

        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("crash-a"),
                Some(body),
            )
            .await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (201, Some("succeeded")),
            "{l}: {}",
            r.text
        );
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("crash-b"),
                Some(serde_json::json!({"amount": 3_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_error(l, &r, 502, "api_error", "processor_unavailable");
        // More sweeps change nothing.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(app.wallet(&c).await["balance"], 2_000, "{l}");
        assert_eq!(app.count("SELECT COUNT(*) FROM card_ops").await, 0, "{l}");
        app.ledger_ok().await;
    }
}
