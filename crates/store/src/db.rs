//! [`Db`]: the handle the rest of the system uses to run transactions on either backend.

use crate::StoreError;
use crate::postgres::{self as pg, PgConn, PgJob};
use crate::sqlite::{self, ReadJob, SqliteConn, WriteJob};
use crate::value::Conn;
use std::sync::Arc;

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a database.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db` (also `postgresql://`).
    pub url: String,
    /// PostgreSQL connections (one worker thread each); `KONBINI_PG_POOL`, or 4 per core.
    pub pg_pool_size: usize,
    /// SQLite reader threads (the writer is always one).
    pub sqlite_readers: usize,
}

impl DbConfig {
    pub fn new(url: &str) -> DbConfig {
        DbConfig {
            url: url.to_string(),
            // A few connections per core: more only adds context switches and lock
            // contention inside PostgreSQL (measured in docs/benchmarks.md).
            pg_pool_size: std::env::var("KONBINI_PG_POOL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| {
                    4 * std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
                }),
            sqlite_readers: 2,
        }
    }
}

enum Inner {
    Sqlite {
        writer: crossbeam_channel::Sender<WriteJob>,
        readers: crossbeam_channel::Sender<ReadJob>,
    },
    Postgres {
        jobs: crossbeam_channel::Sender<PgJob>,
    },
}

/// A database handle. Cheap to clone; all clones share the same executor threads.
/// Starts thread `name` with its own connection to the SQLite file `path`, opened there (a
/// connection keeps its prepared statements, which cannot move between threads), set up with
/// `setup`, then handed to `run`. Returns once the connection is open and set up, or with
/// the error that prevented it.
fn spawn_sqlite(
    name: String,
    path: &str,
    setup: fn(&mut SqliteConn) -> Result<(), StoreError>,
    run: impl FnOnce(SqliteConn) + Send + 'static,
) -> Result<(), StoreError> {
    let path = path.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let opened = SqliteConn::open(&path).and_then(|mut c| setup(&mut c).map(|()| c));
            match opened {
                Ok(c) => {
                    let _ = ready_tx.send(Ok(()));
                    run(c);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| StoreError::Db(e.to_string()))?;
    ready_rx
        .recv()
        .map_err(|_| StoreError::Db("a database thread stopped while opening".into()))?
}

/// Whether `url` names a PostgreSQL database (`postgres://` or `postgresql://`).
fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
    backend: Backend,
}

/// Bound on queued jobs per executor: beyond it callers wait (back-pressure, not memory growth).
const QUEUE_BOUND: usize = 8192;

impl Db {
    /// Opens the database and runs pending migrations.
    ///
    /// Safe to call from async code: connecting happens on a plain thread, because the
    /// PostgreSQL client blocks on a runtime of its own.
    pub fn open(config: &DbConfig) -> Result<Db, StoreError> {
        let config = config.clone();
        std::thread::spawn(move || Db::open_here(&config))
            .join()
            .map_err(|_| StoreError::Db("database open panicked".into()))?
    }

    fn open_here(config: &DbConfig) -> Result<Db, StoreError> {
        if let Some(path) = config.url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or(path).to_string();
            if path.is_empty() {
                return Err(StoreError::Url("sqlite:// needs a file path".into()));
            }
            let (wtx, wrx) = crossbeam_channel::bounded::<WriteJob>(QUEUE_BOUND);
            // The writer migrates before the readers open (they would see an empty schema).
            spawn_sqlite(
                "sqlite-writer".into(),
                &path,
                crate::migrations::run_sqlite,
                |c| sqlite::writer_loop(c, wrx),
            )?;
            let (rtx, rrx) = crossbeam_channel::bounded::<ReadJob>(QUEUE_BOUND);
            for i in 0..config.sqlite_readers.max(1) {
                let rx = rrx.clone();
                spawn_sqlite(
                    format!("sqlite-reader-{i}"),
                    &path,
                    |_| Ok(()),
                    |c| sqlite::reader_loop(c, rx),
                )?;
            }
            Ok(Db {
                inner: Arc::new(Inner::Sqlite {
                    writer: wtx,
                    readers: rtx,
                }),
                backend: Backend::Sqlite,
            })
        } else if is_postgres_url(&config.url) {
            let mut first = PgConn::connect(&config.url)?;
            crate::migrations::run_postgres(&mut first)?;
            let (tx, rx) = crossbeam_channel::bounded::<PgJob>(QUEUE_BOUND);
            let mut conns = vec![first];
            for _ in 1..config.pg_pool_size.max(1) {
                conns.push(PgConn::connect(&config.url)?);
            }
            for (i, conn) in conns.into_iter().enumerate() {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("pg-worker-{i}"))
                    .spawn(move || pg::worker_loop(conn, rx))
                    .map_err(|e| StoreError::Db(e.to_string()))?;
            }
            Ok(Db {
                inner: Arc::new(Inner::Postgres { jobs: tx }),
                backend: Backend::Postgres,
            })
        } else {
            Err(StoreError::Url(
                "expected sqlite://PATH or postgres://...".into(),
            ))
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// On PostgreSQL, vacuums and analyzes every table of the database at `url` (outside a
    /// transaction, on a connection of its own), so that after a bulk load autovacuum has
    /// nothing left to do for a while (`konbini bench`, before it measures); nothing on
    /// SQLite, which has no autovacuum.
    pub fn vacuum_analyze(url: &str) -> Result<(), StoreError> {
        if !is_postgres_url(url) {
            return Ok(());
        }
        let url = url.to_string();
        std::thread::spawn(move || PgConn::connect(&url)?.batch("VACUUM (ANALYZE)"))
            .join()
            .map_err(|_| StoreError::Db("vacuum panicked".into()))?
    }

    /// Runs `f` as one read-write transaction and returns once it is durably committed.
    /// `f` may be run more than once on PostgreSQL (after a deadlock), so it must not have
    /// side effects outside the transaction.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut dyn Conn) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        match &*self.inner {
            Inner::Sqlite { writer, .. } => {
                let mut f = f;
                // The writer may run a job again (sqlite::writer_loop); the answer goes out
                // once, from the outcome of the run that counted.
                let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
                let job: WriteJob = Box::new(move |conn: &mut SqliteConn| {
                    let r = f(conn);
                    let ok = r.is_ok();
                    let tx = tx.clone();
                    let done: sqlite_outcome::Outcome = Box::new(move |commit_err| {
                        let tx = tx.lock().ok().and_then(|mut t| t.take());
                        if let Some(tx) = tx {
                            let _ = tx.send(match commit_err {
                                None => r,
                                Some(e) => Err(E::from(e)),
                            });
                        }
                    });
                    (ok, done)
                });
                send(writer, job)?;
            }
            Inner::Postgres { jobs } => {
                let job: PgJob = Box::new(move |conn: &mut PgConn| {
                    let _ = tx.send(run_pg_tx(conn, f, None));
                });
                send(jobs, job)?;
            }
        }
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Runs `f` in a read-only transaction: one snapshot for all its statements (on PostgreSQL
    /// at REPEATABLE READ, so a multi-statement check such as `ledger verify` sees one state
    /// of a live database).
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut dyn Conn) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, E>>();
        match &*self.inner {
            Inner::Sqlite { readers, .. } => {
                let mut f = f;
                let job: ReadJob = Box::new(move |conn: &mut SqliteConn| {
                    let r = match conn.batch("BEGIN") {
                        Err(e) => Err(E::from(e)),
                        Ok(()) => {
                            let r = f(conn);
                            let _ = conn.batch("COMMIT");
                            r
                        }
                    };
                    let _ = tx.send(r);
                });
                send(readers, job)?;
            }
            Inner::Postgres { jobs } => {
                let job: PgJob = Box::new(move |conn: &mut PgConn| {
                    let _ = tx.send(run_pg_tx(
                        conn,
                        f,
                        Some("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"),
                    ));
                });
                send(jobs, job)?;
            }
        }
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// Blocking variant of [`Db::write`] for command-line tools (not for async contexts).
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut dyn Conn) -> Result<T, E> + Send + 'static,
    {
        block_on(self.write(f))
    }

    /// Blocking variant of [`Db::read`] for command-line tools (not for async contexts).
    pub fn read_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnMut(&mut dyn Conn) -> Result<T, E> + Send + 'static,
    {
        block_on(self.read(f))
    }
}

mod sqlite_outcome {
    pub type Outcome = Box<dyn FnOnce(Option<crate::StoreError>) + Send>;
}

fn send<J>(chan: &crossbeam_channel::Sender<J>, job: J) -> Result<(), StoreError> {
    // The queue is bounded; a full queue blocks this (async) caller briefly. With the bound
    // far above the worker count this only happens under overload.
    chan.send(job).map_err(|_| StoreError::Closed)
}

fn run_pg_tx<T, E, F>(conn: &mut PgConn, mut f: F, begin: Option<&str>) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnMut(&mut dyn Conn) -> Result<T, E>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Err(e) = conn.start(begin) {
            return Err(E::from(e));
        }
        match f(conn) {
            Ok(v) => match conn.finish(true) {
                Ok(()) => return Ok(v),
                Err(StoreError::Retry(_)) if attempt < pg::MAX_RETRIES => continue,
                Err(e) => return Err(E::from(e)),
            },
            Err(e) => {
                let _ = conn.finish(false);
                if conn.retryable && attempt < pg::MAX_RETRIES {
                    continue;
                }
                return Err(e);
            }
        }
    }
}

/// A minimal blocking executor for the synchronous wrappers: the oneshot is completed by
/// another thread, so parking until woken is all that is needed.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
