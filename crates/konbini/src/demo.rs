//! `konbini demo`: a demo chain on a fresh SQLite database, served, with a scripted
//! walk-through of a payment that prints each step.

use konbini_server::clock::SystemClock;
use konbini_server::config::Config;
use konbini_server::devsinks::{MailSink, SmsSink};
use konbini_server::state::AppState;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// The demo's database, recreated on every run.
pub const DEMO_DB: &str = "konbini-demo.db";
/// The password of every demo customer.
pub const DEMO_PASSWORD: &str = "sakura-onigiri-2026";
const STORES: &[(&str, &str, &str, f64, f64)] = &[
    (
        "ST-SHIBUYA",
        "Konbini Shibuya Station",
        "tokyo",
        35.6580,
        139.7016,
    ),
    (
        "ST-SHINJUKU",
        "Konbini Shinjuku West",
        "tokyo",
        35.6909,
        139.6950,
    ),
    ("ST-UMEDA", "Konbini Umeda", "osaka", 34.7025, 135.4959),
];
const CUSTOMERS: &[(&str, &str)] = &[
    ("hanako@example.com", "+819011110001"),
    ("taro@example.com", "+819011110002"),
];

pub fn run(bind: &str, exit_after: bool) -> Result<ExitCode, String> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
    }
    let url = format!("sqlite://{DEMO_DB}");
    let secret = crate::settings::master_secret(None, None, &url)?;
    let db = crate::open_db(&url)?;
    let rt = crate::runtime()?;
    rt.block_on(async move {
        // The demo's own mail server and SMS gateway (local sockets): every message Konbini
        // sends is printed on this console, so codes can be read without a real inbox.
        let mut config = Config::default();
        let inbox = Inbox::start(&mut config).await?;
        let state = AppState::new(db, config, Arc::new(SystemClock), secret)?;
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e} (try --bind 127.0.0.1:0)"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let walk = tokio::spawn(async move {
            let r = after_start(st, addr, exit_after, &inbox).await;
            if r.is_ok() && !exit_after {
                tokio::spawn(inbox.print_forever());
            }
            if exit_after {
                let _ = stop_tx.send(());
            }
            r
        });
        let shutdown = async move {
            // Only an explicit stop (after --exit-after-walkthrough) or a signal ends the
            // demo; the walk-through finishing without sending keeps it serving.
            tokio::select! {
                Ok(()) = stop_rx => {},
                _ = crate::shutdown_signal() => {},
            }
        };
        konbini_server::serve(listener, state, shutdown)
            .await
            .map_err(|e| e.to_string())?;
        match walk.await {
            Ok(Ok(())) => Ok(ExitCode::SUCCESS),
            Ok(Err(e)) => Err(format!("demo walk-through failed: {e}")),
            Err(e) => Err(format!("demo walk-through crashed: {e}")),
        }
    })
}

/// The demo's mail and SMS sinks.
#[derive(Clone)]
pub struct Inbox {
    pub mail: MailSink,
    pub sms: SmsSink,
}

impl Inbox {
    /// Starts the sinks and points `config`'s mail relay and SMS gateway at them.
    pub async fn start(config: &mut Config) -> Result<Inbox, String> {
        let (mail, smtp_url) = MailSink::start().await.map_err(|e| e.to_string())?;
        let (sms, sms_url) = SmsSink::start().await.map_err(|e| e.to_string())?;
        config.smtp_url = Some(smtp_url);
        config.sms_url = Some(sms_url);
        Ok(Inbox { mail, sms })
    }

    /// Waits for the newest message to `to` (an email address or phone number) containing
    /// `needle` beyond the first `seen` such messages, and returns it.
    async fn wait(&self, to: &str, needle: &str, seen: usize) -> Result<String, String> {
        for _ in 0..500 {
            if let Some(m) = self.matching(to, needle).get(seen) {
                return Ok(m.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Err(format!("no message to {to} with '{needle}' arrived"))
    }

    fn matching(&self, to: &str, needle: &str) -> Vec<String> {
        let all = if to.contains('@') {
            self.mail.to(to)
        } else {
            self.sms.to(to)
        };
        all.into_iter().filter(|m| m.contains(needle)).collect()
    }

    /// The 6-digit code in the next message to `to` containing `needle`.
    async fn code(&self, to: &str, needle: &str, seen: usize) -> Result<String, String> {
        let m = self.wait(to, needle, seen).await?;
        konbini_server::devsinks::find_code(&m, 6).ok_or_else(|| format!("no code in: {m}"))
    }

    /// Prints every message that arrives from now on (the demo's "inbox").
    pub async fn print_forever(self) {
        let (mut mails, mut texts) = (self.mail.all().len(), self.sms.all().len());
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let all = self.mail.all();
            for m in all.iter().skip(mails) {
                let text = m.text();
                let subject = m.subject();
                let body = text.split_once("\n\n").map(|x| x.1).unwrap_or("").trim();
                println!(
                    "[demo inbox] email to {}: {subject}\n    {}",
                    m.to.join(", "),
                    body.replace('\n', "\n    ")
                );
            }
            mails = all.len();
            let all = self.sms.all();
            for t in all.iter().skip(texts) {
                println!(
                    "[demo inbox] SMS to {}: {}",
                    t["to"].as_str().unwrap_or("?"),
                    t["body"].as_str().unwrap_or("")
                );
            }
            texts = all.len();
        }
    }
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        idem: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut rq = self.http.request(m, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            rq = rq.bearer_auth(b);
        }
        if let Some(k) = idem {
            rq = rq.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = r.status().as_u16();
        let v = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn expect(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        idem: Option<&str>,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, String> {
        let (status, v) = self.call(method, path, bearer, idem, body).await?;
        if status != want {
            return Err(format!("{method} {path} answered {status}: {v}"));
        }
        Ok(v)
    }
}

fn yen(v: &Value) -> String {
    let n = v.as_i64().unwrap_or(0);
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if n < 0 { "-" } else { "" })
}

fn step(n: u32, what: &str, call: &str, result: &str) {
    println!("  {n}. {what:<14} {call:<40} {result}");
}

/// Seeds the chain through the real API and runs the walk-through against the server at `addr`.
pub async fn after_start(
    state: AppState,
    addr: SocketAddr,
    quiet_after: bool,
    inbox: &Inbox,
) -> Result<(), String> {
    let c = Client {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    // Stores and one till each (terminal keys are shown once, so every run makes fresh ones).
    let mut keys = Vec::new();
    for (id, name, region, lat, lon) in STORES {
        let db = state.db.clone();
        let (id, name, region) = (id.to_string(), name.to_string(), region.to_string());
        let at = crate::provision::Location {
            lat: *lat,
            lon: *lon,
        };
        let key = tokio::task::spawn_blocking(move || {
            let probe = id.clone();
            let exists = db
                .read_blocking(move |conn| konbini_store::stores::store_by_id(conn, &probe))
                .map_err(|e| e.to_string())?
                .is_some();
            if !exists {
                crate::provision::add_store(&db, &id, &name, &region, Some(at))?;
            }
            crate::provision::add_terminal(&db, &id, "demo till").map(|(_, k)| (id, k))
        })
        .await
        .map_err(|e| e.to_string())??;
        keys.push(key);
    }
    // Demo customers with a linked test card and ¥20,000.
    for (email, phone) in CUSTOMERS {
        let tok = sign_up_verified(&c, inbox, email, phone).await?.2["token"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let cards = c
            .expect("GET", "/v1/cards", Some(&tok), None, None, 200)
            .await?;
        let card = match cards["data"].as_array().and_then(|a| a.first()) {
            Some(card) => card["id"].as_str().unwrap_or("").to_string(),
            None => c.expect("POST", "/v1/cards", Some(&tok), None, Some(json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"})), 201).await?["id"].as_str().unwrap_or("").to_string(),
        };
        let w = c
            .expect("GET", "/v1/wallet", Some(&tok), None, None, 200)
            .await?;
        if w["balance"].as_i64().unwrap_or(0) < 20_000 {
            for i in 0..2 {
                let k = format!(
                    "demo-seed-{}-{i}",
                    konbini_core::encoding::hex(&konbini_server::secrets::random_bytes::<6>())
                );
                c.expect(
                    "POST",
                    "/v1/topups",
                    Some(&tok),
                    Some(&k),
                    Some(json!({"amount": 10_000, "currency": "JPY", "card_id": card})),
                    201,
                )
                .await?;
            }
        }
    }

    println!();
    println!(
        "Konbini demo: a walk-through of one payment, over the real HTTP API on http://{addr}"
    );
    let email = format!(
        "demo-{}@example.com",
        konbini_core::encoding::hex(&konbini_server::secrets::random_bytes::<3>())
    );
    let phone = "+819011119999";
    let (email_code, phone_code, verified) = sign_up_verified(&c, inbox, &email, phone).await?;
    step(
        1,
        "sign up",
        "POST /v1/signup",
        &format!("{email}, {phone} -> 202: a code to each"),
    );
    step(
        2,
        "verify",
        "POST /v1/signup/verify",
        &format!(
            "email code {email_code} + SMS code {phone_code} -> device {} bound",
            verified["device"]["id"].as_str().unwrap_or("?")
        ),
    );
    // A second phone: the password alone is not enough, the SMS code binds it.
    let seen = inbox.matching(phone, "sign-in code").len();
    let challenge = c
        .expect(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({"email": email, "password": DEMO_PASSWORD, "device_name": "second phone"})),
            202,
        )
        .await?;
    step(
        3,
        "new device",
        "POST /v1/sessions",
        &format!(
            "password right -> 202 {}: no session yet",
            challenge["status"].as_str().unwrap_or("")
        ),
    );
    let sms_code = inbox.code(phone, "sign-in code", seen).await?;
    let login = c
        .expect(
            "POST",
            "/v1/sessions/second-factor",
            None,
            None,
            Some(json!({"challenge": challenge["challenge"], "method": "sms", "code": sms_code})),
            201,
        )
        .await?;
    let tok = login["token"].as_str().unwrap_or("").to_string();
    step(
        4,
        "second factor",
        "POST /v1/sessions/second-factor",
        &format!(
            "SMS code {sms_code} -> device {} bound, payment-code slot {}",
            login["device"]["id"].as_str().unwrap_or("?"),
            login["device"]["payment_code"]["slot"]
        ),
    );
    let card = c.expect("POST", "/v1/cards", Some(&tok), None, Some(json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"})), 201).await?;
    let card_id = card["id"].as_str().unwrap_or("").to_string();
    step(
        5,
        "link card",
        "POST /v1/cards",
        &format!(
            "{} ****{} -> {card_id} (the number went to the processor only)",
            card["brand"].as_str().unwrap_or(""),
            card["last4"].as_str().unwrap_or("")
        ),
    );
    let top = c
        .expect(
            "POST",
            "/v1/topups",
            Some(&tok),
            Some("walkthrough-topup-1"),
            Some(json!({"amount": 5_000, "currency": "JPY", "card_id": card_id})),
            201,
        )
        .await?;
    let w = c
        .expect("GET", "/v1/wallet", Some(&tok), None, None, 200)
        .await?;
    step(
        6,
        "top up",
        "POST /v1/topups",
        &format!(
            "{} {} -> wallet {}",
            yen(&top["amount"]),
            top["status"].as_str().unwrap_or(""),
            yen(&w["balance"])
        ),
    );
    let code = c
        .expect("POST", "/v1/payment-codes", Some(&tok), None, None, 201)
        .await?;
    let digits = code["code"].as_str().unwrap_or("").to_string();
    step(
        7,
        "payment code",
        "POST /v1/payment-codes",
        &format!("{digits} (one-time, valid 60 s, also as Code 128 and QR)"),
    );
    let (store, term_key) = keys.first().cloned().ok_or("no demo store")?;
    let pay = c.expect("POST", "/v1/pos/payments", Some(&term_key), Some("walkthrough-pay-1"), Some(json!({
        "code": digits, "amount": 1_280, "currency": "JPY", "order_ref": "demo-receipt-0001",
        "basket": [
            {"sku": "4901234567001", "category": "food", "quantity": 2, "unit_price": 160},
            {"sku": "4901234567002", "category": "drink", "quantity": 1, "unit_price": 150},
            {"sku": "4901234567003", "category": "food", "quantity": 1, "unit_price": 810}
        ]
    })), 201).await?;
    let pid = pay["id"].as_str().unwrap_or("").to_string();
    let w = c
        .expect("GET", "/v1/wallet", Some(&tok), None, None, 200)
        .await?;
    step(
        8,
        "pay at till",
        "POST /v1/pos/payments",
        &format!(
            "{} at {store} -> {} ({pid}); wallet {}",
            yen(&pay["amount"]),
            pay["status"].as_str().unwrap_or(""),
            yen(&w["balance"])
        ),
    );
    let (st, again) = c.call("POST", "/v1/pos/payments", Some(&term_key), Some("walkthrough-pay-2"), Some(json!({
        "code": digits, "amount": 100, "currency": "JPY", "order_ref": "demo-receipt-0002",
        "basket": [{"sku": "4901234567004", "category": "food", "quantity": 1, "unit_price": 100}]
    }))).await?;
    step(
        9,
        "replay code",
        "POST /v1/pos/payments (same code)",
        &format!(
            "{st} {} ({}): a code pays once",
            again["status"].as_str().unwrap_or(""),
            again["decline_code"].as_str().unwrap_or("")
        ),
    );
    let re = c
        .expect(
            "POST",
            &format!("/v1/pos/payments/{pid}/refunds"),
            Some(&term_key),
            Some("walkthrough-refund-1"),
            Some(json!({"amount": 150})),
            201,
        )
        .await?;
    let w = c
        .expect("GET", "/v1/wallet", Some(&tok), None, None, 200)
        .await?;
    step(
        10,
        "refund",
        "POST /v1/pos/payments/{id}/refunds",
        &format!(
            "{} {} -> wallet {}",
            yen(&re["amount"]),
            re["status"].as_str().unwrap_or(""),
            yen(&w["balance"])
        ),
    );
    let db = state.db.clone();
    let report = db
        .read(konbini_store::ledger::verify)
        .await
        .map_err(|e| e.to_string())?;
    step(
        11,
        "ledger verify",
        "konbini ledger verify",
        if report.ok() { "OK" } else { "FAILED" },
    );
    println!(
        "{}",
        crate::provision::format_verify(&report)
            .lines()
            .map(|l| format!("       {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !report.ok() {
        return Err("the ledger does not verify".into());
    }
    if quiet_after {
        return Ok(());
    }
    println!();
    println!(
        "Konbini is running on http://{addr} (embedded SQLite: {DEMO_DB}). Stop it with Ctrl-C."
    );
    println!(
        "  API reference:  http://{addr}/docs   (OpenAPI document: http://{addr}/openapi.json)"
    );
    println!(
        "  Customers:      {} / password {DEMO_PASSWORD}  (verified; each has a linked test card and ¥20,000)",
        CUSTOMERS
            .iter()
            .map(|(e, p)| format!("{e} ({p})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  Messages:       this demo runs its own mail server and SMS gateway; every email and SMS"
    );
    println!("                  Konbini sends (codes included) is printed below as [demo inbox].");
    println!("  Terminal keys (POS API, Authorization: Bearer ...):");
    for (store, key) in &keys {
        println!("      {store:<12} {key}");
    }
    println!(
        "  Test cards:     4242424242424242 approves; 4000000000000002 declines; see docs/api.md for all"
    );
    println!("  Try it:");
    println!(
        "      curl -s -X POST http://{addr}/v1/sessions -H 'content-type: application/json' \\"
    );
    println!(
        "           -d '{{\"email\":\"{}\",\"password\":\"{DEMO_PASSWORD}\"}}'",
        CUSTOMERS[0].0
    );
    println!("      then, with the challenge it returns and the SMS code printed below:");
    println!(
        "      curl -s -X POST http://{addr}/v1/sessions/second-factor -H 'content-type: application/json' \\"
    );
    println!(
        "           -d '{{\"challenge\":\"klc_...\",\"method\":\"sms\",\"code\":\"123456\"}}'"
    );
    Ok(())
}

/// Signs a customer up and verifies both contact points with the codes from the demo
/// inbox; returns the two codes and the session answer (the first device is bound).
async fn sign_up_verified(
    c: &Client,
    inbox: &Inbox,
    email: &str,
    phone: &str,
) -> Result<(String, String, Value), String> {
    let (mails, texts) = (
        inbox.matching(email, "sign-up code").len(),
        inbox.matching(phone, "sign-up code").len(),
    );
    let r = c
        .expect(
            "POST",
            "/v1/signup",
            None,
            None,
            Some(json!({"email": email, "phone": phone, "password": DEMO_PASSWORD})),
            202,
        )
        .await?;
    let email_code = inbox.code(email, "sign-up code", mails).await?;
    let phone_code = inbox.code(phone, "sign-up code", texts).await?;
    let v = c
        .expect(
            "POST",
            "/v1/signup/verify",
            None,
            None,
            Some(json!({"signup_id": r["signup_id"], "email_code": email_code, "phone_code": phone_code, "device_name": "demo phone"})),
            201,
        )
        .await?;
    Ok((email_code, phone_code, v))
}
