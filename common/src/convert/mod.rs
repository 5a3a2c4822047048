//! OTLP ⇄ Arrow conversion for the span schema.
//!
//! [`encode`] flattens OTLP requests into span rows; [`decode`] regroups rows
//! into `ResourceSpans`. Together they round-trip every field OTLP carries
//! (see `docs/format.md` for the one profiles-only field that is not kept).

mod decode;
mod encode;

pub use decode::batches_to_resource_spans;
pub use encode::{
    Capacity, SERVICE_NAME_KEY, SpanBatchBuilder, request_to_batch, validate_request,
};
