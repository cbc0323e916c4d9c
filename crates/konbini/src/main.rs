//! `konbini`: the one binary. Serve the API, run the demo, provision stores and terminals,
//! verify the ledger, report settlement, list and backtest risk rules, run the processor
//! simulator, benchmark.
#![forbid(unsafe_code)]

// Payments allocate many small, short-lived buffers (rows, parameters, JSON) on a few busy
// threads; mimalloc serves them with far less contention and bookkeeping than glibc malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod demo;
mod provision;
mod risk_cli;
mod settings;

use clap::{Parser, Subcommand};
use konbini_server::clock::SystemClock;
use konbini_server::state::AppState;
use konbini_store::{Db, DbConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "konbini",
    version,
    about = "Konbini: wallet and barcode payments for store chains"
)]
struct Cli {
    /// Database: sqlite://FILE (embedded, the default) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "KONBINI_DATABASE_URL")]
    database_url: Option<String>,
    /// TOML configuration file (see docs/operations.md).
    #[arg(long, global = true, env = "KONBINI_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "KONBINI_BIND")]
        bind: Option<String>,
        /// Base URL used in links sent to customers.
        #[arg(long, env = "KONBINI_PUBLIC_URL")]
        public_url: Option<String>,
        /// Card processor base URL (default: the in-process simulator).
        #[arg(long, env = "KONBINI_PROCESSOR_URL")]
        processor_url: Option<String>,
        /// Seed and run the demo chain as well (same as `konbini demo`).
        #[arg(long)]
        demo: bool,
    },
    /// Seed a demo chain on a fresh SQLite database, serve it, and walk through a payment.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Stop after the walk-through instead of serving (for scripts and tests).
        #[arg(long)]
        exit_after_walkthrough: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Stores.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// POS terminals.
    Terminal {
        #[command(subcommand)]
        action: TerminalAction,
    },
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        action: LedgerAction,
    },
    /// Operator staff accounts.
    Staff {
        #[command(subcommand)]
        action: StaffAction,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Reports.
    Report {
        #[command(subcommand)]
        action: ReportAction,
    },
    /// Risk rules: list them, backtest a candidate against the decision journal.
    Risk {
        #[command(subcommand)]
        action: RiskAction,
    },
    /// Run the card-processor simulator as its own HTTP service.
    ProcessorSim {
        #[arg(long, default_value = "127.0.0.1:8090")]
        bind: String,
        /// How long the slow test card stalls.
        #[arg(long, default_value_t = 3000)]
        slow_ms: u64,
    },
    /// Benchmark POS payments over HTTP (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum StoreAction {
    /// Add a store.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        region: String,
        /// Latitude in degrees (with --lon; the risk engine's travel checks use it).
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude in degrees.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
    },
    /// List stores.
    List,
}

#[derive(Subcommand)]
enum TerminalAction {
    /// Add a terminal to a store and print its key (shown once, stored hashed).
    Add {
        #[arg(long)]
        store: String,
        #[arg(long, default_value = "till")]
        label: String,
    },
    /// Revoke a terminal's key.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum LedgerAction {
    /// Check every ledger invariant; exits 1 and reports when one fails.
    Verify,
}

#[derive(Subcommand)]
enum StaffAction {
    /// Add a staff member: prints a generated password and the TOTP enrolment URI, once.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// support, analyst, security, finance or admin
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Recompute the audit log's hash chain; exits 1 and reports any edited, deleted or
    /// reordered record.
    Verify,
}

#[derive(Subcommand)]
enum ReportAction {
    /// Each store's totals for one business day (JST).
    Settlement {
        /// YYYY-MM-DD
        #[arg(long)]
        date: String,
    },
}

#[derive(Subcommand)]
enum RiskAction {
    /// List the stored rules, highest priority first.
    Rules,
    /// Replay the journaled decisions of a period with a candidate rule and report what it
    /// would have changed (see docs/risk.md, "Backtesting").
    Backtest {
        /// The candidate rule: a TOML or JSON file with name, description, source, priority
        /// (and optionally mode, which does not matter here).
        #[arg(long)]
        rule: PathBuf,
        /// Start: YYYY-MM-DD (the JST business day's start) or unix milliseconds.
        #[arg(long)]
        from: String,
        /// End: YYYY-MM-DD (included: the window ends with that JST day) or unix
        /// milliseconds (excluded).
        #[arg(long)]
        to: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KONBINI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn open_db(url: &str) -> Result<Db, String> {
    Db::open(&DbConfig::new(url)).map_err(|e| format!("cannot open {}: {e}", redact_url(url)))
}

/// Hides a password in a database URL before it is printed.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..s + 3 + colon], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let file = settings::load_file(cli.config.as_deref())?;
    let database_url = cli
        .database_url
        .clone()
        .or_else(|| file.database_url.clone())
        .unwrap_or_else(|| "sqlite://konbini.db".to_string());
    match cli.command {
        Command::Serve {
            bind,
            public_url,
            processor_url,
            demo,
        } => {
            let bind = bind
                .or_else(|| file.bind.clone())
                .unwrap_or_else(|| "127.0.0.1:8080".into());
            let config = settings::server_config(&file, public_url, processor_url);
            let secret = settings::master_secret(
                std::env::var("KONBINI_SECRET_KEY").ok(),
                std::env::var("KONBINI_SECRET_KEY_FILE")
                    .ok()
                    .or(file.secret_key_file.clone()),
                &database_url,
            )?;
            let db = open_db(&database_url)?;
            runtime()?.block_on(async move {
                let mut config = config;
                // The demo brings its own mail server and SMS gateway (printed on the console).
                let inbox = match demo {
                    true => Some(demo::Inbox::start(&mut config).await?),
                    false => None,
                };
                let state = AppState::new(db, config, Arc::new(SystemClock), secret)?;
                let listener = tokio::net::TcpListener::bind(&bind)
                    .await
                    .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                tracing::info!(%addr, database = %redact_url(&database_url), "konbini serving");
                if let Some(inbox) = inbox {
                    let st = state.clone();
                    tokio::spawn(async move {
                        match demo::after_start(st, addr, false, &inbox).await {
                            Ok(()) => inbox.print_forever().await,
                            Err(e) => eprintln!("demo walk-through failed: {e}"),
                        }
                    });
                } else {
                    println!(
                        "Konbini is serving on http://{addr} (API reference: http://{addr}/docs)"
                    );
                }
                konbini_server::serve(listener, state, shutdown_signal())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Demo {
            bind,
            exit_after_walkthrough,
        } => demo::run(&bind, exit_after_walkthrough),
        Command::Migrate => {
            open_db(&database_url)?;
            println!(
                "database is at schema version {}",
                konbini_store::migrations::latest_version()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Store { action } => {
            let db = open_db(&database_url)?;
            match action {
                StoreAction::Add {
                    id,
                    name,
                    region,
                    lat,
                    lon,
                } => {
                    let at = lat
                        .zip(lon)
                        .map(|(lat, lon)| provision::Location { lat, lon });
                    provision::add_store(&db, &id, &name, &region, at)?
                }
                StoreAction::List => provision::list_stores(&db)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Terminal { action } => {
            let db = open_db(&database_url)?;
            match action {
                TerminalAction::Add { store, label } => {
                    let (id, key) = provision::add_terminal(&db, &store, &label)?;
                    println!("terminal {id} added to store {store}");
                    println!("terminal key (shown once, store it in the POS now): {key}");
                }
                TerminalAction::Revoke { id } => provision::revoke_terminal(&db, &id)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            action: LedgerAction::Verify,
        } => {
            let db = open_db(&database_url)?;
            db.write_blocking(konbini_store::ledger::refresh_statistics)
                .map_err(|e| e.to_string())?;
            let report = db
                .read_blocking(konbini_store::ledger::verify)
                .map_err(|e| e.to_string())?;
            println!("{}", provision::format_verify(&report));
            Ok(if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Staff {
            action: StaffAction::Add { email, name, role },
        } => {
            let secret = settings::master_secret(
                std::env::var("KONBINI_SECRET_KEY").ok(),
                std::env::var("KONBINI_SECRET_KEY_FILE")
                    .ok()
                    .or(file.secret_key_file.clone()),
                &database_url,
            )?;
            let db = open_db(&database_url)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let s = konbini_server::app::staff::create(&db, &secret, &email, &name, &role, now)?;
            println!("staff {} added with role {role}", s.id);
            println!(
                "password (shown once; hand it over in person): {}",
                s.password
            );
            println!(
                "second factor (mandatory): enrol this URI in an authenticator app, e.g. as a QR code:"
            );
            println!("  {}", s.totp_uri);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            action: AuditAction::Verify,
        } => {
            let db = open_db(&database_url)?;
            let report = db
                .read_blocking(konbini_store::audit::verify)
                .map_err(|e| e.to_string())?;
            println!("{}", provision::format_audit(&report));
            Ok(if report.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Report {
            action: ReportAction::Settlement { date },
        } => {
            let db = open_db(&database_url)?;
            provision::settlement(&db, &date)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Risk { action } => {
            let db = open_db(&database_url)?;
            match action {
                RiskAction::Rules => risk_cli::rules(&db)?,
                RiskAction::Backtest { rule, from, to } => {
                    risk_cli::backtest(db, &rule, &from, &to)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::ProcessorSim { bind, slow_ms } => runtime()?.block_on(async move {
            let listener = tokio::net::TcpListener::bind(&bind)
                .await
                .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            println!("card-processor simulator on http://{addr}");
            for (number, what) in konbini_server::processor::TEST_CARDS {
                println!("  {number}  {what}");
            }
            let app = konbini_server::processor::simulator_router(
                konbini_server::processor::Simulator::new(slow_ms),
            );
            axum_serve(listener, app).await?;
            Ok(ExitCode::SUCCESS)
        }),
        Command::Bench(args) => bench::run(args, &database_url),
    }
}

async fn axum_serve(listener: tokio::net::TcpListener, app: axum::Router) -> Result<(), String> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
