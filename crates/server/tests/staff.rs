//! Staff accounts: the admin API needs password AND a TOTP code, refuses replayed codes,
//! answers every failure alike, and ends sessions after 15 idle minutes.

mod common;
use common::*;
use konbini_core::totp;
use konbini_server::secrets::MasterSecret;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_needs_password_and_totp() {
    for app in apps().await {
        let l = app.label;
        // The harness's master secret (see common::start).
        let secret = MasterSecret::new(vec![7u8; 32]).expect("secret");
        let (db, now) = (app.db.clone(), app.clock_ms());
        let s2 = secret.clone();
        let created = tokio::task::spawn_blocking(move || {
            konbini_server::app::staff::create(
                &db,
                &s2,
                "Ops.Lead@Example.com",
                "Ops Lead",
                "security",
                now,
            )
        })
        .await
        .expect("join")
        .expect("create");
        assert!(created.totp_uri.starts_with("otpauth://totp/"), "{l}");
        let totp_secret = secret.staff_totp_secret(&created.id, 1);
        let code = |ms: i64| totp::code_at(&totp_secret, ms);
        let login = |pw: &str, code: String| json!({"email": "ops.lead@example.com", "password": pw, "totp": code});

        // Every failure looks the same.
        let wrong_code = format!(
            "{:06}",
            (code(app.clock_ms()).parse::<u32>().unwrap_or(0) + 1) % 1_000_000
        );
        let attempts = [
            login(&created.password, wrong_code),
            login("not the password at all", code(app.clock_ms())),
            json!({"email": "nobody@example.com", "password": created.password, "totp": code(app.clock_ms())}),
        ];
        let mut bodies = Vec::new();
        for a in attempts {
            let r = app
                .send("POST", "/v1/admin/sessions", None, None, Some(a))
                .await;
            assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
            bodies.push(r.text);
        }
        assert!(bodies.iter().all(|b| b == &bodies[0]), "{l}: {bodies:?}");
        let r = app
            .send(
                "POST",
                "/v1/admin/sessions",
                None,
                None,
                Some(json!({"email": "ops.lead@example.com", "password": created.password})),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");

        // Password + current code: a session.
        let c = code(app.clock_ms());
        let r = app
            .send(
                "POST",
                "/v1/admin/sessions",
                None,
                None,
                Some(login(&created.password, c.clone())),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let token = r.body["token"].as_str().expect("token").to_string();
        assert!(token.starts_with("kst_"), "{l}");
        let me = app
            .send("GET", "/v1/admin/me", Some(&token), None, None)
            .await;
        assert_eq!(
            (me.status, me.body["role"].as_str()),
            (200, Some("security")),
            "{l}: {}",
            me.text
        );
        // The same code again: refused (replay).
        let r = app
            .send(
                "POST",
                "/v1/admin/sessions",
                None,
                None,
                Some(login(&created.password, c)),
            )
            .await;
        assert_error(l, &r, 401, "authentication_error", "invalid_credentials");
        // Customer credentials do not open the admin API.
        let customer = app.customer(&format!("cust-{l}@example.com")).await;
        let r = app
            .send("GET", "/v1/admin/me", Some(&customer.token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");

        // Activity keeps the session; 15 idle minutes end it.
        app.clock.advance_ms(14 * 60 * 1000);
        assert_eq!(
            app.send("GET", "/v1/admin/me", Some(&token), None, None)
                .await
                .status,
            200,
            "{l}"
        );
        app.clock.advance_ms(15 * 60 * 1000 + 1);
        let r = app
            .send("GET", "/v1/admin/me", Some(&token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");

        // A fresh login with the next code, then logout ends it.
        let r = app
            .send(
                "POST",
                "/v1/admin/sessions",
                None,
                None,
                Some(login(&created.password, code(app.clock_ms()))),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let token = r.body["token"].as_str().expect("token").to_string();
        assert_eq!(
            app.send(
                "DELETE",
                "/v1/admin/sessions/current",
                Some(&token),
                None,
                None
            )
            .await
            .status,
            204,
            "{l}"
        );
        let r = app
            .send("GET", "/v1/admin/me", Some(&token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");

        // Staff actions are in the audit log: added, two logins, one logout.
        let staff_records = app
            .count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'staff.%'")
            .await;
        assert_eq!(staff_records, 4, "{l}");
        let report = app
            .db
            .read(konbini_store::audit::verify)
            .await
            .expect("verify");
        assert!(report.problems.is_empty(), "{l}: {:?}", report.problems);
        // A second staff member with the same email is refused; an unknown role too.
        let (db, s3) = (app.db.clone(), secret.clone());
        let dup = tokio::task::spawn_blocking(move || {
            konbini_server::app::staff::create(&db, &s3, "ops.lead@example.com", "x", "admin", now)
        })
        .await
        .expect("join");
        assert!(dup.is_err(), "{l}");
        let (db, s4) = (app.db.clone(), secret.clone());
        let bad = tokio::task::spawn_blocking(move || {
            konbini_server::app::staff::create(&db, &s4, "new@example.com", "x", "root", now)
        })
        .await
        .expect("join");
        assert!(bad.is_err(), "{l}");
    }
}
