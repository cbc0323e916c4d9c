//! The type checker, which is also the compiler: one walk over the tree checks every node
//! against the [catalogue](mod@super::catalogue) and the typing rules, and emits the postfix
//! program that [`Program::eval`](super::Program::eval) runs.
//!
//! Checking and compiling in one pass means a program exists only for a checked rule, and
//! every feature in it is already resolved to a storage slot.

use super::ast::{ArithOp, CmpOp, Expr, ExprKind, ListItem, Literal};
use super::catalogue::{self, ArgKind, Category, FeatureDef, Ty, Window};
use super::eval::{Op, Program, STACK_SLOTS};
use super::{ErrorKind, MAX_DEPTH, MAX_NODES, Pos, RuleError, suggest};

/// Type-checks a rule's condition and compiles it.
///
/// The condition must be boolean. Errors name the problem and point at the offending token.
///
/// ```
/// use konbini_core::risk::{compile, parse_expr};
/// assert!(compile(&parse_expr("device.age < 24h").unwrap()).is_ok());
/// let e = compile(&parse_expr("device.age < 24").unwrap()).unwrap_err();
/// assert_eq!(e.pos.col, 14);
/// ```
pub fn compile(condition: &Expr) -> Result<Program, RuleError> {
    compile_ops(condition).map(Program::new)
}

/// [`compile`]'s instructions, before [`Program::new`] fuses them.
pub(crate) fn compile_ops(condition: &Expr) -> Result<Vec<Op>, RuleError> {
    let mut c = Compiler {
        ops: Vec::new(),
        height: 0,
        max_height: 0,
        nodes: 0,
    };
    let t = c.expr(condition, 1)?;
    if t.ty != Ty::Bool {
        return Err(RuleError::new(
            ErrorKind::NotBoolean,
            condition.pos,
            format!(
                "a rule's condition must be true or false, but `{}` is {}",
                snippet(condition),
                t.ty.phrase()
            ),
        )
        .with_help("compare it with something, e.g. `payment.amount > 10000`".to_string()));
    }
    c.finish()
}

/// A string literal whose code is not known until the other side of `==` is: the index of
/// its placeholder instruction.
#[derive(Clone, Copy)]
struct StrLit<'a> {
    op: usize,
    value: &'a str,
    pos: Pos,
}

/// What the checker knows about a compiled subexpression.
#[derive(Clone, Copy)]
struct Typed<'a> {
    ty: Ty,
    /// For a `Str` feature: the feature, whose `values` are the strings it can hold.
    domain: Option<&'static FeatureDef>,
    /// For a string literal: its placeholder.
    lit: Option<StrLit<'a>>,
}

impl Typed<'_> {
    fn of(ty: Ty) -> Self {
        Typed {
            ty,
            domain: None,
            lit: None,
        }
    }
}

struct Compiler {
    ops: Vec<Op>,
    height: usize,
    max_height: usize,
    nodes: usize,
}

fn numeric(t: Ty) -> bool {
    matches!(t, Ty::Int | Ty::Money | Ty::Duration | Ty::Count)
}

/// The type of `l op r`, if defined. Plain integers scale and offset money and counts;
/// durations combine only with durations (and scale by plain integers).
fn arith_type(op: ArithOp, l: Ty, r: Ty) -> Option<Ty> {
    use Ty::*;
    if !numeric(l) || !numeric(r) {
        return None;
    }
    match op {
        ArithOp::Add | ArithOp::Sub => match (l, r) {
            (a, b) if a == b => Some(a),
            (Money | Count, Int) => Some(l),
            (Int, Money | Count) => Some(r),
            _ => None,
        },
        ArithOp::Mul => match (l, r) {
            (x, Int) => Some(x),
            (Int, x) => Some(x),
            _ => None,
        },
        ArithOp::Div => match (l, r) {
            (x, Int) => Some(x),
            (a, b) if a == b => Some(Int),
            _ => None,
        },
    }
}

/// Whether values of types `l` and `r` may be compared with an ordering or equality.
fn comparable(l: Ty, r: Ty) -> bool {
    use Ty::*;
    l == r || matches!((l, r), (Money | Count, Int) | (Int, Money | Count))
}

/// A short quotation of an expression for error messages.
fn snippet(e: &Expr) -> String {
    const MAX: usize = 40;
    let s = e.to_string();
    if s.chars().count() <= MAX {
        s
    } else {
        let mut t: String = s.chars().take(MAX - 1).collect();
        t.push('…');
        t
    }
}

fn type_error(pos: Pos, message: String) -> RuleError {
    RuleError::new(ErrorKind::TypeMismatch, pos, message)
}

impl Compiler {
    fn emit(&mut self, op: Op) -> usize {
        // Each instruction's net effect on the stack height.
        let (pops, pushes) = match op {
            Op::Const(_) | Op::Load(_) | Op::LoadCmp(..) | Op::ArithCmp(..) => (0, 1),
            Op::Neg | Op::Not | Op::InSet(_) | Op::CmpConst(..) => (1, 1),
            Op::Arith(_) | Op::Cmp(_) | Op::And | Op::Or => (2, 1),
            Op::JumpIfFalse(_) | Op::JumpIfTrue(_) => (1, 1),
        };
        self.height = self.height.saturating_sub(pops) + pushes;
        self.max_height = self.max_height.max(self.height);
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn finish(self) -> Result<Vec<Op>, RuleError> {
        if self.max_height > STACK_SLOTS || self.ops.len() > usize::from(u16::MAX) {
            // Unreachable within MAX_DEPTH and MAX_NODES, kept as a backstop.
            return Err(RuleError::new(
                ErrorKind::TooLarge,
                Pos { line: 1, col: 1 },
                "the rule is too large to evaluate".to_string(),
            ));
        }
        Ok(self.ops)
    }

    fn expr<'a>(&mut self, e: &'a Expr, depth: usize) -> Result<Typed<'a>, RuleError> {
        if depth > MAX_DEPTH {
            return Err(RuleError::new(
                ErrorKind::TooDeep,
                e.pos,
                format!("a rule may nest at most {MAX_DEPTH} levels deep"),
            ));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(RuleError::new(
                ErrorKind::TooLarge,
                e.op_pos,
                format!("a rule may have at most {MAX_NODES} operators, features and literals"),
            ));
        }
        let d = depth + 1;
        match &e.kind {
            ExprKind::Lit(l) => self.literal(l, e.pos),
            ExprKind::Feature { path, arg } => self.feature(path, arg.as_ref(), e.pos),
            ExprKind::Neg(x) => {
                let t = self.expr(x, d)?;
                if !numeric(t.ty) {
                    return Err(type_error(
                        x.pos,
                        format!(
                            "`-` needs a number, but `{}` is {}",
                            snippet(x),
                            t.ty.phrase()
                        ),
                    ));
                }
                self.emit(Op::Neg);
                Ok(Typed::of(t.ty))
            }
            ExprKind::Not(x) => {
                self.condition(x, d, "`not`")?;
                self.emit(Op::Not);
                Ok(Typed::of(Ty::Bool))
            }
            ExprKind::And(l, r) | ExprKind::Or(l, r) => {
                let and = matches!(e.kind, ExprKind::And(..));
                let word = if and { "`and`" } else { "`or`" };
                self.condition(l, d, word)?;
                // Short circuit: a false left side decides `and`, a true one decides `or`; the
                // deciding value stays on the stack as the result.
                let jump = self.emit(if and {
                    Op::JumpIfFalse(0)
                } else {
                    Op::JumpIfTrue(0)
                });
                self.condition(r, d, word)?;
                self.emit(if and { Op::And } else { Op::Or });
                let target = u16::try_from(self.ops.len()).unwrap_or(u16::MAX);
                if let Some(op) = self.ops.get_mut(jump) {
                    *op = if and {
                        Op::JumpIfFalse(target)
                    } else {
                        Op::JumpIfTrue(target)
                    };
                }
                Ok(Typed::of(Ty::Bool))
            }
            ExprKind::Arith(op, l, r) => {
                let lt = self.expr(l, d)?;
                let rt = self.expr(r, d)?;
                let Some(ty) = arith_type(*op, lt.ty, rt.ty) else {
                    return Err(arith_error(*op, e.op_pos, l, lt.ty, r, rt.ty));
                };
                self.emit(Op::Arith(*op));
                Ok(Typed::of(ty))
            }
            ExprKind::Cmp(op, l, r) => {
                let lt = self.expr(l, d)?;
                let rt = self.expr(r, d)?;
                self.comparison(*op, e.op_pos, (l, lt), (r, rt))?;
                self.emit(Op::Cmp(*op));
                Ok(Typed::of(Ty::Bool))
            }
            ExprKind::In {
                value,
                list,
                negated,
            } => {
                let t = self.expr(value, d)?;
                let mask = self.in_list(value, t, list)?;
                // List items count towards the size limit like any literal.
                self.nodes += list.len();
                if self.nodes > MAX_NODES {
                    return Err(RuleError::new(
                        ErrorKind::TooLarge,
                        e.op_pos,
                        format!(
                            "a rule may have at most {MAX_NODES} operators, features and literals"
                        ),
                    ));
                }
                self.emit(Op::InSet(mask));
                if *negated {
                    self.emit(Op::Not);
                }
                Ok(Typed::of(Ty::Bool))
            }
        }
    }

    /// Compiles an operand of `and`, `or` or `not`, which must be boolean.
    fn condition(&mut self, x: &Expr, depth: usize, word: &str) -> Result<(), RuleError> {
        let t = self.expr(x, depth)?;
        if t.ty != Ty::Bool {
            return Err(type_error(
                x.pos,
                format!(
                    "{word} needs a condition (true or false), but `{}` is {}",
                    snippet(x),
                    t.ty.phrase()
                ),
            ));
        }
        Ok(())
    }

    fn literal<'a>(&mut self, l: &'a Literal, pos: Pos) -> Result<Typed<'a>, RuleError> {
        Ok(match l {
            Literal::Int(n) => {
                self.emit(Op::Const(*n));
                Typed::of(Ty::Int)
            }
            Literal::Duration(..) => {
                let ms = l.duration_ms().ok_or_else(|| {
                    RuleError::new(
                        ErrorKind::TooLarge,
                        pos,
                        format!("duration `{l}` is too large"),
                    )
                })?;
                self.emit(Op::Const(ms));
                Typed::of(Ty::Duration)
            }
            Literal::Bool(b) => {
                self.emit(Op::Const(i64::from(*b)));
                Typed::of(Ty::Bool)
            }
            Literal::Str(s) => {
                // The code is patched in once the compared feature is known.
                let op = self.emit(Op::Const(-1));
                Typed {
                    ty: Ty::Str,
                    domain: None,
                    lit: Some(StrLit { op, value: s, pos }),
                }
            }
        })
    }

    fn feature<'a>(
        &mut self,
        path: &str,
        arg: Option<&super::ast::Arg>,
        pos: Pos,
    ) -> Result<Typed<'a>, RuleError> {
        let Some(def) = catalogue::feature(path) else {
            let names = catalogue::catalogue().iter().map(|d| d.name);
            let mut e = RuleError::new(
                ErrorKind::UnknownFeature,
                pos,
                format!("unknown feature `{path}`"),
            );
            if let Some(s) = suggest(path, names) {
                e = e.with_help(format!("did you mean `{s}`?"));
            }
            return Err(e);
        };
        let index = match (def.arg(), arg) {
            (ArgKind::None, None) => 0,
            (ArgKind::None, Some(a)) => {
                return Err(RuleError::new(
                    ErrorKind::BadArgument,
                    a.pos,
                    format!("`{path}` takes no argument"),
                ));
            }
            (ArgKind::Window, None) => {
                return Err(RuleError::new(
                    ErrorKind::BadArgument,
                    pos,
                    format!("`{path}` needs a window, such as `{path}(1h)`"),
                )
                .with_help(windows_help()));
            }
            (ArgKind::Category, None) => {
                return Err(RuleError::new(
                    ErrorKind::BadArgument,
                    pos,
                    format!("`{path}` needs a category, such as `{path}(\"tobacco\")`"),
                ));
            }
            (ArgKind::Window, Some(a)) => {
                let Some(ms) = a.value.duration_ms() else {
                    return Err(RuleError::new(
                        ErrorKind::BadArgument,
                        a.pos,
                        format!(
                            "`{path}` takes a window, such as `{path}(1h)`, not {}",
                            literal_phrase(&a.value)
                        ),
                    )
                    .with_help(windows_help()));
                };
                let Some(w) = Window::from_ms(ms) else {
                    return Err(RuleError::new(
                        ErrorKind::BadWindow,
                        a.pos,
                        format!("`{}` is not a maintained window", a.value),
                    )
                    .with_help(windows_help()));
                };
                w.index()
            }
            (ArgKind::Category, Some(a)) => {
                let Literal::Str(name) = &a.value else {
                    return Err(RuleError::new(
                        ErrorKind::BadArgument,
                        a.pos,
                        format!(
                            "`{path}` takes a category in quotes, such as `{path}(\"tobacco\")`, not {}",
                            literal_phrase(&a.value)
                        ),
                    ));
                };
                let Some(c) = Category::parse(name) else {
                    let mut e = RuleError::new(
                        ErrorKind::UnknownCategory,
                        a.pos,
                        format!("unknown category {}", a.value),
                    );
                    e = e.with_help(match suggest(name, Category::NAMES.iter().copied()) {
                        Some(s) => format!("did you mean \"{s}\"?"),
                        None => format!("categories are {}", Category::NAMES.join(", ")),
                    });
                    return Err(e);
                };
                c.index()
            }
        };
        let slot = catalogue::slot(def.key, index);
        self.emit(Op::Load(u8::try_from(slot).unwrap_or(u8::MAX)));
        Ok(Typed {
            ty: def.ty(),
            domain: (def.ty() == Ty::Str).then_some(def),
            lit: None,
        })
    }

    fn comparison(
        &mut self,
        op: CmpOp,
        op_pos: Pos,
        (l, lt): (&Expr, Typed<'_>),
        (r, rt): (&Expr, Typed<'_>),
    ) -> Result<(), RuleError> {
        if !comparable(lt.ty, rt.ty) {
            return Err(compare_error(op_pos, l, lt.ty, r, rt.ty));
        }
        if matches!(lt.ty, Ty::Str | Ty::Bool) && !op.is_equality() {
            return Err(type_error(
                op_pos,
                format!(
                    "`{}` does not apply to {}: use {}",
                    op.symbol(),
                    if lt.ty == Ty::Str {
                        "strings"
                    } else {
                        "booleans"
                    },
                    if lt.ty == Ty::Str {
                        "`==`, `!=` or `in`"
                    } else {
                        "`==` or `!=`"
                    }
                ),
            ));
        }
        if lt.ty != Ty::Str {
            return Ok(());
        }
        // Strings: a feature against a literal of its values, or two features of one kind.
        match (lt.domain, lt.lit, rt.domain, rt.lit) {
            (Some(def), None, None, Some(lit)) | (None, Some(lit), Some(def), None) => {
                let code = self.value_code(def, lit.value, lit.pos)?;
                if let Some(slot) = self.ops.get_mut(lit.op) {
                    *slot = Op::Const(code);
                }
                Ok(())
            }
            (Some(a), None, Some(b), None) if a.key == b.key => Ok(()),
            (Some(a), None, Some(b), None) => Err(type_error(
                op_pos,
                format!(
                    "`{}` and `{}` never hold the same value: they are different kinds of string",
                    a.name, b.name
                ),
            )),
            _ => Err(type_error(
                op_pos,
                "compare a string feature with a string, such as `customer.tier == \"new\"`; \
                 two literals always compare the same way"
                    .to_string(),
            )),
        }
    }

    /// The code of `value` among the values of the `Str` feature `def`.
    fn value_code(&self, def: &FeatureDef, value: &str, pos: Pos) -> Result<i64, RuleError> {
        let values = def.values();
        match values.iter().position(|v| *v == value) {
            Some(i) => Ok(i64::try_from(i).unwrap_or(i64::MAX)),
            None => {
                let mut e = RuleError::new(
                    ErrorKind::UnknownValue,
                    pos,
                    format!(
                        "`{}` is never {}: it is one of {}",
                        def.name,
                        super::ast::quote(value),
                        values
                            .iter()
                            .map(|v| super::ast::quote(v))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                if let Some(s) = suggest(value, values.iter().copied()) {
                    e = e.with_help(format!("did you mean \"{s}\"?"));
                }
                Err(e)
            }
        }
    }

    fn in_list(&mut self, value: &Expr, t: Typed<'_>, list: &[ListItem]) -> Result<u64, RuleError> {
        let Some(def) = t.domain else {
            let what = if t.lit.is_some() {
                "a string literal".to_string()
            } else {
                t.ty.phrase().to_string()
            };
            return Err(type_error(
                value.pos,
                format!(
                    "`in` needs a string feature on its left, such as `customer.tier`, but `{}` is {what}",
                    snippet(value)
                ),
            ));
        };
        let mut mask = 0u64;
        for item in list {
            let code = self.value_code(def, &item.value, item.pos)?;
            // Every Str feature has far fewer than 64 values (checked in the tests).
            mask |= 1u64
                .checked_shl(u32::try_from(code).unwrap_or(u32::MAX))
                .unwrap_or(0);
        }
        Ok(mask)
    }
}

fn windows_help() -> String {
    format!("windows are {}", Window::NAMES.join(", "))
}

fn literal_phrase(l: &Literal) -> String {
    match l {
        Literal::Int(n) => format!("the plain number `{n}`"),
        Literal::Duration(..) => format!("the duration `{l}`"),
        Literal::Str(_) => format!("the string {l}"),
        Literal::Bool(b) => format!("`{b}`"),
    }
}

/// Explains why `l` and `r` cannot be compared, pointing at the side that most likely needs
/// fixing: a plain number next to a duration is missing its unit.
fn compare_error(op_pos: Pos, l: &Expr, lt: Ty, r: &Expr, rt: Ty) -> RuleError {
    let unitless = |e: &Expr, other: &Expr| {
        let suggestion = match &e.kind {
            ExprKind::Lit(Literal::Int(n)) => {
                format!(": write a unit, such as `{n}m`, `{n}h` or `{n}d`")
            }
            _ => String::new(),
        };
        type_error(
            e.pos,
            format!(
                "`{}` is a duration, but `{}` is a plain number{suggestion}",
                snippet(other),
                snippet(e)
            ),
        )
    };
    match (lt, rt) {
        (Ty::Duration, Ty::Int) => unitless(r, l),
        (Ty::Int, Ty::Duration) => unitless(l, r),
        _ => {
            // Point at a literal side if there is one: it is the likelier mistake.
            let pos = match (&l.kind, &r.kind) {
                (_, ExprKind::Lit(_)) => r.pos,
                (ExprKind::Lit(_), _) => l.pos,
                _ => op_pos,
            };
            type_error(
                pos,
                format!(
                    "cannot compare {} (`{}`) with {} (`{}`)",
                    lt.phrase(),
                    snippet(l),
                    rt.phrase(),
                    snippet(r)
                ),
            )
        }
    }
}

fn arith_error(op: ArithOp, op_pos: Pos, l: &Expr, lt: Ty, r: &Expr, rt: Ty) -> RuleError {
    for (e, t) in [(l, lt), (r, rt)] {
        if !numeric(t) {
            return type_error(
                e.pos,
                format!(
                    "`{}` needs numbers, but `{}` is {}",
                    op.symbol(),
                    snippet(e),
                    t.phrase()
                ),
            );
        }
    }
    let hint = match (lt, rt) {
        (Ty::Duration, Ty::Int) | (Ty::Int, Ty::Duration)
            if matches!(op, ArithOp::Add | ArithOp::Sub) =>
        {
            "; write the plain number with a unit, such as `1h`"
        }
        _ => "",
    };
    type_error(
        op_pos,
        format!(
            "cannot apply `{}` to {} (`{}`) and {} (`{}`){hint}",
            op.symbol(),
            lt.phrase(),
            snippet(l),
            rt.phrase(),
            snippet(r)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::parse_expr;

    fn err(src: &str) -> RuleError {
        compile(&parse_expr(src).unwrap()).unwrap_err()
    }

    #[test]
    fn typing_rules() {
        use Ty::*;
        assert_eq!(arith_type(ArithOp::Add, Money, Int), Some(Money));
        assert_eq!(arith_type(ArithOp::Sub, Int, Count), Some(Count));
        assert_eq!(arith_type(ArithOp::Add, Duration, Int), None);
        assert_eq!(arith_type(ArithOp::Add, Money, Count), None);
        assert_eq!(arith_type(ArithOp::Mul, Duration, Int), Some(Duration));
        assert_eq!(arith_type(ArithOp::Mul, Money, Money), None);
        assert_eq!(arith_type(ArithOp::Div, Money, Money), Some(Int));
        assert_eq!(arith_type(ArithOp::Div, Int, Money), None);
        assert_eq!(arith_type(ArithOp::Add, Bool, Bool), None);
        assert!(comparable(Money, Int) && comparable(Int, Count) && comparable(Str, Str));
        assert!(!comparable(Duration, Int) && !comparable(Money, Count) && !comparable(Bool, Int));
    }

    #[test]
    fn every_str_feature_fits_a_mask() {
        for d in catalogue::catalogue() {
            assert!(d.values().len() <= 64);
        }
    }

    #[test]
    fn positions_of_type_errors() {
        let e = err("device.age > 10");
        assert_eq!(e.kind, ErrorKind::TypeMismatch);
        assert_eq!(
            e.to_string(),
            "`device.age` is a duration, but `10` is a plain number: write a unit, such as `10m`, `10h` or `10d` at 1:14"
        );
        assert_eq!(
            err("payment.amount > \"x\"").to_string(),
            "cannot compare money (`payment.amount`) with a string (`\"x\"`) at 1:18"
        );
    }

    #[test]
    fn and_short_circuit_targets_point_past_the_combinator() {
        let p = compile(&parse_expr("true and false or true").unwrap()).unwrap();
        assert_eq!(
            p.ops(),
            &[
                Op::Const(1),
                Op::JumpIfFalse(4),
                Op::Const(0),
                Op::And,
                Op::JumpIfTrue(7),
                Op::Const(1),
                Op::Or,
            ]
        );
    }
}
