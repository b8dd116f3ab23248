//! cutover single-host backend (being built).
pub mod supervisor;
