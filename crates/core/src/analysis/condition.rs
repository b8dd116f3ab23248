//! `successCondition` / `failureCondition`: compiled with CEL (after translation from Argo
//! Rollouts' expression syntax, see [`super::expr`]) and evaluated with `result` bound to the
//! provider's value.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use cel::{Context, Program, Value};

use super::expr::{ExprError, to_cel};

/// A provider's value, as conditions see it: a Prometheus vector is a list of numbers, a scalar
/// a number, a web answer the JSON value its jsonPath selects. Numbers are floats (as in
/// Argo, where JSON and Prometheus numbers are `float64`), and may be NaN or infinite.
#[derive(Clone, Debug, PartialEq)]
pub enum ResultValue {
    /// JSON null, or nothing selected.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    String(String),
    /// A list (a Prometheus vector, a JSON array).
    List(Vec<ResultValue>),
    /// A JSON object.
    Map(BTreeMap<String, ResultValue>),
}

impl From<&serde_json::Value> for ResultValue {
    fn from(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Self::String(s.clone()),
            serde_json::Value::Array(a) => Self::List(a.iter().map(Self::from).collect()),
            serde_json::Value::Object(o) => {
                Self::Map(o.iter().map(|(k, v)| (k.clone(), Self::from(v))).collect())
            }
        }
    }
}

impl fmt::Display for ResultValue {
    /// The measurement's `value` text: numbers as Prometheus prints them, lists as `[a,b]`,
    /// other values as JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Number(n) if n.is_nan() => f.write_str("NaN"),
            Self::Number(n) if n.is_infinite() => {
                f.write_str(if *n > 0.0 { "+Inf" } else { "-Inf" })
            }
            Self::Number(n) => write!(f, "{n}"),
            Self::String(s) => write!(f, "{s:?}"),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Map(m) => {
                f.write_str("{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k:?}:{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn to_cel_value(v: &ResultValue) -> Value {
    match v {
        ResultValue::Null => Value::Null,
        ResultValue::Bool(b) => Value::Bool(*b),
        ResultValue::Number(n) => Value::Float(*n),
        ResultValue::String(s) => Value::String(Arc::new(s.clone())),
        ResultValue::List(items) => Value::List(Arc::new(items.iter().map(to_cel_value).collect())),
        ResultValue::Map(m) => {
            let map: HashMap<String, Value> = m
                .iter()
                .map(|(k, v)| (k.clone(), to_cel_value(v)))
                .collect();
            Value::from(map)
        }
    }
}

/// Why a condition does not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    /// The expression syntax is not understood or uses an unsupported construct.
    #[error("{0}")]
    Syntax(#[from] ExprError),
    /// The translated expression is not valid CEL.
    #[error("not a valid condition: {0}")]
    Cel(String),
    /// It reads a variable other than `result`.
    #[error("unknown variable `{0}`: conditions can read only `result`")]
    UnknownVariable(String),
}

/// A compiled condition.
pub struct Condition {
    source: String,
    cel: String,
    program: Program,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .field("cel", &self.cel)
            .finish()
    }
}

impl Condition {
    /// Translates and compiles `source`, checking it reads no variable but `result`.
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        on_cel_stack(|| Self::compile_here(source))
    }

    fn compile_here(source: &str) -> Result<Self, ConditionError> {
        let cel = to_cel(source)?;
        let program = Program::compile(&cel).map_err(|e| ConditionError::Cel(e.to_string()))?;
        let refs = program.references();
        let mut unknown: Vec<&str> = refs
            .variables()
            .into_iter()
            .filter(|v| *v != "result" && !v.starts_with("__it"))
            .collect();
        unknown.sort_unstable();
        // Variables bound by CEL macros (`result.all(x, x > 1)`) are references too: accept a
        // name only when it is a macro's bound variable in the source.
        unknown.retain(|v| !cel.contains(&format!("({v}, ")));
        if let Some(v) = unknown.first() {
            return Err(ConditionError::UnknownVariable((*v).to_string()));
        }
        Ok(Self {
            source: source.to_string(),
            cel,
            program,
        })
    }

    /// The condition as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The CEL it was translated to.
    pub fn cel(&self) -> &str {
        &self.cel
    }

    /// Evaluates the condition with `result` bound to `value`. An evaluation error (an index
    /// past the end of an empty vector, a comparison of a string with a number) and a value
    /// that is not a boolean are errors: the measurement is an Error, never a silent pass.
    pub fn evaluate(&self, value: &ResultValue) -> Result<bool, String> {
        on_cel_stack(|| self.evaluate_here(value))
    }

    fn evaluate_here(&self, value: &ResultValue) -> Result<bool, String> {
        let mut ctx = Context::default();
        ctx.add_variable_from_value("result", to_cel_value(value));
        add_helpers(&mut ctx);
        match self.program.execute(&ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition `{}` gave {other:?}, not true or false",
                self.source
            )),
            Err(e) => Err(format!("condition `{}`: {e}", self.source)),
        }
    }
}

/// Stack for CEL's compiler (an ANTLR parser) and evaluator, which recurse on the expression.
/// At the deepest nesting [`super::expr::MAX_NESTING`] lets through they need up to ~8 MiB in a
/// debug build, more than the 2 MiB of a tokio worker thread, where the daemon and the
/// controller evaluate. Memory is reserved, and committed only as far as it is used.
const CEL_STACK: usize = 16 * 1024 * 1024;

/// Runs `f` on a stack of [`CEL_STACK`] bytes: the current one when that much is left, else a
/// fresh one, so that no condition can overflow the caller's thread.
fn on_cel_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(CEL_STACK, CEL_STACK, f)
}

/// Argo's helpers that CEL lacks. Registration fails only on a name clash with CEL's standard
/// library, which these names do not have.
fn add_helpers(ctx: &mut Context<'_, '_>) {
    let _ = ctx.add_function("isNaN", |x: f64| x.is_nan());
    let _ = ctx.add_function("isInf", |x: f64| x.is_infinite());
    let _ = ctx.add_function("abs", |x: f64| x.abs());
    let _ = ctx.add_function("sum", |list: Arc<Vec<Value>>| -> f64 {
        list.iter()
            .map(|v| match v {
                Value::Float(f) => *f,
                #[allow(clippy::cast_precision_loss)]
                Value::Int(i) => *i as f64,
                #[allow(clippy::cast_precision_loss)]
                Value::UInt(u) => *u as f64,
                _ => f64::NAN,
            })
            .sum()
    });
}

/// How a measurement's value was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The success condition held (or no condition is set).
    Successful,
    /// The failure condition held, or the success condition alone did not.
    Failed,
    /// Both conditions are set and neither held.
    Inconclusive,
}

/// Judges a value with a metric's conditions, by Argo's rules: neither set → Successful; only
/// success set → failure is its negation; only failure set → success is its negation; both set
/// and neither true → Inconclusive; the failure condition wins when both hold.
pub fn judge(
    success: Option<&Condition>,
    failure: Option<&Condition>,
    value: &ResultValue,
) -> Result<Verdict, String> {
    let s = success.map(|c| c.evaluate(value)).transpose()?;
    let f = failure.map(|c| c.evaluate(value)).transpose()?;
    let (s, f) = match (s, f) {
        (None, None) => return Ok(Verdict::Successful),
        (Some(s), None) => (s, !s),
        (None, Some(f)) => (!f, f),
        (Some(s), Some(f)) => (s, f),
    };
    Ok(if f {
        Verdict::Failed
    } else if s {
        Verdict::Successful
    } else {
        Verdict::Inconclusive
    })
}
