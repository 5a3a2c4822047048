//! `strata` with no arguments just works: every component, local disk
//! under `./data`, Tempo's ports.

use tempfile::TempDir;

use crate::support::process::Options;
use crate::support::{Strata, get, http_client};

const JS_JSON: &str = include_str!("../fixtures/otlp-http-json-from-otel-js-0.223.1.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_arguments_runs_everything_on_local_disk_with_tempo_ports() {
    let dir = TempDir::new().unwrap();
    let strata = Strata::start(
        "",
        dir.path(),
        Options {
            cwd: Some(dir.path()),
            default_ports: true,
            ..Options::default()
        },
    );
    assert!(strata.otlp_grpc.ends_with(":4317"), "{}", strata.otlp_grpc);
    assert!(
        strata.otlp_http.ends_with(":4318/v1/traces"),
        "{}",
        strata.otlp_http
    );
    assert!(strata.http.ends_with(":3200"), "{}", strata.http);
    assert!(
        dir.path().join("data/blocks").is_dir(),
        "./data/blocks was not created"
    );
    assert!(
        dir.path().join("data/wal").is_dir(),
        "./data/wal was not created"
    );
    assert!(
        strata.zipkin.ends_with(":9411/api/v2/spans"),
        "{}",
        strata.zipkin
    );

    let response = http_client()
        .post("http://127.0.0.1:4318/v1/traces")
        .header("Content-Type", "application/json")
        .body(JS_JSON)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let trace = get(
        "http://127.0.0.1:3200",
        "/api/traces/815514707708c4ccb5cf12873bd2c7f2",
        None,
        None,
    )
    .await;
    assert_eq!(trace.status, 200);
    strata.terminate();

    // The graceful stop left a block under ./data/blocks/single-tenant/.
    let tenant_dir = dir.path().join("data/blocks/single-tenant");
    let blocks: Vec<_> = std::fs::read_dir(&tenant_dir).unwrap().collect();
    assert_eq!(blocks.len(), 1);
}
