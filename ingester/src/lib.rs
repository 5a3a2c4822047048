//! Strata's ingest path: receivers, per-tenant buffers and block cutting.
//!
//! ```text
//! OTLP gRPC :4317 ─┐
//!                  ├─▶ Ingester::push ─▶ tenant head ─▶ (cut) ─▶ write_block ─▶ object store
//! OTLP HTTP :4318 ─┘        ▲ live traces served by Ingester::find_trace
//! ```
//!
//! - [`Ingester`]: buffers, the flush loop, graceful shutdown and the
//!   [`LiveTraceSource`](strata_common::LiveTraceSource) the querier reads.
//! - [`receiver`]: the OTLP gRPC service and HTTP router.
//! - [`IngesterConfig`]: sizes, ages and limits.

mod config;
mod error;
mod ingester;
mod limits;
mod live;
mod metrics;
mod queue;
pub mod receiver;
pub mod wal;

pub use config::IngesterConfig;
pub use error::{Error, Result};
pub use ingester::{BlockWrittenHook, Ingester, PushOutcome, ShutdownReport};
pub use limits::{Rejection, TenantLimits};
pub use receiver::grpc::OtlpGrpcService;
