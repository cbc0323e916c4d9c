//! `konbini demo`: a demo chain on a fresh SQLite database, served, with a scripted
//! walk-through of a payment that prints each step.

use konbini_server::clock::SystemClock;
use konbini_server::config::Config;
use konbini_server::state::AppState;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// The demo's database, recreated on every run.
pub const DEMO_DB: &str = "konbini-demo.db";
/// The password of every demo customer.
pub const DEMO_PASSWORD: &str = "sakura-onigiri-2026";
const STORES: &[(&str, &str, &str)] = &[
    ("ST-SHIBUYA", "Konbini Shibuya Station", "tokyo"),
    ("ST-SHINJUKU", "Konbini Shinjuku West", "tokyo"),
    ("ST-UMEDA", "Konbini Umeda", "osaka"),
];
const CUSTOMERS: &[&str] = &["hanako@example.com", "taro@example.com"];

pub fn run(bind: &str, exit_after: bool) -> Result<ExitCode, String> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
    }
    let url = format!("sqlite://{DEMO_DB}");
    let secret = crate::settings::master_secret(None, None, &url)?;
    let db = crate::open_db(&url)?;
    let state = AppState::new(db, Config::default(), Arc::new(SystemClock), secret)?;
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e} (try --bind 127.0.0.1:0)"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let walk = tokio::spawn(async move {
            let r = after_start(st, addr, exit_after).await;
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
) -> Result<(), String> {
    let c = Client {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
    };
    // Stores and one till each (terminal keys are shown once, so every run makes fresh ones).
    let mut keys = Vec::new();
    for (id, name, region) in STORES {
        let db = state.db.clone();
        let (id, name, region) = (id.to_string(), name.to_string(), region.to_string());
        let key = tokio::task::spawn_blocking(move || {
            let probe = id.clone();
            let exists = db
                .read_blocking(move |conn| konbini_store::stores::store_by_id(conn, &probe))
                .map_err(|e| e.to_string())?
                .is_some();
            if !exists {
                crate::provision::add_store(&db, &id, &name, &region)?;
            }
            crate::provision::add_terminal(&db, &id, "demo till").map(|(_, k)| (id, k))
        })
        .await
        .map_err(|e| e.to_string())??;
        keys.push(key);
    }
    // Demo customers with a linked test card and ¥20,000.
    for email in CUSTOMERS {
        let tok = sign_in(&c, email).await?.0;
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
    c.expect(
        "POST",
        "/v1/signup",
        None,
        None,
        Some(json!({"email": email, "phone": "+819012345678", "password": DEMO_PASSWORD})),
        202,
    )
    .await?;
    step(
        1,
        "sign up",
        "POST /v1/signup",
        &format!("{email} -> 202 accepted"),
    );
    let (tok, login) = sign_in(&c, &email).await?;
    step(
        2,
        "log in",
        "POST /v1/sessions",
        &format!(
            "device {} bound, payment-code slot {}",
            login["device"]["id"].as_str().unwrap_or("?"),
            login["device"]["payment_code"]["slot"]
        ),
    );
    let card = c.expect("POST", "/v1/cards", Some(&tok), None, Some(json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"})), 201).await?;
    let card_id = card["id"].as_str().unwrap_or("").to_string();
    step(
        3,
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
        4,
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
        5,
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
        6,
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
        7,
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
        8,
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
        9,
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
        "  Customers:      {} / password {DEMO_PASSWORD}  (each has a linked test card and ¥20,000)",
        CUSTOMERS.join(", ")
    );
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
        CUSTOMERS[0]
    );
    Ok(())
}

async fn sign_in(c: &Client, email: &str) -> Result<(String, Value), String> {
    c.expect(
        "POST",
        "/v1/signup",
        None,
        None,
        Some(json!({"email": email, "phone": "+819012345678", "password": DEMO_PASSWORD})),
        202,
    )
    .await?;
    let login = c
        .expect(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({"email": email, "password": DEMO_PASSWORD, "device_name": "demo phone"})),
            201,
        )
        .await?;
    let tok = login["token"]
        .as_str()
        .ok_or("no token in login response")?
        .to_string();
    Ok((tok, login))
}
