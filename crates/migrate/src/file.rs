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
//! Values are checked while they are read; every error carries the `file:line:column` of the
//! field it is about (an index of the text's positions is kept with the migration, so later
//! checks against the database can point at the field too), and a `help:` line.

use std::path::{Path, PathBuf};

use cutover_manifest::{DocIndex, FieldPath, Pos, index_documents};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
pub use crate::names::{Ident, OnDelete, QualifiedName, SqlText};
pub use crate::sqltype::SqlType;

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
    /// Where each field is in the file, for errors found after parsing.
    pub locations: DocIndex,
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
    /// Column type, e.g. `text`, `varchar(255)`: parsed, never run as SQL.
    #[serde(rename = "type")]
    pub sql_type: SqlType,
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
    /// Type of `to`: parsed, never run as SQL.
    #[serde(rename = "type")]
    pub sql_type: SqlType,
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
    /// `ON DELETE` action, e.g. `cascade`: a keyword from a fixed list.
    #[serde(default)]
    pub on_delete: Option<OnDelete>,
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

/// Parses one migration file's text; `path` names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<Migration, Error> {
    let shown = path.display().to_string();
    // serde reads the values; this index of the same text says where each one is.
    let locations = index_documents(text)
        .ok()
        .and_then(|docs| docs.into_iter().next())
        .unwrap_or_default();
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let spec: MigrationSpec =
        serde_path_to_error::deserialize(de).map_err(|e| serde_error(&shown, &locations, e))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let checksum = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let m = Migration {
        name,
        path: path.to_path_buf(),
        checksum,
        spec,
        locations,
    };
    if m.spec.operations.is_empty() {
        return Err(m.error_at(
            &FieldPath::parse("operations"),
            "the list is empty".into(),
            Some("list at least one operation, e.g. `- add_column: {table: t, column: c, type: text}`".into()),
        ));
    }
    for (i, op) in m.spec.operations.iter().enumerate() {
        check(op).map_err(|(field, message, help)| {
            m.error_at(&op_field(i, op, field), message, Some(help.into()))
        })?;
    }
    Ok(m)
}

/// A serde error with the position of the field it is about.
fn serde_error(
    shown: &str,
    locations: &DocIndex,
    e: serde_path_to_error::Error<serde_yaml_ng::Error>,
) -> Error {
    let field = e.path().to_string();
    let inner = e.into_inner();
    let reader = inner
        .location()
        .map(|l| Pos::new(l.line().max(1), l.column().max(1)));
    let text = inner.to_string();
    let text = text
        .split_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    // serde_yaml_ng starts with the path of the enclosing mapping; `field` is more exact.
    let text = match text.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && field.starts_with(head) => rest,
        _ => text,
    };
    let (message, help) = match text.split_once("\n  help: ") {
        Some((m, h)) => (m, Some(h.to_owned())),
        None => (text, None),
    };
    let path = FieldPath::parse(&field);
    let node = locations.node(&path);
    // For an error raised while reading a scalar (a bad name or type), the reader points at
    // the mapping that holds it; the index knows the value itself.
    let pos = match (node, reader) {
        (Some(n), Some(p)) if p < n.key.unwrap_or(n.value) => n.value,
        (_, Some(p)) => p,
        (Some(n), None) => n.value,
        (None, None) => Pos::new(1, 1),
    };
    let message = if path.is_root() || field.contains('?') {
        message.to_owned()
    } else {
        format!("{field}: {message}")
    };
    Error::File {
        path: shown.to_owned(),
        line: pos.line,
        column: pos.column,
        message,
        help,
    }
}

/// `operations[i].<kind>.<field>` (just the operation for an empty `field`).
pub fn op_field(i: usize, op: &Operation, field: &str) -> FieldPath {
    let path = FieldPath::root().key("operations").index(i).key(op.kind());
    if field.is_empty() {
        return path;
    }
    field
        .split('.')
        .fold(path, |p, k| match k.parse::<usize>() {
            Ok(n) => p.index(n),
            Err(_) => p.key(k),
        })
}

impl Migration {
    /// An error about the field at `field`, pointing at its value in the file.
    pub fn error_at(&self, field: &FieldPath, message: String, help: Option<String>) -> Error {
        let pos = self.locations.locate_value(field);
        Error::File {
            path: self.path.display().to_string(),
            line: pos.line.max(1),
            column: pos.column.max(1),
            message: format!("{field}: {message}"),
            help,
        }
    }
}

impl Operation {
    /// The operation's key in the file (`add_column`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AddColumn(_) => "add_column",
            Self::RenameColumn(_) => "rename_column",
            Self::ChangeType(_) => "change_type",
            Self::DropColumn(_) => "drop_column",
            Self::CreateIndex(_) => "create_index",
            Self::AddConstraint(_) => "add_constraint",
            Self::RawSql(_) => "raw_sql",
        }
    }
}

/// Rules across fields: the field (relative to the operation) to point at, what, and what to do.
fn check(op: &Operation) -> Result<(), (&'static str, String, &'static str)> {
    match op {
        Operation::AddColumn(a) => {
            if !a.nullable && a.default.is_none() && a.up.is_none() {
                return Err((
                    "nullable",
                    format!(
                        "NOT NULL column `{}` needs `default` or `up`: the old version inserts rows without it",
                        a.column
                    ),
                    "add a constant `default`, or an `up` expression computing the value from the row",
                ));
            }
            if let Some(d) = &a.default {
                let lower = d.as_str().to_ascii_lowercase();
                if let Some(f) = VOLATILE.iter().find(|f| lower.contains(*f)) {
                    return Err((
                        "default",
                        format!(
                            "default `{d}` calls {f}…), which is volatile: adding it rewrites the whole table under an exclusive lock"
                        ),
                        "add the column without a default and fill it with `up`",
                    ));
                }
            }
        }
        Operation::CreateIndex(i) if i.columns.is_empty() => {
            return Err((
                "columns",
                format!("index `{}` has no columns", i.name),
                "name the indexed columns: `columns: [a, b]`",
            ));
        }
        Operation::AddConstraint(c) if c.check.is_some() == c.foreign_key.is_some() => {
            return Err((
                "",
                format!(
                    "constraint `{}` needs exactly one of `check` and `foreign_key`",
                    c.name
                ),
                "write one constraint per add_constraint operation",
            ));
        }
        Operation::AddConstraint(AddConstraint {
            foreign_key: Some(fk),
            name,
            ..
        }) if fk.columns.len() != fk.referenced_columns.len() || fk.columns.is_empty() => {
            return Err((
                "foreign_key.columns",
                format!(
                    "foreign key `{name}`: `columns` and `referenced_columns` differ in length"
                ),
                "name one referenced column for each referencing column",
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
                help: Some("rename one of them (`.yaml` and `.yml` count as the same name)".into()),
            });
        }
        out.push(m);
    }
    Ok(out)
}
