//! The hash-chained audit log: append in the caller's transaction, verify the whole chain.

use crate::{Conn, StoreError, params};
use konbini_core::audit::{GENESIS, Record, chain_hash};

/// Appends one record after the current head. On PostgreSQL a transaction-scoped advisory
/// lock orders concurrent appends (the chain needs one head); security events are rare, so
/// this never sits on the payment path. SQLite has one writer already.
pub fn append(
    conn: &mut dyn Conn,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    if conn.backend() == crate::Backend::Postgres {
        conn.query(
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock(7262695)) AS l",
            params![],
        )?;
    }
    let (seq, prev) = match conn.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        params![],
    )? {
        Some(r) => (r.int(0)? + 1, r.bytes(1)?),
        None => (1, GENESIS.to_vec()),
    };
    let record = Record {
        seq,
        at_ms: now_ms,
        actor,
        action,
        subject,
        details,
    };
    let hash = chain_hash(&prev, &record);
    conn.exec(
        "INSERT INTO audit_log (seq, at_ms, actor, action, subject, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![seq, now_ms, actor, action, subject, details, prev, &hash],
    )?;
    Ok(seq)
}

/// One audit record as stored.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

/// Records about one subject, oldest first (at most `limit`).
pub fn for_subject(
    conn: &mut dyn Conn,
    subject: &str,
    limit: i64,
) -> Result<Vec<Entry>, StoreError> {
    conn.query(
        "SELECT seq, at_ms, actor, action, subject, details FROM audit_log WHERE subject = $1 ORDER BY seq LIMIT $2",
        params![subject, limit],
    )?
    .iter()
    .map(|r| {
        Ok(Entry {
            seq: r.int(0)?,
            at_ms: r.int(1)?,
            actor: r.text(2)?,
            action: r.text(3)?,
            subject: r.text(4)?,
            details: r.text(5)?,
        })
    })
    .collect()
}

/// What `konbini audit verify` found.
#[derive(Debug, Clone, Default)]
pub struct ChainReport {
    pub records: i64,
    /// The hash of the last record: record it elsewhere to detect a truncated tail later.
    pub head_hash: Vec<u8>,
    pub problems: Vec<String>,
}

/// Walks the whole chain in pages, recomputing every hash.
pub fn verify(conn: &mut dyn Conn) -> Result<ChainReport, StoreError> {
    let mut report = ChainReport::default();
    let mut expected_seq = 1;
    let mut prev = GENESIS.to_vec();
    loop {
        let rows = conn.query(
            "SELECT seq, at_ms, actor, action, subject, details, prev_hash, hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT 1000",
            params![expected_seq],
        )?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let seq = r.int(0)?;
            let (actor, action, subject, details) =
                (r.text(2)?, r.text(3)?, r.text(4)?, r.text(5)?);
            let record = Record {
                seq,
                at_ms: r.int(1)?,
                actor: &actor,
                action: &action,
                subject: &subject,
                details: &details,
            };
            let (stored_prev, stored_hash) = (r.bytes(6)?, r.bytes(7)?);
            if seq != expected_seq {
                report
                    .problems
                    .push(format!("records {expected_seq} to {} are missing", seq - 1));
            }
            if stored_prev != prev {
                report.problems.push(format!("record {seq} does not follow the record before it (deleted, inserted or reordered)"));
            }
            if chain_hash(&stored_prev, &record) != stored_hash.as_slice() {
                report.problems.push(format!(
                    "record {seq} was altered: its hash does not match its contents"
                ));
            }
            report.records += 1;
            prev = stored_hash;
            expected_seq = seq + 1;
            if report.problems.len() >= 100 {
                report.head_hash = prev;
                return Ok(report);
            }
        }
    }
    report.head_hash = prev;
    Ok(report)
}
