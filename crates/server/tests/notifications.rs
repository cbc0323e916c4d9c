//! Messages reach real sinks: an SMTP server on a local socket (speaking the protocol to
//! lettre) and an HTTP SMS gateway. Security events go to the verified email and phone, money
//! movements are reported, failures are retried with backoff, and a message that never gets
//! through lands in the dead-letter list. No message carries a card number.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_customer_and_failures_are_retried() {
    let apps = apps_with(move |c| {
        c.dispatch_interval_ms = 20;
        c.public_url = "https://pay.example.com".into();
    })
    .await;
    for app in apps {
        let l = app.label;
        let (mail, sms) = (app.mail.clone(), app.sms.clone());
        let email = format!("notify-{l}@example.com");
        let first = app.customer(&email).await;
        let c = app.login_new_device(&first).await;
        // The gateway now fails twice before accepting: the dispatcher must retry.
        app.text(&c.phone, "new device", 0).await;
        sms.fail_next(2);
        let card = app.link_card(&c, "4242424242424242").await;
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("n-top"),
                Some(json!({"amount": 5_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let (_, term) = app.store_with_terminal("st_1").await;
        let p = app.pay(&term, &app.offline_code(&c, 0), 1_280, "n1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}");
        // Email: code, welcome (with the configured public URL), password used on a new
        // device, card linked, top-up, payment.
        eventually("the emails", || mail.to(&email).len() >= 7).await;
        let all = mail.to(&email).join("\n---\n");
        for needle in [
            "Welcome to Konbini",
            "https://pay.example.com",
            "Your password was used on a new device",
            "A new device",
            "A card was linked",
            "Top-up of",
            "You paid",
            "1,280",
        ] {
            assert!(all.contains(needle), "{l}: '{needle}' missing from:\n{all}");
        }
        assert!(
            !all.contains("4242424242424242"),
            "{l}: a card number in an email"
        );
        // SMS to the phone on the account for the security events, despite the failures.
        // The backoff after each failure is 2 s, 4 s: move the clock instead of waiting.
        for _ in 0..6 {
            if sms.to(&c.phone).len() >= 4 {
                break;
            }
            app.clock.advance_ms(5_000);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let texts = sms.to(&c.phone);
        assert!(
            texts.iter().any(|t| t.contains("new device")),
            "{l}: {texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("card was linked")),
            "{l}: {texts:?}"
        );
        let retried: i64 = app
            .count("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM outbox")
            .await;
        assert!(
            retried >= 2,
            "{l}: the failed SMS was retried (max attempts {retried})"
        );
        let mut pending = 1;
        for _ in 0..40 {
            pending = app
                .count("SELECT COUNT(*) FROM outbox WHERE delivered_ms IS NULL")
                .await;
            if pending == 0 {
                break;
            }
            app.clock.advance_ms(5_000);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pending, 0, "{l}: undelivered events left");
        // The sign-up of an already registered address tells the owner, not the requester.
        let r = app
            .sign_up(&email, "+819099998888", "another long passphrase here")
            .await;
        assert_eq!(r.status, 202, "{l}");
        eventually("the warning to the owner", || {
            mail.to(&email).join("").contains("tried to register")
        })
        .await;
        assert!(
            sms.to("+819099998888").is_empty(),
            "{l}: nothing goes to the requester's number"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_messages_end_in_the_dead_letter_list() {
    let apps = apps_with(move |c| {
        c.dispatch_interval_ms = 20;
        c.max_delivery_attempts = 3;
    })
    .await;
    for app in apps {
        let l = app.label;
        let c = app.customer(&format!("dead-{l}@example.com")).await;
        // From now on the SMS gateway refuses everything: the card.linked message (email and
        // SMS) can never be delivered.
        app.sms.fail_next(usize::MAX);
        app.link_card(&c, "4242424242424242").await;
        let mut dead = 0;
        for _ in 0..40 {
            dead = app.count("SELECT COUNT(*) FROM outbox WHERE dead_ms IS NOT NULL AND topic = 'card.linked'").await;
            if dead == 1 {
                break;
            }
            app.clock.advance_ms(20_000);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            dead, 1,
            "{l}: the card.linked message (email + SMS) is dead-lettered"
        );
        let attempts = app
            .count("SELECT attempts FROM outbox WHERE topic = 'card.linked'")
            .await;
        assert_eq!(attempts, 3, "{l}");
        let listed = app
            .db
            .read(|c| konbini_store::outbox::dead(c, 10))
            .await
            .expect("dead list");
        assert!(
            listed.iter().any(
                |(e, err)| e.topic == "card.linked" && err.contains("SMS gateway answered 500")
            ),
            "{l}: {listed:?}"
        );
    }
}
