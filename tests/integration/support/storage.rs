//! The storage a test server writes to: a local directory, or a fresh prefix
//! in the SeaweedFS bucket that `scripts/test.sh` started.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use strata_common::{S3Options, StorageLocation};
use tempfile::TempDir;

use super::s3_endpoint;

/// Where blocks go, with the means to inspect them.
pub struct TestStorage {
    /// The `--storage` URL.
    pub url: String,
    /// Environment the server needs to reach it.
    pub env: Vec<(&'static str, String)>,
    store: Arc<dyn ObjectStore>,
    /// Holds logs (and, for local storage, the blocks).
    pub dir: TempDir,
}

impl TestStorage {
    /// A fresh local directory.
    pub fn local() -> Self {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("blocks");
        let location = StorageLocation::Local(path.clone());
        Self {
            url: format!("file://{}", path.display()),
            env: Vec::new(),
            store: location.open(&S3Options::default()).unwrap(),
            dir,
        }
    }

    /// A fresh prefix in the test bucket, or `None` when S3 tests are skipped.
    pub fn s3() -> Option<Self> {
        let endpoint = s3_endpoint()?;
        let prefix = format!(
            "it-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let url = format!("s3://traces/{prefix}");
        let options = S3Options {
            endpoint: Some(endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("testtest".into()),
            allow_http: Some(true),
            virtual_hosted_style: None,
        };
        let store = StorageLocation::parse(&url)
            .unwrap()
            .open(&options)
            .unwrap();
        Some(Self {
            env: vec![
                ("AWS_ENDPOINT_URL", endpoint),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "testtest".into()),
                ("AWS_ALLOW_HTTP", "true".into()),
            ],
            url,
            store,
            dir: TempDir::new().unwrap(),
        })
    }

    /// Points the server (not this test's own client) at another endpoint,
    /// e.g. a fault-injecting proxy.
    pub fn server_endpoint(&self, endpoint: &str) -> Vec<(&'static str, String)> {
        self.env
            .iter()
            .map(|(key, value)| {
                if *key == "AWS_ENDPOINT_URL" {
                    (*key, endpoint.to_owned())
                } else {
                    (*key, value.clone())
                }
            })
            .collect()
    }

    /// The store itself, for fixtures written in code.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// Every object path in the storage.
    pub async fn objects(&self) -> Vec<String> {
        self.store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap()
    }

    /// Committed blocks (objects named `meta.json`).
    pub async fn committed_blocks(&self) -> usize {
        self.objects()
            .await
            .iter()
            .filter(|p| p.ends_with("/meta.json"))
            .count()
    }
}
