//! Cost of deciding one event with the shipped default rule set ([`default_rules`]), of
//! reading journaled features back, and of checking and compiling the set when it is saved.
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
    Category, CountFeature, Decision, DurationFeature, EventKind, Features, IntFeature,
    MoneyFeature, RuleSet, Tier, Window, WindowCounter, default_rules,
};

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

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
    let set = RuleSet::from_specs(default_rules()).expect("the rule set compiles");
    let n = set.rules().len();
    let ordinary = payment_features();
    let attack = attack_features();
    let mut reused = Decision::default();
    let journaled = serde_json::to_string(&attack).expect("features serialize");
    assert_eq!(set.evaluate(&attack).fired_live.len(), 5);

    c.bench_function(
        &format!("risk/evaluate {n} default rules, ordinary payment"),
        |b| b.iter(|| set.evaluate(black_box(&ordinary))),
    );
    c.bench_function(
        &format!("risk/evaluate {n} default rules, 7pay purchase (5 fire)"),
        |b| b.iter(|| set.evaluate(black_box(&attack))),
    );
    c.bench_function(
        &format!("risk/evaluate_into {n} default rules, 7pay purchase, reused decision"),
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
    c.bench_function("risk/pack a payment's features for its journal line", |b| {
        b.iter(|| black_box(&ordinary).journal_bytes())
    });
    let packed = ordinary.journal_bytes();
    c.bench_function("risk/unpack a payment's journaled features", |b| {
        b.iter(|| Features::from_journal_bytes(black_box(&packed)))
    });
    c.bench_function("risk/journal features to JSON text", |b| {
        b.iter(|| serde_json::to_string(black_box(&attack)))
    });
    c.bench_function("risk/read journaled features from JSON text", |b| {
        b.iter(|| serde_json::from_str::<Features>(black_box(&journaled)))
    });
    c.bench_function(
        &format!("risk/parse + check + compile {n} default rules"),
        |b| b.iter(|| RuleSet::from_specs(black_box(default_rules()))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
