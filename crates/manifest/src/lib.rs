//! Loads cutover manifests with source locations, validates them, and converts Argo Rollouts
//! manifests into cutover ones.
//!
//! [`load`] reads YAML documents into typed objects (a [`ManifestSet`]) and reports every
//! problem of every file as a [`Diagnostic`] with `file:line:column`, the field path and a fix.
//! [`convert`] rewrites Argo Rollouts documents to cutover's apiVersion in place, keeping comments
//! and layout, and refuses what cutover cannot carry.
//!
//! Choices worth knowing:
//! - A Service named by a Rollout but absent from the files is an error when the files hold any
//!   Service (they were meant to be the whole set) and a warning when they hold none (the
//!   Services live elsewhere, e.g. already in the cluster).
//! - serde stops at the first type error of a document; `load` reports it, patches over it and
//!   tries again, so one run lists every problem. Checks stay quiet about patched values.
//! - Unknown fields are found by walking each document against the JSON schema of its type; the
//!   pod template and Job metric specs are checked against the full Kubernetes schemas even
//!   though the CRDs keep them opaque.
//! - Argument references (`{{args.x}}`) are accepted wherever a duration or count is checked.
//! - Input is bounded (see [`MAX_FILE_BYTES`], [`MAX_DOCUMENT_BYTES`], [`MAX_DEPTH`]): sizes are
//!   checked before parsing and depth while indexing, so a hostile file is refused at once.

mod checks;
mod convert;
mod diag;
mod limits;
mod load;
mod locate;
mod path;
mod schema;
mod set;

pub use checks::{LOCAL_REPLICA_LIMIT, Target};
pub use convert::{ConvertOutput, Converted, ConvertedFile, ConvertedFiles, convert, convert_all};
pub use diag::{Diagnostic, Diagnostics, Pos, Severity};
pub use limits::{MAX_DEPTH, MAX_DIAGNOSTICS, MAX_DOCUMENT_BYTES, MAX_FILE_BYTES};
pub use load::{ARGO_API_VERSION, LoadOptions, Source, check_bounds, load, load_for, load_with};
pub use locate::{DocIndex, NodeLoc, SyntaxError, index_documents};
pub use path::{FieldPath, Segment};
pub use schema::{Kind, UnknownField, strip_unknown_fields, suggest};
pub use set::{HasMeta, Located, ManifestSet, RoutingObject};
