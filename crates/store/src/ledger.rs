//! The double-entry ledger: accounts with cached balances, append-only entries and postings,
//! two-phase holds, and the invariant checks behind `konbini ledger verify`.

use crate::{Conn, StoreError, params, values};
use konbini_core::Currency;
use konbini_core::ledger::{AccountKind, Entry, is_wallet_account};

/// Creates the account if it does not exist yet (idempotent).
pub fn ensure_account(
    conn: &mut dyn Conn,
    id: &str,
    kind: AccountKind,
    currency: Currency,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.exec(
        "INSERT INTO accounts (id, kind, currency, balance, held, created_ms) VALUES ($1, $2, $3, 0, 0, $4) ON CONFLICT DO NOTHING",
        params![id, kind.as_str(), currency.code(), now_ms],
    )?;
    Ok(())
}

/// Balance and held amount of an account (zeros when it does not exist yet).
pub fn balance(conn: &mut dyn Conn, id: &str) -> Result<(i64, i64), StoreError> {
    Ok(
        match conn.query_opt(
            "SELECT balance, held FROM accounts WHERE id = $1",
            params![id],
        )? {
            Some(r) => (r.int(0)?, r.int(1)?),
            None => (0, 0),
        },
    )
}

/// The result of trying to post an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Ok,
    /// A wallet debit would have made its available balance negative; nothing was written.
    InsufficientFunds,
}

/// Posts a balanced entry and updates cached balances in the same transaction.
///
/// The debit of a non-negative account (a wallet) is applied first as a conditional update,
/// so when funds are short nothing at all has been written and the caller can record a
/// decline in the same transaction. `kind` names what the entry records; `ref_id` links it
/// to the top-up, payment or refund.
pub fn post(
    conn: &mut dyn Conn,
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
) -> Result<Posted, StoreError> {
    post_counting(conn, entry_id, kind, ref_id, entry, now_ms, None)
}

/// [`post`], writing `profile` (a payment counted on the customer's risk profile, which
/// lives on the wallet: `risk::counted_profile`) with the debit of wallet `profile.wallet`,
/// in the same row write. An error when `entry` does not debit that wallet.
fn post_counting(
    conn: &mut dyn Conn,
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
    profile: Option<&ProfileOnDebit<'_>>,
) -> Result<Posted, StoreError> {
    if profile.is_none()
        && conn.backend() == crate::Backend::Postgres
        && let Some(posted) = post_wallet_debit_pg(conn, entry_id, kind, ref_id, entry, now_ms)?
    {
        return Ok(posted);
    }
    // Pass 1: guarded debits of wallets, which may never go below their available balance.
    let mut guarded = 0;
    let mut guarded_profile = false;
    for p in entry.postings() {
        if p.amount_minor >= 0 || !is_wallet_account(&p.account_id) {
            continue;
        }
        let n = match profile {
            Some(d) if d.wallet == p.account_id => {
                guarded_profile = true;
                let (amount, state) = (p.amount_minor, d.profile.state.clone());
                match d.row {
                    // Straight to the row: SQLite looks up the rowid, then checks the id.
                    Some(row) => conn.exec(
                        "UPDATE accounts SET balance = balance + $1, risk_payments = $3, risk_state = $4 \
                         WHERE rowid = $5 AND id = $2 AND balance - held + $1 >= 0",
                        params![amount, &p.account_id, d.profile.payments, state, row],
                    )?,
                    None => conn.exec(
                        "UPDATE accounts SET balance = balance + $1, risk_payments = $3, risk_state = $4 \
                         WHERE id = $2 AND balance - held + $1 >= 0",
                        params![amount, &p.account_id, d.profile.payments, state],
                    )?,
                }
            }
            _ => conn.exec(
                "UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance - held + $1 >= 0",
                params![p.amount_minor, &p.account_id],
            )?,
        };
        if n != 1 {
            if guarded > 0 {
                // An earlier guarded debit already applied: only an error rolls it back.
                return Err(StoreError::Constraint(
                    "insufficient funds on a second wallet in one entry".into(),
                ));
            }
            return Ok(Posted::InsufficientFunds);
        }
        guarded += 1;
    }
    if profile.is_some() && !guarded_profile {
        return Err(StoreError::Constraint(
            "a risk profile to write with a wallet the entry does not debit".into(),
        ));
    }
    // Pass 2: every other posting, unconditionally. An account that does not exist yet is
    // created by the same statement (its kind is read from its id), so the hot path needs no
    // separate "ensure" round trip.
    for p in entry.postings() {
        if p.amount_minor < 0 && is_wallet_account(&p.account_id) {
            continue;
        }
        let account_kind = AccountKind::of_account(&p.account_id).ok_or_else(|| {
            StoreError::Constraint(format!("account id {} has no known kind", p.account_id))
        })?;
        conn.exec(
            "INSERT INTO accounts (id, kind, currency, balance, held, created_ms) VALUES ($1, $2, $3, $4, 0, $5) \
             ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + excluded.balance",
            params![&p.account_id, account_kind.as_str(), entry.currency().code(), p.amount_minor, now_ms],
        )?;
    }
    if let ([a, b], crate::Backend::Postgres) = (entry.postings(), conn.backend()) {
        // Entry and both postings in one round trip.
        conn.exec(
            "WITH e AS (INSERT INTO entries (id, kind, ref_id, currency, created_ms) VALUES ($1, $6, $7, $8, $9)) \
             INSERT INTO postings (entry_id, account_id, amount) VALUES ($1, $2, $3), ($1, $4, $5)",
            params![entry_id, &a.account_id, a.amount_minor, &b.account_id, b.amount_minor, kind, ref_id, entry.currency().code(), now_ms],
        )?;
        return Ok(Posted::Ok);
    }
    conn.exec(
        "INSERT INTO entries (id, kind, ref_id, currency, created_ms) VALUES ($1, $2, $3, $4, $5)",
        params![entry_id, kind, ref_id, entry.currency().code(), now_ms],
    )?;
    if let [a, b] = entry.postings() {
        // The common two-line entry in one statement.
        conn.exec(
            "INSERT INTO postings (entry_id, account_id, amount) VALUES ($1, $2, $3), ($1, $4, $5)",
            params![
                entry_id,
                &a.account_id,
                a.amount_minor,
                &b.account_id,
                b.amount_minor
            ],
        )?;
    } else {
        for p in entry.postings() {
            conn.exec(
                "INSERT INTO postings (entry_id, account_id, amount) VALUES ($1, $2, $3)",
                params![entry_id, &p.account_id, p.amount_minor],
            )?;
        }
    }
    Ok(Posted::Ok)
}

/// A wallet's debit that also writes its customer's risk profile (SQLite's hot path).
#[derive(Debug, Clone, Copy)]
pub struct ProfileOnDebit<'a> {
    /// The wallet account the entry debits.
    pub wallet: &'a str,
    /// The wallet's rowid on SQLite, read earlier in the same transaction (so it cannot have
    /// changed; only `VACUUM` renumbers rows): the debit goes straight to the row instead of
    /// through the primary key's index, a lookup the payment's context already made.
    pub row: Option<i64>,
    /// The profile's new values.
    pub profile: &'a crate::risk::ProfileWrite,
}

/// What spending a payment code and posting its payment found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAndPost {
    /// The code was not (or no longer) valid for its slot: nothing was written.
    CodeRejected,
    /// The code is spent; the wallet could not pay.
    InsufficientFunds,
    /// The code is spent and the entry posted.
    Posted,
}

/// The wallet payment's hot path: spends payment-code `counter` on `slot` (see
/// `customers::consume_code`) and, only if that succeeded, posts `entry`. On PostgreSQL this is
/// ONE statement (the code, the guarded debit, the credit, the entry and its postings as
/// data-modifying CTEs, each conditional on the one before); on SQLite, two calls in process.
/// With `device` (SQLite, where the caller read the device row earlier in the same writer
/// job), the payment is also counted in the device's windows by the row write that spends
/// the code, and with `profile` on the customer's profile by the wallet's debit;
/// PostgreSQL ignores both.
#[allow(clippy::too_many_arguments)]
pub fn spend_code_and_post(
    conn: &mut dyn Conn,
    slot: i64,
    counter: i64,
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
    device: Option<&crate::risk::DeviceCount>,
    profile: Option<&ProfileOnDebit<'_>>,
) -> Result<CodeAndPost, StoreError> {
    if let (crate::Backend::Sqlite, Some(d)) = (conn.backend(), device) {
        // One write of the device row spends the code and counts the payment, one of the
        // wallet debits it and counts it on the profile; in the rare case the wallet cannot
        // pay, the windows go back to what was read.
        if !crate::risk::spend_code_counting(conn, slot, counter, d)? {
            return Ok(CodeAndPost::CodeRejected);
        }
        return match post_counting(conn, entry_id, kind, ref_id, entry, now_ms, profile)? {
            Posted::Ok => Ok(CodeAndPost::Posted),
            Posted::InsufficientFunds => {
                crate::risk::restore_device_windows(conn, d)?;
                Ok(CodeAndPost::InsufficientFunds)
            }
        };
    }
    let params = match conn.backend() {
        crate::Backend::Postgres => {
            code_and_post_params(slot, counter, entry_id, kind, ref_id, entry, now_ms)?
        }
        crate::Backend::Sqlite => None,
    };
    let Some(params) = params else {
        if !crate::customers::consume_code(conn, slot, counter)? {
            return Ok(CodeAndPost::CodeRejected);
        }
        return Ok(match post(conn, entry_id, kind, ref_id, entry, now_ms)? {
            Posted::Ok => CodeAndPost::Posted,
            Posted::InsufficientFunds => CodeAndPost::InsufficientFunds,
        });
    };
    let row = conn.query_one(&SPEND_CODE_AND_POST, &params)?;
    Ok(match (row.int(0)?, row.int(1)?) {
        (0, _) => CodeAndPost::CodeRejected,
        (_, 0) => CodeAndPost::InsufficientFunds,
        _ => CodeAndPost::Posted,
    })
}

static SPEND_CODE_AND_POST: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH {} SELECT (SELECT COUNT(*) FROM k), (SELECT COUNT(*) FROM w)",
        code_and_post_ctes(&WalletPostSets::default())
    )
});

/// The data-modifying CTEs of the wallet payment's ledger part on PostgreSQL, each
/// conditional on the one before: `k` spends the code (and makes `device_sets`, further
/// assignments on the device row, e.g. the risk engine's counters), then the wallet debit's
/// CTEs ([`wallet_debit_ctes`]), conditional on `k`. Parameters `$1`..`$12`, from
/// [`code_and_post_params`].
pub(crate) fn code_and_post_ctes(x: &WalletPostSets) -> String {
    format!(
        "k AS (UPDATE devices SET last_code_counter = $11::bigint{} \
                WHERE slot = $12::bigint AND status = 'bound' AND last_code_counter < $11::bigint{} RETURNING 1), {}",
        x.device_sets,
        x.device_guard,
        wallet_debit_ctes(
            &x.wallet_sets,
            &format!(" AND EXISTS (SELECT 1 FROM k){}", x.wallet_guard)
        )
    )
}

/// What [`code_and_post_ctes`]' device and wallet writes also set (`, col = $n, …`) and
/// check (` AND …`): the risk engine's counts (`risk::payment_risk_when_posted`).
#[derive(Debug, Clone, Default)]
pub(crate) struct WalletPostSets {
    pub device_sets: String,
    pub device_guard: String,
    pub wallet_sets: String,
    pub wallet_guard: String,
}

/// A wallet paying a non-wallet account on PostgreSQL: `w` debits the wallet if it can (and
/// `debit_if` holds), `c` credits the other account (creating it if new), `e` and `p` write
/// the entry and its two postings, each only if `w` happened. Parameters `$1`..`$10`, from
/// [`wallet_debit_params`].
fn wallet_debit_ctes(sets: &str, debit_if: &str) -> String {
    format!(
        "w AS (UPDATE accounts SET balance = balance + $1::bigint{sets} \
               WHERE id = $2::text AND balance - held + $1::bigint >= 0{debit_if} RETURNING id), \
         c AS (INSERT INTO accounts (id, kind, currency, balance, held, created_ms) \
               SELECT $3::text, $4::text, $5::text, $6::bigint, 0, $7::bigint WHERE EXISTS (SELECT 1 FROM w) \
               ON CONFLICT (id) DO UPDATE SET balance = accounts.balance + excluded.balance), \
         e AS (INSERT INTO entries (id, kind, ref_id, currency, created_ms) \
               SELECT $8::text, $9::text, $10::text, $5::text, $7::bigint WHERE EXISTS (SELECT 1 FROM w)), \
         p AS (INSERT INTO postings (entry_id, account_id, amount) \
               SELECT v.e, v.a, v.x FROM (VALUES ($8::text, $2::text, $1::bigint), ($8::text, $3::text, $6::bigint)) AS v(e, a, x) \
               WHERE EXISTS (SELECT 1 FROM w))"
    )
}

/// The parameters of [`code_and_post_ctes`]; `None` when `entry` is not a wallet paying a
/// non-wallet account in two postings (the general path handles it).
pub(crate) fn code_and_post_params(
    slot: i64,
    counter: i64,
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
) -> Result<Option<Vec<crate::Value>>, StoreError> {
    Ok(
        wallet_debit_params(entry_id, kind, ref_id, entry, now_ms)?.map(|mut p| {
            p.extend_from_slice(params![counter, slot]);
            p
        }),
    )
}

/// The parameters of [`wallet_debit_ctes`]; `None` when `entry` is not a wallet paying a
/// non-wallet account in two postings.
fn wallet_debit_params(
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
) -> Result<Option<Vec<crate::Value>>, StoreError> {
    let [a, b] = entry.postings() else {
        return Ok(None);
    };
    let (debit, credit) = if a.amount_minor < 0 { (a, b) } else { (b, a) };
    if !is_wallet_account(&debit.account_id) || is_wallet_account(&credit.account_id) {
        return Ok(None);
    }
    let credit_kind = AccountKind::of_account(&credit.account_id).ok_or_else(|| {
        StoreError::Constraint(format!(
            "account id {} has no known kind",
            credit.account_id
        ))
    })?;
    Ok(Some(values![
        debit.amount_minor,
        &debit.account_id,
        &credit.account_id,
        credit_kind.as_str(),
        entry.currency().code(),
        credit.amount_minor,
        now_ms,
        entry_id,
        kind,
        ref_id
    ]))
}

/// PostgreSQL fast path for the commonest entry, a wallet paying a non-wallet account (every
/// wallet payment): the guarded debit, the credit (creating the account if new), the entry
/// and both postings in ONE statement of data-modifying CTEs, all conditional on the debit.
/// Returns `None` when the entry has another shape (the general path handles it).
fn post_wallet_debit_pg(
    conn: &mut dyn Conn,
    entry_id: &str,
    kind: &str,
    ref_id: &str,
    entry: &Entry,
    now_ms: i64,
) -> Result<Option<Posted>, StoreError> {
    let Some(params) = wallet_debit_params(entry_id, kind, ref_id, entry, now_ms)? else {
        return Ok(None);
    };
    let row = conn.query_one(&WALLET_DEBIT, &params)?;
    Ok(Some(if row.int(0)? == 1 {
        Posted::Ok
    } else {
        Posted::InsufficientFunds
    }))
}

static WALLET_DEBIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("WITH {} SELECT COUNT(*) FROM w", wallet_debit_ctes("", ""))
});

/// A two-phase hold to place on a wallet.
#[derive(Debug, Clone)]
pub struct NewHold<'a> {
    pub id: &'a str,
    pub account_id: &'a str,
    pub amount_minor: i64,
    pub currency: Currency,
    /// The payment it reserves money for.
    pub ref_id: &'a str,
    pub expires_ms: i64,
}

/// Places a pending hold; `false` (nothing written) when the available balance is short.
pub fn hold(conn: &mut dyn Conn, h: &NewHold<'_>, now_ms: i64) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE accounts SET held = held + $1 WHERE id = $2 AND balance - held >= $1",
        params![h.amount_minor, h.account_id],
    )?;
    if n != 1 {
        return Ok(false);
    }
    conn.exec(
        "INSERT INTO holds (id, account_id, amount, currency, state, ref_id, expires_ms, created_ms) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7)",
        params![h.id, h.account_id, h.amount_minor, h.currency.code(), h.ref_id, h.expires_ms, now_ms],
    )?;
    Ok(true)
}

/// Ends a pending hold (to `posted` or `voided`) and releases its amount. Returns false when
/// the hold was not pending (already ended), so each hold ends exactly once.
pub fn release_hold(
    conn: &mut dyn Conn,
    hold_id: &str,
    to_state: &str,
) -> Result<bool, StoreError> {
    let Some(row) = conn.query_opt(
        "SELECT account_id, amount FROM holds WHERE id = $1 AND state = 'pending'",
        params![hold_id],
    )?
    else {
        return Ok(false);
    };
    let n = conn.exec(
        "UPDATE holds SET state = $1 WHERE id = $2 AND state = 'pending'",
        params![to_state, hold_id],
    )?;
    if n != 1 {
        return Ok(false);
    }
    conn.exec(
        "UPDATE accounts SET held = held - $1 WHERE id = $2",
        params![row.int(1)?, row.text(0)?],
    )?;
    Ok(true)
}

/// Pending holds that have expired, oldest first (at most `limit`).
pub fn expired_holds(
    conn: &mut dyn Conn,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    conn.query(
        "SELECT id, ref_id FROM holds WHERE state = 'pending' AND expires_ms <= $1 ORDER BY expires_ms LIMIT $2",
        params![now_ms, limit],
    )?
    .iter()
    .map(|r| Ok((r.text(0)?, r.text(1)?)))
    .collect()
}

/// What `konbini ledger verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub entries: i64,
    pub postings: i64,
    pub accounts: i64,
    /// Human-readable descriptions of every broken invariant (capped per check).
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Brings PostgreSQL's planner statistics of the tables [`verify`] reads up to date (on
/// SQLite, nothing to do). Run it before `verify` (which reads in a read-only transaction,
/// where `ANALYZE` is not allowed) on a database filled faster than autovacuum analyzes it:
/// planned on the statistics of nearly empty tables, a missing-entry check ran as a nested
/// loop over every entry per payment (six minutes after a 100,000-payment bench).
pub fn refresh_statistics(conn: &mut dyn Conn) -> Result<(), StoreError> {
    if conn.backend() == crate::Backend::Postgres {
        conn.exec(
            "ANALYZE entries, postings, accounts, payments, topups, refunds",
            params![],
        )?;
    }
    Ok(())
}

/// Checks every ledger invariant on the live database.
pub fn verify(conn: &mut dyn Conn) -> Result<VerifyReport, StoreError> {
    let mut r = VerifyReport {
        entries: conn
            .query_one("SELECT COUNT(*) FROM entries", params![])?
            .int(0)?,
        postings: conn
            .query_one("SELECT COUNT(*) FROM postings", params![])?
            .int(0)?,
        accounts: conn
            .query_one("SELECT COUNT(*) FROM accounts", params![])?
            .int(0)?,
        problems: Vec::new(),
    };
    for row in conn.query(
        "SELECT e.id, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT), COUNT(p.account_id) FROM entries e LEFT JOIN postings p ON p.entry_id = e.id \
         GROUP BY e.id HAVING COALESCE(SUM(p.amount), 0) <> 0 OR COUNT(p.account_id) < 2 ORDER BY e.id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "entry {} is unbalanced: postings sum to {} over {} posting(s)",
            row.text(0)?,
            row.int(1)?,
            row.int(2)?
        ));
    }
    for row in conn.query(
        "SELECT p.entry_id, p.account_id FROM postings p JOIN entries e ON e.id = p.entry_id JOIN accounts a ON a.id = p.account_id \
         WHERE a.currency <> e.currency ORDER BY p.entry_id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "entry {} posts to account {} of another currency",
            row.text(0)?,
            row.text(1)?
        ));
    }
    for row in conn.query(
        "SELECT a.id, a.balance, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM accounts a LEFT JOIN postings p ON p.account_id = a.id \
         GROUP BY a.id, a.balance HAVING a.balance <> COALESCE(SUM(p.amount), 0) ORDER BY a.id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "account {} caches balance {} but its postings sum to {}",
            row.text(0)?,
            row.int(1)?,
            row.int(2)?
        ));
    }
    for row in conn.query(
        "SELECT a.id, a.held, CAST(COALESCE(SUM(h.amount), 0) AS BIGINT) FROM accounts a LEFT JOIN holds h ON h.account_id = a.id AND h.state = 'pending' \
         GROUP BY a.id, a.held HAVING a.held <> COALESCE(SUM(h.amount), 0) ORDER BY a.id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "account {} caches held {} but its pending holds sum to {}",
            row.text(0)?,
            row.int(1)?,
            row.int(2)?
        ));
    }
    for row in conn.query(
        "SELECT id, balance, held FROM accounts WHERE kind = 'wallet' AND (balance < 0 OR held < 0 OR balance - held < 0) ORDER BY id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "wallet {} is negative: balance {}, held {}",
            row.text(0)?,
            row.int(1)?,
            row.int(2)?
        ));
    }
    let missing: [(&str, &'static str); 3] = [
        (
            "payment",
            "SELECT id FROM payments x WHERE status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.ref_id = x.id AND e.kind = 'payment') ORDER BY id LIMIT 100",
        ),
        (
            "top-up",
            "SELECT id FROM topups x WHERE status = 'succeeded' AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.ref_id = x.id AND e.kind = 'topup') ORDER BY id LIMIT 100",
        ),
        (
            "refund",
            "SELECT id FROM refunds x WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.ref_id = x.id AND e.kind = 'refund') ORDER BY id LIMIT 100",
        ),
    ];
    for (what, sql) in missing {
        for row in conn.query(sql, params![])? {
            r.problems
                .push(format!("{what} {} has no ledger entry", row.text(0)?));
        }
    }
    for row in conn.query(
        "SELECT e.ref_id, CAST(SUM(p.amount) AS BIGINT), MAX(x.amount) FROM entries e JOIN postings p ON p.entry_id = e.id JOIN payments x ON x.id = e.ref_id \
         WHERE e.kind = 'payment' AND p.amount > 0 GROUP BY e.ref_id HAVING SUM(p.amount) <> MAX(x.amount) ORDER BY e.ref_id LIMIT 100",
        params![],
    )? {
        r.problems.push(format!(
            "payment {} moved {} but records amount {}",
            row.text(0)?,
            row.int(1)?,
            row.int(2)?
        ));
    }
    Ok(r)
}

/// One store's totals for a settlement report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementLine {
    pub store_id: String,
    pub currency: String,
    pub payments: i64,
    pub payments_minor: i64,
    pub refunds: i64,
    pub refunds_minor: i64,
}

/// Per-store totals of succeeded payments and refunds created in `[from_ms, to_ms)`.
pub fn settlement(
    conn: &mut dyn Conn,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<SettlementLine>, StoreError> {
    let mut lines: Vec<SettlementLine> = Vec::new();
    for row in conn.query(
        "SELECT store_id, currency, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM payments \
         WHERE status = 'succeeded' AND created_ms >= $1 AND created_ms < $2 GROUP BY store_id, currency ORDER BY store_id, currency",
        params![from_ms, to_ms],
    )? {
        lines.push(SettlementLine {
            store_id: row.text(0)?,
            currency: row.text(1)?,
            payments: row.int(2)?,
            payments_minor: row.int(3)?,
            refunds: 0,
            refunds_minor: 0,
        });
    }
    for row in conn.query(
        "SELECT p.store_id, r.currency, COUNT(*), CAST(SUM(r.amount) AS BIGINT) FROM refunds r JOIN payments p ON p.id = r.payment_id \
         WHERE r.created_ms >= $1 AND r.created_ms < $2 GROUP BY p.store_id, r.currency ORDER BY p.store_id, r.currency",
        params![from_ms, to_ms],
    )? {
        let (store_id, currency) = (row.text(0)?, row.text(1)?);
        let i = match lines.iter().position(|l| l.store_id == store_id && l.currency == currency) {
            Some(i) => i,
            None => {
                lines.push(SettlementLine {
                    store_id,
                    currency,
                    payments: 0,
                    payments_minor: 0,
                    refunds: 0,
                    refunds_minor: 0,
                });
                lines.len() - 1
            }
        };
        lines[i].refunds = row.int(2)?;
        lines[i].refunds_minor = row.int(3)?;
    }
    lines.sort_by(|a, b| (&a.store_id, &a.currency).cmp(&(&b.store_id, &b.currency)));
    Ok(lines)
}
