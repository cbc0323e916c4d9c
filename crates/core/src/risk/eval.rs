//! Feature values and the evaluator of compiled rules.
//!
//! A [`Program`] is a short postfix sequence of [`Op`]s whose features are already resolved to
//! slots of a [`Features`] value. Evaluation walks it once, forwards (jumps only skip ahead),
//! on a fixed-size stack: no allocation, no recursion, at most one step per instruction.

use std::fmt;

use super::ast::{ArithOp, CmpOp};
use super::catalogue::{
    self, ArgKind, BasketMeasure, Category, CountFeature, DurationFeature, EventKind, FeatureDef,
    IntFeature, MoneyFeature, SLOTS, Tier, Ty, Window, WindowCounter,
};

/// Stack slots an evaluation may use; the compiler refuses programs that would need more.
/// A tree of depth `d` needs at most `d + 1`, and depth is limited to
/// [`MAX_DEPTH`](super::MAX_DEPTH).
pub(crate) const STACK_SLOTS: usize = super::MAX_DEPTH + 8;

/// One instruction of a compiled rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Push a constant (an integer, milliseconds, 0/1, or a string's code).
    Const(i64),
    /// Push a feature's value, or unknown if the engine did not set it.
    Load(u8),
    /// Negate the top value.
    Neg,
    Arith(ArithOp),
    Cmp(CmpOp),
    Not,
    /// Combine the top two truth values (three-valued logic).
    And,
    Or,
    /// If the top is false, jump to the target, keeping it as the result of the `and`.
    JumpIfFalse(u16),
    /// If the top is true, jump to the target, keeping it as the result of the `or`.
    JumpIfTrue(u16),
    /// Replace a string code by whether it is in the set.
    InSet(u64),
    /// `Load(slot)`, `Const(c)`, `Cmp(op)` as one instruction: most conditions compare a
    /// feature with a literal ([`Program::new`] fuses them).
    LoadCmp(u8, CmpOp, i64),
    /// `Const(c)`, `Cmp(op)` as one instruction: compare the top with a literal.
    CmpConst(CmpOp, i64),
    /// `Load(a)`, `Load(b)`, `Arith(arith)`, `Const(c)`, `Cmp(cmp)` as one instruction:
    /// the basket rules' `basket.quantity("tobacco") + basket.quantity("e_cigarette") >= 20`.
    ArithCmp(u8, u8, ArithOp, CmpOp, i64),
}

/// `a arith b`, checked: `None` on an overflow or a division by zero.
fn arith(op: ArithOp, a: i64, b: i64) -> Option<i64> {
    match op {
        ArithOp::Add => a.checked_add(b),
        ArithOp::Sub => a.checked_sub(b),
        ArithOp::Mul => a.checked_mul(b),
        ArithOp::Div => a.checked_div(b),
    }
}

/// `a op b`.
fn compare(op: CmpOp, a: i64, b: i64) -> i64 {
    i64::from(match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    })
}

/// `ops` with each comparison of a feature or a value with a literal fused into one
/// instruction ([`Op::LoadCmp`], [`Op::CmpConst`]) and the jumps renumbered: the same
/// results in about two thirds of the instructions. A sequence a jump lands inside of is
/// left as it is.
fn fuse(ops: &[Op]) -> Vec<Op> {
    let mut landing = vec![false; ops.len() + 1];
    for op in ops {
        if let Op::JumpIfFalse(t) | Op::JumpIfTrue(t) = op
            && let Some(l) = landing.get_mut(usize::from(*t))
        {
            *l = true;
        }
    }
    let inside = |i: usize| landing.get(i).copied().unwrap_or(true);
    // Where each instruction (and the end) went.
    let mut moved = vec![0usize; ops.len() + 1];
    let mut out = Vec::with_capacity(ops.len());
    let mut i = 0;
    while let Some(&op) = ops.get(i) {
        let at = |k: usize| ops.get(i + k).copied();
        let taken = match (op, at(1), at(2)) {
            (Op::Load(a), Some(Op::Load(b)), Some(Op::Arith(arith)))
                if (1..5).all(|k| !inside(i + k))
                    && let (Some(Op::Const(c)), Some(Op::Cmp(cmp))) = (at(3), at(4)) =>
            {
                out.push(Op::ArithCmp(a, b, arith, cmp, c));
                5
            }
            (Op::Load(slot), Some(Op::Const(c)), Some(Op::Cmp(cmp)))
                if !inside(i + 1) && !inside(i + 2) =>
            {
                out.push(Op::LoadCmp(slot, cmp, c));
                3
            }
            (Op::Const(c), Some(Op::Cmp(cmp)), _) if !inside(i + 1) => {
                out.push(Op::CmpConst(cmp, c));
                2
            }
            _ => {
                out.push(op);
                1
            }
        };
        for m in moved.iter_mut().skip(i).take(taken) {
            *m = out.len() - 1;
        }
        i += taken;
    }
    if let Some(end) = moved.last_mut() {
        *end = out.len();
    }
    for op in &mut out {
        if let Op::JumpIfFalse(t) | Op::JumpIfTrue(t) = op {
            // Unchanged (so out of range, which evaluation refuses) if it was out of range.
            if let Some(&to) = moved.get(usize::from(*t)) {
                *t = u16::try_from(to).unwrap_or(u16::MAX);
            }
        }
    }
    out
}

/// A checked, compiled rule condition. Built only by [`compile`](super::compile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    ops: Box<[Op]>,
    /// At most [`SMALL_STACK`] values pushed in all (so never more on the stack at once):
    /// evaluated on a small stack, which costs less to set up.
    small: bool,
}

/// The stack of most rules' programs (the default rules push at most 9 values).
const SMALL_STACK: usize = 16;

/// The three-valued result of a condition.
///
/// A condition is [`Truth::Unknown`] when it depends on a feature the engine did not supply
/// (for example `since.recovery` for an account that was never recovered) or on arithmetic
/// that overflowed or divided by zero. A rule fires only on [`Truth::True`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    /// The condition holds: the rule fires.
    True,
    /// The condition does not hold.
    False,
    /// The condition depends on an unknown value.
    Unknown,
}

/// What evaluating a program gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Evaluation {
    /// The condition's value.
    pub truth: Truth,
    /// Arithmetic overflowed or divided by zero somewhere on the evaluated path. The affected
    /// value was treated as unknown; the rule set reports such rules so that they are seen.
    pub faulted: bool,
}

impl Program {
    /// The program of the compiler's `ops`, with its comparisons with literals fused
    /// ([`fuse`]).
    pub(crate) fn new(ops: Vec<Op>) -> Program {
        Program::unfused(fuse(&ops))
    }

    /// The program of `ops` exactly as they are.
    pub(crate) fn unfused(ops: Vec<Op>) -> Program {
        let pushes = ops
            .iter()
            .filter(|op| {
                matches!(
                    op,
                    Op::Const(_) | Op::Load(_) | Op::LoadCmp(..) | Op::ArithCmp(..)
                )
            })
            .count();
        Program {
            ops: ops.into_boxed_slice(),
            small: pushes <= SMALL_STACK,
        }
    }

    #[cfg(test)]
    pub(crate) fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Number of instructions (a measure of the rule's evaluation cost).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the program is empty (never true for a compiled rule).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Evaluates the condition against `features`.
    ///
    /// Missing features are unknown; comparisons with an unknown are unknown; `not`, `and` and
    /// `or` follow three-valued (Kleene) logic, so `false and unknown` is false and
    /// `true or unknown` is true. Arithmetic is checked: an overflow or a division by zero
    /// makes the value unknown and sets [`Evaluation::faulted`]. Never panics, never allocates.
    ///
    /// ```
    /// use konbini_core::risk::{compile, parse_expr, Features, MoneyFeature, Truth};
    /// let p = compile(&parse_expr("payment.amount > 10_000").unwrap()).unwrap();
    /// let mut f = Features::new();
    /// assert_eq!(p.eval(&f).truth, Truth::Unknown);
    /// f.set_money(MoneyFeature::PaymentAmount, 12_000);
    /// assert_eq!(p.eval(&f).truth, Truth::True);
    /// ```
    pub fn eval(&self, features: &Features) -> Evaluation {
        if self.small {
            self.run::<SMALL_STACK>(features)
        } else {
            self.run::<STACK_SLOTS>(features)
        }
    }

    /// [`Program::eval`] on a stack of `N` values.
    fn run<const N: usize>(&self, features: &Features) -> Evaluation {
        let mut stack = [None::<i64>; N];
        let mut sp = 0usize; // number of values on the stack
        let mut faulted = false;
        let mut pc = 0usize;
        // The compiler guarantees the stack never under- or overflows; the checked accesses
        // below turn a broken guarantee into an unknown result instead of a panic.
        let broken = Evaluation {
            truth: Truth::Unknown,
            faulted: true,
        };
        while let Some(&op) = self.ops.get(pc) {
            pc += 1;
            match op {
                Op::Const(v) => {
                    let Some(s) = stack.get_mut(sp) else {
                        return broken;
                    };
                    *s = Some(v);
                    sp += 1;
                }
                Op::Load(slot) => {
                    let Some(s) = stack.get_mut(sp) else {
                        return broken;
                    };
                    *s = features.get(usize::from(slot));
                    sp += 1;
                }
                Op::LoadCmp(slot, cmp, c) => {
                    let Some(s) = stack.get_mut(sp) else {
                        return broken;
                    };
                    *s = features.get(usize::from(slot)).map(|a| compare(cmp, a, c));
                    sp += 1;
                }
                Op::ArithCmp(a, b, op, cmp, c) => {
                    let Some(s) = stack.get_mut(sp) else {
                        return broken;
                    };
                    *s = match (features.get(usize::from(a)), features.get(usize::from(b))) {
                        (Some(a), Some(b)) => {
                            let r = arith(op, a, b);
                            faulted |= r.is_none();
                            r.map(|x| compare(cmp, x, c))
                        }
                        _ => None,
                    };
                    sp += 1;
                }
                Op::CmpConst(cmp, c) => {
                    let Some(top) = sp.checked_sub(1).and_then(|i| stack.get_mut(i)) else {
                        return broken;
                    };
                    *top = top.map(|a| compare(cmp, a, c));
                }
                Op::Neg | Op::Not | Op::InSet(_) => {
                    let Some(top) = sp.checked_sub(1).and_then(|i| stack.get_mut(i)) else {
                        return broken;
                    };
                    *top = match (op, *top) {
                        (_, None) => None,
                        (Op::Neg, Some(x)) => {
                            let r = x.checked_neg();
                            faulted |= r.is_none();
                            r
                        }
                        (Op::Not, Some(x)) => Some(i64::from(x == 0)),
                        (Op::InSet(mask), Some(code)) => Some(i64::from(
                            u32::try_from(code)
                                .ok()
                                .and_then(|c| mask.checked_shr(c))
                                .is_some_and(|m| m & 1 == 1),
                        )),
                        (_, Some(_)) => return broken,
                    };
                }
                Op::Arith(_) | Op::Cmp(_) | Op::And | Op::Or => {
                    let (Some(&b), Some(i)) = (
                        sp.checked_sub(1).and_then(|i| stack.get(i)),
                        sp.checked_sub(2),
                    ) else {
                        return broken;
                    };
                    let Some(a_slot) = stack.get_mut(i) else {
                        return broken;
                    };
                    let a = *a_slot;
                    *a_slot = match op {
                        Op::Arith(op) => match (a, b) {
                            (Some(a), Some(b)) => {
                                let r = arith(op, a, b);
                                faulted |= r.is_none();
                                r
                            }
                            _ => None,
                        },
                        Op::Cmp(op) => match (a, b) {
                            (Some(a), Some(b)) => Some(compare(op, a, b)),
                            _ => None,
                        },
                        Op::And => match (a, b) {
                            (Some(0), _) | (_, Some(0)) => Some(0),
                            (Some(_), Some(_)) => Some(1),
                            _ => None,
                        },
                        _ => match (a, b) {
                            (Some(0), Some(0)) => Some(0),
                            (Some(x), _) | (_, Some(x)) if x != 0 => Some(1),
                            _ => None,
                        },
                    };
                    sp -= 1;
                }
                Op::JumpIfFalse(target) | Op::JumpIfTrue(target) => {
                    let Some(&top) = sp.checked_sub(1).and_then(|i| stack.get(i)) else {
                        return broken;
                    };
                    let jump = match op {
                        Op::JumpIfFalse(_) => top == Some(0),
                        _ => top.is_some_and(|x| x != 0),
                    };
                    if jump {
                        let target = usize::from(target);
                        if target < pc {
                            return broken; // jumps only go forwards: evaluation always ends
                        }
                        pc = target;
                    }
                }
            }
        }
        let truth = match (sp, stack.first()) {
            (1, Some(Some(0))) => Truth::False,
            (1, Some(Some(_))) => Truth::True,
            (1, Some(None)) => Truth::Unknown,
            _ => return broken,
        };
        Evaluation { truth, faulted }
    }
}

/// A feature value with its type, as listed by [`Features::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A plain integer.
    Int(i64),
    /// Minor units.
    Money(i64),
    /// Milliseconds.
    Duration(i64),
    /// A boolean.
    Bool(bool),
    /// One of the feature's values.
    Str(&'static str),
    /// A count.
    Count(i64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) | Value::Money(n) | Value::Count(n) => write!(f, "{n}"),
            Value::Duration(ms) => write!(f, "{ms}ms"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => f.write_str(&super::ast::quote(s)),
        }
    }
}

/// The values the engine computed for one event, read by compiled rules.
///
/// Every feature starts unknown; the engine sets what it knows through the typed setters
/// (money in minor units, durations in milliseconds). A rule reading an unknown feature does
/// not fire on it (see [`Program::eval`]). The value is a fixed-size array: filling and
/// reading it never allocates, and it can be reused for the next event with
/// [`Features::clear`].
///
/// ```
/// use konbini_core::risk::{Category, DurationFeature, Features, MoneyFeature, Tier, Window, WindowCounter};
/// let mut f = Features::new();
/// f.set_duration(DurationFeature::AccountAge, 3 * 86_400_000)
///     .set_money(MoneyFeature::PaymentAmount, 730_000)
///     .set_tier(Tier::New)
///     .set_window(WindowCounter::TopupsCount, Window::Hour1, 6)
///     .add_basket_line(Category::ECigarette, 150, 730_000);
/// assert_eq!(f.entries().len(), 3 + 1 + 11 * 2 + 1); // the basket knows every category
/// ```
#[derive(Clone)]
pub struct Features {
    values: [i64; SLOTS],
    /// Bit `i` set: `values[i]` is known.
    known: u128,
}

impl Default for Features {
    fn default() -> Self {
        Features::new()
    }
}

/// Two feature sets are equal when they know the same features with the same values; what
/// an unknown slot happens to hold (after [`Features::clear`]) does not matter.
impl PartialEq for Features {
    fn eq(&self, other: &Features) -> bool {
        self.known == other.known && (0..SLOTS).all(|slot| self.get(slot) == other.get(slot))
    }
}

impl Eq for Features {}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

impl Features {
    /// Every feature unknown.
    pub fn new() -> Features {
        Features {
            values: [0; SLOTS],
            known: 0,
        }
    }

    /// Forgets every value, for reuse on the next event.
    pub fn clear(&mut self) {
        self.known = 0;
    }

    pub(crate) fn get(&self, slot: usize) -> Option<i64> {
        let bit = 1u128.checked_shl(u32::try_from(slot).ok()?)?;
        if self.known & bit == 0 {
            return None;
        }
        self.values.get(slot).copied()
    }

    /// Bit `i` set: slot `i` is known.
    pub(crate) fn known_mask(&self) -> u128 {
        self.known
    }

    pub(crate) fn put(&mut self, slot: usize, v: i64) -> &mut Self {
        if let (Some(s), Some(bit)) = (
            self.values.get_mut(slot),
            u32::try_from(slot).ok().and_then(|i| 1u128.checked_shl(i)),
        ) {
            *s = v;
            self.known |= bit;
        }
        self
    }

    /// Sets a duration feature, in milliseconds.
    pub fn set_duration(&mut self, f: DurationFeature, ms: i64) -> &mut Self {
        self.put(catalogue::duration_slot(f), ms)
    }
    /// Sets a money feature, in minor units.
    pub fn set_money(&mut self, f: MoneyFeature, amount_minor: i64) -> &mut Self {
        self.put(catalogue::money_slot(f), amount_minor)
    }
    /// Sets a count feature.
    pub fn set_count(&mut self, f: CountFeature, n: i64) -> &mut Self {
        self.put(catalogue::count_slot(f), n)
    }
    /// Sets a plain-integer feature.
    pub fn set_int(&mut self, f: IntFeature, n: i64) -> &mut Self {
        self.put(catalogue::int_slot(f), n)
    }
    /// Sets `customer.recovery_hold`.
    pub fn set_recovery_hold(&mut self, on: bool) -> &mut Self {
        self.put(catalogue::hold_slot(), i64::from(on))
    }
    /// Sets `customer.tier`.
    pub fn set_tier(&mut self, tier: Tier) -> &mut Self {
        self.put(catalogue::tier_slot(), tier.index() as i64)
    }
    /// Sets `event.kind`.
    pub fn set_event_kind(&mut self, kind: EventKind) -> &mut Self {
        self.put(catalogue::event_slot(), kind.index() as i64)
    }
    /// Sets a windowed counter: a count, or a sum in minor units for the `*.sum` counters.
    pub fn set_window(&mut self, c: WindowCounter, w: Window, value: i64) -> &mut Self {
        self.put(catalogue::window_slot(c, w), value)
    }
    /// Marks the basket as known and empty: every category's quantity and amount is 0, and
    /// `basket.lines` is 0. [`Features::add_basket_line`] does this on its first call.
    pub fn start_basket(&mut self) -> &mut Self {
        for m in BasketMeasure::ALL {
            for &c in Category::ALL {
                self.put(catalogue::basket_slot(m, c), 0);
            }
        }
        self.put(catalogue::count_slot(CountFeature::BasketLines), 0)
    }
    /// Adds one basket line. Totals saturate at `i64::MAX` rather than wrap, so an absurd
    /// basket still looks absurd to the rules.
    pub fn add_basket_line(
        &mut self,
        category: Category,
        quantity: i64,
        amount_minor: i64,
    ) -> &mut Self {
        let lines = catalogue::count_slot(CountFeature::BasketLines);
        if self.get(lines).is_none() {
            self.start_basket();
        }
        for (m, add) in [
            (BasketMeasure::Quantity, quantity),
            (BasketMeasure::Amount, amount_minor),
        ] {
            let slot = catalogue::basket_slot(m, category);
            let v = self.get(slot).unwrap_or(0).saturating_add(add);
            self.put(slot, v);
        }
        let n = self.get(lines).unwrap_or(0).saturating_add(1);
        self.put(lines, n)
    }

    /// The known features, named as rules write them (`topups.count(1h)`,
    /// `basket.quantity("tobacco")`), in catalogue order. For journaling a decision; this
    /// allocates, unlike evaluation.
    pub fn entries(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (slot, def, arg) in catalogue::slot_owners() {
            let Some(v) = self.get(slot) else { continue };
            out.push((slot_name(def, arg), typed(def, v)));
        }
        out
    }
}

/// A feature value's name as rules write it: `payment.amount`, `topups.count(1h)`,
/// `basket.quantity("tobacco")`. `arg` is the window or category index.
pub(crate) fn slot_name(def: &FeatureDef, arg: usize) -> String {
    match def.arg() {
        ArgKind::None => def.name.to_string(),
        ArgKind::Window => format!(
            "{}({})",
            def.name,
            Window::NAMES.get(arg).copied().unwrap_or("?")
        ),
        ArgKind::Category => format!(
            "{}(\"{}\")",
            def.name,
            Category::NAMES.get(arg).copied().unwrap_or("?")
        ),
    }
}

pub(crate) fn typed(def: &FeatureDef, v: i64) -> Value {
    match def.ty() {
        Ty::Int => Value::Int(v),
        Ty::Money => Value::Money(v),
        Ty::Duration => Value::Duration(v),
        Ty::Count => Value::Count(v),
        Ty::Bool => Value::Bool(v != 0),
        Ty::Str => Value::Str(
            usize::try_from(v)
                .ok()
                .and_then(|i| def.values().get(i))
                .copied()
                .unwrap_or("?"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{compile, parse_expr};

    fn eval(src: &str, f: &Features) -> Evaluation {
        compile(&parse_expr(src).unwrap()).unwrap().eval(f)
    }

    fn truth(src: &str, f: &Features) -> Truth {
        eval(src, f).truth
    }

    /// Comparisons with literals become one instruction each, the jumps still land past
    /// their combinator, and every default rule decides as its unfused program does, on
    /// unknown, false and true features (the property tests compare fused programs with
    /// a tree-walking evaluator on random conditions).
    #[test]
    fn fused_comparisons_decide_as_the_unfused_program() {
        let p =
            compile(&parse_expr("payment.amount > 10_000 and 3h < device.age").unwrap()).unwrap();
        let amount = crate::risk::catalogue::money_slot(MoneyFeature::PaymentAmount);
        let age = crate::risk::catalogue::duration_slot(DurationFeature::DeviceAge);
        let slot = |s: usize| u8::try_from(s).unwrap();
        assert_eq!(
            p.ops(),
            &[
                Op::LoadCmp(slot(amount), CmpOp::Gt, 10_000),
                Op::JumpIfFalse(6),
                Op::Const(3 * 3_600_000),
                Op::Load(slot(age)),
                Op::Cmp(CmpOp::Lt),
                Op::And,
            ]
        );
        // Two features combined and compared with a literal, the basket rules' shape.
        let sum = compile(
            &parse_expr("basket.quantity(\"tobacco\") + basket.quantity(\"e_cigarette\") >= 20")
                .unwrap(),
        )
        .unwrap();
        assert!(
            matches!(sum.ops(), [Op::ArithCmp(_, _, ArithOp::Add, CmpOp::Ge, 20)]),
            "{:?}",
            sum.ops()
        );
        let mut sets = vec![Features::new()];
        let mut some = Features::new();
        some.set_event_kind(EventKind::Payment)
            .set_money(MoneyFeature::PaymentAmount, 25_000)
            .set_duration(DurationFeature::DeviceAge, 3_600_000)
            .set_duration(DurationFeature::AccountAge, 90 * 86_400_000)
            .add_basket_line(Category::ECigarette, 150, 730_000);
        sets.push(some.clone());
        some.set_recovery_hold(true)
            .set_money(MoneyFeature::CustomerAvgPayment, 700);
        sets.push(some);
        let (mut before, mut after) = (0, 0);
        for spec in crate::risk::default_rules() {
            let rule = crate::risk::parse_rule(&spec.source).unwrap();
            let fused = compile(&rule.condition).unwrap();
            let unfused =
                Program::unfused(crate::risk::types::compile_ops(&rule.condition).unwrap());
            (before, after) = (before + unfused.len(), after + fused.len());
            for f in &sets {
                assert_eq!(fused.eval(f), unfused.eval(f), "{}", spec.source);
            }
        }
        assert!(
            after * 4 < before * 3,
            "{before} instructions fused to {after}"
        );
    }

    #[test]
    fn three_valued_logic() {
        let f = Features::new(); // every feature unknown
        let u = "payment.amount > 1";
        assert_eq!(truth(u, &f), Truth::Unknown);
        assert_eq!(truth(&format!("not {u}"), &f), Truth::Unknown);
        assert_eq!(truth(&format!("false and {u}"), &f), Truth::False);
        assert_eq!(truth(&format!("{u} and false"), &f), Truth::False);
        assert_eq!(truth(&format!("true and {u}"), &f), Truth::Unknown);
        assert_eq!(truth(&format!("true or {u}"), &f), Truth::True);
        assert_eq!(truth(&format!("{u} or true"), &f), Truth::True);
        assert_eq!(truth(&format!("false or {u}"), &f), Truth::Unknown);
        assert_eq!(truth("true and true", &f), Truth::True);
        assert_eq!(truth("false or false", &f), Truth::False);
        assert_eq!(truth("not false", &f), Truth::True);
        assert_eq!(truth("customer.tier in [\"new\"]", &f), Truth::Unknown);
    }

    #[test]
    fn arithmetic_faults_are_unknown_and_reported() {
        let mut f = Features::new();
        f.set_money(MoneyFeature::PaymentAmount, i64::MAX)
            .set_money(MoneyFeature::CustomerAvgPayment, 0);
        let e = eval("payment.amount * 2 > 1", &f);
        assert_eq!((e.truth, e.faulted), (Truth::Unknown, true));
        let e = eval("payment.amount / customer.avg_payment >= 5", &f);
        assert_eq!((e.truth, e.faulted), (Truth::Unknown, true));
        let e = eval("-(payment.amount + 1) < 0", &f);
        assert!(e.faulted);
        f.set_money(MoneyFeature::PaymentAmount, i64::MIN);
        assert!(eval("-payment.amount < 0", &f).faulted);
        assert!(eval("payment.amount / -1 < 0", &f).faulted);
        // A fault on a path that short-circuits away is never evaluated.
        let e = eval("false and payment.amount * 2 > 1", &f);
        assert_eq!((e.truth, e.faulted), (Truth::False, false));
    }

    #[test]
    fn values_and_comparisons() {
        let mut f = Features::new();
        f.set_duration(DurationFeature::DeviceAge, 2 * 3_600_000)
            .set_money(MoneyFeature::PaymentAmount, 12_000)
            .set_tier(Tier::Verified)
            .set_event_kind(EventKind::Payment)
            .set_recovery_hold(false)
            .set_window(WindowCounter::TopupsCount, Window::Hour1, 4)
            .add_basket_line(Category::Tobacco, 12, 6_000)
            .add_basket_line(Category::ECigarette, 9, 5_000)
            .add_basket_line(Category::Tobacco, 1, 500);
        assert_eq!(
            truth("device.age < 24h and device.age >= 120m", &f),
            Truth::True
        );
        assert_eq!(truth("device.age == 2h", &f), Truth::True);
        assert_eq!(truth("payment.amount > 10000", &f), Truth::True);
        assert_eq!(truth("payment.amount - 2_000 > 10000", &f), Truth::False);
        assert_eq!(truth("customer.tier == \"verified\"", &f), Truth::True);
        assert_eq!(truth("customer.tier != \"verified\"", &f), Truth::False);
        assert_eq!(
            truth("customer.tier in [\"new\", \"verified\"]", &f),
            Truth::True
        );
        assert_eq!(
            truth("customer.tier not in [\"new\", \"verified\"]", &f),
            Truth::False
        );
        assert_eq!(truth("event.kind in [\"login\"]", &f), Truth::False);
        assert_eq!(truth("customer.recovery_hold", &f), Truth::False);
        assert_eq!(truth("not customer.recovery_hold", &f), Truth::True);
        assert_eq!(truth("customer.recovery_hold == false", &f), Truth::True);
        assert_eq!(truth("topups.count(1h) >= 4", &f), Truth::True);
        assert_eq!(truth("topups.count(60m) >= 4", &f), Truth::True);
        assert_eq!(truth("topups.count(24h) >= 4", &f), Truth::Unknown);
        assert_eq!(
            truth(
                "basket.quantity(\"tobacco\") + basket.quantity(\"e_cigarette\") == 22",
                &f
            ),
            Truth::True
        );
        assert_eq!(truth("basket.amount(\"tobacco\") == 6500", &f), Truth::True);
        assert_eq!(truth("basket.quantity(\"alcohol\") == 0", &f), Truth::True);
        assert_eq!(truth("basket.lines == 3", &f), Truth::True);
        assert_eq!(truth("7 / 2 == 3 and -7 / 2 == -3", &f), Truth::True);
        assert_eq!(
            truth("2 + 3 * 4 == 14 and (2 + 3) * 4 == 20", &f),
            Truth::True
        );
    }

    #[test]
    fn features_entries_and_clear() {
        let mut f = Features::new();
        f.set_tier(Tier::Established)
            .set_duration(DurationFeature::AccountAge, 5)
            .set_window(WindowCounter::PaymentsSum, Window::Days7, 42);
        assert_eq!(
            f.entries(),
            vec![
                ("account.age".to_string(), Value::Duration(5)),
                ("customer.tier".to_string(), Value::Str("established")),
                ("payments.sum(7d)".to_string(), Value::Money(42)),
            ]
        );
        assert_eq!(
            format!("{:?}", f),
            "{\"account.age\": Duration(5), \"customer.tier\": Str(\"established\"), \"payments.sum(7d)\": Money(42)}"
        );
        f.clear();
        assert!(f.entries().is_empty());
        assert_eq!(
            f,
            Features::new(),
            "stale values of unknown slots do not count"
        );
        f.set_tier(Tier::New);
        let mut fresh = Features::new();
        fresh.set_tier(Tier::New);
        assert_eq!(f, fresh);
        fresh.set_tier(Tier::Verified);
        assert_ne!(f, fresh);
        let mut g = Features::new();
        g.add_basket_line(Category::Food, i64::MAX, 1)
            .add_basket_line(Category::Food, 5, 1);
        assert!(g.entries().contains(&(
            "basket.quantity(\"food\")".to_string(),
            Value::Count(i64::MAX)
        )));
    }

    #[test]
    fn hand_made_programs_cannot_panic_or_loop() {
        let f = Features::new();
        let broken = Evaluation {
            truth: Truth::Unknown,
            faulted: true,
        };
        for ops in [
            vec![],
            vec![Op::And],
            vec![Op::Not],
            vec![Op::Const(1), Op::Const(1)],
            vec![Op::Const(1), Op::JumpIfTrue(0)],
            vec![Op::Const(1); STACK_SLOTS + 1],
        ] {
            assert_eq!(Program::new(ops).eval(&f), broken);
        }
        assert_eq!(
            Program::new(vec![Op::Load(200)]).eval(&f).truth,
            Truth::Unknown
        );
        assert_eq!(
            Program::new(vec![Op::Const(70), Op::InSet(u64::MAX)])
                .eval(&f)
                .truth,
            Truth::False
        );
    }
}
