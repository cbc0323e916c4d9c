//! Identity flows: sign-up verification, log-ins waiting for a second factor, recoveries and
//! contact changes (`auth_flows`), the one-time codes they send (`verifications`), recovery
//! codes, and the customer fields those flows change.

use crate::{Conn, Row, StoreError, params};

/// A multi-step identity flow, found by the SHA-256 of the handle the client holds.
#[derive(Debug, Clone)]
pub struct Flow {
    pub handle_hash: Vec<u8>,
    pub kind: String,
    pub customer_id: String,
    pub data: String,
    pub attempts: i64,
    pub expires_ms: i64,
    pub done_ms: Option<i64>,
    pub created_ms: i64,
}

impl Flow {
    /// Open: not finished, not expired, and not out of attempts.
    pub fn live(&self, now_ms: i64, max_attempts: i64) -> bool {
        self.done_ms.is_none() && now_ms < self.expires_ms && self.attempts < max_attempts
    }
}

fn flow(r: &Row) -> Result<Flow, StoreError> {
    Ok(Flow {
        handle_hash: r.bytes(0)?,
        kind: r.text(1)?,
        customer_id: r.text(2)?,
        data: r.text(3)?,
        attempts: r.int(4)?,
        expires_ms: r.int(5)?,
        done_ms: r.opt_int(6)?,
        created_ms: r.int(7)?,
    })
}

pub fn insert_flow(conn: &mut dyn Conn, f: &Flow) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO auth_flows (handle_hash, kind, customer_id, data, attempts, expires_ms, done_ms, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![f.handle_hash.clone(), &f.kind, &f.customer_id, &f.data, f.attempts, f.expires_ms, f.done_ms, f.created_ms],
    )?;
    Ok(())
}

/// The flow of `kind` with this handle hash (a handle of another kind reads as absent).
pub fn flow_by_handle(
    conn: &mut dyn Conn,
    handle_hash: &[u8],
    kind: &str,
) -> Result<Option<Flow>, StoreError> {
    conn.query_opt(
        "SELECT handle_hash, kind, customer_id, data, attempts, expires_ms, done_ms, created_ms \
         FROM auth_flows WHERE handle_hash = $1 AND kind = $2",
        params![handle_hash, kind],
    )?
    .map(|r| flow(&r))
    .transpose()
}

/// Counts a failed proof against a flow.
pub fn flow_failed(conn: &mut dyn Conn, handle_hash: &[u8]) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE auth_flows SET attempts = attempts + 1 WHERE handle_hash = $1",
        params![handle_hash],
    )?;
    Ok(())
}

/// Finishes a flow; false when it was already finished (a concurrent completion won).
pub fn finish_flow(
    conn: &mut dyn Conn,
    handle_hash: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE auth_flows SET done_ms = $1 WHERE handle_hash = $2 AND done_ms IS NULL",
        params![now_ms, handle_hash],
    )?;
    Ok(n == 1)
}

/// How many flows of `kind` the customer started since `since_ms` (per-account throttling).
pub fn flows_since(
    conn: &mut dyn Conn,
    customer_id: &str,
    kind: &str,
    since_ms: i64,
) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT COUNT(*) FROM auth_flows WHERE customer_id = $1 AND kind = $2 AND created_ms >= $3",
        params![customer_id, kind, since_ms],
    )?
    .int(0)
}

/// A one-time code or link token sent to a contact point.
#[derive(Debug, Clone)]
pub struct Verification {
    pub id: String,
    pub customer_id: String,
    pub flow: Vec<u8>,
    pub purpose: String,
    pub code_hash: Vec<u8>,
    pub attempts: i64,
    pub expires_ms: i64,
    pub used_ms: Option<i64>,
    pub created_ms: i64,
}

fn verification(r: &Row) -> Result<Verification, StoreError> {
    Ok(Verification {
        id: r.text(0)?,
        customer_id: r.text(1)?,
        flow: r.bytes(2)?,
        purpose: r.text(3)?,
        code_hash: r.bytes(4)?,
        attempts: r.int(5)?,
        expires_ms: r.int(6)?,
        used_ms: r.opt_int(7)?,
        created_ms: r.int(8)?,
    })
}

pub fn insert_verification(conn: &mut dyn Conn, v: &Verification) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO verifications (id, customer_id, flow, purpose, code_hash, attempts, expires_ms, used_ms, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        params![&v.id, &v.customer_id, v.flow.clone(), &v.purpose, v.code_hash.clone(), v.attempts, v.expires_ms, v.used_ms, v.created_ms],
    )?;
    Ok(())
}

/// The newest verification of `purpose` in a flow (a resend replaces the older code).
pub fn latest_verification(
    conn: &mut dyn Conn,
    flow: &[u8],
    purpose: &str,
) -> Result<Option<Verification>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, flow, purpose, code_hash, attempts, expires_ms, used_ms, created_ms \
         FROM verifications WHERE flow = $1 AND purpose = $2 ORDER BY created_ms DESC, id DESC LIMIT 1",
        params![flow, purpose],
    )?
    .map(|r| verification(&r))
    .transpose()
}

/// A verification found by its code hash among the customer's codes of one purpose (for link
/// tokens, which arrive without their flow).
pub fn verification_by_code(
    conn: &mut dyn Conn,
    purpose: &str,
    code_hash: &[u8],
) -> Result<Option<Verification>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, flow, purpose, code_hash, attempts, expires_ms, used_ms, created_ms \
         FROM verifications WHERE purpose = $1 AND code_hash = $2",
        params![purpose, code_hash],
    )?
    .map(|r| verification(&r))
    .transpose()
}

/// How many codes of `purpose` were sent in a flow (bounds resends).
pub fn verifications_in_flow(
    conn: &mut dyn Conn,
    flow: &[u8],
    purpose: &str,
) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT COUNT(*) FROM verifications WHERE flow = $1 AND purpose = $2",
        params![flow, purpose],
    )?
    .int(0)
}

pub fn verification_failed(conn: &mut dyn Conn, id: &str) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE verifications SET attempts = attempts + 1 WHERE id = $1",
        params![id],
    )?;
    Ok(())
}

/// Spends a verification; false when it was already used (so a code works once).
pub fn use_verification(conn: &mut dyn Conn, id: &str, now_ms: i64) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE verifications SET used_ms = $1 WHERE id = $2 AND used_ms IS NULL",
        params![now_ms, id],
    )?;
    Ok(n == 1)
}

/// Marks contact points verified.
pub fn mark_verified(
    conn: &mut dyn Conn,
    customer_id: &str,
    email: bool,
    phone: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    if email {
        conn.exec(
            "UPDATE customers SET email_verified_ms = $1 WHERE id = $2",
            params![now_ms, customer_id],
        )?;
    }
    if phone {
        conn.exec(
            "UPDATE customers SET phone_verified_ms = $1 WHERE id = $2",
            params![now_ms, customer_id],
        )?;
    }
    Ok(())
}

/// Replaces a verified contact point (`email` or `phone`); false when the new email belongs
/// to another account, or the new phone is verified on another account.
pub fn set_contact(
    conn: &mut dyn Conn,
    customer_id: &str,
    kind: &str,
    value: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = match kind {
        "email" => conn.exec(
            "UPDATE customers SET email = $1, email_verified_ms = $2, contact_changed_ms = $2 WHERE id = $3 \
             AND NOT EXISTS (SELECT 1 FROM customers o WHERE o.email = $1 AND o.id <> $3)",
            params![value, now_ms, customer_id],
        )?,
        _ => conn.exec(
            "UPDATE customers SET phone = $1, phone_verified_ms = $2, contact_changed_ms = $2 WHERE id = $3 \
             AND NOT EXISTS (SELECT 1 FROM customers o WHERE o.phone = $1 AND o.id <> $3 AND o.phone_verified_ms IS NOT NULL)",
            params![value, now_ms, customer_id],
        )?,
    };
    Ok(n == 1)
}

pub fn set_status(conn: &mut dyn Conn, customer_id: &str, status: &str) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE customers SET status = $1 WHERE id = $2",
        params![status, customer_id],
    )?;
    Ok(())
}

/// Sets a new password hash and starts the recovery hold.
pub fn reset_password(
    conn: &mut dyn Conn,
    customer_id: &str,
    password_hash: &str,
    hold_until_ms: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE customers SET password_hash = $1, recovery_hold_until_ms = $2, password_changed_ms = $3 WHERE id = $4",
        params![password_hash, hold_until_ms, now_ms, customer_id],
    )?;
    Ok(())
}

/// Starts a TOTP enrolment: a new generation (so a new derived secret), not yet enabled.
pub fn begin_totp(conn: &mut dyn Conn, customer_id: &str) -> Result<i64, StoreError> {
    conn.exec(
        "UPDATE customers SET totp_generation = totp_generation + 1, totp_enabled_ms = NULL, totp_last_step = 0 WHERE id = $1",
        params![customer_id],
    )?;
    conn.query_one(
        "SELECT totp_generation FROM customers WHERE id = $1",
        params![customer_id],
    )?
    .int(0)
}

pub fn enable_totp(
    conn: &mut dyn Conn,
    customer_id: &str,
    enabled: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    let at = enabled.then_some(now_ms);
    conn.exec(
        "UPDATE customers SET totp_enabled_ms = $1 WHERE id = $2",
        params![at, customer_id],
    )?;
    Ok(())
}

/// Records an accepted TOTP step; false when that step (or a later one) was already used, so
/// the same code is never accepted twice, even by two nodes at once.
pub fn use_totp_step(
    conn: &mut dyn Conn,
    customer_id: &str,
    step: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE customers SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
        params![step, customer_id],
    )?;
    Ok(n == 1)
}

/// Replaces the customer's recovery codes.
pub fn replace_recovery_codes(
    conn: &mut dyn Conn,
    customer_id: &str,
    hashes: &[Vec<u8>],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "DELETE FROM recovery_codes WHERE customer_id = $1",
        params![customer_id],
    )?;
    for h in hashes {
        conn.exec(
            "INSERT INTO recovery_codes (customer_id, code_hash, created_ms) VALUES ($1, $2, $3)",
            params![customer_id, h.clone(), now_ms],
        )?;
    }
    Ok(())
}

/// Spends one recovery code; false when it is not one of the customer's unused codes.
pub fn use_recovery_code(
    conn: &mut dyn Conn,
    customer_id: &str,
    code_hash: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE recovery_codes SET used_ms = $1 WHERE customer_id = $2 AND code_hash = $3 AND used_ms IS NULL",
        params![now_ms, customer_id, code_hash],
    )?;
    Ok(n == 1)
}

pub fn recovery_codes_left(conn: &mut dyn Conn, customer_id: &str) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT COUNT(*) FROM recovery_codes WHERE customer_id = $1 AND used_ms IS NULL",
        params![customer_id],
    )?
    .int(0)
}

/// Re-registers an account that never verified anything (so a stranger cannot squat an
/// address by signing it up and never finishing): new phone and password.
pub fn reregister(
    conn: &mut dyn Conn,
    customer_id: &str,
    phone: &str,
    password_hash: &str,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE customers SET phone = $1, password_hash = $2 WHERE id = $3 \
         AND email_verified_ms IS NULL AND phone_verified_ms IS NULL",
        params![phone, password_hash, customer_id],
    )?;
    Ok(())
}

/// Revokes one of a customer's sessions, found by its token hash.
pub fn revoke_session_of(
    conn: &mut dyn Conn,
    customer_id: &str,
    token_hash: &[u8],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE sessions SET revoked_ms = $1 WHERE token_hash = $2 AND customer_id = $3 AND revoked_ms IS NULL",
        params![now_ms, token_hash, customer_id],
    )?;
    Ok(n == 1)
}

/// Sets a new password hash (a change by the customer, not a recovery).
pub fn set_password(
    conn: &mut dyn Conn,
    customer_id: &str,
    password_hash: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE customers SET password_hash = $1, password_changed_ms = $2 WHERE id = $3",
        params![password_hash, now_ms, customer_id],
    )?;
    Ok(())
}

/// Ends every session of a customer except `keep`.
pub fn revoke_other_sessions(
    conn: &mut dyn Conn,
    customer_id: &str,
    keep: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE sessions SET revoked_ms = $1 WHERE customer_id = $2 AND token_hash <> $3 AND revoked_ms IS NULL",
        params![now_ms, customer_id, keep],
    )?;
    Ok(())
}

/// Moves a flow's expiry (a resend gives the flow the new codes' life).
pub fn extend_flow(
    conn: &mut dyn Conn,
    handle_hash: &[u8],
    expires_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE auth_flows SET expires_ms = $1 WHERE handle_hash = $2",
        params![expires_ms, handle_hash],
    )?;
    Ok(())
}

/// Closes every open flow of `kind` of a customer (a re-registration kills the sign-ups
/// started before it, so codes sent for them can no longer verify anything).
pub fn close_flows(
    conn: &mut dyn Conn,
    customer_id: &str,
    kind: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE auth_flows SET done_ms = $1 WHERE customer_id = $2 AND kind = $3 AND done_ms IS NULL",
        params![now_ms, customer_id, kind],
    )?;
    Ok(())
}

/// A registered passkey.
#[derive(Debug, Clone)]
pub struct StoredPasskey {
    pub id: String,
    pub customer_id: String,
    pub credential_id: Vec<u8>,
    /// The credential as webauthn-rs serializes it (public key, counter).
    pub passkey: String,
    pub name: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
}

pub fn insert_passkey(conn: &mut dyn Conn, p: &StoredPasskey) -> Result<bool, StoreError> {
    let n = conn.exec(
        "INSERT INTO passkeys (id, customer_id, credential_id, passkey, name, created_ms, last_used_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        params![&p.id, &p.customer_id, p.credential_id.clone(), &p.passkey, &p.name, p.created_ms, p.last_used_ms],
    )?;
    Ok(n == 1)
}

pub fn passkeys_of(
    conn: &mut dyn Conn,
    customer_id: &str,
) -> Result<Vec<StoredPasskey>, StoreError> {
    conn.query(
        "SELECT id, customer_id, credential_id, passkey, name, created_ms, last_used_ms FROM passkeys \
         WHERE customer_id = $1 ORDER BY created_ms, id",
        params![customer_id],
    )?
    .iter()
    .map(|r| {
        Ok(StoredPasskey {
            id: r.text(0)?,
            customer_id: r.text(1)?,
            credential_id: r.bytes(2)?,
            passkey: r.text(3)?,
            name: r.text(4)?,
            created_ms: r.int(5)?,
            last_used_ms: r.opt_int(6)?,
        })
    })
    .collect()
}

/// Records a use of a passkey (its new signature counter).
pub fn passkey_used(
    conn: &mut dyn Conn,
    id: &str,
    passkey: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE passkeys SET passkey = $1, last_used_ms = $2 WHERE id = $3",
        params![passkey, now_ms, id],
    )?;
    Ok(())
}

pub fn delete_passkey(
    conn: &mut dyn Conn,
    customer_id: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "DELETE FROM passkeys WHERE id = $1 AND customer_id = $2",
        params![id, customer_id],
    )?;
    Ok(n == 1)
}

/// Replaces a flow's data (a passkey ceremony keeps its state there between its two steps).
pub fn set_flow_data(
    conn: &mut dyn Conn,
    handle_hash: &[u8],
    data: &str,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE auth_flows SET data = $1 WHERE handle_hash = $2",
        params![data, handle_hash],
    )?;
    Ok(())
}
