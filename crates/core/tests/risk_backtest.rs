//! Backtesting a candidate rule over a journal: a month of ordinary lunches for fifty
//! customers, a family sharing one tablet, and a 7pay-style top-up run, journaled with the
//! decisions the default rules took.

use konbini_core::risk::*;

const MIN: i64 = 60_000;
const H: i64 = 60 * MIN;
const D: i64 = 24 * H;

fn defaults() -> RuleSet {
    RuleSet::from_specs(default_rules()).unwrap()
}

fn rule(name: &str, source: &str, priority: i32) -> Rule {
    Rule::new(RuleSpec {
        name: name.into(),
        description: String::new(),
        source: source.into(),
        priority,
        mode: Mode::Shadow,
        version: 2,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

fn base_features(kind: EventKind) -> Features {
    let mut f = Features::new();
    f.set_event_kind(kind)
        .set_tier(Tier::Established)
        .set_recovery_hold(false)
        .set_duration(DurationFeature::AccountAge, 400 * D)
        .set_duration(DurationFeature::DeviceAge, 200 * D)
        .set_money(MoneyFeature::CustomerAvgPayment, 1_000)
        .set_money(MoneyFeature::CustomerMaxPayment, 3_000)
        .set_count(CountFeature::DeviceAccounts, 1)
        .set_count(CountFeature::CardAccounts, 1);
    for &w in Window::ALL {
        for c in WindowCounter::ALL {
            f.set_window(c, w, 0);
        }
    }
    f
}

fn lunch_amount(customer: i64, day: i64) -> i64 {
    // ¥500–¥1,500; customers with a higher number tend to pricier lunches.
    500 + (customer * 13 + day * 29) % (500 + customer * 10)
}

/// Journals `features` with the decision `set` takes on them, as the engine does.
fn journal(
    set: &RuleSet,
    id: usize,
    customer: &str,
    at_ms: i64,
    features: Features,
) -> JournaledEvent {
    let d = set.evaluate(&features);
    let kind = EventKind::ALL
        .iter()
        .copied()
        .find(|k| {
            features
                .entries()
                .contains(&("event.kind".to_string(), Value::Str(k.as_str())))
        })
        .expect("the engine always sets event.kind");
    JournaledEvent {
        id: format!("dec_{id}"),
        customer_id: customer.to_string(),
        at_ms,
        event_kind: kind,
        features,
        recorded: d.outcome,
        recorded_case: d.opens_case(),
    }
}

/// 50 customers × 30 lunches; 3 family members × 10 lunches on a shared tablet
/// (`device.accounts` = 3: each lunch reviewed); one account taken over, topped up six times
/// in 40 minutes.
fn month() -> Vec<JournaledEvent> {
    let set = defaults();
    let mut out = Vec::new();
    for day in 0..30 {
        for c in 0..50 {
            let mut f = base_features(EventKind::Payment);
            let amount = lunch_amount(c, day);
            f.set_money(MoneyFeature::PaymentAmount, amount)
                .add_basket_line(Category::Food, 1, amount);
            let at = day * D + 12 * H + c * MIN;
            out.push(journal(&set, out.len(), &format!("cus_{c}"), at, f));
        }
        if day < 10 {
            for m in 0..3 {
                let mut f = base_features(EventKind::Payment);
                f.set_count(CountFeature::DeviceAccounts, 3)
                    .set_money(MoneyFeature::PaymentAmount, 800)
                    .add_basket_line(Category::Food, 1, 800);
                out.push(journal(
                    &set,
                    out.len(),
                    &format!("family_{m}"),
                    day * D + 19 * H,
                    f,
                ));
            }
        }
    }
    let start = 20 * D + 2 * H;
    for i in 0..6 {
        let mut f = base_features(EventKind::Topup);
        f.set_duration(DurationFeature::DeviceAge, 10 * MIN + i * 8 * MIN)
            .set_money(MoneyFeature::TopupAmount, 30_000)
            .set_window(
                WindowCounter::TopupsCount,
                Window::Minutes10,
                i64::from(i > 0),
            )
            .set_window(WindowCounter::TopupsCount, Window::Hour1, i)
            .set_window(WindowCounter::TopupsSum, Window::Hour1, i * 30_000)
            .set_window(WindowCounter::TopupsCount, Window::Hours24, i)
            .set_window(WindowCounter::TopupsSum, Window::Hours24, i * 30_000);
        out.push(journal(&set, out.len(), "victim", start + i * 8 * MIN, f));
    }
    out
}

#[test]
fn the_journal_is_what_the_defaults_decided() {
    let j = month();
    assert_eq!(j.len(), 50 * 30 + 3 * 10 + 6);
    let count = |o| j.iter().filter(|e| e.recorded == o).count();
    assert_eq!(count(Outcome::Review), 30 + 1);
    assert_eq!(count(Outcome::StepUp), 4);
    assert_eq!(count(Outcome::Block), 1);
    assert_eq!(j.iter().filter(|e| e.recorded_case).count(), 30 + 6);
}

#[test]
fn a_stricter_new_rule() {
    let candidate = rule(
        "topups.count.block_early",
        "block when event.kind == \"topup\" and topups.count(1h) >= 3",
        800,
    );
    let r = backtest(&candidate, &defaults(), month()).unwrap();
    assert_eq!(r.rule, "topups.count.block_early");
    assert_eq!((r.outcome, r.replaced), (Outcome::Block, false));
    assert_eq!(r.evaluated, 1_536);
    // Fires on the 4th, 5th and 6th top-ups; the 6th was blocked already, by the rule given
    // first among the blocking rules of priority 800.
    assert_eq!((r.fired, r.decided, r.suppressed, r.faulted), (3, 2, 0, 0));
    assert_eq!(r.transitions.get(Outcome::StepUp, Outcome::Block), 2);
    assert_eq!(r.transitions.get(Outcome::Allow, Outcome::Allow), 1_500);
    assert_eq!(r.transitions.get(Outcome::Review, Outcome::Review), 31);
    assert_eq!(r.changed, 2);
    assert_eq!(r.changed_vs_current, 2);
    assert_eq!(
        r.vs_current, r.transitions,
        "the journal was written by the current rules"
    );
    assert_eq!(
        (r.new_case_events, r.new_cases, r.dropped_case_events),
        (0, 0, 0)
    );
    assert_eq!(
        r.by_kind.get(&EventKind::Topup),
        Some(&KindCounts {
            evaluated: 6,
            fired: 3,
            changed: 2
        })
    );
    assert_eq!(
        r.by_kind.get(&EventKind::Payment).map(|k| k.evaluated),
        Some(1_530)
    );
    assert_eq!(r.first_at_ms, Some(12 * H));
    assert_eq!(r.last_at_ms, Some(29 * D + 12 * H + 49 * MIN));
    let ids: Vec<&str> = r.examples.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["dec_1533", "dec_1534"]);
    assert_eq!(
        r.examples[0].decided_by.as_deref(),
        Some("topups.count.block_early")
    );
    assert_eq!(
        (r.examples[0].recorded, r.examples[0].outcome),
        (Outcome::StepUp, Outcome::Block)
    );
}

#[test]
fn an_edit_replaces_the_rule_of_the_same_name() {
    // Relaxing the burst block from the sixth to the seventh top-up, drafted in shadow mode:
    // the backtest replays it as live.
    let candidate = rule(
        "topups.count.block",
        "block when event.kind == \"topup\" and topups.count(1h) >= 6",
        800,
    );
    let r = backtest(&candidate, &defaults(), month()).unwrap();
    assert!(r.replaced);
    assert_eq!((r.fired, r.decided), (0, 0));
    assert_eq!(r.changed, 1);
    assert_eq!(r.transitions.get(Outcome::Block, Outcome::StepUp), 1);
    assert_eq!(r.transitions.block.total(), 1);
    // Still stepped up and reviewed: the case opens anyway.
    assert_eq!(r.dropped_case_events, 0);
    assert!(r.examples.is_empty(), "the candidate itself fired nowhere");
}

#[test]
fn an_allow_rule_drops_cases() {
    let candidate = rule(
        "family.small_payments",
        "allow when event.kind == \"payment\" and payment.amount <= 3_000",
        700,
    );
    let r = backtest(&candidate, &defaults(), month()).unwrap();
    assert_eq!(r.fired, 1_530);
    assert_eq!(
        r.decided, 1_530,
        "an allow that fires decides when nothing outranks it"
    );
    assert_eq!(r.transitions.get(Outcome::Review, Outcome::Allow), 30);
    assert_eq!(r.dropped_case_events, 30);
    assert_eq!(r.changed, 30);
    assert_eq!(r.examples.len(), 20);
    assert!(
        r.examples
            .iter()
            .all(|e| e.customer_id.starts_with("family_"))
    );
}

#[test]
fn new_cases_count_customers() {
    let candidate = rule(
        "pricey_lunch",
        "review when event.kind == \"payment\" and payment.amount > 1_200",
        300,
    );
    let r = backtest(&candidate, &defaults(), month()).unwrap();
    let pricey: Vec<(i64, i64)> = (0..30)
        .flat_map(|day| (0..50).map(move |c| (c, day)))
        .filter(|&(c, day)| lunch_amount(c, day) > 1_200)
        .collect();
    let mut customers: Vec<i64> = pricey.iter().map(|p| p.0).collect();
    customers.sort_unstable();
    customers.dedup();
    assert!(
        pricey.len() > 20 && customers.len() > 5 && customers.len() < 50,
        "{} {}",
        pricey.len(),
        customers.len()
    );
    assert_eq!(r.fired as usize, pricey.len());
    assert_eq!(r.new_case_events as usize, pricey.len());
    assert_eq!(r.new_cases as usize, customers.len());
    assert_eq!(r.examples.len(), MAX_EXAMPLES);
}

#[test]
fn recorded_outcomes_from_older_rules_are_told_apart() {
    // Journaled when there were no rules at all: everything was allowed.
    let mut j = month();
    for e in &mut j {
        e.recorded = Outcome::Allow;
        e.recorded_case = false;
    }
    let never = rule(
        "never",
        "block when event.kind == \"login\" and account.age < 0s",
        1,
    );
    let r = backtest(&never, &defaults(), j).unwrap();
    assert_eq!(r.fired, 0);
    assert_eq!(r.changed, 36, "the current rules differ from the journal");
    assert_eq!(
        r.changed_vs_current, 0,
        "the candidate itself changes nothing"
    );
    assert_eq!(r.new_case_events, 36);
    assert_eq!(r.new_cases, 4, "three family members and the victim");
}

#[test]
fn the_replay_sets_the_event_kind_from_the_journal() {
    let mut f = Features::new();
    f.set_money(MoneyFeature::TopupAmount, 1_000);
    let event = JournaledEvent {
        id: "dec_x".into(),
        customer_id: "cus_x".into(),
        at_ms: 5,
        event_kind: EventKind::Topup,
        features: f,
        recorded: Outcome::Allow,
        recorded_case: false,
    };
    let candidate = rule("t", "step_up when event.kind == \"topup\"", 1);
    let empty = RuleSet::new(Vec::new()).unwrap();
    let r = backtest(&candidate, &empty, [event]).unwrap();
    assert_eq!((r.fired, r.changed), (1, 1));
    assert_eq!(r.transitions.get(Outcome::Allow, Outcome::StepUp), 1);
    let r = backtest(&candidate, &empty, []).unwrap();
    assert_eq!((r.evaluated, r.first_at_ms, r.by_kind.len()), (0, None, 0));
}

#[test]
fn a_full_rule_set_takes_edits_but_no_new_rule() {
    let specs = (0..MAX_RULES).map(|i| RuleSpec {
        name: format!("r{i}"),
        description: String::new(),
        source: "block when false".into(),
        priority: 0,
        mode: Mode::Live,
        version: 1,
    });
    let full = RuleSet::from_specs(specs).unwrap();
    let new = rule("extra", "review when true", 1);
    assert_eq!(
        backtest(&new, &full, []).unwrap_err(),
        DefinitionError::TooManyRules
    );
    let edit = rule("r7", "review when true", 1);
    assert!(backtest(&edit, &full, []).unwrap().replaced);
}

#[test]
fn reports_and_journal_events_are_json() {
    let candidate = rule(
        "topups.count.block_early",
        "block when event.kind == \"topup\" and topups.count(1h) >= 3",
        800,
    );
    let r = backtest(&candidate, &defaults(), month()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["transitions"]["step_up"]["block"], 2);
    assert_eq!(v["by_kind"]["topup"]["fired"], 3);
    assert_eq!(v["outcome"], "block");
    assert_eq!(v["examples"][0]["event_kind"], "topup");
    assert_eq!(serde_json::from_value::<BacktestReport>(v).unwrap(), r);

    let event = month().pop().unwrap();
    let v = serde_json::to_value(&event).unwrap();
    assert_eq!(v["event_kind"], "topup");
    // Counters known in every window are journaled as one array (10m, 1h, 24h, 7d).
    assert_eq!(v["features"]["topups.count"][1], 5);
    assert_eq!(v["recorded"], "block");
    assert_eq!(
        serde_json::from_value::<JournaledEvent>(v.clone()).unwrap(),
        event
    );
    let mut extra = v;
    extra["note"] = "x".into();
    assert!(serde_json::from_value::<JournaledEvent>(extra).is_err());
}
