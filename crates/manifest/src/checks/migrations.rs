//! Checks of `spec.migrations`: one source and one URL source each, a bake period that parses,
//! and a `dir` that exists (relative to the manifest's directory).

use std::path::{Path, PathBuf};

use cutover_core::api::Rollout;

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::Located;

pub(super) fn check(r: &Located<Rollout>, diags: &mut Diagnostics) {
    let Some(m) = &r.value.spec.migrations else {
        return;
    };
    let base = FieldPath::parse("spec.migrations");
    let err = |path: &FieldPath, message: String, help: &str| {
        Diagnostic::error(&r.file, r.locate(path), path.clone(), message).with_help(help)
    };
    let source = base.key("source");
    match (&m.source.dir, &m.source.config_map_ref) {
        (Some(_), Some(_)) => diags.push(err(
            &source,
            "give one of dir and configMapRef, not both".into(),
            "dir on one host (cutover up), configMapRef on Kubernetes",
        )),
        (None, None) => diags.push(err(
            &source,
            "needs dir or configMapRef".into(),
            "add e.g. `dir: ./migrations` (one host) or `configMapRef: {name: my-app-migrations}` (Kubernetes)",
        )),
        (Some(dir), None) => check_dir(r, &source.key("dir"), dir, diags),
        (None, Some(_)) => {}
    }
    let url = base.key("databaseUrlFrom");
    match (&m.database_url_from.env, &m.database_url_from.secret_key_ref) {
        (Some(_), Some(_)) => diags.push(err(
            &url,
            "give one of env and secretKeyRef, not both".into(),
            "env on one host (cutover up), secretKeyRef on Kubernetes",
        )),
        (None, None) => diags.push(err(
            &url,
            "needs env or secretKeyRef".into(),
            "add e.g. `env: DATABASE_URL` (one host) or `secretKeyRef: {name: my-app-db, key: url}` (Kubernetes)",
        )),
        (Some(env), None) if !is_env_name(env) => diags.push(err(
            &url.key("env"),
            format!("`{env}` is not an environment variable name"),
            "use letters, digits and _, not starting with a digit, e.g. DATABASE_URL",
        )),
        _ => {}
    }
    if let Some(bake) = &m.bake {
        super::analysis::check_duration(r, &base.key("bake"), bake, diags);
    }
}

fn check_dir(r: &Located<Rollout>, path: &FieldPath, dir: &str, diags: &mut Diagnostics) {
    let resolved = resolve(&r.file, dir);
    if resolved.is_dir() {
        return;
    }
    let what = if resolved.exists() {
        "is not a directory"
    } else {
        "does not exist"
    };
    diags.push(
        Diagnostic::error(
            &r.file,
            r.locate_value(path),
            path.clone(),
            format!("migration directory {} {what}", resolved.display()),
        )
        .with_help(
            "give a directory of migration files, relative to this manifest's directory or absolute",
        ),
    );
}

/// `dir` relative to the manifest's directory (standard input: the working directory).
fn resolve(file: &str, dir: &str) -> PathBuf {
    let dir = Path::new(dir);
    if dir.is_absolute() || file == "<stdin>" {
        return dir.to_path_buf();
    }
    Path::new(file)
        .parent()
        .map_or_else(|| dir.to_path_buf(), |p| p.join(dir))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
