//! The `konbini` binary as an operator uses it: provisioning, `serve` as a real process,
//! `ledger verify` catching corruption, two nodes on one PostgreSQL, and no card number in
//! the logs or the database files.

use konbini_server::devsinks::{MailSink, SmsSink};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_konbini");
const SECRET: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const PAN: &str = "4242424242424242";

fn workdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "konbini-cli-{}-{}",
        std::process::id(),
        konbini_core::encoding::hex(&konbini_server::secrets::random_bytes::<4>())
    ));
    std::fs::create_dir_all(&d).expect("workdir");
    d
}

fn konbini(dir: &Path, db: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env("KONBINI_DATABASE_URL", db)
        .env("KONBINI_SECRET_KEY", SECRET)
        .args(args)
        .output()
        .expect("run konbini");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A `konbini serve` process; killed on drop. Its stdout+stderr go to `log`.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A local SMTP server and SMS gateway that spawned servers deliver to.
struct Sinks {
    mail: MailSink,
    sms: SmsSink,
    smtp_url: String,
    sms_url: String,
}

async fn sinks() -> Sinks {
    let (mail, smtp_url) = MailSink::start().await.expect("mail sink");
    let (sms, sms_url) = SmsSink::start().await.expect("sms sink");
    Sinks {
        mail,
        sms,
        smtp_url,
        sms_url,
    }
}

impl Sinks {
    /// The 6-digit code of the first message to `to` (address or phone) with "sign-up code".
    async fn signup_code(&self, to: &str) -> String {
        for _ in 0..500 {
            let got = if to.contains('@') {
                self.mail.to(to)
            } else {
                self.sms.to(to)
            };
            if let Some(code) = got
                .iter()
                .find(|m| m.contains("sign-up code"))
                .and_then(|m| konbini_server::devsinks::find_code(m, 6))
            {
                return code;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no sign-up code reached {to}");
    }
}

// The child is waited for in `Server`'s Drop, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn serve(dir: &Path, db: &str, name: &str, sinks: &Sinks) -> Server {
    let port = free_port();
    let log = dir.join(format!("{name}.log"));
    let f = std::fs::File::create(&log).expect("log");
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env("KONBINI_DATABASE_URL", db)
        .env("KONBINI_SECRET_KEY", SECRET)
        .env("KONBINI_LOG", "debug")
        .env("KONBINI_SMTP_URL", &sinks.smtp_url)
        .env("KONBINI_SMS_URL", &sinks.sms_url)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(f.try_clone().expect("log"))
        .stderr(f)
        .spawn()
        .expect("spawn serve");
    let base = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Server { child, base };
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "konbini serve exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "konbini serve did not start: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    idem: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut rq = c.request(
        reqwest::Method::from_bytes(method.as_bytes()).expect("m"),
        format!("{base}{path}"),
    );
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
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Signs up (both contact points verified with the codes the sinks received), links the
/// test card and tops up; returns the session token.
async fn funded(base: &str, sinks: &Sinks, email: &str, phone: &str, amount: i64) -> String {
    let pw = "correct horse battery staple";
    let (s, signup) = call(
        base,
        "POST",
        "/v1/signup",
        None,
        None,
        Some(json!({"email": email, "phone": phone, "password": pw})),
    )
    .await;
    assert_eq!(s, 202, "{signup}");
    let (email_code, phone_code) = (
        sinks.signup_code(email).await,
        sinks.signup_code(phone).await,
    );
    let (s, login) = call(
        base,
        "POST",
        "/v1/signup/verify",
        None,
        None,
        Some(json!({"signup_id": signup["signup_id"], "email_code": email_code, "phone_code": phone_code})),
    )
    .await;
    assert_eq!(s, 201, "{login}");
    let tok = login["token"].as_str().expect("token").to_string();
    let (s, card) = call(
        base,
        "POST",
        "/v1/cards",
        Some(&tok),
        None,
        Some(json!({"number": PAN, "exp_month": 12, "exp_year": 2030, "cvc": "123"})),
    )
    .await;
    assert_eq!(s, 201, "{card}");
    let (s, t) = call(
        base,
        "POST",
        "/v1/topups",
        Some(&tok),
        Some("t1"),
        Some(json!({"amount": amount, "currency": "JPY", "card_id": card["id"]})),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    tok
}

fn terminal_key(output: &str) -> String {
    output
        .split_whitespace()
        .find(|w| w.starts_with("kt_"))
        .unwrap_or_else(|| panic!("no terminal key in: {output}"))
        .to_string()
}

async fn pay(base: &str, key: &str, code: &str, amount: i64, idem: &str) -> (u16, Value) {
    call(
        base,
        "POST",
        "/v1/pos/payments",
        Some(key),
        Some(idem),
        Some(json!({
            "code": code, "amount": amount, "currency": "JPY", "order_ref": idem,
            "basket": [{"sku": "1", "category": "food", "quantity": 1, "unit_price": amount}]
        })),
    )
    .await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_on_sqlite_and_ledger_verify_catches_corruption() {
    let dir = workdir();
    let db = "sqlite://ops.db";
    let (code, out) = konbini(
        &dir,
        db,
        &[
            "store", "add", "--id", "ST1", "--name", "Shibuya", "--region", "tokyo",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = konbini(
        &dir,
        db,
        &["store", "add", "--id", "ST1", "--name", "again"],
    );
    assert_ne!(code, 0, "a duplicate store must be refused: {out}");
    let (code, out) = konbini(&dir, db, &["terminal", "add", "--store", "NOPE"]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = konbini(&dir, db, &["terminal", "add", "--store", "ST1"]);
    assert_eq!(code, 0, "{out}");
    let key = terminal_key(&out);
    let (code, out) = konbini(
        &dir,
        db,
        &[
            "staff",
            "add",
            "--email",
            "lead@example.com",
            "--name",
            "Lead",
            "--role",
            "security",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("otpauth://totp/") && out.contains("password"),
        "{out}"
    );
    let (code, out) = konbini(
        &dir,
        db,
        &[
            "staff",
            "add",
            "--email",
            "x@example.com",
            "--name",
            "X",
            "--role",
            "root",
        ],
    );
    assert_ne!(code, 0, "an unknown role is refused: {out}");

    let sinks = sinks().await;
    let server = serve(&dir, db, "node", &sinks);
    let tok = funded(
        &server.base,
        &sinks,
        "ops@example.com",
        "+819077770001",
        3_000,
    )
    .await;
    let (s, c) = call(
        &server.base,
        "POST",
        "/v1/payment-codes",
        Some(&tok),
        None,
        None,
    )
    .await;
    assert_eq!(s, 201);
    let (s, p) = pay(
        &server.base,
        &key,
        c["code"].as_str().expect("code"),
        1_000,
        "p1",
    )
    .await;
    assert_eq!((s, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    let (s, _) = call(&server.base, "GET", "/readyz", None, None, None).await;
    assert_eq!(s, 200);
    drop(server);

    // The card number is nowhere: not in the logs (debug level), not in the database files.
    let log = std::fs::read(dir.join("node.log")).expect("log");
    assert!(contains(&log, b"konbini serving"), "the log was captured");
    assert!(
        !contains(&log, PAN.as_bytes()),
        "the card number leaked into the log"
    );
    for f in ["ops.db", "ops.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(f)) {
            assert!(
                !contains(&bytes, PAN.as_bytes()),
                "the card number is stored in {f}"
            );
            assert!(
                !contains(&bytes, key.as_bytes()),
                "the terminal key is stored in {f}"
            );
        }
    }

    let (code, out) = konbini(&dir, db, &["ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");
    // Today's settlement (a JST business day) shows the store's one payment of 1,000.
    let today = Command::new("date")
        .env("TZ", "Asia/Tokyo")
        .arg("+%F")
        .output()
        .expect("date");
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let (code, out) = konbini(&dir, db, &["report", "settlement", "--date", &today]);
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("ST1"))
        .unwrap_or_else(|| panic!("no ST1 line: {out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        vec!["ST1", "JPY", "1", "1000", "0", "0", "1000"],
        "{out}"
    );
    let (code, out) = konbini(&dir, db, &["report", "settlement", "--date", "2026-02-30x"]);
    assert_ne!(code, 0, "{out}");

    // Corrupt one cached balance behind the ledger's back: verify must fail and say where.
    {
        let conn = rusqlite::Connection::open(dir.join("ops.db")).expect("open");
        let n = conn
            .execute(
                "UPDATE accounts SET balance = balance + 1 WHERE id LIKE 'wallet:%'",
                [],
            )
            .expect("corrupt");
        assert_eq!(n, 1);
    }
    let (code, out) = konbini(&dir, db, &["ledger", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED") && out.contains("wallet:"), "{out}");

    // The audit log holds the security events and staff actions, chained.
    let (code, out) = konbini(&dir, db, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    {
        let conn = rusqlite::Connection::open(dir.join("ops.db")).expect("open");
        let actions: Vec<String> = conn
            .prepare("SELECT action FROM audit_log ORDER BY seq")
            .and_then(|mut st| st.query_map([], |r| r.get::<_, String>(0))?.collect())
            .expect("actions");
        for a in [
            "store.added",
            "terminal.added",
            "customer.created",
            "device.bound",
            "card.linked",
        ] {
            assert!(
                actions.iter().any(|x| x == a),
                "{a} missing from {actions:?}"
            );
        }
        let text: String = conn
            .prepare("SELECT group_concat(details, ' ') FROM audit_log")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .expect("details");
        assert!(
            !text.contains("ops@example.com") && !text.contains(PAN),
            "personal data in the audit log: {text}"
        );
        // Tamper as a database owner would: remove the guard, edit a record.
        conn.execute_batch("DROP TRIGGER audit_append_only_u; UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2;")
            .expect("tamper");
    }
    let (code, out) = konbini(&dir, db, &["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 2 was altered"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_postgres() {
    let Some(url) = konbini_store::testing::postgres_url() else {
        eprintln!("KONBINI_TEST_PG_URL not set: skipping the two-node PostgreSQL test");
        return;
    };
    let dir = workdir();
    let (code, out) = konbini(
        &dir,
        &url,
        &["store", "add", "--id", "ST1", "--name", "one"],
    );
    assert_eq!(code, 0, "{out}");
    let (_, out) = konbini(
        &dir,
        &url,
        &["store", "add", "--id", "ST2", "--name", "two"],
    );
    let (_, out1) = konbini(&dir, &url, &["terminal", "add", "--store", "ST1"]);
    let (_, out2) = konbini(&dir, &url, &["terminal", "add", "--store", "ST2"]);
    let (k1, k2) = (terminal_key(&out1), terminal_key(&out2));
    let _ = out;
    let sinks = sinks().await;
    let a = serve(&dir, &url, "a", &sinks);
    let b = serve(&dir, &url, "b", &sinks);
    let tok = funded(&a.base, &sinks, "two@example.com", "+819077770002", 10_000).await;

    // One code scanned at both nodes at once: exactly one payment.
    let (_, c) = call(&b.base, "POST", "/v1/payment-codes", Some(&tok), None, None).await;
    let code = c["code"].as_str().expect("code").to_string();
    let (ra, rb) = tokio::join!(
        pay(&a.base, &k1, &code, 1_000, "x1"),
        pay(&b.base, &k2, &code, 1_000, "x2")
    );
    let statuses = [
        ra.1["status"].as_str().unwrap_or(""),
        rb.1["status"].as_str().unwrap_or(""),
    ];
    assert_eq!(
        statuses.iter().filter(|s| **s == "succeeded").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "declined").count(),
        1,
        "{statuses:?}"
    );

    // The same idempotency key replayed on the other node returns the first answer.
    let (_, c2) = call(&a.base, "POST", "/v1/payment-codes", Some(&tok), None, None).await;
    let code2 = c2["code"].as_str().expect("code").to_string();
    let (s1, p1) = pay(&a.base, &k1, &code2, 500, "same-key").await;
    let (s2, p2) = pay(&b.base, &k1, &code2, 500, "same-key").await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(p1["id"], p2["id"], "the replay must be the same payment");

    let (_, w) = call(&b.base, "GET", "/v1/wallet", Some(&tok), None, None).await;
    assert_eq!(w["balance"], 8_500, "{w}");
    drop(a);
    drop(b);
    let (code, out) = konbini(&dir, &url, &["ledger", "verify"]);
    assert_eq!(code, 0, "{out}");
    let mut s = String::new();
    let _ = std::fs::File::open(dir.join("a.log")).and_then(|mut f| f.read_to_string(&mut s));
    assert!(!s.contains(PAN), "card number in node a's log");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `konbini bench` measures on a fresh database and verifies the ledger; when it offers more
/// payments than its customers' phones can make codes for (10 per device per 30-s step), it
/// fails and says why instead of reporting bare errors.
#[test]
fn bench_measures_and_says_when_its_phones_run_out_of_codes() {
    let dir = workdir();
    let db = "sqlite://konbini.db"; // the default: the bench uses its own konbini-bench.db
    let short = [
        "bench",
        "--customers",
        "30",
        "--duration-s",
        "1",
        "--warmup-s",
        "0",
    ];
    let (code, out) = konbini(&dir, db, &short);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("requests not sent"), "{out}");
    assert!(
        out.contains("30 customers can pay at most 10 payments/s"),
        "{out}"
    );
    assert!(out.contains("OK: every entry balanced"), "{out}");
    // Within what the phones can do: no errors, and success.
    let (code, out) = konbini(&dir, db, &[&short[..], &["--rate", "5"]].concat());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 0 errors"), "{out}");
    assert!(!out.contains("requests not sent"), "{out}");
    // One database served with and without the risk engine, the load alternating: both
    // sides paid, without errors, and the ledger of both verifies.
    let alternating = [
        "bench",
        "--customers",
        "30",
        "--duration-s",
        "2",
        "--warmup-s",
        "0",
        "--rate",
        "20",
        "--alternate-risk",
        "0.5",
    ];
    let (code, out) = konbini(&dir, db, &alternating);
    assert_eq!(code, 0, "{out}");
    let sides: Vec<&str> = out.split("-- with").skip(1).collect();
    assert_eq!(sides.len(), 2, "{out}");
    for side in &sides {
        // Four phases of 0.5 s at 20/s: two per side, about 20 payments each.
        let paid: u64 = side
            .split("payments: ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!((15..=25).contains(&paid), "{paid}: {out}");
        assert!(side.contains(" 0 errors"), "{out}");
    }
    assert!(sides[0].starts_with("out the engine:"), "{out}");
    assert!(sides[1].starts_with(" the engine:"), "{out}");
    assert!(out.contains("the engine's cost: throughput"), "{out}");
    assert!(out.contains("OK: every entry balanced"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// On PostgreSQL the bench vacuums and analyzes the seed's tables before it measures (so
/// that autovacuum's pass over the bulk load does not land in the first phases), and at full
/// speed it reports PostgreSQL's CPU per payment on each side and the engine's cost in CPU.
#[test]
fn bench_on_postgres_vacuums_the_seed_and_reports_postgres_cpu() {
    let Some(url) = konbini_store::testing::postgres_url() else {
        eprintln!("KONBINI_TEST_PG_URL not set: skipping the PostgreSQL bench test");
        return;
    };
    let dir = workdir();
    let args = [
        "bench",
        "--customers",
        "2000",
        "--stores",
        "5",
        "--duration-s",
        "2",
        "--warmup-s",
        "0",
        "--alternate-risk",
        "0.5",
    ];
    let (code, out) = konbini(&dir, &url, &args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("cpu (PostgreSQL's processes on this machine): ")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("the engine's cost in cpu: PostgreSQL "),
        "{out}"
    );
    assert!(out.contains("OK: every entry balanced"), "{out}");
    let db = konbini_store::Db::open(&konbini_store::DbConfig::new(&url)).expect("open");
    let vacuumed = db
        .read_blocking(|c| {
            c.query_one(
                "SELECT COUNT(*) FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() AND relname IN ('devices', 'accounts') \
                 AND last_vacuum IS NOT NULL AND last_analyze IS NOT NULL",
                konbini_store::params![],
            )?
            .int(0)
        })
        .expect("vacuum statistics");
    assert_eq!(vacuumed, 2, "the seed's tables vacuumed and analyzed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_walkthrough_runs_end_to_end() {
    let dir = workdir();
    let out = Command::new(BIN)
        .current_dir(&dir)
        .args(["demo", "--bind", "127.0.0.1:0", "--exit-after-walkthrough"])
        .stdin(Stdio::null())
        .output()
        .expect("demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "sign up",
        "link card",
        "top up",
        "pay at till",
        "succeeded",
        "refund",
        "ledger verify",
        "OK",
    ] {
        assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
    }
    assert!(!text.contains(PAN), "the demo printed a card number");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rules_and_backtest_on_the_command_line() {
    let dir = workdir();
    let db = "sqlite://risk.db";
    let (code, out) = konbini(&dir, db, &["risk", "rules"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no rules stored"), "{out}");
    konbini(&dir, db, &["store", "add", "--id", "ST1", "--name", "one"]);
    let (_, out) = konbini(&dir, db, &["terminal", "add", "--store", "ST1"]);
    let key = terminal_key(&out);

    // A node seeds the default rules and journals what it decides: a card link, a top-up
    // and two payments, of 1,000 and 500.
    let sinks = sinks().await;
    let server = serve(&dir, db, "node", &sinks);
    let tok = funded(
        &server.base,
        &sinks,
        "bt@example.com",
        "+819077770003",
        3_000,
    )
    .await;
    for (amount, idem) in [(1_000, "p1"), (500, "p2")] {
        let (_, c) = call(
            &server.base,
            "POST",
            "/v1/payment-codes",
            Some(&tok),
            None,
            None,
        )
        .await;
        let (s, p) = pay(
            &server.base,
            &key,
            c["code"].as_str().expect("code"),
            amount,
            idem,
        )
        .await;
        assert_eq!((s, p["status"].as_str()), (201, Some("succeeded")), "{p}");
    }
    drop(server);

    let (code, out) = konbini(&dir, db, &["risk", "rules"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("basket.tobacco.block") && out.contains("24 rules"),
        "{out}"
    );

    // The candidate, in TOML, over today's business day (JST): it would have blocked the
    // payment of 1,000, which was allowed.
    std::fs::write(
        dir.join("big.toml"),
        "name = \"big_payments\"\ndescription = \"payments above 700\"\nsource = 'block when event.kind == \"payment\" and payment.amount > 700'\npriority = 900\n",
    )
    .expect("rule file");
    let today = Command::new("date")
        .env("TZ", "Asia/Tokyo")
        .arg("+%F")
        .output()
        .expect("date");
    let today = String::from_utf8_lossy(&today.stdout).trim().to_string();
    let args = |rule: &'static str, from: &str, to: &str| {
        let v: Vec<String> = [
            "risk", "backtest", "--rule", rule, "--from", from, "--to", to,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        konbini(&dir, db, &a)
    };
    let (code, out) = run(args("big.toml", &today, &today));
    assert_eq!(code, 0, "{out}");
    for want in [
        "backtest of `big_payments` (block",
        "added to the stored rules",
        "events replayed: 5",
        "fired: 1 ",
        "allow -> block: 1",
        "payment ",
    ] {
        assert!(out.contains(want), "`{want}` not in:\n{out}");
    }
    // The same in JSON, over unix milliseconds; mode may be given and does not matter.
    std::fs::write(
        dir.join("big.json"),
        r#"{"name": "big_payments", "source": "block when event.kind == \"payment\" and payment.amount > 700", "priority": 900, "mode": "shadow"}"#,
    )
    .expect("rule file");
    let (code, out2) = run(args("big.json", "0", "99999999999999"));
    assert_eq!(code, 0, "{out2}");
    assert!(
        out2.contains("fired: 1 ") && out2.contains("allow -> block: 1"),
        "{out2}"
    );
    // Nothing journaled in 1970.
    let (code, out) = run(args("big.json", "1970-01-01", "1970-01-02"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("events replayed: 0"), "{out}");

    // Refused: a rule that does not check (with where), an unknown field, a bad date.
    std::fs::write(
        dir.join("typo.toml"),
        "name = \"typo\"\nsource = 'block when payment.amont > 1'\npriority = 1\n",
    )
    .expect("rule file");
    let (code, out) = run(args("typo.toml", &today, &today));
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("1:12") && out.contains("payment.amount"),
        "{out}"
    );
    std::fs::write(
        dir.join("extra.toml"),
        "name = \"x\"\nsource = 'block when payment.amount > 1'\npriority = 1\nenabled = true\n",
    )
    .expect("rule file");
    let (code, out) = run(args("extra.toml", &today, &today));
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("enabled"), "{out}");
    let (code, out) = run(args("big.toml", "last tuesday", &today));
    assert_ne!(code, 0, "{out}");
    let (code, out) = run(args("big.toml", &today, "1970-01-01"));
    assert_ne!(code, 0, "an empty window: {out}");
    let (code, out) = run(args("missing.toml", &today, &today));
    assert_ne!(code, 0, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
