//! The risk-rule language: rules fraud analysts write, checked when saved, compiled, and
//! evaluated in line on every login, device binding, recovery, card link, top-up and payment.
//!
//! ```text
//! step_up when payment.amount > 10000 and device.age < 24h
//! block   when basket.quantity("tobacco") + basket.quantity("e_cigarette") >= 20 and account.age < 30d
//! review  when topups.count(1h) >= 4 or card.accounts >= 3
//! block   when travel.km_per_hour > 900
//! allow   when customer.tier == "established" and payment.amount <= 3000
//! ```
//!
//! A rule is `<outcome> when <condition>`. The outcome is `allow`, `step_up`, `review` or
//! `block`; the condition reads *features* the engine computed for the event (the
//! [catalogue](mod@catalogue) lists them) and combines them with comparisons, arithmetic and
//! logic.
//!
//! # Pipeline
//!
//! 1. [`parse_rule`] (or [`parse_expr`]) turns source into a [`RuleAst`]. Errors carry a
//!    1-based line and column: ``expected an expression after `and` at 1:34``.
//! 2. [`compile`] type-checks the condition against the [catalogue](mod@catalogue) and
//!    compiles it to a [`Program`]: unknown features, wrong arguments, type mismatches and
//!    non-boolean conditions are refused here, when the rule is saved, never at evaluation.
//! 3. The engine fills a [`Features`] value for the event and calls [`Program::eval`], or
//!    [`RuleSet::evaluate`] for a whole rule set, which returns a [`Decision`].
//!
//! [`Rule::new`] does steps 1 and 2 for a [`RuleSpec`] (name, description, source, priority,
//! live/shadow mode, version).
//!
//! Around the language:
//!
//! * [`default_rules`] is the rule set Konbini ships ([`defaults`] explains its levels);
//! * [`Features::to_json`] / [`Features::from_json`] (and serde) are the journal form of the
//!   features a decision read;
//! * [`backtest`] replays journaled events ([`JournaledEvent`]) with a candidate rule and
//!   reports what it would have changed ([`BacktestReport`]);
//! * [`tier_for`], [`TierLimits`] and [`check_limit`] are the customer tiers and their money
//!   limits.
//!
//! `docs/risk.md` is the analysts' guide to all of it.
//!
//! # Grammar
//!
//! ```text
//! rule       = outcome "when" expr ;
//! outcome    = "allow" | "step_up" | "review" | "block" ;
//! expr       = and_expr { "or" and_expr } ;
//! and_expr   = not_expr { "and" not_expr } ;
//! not_expr   = "not" not_expr | comparison ;
//! comparison = sum [ cmp_op sum | [ "not" ] "in" list ] ;     (* comparisons do not chain *)
//! cmp_op     = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
//! sum        = product { ( "+" | "-" ) product } ;
//! product    = unary { ( "*" | "/" ) unary } ;
//! unary      = "-" unary | primary ;
//! primary    = literal | feature | "(" expr ")" ;
//! feature    = IDENT { "." IDENT } [ "(" literal ")" ] ;
//! literal    = INT | DURATION | STRING | "true" | "false" ;
//! list       = "[" STRING { "," STRING } [ "," ] "]" ;
//!
//! INT        = DIGIT { DIGIT | "_" } ;            (* "_" only between digits: 730_000 *)
//! DURATION   = INT ( "s" | "m" | "h" | "d" ) ;    (* 30s 10m 24h 7d: milliseconds *)
//! STRING     = '"' { CHAR | '\"' | '\\' } '"' ;   (* one line, at most 64 characters *)
//! IDENT      = ( LETTER | "_" ) { LETTER | DIGIT | "_" } ;  (* not a keyword *)
//! keywords   = "when" | "and" | "or" | "not" | "in" | "true" | "false" ;
//! comment    = "#" { any character but a newline } ;
//! ```
//!
//! Operators from loosest to tightest: `or`, `and`, `not`, comparisons and `in`, `+ -`,
//! `* /`, unary `-`. Binary operators associate to the left. Whitespace and newlines are
//! free; a `#` starts a comment that runs to the end of the line.
//!
//! # Types
//!
//! Every feature has a [`Ty`]: `Int`, `Money` (minor units), `Duration` (milliseconds),
//! `Count`, `Bool` or `Str` (one of a fixed list of values). Literals are `Int`
//! (`3000`), `Duration` (`24h`), `Str` (`"tobacco"`) and `Bool`.
//!
//! * Comparisons need operands of the same type, except that a plain `Int` compares with
//!   `Money` and `Count` (`payment.amount > 10000`, `card.accounts >= 3`). A `Duration`
//!   compares only with a duration: `device.age > 10` is an error, `device.age > 10h` is not.
//!   Strings and booleans allow only `==` and `!=`; a string feature is compared with one of
//!   its values (`customer.tier == "new"`), and `in` takes a list of its values.
//! * `+` and `-` combine two values of one type, or `Money`/`Count` with `Int`. `*` scales
//!   any number by an `Int`. `/` divides by an `Int` (same type back) or by the same type
//!   (a plain `Int` ratio, truncated towards zero): `payment.amount / customer.avg_payment`.
//! * `and`, `or` and `not` take booleans, and a rule's condition must be boolean.
//! * A window argument must be one of the maintained windows (10m, 1h, 24h, 7d); a category
//!   argument one of the [`Category`] names. Misspelt features, categories and values get a
//!   "did you mean" suggestion.
//!
//! # Evaluation
//!
//! A feature the engine did not set is *unknown*; a comparison with an unknown is unknown,
//! and `not`, `and`, `or` follow three-valued logic (`false and unknown` is false, `true or
//! unknown` is true). **A rule fires only when its condition is true.** Arithmetic is checked:
//! an overflow or a division by zero makes that value unknown (so a comparison using it does
//! not hold and the rule does not fire) and the rule is listed in [`Decision::faulted`]. No
//! evaluation panics, loops or allocates.
//!
//! # Limits
//!
//! A rule's source is at most [`MAX_SOURCE_BYTES`] bytes, its tree at most [`MAX_NODES`]
//! nodes (list items included) and [`MAX_DEPTH`] levels deep, a rule set at most
//! [`MAX_RULES`] rules. A compiled rule has fewer than two instructions per node and runs each
//! at most once, so an event costs a bounded number of steps however the rules are written.
//!
//! # Precedence
//!
//! See [`RuleSet`]: an explicit `allow` suppresses fired rules of lower priority, then the
//! most severe remaining outcome wins (`block` > `step_up` > `review` > `allow`); shadow
//! rules are reported but never decide.

#![warn(missing_docs)]

use std::fmt;

use serde::Serialize;

mod ast;
mod backtest;
pub mod catalogue;
pub mod defaults;
mod eval;
mod journal;
mod lexer;
mod limits;
mod parser;
mod rules;
mod types;

pub use ast::{Arg, ArithOp, CmpOp, Expr, ExprKind, ListItem, Literal, Outcome, RuleAst, TimeUnit};
pub use backtest::{
    BacktestExample, BacktestReport, JournaledEvent, KindCounts, MAX_EXAMPLES, OutcomeCounts,
    TransitionMatrix, backtest,
};
pub use catalogue::{
    ArgKind, BasketMeasure, Category, CountFeature, DurationFeature, EventKind, FeatureDef,
    FeatureKey, IntFeature, MoneyFeature, Tier, Ty, Window, WindowCounter, catalogue,
    catalogue_markdown,
};
pub use defaults::{default_rules, default_rules_markdown};
pub use eval::{Evaluation, Features, Program, Truth, Value};
pub use lexer::KEYWORDS;
pub use limits::{
    Allowance, ESTABLISHED_ACCOUNT_MS, ESTABLISHED_MIN_PAYMENTS, LimitBreach, LimitKind,
    LimitPeriod, NEW_ACCOUNT_MS, TierAllowance, TierLimits, check_limit, tier_for,
};
pub use parser::{parse_expr, parse_rule};
pub use rules::{
    Decision, DefinitionError, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, Mode, Rule, RuleSet, RuleSpec,
};
pub use types::compile;

/// Longest rule source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 8 * 1024;
/// Most nodes (operators, features, literals, list items) in one rule.
pub const MAX_NODES: usize = 256;
/// Deepest nesting of one rule's tree.
pub const MAX_DEPTH: usize = 64;
/// Most strings in one `in [...]` list.
pub const MAX_LIST_ITEMS: usize = 64;
/// Longest name segment (`payment`, `amount`) or number suffix, in characters.
pub const MAX_IDENT_CHARS: usize = 64;
/// Longest string literal, in characters.
pub const MAX_STRING_CHARS: usize = 64;
/// Most rules in one rule set.
pub const MAX_RULES: usize = 256;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1, in characters.
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// The class of a [`RuleError`], for callers that react to it (an API error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The text is not a rule: a bad character, a missing operand, an unclosed parenthesis.
    Syntax,
    /// A feature name that is not in the catalogue.
    UnknownFeature,
    /// A feature given no argument, an argument it does not take, or one of the wrong kind.
    BadArgument,
    /// A window that the engine does not maintain (only 10m, 1h, 24h and 7d are).
    BadWindow,
    /// A basket category that is not in [`Category`].
    UnknownCategory,
    /// A string that a `Str` feature never holds (`customer.tier == "gold"`).
    UnknownValue,
    /// Operands whose types do not go together.
    TypeMismatch,
    /// A condition that is not true or false.
    NotBoolean,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_NODES`] nodes, or a source, name, string or list over its limit.
    TooLarge,
}

impl ErrorKind {
    /// A stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownFeature => "unknown_feature",
            ErrorKind::BadArgument => "bad_argument",
            ErrorKind::BadWindow => "bad_window",
            ErrorKind::UnknownCategory => "unknown_category",
            ErrorKind::UnknownValue => "unknown_value",
            ErrorKind::TypeMismatch => "type_mismatch",
            ErrorKind::NotBoolean => "not_boolean",
            ErrorKind::TooDeep => "too_deep",
            ErrorKind::TooLarge => "too_large",
        }
    }
}

/// Why rule source was refused, and where.
///
/// Displays as `<message> at <line>:<col>`, followed by ` (<help>)` when there is a hint:
/// ``unknown feature `payment.amont` at 1:12 (did you mean `payment.amount`?)``.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleError {
    /// The class of error.
    pub kind: ErrorKind,
    /// Where the offending token starts.
    pub pos: Pos,
    /// What is wrong, in a sentence without the position.
    pub message: String,
    /// A hint: a "did you mean" suggestion, the allowed values, what was found instead.
    pub help: Option<String>,
}

impl RuleError {
    pub(crate) fn new(kind: ErrorKind, pos: Pos, message: impl Into<String>) -> RuleError {
        RuleError {
            kind,
            pos,
            message: message.into(),
            help: None,
        }
    }
    pub(crate) fn with_help(mut self, help: String) -> RuleError {
        self.help = Some(help);
        self
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.message, self.pos)?;
        if let Some(h) = &self.help {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleError {}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn suggest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    const MAX_CHARS: usize = 64;
    let w: Vec<char> = word.chars().collect();
    if w.is_empty() || w.len() > MAX_CHARS {
        return None;
    }
    let limit = (w.len() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (edit_distance(&w, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
/// neighbouring characters each cost 1.
fn edit_distance(a: &[char], b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let n = b.len();
    // Three rows: two back (for swaps), previous, current.
    let mut prev2 = vec![0usize; n + 1];
    let mut prev: Vec<usize> = (0..=n).collect();
    let mut cur = vec![0usize; n + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=n {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["payment.amount", "payments.count", "topup.amount"];
        assert_eq!(suggest("payment.amont", names), Some("payment.amount"));
        assert_eq!(suggest("payment.ammount", names), Some("payment.amount"));
        assert_eq!(suggest("paymnet.amount", names), Some("payment.amount"));
        assert_eq!(suggest("device.age", names), None);
        assert_eq!(suggest("", names), None);
        assert_eq!(
            suggest("tobaco", Category::NAMES.iter().copied()),
            Some("tobacco")
        );
        assert_eq!(
            suggest("ecigarette", Category::NAMES.iter().copied()),
            Some("e_cigarette")
        );
        assert_eq!(edit_distance(&['a', 'b'], "ba"), 1);
        assert_eq!(edit_distance(&[], "abc"), 3);
    }

    #[test]
    fn error_display() {
        let e = RuleError::new(ErrorKind::Syntax, Pos { line: 2, col: 7 }, "oops");
        assert_eq!(e.to_string(), "oops at 2:7");
        assert_eq!(
            e.with_help("try this".into()).to_string(),
            "oops at 2:7 (try this)"
        );
        assert_eq!(ErrorKind::UnknownFeature.as_str(), "unknown_feature");
    }
}
