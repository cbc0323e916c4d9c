//! Attack scenarios over HTTP on both backends: IDOR between customers and between stores,
//! credential misuse, revoked sessions and devices, account enumeration, forged codes, and the
//! card number leaking into responses.

mod common;
use common::*;
use serde_json::json;

const PAN: &str = "4242424242424242";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_cannot_reach_each_others_things() {
    for app in apps_with(|c| c.limits.confirm_at_or_above_minor = 3_000).await {
        let l = app.label;
        let (a, a_card) = app.funded_customer("alice@example.com", 10_000).await;
        let (b, b_card) = app.funded_customer("bob@example.com", 1_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;

        // Cards.
        let list = app
            .send("GET", "/v1/cards", Some(&b.token), None, None)
            .await;
        assert!(
            !list.text.contains(&a_card) && list.text.contains(&b_card),
            "{l}: {}",
            list.text
        );
        let r = app
            .send(
                "DELETE",
                &format!("/v1/cards/{a_card}"),
                Some(&b.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app.top_up(&b, &a_card, 1_000, "steal").await;
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
                "PUT",
                "/v1/wallet/funding",
                Some(&b.token),
                None,
                Some(json!({"source": "card", "card_id": a_card})),
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
        let list = app
            .send("GET", "/v1/cards", Some(&a.token), None, None)
            .await;
        assert!(
            list.text.contains(&a_card),
            "{l}: A's card survived: {}",
            list.text
        );
        assert_eq!(
            (app.balance(&a).await, app.balance(&b).await),
            (10_000, 1_000),
            "{l}"
        );

        // A's pending payment: B can neither see, confirm nor reject it.
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&a, 0), 5_000, "k1").await;
        assert_eq!(p.body["status"], "pending_confirmation", "{l}: {}", p.text);
        let id = id_of(&p);
        let pending_b = app
            .send("GET", "/v1/payments/pending", Some(&b.token), None, None)
            .await;
        assert_eq!(pending_b.body["data"], json!([]), "{l}");
        for action in ["confirm", "reject"] {
            let r = app
                .send(
                    "POST",
                    &format!("/v1/payments/{id}/{action}"),
                    Some(&b.token),
                    None,
                    None,
                )
                .await;
            assert_error(
                &format!("{l} {action}"),
                &r,
                404,
                "invalid_request_error",
                "resource_missing",
            );
        }
        assert_eq!(
            app.get_payment(&term, &id).await.body["status"],
            "pending_confirmation",
            "{l}"
        );
        assert_eq!(app.balances(&a).await, (10_000, 5_000, 5_000), "{l}");
        assert_eq!(app.balance(&b).await, 1_000, "{l}");

        // A's device: B cannot revoke it, and trying does not end A's sessions either.
        let r = app
            .send(
                "DELETE",
                &format!("/v1/devices/{}", a.device_id),
                Some(&b.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let w = app
            .send("GET", "/v1/wallet", Some(&a.token), None, None)
            .await;
        assert_eq!(w.status, 200, "{l}: A is still signed in: {}", w.text);
        let devices = app
            .send("GET", "/v1/devices", Some(&a.token), None, None)
            .await;
        assert!(devices.text.contains(&a.device_id), "{l}: {}", devices.text);
        let devices_b = app
            .send("GET", "/v1/devices", Some(&b.token), None, None)
            .await;
        assert!(
            !devices_b.text.contains(&a.device_id),
            "{l}: {}",
            devices_b.text
        );
        // ...and A's device still pays.
        let r = app
            .send(
                "POST",
                &format!("/v1/payments/{id}/confirm"),
                Some(&a.token),
                None,
                None,
            )
            .await;
        assert_eq!(r.body["status"], "succeeded", "{l}: {}", r.text);
        app.clock.advance_ms(1_000);
        let p = app.pay(&term, &app.offline_code(&a, 1), 100, "k2").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(app.balances(&a).await, (4_900, 0, 4_900), "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_only_see_their_own_store() {
    for app in apps().await {
        let l = app.label;
        let (c, _) = app.funded_customer("chris@example.com", 10_000).await;
        let (_, t1) = app.store_with_terminal("st_1").await;
        let (_, t2) = app.store_with_terminal("st_2").await;
        app.clock.advance_ms(1_000);
        let p = app.pay(&t1, &app.offline_code(&c, 0), 2_000, "k1").await;
        let id = id_of(&p);
        let r = app.get_payment(&t2, &id).await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&t2),
                Some("r1"),
                Some(json!({"amount": 2_000})),
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/refunds"),
                Some(&t2),
                Some("r2"),
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{id}/cancel"),
                Some(&t2),
                Some("c1"),
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let g = app.get_payment(&t1, &id).await;
        assert_eq!(
            (g.body["status"].as_str(), g.body["refunded"].as_i64()),
            (Some("succeeded"), Some(0)),
            "{l}: {}",
            g.text
        );
        assert_eq!(app.balance(&c).await, 8_000, "{l}");
        // A revoked terminal is locked out.
        let _: () = app
            .db
            .write(|c| konbini_store::stores::revoke_terminal(c, "term_st_1").map(|_| ()))
            .await
            .expect("revoke terminal");
        let r = app.get_payment(&t1, &id).await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401_never_500() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("dana@example.com").await;
        let (_, term) = app.store_with_terminal("st_1").await;
        let customer_paths = [
            ("GET", "/v1/wallet"),
            ("GET", "/v1/cards"),
            ("POST", "/v1/payment-codes"),
            ("GET", "/v1/transactions"),
        ];
        let pos_paths = [
            ("GET", "/v1/pos/payments/pay_x"),
            ("POST", "/v1/pos/payments/pay_x/cancel"),
        ];
        let ten_kb = format!("Bearer ks_{}", "a".repeat(10 * 1024));
        let headers: Vec<Vec<u8>> = vec![
            b"Bearer garbage".to_vec(),
            b"Bearer ".to_vec(),
            b"Bearer".to_vec(),
            format!("Bearer ks_{}", "0".repeat(64)).into_bytes(),
            format!("Bearer kt_{}", "0".repeat(64)).into_bytes(),
            format!("Basic {}", c.token).into_bytes(),
            format!("bearer{}", c.token).into_bytes(),
            format!("Bearer {}x", c.token).into_bytes(),
            "Bearer ks_é☃".as_bytes().to_vec(),
            "Bearer ks_\u{202e}abc".as_bytes().to_vec(),
            vec![b'B', b'e', b'a', b'r', b'e', b'r', b' ', 0xff, 0xfe, 0x80],
            ten_kb.clone().into_bytes(),
            // Each kind of key used where the other is expected.
            format!("Bearer {term}").into_bytes(),
        ];
        for (m, p) in customer_paths {
            for h in &headers {
                let r = app.send_raw_auth(m, p, h).await;
                assert_error(
                    &format!(
                        "{l} {m} {p} {:?}",
                        String::from_utf8_lossy(&h[..h.len().min(40)])
                    ),
                    &r,
                    401,
                    "authentication_error",
                    "unauthenticated",
                );
            }
            let r = app.send(m, p, None, None, None).await;
            assert_error(
                &format!("{l} {m} {p} none"),
                &r,
                401,
                "authentication_error",
                "unauthenticated",
            );
        }
        let mut pos_headers = headers.clone();
        pos_headers.pop();
        pos_headers.push(format!("Bearer {}", c.token).into_bytes());
        pos_headers.push(format!("Bearer kt_{}", "a".repeat(10 * 1024)).into_bytes());
        for (m, p) in pos_paths {
            for h in &pos_headers {
                let r = app.send_raw_auth(m, p, h).await;
                assert_error(
                    &format!(
                        "{l} {m} {p} {:?}",
                        String::from_utf8_lossy(&h[..h.len().min(40)])
                    ),
                    &r,
                    401,
                    "authentication_error",
                    "unauthenticated",
                );
            }
        }
        let r = app
            .send(
                "POST",
                "/v1/pos/payments",
                Some(&c.token),
                Some("k"),
                Some(payment_body(&app.offline_code(&c, 0), 100, "o")),
            )
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
        // The real credentials do work, so the refusals above are about the credentials.
        assert_eq!(
            app.send("GET", "/v1/wallet", Some(&c.token), None, None)
                .await
                .status,
            200,
            "{l}"
        );
        assert_eq!(app.get_payment(&term, "pay_x").await.status, 404, "{l}");
        let h = app
            .http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .expect("healthz");
        assert_eq!(h.status().as_u16(), 200, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_token_is_dead() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("eve@example.com").await;
        let other = app.login_new_device(&c).await;
        let r = app
            .send("DELETE", "/v1/sessions/current", Some(&c.token), None, None)
            .await;
        assert_eq!(r.status, 204, "{l}: {}", r.text);
        for (m, p) in [
            ("GET", "/v1/wallet"),
            ("POST", "/v1/payment-codes"),
            ("DELETE", "/v1/sessions/current"),
        ] {
            let r = app.send(m, p, Some(&c.token), None, None).await;
            assert_error(
                &format!("{l} {m} {p}"),
                &r,
                401,
                "authentication_error",
                "unauthenticated",
            );
        }
        // Only that session ended.
        assert_eq!(
            app.send("GET", "/v1/wallet", Some(&other.token), None, None)
                .await
                .status,
            200,
            "{l}"
        );
        // Sessions also end on their own: 30 minutes idle.
        app.clock.advance_ms(30 * 60 * 1000);
        let r = app
            .send("GET", "/v1/wallet", Some(&other.token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_loses_its_session_and_its_codes() {
    for app in apps().await {
        let l = app.label;
        let (phone, _) = app.funded_customer("fay@example.com", 10_000).await;
        let laptop = app.login_new_device(&phone).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        // A code the phone shows now, before it is revoked.
        let shown = app.offline_code(&phone, 0);
        let r = app
            .send(
                "DELETE",
                &format!("/v1/devices/{}", phone.device_id),
                Some(&laptop.token),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{l}: {}", r.text);
        let r = app
            .send("GET", "/v1/wallet", Some(&phone.token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
        let p = app.pay(&term, &shown, 100, "k1").await;
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
        app.clock.advance_ms(1_000);
        let p = app
            .pay(&term, &app.offline_code(&phone, 1), 100, "k2")
            .await;
        assert_eq!(p.body["decline_code"], "invalid_code", "{l}: {}", p.text);
        // Device credentials of the revoked device do not bring it back: it is a new device,
        // which needs a second factor.
        let r = app.send("POST", "/v1/sessions", None, None, Some(json!({"email": phone.email, "password": phone.password, "device": {"id": phone.device_id, "secret": phone.device_secret}}))).await;
        assert_eq!(r.status, 202, "{l}: {}", r.text);
        assert_eq!(
            r.body["status"], "second_factor_required",
            "{l}: {}",
            r.text
        );
        assert!(r.body.get("token").is_none(), "{l}: no session: {}", r.text);
        // The other device is unaffected.
        let devices = app
            .send("GET", "/v1/devices", Some(&laptop.token), None, None)
            .await;
        assert!(
            !devices.text.contains(&phone.device_id) && devices.text.contains(&laptop.device_id),
            "{l}: {}",
            devices.text
        );
        let p = app
            .pay(&term, &app.offline_code(&laptop, 0), 100, "k3")
            .await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(app.balance(&laptop).await, 9_900, "{l}");
        let r = app
            .send(
                "DELETE",
                &format!("/v1/devices/{}", phone.device_id),
                Some(&laptop.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_signup_do_not_tell_who_is_registered() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("gil@example.com").await;
        let login = |email: &str, password: &str| {
            app.send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": email, "password": password})),
            )
        };
        let wrong_password = login(&c.email, "not the right password").await;
        let unknown_email = login("nobody@example.com", "not the right password").await;
        let bad_email = login("not an email", "not the right password").await;
        assert_error(
            l,
            &wrong_password,
            401,
            "authentication_error",
            "invalid_credentials",
        );
        for r in [&unknown_email, &bad_email] {
            assert_eq!(
                (r.status, &r.text),
                (wrong_password.status, &wrong_password.text),
                "{l}"
            );
        }
        // Case and surrounding spaces do not make a second account, and are not a hint either.
        let signup = |email: &str| {
            app.send("POST", "/v1/signup", None, None, Some(json!({"email": email, "phone": "+819000000000", "password": "another long password"})))
        };
        let existing = signup("gil@example.com").await;
        let existing_variant = signup("  GIL@example.com ").await;
        let fresh = signup("hal@example.com").await;
        assert_eq!(fresh.status, 202, "{l}: {}", fresh.text);
        for r in [&existing, &existing_variant] {
            assert_eq!(
                (r.status, scrub(&r.body)),
                (fresh.status, scrub(&fresh.body)),
                "{l}"
            );
        }
        // Registration happens after the answer; wait for the new address's code.
        app.email_code("hal@example.com", "sign-up code", 0).await;
        // The existing account kept its password: the sign-up attempt did not take it over.
        let r = login("gil@example.com", "another long password").await;
        assert_eq!(
            (r.status, &r.text),
            (wrong_password.status, &wrong_password.text),
            "{l}"
        );
        // The right password from this new client: a second factor is needed.
        let r = login("GIL@example.com", &c.password).await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some("second_factor_required")),
            "{l}"
        );
        // The unverified account gets its codes again instead of a session.
        let r = login("hal@example.com", "another long password").await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (202, Some("verification_required")),
            "{l}"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM customers").await, 2, "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_codes_are_declined_and_do_not_burn_the_real_ones() {
    use konbini_core::paycode::{generate, step_of};
    for app in apps().await {
        let l = app.label;
        let (a, _) = app.funded_customer("ivy@example.com", 10_000).await;
        let (b, _) = app.funded_customer("jay@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let step = step_of(app.clock_ms());
        let free_slot = (0..u32::MAX)
            .map(|i| (a.slot + 1 + i) % 100_000_000)
            .find(|s| *s != a.slot && *s != b.slot)
            .unwrap_or(0);
        let forged = [
            (
                "wrong key, A's slot, d=9",
                generate(&[0x55; 32], a.slot, step, 9),
            ),
            ("B's key, A's slot", generate(&b.code_key, a.slot, step, 9)),
            ("A's key, B's slot", generate(&a.code_key, b.slot, step, 9)),
            (
                "A's key, a slot nobody holds",
                generate(&a.code_key, free_slot, step, 0),
            ),
            (
                "A's key, previous-previous step",
                generate(&a.code_key, a.slot, step - 2, 0),
            ),
        ];
        for (i, (what, code)) in forged.iter().enumerate() {
            let p = app
                .pay(&term, &code.to_string(), 1_000, &format!("f{i}"))
                .await;
            assert_eq!(
                (
                    p.status,
                    p.body["status"].as_str(),
                    p.body["decline_code"].as_str()
                ),
                (201, Some("declined"), Some("invalid_code")),
                "{l} {what}: {}",
                p.text
            );
            assert_eq!(p.body["funding"], serde_json::Value::Null, "{l}");
        }
        assert_eq!(
            (app.balance(&a).await, app.balance(&b).await),
            (10_000, 10_000),
            "{l}"
        );
        // Three failures for A's slot at this till: the till stops checking A's codes for the
        // window (a guesser gets nowhere), without spending them...
        let p = app
            .pay(&term, &app.offline_code(&a, 0), 1_000, "a0-throttled")
            .await;
        assert_eq!(p.body["decline_code"], "invalid_code", "{l}: {}", p.text);
        // ...and any other till still accepts A. None of the forgeries advanced A's or B's
        // counters: their lowest codes still work.
        let (_, other_till) = app.store_with_terminal("st_2").await;
        let p = app
            .pay(&other_till, &app.offline_code(&a, 0), 1_000, "a0")
            .await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        let p = app.pay(&term, &app.offline_code(&b, 0), 1_000, "b0").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        assert_eq!(
            (app.balance(&a).await, app.balance(&b).await),
            (9_000, 9_000),
            "{l}"
        );
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_card_number_never_comes_back() {
    for app in apps_with(|c| c.limits.confirm_at_or_above_minor = 3_000).await {
        let l = app.label;
        let c = app.customer("kai@example.com").await;
        let (_, term) = app.store_with_terminal("st_1").await;
        let mut seen = Vec::new();
        let link = app
            .send(
                "POST",
                "/v1/cards",
                Some(&c.token),
                None,
                Some(json!({"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": "123"})),
            )
            .await;
        assert_eq!(link.status, 201, "{l}");
        let card = id_of(&link);
        seen.push(link);
        seen.push(app.top_up(&c, &card, 10_000, "t1").await);
        seen.push(
            app.send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": card})),
            )
            .await,
        );
        app.clock.advance_ms(1_000);
        seen.push(app.pay(&term, &app.offline_code(&c, 0), 500, "p1").await);
        seen.push(
            app.send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "wallet"})),
            )
            .await,
        );
        app.clock.advance_ms(1_000);
        let pending = app.pay(&term, &app.offline_code(&c, 1), 4_000, "p2").await;
        seen.push(
            app.send("GET", "/v1/payments/pending", Some(&c.token), None, None)
                .await,
        );
        seen.push(app.get_payment(&term, &id_of(&pending)).await);
        seen.push(pending);
        for path in ["/v1/cards", "/v1/transactions", "/v1/wallet", "/v1/devices"] {
            seen.push(app.send("GET", path, Some(&c.token), None, None).await);
        }
        // Mistakes that carry the number in odd places are answered without echoing it.
        for body in [
            json!({"number": PAN.parse::<u64>().unwrap_or(0), "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
            json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2030, "cvc": "123"}),
            json!({"number": PAN, "exp_month": PAN, "exp_year": 2030, "cvc": "123"}),
            json!({"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": PAN.parse::<u64>().unwrap_or(0)}),
            json!({"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": "123", "4242424242424242": 1}),
            json!({"pan": PAN}),
        ] {
            let r = app
                .send("POST", "/v1/cards", Some(&c.token), None, Some(body))
                .await;
            assert!(r.status >= 400, "{l}: {}", r.text);
            assert_error_shape(l, &r);
            seen.push(r);
        }
        let r = app
            .send(
                "POST",
                "/v1/topups",
                Some(&c.token),
                Some("t2"),
                Some(json!({"amount": 100, "currency": "JPY", "card_id": PAN})),
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        seen.push(r);
        assert!(seen.len() > 15, "{l}");
        for r in &seen {
            assert!(
                !r.text.contains(PAN),
                "{l}: the card number is in a response: {}",
                r.text
            );
            assert!(
                !r.text.contains("424242424242"),
                "{l}: most of the card number is in a response: {}",
                r.text
            );
            assert!(!r.text.contains("4242424242424241"), "{l}: {}", r.text);
        }
        // The masked form is what the customer gets.
        assert!(
            seen[0].text.contains("\"last4\":\"4242\""),
            "{l}: {}",
            seen[0].text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_guessing_codes_is_throttled() {
    for app in apps_with(|c| c.max_code_failures_per_terminal = 5).await {
        let l = app.label;
        let (victim, _) = app.funded_customer("guess-victim@example.com", 5_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        let (_, other) = app.store_with_terminal("st_2").await;
        app.clock.advance_ms(1_000);
        let step = konbini_core::paycode::step_of(app.clock_ms());
        // Guesses spread over many slots (so the per-slot rule never triggers).
        for i in 0..5u32 {
            let guess = konbini_core::paycode::generate(&[i as u8; 32], 10_000_000 + i, step, 0);
            let p = app
                .pay(&term, &guess.to_string(), 100, &format!("g{i}"))
                .await;
            assert_eq!(p.body["decline_code"], "invalid_code", "{l}: {}", p.text);
        }
        let p = app
            .pay(&term, &app.offline_code(&victim, 0), 100, "g-next")
            .await;
        assert_error(l, &p, 429, "rate_limit_error", "too_many_invalid_codes");
        assert!(p.text.len() < 400, "{l}");
        // The throttle is per terminal: the customer pays at another till, with the same code.
        let p = app
            .pay(&other, &app.offline_code(&victim, 0), 100, "ok")
            .await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        // After the window the terminal works again.
        app.clock.advance_ms(10 * 60 * 1000 + 1_000);
        let p = app
            .pay(&term, &app.offline_code(&victim, 0), 100, "later")
            .await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guessing_is_throttled_without_locking_out_the_owner() {
    for app in apps().await {
        let l = app.label;
        let victim = app.customer(&format!("victim-{l}@example.com")).await;
        let guess = |email: &str, pw: &str| json!({"email": email, "password": pw});
        // Five wrong guesses from a device that is not bound to the account...
        for i in 0..5 {
            let r = app
                .send(
                    "POST",
                    "/v1/sessions",
                    None,
                    None,
                    Some(guess(&victim.email, &format!("wrong guess number {i}"))),
                )
                .await;
            assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
        }
        // ...and even the right password from a new device waits.
        let r = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(guess(&victim.email, &victim.password)),
            )
            .await;
        assert_error(l, &r, 429, "rate_limit_error", "too_many_attempts");
        // An unknown address behaves exactly the same (no enumeration through throttling).
        for i in 0..5 {
            let r = app
                .send(
                    "POST",
                    "/v1/sessions",
                    None,
                    None,
                    Some(guess(
                        "nobody-at-all@example.com",
                        &format!("wrong guess number {i}"),
                    )),
                )
                .await;
            assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
        }
        let r = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(guess("nobody-at-all@example.com", "whatever it is")),
            )
            .await;
        assert_error(l, &r, 429, "rate_limit_error", "too_many_attempts");
        // The owner's bound phone still signs in (the attacker cannot lock the owner out).
        let own = json!({"email": victim.email, "password": victim.password, "device": {"id": victim.device_id, "secret": victim.device_secret}});
        let r = app
            .send("POST", "/v1/sessions", None, None, Some(own))
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(r.body["device"]["new"], false, "{l}");
        // After the window, a new device may try again (and is asked for a second factor).
        app.clock.advance_ms(15 * 60 * 1000 + 1_000);
        let r = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(guess(&victim.email, &victim.password)),
            )
            .await;
        assert_eq!(r.status, 202, "{l}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_stuffing_from_one_address_is_stopped_and_long_runs_lock_the_account() {
    for app in apps_with(|c| {
        c.login_failures_per_ip = 8;
        c.login_lockout_after = 10;
    })
    .await
    {
        let l = app.label;
        let victim = app.customer(&format!("stuffed-{l}@example.com")).await;
        // Spraying many accounts from one address: each account sees few failures, the
        // address sees them all.
        for i in 0..8 {
            let r = app.send("POST", "/v1/sessions", None, None, Some(json!({"email": format!("list-{i}@example.com"), "password": "leaked password 123"}))).await;
            assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
        }
        let r = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": victim.email, "password": victim.password})),
            )
            .await;
        assert_error(l, &r, 429, "rate_limit_error", "too_many_attempts");
        // A slow attacker under every window still hits the consecutive-failure lock.
        for round in 0..10 {
            app.clock.advance_ms(16 * 60 * 1000);
            let r = app
                .send(
                    "POST",
                    "/v1/sessions",
                    None,
                    None,
                    Some(json!({"email": victim.email, "password": format!("slow guess {round}")})),
                )
                .await;
            assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
        }
        app.clock.advance_ms(16 * 60 * 1000);
        let r = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": victim.email, "password": victim.password})),
            )
            .await;
        assert_error(l, &r, 429, "rate_limit_error", "too_many_attempts");
        // The owner's bound device is still let in.
        let own = json!({"email": victim.email, "password": victim.password, "device": {"id": victim.device_id, "secret": victim.device_secret}});
        assert_eq!(
            app.send("POST", "/v1/sessions", None, None, Some(own))
                .await
                .status,
            201,
            "{l}"
        );
    }
}
