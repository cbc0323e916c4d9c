//! The risk engine's state: velocity counters, per-customer profiles, the decision journal,
//! cases and the rule set. Everything the engine reads on the hot path is kept up to date as
//! events happen, so a decision reads a handful of rows and never scans history.

use crate::{Conn, Row, StoreError, Value, params, values};
use konbini_core::risk::Features;
use std::sync::LazyLock;

/// The sliding windows (ms): 10 minutes, 1 hour, 24 hours, 7 days.
pub const WINDOWS_MS: [i64; 4] = [600_000, 3_600_000, 86_400_000, 604_800_000];

/// Estimated count and sum of one subject over each of [`WINDOWS_MS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Velocity {
    pub count: [i64; 4],
    pub sum: [i64; 4],
}

fn buckets(now_ms: i64) -> [i64; 4] {
    WINDOWS_MS.map(|w| now_ms.div_euclid(w))
}

/// The subject key of a counter: `kind` (`cus`, `dev`, `store`, `term`, `card`), the id, and
/// what is counted (`pay`, `top`). `pos_context` builds the same keys in SQL.
pub fn subject(kind: &str, id: &str, what: &str) -> String {
    // Not `format!`: a payment names two subjects, and the formatting machinery cost it
    // about a thousand instructions each.
    [kind, ":", id, ":", what].concat()
}

/// The 20 state columns of a `risk_velocity` row, in the order [`velocity_of`] reads them,
/// each prefixed with `alias.` (for joins).
pub fn velocity_columns(alias: &str) -> String {
    (0..4)
        .flat_map(|w| {
            ["bucket", "n", "total", "prev_n", "prev_total"].map(|c| format!("{alias}.w{w}_{c}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decodes the 20 columns starting at `first` (all NULL when the subject has no row) into
/// the sliding estimates at `now_ms` (see [`Windows::velocity`]).
pub fn velocity_of(r: &Row, first: usize, now_ms: i64) -> Result<Velocity, StoreError> {
    Ok(Windows::read(r, first)?.map_or_else(Velocity::default, |w| w.velocity(now_ms)))
}

/// The stored state of one subject's four windows (the 20 columns of a counter row): per
/// window, the current bucket with its count and sum, and the previous bucket's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Windows {
    pub bucket: [i64; 4],
    pub n: [i64; 4],
    pub total: [i64; 4],
    pub prev_n: [i64; 4],
    pub prev_total: [i64; 4],
}

impl Windows {
    /// The 20 columns starting at `first`; `None` when they are NULL (the subject has no row).
    pub fn read(r: &Row, first: usize) -> Result<Option<Windows>, StoreError> {
        let mut s = Windows::default();
        for w in 0..4 {
            let col = first + w * 5;
            let Some(bucket) = r.opt_int(col)? else {
                return Ok(None);
            };
            s.bucket[w] = bucket;
            s.n[w] = r.int(col + 1)?;
            s.total[w] = r.int(col + 2)?;
            s.prev_n[w] = r.int(col + 3)?;
            s.prev_total[w] = r.int(col + 4)?;
        }
        Ok(Some(s))
    }

    /// The state of a subject's first event.
    pub fn first(amount: i64, now_ms: i64) -> Windows {
        Windows {
            bucket: buckets(now_ms),
            n: [1; 4],
            total: [amount; 4],
            ..Windows::default()
        }
    }

    /// The state after counting one more event of `amount` at `now_ms`: exactly what the SQL
    /// of [`add`] computes (a conformance test compares the two). When the row's bucket is
    /// still current, add to it; when it is the one before, it becomes the previous bucket;
    /// when older, it is dropped.
    pub fn counted(&self, amount: i64, now_ms: i64) -> Windows {
        self.counted_many(&Group {
            buckets: buckets(now_ms),
            n: 1,
            total: amount,
        })
    }

    /// The state after counting `g.n` events of `g.total` in all, all in buckets
    /// `g.buckets`: what counting them one by one gives (a test checks it), and what
    /// [`write_unwritten`] computes in SQL.
    pub fn counted_many(&self, g: &Group) -> Windows {
        let mut s = *self;
        for (w, now) in g.buckets.into_iter().enumerate() {
            if self.bucket[w] >= now {
                s.n[w] = self.n[w].saturating_add(g.n);
                s.total[w] = self.total[w].saturating_add(g.total);
                continue;
            }
            let next = self.bucket[w] == now - 1;
            s.prev_n[w] = if next { self.n[w] } else { 0 };
            s.prev_total[w] = if next { self.total[w] } else { 0 };
            s.n[w] = g.n;
            s.total[w] = g.total;
            s.bucket[w] = now;
        }
        s
    }

    /// The sliding estimates at `now_ms`: for each window, the current bucket plus the
    /// previous one weighted by the part of it still inside the window.
    pub fn velocity(&self, now_ms: i64) -> Velocity {
        let mut out = Velocity::default();
        let now_buckets = buckets(now_ms);
        for (w, win) in WINDOWS_MS.iter().enumerate() {
            // The previous bucket counts for the part of it still inside the window.
            let left = win - now_ms.rem_euclid(*win);
            // 64-bit unless the product overflows (sums beyond about 15 billion): a 128-bit
            // division costs a payment's four subjects thousands of instructions.
            let part = |v: i64| -> i64 {
                v.checked_mul(left).map_or_else(
                    || {
                        i64::try_from(i128::from(v) * i128::from(left) / i128::from(*win))
                            .unwrap_or(i64::MAX)
                    },
                    |x| x / win,
                )
            };
            let (count, sum) = if self.bucket[w] >= now_buckets[w] {
                (
                    self.n[w].saturating_add(part(self.prev_n[w])),
                    self.total[w].saturating_add(part(self.prev_total[w])),
                )
            } else if self.bucket[w] == now_buckets[w] - 1 {
                (part(self.n[w]), part(self.total[w]))
            } else {
                (0, 0)
            };
            out.count[w] = count;
            out.sum[w] = sum;
        }
        out
    }

    /// The 20 values in column order (`w0_bucket, w0_n, w0_total, w0_prev_n, w0_prev_total,
    /// w1_bucket, …`).
    fn values(&self) -> impl Iterator<Item = i64> + '_ {
        (0..4).flat_map(move |w| {
            [
                self.bucket[w],
                self.n[w],
                self.total[w],
                self.prev_n[w],
                self.prev_total[w],
            ]
        })
    }

    /// The packed form a profile or device row keeps in its `windows` column: byte 0 the
    /// format version (1), then the 20 values in column order, each zigzag LEB128 (about 40
    /// bytes). A payment reads and writes these rows, so one column instead of 20 each is a
    /// sixth of what the engine cost a payment on the embedded database (docs/benchmarks.md).
    pub fn packed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 20 * 10);
        out.push(PACKED_WINDOWS);
        for v in self.values() {
            konbini_core::encoding::put_zigzag(&mut out, v);
        }
        out
    }

    /// Reads [`Windows::packed`]; refuses another version, a truncated value and trailing
    /// bytes.
    pub fn unpacked(bytes: &[u8]) -> Result<Windows, StoreError> {
        let bad = |e: &str| StoreError::Decode(format!("packed windows: {e}"));
        let Some((&PACKED_WINDOWS, mut rest)) = bytes.split_first() else {
            return Err(bad("not of version 1"));
        };
        let mut s = Windows::default();
        for w in 0..4 {
            for field in [
                &mut s.bucket[w],
                &mut s.n[w],
                &mut s.total[w],
                &mut s.prev_n[w],
                &mut s.prev_total[w],
            ] {
                *field = konbini_core::encoding::take_zigzag(&mut rest).map_err(bad)?;
            }
        }
        if !rest.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(s)
    }

    /// Column `col` holding [`Windows::packed`]; NULL (no event counted yet) is the empty
    /// state.
    pub fn read_packed(r: &Row, col: usize) -> Result<Windows, StoreError> {
        match r.0.get(col) {
            Some(Value::Null) => Ok(Windows::default()),
            Some(Value::Bytes(b)) => Windows::unpacked(b),
            other => Err(StoreError::Decode(format!(
                "column {col}: expected packed windows, got {other:?}"
            ))),
        }
    }

    fn packed_value(&self) -> Value {
        Value::Bytes(self.packed())
    }
}

/// The version byte of [`Windows::packed`].
const PACKED_WINDOWS: u8 = 1;

/// Events of one subject counted in memory and not yet written to its counter row, grouped
/// by the buckets they fall in (usually one group: they are written about once a second).
/// The store's and the terminal's payments are counted this way (see [`PaymentCount`]):
/// every payment at a store would otherwise update the same two rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unwritten {
    pub groups: Vec<Group>,
}

/// Events that fall in the same buckets of every window: how many, and their total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub buckets: [i64; 4],
    pub n: i64,
    pub total: i64,
}

impl Unwritten {
    /// Counts one event of `amount` at `now_ms`.
    pub fn count(&mut self, amount: i64, now_ms: i64) {
        self.push(Group {
            buckets: buckets(now_ms),
            n: 1,
            total: amount,
        });
    }

    /// Puts `later` after these (a failed write puts its events back before newer ones).
    pub fn then(&mut self, later: Unwritten) {
        for g in later.groups {
            self.push(g);
        }
    }

    /// Adds `g` to the last group when it falls in the same buckets, else after it.
    fn push(&mut self, g: Group) {
        match self.groups.last_mut() {
            Some(last) if last.buckets == g.buckets => {
                last.n = last.n.saturating_add(g.n);
                last.total = last.total.saturating_add(g.total);
            }
            _ => self.groups.push(g),
        }
    }

    /// The subject's windows with these events counted on top of the row as stored (`None`:
    /// no row yet); `None` when there is neither.
    pub fn on(&self, stored: Option<Windows>) -> Option<Windows> {
        if self.groups.is_empty() {
            return stored;
        }
        Some(
            self.groups
                .iter()
                .fold(stored.unwrap_or_default(), |w, g| w.counted_many(g)),
        )
    }
}

/// Counts `g.n` events of `g.total` in all in one subject's row, returning the row as
/// written. Parameters: the subject, the four buckets, the total, the count.
static ADD_MANY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO risk_velocity (subject, {}) VALUES ($1, {}) ON CONFLICT (subject) DO UPDATE SET {} RETURNING {}",
        window_columns(),
        window_values(2, 6, "$7"),
        window_sets("risk_velocity"),
        window_columns()
    )
});

/// Writes the events counted in memory for `subject` into its counter row; concurrent
/// writers (other nodes) add up, since the increment happens in SQL. Returns the row as
/// written (with every node's counts so far), `None` when there was nothing to write.
pub fn write_unwritten(
    conn: &mut dyn Conn,
    subject: &str,
    events: &Unwritten,
) -> Result<Option<Windows>, StoreError> {
    let mut written = None;
    for g in &events.groups {
        let mut p = vec![Value::from(subject)];
        p.extend(g.buckets.map(Value::Int));
        p.extend([Value::Int(g.total), Value::Int(g.n)]);
        written = Windows::read(&conn.query_one(&ADD_MANY, &p)?, 0)?;
    }
    Ok(written)
}

/// `INSERT ... ON CONFLICT DO UPDATE` counting one event for `rows` subjects, with its
/// parameters numbered from `$first`: the subjects, then the four current buckets, then
/// the amount. A subject's row rolls each window forward when its bucket ends (the current
/// counts become the previous ones; older ones are dropped), so one row per subject holds
/// every window, and the increment happens in SQL, so concurrent events never lose a count.
fn add_sql(first: usize, rows: usize) -> String {
    let b = first + rows;
    let amount = b + 4;
    let values = (0..rows)
        .map(|i| format!("(${}, {})", first + i, window_values(b, amount, "1")))
        .collect::<Vec<_>>()
        .join(", ");
    let t = "risk_velocity";
    format!(
        "INSERT INTO {t} (subject, {}) VALUES {values} ON CONFLICT (subject) DO UPDATE SET {}",
        window_columns(),
        window_sets(t)
    )
}

/// The 20 window column names, unqualified.
fn window_columns() -> String {
    velocity_columns("x").replace("x.", "")
}

/// The values of the window columns for the first events of a subject: the buckets are
/// parameters from `$bucket_first` (four), the amount is `$amount`, the count `count`.
fn window_values(bucket_first: usize, amount: usize, count: &str) -> String {
    (0..4)
        .map(|w| format!("${}, {count}, ${amount}, 0, 0", bucket_first + w))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `ON CONFLICT DO UPDATE SET` assignments that count more events (`excluded.*` holds
/// them as first events: their count and total) in the window columns of `t`. In window
/// `w`: when the row's bucket is still current, add to it; when it is the one before, it
/// becomes the previous bucket; when older, it is dropped.
fn window_sets(t: &str) -> String {
    (0..4)
        .map(|w| {
            let (b, a, n) = (
                format!("excluded.w{w}_bucket"),
                format!("excluded.w{w}_total"),
                format!("excluded.w{w}_n"),
            );
            let same = format!("{t}.w{w}_bucket >= {b}");
            let next = format!("{t}.w{w}_bucket = {b} - 1");
            format!(
                "w{w}_prev_n = CASE WHEN {same} THEN {t}.w{w}_prev_n WHEN {next} THEN {t}.w{w}_n ELSE 0 END, \
                 w{w}_prev_total = CASE WHEN {same} THEN {t}.w{w}_prev_total WHEN {next} THEN {t}.w{w}_total ELSE 0 END, \
                 w{w}_n = CASE WHEN {same} THEN {t}.w{w}_n + {n} ELSE {n} END, \
                 w{w}_total = CASE WHEN {same} THEN {t}.w{w}_total + {a} ELSE {a} END, \
                 w{w}_bucket = CASE WHEN {same} THEN {t}.w{w}_bucket ELSE {b} END"
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

static ADD_1: LazyLock<String> = LazyLock::new(|| add_sql(1, 1));
static ADD_2: LazyLock<String> = LazyLock::new(|| add_sql(1, 2));

/// The parameters of [`add_sql`].
fn add_params(subjects: &[&str], amount: i64, now_ms: i64) -> Vec<Value> {
    let mut p: Vec<Value> = subjects.iter().map(|s| Value::from(*s)).collect();
    p.extend(buckets(now_ms).map(Value::Int));
    p.push(Value::Int(amount));
    p
}

/// Counts one event of `amount` for one or two distinct subjects, in one statement.
pub fn add(
    conn: &mut dyn Conn,
    subjects: &[&str],
    amount: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let sql: &'static str = match subjects.len() {
        1 => &ADD_1,
        2 => &ADD_2,
        n => return Err(StoreError::Decode(format!("{n} velocity subjects"))),
    };
    conn.exec(sql, &add_params(subjects, amount, now_ms))?;
    Ok(())
}

static VELOCITIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT subject, {} FROM risk_velocity WHERE subject IN ($1, $2, $3, $4)",
        velocity_columns("risk_velocity")
    )
});

static WINDOWS_OF: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM risk_velocity v WHERE v.subject = $1",
        velocity_columns("v")
    )
});

/// The stored state of one subject's counter row, if it has one.
pub fn windows_of(conn: &mut dyn Conn, subject: &str) -> Result<Option<Windows>, StoreError> {
    match conn.query_opt(&WINDOWS_OF, params![subject])? {
        Some(r) => Windows::read(&r, 0),
        None => Ok(None),
    }
}

/// The sliding estimates of up to four subjects (an empty subject reads as zero), in one
/// query of at most 4 rows.
pub fn velocities(
    conn: &mut dyn Conn,
    subjects: [&str; 4],
    now_ms: i64,
) -> Result<[Velocity; 4], StoreError> {
    let rows = conn.query(
        &VELOCITIES,
        params![subjects[0], subjects[1], subjects[2], subjects[3]],
    )?;
    let mut out = [Velocity::default(); 4];
    for r in &rows {
        let subject = r.text(0)?;
        for (i, s) in subjects.iter().enumerate() {
            if !s.is_empty() && **s == subject {
                out[i] = velocity_of(r, 1, now_ms)?;
            }
        }
    }
    Ok(out)
}

/// A customer's own payment history and last store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub payments: i64,
    pub payments_total: i64,
    pub payments_max: i64,
    pub last_store_id: Option<String>,
    pub last_lat_e6: Option<i64>,
    pub last_lon_e6: Option<i64>,
    pub last_payment_ms: Option<i64>,
    /// The business day and month (keys chosen by the caller) and the payments in them.
    pub pay_day: i64,
    pub pay_day_total: i64,
    pub pay_month: i64,
    pub pay_month_total: i64,
}

impl Profile {
    /// Payments so far in business day `day` and month `month`.
    pub fn totals(&self, day: i64, month: i64) -> (i64, i64) {
        (
            if self.pay_day == day {
                self.pay_day_total
            } else {
                0
            },
            if self.pay_month == month {
                self.pay_month_total
            } else {
                0
            },
        )
    }
}

/// The two profile columns of a wallet account, in the order [`profile_of`] reads them,
/// each prefixed with `alias.`: the payment count (also what PostgreSQL's single-statement
/// payment checks to know the profile is as it read it) and the rest, packed
/// ([`pack_profile`]).
pub fn profile_columns(alias: &str) -> String {
    format!("{alias}.risk_payments, {alias}.risk_state")
}

/// Decodes the two profile columns starting at `first`: the customer's profile and payment
/// windows, `None` when both are NULL (the customer has no wallet account).
pub fn profile_of(r: &Row, first: usize) -> Result<Option<(Profile, Windows)>, StoreError> {
    let Some(payments) = r.opt_int(first)? else {
        return Ok(None);
    };
    match r.0.get(first + 1) {
        Some(Value::Null) => Ok(Some((
            Profile {
                payments,
                ..Profile::default()
            },
            Windows::default(),
        ))),
        Some(Value::Bytes(b)) => unpack_profile(payments, b).map(Some),
        other => Err(StoreError::Decode(format!(
            "column {}: expected a packed profile, got {other:?}",
            first + 1
        ))),
    }
}

/// The version byte of [`pack_profile`].
const PACKED_PROFILE: u8 = 1;

/// A profile but its payment count, with the customer's windows, as its row's `state`:
/// byte 0 the format version (1), byte 1 which of the optional values are present (bit 0
/// the last store's latitude, 1 its longitude, 2 the last payment's time, 3 the last store),
/// then the numbers, zigzag LEB128: the total, the largest payment, the present optional
/// ones, the day and its total, the month and its total, the 20 window values; then the last
/// store's id, its length first. One column read and written per payment instead of 30.
pub fn pack_profile(pr: &Profile, w: &Windows) -> Vec<u8> {
    use konbini_core::encoding::put_zigzag;
    let optional = [pr.last_lat_e6, pr.last_lon_e6, pr.last_payment_ms];
    let store = pr.last_store_id.as_deref();
    let mut flags = 0u8;
    for (bit, v) in optional.iter().enumerate() {
        flags |= u8::from(v.is_some()) << bit;
    }
    flags |= u8::from(store.is_some()) << 3;
    let mut out = Vec::with_capacity(2 + 30 * 10 + store.map_or(0, str::len));
    out.extend([PACKED_PROFILE, flags]);
    put_zigzag(&mut out, pr.payments_total);
    put_zigzag(&mut out, pr.payments_max);
    for v in optional.into_iter().flatten() {
        put_zigzag(&mut out, v);
    }
    for v in [
        pr.pay_day,
        pr.pay_day_total,
        pr.pay_month,
        pr.pay_month_total,
    ] {
        put_zigzag(&mut out, v);
    }
    for v in w.values() {
        put_zigzag(&mut out, v);
    }
    if let Some(id) = store {
        put_zigzag(&mut out, id.len() as i64);
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// Reads [`pack_profile`] (with the row's payment count); refuses another version, a
/// truncated value, a store id that is not UTF-8 and trailing bytes.
pub fn unpack_profile(payments: i64, bytes: &[u8]) -> Result<(Profile, Windows), StoreError> {
    let bad = |e: &str| StoreError::Decode(format!("packed profile: {e}"));
    let [PACKED_PROFILE, flags, rest @ ..] = bytes else {
        return Err(bad("not of version 1"));
    };
    let mut rest = rest;
    let mut next = || konbini_core::encoding::take_zigzag(&mut rest).map_err(bad);
    let mut pr = Profile {
        payments,
        payments_total: next()?,
        payments_max: next()?,
        ..Profile::default()
    };
    for (bit, field) in [
        &mut pr.last_lat_e6,
        &mut pr.last_lon_e6,
        &mut pr.last_payment_ms,
    ]
    .into_iter()
    .enumerate()
    {
        if flags & (1 << bit) != 0 {
            *field = Some(next()?);
        }
    }
    pr.pay_day = next()?;
    pr.pay_day_total = next()?;
    pr.pay_month = next()?;
    pr.pay_month_total = next()?;
    let mut w = Windows::default();
    for i in 0..4 {
        w.bucket[i] = next()?;
        w.n[i] = next()?;
        w.total[i] = next()?;
        w.prev_n[i] = next()?;
        w.prev_total[i] = next()?;
    }
    if flags & 0b1000 != 0 {
        let len = usize::try_from(next()?).map_err(|_| bad("a negative length"))?;
        let Some((id, after)) = rest.split_at_checked(len) else {
            return Err(bad("truncated"));
        };
        let id = std::str::from_utf8(id).map_err(|_| bad("a store id that is not UTF-8"))?;
        pr.last_store_id = Some(id.to_string());
        rest = after;
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok((pr, w))
}

/// The rows a payment counts on, read in the payment's transaction: on PostgreSQL locked
/// (`FOR UPDATE`) until it ends, so the values computed from them overwrite nothing another
/// payment wrote meanwhile (on SQLite the one writer thread already sees to that).
static DEVICE_WINDOWS: &str = "SELECT windows, last_code_counter FROM devices WHERE id = $1";
static DEVICE_WINDOWS_LOCKED: &str =
    "SELECT windows, last_code_counter FROM devices WHERE id = $1 FOR UPDATE";
static PROFILE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM accounts p WHERE p.id = $1",
        profile_columns("p")
    )
});
static PROFILE_LOCKED: LazyLock<String> = LazyLock::new(|| format!("{} FOR UPDATE", *PROFILE));

/// A customer's profile and payment windows as stored on its wallet account `wallet_id`,
/// `None` without that account; locked on PostgreSQL when `lock`.
fn profile_row(
    conn: &mut dyn Conn,
    wallet_id: &str,
    lock: bool,
) -> Result<Option<(Profile, Windows)>, StoreError> {
    let sql: &'static str = match (lock, conn.backend()) {
        (true, crate::Backend::Postgres) => &PROFILE_LOCKED,
        _ => &PROFILE,
    };
    conn.query_opt(sql, params![wallet_id])?
        .map_or(Ok(None), |r| profile_of(&r, 0))
}

/// The profile kept on the customer's wallet account `wallet_id`
/// (`konbini_core::ledger::wallet_account`); empty before the first payment.
pub fn profile(conn: &mut dyn Conn, wallet_id: &str) -> Result<Profile, StoreError> {
    Ok(profile_row(conn, wallet_id, false)?.map_or_else(Profile::default, |(p, _)| p))
}

/// The stored state of a customer's payment windows (they live on the wallet account with
/// the profile), `None` without that account.
pub fn windows_of_profile(
    conn: &mut dyn Conn,
    wallet_id: &str,
) -> Result<Option<Windows>, StoreError> {
    Ok(profile_row(conn, wallet_id, false)?.map(|(_, w)| w))
}

/// Opens the empty wallet account `wallet_id` if there is none yet, for the customer's
/// profile to live on (a customer who pays by card before ever topping up).
fn ensure_wallet(conn: &mut dyn Conn, wallet_id: &str, now_ms: i64) -> Result<(), StoreError> {
    use konbini_core::ledger::AccountKind;
    let currency = konbini_core::ledger::wallet_currency(wallet_id)
        .ok_or_else(|| StoreError::Decode(format!("{wallet_id} is not a wallet")))?;
    crate::ledger::ensure_account(conn, wallet_id, AccountKind::Wallet, currency, now_ms)
}

/// The customer's profile for a payment to count on, locked on PostgreSQL; its wallet
/// account opened first when the customer has none.
fn locked_profile(
    conn: &mut dyn Conn,
    wallet_id: &str,
    now_ms: i64,
) -> Result<(Profile, Windows), StoreError> {
    if let Some(row) = profile_row(conn, wallet_id, true)? {
        return Ok(row);
    }
    ensure_wallet(conn, wallet_id, now_ms)?;
    profile_row(conn, wallet_id, true)?
        .ok_or_else(|| StoreError::Decode(format!("no wallet {wallet_id}")))
}

/// The rows a payment counts on, as [`locked_counted_rows`] read them.
struct LockedRows {
    profile: Profile,
    customer: Windows,
    /// The device's windows and last spent code counter; `None` without a device row.
    device: Option<(Windows, i64)>,
}

impl LockedRows {
    fn as_read(&self) -> CountedRows<'_> {
        CountedRows {
            profile: &self.profile,
            windows: [Some(self.customer), self.device.map(|d| d.0)],
            device_counted: false,
            profile_counted: false,
            device_code_counter: self.device.map_or(0, |d| d.1),
        }
    }
}

/// Reads (on PostgreSQL locks) the device's and the customer's rows a payment counts on,
/// in the payment's transaction.
fn locked_counted_rows(
    conn: &mut dyn Conn,
    device_id: &str,
    wallet_id: &str,
    now_ms: i64,
) -> Result<LockedRows, StoreError> {
    let sql = match conn.backend() {
        crate::Backend::Postgres => DEVICE_WINDOWS_LOCKED,
        crate::Backend::Sqlite => DEVICE_WINDOWS,
    };
    let device = conn
        .query_opt(sql, params![device_id])?
        .map(|r| Ok::<_, StoreError>((Windows::read_packed(&r, 0)?, r.int(1)?)))
        .transpose()?;
    let (profile, customer) = locked_profile(conn, wallet_id, now_ms)?;
    Ok(LockedRows {
        profile,
        customer,
        device,
    })
}

/// Where and when a payment happened, for the profile.
#[derive(Debug, Clone, Copy)]
pub struct PaymentPlace<'a> {
    pub store_id: &'a str,
    pub at: Option<(i64, i64)>,
    pub now_ms: i64,
    /// The business day and calendar month keys of `now_ms`.
    pub day: i64,
    pub month: i64,
}

/// Adds a completed payment of `amount` to a customer's profile (its history and its
/// windows), from the row as it is now.
pub fn record_payment(
    conn: &mut dyn Conn,
    wallet_id: &str,
    amount: i64,
    place: PaymentPlace<'_>,
) -> Result<(), StoreError> {
    let (profile, windows) = locked_profile(conn, wallet_id, place.now_ms)?;
    let counted = counted_profile(amount, &place, &profile, windows);
    conn.exec(PROFILE_SET, &profile_set_params(wallet_id, &counted))?;
    Ok(())
}

/// One journaled decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub id: String,
    pub at_ms: i64,
    pub customer_id: Option<String>,
    /// Names the engine's decisions use are static; the journal's read back are owned.
    pub event_kind: std::borrow::Cow<'static, str>,
    pub ref_id: Option<String>,
    pub outcome: std::borrow::Cow<'static, str>,
    pub decided_by: Option<String>,
    /// JSON arrays of rule names.
    pub fired: std::borrow::Cow<'static, str>,
    pub shadow: std::borrow::Cow<'static, str>,
    /// JSON object of the features.
    pub features: String,
    pub case_id: Option<String>,
}

const DECISION_INSERT: &str = "INSERT INTO risk_decisions (id, at_ms, customer_id, event_kind, ref_id, outcome, decided_by, fired, shadow, features, case_id) \
 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Whether `d` is the decision of payment `p` (its id, customer and time) that the engine
/// simply allowed (no rule fired, live or shadow; no case): such a decision is journaled on
/// the payment's row (`payments.risk_features`), not in a row of its own. Its other fields
/// follow from the payment ([`decisions_page`] reads them back), so only the features are
/// stored. A payment whose customer is not on the row (a code rejected as it was spent) is
/// journaled in `risk_decisions` like every other decision.
pub fn journaled_on_payment(d: &DecisionRecord, p: &crate::payments::Payment) -> bool {
    d.event_kind == "payment"
        && d.outcome == "allow"
        && d.fired == "[]"
        && d.shadow == "[]"
        && d.decided_by.is_none()
        && d.case_id.is_none()
        && d.ref_id.as_deref() == Some(p.id.as_str())
        && d.customer_id == p.customer_id
        && d.at_ms == p.created_ms
}

fn decision_params(d: &DecisionRecord) -> Vec<Value> {
    values![
        &d.id,
        d.at_ms,
        d.customer_id.clone(),
        d.event_kind.as_ref(),
        d.ref_id.clone(),
        d.outcome.as_ref(),
        d.decided_by.clone(),
        d.fired.as_ref(),
        d.shadow.as_ref(),
        &d.features,
        d.case_id.clone()
    ]
}

pub fn insert_decision(conn: &mut dyn Conn, d: &DecisionRecord) -> Result<(), StoreError> {
    conn.exec(DECISION_INSERT, &decision_params(d))?;
    Ok(())
}

/// What a decided payment writes for the risk engine, in the payment's transaction: its
/// journal line and, when it went through, its counts and the customer's profile.
pub struct PaymentRisk<'a> {
    /// The journal line but its features (its `features` text is not read; the caller need
    /// not write it).
    pub decision: &'a DecisionRecord,
    /// The features the decision saw: packed on the payment's row when the decision is
    /// journaled there ([`journaled_on_payment`]), else written as text with the line.
    pub features: &'a Features,
    pub counted: Option<PaymentCount<'a>>,
}

/// What the payment's own writer job read of the rows it counts in: the customer's profile
/// and the customer's and device's counter states (`None` where there is no row yet).
#[derive(Debug, Clone, Copy)]
pub struct CountedRows<'a> {
    pub profile: &'a Profile,
    pub windows: [Option<Windows>; 2],
    /// The device's windows were already written with the code's spending
    /// ([`spend_code_counting`]).
    pub device_counted: bool,
    /// The device's last spent code counter, read with its windows. Every payment on the
    /// device raises it, so on PostgreSQL (where another connection may write in between) it
    /// tells the payment's statement whether the windows are still as read.
    pub device_code_counter: i64,
    /// The profile was already written with the wallet's debit ([`ProfileWrite`]).
    pub profile_counted: bool,
}

/// A payment that went through, as the counters and the profile see it.
pub struct PaymentCount<'a> {
    /// The store and terminal subjects ([`subject`]) to count in their rows now; `None` when
    /// the caller counts them in memory and writes them later ([`Unwritten`]: the payment's
    /// hot path). The customer's payments are counted on the profile (on the wallet account),
    /// the device's on the device row, always in the payment's own transaction.
    pub subjects: Option<[&'a str; 2]>,
    pub device_id: &'a str,
    /// The customer's wallet account, which carries the profile
    /// (`konbini_core::ledger::wallet_account`).
    pub wallet_id: &'a str,
    pub amount: i64,
    pub place: PaymentPlace<'a>,
    /// The rows as this payment's transaction read them, when nothing can have written them
    /// since: on SQLite, read earlier in the same writer job (one writer thread applies every
    /// write, in order). `None` (and always on PostgreSQL, where another connection may
    /// write in between, but for the guarded single statement, `payment_risk_when_posted`)
    /// reads them again when counting, locked on PostgreSQL.
    pub read: Option<CountedRows<'a>>,
}

/// Writes [`PaymentRisk`] statement by statement (the embedded database, where a statement
/// costs no round trip; PostgreSQL folds it into the payment's own statement). The journal
/// line is left out when the caller writes it on the payment's row
/// ([`journaled_on_payment`]).
pub fn write_payment_risk(
    conn: &mut dyn Conn,
    r: &PaymentRisk<'_>,
    journal_on_row: bool,
) -> Result<(), StoreError> {
    if !journal_on_row {
        insert_decision(
            conn,
            &DecisionRecord {
                features: r.features.journal_string(),
                ..r.decision.clone()
            },
        )?;
    }
    match &r.counted {
        Some(n) => count_payment(conn, n),
        None => Ok(()),
    }
}

/// Counts a payment that went through: the store's and terminal's counters (unless counted
/// in memory), the device's windows and the customer's profile, statement by statement. The
/// new values are computed here from the rows as read and written as they are: from
/// [`PaymentCount::read`] on SQLite, else from the rows read now (on PostgreSQL locked until
/// the transaction ends).
pub fn count_payment(conn: &mut dyn Conn, n: &PaymentCount<'_>) -> Result<(), StoreError> {
    if let Some(subjects) = &n.subjects {
        add(conn, subjects, n.amount, n.place.now_ms)?;
    }
    match &n.read {
        Some(read) if conn.backend() == crate::Backend::Sqlite => write_counted(conn, n, read),
        _ => {
            let rows = locked_counted_rows(conn, n.device_id, n.wallet_id, n.place.now_ms)?;
            write_counted(conn, n, &rows.as_read())
        }
    }
}

/// The paying device's windows as read earlier in the same SQLite writer job (so current),
/// to be counted in the `UPDATE` that spends the payment's code ([`spend_code_counting`]).
#[derive(Debug, Clone, Copy)]
pub struct DeviceCount<'a> {
    pub device_id: &'a str,
    pub windows: Windows,
    pub amount: i64,
    pub now_ms: i64,
}

/// Parameters: the counter, the slot, the packed windows.
const SPEND_AND_COUNT: &str = "UPDATE devices SET last_code_counter = $1, windows = $3 \
     WHERE slot = $2 AND status = 'bound' AND last_code_counter < $1";

/// Spends payment-code `counter` on `slot` (as `customers::consume_code`) and counts the
/// payment in the device's windows in the same row write: one `UPDATE` of the device row
/// instead of two. `false`, with nothing written, when the code was not valid.
pub fn spend_code_counting(
    conn: &mut dyn Conn,
    slot: i64,
    counter: i64,
    d: &DeviceCount<'_>,
) -> Result<bool, StoreError> {
    let windows = d.windows.counted(d.amount, d.now_ms).packed_value();
    Ok(conn.exec(
        SPEND_AND_COUNT,
        &[Value::Int(counter), Value::Int(slot), windows],
    )? == 1)
}

/// Writes back the device's windows as read (undoing [`spend_code_counting`]'s count when
/// the payment did not go through).
pub fn restore_device_windows(conn: &mut dyn Conn, d: &DeviceCount<'_>) -> Result<(), StoreError> {
    conn.exec(
        DEVICE_SET,
        &[Value::from(d.device_id), d.windows.packed_value()],
    )?;
    Ok(())
}

/// The stored state of a device's payment windows (they live on the device row).
pub fn windows_of_device(conn: &mut dyn Conn, device_id: &str) -> Result<Windows, StoreError> {
    match conn.query_opt(DEVICE_WINDOWS, params![device_id])? {
        Some(r) => Windows::read_packed(&r, 0),
        None => Err(StoreError::Decode(format!("no device {device_id}"))),
    }
}

const DEVICE_SET: &str = "UPDATE devices SET windows = $2 WHERE id = $1";

/// A profile's new values on its wallet account (parameters in [`profile_set_params`]
/// order).
const PROFILE_SET: &str = "UPDATE accounts SET risk_payments = $2, risk_state = $3 WHERE id = $1";

/// Writes payment `n`'s counts from the rows as read: each row written with its new values,
/// no insert attempted where the row exists and no window rolled in SQL (a third of the
/// counting cost, counted in instructions). A customer without a wallet account yet gets one
/// opened, empty, to carry the profile.
fn write_counted(
    conn: &mut dyn Conn,
    n: &PaymentCount<'_>,
    read: &CountedRows<'_>,
) -> Result<(), StoreError> {
    let (amount, now) = (n.amount, n.place.now_ms);
    let [customer, device] = read.windows;
    if let (false, Some(w)) = (read.device_counted, device) {
        let p = [
            Value::from(n.device_id),
            w.counted(amount, now).packed_value(),
        ];
        conn.exec(DEVICE_SET, &p)?;
    }
    if read.profile_counted {
        return Ok(());
    }
    if customer.is_none() {
        ensure_wallet(conn, n.wallet_id, now)?;
    }
    let counted = counted_profile(amount, &n.place, read.profile, customer.unwrap_or_default());
    conn.exec(PROFILE_SET, &profile_set_params(n.wallet_id, &counted))?;
    Ok(())
}

/// A profile's new values: what the wallet account's `risk_payments` and `risk_state` become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWrite {
    pub payments: i64,
    pub state: Vec<u8>,
}

/// The profile `pr` and the customer's windows `w` as read, with a payment of `amount` at
/// `place` counted on them.
pub fn counted_profile(
    amount: i64,
    place: &PaymentPlace<'_>,
    pr: &Profile,
    w: Windows,
) -> ProfileWrite {
    let (day_total, month_total) = pr.totals(place.day, place.month);
    let counted = Profile {
        payments: pr.payments.saturating_add(1),
        payments_total: pr.payments_total.saturating_add(amount),
        payments_max: pr.payments_max.max(amount),
        last_store_id: Some(place.store_id.to_string()),
        last_lat_e6: place.at.map(|a| a.0),
        last_lon_e6: place.at.map(|a| a.1),
        last_payment_ms: Some(place.now_ms),
        pay_day: place.day,
        pay_day_total: day_total.saturating_add(amount),
        pay_month: place.month,
        pay_month_total: month_total.saturating_add(amount),
    };
    ProfileWrite {
        payments: counted.payments,
        state: pack_profile(&counted, &w.counted(amount, place.now_ms)),
    }
}

/// [`PROFILE_SET`]'s parameters.
fn profile_set_params(wallet_id: &str, p: &ProfileWrite) -> Vec<Value> {
    values![wallet_id, p.payments, p.state.clone()]
}

/// [`counted_profile`] of a counted payment.
pub fn payment_profile(n: &PaymentCount<'_>, pr: &Profile, w: Windows) -> ProfileWrite {
    counted_profile(n.amount, &n.place, pr, w)
}

/// The data-modifying CTEs that count a [`PaymentRisk`] inside the statement that inserts its
/// payment, with parameters numbered from `$first` (see [`payment_risk_params`]): the
/// device's windows and the profile, as plain values computed from the rows read (locked)
/// just before. The journal line goes on the payment's row, the store and terminal are
/// counted by the caller, in memory.
pub(crate) fn payment_risk_ctes(first: usize) -> String {
    // The journal line takes 1 parameter, the device 2 (its id, its windows), the profile 3.
    format!(
        "rdev AS ({}), rpu AS ({})",
        renumber(DEVICE_SET, first + 1),
        renumber(PROFILE_SET, first + 3)
    )
}

/// The parameters of [`payment_risk_ctes`], after the journal line's features (the payment
/// row's `risk_features`, the first of them), from the device's and wallet's rows read now
/// (on PostgreSQL locked until the transaction ends); `None` when the payment was not
/// counted, counts the store and terminal in their rows (not in that statement: written one
/// by one), its decision is not journaled on its row ([`journaled_on_payment`]), or its
/// device has no row.
pub(crate) fn payment_risk_params(
    conn: &mut dyn Conn,
    r: &PaymentRisk<'_>,
    p: &crate::payments::Payment,
) -> Result<Option<Vec<Value>>, StoreError> {
    let Some((n, mut v)) = counted_on_row(r, p) else {
        return Ok(None);
    };
    let rows = locked_counted_rows(conn, n.device_id, n.wallet_id, n.place.now_ms)?;
    let Some((device, _)) = rows.device else {
        return Ok(None);
    };
    v.extend([
        Value::from(n.device_id),
        device.counted(n.amount, n.place.now_ms).packed_value(),
    ]);
    let profile = payment_profile(n, &rows.profile, rows.customer);
    v.extend(profile_set_params(n.wallet_id, &profile));
    Ok(Some(v))
}

/// What PostgreSQL's one-statement forms of a payment need: the payment counted with its
/// store and terminal in memory and its decision journaled on its row. The count, and the
/// parameter list begun with the packed features; `None` otherwise.
fn counted_on_row<'r>(
    r: &'r PaymentRisk<'_>,
    p: &crate::payments::Payment,
) -> Option<(&'r PaymentCount<'r>, Vec<Value>)> {
    let n = r.counted.as_ref().filter(|n| n.subjects.is_none())?;
    journaled_on_payment(r.decision, p).then(|| (n, values![r.features.journal_bytes()]))
}

/// The risk engine's writes of a counted payment inside the wallet payment's single
/// statement (`payments::pay_and_record_alone`), parameters numbered from `$first` (see
/// [`payment_risk_params_when_posted`]; the journal line's features, on the payment's row,
/// are `$first - 1`). The store and the terminal are counted in memory.
///
/// The new windows and profile are computed here from the rows as the payment's context
/// read them and written as plain values by the row writes the payment makes anyway: the
/// device's by the `UPDATE` that spends the code, the profile by the wallet's debit (so the
/// engine adds no row write of its own). PostgreSQL builds every expression of a statement
/// each time it runs it, and the 45 `CASE`s of counting in SQL, with the insert of a missing
/// profile, were most of what the engine cost a payment there; the profile's own row write
/// was half of the rest (docs/benchmarks.md). Each write is guarded by a value every
/// payment changes, so a payment that ran in between is never overwritten: the device's
/// last code counter (the code is then not spent, and the caller's general path decides)
/// and the wallet's payment count (the debit then does not happen, the statement undoes
/// itself as for a short wallet, and the general path, which reads the rows locked, takes
/// the payment).
pub(crate) fn payment_risk_when_posted(first: usize) -> crate::ledger::WalletPostSets {
    // The device's packed windows and its counter as read; then the profile's payment count
    // and state, and its payment count as read.
    let profile = first + 2;
    crate::ledger::WalletPostSets {
        device_sets: format!(", windows = ${first}::bytea"),
        device_guard: format!(" AND last_code_counter = ${}::bigint", first + 1),
        wallet_sets: format!(
            ", risk_payments = ${profile}::bigint, risk_state = ${}::bytea",
            profile + 1
        ),
        wallet_guard: format!(" AND risk_payments = ${}::bigint", profile + 2),
    }
}

/// The parameters of [`payment_risk_when_posted`], after the journal line's features (the
/// first of them); `None` when the payment is not counted, counts the store and terminal in
/// their rows (that statement does not), its decision is not journaled on its row, or the
/// rows it counts on were not read with it ([`PaymentCount::read`]).
pub(crate) fn payment_risk_params_when_posted(
    r: &PaymentRisk<'_>,
    p: &crate::payments::Payment,
) -> Option<Vec<Value>> {
    let (n, mut v) = counted_on_row(r, p)?;
    let read = n.read.as_ref()?;
    let [Some(customer), Some(device)] = read.windows else {
        return None;
    };
    let profile = payment_profile(n, read.profile, customer);
    v.extend([
        device.counted(n.amount, n.place.now_ms).packed_value(),
        Value::Int(read.device_code_counter),
        Value::Int(profile.payments),
        Value::Bytes(profile.state),
        Value::Int(read.profile.payments),
    ]);
    Some(v)
}

/// `INSERT INTO t (…) VALUES (…) [ON CONFLICT …]` as `INSERT INTO t (…) SELECT … WHERE EXISTS
/// (SELECT 1 FROM w) [ON CONFLICT …]`: the same row, written only when the statement's wallet
/// debit `w` happened.
pub(crate) fn when_posted(insert: &str) -> String {
    let Some(at) = insert.find(" VALUES (") else {
        return insert.to_string();
    };
    let open = at + " VALUES (".len();
    let mut depth = 1;
    let mut close = insert.len();
    for (i, ch) in insert[open..].char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    close = open + i;
                    break;
                }
            }
            _ => {}
        }
    }
    format!(
        "{} SELECT {} WHERE EXISTS (SELECT 1 FROM w){}",
        &insert[..at],
        &insert[open..close],
        insert.get(close + 1..).unwrap_or("")
    )
}

/// `sql` with every parameter `$n` renumbered to `$(n + first - 1)`, so a statement can be
/// embedded in another whose own parameters come first.
pub(crate) fn renumber(sql: &str, first: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[..digits].parse().unwrap_or(0);
        out.push_str(&(n + first - 1).to_string());
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// A decision's features as the journal's text: stored so in `risk_decisions`, packed on a
/// payment's row.
fn features_text(r: &Row, i: usize) -> Result<String, StoreError> {
    match r.bytes(i) {
        Ok(packed) => Features::from_journal_bytes(&packed)
            .map(|f| f.journal_string())
            .map_err(StoreError::Decode),
        Err(_) => r.text(i),
    }
}

fn decision(r: &Row) -> Result<DecisionRecord, StoreError> {
    Ok(DecisionRecord {
        id: r.text(0)?,
        at_ms: r.int(1)?,
        customer_id: r.opt_text(2)?,
        event_kind: r.text(3)?.into(),
        ref_id: r.opt_text(4)?,
        outcome: r.text(5)?.into(),
        decided_by: r.opt_text(6)?,
        fired: r.text(7)?.into(),
        shadow: r.text(8)?.into(),
        features: features_text(r, 9)?,
        case_id: r.opt_text(10)?,
    })
}

/// The id of the decision of payment `payment_id` when it is journaled on the payment's row
/// (its id is not stored there): the payment's with the prefix `dec_` instead of `pay_`, as
/// [`DECISION_ON_PAYMENT`] reads it back.
pub fn decision_id_on_payment(payment_id: &str) -> String {
    ["dec_", payment_id.get(4..).unwrap_or_default()].concat()
}

/// The columns of a decision journaled on its payment's row ([`journaled_on_payment`]), from
/// `payments p`, in the order [`decision`] reads them: its id is the payment's with the
/// prefix `dec_` (unique, and in the same order as the payments' ids).
const DECISION_ON_PAYMENT: &str = "'dec_' || substr(p.id, 5), p.created_ms, p.customer_id, 'payment', p.id, 'allow', NULL, '[]', '[]', p.risk_features, NULL";

/// The decisions of one customer, newest first: those in `risk_decisions` and those on the
/// customer's payments, each through its customer index.
pub fn decisions_of(
    conn: &mut dyn Conn,
    customer_id: &str,
    limit: i64,
) -> Result<Vec<DecisionRecord>, StoreError> {
    static ON_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {DECISION_ON_PAYMENT} FROM payments p \
             WHERE p.customer_id = $1 AND p.risk_features IS NOT NULL \
             ORDER BY p.created_ms DESC, p.id DESC LIMIT $2"
        )
    });
    let args = params![customer_id, limit];
    let own = conn.query(
        "SELECT id, at_ms, customer_id, event_kind, ref_id, outcome, decided_by, fired, shadow, features, case_id \
         FROM risk_decisions WHERE customer_id = $1 ORDER BY at_ms DESC, id DESC LIMIT $2",
        args,
    )?;
    let on_payments = conn.query(&ON_PAYMENTS, args)?;
    let mut all = in_journal_order(&own, &on_payments)?;
    all.reverse();
    all.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(all)
}

/// The decisions of two lists of rows (one from each place the journal is kept), together
/// in journal order: time, then id.
fn in_journal_order(a: &[Row], b: &[Row]) -> Result<Vec<DecisionRecord>, StoreError> {
    let mut all = Vec::with_capacity(a.len() + b.len());
    for r in a.iter().chain(b) {
        all.push(decision(r)?);
    }
    all.sort_by(|x, y| (x.at_ms, &x.id).cmp(&(y.at_ms, &y.id)));
    Ok(all)
}

/// Opens a case for the customer, or adds a decision to the open one; returns its id.
pub fn open_or_extend_case(
    conn: &mut dyn Conn,
    new_id: &str,
    customer_id: &str,
    now_ms: i64,
) -> Result<String, StoreError> {
    conn.query_one(
        "INSERT INTO risk_cases (id, customer_id, status, decisions, opened_ms, updated_ms) \
         VALUES ($1, $2, 'open', 1, $3, $3) \
         ON CONFLICT (customer_id) WHERE status = 'open' \
         DO UPDATE SET decisions = risk_cases.decisions + 1, updated_ms = excluded.updated_ms \
         RETURNING id",
        params![new_id, customer_id, now_ms],
    )?
    .text(0)
}

/// A fraud case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub resolution: Option<String>,
    pub assigned_to: Option<String>,
    pub decisions: i64,
    pub opened_ms: i64,
    pub updated_ms: i64,
    pub note: Option<String>,
}

fn case(r: &Row) -> Result<Case, StoreError> {
    Ok(Case {
        id: r.text(0)?,
        customer_id: r.text(1)?,
        status: r.text(2)?,
        resolution: r.opt_text(3)?,
        assigned_to: r.opt_text(4)?,
        decisions: r.int(5)?,
        opened_ms: r.int(6)?,
        updated_ms: r.int(7)?,
        note: r.opt_text(8)?,
    })
}

pub fn case_by_id(conn: &mut dyn Conn, id: &str) -> Result<Option<Case>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, status, resolution, assigned_to, decisions, opened_ms, updated_ms, note \
         FROM risk_cases WHERE id = $1",
        params![id],
    )?
    .map(|r| case(&r))
    .transpose()
}

/// Cases with `status` (`open`, `resolved`), most recently updated first.
pub fn cases(conn: &mut dyn Conn, status: &str, limit: i64) -> Result<Vec<Case>, StoreError> {
    conn.query(
        "SELECT id, customer_id, status, resolution, assigned_to, decisions, opened_ms, updated_ms, note \
         FROM risk_cases WHERE status = $1 ORDER BY updated_ms DESC, id DESC LIMIT $2",
        params![status, limit],
    )?
    .iter()
    .map(case)
    .collect()
}

/// The open case of a customer, if any.
pub fn open_case_of(conn: &mut dyn Conn, customer_id: &str) -> Result<Option<Case>, StoreError> {
    conn.query_opt(
        "SELECT id, customer_id, status, resolution, assigned_to, decisions, opened_ms, updated_ms, note \
         FROM risk_cases WHERE customer_id = $1 AND status = 'open'",
        params![customer_id],
    )?
    .map(|r| case(&r))
    .transpose()
}

pub fn assign_case(
    conn: &mut dyn Conn,
    id: &str,
    staff_id: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE risk_cases SET assigned_to = $1, updated_ms = $2 WHERE id = $3 AND status = 'open'",
        params![staff_id, now_ms, id],
    )?;
    Ok(n == 1)
}

pub fn resolve_case(
    conn: &mut dyn Conn,
    id: &str,
    resolution: &str,
    note: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let n = conn.exec(
        "UPDATE risk_cases SET status = 'resolved', resolution = $1, note = $2, updated_ms = $3 WHERE id = $4 AND status = 'open'",
        params![resolution, note, now_ms, id],
    )?;
    Ok(n == 1)
}

/// A stored rule (`konbini_core::risk::RuleSpec` plus bookkeeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    pub name: String,
    pub version: i64,
    pub description: String,
    pub source: String,
    pub priority: i64,
    pub mode: String,
    pub enabled: bool,
    pub updated_ms: i64,
    pub updated_by: String,
}

fn rule(r: &Row) -> Result<RuleRecord, StoreError> {
    Ok(RuleRecord {
        name: r.text(0)?,
        version: r.int(1)?,
        description: r.text(2)?,
        source: r.text(3)?,
        priority: r.int(4)?,
        mode: r.text(5)?,
        enabled: r.int(6)? != 0,
        updated_ms: r.int(7)?,
        updated_by: r.text(8)?,
    })
}

pub fn rules(conn: &mut dyn Conn) -> Result<Vec<RuleRecord>, StoreError> {
    conn.query(
        "SELECT name, version, description, source, priority, mode, enabled, updated_ms, updated_by \
         FROM risk_rules ORDER BY priority DESC, name",
        params![],
    )?
    .iter()
    .map(rule)
    .collect()
}

pub fn rule_by_name(conn: &mut dyn Conn, name: &str) -> Result<Option<RuleRecord>, StoreError> {
    conn.query_opt(
        "SELECT name, version, description, source, priority, mode, enabled, updated_ms, updated_by \
         FROM risk_rules WHERE name = $1",
        params![name],
    )?
    .map(|r| rule(&r))
    .transpose()
}

/// Saves a rule as its next version (the caller sets `version`: 1 for a new rule, the
/// stored version + 1 for an edit) and keeps the version in the history. False when a
/// concurrent edit saved that version first.
pub fn save_rule(conn: &mut dyn Conn, r: &RuleRecord) -> Result<bool, StoreError> {
    let inserted = conn.exec(
        "INSERT INTO risk_rule_versions (name, version, description, source, priority, mode, enabled, updated_ms, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        params![&r.name, r.version, &r.description, &r.source, r.priority, &r.mode, r.enabled, r.updated_ms, &r.updated_by],
    )?;
    if inserted != 1 {
        return Ok(false);
    }
    conn.exec(
        "INSERT INTO risk_rules (name, version, description, source, priority, mode, enabled, updated_ms, updated_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, description = excluded.description, \
           source = excluded.source, priority = excluded.priority, mode = excluded.mode, enabled = excluded.enabled, \
           updated_ms = excluded.updated_ms, updated_by = excluded.updated_by",
        params![&r.name, r.version, &r.description, &r.source, r.priority, &r.mode, r.enabled, r.updated_ms, &r.updated_by],
    )?;
    Ok(true)
}

/// A number that changes whenever any rule does (the engine reloads when it moves).
pub fn rules_fingerprint(conn: &mut dyn Conn) -> Result<(i64, i64), StoreError> {
    let r = conn.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM risk_rule_versions",
        params![],
    )?;
    Ok((r.int(0)?, r.int(1)?))
}

/// Deletes counter buckets no window reads any more (run now and then, off the hot path).
pub fn purge_counters(conn: &mut dyn Conn, now_ms: i64) -> Result<u64, StoreError> {
    // A subject whose 7-day window ended over a week ago reads as zero in every window.
    conn.exec(
        "DELETE FROM risk_velocity WHERE w3_bucket < $1",
        params![now_ms.div_euclid(WINDOWS_MS[3]) - 1],
    )
}

/// The stored versions of one rule, newest first (at most `limit`).
pub fn rule_versions(
    conn: &mut dyn Conn,
    name: &str,
    limit: i64,
) -> Result<Vec<RuleRecord>, StoreError> {
    conn.query(
        "SELECT name, version, description, source, priority, mode, enabled, updated_ms, updated_by \
         FROM risk_rule_versions WHERE name = $1 ORDER BY version DESC LIMIT $2",
        params![name, limit],
    )?
    .iter()
    .map(rule)
    .collect()
}

/// How many rules are stored (enabled or not).
pub fn rule_count(conn: &mut dyn Conn) -> Result<i64, StoreError> {
    conn.query_one("SELECT COUNT(*) FROM risk_rules", params![])?
        .int(0)
}

/// The role of an active staff member (to check who a case may be assigned to); `None`
/// when there is no such staff member or the account is not active.
pub fn active_staff_role(
    conn: &mut dyn Conn,
    staff_id: &str,
) -> Result<Option<String>, StoreError> {
    conn.query_opt(
        "SELECT role FROM staff WHERE id = $1 AND status = 'active'",
        params![staff_id],
    )?
    .map(|r| r.text(0))
    .transpose()
}

/// Decisions in `[from_ms, to_ms)` in journal order (time, then id), at most `limit`,
/// after the decision `after` (its time and id; `None` from the start). Keyset paging on
/// the time indexes of both places a decision is journaled (`risk_decisions` and the
/// payments' rows), each read in order and the two merged: every page costs the same however
/// far into the window it is.
pub fn decisions_page(
    conn: &mut dyn Conn,
    from_ms: i64,
    to_ms: i64,
    after: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<DecisionRecord>, StoreError> {
    static ON_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {DECISION_ON_PAYMENT} FROM payments p \
             WHERE p.risk_features IS NOT NULL AND p.created_ms >= $1 AND p.created_ms < $2 \
               AND (p.created_ms > $3 OR 'dec_' || substr(p.id, 5) > $4) \
             ORDER BY p.created_ms, p.id LIMIT $5"
        )
    });
    let (at, id) = after.unwrap_or((from_ms, ""));
    let args = params![at.max(from_ms), to_ms, at, id, limit];
    let own = conn.query(
        "SELECT id, at_ms, customer_id, event_kind, ref_id, outcome, decided_by, fired, shadow, features, case_id \
         FROM risk_decisions WHERE at_ms >= $1 AND at_ms < $2 AND (at_ms > $3 OR id > $4) \
         ORDER BY at_ms, id LIMIT $5",
        args,
    )?;
    let on_payments = conn.query(&ON_PAYMENTS, args)?;
    let mut all = in_journal_order(&own, &on_payments)?;
    all.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events put back in front of newer ones (a failed write) merge by buckets and keep
    /// their counts: the same windows as counting every event one by one.
    #[test]
    fn unwritten_events_merge_by_buckets_and_keep_their_counts() {
        let now: i64 = 1_795_564_800_000;
        let later = now + 700_000; // the next 10-minute bucket
        let mut a = Unwritten::default();
        a.count(100, now);
        a.count(50, now);
        let mut b = Unwritten::default();
        b.count(7, now);
        b.count(8, now);
        b.count(3, later);
        a.then(b);
        let group = |t: i64, n: i64, total: i64| Group {
            buckets: buckets(t),
            n,
            total,
        };
        assert_eq!(a.groups, vec![group(now, 4, 165), group(later, 1, 3)]);
        let one_by_one = [(100, now), (50, now), (7, now), (8, now), (3, later)]
            .iter()
            .fold(Windows::default(), |w, (amount, t)| w.counted(*amount, *t));
        assert_eq!(a.on(None), Some(one_by_one));
    }

    /// A row's packed windows read back exactly, at any size, in about two bytes a value;
    /// damaged ones are refused, not read as zero.
    #[test]
    fn packed_windows_round_trip_and_refuse_damage() {
        let now: i64 = 1_795_564_800_000;
        let w = [
            (700, now),
            (1_200, now + 3_700_000),
            (i64::MAX, now + 90_000_000),
        ]
        .iter()
        .fold(Windows::default(), |w, (amount, t)| w.counted(*amount, *t));
        let packed = w.packed();
        assert_eq!(Windows::unpacked(&packed).ok(), Some(w));
        assert_eq!(
            Windows::unpacked(&Windows::default().packed()).ok(),
            Some(Windows::default())
        );
        let lunch = Windows::first(700, now).packed();
        assert!(lunch.len() <= 45, "{} bytes", lunch.len());
        let refused = |b: &[u8]| Windows::unpacked(b).is_err();
        assert!(refused(&[]));
        assert!(refused(&[2]), "another version");
        assert!(refused(&packed[..packed.len() - 1]), "cut in a value");
        let mut trailing = packed.clone();
        trailing.push(0);
        assert!(refused(&trailing));
        let row = crate::Row(vec![Value::Null, Value::Bytes(packed), Value::Int(3)]);
        assert_eq!(Windows::read_packed(&row, 0).ok(), Some(Windows::default()));
        assert_eq!(Windows::read_packed(&row, 1).ok(), Some(w));
        assert!(Windows::read_packed(&row, 2).is_err());
    }

    /// A profile row's packed state read back exactly, with or without each optional
    /// value; damaged ones are refused.
    #[test]
    fn packed_profiles_round_trip_and_refuse_damage() {
        let now: i64 = 1_795_564_800_000;
        let w = Windows::first(700, now).counted(i64::MAX, now + 700_000);
        let full = Profile {
            payments: 3,
            payments_total: 2_100,
            payments_max: 900,
            last_store_id: Some("st_東京_1".into()),
            last_lat_e6: Some(35_681_236),
            last_lon_e6: Some(-139_767_125),
            last_payment_ms: Some(now),
            pay_day: 20_418,
            pay_day_total: 2_100,
            pay_month: 670,
            pay_month_total: i64::MIN,
        };
        let partial = Profile {
            last_store_id: None,
            last_lon_e6: None,
            ..full.clone()
        };
        for (p, w) in [
            (full.clone(), w),
            (partial, Windows::default()),
            (Profile::default(), w),
        ] {
            let packed = pack_profile(&p, &w);
            assert_eq!(unpack_profile(p.payments, &packed).ok(), Some((p, w)));
        }
        let packed = pack_profile(&full, &w);
        let refused = |b: &[u8]| unpack_profile(3, b).is_err();
        assert!(refused(&[]));
        assert!(refused(&[2, 0]), "another version");
        assert!(refused(&packed[..packed.len() - 1]), "cut in the store id");
        let mut trailing = packed.clone();
        trailing.push(0);
        assert!(refused(&trailing));
        let mut not_utf8 = packed.clone();
        let last = not_utf8.len() - 1;
        not_utf8[last] = 0xff;
        assert!(refused(&not_utf8));
        let row = crate::Row(vec![
            Value::Int(3),
            Value::Bytes(packed),
            Value::Null,
            Value::Null,
        ]);
        assert_eq!(profile_of(&row, 0).ok(), Some(Some((full, w))));
        assert_eq!(profile_of(&row, 2).ok(), Some(None), "no row");
    }

    /// The previous bucket's weighted share, computed in 64 bits when it fits and in 128
    /// when it does not, is the exact 128-bit result either way.
    #[test]
    fn the_sliding_estimate_is_exact_at_any_size() {
        let now: i64 = 1_795_564_800_000 + 123_456_789;
        let b = buckets(now);
        for v in [0, 1, 7, 999_999, 15_000_000_000, i64::MAX / 1_000, i64::MAX] {
            let w = Windows {
                bucket: b.map(|x| x - 1),
                n: [v; 4],
                total: [v; 4],
                ..Windows::default()
            };
            let got = w.velocity(now);
            for (i, win) in WINDOWS_MS.iter().enumerate() {
                let left = win - now.rem_euclid(*win);
                let want = i64::try_from(i128::from(v) * i128::from(left) / i128::from(*win))
                    .unwrap_or(i64::MAX);
                assert_eq!(
                    (got.count[i], got.sum[i]),
                    (want, want),
                    "{v} in window {i}"
                );
            }
        }
    }
}
