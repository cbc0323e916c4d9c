//! Top-ups, POS payments, refunds and the customer's activity feed.

use crate::{Conn, Row, StoreError, params, values};

/// `SELECT <every payment column> FROM payments <rest>`, as one static string.
macro_rules! select_payments {
    ($rest:literal) => {
        concat!(
            "SELECT id, customer_id, device_id, store_id, terminal_id, amount, currency, status, decline_code, funding, \
             card_id, processor_auth, order_ref, basket, refunded, hold_id, expires_ms, created_ms, updated_ms FROM payments ",
            $rest
        )
    };
}

/// A top-up as stored.
#[derive(Debug, Clone)]
pub struct Topup {
    pub id: String,
    pub customer_id: String,
    pub source: String,
    pub card_id: Option<String>,
    pub store_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub decline_code: Option<String>,
    pub processor_auth: Option<String>,
    pub created_ms: i64,
}

pub fn insert_topup(conn: &mut dyn Conn, t: &Topup) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO topups (id, customer_id, source, card_id, store_id, amount, currency, status, decline_code, processor_auth, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        params![&t.id, &t.customer_id, &t.source, t.card_id.clone(), t.store_id.clone(), t.amount, &t.currency, &t.status, t.decline_code.clone(), t.processor_auth.clone(), t.created_ms],
    )?;
    Ok(())
}

/// Moves a pending top-up to its final state; false if it was not pending.
pub fn finish_topup(
    conn: &mut dyn Conn,
    id: &str,
    status: &str,
    decline_code: Option<&str>,
    processor_auth: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE topups SET status = $1, decline_code = $2, processor_auth = $3, updated_ms = $4 WHERE id = $5 AND status = 'pending'",
        params![status, decline_code, processor_auth, now_ms, id],
    )? == 1)
}

/// Sum and count of a customer's top-ups (pending or succeeded) since `since_ms`, for limits.
pub fn topups_since(
    conn: &mut dyn Conn,
    customer_id: &str,
    since_ms: i64,
) -> Result<(i64, i64), StoreError> {
    let r = conn.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM topups WHERE customer_id = $1 AND created_ms >= $2 AND status <> 'failed'",
        params![customer_id, since_ms],
    )?;
    Ok((r.int(0)?, r.int(1)?))
}

/// A POS payment as stored.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: String,
    pub customer_id: Option<String>,
    pub device_id: Option<String>,
    pub store_id: String,
    pub terminal_id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub decline_code: Option<String>,
    pub funding: Option<String>,
    pub card_id: Option<String>,
    pub processor_auth: Option<String>,
    pub order_ref: String,
    pub basket: String,
    pub refunded: i64,
    pub hold_id: Option<String>,
    pub expires_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

fn payment(r: &Row) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: r.text(0)?,
        customer_id: r.opt_text(1)?,
        device_id: r.opt_text(2)?,
        store_id: r.text(3)?,
        terminal_id: r.text(4)?,
        amount: r.int(5)?,
        currency: r.text(6)?,
        status: r.text(7)?,
        decline_code: r.opt_text(8)?,
        funding: r.opt_text(9)?,
        card_id: r.opt_text(10)?,
        processor_auth: r.opt_text(11)?,
        order_ref: r.text(12)?,
        basket: r.text(13)?,
        refunded: r.int(14)?,
        hold_id: r.opt_text(15)?,
        expires_ms: r.opt_int(16)?,
        created_ms: r.int(17)?,
        updated_ms: r.int(18)?,
    })
}

pub fn insert_payment(conn: &mut dyn Conn, p: &Payment) -> Result<(), StoreError> {
    insert_payment_journaled(conn, p, None)
}

/// Inserts a payment with the packed features of its journal line (`risk_features`) when
/// its decision is journaled on its row (`risk::journaled_on_payment`).
fn insert_payment_journaled(
    conn: &mut dyn Conn,
    p: &Payment,
    risk_features: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    // The features right after the payment's 19 values.
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| INSERT_PAYMENT_JOURNALED.replace("$38", "$20"));
    let mut values = payment_values(p);
    values.push(crate::Value::from(risk_features));
    conn.exec(&SQL, &values)?;
    Ok(())
}

/// The payment's insert: its 19 values in `$1`..`$19` (in [`record_params`] order).
const INSERT_PAYMENT: &str = "INSERT INTO payments (id, customer_id, device_id, store_id, terminal_id, amount, currency, status, decline_code, funding, card_id, processor_auth, order_ref, basket, refunded, hold_id, expires_ms, created_ms, updated_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

/// The payment's insert in PostgreSQL's statements that count it for the risk engine:
/// `$1`..`$19` as in [`INSERT_PAYMENT`], and its journal line's features in `$38`, the first
/// of the risk parameters (`risk::payment_risk_params`).
const INSERT_PAYMENT_JOURNALED: &str = "INSERT INTO payments (id, customer_id, device_id, store_id, terminal_id, amount, currency, status, decline_code, funding, card_id, processor_auth, order_ref, basket, refunded, hold_id, expires_ms, created_ms, updated_ms, risk_features) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $38)";

/// The idempotency record written with a payment (scope, key, request hash, status, body).
#[derive(Debug, Clone)]
pub struct IdempotencyRecord<'a> {
    pub scope: &'a str,
    pub key: &'a str,
    pub request_hash: &'a [u8],
    pub status: u16,
    pub body: &'a str,
}

/// Inserts a payment with its activity line, its outbox event and the idempotency record of
/// the request. Returns `false` (the caller must roll back) when another request with the same
/// key committed first. On PostgreSQL the four rows go in ONE statement of data-modifying CTEs,
/// saving three round trips on the hottest path; SQLite is in process and runs four inserts.
pub fn insert_payment_recorded(
    conn: &mut dyn Conn,
    p: &Payment,
    activity: Option<&Activity>,
    event: &crate::outbox::NewEvent,
    idem: &IdempotencyRecord<'_>,
    risk: Option<&crate::risk::PaymentRisk<'_>>,
) -> Result<bool, StoreError> {
    let sqlite = conn.backend() == crate::Backend::Sqlite;
    // SQLite writes the engine's rows statement by statement (no round trips to save);
    // PostgreSQL folds them into the payment's statement when the payment is counted, its
    // decision journaled on its row, and it has an activity line.
    let risk_params = match risk {
        Some(r) if !sqlite && activity.is_some() => crate::risk::payment_risk_params(conn, r, p)?,
        _ => None,
    };
    if let Some(r) = risk
        && risk_params.is_none()
    {
        // PostgreSQL's statements below have no room for the features: written as text.
        let on_row = sqlite && crate::risk::journaled_on_payment(r.decision, p);
        crate::risk::write_payment_risk(conn, r, on_row)?;
    }
    if sqlite {
        let on_row = risk
            .filter(|r| crate::risk::journaled_on_payment(r.decision, p))
            .map(|r| r.features.journal_bytes());
        insert_payment_journaled(conn, p, on_row)?;
        if let Some(a) = activity {
            insert_activity(conn, a)?;
        }
        crate::outbox::enqueue(
            conn,
            &event.id,
            &event.topic,
            &event.aggregate_id,
            &event.payload,
            event.created_ms,
        )?;
        return crate::idempotency::insert(
            conn,
            idem.scope,
            idem.key,
            idem.request_hash,
            Some((idem.status, idem.body)),
            p.created_ms,
        );
    }
    let mut params = record_params(p, event, idem);
    let row = match activity {
        Some(a) if risk_params.is_some() => {
            // The hot path: the payment with its journal line, its activity line, event,
            // idempotency record, and the risk engine's counters and profile, in one round
            // trip.
            params.extend(activity_params(a));
            params.extend(risk_params.unwrap_or_default());
            conn.query_one(&PAYMENT_WITH_RISK, &params)?
        }
        Some(a) => {
            params.extend(activity_params(a));
            conn.query_one(&PAYMENT_WITH_ACTIVITY, &params)?
        }
        None => conn.query_one(&PAYMENT_RECORDED, &params)?,
    };
    Ok(row.int(0)? == 1)
}

/// The parameters of a payment's record on PostgreSQL: the payment (`$1`..`$19`), its
/// outbox event (`$20`..`$24`) and its idempotency record (`$25`..`$29`).
fn record_params(
    p: &Payment,
    event: &crate::outbox::NewEvent,
    idem: &IdempotencyRecord<'_>,
) -> Vec<crate::Value> {
    let mut values = payment_values(p);
    values.extend(values![
        &event.id,
        &event.topic,
        &event.aggregate_id,
        &event.payload,
        event.created_ms,
        idem.scope,
        idem.key,
        idem.request_hash,
        i64::from(idem.status),
        idem.body
    ]);
    values
}

/// A payment's 19 values, in the order of [`INSERT_PAYMENT`]'s columns.
fn payment_values(p: &Payment) -> Vec<crate::Value> {
    values![
        &p.id,
        p.customer_id.clone(),
        p.device_id.clone(),
        &p.store_id,
        &p.terminal_id,
        p.amount,
        &p.currency,
        &p.status,
        p.decline_code.clone(),
        p.funding.clone(),
        p.card_id.clone(),
        p.processor_auth.clone(),
        &p.order_ref,
        &p.basket,
        p.refunded,
        p.hold_id.clone(),
        p.expires_ms,
        p.created_ms,
        p.updated_ms
    ]
}

/// The activity line's parameters (`$30`..`$37` after [`record_params`]).
fn activity_params(a: &Activity) -> Vec<crate::Value> {
    values![
        &a.id,
        &a.customer_id,
        &a.kind,
        a.amount,
        &a.currency,
        &a.status,
        &a.description,
        a.created_ms
    ]
}

/// How [`pay_and_record_alone`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaidAlone {
    /// Committed: the code spent, the entry posted, the payment recorded (and counted).
    Paid,
    /// The code was not (or no longer) valid, or (with the risk engine's writes) another
    /// payment on the device ran since the context read it: nothing was written (the general
    /// path decides).
    CodeRejected,
    /// The wallet could not pay, or (with the risk engine's writes) another payment counted on
    /// its profile since the context read it: the statement undid itself, nothing was written
    /// (not even the code's spending; the general path decides, and records a decline).
    NotPaid,
    /// Another request with the same idempotency key was recorded first: the statement undid
    /// itself, nothing was written.
    Race,
}

/// The code to spend and the entry to post of a wallet payment.
pub struct WalletPost<'a> {
    pub slot: i64,
    pub counter: i64,
    pub entry_id: &'a str,
    pub entry: &'a konbini_core::ledger::Entry,
}

/// The wallet payment's hot path on PostgreSQL as ONE statement that is its own transaction
/// (see [`Conn::query_alone`]): it spends the code, debits the wallet, credits the store,
/// writes the entry and its postings, records the succeeded payment `p` with its activity
/// line, outbox event and idempotency record, and (with `risk`) the journal line, the
/// counters and the profile, all conditional on the debit. When the debit cannot happen or
/// the idempotency key was taken meanwhile, the statement undoes itself (`konbini_undo`), so
/// it commits all of it or nothing. Two round trips per payment (this and the context read)
/// instead of five (`BEGIN`, context, ledger, record, `COMMIT`).
///
/// `None` on SQLite, when the entry is not a wallet debit, or when the customer's risk
/// profile changed since it was read (the caller takes the general path). After
/// `PaidAlone::Paid` the job must write nothing more.
pub fn pay_and_record_alone(
    conn: &mut dyn Conn,
    post: &WalletPost<'_>,
    p: &Payment,
    activity: &Activity,
    event: &crate::outbox::NewEvent,
    idem: &IdempotencyRecord<'_>,
    risk: Option<&crate::risk::PaymentRisk<'_>>,
) -> Result<Option<PaidAlone>, StoreError> {
    if conn.backend() != crate::Backend::Postgres {
        return Ok(None);
    }
    let Some(mut params) = crate::ledger::code_and_post_params(
        post.slot,
        post.counter,
        post.entry_id,
        "payment",
        &p.id,
        post.entry,
        p.created_ms,
    )?
    else {
        return Ok(None);
    };
    params.extend(record_params(p, event, idem));
    params.extend(activity_params(activity));
    let risk_params = risk.and_then(|r| crate::risk::payment_risk_params_when_posted(r, p));
    let sql: &'static str = match risk_params {
        Some(r) => {
            params.extend(r);
            &PAY_ALONE_WITH_RISK
        }
        None if risk.is_some() => return Ok(None),
        None => &PAY_ALONE,
    };
    match conn.query_alone(sql, &params) {
        Ok(rows) => {
            let spent = rows.first().map(|r| r.int(0)).transpose()?.unwrap_or(0);
            Ok(Some(if spent == 1 {
                PaidAlone::Paid
            } else {
                PaidAlone::CodeRejected
            }))
        }
        // The wallet could not pay, or (with the risk engine) another payment counted on its
        // profile since the context read it: nothing was written; the general path decides.
        Err(StoreError::Undone(why)) if why == "insufficient_funds" => Ok(Some(PaidAlone::NotPaid)),
        Err(StoreError::Undone(why)) if why == "idempotency_race" => Ok(Some(PaidAlone::Race)),
        Err(e) => Err(e),
    }
}

/// The statement of [`pay_and_record_alone`], with the risk engine's writes from
/// `risk::payment_risk_when_posted`.
fn pay_alone_sql(risk: Option<crate::ledger::WalletPostSets>) -> String {
    use crate::risk::when_posted;
    let (ledger, insert_payment) = match risk {
        Some(r) => (
            crate::ledger::code_and_post_ctes(&r),
            INSERT_PAYMENT_JOURNALED,
        ),
        None => (
            crate::ledger::code_and_post_ctes(&Default::default()),
            INSERT_PAYMENT,
        ),
    };
    // The record, numbered after the ledger's 12 parameters.
    let record = crate::risk::renumber(
        &format!(
            "o AS ({}), i AS ({}), a AS ({}), pay AS ({})",
            when_posted(
                "INSERT INTO outbox (id, topic, aggregate_id, payload, created_ms, attempts) VALUES ($20, $21, $22, $23, $24, 0)"
            ),
            when_posted(
                "INSERT INTO idempotency (scope, key, request_hash, status_code, body, created_ms) VALUES ($25, $26, $27, $28, $29, $18) ON CONFLICT DO NOTHING RETURNING 1"
            ),
            when_posted(
                "INSERT INTO activity (id, customer_id, kind, amount, currency, status, description, created_ms) VALUES ($30, $31, $32, $33, $34, $35, $36, $37)"
            ),
            when_posted(insert_payment),
        ),
        13,
    );
    // Spent but not debited (the wallet short or, with the risk engine, its profile changed
    // since it was read), or debited but the key taken: undo the whole statement.
    let guard = "g AS (SELECT konbini_undo('insufficient_funds') FROM k WHERE NOT EXISTS (SELECT 1 FROM w) \
         UNION ALL SELECT konbini_undo('idempotency_race') FROM w WHERE NOT EXISTS (SELECT 1 FROM i))";
    format!(
        "WITH {ledger}, {record}, {guard} SELECT (SELECT COUNT(*) FROM k), (SELECT COUNT(*) FROM g)"
    )
}

static PAY_ALONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| pay_alone_sql(None));

/// Risk parameters follow the ledger's 12, the record's 29 and the activity's 8: the journal
/// line's features (`$50`, which is `$38` of [`INSERT_PAYMENT_JOURNALED`] renumbered), then
/// the counts from `$51`.
static PAY_ALONE_WITH_RISK: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| pay_alone_sql(Some(crate::risk::payment_risk_when_posted(51))));

/// The PostgreSQL statement of a payment with its activity line and counted risk writes.
static PAYMENT_WITH_RISK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let risk = crate::risk::payment_risk_ctes(38);
    record_sql(&format!("{ACTIVITY_CTE}, {risk}"), INSERT_PAYMENT_JOURNALED)
});

/// The PostgreSQL statement of a payment with its activity line (no risk writes).
static PAYMENT_WITH_ACTIVITY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| record_sql(ACTIVITY_CTE, INSERT_PAYMENT));

/// The PostgreSQL statement of a payment without an activity line (a decline).
static PAYMENT_RECORDED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| record_sql("", INSERT_PAYMENT));

/// The activity line's CTE, its parameters after the record's 29 (`activity_params`).
const ACTIVITY_CTE: &str = "a AS (INSERT INTO activity (id, customer_id, kind, amount, currency, status, description, created_ms) VALUES ($30, $31, $32, $33, $34, $35, $36, $37))";

/// A payment's record on PostgreSQL as one statement (parameters as [`record_params`]): its
/// outbox event and idempotency record, the CTEs in `more` (if any), then `insert_payment`;
/// it returns 1 when the idempotency record was written (0: a duplicate won the key).
fn record_sql(more: &str, insert_payment: &str) -> String {
    let more = if more.is_empty() {
        String::new()
    } else {
        format!(", {more}")
    };
    format!(
        "WITH o AS (INSERT INTO outbox (id, topic, aggregate_id, payload, created_ms, attempts) VALUES ($20, $21, $22, $23, $24, 0)), \
         i AS (INSERT INTO idempotency (scope, key, request_hash, status_code, body, created_ms) VALUES ($25, $26, $27, $28, $29, $18) ON CONFLICT DO NOTHING RETURNING 1){more} \
         {insert_payment} RETURNING (SELECT COUNT(*) FROM i)"
    )
}

/// A payment, only if it was taken at `store_id` (a terminal of another store sees nothing).
pub fn payment_in_store(
    conn: &mut dyn Conn,
    id: &str,
    store_id: &str,
) -> Result<Option<Payment>, StoreError> {
    conn.query_opt(
        select_payments!("WHERE id = $1 AND store_id = $2"),
        params![id, store_id],
    )?
    .map(|r| payment(&r))
    .transpose()
}

/// A payment by id, whatever its store (for internal sweeps).
pub fn payment_by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Payment>, StoreError> {
    conn.query_opt(select_payments!("WHERE id = $1"), params![id])?
        .map(|r| payment(&r))
        .transpose()
}

/// Changes a payment's status only if it is still `from` (each transition happens once).
pub fn transition_payment(
    conn: &mut dyn Conn,
    id: &str,
    from: &str,
    to: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE payments SET status = $1, updated_ms = $2 WHERE id = $3 AND status = $4",
        params![to, now_ms, id, from],
    )? == 1)
}

/// Adds `amount` to a payment's refunded total only if the total stays within the paid amount.
pub fn add_refunded(
    conn: &mut dyn Conn,
    id: &str,
    amount: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE payments SET refunded = refunded + $1, updated_ms = $2 WHERE id = $3 AND status = 'succeeded' AND refunded + $1 <= amount",
        params![amount, now_ms, id],
    )? == 1)
}

pub fn insert_refund(
    conn: &mut dyn Conn,
    id: &str,
    payment_id: &str,
    amount: i64,
    currency: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO refunds (id, payment_id, amount, currency, status, created_ms) VALUES ($1, $2, $3, $4, 'succeeded', $5)",
        params![id, payment_id, amount, currency, now_ms],
    )?;
    Ok(())
}

/// One line of the customer's feed.
#[derive(Debug, Clone)]
pub struct Activity {
    pub id: String,
    pub customer_id: String,
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub description: String,
    pub created_ms: i64,
}

pub fn insert_activity(conn: &mut dyn Conn, a: &Activity) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO activity (id, customer_id, kind, amount, currency, status, description, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        params![&a.id, &a.customer_id, &a.kind, a.amount, &a.currency, &a.status, &a.description, a.created_ms],
    )?;
    Ok(())
}

pub fn set_activity_status(conn: &mut dyn Conn, id: &str, status: &str) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE activity SET status = $1 WHERE id = $2",
        params![status, id],
    )?;
    Ok(())
}

/// A page of a customer's feed, newest first, strictly before the cursor `(created_ms, id)`.
pub fn activity_page(
    conn: &mut dyn Conn,
    customer_id: &str,
    before: Option<(i64, String)>,
    limit: i64,
) -> Result<Vec<Activity>, StoreError> {
    let rows = match before {
        None => conn.query(
            "SELECT id, customer_id, kind, amount, currency, status, description, created_ms FROM activity \
             WHERE customer_id = $1 ORDER BY created_ms DESC, id DESC LIMIT $2",
            params![customer_id, limit],
        )?,
        Some((ms, id)) => conn.query(
            "SELECT id, customer_id, kind, amount, currency, status, description, created_ms FROM activity \
             WHERE customer_id = $1 AND (created_ms < $2 OR (created_ms = $2 AND id < $3)) ORDER BY created_ms DESC, id DESC LIMIT $4",
            params![customer_id, ms, id, limit],
        )?,
    };
    rows.iter()
        .map(|r| {
            Ok(Activity {
                id: r.text(0)?,
                customer_id: r.text(1)?,
                kind: r.text(2)?,
                amount: r.int(3)?,
                currency: r.text(4)?,
                status: r.text(5)?,
                description: r.text(6)?,
                created_ms: r.int(7)?,
            })
        })
        .collect()
}

/// A customer's payments waiting for confirmation that have not expired, oldest first.
pub fn pending_for_customer(
    conn: &mut dyn Conn,
    customer_id: &str,
    now_ms: i64,
) -> Result<Vec<Payment>, StoreError> {
    conn.query(
        select_payments!("WHERE customer_id = $1 AND status = 'pending_confirmation' AND expires_ms > $2 ORDER BY created_ms, id LIMIT 50"),
        params![customer_id, now_ms],
    )?
    .iter()
    .map(payment)
    .collect()
}

/// A payment, only if it belongs to `customer_id` (another customer's id reads as absent).
pub fn payment_of_customer(
    conn: &mut dyn Conn,
    id: &str,
    customer_id: &str,
) -> Result<Option<Payment>, StoreError> {
    conn.query_opt(
        select_payments!("WHERE id = $1 AND customer_id = $2"),
        params![id, customer_id],
    )?
    .map(|r| payment(&r))
    .transpose()
}

/// Records the outcome of a payment that was waiting (for the processor or the customer).
pub fn finish_payment(
    conn: &mut dyn Conn,
    id: &str,
    from: &str,
    to: &str,
    decline_code: Option<&str>,
    processor_auth: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE payments SET status = $1, decline_code = $2, processor_auth = COALESCE($3, processor_auth), updated_ms = $4 WHERE id = $5 AND status = $6",
        params![to, decline_code, processor_auth, now_ms, id, from],
    )? == 1)
}

/// A card operation between its two transactions.
#[derive(Debug, Clone)]
pub struct CardOp {
    pub ref_id: String,
    /// `topup`, `payment` or `refund`.
    pub kind: String,
    pub idem_scope: String,
    pub idem_key: String,
    /// Refunds only: the authorization to refund and the amount.
    pub processor_auth: Option<String>,
    pub amount: Option<i64>,
    pub created_ms: i64,
}

fn card_op(r: &Row) -> Result<CardOp, StoreError> {
    Ok(CardOp {
        ref_id: r.text(0)?,
        kind: r.text(1)?,
        idem_scope: r.text(2)?,
        idem_key: r.text(3)?,
        processor_auth: r.opt_text(4)?,
        amount: r.opt_int(5)?,
        created_ms: r.int(6)?,
    })
}

pub fn insert_card_op(conn: &mut dyn Conn, op: &CardOp) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO card_ops (ref_id, kind, idem_scope, idem_key, processor_auth, amount, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params![&op.ref_id, &op.kind, &op.idem_scope, &op.idem_key, op.processor_auth.clone(), op.amount, op.created_ms],
    )?;
    Ok(())
}

/// Removes the marker and returns it; `None` when another party (the live request or the reconciler)
/// already finished the operation — the caller must then leave it alone.
pub fn take_card_op(conn: &mut dyn Conn, ref_id: &str) -> Result<Option<CardOp>, StoreError> {
    let Some(r) = conn.query_opt(
        "SELECT ref_id, kind, idem_scope, idem_key, processor_auth, amount, created_ms FROM card_ops WHERE ref_id = $1",
        params![ref_id],
    )?
    else {
        return Ok(None);
    };
    if conn.exec("DELETE FROM card_ops WHERE ref_id = $1", params![ref_id])? != 1 {
        return Ok(None);
    }
    Ok(Some(card_op(&r)?))
}

/// Card operations started before `before_ms` and never finished, oldest first.
pub fn stuck_card_ops(
    conn: &mut dyn Conn,
    before_ms: i64,
    limit: i64,
) -> Result<Vec<CardOp>, StoreError> {
    conn.query(
        "SELECT ref_id, kind, idem_scope, idem_key, processor_auth, amount, created_ms FROM card_ops WHERE created_ms < $1 ORDER BY created_ms LIMIT $2",
        params![before_ms, limit],
    )?
    .iter()
    .map(card_op)
    .collect()
}

/// A top-up by id.
pub fn topup_by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Topup>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, source, card_id, store_id, amount, currency, status, decline_code, processor_auth, created_ms FROM topups WHERE id = $1",
        params![id],
    )?
    .map(|r| {
        Ok(Topup {
            id: r.text(0)?,
            customer_id: r.text(1)?,
            source: r.text(2)?,
            card_id: r.opt_text(3)?,
            store_id: r.opt_text(4)?,
            amount: r.int(5)?,
            currency: r.text(6)?,
            status: r.text(7)?,
            decline_code: r.opt_text(8)?,
            processor_auth: r.opt_text(9)?,
            created_ms: r.int(10)?,
        })
    })
    .transpose()
}
