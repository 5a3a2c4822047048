//! OTLP/JSON bodies: decoding never panics, and whatever decodes and
//! validates round-trips through the span schema unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use strata_common::convert::{batches_to_resource_spans, request_to_batch};
use strata_common::testing::flatten;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(data) else {
        return;
    };
    let Ok(batch) = request_to_batch(&request) else {
        return;
    };
    let back = batches_to_resource_spans(&[batch]).expect("a batch we built reads back");
    // Compare encodings, not values: NaN != NaN, but its bits are equal.
    let encode = |spans: &[_]| -> Vec<Vec<u8>> {
        flatten(spans)
            .into_iter()
            .map(|flat| {
                let mut out = flat.resource.encode_to_vec();
                out.extend(flat.scope.encode_to_vec());
                out.extend(flat.span.encode_to_vec());
                out.extend(flat.resource_schema_url.into_bytes());
                out.extend(flat.scope_schema_url.into_bytes());
                out
            })
            .collect()
    };
    assert_eq!(encode(&back), encode(&request.resource_spans));
});
