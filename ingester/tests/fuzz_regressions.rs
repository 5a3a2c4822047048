//! Every input kept under `fuzz/regressions/` (crashers found by the fuzz
//! targets, plus seed payloads from real clients) goes through the same
//! checks as `fuzz/fuzz_targets/`, in plain `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use strata_common::convert::{batches_to_resource_spans, request_to_batch};
use strata_common::testing::flatten;
use strata_ingester::receiver::zipkin::{parse_json, to_otlp};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

fn encode(spans: &[opentelemetry_proto::tonic::trace::v1::ResourceSpans]) -> Vec<Vec<u8>> {
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
}

#[test]
fn otlp_json_regressions() {
    for (path, data) in inputs("otlp_json") {
        let Ok(request) = serde_json::from_slice::<ExportTraceServiceRequest>(&data) else {
            continue;
        };
        let Ok(batch) = request_to_batch(&request) else {
            continue;
        };
        let back = batches_to_resource_spans(&[batch]).unwrap();
        assert_eq!(
            encode(&back),
            encode(&request.resource_spans),
            "{}",
            path.display()
        );
    }
}

#[test]
fn zipkin_json_regressions() {
    for (_, data) in inputs("zipkin_json") {
        let Ok(spans) = parse_json(&data) else {
            continue;
        };
        let Ok(request) = to_otlp(spans) else {
            continue;
        };
        let _ = request_to_batch(&request);
    }
}
