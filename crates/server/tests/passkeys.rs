//! Passkeys (WebAuthn through webauthn-rs), driven over HTTP by a software authenticator
//! (webauthn-authenticator-rs's `SoftPasskey`, which signs like a real one): registration,
//! binding a new device at log-in, recovery with a passkey, and the attacks — a passkey that
//! was never registered, a replayed assertion, a recovery that tries to skip it.

mod common;
use common::*;
use serde_json::{Value, json};
use webauthn_authenticator_rs::prelude::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

/// The origin the browser would report: the server's configured public URL.
fn origin() -> Url {
    Url::parse("http://localhost:8080").expect("url")
}

/// Registers a new passkey on `c`'s account; returns the authenticator that holds it.
async fn register(app: &TestApp, c: &Customer) -> SoftPasskey {
    let r = app
        .send("POST", "/v1/mfa/passkeys", Some(&c.token), None, None)
        .await;
    assert_eq!(r.status, 200, "{}: {}", app.label, r.text);
    let options: CreationChallengeResponse =
        serde_json::from_value(r.body["options"].clone()).expect("creation options");
    let mut key = SoftPasskey::new(true);
    let answer = key.do_registration(origin(), options).expect("register");
    let r = app
        .send(
            "POST",
            "/v1/mfa/passkeys/finish",
            Some(&c.token),
            None,
            Some(json!({"registration_id": r.body["registration_id"], "credential": answer, "name": "my phone"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}: {}", app.label, r.text);
    key
}

/// Registers a passkey and returns the authenticator and the answer's body.
async fn register_with_answer(app: &TestApp, c: &Customer) -> (SoftPasskey, Resp) {
    let r = app
        .send("POST", "/v1/mfa/passkeys", Some(&c.token), None, None)
        .await;
    assert_eq!(r.status, 200, "{}: {}", app.label, r.text);
    let options: CreationChallengeResponse =
        serde_json::from_value(r.body["options"].clone()).expect("creation options");
    let mut key = SoftPasskey::new(true);
    let answer = key.do_registration(origin(), options).expect("register");
    let done = app
        .send(
            "POST",
            "/v1/mfa/passkeys/finish",
            Some(&c.token),
            None,
            Some(json!({"registration_id": r.body["registration_id"], "credential": answer})),
        )
        .await;
    (key, done)
}

/// Signs `options` (from a passkey step) with `key`.
fn sign(key: &mut SoftPasskey, body: &Value) -> Value {
    let options: RequestChallengeResponse =
        serde_json::from_value(body["options"].clone()).expect("request options");
    serde_json::to_value(key.do_authentication(origin(), options).expect("assert")).expect("json")
}

async fn challenge(app: &TestApp, c: &Customer) -> Value {
    let r = app
        .send(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({"email": c.email, "password": c.password})),
        )
        .await;
    assert_eq!(r.status, 202, "{}: {}", app.label, r.text);
    r.body
}

async fn passkey_options(app: &TestApp, challenge: &Value) -> Resp {
    app.send(
        "POST",
        "/v1/sessions/second-factor/passkey",
        None,
        None,
        Some(json!({"challenge": challenge["challenge"]})),
    )
    .await
}

async fn answer(app: &TestApp, challenge: &Value, credential: &Value) -> Resp {
    app.send(
        "POST",
        "/v1/sessions/second-factor",
        None,
        None,
        Some(json!({"challenge": challenge["challenge"], "method": "passkey", "credential": credential})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_binds_a_new_device_and_a_stranger_or_a_replay_does_not() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer(&format!("pia-{l}@example.com")).await;
        // The first strong factor comes with recovery codes (for the day the passkey is lost).
        let (mut key, done) = register_with_answer(&app, &c).await;
        assert_eq!(done.status, 201, "{l}: {}", done.text);
        assert_eq!(
            done.body["recovery_codes"].as_array().map(Vec::len),
            Some(10),
            "{l}: {}",
            done.text
        );
        app.email(&c.email, "A passkey was added", 0).await;
        let listed = app
            .send("GET", "/v1/mfa/passkeys", Some(&c.token), None, None)
            .await;
        assert_eq!(listed.body["data"][0]["name"], "passkey", "{l}");
        // Log in on a new device: the challenge offers the passkey.
        let ch = challenge(&app, &c).await;
        assert_eq!(ch["methods"][0], "passkey", "{l}: {ch}");
        let opts = passkey_options(&app, &ch).await;
        assert_eq!(opts.status, 200, "{l}: {}", opts.text);
        let signed = sign(&mut key, &opts.body);
        let r = answer(&app, &ch, &signed).await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(r.body["device"]["new"], true, "{l}");
        // The same signed answer on a new challenge: a replay, refused.
        let ch2 = challenge(&app, &c).await;
        let opts2 = passkey_options(&app, &ch2).await;
        assert_eq!(opts2.status, 200, "{l}");
        let r = answer(&app, &ch2, &signed).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_code");
        // A passkey that was never registered on this account, answering the right
        // challenge: refused.
        let mut stranger = SoftPasskey::new(true);
        let other = app.customer(&format!("pia-other-{l}@example.com")).await;
        let _ = register(&app, &other).await; // the stranger's key is registered elsewhere
        let ch3 = challenge(&app, &c).await;
        let opts3 = passkey_options(&app, &ch3).await;
        let options: RequestChallengeResponse =
            serde_json::from_value(opts3.body["options"].clone()).expect("options");
        assert!(
            stranger.do_authentication(origin(), options).is_err(),
            "{l}: an authenticator without the credential cannot answer"
        );
        let forged = json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA"}});
        let r = answer(&app, &ch3, &forged).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_code");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM devices WHERE bound_by = 'passkey'")
                .await,
            1,
            "{l}"
        );
        // Removing it needs a recent sign-in AND a strong factor (a recovery code here).
        let id = listed.body["data"][0]["id"]
            .as_str()
            .expect("id")
            .to_string();
        let remove = |token: String, factor: Value| {
            let path = format!("/v1/mfa/passkeys/{id}/remove");
            let app = &app;
            async move {
                app.send("POST", &path, Some(&token), None, Some(factor))
                    .await
            }
        };
        let wrong = json!({"method": "recovery_code", "code": "AAAA-AAAA-AAAA-AAAA"});
        let r = remove(c.token.clone(), wrong.clone()).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_code");
        let r = remove(
            c.token.clone(),
            json!({"method": "passkey", "credential": {}}),
        )
        .await;
        assert_error(l, &r, 400, "invalid_request_error", "unsupported_factor");
        app.clock.advance_ms(6 * 60 * 1000);
        let r = remove(c.token.clone(), wrong).await;
        assert_error(
            l,
            &r,
            403,
            "authentication_error",
            "reauthentication_required",
        );
        let r = app
            .send(
                "POST",
                "/v1/sessions/current/reauthenticate",
                Some(&c.token),
                None,
                Some(json!({"password": c.password})),
            )
            .await;
        let fresh = r.body["token"].as_str().expect("token").to_string();
        let code = done.body["recovery_codes"][0].clone();
        let r = remove(fresh, json!({"method": "recovery_code", "code": code})).await;
        assert_eq!(r.status, 204, "{l}: {}", r.text);
        app.email(&c.email, "A passkey was removed", 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_of_a_passkey_account_needs_the_passkey_and_lifts_the_hold_limits() {
    for app in apps().await {
        let l = app.label;
        let (c, card) = app
            .funded_customer(&format!("rio-{l}@example.com"), 5_000)
            .await;
        let mut key = register(&app, &c).await;
        // Email token and SMS code are not enough for an account with a passkey.
        let (rid, token, sms) = app.start_recovery(&c).await;
        let complete = |proofs: Value| {
            let mut body = json!({"recovery_id": rid, "new_password": "a fresh passphrase 2026"});
            for (k, v) in proofs.as_object().expect("proofs") {
                body[k] = v.clone();
            }
            app.send("POST", "/v1/recovery/complete", None, None, Some(body))
        };
        let r = complete(json!({"email_token": token, "sms_code": sms})).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_proof");
        // The passkey step opens only after a first proof, so it cannot be used to learn
        // whether an account (or a passkey) exists.
        let r = app
            .send(
                "POST",
                "/v1/recovery/passkey",
                None,
                None,
                Some(json!({"recovery_id": rid})),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_proof");
        let fake = format!("krc_{}", "1".repeat(64));
        let r = app
            .send(
                "POST",
                "/v1/recovery/passkey",
                None,
                None,
                Some(json!({"recovery_id": fake, "email_token": token})),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_proof");
        let opts = app
            .send(
                "POST",
                "/v1/recovery/passkey",
                None,
                None,
                Some(json!({"recovery_id": rid, "email_token": token})),
            )
            .await;
        assert_eq!(opts.status, 200, "{l}: {}", opts.text);
        let signed = sign(&mut key, &opts.body);
        let r = complete(json!({"email_token": token, "passkey": signed})).await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        // Back in with the passkey: a strong factor, so the recovery hold does not limit
        // top-ups.
        let ch = challenge(
            &app,
            &Customer {
                password: "a fresh passphrase 2026".into(),
                ..c.clone()
            },
        )
        .await;
        let opts = passkey_options(&app, &ch).await;
        let r = answer(&app, &ch, &sign(&mut key, &opts.body)).await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let token = r.body["token"].as_str().expect("token").to_string();
        let top = app
            .send(
                "POST",
                "/v1/topups",
                Some(&token),
                Some("pk-top"),
                Some(json!({"amount": 1_000, "currency": "JPY", "card_id": card})),
            )
            .await;
        assert_eq!(top.status, 201, "{l}: {}", top.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factor_cannot_be_added_during_the_recovery_hold_to_lift_it() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer(&format!("lift-{l}@example.com")).await;
        let (rid, token, sms) = app.start_recovery(&c).await;
        let r = app
            .send("POST", "/v1/recovery/complete", None, None, Some(json!({"recovery_id": rid, "email_token": token, "sms_code": sms, "new_password": "a fresh passphrase 2026"})))
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        // Back in by SMS (not strong): adding a passkey or an authenticator app is refused,
        // since either would lift the hold's limits at the next sign-in.
        let seen = app
            .sms
            .to(&c.phone)
            .iter()
            .filter(|m| m.contains("sign-in code"))
            .count();
        let ch = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": c.email, "password": "a fresh passphrase 2026"})),
            )
            .await;
        let code = app.sms_code(&c.phone, "sign-in code", seen).await;
        let r = app
            .send(
                "POST",
                "/v1/sessions/second-factor",
                None,
                None,
                Some(json!({"challenge": ch.body["challenge"], "method": "sms", "code": code})),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let token = r.body["token"].as_str().expect("token").to_string();
        for path in ["/v1/mfa/passkeys", "/v1/mfa/totp", "/v1/mfa/recovery-codes"] {
            let r = app.send("POST", path, Some(&token), None, None).await;
            assert_error(l, &r, 403, "authentication_error", "recovery_hold");
        }
    }
}
