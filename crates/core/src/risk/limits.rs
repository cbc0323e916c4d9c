//! Customer tiers and the money limits of each tier.
//!
//! A customer's [`Tier`] follows from the age of the account, the number of payments it has
//! made and the recovery hold ([`tier_for`]). Each tier has limits on top-ups and payments
//! per transaction, per day and per month ([`TierLimits`]); [`check_limit`] says whether one
//! more top-up or payment fits. Which day and month a total belongs to (the chain's business
//! day, UTC+9) is the caller's to decide: it passes the totals in.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::catalogue::Tier;

const DAY_MS: i64 = 86_400_000;

/// An account younger than this is [`Tier::New`]: 7 days.
pub const NEW_ACCOUNT_MS: i64 = 7 * DAY_MS;
/// An account at least this old (and with [`ESTABLISHED_MIN_PAYMENTS`]) is
/// [`Tier::Established`]: 90 days.
pub const ESTABLISHED_ACCOUNT_MS: i64 = 90 * DAY_MS;
/// Payments an account needs to be [`Tier::Established`]: 20.
pub const ESTABLISHED_MIN_PAYMENTS: i64 = 20;

/// The tier of a customer.
///
/// * **new**: the account is younger than 7 days, or it is in its recovery hold (a recovered
///   account starts again from the bottom until the hold ends);
/// * **established**: the account is at least 90 days old and has made at least 20 payments;
/// * **verified**: everyone else.
///
/// ```
/// use konbini_core::risk::{Tier, tier_for};
/// const DAY: i64 = 86_400_000;
/// assert_eq!(tier_for(3 * DAY, 0, false), Tier::New);
/// assert_eq!(tier_for(30 * DAY, 40, false), Tier::Verified);
/// assert_eq!(tier_for(400 * DAY, 300, false), Tier::Established);
/// assert_eq!(tier_for(400 * DAY, 300, true), Tier::New);
/// ```
pub fn tier_for(account_age_ms: i64, payments_count: i64, recovery_hold: bool) -> Tier {
    if recovery_hold || account_age_ms < NEW_ACCOUNT_MS {
        Tier::New
    } else if account_age_ms >= ESTABLISHED_ACCOUNT_MS && payments_count >= ESTABLISHED_MIN_PAYMENTS
    {
        Tier::Established
    } else {
        Tier::Verified
    }
}

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Money into the wallet.
    Topup,
    /// Money out of the wallet at a store.
    Payment,
}

impl LimitKind {
    /// `topup` or `payment`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Topup => "topup",
            LimitKind::Payment => "payment",
        }
    }
}

/// The period a limit counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitPeriod {
    /// One transaction.
    Transaction,
    /// One business day.
    Day,
    /// One calendar month.
    Month,
}

impl LimitPeriod {
    /// `transaction`, `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitPeriod::Transaction => "transaction",
            LimitPeriod::Day => "day",
            LimitPeriod::Month => "month",
        }
    }
}

/// Limits on one kind of movement, in minor units (yen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allowance {
    /// The largest single transaction.
    pub per_transaction_minor: i64,
    /// The most in one business day.
    pub per_day_minor: i64,
    /// The most in one calendar month.
    pub per_month_minor: i64,
}

impl Allowance {
    fn get(&self, period: LimitPeriod) -> i64 {
        match period {
            LimitPeriod::Transaction => self.per_transaction_minor,
            LimitPeriod::Day => self.per_day_minor,
            LimitPeriod::Month => self.per_month_minor,
        }
    }
}

/// The limits of one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierAllowance {
    /// Top-ups.
    pub topup: Allowance,
    /// Payments.
    pub payment: Allowance,
}

impl TierAllowance {
    /// The allowance for `kind`.
    pub fn get(&self, kind: LimitKind) -> &Allowance {
        match kind {
            LimitKind::Topup => &self.topup,
            LimitKind::Payment => &self.payment,
        }
    }
}

/// Limits per tier, configurable (in the server's configuration file, for instance).
///
/// A tier left out of the configuration keeps its default; a tier given must be given in
/// full. The defaults, in yen:
///
/// | tier | top-up per transaction | per day | per month | payment per transaction | per day | per month |
/// |---|---:|---:|---:|---:|---:|---:|
/// | new | 20,000 | 30,000 | 100,000 | 30,000 | 50,000 | 150,000 |
/// | verified | 30,000 | 50,000 | 300,000 | 50,000 | 100,000 | 500,000 |
/// | established | 50,000 | 100,000 | 500,000 | 100,000 | 200,000 | 1,000,000 |
///
/// ```
/// use konbini_core::risk::TierLimits;
/// let l: TierLimits = serde_json::from_str(r#"{"new": {
///     "topup":   {"per_transaction_minor": 10000, "per_day_minor": 10000, "per_month_minor": 50000},
///     "payment": {"per_transaction_minor": 10000, "per_day_minor": 20000, "per_month_minor": 50000}}}"#).unwrap();
/// assert_eq!(l.new.topup.per_day_minor, 10_000);
/// assert_eq!(l.verified, TierLimits::default().verified);
/// assert!(l.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierLimits {
    /// Limits of [`Tier::New`].
    pub new: TierAllowance,
    /// Limits of [`Tier::Verified`].
    pub verified: TierAllowance,
    /// Limits of [`Tier::Established`].
    pub established: TierAllowance,
}

const fn allowance(
    per_transaction_minor: i64,
    per_day_minor: i64,
    per_month_minor: i64,
) -> Allowance {
    Allowance {
        per_transaction_minor,
        per_day_minor,
        per_month_minor,
    }
}

impl Default for TierLimits {
    fn default() -> TierLimits {
        TierLimits {
            new: TierAllowance {
                topup: allowance(20_000, 30_000, 100_000),
                payment: allowance(30_000, 50_000, 150_000),
            },
            verified: TierAllowance {
                topup: allowance(30_000, 50_000, 300_000),
                payment: allowance(50_000, 100_000, 500_000),
            },
            established: TierAllowance {
                topup: allowance(50_000, 100_000, 500_000),
                payment: allowance(100_000, 200_000, 1_000_000),
            },
        }
    }
}

impl TierLimits {
    /// The limits of `tier`.
    pub fn get(&self, tier: Tier) -> &TierAllowance {
        match tier {
            Tier::New => &self.new,
            Tier::Verified => &self.verified,
            Tier::Established => &self.established,
        }
    }

    /// Checks a configuration: every limit is zero or more, and within a tier and kind the
    /// per-transaction limit is at most the daily one, which is at most the monthly one.
    pub fn validate(&self) -> Result<(), String> {
        for &tier in Tier::ALL {
            for kind in [LimitKind::Topup, LimitKind::Payment] {
                let a = self.get(tier).get(kind);
                let (t, d, m) = (a.per_transaction_minor, a.per_day_minor, a.per_month_minor);
                if t < 0 || d < 0 || m < 0 {
                    return Err(format!(
                        "{tier} {} limits must not be negative",
                        kind.as_str()
                    ));
                }
                if t > d || d > m {
                    return Err(format!(
                        "{tier} {} limits must grow from transaction to day to month ({t} / {d} / {m})",
                        kind.as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The largest amount of `kind` that `tier` may still move now, given what it moved
    /// earlier today and this month (for showing in the wallet). Never negative.
    pub fn remaining(&self, tier: Tier, kind: LimitKind, day_total: i64, month_total: i64) -> i64 {
        let a = self.get(tier).get(kind);
        a.per_transaction_minor
            .min(a.per_day_minor.saturating_sub(day_total.max(0)))
            .min(a.per_month_minor.saturating_sub(month_total.max(0)))
            .max(0)
    }
}

/// A transaction over a limit: which one, and what is still allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct LimitBreach {
    /// Top-up or payment.
    pub kind: LimitKind,
    /// The customer's tier, whose limits apply.
    pub tier: Tier,
    /// The limit exceeded: the first of transaction, day, month that the amount does not fit.
    pub period: LimitPeriod,
    /// That limit, in minor units.
    pub limit_minor: i64,
    /// The largest amount that would fit every limit now (0 when nothing more fits).
    pub remaining_minor: i64,
}

impl fmt::Display for LimitBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.period {
            LimitPeriod::Transaction => "per-transaction",
            LimitPeriod::Day => "daily",
            LimitPeriod::Month => "monthly",
        };
        write!(
            f,
            "over the {what} {} limit of {} for {} customers; {} remains",
            self.kind.as_str(),
            self.limit_minor,
            self.tier,
            self.remaining_minor
        )
    }
}

/// Whether a top-up or payment of `amount` fits `tier`'s limits, given the totals of the same
/// kind already moved earlier in the business day (`day_total`) and the month
/// (`month_total`), not counting `amount`.
///
/// The limits are checked in order transaction, day, month; the first one exceeded is the
/// breach. Arithmetic is checked: a total that would overflow is over every limit. Negative
/// totals (which the caller never has) count as 0, so they cannot raise an allowance.
///
/// ```
/// use konbini_core::risk::{LimitKind, LimitPeriod, Tier, TierLimits, check_limit};
/// let l = TierLimits::default();
/// assert!(check_limit(&l, Tier::New, LimitKind::Topup, 10_000, 20_000, 20_000).is_ok());
/// let breach = check_limit(&l, Tier::New, LimitKind::Topup, 15_000, 20_000, 20_000).unwrap_err();
/// assert_eq!((breach.period, breach.limit_minor, breach.remaining_minor), (LimitPeriod::Day, 30_000, 10_000));
/// ```
pub fn check_limit(
    limits: &TierLimits,
    tier: Tier,
    kind: LimitKind,
    amount: i64,
    day_total: i64,
    month_total: i64,
) -> Result<(), LimitBreach> {
    let a = limits.get(tier).get(kind);
    let fits = |period: LimitPeriod, before: i64| {
        before
            .max(0)
            .checked_add(amount)
            .is_some_and(|total| total <= a.get(period))
    };
    let exceeded = [
        (LimitPeriod::Transaction, 0),
        (LimitPeriod::Day, day_total),
        (LimitPeriod::Month, month_total),
    ]
    .into_iter()
    .find(|&(period, before)| !fits(period, before));
    match exceeded {
        None => Ok(()),
        Some((period, _)) => Err(LimitBreach {
            kind,
            tier,
            period,
            limit_minor: a.get(period),
            remaining_minor: limits.remaining(tier, kind, day_total, month_total),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = DAY_MS;

    #[test]
    fn tiers_follow_age_history_and_the_hold() {
        assert_eq!(tier_for(0, 0, false), Tier::New);
        assert_eq!(tier_for(-5, 100, false), Tier::New);
        assert_eq!(tier_for(7 * DAY - 1, 100, false), Tier::New);
        assert_eq!(tier_for(7 * DAY, 0, false), Tier::Verified);
        assert_eq!(tier_for(90 * DAY - 1, 1_000, false), Tier::Verified);
        assert_eq!(tier_for(90 * DAY, 19, false), Tier::Verified);
        assert_eq!(tier_for(90 * DAY, 20, false), Tier::Established);
        assert_eq!(tier_for(i64::MAX, i64::MAX, false), Tier::Established);
        assert_eq!(tier_for(i64::MAX, i64::MAX, true), Tier::New);
        assert_eq!(tier_for(30 * DAY, 5, true), Tier::New);
    }

    #[test]
    fn each_limit_is_checked_in_turn() {
        let l = TierLimits::default();
        let check =
            |tier, kind, amount, day, month| check_limit(&l, tier, kind, amount, day, month);
        use LimitKind::{Payment, Topup};
        // Exactly at every limit is fine.
        assert_eq!(
            check(Tier::Verified, Topup, 30_000, 20_000, 270_000),
            Ok(())
        );
        let breach = |period, limit_minor, remaining_minor| LimitBreach {
            kind: Topup,
            tier: Tier::Verified,
            period,
            limit_minor,
            remaining_minor,
        };
        assert_eq!(
            check(Tier::Verified, Topup, 30_001, 0, 0),
            Err(breach(LimitPeriod::Transaction, 30_000, 30_000))
        );
        assert_eq!(
            check(Tier::Verified, Topup, 20_000, 40_000, 40_000),
            Err(breach(LimitPeriod::Day, 50_000, 10_000))
        );
        assert_eq!(
            check(Tier::Verified, Topup, 20_000, 0, 290_000),
            Err(breach(LimitPeriod::Month, 300_000, 10_000))
        );
        // Over the day limit already: nothing remains.
        assert_eq!(
            check(Tier::Verified, Topup, 1, 60_000, 60_000),
            Err(breach(LimitPeriod::Day, 50_000, 0))
        );
        // Payments have their own limits, and tiers theirs.
        assert_eq!(
            check(Tier::Established, Payment, 100_000, 100_000, 0),
            Ok(())
        );
        assert_eq!(
            check(Tier::New, Payment, 730_000, 0, 0).map_err(|b| (b.period, b.limit_minor)),
            Err((LimitPeriod::Transaction, 30_000))
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let l = TierLimits::default();
        let b = check_limit(&l, Tier::New, LimitKind::Payment, 1, i64::MAX, 0).unwrap_err();
        assert_eq!((b.period, b.remaining_minor), (LimitPeriod::Day, 0));
        let b = check_limit(&l, Tier::New, LimitKind::Payment, i64::MAX, 0, 0).unwrap_err();
        assert_eq!(b.period, LimitPeriod::Transaction);
        // Negative totals count as 0: they cannot raise an allowance, nor overflow.
        let b = check_limit(
            &l,
            Tier::New,
            LimitKind::Payment,
            30_001,
            i64::MIN,
            i64::MIN,
        )
        .unwrap_err();
        assert_eq!(
            (b.period, b.remaining_minor),
            (LimitPeriod::Transaction, 30_000)
        );
        assert!(check_limit(&l, Tier::New, LimitKind::Payment, 20_001, 30_000, 0).is_err());
        assert!(check_limit(&l, Tier::New, LimitKind::Payment, 20_000, 30_000, i64::MIN).is_ok());
        assert_eq!(
            l.remaining(Tier::New, LimitKind::Payment, i64::MIN, i64::MIN),
            30_000
        );
        assert_eq!(l.remaining(Tier::New, LimitKind::Payment, i64::MAX, 0), 0);
    }

    #[test]
    fn limits_are_configuration() {
        let l = TierLimits::default();
        assert_eq!(l.validate(), Ok(()));
        let json = serde_json::to_value(l).unwrap();
        assert_eq!(json["established"]["payment"]["per_month_minor"], 1_000_000);
        assert_eq!(serde_json::from_value::<TierLimits>(json).unwrap(), l);
        assert_eq!(serde_json::from_str::<TierLimits>("{}").unwrap(), l);
        for bad in [
            r#"{"gold": {}}"#,
            r#"{"new": {"topup": {"per_transaction_minor": 1, "per_day_minor": 1, "per_month_minor": 1}}}"#,
            r#"{"new": {"topup": {"per_transaction_minor": 1, "per_day_minor": 1, "per_month_minor": 1, "per_year_minor": 1},
                        "payment": {"per_transaction_minor": 1, "per_day_minor": 1, "per_month_minor": 1}}}"#,
        ] {
            assert!(serde_json::from_str::<TierLimits>(bad).is_err(), "{bad}");
        }
        let mut odd = l;
        odd.verified.payment.per_day_minor = 10;
        assert_eq!(
            odd.validate(),
            Err("verified payment limits must grow from transaction to day to month (50000 / 10 / 500000)".into())
        );
        odd.verified.payment.per_transaction_minor = -1;
        assert_eq!(
            odd.validate(),
            Err("verified payment limits must not be negative".into())
        );
    }

    #[test]
    fn breaches_explain_themselves() {
        let b = check_limit(
            &TierLimits::default(),
            Tier::New,
            LimitKind::Topup,
            15_000,
            20_000,
            0,
        )
        .unwrap_err();
        assert_eq!(
            b.to_string(),
            "over the daily topup limit of 30000 for new customers; 10000 remains"
        );
        assert_eq!(
            serde_json::to_value(b).unwrap(),
            serde_json::json!({"kind": "topup", "tier": "new", "period": "day", "limit_minor": 30_000, "remaining_minor": 10_000})
        );
    }
}
