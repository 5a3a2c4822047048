//! Spans sent by the OTel SDK come back exactly as sent: live, and from a
//! block after a graceful restart — on local disk and on a real
//! S3-compatible server.

use strata_common::testing::flatten;

use crate::support::process::Options;
use crate::support::sdk::{Sender, Transport};
use crate::support::storage::TestStorage;
use crate::support::{Strata, fetch_v1_json, fetch_v1_protobuf, fetch_v2_protobuf, wait_for_spans};

/// Sends one trace with `transport`, checks it live, restarts Strata and
/// checks it again from the block.
async fn round_trip(storage: TestStorage, transport: Transport, gzip: bool, tenant: Option<&str>) {
    let options = || Options {
        args: vec!["--block-max-age".into(), "1h".into()],
        env: storage.env.clone(),
        ..Options::default()
    };

    let strata = Strata::start(&storage.url, storage.dir.path(), options());
    let endpoint = match transport {
        Transport::Grpc => strata.otlp_grpc.clone(),
        _ => strata.otlp_http.clone(),
    };
    let sender = Sender::new(transport, &endpoint, tenant, gzip).await;
    let trace_id = sender.emit_trace("GET /orders");
    sender.flush().await;
    let id = trace_id.to_string();
    let sent = flatten(&sender.captured.trace(&trace_id.to_bytes()));
    assert_eq!(sent.len(), 3, "the SDK exported the trace's three spans");

    // Live: readable as soon as the export was acknowledged.
    let live = wait_for_spans(&strata.http, &id, tenant, 3).await;
    assert_eq!(flatten(&live), sent);
    assert_eq!(
        flatten(&fetch_v1_protobuf(&strata.http, &id, tenant).await),
        sent
    );
    assert_eq!(storage.committed_blocks().await, 0, "nothing flushed yet");

    // Graceful stop writes the buffer to one block, meta.json included.
    strata.terminate();
    assert_eq!(storage.committed_blocks().await, 1);
    let objects = storage.objects().await;
    let tenant_dir = format!("{}/", tenant.unwrap_or("single-tenant"));
    for name in ["data.parquet", "bloom-0", "meta.json"] {
        assert!(
            objects
                .iter()
                .any(|p| p.starts_with(&tenant_dir) && p.ends_with(name)),
            "{name} missing: {objects:?}"
        );
    }

    // After a restart the trace comes from the block.
    let strata = Strata::start(&storage.url, storage.dir.path(), options());
    assert_eq!(
        flatten(&fetch_v2_protobuf(&strata.http, &id, tenant).await),
        sent
    );
    assert_eq!(
        flatten(&fetch_v1_protobuf(&strata.http, &id, tenant).await),
        sent
    );
    let json = fetch_v1_json(&strata.http, &id, tenant).await;
    check_tempo_json(&json, &trace_id.to_bytes());
    sender.shutdown().await;
    strata.terminate();
}

/// Spot-checks the Tempo JSON shape Grafana and Tempo's own tools parse.
fn check_tempo_json(json: &serde_json::Value, trace_id: &[u8]) {
    use base64::Engine;
    let batches = json["batches"].as_array().unwrap();
    let spans: Vec<&serde_json::Value> = batches
        .iter()
        .flat_map(|b| b["scopeSpans"].as_array().unwrap())
        .flat_map(|s| s["spans"].as_array().unwrap())
        .collect();
    assert_eq!(spans.len(), 3);
    let encoded = base64::engine::general_purpose::STANDARD.encode(trace_id);
    assert!(spans.iter().all(|s| s["traceId"] == encoded.as_str()));
    let root = spans.iter().find(|s| s["name"] == "GET /orders").unwrap();
    assert_eq!(root["kind"], "SPAN_KIND_SERVER");
    assert_eq!(root["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(root["traceState"], "vendor=opaque-value");
    assert!(root["startTimeUnixNano"].is_string());
    let status_code = root["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "http.response.status_code")
        .unwrap();
    assert_eq!(status_code["value"]["intValue"], "503");
    let resource = &batches[0]["resource"]["attributes"];
    assert!(
        resource
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "service.name" && a["value"]["stringValue"] == "strata-it")
    );
}

macro_rules! round_trip_tests {
    ($($name:ident: $transport:expr, $gzip:expr, $tenant:expr;)+) => {
        mod local_disk {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    round_trip(TestStorage::local(), $transport, $gzip, $tenant).await;
                }
            )+
        }

        mod s3 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(storage) = TestStorage::s3() else { return };
                    round_trip(storage, $transport, $gzip, $tenant).await;
                }
            )+
        }
    };
}

round_trip_tests! {
    grpc_spans_come_back_exactly_live_and_after_restart: Transport::Grpc, true, None;
    http_protobuf_spans_come_back_exactly_live_and_after_restart: Transport::HttpProtobuf, true, Some("team-proto");
    http_json_spans_come_back_exactly_live_and_after_restart: Transport::HttpJson, false, None;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_cut_by_size_while_running_and_stay_readable() {
    let storage = TestStorage::local();
    let strata = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: vec![
                "--block-max-bytes".into(),
                "1KiB".into(),
                "--trace-idle-period".into(),
                "200ms".into(),
            ],
            ..Options::default()
        },
    );
    let sender = Sender::new(Transport::Grpc, &strata.otlp_grpc, None, false).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(sender.emit_trace(&format!("op-{i}")));
        sender.flush().await;
    }
    // The flush loop cuts blocks without any shutdown.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while storage.committed_blocks().await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no block was cut; log:\n{}",
            strata.log_text()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for id in &ids {
        let sent = flatten(&sender.captured.trace(&id.to_bytes()));
        let got = flatten(&wait_for_spans(&strata.http, &id.to_string(), None, 3).await);
        assert_eq!(got, sent);
    }
    sender.shutdown().await;
    strata.terminate();
}
