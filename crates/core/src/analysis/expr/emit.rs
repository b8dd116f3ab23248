//! Printing the parsed condition as CEL: Argo's functions and predicates become CEL functions
//! and macros, everything fully parenthesised so precedence cannot change on the way.

use super::{Ast, ExprError, ExprErrorKind, FUNCTIONS, MAX_CEL_LEN};

pub(super) fn cel_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn var(depth: usize) -> String {
    format!("__it{depth}")
}

/// Prints `ast` as CEL onto `out`, refusing once the text passes [`MAX_CEL_LEN`]: each node
/// checks what it printed, so a growing subtree is stopped before its parent copies it again.
pub(super) fn emit(ast: &Ast, out: &mut String, depth: usize) -> Result<(), ExprError> {
    let start = out.len();
    emit_node(ast, out, depth)?;
    if out.len() - start > MAX_CEL_LEN {
        return Err(ExprError {
            column: 1,
            message: format!(
                "the condition translates to more than {MAX_CEL_LEN} bytes of CEL (nested `default` repeats its argument); simplify it"
            ),
            kind: ExprErrorKind::TooLong,
        });
    }
    Ok(())
}

fn emit_node(ast: &Ast, out: &mut String, _depth: usize) -> Result<(), ExprError> {
    let e = |a: &Ast| -> Result<String, ExprError> {
        let mut s = String::new();
        emit(a, &mut s, 0)?;
        Ok(s)
    };
    match ast {
        Ast::Lit(s) | Ast::Ident(s) => out.push_str(s),
        Ast::It(d) => out.push_str(&var(*d)),
        Ast::List(items) => {
            let items: Result<Vec<String>, _> = items.iter().map(e).collect();
            out.push_str(&format!("[{}]", items?.join(", ")));
        }
        Ast::Member(base, name) => out.push_str(&format!("{}.{name}", e(base)?)),
        Ast::Index(base, idx) => out.push_str(&format!("{}[{}]", e(base)?, e(idx)?)),
        Ast::Unary(op, a) => out.push_str(&format!("{op}({})", e(a)?)),
        Ast::Binary(op, a, b) => out.push_str(&format!("({} {op} {})", e(a)?, e(b)?)),
        Ast::Cond(c, a, b) => out.push_str(&format!("({} ? {} : {})", e(c)?, e(a)?, e(b)?)),
        Ast::Lambda(_, _) => {
            return Err(ExprError::syntax(
                1,
                "a `{ … }` predicate is only allowed as the last argument of all, any, none, one, filter, map or count",
            ));
        }
        Ast::Method(recv, name, args, col) => {
            let recv = e(recv)?;
            out.push_str(&method(&recv, name, args, *col)?);
        }
        Ast::Call(name, args, col) => out.push_str(&call(name, args, *col)?),
    }
    Ok(())
}

/// A method on a receiver; a `{ … }` predicate becomes a CEL macro over the depth's variable.
fn method(recv: &str, name: &str, args: &[Ast], col: usize) -> Result<String, ExprError> {
    let mut parts = Vec::new();
    for a in args {
        match a {
            Ast::Lambda(body, d) => {
                let mut s = String::new();
                emit(body, &mut s, 0)?;
                parts.push(var(*d));
                parts.push(s);
            }
            other => {
                let mut s = String::new();
                emit(other, &mut s, 0)?;
                parts.push(s);
            }
        }
    }
    let _ = col;
    Ok(format!("{recv}.{name}({})", parts.join(", ")))
}

fn call(name: &str, args: &[Ast], col: usize) -> Result<String, ExprError> {
    let arity = |n: usize| -> Result<(), ExprError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(ExprError::syntax(
                col,
                format!("`{name}` takes {n} argument(s), got {}", args.len()),
            ))
        }
    };
    let e = |a: &Ast| -> Result<String, ExprError> {
        let mut s = String::new();
        emit(a, &mut s, 0)?;
        Ok(s)
    };
    let macro_over = |cel: &str| -> Result<String, ExprError> {
        arity(2)?;
        let Ast::Lambda(..) = &args[1] else {
            return Err(ExprError::syntax(
                col,
                format!(
                    "`{name}` takes a list and a `{{ … }}` predicate, e.g. {name}(result, {{# > 0.9}})"
                ),
            ));
        };
        method(&format!("({})", e(&args[0])?), cel, &args[1..], col)
    };
    Ok(match name {
        "len" | "size" => {
            arity(1)?;
            format!("size({})", e(&args[0])?)
        }
        "isNaN" | "isInf" | "sum" | "abs" => {
            arity(1)?;
            format!("{name}({})", e(&args[0])?)
        }
        "min" | "max" => {
            let a: Result<Vec<String>, _> = args.iter().map(e).collect();
            format!("{name}({})", a?.join(", "))
        }
        "isNil" => {
            arity(1)?;
            format!("({} == null)", e(&args[0])?)
        }
        "has" => {
            arity(1)?;
            format!("has({})", e(&args[0])?)
        }
        "asInt" | "int" => {
            arity(1)?;
            format!("int({})", e(&args[0])?)
        }
        "asFloat" | "double" | "float" => {
            arity(1)?;
            format!("double({})", e(&args[0])?)
        }
        "string" => {
            arity(1)?;
            format!("string({})", e(&args[0])?)
        }
        "default" => {
            arity(2)?;
            let x = e(&args[0])?;
            let d = e(&args[1])?;
            let guard = guard(&args[0])?;
            // The guard keeps a missing element or field from being an evaluation error, so
            // `default(result[0], 0)` is 0 on an empty vector.
            format!("(({guard}) && {x} != null ? {x} : {d})")
        }
        "all" => macro_over("all")?,
        "any" => macro_over("exists")?,
        "one" => macro_over("exists_one")?,
        "none" => format!("!{}", macro_over("exists")?),
        "filter" => macro_over("filter")?,
        "map" => macro_over("map")?,
        "count" => format!("size({})", macro_over("filter")?),
        other => {
            return Err(ExprError::syntax(
                col,
                format!("function `{other}` is not supported; supported functions: {FUNCTIONS}"),
            ));
        }
    })
}

/// A CEL condition that holds when every element and field `x` reads exists.
fn guard(x: &Ast) -> Result<String, ExprError> {
    let mut s = String::new();
    Ok(match x {
        Ast::Index(base, idx) => {
            emit(base, &mut s, 0)?;
            let mut i = String::new();
            emit(idx, &mut i, 0)?;
            match idx.as_ref() {
                Ast::Lit(l) if l.starts_with('"') => format!("{} && {i} in {s}", guard(base)?),
                _ => format!("{} && size({s}) > {i}", guard(base)?),
            }
        }
        Ast::Member(base, name) => {
            emit(base, &mut s, 0)?;
            format!("{} && has({s}.{name})", guard(base)?)
        }
        _ => "true".into(),
    })
}
