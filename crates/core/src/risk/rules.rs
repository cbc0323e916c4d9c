//! Rules as analysts define them, rule sets, and the decision a rule set reaches.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ast::{CmpOp, Expr, ExprKind, Literal, Outcome, RuleAst};
use super::catalogue::{self, EventKind};
use super::eval::{Evaluation, Features, Program, Truth};
use super::{MAX_RULES, RuleError, compile, parse_rule};

/// Longest rule description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// Longest rule name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Whether a rule's outcome counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The rule decides: its outcome takes part in [`RuleSet::evaluate`]'s precedence.
    Live,
    /// The rule is evaluated and reported in [`Decision::fired_shadow`], but never changes
    /// [`Decision::outcome`]. For trying a rule on real traffic before it goes live.
    Shadow,
}

/// A rule as stored and edited: plain data, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique within a rule set: 1 to 64 of `a-z`, `0-9`, `_`, `-`, `.`.
    pub name: String,
    /// What the rule is for, for the analysts who come after.
    #[serde(default)]
    pub description: String,
    /// `<outcome> when <condition>`, in the rule language.
    pub source: String,
    /// Higher is more important; see [`RuleSet`] for what it decides.
    pub priority: i32,
    /// Live or shadow.
    pub mode: Mode,
    /// Incremented on every edit, so a journaled decision names the exact rule text.
    pub version: u32,
}

/// Why a rule or rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("a rule name must be 1 to {MAX_NAME_CHARS} characters of a-z, 0-9, `_`, `-` and `.`")]
    /// The name is empty, too long or has other characters.
    BadName,
    #[error("a rule description may be at most {MAX_DESCRIPTION_CHARS} characters")]
    /// The description is over [`MAX_DESCRIPTION_CHARS`].
    DescriptionTooLong,
    #[error("rule `{name}`: {error}")]
    /// The source does not parse or check.
    Source {
        /// The rule's name.
        name: String,
        /// What is wrong, and where.
        error: RuleError,
    },
    #[error("two rules are named `{0}`")]
    /// Two rules share a name.
    DuplicateName(String),
    #[error("a rule set may hold at most {MAX_RULES} rules")]
    /// More than [`MAX_RULES`] rules.
    TooManyRules,
}

/// A checked and compiled rule. Only [`Rule::new`] builds one, so every `Rule` parses,
/// type-checks and respects the size limits.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    description: String,
    source: String,
    priority: i32,
    mode: Mode,
    version: u32,
    ast: RuleAst,
    program: Program,
    /// The condition without its leading test of the event's kind ([`without_kind_test`]),
    /// evaluated instead of `program` once that test is known to hold.
    after_kind_test: Option<Program>,
    /// The event kinds it can fire on, as bits of their codes ([`possible_kinds`]).
    kinds: u64,
}

/// The event kinds (bit `i` for the kind of code `i`) on which `e` can be true. A conjunct
/// `event.kind == "payment"` or `event.kind in [...]` narrows it (`and` intersects, `or`
/// unites); anything else can be true on any event. In three-valued logic a false conjunct
/// makes the conjunction false whatever the rest is, so a rule is simply not evaluated on
/// an event it cannot fire on (most rules name their event; a payment evaluates half of the
/// default set). A property test checks the claim on random rules and features.
fn possible_kinds(e: &Expr) -> u64 {
    const ANY: u64 = u64::MAX;
    let is_kind =
        |x: &Expr| matches!(&x.kind, ExprKind::Feature { path, arg: None } if path == "event.kind");
    let bit = |s: &str| {
        EventKind::parse(s)
            .and_then(|k| kind_bit(k.index() as i64))
            .unwrap_or(0)
    };
    match &e.kind {
        ExprKind::And(a, b) => possible_kinds(a) & possible_kinds(b),
        ExprKind::Or(a, b) => possible_kinds(a) | possible_kinds(b),
        ExprKind::Cmp(CmpOp::Eq, a, b) => match (&a.kind, &b.kind) {
            (_, ExprKind::Lit(Literal::Str(s))) if is_kind(a) => bit(s),
            (ExprKind::Lit(Literal::Str(s)), _) if is_kind(b) => bit(s),
            _ => ANY,
        },
        ExprKind::In {
            value,
            list,
            negated: false,
        } if is_kind(value) => list.iter().fold(0, |m, i| m | bit(&i.value)),
        _ => ANY,
    }
}

/// `e` without its leftmost conjunct, when that conjunct tests only the event's kind
/// (`event.kind == "payment"`, `event.kind in [...]`); `None` otherwise. On an event of a
/// kind the rule can fire on ([`possible_kinds`]) that conjunct is true, and `true and x`
/// is `x` in three-valued logic (a kind test has no arithmetic to fault), so the shorter
/// condition gives the same result: most rules start so, and a payment skips a third of
/// their instructions.
fn without_kind_test(e: &Expr) -> Option<Expr> {
    let ExprKind::And(a, b) = &e.kind else {
        return None;
    };
    let kind_test = matches!(
        a.kind,
        ExprKind::Cmp(CmpOp::Eq, ..) | ExprKind::In { negated: false, .. }
    ) && possible_kinds(a) != u64::MAX;
    if kind_test {
        return Some((**b).clone());
    }
    let rest = without_kind_test(a)?;
    Some(Expr {
        kind: ExprKind::And(Box::new(rest), b.clone()),
        ..e.clone()
    })
}

/// The bit of the event kind of code `code` in a mask of [`possible_kinds`]; `None` for a
/// code no mask can hold.
fn kind_bit(code: i64) -> Option<u64> {
    u32::try_from(code).ok().and_then(|k| 1u64.checked_shl(k))
}

/// The bit of the event kind `features` decide; `None` when it is unknown (or not a kind),
/// and every rule is evaluated.
fn event_bit(features: &Features) -> Option<u64> {
    features.get(catalogue::event_slot()).and_then(kind_bit)
}

impl Rule {
    /// Parses, checks and compiles `spec`.
    ///
    /// ```
    /// use konbini_core::risk::{Mode, Outcome, Rule, RuleSpec};
    /// let rule = Rule::new(RuleSpec {
    ///     name: "impossible_travel".into(),
    ///     description: "two stores too far apart for the time between payments".into(),
    ///     source: "block when travel.km_per_hour > 900".into(),
    ///     priority: 100,
    ///     mode: Mode::Live,
    ///     version: 1,
    /// }).unwrap();
    /// assert_eq!(rule.outcome(), Outcome::Block);
    /// ```
    pub fn new(spec: RuleSpec) -> Result<Rule, DefinitionError> {
        let RuleSpec {
            name,
            description,
            source,
            priority,
            mode,
            version,
        } = spec;
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || !name
                .chars()
                .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
        {
            return Err(DefinitionError::BadName);
        }
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(DefinitionError::DescriptionTooLong);
        }
        let compiled = parse_rule(&source).and_then(|ast| {
            let program = compile(&ast.condition)?;
            // A part of a condition that compiled compiles.
            let after_kind_test = without_kind_test(&ast.condition)
                .map(|rest| compile(&rest))
                .transpose()?;
            Ok((ast, program, after_kind_test))
        });
        let (ast, program, after_kind_test) =
            compiled.map_err(|error| DefinitionError::Source {
                name: name.clone(),
                error,
            })?;
        Ok(Rule {
            name: name.into(),
            description,
            source,
            priority,
            mode,
            version,
            kinds: possible_kinds(&ast.condition),
            ast,
            program,
            after_kind_test,
        })
    }

    /// Whether the rule can fire on the event `features` describe: `false` only when its
    /// condition requires another `event.kind` (it would evaluate to false).
    pub fn can_fire_on(&self, features: &Features) -> bool {
        self.can_fire_on_kind(event_bit(features))
    }

    /// [`Rule::can_fire_on`] for an event kind's bit ([`event_bit`]).
    fn can_fire_on_kind(&self, bit: Option<u64>) -> bool {
        bit.is_none_or(|bit| self.kinds & bit != 0)
    }

    /// The rule's unique name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the rule is for.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The source as the analyst wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }
    /// What the rule asks for when it fires.
    pub fn outcome(&self) -> Outcome {
        self.ast.outcome
    }
    /// Higher is more important (see [`RuleSet`]).
    pub fn priority(&self) -> i32 {
        self.priority
    }
    /// Live or shadow.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The edit number of the rule.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The parsed rule; its `Display` is the canonical form of the source.
    pub fn ast(&self) -> &RuleAst {
        &self.ast
    }
    /// The compiled condition.
    pub fn program(&self) -> &Program {
        &self.program
    }
    /// The rule as plain data again (for storing or editing).
    pub fn spec(&self) -> RuleSpec {
        RuleSpec {
            name: self.name.to_string(),
            description: self.description.clone(),
            source: self.source.clone(),
            priority: self.priority,
            mode: self.mode,
            version: self.version,
        }
    }
    /// Evaluates the rule's condition.
    pub fn eval(&self, features: &Features) -> Evaluation {
        self.program.eval(features)
    }
    /// [`Rule::eval`] on an event whose kind's bit is `kind` ([`event_bit`]), for a rule
    /// that can fire on it: its leading kind test, which holds, is skipped.
    fn eval_on_kind(&self, features: &Features, kind: Option<u64>) -> Evaluation {
        match (&self.after_kind_test, kind) {
            (Some(rest), Some(_)) => rest.eval(features),
            _ => self.program.eval(features),
        }
    }
    /// [`Rule::eval`] as a rule set evaluates it ([`Rule::eval_on_kind`]); the same result,
    /// which tests check.
    #[doc(hidden)]
    pub fn eval_as_in_a_set(&self, features: &Features) -> Option<Evaluation> {
        let kind = event_bit(features);
        self.can_fire_on_kind(kind)
            .then(|| self.eval_on_kind(features, kind))
    }
    /// The same rule in another mode (for a backtest, which replays a candidate as live).
    pub(crate) fn with_mode(mut self, mode: Mode) -> Rule {
        self.mode = mode;
        self
    }
}

/// What a rule set decided for one event, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome to apply. [`Outcome::Allow`] when no live rule fired.
    pub outcome: Outcome,
    /// The live rule that set the outcome (`None` when no live rule fired).
    pub decided_by: Option<Arc<str>>,
    /// A live `review` rule fired and was not suppressed: open a case, even if a stricter
    /// outcome won (a blocked or stepped-up event can still deserve an analyst's look).
    pub open_case: bool,
    /// Live rules whose condition held, highest priority first (suppressed ones included).
    pub fired_live: Vec<Arc<str>>,
    /// Live rules that fired but were overridden by a higher-priority `allow` rule.
    pub suppressed: Vec<Arc<str>>,
    /// Shadow rules whose condition held, highest priority first.
    pub fired_shadow: Vec<Arc<str>>,
    /// The outcome had every shadow rule been live: what promoting them would change.
    pub shadow_outcome: Outcome,
    /// Rules (live or shadow) whose arithmetic overflowed or divided by zero. Such a rule did
    /// not fire on the faulty value; it is listed so that the fault is journaled and seen.
    pub faulted: Vec<Arc<str>>,
}

impl Decision {
    /// Whether this decision opens (or extends) a case on the customer: a live `review`
    /// rule fired unsuppressed ([`Decision::open_case`]), or the outcome is `block`. A
    /// blocked event always deserves an analyst's look, even when no `review` rule fired.
    pub fn opens_case(&self) -> bool {
        self.open_case || self.outcome == Outcome::Block
    }
}

impl Default for Decision {
    fn default() -> Self {
        Decision {
            outcome: Outcome::Allow,
            decided_by: None,
            open_case: false,
            fired_live: Vec::new(),
            suppressed: Vec::new(),
            fired_shadow: Vec::new(),
            shadow_outcome: Outcome::Allow,
            faulted: Vec::new(),
        }
    }
}

/// An ordered, checked collection of rules, evaluated together.
///
/// # Precedence
///
/// Every rule is evaluated; a rule *fires* when its condition is true (not when it is false
/// or unknown). Shadow rules never affect the outcome. Among the live rules that fired:
///
/// 1. **An explicit `allow` suppresses every fired rule of strictly lower priority.** Let
///    `p` be the highest priority of a fired live `allow` rule; live rules that fired with a
///    priority below `p` are suppressed (listed in [`Decision::suppressed`]). Rules of equal
///    or higher priority are not: an `allow` never overrides a rule at its own level.
/// 2. **The most severe remaining outcome wins**: `block` > `step_up` > `review` > `allow`.
///    `step_up` ranks above `review` because `review` lets the event through (and opens a
///    case) while `step_up` holds it until the customer confirms. When several rules share
///    the winning outcome, the highest-priority one (then the earliest given) is
///    [`Decision::decided_by`].
/// 3. If no live rule fired, the outcome is `allow` with no deciding rule.
///
/// A fired, unsuppressed `review` rule sets [`Decision::open_case`] whatever the outcome.
/// So: give hard stops (the recovery hold, a kill switch) the highest priorities, and an
/// `allow` whitelist a priority just above the rules it is meant to relax.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Sorted by priority, highest first; ties keep the order given.
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Builds a rule set. Names must be unique; at most [`MAX_RULES`] rules.
    pub fn new(mut rules: Vec<Rule>) -> Result<RuleSet, DefinitionError> {
        if rules.len() > MAX_RULES {
            return Err(DefinitionError::TooManyRules);
        }
        let mut names: Vec<&str> = rules.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(DefinitionError::DuplicateName(w[0].to_string()));
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.priority));
        Ok(RuleSet { rules })
    }

    /// Checks every spec and builds the set; the first bad rule is the error.
    pub fn from_specs(
        specs: impl IntoIterator<Item = RuleSpec>,
    ) -> Result<RuleSet, DefinitionError> {
        let mut rules = Vec::new();
        for spec in specs {
            if rules.len() >= MAX_RULES {
                return Err(DefinitionError::TooManyRules);
            }
            rules.push(Rule::new(spec)?);
        }
        RuleSet::new(rules)
    }

    /// The rules, highest priority first.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluates every rule against `features` and applies the precedence above.
    pub fn evaluate(&self, features: &Features) -> Decision {
        let mut d = Decision::default();
        self.evaluate_into(features, &mut d);
        d
    }

    /// Like [`RuleSet::evaluate`], reusing `out`'s vectors. With warm vectors this does not
    /// allocate at all.
    pub fn evaluate_into(&self, features: &Features, out: &mut Decision) {
        out.outcome = Outcome::Allow;
        out.decided_by = None;
        out.open_case = false;
        out.fired_live.clear();
        out.suppressed.clear();
        out.fired_shadow.clear();
        out.shadow_outcome = Outcome::Allow;
        out.faulted.clear();

        let mut fired = [false; MAX_RULES];
        let mut allow_live: Option<i32> = None;
        let mut allow_any: Option<i32> = None;
        let kind = event_bit(features);
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.can_fire_on_kind(kind) {
                continue; // false on this event, whatever the rest (see `possible_kinds`)
            }
            let e = rule.eval_on_kind(features, kind);
            if e.faulted {
                out.faulted.push(rule.name.clone());
            }
            if e.truth != Truth::True {
                continue;
            }
            if let Some(f) = fired.get_mut(i) {
                *f = true;
            }
            if rule.outcome() == Outcome::Allow {
                allow_any = allow_any.max(Some(rule.priority));
                if rule.mode == Mode::Live {
                    allow_live = allow_live.max(Some(rule.priority));
                }
            }
        }

        let mut best: Option<&Rule> = None;
        let mut best_shadow = Outcome::Allow;
        for (rule, _) in self.rules.iter().zip(fired).filter(|(_, f)| *f) {
            // Rules are sorted by priority, highest first, so the first rule reaching a
            // severity is the highest-priority one with it.
            if allow_any.is_none_or(|p| rule.priority >= p) {
                best_shadow = best_shadow.max(rule.outcome());
            }
            if rule.mode == Mode::Shadow {
                out.fired_shadow.push(rule.name.clone());
                continue;
            }
            out.fired_live.push(rule.name.clone());
            if allow_live.is_some_and(|p| rule.priority < p) {
                out.suppressed.push(rule.name.clone());
                continue;
            }
            if rule.outcome() == Outcome::Review {
                out.open_case = true;
            }
            if best.is_none_or(|b| rule.outcome() > b.outcome()) {
                best = Some(rule);
            }
        }
        if let Some(b) = best {
            out.outcome = b.outcome();
            out.decided_by = Some(b.name.clone());
        }
        out.shadow_outcome = best_shadow;
    }
}
