//! Diagnostics: what is wrong, where (file:line:column and field path), and how to fix it.
//! They are plain data so the CLI, the local engine and the controller's lint can render them as
//! they like; [`Diagnostic`]'s `Display` is the one compiler-style rendering cutover prints.

use std::fmt;

use crate::path::FieldPath;

/// How bad a diagnostic is. Only errors make a manifest set invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The manifests cannot be applied as written.
    Error,
    /// The manifests work, but probably not as the author meant.
    Warning,
    /// Worth knowing, nothing to fix (e.g. a document `convert` passed through unchanged).
    Note,
}

/// A 1-based line and column in a source text (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Pos {
    /// A position from 1-based line and column.
    pub fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

/// One finding about a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Display name of the source (a path, or `<stdin>`).
    pub file: String,
    /// Where in the source.
    pub pos: Pos,
    /// The field concerned; the root path for a whole document or file.
    pub path: FieldPath,
    /// What is wrong, in a few words.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(file: &str, pos: Pos, path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            file: file.to_string(),
            pos,
            path,
            message: clip(message.into(), MAX_MESSAGE),
            help: None,
        }
    }

    /// A warning.
    pub fn warning(file: &str, pos: Pos, path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, pos, path, message)
        }
    }

    /// A note.
    pub fn note(file: &str, pos: Pos, path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Note,
            ..Self::error(file, pos, path, message)
        }
    }

    /// Adds the fix shown on the `help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(clip(help.into(), MAX_HELP));
        self
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Longest message kept: messages quote values from the input (a name, a bad value), which
/// may be megabytes long.
const MAX_MESSAGE: usize = 400;

/// Longest help kept (lists of known field names are the longest real ones).
const MAX_HELP: usize = 1200;

/// `text` cut to at most `max` bytes (at a character boundary), marked with `…`.
pub(crate) fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// `rollout.yaml:12:7: spec.strategy.blueGreen.activeService: required`, then the fix on an
/// indented `help:` line. Warnings carry `warning:` after the location; errors carry nothing, so
/// the first line is exactly `file:line:column: path: message`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.column)?;
        match self.severity {
            Severity::Error => {}
            Severity::Warning => f.write_str("warning: ")?,
            Severity::Note => f.write_str("note: ")?,
        }
        if !self.path.is_root() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every finding of a load or conversion, kept in source order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// No findings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one finding.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds several findings.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(more);
    }

    /// True when at least one finding is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// The notes.
    pub fn notes(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Note)
    }

    /// All findings.
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Number of findings.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The findings as a vector.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }

    /// Orders findings by file (in the order `files` lists them; unknown files last, by name),
    /// then line and column. The sort is stable, so findings at one spot keep their order.
    pub fn sort_by_files(&mut self, files: &[&str]) {
        let rank = |file: &str| files.iter().position(|f| *f == file).unwrap_or(usize::MAX);
        self.0
            .sort_by(|a, b| (rank(&a.file), &a.file, a.pos).cmp(&(rank(&b.file), &b.file, b.pos)));
    }

    /// Drops exact duplicates (the same finding reached by two checks).
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.0.retain(|d| seen.insert(d.clone()));
    }

    /// Keeps the first `max` findings and replaces the rest with one that counts them (an
    /// error if any of them is one).
    pub fn truncate(&mut self, max: usize) {
        if self.0.len() <= max {
            return;
        }
        let rest = self.0.split_off(max);
        let first = &rest[0];
        let more = if rest.iter().any(Diagnostic::is_error) {
            Diagnostic::error
        } else if rest.iter().any(|d| d.severity == Severity::Warning) {
            Diagnostic::warning
        } else {
            Diagnostic::note
        };
        self.0.push(
            more(
                &first.file,
                first.pos,
                FieldPath::root(),
                format!("{} more problems not listed", rest.len()),
            )
            .with_help(format!(
                "fix the ones above first; at most {max} are listed"
            )),
        );
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// One finding per line (plus its `help:` line).
impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
