//! The schema check before expand: every table, column and type a migration relies on exists,
//! and every name it would create is free. Expand installs triggers the running version's
//! writes go through; one naming a column that is not there fails every one of those writes,
//! so a migration that does not fit the database is refused before anything is touched, with
//! the file location of the field at fault.
//!
//! The backends read a [`Catalog`] of what a migration names ([`wanted`]); [`check`] is pure.
//! Operations are followed in order, so a column added by an earlier operation counts as
//! existing. After a `raw_sql` operation the check cannot know what exists (the SQL may create
//! tables, columns or types), so it no longer refuses a name for being missing; what it misses
//! then, expand's transaction still catches before commit.

use std::collections::{HashMap, HashSet};

use crate::Error;
use crate::file::{Ident, Migration, Operation, QualifiedName, SqlType, op_field};

/// One table as the database has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// An ordinary (or partitioned) table, not a view or another kind of relation.
    pub is_table: bool,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// Its constraints' names.
    pub constraints: Vec<String>,
    /// Whether the backfill can walk it in batches (a single-column primary key; rowids).
    pub batch_key: bool,
}

/// What the database holds of the names a migration uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// Each table named, by its name in the file (`users`, `app.users`); `None` if missing.
    pub tables: HashMap<String, Option<Table>>,
    /// Each type named (normalized) and whether it exists; empty where types are free-form
    /// (SQLite derives an affinity from any name).
    pub types: HashMap<String, bool>,
    /// The index names (`schema.name` as the file implies) already taken by a relation.
    pub taken: HashSet<String>,
}

/// The names a migration refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Tables, including those a foreign key references.
    pub tables: Vec<QualifiedName>,
    /// Column types.
    pub types: Vec<SqlType>,
    /// Index names, in the schema of their table.
    pub indexes: Vec<QualifiedName>,
}

/// The index `name` of `table` (indexes live in their table's schema).
pub fn index_name(table: &QualifiedName, name: &Ident) -> QualifiedName {
    QualifiedName {
        schema: table.schema.clone(),
        name: name.clone(),
    }
}

/// Everything [`check`] needs looked up.
pub fn wanted(m: &Migration) -> Wanted {
    let mut w = Wanted::default();
    for op in &m.spec.operations {
        match op {
            Operation::AddColumn(a) => {
                w.tables.push(a.table.clone());
                w.types.push(a.sql_type.clone());
            }
            Operation::RenameColumn(d) | Operation::ChangeType(d) => {
                w.tables.push(d.table.clone());
                w.types.push(d.sql_type.clone());
            }
            Operation::DropColumn(d) => w.tables.push(d.table.clone()),
            Operation::CreateIndex(c) => {
                w.tables.push(c.table.clone());
                w.indexes.push(index_name(&c.table, &c.name));
            }
            Operation::AddConstraint(c) => {
                w.tables.push(c.table.clone());
                if let Some(fk) = &c.foreign_key {
                    w.tables.push(fk.references.clone());
                }
            }
            Operation::RawSql(_) => {}
        }
    }
    let mut seen = HashSet::new();
    w.tables.retain(|t| seen.insert(t.to_string()));
    w
}

/// Walks the operations in order over the catalog, with what earlier ones add.
struct Walk<'a> {
    m: &'a Migration,
    catalog: &'a Catalog,
    /// Re-running an expand that was interrupted: what it creates may exist already.
    resuming: bool,
    /// Columns added by earlier operations, per table.
    added: HashMap<String, Vec<String>>,
    /// A `raw_sql` ran before: missing names may be created by it.
    unknown: bool,
}

type Found<'a> = Result<Option<&'a Table>, Error>;

impl<'a> Walk<'a> {
    fn error(&self, i: usize, field: &str, message: String, help: &str) -> Error {
        let op = &self.m.spec.operations[i];
        self.m
            .error_at(&op_field(i, op, field), message, Some(help.to_owned()))
    }

    /// The table, or an error; `None` when it is missing after a `raw_sql`.
    fn table(&self, i: usize, field: &str, name: &QualifiedName) -> Found<'a> {
        match self.catalog.tables.get(&name.to_string()) {
            Some(Some(t)) if t.is_table => Ok(Some(t)),
            Some(Some(_)) => Err(self.error(
                i,
                field,
                format!("`{name}` is not a table (a view or another kind of relation)"),
                "name the table itself: expand adds columns and triggers to tables only",
            )),
            _ if self.unknown => Ok(None),
            _ => Err(self.error(
                i,
                field,
                format!("table `{name}` does not exist"),
                "fix the name (with its schema, `schema.table`, if it is not on the search path); a table this migration creates must come from a raw_sql operation before this one",
            )),
        }
    }

    fn has(&self, table: &QualifiedName, t: &Table, column: &Ident) -> bool {
        t.columns.iter().any(|c| c == column.as_str())
            || self
                .added
                .get(&table.to_string())
                .is_some_and(|cols| cols.iter().any(|c| c == column.as_str()))
    }

    /// An error unless `column` exists (or may, after a `raw_sql`).
    fn exists(
        &self,
        i: usize,
        field: &str,
        table: &QualifiedName,
        t: Option<&Table>,
        column: &Ident,
        help: &str,
    ) -> Result<(), Error> {
        match t {
            Some(t) if !self.has(table, t, column) && !self.unknown => Err(self.error(
                i,
                field,
                format!(
                    "column `{column}` does not exist in `{table}` (its columns: {})",
                    t.columns.join(", ")
                ),
                help,
            )),
            _ => Ok(()),
        }
    }

    /// An error if `column` exists already, unless an interrupted expand is being re-run.
    fn free(
        &mut self,
        i: usize,
        field: &str,
        table: &QualifiedName,
        t: Option<&Table>,
        column: &Ident,
    ) -> Result<(), Error> {
        if let Some(t) = t
            && self.has(table, t, column)
            && !self.resuming
        {
            return Err(self.error(
                i,
                field,
                format!("column `{column}` already exists in `{table}`"),
                "pick a name the table does not have: expand would take over a column the running version may use, and a rollback would drop it",
            ));
        }
        self.added
            .entry(table.to_string())
            .or_default()
            .push(column.to_string());
        Ok(())
    }

    fn type_exists(&self, i: usize, ty: &SqlType) -> Result<(), Error> {
        if self.catalog.types.get(ty.as_str()) == Some(&false) && !self.unknown {
            return Err(self.error(
                i,
                "type",
                format!("type `{ty}` does not exist in the database"),
                "fix the name, or create the type first (CREATE TYPE in an earlier migration's raw_sql)",
            ));
        }
        Ok(())
    }

    fn batch_key(&self, i: usize, table: &QualifiedName, t: Option<&Table>) -> Result<(), Error> {
        match t {
            Some(t) if !t.batch_key => Err(self.error(
                i,
                "table",
                format!(
                    "`{table}` has no single-column primary key, which the backfill walks in batches"
                ),
                "give the table a single-column primary key first, or make this change with raw_sql",
            )),
            _ => Ok(()),
        }
    }

    fn operation(&mut self, i: usize, op: &Operation) -> Result<(), Error> {
        const FROM: &str = "`from` is the column the running version uses: fix the name";
        match op {
            Operation::AddColumn(a) => {
                let t = self.table(i, "table", &a.table)?;
                self.free(i, "column", &a.table, t, &a.column)?;
                self.type_exists(i, &a.sql_type)?;
                if a.up.is_some() {
                    self.batch_key(i, &a.table, t)?;
                }
            }
            Operation::RenameColumn(d) | Operation::ChangeType(d) => {
                let t = self.table(i, "table", &d.table)?;
                self.exists(i, "from", &d.table, t, &d.from, FROM)?;
                self.free(i, "to", &d.table, t, &d.to)?;
                self.type_exists(i, &d.sql_type)?;
                self.batch_key(i, &d.table, t)?;
            }
            Operation::DropColumn(d) => {
                let t = self.table(i, "table", &d.table)?;
                let help = "fix the name: drop_column drops, at contract, a column the running version still has";
                self.exists(i, "column", &d.table, t, &d.column, help)?;
            }
            Operation::CreateIndex(c) => {
                let t = self.table(i, "table", &c.table)?;
                for (j, col) in c.columns.iter().enumerate() {
                    let help = "index a column of the table, or one an earlier operation of this migration adds";
                    self.exists(i, &format!("columns.{j}"), &c.table, t, col, help)?;
                }
                let name = index_name(&c.table, &c.name);
                if self.catalog.taken.contains(&name.to_string()) && !self.resuming {
                    return Err(self.error(
                        i,
                        "name",
                        format!("`{name}` is already the name of an index or table"),
                        "pick another index name: a rollback would drop the existing one",
                    ));
                }
            }
            Operation::AddConstraint(c) => {
                let t = self.table(i, "table", &c.table)?;
                if t.is_some_and(|t| t.constraints.iter().any(|n| n == c.name.as_str()))
                    && !self.resuming
                {
                    return Err(self.error(
                        i,
                        "name",
                        format!("`{}` already has a constraint `{}`", c.table, c.name),
                        "pick another constraint name: expand would replace the existing one and a rollback would drop it",
                    ));
                }
                if let Some(fk) = &c.foreign_key {
                    for (j, col) in fk.columns.iter().enumerate() {
                        let help = "name columns of the table, or ones an earlier operation adds";
                        let field = format!("foreign_key.columns.{j}");
                        self.exists(i, &field, &c.table, t, col, help)?;
                    }
                    let r = self.table(i, "foreign_key.references", &fk.references)?;
                    for (j, col) in fk.referenced_columns.iter().enumerate() {
                        let help = "name columns of the referenced table";
                        let field = format!("foreign_key.referenced_columns.{j}");
                        self.exists(i, &field, &fk.references, r, col, help)?;
                    }
                }
            }
            Operation::RawSql(_) => self.unknown = true,
        }
        Ok(())
    }
}

/// Refuses, with the field's file location and what to do, a migration that does not fit the
/// schema in `catalog`. `resuming`: an earlier expand of this migration was interrupted, so
/// what it creates may exist already (expand's statements are written to be run again).
pub fn check(m: &Migration, catalog: &Catalog, resuming: bool) -> Result<(), Error> {
    let mut walk = Walk {
        m,
        catalog,
        resuming,
        added: HashMap::new(),
        unknown: false,
    };
    for (i, op) in m.spec.operations.iter().enumerate() {
        walk.operation(i, op)?;
    }
    Ok(())
}
