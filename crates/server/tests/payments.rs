//! The payment core over HTTP: sign-up → card → top-up → code → POS payment → refund, on
//! both backends.

mod common;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_through() {
    for app in apps().await {
        let (c, _card) = app.funded_customer("hanako@example.com", 5_000).await;
        let w = app.wallet(&c).await;
        assert_eq!(w["balance"], 5_000, "{}", app.label);
        app.clock.advance_ms(1_000);
        let (_store, term) = app.store_with_terminal("st_1").await;
        let r = app
            .send("POST", "/v1/payment-codes", Some(&c.token), None, None)
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let code = r.body["code"].as_str().expect("code").to_string();
        assert_eq!(code.len(), 20);
        assert!(
            r.body["barcode_svg"]
                .as_str()
                .is_some_and(|s| s.contains("<svg"))
        );
        let p = app.pay(&term, &code, 1_200, "k1").await;
        assert_eq!(p.status, 201, "{}: {}", app.label, p.text);
        assert_eq!(p.body["status"], "succeeded", "{}", p.text);
        assert_eq!(app.wallet(&c).await["balance"], 3_800);
        let pid = p.body["id"].as_str().expect("id").to_string();
        app.clock.advance_ms(1_000);
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{pid}/refunds"),
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 200})),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(app.wallet(&c).await["balance"], 4_000);
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{pid}/refunds"),
                Some(&term),
                Some("r2"),
                Some(json!({"amount": 1_001})),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (422, "refund_exceeds_payment"),
            "{}",
            r.text
        );
        let h = app
            .send(
                "GET",
                "/v1/transactions?limit=10",
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_eq!(h.status, 200);
        let kinds: Vec<&str> = h.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|x| x["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(kinds, vec!["refund", "payment", "topup"], "{}", app.label);
        // Every money movement wrote its event in the same transaction (the outbox).
        let events: Vec<String> = app
            .db
            .read({
                let pid = pid.clone();
                move |c| konbini_store::outbox::for_aggregate(c, &pid)
            })
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.topic)
            .collect();
        assert_eq!(
            events,
            vec!["payment.succeeded", "refund.succeeded"],
            "{}",
            app.label
        );
        let topups: i64 = app
            .db
            .read(|c| {
                c.query_one(
                    "SELECT COUNT(*) FROM outbox o JOIN topups t ON t.id = o.aggregate_id WHERE o.topic = 'topup.succeeded'",
                    konbini_store::params![],
                )?
                .int(0)
            })
            .await
            .expect("count");
        assert_eq!(topups, 1, "{}", app.label);
        // Operations: every answer carries a request id; /metrics counts by route template.
        let r = app
            .http
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .expect("metrics");
        let rid = r
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(
            rid.len() == 16 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{rid}"
        );
        let text = r.text().await.expect("text");
        assert!(
            text.contains("konbini_http_requests_total{method=\"POST\",route=\"/v1/pos/payments\",status=\"201\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("konbini_http_requests_total{method=\"POST\",route=\"/v1/pos/payments/{id}/refunds\",status=\"422\"} 1"),
            "route templates, not raw paths: {text}"
        );
        assert!(!text.contains(&pid), "no ids in metric labels");
        app.ledger_ok().await;
    }
}
