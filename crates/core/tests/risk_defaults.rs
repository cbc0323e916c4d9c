//! The shipped default rules against the events they are for: a month of ordinary life (which
//! must never meet a rule), the 7pay patterns (which must), and the documented outcome of each
//! family of rules. Features are computed by a small simulator from a history of events, the
//! way the engine maintains them, rather than set by hand.

use std::sync::Arc;

use konbini_core::risk::*;

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;
const D: i64 = 24 * H;

fn defaults() -> RuleSet {
    RuleSet::from_specs(default_rules()).expect("the defaults compile")
}

fn names(v: &[Arc<str>]) -> Vec<&str> {
    v.iter().map(|s| &**s).collect()
}

// ---------------------------------------------------------------------------------------------
// A small simulator: a customer's history, and the features the engine would compute from it.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Payment,
    Topup,
}

#[derive(Clone, Copy)]
struct Past {
    at: i64,
    kind: Kind,
    amount: i64,
    store: usize,
}

/// Store coordinates in metres on a plane (enough for distances of a few hundred km).
const STORES: [(i64, i64); 4] = [
    (0, 0),       // 0: near home
    (1_000, 0),   // 1: near the office, 1 km away
    (400_000, 0), // 2: 400 km away (Osaka, from Tokyo)
    (40_000, 0),  // 3: 40 km away
];

fn km_between(a: usize, b: usize) -> i64 {
    let (dx, dy) = (STORES[a].0 - STORES[b].0, STORES[a].1 - STORES[b].1);
    (((dx * dx + dy * dy) as f64).sqrt() / 1_000.0).round() as i64
}

struct Customer {
    created_at: i64,
    device_bound_at: i64,
    recovery_hold: bool,
    /// Payments before the simulated period: count, sum, largest.
    prior_payments: (i64, i64, i64),
    device_accounts: i64,
    card_accounts: i64,
    history: Vec<Past>,
}

impl Customer {
    fn established() -> Customer {
        Customer {
            created_at: -400 * D,
            device_bound_at: -200 * D,
            recovery_hold: false,
            prior_payments: (300, 300 * 1_000, 3_000),
            device_accounts: 1,
            card_accounts: 1,
            history: Vec::new(),
        }
    }

    fn signing_up_at(t: i64) -> Customer {
        Customer {
            created_at: t,
            device_bound_at: t,
            prior_payments: (0, 0, 0),
            ..Customer::established()
        }
    }

    fn payments_count(&self) -> i64 {
        self.prior_payments.0
            + self
                .history
                .iter()
                .filter(|p| p.kind == Kind::Payment)
                .count() as i64
    }

    fn window(&self, now: i64, kind: Kind, w: Window) -> (i64, i64) {
        self.history
            .iter()
            .filter(|p| p.kind == kind && p.at < now && p.at > now - w.ms())
            .fold((0, 0), |(n, s), p| (n + 1, s + p.amount))
    }

    fn total_since(&self, now: i64, kind: Kind, since: i64) -> i64 {
        self.history
            .iter()
            .filter(|p| p.kind == kind && p.at < now && p.at >= since)
            .map(|p| p.amount)
            .sum()
    }

    fn tier(&self, now: i64) -> Tier {
        tier_for(
            now - self.created_at,
            self.payments_count(),
            self.recovery_hold,
        )
    }

    /// What the engine knows before any event-specific feature.
    fn features(&self, now: i64, kind: EventKind) -> Features {
        let mut f = Features::new();
        f.set_event_kind(kind)
            .set_tier(self.tier(now))
            .set_recovery_hold(self.recovery_hold)
            .set_duration(DurationFeature::AccountAge, now - self.created_at)
            .set_duration(DurationFeature::DeviceAge, now - self.device_bound_at)
            .set_count(CountFeature::DeviceAccounts, self.device_accounts)
            .set_count(CountFeature::CardAccounts, self.card_accounts);
        let (n, sum, max) = self
            .history
            .iter()
            .filter(|p| p.kind == Kind::Payment && p.at < now)
            .fold(self.prior_payments, |(n, s, m), p| {
                (n + 1, s + p.amount, m.max(p.amount))
            });
        if n > 0 {
            f.set_money(MoneyFeature::CustomerAvgPayment, sum / n)
                .set_money(MoneyFeature::CustomerMaxPayment, max);
        }
        for &w in Window::ALL {
            let (pn, ps) = self.window(now, Kind::Payment, w);
            let (tn, ts) = self.window(now, Kind::Topup, w);
            f.set_window(WindowCounter::PaymentsCount, w, pn)
                .set_window(WindowCounter::PaymentsSum, w, ps)
                .set_window(WindowCounter::DevicePaymentsCount, w, pn)
                .set_window(WindowCounter::TopupsCount, w, tn)
                .set_window(WindowCounter::TopupsSum, w, ts)
                .set_window(WindowCounter::CardTopupsCount, w, tn)
                .set_window(WindowCounter::CardTopupsSum, w, ts);
        }
        f
    }

    fn topup_features(&self, now: i64, amount: i64) -> Features {
        let mut f = self.features(now, EventKind::Topup);
        f.set_money(MoneyFeature::TopupAmount, amount);
        f
    }

    fn payment_features(
        &self,
        now: i64,
        store: usize,
        basket: &[(Category, i64, i64)],
    ) -> Features {
        let mut f = self.features(now, EventKind::Payment);
        let amount = basket.iter().map(|l| l.2).sum();
        f.set_money(MoneyFeature::PaymentAmount, amount);
        for &(c, q, a) in basket {
            f.add_basket_line(c, q, a);
        }
        // A busy konbini: the store and terminal counters are nowhere near anything.
        for (&w, n) in Window::ALL.iter().zip([15, 80, 1_000, 7_000]) {
            f.set_window(WindowCounter::StorePaymentsCount, w, n)
                .set_window(WindowCounter::TerminalPaymentsCount, w, n / 3);
        }
        // Travel: from the previous payment.
        if let Some(prev) = self
            .history
            .iter()
            .rev()
            .find(|p| p.kind == Kind::Payment && p.at < now)
        {
            let km = km_between(prev.store, store);
            let minutes = (now - prev.at) / MIN;
            f.set_int(IntFeature::TravelKm, km)
                .set_duration(DurationFeature::TravelMinutes, now - prev.at);
            if minutes > 0 {
                f.set_int(IntFeature::TravelKmPerHour, km * 60 / minutes);
            }
        }
        f
    }

    fn record(&mut self, at: i64, kind: Kind, amount: i64, store: usize) {
        self.history.push(Past {
            at,
            kind,
            amount,
            store,
        });
    }
}

/// A deterministic pseudo-random sequence (xorshift), for varied but repeatable days.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

/// A lunch basket of `amount` yen: a bento or onigiri, and a drink.
fn lunch(amount: i64) -> Vec<(Category, i64, i64)> {
    let drink = 150;
    vec![
        (Category::Food, 1 + amount / 700, amount - drink),
        (Category::Drink, 1, drink),
    ]
}

/// A month of ordinary life: a lunch of ¥500–¥1,500 every day in one of two stores 1 km
/// apart, a ¥10,000 top-up every week. Every event must be allowed, open no case, fire no
/// rule, and fit the customer's tier limits.
fn live_a_month(mut c: Customer, seed: u64) {
    let set = defaults();
    let limits = TierLimits::default();
    let mut rng = Rng(seed);
    let start = c.created_at.max(0);
    let mut events = 0;
    let mut travel_known = 0;
    for day in 0..30 {
        let midnight = start + day * D;
        if day % 7 == 0 {
            // The weekly top-up, in the morning (on sign-up day, right after signing up).
            let at = if midnight == c.created_at {
                c.created_at + 5 * MIN
            } else {
                midnight + rng.range(7 * H, 9 * H)
            };
            let f = c.topup_features(at, 10_000);
            let d = set.evaluate(&f);
            assert_eq!(
                d,
                Decision::default(),
                "day {day}, top-up, seed {seed}: {f:?}"
            );
            check_limit(
                &limits,
                c.tier(at),
                LimitKind::Topup,
                10_000,
                c.total_since(at, Kind::Topup, midnight),
                c.total_since(at, Kind::Topup, start),
            )
            .unwrap_or_else(|b| panic!("day {day}, seed {seed}: {b}"));
            c.record(at, Kind::Topup, 10_000, 0);
            events += 1;
        }
        let at = midnight + rng.range(11 * H + 30 * MIN, 13 * H + 30 * MIN);
        let store = rng.range(0, 1) as usize;
        let amount = rng.range(500, 1_500);
        let f = c.payment_features(at, store, &lunch(amount));
        // The rules see real values, not unknowns that would keep them quiet anyway.
        let known = |name: &str| f.entries().iter().any(|e| e.0 == name);
        assert!(known("customer.avg_payment") || day == 0);
        travel_known += usize::from(known("travel.km_per_hour"));
        let d = set.evaluate(&f);
        assert_eq!(
            d,
            Decision::default(),
            "day {day}, lunch ¥{amount}, seed {seed}: {f:?}"
        );
        assert!(!d.opens_case());
        check_limit(
            &limits,
            c.tier(at),
            LimitKind::Payment,
            amount,
            c.total_since(at, Kind::Payment, midnight),
            c.total_since(at, Kind::Payment, start),
        )
        .unwrap_or_else(|b| panic!("day {day}, seed {seed}: {b}"));
        c.record(at, Kind::Payment, amount, store);
        events += 1;
    }
    assert_eq!(events, 35);
    assert!(
        travel_known >= 20,
        "{travel_known} lunches knew the travel from the previous one"
    );
}

#[test]
fn a_month_of_ordinary_life_is_never_stepped_up_or_blocked() {
    for seed in 1..=40 {
        live_a_month(Customer::established(), seed);
    }
}

#[test]
fn a_new_customers_first_month_is_not_either() {
    // Signs up on day 0 (the sign-up phone is the bound device), tops up right away.
    for seed in 1..=40 {
        live_a_month(Customer::signing_up_at(8 * H), seed);
    }
}

// ---------------------------------------------------------------------------------------------
// The 7pay patterns.

/// A taken-over account: the attacker bound a phone ten minutes ago (assume the second factor
/// was obtained), then tops up ¥30,000 six times in 40 minutes.
fn top_up_run(mut victim: Customer, now: i64) -> Vec<Decision> {
    let set = defaults();
    victim.device_bound_at = now - 10 * MIN;
    let mut out = Vec::new();
    for i in 0..6 {
        let at = now + i * 8 * MIN;
        let d = set.evaluate(&victim.topup_features(at, 30_000));
        // Assume the worst: the attacker passes every step-up, so each top-up but a blocked
        // one goes through and counts.
        if d.outcome != Outcome::Block {
            victim.record(at, Kind::Topup, 30_000, 0);
        }
        out.push(d);
    }
    out
}

#[test]
fn six_top_ups_in_forty_minutes_end_blocked_with_a_case() {
    let now = 10 * D;
    let run = top_up_run(Customer::established(), now);
    let outcomes: Vec<Outcome> = run.iter().map(|d| d.outcome).collect();
    use Outcome::*;
    assert_eq!(outcomes, [Review, StepUp, StepUp, StepUp, StepUp, Block]);
    assert!(
        run.iter().all(|d| d.open_case),
        "every top-up from the new phone opens or extends a case"
    );
    assert_eq!(names(&run[0].fired_live), ["new_device.money_in"]);
    assert_eq!(
        names(&run[1].fired_live),
        ["topups.amount.step_up", "new_device.money_in"]
    );
    assert_eq!(
        names(&run[3].fired_live),
        [
            "topups.amount.step_up",
            "topups.count.review",
            "topups.amount.review",
            "new_device.money_in"
        ]
    );
    assert_eq!(run[5].decided_by.as_deref(), Some("topups.count.block"));

    // In July 2019 the victims' accounts were days old: the first-week rule steps up at once.
    let mut young = Customer::signing_up_at(7 * D);
    young.prior_payments = (0, 0, 0);
    let run = top_up_run(young, 10 * D);
    let outcomes: Vec<Outcome> = run.iter().map(|d| d.outcome).collect();
    assert_eq!(outcomes, [StepUp, StepUp, StepUp, StepUp, StepUp, Block]);
    assert!(names(&run[0].fired_live).contains(&"first_week.topups"));
    assert!(run.iter().all(|d| d.open_case));
    // And the new tier's limits refuse the ¥30,000 top-up outright.
    let b = check_limit(
        &TierLimits::default(),
        Tier::New,
        LimitKind::Topup,
        30_000,
        0,
        0,
    )
    .unwrap_err();
    assert_eq!(
        (b.period, b.remaining_minor),
        (LimitPeriod::Transaction, 20_000)
    );
}

#[test]
fn the_150_cartons_of_e_cigarettes_are_blocked() {
    // A three-day-old account, a phone bound an hour ago, ¥730,000 of e-cigarette products.
    let now = 10 * D;
    let mut victim = Customer::signing_up_at(now - 3 * D);
    victim.record(now - 2 * D, Kind::Payment, 800, 0);
    victim.device_bound_at = now - H;
    let f = victim.payment_features(now, 0, &[(Category::ECigarette, 150, 730_000)]);
    let d = defaults().evaluate(&f);
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Block, Some("basket.tobacco.block"))
    );
    assert!(d.opens_case(), "a block opens a case");
    assert_eq!(
        names(&d.fired_live),
        [
            "basket.tobacco.block",
            "basket.tobacco.step_up",
            "first_week.payments",
            "new_device.payment",
            "unusual_amount"
        ]
    );

    // On an old account from its own old phone, the basket alone still blocks it.
    let mut c = Customer::established();
    let f = c.payment_features(now, 0, &[(Category::ECigarette, 150, 730_000)]);
    assert_eq!(
        defaults().evaluate(&f).decided_by.as_deref(),
        Some("basket.tobacco.block")
    );

    // A smaller run is held for the customer's confirmation instead.
    c.record(now - D, Kind::Payment, 900, 1);
    for (basket, want) in [
        (vec![(Category::Tobacco, 19, 11_000)], Outcome::Allow),
        (
            vec![
                (Category::Tobacco, 10, 5_800),
                (Category::ECigarette, 10, 9_000),
            ],
            Outcome::StepUp,
        ),
        (vec![(Category::ECigarette, 6, 31_000)], Outcome::StepUp),
        (vec![(Category::Tobacco, 49, 29_000)], Outcome::StepUp),
        (vec![(Category::Tobacco, 50, 29_000)], Outcome::Block),
        (vec![(Category::ECigarette, 10, 100_001)], Outcome::Block),
    ] {
        let d = defaults().evaluate(&c.payment_features(now, 0, &basket));
        assert_eq!(d.outcome, want, "{basket:?}");
    }
}

#[test]
fn gift_cards_and_alcohol_have_step_up_and_block_quantities() {
    let now = 10 * D;
    let c = Customer::established();
    let set = defaults();
    let cases = [
        (vec![(Category::GiftCard, 1, 10_000)], Outcome::Allow, None),
        (
            vec![
                (Category::GiftCard, 2, 10_000),
                (Category::PrepaidCard, 1, 10_001),
            ],
            Outcome::StepUp,
            Some("basket.gift_cards.step_up"),
        ),
        (
            vec![(Category::PrepaidCard, 5, 5_000)],
            Outcome::StepUp,
            Some("basket.gift_cards.step_up"),
        ),
        (
            vec![(Category::GiftCard, 20, 20_000)],
            Outcome::Block,
            Some("basket.gift_cards.block"),
        ),
        (
            vec![(Category::GiftCard, 3, 100_001)],
            Outcome::Block,
            Some("basket.gift_cards.block"),
        ),
        (vec![(Category::Alcohol, 24, 6_000)], Outcome::Allow, None),
        (
            vec![(Category::Alcohol, 48, 12_000)],
            Outcome::StepUp,
            Some("basket.alcohol.step_up"),
        ),
        (
            vec![(Category::Alcohol, 2, 50_001)],
            Outcome::StepUp,
            Some("basket.alcohol.step_up"),
        ),
        (
            vec![(Category::Alcohol, 120, 30_000)],
            Outcome::Block,
            Some("basket.alcohol.block"),
        ),
    ];
    for (basket, outcome, by) in cases {
        let d = set.evaluate(&c.payment_features(now, 0, &basket));
        // The unusual-amount rule may join in on the larger baskets; the basket rule decides.
        assert_eq!(
            (d.outcome, d.decided_by.as_deref()),
            (outcome, by),
            "{basket:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The documented outcomes of the other rule families.

#[test]
fn impossible_travel_blocks_the_second_store() {
    let now = 10 * D;
    let mut c = Customer::established();
    c.record(now - 20 * MIN, Kind::Payment, 900, 0);
    let d = defaults().evaluate(&c.payment_features(now, 2, &lunch(900)));
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Block, Some("impossible_travel")),
        "400 km in 20 minutes"
    );
    assert!(d.opens_case());
    // 400 km in three hours is a Shinkansen ride.
    let mut c = Customer::established();
    c.record(now - 3 * H, Kind::Payment, 900, 0);
    assert_eq!(
        defaults()
            .evaluate(&c.payment_features(now, 2, &lunch(900)))
            .outcome,
        Outcome::Allow
    );
    // 40 km in two minutes is a store whose coordinates are off, not travel: under 50 km.
    let mut c = Customer::established();
    c.record(now - 2 * MIN, Kind::Payment, 900, 0);
    let f = c.payment_features(now, 3, &lunch(900));
    assert!(matches!(
        f.entries().iter().find(|e| e.0 == "travel.km_per_hour"),
        Some((_, Value::Int(1_200)))
    ));
    assert_eq!(defaults().evaluate(&f).outcome, Outcome::Allow);
}

#[test]
fn many_accounts_on_one_device_or_card() {
    let now = 10 * D;
    let set = defaults();
    let mut c = Customer::established();
    let decide = |c: &Customer, kind: EventKind| {
        let mut f = c.features(now, kind);
        match kind {
            EventKind::Topup => {
                f.set_money(MoneyFeature::TopupAmount, 5_000);
            }
            EventKind::Payment => {
                f.set_money(MoneyFeature::PaymentAmount, 900);
            }
            _ => {}
        }
        let d = set.evaluate(&f);
        (
            d.outcome,
            d.decided_by.as_deref().map(str::to_string),
            d.opens_case(),
        )
    };
    let s = |n: &str| Some(n.to_string());
    use EventKind::*;
    use Outcome::*;
    // A family tablet with two accounts: nothing.
    c.device_accounts = 2;
    for kind in EventKind::ALL {
        assert_eq!(decide(&c, *kind), (Allow, None, false), "{kind}");
    }
    c.device_accounts = 3;
    assert_eq!(
        decide(&c, Payment),
        (Review, s("shared_device.review"), true)
    );
    assert_eq!(decide(&c, Topup), (Review, s("shared_device.review"), true));
    assert_eq!(
        decide(&c, DeviceBinding),
        (Review, s("shared_device.review"), true)
    );
    assert_eq!(
        decide(&c, Login),
        (Allow, None, false),
        "logging in changes nothing"
    );
    c.device_accounts = 5;
    assert_eq!(
        decide(&c, DeviceBinding),
        (Block, s("shared_device.block"), true)
    );
    assert_eq!(
        decide(&c, Payment),
        (Review, s("shared_device.review"), true)
    );

    let mut c = Customer::established();
    c.card_accounts = 3;
    assert_eq!(
        decide(&c, CardLink),
        (Review, s("shared_card.review"), true)
    );
    assert_eq!(decide(&c, Topup), (Review, s("shared_card.review"), true));
    assert_eq!(
        decide(&c, Payment),
        (Allow, None, false),
        "paying from the wallet uses no card"
    );
    c.card_accounts = 5;
    assert_eq!(decide(&c, CardLink), (Block, s("shared_card.block"), true));
    assert_eq!(decide(&c, Topup), (Review, s("shared_card.review"), true));
}

#[test]
fn the_recovery_hold() {
    let now = 10 * D;
    let mut c = Customer::established();
    c.recovery_hold = true;
    c.device_bound_at = now - 2 * H;
    assert_eq!(c.tier(now), Tier::New);
    let set = defaults();
    let by = |f: &Features| {
        let d = set.evaluate(f);
        (d.outcome, d.decided_by.as_deref().map(str::to_string))
    };
    let s = |n: &str| Some(n.to_string());
    assert_eq!(
        by(&c.payment_features(now, 0, &lunch(1_200))),
        (Outcome::Allow, None)
    );
    assert_eq!(
        by(&c.payment_features(now, 0, &[(Category::DailyGoods, 1, 3_001)])),
        (Outcome::StepUp, s("recovery_hold.payment"))
    );
    // The server refuses these unless the device is strongly bound; what passes is reviewed.
    assert_eq!(
        by(&c.topup_features(now, 1_000)),
        (Outcome::Review, s("recovery_hold.money_in"))
    );
    assert_eq!(
        by(&c.features(now, EventKind::CardLink)),
        (Outcome::Review, s("recovery_hold.money_in"))
    );
    assert_eq!(
        by(&c.features(now, EventKind::ContactChange)),
        (Outcome::StepUp, s("recovery_hold.contact_change"))
    );
    assert_eq!(
        by(&c.features(now, EventKind::Login)),
        (Outcome::Allow, None)
    );
    // The hold outranks an analyst's whitelist below 1000.
    let mut specs = default_rules();
    specs.push(RuleSpec {
        name: "trusted.topups".into(),
        description: String::new(),
        source: "allow when event.kind == \"topup\"".into(),
        priority: 950,
        mode: Mode::Live,
        version: 1,
    });
    let with_allow = RuleSet::from_specs(specs).unwrap();
    let d = with_allow.evaluate(&c.topup_features(now, 1_000));
    assert_eq!(d.decided_by.as_deref(), Some("recovery_hold.money_in"));
}

#[test]
fn amounts_far_above_the_customers_history() {
    let now = 10 * D;
    let c = Customer::established(); // averages ¥1,000
    let set = defaults();
    let pay = |amount| set.evaluate(&c.payment_features(now, 0, &[(Category::Ticket, 1, amount)]));
    assert_eq!(
        pay(15_000).outcome,
        Outcome::Allow,
        "below the ¥20,000 floor"
    );
    let d = pay(25_000);
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::StepUp, Some("unusual_amount"))
    );
    // A big spender's ¥25,000 is ordinary.
    let mut big = Customer::established();
    big.prior_payments = (300, 300 * 8_000, 40_000);
    let d = set.evaluate(&big.payment_features(now, 0, &[(Category::Ticket, 1, 25_000)]));
    assert_eq!(d.outcome, Outcome::Allow);
    // Before a first payment there is no average: the rule stays quiet.
    let mut first = Customer::established();
    first.prior_payments = (0, 0, 0);
    let f = first.payment_features(now, 0, &[(Category::Ticket, 1, 25_000)]);
    assert!(
        !set.evaluate(&f)
            .fired_live
            .iter()
            .any(|n| &**n == "unusual_amount")
    );
}

#[test]
fn the_new_device_cool_down() {
    let now = 10 * D;
    let set = defaults();
    let mut c = Customer::established();
    c.device_bound_at = now - 2 * H;
    let d = set.evaluate(&c.payment_features(now, 0, &[(Category::DailyGoods, 1, 12_000)]));
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::StepUp, Some("new_device.payment"))
    );
    assert_eq!(
        set.evaluate(&c.payment_features(now, 0, &lunch(1_000)))
            .outcome,
        Outcome::Allow
    );
    let d = set.evaluate(&c.topup_features(now, 5_000));
    assert_eq!((d.outcome, d.open_case), (Outcome::Review, true));
    // A day later the device is trusted.
    c.device_bound_at = now - 25 * H;
    assert_eq!(
        set.evaluate(&c.payment_features(now, 0, &[(Category::DailyGoods, 1, 12_000)]))
            .outcome,
        Outcome::Allow
    );
    // The sign-up phone of a two-hour-old account is not a "new device" on an existing account.
    let c = Customer::signing_up_at(now - 2 * H);
    assert_eq!(
        set.evaluate(&c.topup_features(now, 5_000)).outcome,
        Outcome::Allow
    );
    assert_eq!(
        set.evaluate(&c.payment_features(now, 0, &[(Category::DailyGoods, 1, 12_000)]))
            .outcome,
        Outcome::Allow
    );
}

#[test]
fn top_up_velocity_per_window() {
    let now = 10 * D;
    let set = defaults();
    let outcome = |c: &Customer, amount| set.evaluate(&c.topup_features(now, amount)).outcome;
    let mut c = Customer::established();
    // Two earlier top-ups within ten minutes: the third needs a second factor.
    c.record(now - 9 * MIN, Kind::Topup, 3_000, 0);
    assert_eq!(outcome(&c, 3_000), Outcome::Allow);
    c.record(now - 5 * MIN, Kind::Topup, 3_000, 0);
    assert_eq!(outcome(&c, 3_000), Outcome::StepUp);
    // Spread over a day: the sixth top-up opens a case.
    let mut c = Customer::established();
    for i in 1..=5 {
        c.record(now - i * 3 * H, Kind::Topup, 5_000, 0);
    }
    let d = set.evaluate(&c.topup_features(now, 5_000));
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Review, Some("topups.count.review"))
    );
    // More than ¥100,000 in a day opens a case; more than ¥50,000 in an hour steps up.
    let mut c = Customer::established();
    c.record(now - 5 * H, Kind::Topup, 50_000, 0);
    c.record(now - 3 * H, Kind::Topup, 40_000, 0);
    let d = set.evaluate(&c.topup_features(now, 20_000));
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Review, Some("topups.amount.review"))
    );
    c.record(now - 30 * MIN, Kind::Topup, 40_000, 0);
    assert_eq!(outcome(&c, 20_000), Outcome::StepUp);
}
