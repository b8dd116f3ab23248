//! The state directory holds secrets (pod-template env values in `state.db`, the control API's
//! token in `api.json`, apps' logs): only its owner may read it. At start the daemon makes the
//! directory 0700 and what is in it 0600 (directories 0700), and says what it had to fix; files
//! it creates later are created that way. Paths built from names users give (rollouts,
//! revisions) are checked to stay inside it.

use std::fs::Permissions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Directories: owner only.
pub const DIR_MODE: u32 = 0o700;
/// Files: owner read and write only.
pub const FILE_MODE: u32 = 0o600;

/// Opens `path` for appending, creating it owner-only (0600) when missing.
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Opens `path` for writing without truncating (a running daemon's lock file keeps its pid),
/// creating it owner-only (0600) when missing.
pub fn open_write(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates `dir` (and its parents) as 0700 when missing, then makes `dir` and everything under
/// it owner-only. Returns one line per path whose mode was wider, for a warning.
pub fn secure_tree(dir: &Path) -> std::io::Result<Vec<String>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mut fixed = Vec::new();
    tighten(dir, &mut fixed)?;
    Ok(fixed)
}

fn tighten(path: &Path, fixed: &mut Vec<String>) -> std::io::Result<()> {
    // Not following links: a link placed in the directory must not make us chmod its target.
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
    let mode = meta.permissions().mode() & 0o777;
    if mode & !want != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode & want))?;
        fixed.push(format!(
            "{} was {mode:o}, now {:o}",
            path.display(),
            mode & want
        ));
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten(&entry?.path(), fixed)?;
        }
    }
    Ok(())
}

/// A path is built from a name that is not a single plain path component.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{name}` cannot name a file under {base}: a name must be one plain path component (no `/`, `..` or `.`); rename the object (names follow Kubernetes' DNS-1123 rules)"
)]
pub struct UnsafeName {
    /// The name.
    pub name: String,
    /// The directory it was to be used under.
    pub base: PathBuf,
}

/// `base/part/part/…`, where each part must be one plain component: a name such as
/// `../../tmp/x` never leads outside `base`.
pub fn inside(base: &Path, parts: &[&str]) -> Result<PathBuf, UnsafeName> {
    let mut path = base.to_path_buf();
    for part in parts {
        let mut components = Path::new(part).components();
        let plain = matches!(components.next(), Some(Component::Normal(c)) if c == *part)
            && components.next().is_none();
        if !plain {
            return Err(UnsafeName {
                name: (*part).to_string(),
                base: base.to_path_buf(),
            });
        }
        path.push(part);
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside() {
        let base = Path::new("/state/logs");
        assert_eq!(
            inside(base, &["app", "abc"]).ok(),
            Some(PathBuf::from("/state/logs/app/abc"))
        );
        for bad in ["../../tmp/x", "..", ".", "a/b", "/etc", ""] {
            assert!(inside(base, &["app", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_readable_tree_becomes_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("logs/app")).expect("dirs");
        std::fs::write(state.join("state.db"), "x").expect("file");
        std::fs::write(state.join("logs/app/0.log"), "x").expect("file");
        for p in [&state, &state.join("logs")] {
            std::fs::set_permissions(p, Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::set_permissions(state.join("state.db"), Permissions::from_mode(0o644))
            .expect("chmod");
        let fixed = secure_tree(&state).expect("secure");
        assert!(fixed.len() >= 3, "{fixed:?}");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("state.db")), 0o600);
        assert_eq!(mode(&state.join("logs/app/0.log")), 0o600);
        assert!(secure_tree(&state).expect("again").is_empty(), "idempotent");
    }
}
