//! Stores and their POS terminals.

use crate::{Conn, Row, StoreError, params};

#[derive(Debug, Clone)]
pub struct Store {
    pub id: String,
    pub name: String,
    pub region: String,
    pub created_ms: i64,
    /// Millionths of a degree; `None` when the location is unknown.
    pub lat_e6: Option<i64>,
    pub lon_e6: Option<i64>,
}

pub fn insert_store(conn: &mut dyn Conn, s: &Store) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO stores (id, name, region, created_ms, lat_e6, lon_e6) VALUES ($1, $2, $3, $4, $5, $6)",
        params![&s.id, &s.name, &s.region, s.created_ms, s.lat_e6, s.lon_e6],
    )?;
    Ok(())
}

fn store(r: &Row) -> Result<Store, StoreError> {
    Ok(Store {
        id: r.text(0)?,
        name: r.text(1)?,
        region: r.text(2)?,
        created_ms: r.int(3)?,
        lat_e6: r.opt_int(4)?,
        lon_e6: r.opt_int(5)?,
    })
}

pub fn store_by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Store>, StoreError> {
    conn.query_opt(
        "SELECT id, name, region, created_ms, lat_e6, lon_e6 FROM stores WHERE id = $1",
        params![id],
    )?
    .map(|r| store(&r))
    .transpose()
}

pub fn list_stores(conn: &mut dyn Conn) -> Result<Vec<Store>, StoreError> {
    conn.query(
        "SELECT id, name, region, created_ms, lat_e6, lon_e6 FROM stores ORDER BY id",
        params![],
    )?
    .iter()
    .map(store)
    .collect()
}

#[derive(Debug, Clone)]
pub struct Terminal {
    pub id: String,
    pub store_id: String,
    pub key_hash: Vec<u8>,
    pub label: String,
    pub status: String,
    pub created_ms: i64,
}

pub fn insert_terminal(conn: &mut dyn Conn, t: &Terminal) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO terminals (id, store_id, key_hash, label, status, created_ms, store_lat_e6, store_lon_e6) \
         VALUES ($1, $2, $3, $4, $5, $6, (SELECT lat_e6 FROM stores WHERE id = $2), (SELECT lon_e6 FROM stores WHERE id = $2))",
        params![&t.id, &t.store_id, t.key_hash.clone(), &t.label, &t.status, t.created_ms],
    )?;
    Ok(())
}

/// The active terminal whose key hashes to `key_hash`.
pub fn terminal_by_key_hash(
    conn: &mut dyn Conn,
    key_hash: &[u8],
) -> Result<Option<Terminal>, StoreError> {
    conn.query_opt(
        "SELECT id, store_id, key_hash, label, status, created_ms FROM terminals WHERE key_hash = $1 AND status = 'active'",
        params![key_hash],
    )?
    .map(|r| {
        Ok(Terminal {
            id: r.text(0)?,
            store_id: r.text(1)?,
            key_hash: r.bytes(2)?,
            label: r.text(3)?,
            status: r.text(4)?,
            created_ms: r.int(5)?,
        })
    })
    .transpose()
}

pub fn revoke_terminal(conn: &mut dyn Conn, id: &str) -> Result<bool, StoreError> {
    Ok(conn.exec(
        "UPDATE terminals SET status = 'revoked' WHERE id = $1 AND status = 'active'",
        params![id],
    )? == 1)
}

/// The active terminal of a key together with the idempotency record of `idem_key` under
/// that terminal, in one round trip (the payment hot path).
pub fn terminal_with_idempotency(
    conn: &mut dyn Conn,
    key_hash: &[u8],
    idem_key: &str,
) -> Result<Option<(Terminal, Option<crate::idempotency::Existing>)>, StoreError> {
    conn.query_opt(
        "SELECT t.id, t.store_id, t.key_hash, t.label, t.status, t.created_ms, i.request_hash, i.status_code, i.body \
         FROM terminals t LEFT JOIN idempotency i ON i.scope = t.id AND i.key = $2 WHERE t.key_hash = $1 AND t.status = 'active'",
        params![key_hash, idem_key],
    )?
    .map(|r| {
        let t = Terminal {
            id: r.text(0)?,
            store_id: r.text(1)?,
            key_hash: r.bytes(2)?,
            label: r.text(3)?,
            status: r.text(4)?,
            created_ms: r.int(5)?,
        };
        let existing = match r.0.get(6) {
            Some(crate::Value::Bytes(h)) => Some((h.clone(), r.opt_int(7)?, r.opt_text(8)?)),
            _ => None,
        };
        Ok((t, existing))
    })
    .transpose()
}

/// Everything a POS payment needs to read before it decides, in one round trip: the terminal
/// of the key, an earlier request with the same idempotency key, and the live device holding
/// the code's slot with its customer.
#[derive(Debug, Clone)]
pub struct PosContext {
    pub terminal: Terminal,
    /// Failed codes at this terminal, and for this slot at this terminal, in the current
    /// window (`failures_since_ms` onwards).
    pub terminal_failures: i64,
    pub slot_failures: i64,
    pub existing: Option<crate::idempotency::Existing>,
    pub paying: Option<crate::customers::PayingDevice>,
    /// The terminal's store location (microdegrees), when known.
    pub store_at: Option<(i64, i64)>,
    /// The paying customer's risk profile and payment velocities (customer, device), read in
    /// the same round trip; empty when no device holds the slot. The store's and terminal's
    /// are not read here (zero): the server keeps them, written behind (`SharedCounts`).
    pub profile: crate::risk::Profile,
    pub velocity: PosVelocity,
    /// The stored counter states behind `velocity` (customer, device; `None` where there is
    /// no row yet), for counting the payment from what was read
    /// ([`crate::risk::PaymentCount::read`]).
    pub windows: [Option<crate::risk::Windows>; 2],
    /// Distinct accounts bound on the paying phone's app installation, when known.
    pub device_accounts: Option<i64>,
    /// Where SQLite keeps the wallet's row, read with its profile
    /// ([`crate::ledger::ProfileOnDebit::row`]); `None` on PostgreSQL and without a wallet.
    pub wallet_row: Option<i64>,
}

/// The payment velocities the risk engine reads on the hot path (the customer's from the
/// profile on the wallet account, the device's from the device row, the store's and terminal's from
/// `risk_velocity` with what the node counted and has not written yet).
#[derive(Debug, Clone, Copy, Default)]
pub struct PosVelocity {
    pub customer: crate::risk::Velocity,
    pub device: crate::risk::Velocity,
    pub store: crate::risk::Velocity,
    pub terminal: crate::risk::Velocity,
}

/// First column of the risk profile in `POS_CONTEXT` (its payment count, then its packed
/// state with the customer's windows), then the device's packed windows and the accounts on
/// the phone.
const POS_RISK_FIRST: usize = 29;

static POS_CONTEXT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| pos_context_sql(true, "NULL"));

/// [`POS_CONTEXT`] on SQLite, which also reads where the wallet's row is
/// ([`crate::ledger::ProfileOnDebit::row`]).
static POS_CONTEXT_SQLITE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| pos_context_sql(true, "wa.rowid"));

/// [`POS_CONTEXT`] without what only the risk engine reads (the store's coordinates, the
/// profile, the counters, the accounts on the phone): `konbini bench --without-risk`'s
/// baseline, a payment as it was before the engine.
static POS_CONTEXT_WITHOUT_RISK: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| pos_context_sql(false, ""));

/// The payment's context query; the columns from [`POS_RISK_FIRST`] - 2 to the account's
/// contact change only `with_risk`, then (also only `with_risk`) `wallet_row`, where the
/// backend keeps the wallet's row.
fn pos_context_sql(with_risk: bool, wallet_row: &str) -> String {
    let (risk_columns, risk_joins, wallet_row) = if with_risk {
        (
            format!(
                "t.store_lat_e6, t.store_lon_e6, {}, d.windows, d.installation_accounts, ",
                crate::risk::profile_columns("wa"),
            ),
            // The customer's wallet, its id as `konbini_core::ledger::wallet_account` makes it.
            "LEFT JOIN accounts wa ON wa.id = 'wallet:' || d.customer_id || ':' || $6 ",
            format!(", {wallet_row}"),
        )
    } else {
        (String::new(), "", String::new())
    };
    format!(
        "SELECT t.id, t.store_id, t.key_hash, t.label, t.status, t.created_ms, i.request_hash, i.status_code, i.body, \
                d.id, d.customer_id, d.slot, d.key_generation, d.secret_hash, d.name, d.status, d.last_code_counter, d.created_ms, \
                c.status, c.funding, c.funding_card_id, \
                CASE WHEN ft.window_start_ms >= $5 THEN ft.failures ELSE 0 END, \
                CASE WHEN fs.window_start_ms >= $5 THEN fs.failures ELSE 0 END, \
                c.recovery_hold_until_ms, d.bound_by, c.created_ms, c.password_changed_ms, \
                {risk_columns}c.contact_changed_ms{wallet_row} \
         FROM terminals t \
         LEFT JOIN idempotency i ON i.scope = t.id AND i.key = $2 \
         LEFT JOIN devices d ON d.slot = $3 AND d.status = 'bound' \
         LEFT JOIN customers c ON c.id = d.customer_id \
         LEFT JOIN code_failures ft ON ft.subject = 'term:' || t.id \
         LEFT JOIN code_failures fs ON fs.subject = $4 || t.id \
         {risk_joins}\
         WHERE t.key_hash = $1 AND t.status = 'active'"
    )
}

/// The till's context for a payment with the code of `slot`, read in one query. With
/// `with_risk`, the payment's currency: the risk engine's state is read too, the customer's
/// profile from the wallet account in that currency; without, only what a payment needs
/// without the engine (`konbini bench --without-risk`'s baseline).
pub fn pos_context(
    conn: &mut dyn Conn,
    key_hash: &[u8],
    idem_key: &str,
    slot: i64,
    failures_since_ms: i64,
    now_ms: i64,
    with_risk: Option<konbini_core::Currency>,
) -> Result<Option<PosContext>, StoreError> {
    let mut params = crate::values![
        key_hash,
        idem_key,
        slot,
        format!("slot:{slot}:"),
        failures_since_ms
    ];
    let sql: &'static str = match with_risk {
        Some(currency) => {
            params.push(currency.code().into());
            match conn.backend() {
                crate::Backend::Sqlite => &POS_CONTEXT_SQLITE,
                crate::Backend::Postgres => &POS_CONTEXT,
            }
        }
        None => &POS_CONTEXT_WITHOUT_RISK,
    };
    let with_risk = with_risk.is_some();
    let Some(r) = conn.query_opt(sql, &params)? else {
        return Ok(None);
    };
    let terminal = Terminal {
        id: r.text(0)?,
        store_id: r.text(1)?,
        key_hash: r.bytes(2)?,
        label: r.text(3)?,
        status: r.text(4)?,
        created_ms: r.int(5)?,
    };
    let existing = match r.0.get(6) {
        Some(crate::Value::Bytes(h)) => Some((h.clone(), r.opt_int(7)?, r.opt_text(8)?)),
        _ => None,
    };
    let paying = match r.opt_text(9)? {
        None => None,
        Some(id) => Some(crate::customers::PayingDevice {
            device: crate::customers::Device {
                id,
                customer_id: r.text(10)?,
                slot: r.int(11)?,
                key_generation: r.int(12)?,
                secret_hash: r.bytes(13)?,
                name: r.text(14)?,
                status: r.text(15)?,
                last_code_counter: r.int(16)?,
                created_ms: r.int(17)?,
            },
            customer_status: r.text(18)?,
            funding: r.text(19)?,
            funding_card_id: r.opt_text(20)?,
            recovery_hold_until_ms: r.int(23)?,
            bound_by: r.text(24)?,
            customer_created_ms: r.int(25)?,
            password_changed_ms: r.opt_int(26)?,
            contact_changed_ms: r.opt_int(if with_risk { POS_RISK_FIRST + 4 } else { 27 })?,
        }),
    };
    let mut context = PosContext {
        terminal,
        terminal_failures: r.opt_int(21)?.unwrap_or(0),
        slot_failures: r.opt_int(22)?.unwrap_or(0),
        existing,
        paying,
        store_at: None,
        profile: crate::risk::Profile::default(),
        velocity: PosVelocity::default(),
        windows: [None; 2],
        device_accounts: None,
        wallet_row: None,
    };
    if !with_risk {
        return Ok(Some(context));
    }
    // The profile with the customer's windows (none without a wallet account), the device's.
    let profile = crate::risk::profile_of(&r, POS_RISK_FIRST)?;
    let windows = [
        profile.as_ref().map(|p| p.1),
        Some(crate::risk::Windows::read_packed(&r, POS_RISK_FIRST + 2)?),
    ];
    let velocity =
        |w: Option<crate::risk::Windows>| w.map_or_else(Default::default, |w| w.velocity(now_ms));
    context.store_at = r.opt_int(27)?.zip(r.opt_int(28)?);
    context.profile = profile.map(|p| p.0).unwrap_or_default();
    context.velocity = PosVelocity {
        customer: velocity(windows[0]),
        device: velocity(windows[1]),
        ..PosVelocity::default()
    };
    context.windows = windows;
    context.device_accounts = r.opt_int(POS_RISK_FIRST + 3)?;
    context.wallet_row = r.opt_int(POS_RISK_FIRST + 5)?;
    Ok(Some(context))
}

/// Counts one failure (a bad payment code, a failed login) against `subject` in a fixed window
/// starting at the first failure; a failure after the window has passed starts a new window.
pub fn record_code_failure(
    conn: &mut dyn Conn,
    subject: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO code_failures (subject, window_start_ms, failures) VALUES ($1, $2, 1) \
         ON CONFLICT (subject) DO UPDATE SET \
           failures = CASE WHEN code_failures.window_start_ms < $3 THEN 1 ELSE code_failures.failures + 1 END, \
           window_start_ms = CASE WHEN code_failures.window_start_ms < $3 THEN $2 ELSE code_failures.window_start_ms END",
        params![subject, now_ms, now_ms - window_ms],
    )?;
    Ok(())
}

/// Failures counted against `subject` in its current window, and when that window started;
/// `(0, now)` when there are none or the window has passed.
pub fn failures(
    conn: &mut dyn Conn,
    subject: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<(i64, i64), StoreError> {
    Ok(
        match conn.query_opt(
            "SELECT failures, window_start_ms FROM code_failures WHERE subject = $1",
            params![subject],
        )? {
            Some(r) if r.int(1)? >= now_ms - window_ms => (r.int(0)?, r.int(1)?),
            _ => (0, now_ms),
        },
    )
}

/// Forgets the failures of `subject` (after a success).
pub fn clear_failures(conn: &mut dyn Conn, subject: &str) -> Result<(), StoreError> {
    conn.exec(
        "DELETE FROM code_failures WHERE subject = $1",
        params![subject],
    )?;
    Ok(())
}
