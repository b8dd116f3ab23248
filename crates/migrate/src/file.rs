//! Migration files: one YAML file per migration, applied in file-name order.
//!
//! ```yaml
//! description: users.user_name becomes full_name
//! rollout: my-app            # the Rollout whose old revision must be gone before contract
//! operations:
//!   - rename_column: {table: users, from: user_name, to: full_name, type: varchar(255),
//!                     up: user_name, down: full_name}
//! ```
//!
//! Values are checked while they are read, so every error carries the `file:line:column` the
//! YAML reader was at.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// One migration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    /// File name without its extension; the key in `cutover_migrations`.
    pub name: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// SHA-256 of the file's text, to notice a file edited after its expand ran.
    pub checksum: String,
    /// The file's content.
    pub spec: MigrationSpec,
}

/// The content of a migration file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSpec {
    /// What it is for, shown by `status`.
    #[serde(default)]
    pub description: Option<String>,
    /// The Rollout that declared it: `contract` waits until its old revision is gone.
    #[serde(default)]
    pub rollout: Option<String>,
    /// The changes, applied in order. Each is a one-key map (`- add_column: {…}`).
    #[serde(with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub operations: Vec<Operation>,
}

/// A declarative change. Each compiles to expand, backfill, contract and rollback steps.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A new column, nullable, with a constant default, or NOT NULL filled by `up`.
    AddColumn(AddColumn),
    /// The old version keeps `from`, the new one uses `to`; triggers keep both in step.
    RenameColumn(DualWrite),
    /// Like `rename_column`, for a new type: the new version uses the new column `to`.
    ChangeType(DualWrite),
    /// Dropped at contract only: the old version may still read it until then.
    DropColumn(DropColumn),
    /// Built `CONCURRENTLY` at expand.
    CreateIndex(CreateIndex),
    /// CHECK or FOREIGN KEY: added `NOT VALID` at expand, validated after the backfill.
    AddConstraint(AddConstraint),
    /// Hand-written SQL for each phase.
    RawSql(RawSql),
}

/// `add_column`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddColumn {
    /// Table (optionally `schema.table`).
    pub table: QualifiedName,
    /// Column name.
    pub column: Ident,
    /// SQL type, e.g. `text`, `varchar(255)`.
    #[serde(rename = "type")]
    pub sql_type: SqlText,
    /// Whether NULL is allowed once the migration is contracted (default true).
    #[serde(default = "yes")]
    pub nullable: bool,
    /// A constant default (metadata-only since PostgreSQL 11).
    #[serde(default)]
    pub default: Option<SqlText>,
    /// SQL expression over the row's other columns that fills existing rows and rows the old
    /// version inserts. Required for a NOT NULL column without a default.
    #[serde(default)]
    pub up: Option<SqlText>,
}

/// `rename_column` and `change_type`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DualWrite {
    /// Table (optionally `schema.table`).
    pub table: QualifiedName,
    /// The column the old version reads and writes.
    pub from: Ident,
    /// The column the new version reads and writes.
    pub to: Ident,
    /// SQL type of `to`.
    #[serde(rename = "type")]
    pub sql_type: SqlText,
    /// Expression computing `to` from the row (default: `from` itself).
    #[serde(default)]
    pub up: Option<SqlText>,
    /// Expression computing `from` from the row (default: `to` itself).
    #[serde(default)]
    pub down: Option<SqlText>,
}

/// `drop_column`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropColumn {
    /// Table (optionally `schema.table`).
    pub table: QualifiedName,
    /// The column to drop at contract.
    pub column: Ident,
}

/// `create_index`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIndex {
    /// Index name.
    pub name: Ident,
    /// Table (optionally `schema.table`).
    pub table: QualifiedName,
    /// Indexed columns.
    pub columns: Vec<Ident>,
    /// A unique index.
    #[serde(default)]
    pub unique: bool,
}

/// `add_constraint`: exactly one of `check` and `foreign_key`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddConstraint {
    /// Table (optionally `schema.table`).
    pub table: QualifiedName,
    /// Constraint name.
    pub name: Ident,
    /// A CHECK expression.
    #[serde(default)]
    pub check: Option<SqlText>,
    /// A foreign key.
    #[serde(default)]
    pub foreign_key: Option<ForeignKey>,
}

/// A foreign key of `add_constraint`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForeignKey {
    /// Referencing columns.
    pub columns: Vec<Ident>,
    /// Referenced table.
    pub references: QualifiedName,
    /// Referenced columns.
    pub referenced_columns: Vec<Ident>,
    /// `ON DELETE` action, e.g. `cascade`.
    #[serde(default)]
    pub on_delete: Option<SqlText>,
}

/// `raw_sql`: the author states what each phase does.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    /// Additive SQL both versions tolerate.
    pub expand: SqlText,
    /// Destructive SQL, run once the old version is gone.
    #[serde(default)]
    pub contract: Option<SqlText>,
    /// Undoes `expand`.
    #[serde(default)]
    pub rollback: Option<SqlText>,
}

fn yes() -> bool {
    true
}

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

/// A SQL fragment (type, expression, statements): non-empty, and free of the dollar-quote tag
/// cutover wraps trigger bodies in, so it cannot end a trigger function early.
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

/// Parses one migration file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Migration, Error> {
    let shown = path.display().to_string();
    let spec: MigrationSpec = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
        let text = e.to_string();
        let message = text
            .split_once(" at line ")
            .map_or(text.as_str(), |(m, _)| m)
            .to_owned();
        Error::File {
            path: shown.clone(),
            line,
            column,
            message,
        }
    })?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let at = |needle: &str, message: String| {
        let line = text
            .lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1);
        Error::File {
            path: shown.clone(),
            line,
            column: 1,
            message,
        }
    };
    if spec.operations.is_empty() {
        return Err(at("operations", "`operations` is empty".into()));
    }
    for op in &spec.operations {
        check(op).map_err(|(needle, message)| at(needle, message))?;
    }
    let checksum = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Migration {
        name,
        path: path.to_path_buf(),
        checksum,
        spec,
    })
}

/// Rules across fields; the error names a key to find the line by.
fn check(op: &Operation) -> Result<(), (&'static str, String)> {
    match op {
        Operation::AddColumn(a) => {
            if !a.nullable && a.default.is_none() && a.up.is_none() {
                return Err((
                    "nullable",
                    format!(
                        "NOT NULL column `{}` needs `default` or `up`: the old version inserts rows without it",
                        a.column
                    ),
                ));
            }
            if let Some(d) = &a.default {
                let lower = d.as_str().to_ascii_lowercase();
                if let Some(f) = VOLATILE.iter().find(|f| lower.contains(*f)) {
                    return Err((
                        "default",
                        format!(
                            "default `{d}` calls {f}…), which is volatile: adding it rewrites the whole table under an exclusive lock; add the column without a default and fill it with `up`"
                        ),
                    ));
                }
            }
        }
        Operation::CreateIndex(i) if i.columns.is_empty() => {
            return Err(("columns", format!("index `{}` has no columns", i.name)));
        }
        Operation::AddConstraint(c) if c.check.is_some() == c.foreign_key.is_some() => {
            return Err((
                "add_constraint",
                format!(
                    "constraint `{}` needs exactly one of `check` and `foreign_key`",
                    c.name
                ),
            ));
        }
        Operation::AddConstraint(AddConstraint {
            foreign_key: Some(fk),
            name,
            ..
        }) if fk.columns.len() != fk.referenced_columns.len() || fk.columns.is_empty() => {
            return Err((
                "columns",
                format!(
                    "foreign key `{name}`: `columns` and `referenced_columns` differ in length"
                ),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Functions whose default forces a table rewrite.
const VOLATILE: &[&str] = &[
    "random(",
    "gen_random_uuid(",
    "uuid_generate",
    "clock_timestamp(",
    "nextval(",
    "timeofday(",
];

/// Reads every `*.yaml`/`*.yml` file of `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::Io {
                path: dir.display().to_string(),
                source: e,
            })?
            .path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && (ext == "yaml" || ext == "yml") {
            paths.push(path);
        }
    }
    paths.sort();
    let mut out: Vec<Migration> = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let m = parse(&path, &text)?;
        if out.iter().any(|o| o.name == m.name) {
            return Err(Error::File {
                path: path.display().to_string(),
                line: 1,
                column: 1,
                message: format!("two files are named `{}`", m.name),
            });
        }
        out.push(m);
    }
    Ok(out)
}
