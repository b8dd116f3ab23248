//! cutover's single-host backend: runs each revision of a Rollout as supervised local processes
//! behind the built-in router, with its state in an embedded SQLite file.
//!
//! - [`supervisor`]: processes, probes, restarts, logs;
//! - [`store`]: the state file;
//! - [`engine`]: the controller loop (observe → `plan()` → execute → persist);
//! - [`ops`]: what users do (apply, promote, abort, …);
//! - [`api`]: the daemon's control API and its client;
//! - [`dataplane`]: the router in a process of its own, and the protocol the daemon drives it
//!   with.

pub mod api;
pub mod daemon;
pub mod dataplane;
pub mod engine;
pub mod ops;
pub mod private;
pub mod store;
pub mod supervisor;
