//! Backtesting: replaying journaled decisions against a candidate rule to see what it would
//! have changed.
//!
//! Every decision the engine takes is journaled with the [`Features`] it read and what it
//! decided. [`backtest`] replays such a journal with a candidate rule added to the current
//! rule set (or replacing the rule of the same name), as a live rule, and counts what comes
//! out differently. It is pure: the caller (`konbini risk backtest --rule FILE --from --to`,
//! the admin API) reads the journal for the period and passes it in.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::ast::Outcome;
use super::catalogue::EventKind;
use super::eval::Features;
use super::rules::{Decision, DefinitionError, Mode, Rule, RuleSet};

/// Most [`BacktestReport::examples`] kept.
pub const MAX_EXAMPLES: usize = 20;

/// One journaled decision, as the backtest reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaledEvent {
    /// The decision's id in the journal (quoted back in [`BacktestReport::examples`]).
    pub id: String,
    /// The customer the decision was about; cases are per customer.
    pub customer_id: String,
    /// When it was decided, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What was decided: login, payment, top-up... The replay sets `event.kind` from it.
    pub event_kind: EventKind,
    /// The features the engine computed, in their journal form (see [`Features::to_json`]).
    pub features: Features,
    /// The outcome applied at the time.
    pub recorded: Outcome,
    /// Whether the decision opened or extended a case ([`Decision::opens_case`]).
    pub recorded_case: bool,
}

/// How many events went to each outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeCounts {
    /// To `allow`.
    pub allow: u64,
    /// To `review`.
    pub review: u64,
    /// To `step_up`.
    pub step_up: u64,
    /// To `block`.
    pub block: u64,
}

impl OutcomeCounts {
    /// The count for `outcome`.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Allow => self.allow,
            Outcome::Review => self.review,
            Outcome::StepUp => self.step_up,
            Outcome::Block => self.block,
        }
    }
    fn slot(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Allow => &mut self.allow,
            Outcome::Review => &mut self.review,
            Outcome::StepUp => &mut self.step_up,
            Outcome::Block => &mut self.block,
        }
    }
    /// All events counted.
    pub fn total(&self) -> u64 {
        Outcome::ALL.iter().map(|&o| self.get(o)).sum()
    }
}

/// Events counted by outcome before (the row) and after (the column):
/// `matrix.allow.block` events were allowed and would now be blocked.
///
/// In JSON: `{"allow": {"allow": 9120, "review": 0, "step_up": 3, "block": 1}, "review": {...}, ...}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionMatrix {
    /// Events that were `allow`, by their new outcome.
    pub allow: OutcomeCounts,
    /// Events that were `review`, by their new outcome.
    pub review: OutcomeCounts,
    /// Events that were `step_up`, by their new outcome.
    pub step_up: OutcomeCounts,
    /// Events that were `block`, by their new outcome.
    pub block: OutcomeCounts,
}

impl TransitionMatrix {
    /// The row of events that were `from`.
    pub fn row(&self, from: Outcome) -> &OutcomeCounts {
        match from {
            Outcome::Allow => &self.allow,
            Outcome::Review => &self.review,
            Outcome::StepUp => &self.step_up,
            Outcome::Block => &self.block,
        }
    }
    /// Events that went from `from` to `to`.
    pub fn get(&self, from: Outcome, to: Outcome) -> u64 {
        self.row(from).get(to)
    }
    /// Events whose outcome differs.
    pub fn changed(&self) -> u64 {
        Outcome::ALL
            .iter()
            .flat_map(|&f| Outcome::ALL.iter().map(move |&t| (f, t)))
            .filter(|(f, t)| f != t)
            .map(|(f, t)| self.get(f, t))
            .sum()
    }
    fn add(&mut self, from: Outcome, to: Outcome) {
        let row = match from {
            Outcome::Allow => &mut self.allow,
            Outcome::Review => &mut self.review,
            Outcome::StepUp => &mut self.step_up,
            Outcome::Block => &mut self.block,
        };
        *row.slot(to) += 1;
    }
}

/// Counts for one kind of event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindCounts {
    /// Events of this kind replayed.
    pub evaluated: u64,
    /// Events where the candidate's condition held.
    pub fired: u64,
    /// Events whose new outcome differs from the recorded one.
    pub changed: u64,
}

/// An event the candidate changed, for an analyst to look up in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestExample {
    /// The journaled decision's id.
    pub id: String,
    /// Its customer.
    pub customer_id: String,
    /// When it was decided.
    pub at_ms: i64,
    /// Its kind.
    pub event_kind: EventKind,
    /// What was applied then.
    pub recorded: Outcome,
    /// What would be applied with the candidate.
    pub outcome: Outcome,
    /// The rule that would decide it.
    pub decided_by: Option<String>,
}

/// What a candidate rule would have changed over a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestReport {
    /// The candidate's name.
    pub rule: String,
    /// The candidate's outcome.
    pub outcome: Outcome,
    /// Whether the candidate replaced a rule of the same name (an edit) rather than being
    /// added (a new rule).
    pub replaced: bool,
    /// Events replayed.
    pub evaluated: u64,
    /// Events where the candidate's condition held.
    pub fired: u64,
    /// Events where the candidate decided the outcome.
    pub decided: u64,
    /// Events where it fired but a higher-priority `allow` rule suppressed it.
    pub suppressed: u64,
    /// Events where its arithmetic overflowed or divided by zero (it did not fire on them).
    pub faulted: u64,
    /// Events whose new outcome differs from the recorded one (`transitions.changed()`).
    pub changed: u64,
    /// Recorded outcome (row) to the outcome with the candidate (column).
    pub transitions: TransitionMatrix,
    /// Events whose new outcome differs from the current rule set's without the candidate.
    /// This is the candidate's own effect: it differs from [`BacktestReport::changed`] when
    /// other rules changed since the events were journaled.
    pub changed_vs_current: u64,
    /// The current rule set's outcome (row) to the outcome with the candidate (column).
    pub vs_current: TransitionMatrix,
    /// Events that would open or extend a case and did not.
    pub new_case_events: u64,
    /// Customers who would get a case and had no case-opening event in the replayed journal:
    /// the new cases analysts would see.
    pub new_cases: u64,
    /// Events that opened or extended a case and no longer would (an `allow` rule's effect).
    pub dropped_case_events: u64,
    /// The counts per kind of event.
    pub by_kind: BTreeMap<EventKind, KindCounts>,
    /// The earliest event replayed.
    pub first_at_ms: Option<i64>,
    /// The latest event replayed.
    pub last_at_ms: Option<i64>,
    /// Up to [`MAX_EXAMPLES`] events, in journal order, where the candidate fired and the
    /// outcome differs from the recorded one.
    pub examples: Vec<BacktestExample>,
}

/// Replays `journal` through `base` with `candidate` added as a live rule (replacing the
/// rule of the same name, if `base` has one, whatever its mode), and compares each new
/// decision with the recorded one and with `base`'s own.
///
/// Each event's `event.kind` is set from [`JournaledEvent::event_kind`]; other features are
/// used as journaled. The only error is a rule set that cannot take the candidate: adding it
/// would exceed [`MAX_RULES`](super::MAX_RULES).
///
/// ```
/// use konbini_core::risk::*;
/// let base = RuleSet::from_specs(default_rules()).unwrap();
/// let candidate = Rule::new(RuleSpec {
///     name: "big_topups".into(),
///     description: String::new(),
///     source: "review when event.kind == \"topup\" and topup.amount >= 30_000".into(),
///     priority: 300,
///     mode: Mode::Shadow,
///     version: 1,
/// }).unwrap();
/// let mut features = Features::new();
/// features.set_money(MoneyFeature::TopupAmount, 30_000);
/// let event = JournaledEvent {
///     id: "dec_1".into(),
///     customer_id: "cus_1".into(),
///     at_ms: 0,
///     event_kind: EventKind::Topup,
///     features,
///     recorded: Outcome::Allow,
///     recorded_case: false,
/// };
/// let report = backtest(&candidate, &base, [event]).unwrap();
/// assert_eq!((report.evaluated, report.fired, report.new_cases), (1, 1, 1));
/// assert_eq!(report.transitions.get(Outcome::Allow, Outcome::Review), 1);
/// ```
pub fn backtest(
    candidate: &Rule,
    base: &RuleSet,
    journal: impl IntoIterator<Item = JournaledEvent>,
) -> Result<BacktestReport, DefinitionError> {
    let name = candidate.name();
    let live = candidate.clone().with_mode(Mode::Live);
    let mut rules = base.rules().to_vec();
    let replaced = match rules.iter_mut().find(|r| r.name() == name) {
        Some(r) => {
            *r = live;
            true
        }
        None => {
            rules.push(live);
            false
        }
    };
    let with = RuleSet::new(rules)?;

    let mut report = BacktestReport {
        rule: name.to_string(),
        outcome: candidate.outcome(),
        replaced,
        evaluated: 0,
        fired: 0,
        decided: 0,
        suppressed: 0,
        faulted: 0,
        changed: 0,
        transitions: TransitionMatrix::default(),
        changed_vs_current: 0,
        vs_current: TransitionMatrix::default(),
        new_case_events: 0,
        new_cases: 0,
        dropped_case_events: 0,
        by_kind: BTreeMap::new(),
        first_at_ms: None,
        last_at_ms: None,
        examples: Vec::new(),
    };
    let named = |list: &[std::sync::Arc<str>]| list.iter().any(|n| **n == *name);
    let mut current = Decision::default();
    let mut new = Decision::default();
    let mut had_case: HashSet<String> = HashSet::new();
    let mut gets_case: HashSet<String> = HashSet::new();

    for event in journal {
        let JournaledEvent {
            id,
            customer_id,
            at_ms,
            event_kind,
            mut features,
            recorded,
            recorded_case,
        } = event;
        features.set_event_kind(event_kind);
        base.evaluate_into(&features, &mut current);
        with.evaluate_into(&features, &mut new);

        report.evaluated += 1;
        report.first_at_ms = Some(report.first_at_ms.map_or(at_ms, |t| t.min(at_ms)));
        report.last_at_ms = Some(report.last_at_ms.map_or(at_ms, |t| t.max(at_ms)));
        let fired = named(&new.fired_live);
        report.fired += u64::from(fired);
        report.decided += u64::from(new.decided_by.as_deref() == Some(name));
        report.suppressed += u64::from(named(&new.suppressed));
        report.faulted += u64::from(named(&new.faulted));
        report.transitions.add(recorded, new.outcome);
        report.vs_current.add(current.outcome, new.outcome);
        let changed = recorded != new.outcome;

        let kind = report.by_kind.entry(event_kind).or_default();
        kind.evaluated += 1;
        kind.fired += u64::from(fired);
        kind.changed += u64::from(changed);

        let opens = new.opens_case();
        if recorded_case {
            had_case.insert(customer_id.clone());
        }
        if opens && !recorded_case {
            report.new_case_events += 1;
            gets_case.insert(customer_id.clone());
        }
        if recorded_case && !opens {
            report.dropped_case_events += 1;
        }
        if fired && changed && report.examples.len() < MAX_EXAMPLES {
            report.examples.push(BacktestExample {
                id,
                customer_id,
                at_ms,
                event_kind,
                recorded,
                outcome: new.outcome,
                decided_by: new.decided_by.as_deref().map(str::to_string),
            });
        }
    }
    report.changed = report.transitions.changed();
    report.changed_vs_current = report.vs_current.changed();
    report.new_cases = gets_case.difference(&had_case).count() as u64;
    Ok(report)
}
