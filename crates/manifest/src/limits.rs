//! Bounds on what the loader reads. Manifests reach the daemon and the controller from users,
//! so a file must not be able to stop them or to take unbounded time: sizes are checked before
//! any parsing, nesting depth while the text is indexed (the first pass over it), and the
//! number of findings listed is capped.

use crate::diag::{Diagnostic, Pos};
use crate::load::Source;
use crate::path::FieldPath;

/// The largest file read. Bounds the work of a whole file; real manifest files are far smaller.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The largest document read: 3 MiB, the Kubernetes API server's own limit for a request, so
/// no document refused here could have been applied to a cluster either.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// The deepest nesting of mappings and sequences read. The deepest field of a pod template
/// (an affinity term's values) sits at about 15 levels; 64 leaves room for free-form parts
/// such as a web metric's `jsonBody`, and keeps every later pass (which recurses or copies
/// paths) cheap.
pub const MAX_DEPTH: usize = 64;

/// The most findings listed for one load; the rest are counted in one last line. A file of a
/// million unknown fields gets a readable answer, quickly.
pub const MAX_DIAGNOSTICS: usize = 200;

/// Checks the sizes of `source` and of each of its documents, before any parsing: one
/// finding per part too large.
pub(crate) fn check_sizes(source: &Source) -> Vec<Diagnostic> {
    let text = &source.text;
    if text.len() > MAX_FILE_BYTES {
        return vec![
            Diagnostic::error(
                &source.path,
                Pos::new(1, 1),
                FieldPath::root(),
                format!(
                    "the file is {} bytes; at most {} are read",
                    text.len(),
                    human(MAX_FILE_BYTES)
                ),
            )
            .with_help("split the manifests into several files"),
        ];
    }
    let mut found = Vec::new();
    for (start_line, bytes) in documents(text) {
        if bytes > MAX_DOCUMENT_BYTES {
            found.push(
                Diagnostic::error(
                    &source.path,
                    Pos::new(start_line, 1),
                    FieldPath::root(),
                    format!(
                        "the document is {bytes} bytes; at most {} are read (the Kubernetes API server's limit for one object)",
                        human(MAX_DOCUMENT_BYTES)
                    ),
                )
                .with_help("move large data out of the manifest, e.g. into a ConfigMap or a file the app reads"),
            );
        }
    }
    found
}

/// The documents of a YAML stream: (first line, size in bytes). A document starts at a line
/// that begins with `---` followed by a space or the line's end, which YAML forbids inside any
/// scalar, so this needs no parser.
fn documents(text: &str) -> Vec<(usize, usize)> {
    let mut docs = Vec::new();
    let (mut start_line, mut start_byte) = (1, 0);
    let mut offset = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let marker = line
            .strip_prefix("---")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']));
        if marker && offset > start_byte {
            docs.push((start_line, offset - start_byte));
            (start_line, start_byte) = (n + 1, offset);
        }
        offset += line.len();
    }
    docs.push((start_line, offset - start_byte));
    docs
}

/// `3 MiB`, `16 MiB`.
fn human(bytes: usize) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_at_markers_only() {
        let text = "a: 1\n---\nb: |\n  --- not a marker\n---x\n--- # c\nc: 2\n";
        assert_eq!(documents(text), vec![(1, 5), (2, 33), (6, 13)]);
        assert_eq!(documents("---\na: 1\n"), vec![(1, 9)]);
    }

    #[test]
    fn refuses_big_documents_at_their_start() {
        let big = format!("a: 1\n---\nb: {}\n", "x".repeat(MAX_DOCUMENT_BYTES));
        let found = check_sizes(&Source::new("f.yaml", big));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].pos, Pos::new(2, 1));
        assert!(found[0].message.contains("3 MiB"), "{}", found[0]);
    }
}
