//! Customers, their devices, sessions and linked cards.

use crate::{Conn, Row, StoreError, params};

/// A customer as stored.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub phone: String,
    pub password_hash: String,
    pub status: String,
    pub funding: String,
    pub funding_card_id: Option<String>,
    pub created_ms: i64,
    pub email_verified_ms: Option<i64>,
    pub phone_verified_ms: Option<i64>,
    pub totp_generation: i64,
    pub totp_enabled_ms: Option<i64>,
    pub totp_last_step: i64,
    pub recovery_hold_until_ms: i64,
    pub password_changed_ms: Option<i64>,
    pub contact_changed_ms: Option<i64>,
}

impl Customer {
    /// A new, active, wallet-funded customer with nothing verified or enrolled yet.
    pub fn new(
        id: &str,
        email: &str,
        phone: &str,
        password_hash: &str,
        created_ms: i64,
    ) -> Customer {
        Customer {
            id: id.to_string(),
            email: email.to_string(),
            phone: phone.to_string(),
            password_hash: password_hash.to_string(),
            status: "active".into(),
            funding: "wallet".into(),
            funding_card_id: None,
            created_ms,
            email_verified_ms: None,
            phone_verified_ms: None,
            totp_generation: 0,
            totp_enabled_ms: None,
            totp_last_step: 0,
            recovery_hold_until_ms: 0,
            password_changed_ms: None,
            contact_changed_ms: None,
        }
    }

    /// Both contact points proven: the account may hold a session and move money.
    pub fn verified(&self) -> bool {
        self.email_verified_ms.is_some() && self.phone_verified_ms.is_some()
    }
}

/// Every customer column, in the order `customer()` reads them.
macro_rules! select_customers {
    ($rest:literal) => {
        concat!(
            "SELECT id, email, phone, password_hash, status, funding, funding_card_id, created_ms, \
             email_verified_ms, phone_verified_ms, totp_generation, totp_enabled_ms, totp_last_step, \
             recovery_hold_until_ms, password_changed_ms, contact_changed_ms FROM customers ",
            $rest
        )
    };
}

fn customer(r: &Row) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: r.text(0)?,
        email: r.text(1)?,
        phone: r.text(2)?,
        password_hash: r.text(3)?,
        status: r.text(4)?,
        funding: r.text(5)?,
        funding_card_id: r.opt_text(6)?,
        created_ms: r.int(7)?,
        email_verified_ms: r.opt_int(8)?,
        phone_verified_ms: r.opt_int(9)?,
        totp_generation: r.int(10)?,
        totp_enabled_ms: r.opt_int(11)?,
        totp_last_step: r.int(12)?,
        recovery_hold_until_ms: r.int(13)?,
        password_changed_ms: r.opt_int(14)?,
        contact_changed_ms: r.opt_int(15)?,
    })
}

/// Inserts a customer; returns false (and changes nothing) when the email is taken.
pub fn insert(conn: &mut dyn Conn, c: &Customer) -> Result<bool, StoreError> {
    let n = conn.exec(
        "INSERT INTO customers (id, email, phone, password_hash, status, funding, funding_card_id, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        params![&c.id, &c.email, &c.phone, &c.password_hash, &c.status, &c.funding, c.funding_card_id.clone(), c.created_ms],
    )?;
    Ok(n == 1)
}

pub fn by_email(conn: &mut dyn Conn, email: &str) -> Result<Option<Customer>, StoreError> {
    conn.query_opt(select_customers!("WHERE email = $1"), params![email])?
        .map(|r| customer(&r))
        .transpose()
}

pub fn by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Customer>, StoreError> {
    conn.query_opt(select_customers!("WHERE id = $1"), params![id])?
        .map(|r| customer(&r))
        .transpose()
}

/// The customer whose *verified* phone is `phone`, if any.
pub fn by_verified_phone(conn: &mut dyn Conn, phone: &str) -> Result<Option<Customer>, StoreError> {
    conn.query_opt(
        select_customers!(
            "WHERE phone = $1 AND phone_verified_ms IS NOT NULL ORDER BY created_ms LIMIT 1"
        ),
        params![phone],
    )?
    .map(|r| customer(&r))
    .transpose()
}

/// Chooses how POS payments are funded: the wallet, or a linked card directly.
pub fn set_funding(
    conn: &mut dyn Conn,
    id: &str,
    funding: &str,
    card_id: Option<&str>,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE customers SET funding = $1, funding_card_id = $2 WHERE id = $3",
        params![funding, card_id, id],
    )?;
    Ok(())
}

/// `SELECT <every device column> FROM devices <rest>`, as one static string.
macro_rules! select_devices {
    ($rest:literal) => {
        concat!(
            "SELECT id, customer_id, slot, key_generation, secret_hash, name, status, last_code_counter, created_ms FROM devices ",
            $rest
        )
    };
}

/// A device bound to a customer.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: String,
    pub customer_id: String,
    pub slot: i64,
    pub key_generation: i64,
    pub secret_hash: Vec<u8>,
    pub name: String,
    pub status: String,
    pub last_code_counter: i64,
    pub created_ms: i64,
}

fn device(r: &Row) -> Result<Device, StoreError> {
    Ok(Device {
        id: r.text(0)?,
        customer_id: r.text(1)?,
        slot: r.int(2)?,
        key_generation: r.int(3)?,
        secret_hash: r.bytes(4)?,
        name: r.text(5)?,
        status: r.text(6)?,
        last_code_counter: r.int(7)?,
        created_ms: r.int(8)?,
    })
}

/// Inserts a device; returns false when its slot is already live on another device (the
/// caller draws another slot).
/// `bound_by` names the proof that bound it (`signup`, `sms`, `totp`, `recovery_code`).
pub fn insert_device(conn: &mut dyn Conn, d: &Device, bound_by: &str) -> Result<bool, StoreError> {
    let n = conn.exec(
        "INSERT INTO devices (id, customer_id, slot, key_generation, secret_hash, name, status, last_code_counter, created_ms, bound_by, windows) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
        params![&d.id, &d.customer_id, d.slot, d.key_generation, d.secret_hash.clone(), &d.name, &d.status, d.last_code_counter, d.created_ms, bound_by, crate::risk::Windows::default().packed()],
    )?;
    Ok(n == 1)
}

/// Records the app installation (keyed fingerprint) a device was bound from, and the
/// distinct accounts now bound from it on every one of its devices
/// (`devices.installation_accounts`: what a payment reads as `device.accounts`, with its
/// device row, instead of counting).
pub fn set_installation(
    conn: &mut dyn Conn,
    device_id: &str,
    installation: &[u8],
) -> Result<(), StoreError> {
    lock_installation(conn, installation)?;
    conn.exec(
        "UPDATE devices SET installation = $1 WHERE id = $2",
        params![installation, device_id],
    )?;
    conn.exec(
        "UPDATE devices SET installation_accounts = \
           (SELECT COUNT(DISTINCT x.customer_id) FROM devices x WHERE x.installation = $1) \
         WHERE installation = $1",
        params![installation],
    )?;
    Ok(())
}

/// Makes bindings from one installation take turns until the transaction ends, so that
/// neither the count a binding is decided on ([`accounts_on_installation`]) nor the count
/// kept on the devices misses an account binding from the same phone at the same moment:
/// an attacker signing up many accounts from one phone at once must not see each of them
/// counted alone. On PostgreSQL a transaction-scoped advisory lock on the installation
/// (the two-key form, apart from the single keys of `audit` and the migrations; two
/// installations that share a key only wait for each other); SQLite writes one
/// transaction at a time anyway.
fn lock_installation(conn: &mut dyn Conn, installation: &[u8]) -> Result<(), StoreError> {
    if conn.backend() != crate::Backend::Postgres {
        return Ok(());
    }
    let mut key = [0u8; 4];
    for (k, b) in key.iter_mut().zip(installation) {
        *k = *b;
    }
    conn.query_one(
        "SELECT 1 FROM (SELECT pg_advisory_xact_lock(7262696, $1::int4)) AS l",
        params![i64::from(i32::from_be_bytes(key))],
    )?;
    Ok(())
}

/// Distinct accounts that bound a device from this installation, counting `customer_id`
/// as if it had (the account about to bind one). Takes the installation's turn
/// ([`lock_installation`]) until the transaction ends.
pub fn accounts_on_installation(
    conn: &mut dyn Conn,
    installation: &[u8],
    customer_id: &str,
) -> Result<i64, StoreError> {
    lock_installation(conn, installation)?;
    let others = conn
        .query_one(
            "SELECT COUNT(DISTINCT customer_id) FROM devices WHERE installation = $1 AND customer_id <> $2",
            params![installation, customer_id],
        )?
        .int(0)?;
    Ok(others + 1)
}

/// Distinct accounts bound on the installation of this device (kept on its row by
/// [`set_installation`]); `None` when the device's app did not say which installation it
/// is.
pub fn device_accounts(conn: &mut dyn Conn, device_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT installation_accounts FROM devices WHERE id = $1",
            params![device_id],
        )?
        .map(|r| r.opt_int(0))
        .transpose()?
        .flatten())
}

pub fn device_by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Device>, StoreError> {
    conn.query_opt(select_devices!("WHERE id = $1"), params![id])?
        .map(|r| device(&r))
        .transpose()
}

/// A live device with what a payment needs to know of its customer.
#[derive(Debug, Clone)]
pub struct PayingDevice {
    pub device: Device,
    pub customer_status: String,
    pub funding: String,
    pub funding_card_id: Option<String>,
    /// Until then the account is under a recovery hold (payments limited).
    pub recovery_hold_until_ms: i64,
    /// The proof that bound the device (`totp` and `recovery_code` are strong).
    pub bound_by: String,
    pub customer_created_ms: i64,
    pub password_changed_ms: Option<i64>,
    pub contact_changed_ms: Option<i64>,
}

pub fn devices_of(conn: &mut dyn Conn, customer_id: &str) -> Result<Vec<Device>, StoreError> {
    conn.query(
        select_devices!("WHERE customer_id = $1 ORDER BY created_ms, id"),
        params![customer_id],
    )?
    .iter()
    .map(device)
    .collect()
}

/// Atomically spends payment-code counter `counter` on `slot`: succeeds for exactly one caller,
/// and only if the counter is above every counter used before (so older codes die too).
pub fn consume_code(conn: &mut dyn Conn, slot: i64, counter: i64) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE devices SET last_code_counter = $1 WHERE slot = $2 AND status = 'bound' AND last_code_counter < $1",
        params![counter, slot],
    )?;
    Ok(n == 1)
}

/// Revokes a device and ends its sessions; its slot (and so its codes) dies with it.
pub fn revoke_device(
    conn: &mut dyn Conn,
    customer_id: &str,
    device_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE devices SET status = 'revoked', revoked_ms = $1 WHERE id = $2 AND customer_id = $3 AND status <> 'revoked'",
        params![now_ms, device_id, customer_id],
    )?;
    conn.exec(
        "UPDATE sessions SET revoked_ms = $1 WHERE device_id = $2 AND revoked_ms IS NULL",
        params![now_ms, device_id],
    )?;
    Ok(n == 1)
}

/// A session looked up by its token hash, with what authorization needs to know.
#[derive(Debug, Clone)]
pub struct Session {
    pub customer_id: String,
    pub device_id: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
    pub expires_ms: i64,
    pub revoked: bool,
    pub device_status: String,
    pub customer_status: String,
    /// Last full authentication on this session (for step-up).
    pub authenticated_ms: i64,
    pub device_bound_by: String,
    pub recovery_hold_until_ms: i64,
}

pub fn insert_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    customer_id: &str,
    device_id: &str,
    now_ms: i64,
    expires_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO sessions (token_hash, customer_id, device_id, created_ms, last_seen_ms, expires_ms, authenticated_ms) VALUES ($1, $2, $3, $4, $4, $5, $4)",
        params![token_hash, customer_id, device_id, now_ms, expires_ms],
    )?;
    Ok(())
}

pub fn session(conn: &mut dyn Conn, token_hash: &[u8]) -> Result<Option<Session>, StoreError> {
    conn.query_opt(
        "SELECT s.customer_id, s.device_id, s.created_ms, s.last_seen_ms, s.expires_ms, s.revoked_ms, d.status, c.status, \
                s.authenticated_ms, d.bound_by, c.recovery_hold_until_ms \
         FROM sessions s JOIN devices d ON d.id = s.device_id JOIN customers c ON c.id = s.customer_id WHERE s.token_hash = $1",
        params![token_hash],
    )?
    .map(|r| {
        Ok(Session {
            customer_id: r.text(0)?,
            device_id: r.text(1)?,
            created_ms: r.int(2)?,
            last_seen_ms: r.int(3)?,
            expires_ms: r.int(4)?,
            revoked: r.opt_int(5)?.is_some(),
            device_status: r.text(6)?,
            customer_status: r.text(7)?,
            authenticated_ms: r.int(8)?,
            device_bound_by: r.text(9)?,
            recovery_hold_until_ms: r.int(10)?,
        })
    })
    .transpose()
}

/// Records activity on a session (for the idle timeout). Only written when the stored value
/// is older than `min_interval_ms`, so a busy session does not write on every request.
pub fn touch_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    now_ms: i64,
    min_interval_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE sessions SET last_seen_ms = $1 WHERE token_hash = $2 AND last_seen_ms < $3",
        params![now_ms, token_hash, now_ms - min_interval_ms],
    )?;
    Ok(())
}

pub fn revoke_session(
    conn: &mut dyn Conn,
    token_hash: &[u8],
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE sessions SET revoked_ms = $1 WHERE token_hash = $2 AND revoked_ms IS NULL",
        params![now_ms, token_hash],
    )?;
    Ok(())
}

/// Ends every session and every device binding of a customer (after an account recovery or a
/// reverted contact change): all payment codes die with the devices.
pub fn revoke_everything(
    conn: &mut dyn Conn,
    customer_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "UPDATE sessions SET revoked_ms = $1 WHERE customer_id = $2 AND revoked_ms IS NULL",
        params![now_ms, customer_id],
    )?;
    conn.exec(
        "UPDATE devices SET status = 'revoked', revoked_ms = $1 WHERE customer_id = $2 AND status <> 'revoked'",
        params![now_ms, customer_id],
    )?;
    Ok(())
}

/// A live session as the customer sees it in their list.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub token_hash: Vec<u8>,
    pub device_id: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

/// Live sessions of a customer, newest first.
pub fn sessions_of(
    conn: &mut dyn Conn,
    customer_id: &str,
    now_ms: i64,
) -> Result<Vec<SessionInfo>, StoreError> {
    conn.query(
        "SELECT token_hash, device_id, created_ms, last_seen_ms FROM sessions \
         WHERE customer_id = $1 AND revoked_ms IS NULL AND expires_ms > $2 ORDER BY created_ms DESC",
        params![customer_id, now_ms],
    )?
    .iter()
    .map(|r| {
        Ok(SessionInfo {
            token_hash: r.bytes(0)?,
            device_id: r.text(1)?,
            created_ms: r.int(2)?,
            last_seen_ms: r.int(3)?,
        })
    })
    .collect()
}

/// A linked card. The card number itself is never stored.
#[derive(Debug, Clone)]
pub struct Card {
    pub id: String,
    pub customer_id: String,
    pub processor_token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub fingerprint: Vec<u8>,
    pub status: String,
    pub created_ms: i64,
}

fn card(r: &Row) -> Result<Card, StoreError> {
    Ok(Card {
        id: r.text(0)?,
        customer_id: r.text(1)?,
        processor_token: r.text(2)?,
        brand: r.text(3)?,
        last4: r.text(4)?,
        exp_month: r.int(5)?,
        exp_year: r.int(6)?,
        fingerprint: r.bytes(7)?,
        status: r.text(8)?,
        created_ms: r.int(9)?,
    })
}

pub fn insert_card(conn: &mut dyn Conn, c: &Card) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO cards (id, customer_id, processor_token, brand, last4, exp_month, exp_year, fingerprint, status, created_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        params![&c.id, &c.customer_id, &c.processor_token, &c.brand, &c.last4, c.exp_month, c.exp_year, c.fingerprint.clone(), &c.status, c.created_ms],
    )?;
    Ok(())
}

/// Active cards of a customer, oldest first.
pub fn cards_of(conn: &mut dyn Conn, customer_id: &str) -> Result<Vec<Card>, StoreError> {
    conn.query(
        "SELECT id, customer_id, processor_token, brand, last4, exp_month, exp_year, fingerprint, status, created_ms \
         FROM cards WHERE customer_id = $1 AND status = 'active' ORDER BY created_ms, id",
        params![customer_id],
    )?
    .iter()
    .map(card)
    .collect()
}

/// One active card, only if it belongs to `customer_id` (another customer's id reads as absent).
pub fn card_of(
    conn: &mut dyn Conn,
    customer_id: &str,
    card_id: &str,
) -> Result<Option<Card>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, processor_token, brand, last4, exp_month, exp_year, fingerprint, status, created_ms \
         FROM cards WHERE id = $1 AND customer_id = $2 AND status = 'active'",
        params![card_id, customer_id],
    )?
    .map(|r| card(&r))
    .transpose()
}

pub fn remove_card(
    conn: &mut dyn Conn,
    customer_id: &str,
    card_id: &str,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE cards SET status = 'removed' WHERE id = $1 AND customer_id = $2 AND status = 'active'",
        params![card_id, customer_id],
    )?;
    conn.exec(
        "UPDATE customers SET funding = 'wallet', funding_card_id = NULL WHERE id = $1 AND funding_card_id = $2",
        params![customer_id, card_id],
    )?;
    Ok(n == 1)
}

/// How many distinct customers have linked a card with this fingerprint (a risk signal).
pub fn customers_with_fingerprint(
    conn: &mut dyn Conn,
    fingerprint: &[u8],
) -> Result<i64, StoreError> {
    conn.query_one(
        "SELECT COUNT(DISTINCT customer_id) FROM cards WHERE fingerprint = $1",
        params![fingerprint],
    )?
    .int(0)
}
