//! The ingester: WAL, live traces, block cutting and upload.
//!
//! Life of a span:
//!
//! 1. [`Ingester::push`] charges the tenant's rate limit, sanitises the
//!    request (see [`crate::limits`]), converts it to a span batch, appends it
//!    to the write-ahead log and waits for the fsync. Only then is the export
//!    acknowledged, and the batch joins the tenant's live traces.
//! 2. The cut loop moves traces that are complete (idle, or live too long)
//!    to a ready set, and cuts ready traces into a block by size or age. The
//!    block is encoded and written, fsynced, to the local upload queue; WAL
//!    segments nothing live still needs are deleted.
//! 3. The upload loop copies queued blocks to the object store (`meta.json`
//!    last), announces them, and removes them locally. Failures back off and
//!    retry; the queue grows on disk meanwhile.
//!
//! Every stage serves trace lookups, and each hand-over publishes the next
//! stage before retiring the previous one, so a lookup that reads the live
//! stages before the querier's block list never misses a span.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{Array, FixedSizeBinaryArray, RecordBatch, Scalar};
use arrow::compute::filter_record_batch;
use arrow::compute::kernels::cmp::eq;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::ObjectStore;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use strata_common::block::{BlockWriteOptions, encode_block, upload_block};
use strata_common::convert::request_to_batch;
use strata_common::schema::columns;
use strata_common::{BlockId, BlockMeta, LiveScan, LiveTraceSource, TenantId, TraceId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::IngesterConfig;
use crate::error::{Error, Result};
use crate::limits::{Limits, SanitizeReport, TraceUsage, sanitize};
use crate::live::{Cut, LiveTenant};
use crate::metrics;
use crate::queue::BlockQueue;
use crate::wal::{Wal, WalConfig};

/// Called after each block is committed to the object store, e.g. to tell
/// an in-process querier about it without waiting for its next poll.
pub type BlockWrittenHook = Arc<dyn Fn(&BlockMeta) + Send + Sync>;

/// What became of an accepted export.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// Spans logged and buffered.
    pub accepted: usize,
    /// Spans dropped (invalid, or beyond a trace limit).
    pub rejected: usize,
    /// Why spans were dropped, for OTLP's partial success; empty if none.
    pub message: String,
}

/// Receives spans, logs them, groups them by trace and cuts blocks.
pub struct Ingester {
    store: Arc<dyn ObjectStore>,
    config: IngesterConfig,
    limits: Limits,
    wal: Wal,
    queue: Arc<BlockQueue>,
    state: Mutex<State>,
    cut_wakeup: Notify,
    upload_wakeup: Notify,
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

#[derive(Debug, Default)]
struct State {
    tenants: HashMap<TenantId, LiveTenant>,
    /// Cuts being encoded into the local queue: still served, still holding
    /// their WAL segments.
    cutting: Vec<Cutting>,
    next_cut: u64,
    shutting_down: bool,
}

#[derive(Debug)]
struct Cutting {
    id: u64,
    /// The block it becomes: a search that finds this block in the local
    /// queue already has these rows.
    block_id: BlockId,
    tenant: TenantId,
    batch: RecordBatch,
    min_wal_segment: u64,
    in_progress: bool,
}

impl State {
    fn live_bytes(&self) -> usize {
        self.tenants.values().map(LiveTenant::bytes).sum::<usize>()
            + self
                .cutting
                .iter()
                .map(|c| c.batch.get_array_memory_size())
                .sum::<usize>()
    }

    fn min_wal_segment(&self) -> u64 {
        let live = self
            .tenants
            .values()
            .filter_map(LiveTenant::min_wal_segment);
        let cutting = self.cutting.iter().map(|c| c.min_wal_segment);
        live.chain(cutting).min().unwrap_or(u64::MAX)
    }
}

/// What a shutdown achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Blocks uploaded during shutdown.
    pub blocks_uploaded: usize,
    /// Blocks left in the local queue (uploaded at the next start).
    pub blocks_queued: usize,
}

impl Ingester {
    /// Opens the ingester: recovers the WAL into live traces and the local
    /// upload queue, ready to serve.
    pub async fn open(store: Arc<dyn ObjectStore>, config: IngesterConfig) -> Result<Self> {
        let (wal, records, _report) = Wal::open(&WalConfig {
            dir: config.segments_dir(),
            segment_max_bytes: config.wal_segment_bytes,
        })?;
        let queue = Arc::new(BlockQueue::open(&config.queue_dir())?);
        let limits = Limits::new(config.limits.clone(), config.tenant_limits.clone());
        let ingester = Self {
            store,
            config,
            limits,
            wal,
            queue,
            state: Mutex::new(State::default()),
            cut_wakeup: Notify::new(),
            upload_wakeup: Notify::new(),
            on_block_written: None,
        };
        let mut replayed = 0;
        for record in records {
            // Records were sanitised before they were logged.
            let request = match ExportTraceServiceRequest::decode(record.request) {
                Ok(request) => request,
                Err(e) => {
                    warn!(error = %e, "skipping an undecodable write-ahead log record");
                    continue;
                }
            };
            let batch = request_to_batch(&request)?;
            replayed += batch.num_rows();
            let over = {
                let mut state = ingester.lock();
                state.tenants.entry(record.tenant).or_default().insert(
                    batch,
                    record.segment,
                    &HashMap::new(),
                    Instant::now(),
                )?;
                state.live_bytes() > ingester.config.max_live_bytes / 2
            };
            // Replay must not need more memory than live traffic: past half
            // the limit, write what is buffered to the local queue.
            if over {
                ingester.cut(true).await?;
            }
        }
        if replayed > 0 {
            info!(spans = replayed, "replayed the write-ahead log");
        }
        ingester.report_memory();
        Ok(ingester)
    }

    /// Calls `hook` after every block committed to the object store.
    pub fn with_block_written_hook(mut self, hook: BlockWrittenHook) -> Self {
        self.on_block_written = Some(hook);
        self
    }

    /// The settings in use.
    pub fn config(&self) -> &IngesterConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update under this lock leaves consistent data, so a panic
        // elsewhere while holding it does not make the state unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Accepts one export for `tenant`. `encoded` is the request's protobuf
    /// encoding when the receiver has it (saves re-encoding for the WAL).
    /// On `Ok` every accepted span is fsynced in the WAL and readable through
    /// [`live_trace`](Self::live_trace).
    pub async fn push(
        &self,
        tenant: &TenantId,
        request: ExportTraceServiceRequest,
        encoded: Option<Bytes>,
    ) -> Result<PushOutcome> {
        let spans = count_spans(&request);
        let result = self.push_inner(tenant, request, encoded).await;
        match &result {
            Ok(outcome) => {
                metrics::spans_received(tenant, outcome.accepted);
            }
            Err(e) => metrics::spans_rejected(tenant, spans, e.reason()),
        }
        result
    }

    async fn push_inner(
        &self,
        tenant: &TenantId,
        mut request: ExportTraceServiceRequest,
        encoded: Option<Bytes>,
    ) -> Result<PushOutcome> {
        let size = encoded
            .as_ref()
            .map_or_else(|| request.encoded_len(), Bytes::len) as u64;
        let mut usage = {
            let state = self.lock();
            if state.shutting_down {
                return Err(Error::ShuttingDown);
            }
            let live_bytes = state.live_bytes();
            if live_bytes > self.config.max_live_bytes {
                return Err(Error::Overloaded {
                    live_bytes,
                    limit: self.config.max_live_bytes,
                });
            }
            usage_of(state.tenants.get(tenant), &request)
        };
        let used = self.wal.size_bytes() + self.queue.bytes();
        if used > self.config.wal_max_bytes {
            return Err(Error::DiskFull {
                used,
                limit: self.config.wal_max_bytes,
            });
        }
        self.limits
            .admit(tenant, size)
            .map_err(|retry_after| Error::RateLimited {
                tenant: tenant.to_string(),
                retry_after,
            })?;

        // Sanitising and conversion are CPU work: off the async runtime.
        let limits = self.limits.of(tenant).clone();
        let before = usage.clone();
        let (report, batch, wal_bytes, usage) = tokio::task::spawn_blocking(move || {
            let report = sanitize(&mut request, &limits, &mut usage);
            if report.accepted == 0 {
                return Ok::<_, Error>((report, None, Bytes::new(), usage));
            }
            let batch = request_to_batch(&request)?;
            let wal_bytes = match encoded {
                Some(bytes) if !report.changed() => bytes,
                _ => Bytes::from(request.encode_to_vec()),
            };
            Ok((report, Some(batch), wal_bytes, usage))
        })
        .await
        .map_err(strata_common::Error::from)??;
        self.record_sanitizing(tenant, &report);

        let Some(batch) = batch else {
            return if report.rejected_spans() > 0 {
                Err(Error::InvalidRequest(report.message()))
            } else {
                Ok(PushOutcome::default())
            };
        };
        let added_otlp: HashMap<[u8; 16], u64> = usage
            .iter()
            .map(|(id, (_, bytes))| (*id, bytes - before.get(id).map_or(0, |(_, b)| *b)))
            .collect();

        let guard = self.wal.append(tenant, &wal_bytes).await?;
        {
            let mut state = self.lock();
            state.tenants.entry(tenant.clone()).or_default().insert(
                batch,
                guard.segment(),
                &added_otlp,
                Instant::now(),
            )?;
        }
        drop(guard);
        self.report_memory();
        Ok(PushOutcome {
            accepted: report.accepted,
            rejected: report.rejected_spans(),
            message: report.message(),
        })
    }

    fn record_sanitizing(&self, tenant: &TenantId, report: &SanitizeReport) {
        for (reason, count) in &report.rejected {
            metrics::spans_rejected(tenant, *count, reason.label());
        }
        if report.truncated_values > 0 {
            metrics::attribute_values_truncated(tenant, report.truncated_values);
        }
    }

    /// Runs the cut loop until `cancel` fires.
    pub async fn run_cut_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.flush_check_interval) => {}
                () = self.cut_wakeup.notified() => {}
            }
            if let Err(e) = self.cut(false).await {
                warn!(error = %e, "cutting blocks failed; retrying");
            }
        }
    }

    /// Completes idle or old traces and cuts due ready sets into blocks in
    /// the local queue; with `force`, everything live. Returns blocks queued.
    pub async fn cut(&self, force: bool) -> Result<usize> {
        let now = Instant::now();
        let jobs = {
            let mut state = self.lock();
            let State {
                tenants,
                cutting,
                next_cut,
                ..
            } = &mut *state;
            for (tenant, live) in tenants.iter_mut() {
                live.complete(
                    now,
                    self.config.trace_idle_period,
                    self.config.trace_max_live,
                    force,
                );
                // A backlog of ready traces becomes as many blocks of
                // `block_max_bytes` as it takes.
                while (force
                    || live.cut_due(now, self.config.block_max_bytes, self.config.block_max_age))
                    && let Some(Cut {
                        batch,
                        min_wal_segment,
                    }) = live.cut(self.config.block_max_bytes)?
                {
                    *next_cut += 1;
                    cutting.push(Cutting {
                        id: *next_cut,
                        block_id: BlockId::new_v7(),
                        tenant: tenant.clone(),
                        batch,
                        min_wal_segment,
                        in_progress: false,
                    });
                }
            }
            tenants.retain(|_, live| !live.is_empty());
            cutting
                .iter_mut()
                .filter(|c| !c.in_progress)
                .map(|c| {
                    c.in_progress = true;
                    (c.id, c.block_id, c.tenant.clone(), c.batch.clone())
                })
                .collect::<Vec<_>>()
        };

        let mut queued = 0;
        let mut first_error = None;
        for (id, block_id, tenant, batch) in jobs {
            let options = self.config.block.clone();
            let result = self
                .queue_block(tenant.clone(), block_id, batch, options)
                .await;
            let mut state = self.lock();
            match result {
                Ok(meta) => {
                    state.cutting.retain(|c| c.id != id);
                    queued += 1;
                    info!(%tenant, block = %meta.block_id, spans = meta.span_count, traces = meta.trace_count, "block queued for upload");
                }
                Err(e) => {
                    if let Some(c) = state.cutting.iter_mut().find(|c| c.id == id) {
                        c.in_progress = false;
                    }
                    warn!(%tenant, error = %e, "writing a block to the local queue failed; spans stay in memory and in the WAL");
                    first_error.get_or_insert(e);
                }
            }
        }
        if queued > 0 {
            self.trim_wal().await?;
            self.upload_wakeup.notify_one();
        }
        self.report_memory();
        match first_error {
            Some(e) => Err(e),
            None => Ok(queued),
        }
    }

    /// Deletes WAL segments no longer needed: everything in them is in the
    /// local queue (fsynced) or further along.
    async fn trim_wal(&self) -> Result<()> {
        if self.lock().min_wal_segment() == u64::MAX {
            // Nothing buffered: let the active segment go too.
            self.wal.rotate().await;
        }
        // Decided under the buffer lock, so no batch can join the buffers
        // between reading what they need and choosing what to delete.
        let doomed = {
            let state = self.lock();
            self.wal.segments_before(state.min_wal_segment())
        };
        self.wal.delete(&doomed)?;
        Ok(())
    }

    async fn queue_block(
        &self,
        tenant: TenantId,
        block_id: BlockId,
        batch: RecordBatch,
        options: BlockWriteOptions,
    ) -> Result<BlockMeta> {
        let encoded = tokio::task::spawn_blocking(move || {
            encode_block(tenant, block_id, 0, &[batch], &options)
        })
        .await
        .map_err(strata_common::Error::from)??;
        // Writing and fsyncing is blocking I/O too.
        let meta = encoded.meta.clone();
        let queue = Arc::clone(&self.queue);
        tokio::task::spawn_blocking(move || queue.add(&encoded))
            .await
            .map_err(strata_common::Error::from)??;
        Ok(meta)
    }

    /// Runs the upload loop until `cancel` fires.
    pub async fn run_upload_loop(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            self.upload(false).await;
            self.prune_uploaded().await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                () = self.upload_wakeup.notified() => {}
            }
        }
    }

    /// Uploads queued blocks whose attempt is due (all with `all`); returns
    /// how many were committed.
    pub async fn upload(&self, all: bool) -> usize {
        let mut uploaded = 0;
        for meta in self.queue.due(Instant::now(), all) {
            match self.upload_one(&meta).await {
                Ok(()) => uploaded += 1,
                Err(e) => {
                    warn!(tenant = %meta.tenant, block = %meta.block_id, error = %e, "uploading a block failed; it stays queued and is retried");
                    metrics::block_write_failed(&meta.tenant);
                    self.queue.failed(&meta);
                }
            }
        }
        uploaded
    }

    async fn upload_one(&self, meta: &BlockMeta) -> Result<()> {
        let queue = Arc::clone(&self.queue);
        let to_load = meta.clone();
        let encoded = tokio::task::spawn_blocking(move || queue.load(&to_load))
            .await
            .map_err(strata_common::Error::from)??;
        let timeout = self.config.upload_timeout;
        match tokio::time::timeout(timeout, upload_block(self.store.as_ref(), &encoded)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(Error::Common(strata_common::Error::corrupt(format!(
                    "upload did not finish within {timeout:?}"
                ))));
            }
        }
        metrics::block_written(&meta.tenant, meta);
        info!(tenant = %meta.tenant, block = %meta.block_id, bytes = meta.data_size_bytes, "block uploaded");
        // Announce first, then retire the local copy (after a linger for
        // polling queriers): no moment where nobody serves the spans.
        if let Some(hook) = &self.on_block_written {
            hook(meta);
        }
        self.queue.uploaded(meta);
        Ok(())
    }

    async fn prune_uploaded(&self) {
        let queue = Arc::clone(&self.queue);
        let linger = self.config.complete_block_timeout;
        match tokio::task::spawn_blocking(move || queue.prune_uploaded(linger)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "removing uploaded blocks from the local queue failed"),
            Err(e) => warn!(error = %e, "removing uploaded blocks from the local queue failed"),
        }
    }

    /// Stops accepting spans, cuts everything live into the local queue and
    /// uploads the queue, retrying until `deadline`. What cannot be uploaded
    /// stays queued on disk and is uploaded at the next start.
    pub async fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport> {
        self.lock().shutting_down = true;
        let started = Instant::now();
        let mut report = ShutdownReport::default();
        let mut delay = Duration::from_millis(100);
        loop {
            let cut = self.cut(true).await;
            report.blocks_uploaded += self.upload(true).await;
            let live_left = {
                let state = self.lock();
                !state.tenants.is_empty() || !state.cutting.is_empty()
            };
            if cut.is_ok() && !live_left && self.queue.pending() == 0 {
                break;
            }
            if started.elapsed() + delay > deadline {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        report.blocks_queued = self.queue.pending();
        // Nothing polls this process's queue any more.
        let queue = Arc::clone(&self.queue);
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || queue.prune_uploaded(Duration::ZERO)).await
        {
            warn!(error = %e, "removing uploaded blocks from the local queue failed");
        }
        if report.blocks_queued > 0 {
            warn!(
                blocks = report.blocks_queued,
                "shutdown deadline reached: blocks stay in the local queue and are uploaded at the next start"
            );
        } else {
            info!("ingester flushed: every acknowledged span is in the object store");
        }
        Ok(report)
    }

    /// Bytes of spans held in memory.
    pub fn live_bytes(&self) -> usize {
        self.lock().live_bytes()
    }

    /// Bytes on disk: WAL plus upload queue.
    pub fn disk_bytes(&self) -> u64 {
        self.wal.size_bytes() + self.queue.bytes()
    }

    /// Blocks waiting for upload.
    pub fn upload_backlog(&self) -> usize {
        self.queue.pending()
    }

    fn report_memory(&self) {
        metrics::live_bytes(self.live_bytes());
    }

    /// The spans of one trace not yet in the object store: live, being cut,
    /// or queued for upload.
    pub async fn live_trace(
        &self,
        tenant: &TenantId,
        trace_id: TraceId,
    ) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        let cutting: Vec<RecordBatch> = {
            let state = self.lock();
            if let Some(batch) = state
                .tenants
                .get(tenant)
                .map(|live| live.trace(&trace_id))
                .transpose()?
                .flatten()
            {
                out.push(batch);
            }
            state
                .cutting
                .iter()
                .filter(|c| &c.tenant == tenant)
                .map(|c| c.batch.clone())
                .collect()
        };
        for batch in cutting {
            if let Some(rows) = rows_of_trace(&batch, &trace_id)? {
                out.push(rows);
            }
        }
        out.extend(self.queue.find_trace(tenant, &trace_id).await?);
        Ok(out)
    }
}

impl Ingester {
    /// Whole live traces of `tenant` that `scan` selects (see
    /// [`LiveTraceSource::scan`]): every row of each, from every stage.
    ///
    /// Rows move one way, live → being cut → local queue → object store,
    /// and a search reads the querier's block list after this, so reading
    /// the stages upstream first finds each row at least once; the stages
    /// below are taken from one snapshot so that none is found twice.
    /// 1. The predicate runs on a copy of the buffer's batches outside its
    ///    lock, so ingest is not held up.
    /// 2. Under the lock: where the selected traces' live rows are, the
    ///    cuts in progress and the queued blocks. A cut whose block is
    ///    already queued is read from the queue only.
    /// 3. Outside it: the staged rows are read and the predicate run on
    ///    them; the traces it selects there have their live rows, if any,
    ///    located in a last short lock (a fragment cut in between is
    ///    missed: it is in none of the stages read).
    pub async fn live_scan(&self, tenant: &TenantId, scan: &LiveScan) -> Result<Vec<RecordBatch>> {
        let live_batches = {
            let state = self.lock();
            state
                .tenants
                .get(tenant)
                .map(LiveTenant::batches)
                .unwrap_or_default()
        };
        let max = scan.max_traces.unwrap_or(usize::MAX);
        let mut wanted: HashSet<TraceId> = HashSet::new();
        for batch in &live_batches {
            if wanted.len() >= max {
                break;
            }
            selected_traces(batch, scan, &mut wanted, max)?;
        }
        drop(live_batches);

        let (live, cutting, queued) = {
            let state = self.lock();
            let live = state
                .tenants
                .get(tenant)
                .map(|t| t.locate(&wanted))
                .unwrap_or_default();
            let queued = self.queue.metas(tenant);
            let queued_ids: HashSet<BlockId> = queued.iter().map(|m| m.block_id).collect();
            let cutting: Vec<RecordBatch> = state
                .cutting
                .iter()
                .filter(|c| &c.tenant == tenant && !queued_ids.contains(&c.block_id))
                .map(|c| c.batch.clone())
                .collect();
            (live, cutting, queued)
        };
        let mut out: Vec<RecordBatch> = live.gather()?.into_iter().collect();

        // Staged rows are in block order: keeping whole selected traces
        // keeps each trace's rows adjacent within a batch.
        let mut staged = cutting;
        staged.extend(self.queue.read(&queued).await?);
        let mut selected = wanted.clone();
        for batch in &staged {
            selected_traces(batch, scan, &mut selected, usize::MAX)?;
        }
        for batch in &staged {
            if let Some(rows) = rows_of_traces(batch, &selected)? {
                out.push(rows);
            }
        }
        let more: Vec<&TraceId> = selected.difference(&wanted).collect();
        if !more.is_empty() {
            let located = {
                let state = self.lock();
                state
                    .tenants
                    .get(tenant)
                    .map(|t| t.locate(more))
                    .unwrap_or_default()
            };
            out.extend(located.gather()?);
        }
        Ok(out)
    }
}

/// Adds to `ids` the traces of `batch` with a row `scan` keeps.
fn selected_traces(
    batch: &RecordBatch,
    scan: &LiveScan,
    ids: &mut HashSet<TraceId>,
    max: usize,
) -> Result<()> {
    let trace_ids = batch
        .column_by_name(columns::TRACE_ID)
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or_else(|| strata_common::Error::corrupt("batch without trace_id"))?;
    let mask = match &scan.predicate {
        Some(predicate) => Some(predicate.evaluate(batch)?),
        None => None,
    };
    for row in 0..batch.num_rows() {
        if ids.len() >= max {
            break;
        }
        if mask
            .as_ref()
            .is_none_or(|m| m.is_valid(row) && m.value(row))
        {
            ids.insert(TraceId::from_slice(trace_ids.value(row))?);
        }
    }
    Ok(())
}

/// The rows of `batch` whose trace is in `ids`.
fn rows_of_traces(batch: &RecordBatch, ids: &HashSet<TraceId>) -> Result<Option<RecordBatch>> {
    if ids.is_empty() {
        return Ok(None);
    }
    let trace_ids = batch
        .column_by_name(columns::TRACE_ID)
        .and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>())
        .ok_or_else(|| strata_common::Error::corrupt("batch without trace_id"))?;
    let mask: arrow::array::BooleanArray = (0..batch.num_rows())
        .map(|row| {
            Some(
                TraceId::from_slice(trace_ids.value(row))
                    .map(|id| ids.contains(&id))
                    .unwrap_or(false),
            )
        })
        .collect();
    if mask.true_count() == 0 {
        return Ok(None);
    }
    filter_record_batch(batch, &mask)
        .map(Some)
        .map_err(|e| strata_common::Error::corrupt(format!("filtering spans: {e}")).into())
}

/// Spans and OTLP bytes already held for the traces in `request`.
fn usage_of(live: Option<&LiveTenant>, request: &ExportTraceServiceRequest) -> TraceUsage {
    let mut usage = TraceUsage::new();
    let Some(live) = live else {
        return usage;
    };
    for span in request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        let Ok(id) = TraceId::from_slice(&span.trace_id) else {
            continue;
        };
        if let Some(held) = live.usage(&id) {
            usage.entry(*id.as_bytes()).or_insert(held);
        }
    }
    usage
}

fn rows_of_trace(batch: &RecordBatch, trace_id: &TraceId) -> Result<Option<RecordBatch>> {
    let ids = batch
        .column_by_name(columns::TRACE_ID)
        .ok_or_else(|| strata_common::Error::corrupt("batch without trace_id"))?;
    let needle = FixedSizeBinaryArray::try_from_iter(std::iter::once(trace_id.as_bytes()))
        .map(Scalar::new)
        .map_err(|e| strata_common::Error::corrupt(format!("trace ID scalar: {e}")))?;
    let mask = eq(ids, &needle)
        .map_err(|e| strata_common::Error::corrupt(format!("comparing trace IDs: {e}")))?;
    if mask.true_count() == 0 {
        return Ok(None);
    }
    filter_record_batch(batch, &mask)
        .map(Some)
        .map_err(|e| strata_common::Error::corrupt(format!("filtering spans: {e}")).into())
}

#[async_trait]
impl LiveTraceSource for Ingester {
    async fn find_trace(
        &self,
        tenant: &TenantId,
        trace_id: TraceId,
    ) -> strata_common::Result<Vec<RecordBatch>> {
        self.live_trace(tenant, trace_id)
            .await
            .map_err(Error::into_common)
    }

    async fn scan(
        &self,
        tenant: &TenantId,
        scan: &LiveScan,
    ) -> strata_common::Result<Vec<RecordBatch>> {
        self.live_scan(tenant, scan)
            .await
            .map_err(Error::into_common)
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
