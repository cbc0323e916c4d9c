//! Use cases: each takes parsed domain input, decides with `konbini-core`, and persists
//! through `konbini-store` in one transaction together with its ledger postings, activity
//! line and outbox event. Handlers in `http` only parse, authenticate and call these.

pub mod accounts;
pub mod admin;
pub mod codes;
pub mod contacts;
pub mod funding;
pub mod idem;
pub mod mfa;
pub mod passkeys;
pub mod paycodes;
pub mod pos;
pub mod reconcile;
pub mod recovery;
pub mod risk;
pub mod staff;
pub mod throttle;

use konbini_store::{Conn, StoreError, outbox};

/// Writes an outbox event in the caller's transaction.
pub fn emit(
    c: &mut dyn Conn,
    topic: &str,
    aggregate_id: &str,
    payload: &serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    outbox::enqueue(
        c,
        &crate::secrets::new_id("evt"),
        topic,
        aggregate_id,
        &payload.to_string(),
        now_ms,
    )
}

/// A security event: the message to the customer through the outbox AND a record in the
/// hash-chained audit log, both in the caller's transaction. `actor` is who acted (the
/// customer id, `anonymous`, `system`); the payload must hold ids only, never personal data.
pub fn security_event(
    c: &mut dyn Conn,
    actor: &str,
    topic: &str,
    subject: &str,
    payload: &serde_json::Value,
    now_ms: i64,
) -> Result<(), StoreError> {
    emit(c, topic, subject, payload, now_ms)?;
    konbini_store::audit::append(c, actor, topic, subject, &payload.to_string(), now_ms)?;
    Ok(())
}
