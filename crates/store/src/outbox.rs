//! The transactional outbox: events written in the same transaction as the change they
//! report, for a dispatcher to deliver (email, SMS, in-wallet, webhooks).

use crate::{Conn, StoreError, params};

/// An event waiting for delivery.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub topic: String,
    pub aggregate_id: String,
    pub payload: String,
    pub created_ms: i64,
    pub attempts: i64,
}

pub fn enqueue(
    conn: &mut dyn Conn,
    id: &str,
    topic: &str,
    aggregate_id: &str,
    payload_json: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO outbox (id, topic, aggregate_id, payload, created_ms, attempts) VALUES ($1, $2, $3, $4, $5, 0)",
        params![id, topic, aggregate_id, payload_json, now_ms],
    )?;
    Ok(())
}

/// An event to write.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub topic: String,
    pub aggregate_id: String,
    pub payload: String,
    pub created_ms: i64,
}

/// Undelivered events, oldest first, at most `limit`.
pub fn pending(conn: &mut dyn Conn, limit: i64) -> Result<Vec<Event>, StoreError> {
    conn.query(
        "SELECT id, topic, aggregate_id, payload, created_ms, attempts FROM outbox WHERE delivered_ms IS NULL ORDER BY created_ms, id LIMIT $1",
        params![limit],
    )?
    .iter()
    .map(|r| {
        Ok(Event {
            id: r.text(0)?,
            topic: r.text(1)?,
            aggregate_id: r.text(2)?,
            payload: r.text(3)?,
            created_ms: r.int(4)?,
            attempts: r.int(5)?,
        })
    })
    .collect()
}

/// Events about one aggregate (a payment, a top-up), oldest first.
pub fn for_aggregate(conn: &mut dyn Conn, aggregate_id: &str) -> Result<Vec<Event>, StoreError> {
    conn.query(
        "SELECT id, topic, aggregate_id, payload, created_ms, attempts FROM outbox WHERE aggregate_id = $1 ORDER BY created_ms, id",
        params![aggregate_id],
    )?
    .iter()
    .map(|r| {
        Ok(Event {
            id: r.text(0)?,
            topic: r.text(1)?,
            aggregate_id: r.text(2)?,
            payload: r.text(3)?,
            created_ms: r.int(4)?,
            attempts: r.int(5)?,
        })
    })
    .collect()
}

pub fn mark_delivered(conn: &mut dyn Conn, id: &str, now_ms: i64) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE outbox SET delivered_ms = $1, attempts = attempts + 1 WHERE id = $2",
        params![now_ms, id],
    )?;
    Ok(())
}
