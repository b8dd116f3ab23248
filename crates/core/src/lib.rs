//! cutover's core: the API types and the pure blue/green decision core.
//!
//! Nothing here does I/O or reads a clock: adapters (the single-host engine and the Kubernetes
//! controller) observe the world, call [`plan::plan`] with the time, and execute the returned
//! actions.

pub mod analysis;
pub mod api;
pub mod crds;
pub mod fixtures;
pub mod hash;
pub mod notify;
pub mod ops;
pub mod plan;
pub mod sim;
pub mod traffic;
pub mod workload;
