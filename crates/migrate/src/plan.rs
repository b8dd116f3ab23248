//! Compiling operations into the steps of each phase. A plan is data: `--dry-run` prints it and
//! the snapshot tests pin it, so what runs is what was reviewed.

use std::fmt;

use serde::Serialize;

use crate::Error;
use crate::file::{
    AddColumn, AddConstraint, CreateIndex, DualWrite, Ident, Migration, Operation, QualifiedName,
};

/// The database a plan is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// PostgreSQL 11 or newer.
    Postgres,
    /// SQLite 3.35 or newer (the embedded demo).
    Sqlite,
}

/// The four phases of expand/contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// Additive changes both versions tolerate.
    Expand,
    /// Copy data into the new shape, in batches.
    Backfill,
    /// Destructive changes, once the old version is gone.
    Contract,
    /// Undo expand, while contract has not run.
    Rollback,
}

impl fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Expand => "expand",
            Self::Backfill => "backfill",
            Self::Contract => "contract",
            Self::Rollback => "rollback",
        })
    }
}

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Lock-taking DDL. Consecutive `ddl` steps share one transaction under `lock_timeout`,
    /// retried whole on a lock timeout, so a phase is applied entirely or not at all. Each is
    /// one statement, sent alone, so an expression inside it cannot add a statement.
    Ddl {
        /// The statement.
        sql: String,
    },
    /// A statement that scans under a weak lock (VALIDATE CONSTRAINT): its own transaction so
    /// the scan does not hold the stronger locks of the DDL around it.
    Validate {
        /// The statement.
        sql: String,
    },
    /// Runs outside any transaction (`CREATE INDEX CONCURRENTLY`). `index` is checked valid
    /// afterwards; an invalid leftover of an interrupted build is dropped and built again.
    Concurrent {
        /// The statement.
        sql: String,
        /// The index it builds, if any.
        index: Option<String>,
    },
    /// A statement that is prepared (parsed and analysed against the schema) but never run, in
    /// the transaction of the DDL before it: an expression that names a missing column or
    /// function, or gives a value of the wrong type, fails expand before its trigger is
    /// committed, where it would fail every write of the running version. `field` is where the
    /// expression is in the file (`operations[1].add_column.up`).
    Check {
        /// The statement.
        sql: String,
        /// The field of the migration file it checks.
        field: String,
    },
    /// Statements written by the migration's author (`raw_sql`), run as a script (several
    /// statements allowed), in the transaction of the DDL around them.
    Script {
        /// The statements.
        sql: String,
    },
    /// Fill `column` with `expr` for every row where it is NULL, in primary-key batches.
    Backfill {
        /// The table.
        table: QualifiedName,
        /// The column filled.
        column: Ident,
        /// SQL expression over the row.
        expr: String,
    },
}

impl Step {
    /// The statement (the expression, for a backfill).
    pub fn sql(&self) -> &str {
        match self {
            Self::Ddl { sql }
            | Self::Validate { sql }
            | Self::Concurrent { sql, .. }
            | Self::Check { sql, .. }
            | Self::Script { sql } => sql,
            Self::Backfill { expr, .. } => expr,
        }
    }
}

/// What a migration does in each phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Migration name.
    pub name: String,
    /// Database dialect.
    pub dialect: Dialect,
    /// Additive steps.
    pub expand: Vec<Step>,
    /// Data copy steps.
    pub backfill: Vec<Step>,
    /// Destructive steps.
    pub contract: Vec<Step>,
    /// Steps undoing expand.
    pub rollback: Vec<Step>,
    /// The operation (index in the file) each step of each phase comes from.
    #[serde(skip)]
    pub origin: Origins,
    /// Per operation, the steps undoing its expand: rollback runs them all (last operation
    /// first); a failed expand runs those of the operations it had applied.
    #[serde(skip)]
    pub undo: Vec<Vec<Step>>,
}

/// For each step of each phase of a [`Plan`], the operation it comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins {
    expand: Vec<usize>,
    backfill: Vec<usize>,
    contract: Vec<usize>,
    rollback: Vec<usize>,
}

impl Plan {
    /// The steps of one phase.
    pub fn steps(&self, phase: PhaseKind) -> &[Step] {
        match phase {
            PhaseKind::Expand => &self.expand,
            PhaseKind::Backfill => &self.backfill,
            PhaseKind::Contract => &self.contract,
            PhaseKind::Rollback => &self.rollback,
        }
    }

    /// The operation each step of `phase` comes from.
    pub fn origin(&self, phase: PhaseKind) -> &[usize] {
        match phase {
            PhaseKind::Expand => &self.origin.expand,
            PhaseKind::Backfill => &self.origin.backfill,
            PhaseKind::Contract => &self.origin.contract,
            PhaseKind::Rollback => &self.origin.rollback,
        }
    }

    fn empty(name: &str, dialect: Dialect) -> Self {
        Self {
            name: name.to_owned(),
            dialect,
            expand: Vec::new(),
            backfill: Vec::new(),
            contract: Vec::new(),
            rollback: Vec::new(),
            origin: Origins::default(),
            undo: Vec::new(),
        }
    }

    /// Appends the steps one operation compiled to, noting where they come from.
    fn append(&mut self, op: usize, part: Self) {
        let tag = |steps: &[Step]| vec![op; steps.len()];
        self.origin.expand.extend(tag(&part.expand));
        self.origin.backfill.extend(tag(&part.backfill));
        self.origin.contract.extend(tag(&part.contract));
        self.expand.extend(part.expand);
        self.backfill.extend(part.backfill);
        self.contract.extend(part.contract);
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "-- migration {} ({:?})", self.name, self.dialect)?;
        for phase in [
            PhaseKind::Expand,
            PhaseKind::Backfill,
            PhaseKind::Contract,
            PhaseKind::Rollback,
        ] {
            writeln!(f, "-- {phase}")?;
            let steps = self.steps(phase);
            if steps.is_empty() {
                writeln!(f, "--   (nothing)")?;
            }
            for step in steps {
                match step {
                    Step::Ddl { sql } | Step::Script { sql } => writeln!(f, "{sql};")?,
                    Step::Check { sql, .. } => {
                        writeln!(f, "-- checked before commit (prepared, never run)\n{sql};")?;
                    }
                    Step::Validate { sql } => writeln!(f, "-- own transaction\n{sql};")?,
                    Step::Concurrent { sql, .. } => {
                        writeln!(f, "-- outside a transaction\n{sql};")?;
                    }
                    Step::Backfill {
                        table,
                        column,
                        expr,
                    } => writeln!(
                        f,
                        "-- in key batches: UPDATE {} SET {} = ({expr}) WHERE {} IS NULL",
                        table.quoted(),
                        column.quoted(),
                        column.quoted()
                    )?,
                }
            }
        }
        Ok(())
    }
}

/// Compiles a migration for a dialect. SQLite refuses what it cannot do without blocking or
/// rebuilding the table, naming the operation.
pub fn compile(m: &Migration, dialect: Dialect) -> Result<Plan, Error> {
    let mut plan = Plan::empty(&m.name, dialect);
    for (i, op) in m.spec.operations.iter().enumerate() {
        let mut part = Plan::empty(&m.name, dialect);
        let mut rb = Vec::new();
        compile_op(m, i, op, &mut part, &mut rb)?;
        plan.append(i, part);
        plan.undo.push(rb);
    }
    // Rollback undoes expand in reverse order.
    for (i, rb) in plan.undo.iter().enumerate().rev() {
        plan.rollback.extend(rb.iter().cloned());
        plan.origin.rollback.extend(vec![i; rb.len()]);
    }
    // Every VALIDATE of contract first: they only scan (and only mark constraints valid), so
    // one that fails leaves contract wholly undone instead of after another operation's drops.
    let (validate, rest): (Vec<_>, Vec<_>) = plan
        .contract
        .drain(..)
        .zip(plan.origin.contract.drain(..))
        .partition(|(s, _)| matches!(s, Step::Validate { .. }));
    (plan.contract, plan.origin.contract) = validate.into_iter().chain(rest).unzip();
    Ok(plan)
}

fn compile_op(
    m: &Migration,
    i: usize,
    op: &Operation,
    plan: &mut Plan,
    rb: &mut Vec<Step>,
) -> Result<(), Error> {
    let dialect = plan.dialect;
    if dialect == Dialect::Sqlite {
        sqlite_types(m, i, op)?;
    }
    match (op, dialect) {
        (Operation::AddColumn(a), _) => add_column(a, i, plan, rb, m)?,
        (Operation::RenameColumn(d) | Operation::ChangeType(d), _) => {
            match dialect {
                Dialect::Postgres => dual_write_pg(d, plan, rb),
                Dialect::Sqlite => crate::sqlite::dual_write(d, plan, rb),
            }
            checks_dual_write(d, i, op, plan);
        }
        (Operation::DropColumn(d), _) => plan.contract.push(ddl(format!(
            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
            d.table.quoted(),
            d.column.quoted()
        ))),
        (Operation::CreateIndex(c), _) => create_index(c, dialect, plan, rb),
        (Operation::AddConstraint(c), Dialect::Postgres) => add_constraint(c, plan, rb),
        (Operation::AddConstraint(c), Dialect::Sqlite) => {
            return Err(not_online(
                m,
                &format!(
                    "add_constraint `{}`: SQLite can only add a constraint by rebuilding the table, which blocks every writer",
                    c.name
                ),
            ));
        }
        (Operation::RawSql(r), _) => {
            plan.expand.push(Step::Script {
                sql: r.expand.to_string(),
            });
            if let Some(c) = &r.contract {
                plan.contract.push(Step::Script { sql: c.to_string() });
            }
            if let Some(b) = &r.rollback {
                rb.push(Step::Script { sql: b.to_string() });
            }
        }
    }
    Ok(())
}

/// SQLite takes type names as they are, but has neither arrays nor schemas for types.
fn sqlite_types(m: &Migration, i: usize, op: &Operation) -> Result<(), Error> {
    let ty = match op {
        Operation::AddColumn(a) => &a.sql_type,
        Operation::RenameColumn(d) | Operation::ChangeType(d) => &d.sql_type,
        _ => return Ok(()),
    };
    let why = if ty.is_array() {
        "SQLite has no array types"
    } else if ty.is_qualified() {
        "SQLite has no schema-qualified type names"
    } else {
        return Ok(());
    };
    Err(m.error_at(
        &crate::file::op_field(i, op, "type"),
        format!("`{ty}`: {why}"),
        Some(
            "use one of SQLite's type names (integer, text, real, blob, numeric), or store the value as text (e.g. JSON)"
                .into(),
        ),
    ))
}

/// The expressions of a dual write, checked in expand's transaction: `up` must compute the new
/// column and `down` the old one, over the table's row, as the trigger and backfill use them.
fn checks_dual_write(d: &DualWrite, i: usize, op: &Operation, plan: &mut Plan) {
    let table = d.table.quoted();
    let (up, up_field) =
        d.up.as_ref()
            .map_or((d.from.quoted(), "from"), |u| (u.to_string(), "up"));
    let (down, down_field) = d
        .down
        .as_ref()
        .map_or((d.to.quoted(), "to"), |u| (u.to_string(), "down"));
    plan.expand.push(check(
        format!("UPDATE {table} SET {} = ({up})", d.to.quoted()),
        i,
        op,
        up_field,
    ));
    plan.expand.push(check(
        format!("UPDATE {table} SET {} = ({down})", d.from.quoted()),
        i,
        op,
        down_field,
    ));
}

fn check(sql: String, i: usize, op: &Operation, field: &str) -> Step {
    Step::Check {
        sql,
        field: crate::file::op_field(i, op, field).to_string(),
    }
}

fn not_online(m: &Migration, why: &str) -> Error {
    Error::NotOnline {
        migration: m.name.clone(),
        why: why.to_owned(),
    }
}

pub(crate) fn ddl(sql: String) -> Step {
    Step::Ddl { sql }
}

/// The trigger and function name for `column` of `table`.
pub(crate) fn trigger_name(prefix: &str, table: &QualifiedName, column: &Ident) -> Ident {
    let full = format!("_cutover_{prefix}_{}_{}", table.name, column);
    // Identifiers are at most 63 bytes; keep the name unique with a short hash when cut.
    let name = if full.len() > 63 {
        let hash: u32 = full.bytes().fold(2_166_136_261, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        });
        format!("{}_{hash:08x}", &full[..54])
    } else {
        full
    };
    Ident::new(&name).unwrap_or_else(|_| column.clone())
}

/// The trigger function's own (schema-qualified) name.
fn function_name(table: &QualifiedName, trigger: &Ident) -> String {
    match &table.schema {
        Some(s) => format!("{}.{}", s.quoted(), trigger.quoted()),
        None => trigger.quoted(),
    }
}

/// `expr` evaluated over the row being written. The subquery exposes NEW's fields under the
/// table's name, so the expression reads exactly as it does in the backfill's UPDATE.
fn over_new(expr: &str, table: &QualifiedName) -> String {
    format!(
        "(SELECT ({expr}) FROM (SELECT NEW.*) AS {})",
        table.name.quoted()
    )
}

/// The sync triggers do not fire during cutover's own backfill: it sets the new column itself,
/// and the reverse sync there would only rewrite the old column with the same value. A `WHEN`
/// clause (not an early return in the body) skips the PL/pgSQL call altogether, which is most
/// of a backfilled row's cost.
const UNLESS_BACKFILLING: &str =
    "WHEN (current_setting('cutover.backfill', true) IS DISTINCT FROM 'on')";

fn add_column(
    a: &AddColumn,
    i: usize,
    plan: &mut Plan,
    rb: &mut Vec<Step>,
    m: &Migration,
) -> Result<(), Error> {
    let dialect = plan.dialect;
    let table = a.table.quoted();
    let col = a.column.quoted();
    let default = a
        .default
        .as_ref()
        .map(|d| format!(" DEFAULT {d}"))
        .unwrap_or_default();
    let not_null_now = !a.nullable && a.default.is_some();
    if dialect == Dialect::Sqlite && !a.nullable && a.default.is_none() {
        return Err(not_online(
            m,
            &format!(
                "add_column `{}` NOT NULL without a default: SQLite cannot add NOT NULL to an existing column without rebuilding the table; give it a constant `default`",
                a.column
            ),
        ));
    }
    // With a constant default every row, old and new, has a value: NOT NULL is safe at once
    // and metadata-only. Without one, the old version inserts NULLs until it is gone.
    plan.expand.push(ddl(format!(
        "ALTER TABLE {table} ADD COLUMN {}{col} {}{default}{}",
        if dialect == Dialect::Postgres {
            "IF NOT EXISTS "
        } else {
            ""
        },
        a.sql_type,
        if not_null_now { " NOT NULL" } else { "" }
    )));
    rb.push(ddl(format!(
        "ALTER TABLE {table} DROP COLUMN {}{col}",
        if dialect == Dialect::Postgres {
            "IF EXISTS "
        } else {
            ""
        }
    )));
    let Some(up) = &a.up else { return Ok(()) };
    // `up` fills the column in the trigger and the backfill: checked like the backfill uses it.
    let op = &m.spec.operations[i];
    plan.expand.push(check(
        format!("UPDATE {table} SET {col} = ({up}) WHERE {col} IS NULL"),
        i,
        op,
        "up",
    ));
    if dialect == Dialect::Sqlite {
        crate::sqlite::fill_on_insert(a, up.as_str(), plan, rb);
        return Ok(());
    }
    let trigger = trigger_name("fill", &a.table, &a.column);
    let function = function_name(&a.table, &trigger);
    plan.expand.push(ddl(format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $cutover$\nBEGIN\n  IF NEW.{col} IS NULL THEN\n    NEW.{col} := {};\n  END IF;\n  RETURN NEW;\nEND\n$cutover$",
        over_new(up.as_str(), &a.table)
    )));
    plan.expand.push(ddl(format!(
        "DROP TRIGGER IF EXISTS {} ON {table}",
        trigger.quoted()
    )));
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW {UNLESS_BACKFILLING} EXECUTE FUNCTION {function}()",
        trigger.quoted()
    )));
    plan.backfill.push(Step::Backfill {
        table: a.table.clone(),
        column: a.column.clone(),
        expr: up.to_string(),
    });
    let drop_trigger = drop_trigger_steps(&a.table, &trigger);
    if !a.nullable && a.default.is_none() {
        let not_null = Ident::new(&format!("{}_not_null", trigger.as_str()))
            .unwrap_or_else(|_| trigger.clone());
        plan.expand.push(ddl(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            not_null.quoted()
        )));
        plan.expand.push(ddl(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({col} IS NOT NULL) NOT VALID",
            not_null.quoted()
        )));
        // VALIDATE scans under SHARE UPDATE EXCLUSIVE (writers go on); SET NOT NULL then
        // skips its own scan because a validated CHECK proves it.
        plan.contract.push(Step::Validate {
            sql: format!(
                "ALTER TABLE {table} VALIDATE CONSTRAINT {}",
                not_null.quoted()
            ),
        });
        plan.contract.extend(drop_trigger);
        plan.contract.push(ddl(format!(
            "ALTER TABLE {table} ALTER COLUMN {col} SET NOT NULL"
        )));
        plan.contract.push(ddl(format!(
            "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
            not_null.quoted()
        )));
    } else {
        plan.contract.extend(drop_trigger);
    }
    // Rollback drops the trigger before the column it fills.
    let [t, f] = drop_trigger_steps(&a.table, &trigger);
    rb.insert(0, f);
    rb.insert(0, t);
    Ok(())
}

fn drop_trigger_steps(table: &QualifiedName, trigger: &Ident) -> [Step; 2] {
    [
        ddl(format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            trigger.quoted(),
            table.quoted()
        )),
        ddl(format!(
            "DROP FUNCTION IF EXISTS {}()",
            function_name(table, trigger)
        )),
    ]
}

/// Two columns kept in step by one BEFORE trigger: a write that changes only the old column
/// recomputes the new one with `up`, and the other way round with `down`; an insert fills
/// whichever is missing.
fn dual_write_pg(d: &DualWrite, plan: &mut Plan, rb: &mut Vec<Step>) {
    let table = d.table.quoted();
    let (from, to) = (d.from.quoted(), d.to.quoted());
    let up = d.up.as_ref().map_or(d.from.to_string(), |u| u.to_string());
    let down = d.down.as_ref().map_or(d.to.to_string(), |u| u.to_string());
    let trigger = trigger_name("sync", &d.table, &d.to);
    let function = function_name(&d.table, &trigger);
    let (up_new, down_new) = (over_new(&up, &d.table), over_new(&down, &d.table));
    plan.expand.push(ddl(format!(
        "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {to} {}",
        d.sql_type
    )));
    plan.expand.push(ddl(format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $cutover$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.{to} IS NULL AND NEW.{from} IS NOT NULL THEN
      NEW.{to} := {up_new};
    ELSIF NEW.{from} IS NULL AND NEW.{to} IS NOT NULL THEN
      NEW.{from} := {down_new};
    END IF;
  ELSIF NEW.{from} IS DISTINCT FROM OLD.{from} AND NEW.{to} IS NOT DISTINCT FROM OLD.{to} THEN
    NEW.{to} := {up_new};
  ELSIF NEW.{to} IS DISTINCT FROM OLD.{to} AND NEW.{from} IS NOT DISTINCT FROM OLD.{from} THEN
    NEW.{from} := {down_new};
  END IF;
  RETURN NEW;
END
$cutover$"
    )));
    let [drop_trigger, drop_function] = drop_trigger_steps(&d.table, &trigger);
    plan.expand.push(drop_trigger.clone());
    plan.expand.push(ddl(format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW {UNLESS_BACKFILLING} EXECUTE FUNCTION {function}()",
        trigger.quoted()
    )));
    plan.backfill.push(Step::Backfill {
        table: d.table.clone(),
        column: d.to.clone(),
        expr: up,
    });
    plan.contract.push(drop_trigger.clone());
    plan.contract.push(drop_function.clone());
    plan.contract.push(ddl(format!(
        "ALTER TABLE {table} DROP COLUMN IF EXISTS {from}"
    )));
    rb.push(drop_trigger);
    rb.push(drop_function);
    rb.push(ddl(format!(
        "ALTER TABLE {table} DROP COLUMN IF EXISTS {to}"
    )));
}

fn create_index(i: &CreateIndex, dialect: Dialect, plan: &mut Plan, rb: &mut Vec<Step>) {
    let cols: Vec<String> = i.columns.iter().map(Ident::quoted).collect();
    let unique = if i.unique { "UNIQUE " } else { "" };
    let index_ref = match &i.table.schema {
        Some(s) => format!("{}.{}", s.quoted(), i.name.quoted()),
        None => i.name.quoted(),
    };
    match dialect {
        Dialect::Postgres => {
            plan.expand.push(Step::Concurrent {
                sql: format!(
                    "CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})",
                    i.name.quoted(),
                    i.table.quoted(),
                    cols.join(", ")
                ),
                index: Some(i.name.to_string()),
            });
            rb.push(Step::Concurrent {
                sql: format!("DROP INDEX CONCURRENTLY IF EXISTS {index_ref}"),
                index: None,
            });
        }
        Dialect::Sqlite => {
            plan.expand.push(ddl(format!(
                "CREATE {unique}INDEX IF NOT EXISTS {index_ref} ON {} ({})",
                i.table.name.quoted(),
                cols.join(", ")
            )));
            rb.push(ddl(format!("DROP INDEX IF EXISTS {index_ref}")));
        }
    }
}

fn add_constraint(c: &AddConstraint, plan: &mut Plan, rb: &mut Vec<Step>) {
    let table = c.table.quoted();
    let name = c.name.quoted();
    let body = match (&c.check, &c.foreign_key) {
        (Some(check), _) => format!("CHECK ({check})"),
        (None, Some(fk)) => {
            let cols: Vec<String> = fk.columns.iter().map(Ident::quoted).collect();
            let refs: Vec<String> = fk.referenced_columns.iter().map(Ident::quoted).collect();
            let on_delete = fk
                .on_delete
                .as_ref()
                .map(|a| format!(" ON DELETE {}", a.as_sql()))
                .unwrap_or_default();
            format!(
                "FOREIGN KEY ({}) REFERENCES {} ({}){on_delete}",
                cols.join(", "),
                fk.references.quoted(),
                refs.join(", ")
            )
        }
        (None, None) => return,
    };
    // NOT VALID: a brief lock and no scan; new writes are checked from here on.
    plan.expand.push(ddl(format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
    )));
    plan.expand.push(ddl(format!(
        "ALTER TABLE {table} ADD CONSTRAINT {name} {body} NOT VALID"
    )));
    plan.backfill.push(Step::Validate {
        sql: format!("ALTER TABLE {table} VALIDATE CONSTRAINT {name}"),
    });
    rb.push(ddl(format!(
        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
    )));
}
