//! A recursive-descent parser for the grammar in the [module documentation](super).
//!
//! One function per grammar level, loosest first. Nesting (parentheses, `not`, unary minus) is
//! limited to [`MAX_DEPTH`] levels and a rule to [`MAX_NODES`] nodes, so no input can exhaust
//! the stack or build an unbounded tree.

use super::ast::{Arg, ArithOp, CmpOp, Expr, ExprKind, ListItem, Literal, Outcome, RuleAst};
use super::lexer::{Tok, Token, lex};
use super::{ErrorKind, MAX_DEPTH, MAX_LIST_ITEMS, MAX_NODES, Pos, RuleError, suggest};

/// Parses a whole rule: `<outcome> when <expr>`.
///
/// ```
/// use konbini_core::risk::{parse_rule, Outcome};
/// let rule = parse_rule("block when travel.km_per_hour > 900").unwrap();
/// assert_eq!(rule.outcome, Outcome::Block);
/// assert_eq!(rule.to_string(), "block when travel.km_per_hour > 900");
/// ```
pub fn parse_rule(src: &str) -> Result<RuleAst, RuleError> {
    let mut p = Parser::new(src)?;
    let outcome = p.outcome()?;
    if p.peek() != &Tok::When {
        return Err(p.error_here(format!(
            "expected `when` after the outcome `{outcome}`, found {}",
            p.peek().describe()
        )));
    }
    p.bump();
    let condition = p.operand("`when`")?;
    p.finish()?;
    Ok(RuleAst { outcome, condition })
}

/// Parses a bare expression (a rule's condition without `<outcome> when`).
///
/// ```
/// use konbini_core::risk::parse_expr;
/// let e = parse_expr("(1 + 2) * 3").unwrap();
/// assert_eq!(e.to_string(), "(1 + 2) * 3");
/// ```
pub fn parse_expr(src: &str) -> Result<Expr, RuleError> {
    let mut p = Parser::new(src)?;
    if p.peek() == &Tok::Eof {
        return Err(p.error_here("expected an expression, found the end of the rule"));
    }
    let e = p.or_expr()?;
    p.finish()?;
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
    nodes: usize,
}

fn syntax(pos: Pos, message: impl Into<String>) -> RuleError {
    RuleError::new(ErrorKind::Syntax, pos, message)
}

impl Parser {
    fn new(src: &str) -> Result<Parser, RuleError> {
        Ok(Parser {
            toks: lex(src)?,
            at: 0,
            depth: 0,
            nodes: 0,
        })
    }

    fn token(&self) -> Option<&Token> {
        // The lexer always ends with Eof and `bump` never moves past it, so this is `Some`;
        // `None` is handled anyway rather than indexing.
        self.toks.get(self.at).or_else(|| self.toks.last())
    }
    fn peek(&self) -> &Tok {
        self.token().map_or(&Tok::Eof, |t| &t.tok)
    }
    fn pos(&self) -> Pos {
        self.token().map_or(Pos { line: 1, col: 1 }, |t| t.pos)
    }
    fn bump(&mut self) -> Token {
        let t = self.token().cloned().unwrap_or(Token {
            tok: Tok::Eof,
            pos: Pos { line: 1, col: 1 },
        });
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }
    fn error_here(&self, message: impl Into<String>) -> RuleError {
        syntax(self.pos(), message)
    }

    fn node(&mut self, kind: ExprKind, pos: Pos, op_pos: Pos) -> Result<Expr, RuleError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(RuleError::new(
                ErrorKind::TooLarge,
                op_pos,
                format!("a rule may have at most {MAX_NODES} operators, features and literals"),
            ));
        }
        Ok(Expr { kind, pos, op_pos })
    }

    fn enter(&mut self) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(RuleError::new(
                ErrorKind::TooDeep,
                self.pos(),
                format!("a rule may nest at most {MAX_DEPTH} levels deep"),
            ));
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn outcome(&mut self) -> Result<Outcome, RuleError> {
        let pos = self.pos();
        match self.bump().tok {
            Tok::Ident(word) => Outcome::parse(&word).ok_or_else(|| {
                let names = Outcome::ALL.map(|o| o.as_str());
                let mut e = syntax(
                    pos,
                    format!("unknown outcome `{word}`: a rule starts with allow, step_up, review or block"),
                );
                if let Some(s) = suggest(&word, names) {
                    e = e.with_help(format!("did you mean `{s}`?"));
                }
                e
            }),
            other => Err(syntax(
                pos,
                format!(
                    "expected an outcome (allow, step_up, review or block), found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// After the expression, only the end of the input may follow.
    fn finish(&mut self) -> Result<(), RuleError> {
        match self.peek() {
            Tok::Eof => Ok(()),
            Tok::RParen => Err(self.error_here("unmatched `)`")),
            t if is_comparison(t) => Err(self.error_here(CHAIN)),
            other => Err(self.error_here(format!(
                "expected `and`, `or` or the end of the rule, found {}",
                other.describe()
            ))),
        }
    }

    /// Parses a whole expression that must follow `after` (for the error message).
    fn operand(&mut self, after: &str) -> Result<Expr, RuleError> {
        self.expect(Self::or_expr, after)
    }

    fn or_expr(&mut self) -> Result<Expr, RuleError> {
        let mut lhs = self.and_expr()?;
        while self.peek() == &Tok::Or {
            let op_pos = self.bump().pos;
            let rhs = self.expect(Self::and_expr, "`or`")?;
            let pos = lhs.pos;
            lhs = self.node(ExprKind::Or(Box::new(lhs), Box::new(rhs)), pos, op_pos)?;
        }
        Ok(lhs)
    }

    fn and_expr(&mut self) -> Result<Expr, RuleError> {
        let mut lhs = self.not_expr()?;
        while self.peek() == &Tok::And {
            let op_pos = self.bump().pos;
            let rhs = self.expect(Self::not_expr, "`and`")?;
            let pos = lhs.pos;
            lhs = self.node(ExprKind::And(Box::new(lhs), Box::new(rhs)), pos, op_pos)?;
        }
        Ok(lhs)
    }

    fn not_expr(&mut self) -> Result<Expr, RuleError> {
        if self.peek() != &Tok::Not {
            return self.cmp_expr();
        }
        let pos = self.bump().pos;
        self.enter()?;
        let inner = self.expect(Self::not_expr, "`not`");
        self.leave();
        self.node(ExprKind::Not(Box::new(inner?)), pos, pos)
    }

    fn cmp_expr(&mut self) -> Result<Expr, RuleError> {
        let lhs = self.sum()?;
        let op = match self.peek() {
            Tok::EqEq => CmpOp::Eq,
            Tok::NotEq => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::In => return self.in_list(lhs, false),
            Tok::Not => {
                // `x not in [...]`; a bare `not` here is a mistake like `a not b`.
                if self.toks.get(self.at + 1).map(|t| &t.tok) == Some(&Tok::In) {
                    self.bump();
                    return self.in_list(lhs, true);
                }
                return Err(self.error_here(
                    "`not` goes before the expression it negates, or before `in` (`x not in [...]`)",
                ));
            }
            _ => return Ok(lhs),
        };
        let op_tok = self.bump();
        let rhs = self.expect(Self::sum, &format!("`{}`", op.symbol()))?;
        let pos = lhs.pos;
        self.node(
            ExprKind::Cmp(op, Box::new(lhs), Box::new(rhs)),
            pos,
            op_tok.pos,
        )
    }

    /// `in` has just been seen (not consumed): `[ STRING { , STRING } [,] ]`.
    fn in_list(&mut self, value: Expr, negated: bool) -> Result<Expr, RuleError> {
        let op_pos = self.bump().pos;
        if self.peek() != &Tok::LBracket {
            return Err(self.error_here(format!(
                "expected a list of strings such as `[\"new\", \"verified\"]` after `in`, found {}",
                self.peek().describe()
            )));
        }
        self.bump();
        let mut list = Vec::new();
        loop {
            let pos = self.pos();
            match self.bump().tok {
                Tok::Str(value) => {
                    if list.len() >= MAX_LIST_ITEMS {
                        return Err(RuleError::new(
                            ErrorKind::TooLarge,
                            pos,
                            format!("a list may have at most {MAX_LIST_ITEMS} strings"),
                        ));
                    }
                    self.nodes += 1;
                    list.push(ListItem { value, pos });
                }
                Tok::RBracket if !list.is_empty() => break,
                Tok::RBracket => return Err(syntax(pos, "a list needs at least one string")),
                other => {
                    return Err(syntax(
                        pos,
                        format!("a list holds only strings, found {}", other.describe()),
                    ));
                }
            }
            let pos = self.pos();
            match self.bump().tok {
                Tok::Comma if self.peek() == &Tok::RBracket => {
                    self.bump();
                    break;
                }
                Tok::Comma => {}
                Tok::RBracket => break,
                other => {
                    return Err(syntax(
                        pos,
                        format!(
                            "expected `,` or `]` in the list, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        let pos = value.pos;
        self.node(
            ExprKind::In {
                value: Box::new(value),
                list,
                negated,
            },
            pos,
            op_pos,
        )
    }

    fn sum(&mut self) -> Result<Expr, RuleError> {
        let mut lhs = self.product()?;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            let op_pos = self.bump().pos;
            let rhs = self.expect(Self::product, &format!("`{}`", op.symbol()))?;
            let pos = lhs.pos;
            lhs = self.node(
                ExprKind::Arith(op, Box::new(lhs), Box::new(rhs)),
                pos,
                op_pos,
            )?;
        }
    }

    fn product(&mut self) -> Result<Expr, RuleError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                _ => return Ok(lhs),
            };
            let op_pos = self.bump().pos;
            let rhs = self.expect(Self::unary, &format!("`{}`", op.symbol()))?;
            let pos = lhs.pos;
            lhs = self.node(
                ExprKind::Arith(op, Box::new(lhs), Box::new(rhs)),
                pos,
                op_pos,
            )?;
        }
    }

    fn unary(&mut self) -> Result<Expr, RuleError> {
        if self.peek() != &Tok::Minus {
            return self.primary();
        }
        let pos = self.bump().pos;
        self.enter()?;
        let inner = self.expect(Self::unary, "`-`");
        self.leave();
        self.node(ExprKind::Neg(Box::new(inner?)), pos, pos)
    }

    /// Runs `level` after an operator, with a clear error if no operand follows.
    fn expect(
        &mut self,
        level: fn(&mut Parser) -> Result<Expr, RuleError>,
        after: &str,
    ) -> Result<Expr, RuleError> {
        if !starts_expr(self.peek()) {
            let found = self.peek().describe();
            return Err(self
                .error_here(format!("expected an expression after {after}"))
                .with_help(format!("found {found}")));
        }
        level(self)
    }

    fn primary(&mut self) -> Result<Expr, RuleError> {
        let pos = self.pos();
        let tok = self.bump().tok;
        let lit = match tok {
            Tok::Int(n) => Literal::Int(n),
            Tok::Duration(n, u) => Literal::Duration(n, u),
            Tok::Str(s) => Literal::Str(s),
            Tok::True => Literal::Bool(true),
            Tok::False => Literal::Bool(false),
            Tok::Ident(first) => return self.feature(first, pos),
            Tok::LParen => {
                self.enter()?;
                let inner = self.operand("`(`");
                self.leave();
                let mut inner = inner?;
                if is_comparison(self.peek()) {
                    return Err(self.error_here(CHAIN));
                }
                if self.peek() != &Tok::RParen {
                    return Err(self.error_here(format!(
                        "expected `)` to close the `(` at {pos}, found {}",
                        self.peek().describe()
                    )));
                }
                self.bump();
                // The parenthesized expression starts at the parenthesis.
                inner.pos = pos;
                return Ok(inner);
            }
            other => {
                return Err(syntax(
                    pos,
                    format!("expected an expression, found {}", other.describe()),
                ));
            }
        };
        self.node(ExprKind::Lit(lit), pos, pos)
    }

    /// `IDENT { "." IDENT } [ "(" literal ")" ]`, the first segment already consumed.
    fn feature(&mut self, first: String, pos: Pos) -> Result<Expr, RuleError> {
        let mut path = first;
        while self.peek() == &Tok::Dot {
            self.bump();
            let seg_pos = self.pos();
            match self.bump().tok {
                Tok::Ident(seg) => {
                    path.push('.');
                    path.push_str(&seg);
                }
                other => {
                    return Err(syntax(
                        seg_pos,
                        format!(
                            "expected a name after `{path}.`, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
        let mut arg = None;
        if self.peek() == &Tok::LParen {
            self.bump();
            let arg_pos = self.pos();
            let value = match self.bump().tok {
                Tok::Int(n) => Literal::Int(n),
                Tok::Duration(n, u) => Literal::Duration(n, u),
                Tok::Str(s) => Literal::Str(s),
                Tok::True => Literal::Bool(true),
                Tok::False => Literal::Bool(false),
                other => {
                    return Err(syntax(
                        arg_pos,
                        format!(
                            "`{path}(...)` takes one literal argument, such as a window (`1h`) \
                             or a category (`\"tobacco\"`), found {}",
                            other.describe()
                        ),
                    ));
                }
            };
            if self.peek() != &Tok::RParen {
                return Err(self.error_here(format!(
                    "expected `)` after the argument of `{path}`: a feature takes one argument, found {}",
                    self.peek().describe()
                )));
            }
            self.bump();
            self.nodes += 1;
            arg = Some(Arg {
                value,
                pos: arg_pos,
            });
        }
        self.node(ExprKind::Feature { path, arg }, pos, pos)
    }
}

const CHAIN: &str = "comparisons do not chain: join two comparisons with `and` (`a < b and b < c`)";

fn is_comparison(t: &Tok) -> bool {
    matches!(
        t,
        Tok::EqEq | Tok::NotEq | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge | Tok::In
    )
}

/// Whether `t` can begin an expression.
fn starts_expr(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Int(_)
            | Tok::Duration(..)
            | Tok::Str(_)
            | Tok::True
            | Tok::False
            | Tok::Ident(_)
            | Tok::LParen
            | Tok::Not
            | Tok::Minus
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        parse_rule(src).unwrap_err().to_string()
    }

    fn round(src: &str) -> String {
        parse_rule(src).unwrap().to_string()
    }

    #[test]
    fn precedence_and_canonical_form() {
        assert_eq!(
            round("block   when a or b and not c == 1 + 2 * -3"),
            "block when a or b and not c == 1 + 2 * -3"
        );
        assert_eq!(
            round("block when (a or b) and c"),
            "block when (a or b) and c"
        );
        assert_eq!(
            round("block when ((a)) - (b - c)"),
            "block when a - (b - c)"
        );
        assert_eq!(round("block when (a - b) - c"), "block when a - b - c");
        assert_eq!(
            round("allow when x in [\"a\",\"b\",]"),
            "allow when x in [\"a\", \"b\"]"
        );
        assert_eq!(
            round("allow when x not in [\"a\"]"),
            "allow when x not in [\"a\"]"
        );
        assert_eq!(
            round("allow when not (x in [\"a\"])"),
            "allow when not x in [\"a\"]"
        );
        assert_eq!(
            round("step_up when f(\"x\") > 7_000 and g(24h)"),
            "step_up when f(\"x\") > 7000 and g(24h)"
        );
        assert_eq!(
            round("review when (1 < 2) == true"),
            "review when (1 < 2) == true"
        );
        assert_eq!(round("review when - -1 < 0"), "review when --1 < 0");
    }

    #[test]
    fn positions_of_nodes() {
        let r = parse_rule("block when (a.b + 1) * 2 > 3").unwrap();
        let ExprKind::Cmp(_, l, _) = &r.condition.kind else {
            panic!("{r:?}")
        };
        assert_eq!((l.pos.col, l.op_pos.col), (12, 22));
        assert_eq!((r.condition.pos.col, r.condition.op_pos.col), (12, 26));
    }

    #[test]
    fn syntax_errors_point_at_the_problem() {
        assert_eq!(
            err("block when payment.amount > 10000 and "),
            "expected an expression after `and` at 1:39 (found the end of the rule)"
        );
        assert_eq!(
            err("deny when x"),
            "unknown outcome `deny`: a rule starts with allow, step_up, review or block at 1:1"
        );
        assert_eq!(
            err("blok when x"),
            "unknown outcome `blok`: a rule starts with allow, step_up, review or block at 1:1 (did you mean `block`?)"
        );
        assert_eq!(
            err("block x"),
            "expected `when` after the outcome `block`, found `x` at 1:7"
        );
        assert_eq!(
            err(""),
            "expected an outcome (allow, step_up, review or block), found the end of the rule at 1:1"
        );
        assert_eq!(
            err("block when a < b < c"),
            "comparisons do not chain: join two comparisons with `and` (`a < b and b < c`) at 1:18"
        );
        assert_eq!(
            err("block when (a"),
            "expected `)` to close the `(` at 1:12, found the end of the rule at 1:14"
        );
        assert_eq!(err("block when a)"), "unmatched `)` at 1:13");
        assert_eq!(
            err("block when a b"),
            "expected `and`, `or` or the end of the rule, found `b` at 1:14"
        );
        assert_eq!(
            err("block when x in []"),
            "a list needs at least one string at 1:18"
        );
        assert_eq!(
            err("block when x in [1]"),
            "a list holds only strings, found the number `1` at 1:18"
        );
        assert_eq!(
            err("block when x in \"a\""),
            "expected a list of strings such as `[\"new\", \"verified\"]` after `in`, found the string \"a\" at 1:17"
        );
        assert_eq!(
            err("block when a.1"),
            "expected a name after `a.`, found the number `1` at 1:14"
        );
        assert_eq!(
            err("block when a.in"),
            "expected a name after `a.`, found `in` at 1:14"
        );
        assert_eq!(
            err("block when f(x)"),
            "`f(...)` takes one literal argument, such as a window (`1h`) or a category (`\"tobacco\"`), found `x` at 1:14"
        );
        assert_eq!(
            err("block when f(1h, 2h)"),
            "expected `)` after the argument of `f`: a feature takes one argument, found `,` at 1:16"
        );
        assert_eq!(
            err("block when a not b"),
            "`not` goes before the expression it negates, or before `in` (`x not in [...]`) at 1:14"
        );
        assert_eq!(
            err("block when 1 +"),
            "expected an expression after `+` at 1:15 (found the end of the rule)"
        );
        assert_eq!(
            err("block when"),
            "expected an expression after `when` at 1:11 (found the end of the rule)"
        );
        assert_eq!(
            err("block when )"),
            "expected an expression after `when` at 1:12 (found `)`)"
        );
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let deep = format!(
            "block when {}x{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse_rule(&deep).unwrap_err().kind, ErrorKind::TooDeep);
        let ok = format!(
            "block when {}x{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(parse_rule(&ok).is_ok());
        let nots = format!("block when {}x", "not ".repeat(1_000));
        assert_eq!(parse_rule(&nots).unwrap_err().kind, ErrorKind::TooDeep);
        let wide = format!("block when x{}", " or x".repeat(MAX_NODES));
        assert_eq!(parse_rule(&wide).unwrap_err().kind, ErrorKind::TooLarge);
    }
}
