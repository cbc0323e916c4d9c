//! Operator staff accounts and their sessions.

use crate::{Conn, Row, StoreError, params};

#[derive(Debug, Clone)]
pub struct Staff {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub totp_generation: i64,
    pub totp_last_step: i64,
    pub status: String,
    pub created_ms: i64,
}

fn staff(r: &Row) -> Result<Staff, StoreError> {
    Ok(Staff {
        id: r.text(0)?,
        email: r.text(1)?,
        name: r.text(2)?,
        role: r.text(3)?,
        password_hash: r.text(4)?,
        totp_generation: r.int(5)?,
        totp_last_step: r.int(6)?,
        status: r.text(7)?,
        created_ms: r.int(8)?,
    })
}

/// Inserts a staff member; `false` when the email is taken.
pub fn insert(conn: &mut dyn Conn, s: &Staff) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "INSERT INTO staff (id, email, name, role, password_hash, totp_generation, totp_last_step, status, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        params![&s.id, &s.email, &s.name, &s.role, &s.password_hash, s.totp_generation, s.totp_last_step, &s.status, s.created_ms],
    )? == 1)
}

pub fn by_email(conn: &mut dyn Conn, email: &str) -> Result<Option<Staff>, StoreError> {
    conn.query_opt(
        "SELECT id, email, name, role, password_hash, totp_generation, totp_last_step, status, created_ms FROM staff WHERE email = $1",
        params![email],
    )?
    .map(|r| staff(&r))
    .transpose()
}

/// Records the TOTP step just accepted; `false` if that step (or a later one) was already
/// used — a replayed code — so exactly one login can use each code.
pub fn use_totp_step(conn: &mut dyn Conn, id: &str, step: i64) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE staff SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
        params![step, id],
    )? == 1)
}

pub fn insert_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    staff_id: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO staff_sessions (token_hash, staff_id, created_ms, last_seen_ms, expires_ms) VALUES ($1, $2, $3, $3, $4)",
        params![token_hash, staff_id, now_ms, expires_ms],
    )?;
    Ok(())
}

/// A staff session with its staff member.
#[derive(Debug, Clone)]
pub struct StaffSession {
    pub staff: Staff,
    pub last_seen_ms: i64,
    pub expires_ms: i64,
    pub revoked: bool,
}

pub fn session(conn: &mut dyn Conn, token_hash: &[u8]) -> Result<Option<StaffSession>, StoreError> {
    conn.query_opt(
        "SELECT s.id, s.email, s.name, s.role, s.password_hash, s.totp_generation, s.totp_last_step, s.status, s.created_ms, \
                x.last_seen_ms, x.expires_ms, x.revoked_ms \
         FROM staff_sessions x JOIN staff s ON s.id = x.staff_id WHERE x.token_hash = $1",
        params![token_hash],
    )?
    .map(|r| {
        Ok(StaffSession {
            staff: staff(&r)?,
            last_seen_ms: r.int(9)?,
            expires_ms: r.int(10)?,
            revoked: r.opt_int(11)?.is_some(),
        })
    })
    .transpose()
}

/// Slides the idle deadline; staff sessions are touched on every request (short idle timeout).
pub fn touch_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE staff_sessions SET last_seen_ms = $1 WHERE token_hash = $2",
        params![now_ms, token_hash],
    )?;
    Ok(())
}

pub fn revoke_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE staff_sessions SET revoked_ms = $1 WHERE token_hash = $2 AND revoked_ms IS NULL",
        params![now_ms, token_hash],
    )?;
    Ok(())
}
