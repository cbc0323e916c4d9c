//! `konbini bench`: seeds customers, stores and terminals, serves the API in process, and
//! drives POS payments over HTTP with codes made the way a phone makes them offline.
//!
//! Two modes: full speed (a fixed number of requests in flight) and fixed rate (an open
//! loop: requests start on schedule whatever the server does, and latency is measured from
//! the scheduled start, so a stall shows up in the tail instead of hiding).

use clap::Args;
use konbini_core::ledger::{self as rules, AccountKind, Entry};
use konbini_core::{Amount, Currency, paycode};
use konbini_server::clock::SystemClock;
use konbini_server::config::Config;
use konbini_server::secrets::{MasterSecret, new_token, random_bytes, token_hash};
use konbini_server::state::AppState;
use konbini_store::customers::{self, Customer, Device};
use konbini_store::stores::{self, Store, Terminal};
use konbini_store::{Db, StoreError, ledger};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Customers (one device each) to seed.
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    /// Stores to seed (one terminal each).
    #[arg(long, default_value_t = 50)]
    stores: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Seconds of the same load before the measurement, not measured: a server that has just
    /// started opens its database connections and prepares and plans its statements on the
    /// first requests (on PostgreSQL, tens of milliseconds per connection), which would
    /// otherwise land in the tail of a fixed-rate run.
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// Payments per second to offer (open loop); 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Requests in flight at full speed.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Keep the existing SQLite bench database instead of starting fresh.
    #[arg(long)]
    keep: bool,
    /// Measure without the risk engine (a POS payment as it was before it: none of its
    /// columns read, no features, limits or rules, nothing journaled or counted), to see what
    /// it costs; never a way to run Konbini.
    #[arg(long)]
    without_risk: bool,
    /// Measure what the risk engine costs within one run: serve the same database twice in
    /// this process, with and without the engine, and send the load to each in turn, this
    /// many seconds at a time (off, on, on, off, off, on, …), so that both sides see the
    /// same phases of a noisy machine. Prints each side's figures and the difference.
    #[arg(long, value_name = "SECONDS", conflicts_with = "without_risk")]
    alternate_risk: Option<f64>,
}

/// User plus system CPU seconds this process has used (Linux `/proc/self/stat`), if known.
fn process_cpu_s() -> Option<f64> {
    stat_cpu_s(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// The user plus system CPU seconds of a `/proc/.../stat` line.
fn stat_cpu_s(stat: &str) -> Option<f64> {
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // Linux reports these in USER_HZ, 100 per second on every architecture Konbini targets.
    Some(ticks / 100.0)
}

/// User plus system CPU seconds of this process's threads named `name` (Linux
/// `/proc/self/task/*/stat`), if any.
fn thread_cpu_s(name: &str) -> Option<f64> {
    let mut total = None;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let comm = stat
            .rsplit_once(')')
            .and_then(|(head, _)| head.split_once('('))
            .map(|(_, comm)| comm);
        if comm != Some(name) {
            continue;
        }
        if let Some(cpu) = stat_cpu_s(&stat) {
            *total.get_or_insert(0.0) += cpu;
        }
    }
    total
}

/// CPU seconds used so far by every process named `postgres` on this machine (Linux
/// `/proc/*/schedstat`, in nanoseconds: a backend's share of a 2-s phase is far below the
/// 10-ms ticks of `stat`), if any: the PostgreSQL server's side of a payment when it runs
/// here, as in `scripts/bench`. Backends that exit between two readings take their time with
/// them; the bench's pool keeps its connections open, so a phase loses none of its own.
fn postgres_cpu_s() -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        if std::fs::read_to_string(path.join("comm")).ok().as_deref() != Some("postgres\n") {
            continue;
        }
        let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        else {
            continue;
        };
        *total.get_or_insert(0.0) += ns / 1e9;
    }
    total
}

/// The bench's default database when `--database-url` is not given.
const BENCH_DB: &str = "konbini-bench.db";

struct Seeded {
    terminal_keys: Vec<String>,
    devices: Vec<(u32, [u8; 32])>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn seed(db: &Db, secret: &MasterSecret, args: &BenchArgs) -> Result<Seeded, String> {
    let run = konbini_core::encoding::hex(&random_bytes::<4>());
    let now = now_ms();
    let mut terminal_keys = Vec::new();
    let mut store_rows = Vec::new();
    for i in 0..args.stores {
        let key = new_token("kt");
        let sid = format!("bench-{run}-st{i}");
        store_rows.push((
            Store {
                id: sid.clone(),
                name: format!("Bench store {i}"),
                region: "bench".into(),
                created_ms: now,
                lat_e6: None,
                lon_e6: None,
            },
            Terminal {
                id: format!("term-{run}-{i}"),
                store_id: sid,
                key_hash: token_hash(&key),
                label: "bench till".into(),
                status: "active".into(),
                created_ms: now,
            },
        ));
        terminal_keys.push(key);
    }
    db.write_blocking(move |c| {
        for (s, t) in &store_rows {
            stores::insert_store(c, s)?;
            stores::insert_terminal(c, t)?;
        }
        Ok::<_, StoreError>(())
    })
    .map_err(|e| e.to_string())?;
    // Slots from a random base so a second bench on the same database does not collide.
    let base = u32::from_be_bytes(random_bytes::<4>()) % (paycode::SLOT_LIMIT / 2);
    let mut devices = Vec::with_capacity(args.customers);
    let cur = Currency::JPY;
    for chunk_start in (0..args.customers).step_by(1000) {
        let end = (chunk_start + 1000).min(args.customers);
        let mut rows = Vec::new();
        for i in chunk_start..end {
            let slot = base + i as u32;
            devices.push((slot, secret.paycode_key(slot, 1)));
            // Each phone's app says which installation it is, as the app does (docs/api.md):
            // the engine then reads device.accounts on every payment.
            let installation = secret.installation_fingerprint(&format!("bench-{run}-app-{i}"));
            rows.push((format!("cus-{run}-{i}"), slot, installation));
        }
        let run2 = run.clone();
        db.write_blocking(move |c| {
            let funding = "clearing:bench:JPY";
            ledger::ensure_account(c, funding, AccountKind::CardClearing, cur, now)?;
            for (id, slot, installation) in &rows {
                customers::insert(
                    c,
                    &Customer {
                        email_verified_ms: Some(now),
                        phone_verified_ms: Some(now),
                        ..Customer::new(
                            id,
                            &format!("{id}@bench.invalid"),
                            "+819000000000",
                            "bench-no-login",
                            now,
                        )
                    },
                )?;
                customers::insert_device(
                    c,
                    &Device {
                        id: format!("dev-{id}"),
                        customer_id: id.clone(),
                        slot: i64::from(*slot),
                        key_generation: 1,
                        secret_hash: vec![0; 32],
                        name: "bench".into(),
                        status: "bound".into(),
                        last_code_counter: 0,
                        created_ms: now,
                    },
                    "signup",
                )?;
                customers::set_installation(c, &format!("dev-{id}"), installation)?;
                let wallet = rules::wallet_account(id, cur);
                ledger::ensure_account(c, &wallet, AccountKind::Wallet, cur, now)?;
                let amount =
                    Amount::new(1_000_000, cur).map_err(|e| StoreError::Decode(e.to_string()))?;
                let e = Entry::transfer(funding, &wallet, amount)
                    .map_err(|e| StoreError::Decode(e.to_string()))?;
                ledger::post(c, &format!("ent-seed-{run2}-{id}"), "seed", id, &e, now)?;
            }
            Ok::<_, StoreError>(())
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(Seeded {
        terminal_keys,
        devices,
    })
}

/// Hands out codes as phones would: each device's next sub-index within the current step.
struct Wallets {
    devices: Vec<(u32, [u8; 32])>,
    /// Per device: (step, next sub-index).
    next: Vec<Mutex<(i64, u8)>>,
    cursor: AtomicUsize,
}

impl Wallets {
    fn next_code(&self) -> Option<String> {
        for _ in 0..self.devices.len() {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % self.devices.len();
            let step = paycode::step_of(now_ms());
            let Ok(mut slot_state) = self.next[i].lock() else {
                continue;
            };
            if slot_state.0 != step {
                *slot_state = (step, 0);
            }
            if slot_state.1 > 9 {
                continue;
            }
            let d = slot_state.1;
            slot_state.1 += 1;
            let (slot, key) = &self.devices[i];
            return Some(paycode::generate(key, *slot, step, d).to_string());
        }
        None
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: Mutex<Vec<u64>>,
    succeeded: AtomicU64,
    declined: AtomicU64,
    errors: AtomicU64,
    /// Of the errors, requests not sent because no phone had a code left in the current
    /// 30-s step (10 per device): the offered rate exceeded what the customers can pay.
    no_code: AtomicU64,
}

async fn one_payment(
    http: &reqwest::Client,
    base: &str,
    wallets: &Wallets,
    keys: &[String],
    n: u64,
    tally: &Tally,
    started: Instant,
) {
    let Some(code) = wallets.next_code() else {
        tally.errors.fetch_add(1, Ordering::Relaxed);
        tally.no_code.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let amount = 100 + (n % 900) as i64;
    let key = &keys[(n as usize) % keys.len()];
    let body = serde_json::json!({
        "code": code, "amount": amount, "currency": "JPY", "order_ref": format!("bench-{n}"),
        "basket": [{"sku": "4900000000000", "category": "food", "quantity": 1, "unit_price": amount}]
    });
    let r = http
        .post(format!("{base}/v1/pos/payments"))
        .bearer_auth(key)
        .header(
            "Idempotency-Key",
            format!(
                "bench-{n}-{}",
                konbini_core::encoding::hex(&random_bytes::<6>())
            ),
        )
        .json(&body)
        .send()
        .await;
    let status = match r {
        Ok(resp) => {
            let ok = resp.status().as_u16() == 201;
            // A byte search instead of a JSON parse keeps the load generator's CPU (which
            // shares the two cores with the server) small.
            let body = resp.bytes().await.unwrap_or_default();
            let needle: &[u8] = b"\"status\":\"succeeded\"";
            let succeeded = body.windows(needle.len()).any(|w| w == needle);
            if ok && succeeded {
                0
            } else if ok {
                1
            } else {
                2
            }
        }
        Err(_) => 2,
    };
    let us = started.elapsed().as_micros() as u64;
    match status {
        0 => tally.succeeded.fetch_add(1, Ordering::Relaxed),
        1 => tally.declined.fetch_add(1, Ordering::Relaxed),
        _ => tally.errors.fetch_add(1, Ordering::Relaxed),
    };
    if let Ok(mut l) = tally.latencies_us.lock() {
        l.push(us);
    }
}

/// What the load generator needs to make payments: the HTTP client, the server's address,
/// the wallets that make codes and the terminals' keys.
#[derive(Clone)]
struct Load {
    http: reqwest::Client,
    base: String,
    wallets: Arc<Wallets>,
    keys: Arc<Vec<String>>,
    /// Numbers the requests across the warm-up and the measurement (amounts, order refs).
    counter: Arc<AtomicU64>,
}

impl Load {
    /// Offers `seconds` of load in the run's mode, recording each request in `tally`.
    async fn drive(&self, args: &BenchArgs, length: Duration, tally: Arc<Tally>) {
        let begin = Instant::now();
        let deadline = begin + length;
        let mut tasks = Vec::new();
        if args.rate == 0 {
            for _ in 0..args.concurrency.max(1) {
                let (load, tally) = (self.clone(), tally.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let n = load.counter.fetch_add(1, Ordering::Relaxed);
                        load.one(n, &tally, Instant::now()).await;
                    }
                }));
            }
        } else {
            let interval =
                Duration::from_nanos(1_000_000_000u64.checked_div(args.rate).unwrap_or(1));
            let total = (args.rate as f64 * length.as_secs_f64()).round() as u64;
            tasks.reserve(total as usize);
            for i in 0..total {
                let scheduled = begin + interval * i as u32;
                tokio::time::sleep_until(scheduled.into()).await;
                let (load, tally) = (self.clone(), tally.clone());
                let n = load.counter.fetch_add(1, Ordering::Relaxed);
                tasks.push(tokio::spawn(async move {
                    load.one(n, &tally, scheduled).await;
                }));
            }
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn one(&self, n: u64, tally: &Tally, started: Instant) {
        one_payment(
            &self.http,
            &self.base,
            &self.wallets,
            &self.keys,
            n,
            tally,
            started,
        )
        .await;
    }
}

/// What one side of a run measured: its requests, and the time and CPU of its phases.
#[derive(Default)]
struct Measured {
    tally: Arc<Tally>,
    elapsed_s: f64,
    cpu_s: Option<f64>,
    writer_cpu_s: Option<f64>,
    /// PostgreSQL's processes on this machine ([`postgres_cpu_s`]), on PostgreSQL.
    postgres_cpu_s: Option<f64>,
}

/// `total + (after - before)` when both readings are known (a missing one stays missing).
fn sum_of(total: Option<f64>, after: Option<f64>, before: Option<f64>) -> Option<f64> {
    let d = after.zip(before).map(|(a, b)| a - b)?;
    Some(total.unwrap_or(0.0) + d)
}

/// The measured phases, each the index of the side it loads and its length: the whole
/// duration on one side or, with `--alternate-risk`, phases of that length in the order
/// 0 1 1 0 0 1 1 0 …, so that a slow drift of the machine falls on both sides alike (a
/// multiple of four phases, as near the duration as there is: each side gets as many, and as
/// many early as late ones).
fn phases(args: &BenchArgs) -> Vec<(usize, Duration)> {
    let total = Duration::from_secs(args.duration_s);
    let Some(p) = args.alternate_risk.filter(|p| p.is_finite() && *p > 0.0) else {
        return vec![(0, total)];
    };
    let phase = Duration::from_secs_f64(p);
    let n = (((total.as_secs_f64() / p / 4.0).round() as usize).max(1)) * 4;
    (0..n).map(|i| ([0, 1, 1, 0][i % 4], phase)).collect()
}

/// The figures compared between the two sides of an alternating run.
struct Figures {
    throughput: f64,
    p99_ms: f64,
    cpu_us_per_payment: f64,
    postgres_cpu_us_per_payment: Option<f64>,
}

/// Prints one side's results and returns the figures it compares.
fn report(args: &BenchArgs, m: &Measured) -> Figures {
    let tally = &m.tally;
    let mut lat = tally
        .latencies_us
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_unstable();
    let ok = tally.succeeded.load(Ordering::Relaxed);
    println!(
        "payments: {} succeeded, {} declined, {} errors in {:.1} s",
        ok,
        tally.declined.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        m.elapsed_s
    );
    let throughput = ok as f64 / m.elapsed_s.max(f64::MIN_POSITIVE);
    println!("throughput: {throughput:.0} payments/s");
    let no_code = tally.no_code.load(Ordering::Relaxed);
    if no_code > 0 {
        // A phone makes at most 10 codes per 30-s step (docs/payment-codes.md).
        println!(
            "{no_code} of these errors are requests not sent: no phone had a code left in its 30-s step (10 each); {} customers can pay at most {} payments/s: use more --customers",
            args.customers,
            args.customers * 10 / 30
        );
    }
    // At full speed, CPU per payment is steadier than throughput on a shared 2-core machine:
    // it moves with the work done (server, load generator and, on SQLite, the database;
    // PostgreSQL's own CPU is not in it) more than with scheduling.
    let per_payment = |cpu: Option<f64>| {
        cpu.filter(|_| ok > 0 && args.rate == 0)
            .map(|c| c * 1e6 / ok as f64)
    };
    let cpu = per_payment(m.cpu_s);
    if let Some(c) = cpu {
        println!("cpu (this process): {c:.0} µs per payment");
    }
    // On SQLite one writer thread applies every change: its CPU per payment is the cost
    // that bounds throughput, and the steadiest figure for comparing two builds.
    if let Some(w) = per_payment(m.writer_cpu_s) {
        println!("cpu (SQLite writer thread): {w:.0} µs per payment");
    }
    // On a machine the load keeps busy, this process's and PostgreSQL's CPU per payment
    // together bound throughput: the engine's cost in CPU, without the scheduling noise.
    let postgres_cpu = per_payment(m.postgres_cpu_s);
    if let Some(p) = postgres_cpu {
        println!("cpu (PostgreSQL's processes on this machine): {p:.0} µs per payment");
    }
    let p99_ms = percentile(&lat, 99.0);
    println!(
        "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 50.0),
        percentile(&lat, 95.0),
        p99_ms,
        percentile(&lat, 100.0)
    );
    Figures {
        throughput,
        p99_ms,
        cpu_us_per_payment: cpu.unwrap_or(0.0),
        postgres_cpu_us_per_payment: postgres_cpu,
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest-rank percentile; the float is only for reporting, never for money.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

pub fn run(args: BenchArgs, database_url: &str) -> Result<ExitCode, String> {
    let default_url = format!("sqlite://{BENCH_DB}");
    let url = if database_url == "sqlite://konbini.db" {
        default_url.as_str()
    } else {
        database_url
    };
    if url == default_url && !args.keep {
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{BENCH_DB}{s}"));
        }
    }
    let db = crate::open_db(url)?;
    let secret = MasterSecret::new(random_bytes::<32>().to_vec())?;
    println!(
        "konbini bench on {} ({} customers, {} stores)",
        crate::redact_url(url),
        args.customers,
        args.stores
    );
    let t = Instant::now();
    let seeded = seed(&db, &secret, &args)?;
    // Vacuum and analyze the seed's tables now (PostgreSQL): autovacuum would otherwise
    // start on every one of them a few seconds after a bulk load, that is in the first phases
    // of the measurement, and with `--alternate-risk` load one side more than the other.
    konbini_store::Db::vacuum_analyze(url).map_err(|e| e.to_string())?;
    // Write the seed out of the log first, so its checkpoint does not land in the measurement.
    let _ = db.read_blocking(|c| match c.backend() {
        konbini_store::Backend::Sqlite => {
            c.query("PRAGMA wal_checkpoint(TRUNCATE)", &[]).map(|_| ())
        }
        konbini_store::Backend::Postgres => c.exec("CHECKPOINT", &[]).map(|_| ()),
    });
    println!("seeded in {:.1} s", t.elapsed().as_secs_f64());
    // One side, or two in alternation (`--alternate-risk`): without, then with the engine.
    let sides: Vec<(bool, &str)> = match args.alternate_risk {
        Some(_) => vec![(false, "without the engine"), (true, "with the engine")],
        None => vec![(!args.without_risk, "")],
    };
    if args.without_risk {
        println!("risk engine: OFF (--without-risk)");
    }
    let mut states = Vec::new();
    for (risk_in_line, _) in &sides {
        let config = Config {
            risk_in_line: *risk_in_line,
            ..Config::default()
        };
        states.push(AppState::new(
            db.clone(),
            config,
            Arc::new(SystemClock),
            secret.clone(),
        )?);
    }
    let on_postgres = db.backend() == konbini_store::Backend::Postgres;
    let rt = crate::runtime()?;
    let load_args = args.clone();
    let (warmup, measured) = rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .map_err(|e| e.to_string())?;
        let wallets = Arc::new(Wallets {
            next: (0..seeded.devices.len())
                .map(|_| Mutex::new((0, 0)))
                .collect(),
            devices: seeded.devices,
            cursor: AtomicUsize::new(0),
        });
        let (keys, counter) = (Arc::new(seeded.terminal_keys), Arc::new(AtomicU64::new(0)));
        let (mut loads, mut servers) = (Vec::new(), Vec::new());
        for state in states {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let base = format!(
                "http://{}",
                listener.local_addr().map_err(|e| e.to_string())?
            );
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(konbini_server::serve(listener, state, async move {
                let _ = stop_rx.await;
            }));
            servers.push((stop_tx, server));
            // Both sides share the phones (codes are spent once) and the request numbers.
            loads.push(Load {
                http: http.clone(),
                base,
                wallets: wallets.clone(),
                keys: keys.clone(),
                counter: counter.clone(),
            });
        }
        let warmup = Arc::new(Tally::default());
        for load in &loads {
            load.drive(
                &load_args,
                Duration::from_secs(load_args.warmup_s),
                warmup.clone(),
            )
            .await;
        }
        let mut measured: Vec<Measured> = loads.iter().map(|_| Measured::default()).collect();
        for (side, phase) in phases(&load_args) {
            let m = &mut measured[side];
            let cpu_before = process_cpu_s();
            let writer_before = thread_cpu_s("sqlite-writer");
            let postgres_before = on_postgres.then(postgres_cpu_s).flatten();
            let begin = Instant::now();
            loads[side].drive(&load_args, phase, m.tally.clone()).await;
            m.elapsed_s += begin.elapsed().as_secs_f64();
            m.cpu_s = sum_of(m.cpu_s, process_cpu_s(), cpu_before);
            m.writer_cpu_s = sum_of(m.writer_cpu_s, thread_cpu_s("sqlite-writer"), writer_before);
            let postgres_after = on_postgres.then(postgres_cpu_s).flatten();
            m.postgres_cpu_s = sum_of(m.postgres_cpu_s, postgres_after, postgres_before);
        }
        for (stop_tx, server) in servers {
            let _ = stop_tx.send(());
            let _ = server.await;
        }
        Ok::<_, String>((warmup, measured))
    })?;
    if args.warmup_s > 0 {
        println!(
            "warm-up (not measured): {} succeeded, {} declined, {} errors in {} s{}",
            warmup.succeeded.load(Ordering::Relaxed),
            warmup.declined.load(Ordering::Relaxed),
            warmup.errors.load(Ordering::Relaxed),
            args.warmup_s,
            if sides.len() > 1 { " per side" } else { "" }
        );
    }
    println!(
        "mode: {}",
        if args.rate == 0 {
            format!("full speed, {} in flight", args.concurrency)
        } else {
            format!("fixed rate {} payments/s (open loop)", args.rate)
        }
    );
    if let Some(p) = args.alternate_risk {
        println!(
            "alternating: one database served with and without the risk engine, the load sent to each in turn {p} s at a time"
        );
    }
    let mut figures = Vec::new();
    for ((_, label), m) in sides.iter().zip(&measured) {
        if !label.is_empty() {
            println!("-- {label}:");
        }
        figures.push(report(&args, m));
    }
    if let [off, on] = figures.as_slice() {
        println!(
            "the engine's cost: throughput {:+.1} %, p99 {:+.2} ms, cpu (this process) {:+.0} µs per payment",
            (on.throughput / off.throughput - 1.0) * 100.0,
            on.p99_ms - off.p99_ms,
            on.cpu_us_per_payment - off.cpu_us_per_payment
        );
        if let (Some(a), Some(b)) = (
            off.postgres_cpu_us_per_payment,
            on.postgres_cpu_us_per_payment,
        ) {
            let (off_all, on_all) = (off.cpu_us_per_payment + a, on.cpu_us_per_payment + b);
            println!(
                "the engine's cost in cpu: PostgreSQL {:+.0} µs per payment; with this process {:+.0} µs ({:+.1} %)",
                b - a,
                on_all - off_all,
                (on_all / off_all - 1.0) * 100.0
            );
        }
    }
    let errors = warmup.errors.load(Ordering::Relaxed)
        + measured
            .iter()
            .map(|m| m.tally.errors.load(Ordering::Relaxed))
            .sum::<u64>();
    let t = Instant::now();
    db.write_blocking(konbini_store::ledger::refresh_statistics)
        .map_err(|e| e.to_string())?;
    let report = db
        .read_blocking(ledger::verify)
        .map_err(|e| e.to_string())?;
    println!(
        "{} ({:.1} s)",
        crate::provision::format_verify(&report).trim_end(),
        t.elapsed().as_secs_f64()
    );
    Ok(if report.ok() && errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
