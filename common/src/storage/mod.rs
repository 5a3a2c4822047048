//! Opening the object store from a URL.
//!
//! Storage is always an `Arc<dyn ObjectStore>`: local directory, memory or
//! S3, chosen by URL. Behaviour such as caching or fault injection is added
//! by wrapping the store, never by a storage trait of our own.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod metered;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

pub use metered::{MeteredStore, ObjectKind, RequestCounts};

/// S3 settings that override the usual `AWS_*` environment variables
/// (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:8333` for an S3-compatible server.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key ID.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints.
    pub allow_http: Option<bool>,
    /// Use virtual-hosted-style requests (`bucket.host`); the default is
    /// path-style (`host/bucket`), which S3-compatible servers expect.
    pub virtual_hosted_style: Option<bool>,
}

/// Where blocks live, parsed from a storage URL.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageLocation {
    /// A local directory (`file:///path`, or a plain path such as `./data`).
    Local(PathBuf),
    /// Process memory (`memory://`): for tests and demos; lost on exit.
    Memory,
    /// An S3 bucket and key prefix (`s3://bucket/prefix`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, without slashes at either end.
        prefix: String,
    },
}

impl StorageLocation {
    /// Parses a storage URL.
    pub fn parse(url: &str) -> Result<Self> {
        let config = |message: String| Error::Config { message };
        if url == "memory://" || url == "memory:" {
            return Ok(Self::Memory);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(config(format!("storage URL {url:?} names no bucket")));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(config(format!("storage URL {url:?} names no directory")));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(config(format!(
                "unsupported storage URL {url:?}: use file:///path, memory:// or s3://bucket/prefix"
            )));
        }
        Ok(Self::Local(PathBuf::from(url)))
    }

    /// Opens the store, creating a local directory if needed.
    pub fn open(&self, s3: &S3Options) -> Result<Arc<dyn ObjectStore>> {
        match self {
            Self::Memory => Ok(Arc::new(InMemory::new())),
            Self::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Config {
                    message: format!("creating storage directory {}: {e}", dir.display()),
                })?;
                let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| Error::Config {
                    message: format!("opening storage directory {}: {e}", dir.display()),
                })?;
                Ok(Arc::new(store))
            }
            Self::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
                let settings = [
                    (AmazonS3ConfigKey::Endpoint, s3.endpoint.clone()),
                    (AmazonS3ConfigKey::Region, s3.region.clone()),
                    (AmazonS3ConfigKey::AccessKeyId, s3.access_key_id.clone()),
                    (
                        AmazonS3ConfigKey::SecretAccessKey,
                        s3.secret_access_key.clone(),
                    ),
                    (
                        AmazonS3ConfigKey::VirtualHostedStyleRequest,
                        s3.virtual_hosted_style.map(|v| v.to_string()),
                    ),
                ];
                for (key, value) in settings {
                    if let Some(value) = value {
                        builder = builder.with_config(key, value);
                    }
                }
                if let Some(allow_http) = s3.allow_http {
                    builder = builder.with_allow_http(allow_http);
                }
                let store = builder.build().map_err(|e| Error::Config {
                    message: format!("configuring S3 bucket {bucket:?}: {e}"),
                })?;
                if prefix.is_empty() {
                    Ok(Arc::new(store))
                } else {
                    Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
                }
            }
        }
    }
}

impl std::fmt::Display for StorageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "file://{}", dir.display()),
            Self::Memory => f.write_str("memory://"),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Reads a whole object.
pub async fn get_bytes(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    let result = store
        .get(path)
        .await
        .map_err(Error::object_store("get", path))?;
    result
        .bytes()
        .await
        .map_err(Error::object_store("get", path))
}

/// Reads a whole object, or `None` when it does not exist.
pub async fn get_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<Option<Bytes>> {
    match get_bytes(store, path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(Error::ObjectStore {
            source: object_store::Error::NotFound { .. },
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes an object; one that is already gone is not an error.
pub async fn delete_if_exists(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(source) => Err(Error::object_store("delete", path)(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_url() {
        assert_eq!(
            StorageLocation::parse("memory://").unwrap(),
            StorageLocation::Memory
        );
        assert_eq!(
            StorageLocation::parse("./data").unwrap(),
            StorageLocation::Local(PathBuf::from("./data"))
        );
        assert_eq!(
            StorageLocation::parse("file:///var/lib/strata").unwrap(),
            StorageLocation::Local(PathBuf::from("/var/lib/strata"))
        );
        assert_eq!(
            StorageLocation::parse("s3://traces/prod/eu/").unwrap(),
            StorageLocation::S3 {
                bucket: "traces".into(),
                prefix: "prod/eu".into()
            }
        );
    }

    #[test]
    fn rejects_unknown_schemes_and_empty_buckets() {
        assert!(StorageLocation::parse("gs://bucket").is_err());
        assert!(StorageLocation::parse("s3://").is_err());
    }
}
