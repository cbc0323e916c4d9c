//! The PostgreSQL backend: a fixed pool of worker threads, each owning one connection.
//!
//! Every job is one transaction at READ COMMITTED. Money-moving statements are written as
//! conditional updates (`... WHERE balance - held >= $1`), which PostgreSQL re-checks after
//! waiting for a row lock, so concurrency is safe without SERIALIZABLE. A deadlock or
//! serialization failure rolls the job back and runs it again (bounded).

use crate::value::{Conn, Row, Value};
use crate::{Backend, StoreError};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use std::collections::HashMap;

/// Retries of a job that hit a deadlock or serialization failure.
pub const MAX_RETRIES: usize = 5;

pub(crate) type PgJob = Box<dyn FnOnce(&mut PgConn) + Send>;

pub struct PgConn {
    client: postgres::Client,
    /// Prepared statements by the address and length of their static text (hashing a pointer,
    /// not kilobytes of SQL, on every call), each with whether it may run outside a
    /// transaction (see [`runs_alone`]).
    statements: HashMap<(usize, usize), (postgres::Statement, bool)>,
    /// Set when a statement failed in a way that a rerun may fix.
    pub(crate) retryable: bool,
    /// A write job's transaction begins with its first statement that needs one (see
    /// [`PgConn::start_lazily`]); `in_tx` says whether it has.
    lazy: bool,
    pub(crate) in_tx: bool,
}

/// Whether a statement can run on its own, outside the job's transaction, with the same
/// effect: a plain read. At READ COMMITTED every statement takes its own snapshot anyway, so
/// a read before the job's first write sees the same rows in or out of a transaction; what
/// a transaction adds to a read is its locks, so a locking read (`FOR UPDATE`, advisory
/// locks) or anything but a `SELECT` begins the transaction first.
fn runs_alone(sql: &str) -> bool {
    let head = sql.trim_start();
    let is_select = head
        .get(..6)
        .is_some_and(|h| h.eq_ignore_ascii_case("select"));
    let upper = sql.to_ascii_uppercase();
    is_select
        && ![
            "FOR UPDATE",
            "FOR SHARE",
            "FOR NO KEY",
            "FOR KEY",
            "ADVISORY",
            "NEXTVAL",
            "KONBINI_",
        ]
        .iter()
        .any(|w| upper.contains(w))
}

/// The SQLSTATE of `konbini_undo(reason)` (see the migrations): a statement that found one of
/// its own preconditions false undoes itself whole.
const UNDONE_SQLSTATE: &str = "KB001";

fn map_err(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == postgres::error::SqlState::UNIQUE_VIOLATION
            || *code == postgres::error::SqlState::FOREIGN_KEY_VIOLATION
            || *code == postgres::error::SqlState::CHECK_VIOLATION
            || *code == postgres::error::SqlState::NOT_NULL_VIOLATION
        {
            return StoreError::Constraint(db.message().to_string());
        }
        if code.code() == UNDONE_SQLSTATE {
            return StoreError::Undone(db.message().to_string());
        }
        if *code == postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *code == postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        {
            return StoreError::Retry(db.message().to_string());
        }
        return StoreError::Db(format!("{}: {}", code.code(), db.message()));
    }
    StoreError::Db(e.to_string())
}

impl PgConn {
    pub(crate) fn connect(url: &str) -> Result<PgConn, StoreError> {
        let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(map_err)?;
        // Durable before answered, whatever the server default says.
        client
            .batch_execute("SET synchronous_commit = on; SET client_min_messages = warning;")
            .map_err(map_err)?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            retryable: false,
            lazy: false,
            in_tx: false,
        })
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).map_err(map_err)
    }

    /// A job's transaction: `begin` now (`None`: with the job's first statement that is not a
    /// plain read, so a job whose only write is one statement run with
    /// [`Conn::query_alone`] costs no `BEGIN` and `COMMIT` round trips).
    pub(crate) fn start(&mut self, begin: Option<&str>) -> Result<(), StoreError> {
        self.retryable = false;
        match begin {
            Some(sql) => {
                self.batch(sql)?;
                self.lazy = false;
                self.in_tx = true;
            }
            None => {
                self.lazy = true;
                self.in_tx = false;
            }
        }
        Ok(())
    }

    /// Ends the job's transaction, if it began: `COMMIT` or `ROLLBACK`.
    pub(crate) fn finish(&mut self, commit: bool) -> Result<(), StoreError> {
        let began = std::mem::take(&mut self.in_tx);
        self.lazy = false;
        match (began, commit) {
            (false, _) => Ok(()),
            (true, true) => self.batch("COMMIT"),
            (true, false) => self.batch("ROLLBACK"),
        }
    }

    /// The prepared statement, after beginning the job's transaction if it needs one now
    /// (`alone`: the caller runs it as its own transaction).
    fn statement(
        &mut self,
        sql: &'static str,
        alone: bool,
    ) -> Result<postgres::Statement, StoreError> {
        let key = (sql.as_ptr() as usize, sql.len());
        let (s, plain_read) = match self.statements.get(&key) {
            Some(s) => s.clone(),
            None => {
                let s = self.client.prepare(sql).map_err(map_err)?;
                let entry = (s, runs_alone(sql));
                self.statements.insert(key, entry.clone());
                entry
            }
        };
        if self.lazy && !self.in_tx && !alone && !plain_read {
            self.batch("BEGIN")?;
            self.in_tx = true;
        }
        Ok(s)
    }

    fn rows(
        &mut self,
        sql: &'static str,
        params: &[Value],
        alone: bool,
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql, alone)?;
        match self.client.query(&stmt, &as_params(params)) {
            Ok(rows) => rows.iter().map(decode).collect(),
            Err(e) => {
                let e = map_err(e);
                Err(self.note(e))
            }
        }
    }

    fn note(&mut self, e: StoreError) -> StoreError {
        if matches!(e, StoreError::Retry(_)) {
            self.retryable = true;
        }
        e
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to {ty}").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) => b.as_slice().to_sql(ty, out),
        }
    }
    fn accepts(_ty: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

fn decode(row: &postgres::Row) -> Result<Row, StoreError> {
    let mut vals = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let d = |e: postgres::Error| StoreError::Decode(e.to_string());
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map_err(d)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map_err(d)?
                .map(|x| Value::Int(i64::from(x))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map_err(d)?
                .map(|x| Value::Int(i64::from(x))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map_err(d)?
                .map(|x| Value::Int(i64::from(x))),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
                .try_get::<_, Option<String>>(i)
                .map_err(d)?
                .map(Value::Text),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(i)
                .map_err(d)?
                .map(Value::Bytes),
            ref other => {
                return Err(StoreError::Decode(format!(
                    "column {} has unsupported type {other}",
                    col.name()
                )));
            }
        };
        vals.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(vals))
}

fn as_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn {
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64, StoreError> {
        let stmt = self.statement(sql, false)?;
        let r = self.client.execute(&stmt, &as_params(params));
        r.map_err(|e| {
            let e = map_err(e);
            self.note(e)
        })
    }

    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.rows(sql, params, false)
    }

    fn query_alone(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        // Nothing written yet in this job: the statement is its own transaction, committed
        // (durably: synchronous_commit) when its answer arrives. Otherwise it joins the job's.
        let alone = self.lazy && !self.in_tx;
        self.rows(sql, params, alone)
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}

/// A worker thread: one connection, one job at a time.
pub(crate) fn worker_loop(mut conn: PgConn, rx: crossbeam_channel::Receiver<PgJob>) {
    while let Ok(job) = rx.recv() {
        job(&mut conn);
    }
}

#[cfg(test)]
mod tests {
    use super::runs_alone;

    #[test]
    fn only_plain_reads_run_outside_the_jobs_transaction() {
        for read in [
            "SELECT id FROM payments WHERE id = $1",
            "  select count(*) from entries",
            "SELECT t.id FROM terminals t LEFT JOIN devices d ON d.slot = $3",
        ] {
            assert!(runs_alone(read), "{read}");
        }
        for needs_tx in [
            "UPDATE devices SET last_code_counter = $1",
            "INSERT INTO outbox (id) VALUES ($1)",
            "WITH k AS (UPDATE devices SET x = 1 RETURNING 1) SELECT COUNT(*) FROM k",
            "SELECT id FROM customers WHERE id = $1 FOR UPDATE",
            "SELECT 1 FROM x FOR NO KEY UPDATE",
            "SELECT 1 FROM x for share",
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(7262695)) AS l",
            "SELECT konbini_undo('x')",
            "DELETE FROM risk_velocity WHERE w3_bucket < $1",
        ] {
            assert!(!runs_alone(needs_tx), "{needs_tx}");
        }
    }
}
