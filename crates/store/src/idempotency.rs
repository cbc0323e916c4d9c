//! Stored responses for requests carrying an `Idempotency-Key` (Stripe semantics).
//!
//! The key is claimed by inserting a row in the same transaction as the work it protects.
//! On PostgreSQL a concurrent duplicate blocks on that row until the first commits, then sees
//! the stored response; when the work spans two transactions (a card top-up waits for the
//! processor in between) the row is committed first without a response, and a duplicate
//! arriving meanwhile is told the request is still in flight.

use crate::{Conn, StoreError, params};

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First use: go ahead, then [`complete`].
    New,
    /// Already answered: replay this status and body.
    Replay { status: u16, body: String },
    /// Same key, different request parameters.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

pub fn claim(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
    request_hash: &[u8],
    now_ms: i64,
) -> Result<Claim, StoreError> {
    let n = conn.exec(
        "INSERT INTO idempotency (scope, key, request_hash, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        params![scope, key, request_hash, now_ms],
    )?;
    if n == 1 {
        return Ok(Claim::New);
    }
    let row = conn.query_one(
        "SELECT request_hash, status_code, body FROM idempotency WHERE scope = $1 AND key = $2",
        params![scope, key],
    )?;
    if !konbini_core::encoding::constant_time_eq(&row.bytes(0)?, request_hash) {
        return Ok(Claim::Mismatch);
    }
    match (row.opt_int(1)?, row.opt_text(2)?) {
        (Some(status), Some(body)) => Ok(Claim::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        }),
        _ => Ok(Claim::InFlight),
    }
}

/// The stored row of a key, if any: (request hash, status, body); status and body are `None`
/// while the first request is in flight.
pub type Existing = (Vec<u8>, Option<i64>, Option<String>);

/// Classifies an existing row against this request's hash (no row: `New`).
pub fn judge(existing: Option<Existing>, request_hash: &[u8]) -> Claim {
    let Some((hash, status, body)) = existing else {
        return Claim::New;
    };
    if !konbini_core::encoding::constant_time_eq(&hash, request_hash) {
        return Claim::Mismatch;
    }
    match (status, body) {
        (Some(status), Some(body)) => Claim::Replay {
            status: u16::try_from(status).unwrap_or(500),
            body,
        },
        _ => Claim::InFlight,
    }
}

pub fn lookup(conn: &mut dyn Conn, scope: &str, key: &str) -> Result<Option<Existing>, StoreError> {
    conn.query_opt(
        "SELECT request_hash, status_code, body FROM idempotency WHERE scope = $1 AND key = $2",
        params![scope, key],
    )?
    .map(|r| Ok((r.bytes(0)?, r.opt_int(1)?, r.opt_text(2)?)))
    .transpose()
}

/// Records a key with its response (or `None` while the work continues elsewhere) at the end
/// of the work, in one statement. `false`: another request with the same key committed first;
/// the caller must roll back and answer from [`lookup`].
pub fn insert(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
    request_hash: &[u8],
    response: Option<(u16, &str)>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (status, body) = match response {
        Some((s, b)) => (Some(i64::from(s)), Some(b)),
        None => (None, None),
    };
    Ok(conn.exec(
        "INSERT INTO idempotency (scope, key, request_hash, status_code, body, created_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        params![scope, key, request_hash, status, body, now_ms],
    )? == 1)
}

/// Stores the response of a claimed key.
pub fn complete(
    conn: &mut dyn Conn,
    scope: &str,
    key: &str,
    status: u16,
    body: &str,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE idempotency SET status_code = $1, body = $2 WHERE scope = $3 AND key = $4",
        params![i64::from(status), body, scope, key],
    )?;
    Ok(())
}
