//! The feature catalogue: every value a rule may read, with its type, argument and meaning.
//!
//! This file is the one place that lists features, categories, windows and the string values
//! of enumerated features. The checker, the evaluator's slot layout, [`Features`]' setters
//! and the generated documentation ([`catalogue_markdown`]) all read from here.
//!
//! [`Features`]: super::Features

use std::fmt;

/// Declares a small enum whose variants have fixed lower-case names in the rule language.
macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* #[doc = concat!("`", $s, "`")] $var),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The names of [`Self::ALL`], in the same order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            /// The name used in rule source.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
            /// The value named `s`, if any.
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
            /// Position in [`Self::ALL`].
            pub(crate) fn index(self) -> usize {
                self as usize
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// Serialized as its name in rule source (`"e_cigarette"`, `"24h"`, `"new"`).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                $name::parse(&s)
                    .ok_or_else(|| serde::de::Error::unknown_variant(&s, Self::NAMES))
            }
        }
    };
}

named_enum! {
    /// A basket line's category, as rules name it in `basket.quantity("...")`.
    ///
    /// The POS API accepts any lower-case category; [`Category::from_basket`] maps the ones
    /// this list does not know to [`Category::Other`].
    Category {
        Tobacco = "tobacco",
        ECigarette = "e_cigarette",
        Alcohol = "alcohol",
        GiftCard = "gift_card",
        PrepaidCard = "prepaid_card",
        Food = "food",
        Drink = "drink",
        Medicine = "medicine",
        DailyGoods = "daily_goods",
        Ticket = "ticket",
        Other = "other",
    }
}

impl Category {
    /// The category a POS basket line counts under: its own when known, else `other`.
    pub fn from_basket(category: &str) -> Category {
        Category::parse(category).unwrap_or(Category::Other)
    }
}

named_enum! {
    /// A sliding window over which the engine maintains counts and sums.
    Window {
        Minutes10 = "10m",
        Hour1 = "1h",
        Hours24 = "24h",
        Days7 = "7d",
    }
}

impl Window {
    /// The window's length in milliseconds.
    pub fn ms(self) -> i64 {
        match self {
            Window::Minutes10 => 600_000,
            Window::Hour1 => 3_600_000,
            Window::Hours24 => 86_400_000,
            Window::Days7 => 604_800_000,
        }
    }
    /// The maintained window of exactly `ms` milliseconds (`60m` is the same window as `1h`).
    pub fn from_ms(ms: i64) -> Option<Window> {
        Window::ALL.iter().copied().find(|w| w.ms() == ms)
    }
}

named_enum! {
    /// A customer's standing, the value of `customer.tier`.
    Tier {
        /// Signed up, contact points verified, little history.
        New = "new",
        /// Identity or payment history established enough for normal limits.
        Verified = "verified",
        /// Long, clean history.
        Established = "established",
    }
}

named_enum! {
    /// What is being decided, the value of `event.kind`.
    EventKind {
        Login = "login",
        DeviceBinding = "device_binding",
        Recovery = "recovery",
        ContactChange = "contact_change",
        CardLink = "card_link",
        Topup = "topup",
        Payment = "payment",
    }
}

/// The type of a feature or expression.
///
/// Money, counts and durations are all integers underneath (minor units, items,
/// milliseconds), but the checker keeps them apart: see the typing rules in the
/// [module documentation](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    /// A plain integer: a literal like `3000`, or a unitless feature like `travel.km`.
    Int,
    /// An amount in minor units of the event's currency.
    Money,
    /// Milliseconds; literals are written `30s`, `10m`, `24h`, `7d`.
    Duration,
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of strings (see [`FeatureDef::values`]).
    Str,
    /// A number of things: events, items, accounts.
    Count,
}

impl Ty {
    /// The type's name as printed in the catalogue.
    pub fn as_str(self) -> &'static str {
        match self {
            Ty::Int => "Int",
            Ty::Money => "Money",
            Ty::Duration => "Duration",
            Ty::Bool => "Bool",
            Ty::Str => "Str",
            Ty::Count => "Count",
        }
    }
    /// How error messages speak of a value of this type.
    pub(crate) fn phrase(self) -> &'static str {
        match self {
            Ty::Int => "a plain number",
            Ty::Money => "money",
            Ty::Duration => "a duration",
            Ty::Bool => "a boolean",
            Ty::Str => "a string",
            Ty::Count => "a count",
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a feature takes between parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// No parentheses: `payment.amount`.
    None,
    /// A category string: `basket.quantity("tobacco")`.
    Category,
    /// A maintained window: `topups.count(1h)`.
    Window,
}

/// Features holding a duration (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationFeature {
    /// `account.age`
    AccountAge,
    /// `since.recovery`
    SinceRecovery,
    /// `since.password_change`
    SincePasswordChange,
    /// `since.contact_change`
    SinceContactChange,
    /// `device.age`
    DeviceAge,
    /// `travel.minutes`
    TravelMinutes,
}

impl DurationFeature {
    /// Every value, in declaration order.
    pub const ALL: [DurationFeature; 6] = [
        DurationFeature::AccountAge,
        DurationFeature::SinceRecovery,
        DurationFeature::SincePasswordChange,
        DurationFeature::SinceContactChange,
        DurationFeature::DeviceAge,
        DurationFeature::TravelMinutes,
    ];
}

/// Features holding money (minor units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoneyFeature {
    /// `payment.amount`
    PaymentAmount,
    /// `topup.amount`
    TopupAmount,
    /// `customer.avg_payment`
    CustomerAvgPayment,
    /// `customer.max_payment`
    CustomerMaxPayment,
}

impl MoneyFeature {
    /// Every value, in declaration order.
    pub const ALL: [MoneyFeature; 4] = [
        MoneyFeature::PaymentAmount,
        MoneyFeature::TopupAmount,
        MoneyFeature::CustomerAvgPayment,
        MoneyFeature::CustomerMaxPayment,
    ];
}

/// Features holding a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CountFeature {
    /// `device.accounts`
    DeviceAccounts,
    /// `card.accounts`
    CardAccounts,
    /// `basket.lines`
    BasketLines,
}

impl CountFeature {
    /// Every value, in declaration order.
    pub const ALL: [CountFeature; 3] = [
        CountFeature::DeviceAccounts,
        CountFeature::CardAccounts,
        CountFeature::BasketLines,
    ];
}

/// Features holding a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntFeature {
    /// `travel.km`
    TravelKm,
    /// `travel.km_per_hour`
    TravelKmPerHour,
}

impl IntFeature {
    /// Every value, in declaration order.
    pub const ALL: [IntFeature; 2] = [IntFeature::TravelKm, IntFeature::TravelKmPerHour];
}

/// Counters the engine keeps per [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowCounter {
    /// `payments.count(w)`
    PaymentsCount,
    /// `payments.sum(w)`
    PaymentsSum,
    /// `topups.count(w)`
    TopupsCount,
    /// `topups.sum(w)`
    TopupsSum,
    /// `device.payments.count(w)`
    DevicePaymentsCount,
    /// `card.topups.count(w)`
    CardTopupsCount,
    /// `card.topups.sum(w)`
    CardTopupsSum,
    /// `store.payments.count(w)`
    StorePaymentsCount,
    /// `terminal.payments.count(w)`
    TerminalPaymentsCount,
    /// `device.payments.sum(w)`
    DevicePaymentsSum,
    /// `store.payments.sum(w)`
    StorePaymentsSum,
    /// `terminal.payments.sum(w)`
    TerminalPaymentsSum,
}

impl WindowCounter {
    /// Every counter, in declaration order.
    pub const ALL: [WindowCounter; 12] = [
        WindowCounter::PaymentsCount,
        WindowCounter::PaymentsSum,
        WindowCounter::TopupsCount,
        WindowCounter::TopupsSum,
        WindowCounter::DevicePaymentsCount,
        WindowCounter::CardTopupsCount,
        WindowCounter::CardTopupsSum,
        WindowCounter::StorePaymentsCount,
        WindowCounter::TerminalPaymentsCount,
        WindowCounter::DevicePaymentsSum,
        WindowCounter::StorePaymentsSum,
        WindowCounter::TerminalPaymentsSum,
    ];
    /// Sums are money; everything else counts events.
    pub fn ty(self) -> Ty {
        match self {
            WindowCounter::PaymentsSum
            | WindowCounter::TopupsSum
            | WindowCounter::CardTopupsSum
            | WindowCounter::DevicePaymentsSum
            | WindowCounter::StorePaymentsSum
            | WindowCounter::TerminalPaymentsSum => Ty::Money,
            _ => Ty::Count,
        }
    }
}

/// What the engine keeps per basket [`Category`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BasketMeasure {
    /// Items (sum of line quantities).
    Quantity,
    /// Money (sum of line totals).
    Amount,
}

impl BasketMeasure {
    /// Every value, in declaration order.
    pub const ALL: [BasketMeasure; 2] = [BasketMeasure::Quantity, BasketMeasure::Amount];
}

/// Which value a catalogue entry reads; decides its type, argument and storage slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureKey {
    /// A [`DurationFeature`].
    Duration(DurationFeature),
    /// A [`MoneyFeature`].
    Money(MoneyFeature),
    /// A [`CountFeature`].
    Count(CountFeature),
    /// An [`IntFeature`].
    Int(IntFeature),
    /// `customer.recovery_hold`
    RecoveryHold,
    /// `customer.tier`
    Tier,
    /// `event.kind`
    EventKind,
    /// A [`WindowCounter`], one value per [`Window`].
    Window(WindowCounter),
    /// A [`BasketMeasure`], one value per [`Category`].
    Basket(BasketMeasure),
}

/// One entry of the feature catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureDef {
    /// The dotted name used in rules.
    pub name: &'static str,
    /// Which value it reads.
    pub key: FeatureKey,
    /// One line for analysts.
    pub description: &'static str,
}

impl FeatureDef {
    /// The feature's type.
    pub fn ty(&self) -> Ty {
        match self.key {
            FeatureKey::Duration(_) => Ty::Duration,
            FeatureKey::Money(_) => Ty::Money,
            FeatureKey::Count(_) => Ty::Count,
            FeatureKey::Int(_) => Ty::Int,
            FeatureKey::RecoveryHold => Ty::Bool,
            FeatureKey::Tier | FeatureKey::EventKind => Ty::Str,
            FeatureKey::Window(w) => w.ty(),
            FeatureKey::Basket(BasketMeasure::Quantity) => Ty::Count,
            FeatureKey::Basket(BasketMeasure::Amount) => Ty::Money,
        }
    }
    /// What it takes between parentheses.
    pub fn arg(&self) -> ArgKind {
        match self.key {
            FeatureKey::Window(_) => ArgKind::Window,
            FeatureKey::Basket(_) => ArgKind::Category,
            _ => ArgKind::None,
        }
    }
    /// The strings a `Str` feature can hold (empty for other types).
    pub fn values(&self) -> &'static [&'static str] {
        match self.key {
            FeatureKey::Tier => Tier::NAMES,
            FeatureKey::EventKind => EventKind::NAMES,
            _ => &[],
        }
    }
    /// How the feature is written, with a placeholder for its argument:
    /// `topups.count(window)`, `basket.quantity(category)`.
    pub fn signature(&self) -> String {
        match self.arg() {
            ArgKind::None => self.name.to_string(),
            ArgKind::Category => format!("{}(category)", self.name),
            ArgKind::Window => format!("{}(window)", self.name),
        }
    }
}

use DurationFeature as D;
use MoneyFeature as M;
use WindowCounter as W;

const CATALOGUE: &[FeatureDef] = &[
    FeatureDef {
        name: "event.kind",
        key: FeatureKey::EventKind,
        description: "what is being decided: login, device_binding, recovery, contact_change, card_link, topup or payment",
    },
    FeatureDef {
        name: "account.age",
        key: FeatureKey::Duration(D::AccountAge),
        description: "time since the account was created",
    },
    FeatureDef {
        name: "since.recovery",
        key: FeatureKey::Duration(D::SinceRecovery),
        description: "time since the last completed account recovery (unknown if never)",
    },
    FeatureDef {
        name: "since.password_change",
        key: FeatureKey::Duration(D::SincePasswordChange),
        description: "time since the password was last changed (unknown if never)",
    },
    FeatureDef {
        name: "since.contact_change",
        key: FeatureKey::Duration(D::SinceContactChange),
        description: "time since the email address or phone number was last changed (unknown if never)",
    },
    FeatureDef {
        name: "device.age",
        key: FeatureKey::Duration(D::DeviceAge),
        description: "time since the acting device was bound to the account",
    },
    FeatureDef {
        name: "device.accounts",
        key: FeatureKey::Count(CountFeature::DeviceAccounts),
        description: "distinct accounts with a device bound from the acting phone's app installation, the acting account included (1 = only this one; unknown when the app sent no installation id)",
    },
    FeatureDef {
        name: "card.accounts",
        key: FeatureKey::Count(CountFeature::CardAccounts),
        description: "distinct accounts that have linked the card (by card fingerprint), the acting account included",
    },
    FeatureDef {
        name: "customer.tier",
        key: FeatureKey::Tier,
        description: "the customer's standing: new, verified or established",
    },
    FeatureDef {
        name: "customer.recovery_hold",
        key: FeatureKey::RecoveryHold,
        description: "true while the account is in its hold after a recovery",
    },
    FeatureDef {
        name: "customer.avg_payment",
        key: FeatureKey::Money(M::CustomerAvgPayment),
        description: "the customer's own average payment amount (unknown before the first payment)",
    },
    FeatureDef {
        name: "customer.max_payment",
        key: FeatureKey::Money(M::CustomerMaxPayment),
        description: "the customer's largest payment so far (unknown before the first payment)",
    },
    FeatureDef {
        name: "payment.amount",
        key: FeatureKey::Money(M::PaymentAmount),
        description: "the amount of the payment being decided",
    },
    FeatureDef {
        name: "topup.amount",
        key: FeatureKey::Money(M::TopupAmount),
        description: "the amount of the top-up being decided",
    },
    FeatureDef {
        name: "payments.count",
        key: FeatureKey::Window(W::PaymentsCount),
        description: "the customer's earlier payments in the window (the one being decided is not counted)",
    },
    FeatureDef {
        name: "payments.sum",
        key: FeatureKey::Window(W::PaymentsSum),
        description: "the customer's total paid in the window, before this event",
    },
    FeatureDef {
        name: "topups.count",
        key: FeatureKey::Window(W::TopupsCount),
        description: "the customer's earlier top-ups in the window (the one being decided is not counted)",
    },
    FeatureDef {
        name: "topups.sum",
        key: FeatureKey::Window(W::TopupsSum),
        description: "the customer's total topped up in the window, before this event",
    },
    FeatureDef {
        name: "device.payments.count",
        key: FeatureKey::Window(W::DevicePaymentsCount),
        description: "earlier payments from the acting device (this binding of the phone to the account) in the window",
    },
    FeatureDef {
        name: "device.payments.sum",
        key: FeatureKey::Window(W::DevicePaymentsSum),
        description: "total paid from the acting device in the window, before this event",
    },
    FeatureDef {
        name: "card.topups.count",
        key: FeatureKey::Window(W::CardTopupsCount),
        description: "earlier top-ups from the card (by fingerprint) in the window, on any account",
    },
    FeatureDef {
        name: "card.topups.sum",
        key: FeatureKey::Window(W::CardTopupsSum),
        description: "total topped up from the card (by fingerprint) in the window before this event, on any account",
    },
    FeatureDef {
        name: "store.payments.count",
        key: FeatureKey::Window(W::StorePaymentsCount),
        description: "earlier payments at the store in the window, by any customer",
    },
    FeatureDef {
        name: "store.payments.sum",
        key: FeatureKey::Window(W::StorePaymentsSum),
        description: "total paid at the store in the window before this event, by any customer",
    },
    FeatureDef {
        name: "terminal.payments.count",
        key: FeatureKey::Window(W::TerminalPaymentsCount),
        description: "earlier payments at the terminal in the window, by any customer",
    },
    FeatureDef {
        name: "terminal.payments.sum",
        key: FeatureKey::Window(W::TerminalPaymentsSum),
        description: "total paid at the terminal in the window before this event, by any customer",
    },
    FeatureDef {
        name: "basket.quantity",
        key: FeatureKey::Basket(BasketMeasure::Quantity),
        description: "items of the category in the basket",
    },
    FeatureDef {
        name: "basket.amount",
        key: FeatureKey::Basket(BasketMeasure::Amount),
        description: "money spent on the category in the basket",
    },
    FeatureDef {
        name: "basket.lines",
        key: FeatureKey::Count(CountFeature::BasketLines),
        description: "lines in the basket",
    },
    FeatureDef {
        name: "travel.km",
        key: FeatureKey::Int(IntFeature::TravelKm),
        description: "kilometres between this store and the store of the customer's previous payment (0 for the same store; unknown before a first payment)",
    },
    FeatureDef {
        name: "travel.minutes",
        key: FeatureKey::Duration(D::TravelMinutes),
        description: "time since the customer's previous payment, the one travel.km measures from",
    },
    FeatureDef {
        name: "travel.km_per_hour",
        key: FeatureKey::Int(IntFeature::TravelKmPerHour),
        description: "travel.km over travel.minutes, in km/h: above ~900 the customer would have had to fly",
    },
];

/// Every feature the engine computes, in a stable order (for docs and the admin console).
pub fn catalogue() -> &'static [FeatureDef] {
    CATALOGUE
}

/// The catalogue entry named `name`.
pub fn feature(name: &str) -> Option<&'static FeatureDef> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// The catalogue, categories and windows as a Markdown reference for analysts.
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| feature | type | meaning |\n|---|---|---|\n");
    for d in CATALOGUE {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            d.signature(),
            d.ty(),
            d.description
        ));
    }
    out.push_str(&format!(
        "\nWindows: {}. Categories: {}.\n",
        Window::NAMES.join(", "),
        Category::NAMES.join(", ")
    ));
    out
}

// Storage layout of `Features`: one `i64` slot per value, grouped by key kind. Windowed and
// per-category features have one slot per window or category.
const DURATION_BASE: usize = 0;
const MONEY_BASE: usize = DURATION_BASE + DurationFeature::ALL.len();
const COUNT_BASE: usize = MONEY_BASE + MoneyFeature::ALL.len();
const INT_BASE: usize = COUNT_BASE + CountFeature::ALL.len();
const HOLD_SLOT: usize = INT_BASE + IntFeature::ALL.len();
const TIER_SLOT: usize = HOLD_SLOT + 1;
const EVENT_SLOT: usize = TIER_SLOT + 1;
const WINDOW_BASE: usize = EVENT_SLOT + 1;
const BASKET_BASE: usize = WINDOW_BASE + WindowCounter::ALL.len() * Window::ALL.len();
/// Number of value slots in [`Features`](super::Features).
pub(crate) const SLOTS: usize = BASKET_BASE + BasketMeasure::ALL.len() * Category::ALL.len();
// `Features` records which slots are known in a `u128`, and programs address slots with a `u8`.
const _: () = assert!(SLOTS <= 128);

pub(crate) fn duration_slot(f: DurationFeature) -> usize {
    DURATION_BASE + f as usize
}
pub(crate) fn money_slot(f: MoneyFeature) -> usize {
    MONEY_BASE + f as usize
}
pub(crate) fn count_slot(f: CountFeature) -> usize {
    COUNT_BASE + f as usize
}
pub(crate) fn int_slot(f: IntFeature) -> usize {
    INT_BASE + f as usize
}
pub(crate) const fn hold_slot() -> usize {
    HOLD_SLOT
}
pub(crate) const fn tier_slot() -> usize {
    TIER_SLOT
}
pub(crate) const fn event_slot() -> usize {
    EVENT_SLOT
}
pub(crate) fn window_slot(c: WindowCounter, w: Window) -> usize {
    WINDOW_BASE + c as usize * Window::ALL.len() + w.index()
}
pub(crate) fn basket_slot(m: BasketMeasure, c: Category) -> usize {
    BASKET_BASE + m as usize * Category::ALL.len() + c.index()
}

/// The slot a feature reads, given its resolved argument (a window or category index).
pub(crate) fn slot(key: FeatureKey, arg: usize) -> usize {
    match key {
        FeatureKey::Duration(f) => duration_slot(f),
        FeatureKey::Money(f) => money_slot(f),
        FeatureKey::Count(f) => count_slot(f),
        FeatureKey::Int(f) => int_slot(f),
        FeatureKey::RecoveryHold => HOLD_SLOT,
        FeatureKey::Tier => TIER_SLOT,
        FeatureKey::EventKind => EVENT_SLOT,
        FeatureKey::Window(c) => WINDOW_BASE + c as usize * Window::ALL.len() + arg,
        FeatureKey::Basket(m) => BASKET_BASE + m as usize * Category::ALL.len() + arg,
    }
}

/// Every slot's feature and argument index, for listing a [`Features`](super::Features).
pub(crate) fn slot_owners() -> impl Iterator<Item = (usize, &'static FeatureDef, usize)> {
    CATALOGUE.iter().flat_map(|d| {
        let n = match d.arg() {
            ArgKind::None => 1,
            ArgKind::Window => Window::ALL.len(),
            ArgKind::Category => Category::ALL.len(),
        };
        (0..n).map(move |i| (slot(d.key, i), d, i))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for d in catalogue() {
            assert!(seen.insert(d.name), "duplicate feature {}", d.name);
            assert!(
                d.name
                    .split('.')
                    .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
                "{}",
                d.name
            );
            assert!(!d.description.is_empty() && !d.description.contains('\n'));
            assert_eq!(feature(d.name), Some(d));
            assert_eq!(d.ty() == Ty::Str, !d.values().is_empty());
        }
    }

    #[test]
    fn every_slot_belongs_to_exactly_one_feature_value() {
        let mut owners = vec![0u32; SLOTS];
        for (slot, _, _) in slot_owners() {
            owners[slot] += 1;
        }
        assert!(owners.iter().all(|&n| n == 1), "{owners:?}");
        // Every typed setter's key is in the catalogue, so nothing the engine sets is unreadable.
        let keys: HashSet<FeatureKey> = catalogue().iter().map(|d| d.key).collect();
        let all = DurationFeature::ALL
            .map(FeatureKey::Duration)
            .into_iter()
            .chain(MoneyFeature::ALL.map(FeatureKey::Money))
            .chain(CountFeature::ALL.map(FeatureKey::Count))
            .chain(IntFeature::ALL.map(FeatureKey::Int))
            .chain(WindowCounter::ALL.map(FeatureKey::Window))
            .chain(BasketMeasure::ALL.map(FeatureKey::Basket))
            .chain([
                FeatureKey::RecoveryHold,
                FeatureKey::Tier,
                FeatureKey::EventKind,
            ]);
        let mut n = 0;
        for k in all {
            assert!(keys.contains(&k), "{k:?} is not in the catalogue");
            n += 1;
        }
        assert_eq!(n, catalogue().len());
    }

    #[test]
    fn windows_and_categories() {
        assert_eq!(Window::from_ms(3_600_000), Some(Window::Hour1));
        assert_eq!(Window::from_ms(7_200_000), None);
        assert_eq!(Category::from_basket("onigiri"), Category::Other);
        assert_eq!(Category::from_basket("e_cigarette"), Category::ECigarette);
        let md = catalogue_markdown();
        assert!(md.contains("| `topups.count(window)` | Count |"));
        assert!(md.contains("Windows: 10m, 1h, 24h, 7d."));
    }
}
