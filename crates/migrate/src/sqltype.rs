//! Column types of migration files (`type:`). A type is parsed with a small grammar, the subset
//! of PostgreSQL's type syntax that migrations use, and rebuilt from the tokens it accepted: the
//! text cutover puts into SQL is a type and nothing else (no `;`, quote, comment, operator, or
//! word outside the fixed multi-word names). The `type` field never runs as SQL.
//!
//! ```text
//! type  = base { "[" [int] "]" }                       int[]  text[][]  int[3]
//! base  = "double" "precision"
//!       | ("character" | "char" | "bit") ["varying"] [len]
//!       | ("timestamp" | "time") [len] [("with" | "without") "time" "zone"]
//!       | "interval" [len]
//!       | word ["." word] ["(" mod {"," mod} ")"]      varchar(255)  numeric(10,2)  public.mood
//! len   = "(" int ")"          mod = ["-"] int          word = [A-Za-z_][A-Za-z0-9_]*
//! ```
//!
//! Keywords are case-insensitive and written back in lower case with single spaces, so
//! `Double  Precision` becomes `double precision`; aliases stay as written (`varchar(255)` is
//! not rewritten to `character varying(255)`). SQLite takes the same names (it derives a
//! column's affinity from them: `integer`, `text`, `real`, `blob`, `numeric`, or `varchar(255)`
//! for TEXT), but neither arrays nor schema-qualified names; the SQLite compiler refuses those.
//!
//! Why not a SQL parser crate: `sqlparser` (0.64) parses types of every dialect it knows
//! (`Nullable(...)`, `STRUCT<...>`, `UNSIGNED`, …) and keeps custom type modifiers as raw
//! tokens, so its output would need a second whitelist as long as this grammar, for a large
//! dependency; the subset here is small enough to test whole.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parsed, normalized column type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SqlType {
    text: String,
    array: bool,
    qualified: bool,
}

/// Why a text is not a type: the message, the character offset it refers to, and a fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// 0-based character offset in the text.
    pub at: usize,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub help: &'static str,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  help: {}", self.message, self.help)
    }
}

const HELP: &str = "write a type name, optionally schema-qualified, with modifiers and array brackets: text, integer, varchar(255), numeric(10,2), double precision, timestamp with time zone, public.mood, text[]";

const SERIAL_HELP: &str = "add an integer or bigint column and fill it with `up`; give it a sequence default afterwards (raw_sql), once the rows are filled";

/// Longest identifier PostgreSQL keeps without truncating it.
const MAX_WORD: usize = 63;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Int(String),
    Punct(char),
    /// A character no type has; lexing stops there, and the parser reports it when it gets
    /// there, so the first problem in the text is the one reported.
    Bad(char),
}

/// Splits `text` into tokens with their character offsets.
fn lex(text: &str) -> Result<Vec<(usize, Tok)>, TypeError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.len() > MAX_WORD {
                return Err(error(start, format!("`{word}` is longer than 63 bytes")));
            }
            out.push((start, Tok::Word(word.to_ascii_lowercase())));
        } else if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            if digits.len() > 9 {
                return Err(error(start, format!("`{digits}` is too large a modifier")));
            }
            out.push((start, Tok::Int(digits)));
        } else if "()[],.-".contains(c) {
            out.push((start, Tok::Punct(c)));
            i += 1;
        } else {
            out.push((start, Tok::Bad(c)));
            break;
        }
    }
    Ok(out)
}

fn error(at: usize, message: String) -> TypeError {
    TypeError {
        at,
        message,
        help: HELP,
    }
}

/// A recursive-descent reader over the tokens.
struct Reader {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Reader {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn word(&mut self, want: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w == want) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn punct(&mut self, want: char) -> bool {
        if self.peek() == Some(&Tok::Punct(want)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expect_word(&mut self, want: &str) -> Result<(), TypeError> {
        if self.word(want) {
            return Ok(());
        }
        Err(self.unexpected(&format!("`{want}`")))
    }

    fn expect_punct(&mut self, want: char) -> Result<(), TypeError> {
        if self.punct(want) {
            return Ok(());
        }
        Err(self.unexpected(&format!("`{want}`")))
    }

    fn int(&mut self) -> Result<String, TypeError> {
        match self.peek() {
            Some(Tok::Int(n)) => {
                let n = n.clone();
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected("a number")),
        }
    }

    fn name(&mut self) -> Result<String, TypeError> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected("a type name")),
        }
    }

    fn unexpected(&self, wanted: &str) -> TypeError {
        if let Some(Tok::Bad(c)) = self.peek() {
            return error(self.offset(), format!("unexpected `{c}`"));
        }
        let found = match self.peek() {
            None => "the end".to_owned(),
            Some(Tok::Word(w)) => format!("`{w}`"),
            Some(Tok::Int(n)) => format!("`{n}`"),
            Some(Tok::Punct(c) | Tok::Bad(c)) => format!("`{c}`"),
        };
        error(self.offset(), format!("expected {wanted}, found {found}"))
    }

    /// `(n)` if present.
    fn length(&mut self) -> Result<String, TypeError> {
        if !self.punct('(') {
            return Ok(String::new());
        }
        let n = self.int()?;
        self.expect_punct(')')?;
        Ok(format!("({n})"))
    }

    /// `(m, n, …)` if present, each `m` an integer, maybe negative (`numeric(5,-2)`).
    fn modifiers(&mut self) -> Result<String, TypeError> {
        if !self.punct('(') {
            return Ok(String::new());
        }
        let mut mods = Vec::new();
        loop {
            let sign = if self.punct('-') { "-" } else { "" };
            mods.push(format!("{sign}{}", self.int()?));
            if self.punct(')') {
                return Ok(format!("({})", mods.join(",")));
            }
            if !self.punct(',') {
                return Err(self.unexpected("`,` or `)`"));
            }
        }
    }

    fn base(&mut self) -> Result<(String, bool), TypeError> {
        let start = self.offset();
        let first = self.name()?;
        let text = match first.as_str() {
            "double" => {
                self.expect_word("precision")?;
                "double precision".to_owned()
            }
            "character" | "char" | "bit" => {
                let varying = if self.word("varying") { " varying" } else { "" };
                format!("{first}{varying}{}", self.length()?)
            }
            "timestamp" | "time" => {
                let precision = self.length()?;
                let zone = if self.word("with") {
                    " with time zone"
                } else if self.word("without") {
                    " without time zone"
                } else {
                    ""
                };
                if !zone.is_empty() {
                    self.expect_word("time")?;
                    self.expect_word("zone")?;
                }
                format!("{first}{precision}{zone}")
            }
            "interval" => format!("interval{}", self.length()?),
            "precision" | "varying" | "with" | "without" | "zone" => {
                return Err(error(start, format!("`{first}` cannot start a type")));
            }
            name @ ("serial" | "serial2" | "serial4" | "serial8" | "bigserial" | "smallserial") => {
                return Err(TypeError {
                    at: start,
                    message: format!(
                        "{name} stands for a column with a sequence default (nextval), which is volatile: adding one rewrites the whole table under an exclusive lock"
                    ),
                    help: SERIAL_HELP,
                });
            }
            _ => {
                let qualified = self.punct('.');
                let name = if qualified {
                    format!("{first}.{}", self.name()?)
                } else {
                    first
                };
                return Ok((format!("{name}{}", self.modifiers()?), qualified));
            }
        };
        Ok((text, false))
    }
}

impl SqlType {
    /// Parses a type; the error names the character it stopped at.
    pub fn parse(text: &str) -> Result<Self, TypeError> {
        let toks = lex(text)?;
        let mut r = Reader {
            toks,
            pos: 0,
            end: text.chars().count(),
        };
        let (mut out, qualified) = r.base()?;
        let mut array = false;
        while r.punct('[') {
            out.push('[');
            if let Some(Tok::Int(_)) = r.peek() {
                out.push_str(&r.int()?);
            }
            r.expect_punct(']')?;
            out.push(']');
            array = true;
        }
        if r.peek().is_some() {
            return Err(r.unexpected("the end of the type"));
        }
        Ok(Self {
            text: out,
            array,
            qualified,
        })
    }

    /// The normalized type, safe to write into SQL as it is.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// An array type (`int[]`).
    pub fn is_array(&self) -> bool {
        self.array
    }

    /// A schema-qualified name (`public.mood`).
    pub fn is_qualified(&self) -> bool {
        self.qualified
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for SqlType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for SqlType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a column type: {}\n  help: {}",
                e.message, e.help
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        match SqlType::parse(text) {
            Ok(t) => t.to_string(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn err(text: &str) -> (usize, String) {
        match SqlType::parse(text) {
            Ok(t) => panic!("{text} parsed as {t}"),
            Err(e) => (e.at, e.message),
        }
    }

    #[test]
    fn accepts_the_subset_and_normalizes_it() {
        let cases = [
            ("text", "text"),
            ("INTEGER", "integer"),
            ("varchar(255)", "varchar(255)"),
            ("character varying ( 255 )", "character varying(255)"),
            ("CHAR VARYING(3)", "char varying(3)"),
            ("character(1)", "character(1)"),
            ("bit varying(8)", "bit varying(8)"),
            ("numeric(10, 2)", "numeric(10,2)"),
            ("numeric(5,-2)", "numeric(5,-2)"),
            ("decimal", "decimal"),
            ("Double   Precision", "double precision"),
            ("timestamp with time zone", "timestamp with time zone"),
            (
                "timestamp(3) without time zone",
                "timestamp(3) without time zone",
            ),
            ("time with time zone", "time with time zone"),
            ("timestamptz", "timestamptz"),
            ("interval(6)", "interval(6)"),
            ("int[]", "int[]"),
            ("text[][]", "text[][]"),
            ("integer[3]", "integer[3]"),
            ("public.mood", "public.mood"),
            ("pg_catalog.int4[]", "pg_catalog.int4[]"),
            ("my_schema.my_type(4)", "my_schema.my_type(4)"),
            ("blob", "blob"),
            ("uuid", "uuid"),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "{input}");
        }
        assert!(SqlType::parse("int[]").is_ok_and(|t| t.is_array() && !t.is_qualified()));
        assert!(SqlType::parse("public.mood").is_ok_and(|t| t.is_qualified()));
    }

    #[test]
    fn refuses_everything_else_and_says_where() {
        let cases: [(&str, usize, &str); 16] = [
            ("text; DROP TABLE canary; --", 4, "unexpected `;`"),
            (
                "text -- comment",
                5,
                "expected the end of the type, found `-`",
            ),
            ("text /* x */", 5, "unexpected `/`"),
            ("'text'", 0, "unexpected `'`"),
            ("\"text\"", 0, "unexpected `\"`"),
            ("", 0, "expected a type name, found the end"),
            ("varchar(", 8, "expected a number, found the end"),
            ("varchar(n)", 8, "expected a number, found `n`"),
            ("numeric(10,2", 12, "expected `,` or `)`, found the end"),
            ("double", 6, "expected `precision`, found the end"),
            ("timestamp with zone", 15, "expected `time`, found `zone`"),
            (
                "text collate \"C\"",
                5,
                "expected the end of the type, found `collate`",
            ),
            (
                "int DEFAULT 0",
                4,
                "expected the end of the type, found `default`",
            ),
            ("int[", 4, "expected `]`, found the end"),
            ("a.b.c", 3, "expected the end of the type, found `.`"),
            ("varying", 0, "`varying` cannot start a type"),
        ];
        for (input, at, message) in cases {
            assert_eq!(err(input), (at, message.to_owned()), "{input}");
        }
        for serial in ["serial", "BIGSERIAL", "smallserial", "serial8"] {
            assert!(err(serial).1.contains("sequence default"), "{serial}");
        }
        assert!(err(&"x".repeat(64)).1.contains("longer than 63"));
        assert!(err("varchar(12345678901)").1.contains("too large"));
        assert!(err("tëxt").1.contains("unexpected `ë`"));
    }
}
