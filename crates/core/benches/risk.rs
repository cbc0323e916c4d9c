//! Cost of deciding one event with a default-like rule set (16 live rules and 1 shadow rule,
//! the shape issue 4 ships), and of checking and compiling that set when it is saved.
//!
//! ```sh
//! cargo bench -p konbini-core --bench risk
//! ```
//!
//! The budget is "well under a millisecond of CPU" per event for the whole risk step
//! (PRODUCT.md §6); the rule evaluation part should stay well under 20 µs.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use konbini_core::risk::{
    Category, CountFeature, Decision, DurationFeature, EventKind, Features, IntFeature, Mode,
    MoneyFeature, RuleSet, RuleSpec, Tier, Window, WindowCounter,
};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

const RULES: &[(&str, &str, i32, Mode)] = &[
    (
        "recovery_hold.payment",
        "block when customer.recovery_hold and event.kind == \"payment\" and payment.amount > 5_000",
        1000,
        Mode::Live,
    ),
    (
        "recovery_hold.sensitive",
        "step_up when customer.recovery_hold and event.kind in [\"topup\", \"card_link\", \"contact_change\"]",
        1000,
        Mode::Live,
    ),
    (
        "impossible_travel",
        "block when travel.km_per_hour > 900 and travel.km > 100",
        900,
        Mode::Live,
    ),
    (
        "basket.tobacco_new_account",
        "block when basket.quantity(\"tobacco\") + basket.quantity(\"e_cigarette\") >= 20 and account.age < 30d",
        800,
        Mode::Live,
    ),
    (
        "first_week.daily_limit",
        "block when account.age < 7d and payments.sum(24h) + payment.amount > 50_000",
        700,
        Mode::Live,
    ),
    (
        "topups.burst",
        "block when topups.count(1h) >= 6 or topups.sum(24h) + topup.amount > 150_000",
        650,
        Mode::Live,
    ),
    (
        "trusted.small_payment",
        "allow when customer.tier == \"established\" and payment.amount <= 3_000 and device.age > 30d",
        500,
        Mode::Live,
    ),
    (
        "new_device.payment",
        "step_up when event.kind == \"payment\" and device.age < 24h and payment.amount > 10_000",
        400,
        Mode::Live,
    ),
    (
        "new_device.topup",
        "step_up when event.kind == \"topup\" and device.age < 24h and topup.amount > 10_000",
        400,
        Mode::Live,
    ),
    (
        "basket.gift_cards",
        "step_up when basket.amount(\"gift_card\") + basket.amount(\"prepaid_card\") > 20_000 and account.age < 7d",
        400,
        Mode::Live,
    ),
    (
        "unusual_amount",
        "step_up when customer.max_payment > 0 and payment.amount > 3 * customer.max_payment and payment.amount > 5_000",
        390,
        Mode::Live,
    ),
    (
        "contact_change.recent",
        "step_up when since.contact_change < 24h and (payment.amount > 3_000 or topup.amount > 3_000)",
        380,
        Mode::Live,
    ),
    (
        "shared_device.login",
        "step_up when event.kind == \"login\" and device.accounts >= 4",
        370,
        Mode::Live,
    ),
    (
        "topups.velocity",
        "review when topups.count(1h) >= 4 or topups.sum(1h) >= 50_000",
        300,
        Mode::Live,
    ),
    (
        "shared_card",
        "review when card.accounts >= 3 or card.topups.count(24h) >= 5",
        300,
        Mode::Live,
    ),
    (
        "terminal.burst",
        "review when terminal.payments.count(10m) > 60 or store.payments.count(10m) > 400",
        200,
        Mode::Live,
    ),
    (
        "card.velocity_trial",
        "block when card.topups.sum(24h) > 100_000 and customer.tier != \"established\"",
        600,
        Mode::Shadow,
    ),
];

fn specs() -> Vec<RuleSpec> {
    RULES
        .iter()
        .map(|(name, source, priority, mode)| RuleSpec {
            name: name.to_string(),
            description: String::new(),
            source: source.to_string(),
            priority: *priority,
            mode: *mode,
            version: 1,
        })
        .collect()
}

/// A verified customer's lunch: every feature known, as the engine fills them for a payment.
fn payment_features() -> Features {
    let mut f = Features::new();
    f.set_event_kind(EventKind::Payment)
        .set_tier(Tier::Verified)
        .set_recovery_hold(false)
        .set_duration(DurationFeature::AccountAge, 120 * D)
        .set_duration(DurationFeature::DeviceAge, 90 * D)
        .set_duration(DurationFeature::SinceContactChange, 100 * D)
        .set_duration(DurationFeature::SincePasswordChange, 100 * D)
        .set_duration(DurationFeature::TravelMinutes, 3 * H)
        .set_money(MoneyFeature::PaymentAmount, 1_480)
        .set_money(MoneyFeature::CustomerAvgPayment, 900)
        .set_money(MoneyFeature::CustomerMaxPayment, 8_000)
        .set_count(CountFeature::DeviceAccounts, 1)
        .set_count(CountFeature::CardAccounts, 1)
        .set_int(IntFeature::TravelKm, 4)
        .set_int(IntFeature::TravelKmPerHour, 1);
    for &w in Window::ALL {
        for c in WindowCounter::ALL {
            f.set_window(c, w, 2);
        }
    }
    f.add_basket_line(Category::Food, 2, 320)
        .add_basket_line(Category::Drink, 1, 150)
        .add_basket_line(Category::Food, 1, 1_010);
    f
}

/// The 7pay purchase: most rules fire, nothing short-circuits early.
fn attack_features() -> Features {
    let mut f = payment_features();
    f.set_tier(Tier::New)
        .set_duration(DurationFeature::AccountAge, 3 * D)
        .set_duration(DurationFeature::DeviceAge, H)
        .set_money(MoneyFeature::PaymentAmount, 730_000)
        .start_basket()
        .add_basket_line(Category::ECigarette, 150, 730_000);
    f
}

fn bench(c: &mut Criterion) {
    let set = RuleSet::from_specs(specs()).expect("the rule set compiles");
    let ordinary = payment_features();
    let attack = attack_features();
    let mut reused = Decision::default();

    c.bench_function("risk/evaluate 17 rules, ordinary payment", |b| {
        b.iter(|| set.evaluate(black_box(&ordinary)))
    });
    c.bench_function("risk/evaluate 17 rules, 7pay purchase (4 fire)", |b| {
        b.iter(|| set.evaluate(black_box(&attack)))
    });
    c.bench_function(
        "risk/evaluate_into 17 rules, 7pay purchase, reused decision",
        |b| {
            b.iter(|| {
                set.evaluate_into(black_box(&attack), &mut reused);
                reused.outcome
            })
        },
    );
    c.bench_function("risk/fill features for a payment", |b| {
        b.iter(payment_features)
    });
    c.bench_function("risk/parse + check + compile 17 rules", |b| {
        b.iter(|| RuleSet::from_specs(black_box(specs())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
