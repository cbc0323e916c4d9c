//! Fresh databases for tests: always a new SQLite file, and a new PostgreSQL schema when
//! `KONBINI_TEST_PG_URL` names a server. Under `CI=true` a missing PostgreSQL is an error,
//! so CI can never pass by silently testing one backend.

use crate::{Db, DbConfig, StoreError};

/// A database created for one test.
pub struct TestDb {
    /// "sqlite" or "postgres", for assertion messages.
    pub label: &'static str,
    pub url: String,
    pub db: Db,
}

fn unique_name() -> String {
    let mut b = [0u8; 8];
    // Collisions only matter within one run; time + pid + a counter is plenty.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    b.copy_from_slice(
        &(t ^ (u64::from(std::process::id()) << 32) ^ n.rotate_left(48)).to_be_bytes(),
    );
    format!("t{}", konbini_core::encoding::hex(&b))
}

/// A fresh SQLite database URL in the temporary directory.
pub fn sqlite_url() -> String {
    let dir = std::env::temp_dir().join("konbini-tests");
    let _ = std::fs::create_dir_all(&dir);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| remove_stale_files(&dir, std::time::Duration::from_secs(6 * 3600)));
    format!("sqlite://{}/{}.db", dir.display(), unique_name())
}

/// Removes the databases earlier test runs left behind (a test does not delete its own:
/// the database outlives the test's last assertion). `scripts/test` gives each run its own
/// temporary directory; a plain `cargo test` reuses this one, and without the sweep it grew
/// by hundreds of megabytes a day. Only files untouched for `age` go: a run in progress
/// keeps writing to its own.
fn remove_stale_files(dir: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A fresh PostgreSQL schema on the test server, as a URL whose search_path selects it;
/// `None` when no test server is configured (outside CI).
pub fn postgres_url() -> Option<String> {
    let base = match std::env::var("KONBINI_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but KONBINI_TEST_PG_URL is not set: PostgreSQL tests must run in CI"
            );
            return None;
        }
    };
    let schema = unique_name();
    let (b, s) = (base.clone(), schema.clone());
    // A plain thread: the blocking client must not run inside an async runtime.
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&b, postgres::NoTls).unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at KONBINI_TEST_PG_URL: {e}")
        });
        admin
            .batch_execute(&format!("CREATE SCHEMA {s}"))
            .unwrap_or_else(|e| panic!("cannot create a test schema: {e}"));
    })
    .join()
    .unwrap_or_else(|_| panic!("creating the PostgreSQL test schema failed"));
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// Opens one fresh database per available backend.
pub fn databases() -> Vec<TestDb> {
    let mut out = Vec::new();
    let url = sqlite_url();
    out.push(TestDb {
        label: "sqlite",
        db: open(&url).unwrap_or_else(|e| panic!("sqlite test db: {e}")),
        url,
    });
    if let Some(url) = postgres_url() {
        out.push(TestDb {
            label: "postgres",
            db: open(&url).unwrap_or_else(|e| panic!("postgres test db: {e}")),
            url,
        });
    }
    out
}

fn open(url: &str) -> Result<Db, StoreError> {
    let mut cfg = DbConfig::new(url);
    cfg.pg_pool_size = 8;
    Db::open(&cfg)
}
