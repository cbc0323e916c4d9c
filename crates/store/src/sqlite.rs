//! The embedded SQLite backend: one writer thread with group commit, a few reader threads.
//!
//! SQLite allows one writer at a time, so writes are funnelled to a single thread that owns
//! the write connection. It takes every job waiting in its queue (up to [`MAX_BATCH`]) into
//! one transaction and commits once (see [`writer_loop`] for how one job's failure is undone): one fsync is shared
//! by the whole batch (group commit), and no caller is answered before that fsync. WAL mode
//! lets reader threads run at the same time as the writer.

use crate::value::{Conn, Row, Value};
use crate::{Backend, StoreError};
use rusqlite::types::ValueRef;
use std::collections::HashMap;
use std::time::Duration;

/// Most jobs committed together. Bounds both the latency a job can add to others and the
/// memory of one batch.
pub const MAX_BATCH: usize = 256;

pub(crate) type WriteOutcome = Box<dyn FnOnce(Option<StoreError>) + Send>;
/// A write job: runs on the writer's connection and says whether it succeeded, returning
/// the callback that delivers its result once the batch's commit is known.
/// Jobs may run more than once (see [`writer_loop`]); only the last run's outcome is used.
pub(crate) type WriteJob = Box<dyn FnMut(&mut SqliteConn) -> (bool, WriteOutcome) + Send>;
pub(crate) type ReadJob = Box<dyn FnOnce(&mut SqliteConn) + Send>;

/// A connection's prepared statements, by the address and length of their static text
/// (`Conn::exec` and `Conn::query` take `&'static str`), each prepared on first use (`$N`
/// translated to `?N`) and kept, reset, for the next. Looking one up hashes a pointer, where
/// rusqlite's own statement cache hashes the whole text twice per use (taken out, put back):
/// the payment's statements are long, and that hashing was measured at 13,000 instructions of
/// the writer thread's payment.
// Keyed by the statement text's address: hashed with foldhash, not the default SipHash,
// which cost about 200 instructions a lookup and a payment looks up 13 to 16 statements.
type Statements<'c> = HashMap<(usize, usize), rusqlite::Statement<'c>, foldhash::fast::RandomState>;

self_cell::self_cell!(
    /// The connection with the statements prepared on it (which borrow it).
    struct Prepared {
        owner: rusqlite::Connection,
        #[covariant]
        dependent: Statements,
    }
);

pub struct SqliteConn {
    prepared: Prepared,
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            rusqlite::ErrorCode::ConstraintViolation => {
                return StoreError::Constraint(msg.clone().unwrap_or_default());
            }
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                return StoreError::Retry(e.to_string());
            }
            _ => {}
        }
    }
    StoreError::Db(e.to_string())
}

impl SqliteConn {
    pub(crate) fn open(path: &str) -> Result<SqliteConn, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(map_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
        // WAL + FULL: every commit is fsynced to the WAL before the caller is answered.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
             PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
        )
        .map_err(map_err)?;
        // Without the query planner stability guarantee, SQLite re-parses and re-plans a cached
        // statement every time a bound parameter meets a partial index's WHERE clause in the
        // planner (it might pick another plan for other values). `pos_context` is such a
        // statement: measured, a quarter of the payment path's CPU went to re-preparing it.
        // Our plans do not depend on parameter values, so keep them.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(map_err)?;
        Ok(SqliteConn {
            prepared: Prepared::new(conn, |_| HashMap::default()),
        })
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.prepared
            .borrow_owner()
            .execute_batch(sql)
            .map_err(map_err)
    }

    fn total_changes(&self) -> u64 {
        self.prepared.borrow_owner().total_changes()
    }
}

/// The statement of `sql` on `conn`, prepared on first use.
fn statement<'s, 'c>(
    conn: &'c rusqlite::Connection,
    statements: &'s mut Statements<'c>,
    sql: &'static str,
) -> Result<&'s mut rusqlite::Statement<'c>, StoreError> {
    use std::collections::hash_map::Entry;
    match statements.entry((sql.as_ptr() as usize, sql.len())) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        // Persistent: kept for the connection's life, so SQLite allocates it outside the
        // connection's small-allocation pool (lookaside), which the statements' executions
        // need. Prepared without it, the kept statements were measured to exhaust that pool
        // and send every later small allocation to `malloc` (+45,000 instructions a payment).
        Entry::Vacant(e) => Ok(e.insert(
            conn.prepare_with_flags(
                &sql.replace('$', "?"),
                rusqlite::PrepFlags::SQLITE_PREPARE_PERSISTENT,
            )
            .map_err(map_err)?,
        )),
    }
}

/// Binds every parameter of the statement: exactly as many values as it has parameters, as
/// PostgreSQL requires too (a kept statement keeps its last values bound, so a parameter
/// left out would not be NULL but the previous call's value).
fn bind(stmt: &mut rusqlite::Statement<'_>, params: &[Value]) -> Result<(), StoreError> {
    if params.len() != stmt.parameter_count() {
        return Err(StoreError::Db(format!(
            "{} values for a statement of {} parameters",
            params.len(),
            stmt.parameter_count()
        )));
    }
    for (i, v) in params.iter().enumerate() {
        let idx = i + 1;
        let r = match v {
            Value::Null => stmt.raw_bind_parameter(idx, rusqlite::types::Null),
            Value::Int(x) => stmt.raw_bind_parameter(idx, x),
            Value::Text(s) => stmt.raw_bind_parameter(idx, s.as_str()),
            Value::Bytes(b) => stmt.raw_bind_parameter(idx, b.as_slice()),
        };
        r.map_err(map_err)?;
    }
    Ok(())
}

/// Every row of `rows`, each value decoded; the statement is reset when `rows` is dropped.
fn read_rows(mut rows: rusqlite::Rows<'_>, cols: usize) -> Result<Vec<Row>, StoreError> {
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(map_err)? {
        let mut vals = Vec::with_capacity(cols);
        for i in 0..cols {
            vals.push(match r.get_ref(i).map_err(map_err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(x) => Value::Int(x),
                ValueRef::Real(_) => {
                    return Err(StoreError::Decode("floating point column".into()));
                }
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
        out.push(Row(vals));
    }
    Ok(out)
}

impl Conn for SqliteConn {
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64, StoreError> {
        self.prepared.with_dependent_mut(|conn, statements| {
            let stmt = statement(conn, statements, sql)?;
            bind(stmt, params)?;
            let n = stmt.raw_execute().map_err(map_err)?;
            Ok(n as u64)
        })
    }

    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.prepared.with_dependent_mut(|conn, statements| {
            let stmt = statement(conn, statements, sql)?;
            bind(stmt, params)?;
            let cols = stmt.column_count();
            read_rows(stmt.raw_query(), cols)
        })
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
}

/// The writer loop: group commit of every job waiting in the queue.
///
/// Jobs run directly in the batch's transaction, without a savepoint each: a savepoint makes
/// SQLite copy every page a job touches for the first time into a journal, and the jobs of a
/// batch all touch the same right-hand pages of the same tables and indexes, so every job
/// copied them again (measured with callgrind: a sixth of the writer's instructions per
/// payment). A job that fails without having written anything needs no undo. A job that
/// fails after writing is undone by rolling back the whole transaction and running the
/// jobs before it again (jobs are re-runnable: PostgreSQL retries them the same way); the
/// rest of that batch then runs job by job in savepoints.
pub(crate) fn writer_loop(mut conn: SqliteConn, rx: crossbeam_channel::Receiver<WriteJob>) {
    while let Ok(first) = rx.recv() {
        if let Err(e) = conn.batch("BEGIN IMMEDIATE") {
            refuse(&mut conn, first, e);
            continue;
        }
        let mut batch = Batch::default();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(job) = next.take() {
            batch.run(&mut conn, job);
            taken += 1;
            if taken < MAX_BATCH && batch.broken.is_none() {
                next = rx.try_recv().ok();
            }
        }
        let commit_error = batch.broken.clone().or_else(|| conn.batch("COMMIT").err());
        if commit_error.is_some() {
            let _ = conn.batch("ROLLBACK");
        }
        for done in batch.outcomes() {
            done(commit_error.clone());
        }
    }
}

/// The jobs of one group-commit transaction.
#[derive(Default)]
struct Batch {
    /// Jobs that ran without a savepoint, with their outcomes: run again if the transaction
    /// has to be rolled back for a later job.
    unguarded: Vec<(WriteJob, WriteOutcome)>,
    /// Outcomes of jobs that failed or ran in a savepoint.
    settled: Vec<WriteOutcome>,
    /// Set once the transaction was rolled back: the rest of the batch runs in savepoints.
    guarded: bool,
    /// The transaction could not be started again after a rollback: every job fails.
    broken: Option<StoreError>,
}

impl Batch {
    fn run(&mut self, conn: &mut SqliteConn, mut job: WriteJob) {
        if self.guarded {
            self.settled.push(run_in_savepoint(conn, job));
            return;
        }
        let before = conn.total_changes();
        let (ok, done) = job(conn);
        if ok {
            self.unguarded.push((job, done));
            return;
        }
        // A failed job answers its own error (unless the commit fails too).
        self.settled.push(done);
        if conn.total_changes() == before {
            return; // it wrote nothing: nothing to undo
        }
        // It failed after writing: undo the transaction and redo the jobs before it.
        let _ = conn.batch("ROLLBACK");
        self.guarded = true;
        if let Err(e) = conn.batch("BEGIN IMMEDIATE") {
            // Every job so far fails with this error; the writer takes no more into this batch.
            self.broken = Some(e);
            let undone = std::mem::take(&mut self.unguarded);
            self.settled
                .extend(undone.into_iter().map(|(_, done)| done));
            return;
        }
        for (job, _undone) in std::mem::take(&mut self.unguarded) {
            self.settled.push(run_in_savepoint(conn, job));
        }
    }

    fn outcomes(self) -> impl Iterator<Item = WriteOutcome> {
        self.unguarded
            .into_iter()
            .map(|(_, done)| done)
            .chain(self.settled)
    }
}

/// Answers `job` with `error` when no transaction could be started for it. A job's outcome
/// only exists once it has run, so it runs inside a savepoint that is then rolled back:
/// nothing it writes may outlive the error it answers. If even the savepoint cannot be
/// opened, the job is dropped unrun and its caller is told the store is unavailable.
fn refuse(conn: &mut SqliteConn, mut job: WriteJob, error: StoreError) {
    if conn.batch("SAVEPOINT refused").is_err() {
        return;
    }
    let (_, done) = job(conn);
    let _ = conn.batch("ROLLBACK TO refused; RELEASE refused");
    done(Some(error));
}

fn run_in_savepoint(conn: &mut SqliteConn, mut job: WriteJob) -> WriteOutcome {
    if let Err(e) = conn.batch("SAVEPOINT job") {
        let (_, done) = job(conn);
        return Box::new(move |_| done(Some(e)));
    }
    let (ok, done) = job(conn);
    let end = if ok {
        conn.batch("RELEASE job")
    } else {
        conn.batch("ROLLBACK TO job; RELEASE job")
    };
    match end {
        Ok(()) => done,
        Err(e) => Box::new(move |_| done(Some(e))),
    }
}

/// A reader thread: each job runs in its own read transaction (a consistent snapshot).
pub(crate) fn reader_loop(mut conn: SqliteConn, rx: crossbeam_channel::Receiver<ReadJob>) {
    while let Ok(job) = rx.recv() {
        job(&mut conn);
    }
}
