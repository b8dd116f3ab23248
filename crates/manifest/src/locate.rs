//! A path → position index of each YAML document, built from the event parser's markers.
//!
//! Values come from `serde_yaml_ng`, which has no positions; this index supplies them. Both read
//! the same text, so the n-th document here is the n-th document there.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use crate::diag::Pos;
use crate::limits::MAX_DEPTH;
use crate::path::FieldPath;

/// Where one node sits in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLoc {
    /// The key that names the node, for a mapping value.
    pub key: Option<Pos>,
    /// Start of the node's value.
    pub value: Pos,
    /// Character range of a scalar value (quotes included for quoted scalars), for rewrites.
    pub scalar_chars: Option<(usize, usize)>,
    /// True when the scalar was written plain (unquoted).
    pub plain: bool,
}

/// The positions of one document's nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocIndex {
    /// Where the document starts (its first node, or its `---`).
    pub start: Pos,
    nodes: HashMap<FieldPath, NodeLoc>,
}

/// A YAML syntax error found by the event parser, or nesting past [`MAX_DEPTH`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// The parser's explanation.
    pub message: String,
    /// True when the text nests deeper than [`MAX_DEPTH`]: reading stopped there, and the
    /// text must not be handed to another parser.
    pub too_deep: bool,
}

impl DocIndex {
    /// The node at exactly `path`.
    pub fn node(&self, path: &FieldPath) -> Option<&NodeLoc> {
        self.nodes.get(path)
    }

    /// Where to point for a problem with the field at `path`: its key if it is a mapping
    /// value, else its value; for a path not in the document, the nearest enclosing node.
    pub fn locate(&self, path: &FieldPath) -> Pos {
        let mut p = path.clone();
        loop {
            if let Some(node) = self.nodes.get(&p) {
                return node.key.unwrap_or(node.value);
            }
            if p.is_root() {
                return self.start;
            }
            p = p.parent();
        }
    }

    /// Where to point for a problem with the value at `path` (a bad duration, a wrong type).
    pub fn locate_value(&self, path: &FieldPath) -> Pos {
        match self.nodes.get(path) {
            Some(node) => node.value,
            None => self.locate(path),
        }
    }

    /// Where to point for a required field that is missing: the key of the mapping that
    /// should hold it (or the document start).
    pub fn locate_missing(&self, path: &FieldPath) -> Pos {
        if self.nodes.contains_key(path) {
            return self.locate(path);
        }
        let parent = path.parent();
        if parent.is_root() {
            // A top-level field belongs at the document's first key, not at its `---`.
            return self.nodes.get(&parent).map_or(self.start, |n| n.value);
        }
        self.locate(&parent)
    }
}

/// What the walker is inside of.
enum Frame {
    Map {
        path: FieldPath,
        /// The key read and waiting for its value; `None` while a key is expected.
        key: Option<(String, Pos)>,
    },
    Seq {
        path: FieldPath,
        next: usize,
    },
}

fn pos_of(span: &Span) -> Pos {
    // The parser's lines are 1-based and its columns 0-based.
    Pos::new(span.start.line(), span.start.col() + 1)
}

/// Indexes every document of `text`, in order. Stops at the first syntax error, and at the
/// first node nested deeper than [`MAX_DEPTH`]: the parser is streaming, so a hostile text costs
/// only what was read up to there.
pub fn index_documents(text: &str) -> Result<Vec<DocIndex>, SyntaxError> {
    let mut docs = Vec::new();
    let mut current: Option<DocIndex> = None;
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| SyntaxError {
            pos: Pos::new(e.marker().line(), e.marker().col() + 1),
            message: e.info().to_string(),
            // The scanner's own bound on flow nesting (255 levels), met before the events
            // reach ours when the brackets come in one run.
            too_deep: e.info() == "recursion limit exceeded",
        })?;
        match event {
            Event::DocumentStart(_) => {
                stack.clear();
                current = Some(DocIndex {
                    start: pos_of(&span),
                    nodes: HashMap::new(),
                });
            }
            Event::DocumentEnd => {
                if let Some(doc) = current.take() {
                    docs.push(doc);
                }
            }
            Event::Scalar(value, style, _, _) => {
                let chars = (span.start.index(), span.end.index());
                let plain = style == ScalarStyle::Plain;
                node_start(
                    &mut stack,
                    current.as_mut(),
                    &span,
                    Some(&value),
                    chars,
                    plain,
                );
            }
            Event::Alias(_) => {
                node_start(&mut stack, current.as_mut(), &span, None, (0, 0), false);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(SyntaxError {
                        pos: pos_of(&span),
                        message: format!("YAML nested deeper than {MAX_DEPTH} levels"),
                        too_deep: true,
                    });
                }
                let path = node_start(&mut stack, current.as_mut(), &span, None, (0, 0), false);
                stack.push(match event {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
        }
    }
    if let Some(doc) = current.take() {
        docs.push(doc);
    }
    Ok(docs)
}

/// Records a node that starts at `span` and returns its path. A scalar in key position is
/// remembered as the pending key instead; a collection used as a key gets the key `?`.
fn node_start(
    stack: &mut [Frame],
    doc: Option<&mut DocIndex>,
    span: &Span,
    scalar: Option<&str>,
    chars: (usize, usize),
    plain: bool,
) -> FieldPath {
    let pos = pos_of(span);
    let (path, key_pos) = match stack.last_mut() {
        None => (FieldPath::root(), None),
        Some(Frame::Seq { path, next }) => {
            let p = path.index(*next);
            *next += 1;
            (p, None)
        }
        Some(Frame::Map { path, key }) => match key.take() {
            Some((name, key_pos)) => (path.key(name), Some(key_pos)),
            None => {
                let name = scalar.unwrap_or("?").to_string();
                let key_path = path.key(name.clone());
                *key = Some((name, pos));
                return key_path;
            }
        },
    };
    if let Some(doc) = doc {
        doc.nodes.insert(
            path.clone(),
            NodeLoc {
                key: key_pos,
                value: pos,
                scalar_chars: scalar.map(|_| chars),
                plain,
            },
        );
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_keys_values_and_items() {
        let text = "a: 1\nb:\n  c: [x, y]\n  d:\n    - e: 2\n---\nz: 3\n";
        let docs = index_documents(text).unwrap_or_default();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.locate(&FieldPath::parse("b.c")), Pos::new(3, 3));
        assert_eq!(d.locate_value(&FieldPath::parse("b.c[1]")), Pos::new(3, 10));
        assert_eq!(d.locate(&FieldPath::parse("b.d[0].e")), Pos::new(5, 7));
        assert_eq!(
            d.locate_missing(&FieldPath::parse("b.d[0].f")),
            Pos::new(5, 7)
        );
        assert_eq!(d.locate_missing(&FieldPath::parse("q")), Pos::new(1, 1));
        assert_eq!(docs[1].locate(&FieldPath::parse("z")), Pos::new(7, 1));
    }
}
