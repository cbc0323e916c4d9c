//! Use cases: each takes parsed domain input, decides with `konbini-core`, and persists
//! through `konbini-store` in one transaction together with its ledger postings, activity
//! line and outbox event. Handlers in `http` only parse, authenticate and call these.

pub mod accounts;
pub mod funding;
pub mod idem;
pub mod paycodes;
pub mod pos;
pub mod reconcile;

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
