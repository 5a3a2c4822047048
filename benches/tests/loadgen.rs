#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The `strata-loadgen` binary against its own no-op sink: every span it
//! reports acknowledged reached the receiver, over gRPC and HTTP, and the
//! trace IDs it writes can be read back.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use strata_benches::loadgen::{SentTrace, SinkCounts, run_sink};
use tokio_util::sync::CancellationToken;

async fn send_to_sink(protocol: &str) {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = match protocol {
        "grpc" => format!("http://{}", grpc.local_addr().unwrap()),
        _ => format!("http://{}", http.local_addr().unwrap()),
    };
    let counts = Arc::new(SinkCounts::default());
    let cancel = CancellationToken::new();
    let sink = tokio::spawn(run_sink(grpc, http, Arc::clone(&counts), cancel.clone()));
    let ids = tempfile::NamedTempFile::new().unwrap();

    let output = tokio::task::spawn_blocking({
        let ids = ids.path().to_owned();
        let protocol = protocol.to_owned();
        move || {
            Command::new(env!("CARGO_BIN_EXE_strata-loadgen"))
                .args(["send", "--protocol", &protocol, "--endpoint", &endpoint])
                .args([
                    "--spans",
                    "3000",
                    "--batch",
                    "256",
                    "--connections",
                    "3",
                    "--json",
                ])
                .arg("--ids-out")
                .arg(&ids)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    cancel.cancel();
    sink.await.unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let acknowledged = report["spans_acknowledged"].as_u64().unwrap();
    let requests = report["requests_acknowledged"].as_u64().unwrap();
    // 3,000 spans plus the late ones still held when the limit was reached.
    assert!((3_000..3_200).contains(&acknowledged), "{report}");
    assert_eq!(report["requests_failed"], 0);
    assert_eq!(counts.requests.load(Ordering::Relaxed), requests);
    assert_eq!(
        counts.bytes.load(Ordering::Relaxed),
        report["bytes_acknowledged"].as_u64().unwrap()
    );
    let raw = report["raw_otlp_bytes_per_span"].as_f64().unwrap();
    assert!((300.0..900.0).contains(&raw), "{raw} B/span");

    let lines = std::fs::read_to_string(ids.path()).unwrap();
    let traces: Vec<SentTrace> = lines
        .lines()
        .map(|l| SentTrace::from_line(l).unwrap())
        .collect();
    assert!(traces.len() > 50, "{} traces", traces.len());
    assert!(traces.iter().all(|t| t.start_unix_nano > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_grpc_and_every_acknowledged_request_arrives() {
    send_to_sink("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_over_http_and_every_acknowledged_request_arrives() {
    send_to_sink("http").await;
}

#[test]
fn a_bad_endpoint_is_reported_not_hung() {
    let output = Command::new(env!("CARGO_BIN_EXE_strata-loadgen"))
        .args(["send", "--endpoint", "http://127.0.0.1:9", "--spans", "10"])
        .args(["--max-retries", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("failed"), "{stdout}");
}
