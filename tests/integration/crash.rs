//! `kill -9` at random moments: every span whose export was acknowledged is
//! readable afterwards, and no span is returned twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::process::Options;
use crate::support::storage::TestStorage;
use crate::support::{Strata, fetch_v2_protobuf, http_client};

/// Acknowledged span IDs by trace ID (hex).
type Acked = Arc<Mutex<BTreeMap<String, BTreeSet<Vec<u8>>>>>;

fn export(rng: &mut StdRng, exporter: usize) -> ExportTraceServiceRequest {
    let traces = rng.random_range(1..=3);
    let mut spans = Vec::new();
    for _ in 0..traces {
        let trace_id: [u8; 16] = rng.random();
        let root: [u8; 8] = rng.random();
        for n in 0..rng.random_range(3..=8) {
            spans.push(Span {
                trace_id: trace_id.to_vec(),
                span_id: if n == 0 {
                    root.to_vec()
                } else {
                    rng.random::<[u8; 8]>().to_vec()
                },
                parent_span_id: if n == 0 { Vec::new() } else { root.to_vec() },
                name: format!("op-{n}"),
                start_time_unix_nano: 1_790_000_000_000_000_000 + n,
                end_time_unix_nano: 1_790_000_000_000_100_000 + n,
                ..Span::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(format!(
                            "exporter-{exporter}"
                        ))),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

fn record(acked: &Acked, request: &ExportTraceServiceRequest) {
    let mut acked = acked.lock().unwrap();
    for span in request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        acked
            .entry(hex::encode(&span.trace_id))
            .or_default()
            .insert(span.span_id.clone());
    }
}

/// Sends exports until `stop`; records what was acknowledged.
async fn exporter(
    id: usize,
    strata_http: String,
    strata_grpc: String,
    seed: u64,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = http_client();
    let mut grpc = if id % 2 == 1 {
        TraceServiceClient::connect(strata_grpc).await.ok()
    } else {
        None
    };
    while !stop.load(Ordering::Relaxed) {
        let request = export(&mut rng, id);
        let ok = match &mut grpc {
            Some(client) => client.export(request.clone()).await.is_ok(),
            None => client
                .post(&strata_http)
                .header("Content-Type", "application/x-protobuf")
                .body(request.encode_to_vec())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
        };
        if ok {
            record(&acked, &request);
        }
        // Paced, so that verifying every acknowledged trace stays quick.
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_spans_survive_kill_9_and_are_never_duplicated() {
    let seed: u64 = std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("crash test seed {seed} (set STRATA_CRASH_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let storage = TestStorage::local();
    // Short idle and age so kills land while traces are live, being cut,
    // queued and uploading.
    let options = || Options {
        args: [
            "--trace-idle-period",
            "200ms",
            "--block-max-age",
            "200ms",
            "--blocklist-poll",
            "1s",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    };
    let acked: Acked = Arc::default();

    for round in 0..5u64 {
        let strata = Strata::start(&storage.url, storage.dir.path(), options());
        let stop = Arc::new(AtomicBool::new(false));
        let exporters: Vec<_> = (0..4)
            .map(|id| {
                tokio::spawn(exporter(
                    id,
                    strata.otlp_http.clone(),
                    strata.otlp_grpc.clone(),
                    rng.random(),
                    Arc::clone(&acked),
                    Arc::clone(&stop),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
        kill(strata.pid(), Signal::SIGKILL).unwrap();
        stop.store(true, Ordering::Relaxed);
        for exporter in exporters {
            exporter.await.unwrap();
        }
        drop(strata);
        println!(
            "round {round}: {} traces acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    let strata = Strata::start(&storage.url, storage.dir.path(), options());
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "too little traffic to test anything: {}",
        acked.len()
    );
    let http = strata.http.clone();
    let failures: Vec<String> = futures::stream::iter(acked)
        .map(|(trace, want)| {
            let http = http.clone();
            async move {
                let got = fetch_v2_protobuf(&http, &trace, None).await;
                let ids: Vec<Vec<u8>> = got
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .map(|s| s.span_id.clone())
                    .collect();
                let unique: BTreeSet<Vec<u8>> = ids.iter().cloned().collect();
                if unique.len() != ids.len() {
                    return Some(format!(
                        "{trace}: {} spans returned, {} distinct",
                        ids.len(),
                        unique.len()
                    ));
                }
                let missing = want.difference(&unique).count();
                (missing > 0).then(|| {
                    format!(
                        "{trace}: {missing} of {} acknowledged spans missing",
                        want.len()
                    )
                })
            }
        })
        .buffer_unordered(8)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "seed {seed}: {} traces wrong, e.g. {:?}\nlog:\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        strata.log_text()
    );
    strata.terminate();
}
