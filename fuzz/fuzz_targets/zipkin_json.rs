//! Zipkin v2 JSON bodies: parsing and translation never panic, and a
//! translated request either converts to spans or is refused cleanly.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_common::convert::request_to_batch;
use strata_ingester::receiver::zipkin::{parse_json, to_otlp};

fuzz_target!(|data: &[u8]| {
    let Ok(spans) = parse_json(data) else {
        return;
    };
    let Ok(request) = to_otlp(spans) else {
        return;
    };
    let _ = request_to_batch(&request);
});
