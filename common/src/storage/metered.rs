//! An object-store decorator that counts requests.
//!
//! Every request is counted by operation and by the kind of object it
//! touches (`data`, `bloom`, `meta`, `other`), both as the Prometheus counter
//! `strata_object_store_requests_total` and in [`RequestCounts`], which tests
//! read to prove that pruning skipped what it should.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::paths::{BLOOM_FILE_PREFIX, DATA_FILE, META_FILE};

/// What kind of block object a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `data.parquet`
    Data,
    /// `bloom-<n>`
    Bloom,
    /// `meta.json`
    Meta,
    /// Anything else (listings, markers).
    Other,
}

impl ObjectKind {
    fn of(path: &Path) -> Self {
        match path.filename() {
            Some(DATA_FILE) => Self::Data,
            Some(META_FILE) => Self::Meta,
            Some(name) if name.starts_with(BLOOM_FILE_PREFIX) => Self::Bloom,
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Data => "data",
            Self::Bloom => "bloom",
            Self::Meta => "meta",
            Self::Other => "other",
        }
    }
}

/// Read requests per object kind, plus writes and listings.
#[derive(Debug, Default)]
pub struct RequestCounts {
    data_reads: AtomicU64,
    bloom_reads: AtomicU64,
    meta_reads: AtomicU64,
    other_reads: AtomicU64,
    writes: AtomicU64,
    lists: AtomicU64,
}

impl RequestCounts {
    /// GET requests (ranged or whole) for objects of `kind`.
    pub fn reads(&self, kind: ObjectKind) -> u64 {
        match kind {
            ObjectKind::Data => &self.data_reads,
            ObjectKind::Bloom => &self.bloom_reads,
            ObjectKind::Meta => &self.meta_reads,
            ObjectKind::Other => &self.other_reads,
        }
        .load(Ordering::Relaxed)
    }

    /// PUT, multipart, copy and delete requests.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// LIST requests.
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Relaxed)
    }

    fn read(&self, path: &Path, requests: u64) {
        let kind = ObjectKind::of(path);
        match kind {
            ObjectKind::Data => &self.data_reads,
            ObjectKind::Bloom => &self.bloom_reads,
            ObjectKind::Meta => &self.meta_reads,
            ObjectKind::Other => &self.other_reads,
        }
        .fetch_add(requests, Ordering::Relaxed);
        record("get", kind, requests);
    }

    fn write(&self, operation: &'static str, path: &Path) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        record(operation, ObjectKind::of(path), 1);
    }

    fn list(&self) {
        self.lists.fetch_add(1, Ordering::Relaxed);
        record("list", ObjectKind::Other, 1);
    }
}

fn record(operation: &'static str, kind: ObjectKind, requests: u64) {
    metrics::counter!(
        "strata_object_store_requests_total",
        "operation" => operation,
        "object" => kind.label()
    )
    .increment(requests);
}

/// Wraps a store and counts its requests.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<RequestCounts>,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            counts: Arc::new(RequestCounts::default()),
        }
    }

    /// The live counters.
    pub fn counts(&self) -> Arc<RequestCounts> {
        Arc::clone(&self.counts)
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metered({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.counts.write("put", location);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.counts.write("put_multipart", location);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !options.head {
            self.counts.read(location, 1);
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.counts.read(location, ranges.len() as u64);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = Arc::clone(&self.counts);
        let counted = locations
            .inspect(move |path| {
                if let Ok(path) = path {
                    counts.write("delete", path);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.counts.list();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.counts.list();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.counts.write("copy", to);
        self.inner.copy_opts(from, to, options).await
    }
}
