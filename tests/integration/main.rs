//! End-to-end tests: a real `strata` process, spans from the official
//! OpenTelemetry SDK, and the Tempo HTTP API, on local disk and on a real
//! S3-compatible server (SeaweedFS, started by `scripts/test.sh`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_debug_implementations
)]

mod api;
mod bad_input;
mod cli;
mod compaction;
mod crash;
mod default_run;
mod loadgen;
mod otlp;
mod outage;
mod search_api;
mod support;
mod traceql_answers;
mod validation;
mod zipkin;
