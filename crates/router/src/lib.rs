//! cutover's data plane (being built).
