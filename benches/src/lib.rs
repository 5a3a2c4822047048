//! Strata's benchmark support.
//!
//! - [`ts1`]: the deterministic TS-1 workload generator that every
//!   performance figure in `docs/benchmarks.md` is measured with.
//!
//! The criterion benches live in `benches/benches/` (run `cargo bench -p
//! strata-benches`).

pub mod ts1;

pub use ts1::{Ts1, Ts1Config};
