//! Test support (feature `testing`): comparing traces up to regrouping.
//!
//! OTLP lets a sender group spans by resource and scope however it likes,
//! and Strata regroups them on read. Two traces are the same when the
//! multisets of (resource, scope, span) triples are equal; this module
//! flattens traces into such sorted lists. [`FaultyStore`] injects storage
//! outages.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result as StoreResult,
};

/// One span with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct FlatSpan {
    /// The span's resource (the empty resource when absent).
    pub resource: Resource,
    /// `ResourceSpans.schema_url`.
    pub resource_schema_url: String,
    /// The span's scope (the empty scope when absent).
    pub scope: InstrumentationScope,
    /// `ScopeSpans.schema_url`.
    pub scope_schema_url: String,
    /// The span (with an empty status when absent).
    pub span: Span,
}

impl FlatSpan {
    fn sort_key(&self) -> Vec<u8> {
        ResourceSpans {
            resource: Some(self.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(self.scope.clone()),
                spans: vec![self.span.clone()],
                schema_url: self.scope_schema_url.clone(),
            }],
            schema_url: self.resource_schema_url.clone(),
        }
        .encode_to_vec()
    }
}

/// Flattens and sorts, treating an absent resource, scope or status as the
/// empty one (OTLP gives them the same meaning).
pub fn flatten(resource_spans: &[ResourceSpans]) -> Vec<FlatSpan> {
    let mut out: Vec<FlatSpan> = resource_spans
        .iter()
        .flat_map(|rs| {
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans.iter().map(move |span| {
                    let mut span = span.clone();
                    span.status.get_or_insert_with(Status::default);
                    FlatSpan {
                        resource: rs.resource.clone().unwrap_or_default(),
                        resource_schema_url: rs.schema_url.clone(),
                        scope: ss.scope.clone().unwrap_or_default(),
                        scope_schema_url: ss.schema_url.clone(),
                        span,
                    }
                })
            })
        })
        .collect();
    out.sort_by_cached_key(FlatSpan::sort_key);
    out
}

/// An export request holding `spans` under one empty resource and scope.
pub fn request_with_spans(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// An object-store decorator that fails, delays or hangs requests on
/// demand, to test how components behave while storage misbehaves.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    failing: AtomicBool,
    hanging: AtomicBool,
    latency_ms: std::sync::atomic::AtomicU64,
}

impl FaultyStore {
    /// Wraps `inner`; requests succeed until [`set_failing`](Self::set_failing).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            failing: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
            latency_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Makes every request hang (`true`: never answer) or pass through.
    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }

    /// Delays every request by `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.latency_ms.store(
            u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Applies the configured delay or hang, then the failure switch.
    async fn enter(&self) -> StoreResult<()> {
        let latency = self.latency_ms.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
        }
        if self.hanging.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.check()
    }

    /// Makes every request fail (`true`) or pass through (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn check(&self) -> StoreResult<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected outage".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> StoreResult<PutResult> {
        self.enter().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> StoreResult<Box<dyn MultipartUpload>> {
        self.enter().await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &ObjectPath, options: GetOptions) -> StoreResult<GetResult> {
        self.enter().await?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, StoreResult<ObjectPath>>,
    ) -> BoxStream<'static, StoreResult<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, StoreResult<ObjectMeta>> {
        match self.check() {
            Ok(()) => self.inner.list(prefix),
            Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> StoreResult<ListResult> {
        self.enter().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> StoreResult<()> {
        self.enter().await?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// A plausible `meta.json` for a block that exists only on paper, for tests
/// of block bookkeeping that never read span data.
pub fn meta_for_tests(
    tenant: &crate::TenantId,
    block_id: crate::BlockId,
    compaction_level: u32,
) -> crate::BlockMeta {
    crate::BlockMeta {
        format: crate::meta::FORMAT_NAME.to_owned(),
        format_version: crate::meta::FORMAT_VERSION,
        tenant: tenant.clone(),
        block_id,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000,
        min_trace_id: "00000000000000000000000000000001".to_owned(),
        max_trace_id: "ffffffffffffffffffffffffffffffff".to_owned(),
        span_count: 10,
        trace_count: 2,
        row_group_count: 1,
        data_size_bytes: 1_000,
        footer_size_bytes: 100,
        bloom_size_bytes: 10,
        compaction_level,
        created_at_unix_nano: 3_000,
        bloom: crate::bloom::BloomParams {
            shard_count: 1,
            false_positive_rate: 0.001,
            hash: crate::bloom::BLOOM_HASH_SCHEME.to_owned(),
        },
        attribute_keys: crate::meta::AttributeKeys::default(),
        compacted_from: Vec::new(),
        dedicated_columns: Vec::new(),
        trace_table_size_bytes: 10,
        summary_size_bytes: 10,
    }
}
