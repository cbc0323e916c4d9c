//! The few SQL value types Konbini uses, shared by both backends.
//!
//! Keeping to integers, text and bytes (no floats, no native timestamps, no numerics) is what
//! lets one set of SQL statements run unchanged on SQLite and PostgreSQL: money is `BIGINT`
//! minor units, time is `BIGINT` unix milliseconds, flags are `0/1`.

use crate::StoreError;

/// A bound parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl<const N: usize> From<&[u8; N]> for Value {
    fn from(v: &[u8; N]) -> Self {
        Value::Bytes(v.to_vec())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Builds a `&[Value]` parameter list: `params![id, amount]`.
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value] };
    ($($v:expr),+ $(,)?) => { &[$($crate::Value::from($v)),+] as &[$crate::Value] };
}

/// Builds an owned `Vec<Value>` parameter list, for lists that are extended or kept:
/// `params![…].to_vec()` would copy every string a second time (measured on the payment's
/// hot path: the journal line's features are a kilobyte).
#[macro_export]
macro_rules! values {
    ($($v:expr),+ $(,)?) => { vec![$($crate::Value::from($v)),+] };
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value, StoreError> {
        self.0
            .get(i)
            .ok_or_else(|| StoreError::Decode(format!("no column {i}")))
    }
    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, StoreError> {
        match self.get(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(StoreError::Decode(format!(
                "column {i}: expected int, got {other:?}"
            ))),
        }
    }
    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }
    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, StoreError> {
        match self.get(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(StoreError::Decode(format!(
                "column {i}: expected text, got {other:?}"
            ))),
        }
    }
    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.get(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
    /// A bytes column.
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.get(i)? {
            Value::Bytes(v) => Ok(v.clone()),
            other => Err(StoreError::Decode(format!(
                "column {i}: expected bytes, got {other:?}"
            ))),
        }
    }
}

/// A connection inside a transaction. Statements are `'static` strings written once with
/// PostgreSQL-style `$1` placeholders; each backend prepares and caches them.
pub trait Conn {
    /// Runs a statement and returns the number of rows it changed.
    fn exec(&mut self, sql: &'static str, params: &[Value]) -> Result<u64, StoreError>;
    /// Runs a query and returns all its rows.
    fn query(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>, StoreError>;
    /// Runs a query expected to return at most one row.
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[Value],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
    /// Runs a query expected to return exactly one row.
    fn query_one(&mut self, sql: &'static str, params: &[Value]) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or_else(|| StoreError::Decode("expected one row, got none".into()))
    }
    /// Which database this is (for the rare statement that must differ).
    /// Runs a query that is the job's last write when it writes anything. When the job has
    /// written nothing before it, PostgreSQL runs it as its own transaction, committed when
    /// it returns (no `BEGIN` and `COMMIT` round trips); the caller must then not write
    /// again in the job if it wrote, since a later failure could not undo it. Everywhere
    /// else, the same as [`Conn::query`].
    fn query_alone(&mut self, sql: &'static str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        self.query(sql, params)
    }
    fn backend(&self) -> crate::Backend;
}
