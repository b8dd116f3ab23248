//! Translation of conditions written in Argo Rollouts' expression syntax (expr-lang) into CEL,
//! the language cutover evaluates.
//!
//! Most existing templates use expr forms such as `result[0] >= 0.95`, `len(result) == 0`,
//! `isNaN(result[0])`, `default(result[0], 0)` or `all(result, {# > 0.9})`. Conditions are
//! parsed into a small tree and printed back as CEL, fully parenthesised, so both dialects are
//! accepted: CEL forms (`size(result)`, `result.all(x, x > 0.9)`, `has(result.a)`) parse too and
//! come out unchanged. Anything neither dialect shares with the other is refused with its name
//! and column, never guessed.
//!
//! Conditions come from manifests, so they are hostile input: the source length, the nesting
//! depth of the tree and the length of the CEL written are bounded ([`MAX_SOURCE_LEN`],
//! [`MAX_NESTING`], [`MAX_CEL_LEN`]). Past a bound the answer is an [`ExprError`] of kind
//! [`ExprErrorKind::TooLong`] or [`ExprErrorKind::TooDeep`], never a stack overflow: the
//! parser, the printer and CEL's own compiler and evaluator all recurse on the tree.

use std::fmt;

mod emit;

use emit::{cel_string, emit};

/// The longest condition accepted, in bytes. Real conditions are one line; this leaves room
/// for long string literals and regular expressions.
pub const MAX_SOURCE_LEN: usize = 4096;

/// The deepest nesting accepted: parentheses, calls, indexes, predicates, unary operators and
/// chains of binary operators or members all count, since each adds a level to the tree that
/// the printer and CEL recurse on. CEL's parser refuses past 96 levels of its own; conditions
/// in use stay under 10.
pub const MAX_NESTING: usize = 32;

/// The longest CEL text a condition may become. `default(x, d)` repeats `x`, so nested
/// defaults grow the output exponentially; this bound stops that early.
pub const MAX_CEL_LEN: usize = 32 * 1024;

/// A condition that could not be translated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What is wrong and what to write instead.
    pub message: String,
    /// Which kind of problem it is.
    pub kind: ExprErrorKind,
}

/// What kind of problem an [`ExprError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExprErrorKind {
    /// The condition is not understood, or uses a construct cutover does not support.
    Syntax,
    /// The condition is longer than [`MAX_SOURCE_LEN`] or would translate to more than
    /// [`MAX_CEL_LEN`] of CEL.
    TooLong,
    /// The condition nests deeper than [`MAX_NESTING`].
    TooDeep,
}

impl ExprError {
    /// A syntax error at `column`.
    pub(super) fn syntax(column: usize, message: impl Into<String>) -> Self {
        Self {
            column,
            message: message.into(),
            kind: ExprErrorKind::Syntax,
        }
    }
}

/// Functions accepted in calls, for error messages.
pub(super) const FUNCTIONS: &str = "len, size, isNaN, isInf, isNil, default, asInt, asFloat, int, double, string, all, any, none, one, filter, map, count, sum, min, max, abs, has";

/// CEL methods passed through as written.
pub(super) const METHODS: &[&str] = &[
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "all",
    "exists",
    "exists_one",
    "map",
    "filter",
    "size",
];

/// Translates an expression (expr-lang or CEL) into CEL.
pub fn to_cel(source: &str) -> Result<String, ExprError> {
    if source.len() > MAX_SOURCE_LEN {
        return Err(ExprError {
            column: 1,
            message: format!(
                "the condition is {} bytes long; at most {MAX_SOURCE_LEN} are accepted",
                source.len()
            ),
            kind: ExprErrorKind::TooLong,
        });
    }
    let tokens = lex(source)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        lambda_depth: 0,
        depth: 0,
    };
    let ast = p.expr(0)?;
    if let Some(t) = p.peek() {
        return Err(p.error_at(t.col, format!("unexpected `{}`", t.tok)));
    }
    let mut out = String::new();
    emit(&ast, &mut out, 0)?;
    Ok(out)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(String),
    Str(String),
    Ident(String),
    Hash,
    Punct(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Num(s) | Tok::Ident(s) => f.write_str(s),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Hash => f.write_str("#"),
            Tok::Punct(p) => f.write_str(p),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    col: usize,
}

const PUNCTS: &[&str] = &[
    "**", "&&", "||", "==", "!=", "<=", ">=", "??", "?.", "..", "(", ")", "[", "]", "{", "}", ",",
    ".", "?", ":", "!", "-", "+", "*", "/", "%", "<", ">",
];

fn lex(source: &str) -> Result<Vec<Token>, ExprError> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Token {
                tok: Tok::Num(text.replace('_', "")),
                col,
            });
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            // The first character is taken whatever it is: `$` is not part of the rest.
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                col,
            });
        } else if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(ExprError::syntax(col, "unterminated string"));
                };
                i += 1;
                if d == quote {
                    break;
                }
                if d == '\\' && quote != '`' {
                    let e = chars.get(i).copied().unwrap_or('\\');
                    i += 1;
                    text.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    text.push(d);
                }
            }
            out.push(Token {
                tok: Tok::Str(text),
                col,
            });
        } else if c == '#' {
            out.push(Token {
                tok: Tok::Hash,
                col,
            });
            i += 1;
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                return Err(ExprError::syntax(
                    col,
                    format!("unexpected character `{c}`"),
                ));
            };
            i += p.chars().count();
            out.push(Token {
                tok: Tok::Punct(p),
                col,
            });
        }
    }
    Ok(out)
}

#[derive(Clone, Debug)]
pub(super) enum Ast {
    Lit(String),
    Ident(String),
    /// `#` (or the receiver of a leading `.field`) inside a predicate, at a lambda depth.
    It(usize),
    List(Vec<Ast>),
    Member(Box<Ast>, String),
    Index(Box<Ast>, Box<Ast>),
    Call(String, Vec<Ast>, usize),
    Method(Box<Ast>, String, Vec<Ast>, usize),
    /// A `{ … }` predicate, bound to the variable of its depth.
    Lambda(Box<Ast>, usize),
    Unary(&'static str, Box<Ast>),
    Binary(&'static str, Box<Ast>, Box<Ast>),
    Cond(Box<Ast>, Box<Ast>, Box<Ast>),
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    lambda_depth: usize,
    /// Nesting of the tree being built: recursive calls in progress plus the links of the
    /// left-leaning chains (`a + b + c`, `a.b.c`) around the current position. Bounding it
    /// bounds both this parser's recursion and the depth of the tree it returns.
    depth: usize,
}

/// Binary operators: (token text, CEL operator, binding power). Words are expr-lang's.
fn binary(tok: &Tok) -> Option<(&'static str, u8)> {
    Some(match tok {
        Tok::Punct("??") => ("??", 1),
        Tok::Punct("||") => ("||", 2),
        Tok::Ident(w) if w == "or" => ("||", 2),
        Tok::Punct("&&") => ("&&", 3),
        Tok::Ident(w) if w == "and" => ("&&", 3),
        Tok::Punct(p @ ("==" | "!=" | "<" | "<=" | ">" | ">=")) => (p, 4),
        Tok::Ident(w) if w == "in" => ("in", 4),
        Tok::Ident(w) if w == "matches" => ("matches", 4),
        Tok::Ident(w) if w == "contains" => ("contains", 4),
        Tok::Ident(w) if w == "startsWith" => ("startsWith", 4),
        Tok::Ident(w) if w == "endsWith" => ("endsWith", 4),
        Tok::Punct(p @ ("+" | "-")) => (p, 5),
        Tok::Punct(p @ ("*" | "/" | "%")) => (p, 6),
        Tok::Punct("**") => ("**", 7),
        Tok::Punct("..") => ("..", 4),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn error_at(&self, column: usize, message: String) -> ExprError {
        ExprError::syntax(column, message)
    }

    /// Goes one level deeper, or refuses at [`MAX_NESTING`].
    fn deeper(&mut self) -> Result<(), ExprError> {
        if self.depth >= MAX_NESTING {
            let column = self.peek().map_or_else(|| self.end_col(), |t| t.col);
            return Err(ExprError {
                column,
                message: format!(
                    "the condition nests deeper than {MAX_NESTING} levels; split it into simpler metrics or conditions"
                ),
                kind: ExprErrorKind::TooDeep,
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// Runs `f` one level deeper.
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ExprError>,
    ) -> Result<T, ExprError> {
        self.deeper()?;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn end_col(&self) -> usize {
        self.tokens.last().map_or(1, |t| t.col + 1)
    }

    fn next(&mut self) -> Result<Token, ExprError> {
        let t =
            self.tokens.get(self.pos).cloned().ok_or_else(|| {
                self.error_at(self.end_col(), "unexpected end of condition".into())
            })?;
        self.pos += 1;
        Ok(t)
    }

    fn expect(&mut self, p: &'static str) -> Result<(), ExprError> {
        let t = self.next()?;
        if t.tok == Tok::Punct(p) {
            Ok(())
        } else {
            Err(self.error_at(t.col, format!("expected `{p}`, found `{}`", t.tok)))
        }
    }

    fn eat(&mut self, p: &'static str) -> bool {
        if self.peek().is_some_and(|t| t.tok == Tok::Punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self, min: u8) -> Result<Ast, ExprError> {
        let start = self.depth;
        let out = self.nested(|p| p.expr_chain(min));
        self.depth = start;
        out
    }

    /// An operand and the binary operators that follow it. Each link of the chain deepens
    /// the tree on the left, so it counts as a level until the chain ends (in [`Self::expr`]).
    fn expr_chain(&mut self, min: u8) -> Result<Ast, ExprError> {
        let mut lhs = self.unary()?;
        while let Some(t) = self.peek().cloned() {
            if t.tok == Tok::Punct("?") && min == 0 {
                self.deeper()?;
                self.pos += 1;
                let a = self.expr(0)?;
                self.expect(":")?;
                let b = self.expr(0)?;
                lhs = Ast::Cond(Box::new(lhs), Box::new(a), Box::new(b));
                continue;
            }
            let Some((op, bp)) = binary(&t.tok) else {
                break;
            };
            if bp < min.max(1) {
                break;
            }
            match op {
                "**" => return Err(self.error_at(t.col, "`**` (power) is not supported".into())),
                ".." => return Err(self.error_at(t.col, "ranges (`..`) are not supported".into())),
                _ => {}
            }
            self.deeper()?;
            self.pos += 1;
            let rhs = self.expr(bp + 1)?;
            lhs = match op {
                "contains" | "startsWith" | "endsWith" | "matches" => {
                    Ast::Method(Box::new(lhs), op.into(), vec![rhs], t.col)
                }
                // `a ?? b`: b when a is missing or nil, like `default(a, b)`.
                "??" => Ast::Call("default".into(), vec![lhs, rhs], t.col),
                _ => Ast::Binary(op, Box::new(lhs), Box::new(rhs)),
            };
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, ExprError> {
        let t = self.peek().cloned();
        match t.map(|t| t.tok) {
            Some(Tok::Punct("!")) => {
                self.pos += 1;
                Ok(Ast::Unary("!", Box::new(self.nested(Self::unary)?)))
            }
            Some(Tok::Ident(w)) if w == "not" => {
                self.pos += 1;
                Ok(Ast::Unary("!", Box::new(self.expr(4)?)))
            }
            Some(Tok::Punct("-")) => {
                self.pos += 1;
                Ok(Ast::Unary("-", Box::new(self.nested(Self::unary)?)))
            }
            Some(Tok::Punct("+")) => {
                self.pos += 1;
                self.nested(Self::unary)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Ast, ExprError> {
        let start = self.depth;
        let out = self.postfix_chain();
        self.depth = start;
        out
    }

    /// A primary and its `.member`, `.method()` and `[index]` links, each a level deeper.
    fn postfix_chain(&mut self) -> Result<Ast, ExprError> {
        let mut e = self.primary()?;
        while let Some(t) = self.peek().cloned() {
            if matches!(t.tok, Tok::Punct("." | "[")) {
                self.deeper()?;
            }
            match t.tok {
                Tok::Punct(".") => {
                    self.pos += 1;
                    let name = self.ident()?;
                    if self.eat("(") {
                        let args = self.args(")")?;
                        if !METHODS.contains(&name.as_str()) {
                            return Err(self.error_at(
                                t.col,
                                format!(
                                    "method `{name}` is not supported; supported methods: {}",
                                    METHODS.join(", ")
                                ),
                            ));
                        }
                        e = Ast::Method(Box::new(e), name, args, t.col);
                    } else {
                        e = Ast::Member(Box::new(e), name);
                    }
                }
                Tok::Punct("?.") => {
                    return Err(self.error_at(
                        t.col,
                        "optional chaining `?.` is not supported; use `default(x.y, d)` or `has(x.y)`".into(),
                    ));
                }
                Tok::Punct("[") => {
                    self.pos += 1;
                    if self.peek().is_some_and(|t| t.tok == Tok::Punct(":")) {
                        return Err(
                            self.error_at(t.col, "slices (`x[a:b]`) are not supported".into())
                        );
                    }
                    let idx = self.expr(0)?;
                    if self.peek().is_some_and(|t| t.tok == Tok::Punct(":")) {
                        return Err(
                            self.error_at(t.col, "slices (`x[a:b]`) are not supported".into())
                        );
                    }
                    self.expect("]")?;
                    e = Ast::Index(Box::new(e), Box::new(idx));
                }
                _ => break,
            }
        }
        Ok(e)
    }

    fn ident(&mut self) -> Result<String, ExprError> {
        let t = self.next()?;
        match t.tok {
            Tok::Ident(s) => Ok(s),
            other => Err(self.error_at(t.col, format!("expected a name, found `{other}`"))),
        }
    }

    fn args(&mut self, close: &'static str) -> Result<Vec<Ast>, ExprError> {
        let mut args = Vec::new();
        if self.eat(close) {
            return Ok(args);
        }
        loop {
            args.push(self.arg()?);
            if self.eat(close) {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    /// An argument: an expression, or a `{ predicate }`.
    fn arg(&mut self) -> Result<Ast, ExprError> {
        if self.eat("{") {
            let depth = self.lambda_depth;
            self.lambda_depth += 1;
            let body = self.expr(0);
            self.lambda_depth -= 1;
            let body = body?;
            self.expect("}")?;
            return Ok(Ast::Lambda(Box::new(body), depth));
        }
        self.expr(0)
    }

    fn primary(&mut self) -> Result<Ast, ExprError> {
        let t = self.next()?;
        match t.tok {
            Tok::Num(n) => {
                if n.parse::<f64>().is_err() && !n.starts_with("0x") {
                    return Err(self.error_at(t.col, format!("invalid number `{n}`")));
                }
                Ok(Ast::Lit(n))
            }
            Tok::Str(s) => Ok(Ast::Lit(cel_string(&s))),
            Tok::Hash => self.it(t.col),
            Tok::Punct("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => Ok(Ast::List(self.args("]")?)),
            // `{.field > 1}`: a leading dot reads a field of the element.
            Tok::Punct(".") if self.lambda_depth > 0 => {
                let name = self.ident()?;
                Ok(Ast::Member(Box::new(self.it(t.col)?), name))
            }
            Tok::Punct("{") => Err(self.error_at(
                t.col,
                "a `{ … }` predicate is only allowed as an argument of all, any, none, one, filter, map or count".into(),
            )),
            Tok::Ident(w) => match w.as_str() {
                "true" | "false" => Ok(Ast::Lit(w)),
                "nil" | "null" => Ok(Ast::Lit("null".into())),
                _ if self.eat("(") => {
                    let args = self.args(")")?;
                    Ok(Ast::Call(w, args, t.col))
                }
                _ => Ok(Ast::Ident(w)),
            },
            other => Err(self.error_at(t.col, format!("unexpected `{other}`"))),
        }
    }

    fn it(&self, col: usize) -> Result<Ast, ExprError> {
        if self.lambda_depth == 0 {
            return Err(self.error_at(
                col,
                "`#` is only allowed inside a `{ … }` predicate, e.g. all(result, {# > 0.9})"
                    .into(),
            ));
        }
        Ok(Ast::It(self.lambda_depth - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::to_cel;

    #[test]
    fn translates_argo_forms() {
        let cases = [
            ("result[0] >= 0.95", "(result[0] >= 0.95)"),
            ("len(result) == 0", "(size(result) == 0)"),
            (
                "result > 0.9 and result < 2",
                "((result > 0.9) && (result < 2))",
            ),
            ("not isNaN(result[0])", "!(isNaN(result[0]))"),
            ("isNil(result)", "(result == null)"),
            (
                "all(result, {# > 0.9})",
                "(result).all(__it0, (__it0 > 0.9))",
            ),
            (
                "any(result, {# < 0.5})",
                "(result).exists(__it0, (__it0 < 0.5))",
            ),
            ("asInt(result) == 1", "(int(result) == 1)"),
            ("result.status == 'ok'", "(result.status == \"ok\")"),
            ("result.all(x, x > 1)", "result.all(x, (x > 1))"),
            ("size(result) > 0 || false", "((size(result) > 0) || false)"),
            ("result.name contains \"a\"", "result.name.contains(\"a\")"),
        ];
        for (input, want) in cases {
            assert_eq!(to_cel(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn a_dollar_sign_ends_its_name() {
        // `$` starts a name but cannot continue one; the lexer used to loop on it forever.
        assert_eq!(to_cel("$ > 1").as_deref(), Ok("($ > 1)"));
        assert_eq!(to_cel("$a$").map_err(|e| e.column), Err(3));
    }

    #[test]
    fn refuses_unsupported_constructs_by_name() {
        let cases = [
            ("result ** 2 > 1", "`**`"),
            ("foo(result)", "function `foo`"),
            ("result[0:2]", "slices"),
            ("result?.a", "optional chaining"),
            ("# > 1", "`#`"),
            ("result >", "end of condition"),
            ("result.frob()", "method `frob`"),
        ];
        for (input, want) in cases {
            let err = to_cel(input).expect_err(input);
            assert!(err.message.contains(want), "{input}: {err}");
        }
    }
}
