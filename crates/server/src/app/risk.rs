//! The risk engine in line: every payment, top-up and card link builds its features from
//! state kept up to date as events happen (velocity counters, the customer's profile), asks
//! the rule set for a decision before anything is committed, journals the decision with its
//! features and the rules that fired, and opens or extends a case on `review` and `block`.
//!
//! The rules live in the database (`risk_rules`, seeded with
//! `konbini_core::risk::defaults::default_rules()` on first start) and are compiled once into
//! a [`RuleSet`] held in memory; every node reloads when the stored set changes.

use crate::secrets::new_id;
use crate::state::AppState;
use konbini_core::risk::{
    Category, CountFeature, Decision, DurationFeature, EventKind, Features, IntFeature, LimitKind,
    Mode, MoneyFeature, Outcome, RuleSet, RuleSpec, Tier, Window, WindowCounter,
};
use konbini_store::risk::{
    self as store, DecisionRecord, Profile, RuleRecord, Unwritten, Velocity, Windows,
};
use konbini_store::stores::PosVelocity;
use konbini_store::{Conn, Db, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The compiled rule set every evaluation uses, and the stored version it came from.
#[derive(Default)]
pub struct Engine {
    rules: RwLock<Option<Arc<RuleSet>>>,
    loaded_from: RwLock<Option<(i64, i64)>>,
    /// The store's and terminal's payments, counted here once committed.
    pub shared: SharedCounts,
}

/// The payment counters of stores and terminals, which every customer's payment at that
/// store updates, written behind.
///
/// A payment that goes through (or is held for confirmation, or goes to the card processor)
/// counts the store and terminal here once it is committed, and [`SharedCounts::write`]
/// adds what was counted to their rows about once a second (`serve`'s task, and once more
/// at shutdown). A decision reads the row as this node last read or wrote it (kept here: the
/// payment's context query does not read these rows) plus what is counted here and not yet
/// written, so on one node the counts are exact; another node's payments show once that
/// node has written them and this one has written or re-read the row (within a few
/// seconds). Writing them with each payment would update the same two rows for every
/// payment at a store, a fifth of the engine's work per payment (docs/benchmarks.md). What a
/// crash can lose is the last second's store and terminal counts; the journal, the
/// customer's and the device's counters and the profile are written with the payment.
#[derive(Default)]
pub struct SharedCounts {
    inner: Mutex<SharedState>,
}

/// Keyed by subject, hashed with foldhash: subjects are ids of the operator's stores and
/// terminals, not attacker input that needs SipHash's flood resistance, and a payment looks
/// them up six times.
type BySubject<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// The rows as last read or written (`stored`, with when), what was counted and not yet
/// written (`counted`), and what is being written now (`writing`), which counts until the
/// write has committed.
#[derive(Default)]
struct SharedState {
    stored: BySubject<(Option<Windows>, Instant)>,
    counted: BySubject<Unwritten>,
    writing: BySubject<Unwritten>,
}

/// How long a row read or written here is used before it is read again: another node's
/// counts reach this one within this time even where this node writes nothing.
const STORED_FRESH: Duration = Duration::from_secs(5);

impl SharedCounts {
    /// The state; a panic elsewhere while it was held leaves counts, never a broken
    /// invariant, so a poisoned lock is used as it is.
    fn state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a committed payment of `amount` at `now` for each of `subjects`.
    pub fn count(&self, subjects: &[String], amount: i64, now: i64) {
        let mut u = self.state();
        for s in subjects {
            match u.counted.get_mut(s.as_str()) {
                Some(e) => e.count(amount, now),
                None => {
                    let mut e = Unwritten::default();
                    e.count(amount, now);
                    u.counted.insert(s.clone(), e);
                }
            }
        }
    }

    /// `subject`'s windows: its row as last read or written here, or as `read` reads it now
    /// when there is none fresh (`None`: no row), with what is counted here on top.
    pub fn windows(
        &self,
        subject: &str,
        read: impl FnOnce() -> Result<Option<Windows>, StoreError>,
    ) -> Result<Option<Windows>, StoreError> {
        let mut u = self.state();
        let fresh = u
            .stored
            .get(subject)
            .filter(|(_, at)| at.elapsed() < STORED_FRESH)
            .map(|(w, _)| *w);
        let stored = match fresh {
            Some(w) => w,
            None => {
                // Read without holding the lock (a round trip on PostgreSQL); a row written
                // here meanwhile is newer than what this read saw, and stays.
                drop(u);
                let started = Instant::now();
                let w = read()?;
                u = self.state();
                if u.stored.get(subject).is_none_or(|(_, at)| *at < started) {
                    u.stored.insert(subject.to_string(), (w, started));
                }
                w
            }
        };
        let stored = u.writing.get(subject).map_or(stored, |e| e.on(stored));
        Ok(u.counted.get(subject).map_or(stored, |e| e.on(stored)))
    }

    /// Writes what was counted into the rows, in one transaction; on failure it stays
    /// counted here for the next write. Returns how many subjects were written.
    pub async fn write(&self, db: &Db) -> Result<usize, StoreError> {
        let mut batch: Vec<(String, Unwritten)> = {
            let mut u = self.state();
            if !u.writing.is_empty() || u.counted.is_empty() {
                return Ok(0);
            }
            let counted = std::mem::take(&mut u.counted);
            u.writing = counted;
            u.writing
                .iter()
                .map(|(s, e)| (s.clone(), e.clone()))
                .collect()
        };
        // Rows in one order on every node: two nodes writing at once wait, never deadlock.
        batch.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let n = batch.len();
        let r = db
            .write(move |c| {
                let mut written = Vec::with_capacity(batch.len());
                for (subject, events) in &batch {
                    written.push((subject.clone(), store::write_unwritten(c, subject, events)?));
                }
                Ok::<_, StoreError>(written)
            })
            .await;
        let mut u = self.state();
        let writing = std::mem::take(&mut u.writing);
        if let Ok(written) = &r {
            // The rows now hold what was written, and every other node's counts so far.
            let now = Instant::now();
            for (subject, w) in written {
                u.stored.insert(subject.clone(), (*w, now));
            }
            // Rows neither read nor written for a while are read again when needed.
            u.stored.retain(|_, (_, at)| at.elapsed() < STORED_FRESH);
        } else {
            // Back in front of what was counted meanwhile.
            for (s, mut e) in writing {
                if let Some(later) = u.counted.remove(&s) {
                    e.then(later);
                }
                u.counted.insert(s, e);
            }
        }
        r.map(|_| n)
    }
}

/// Writes the store and terminal counts every `every`, for `serve`; once more and returns
/// when `stop` is notified (a write in progress is finished first).
pub async fn keep_writing_shared_counts(
    state: AppState,
    every: std::time::Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.notified() => true,
        };
        if let Err(e) = state.risk.shared.write(&state.db).await {
            tracing::warn!(error = %e, "store and terminal counters not written; retrying");
        }
        if last {
            return;
        }
    }
}

impl Engine {
    /// The current rule set (cheap: an `Arc` clone); `None` before the first load.
    pub fn rules(&self) -> Option<Arc<RuleSet>> {
        self.rules.read().ok().and_then(|r| r.clone())
    }

    /// Evaluates the current rule set (`allow` before the first load).
    pub fn evaluate(&self, features: &Features) -> Decision {
        self.rules()
            .map(|set| set.evaluate(features))
            .unwrap_or_default()
    }

    fn replace(&self, set: RuleSet, fingerprint: (i64, i64)) {
        if let Ok(mut r) = self.rules.write() {
            *r = Some(Arc::new(set));
        }
        if let Ok(mut f) = self.loaded_from.write() {
            *f = Some(fingerprint);
        }
    }

    fn loaded_from(&self) -> Option<(i64, i64)> {
        self.loaded_from.read().ok().and_then(|f| *f)
    }
}

/// The spec of a stored rule, `None` when disabled.
pub fn spec_of(r: &RuleRecord) -> Option<RuleSpec> {
    r.enabled.then(|| RuleSpec {
        name: r.name.clone(),
        description: r.description.clone(),
        source: r.source.clone(),
        priority: i32::try_from(r.priority).unwrap_or(0),
        mode: if r.mode == "shadow" {
            Mode::Shadow
        } else {
            Mode::Live
        },
        version: u32::try_from(r.version).unwrap_or(0),
    })
}

/// Seeds the default rules when none are stored, and (re)loads the rule set when the stored
/// one changed. A stored rule that no longer compiles is skipped and logged (it was checked
/// when saved, so only a language change can do that).
pub async fn refresh(state: &AppState) -> Result<(), StoreError> {
    let now = state.now_ms();
    let seeded = state
        .db
        .write(move |c| {
            if !store::rules(c)?.is_empty() {
                return Ok(false);
            }
            for spec in konbini_core::risk::defaults::default_rules() {
                store::save_rule(
                    c,
                    &RuleRecord {
                        name: spec.name,
                        version: 1,
                        description: spec.description,
                        source: spec.source,
                        priority: i64::from(spec.priority),
                        mode: match spec.mode {
                            Mode::Live => "live".into(),
                            Mode::Shadow => "shadow".into(),
                        },
                        enabled: true,
                        updated_ms: now,
                        updated_by: "system".into(),
                    },
                )?;
            }
            Ok::<_, StoreError>(true)
        })
        .await?;
    let fingerprint = state.db.read(store::rules_fingerprint).await?;
    if !seeded && state.risk.loaded_from() == Some(fingerprint) {
        return Ok(());
    }
    let records = state.db.read(store::rules).await?;
    let mut rules = Vec::new();
    for r in &records {
        let Some(spec) = spec_of(r) else { continue };
        match konbini_core::risk::Rule::new(spec) {
            Ok(rule) => rules.push(rule),
            Err(e) => tracing::error!(rule = %r.name, error = %e, "stored risk rule skipped"),
        }
    }
    match RuleSet::new(rules) {
        Ok(set) => state.risk.replace(set, fingerprint),
        Err(e) => tracing::error!(error = %e, "risk rule set not loaded"),
    }
    Ok(())
}

/// Loads the rules now and keeps them fresh (every `every`), for `serve`.
pub async fn keep_fresh(state: AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = refresh(&state).await {
            tracing::warn!(error = %e, "risk rules refresh failed");
        }
    }
}

const JST_OFFSET_MS: i64 = 9 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The business day (JST) of `now_ms`, as a day number.
pub fn business_day(now_ms: i64) -> i64 {
    (now_ms + JST_OFFSET_MS).div_euclid(DAY_MS)
}

/// The calendar month (JST) of `now_ms` as `year * 12 + month - 1`, and when it started.
pub fn business_month(now_ms: i64) -> (i64, i64) {
    // Civil date from a day number (Howard Hinnant's algorithm).
    let z = business_day(now_ms) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let first = (business_day(now_ms) - (day - 1)) * DAY_MS - JST_OFFSET_MS;
    (year * 12 + month - 1, first)
}

/// What the payment path knows when it asks for a decision.
pub struct PaymentFacts<'a> {
    pub customer_id: &'a str,
    /// The customer's wallet account in the payment's currency, which carries the profile.
    pub wallet_id: &'a str,
    pub account: AccountTimes,
    pub device_id: &'a str,
    pub device_created_ms: i64,
    pub store_id: &'a str,
    pub terminal_id: &'a str,
    /// The store's location in microdegrees, when known.
    pub store_at: Option<(i64, i64)>,
    pub amount: i64,
    /// (category, quantity, line amount) per basket line.
    pub basket: &'a [(String, i64, i64)],
    /// Distinct accounts bound on the paying phone's installation, when it told us.
    pub device_accounts: Option<i64>,
}

fn set_windows(features: &mut Features, counters: &[(WindowCounter, &Velocity, bool)]) {
    for (counter, v, sum) in counters {
        for (i, w) in Window::ALL.iter().enumerate() {
            features.set_window(*counter, *w, if *sum { v.sum[i] } else { v.count[i] });
        }
    }
}

/// Great-circle distance in whole kilometres between two points in microdegrees.
fn km_between(a: (i64, i64), b: (i64, i64)) -> i64 {
    let rad = |e6: i64| (e6 as f64 / 1e6).to_radians();
    let (la1, lo1, la2, lo2) = (rad(a.0), rad(a.1), rad(b.0), rad(b.1));
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    let km = 2.0 * 6371.0 * h.sqrt().clamp(0.0, 1.0).asin();
    km.round() as i64
}

fn account_features(
    features: &mut Features,
    state: &AppState,
    a: &AccountTimes,
    payments: i64,
    now: i64,
) {
    let since = |at: i64| now.saturating_sub(at).max(0);
    let age = since(a.created_ms);
    let held = now < a.recovery_hold_until_ms;
    features.set_duration(DurationFeature::AccountAge, age);
    features.set_recovery_hold(held);
    features.set_tier(konbini_core::risk::tier_for(age, payments, held));
    if a.recovery_hold_until_ms > 0 {
        let recovered = a
            .recovery_hold_until_ms
            .saturating_sub(state.config.recovery_hold_ms);
        features.set_duration(DurationFeature::SinceRecovery, since(recovered));
    }
    if let Some(at) = a.password_changed_ms {
        features.set_duration(DurationFeature::SincePasswordChange, since(at));
    }
    if let Some(at) = a.contact_changed_ms {
        features.set_duration(DurationFeature::SinceContactChange, since(at));
    }
}

/// When the account was created, recovered, and last changed its password and contacts.
#[derive(Debug, Clone, Copy)]
pub struct AccountTimes {
    pub created_ms: i64,
    pub recovery_hold_until_ms: i64,
    pub password_changed_ms: Option<i64>,
    pub contact_changed_ms: Option<i64>,
}

impl AccountTimes {
    pub fn of(c: &konbini_store::customers::Customer) -> AccountTimes {
        AccountTimes {
            created_ms: c.created_ms,
            recovery_hold_until_ms: c.recovery_hold_until_ms,
            password_changed_ms: c.password_changed_ms,
            contact_changed_ms: c.contact_changed_ms,
        }
    }
}

/// The features of a payment: the customer's profile and the payment counters of the
/// customer and device (read by `pos_context` in its single round trip), and of the store
/// and terminal (kept by the node, see [`SharedCounts`]).
pub fn payment_features(
    state: &AppState,
    f: &PaymentFacts<'_>,
    profile: &Profile,
    v: &PosVelocity,
    now: i64,
) -> Features {
    let mut features = Features::new();
    features.set_event_kind(EventKind::Payment);
    features.set_money(MoneyFeature::PaymentAmount, f.amount);
    account_features(&mut features, state, &f.account, profile.payments, now);
    features.set_duration(
        DurationFeature::DeviceAge,
        now.saturating_sub(f.device_created_ms).max(0),
    );
    if let Some(n) = f.device_accounts {
        features.set_count(CountFeature::DeviceAccounts, n);
    }
    if profile.payments > 0 {
        features.set_money(
            MoneyFeature::CustomerAvgPayment,
            profile.payments_total / profile.payments,
        );
        features.set_money(MoneyFeature::CustomerMaxPayment, profile.payments_max);
    }
    set_windows(
        &mut features,
        &[
            (WindowCounter::PaymentsCount, &v.customer, false),
            (WindowCounter::PaymentsSum, &v.customer, true),
            (WindowCounter::DevicePaymentsCount, &v.device, false),
            (WindowCounter::DevicePaymentsSum, &v.device, true),
            (WindowCounter::StorePaymentsCount, &v.store, false),
            (WindowCounter::StorePaymentsSum, &v.store, true),
            (WindowCounter::TerminalPaymentsCount, &v.terminal, false),
            (WindowCounter::TerminalPaymentsSum, &v.terminal, true),
        ],
    );
    features.start_basket();
    for (category, quantity, amount) in f.basket {
        features.add_basket_line(Category::from_basket(category), *quantity, *amount);
    }
    if let (Some(here), Some(lat), Some(lon), Some(at)) = (
        f.store_at,
        profile.last_lat_e6,
        profile.last_lon_e6,
        profile.last_payment_ms,
    ) {
        let km = km_between((lat, lon), here);
        let minutes_ms = now.saturating_sub(at).max(0);
        features.set_int(IntFeature::TravelKm, km);
        features.set_duration(DurationFeature::TravelMinutes, minutes_ms);
        // Speed over at least one minute, so two scans a second apart are not "infinite".
        let hours = (minutes_ms.max(60_000)) as f64 / 3_600_000.0;
        features.set_int(
            IntFeature::TravelKmPerHour,
            (km as f64 / hours).round() as i64,
        );
    }
    features
}

/// The velocity subjects a payment counts in besides the customer and the device (counted on
/// their own rows): store, terminal.
pub fn payment_subjects(f: &PaymentFacts<'_>) -> [String; 2] {
    [
        store::subject("store", f.store_id, "pay"),
        store::subject("term", f.terminal_id, "pay"),
    ]
}

/// A payment that went through, as the counters and the profile see it. The store and
/// terminal are not counted with it: the caller counts them once committed
/// ([`SharedCounts::count`]).
pub fn payment_count<'a>(f: &PaymentFacts<'a>, now: i64) -> store::PaymentCount<'a> {
    store::PaymentCount {
        subjects: None,
        device_id: f.device_id,
        wallet_id: f.wallet_id,
        amount: f.amount,
        place: store::PaymentPlace {
            store_id: f.store_id,
            at: f.store_at,
            now_ms: now,
            day: business_day(now),
            month: business_month(now).0,
        },
        read: None,
    }
}

/// Counts a payment that went through in the customer's and the device's counters and the
/// profile (the paths off the hot one; the immediate wallet payment folds this into its own
/// write). The store and terminal are counted by the caller once committed
/// ([`SharedCounts::count`]), on every path alike.
pub fn record_payment(c: &mut dyn Conn, f: &PaymentFacts<'_>, now: i64) -> Result<(), StoreError> {
    store::count_payment(c, &payment_count(f, now))
}

/// The customer's tier now.
pub fn tier(state: &AppState, created_ms: i64, hold_until_ms: i64, payments: i64) -> Tier {
    let now = state.now_ms();
    konbini_core::risk::tier_for(
        now.saturating_sub(created_ms).max(0),
        payments,
        now < hold_until_ms,
    )
}

/// Refuses an amount above the tier's limits: `Err` with the error to answer.
pub fn check_tier_limit(
    state: &AppState,
    tier: Tier,
    kind: LimitKind,
    amount: i64,
    totals: (i64, i64),
) -> Result<(), crate::error::ApiError> {
    konbini_core::risk::check_limit(&state.config.tier_limits, tier, kind, amount, totals.0, totals.1)
        .map_err(|b| {
            crate::error::ApiError::payment(
                "tier_limit_exceeded",
                format!(
                    "{b}. The limits grow with the account's age and history; GET /v1/wallet shows them."
                ),
            )
            .with_param("amount")
        })
}

/// What a top-up or a card link knows when it asks for a decision.
pub struct FundingFacts<'a> {
    pub kind: EventKind,
    pub customer_id: &'a str,
    pub account: AccountTimes,
    pub device_created_ms: Option<i64>,
    /// The card's keyed fingerprint (hex).
    pub card_fingerprint: &'a str,
    /// Distinct accounts that linked this card.
    pub card_accounts: i64,
    /// Distinct accounts bound on the app installation of the device asking, when known.
    pub device_accounts: Option<i64>,
    pub amount: Option<i64>,
}

fn subjects_of_funding(f: &FundingFacts<'_>) -> [String; 2] {
    [
        store::subject("cus", f.customer_id, "top"),
        store::subject("card", f.card_fingerprint, "top"),
    ]
}

/// The features of a top-up or card link (one read of the counters).
pub fn funding_features(
    c: &mut dyn Conn,
    state: &AppState,
    f: &FundingFacts<'_>,
    now: i64,
) -> Result<(Features, Profile), StoreError> {
    let s = subjects_of_funding(f);
    let v = store::velocities(c, [&s[0], &s[1], "", ""], now)?;
    let profile = store::profile(c, f.customer_id)?;
    let mut features = Features::new();
    features.set_event_kind(f.kind);
    account_features(&mut features, state, &f.account, profile.payments, now);
    if let Some(d) = f.device_created_ms {
        features.set_duration(DurationFeature::DeviceAge, now.saturating_sub(d).max(0));
    }
    if let Some(a) = f.amount {
        features.set_money(MoneyFeature::TopupAmount, a);
    }
    features.set_count(CountFeature::CardAccounts, f.card_accounts);
    if let Some(n) = f.device_accounts {
        features.set_count(CountFeature::DeviceAccounts, n);
    }
    set_windows(
        &mut features,
        &[
            (WindowCounter::TopupsCount, &v[0], false),
            (WindowCounter::TopupsSum, &v[0], true),
            (WindowCounter::CardTopupsCount, &v[1], false),
            (WindowCounter::CardTopupsSum, &v[1], true),
        ],
    );
    Ok((features, profile))
}

/// Counts an allowed top-up for the customer and the card.
pub fn record_topup(c: &mut dyn Conn, f: &FundingFacts<'_>, now: i64) -> Result<(), StoreError> {
    let s = subjects_of_funding(f);
    store::add(c, &[&s[0], &s[1]], f.amount.unwrap_or(0), now)
}

/// Journals a decision (and opens or extends the customer's case when it calls for one), in
/// the caller's transaction. Returns the case id when one was touched.
pub fn journal(
    c: &mut dyn Conn,
    decision: &Decision,
    features: &Features,
    event: EventKind,
    customer_id: &str,
    ref_id: Option<&str>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let case_id = if decision.opens_case() {
        Some(store::open_or_extend_case(
            c,
            &new_id("case"),
            customer_id,
            now,
        )?)
    } else {
        None
    };
    store::insert_decision(
        c,
        &DecisionRecord {
            case_id: case_id.clone(),
            ..decision_record(
                new_id("dec"),
                decision,
                features,
                event,
                customer_id,
                ref_id,
                now,
            )
        },
    )?;
    Ok(case_id)
}

/// The journal line of decision `id`, in no case (a caller that opened one sets it).
pub fn decision_record(
    id: String,
    decision: &Decision,
    features: &Features,
    event: EventKind,
    customer_id: &str,
    ref_id: Option<&str>,
    now: i64,
) -> DecisionRecord {
    DecisionRecord {
        features: features.journal_string(),
        ..decision_head(id, decision, event, customer_id, ref_id, now)
    }
}

/// [`decision_record`] without the features' text, for a writer that stores the features
/// itself (`konbini_store::risk::PaymentRisk`).
pub fn decision_head(
    id: String,
    decision: &Decision,
    event: EventKind,
    customer_id: &str,
    ref_id: Option<&str>,
    now: i64,
) -> DecisionRecord {
    // Most decisions fire no rule: no serializer for an empty list.
    let names = |v: &[Arc<str>]| match v {
        [] => "[]".into(),
        v => serde_json::to_string(&v.iter().map(|s| s.as_ref()).collect::<Vec<_>>())
            .map_or_else(|_| "[]".into(), Into::into),
    };
    DecisionRecord {
        id,
        at_ms: now,
        customer_id: Some(customer_id.to_string()),
        event_kind: event.as_str().into(),
        ref_id: ref_id.map(str::to_string),
        outcome: outcome_name(decision.outcome).into(),
        decided_by: decision.decided_by.as_ref().map(|s| s.to_string()),
        fired: names(&decision.fired_live),
        shadow: names(&decision.fired_shadow),
        features: String::new(),
        case_id: None,
    }
}

pub fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Allow => "allow",
        Outcome::Review => "review",
        Outcome::StepUp => "step_up",
        Outcome::Block => "block",
    }
}

/// Runs the maintenance the counters need (dropping buckets no window reads), now and then.
pub async fn purge(db: &Db, now: i64) {
    if let Err(e) = db.write(move |c| store::purge_counters(c, now)).await {
        tracing::warn!(error = %e, "risk counter purge failed");
    }
}

/// The features of an identity event (log-in, device binding, recovery, contact change): the
/// account's age, tier and recovery hold, the device's age when there is one.
pub fn identity_features(
    c: &mut dyn Conn,
    state: &AppState,
    kind: EventKind,
    customer: &konbini_store::customers::Customer,
    device_created_ms: Option<i64>,
    device_accounts: Option<i64>,
    now: i64,
) -> Result<Features, StoreError> {
    let profile = store::profile(c, &customer.id)?;
    let mut features = Features::new();
    features.set_event_kind(kind);
    account_features(
        &mut features,
        state,
        &AccountTimes::of(customer),
        profile.payments,
        now,
    );
    if let Some(d) = device_created_ms {
        features.set_duration(DurationFeature::DeviceAge, now.saturating_sub(d).max(0));
    }
    if let Some(n) = device_accounts {
        features.set_count(CountFeature::DeviceAccounts, n);
    }
    Ok(features)
}

/// Decides an identity event and journals it (with its case), in the caller's transaction.
pub fn decide_identity(
    c: &mut dyn Conn,
    state: &AppState,
    kind: EventKind,
    customer: &konbini_store::customers::Customer,
    device_created_ms: Option<i64>,
    device_accounts: Option<i64>,
    now: i64,
) -> Result<Decision, StoreError> {
    let features = identity_features(
        c,
        state,
        kind,
        customer,
        device_created_ms,
        device_accounts,
        now,
    )?;
    let decision = state.risk.evaluate(&features);
    journal(c, &decision, &features, kind, &customer.id, None, now)?;
    Ok(decision)
}

/// The answer to an identity event the rules blocked: it names no rule.
pub fn refused(what: &str) -> crate::error::ApiError {
    crate::error::ApiError::forbidden(
        "refused",
        format!("This {what} was refused. Contact Konbini support if you think this is a mistake."),
    )
}
