//! Test harness: the real server on a random port, over a fresh database (SQLite, and
//! PostgreSQL when `KONBINI_TEST_PG_URL` is set), driven over HTTP with reqwest.
#![allow(dead_code)]

use konbini_core::encoding::unhex;
use konbini_core::paycode;
use konbini_server::clock::ManualClock;
use konbini_server::config::Config;
pub use konbini_server::devsinks::{MailSink, SmsSink};
use konbini_server::secrets::{MasterSecret, new_token, token_hash};
use konbini_server::state::AppState;
use konbini_store::stores::{self, Store, Terminal};
use konbini_store::{Db, StoreError};
use serde_json::{Value, json};
use std::sync::Arc;

/// A running server.
pub struct TestApp {
    pub label: &'static str,
    pub base: String,
    pub db: Db,
    pub url: String,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    /// The SMTP server and SMS gateway this server delivers to (real local sockets).
    pub mail: MailSink,
    pub sms: SmsSink,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A fixed start time on a 30-second boundary (2026-11-25T00:00:00Z).
pub const T0_MS: i64 = 1_795_564_800_000;

/// Starts one server per backend with the default config (adjusted by `tweak`), each with
/// its own mail and SMS sinks. Per-client request limits are raised (every test client is
/// 127.0.0.1); the tests of those limits set them back.
pub async fn apps_with(tweak: impl Fn(&mut Config)) -> Vec<TestApp> {
    let mut out = Vec::new();
    for t in konbini_store::testing::databases() {
        let mut cfg = Config {
            signups_per_ip: 100_000,
            signups_per_network: 100_000,
            recoveries_per_ip: 100_000,
            recoveries_per_network: 100_000,
            challenges_per_account: 1_000,
            dispatch_interval_ms: 50,
            tier_limits: generous_tier_limits(),
            ..Config::default()
        };
        tweak(&mut cfg);
        out.push(start(t.label, t.db, t.url, cfg).await);
    }
    out
}

pub async fn apps() -> Vec<TestApp> {
    apps_with(|_| {}).await
}

pub async fn start(label: &'static str, db: Db, url: String, mut cfg: Config) -> TestApp {
    let (mail, smtp_url) = MailSink::start().await.expect("mail sink");
    let (sms, sms_url) = SmsSink::start().await.expect("sms sink");
    cfg.smtp_url.get_or_insert(smtp_url);
    cfg.sms_url.get_or_insert(sms_url);
    let clock = ManualClock::new(T0_MS);
    let secret = MasterSecret::new(vec![7u8; 32]).expect("secret");
    let state = AppState::new(db.clone(), cfg, Arc::new(clock.clone()), secret).expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = konbini_server::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        label,
        base,
        db,
        url,
        clock,
        http: reqwest::Client::new(),
        mail,
        sms,
        shutdown: Some(tx),
    }
}

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    /// The Content-Type header ("" when absent).
    pub content_type: String,
}

impl Resp {
    pub async fn read(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let content_type = r
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            text,
            content_type,
        }
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rq = self.http.request(m, format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            rq = rq.bearer_auth(b);
        }
        if let Some(k) = idem {
            rq = rq.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.expect("request");
        Resp::read(r).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        idem: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut rq = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(b) = bearer {
            rq = rq.bearer_auth(b);
        }
        if let Some(k) = idem {
            rq = rq.header("Idempotency-Key", k);
        }
        let r = rq.send().await.expect("request");
        Resp::read(r).await
    }

    /// Signs up a customer and verifies both contact points with the codes read out of the
    /// delivered email and SMS; returns it with the device the verification bound.
    pub async fn customer(&self, email: &str) -> Customer {
        let (phone, r) = self.verified_sign_up(email, json!({})).await;
        assert_eq!(r.status, 201, "{}: verify {}", self.label, r.text);
        customer_from(email, &phone, "correct horse battery staple", &r)
    }

    /// Signs up and sends the verification with both codes plus the fields of `extra` (such
    /// as `installation_id`); returns the phone and the verification's answer.
    pub async fn verified_sign_up(&self, email: &str, extra: Value) -> (String, Resp) {
        let (phone, body) = self.sign_up_to_verify(email, extra).await;
        let r = self
            .send("POST", "/v1/signup/verify", None, None, Some(body))
            .await;
        (phone, r)
    }

    /// Signs up `email` up to its verification: returns the phone and the body of
    /// `POST /v1/signup/verify` (both codes, with the fields of `extra`), not yet sent.
    pub async fn sign_up_to_verify(&self, email: &str, extra: Value) -> (String, Value) {
        let password = "correct horse battery staple";
        let phone = phone_for(email);
        let seen = |v: Vec<String>| v.iter().filter(|m| m.contains("sign-up code")).count();
        let (mails, texts) = (seen(self.mail.to(email)), seen(self.sms.to(&phone)));
        let r = self.sign_up(email, &phone, password).await;
        assert_eq!(r.status, 202, "{}: signup {}", self.label, r.text);
        let signup_id = r.body["signup_id"].as_str().expect("signup id").to_string();
        let email_code = self.email_code(email, "sign-up code", mails).await;
        let phone_code = self.sms_code(&phone, "sign-up code", texts).await;
        let mut body =
            json!({"signup_id": signup_id, "email_code": email_code, "phone_code": phone_code});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        (phone, body)
    }

    pub async fn sign_up(&self, email: &str, phone: &str, password: &str) -> Resp {
        self.send(
            "POST",
            "/v1/signup",
            None,
            None,
            Some(json!({"email": email, "phone": phone, "password": password})),
        )
        .await
    }

    /// Waits for the `nth` (0-based) email to `to` containing `needle` and returns the
    /// 6-digit code in it.
    pub async fn email_code(&self, to: &str, needle: &str, nth: usize) -> String {
        let msg = self.email(to, needle, nth).await;
        konbini_server::devsinks::find_code(&msg, 6).unwrap_or_else(|| panic!("no code in {msg}"))
    }

    /// Waits for the `nth` (0-based) SMS to `to` containing `needle`; returns its 6-digit code.
    pub async fn sms_code(&self, to: &str, needle: &str, nth: usize) -> String {
        let msg = self.text(to, needle, nth).await;
        konbini_server::devsinks::find_code(&msg, 6).unwrap_or_else(|| panic!("no code in {msg}"))
    }

    /// Waits for the `nth` (0-based) email to `to` containing `needle`.
    pub async fn email(&self, to: &str, needle: &str, nth: usize) -> String {
        for _ in 0..400 {
            let got: Vec<String> = self
                .mail
                .to(to)
                .into_iter()
                .filter(|m| m.contains(needle))
                .collect();
            if let Some(m) = got.get(nth) {
                return m.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "{}: no email {nth} to {to} with '{needle}': {:?}",
            self.label,
            self.mail.to(to)
        );
    }

    /// Waits for the `nth` (0-based) SMS to `to` containing `needle`.
    pub async fn text(&self, to: &str, needle: &str, nth: usize) -> String {
        for _ in 0..400 {
            let got: Vec<String> = self
                .sms
                .to(to)
                .into_iter()
                .filter(|m| m.contains(needle))
                .collect();
            if let Some(m) = got.get(nth) {
                return m.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "{}: no SMS {nth} to {to} with '{needle}': {:?}",
            self.label,
            self.sms.to(to)
        );
    }

    /// Starts a recovery for `c` and returns (recovery id, email token, SMS code), read out
    /// of the messages that reached its verified email and phone.
    pub async fn start_recovery(&self, c: &Customer) -> (String, String, String) {
        let count = |v: Vec<String>, needle: &str| v.iter().filter(|m| m.contains(needle)).count();
        let (mails, texts) = (
            count(self.mail.to(&c.email), "recovery token"),
            count(self.sms.to(&c.phone), "recovery code"),
        );
        let r = self
            .send(
                "POST",
                "/v1/recovery",
                None,
                None,
                Some(json!({"identifier": c.email})),
            )
            .await;
        assert_eq!(r.status, 202, "{}: {}", self.label, r.text);
        let id = r.body["recovery_id"].as_str().expect("id").to_string();
        let mail = self.email(&c.email, "recovery token", mails).await;
        let sms = self.sms_code(&c.phone, "recovery code", texts).await;
        (id, link_token(&mail, "/recover#token="), sms)
    }

    /// Logs in with `email` on the customer's own bound device (no second factor needed);
    /// returns the new session's token.
    pub async fn bound_session(&self, c: &Customer, email: &str) -> String {
        let r = self
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": email, "password": c.password, "device": {"id": c.device_id, "secret": c.device_secret}})),
            )
            .await;
        assert_eq!(r.status, 201, "{}: {}", self.label, r.text);
        r.body["token"].as_str().expect("token").to_string()
    }

    /// Logs in from a new device: the password answers with a challenge, and the SMS code
    /// sent to the verified phone binds the device (its own slot and code key) and opens a
    /// new session for the same customer.
    pub async fn login_new_device(&self, c: &Customer) -> Customer {
        let r = self.login_new_device_with(c, json!({})).await;
        assert_eq!(r.status, 201, "{}: second factor {}", self.label, r.text);
        customer_from(&c.email, &c.phone, &c.password, &r)
    }

    /// Signs in from a new device with the fields of `extra` (such as `installation_id`) and
    /// completes the SMS second factor; returns the second factor's answer.
    pub async fn login_new_device_with(&self, c: &Customer, extra: Value) -> Resp {
        let seen = self
            .sms
            .to(&c.phone)
            .iter()
            .filter(|m| m.contains("sign-in code"))
            .count();
        let r = self
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some({
                    let mut b = json!({"email": c.email, "password": c.password});
                    if let (Some(b), Some(e)) = (b.as_object_mut(), extra.as_object()) {
                        b.extend(e.clone());
                    }
                    b
                }),
            )
            .await;
        assert_eq!(r.status, 202, "{}: login {}", self.label, r.text);
        assert_eq!(r.body["status"], "second_factor_required", "{}", self.label);
        let challenge = r.body["challenge"].as_str().expect("challenge").to_string();
        let code = self.sms_code(&c.phone, "sign-in code", seen).await;
        self.send(
            "POST",
            "/v1/sessions/second-factor",
            None,
            None,
            Some(json!({"challenge": challenge, "method": "sms", "code": code})),
        )
        .await
    }

    /// A customer with a linked test card and `balance` topped up.
    pub async fn funded_customer(&self, email: &str, balance: i64) -> (Customer, String) {
        let c = self.customer(email).await;
        let card = self.link_card(&c, "4242424242424242").await;
        let mut left = balance;
        let mut i = 0;
        while left > 0 {
            let amt = left.min(30_000);
            let r = self
                .send(
                    "POST",
                    "/v1/topups",
                    Some(&c.token),
                    Some(&format!("fund-{i}")),
                    Some(json!({"amount": amt, "currency": "JPY", "card_id": card})),
                )
                .await;
            assert_eq!(r.status, 201, "{}: topup {}", self.label, r.text);
            left -= amt;
            i += 1;
        }
        (c, card)
    }

    pub async fn link_card(&self, c: &Customer, number: &str) -> String {
        let r = self
            .send(
                "POST",
                "/v1/cards",
                Some(&c.token),
                None,
                Some(json!({"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"})),
            )
            .await;
        assert_eq!(r.status, 201, "{}: link card {}", self.label, r.text);
        r.body["id"].as_str().expect("card id").to_string()
    }

    /// Creates a store with one terminal directly in the database (as `konbini store add` /
    /// `konbini terminal add` do); returns (store id, terminal key).
    pub async fn store_with_terminal(&self, store_id: &str) -> (String, String) {
        self.store_at(store_id, None).await
    }

    /// A store at `at` (microdegrees of latitude and longitude) with one terminal.
    pub async fn store_at(&self, store_id: &str, at: Option<(i64, i64)>) -> (String, String) {
        let key = new_token("kt");
        let (sid, hash) = (store_id.to_string(), token_hash(&key));
        let now = self.clock_ms();
        let _: () = self
            .db
            .write(move |c| {
                stores::insert_store(
                    c,
                    &Store {
                        id: sid.clone(),
                        name: format!("Store {sid}"),
                        region: "tokyo".into(),
                        created_ms: now,
                        lat_e6: at.map(|a| a.0),
                        lon_e6: at.map(|a| a.1),
                    },
                )?;
                stores::insert_terminal(
                    c,
                    &Terminal {
                        id: format!("term_{sid}"),
                        store_id: sid.clone(),
                        key_hash: hash.clone(),
                        label: "till 1".into(),
                        status: "active".into(),
                        created_ms: now,
                    },
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .expect("store");
        (store_id.to_string(), key)
    }

    pub fn clock_ms(&self) -> i64 {
        use konbini_server::clock::Clock;
        self.clock.now_ms()
    }

    /// The code the phone would show now (sub-index `d`), made offline from its key.
    pub fn offline_code(&self, c: &Customer, d: u8) -> String {
        paycode::generate(&c.code_key, c.slot, paycode::step_of(self.clock_ms()), d).to_string()
    }

    /// Charges `amount` (one basket line) with `code` at a terminal.
    pub async fn pay(&self, terminal_key: &str, code: &str, amount: i64, idem: &str) -> Resp {
        self.send("POST", "/v1/pos/payments", Some(terminal_key), Some(idem), Some(json!({
            "code": code, "amount": amount, "currency": "JPY", "order_ref": format!("order-{idem}"),
            "basket": [{"sku": "4901234567894", "category": "food", "quantity": 1, "unit_price": amount}]
        }))).await
    }

    pub async fn wallet(&self, c: &Customer) -> Value {
        let r = self
            .send("GET", "/v1/wallet", Some(&c.token), None, None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    }

    /// Tops up `amount` from `card` with idempotency key `key`.
    pub async fn top_up(&self, c: &Customer, card: &str, amount: i64, key: &str) -> Resp {
        self.send(
            "POST",
            "/v1/topups",
            Some(&c.token),
            Some(key),
            Some(json!({"amount": amount, "currency": "JPY", "card_id": card})),
        )
        .await
    }

    /// The wallet's (balance, held, available).
    pub async fn balances(&self, c: &Customer) -> (i64, i64, i64) {
        let w = self.wallet(c).await;
        let n = |k: &str| {
            w[k].as_i64()
                .unwrap_or_else(|| panic!("{}: wallet.{k} in {w}", self.label))
        };
        (n("balance"), n("held"), n("available"))
    }

    pub async fn balance(&self, c: &Customer) -> i64 {
        self.balances(c).await.0
    }

    /// A code issued online by `POST /v1/payment-codes` for the customer's session device.
    pub async fn online_code(&self, c: &Customer) -> String {
        let r = self
            .send("POST", "/v1/payment-codes", Some(&c.token), None, None)
            .await;
        assert_eq!(r.status, 201, "{}: issue code {}", self.label, r.text);
        r.body["code"].as_str().expect("code").to_string()
    }

    /// A request with a raw `Authorization` header value (any bytes).
    pub async fn send_raw_auth(&self, method: &str, path: &str, authorization: &[u8]) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let v = reqwest::header::HeaderValue::from_bytes(authorization).expect("header value");
        let r = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .header(reqwest::header::AUTHORIZATION, v)
            .send()
            .await
            .expect("request");
        Resp::read(r).await
    }

    /// Runs a `SELECT COUNT(*) ...` (or any one-integer query) on the database.
    pub async fn count(&self, sql: &'static str) -> i64 {
        self.db
            .read(move |c| c.query_one(sql, konbini_store::params![])?.int(0))
            .await
            .expect("count query")
    }

    /// `GET /v1/pos/payments/{id}` as `terminal_key`.
    pub async fn get_payment(&self, terminal_key: &str, id: &str) -> Resp {
        self.send(
            "GET",
            &format!("/v1/pos/payments/{id}"),
            Some(terminal_key),
            None,
            None,
        )
        .await
    }

    pub async fn ledger_ok(&self) {
        let report = self
            .db
            .read(konbini_store::ledger::verify)
            .await
            .expect("verify");
        assert!(
            report.ok(),
            "{}: ledger verify failed: {:?}",
            self.label,
            report.problems
        );
    }
}

/// The token after `marker` in a message (`/recover#token=`, `/revert#token=`).
pub fn link_token(message: &str, marker: &str) -> String {
    let at = message
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {message}"));
    message[at + marker.len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

/// Tier limits far above anything a test moves, so that only the tests of the limits (which
/// set `TierLimits::default()`) meet them.
pub fn generous_tier_limits() -> konbini_core::risk::TierLimits {
    use konbini_core::risk::{Allowance, TierAllowance, TierLimits};
    let big = Allowance {
        per_transaction_minor: 10_000_000,
        per_day_minor: 100_000_000,
        per_month_minor: 1_000_000_000,
    };
    let tier = TierAllowance {
        topup: big,
        payment: big,
    };
    TierLimits {
        new: tier,
        verified: tier,
        established: tier,
    }
}

/// A body with the values that differ on every call (flow handles, expiry times) blanked,
/// to compare answers that must not tell two cases apart.
pub fn scrub(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["signup_id", "recovery_id", "challenge", "expires_at_ms"] {
            if let Some(x) = o.get_mut(k) {
                *x = json!("<varies>");
            }
        }
    }
    v
}

/// A distinct Japanese mobile number per email, so customers never share a phone.
pub fn phone_for(email: &str) -> String {
    let h = token_hash(email);
    let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 100_000_000;
    format!("+8190{n:08}")
}

/// The customer and device in a 201 session answer (sign-up verification or second factor).
pub fn customer_from(email: &str, phone: &str, password: &str, r: &Resp) -> Customer {
    let d = &r.body["device"];
    let key_hex = d["payment_code"]["key"].as_str().expect("code key");
    let key: [u8; 32] = unhex(key_hex).expect("hex").try_into().expect("32 bytes");
    Customer {
        email: email.to_string(),
        phone: phone.to_string(),
        password: password.to_string(),
        token: r.body["token"].as_str().expect("token").to_string(),
        customer_id: r.body["customer_id"].as_str().expect("id").to_string(),
        device_id: d["id"].as_str().expect("device id").to_string(),
        device_secret: d["secret"].as_str().expect("device secret").to_string(),
        slot: d["payment_code"]["slot"].as_u64().expect("slot") as u32,
        code_key: key,
    }
}

/// A signed-up, logged-in customer with its bound device.
#[derive(Debug, Clone)]
pub struct Customer {
    pub email: String,
    pub phone: String,
    pub password: String,
    pub token: String,
    pub customer_id: String,
    pub device_id: String,
    pub device_secret: String,
    pub slot: u32,
    pub code_key: [u8; 32],
}

/// The body of a POS payment with one basket line.
pub fn payment_body(code: &str, amount: i64, order_ref: &str) -> Value {
    json!({
        "code": code, "amount": amount, "currency": "JPY", "order_ref": order_ref,
        "basket": [{"sku": "4901234567894", "category": "food", "quantity": 1, "unit_price": amount}]
    })
}

/// The id of a created object.
pub fn id_of(r: &Resp) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.text))
        .to_string()
}

const ERROR_TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "rate_limit_error",
    "payment_error",
    "idempotency_error",
    "api_error",
];

/// Asserts that `r` is an error answered with the public error object, exactly:
/// `{"error": {"type", "code", "message"[, "param"]}}`, all strings, nothing else, as JSON.
pub fn assert_error_shape(label: &str, r: &Resp) {
    assert!(
        r.status >= 400,
        "{label}: expected an error status, got {}: {}",
        r.status,
        r.text
    );
    assert!(
        r.content_type.starts_with("application/json"),
        "{label}: error content-type {:?} for {} {}",
        r.content_type,
        r.status,
        r.text
    );
    let top = r.body.as_object().unwrap_or_else(|| {
        panic!(
            "{label}: error body is not a JSON object: {} {:?}",
            r.status, r.text
        )
    });
    assert_eq!(
        top.len(),
        1,
        "{label}: error body has extra keys: {}",
        r.text
    );
    let e = top
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("{label}: no error object: {}", r.text));
    for k in e.keys() {
        assert!(
            ["type", "code", "message", "param"].contains(&k.as_str()),
            "{label}: unexpected key {k} in {}",
            r.text
        );
    }
    for k in ["type", "code", "message"] {
        let v = e
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{label}: error.{k} missing or not a string: {}", r.text));
        assert!(!v.is_empty(), "{label}: error.{k} empty: {}", r.text);
    }
    if let Some(p) = e.get("param") {
        assert!(
            p.as_str().is_some_and(|p| !p.is_empty()),
            "{label}: error.param not a string: {}",
            r.text
        );
    }
    let kind = e["type"].as_str().unwrap_or("");
    assert!(
        ERROR_TYPES.contains(&kind),
        "{label}: unknown error type {kind}: {}",
        r.text
    );
}

/// Asserts the error object's shape, status, type and code.
pub fn assert_error(label: &str, r: &Resp, status: u16, kind: &str, code: &str) {
    assert_error_shape(label, r);
    let got = (
        r.status,
        r.body["error"]["type"].as_str().unwrap_or(""),
        r.error_code(),
    );
    assert_eq!(got, (status, kind, code), "{label}: {}", r.text);
}

/// Like [`assert_error`], and the error names `param`.
pub fn assert_error_param(label: &str, r: &Resp, status: u16, kind: &str, code: &str, param: &str) {
    assert_error(label, r, status, kind, code);
    assert_eq!(
        r.body["error"]["param"].as_str(),
        Some(param),
        "{label}: param in {}",
        r.text
    );
}

/// Serves `router` on a random local port; returns its base URL.
pub async fn serve_local(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// The card-processor simulator served over HTTP (so the server's real network client is
/// used), with the slow test card stalling `slow_ms`.
pub async fn simulator_over_http(slow_ms: u64) -> (konbini_server::processor::Simulator, String) {
    let sim = konbini_server::processor::Simulator::new(slow_ms);
    let url = serve_local(konbini_server::processor::simulator_router(sim.clone())).await;
    (sim, url)
}
