//! The daemon's control API (HTTP + JSON on 127.0.0.1, bearer token) and its client.
//!
//! The daemon writes `<state-dir>/api.json` (mode 0600) with its address and token; the CLI
//! reads it, so only users who can read the state directory can drive the daemon.

mod client;
mod server;
mod view;

pub use client::{Client, ClientError};
pub use server::{ApiFile, serve};
pub use view::{
    MetricSpecView, ReplicaView, RevisionView, Roles, RolloutView, RunView, ServiceView,
    human_duration,
};

/// File in the state directory naming the API address and token.
pub const API_FILE: &str = "api.json";
