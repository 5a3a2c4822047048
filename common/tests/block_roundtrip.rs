#![allow(clippy::unwrap_used)]

//! Round-trip fidelity: any OTLP request written into a real block and read
//! back comes out equal, up to the regrouping of spans by resource and scope.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::prelude::*;
use strata_common::block::{BlockWriteOptions, encode_block, read_block, read_meta, upload_block};
use strata_common::convert::{SpanBatchBuilder, batches_to_resource_spans, validate_request};
use strata_common::testing::{flatten, request_with_spans};
use strata_common::{BlockId, TenantId};

fn any_value_leaf() -> impl Strategy<Value = any_value::Value> {
    prop_oneof![
        ".{0,12}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        // NaN never equals itself, so it cannot be checked with `==`; every
        // other double (infinities, -0.0, subnormals) is generated.
        any::<f64>()
            .prop_filter("NaN is not comparable", |d| !d.is_nan())
            .prop_map(any_value::Value::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(any_value::Value::BytesValue),
    ]
}

fn any_value() -> impl Strategy<Value = any_value::Value> {
    any_value_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(
                proptest::option::of(inner.clone()).prop_map(|value| AnyValue { value }),
                0..4
            )
            .prop_map(|values| any_value::Value::ArrayValue(ArrayValue { values })),
            prop::collection::vec(
                ("[a-z.]{0,6}", proptest::option::of(inner)).prop_map(|(key, value)| {
                    KeyValue {
                        key,
                        value: Some(AnyValue { value }),
                        ..KeyValue::default()
                    }
                }),
                0..4
            )
            .prop_map(|values| any_value::Value::KvlistValue(KeyValueList { values })),
        ]
    })
}

/// Random keys, and well-known keys that get dedicated columns (with values
/// of their conventional type or not, repeated or not).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z._]{0,10}",
        Just("http.route".to_owned()),
        Just("http.response.status_code".to_owned()),
        Just("k8s.pod.name".to_owned()),
    ]
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        (
            key(),
            proptest::option::of(proptest::option::of(any_value())),
        )
            .prop_map(|(key, value)| KeyValue {
                key,
                // Outer None: no AnyValue at all; inner None: an empty AnyValue.
                value: value.map(|value| AnyValue { value }),
                ..KeyValue::default()
            }),
        0..5,
    )
}

fn bytes(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), len)
}

fn optional_id(len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), bytes(len)]
}

fn trace_id() -> impl Strategy<Value = Vec<u8>> {
    bytes(16).prop_filter("all-zero trace IDs are invalid", |b| {
        b.iter().any(|x| *x != 0)
    })
}

fn event() -> impl Strategy<Value = span::Event> {
    (any::<u64>(), ".{0,8}", attributes(), any::<u32>()).prop_map(
        |(time_unix_nano, name, attributes, dropped_attributes_count)| span::Event {
            time_unix_nano,
            name,
            attributes,
            dropped_attributes_count,
        },
    )
}

fn link() -> impl Strategy<Value = span::Link> {
    (
        optional_id(16),
        optional_id(8),
        ".{0,8}",
        attributes(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, attributes, dropped_attributes_count, flags)| {
                span::Link {
                    trace_id,
                    span_id,
                    trace_state,
                    attributes,
                    dropped_attributes_count,
                    flags,
                }
            },
        )
}

/// A span of one of a few traces, so traces have several spans across
/// resources and scopes.
fn span(trace_ids: Vec<Vec<u8>>) -> impl Strategy<Value = Span> {
    let ids = (
        prop::sample::select(trace_ids),
        bytes(8),
        optional_id(8),
        ".{0,8}",
        any::<u32>(),
        ".{0,10}",
        any::<i32>(),
    );
    let times = (any::<u64>(), any::<u64>(), any::<i32>(), ".{0,8}");
    let rest = (
        attributes(),
        any::<u32>(),
        prop::collection::vec(event(), 0..3),
        any::<u32>(),
        prop::collection::vec(link(), 0..2),
        any::<u32>(),
    );
    (ids, times, rest).prop_map(
        |(
            (trace_id, span_id, parent_span_id, trace_state, flags, name, kind),
            (start, end, code, message),
            (attributes, dropped_attributes, events, dropped_events, links, dropped_links),
        )| Span {
            trace_id,
            span_id,
            trace_state,
            parent_span_id,
            flags,
            name,
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            dropped_attributes_count: dropped_attributes,
            events,
            dropped_events_count: dropped_events,
            links,
            dropped_links_count: dropped_links,
            status: Some(Status { message, code }),
        },
    )
}

fn entity_ref() -> impl Strategy<Value = EntityRef> {
    (
        ".{0,6}",
        "[a-z]{0,6}",
        prop::collection::vec("[a-z]{1,4}", 0..3),
        prop::collection::vec("[a-z]{1,4}", 0..3),
    )
        .prop_map(
            |(schema_url, r#type, id_keys, description_keys)| EntityRef {
                schema_url,
                r#type,
                id_keys,
                description_keys,
            },
        )
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    prop::collection::vec(trace_id(), 1..4).prop_flat_map(|trace_ids| {
        let scope_spans = (
            ".{0,6}",
            ".{0,4}",
            attributes(),
            any::<u32>(),
            ".{0,6}",
            prop::collection::vec(span(trace_ids.clone()), 0..5),
        )
            .prop_map(
                |(name, version, attributes, dropped, schema_url, spans)| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name,
                        version,
                        attributes,
                        dropped_attributes_count: dropped,
                    }),
                    spans,
                    schema_url,
                },
            );
        let resource_spans = (
            attributes(),
            any::<u32>(),
            prop::collection::vec(entity_ref(), 0..2),
            ".{0,6}",
            prop::collection::vec(scope_spans, 0..3),
        )
            .prop_map(
                |(attributes, dropped, entity_refs, schema_url, scope_spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes,
                        dropped_attributes_count: dropped,
                        entity_refs,
                    }),
                    scope_spans,
                    schema_url,
                },
            );
        prop::collection::vec(resource_spans, 1..4)
            .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Small row groups and pages so multi-row-group files are exercised.
fn small_options() -> BlockWriteOptions {
    BlockWriteOptions {
        row_group_target_bytes: 4 * 1024,
        data_page_max_rows: 4,
        bloom_shard_max_bytes: 64,
        ..BlockWriteOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn any_request_round_trips_through_a_block(requests in prop::collection::vec(request(), 1..3)) {
        let mut builder = SpanBatchBuilder::new();
        let mut sent = Vec::new();
        for request in &requests {
            validate_request(request).unwrap();
            builder.append_request(request);
            sent.extend(request.resource_spans.iter().cloned());
        }
        let expected = flatten(&sent);
        prop_assume!(!expected.is_empty());
        let batch = builder.finish().unwrap();

        let tenant = TenantId::new("prop").unwrap();
        let block_id = BlockId::new_v7();
        let encoded = encode_block(tenant.clone(), block_id, 0, &[batch], &small_options()).unwrap();
        prop_assert_eq!(encoded.meta.span_count as usize, expected.len());

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let read_back = runtime().block_on(async {
            upload_block(store.as_ref(), &encoded).await.unwrap();
            let meta = read_meta(store.as_ref(), &tenant, block_id).await.unwrap().unwrap();
            assert_eq!(meta, encoded.meta);
            read_block(Arc::clone(&store), &meta).await.unwrap()
        });
        let actual = flatten(&batches_to_resource_spans(&read_back).unwrap());
        prop_assert_eq!(actual, expected);
    }
}

#[test]
fn spans_come_back_sorted_by_trace_then_start_time() {
    let make = |trace: u8, start: u64| Span {
        trace_id: vec![trace; 16],
        span_id: vec![trace, start as u8, 0, 0, 0, 0, 0, 1],
        start_time_unix_nano: start,
        end_time_unix_nano: start + 10,
        ..Span::default()
    };
    let request = request_with_spans(vec![make(9, 5), make(1, 7), make(9, 1), make(1, 3)]);
    let batch = strata_common::convert::request_to_batch(&request).unwrap();
    let tenant = TenantId::default_tenant();
    let encoded = encode_block(tenant, BlockId::new_v7(), 0, &[batch], &small_options()).unwrap();
    assert_eq!(encoded.meta.trace_count, 2);
    assert_eq!(encoded.meta.min_trace_id, "01".repeat(16));
    assert_eq!(encoded.meta.max_trace_id, "09".repeat(16));
    assert_eq!(encoded.meta.start_time_unix_nano, 1);
    assert_eq!(encoded.meta.end_time_unix_nano, 17);

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let batches = runtime().block_on(async {
        upload_block(store.as_ref(), &encoded).await.unwrap();
        read_block(store, &encoded.meta).await.unwrap()
    });
    let spans: Vec<(u8, u64)> = batches_to_resource_spans(&batches)
        .unwrap()
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .map(|s| (s.trace_id[0], s.start_time_unix_nano))
        .collect();
    assert_eq!(spans, vec![(1, 3), (1, 7), (9, 1), (9, 5)]);
}

#[test]
fn requests_with_bad_ids_are_rejected_with_the_span_named() {
    let request = request_with_spans(vec![Span {
        trace_id: vec![1; 15],
        span_id: vec![1; 8],
        ..Span::default()
    }]);
    let error = validate_request(&request).unwrap_err().to_string();
    assert!(
        error.contains("resourceSpans[0].scopeSpans[0].spans[0]"),
        "{error}"
    );
    assert!(error.contains("traceId must be 16 bytes"), "{error}");
}
