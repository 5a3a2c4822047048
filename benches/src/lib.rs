//! Strata's benchmark support.
//!
//! - [`Ts1`]: the deterministic TS-1 workload every performance figure in
//!   `docs/benchmarks.md` is measured with; [`Tracegen`] is its Jaeger-shaped
//!   mode. Both implement [`Workload`].
//! - [`loadgen`]: sends a workload over OTLP gRPC or HTTP and looks traces up
//!   by ID (the `strata-loadgen` binary), plus a no-op OTLP sink to measure
//!   the generator's own ceiling.
//! - [`stats`]: percentiles and the /proc readings the runner reports.
//!
//! The end-to-end runner is the `strata-e2e` binary; the criterion benches
//! live in `benches/benches/` (run `cargo bench -p strata-benches`).

pub mod loadgen;
pub mod stats;
mod tracegen;
pub mod ts1;
mod workload;

pub use tracegen::Tracegen;
pub use ts1::{Ts1, Ts1Config};
pub use workload::{Workload, WorkloadKind, request_spans};
