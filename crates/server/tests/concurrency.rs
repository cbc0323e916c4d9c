//! Races over HTTP on both backends: a double scan, many payments against one wallet, duplicate
//! idempotency keys, refunds and cancels of one payment, and top-ups against the daily limit.

mod common;
use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_code_at_two_tills_succeeds_once() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("ai@example.com", 10_000).await;
        let (_, t1) = app.store_with_terminal("st_1").await;
        let (_, t2) = app.store_with_terminal("st_2").await;
        app.clock.advance_ms(1_000);
        for round in 0..5u8 {
            let code = app.offline_code(&c, round);
            let (ka, kb) = (format!("a{round}"), format!("b{round}"));
            let (a, b) = tokio::join!(
                app.pay(&t1, &code, 1_000, &ka),
                app.pay(&t2, &code, 1_000, &kb)
            );
            assert_eq!(
                (a.status, b.status),
                (201, 201),
                "{l}: {} / {}",
                a.text,
                b.text
            );
            let mut outcomes = [
                (
                    a.body["status"].as_str().unwrap_or("").to_string(),
                    a.body["decline_code"].as_str().unwrap_or("").to_string(),
                ),
                (
                    b.body["status"].as_str().unwrap_or("").to_string(),
                    b.body["decline_code"].as_str().unwrap_or("").to_string(),
                ),
            ];
            outcomes.sort();
            assert_eq!(
                outcomes,
                [
                    ("declined".to_string(), "invalid_code".to_string()),
                    ("succeeded".to_string(), String::new())
                ],
                "{l}: round {round}"
            );
            assert_eq!(
                app.balance(&c).await,
                10_000 - 1_000 * (i64::from(round) + 1),
                "{l}: round {round}"
            );
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM payments WHERE status = 'succeeded'")
                .await,
            5,
            "{l}"
        );
        app.ledger_ok().await;
    }
}

/// 30 payments of 1,000 at once against a wallet of 10,000, each with its own fresh code.
///
/// A device's codes kill each other (a used code kills every older one), so concurrent codes
/// of ONE device would mostly be declined as `invalid_code`. Each payment therefore comes from
/// its own device: the customer logs in 30 times (each with an SMS code), each login binding a new device with its own
/// slot and key, all on the same wallet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_payments_race_for_one_wallet() {
    for app in apps().await {
        let app = Arc::new(app);
        let l = app.label;
        let (first, _) = app.funded_customer("bo@example.com", 10_000).await;
        let (_, t1) = app.store_with_terminal("st_1").await;
        let (_, t2) = app.store_with_terminal("st_2").await;
        // One after the other: each new device waits for its own SMS code.
        let mut devices = vec![first.clone()];
        for _ in 0..29 {
            devices.push(app.login_new_device(&first).await);
        }
        let slots: std::collections::HashSet<u32> = devices.iter().map(|d| d.slot).collect();
        assert_eq!(slots.len(), 30, "{l}: 30 distinct slots");
        assert!(
            devices.iter().all(|d| d.customer_id == first.customer_id),
            "{l}"
        );

        app.clock.advance_ms(1_000);
        let mut pays = tokio::task::JoinSet::new();
        for (i, d) in devices.iter().enumerate() {
            let code = app.offline_code(d, 0);
            let term = if i % 2 == 0 { t1.clone() } else { t2.clone() };
            let app = app.clone();
            pays.spawn(async move { app.pay(&term, &code, 1_000, &format!("race-{i}")).await });
        }
        let mut outcomes: HashMap<String, usize> = HashMap::new();
        while let Some(r) = pays.join_next().await {
            let r = r.expect("pay task");
            assert_eq!(r.status, 201, "{l}: {}", r.text);
            let key = format!(
                "{}/{}",
                r.body["status"].as_str().unwrap_or("?"),
                r.body["decline_code"].as_str().unwrap_or("-")
            );
            *outcomes.entry(key).or_default() += 1;
        }
        let expected: HashMap<String, usize> = [
            ("succeeded/-".to_string(), 10),
            ("declined/insufficient_funds".to_string(), 20),
        ]
        .into();
        assert_eq!(outcomes, expected, "{l}");
        assert_eq!(app.balances(&first).await, (0, 0, 0), "{l}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM accounts WHERE balance < 0 AND kind = 'wallet'")
                .await,
            0,
            "{l}"
        );
        assert_eq!(app.count("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM payments WHERE status = 'succeeded'").await, 10_000, "{l}");
        // The risk engine counted each payment that went through exactly once, on the
        // customer's profile and on its device, whichever path took it. On PostgreSQL a
        // payment whose profile another one changed since its context read it writes
        // nothing on the one-statement path and is counted on the general path.
        use konbini_store::risk::{Windows, profile_columns, profile_of};
        // Every profile and every device: (payments, their total, the 7-day window's count
        // and total, the largest such count).
        let sum = |sql: &'static str| {
            app.db.read(move |c| {
                let mut out = (0, 0, 0, 0, 0);
                for r in c.query(sql, konbini_store::params![])? {
                    let (payments, total, w) = match r.0.len() {
                        1 => (0, 0, Windows::read_packed(&r, 0)?),
                        _ => profile_of(&r, 0)?.map_or((0, 0, Windows::default()), |(p, w)| {
                            (p.payments, p.payments_total, w)
                        }),
                    };
                    out = (
                        out.0 + payments,
                        out.1 + total,
                        out.2 + w.n[3],
                        out.3 + w.total[3],
                        out.4.max(w.n[3]),
                    );
                }
                Ok::<_, konbini_store::StoreError>(out)
            })
        };
        static PROFILES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {} FROM accounts p WHERE p.kind = 'wallet'",
                profile_columns("p")
            )
        });
        let profiles = sum(&PROFILES).await.expect("profiles");
        assert_eq!(
            (profiles.0, profiles.1, profiles.2, profiles.3),
            (10, 10_000, 10, 10_000),
            "{l}: profiles"
        );
        let devices = sum("SELECT windows FROM devices").await.expect("devices");
        assert_eq!(
            (devices.2, devices.3, devices.4),
            (10, 10_000, 1),
            "{l}: devices"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_of_one_request_charge_once() {
    for app in apps().await {
        let app = Arc::new(app);
        let l = app.label;
        let (c, _) = app.funded_customer("chika@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let code = app.offline_code(&c, 0);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let (app, term, code) = (app.clone(), term.clone(), code.clone());
            set.spawn(async move { app.pay(&term, &code, 700, "dup").await });
        }
        let mut bodies = Vec::new();
        while let Some(r) = set.join_next().await {
            let r = r.expect("task");
            match r.status {
                201 => bodies.push(r.text.clone()),
                // A duplicate that arrives while the first is still being processed.
                409 => assert_error(l, &r, 409, "idempotency_error", "idempotency_key_in_use"),
                _ => panic!("{l}: unexpected {} {}", r.status, r.text),
            }
        }
        assert!(!bodies.is_empty(), "{l}");
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "{l}: every 201 is the same answer: {bodies:?}"
        );
        assert!(bodies[0].contains("\"succeeded\""), "{l}: {}", bodies[0]);
        assert_eq!(app.balance(&c).await, 9_300, "{l}: charged once");
        assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 1, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_exceed_the_payment() {
    for app in apps().await {
        let app = Arc::new(app);
        let l = app.label;
        let (c, _) = app.funded_customer("daisuke@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 3_000, "p").await;
        let id = id_of(&p);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..10 {
            let (app, term, id) = (app.clone(), term.clone(), id.clone());
            set.spawn(async move {
                app.send(
                    "POST",
                    &format!("/v1/pos/payments/{id}/refunds"),
                    Some(&term),
                    Some(&format!("r{i}")),
                    Some(json!({"amount": 1_000})),
                )
                .await
            });
        }
        let (mut ok, mut over) = (0, 0);
        while let Some(r) = set.join_next().await {
            let r = r.expect("task");
            if r.status == 201 {
                ok += 1;
            } else {
                assert_error(
                    l,
                    &r,
                    422,
                    "invalid_request_error",
                    "refund_exceeds_payment",
                );
                over += 1;
            }
        }
        assert_eq!((ok, over), (3, 7), "{l}");
        assert_eq!(app.balance(&c).await, 10_000, "{l}");
        assert_eq!(
            app.get_payment(&term, &id).await.body["refunded"],
            3_000,
            "{l}"
        );
        app.ledger_ok().await;
    }
}

/// A cancel and a full refund of the same payment at once: the money goes back exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_refund_race_returns_money_once() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("emi@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        for round in 0..8u8 {
            let p = app
                .pay(
                    &term,
                    &app.offline_code(&c, round),
                    1_000,
                    &format!("p{round}"),
                )
                .await;
            assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
            let id = id_of(&p);
            let (cancel_url, refund_url) = (
                format!("/v1/pos/payments/{id}/cancel"),
                format!("/v1/pos/payments/{id}/refunds"),
            );
            let (ck, rk) = (format!("c{round}"), format!("r{round}"));
            let (cancel, refund) = tokio::join!(
                app.send("POST", &cancel_url, Some(&term), Some(&ck), None),
                app.send("POST", &refund_url, Some(&term), Some(&rk), None),
            );
            match (cancel.status, refund.status) {
                (200, _) => assert_error(
                    l,
                    &refund,
                    409,
                    "invalid_request_error",
                    "payment_not_refundable",
                ),
                (_, 201) => assert_error(
                    l,
                    &cancel,
                    409,
                    "invalid_request_error",
                    "payment_not_cancelable",
                ),
                _ => panic!("{l}: neither won: {} / {}", cancel.text, refund.text),
            }
            assert_eq!(
                app.balance(&c).await,
                10_000,
                "{l}: round {round}: returned exactly once"
            );
        }
        app.ledger_ok().await;
    }
}

/// Five top-ups of 20,000 at once against the daily limit of 50,000: at most two may pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_top_ups_respect_the_daily_limit() {
    for app in apps().await {
        let app = Arc::new(app);
        let l = app.label;
        let c = app.customer("fuyu@example.com").await;
        let card = app.link_card(&c, "4242424242424242").await;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..5 {
            let (app, c, card) = (app.clone(), c.clone(), card.clone());
            set.spawn(async move { app.top_up(&c, &card, 20_000, &format!("t{i}")).await });
        }
        let mut ok = 0;
        while let Some(r) = set.join_next().await {
            let r = r.expect("task");
            if r.status == 201 {
                ok += 1;
            } else {
                assert_error_param(
                    l,
                    &r,
                    402,
                    "payment_error",
                    "daily_topup_limit_exceeded",
                    "amount",
                );
            }
        }
        assert_eq!(ok, 2, "{l}");
        assert_eq!(app.balance(&c).await, 40_000, "{l}");
        app.ledger_ok().await;
    }
}
