//! The syntax tree of a rule, and its pretty-printer.
//!
//! `Display` prints the canonical form of a rule: single spaces, the fewest parentheses that
//! keep the tree's shape, integers without separators, durations and strings as written.
//! Parsing what `Display` prints gives back an equal tree (positions aside), which the fuzz
//! tests check on random trees.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Pos;

/// What a rule asks for when its condition holds, from least to most severe.
///
/// The derived order is the severity order used by [`RuleSet`](super::RuleSet):
/// `Allow < Review < StepUp < Block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Let the event through. As a rule outcome it is an explicit whitelist (see
    /// [`RuleSet`](super::RuleSet) for how it suppresses lower-priority rules).
    Allow,
    /// Let the event through and open a case for an analyst.
    Review,
    /// Ask the customer to confirm with a second factor before going on.
    StepUp,
    /// Refuse the event.
    Block,
}

impl Outcome {
    /// Every outcome, least severe first.
    pub const ALL: [Outcome; 4] = [
        Outcome::Allow,
        Outcome::Review,
        Outcome::StepUp,
        Outcome::Block,
    ];

    /// The keyword that names the outcome in rule source.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Review => "review",
            Outcome::StepUp => "step_up",
            Outcome::Block => "block",
        }
    }

    /// The outcome named by `word`, if any.
    pub fn parse(word: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == word)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of a duration literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeUnit {
    /// `s`
    Seconds,
    /// `m`
    Minutes,
    /// `h`
    Hours,
    /// `d`
    Days,
}

impl TimeUnit {
    /// Milliseconds in one unit.
    pub fn ms(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000,
            TimeUnit::Minutes => 60_000,
            TimeUnit::Hours => 3_600_000,
            TimeUnit::Days => 86_400_000,
        }
    }
    /// The letter written after the number: `s`, `m`, `h` or `d`.
    pub fn suffix(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Minutes => "m",
            TimeUnit::Hours => "h",
            TimeUnit::Days => "d",
        }
    }
    pub(crate) fn from_suffix(s: &str) -> Option<TimeUnit> {
        Some(match s {
            "s" => TimeUnit::Seconds,
            "m" => TimeUnit::Minutes,
            "h" => TimeUnit::Hours,
            "d" => TimeUnit::Days,
            _ => return None,
        })
    }
}

/// A literal value. Integer and duration amounts are never negative (a minus sign is the
/// [`ExprKind::Neg`] operator), and a duration's milliseconds always fit in an `i64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    /// `730_000`
    Int(i64),
    /// `amount` units, e.g. `24h` is `Duration(24, Hours)`: 86,400,000 ms.
    Duration(i64, TimeUnit),
    /// `"tobacco"`, unescaped.
    Str(String),
    /// `true` or `false`.
    Bool(bool),
}

impl Literal {
    /// Milliseconds of a duration literal (`None` for other literals).
    pub fn duration_ms(&self) -> Option<i64> {
        match self {
            Literal::Duration(n, u) => n.checked_mul(u.ms()),
            _ => None,
        }
    }
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`, truncating towards zero.
    Div,
}

impl ArithOp {
    /// How the operator is written.
    pub fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// How the operator is written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
    /// True for `==` and `!=`, the only comparisons defined on strings and booleans.
    pub fn is_equality(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A string in an `in [...]` list, with its position (for "unknown value" errors).
#[derive(Debug, Clone, Eq)]
pub struct ListItem {
    /// The string, unescaped.
    pub value: String,
    /// Where its literal starts.
    pub pos: Pos,
}

impl PartialEq for ListItem {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// The argument of a feature function, e.g. `"tobacco"` in `basket.quantity("tobacco")`.
#[derive(Debug, Clone, Eq)]
pub struct Arg {
    /// The literal.
    pub value: Literal,
    /// Where it starts.
    pub pos: Pos,
}

impl PartialEq for Arg {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

/// The shape of an expression node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    /// A literal value.
    Lit(Literal),
    /// A feature: its dotted path (`payment.amount`) and, for feature functions, the one
    /// literal argument (`topups.count(1h)`).
    Feature {
        /// The dotted name, e.g. `basket.quantity`.
        path: String,
        /// The argument between parentheses, if any.
        arg: Option<Arg>,
    },
    /// `-x`
    Neg(Box<Expr>),
    /// `not x`
    Not(Box<Expr>),
    /// `x + y`, `x - y`, `x * y`, `x / y`
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// `x == y` and the other comparisons. Comparisons do not chain.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `x and y`
    And(Box<Expr>, Box<Expr>),
    /// `x or y`
    Or(Box<Expr>, Box<Expr>),
    /// `x in ["a", "b"]`, or `x not in [...]` when `negated`.
    In {
        /// The string tested.
        value: Box<Expr>,
        /// The strings it is tested against.
        list: Vec<ListItem>,
        /// `not in`.
        negated: bool,
    },
}

/// An expression node and where it is in the source.
///
/// Equality compares the tree only: two expressions that differ only in positions (or in
/// redundant parentheses, which the tree does not keep) are equal.
#[derive(Debug, Clone, Eq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where the expression starts (its leftmost token).
    pub pos: Pos,
    /// Where its operator is, for operator nodes; equal to `pos` for literals and features.
    pub op_pos: Pos,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

impl Expr {
    /// A node without a meaningful position (1:1), for building trees in code.
    pub fn new(kind: ExprKind) -> Expr {
        let pos = Pos { line: 1, col: 1 };
        Expr {
            kind,
            pos,
            op_pos: pos,
        }
    }

    /// Binding strength of the node's top operator; higher binds tighter.
    fn precedence(&self) -> u8 {
        match self.kind {
            ExprKind::Or(..) => 1,
            ExprKind::And(..) => 2,
            ExprKind::Not(..) => 3,
            ExprKind::Cmp(..) | ExprKind::In { .. } => 4,
            ExprKind::Arith(ArithOp::Add | ArithOp::Sub, ..) => 5,
            ExprKind::Arith(ArithOp::Mul | ArithOp::Div, ..) => 6,
            ExprKind::Neg(..) => 7,
            ExprKind::Lit(_) | ExprKind::Feature { .. } => 8,
        }
    }

    /// Writes `self`, in parentheses if it binds looser than `min` requires.
    fn fmt_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "(")?;
            self.fmt_bare(f)?;
            write!(f, ")")
        } else {
            self.fmt_bare(f)
        }
    }

    fn fmt_bare(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Left operands may sit at their operator's own level (the operators associate to the
        // left); right operands must bind strictly tighter.
        match &self.kind {
            ExprKind::Lit(l) => write!(f, "{l}"),
            ExprKind::Feature { path, arg } => {
                f.write_str(path)?;
                match arg {
                    Some(a) => write!(f, "({})", a.value),
                    None => Ok(()),
                }
            }
            ExprKind::Neg(x) => {
                write!(f, "-")?;
                x.fmt_at(f, 7)
            }
            ExprKind::Not(x) => {
                write!(f, "not ")?;
                x.fmt_at(f, 3)
            }
            ExprKind::Arith(op, l, r) => {
                let p = self.precedence();
                l.fmt_at(f, p)?;
                write!(f, " {} ", op.symbol())?;
                r.fmt_at(f, p + 1)
            }
            ExprKind::Cmp(op, l, r) => {
                l.fmt_at(f, 5)?;
                write!(f, " {} ", op.symbol())?;
                r.fmt_at(f, 5)
            }
            ExprKind::And(l, r) => {
                l.fmt_at(f, 2)?;
                write!(f, " and ")?;
                r.fmt_at(f, 3)
            }
            ExprKind::Or(l, r) => {
                l.fmt_at(f, 1)?;
                write!(f, " or ")?;
                r.fmt_at(f, 2)
            }
            ExprKind::In {
                value,
                list,
                negated,
            } => {
                value.fmt_at(f, 5)?;
                f.write_str(if *negated { " not in [" } else { " in [" })?;
                for (i, item) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&quote(&item.value))?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_bare(f)
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Duration(n, u) => write!(f, "{n}{}", u.suffix()),
            Literal::Str(s) => f.write_str(&quote(s)),
            Literal::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// A string as a rule literal: in double quotes, with `"` and `\` escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A parsed rule: `<outcome> when <condition>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleAst {
    /// What the rule asks for when it fires.
    pub outcome: Outcome,
    /// When it fires.
    pub condition: Expr,
}

impl fmt::Display for RuleAst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} when {}", self.outcome, self.condition)
    }
}
