//! Tempo's query API messages, generated from `proto/tempopb/tempo.proto`.
//!
//! The OTLP types inside them are `opentelemetry-proto`'s, so a trace read
//! from a block is placed in a response without conversion.

#![allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::clone_on_ref_ptr,
    clippy::unwrap_used
)]

include!(concat!(env!("OUT_DIR"), "/tempopb.rs"));
