//! `convert`: Argo Rollouts manifests → cutover manifests.
//!
//! cutover keeps Argo's field names, so converting is rewriting `apiVersion` — done in the text,
//! at the scalar's exact span, so comments, order and formatting survive. Whatever cutover cannot
//! carry (canary, workloadRef, providers it lacks) is reported with its location and fails the
//! conversion; nothing is dropped silently. The results of all files given are then loaded
//! together (so references between files resolve); documents of kinds cutover does not read
//! (a Secret, an Ingress) pass through unchanged with a note.

use cutover_core::api::API_VERSION;
use serde::Deserialize;
use serde_json::Value;

use crate::checks::Target;
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::load::{ARGO_API_VERSION, LoadOptions, Source, load, load_with, yaml_to_json};
use crate::locate::{DocIndex, index_documents};
use crate::path::FieldPath;
use crate::set::ManifestSet;

/// Argo kinds that have a cutover twin of the same name and fields.
pub(crate) const CONVERTIBLE: [&str; 4] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
];

/// Argo metric providers cutover does not have.
const UNSUPPORTED_PROVIDERS: [&str; 9] = [
    "datadog",
    "newRelic",
    "cloudWatch",
    "kayenta",
    "wavefront",
    "graphite",
    "influxdb",
    "skywalking",
    "plugin",
];

/// A successful conversion of one file.
#[derive(Clone, Debug)]
pub struct ConvertOutput {
    /// The converted text: the input with Argo apiVersions rewritten, byte for byte otherwise.
    pub text: String,
    /// The documents whose apiVersion was rewritten.
    pub converted: Vec<Converted>,
    /// The converted documents, loaded (warnings and notes in [`ManifestSet::warnings`]).
    pub set: ManifestSet,
}

/// A successful conversion of several files, loaded together.
#[derive(Clone, Debug)]
pub struct ConvertedFiles {
    /// One converted file per source, in the order given.
    pub files: Vec<ConvertedFile>,
    /// Every converted document, loaded together so that references between files resolve
    /// (warnings and notes in [`ManifestSet::warnings`]).
    pub set: ManifestSet,
}

/// One converted file.
#[derive(Clone, Debug)]
pub struct ConvertedFile {
    /// The source's display name.
    pub path: String,
    /// The converted text.
    pub text: String,
    /// The documents whose apiVersion was rewritten.
    pub converted: Vec<Converted>,
}

/// One rewritten document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// Index of the document in the file, from 0.
    pub document: usize,
    /// Its kind.
    pub kind: String,
    /// Its `metadata.name`.
    pub name: String,
    /// Where its apiVersion value is.
    pub pos: Pos,
}

/// A finding of the Argo-specific scan, which the generic load would otherwise report again in
/// less helpful words (as an unknown field, or a required field missing beside it).
struct Refusal {
    document: usize,
    path: FieldPath,
}

/// One file after its Argo documents were rewritten, before the load.
struct Rewritten {
    text: String,
    converted: Vec<Converted>,
    refusals: Vec<Refusal>,
    /// First line of each document, to find which one a load finding is about.
    starts: Vec<usize>,
}

/// Converts the Argo Rollouts documents of `source`; other documents pass through unchanged
/// (with a note for kinds cutover does not read).
pub fn convert(source: &Source) -> Result<ConvertOutput, Diagnostics> {
    let mut all = convert_all(std::slice::from_ref(source))?;
    let file = all.files.pop().map(|f| (f.text, f.converted));
    let (text, converted) = file.unwrap_or_default();
    Ok(ConvertOutput {
        text,
        converted,
        set: all.set,
    })
}

/// Converts several files, as Argo Rollouts users keep them (a Rollout here, its analysis
/// templates there): each is rewritten on its own, then all are loaded together, so a template
/// defined in another given file is found. All or nothing: any error refuses every file.
pub fn convert_all(sources: &[Source]) -> Result<ConvertedFiles, Diagnostics> {
    let mut diags = Diagnostics::new();
    for source in sources {
        diags.extend(crate::limits::check_sizes(source));
    }
    if diags.has_errors() {
        return Err(diags);
    }
    let mut rewritten = Vec::new();
    for source in sources {
        match rewrite(source, &mut diags) {
            Some(r) => rewritten.push(r),
            // A syntax error: the loader reports it with its position.
            None => {
                if let Err(d) = load(std::slice::from_ref(source)) {
                    diags.extend(d.into_iter().filter(Diagnostic::is_error));
                }
            }
        }
    }
    if rewritten.len() < sources.len() {
        return Err(diags);
    }
    let converted: Vec<Source> = sources
        .iter()
        .zip(&rewritten)
        .map(|(s, r)| Source::new(s.path.clone(), r.text.clone()))
        .collect();
    let options = LoadOptions {
        target: Target::Any,
        pass_foreign: true,
    };
    let (set, load_diags) = match load_with(&converted, options) {
        Ok(set) => {
            let warnings = set.warnings.clone();
            (Some(set), warnings)
        }
        Err(d) => (None, d),
    };
    for d in load_diags {
        let Some((_, r)) = sources
            .iter()
            .zip(&rewritten)
            .find(|(s, _)| s.path == d.file)
        else {
            diags.push(d);
            continue;
        };
        let document = r
            .starts
            .iter()
            .rposition(|line| *line <= d.pos.line)
            .unwrap_or(0);
        if !r
            .refusals
            .iter()
            .any(|x| x.document == document && x.covers(&d))
        {
            diags.push(d);
        }
    }
    let files: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
    diags.sort_by_files(&files);
    match set {
        Some(set) if !diags.has_errors() => Ok(ConvertedFiles {
            files: sources
                .iter()
                .zip(rewritten)
                .map(|(s, r)| ConvertedFile {
                    path: s.path.clone(),
                    text: r.text,
                    converted: r.converted,
                })
                .collect(),
            set: ManifestSet {
                warnings: diags,
                ..set
            },
        }),
        _ => Err(diags),
    }
}

/// Rewrites the Argo documents of one file, reporting what cannot be carried over. `None` on a
/// YAML syntax error.
fn rewrite(source: &Source, diags: &mut Diagnostics) -> Option<Rewritten> {
    let indexes = index_documents(&source.text).ok()?;
    let mut refusals = Vec::new();
    let mut edits = Vec::new();
    let mut converted = Vec::new();
    for (n, document) in serde_yaml_ng::Deserializer::from_str(&source.text).enumerate() {
        let yaml = serde_yaml_ng::Value::deserialize(document).ok()?;
        let json = yaml_to_json(yaml)?;
        let Some(index) = indexes.get(n) else {
            continue;
        };
        if json.get("apiVersion").and_then(Value::as_str) != Some(ARGO_API_VERSION) {
            continue;
        }
        let kind = json.get("kind").and_then(Value::as_str).unwrap_or_default();
        let api_path = FieldPath::root().key("apiVersion");
        if !CONVERTIBLE.contains(&kind) {
            diags.push(
                Diagnostic::error(
                    &source.path,
                    index.locate_value(&FieldPath::root().key("kind")),
                    FieldPath::root(),
                    format!("Argo Rollouts kind `{kind}` has no cutover equivalent"),
                )
                .with_help(format!(
                    "cutover converts {}; remove this document or keep it on Argo Rollouts",
                    CONVERTIBLE.join(", ")
                )),
            );
            refusals.push(Refusal {
                document: n,
                path: FieldPath::root(),
            });
            continue;
        }
        let mut scan = Scan {
            file: &source.path,
            index,
            document: n,
            diags: &mut *diags,
            refusals: &mut refusals,
        };
        scan.document(kind, &json);
        if let Some(node) = index.node(&api_path)
            && let Some(chars) = node.scalar_chars
        {
            edits.push((chars, node.plain));
            converted.push(Converted {
                document: n,
                kind: kind.to_string(),
                name: json
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                pos: node.value,
            });
        }
    }
    Some(Rewritten {
        text: apply_edits(&source.text, &edits),
        converted,
        refusals,
        starts: indexes.iter().map(|d| d.start.line).collect(),
    })
}

impl Refusal {
    /// Whether a load finding is a consequence of this refusal: inside the refused field, on
    /// its parent (e.g. "no provider set"), or a sibling that is missing because the refused
    /// field took its place (`blueGreen` beside `canary`).
    fn covers(&self, d: &Diagnostic) -> bool {
        let parent = self.path.parent();
        d.path.starts_with(&self.path)
            || d.path == parent
            || (d.path.parent() == parent && d.message == "required")
    }
}

/// Looks for Argo features cutover cannot carry.
struct Scan<'a> {
    file: &'a str,
    index: &'a DocIndex,
    document: usize,
    diags: &'a mut Diagnostics,
    refusals: &'a mut Vec<Refusal>,
}

impl Scan<'_> {
    fn refuse(&mut self, path: FieldPath, message: String, help: &str) {
        self.diags.push(
            Diagnostic::error(self.file, self.index.locate(&path), path.clone(), message)
                .with_help(help),
        );
        self.refusals.push(Refusal {
            document: self.document,
            path,
        });
    }

    fn document(&mut self, kind: &str, json: &Value) {
        let spec = FieldPath::root().key("spec");
        if kind == "Rollout" {
            if json.pointer("/spec/strategy/canary").is_some() {
                self.refuse(
                    spec.key("strategy").key("canary"),
                    "canary strategy is not supported: cutover does blue/green only".into(),
                    "rewrite it as `blueGreen:` with `activeService:` (and `previewService:`), or keep this Rollout on Argo Rollouts",
                );
            }
            // workloadRef is kept as it is; lint refuses one that names no Deployment.
            return;
        }
        let metrics = json
            .pointer("/spec/metrics")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, metric) in metrics.iter().enumerate() {
            let provider_path = spec.key("metrics").index(i).key("provider");
            let Some(provider) = metric.get("provider").and_then(Value::as_object) else {
                continue;
            };
            for name in UNSUPPORTED_PROVIDERS {
                if provider.contains_key(name) {
                    self.refuse(
                        provider_path.key(name),
                        format!("metric provider `{name}` is not supported"),
                        "cutover measures with prometheus, web, job or builtin; rewrite the metric with one of them",
                    );
                }
            }
            let auth = provider
                .get("prometheus")
                .and_then(|p| p.get("authentication"));
            for method in ["sigv4", "oauth2"] {
                if auth.and_then(|a| a.get(method)).is_some() {
                    self.refuse(
                        provider_path.key("prometheus").key("authentication").key(method),
                        format!("Prometheus {method} authentication is not supported"),
                        "use `basic` or `bearerToken` authentication, or a header, or an authenticating proxy in front of Prometheus",
                    );
                }
            }
        }
    }
}

/// Replaces each apiVersion scalar (by character range) with cutover's; quoted scalars keep
/// their quotes.
fn apply_edits(text: &str, edits: &[((usize, usize), bool)]) -> String {
    let byte_of = |char_index: usize| {
        text.char_indices()
            .nth(char_index)
            .map_or(text.len(), |(b, _)| b)
    };
    let mut out = String::with_capacity(text.len() + 16 * edits.len());
    let mut last = 0;
    for &((start, end), plain) in edits {
        let (mut from, mut to) = (byte_of(start), byte_of(end));
        if !plain && to > from + 1 {
            // Keep the quote characters around the value.
            from += 1;
            to -= 1;
        }
        if from < last {
            continue;
        }
        out.push_str(&text[last..from]);
        out.push_str(API_VERSION);
        last = to;
    }
    out.push_str(&text[last..]);
    out
}
