//! Cards and top-ups over HTTP on both backends: the simulator's test cards, declines and
//! processor failures, limits, idempotency, removed cards, and POS payments funded by a card.

mod common;
use common::*;
use serde_json::{Value, json};

const VISA: &str = "4242424242424242";
const MASTERCARD: &str = "5555555555554444";
const JCB: &str = "3566002020360505";
const DECLINED: &str = "4000000000000002";
const NO_FUNDS: &str = "4000000000009995";
const EXPIRED: &str = "4000000000000069";
const PROCESSOR_ERROR: &str = "4000000000000119";

/// The customer's history as (type, status, amount), newest first.
async fn history(app: &TestApp, c: &Customer) -> Vec<(String, String, i64)> {
    let h = app
        .send(
            "GET",
            "/v1/transactions?limit=100",
            Some(&c.token),
            None,
            None,
        )
        .await;
    assert_eq!(h.status, 200, "{}: {}", app.label, h.text);
    h.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| {
            (
                x["type"].as_str().unwrap_or("").into(),
                x["status"].as_str().unwrap_or("").into(),
                x["amount"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn row(kind: &str, status: &str, amount: i64) -> (String, String, i64) {
    (kind.into(), status.into(), amount)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_test_cards_link_and_top_up() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("akira@example.com").await;
        let mut ids = Vec::new();
        for (number, brand, key) in [
            (VISA, "visa", "t1"),
            (MASTERCARD, "mastercard", "t2"),
            (JCB, "jcb", "t3"),
        ] {
            app.clock.advance_ms(1_000);
            // Spaces as customers type them are fine.
            let spaced = format!(
                "{} {} {} {}",
                &number[..4],
                &number[4..8],
                &number[8..12],
                &number[12..]
            );
            let r = app
                .send(
                    "POST",
                    "/v1/cards",
                    Some(&c.token),
                    None,
                    Some(
                        json!({"number": spaced, "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
                    ),
                )
                .await;
            assert_eq!(r.status, 201, "{l}: {}", r.text);
            assert_eq!(
                (r.body["brand"].as_str(), r.body["last4"].as_str()),
                (Some(brand), Some(&number[12..])),
                "{l}: {}",
                r.text
            );
            assert!(
                !r.text.contains(number) && !r.text.contains(&number[..12]),
                "{l}: card number echoed: {}",
                r.text
            );
            let id = id_of(&r);
            let t = app.top_up(&c, &id, 5_000, key).await;
            assert_eq!(
                (
                    t.status,
                    t.body["status"].as_str(),
                    t.body["amount"].as_i64()
                ),
                (201, Some("succeeded"), Some(5_000)),
                "{l}: {}",
                t.text
            );
            assert_eq!(t.body["card_id"], id.as_str(), "{l}");
            ids.push(id);
        }
        let w = app.wallet(&c).await;
        assert_eq!(
            (
                w["balance"].as_i64(),
                w["limits"]["daily_topup_used"].as_i64(),
                w["limits"]["daily_topup_count"].as_i64()
            ),
            (Some(15_000), Some(15_000), Some(3)),
            "{l}: {w}"
        );
        let list = app
            .send("GET", "/v1/cards", Some(&c.token), None, None)
            .await;
        assert_eq!(list.status, 200, "{l}");
        let cards = list.body["data"].as_array().expect("data");
        let got: Vec<(&str, &str)> = cards
            .iter()
            .map(|x| {
                (
                    x["id"].as_str().unwrap_or(""),
                    x["last4"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (ids[0].as_str(), "4242"),
                (ids[1].as_str(), "4444"),
                (ids[2].as_str(), "0505")
            ],
            "{l}"
        );
        for card in cards {
            let keys: Vec<&String> = card.as_object().expect("card").keys().collect();
            assert!(
                !keys.iter().any(
                    |k| ["number", "pan", "cvc", "fingerprint", "processor_token"]
                        .contains(&k.as_str())
                ),
                "{l}: {card}"
            );
        }
        for number in [VISA, MASTERCARD, JCB] {
            assert!(!list.text.contains(number), "{l}: {}", list.text);
        }
        assert_eq!(
            history(&app, &c).await,
            [
                row("topup", "succeeded", 5_000),
                row("topup", "succeeded", 5_000),
                row("topup", "succeeded", 5_000)
            ],
            "{l}"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declining_cards_credit_nothing() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("botan@example.com").await;
        for (number, code, key) in [
            (DECLINED, "card_declined", "d1"),
            (NO_FUNDS, "insufficient_funds", "d2"),
            (EXPIRED, "expired_card", "d3"),
        ] {
            let card = app.link_card(&c, number).await;
            let r = app.top_up(&c, &card, 3_000, key).await;
            assert_error(&format!("{l} {code}"), &r, 402, "payment_error", code);
            // The failure is the stored answer for that key: a retry does not charge again.
            let again = app.top_up(&c, &card, 3_000, key).await;
            assert_eq!((again.status, &again.text), (r.status, &r.text), "{l}");
        }
        assert_eq!(app.balances(&c).await, (0, 0, 0), "{l}");
        assert_eq!(
            app.wallet(&c).await["limits"]["daily_topup_used"],
            0,
            "{l}: failed top-ups do not use the limit"
        );
        assert_eq!(
            history(&app, &c).await,
            [
                row("topup", "failed", 3_000),
                row("topup", "failed", 3_000),
                row("topup", "failed", 3_000)
            ],
            "{l}"
        );

        // Cards the processor refuses to tokenize at all.
        for (body, code) in [
            (
                json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
                "invalid_card",
            ),
            (
                json!({"number": "4242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
                "invalid_card",
            ),
            (
                json!({"number": VISA, "exp_month": 1, "exp_year": 2020, "cvc": "123"}),
                "expired_card",
            ),
        ] {
            let r = app
                .send("POST", "/v1/cards", Some(&c.token), None, Some(body))
                .await;
            assert_error(&format!("{l} {code}"), &r, 402, "payment_error", code);
            assert!(!r.text.contains("4242424242424241"), "{l}: {}", r.text);
        }
        assert_eq!(
            app.send("GET", "/v1/cards", Some(&c.token), None, None)
                .await
                .body["data"]
                .as_array()
                .map(Vec::len),
            Some(3),
            "{l}"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_failure_at_top_up_credits_nothing() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("chiyo@example.com").await;
        let card = app.link_card(&c, PROCESSOR_ERROR).await;
        let r = app.top_up(&c, &card, 3_000, "p1").await;
        assert_error(l, &r, 502, "api_error", "processor_unavailable");
        assert_eq!(app.balances(&c).await, (0, 0, 0), "{l}: not credited");
        assert_eq!(
            history(&app, &c).await,
            [row("topup", "failed", 3_000)],
            "{l}"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM topups WHERE status = 'failed' AND decline_code = 'processor_unavailable'").await, 1, "{l}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM entries").await,
            0,
            "{l}: nothing posted"
        );
        // The same key replays the failure; a new key tries again (and fails again).
        let again = app.top_up(&c, &card, 3_000, "p1").await;
        assert_eq!((again.status, &again.text), (502, &r.text), "{l}");
        let other = app.top_up(&c, &card, 3_000, "p2").await;
        assert_error(l, &other, 502, "api_error", "processor_unavailable");
        assert_eq!(app.balance(&c).await, 0, "{l}");
        // A good card still works afterwards.
        let good = app.link_card(&c, VISA).await;
        let ok = app.top_up(&c, &good, 3_000, "p3").await;
        assert_eq!(ok.status, 201, "{l}: {}", ok.text);
        assert_eq!(app.balance(&c).await, 3_000, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_up_and_daily_limits() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("daichi@example.com").await;
        let card = app.link_card(&c, VISA).await;
        let r = app.top_up(&c, &card, 30_001, "t0").await;
        assert_error_param(
            l,
            &r,
            402,
            "payment_error",
            "topup_limit_exceeded",
            "amount",
        );
        assert_eq!(app.top_up(&c, &card, 30_000, "t1").await.status, 201, "{l}");
        assert_eq!(app.top_up(&c, &card, 20_000, "t2").await.status, 201, "{l}");
        let r = app.top_up(&c, &card, 1, "t3").await;
        assert_error_param(
            l,
            &r,
            402,
            "payment_error",
            "daily_topup_limit_exceeded",
            "amount",
        );
        assert_eq!(app.balance(&c).await, 50_000, "{l}");
        let w = app.wallet(&c).await;
        assert_eq!(
            (
                w["limits"]["daily_topup_used"].as_i64(),
                w["limits"]["daily_topup"].as_i64()
            ),
            (Some(50_000), Some(50_000)),
            "{l}: {w}"
        );

        // The business day ends at midnight JST (T0 is 09:00 JST): one second before, still
        // refused; at midnight, allowed again. The idle session has expired by then.
        app.clock.advance_ms(15 * 3_600_000 - 1_000);
        let c = app.login_new_device(&c).await;
        let r = app.top_up(&c, &card, 1, "t4").await;
        assert_error(l, &r, 402, "payment_error", "daily_topup_limit_exceeded");
        app.clock.advance_ms(1_000);
        let r = app.top_up(&c, &card, 10_000, "t5").await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(app.balance(&c).await, 60_000, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balance_limit() {
    for app in apps_with(|c| c.limits.daily_topup_minor = 1_000_000).await {
        let l = app.label;
        let (c, card) = app.funded_customer("emiko@example.com", 90_000).await;
        let r = app.top_up(&c, &card, 10_001, "b1").await;
        assert_error_param(
            l,
            &r,
            402,
            "payment_error",
            "balance_limit_exceeded",
            "amount",
        );
        assert_eq!(app.balance(&c).await, 90_000, "{l}");
        let r = app.top_up(&c, &card, 10_000, "b2").await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let r = app.top_up(&c, &card, 1, "b3").await;
        assert_error(l, &r, 402, "payment_error", "balance_limit_exceeded");
        // Spending makes room again.
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 5_000, "p1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(app.top_up(&c, &card, 5_000, "b4").await.status, 201, "{l}");
        assert_error(
            l,
            &app.top_up(&c, &card, 1, "b5").await,
            402,
            "payment_error",
            "balance_limit_exceeded",
        );
        assert_eq!(app.balance(&c).await, 100_000, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_up_idempotency() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("fuji@example.com").await;
        let card = app.link_card(&c, VISA).await;
        let first = app.top_up(&c, &card, 4_000, "same").await;
        assert_eq!(first.status, 201, "{l}: {}", first.text);
        let replay = app.top_up(&c, &card, 4_000, "same").await;
        assert_eq!((replay.status, &replay.text), (201, &first.text), "{l}");
        assert_eq!(app.balance(&c).await, 4_000, "{l}: credited once");
        let r = app.top_up(&c, &card, 4_001, "same").await;
        assert_error(l, &r, 422, "idempotency_error", "idempotency_key_reused");
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                None,
                Some(json!({"amount": 100, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "idempotency_key_missing",
        );
        // Keys belong to the customer: another customer's "same" is unrelated.
        let other = app.customer("goto@example.com").await;
        let other_card = app.link_card(&other, VISA).await;
        let r = app.top_up(&other, &other_card, 1_000, "same").await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_ne!(r.body["id"], first.body["id"], "{l}");
        assert_eq!(
            (app.balance(&c).await, app.balance(&other).await),
            (4_000, 1_000),
            "{l}"
        );
        assert_eq!(history(&app, &c).await.len(), 1, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_card_cannot_be_used() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("haru@example.com").await;
        let card = app.link_card(&c, VISA).await;
        let r = app
            .send(
                "DELETE",
                &format!("/v1/cards/{card}"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{l}: {}", r.text);
        let list = app
            .send("GET", "/v1/cards", Some(&c.token), None, None)
            .await;
        assert_eq!(list.body["data"], json!([]), "{l}");
        let r = app.top_up(&c, &card, 1_000, "t1").await;
        assert_error_param(
            l,
            &r,
            404,
            "invalid_request_error",
            "resource_missing",
            "card_id",
        );
        let r = app
            .send(
                "DELETE",
                &format!("/v1/cards/{card}"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": card})),
            )
            .await;
        assert_error_param(
            l,
            &r,
            404,
            "invalid_request_error",
            "resource_missing",
            "card_id",
        );
        assert_eq!(app.balance(&c).await, 0, "{l}");
        assert_eq!(
            history(&app, &c).await,
            Vec::<(String, String, i64)>::new(),
            "{l}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_funded_payments_and_their_refunds() {
    for app in apps().await {
        let l = app.label;
        let (c, card) = app.funded_customer("isao@example.com", 5_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        for bad in [
            json!({"source": "card"}),
            json!({"source": "wallet", "card_id": card}),
            json!({"source": "bank"}),
        ] {
            let r = app
                .send("PUT", "/v1/wallet/funding", Some(&c.token), None, Some(bad))
                .await;
            assert_error_param(
                l,
                &r,
                400,
                "invalid_request_error",
                "invalid_funding",
                "source",
            );
        }
        let r = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": card})),
            )
            .await;
        assert_eq!(
            (r.status, &r.body),
            (200, &json!({"source": "card", "card_id": card})),
            "{l}: {}",
            r.text
        );
        assert_eq!(
            app.wallet(&c).await["funding"],
            json!({"source": "card", "card_id": card}),
            "{l}"
        );

        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&c, 0), 1_200, "k1").await;
        assert_eq!(
            (
                p.status,
                p.body["status"].as_str(),
                p.body["funding"].as_str()
            ),
            (201, Some("succeeded"), Some("card")),
            "{l}: {}",
            p.text
        );
        let id = id_of(&p);
        assert_eq!(
            app.balances(&c).await,
            (5_000, 0, 5_000),
            "{l}: wallet untouched"
        );
        assert_eq!(
            app.get_payment(&term, &id).await.body["funding"],
            "card",
            "{l}"
        );
        // A replay answers from the store, without charging the card again.
        let replay = app.pay(&term, &app.offline_code(&c, 0), 1_200, "k1").await;
        assert_eq!((replay.status, &replay.text), (201, &p.text), "{l}");

        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 200})),
            )
            .await;
        assert_eq!(
            (r.status, r.body["amount"].as_i64()),
            (201, Some(200)),
            "{l}: {}",
            r.text
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("r2"),
                Some(json!({"amount": 1_001})),
            )
            .await;
        assert_error(
            l,
            &r,
            422,
            "invalid_request_error",
            "refund_exceeds_payment",
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&term),
                Some("r3"),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.body["amount"].as_i64()),
            (201, Some(1_000)),
            "{l}: {}",
            r.text
        );
        assert_eq!(
            app.balance(&c).await,
            5_000,
            "{l}: card refunds do not touch the wallet"
        );

        // Cancel of a card payment.
        app.clock.advance_ms(1_000);
        let p2 = app.pay(&term, &app.offline_code(&c, 1), 800, "k2").await;
        assert_eq!(p2.body["funding"], "card", "{l}: {}", p2.text);
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{}/cancel", id_of(&p2)),
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
        assert_eq!(app.balance(&c).await, 5_000, "{l}");

        // A card the bank declines: the payment is declined and its code spent.
        let bad_card = app.link_card(&c, DECLINED).await;
        let r = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": bad_card})),
            )
            .await;
        assert_eq!(r.status, 200, "{l}");
        app.clock.advance_ms(1_000);
        let code = app.offline_code(&c, 2);
        let p3 = app.pay(&term, &code, 500, "k3").await;
        assert_eq!(
            (
                p3.status,
                p3.body["status"].as_str(),
                p3.body["decline_code"].as_str()
            ),
            (201, Some("declined"), Some("card_declined")),
            "{l}: {}",
            p3.text
        );
        let p4 = app.pay(&term, &code, 500, "k4").await;
        assert_eq!(p4.body["decline_code"], "invalid_code", "{l}: {}", p4.text);

        // Back to the wallet; removing the funding card also falls back to the wallet.
        let r = app
            .send(
                "DELETE",
                &format!("/v1/cards/{bad_card}"),
                Some(&c.token),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{l}");
        assert_eq!(
            app.wallet(&c).await["funding"],
            json!({"source": "wallet", "card_id": Value::Null}),
            "{l}"
        );
        app.clock.advance_ms(1_000);
        let p5 = app.pay(&term, &app.offline_code(&c, 3), 100, "k5").await;
        assert_eq!(
            (p5.body["status"].as_str(), p5.body["funding"].as_str()),
            (Some("succeeded"), Some("wallet")),
            "{l}: {}",
            p5.text
        );
        assert_eq!(app.balance(&c).await, 4_900, "{l}");
        app.ledger_ok().await;
    }
}
