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

/// Events due for delivery at `now_ms` (not delivered, not dead, backoff elapsed, not leased),
/// oldest first, at most `limit`.
pub fn due(conn: &mut dyn Conn, now_ms: i64, limit: i64) -> Result<Vec<Event>, StoreError> {
    conn.query(
        "SELECT id, topic, aggregate_id, payload, created_ms, attempts FROM outbox \
         WHERE delivered_ms IS NULL AND dead_ms IS NULL AND next_attempt_ms <= $1 AND lease_until_ms < $1 \
         ORDER BY created_ms, id LIMIT $2",
        params![now_ms, limit],
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

/// Claims an event for `lease_ms`; `false` when another dispatcher holds it or it is done.
/// With several nodes, exactly one delivers each event (unless it crashes mid-way, in which
/// case the lease runs out and another retries: delivery is at least once).
pub fn claim(
    conn: &mut dyn Conn,
    id: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE outbox SET lease_until_ms = $1 WHERE id = $2 AND delivered_ms IS NULL AND dead_ms IS NULL AND lease_until_ms < $3",
        params![now_ms + lease_ms, id, now_ms],
    )? == 1)
}

/// Records a failed attempt: retry at `next_attempt_ms`, or give up (`dead`) after the last.
pub fn fail(
    conn: &mut dyn Conn,
    id: &str,
    error: &str,
    next_attempt_ms: i64,
    dead: bool,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_attempt_ms = $2, lease_until_ms = 0, \
         dead_ms = CASE WHEN $3 = 1 THEN CAST($4 AS BIGINT) ELSE NULL END WHERE id = $5",
        params![error, next_attempt_ms, i64::from(dead), now_ms, id],
    )?;
    Ok(())
}

/// Dead-lettered events (delivery gave up), newest first.
pub fn dead(conn: &mut dyn Conn, limit: i64) -> Result<Vec<(Event, String)>, StoreError> {
    conn.query(
        "SELECT id, topic, aggregate_id, payload, created_ms, attempts, COALESCE(last_error, '') FROM outbox \
         WHERE dead_ms IS NOT NULL ORDER BY dead_ms DESC LIMIT $1",
        params![limit],
    )?
    .iter()
    .map(|r| {
        Ok((
            Event {
                id: r.text(0)?,
                topic: r.text(1)?,
                aggregate_id: r.text(2)?,
                payload: r.text(3)?,
                created_ms: r.int(4)?,
                attempts: r.int(5)?,
            },
            r.text(6)?,
        ))
    })
    .collect()
}
