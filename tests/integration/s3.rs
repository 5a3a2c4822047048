//! The same round trip against a real S3-compatible server (SeaweedFS on
//! loopback, started by `scripts/test.sh`).

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use strata_common::testing::flatten;
use tempfile::TempDir;

use crate::support::process::Options;
use crate::support::sdk::{Sender, Transport};
use crate::support::{Strata, fetch_v1_protobuf, fetch_v2_protobuf, s3_endpoint, wait_for_spans};

const BUCKET: &str = "traces";

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testtest".to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ]
}

fn bucket(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_bucket_name(BUCKET)
            .with_access_key_id("test")
            .with_secret_access_key("testtest")
            .with_allow_http(true)
            .build()
            .unwrap(),
    )
}

/// Every object under `prefix`.
async fn list_paths(store: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    store
        .list(Some(&Path::from(prefix)))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_spans_come_back_exactly_live_and_after_restart() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let prefix = format!(
        "it-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let storage = format!("s3://{BUCKET}/{prefix}");
    let dir = TempDir::new().unwrap();
    let options = || Options {
        env: s3_env(&endpoint),
        ..Options::default()
    };

    let strata = Strata::start(&storage, dir.path(), options());
    let sender = Sender::new(Transport::Grpc, &strata.otlp_grpc, Some("s3-tenant"), true).await;
    let trace_id = sender.emit_trace("GET /s3");
    sender.flush().await;
    let id = trace_id.to_string();
    let sent = flatten(&sender.captured.trace(&trace_id.to_bytes()));
    assert_eq!(
        flatten(&wait_for_spans(&strata.http, &id, Some("s3-tenant"), 3).await),
        sent
    );
    strata.terminate();

    // The block is in the bucket under the prefix, meta.json included.
    let objects = list_paths(bucket(&endpoint).as_ref(), &prefix).await;
    assert!(
        objects
            .iter()
            .any(|p| p.ends_with("/meta.json") && p.contains("/s3-tenant/")),
        "{objects:?}"
    );
    assert!(objects.iter().any(|p| p.ends_with("/data.parquet")));
    assert!(objects.iter().any(|p| p.ends_with("/bloom-0")));

    let strata = Strata::start(&storage, dir.path(), options());
    assert_eq!(
        flatten(&fetch_v2_protobuf(&strata.http, &id, Some("s3-tenant")).await),
        sent
    );
    assert_eq!(
        flatten(&fetch_v1_protobuf(&strata.http, &id, Some("s3-tenant")).await),
        sent
    );
    sender.shutdown().await;
    strata.terminate();
}
