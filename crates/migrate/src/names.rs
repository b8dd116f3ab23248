//! The names and SQL fragments of migration files, each checked as it is read.
//!
//! What reaches SQL from a file is one of three things: an identifier ([`Ident`],
//! [`QualifiedName`]), always double-quoted; a type ([`crate::sqltype::SqlType`]) or a keyword
//! ([`OnDelete`]), rebuilt from a grammar; or a SQL fragment ([`SqlText`]) that the file
//! documents as SQL written by the migration's author (`default`, `up`, `down`, `check`,
//! `raw_sql`), trusted like the file itself, as a migration tool runs its author's SQL.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A SQL identifier: letters, digits and `_`, not starting with a digit, at most 63 bytes
/// (PostgreSQL truncates longer names silently, which would make two names collide).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Ident(String);

impl Ident {
    /// Checks a name.
    pub fn new(text: &str) -> Result<Self, String> {
        let mut chars = text.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`{text}` is not a plain SQL identifier (letters, digits, `_`; not starting with a digit)"
            ));
        }
        if text.len() > 63 {
            return Err(format!("`{text}` is longer than 63 bytes"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name double-quoted for SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Ident {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// A table name, optionally schema-qualified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct QualifiedName {
    /// The schema, when given.
    pub schema: Option<Ident>,
    /// The table.
    pub name: Ident,
}

impl QualifiedName {
    /// Quoted for SQL: `"schema"."table"`.
    pub fn quoted(&self) -> String {
        match &self.schema {
            Some(s) => format!("{}.{}", s.quoted(), self.name.quoted()),
            None => self.name.quoted(),
        }
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl<'de> Deserialize<'de> for QualifiedName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parsed = match text.split_once('.') {
            Some((schema, name)) => Ident::new(schema).and_then(|s| {
                Ident::new(name).map(|n| Self {
                    schema: Some(s),
                    name: n,
                })
            }),
            None => Ident::new(&text).map(|name| Self { schema: None, name }),
        };
        parsed.map_err(serde::de::Error::custom)
    }
}

/// A SQL fragment written by the migration's author (an expression, or `raw_sql`'s statements):
/// non-empty, and free of the dollar-quote tag cutover wraps trigger bodies in, so it cannot
/// end a trigger function early. The statements cutover builds around an expression go one per
/// round trip, so a stray `;` fails the phase instead of running a second statement; that is a
/// guard against slips, not a sandbox (the author's SQL is trusted like the file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SqlText(String);

impl SqlText {
    /// The SQL as written, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SqlText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SqlText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Numbers and booleans are SQL too (`default: 0`, `up: false`).
        let value = serde_yaml_ng::Value::deserialize(d)?;
        let text = match value {
            serde_yaml_ng::Value::String(s) => s,
            serde_yaml_ng::Value::Number(n) => n.to_string(),
            serde_yaml_ng::Value::Bool(b) => b.to_string(),
            _ => return Err(serde::de::Error::custom("expected SQL text")),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(serde::de::Error::custom("empty SQL"));
        }
        if text.contains("$cutover$") {
            return Err(serde::de::Error::custom(
                "SQL must not contain `$cutover$` (cutover quotes trigger bodies with it)",
            ));
        }
        Ok(Self(text.to_owned()))
    }
}

impl From<&str> for SqlText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

/// A foreign key's `ON DELETE` action: a keyword from a fixed list, never SQL as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnDelete {
    /// `NO ACTION` (PostgreSQL's default).
    NoAction,
    /// `RESTRICT`.
    Restrict,
    /// `CASCADE`.
    Cascade,
    /// `SET NULL`.
    SetNull,
    /// `SET DEFAULT`.
    SetDefault,
}

impl OnDelete {
    const ALL: [(Self, &'static str); 5] = [
        (Self::NoAction, "no action"),
        (Self::Restrict, "restrict"),
        (Self::Cascade, "cascade"),
        (Self::SetNull, "set null"),
        (Self::SetDefault, "set default"),
    ];

    /// The SQL keywords.
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::NoAction => "NO ACTION",
            Self::Restrict => "RESTRICT",
            Self::Cascade => "CASCADE",
            Self::SetNull => "SET NULL",
            Self::SetDefault => "SET DEFAULT",
        }
    }
}

impl fmt::Display for OnDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_sql())
    }
}

impl Serialize for OnDelete {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let name = Self::ALL
            .iter()
            .find(|(a, _)| a == self)
            .map_or("no action", |(_, n)| n);
        s.serialize_str(name)
    }
}

impl<'de> Deserialize<'de> for OnDelete {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // Case and spacing as the author likes: `SET NULL`, `set  null`.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let words = words.to_ascii_lowercase();
        Self::ALL
            .iter()
            .find(|(_, n)| *n == words)
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "`{text}` is not an ON DELETE action\n  help: use one of: no action, restrict, cascade, set null, set default"
                ))
            })
    }
}
