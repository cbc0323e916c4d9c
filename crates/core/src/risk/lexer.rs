//! Turns rule source into tokens, each with its 1-based line and column.
//!
//! The lexer is total: every input either yields tokens ending in [`Tok::Eof`] or one
//! [`RuleError`] that points at the offending character. Columns count Unicode scalar values,
//! not bytes, so a position matches what an analyst sees in an editor.

use super::{ErrorKind, MAX_IDENT_CHARS, MAX_SOURCE_BYTES, MAX_STRING_CHARS, Pos, RuleError};
use crate::risk::ast::TimeUnit;

/// One token of the rule language.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A name: a feature path segment or an outcome. Keywords have their own tokens.
    Ident(String),
    /// An integer literal (underscores removed).
    Int(i64),
    /// A duration literal: its amount and unit, as written.
    Duration(i64, TimeUnit),
    /// A string literal, unescaped.
    Str(String),
    When,
    And,
    Or,
    Not,
    In,
    True,
    False,
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Plus,
    Minus,
    Star,
    Slash,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

impl Tok {
    /// How the token is named in an error message ("`and`", "the number `12`").
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(n) => format!("the number `{n}`"),
            Tok::Duration(n, u) => format!("the duration `{n}{}`", u.suffix()),
            Tok::Str(s) => format!("the string {}", super::ast::quote(s)),
            Tok::Eof => "the end of the rule".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    /// The spelling of a keyword or punctuation token.
    pub(crate) fn symbol(&self) -> &'static str {
        match self {
            Tok::When => "when",
            Tok::And => "and",
            Tok::Or => "or",
            Tok::Not => "not",
            Tok::In => "in",
            Tok::True => "true",
            Tok::False => "false",
            Tok::Dot => ".",
            Tok::Comma => ",",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Ident(_) | Tok::Int(_) | Tok::Duration(..) | Tok::Str(_) | Tok::Eof => "",
        }
    }
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// The reserved words of the rule language; they cannot be feature path segments.
pub const KEYWORDS: &[&str] = &["when", "and", "or", "not", "in", "true", "false"];

fn keyword(word: &str) -> Option<Tok> {
    Some(match word {
        "when" => Tok::When,
        "and" => Tok::And,
        "or" => Tok::Or,
        "not" => Tok::Not,
        "in" => Tok::In,
        "true" => Tok::True,
        "false" => Tok::False,
        _ => return None,
    })
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: u32,
    col: u32,
}

impl Cursor<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.col = 1;
        } else {
            self.col = self.col.saturating_add(1);
        }
        Some(c)
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }
}

fn err(pos: Pos, message: impl Into<String>) -> RuleError {
    RuleError::new(ErrorKind::Syntax, pos, message)
}

/// Splits `src` into tokens. The last token is always [`Tok::Eof`].
pub(crate) fn lex(src: &str) -> Result<Vec<Token>, RuleError> {
    if src.len() > MAX_SOURCE_BYTES {
        return Err(RuleError::new(
            ErrorKind::TooLarge,
            Pos { line: 1, col: 1 },
            format!("a rule may be at most {MAX_SOURCE_BYTES} bytes long"),
        ));
    }
    let mut cur = Cursor {
        chars: src.chars().peekable(),
        line: 1,
        col: 1,
    };
    let mut out = Vec::new();
    loop {
        let pos = cur.pos();
        let Some(c) = cur.peek() else {
            out.push(Token { tok: Tok::Eof, pos });
            return Ok(out);
        };
        let tok = match c {
            c if c.is_whitespace() => {
                cur.bump();
                continue;
            }
            '#' => {
                while cur.peek().is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            'a'..='z' | 'A'..='Z' | '_' => ident(&mut cur, pos)?,
            '0'..='9' => number(&mut cur, pos)?,
            '"' => string(&mut cur, pos)?,
            _ => {
                cur.bump();
                match c {
                    '.' => Tok::Dot,
                    ',' => Tok::Comma,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    '+' => Tok::Plus,
                    '-' => Tok::Minus,
                    '*' => Tok::Star,
                    '/' => Tok::Slash,
                    '<' if cur.eat('=') => Tok::Le,
                    '<' => Tok::Lt,
                    '>' if cur.eat('=') => Tok::Ge,
                    '>' => Tok::Gt,
                    '=' if cur.eat('=') => Tok::EqEq,
                    '=' => return Err(err(pos, "`=` is not an operator: write `==` to compare")),
                    '!' if cur.eat('=') => Tok::NotEq,
                    '!' => {
                        return Err(err(
                            pos,
                            "`!` is not an operator: write `not` to negate or `!=` to compare",
                        ));
                    }
                    '&' => return Err(err(pos, "write `and` instead of `&`")),
                    '|' => return Err(err(pos, "write `or` instead of `|`")),
                    '\'' => {
                        return Err(err(pos, "strings are written in double quotes (\"...\")"));
                    }
                    other => {
                        return Err(err(pos, format!("unexpected character {other:?}")));
                    }
                }
            }
        };
        out.push(Token { tok, pos });
    }
}

fn ident(cur: &mut Cursor<'_>, pos: Pos) -> Result<Tok, RuleError> {
    let mut word = String::new();
    while let Some(c) = cur.peek() {
        if !(c.is_ascii_alphanumeric() || c == '_') {
            break;
        }
        if word.len() >= MAX_IDENT_CHARS {
            return Err(RuleError::new(
                ErrorKind::TooLarge,
                pos,
                format!("a name may be at most {MAX_IDENT_CHARS} characters long"),
            ));
        }
        word.push(c);
        cur.bump();
    }
    Ok(keyword(&word).unwrap_or(Tok::Ident(word)))
}

/// `DIGIT { DIGIT | "_" }` with underscores only between digits, then an optional unit.
fn number(cur: &mut Cursor<'_>, pos: Pos) -> Result<Tok, RuleError> {
    let mut value: i64 = 0;
    let mut last_underscore = false;
    let mut written = String::new();
    while let Some(c) = cur.peek() {
        match c {
            '0'..='9' => {
                let digit = i64::from(c as u8 - b'0');
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(digit))
                    .ok_or_else(|| {
                        err(pos, format!("number is too large (at most {})", i64::MAX))
                    })?;
                last_underscore = false;
            }
            '_' => {
                if last_underscore {
                    return Err(err(
                        cur.pos(),
                        "a number may not contain two underscores in a row",
                    ));
                }
                last_underscore = true;
            }
            _ => break,
        }
        written.push(c);
        cur.bump();
    }
    let mut suffix = String::new();
    while let Some(c) = cur.peek() {
        if !(c.is_ascii_alphanumeric() || c == '_') || suffix.len() >= MAX_IDENT_CHARS {
            break;
        }
        suffix.push(c);
        cur.bump();
    }
    if last_underscore && suffix.is_empty() {
        return Err(err(pos, "a number may not end with an underscore"));
    }
    if suffix.is_empty() {
        return Ok(Tok::Int(value));
    }
    if last_underscore {
        return Err(err(pos, "a number may not end with an underscore"));
    }
    let Some(unit) = TimeUnit::from_suffix(&suffix) else {
        return Err(err(
            pos,
            format!(
                "`{written}{suffix}` is not a number or a duration: a duration is a number \
                 followed by s, m, h or d, such as `30s`, `10m`, `24h` or `7d`"
            ),
        ));
    };
    if value.checked_mul(unit.ms()).is_none() {
        return Err(err(
            pos,
            format!("duration `{written}{suffix}` is too large"),
        ));
    }
    Ok(Tok::Duration(value, unit))
}

fn string(cur: &mut Cursor<'_>, pos: Pos) -> Result<Tok, RuleError> {
    cur.bump(); // the opening quote
    let mut s = String::new();
    let mut chars = 0usize;
    loop {
        let at = cur.pos();
        match cur.bump() {
            None | Some('\n') => return Err(err(pos, "string is not closed with `\"`")),
            Some('"') => return Ok(Tok::Str(s)),
            Some('\\') => match cur.bump() {
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                _ => {
                    return Err(err(
                        at,
                        "unknown escape in string: only `\\\"` and `\\\\` are allowed",
                    ));
                }
            },
            Some(c) => s.push(c),
        }
        chars += 1;
        if chars > MAX_STRING_CHARS {
            return Err(RuleError::new(
                ErrorKind::TooLarge,
                pos,
                format!("a string may be at most {MAX_STRING_CHARS} characters long"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn error(src: &str) -> String {
        lex(src).unwrap_err().to_string()
    }

    #[test]
    fn numbers_durations_and_underscores() {
        assert_eq!(toks("730_000"), vec![Tok::Int(730_000), Tok::Eof]);
        assert_eq!(
            toks("30s 10m 24h 7d"),
            vec![
                Tok::Duration(30, TimeUnit::Seconds),
                Tok::Duration(10, TimeUnit::Minutes),
                Tok::Duration(24, TimeUnit::Hours),
                Tok::Duration(7, TimeUnit::Days),
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("1_000h"),
            vec![Tok::Duration(1000, TimeUnit::Hours), Tok::Eof]
        );
        assert_eq!(
            toks("9223372036854775807"),
            vec![Tok::Int(i64::MAX), Tok::Eof]
        );
        assert_eq!(
            error("9223372036854775808"),
            "number is too large (at most 9223372036854775807) at 1:1"
        );
        assert_eq!(
            error("  1__0"),
            "a number may not contain two underscores in a row at 1:5"
        );
        assert_eq!(
            error("10_"),
            "a number may not end with an underscore at 1:1"
        );
        assert_eq!(
            error("10_h"),
            "a number may not end with an underscore at 1:1"
        );
        assert!(error("10ms").starts_with("`10ms` is not a number or a duration"));
        assert!(error("1h30m").starts_with("`1h30m` is not a number or a duration"));
        assert_eq!(
            error("106751991167301d"),
            "duration `106751991167301d` is too large at 1:1"
        );
    }

    #[test]
    fn positions_are_one_based_lines_and_char_columns() {
        let t = lex("block when\n  \"tobäcco\" == x").unwrap();
        let p: Vec<(u32, u32)> = t.iter().map(|t| (t.pos.line, t.pos.col)).collect();
        assert_eq!(p, vec![(1, 1), (1, 7), (2, 3), (2, 13), (2, 16), (2, 17)]);
        // A comment runs to the end of its line.
        assert_eq!(
            toks("a # b c\nd"),
            vec![Tok::Ident("a".into()), Tok::Ident("d".into()), Tok::Eof]
        );
    }

    #[test]
    fn operators_and_friendly_mistakes() {
        assert_eq!(
            toks("== != < <= > >= + - * / ( ) [ ] , ."),
            vec![
                Tok::EqEq,
                Tok::NotEq,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Plus,
                Tok::Minus,
                Tok::Star,
                Tok::Slash,
                Tok::LParen,
                Tok::RParen,
                Tok::LBracket,
                Tok::RBracket,
                Tok::Comma,
                Tok::Dot,
                Tok::Eof
            ]
        );
        assert_eq!(
            error("a = 1"),
            "`=` is not an operator: write `==` to compare at 1:3"
        );
        assert_eq!(error("a && b"), "write `and` instead of `&` at 1:3");
        assert_eq!(error("a || b"), "write `or` instead of `|` at 1:3");
        assert!(error("!a").starts_with("`!` is not an operator"));
        assert_eq!(error("x\n  é"), "unexpected character 'é' at 2:3");
    }

    #[test]
    fn strings() {
        assert_eq!(
            toks(r#""a\"b\\c""#),
            vec![Tok::Str("a\"b\\c".into()), Tok::Eof]
        );
        assert_eq!(error("x == \"abc"), "string is not closed with `\"` at 1:6");
        assert_eq!(error("\"a\nb\""), "string is not closed with `\"` at 1:1");
        assert!(error(r#""\n""#).starts_with("unknown escape in string"));
        assert!(error("'x'").starts_with("strings are written in double quotes"));
        let long = format!("\"{}\"", "a".repeat(MAX_STRING_CHARS + 1));
        assert!(error(&long).starts_with("a string may be at most"));
    }

    #[test]
    fn keywords_and_limits() {
        assert_eq!(
            toks("when and or not in true false whence"),
            vec![
                Tok::When,
                Tok::And,
                Tok::Or,
                Tok::Not,
                Tok::In,
                Tok::True,
                Tok::False,
                Tok::Ident("whence".into()),
                Tok::Eof
            ]
        );
        assert!(error(&"a".repeat(MAX_IDENT_CHARS + 1)).starts_with("a name may be at most"));
        assert!(error(&" ".repeat(MAX_SOURCE_BYTES + 1)).starts_with("a rule may be at most"));
    }
}
