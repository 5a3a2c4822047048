//! Per-tenant span buffers, block cutting and the live-trace lookup.
//!
//! Life of a span: a receiver calls [`Ingester::push`], which converts the
//! request to a span-schema batch and appends it to the tenant's *head*.
//! The flush loop cuts the head into a *pending* block when it is big or old
//! enough, writes it to the object store, and then keeps it as *recent* for
//! [`IngesterConfig::complete_block_timeout`] so queriers that discover blocks
//! by polling never see a gap. Head, pending and recent spans are all served by
//! [`Ingester::find_trace`].
//!
//! The write-ahead log slots in at `push` (append and fsync before the
//! batch joins the head) and at start-up (replay into heads); the buffer
//! already holds exactly what the WAL will hold.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{FixedSizeBinaryArray, RecordBatch, Scalar};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::eq;
use async_trait::async_trait;
use object_store::ObjectStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use strata_common::block::write_block;
use strata_common::convert::request_to_batch;
use strata_common::schema::columns;
use strata_common::{BlockMeta, LiveTraceSource, TenantId, TraceId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::IngesterConfig;
use crate::error::{Error, Result};
use crate::metrics;

/// Called after each block is committed, e.g. to tell an in-process querier
/// about it without waiting for its next poll.
pub type BlockWrittenHook = Arc<dyn Fn(&BlockMeta) + Send + Sync>;

/// Receives spans, buffers them per tenant and cuts blocks.
pub struct Ingester {
    store: Arc<dyn ObjectStore>,
    config: IngesterConfig,
    state: Mutex<State>,
    flush_wakeup: Notify,
    on_block_written: Option<BlockWrittenHook>,
}

impl fmt::Debug for Ingester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingester")
            .field("config", &self.config)
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    tenants: HashMap<TenantId, TenantBuffer>,
    /// Bytes of spans not yet in a committed block (heads and pending).
    unflushed_bytes: usize,
    shutting_down: bool,
    next_cut_id: u64,
}

#[derive(Default)]
struct TenantBuffer {
    head: Vec<RecordBatch>,
    head_bytes: usize,
    head_since: Option<Instant>,
    pending: VecDeque<CutBlock>,
    recent: VecDeque<RecentBlock>,
}

impl TenantBuffer {
    /// Moves the head into a pending block.
    fn cut(&mut self, id: u64, now: Instant) {
        self.pending.push_back(CutBlock {
            id,
            batches: std::mem::take(&mut self.head),
            bytes: std::mem::take(&mut self.head_bytes),
            failed_attempts: 0,
            next_attempt: now,
            in_flight: false,
        });
        self.head_since = None;
    }
}

/// A head that was cut and awaits a successful write.
struct CutBlock {
    id: u64,
    batches: Vec<RecordBatch>,
    bytes: usize,
    failed_attempts: u32,
    next_attempt: Instant,
    /// A flush pass is writing it now; others must not write it twice.
    in_flight: bool,
}

/// A written block's spans, kept queryable for a while.
struct RecentBlock {
    keep_until: Instant,
    batches: Vec<RecordBatch>,
}

/// What one flush pass achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Blocks committed.
    pub blocks_written: usize,
    /// Cut blocks still waiting (their write failed or is backing off).
    pub blocks_pending: usize,
}

impl Ingester {
    /// An ingester writing blocks to `store`.
    pub fn new(store: Arc<dyn ObjectStore>, config: IngesterConfig) -> Self {
        Self {
            store,
            config,
            state: Mutex::new(State::default()),
            flush_wakeup: Notify::new(),
            on_block_written: None,
        }
    }

    /// Calls `hook` after every committed block.
    pub fn with_block_written_hook(mut self, hook: BlockWrittenHook) -> Self {
        self.on_block_written = Some(hook);
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &IngesterConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update
        // is a few assignments), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts one export request for `tenant`. Returns the number of spans
    /// accepted. When this returns `Ok`, the spans are readable through
    /// [`find_trace`](Self::find_trace) and will be written to a block.
    pub fn push(&self, tenant: &TenantId, request: &ExportTraceServiceRequest) -> Result<usize> {
        let result = self.push_inner(tenant, request);
        match &result {
            Ok(spans) => metrics::spans_received(tenant, *spans),
            Err(e) => metrics::spans_rejected(tenant, count_spans(request), e.reason()),
        }
        result
    }

    fn push_inner(&self, tenant: &TenantId, request: &ExportTraceServiceRequest) -> Result<usize> {
        if self.lock().shutting_down {
            return Err(Error::ShuttingDown);
        }
        let batch = request_to_batch(request)?;
        let spans = batch.num_rows();
        if spans == 0 {
            return Ok(0);
        }
        let bytes = batch.get_array_memory_size();

        let mut state = self.lock();
        if state.shutting_down {
            return Err(Error::ShuttingDown);
        }
        if state.unflushed_bytes + bytes > self.config.max_live_bytes {
            return Err(Error::Overloaded {
                live_bytes: state.unflushed_bytes,
                limit: self.config.max_live_bytes,
            });
        }
        state.unflushed_bytes += bytes;
        let unflushed = state.unflushed_bytes;
        let State {
            tenants,
            next_cut_id,
            ..
        } = &mut *state;
        let buffer = tenants.entry(tenant.clone()).or_default();
        buffer.head.push(batch);
        buffer.head_bytes += bytes;
        buffer.head_since.get_or_insert_with(Instant::now);
        // Cut here rather than in the flush loop: while the loop is busy
        // writing a block, the head would otherwise keep growing, and blocks
        // (and the memory to encode them) with it.
        let full = buffer.head_bytes >= self.config.block_max_bytes;
        if full {
            *next_cut_id += 1;
            buffer.cut(*next_cut_id, Instant::now());
        }
        drop(state);

        metrics::unflushed_bytes(unflushed);
        if full {
            self.flush_wakeup.notify_one();
        }
        Ok(spans)
    }

    /// Runs the flush loop until `cancel` fires. Does not flush on exit:
    /// call [`shutdown`](Self::shutdown) for that.
    pub async fn run_flush_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.flush_check_interval) => {}
                () = self.flush_wakeup.notified() => {}
            }
            self.flush(false).await;
        }
    }

    /// Cuts heads that are old enough (all heads when `force`), then writes
    /// every pending block whose retry time has come (all of them when
    /// `force`).
    pub async fn flush(&self, force: bool) -> FlushReport {
        let now = Instant::now();
        let jobs = self.cut_and_collect(now, force);
        let mut report = FlushReport::default();
        for (tenant, id, batches) in jobs {
            let result = write_block(
                Arc::clone(&self.store),
                tenant.clone(),
                batches,
                0,
                self.config.block.clone(),
            )
            .await;
            match result {
                Ok(meta) => {
                    report.blocks_written += 1;
                    self.block_committed(&tenant, id, &meta);
                }
                Err(e) => {
                    warn!(%tenant, error = %e, "writing block failed; spans stay in memory and the write is retried");
                    metrics::block_write_failed(&tenant);
                    self.block_failed(&tenant, id);
                }
            }
        }
        report.blocks_pending = self.lock().tenants.values().map(|t| t.pending.len()).sum();
        report
    }

    fn cut_and_collect(&self, now: Instant, force: bool) -> Vec<(TenantId, u64, Vec<RecordBatch>)> {
        let mut state = self.lock();
        let State {
            tenants,
            next_cut_id,
            ..
        } = &mut *state;
        let mut jobs = Vec::new();
        for (tenant, buffer) in tenants.iter_mut() {
            buffer.recent.retain(|r| r.keep_until > now);
            // Full heads were already cut by `push`; here only age matters.
            let due = buffer
                .head_since
                .is_some_and(|since| now.duration_since(since) >= self.config.block_max_age);
            if !buffer.head.is_empty() && (force || due) {
                *next_cut_id += 1;
                buffer.cut(*next_cut_id, now);
            }
            for cut in &mut buffer.pending {
                if !cut.in_flight && (force || cut.next_attempt <= now) {
                    cut.in_flight = true;
                    jobs.push((tenant.clone(), cut.id, cut.batches.clone()));
                }
            }
        }
        tenants.retain(|_, b| !b.head.is_empty() || !b.pending.is_empty() || !b.recent.is_empty());
        jobs
    }

    fn block_committed(&self, tenant: &TenantId, cut_id: u64, meta: &BlockMeta) {
        info!(
            %tenant,
            block = %meta.block_id,
            spans = meta.span_count,
            traces = meta.trace_count,
            bytes = meta.data_size_bytes,
            "block written"
        );
        metrics::block_written(tenant, meta);
        // Tell the querier first, then retire the spans from the pending list,
        // so there is no instant where neither side serves them.
        if let Some(hook) = &self.on_block_written {
            hook(meta);
        }
        let mut state = self.lock();
        let keep_until = Instant::now() + self.config.complete_block_timeout;
        let mut freed = 0;
        if let Some(buffer) = state.tenants.get_mut(tenant)
            && let Some(pos) = buffer.pending.iter().position(|c| c.id == cut_id)
            && let Some(cut) = buffer.pending.remove(pos)
        {
            freed = cut.bytes;
            if !self.config.complete_block_timeout.is_zero() {
                buffer.recent.push_back(RecentBlock {
                    keep_until,
                    batches: cut.batches,
                });
            }
        }
        state.unflushed_bytes = state.unflushed_bytes.saturating_sub(freed);
        metrics::unflushed_bytes(state.unflushed_bytes);
    }

    fn block_failed(&self, tenant: &TenantId, cut_id: u64) {
        let mut state = self.lock();
        let Some(cut) = state
            .tenants
            .get_mut(tenant)
            .and_then(|b| b.pending.iter_mut().find(|c| c.id == cut_id))
        else {
            return;
        };
        cut.in_flight = false;
        cut.failed_attempts += 1;
        let backoff = Duration::from_secs(1u64 << cut.failed_attempts.min(6));
        cut.next_attempt = Instant::now() + backoff;
    }

    /// Stops accepting spans and writes everything buffered. Retries failed
    /// writes for up to `deadline`; returns the number of blocks that could
    /// not be written (0 on a clean shutdown).
    pub async fn shutdown(&self, deadline: Duration) -> usize {
        self.lock().shutting_down = true;
        let started = Instant::now();
        let mut delay = Duration::from_millis(250);
        loop {
            let report = self.flush(true).await;
            if report.blocks_pending == 0 {
                info!("ingester flushed; nothing acknowledged is held only in memory");
                return 0;
            }
            if started.elapsed() + delay > deadline {
                warn!(
                    blocks = report.blocks_pending,
                    "shutdown deadline reached with blocks unwritten"
                );
                return report.blocks_pending;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Bytes of spans not yet in a committed block.
    pub fn unflushed_bytes(&self) -> usize {
        self.lock().unflushed_bytes
    }

    fn tenant_batches(&self, tenant: &TenantId) -> Vec<RecordBatch> {
        let state = self.lock();
        let Some(buffer) = state.tenants.get(tenant) else {
            return Vec::new();
        };
        buffer
            .head
            .iter()
            .chain(buffer.pending.iter().flat_map(|c| c.batches.iter()))
            .chain(buffer.recent.iter().flat_map(|r| r.batches.iter()))
            .cloned()
            .collect()
    }

    /// The spans of one trace held in memory (not yet, or only just, in a
    /// block).
    pub fn live_trace(&self, tenant: &TenantId, trace_id: TraceId) -> Result<Vec<RecordBatch>> {
        let batches = self.tenant_batches(tenant);
        let needle = FixedSizeBinaryArray::try_from_iter(std::iter::once(trace_id.as_bytes()))
            .map(Scalar::new)
            .map_err(|e| strata_common::Error::corrupt(format!("trace ID scalar: {e}")))?;
        let mut out = Vec::new();
        for batch in batches {
            let ids = batch
                .column_by_name(columns::TRACE_ID)
                .ok_or_else(|| strata_common::Error::corrupt("live batch without trace_id"))?;
            let mask = eq(ids, &needle)
                .map_err(|e| strata_common::Error::corrupt(format!("comparing trace IDs: {e}")))?;
            if mask.true_count() == 0 {
                continue;
            }
            let rows = filter_record_batch(&batch, &mask)
                .map_err(|e| strata_common::Error::corrupt(format!("filtering spans: {e}")))?;
            out.push(rows);
        }
        Ok(out)
    }
}

#[async_trait]
impl LiveTraceSource for Ingester {
    async fn find_trace(
        &self,
        tenant: &TenantId,
        trace_id: TraceId,
    ) -> strata_common::Result<Vec<RecordBatch>> {
        self.live_trace(tenant, trace_id).map_err(|e| match e {
            Error::Common(inner) => inner,
            other => strata_common::Error::corrupt(other.to_string()),
        })
    }
}

fn count_spans(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}
