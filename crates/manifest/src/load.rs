//! `load`: YAML text → typed objects with their locations, and every problem found on the way.

use cutover_core::api::API_VERSION;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::checks::Target;
use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::limits::{MAX_DEPTH, MAX_DIAGNOSTICS};
use crate::locate::{DocIndex, index_documents};
use crate::path::{FieldPath, Segment};
use crate::schema::{Kind, strip_unknown_fields, suggest};
use crate::set::{Located, ManifestSet};

/// One manifest text and the name diagnostics use for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Display name: a path as the user gave it, or `<stdin>`.
    pub path: String,
    /// The YAML text (one or more documents).
    pub text: String,
}

impl Source {
    /// A source from a name and a text.
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }
}

/// The `apiVersion` of Argo Rollouts' resources, recognised so the error can point at `convert`.
pub const ARGO_API_VERSION: &str = "argoproj.io/v1alpha1";

/// Loads and validates every document of `sources`, for either backend ([`Target::Any`]).
///
/// Returns the typed objects when no error was found (warnings travel in
/// [`ManifestSet::warnings`]); otherwise every error and warning of every file, sorted by file
/// (in the order given), line and column.
pub fn load(sources: &[Source]) -> Result<ManifestSet, Diagnostics> {
    load_for(sources, Target::Any)
}

/// [`load`] for one backend: adds warnings about fields that do nothing there. The errors are
/// the same for every target, so what one backend refuses, all refuse.
pub fn load_for(sources: &[Source], target: Target) -> Result<ManifestSet, Diagnostics> {
    load_with(
        sources,
        LoadOptions {
            target,
            pass_foreign: false,
        },
    )
}

/// Only the bounds of the input (file and document sizes, nesting depth), checked without a
/// full parse: what a caller runs before it reads the text any other way (the daemon's `apply`
/// lists the files' kinds and names to combine them with what it holds).
pub fn check_bounds(sources: &[Source]) -> Result<(), Diagnostics> {
    let mut diags = Diagnostics::new();
    for source in sources {
        let too_big = crate::limits::check_sizes(source);
        if !too_big.is_empty() {
            diags.extend(too_big);
            continue;
        }
        if let Err(e) = index_documents(&source.text)
            && e.too_deep
        {
            diags.push(too_deep(&source.path, e.pos));
        }
    }
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}

/// How [`load_with`] reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// The backend the manifests are for.
    pub target: Target,
    /// Documents of kinds cutover does not read (a Secret, an Ingress, a ConfigMap) get a note
    /// instead of an error: for `convert`, whose output carries them unchanged.
    pub pass_foreign: bool,
}

/// [`load`] with options.
pub fn load_with(sources: &[Source], options: LoadOptions) -> Result<ManifestSet, Diagnostics> {
    let mut set = ManifestSet::default();
    let mut diags = Diagnostics::new();
    for source in sources {
        load_source(source, options.pass_foreign, &mut set, &mut diags);
    }
    crate::checks::check(&set, options.target, &mut diags);
    let files: Vec<&str> = sources.iter().map(|s| s.path.as_str()).collect();
    diags.dedup();
    diags.sort_by_files(&files);
    diags.truncate(crate::limits::MAX_DIAGNOSTICS);
    if diags.has_errors() {
        Err(diags)
    } else {
        set.warnings = diags;
        Ok(set)
    }
}

fn load_source(
    source: &Source,
    pass_foreign: bool,
    set: &mut ManifestSet,
    diags: &mut Diagnostics,
) {
    let file = source.path.as_str();
    let too_big = crate::limits::check_sizes(source);
    if !too_big.is_empty() {
        diags.extend(too_big);
        return;
    }
    let indexes = index_documents(&source.text);
    if let Err(e) = &indexes
        && e.too_deep
    {
        // The other parser would recurse on it: stop here.
        diags.push(too_deep(file, e.pos));
        return;
    }
    for (n, document) in serde_yaml_ng::Deserializer::from_str(&source.text).enumerate() {
        let yaml = match serde_yaml_ng::Value::deserialize(document) {
            Ok(v) => v,
            Err(e) => {
                diags.push(yaml_error(file, &e, indexes.as_ref().err()));
                // The YAML reader cannot go on past a syntax error.
                return;
            }
        };
        if yaml.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let index = match &indexes {
            Ok(docs) => docs.get(n).cloned().unwrap_or_default(),
            Err(_) => DocIndex::default(),
        };
        let Some(json) = yaml_to_json(yaml) else {
            diags.push(too_deep(file, index.start));
            continue;
        };
        let doc = Doc {
            file,
            n,
            index,
            pass_foreign,
        };
        doc.load(json, set, diags);
    }
}

fn too_deep(file: &str, pos: Pos) -> Diagnostic {
    Diagnostic::error(
        file,
        pos,
        FieldPath::root(),
        format!("YAML nested deeper than {MAX_DEPTH} levels"),
    )
    .with_help("manifests nest far less: look for runaway brackets, indentation or aliases")
}

fn yaml_error(
    file: &str,
    e: &serde_yaml_ng::Error,
    syntax: Option<&crate::locate::SyntaxError>,
) -> Diagnostic {
    let pos = match (e.location(), syntax) {
        (Some(l), _) => Pos::new(l.line(), l.column()),
        (None, Some(s)) => s.pos,
        (None, None) => Pos::new(1, 1),
    };
    // serde_yaml_ng writes "PROBLEM at line L column C[, CONTEXT at line L2 column C2]"; the
    // problem's position is already in front, the context's (e.g. where a quote opened) stays.
    let text = e.to_string();
    let message = text.replacen(
        &format!(" at line {} column {}", pos.line, pos.column),
        "",
        1,
    );
    Diagnostic::error(file, pos, FieldPath::root(), format!("YAML syntax error: {message}"))
        .with_help("fix the YAML at this position (indentation, a missing `:` or an unclosed quote or bracket)")
}

/// Converts a YAML value to JSON: the API types deserialize from JSON shapes, and JSON gives
/// serde_path_to_error string keys to name. Non-string keys become their text. `None` when
/// the value nests deeper than [`MAX_DEPTH`]: the text is bounded while it is indexed, but
/// aliases can repeat a deep node inside another.
pub(crate) fn yaml_to_json(yaml: serde_yaml_ng::Value) -> Option<Value> {
    to_json(yaml, 0)
}

fn to_json(yaml: serde_yaml_ng::Value, depth: usize) -> Option<Value> {
    use serde_yaml_ng::Value as Y;
    let nested = |v| to_json(v, depth + 1);
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match yaml {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(nested).collect::<Option<_>>()?),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| Some((key_text(k), nested(v)?)))
                .collect::<Option<_>>()?,
        ),
        Y::Tagged(tagged) => to_json(tagged.value, depth)?,
    })
}

fn key_text(key: serde_yaml_ng::Value) -> String {
    match key {
        serde_yaml_ng::Value::String(s) => s,
        other => serde_yaml_ng::to_string(&other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default(),
    }
}

/// One document being loaded.
struct Doc<'a> {
    file: &'a str,
    n: usize,
    index: DocIndex,
    /// Notes instead of errors for documents of kinds cutover does not read.
    pass_foreign: bool,
}

const SUPPORTED: &str = "cutover reads cutover.dev/v1alpha1 Rollout, AnalysisTemplate, \
    ClusterAnalysisTemplate and AnalysisRun, and v1 Service";

impl Doc<'_> {
    fn error(&self, pos: Pos, path: FieldPath, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, pos, path, message)
    }

    fn load(self, mut json: Value, set: &mut ManifestSet, diags: &mut Diagnostics) {
        let Some(object) = json.as_object() else {
            diags.push(
                self.error(
                    self.index.start,
                    FieldPath::root(),
                    "a manifest document must be a mapping",
                )
                .with_help("start the document with `apiVersion:` and `kind:`"),
            );
            return;
        };
        let field = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
            for name in ["apiVersion", "kind"] {
                if field(name).is_none() {
                    let path = FieldPath::root().key(name);
                    diags.push(
                        self.error(self.index.locate_missing(&path), path, "required")
                            .with_help(format!("add `{name}:`; {SUPPORTED}")),
                    );
                }
            }
            return;
        };
        if crate::set::routing_kind(&api_version, &kind) {
            // Read for the checks of `trafficRouting`, applied by whatever applies it.
            let meta = |key: &str| json["metadata"][key].as_str().map(str::to_string);
            set.routing.push(crate::set::RoutingObject {
                kind: kind.clone(),
                name: meta("name").unwrap_or_default(),
                namespace: meta("namespace"),
                spec: json["spec"].clone(),
            });
            if self.pass_foreign {
                let at = self.index.locate_value(&FieldPath::root().key("kind"));
                diags.push(self.note_foreign(&api_version, &kind, at));
            }
            return;
        }
        let Some(kind) = self.kind(&api_version, &kind, diags) else {
            return;
        };
        for (i, unknown) in strip_unknown_fields(kind, &mut json)
            .into_iter()
            .enumerate()
        {
            let name = unknown.path.last_key().unwrap_or_default();
            // Suggestions cost a string distance per known name; past the findings that will
            // be listed, a flood of unknown fields only needs counting.
            let help = if i >= MAX_DIAGNOSTICS {
                "remove it".to_string()
            } else {
                match old_name(name) {
                    Some(hint) => hint,
                    None => match suggest(name, unknown.known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("known fields here: {}", unknown.known.join(", ")),
                    },
                }
            };
            diags.push(
                self.error(
                    self.index.locate(&unknown.path),
                    unknown.path,
                    "unknown field",
                )
                .with_help(help),
            );
        }
        match kind {
            Kind::Rollout => self.typed(json, diags).map(|o| set.rollouts.push(o)),
            Kind::AnalysisTemplate => self
                .typed(json, diags)
                .map(|o| set.analysis_templates.push(o)),
            Kind::ClusterAnalysisTemplate => self
                .typed(json, diags)
                .map(|o| set.cluster_analysis_templates.push(o)),
            Kind::AnalysisRun => self.typed(json, diags).map(|o| set.analysis_runs.push(o)),
            Kind::Service => self.typed(json, diags).map(|o| set.services.push(o)),
        };
    }

    /// Recognises the document's type, or reports what is supported: at the `kind` when the
    /// apiVersion is cutover's or Argo's (the kind is what is wrong), else at the apiVersion.
    fn kind(&self, api_version: &str, kind: &str, diags: &mut Diagnostics) -> Option<Kind> {
        let cutover = [
            Kind::Rollout,
            Kind::AnalysisTemplate,
            Kind::ClusterAnalysisTemplate,
            Kind::AnalysisRun,
        ];
        let known = match api_version {
            API_VERSION => cutover.iter().copied().find(|k| k.name() == kind),
            "v1" if kind == "Service" => Some(Kind::Service),
            _ => None,
        };
        if known.is_some() {
            return known;
        }
        let root = FieldPath::root();
        let at_kind = self.index.locate_value(&root.key("kind"));
        let at_version = self.index.locate_value(&root.key("apiVersion"));
        let message = format!("unsupported document: apiVersion `{api_version}`, kind `{kind}`");
        let (at, message, help) = if api_version == ARGO_API_VERSION
            && crate::convert::CONVERTIBLE.contains(&kind)
        {
            let help = format!(
                "this is an Argo Rollouts manifest: run `cutover convert -f {}` to turn it into a cutover one",
                self.file
            );
            (at_version, message, help)
        } else if api_version == ARGO_API_VERSION {
            let message = format!("Argo Rollouts kind `{kind}` has no cutover equivalent");
            let help = format!(
                "cutover reads {}; remove this document or keep it on Argo Rollouts",
                crate::convert::CONVERTIBLE.join(", ")
            );
            (at_kind, message, help)
        } else if api_version == API_VERSION {
            let names = cutover.map(Kind::name);
            let help = match suggest(kind, names) {
                Some(s) => format!("did you mean kind `{s}`? {SUPPORTED}"),
                None => SUPPORTED.to_string(),
            };
            (at_kind, message, help)
        } else if self.pass_foreign {
            diags.push(self.note_foreign(api_version, kind, at_kind));
            return None;
        } else {
            let help = format!("{SUPPORTED}; apply other objects with the tool that manages them");
            (at_version, message, help)
        };
        diags.push(self.error(at, FieldPath::root(), message).with_help(help));
        None
    }

    fn note_foreign(&self, api_version: &str, kind: &str, at: Pos) -> Diagnostic {
        Diagnostic::note(
            self.file,
            at,
            FieldPath::root(),
            format!("{kind} ({api_version}) passed through unchanged"),
        )
        .with_help(format!(
            "cutover does not manage {kind} objects: apply it with the tool that does (e.g. kubectl)"
        ))
    }

    /// Deserializes into the API type. serde stops at the first problem, so each type error or
    /// missing field is reported, then patched over (the bad value removed, or a placeholder put
    /// in) and deserialization tried again, to find the document's other problems. The object
    /// remembers the patched paths so the semantic checks stay quiet about them.
    fn typed<T: DeserializeOwned>(
        &self,
        mut json: Value,
        diags: &mut Diagnostics,
    ) -> Option<Located<T>> {
        let mut attempts: Vec<(FieldPath, usize)> = Vec::new();
        for _ in 0..64 {
            let e = match serde_path_to_error::deserialize::<_, T>(json.clone()) {
                Ok(value) => {
                    return Some(Located {
                        file: self.file.to_string(),
                        document: self.n,
                        start: self.index.start,
                        value,
                        index: self.index.clone(),
                        patched: attempts.into_iter().map(|(p, _)| p).collect(),
                    });
                }
                Err(e) => e,
            };
            let message = e.inner().to_string();
            let mut path = FieldPath::parse(&e.path().to_string());
            let missing = message
                .strip_prefix("missing field `")
                .map(|r| r.trim_end_matches('`'));
            if let Some(name) = missing {
                path = path.key(name);
            }
            let attempt = match attempts.iter_mut().find(|(p, _)| *p == path) {
                // A problem with our own patch: try the next placeholder.
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    // Inside a placeholder, a problem only restates that its parent is missing.
                    if !attempts.iter().any(|(p, _)| path.starts_with(p)) {
                        diags.push(self.type_error(&path, missing, &message));
                    }
                    attempts.push((path.clone(), 0));
                    // A missing field needs a value at once; a bad one is first just removed.
                    usize::from(missing.is_some())
                }
            };
            if !patch(&mut json, &path, attempt) {
                return None;
            }
        }
        None
    }

    fn type_error(&self, path: &FieldPath, missing: Option<&str>, message: &str) -> Diagnostic {
        if missing.is_some() {
            let help = crate::checks::required_help(path);
            return self
                .error(self.index.locate_missing(path), path.clone(), "required")
                .with_help(help);
        }
        let pos = self.index.locate_value(path);
        self.error(pos, path.clone(), message.to_string())
            .with_help("write a value of the type this field takes")
    }
}

/// The fix for a field that Argo Rollouts used to have under another name.
fn old_name(name: &str) -> Option<String> {
    let new = match name {
        "maxFailures" => "failureLimit",
        "maxInconclusive" => "inconclusiveLimit",
        "maxConsecutiveErrors" => "consecutiveErrorLimit",
        _ => return None,
    };
    Some(format!(
        "`{name}` is Argo Rollouts' old name of `{new}`: rename it to `{new}`"
    ))
}

/// Placeholders tried, in order, where a value is missing or of the wrong type.
fn placeholder(attempt: usize) -> Option<Value> {
    [json!(""), json!({}), json!([]), json!(0), json!(false)]
        .get(attempt.checked_sub(1)?)
        .cloned()
}

/// Applies patch number `attempt` at `path`: 0 removes the value, later ones put a placeholder.
/// False when there is nothing left to try (or the path does not exist).
fn patch(json: &mut Value, path: &FieldPath, attempt: usize) -> bool {
    let Some((last, parents)) = path.segments().split_last() else {
        return false;
    };
    let mut node = json;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Key(k), Value::Object(map)) => map.get_mut(k),
            (Segment::Index(i), Value::Array(list)) => list.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    let value = placeholder(attempt);
    match (last, node, value) {
        (Segment::Key(k), Value::Object(map), None) => map.remove(k).is_some(),
        (Segment::Key(k), Value::Object(map), Some(v)) => {
            map.insert(k.clone(), v);
            true
        }
        (Segment::Index(i), Value::Array(list), v) => {
            match (list.get_mut(*i), v.or_else(|| placeholder(1))) {
                (Some(slot), Some(v)) => {
                    *slot = v;
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}
