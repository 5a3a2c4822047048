//! The load generator: sends a workload over OTLP and looks traces up by ID.
//!
//! Generation runs on its own OS thread and hands finished requests to `N`
//! sender tasks over a bounded channel, so encoding never waits on the
//! network and the network never waits on a single generator step. Each
//! sender owns one connection (one HTTP/1.1 keep-alive connection or one
//! HTTP/2 channel for gRPC). Retryable answers (HTTP 429/503 honouring
//! `Retry-After`, gRPC `UNAVAILABLE`/`RESOURCE_EXHAUSTED`, refused
//! connections) are retried with exponential back-off, as the OTel SDKs do.
//!
//! [`run_sink`] is a no-op OTLP receiver: pointing the generator at it
//! measures the generator's own ceiling, so an ingest figure is never the
//! generator's limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use crate::stats::Latencies;
use crate::workload::WorkloadKind;

/// The boxed error the load generator reports.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// How spans are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (`:4317`).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`:4318`, `/v1/traces`).
    Http,
}

/// When a send run stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this many spans (plus the late spans still held, which are
    /// drained at the end).
    Spans(u64),
    /// After this long.
    Duration(Duration),
}

/// A send run.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Base URL: `http://host:4318` for HTTP, `http://host:4317` for gRPC.
    pub endpoint: String,
    /// Transport.
    pub protocol: Protocol,
    /// `X-Scope-OrgID`, when not the default tenant.
    pub tenant: Option<String>,
    /// Concurrent connections (one request in flight each).
    pub connections: usize,
    /// Target spans per second; `None` sends flat out.
    pub rate: Option<f64>,
    /// When to stop.
    pub limit: Limit,
    /// Spans per export request: 512 like an SDK, 8,192 like a collector.
    pub batch: usize,
    /// What to generate.
    pub workload: WorkloadKind,
    /// Workload seed.
    pub seed: u64,
    /// Start time of the first trace, Unix nanoseconds.
    pub start_unix_nano: u64,
    /// Retries of one request before it counts as an error.
    pub max_retries: u32,
}

/// A trace the generator sent: its ID and when its root started, so a later
/// query phase can ask with a time range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentTrace {
    /// The trace ID.
    pub trace_id: [u8; 16],
    /// Root span start, Unix nanoseconds.
    pub start_unix_nano: u64,
}

impl SentTrace {
    /// `<hex id> <start ns>`, the line format of ID files.
    pub fn to_line(&self) -> String {
        format!("{} {}", hex::encode(self.trace_id), self.start_unix_nano)
    }

    /// Parses [`SentTrace::to_line`]'s format.
    pub fn from_line(line: &str) -> Result<Self, Error> {
        let mut parts = line.split_whitespace();
        let id = parts.next().ok_or("empty line in the ID file")?;
        let mut trace_id = [0u8; 16];
        hex::decode_to_slice(id, &mut trace_id)
            .map_err(|e| format!("bad trace ID {id:?} in the ID file: {e}"))?;
        let start_unix_nano = match parts.next() {
            Some(start) => start
                .parse()
                .map_err(|e| format!("bad start time {start:?} in the ID file: {e}"))?,
            None => 0,
        };
        Ok(Self {
            trace_id,
            start_unix_nano,
        })
    }
}

/// What a send run achieved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SendReport {
    /// Spans in acknowledged requests.
    pub spans_acknowledged: u64,
    /// Spans the server reported rejected through OTLP partial success.
    pub spans_rejected: u64,
    /// Export requests acknowledged.
    pub requests_acknowledged: u64,
    /// Export requests that failed for good (non-retryable answer or
    /// retries exhausted).
    pub requests_failed: u64,
    /// Retries after retryable answers.
    pub retries: u64,
    /// Raw OTLP protobuf bytes in acknowledged requests.
    pub bytes_acknowledged: u64,
    /// Wall time from the first request to the last acknowledgement.
    pub elapsed_seconds: f64,
    /// Acknowledged spans per second.
    pub spans_per_second: f64,
    /// Acknowledged raw OTLP bytes per second.
    pub bytes_per_second: f64,
    /// Raw OTLP protobuf bytes per span.
    pub raw_otlp_bytes_per_span: f64,
    /// The first few failure messages, for the operator.
    pub failures: Vec<String>,
    /// Traces whose root span was acknowledged.
    #[serde(skip)]
    pub traces: Vec<SentTrace>,
}

/// One generated export request.
struct Item {
    request: ExportTraceServiceRequest,
    spans: u64,
    bytes: u64,
    roots: Vec<SentTrace>,
}

#[derive(Default)]
struct Tally {
    spans_acknowledged: AtomicU64,
    spans_rejected: AtomicU64,
    requests_acknowledged: AtomicU64,
    requests_failed: AtomicU64,
    retries: AtomicU64,
    bytes_acknowledged: AtomicU64,
}

/// Sends the configured workload and waits for every acknowledgement.
pub async fn send(config: &SendConfig) -> Result<SendReport, Error> {
    if config.batch == 0 || config.connections == 0 {
        return Err("batch and connections must be at least 1".into());
    }
    let (tx, rx) = mpsc::channel::<Item>(config.connections * 2);
    let generator = spawn_generator(config.clone(), tx);
    let rx = Arc::new(Mutex::new(rx));
    let tally = Arc::new(Tally::default());
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..config.connections {
        let sender = Sender::connect(config).await?;
        let (rx, tally, failures) = (Arc::clone(&rx), Arc::clone(&tally), Arc::clone(&failures));
        let max_retries = config.max_retries;
        senders.spawn(async move {
            let mut roots = Vec::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some(item) = next else { break };
                match sender.export(&item, max_retries, &tally).await {
                    Ok(rejected) => {
                        tally
                            .spans_acknowledged
                            .fetch_add(item.spans, Ordering::Relaxed);
                        tally.spans_rejected.fetch_add(rejected, Ordering::Relaxed);
                        tally.requests_acknowledged.fetch_add(1, Ordering::Relaxed);
                        tally
                            .bytes_acknowledged
                            .fetch_add(item.bytes, Ordering::Relaxed);
                        roots.extend(item.roots);
                    }
                    Err(message) => {
                        tally.requests_failed.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut failures) = failures.lock()
                            && failures.len() < 10
                        {
                            failures.push(message);
                        }
                    }
                }
            }
            roots
        });
    }
    let mut traces = Vec::new();
    while let Some(done) = senders.join_next().await {
        traces.extend(done?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    generator
        .join()
        .map_err(|_| "the generator thread panicked")?;
    let spans = tally.spans_acknowledged.load(Ordering::Relaxed);
    let bytes = tally.bytes_acknowledged.load(Ordering::Relaxed);
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    Ok(SendReport {
        spans_acknowledged: spans,
        spans_rejected: tally.spans_rejected.load(Ordering::Relaxed),
        requests_acknowledged: tally.requests_acknowledged.load(Ordering::Relaxed),
        requests_failed: tally.requests_failed.load(Ordering::Relaxed),
        retries: tally.retries.load(Ordering::Relaxed),
        bytes_acknowledged: bytes,
        elapsed_seconds: elapsed,
        spans_per_second: spans as f64 / elapsed.max(f64::EPSILON),
        bytes_per_second: bytes as f64 / elapsed.max(f64::EPSILON),
        raw_otlp_bytes_per_span: bytes as f64 / (spans.max(1)) as f64,
        failures,
        traces,
    })
}

/// Generates requests on an OS thread, paced to `config.rate` if set.
fn spawn_generator(config: SendConfig, tx: mpsc::Sender<Item>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut workload = config
            .workload
            .generator(config.seed, config.start_unix_nano);
        let started = Instant::now();
        let mut generated = 0u64;
        let item = |request: ExportTraceServiceRequest| {
            let mut roots = Vec::new();
            let mut spans = 0u64;
            for span in crate::request_spans(&request) {
                spans += 1;
                if span.parent_span_id.is_empty()
                    && let Ok(trace_id) = <[u8; 16]>::try_from(span.trace_id.as_slice())
                {
                    roots.push(SentTrace {
                        trace_id,
                        start_unix_nano: span.start_time_unix_nano,
                    });
                }
            }
            Item {
                bytes: request.encoded_len() as u64,
                request,
                spans,
                roots,
            }
        };
        loop {
            let batch = match config.limit {
                Limit::Spans(total) if generated >= total => break,
                Limit::Spans(total) => config.batch.min((total - generated) as usize),
                Limit::Duration(d) if started.elapsed() >= d => break,
                Limit::Duration(_) => config.batch,
            };
            if let Some(rate) = config.rate {
                let due = started + Duration::from_secs_f64(generated as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let next = item(workload.request(batch));
            generated += next.spans;
            if tx.blocking_send(next).is_err() {
                return;
            }
        }
        while let Some(request) = workload.drain(config.batch) {
            if tx.blocking_send(item(request)).is_err() {
                return;
            }
        }
    })
}

/// One connection's worth of sending.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
        tenant: Option<String>,
    },
    Grpc {
        client: TraceServiceClient<tonic::transport::Channel>,
        tenant: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    },
}

/// Why one attempt did not get an acknowledgement.
enum Attempt {
    Retry(Option<Duration>, String),
    Fail(String),
}

impl Sender {
    async fn connect(config: &SendConfig) -> Result<Self, Error> {
        let base = config.endpoint.trim_end_matches('/');
        Ok(match config.protocol {
            Protocol::Http => Self::Http {
                // One idle connection per sender: N senders, N connections.
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(60))
                    .build()?,
                url: format!("{base}/v1/traces"),
                tenant: config.tenant.clone(),
            },
            Protocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(base.to_owned())?
                    .timeout(Duration::from_secs(60))
                    .connect_lazy();
                Self::Grpc {
                    client: TraceServiceClient::new(channel)
                        .max_encoding_message_size(usize::MAX)
                        .max_decoding_message_size(usize::MAX),
                    tenant: config.tenant.as_deref().map(str::parse).transpose()?,
                }
            }
        })
    }

    /// Sends `item` until it is acknowledged or retries run out; the number
    /// of spans the server rejected through partial success on success.
    async fn export(&self, item: &Item, max_retries: u32, tally: &Tally) -> Result<u64, String> {
        let body = match self {
            Self::Http { .. } => Bytes::from(item.request.encode_to_vec()),
            Self::Grpc { .. } => Bytes::new(),
        };
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            let outcome = match self {
                Self::Http {
                    client,
                    url,
                    tenant,
                } => Self::export_http(client, url, tenant.as_deref(), body.clone()).await,
                Self::Grpc { client, tenant } => {
                    Self::export_grpc(client.clone(), tenant.as_ref(), item.request.clone()).await
                }
            };
            match outcome {
                Ok(rejected) => return Ok(rejected),
                Err(Attempt::Fail(message)) => return Err(message),
                Err(Attempt::Retry(_, message)) if attempt >= max_retries => {
                    return Err(format!("gave up after {attempt} retries: {message}"));
                }
                Err(Attempt::Retry(after, _)) => {
                    attempt += 1;
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(after.unwrap_or(backoff).min(Duration::from_secs(5))).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn export_http(
        client: &reqwest::Client,
        url: &str,
        tenant: Option<&str>,
        body: Bytes,
    ) -> Result<u64, Attempt> {
        let mut request = client
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .body(body);
        if let Some(tenant) = tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return Err(Attempt::Retry(None, format!("sending: {e}")));
            }
            Err(e) => return Err(Attempt::Fail(format!("sending: {e}"))),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| Attempt::Retry(None, format!("reading the answer: {e}")))?;
        match status.as_u16() {
            200..=299 => Ok(ExportTraceServiceResponse::decode(body)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_spans.max(0) as u64)),
            429 | 502 | 503 | 504 => Err(Attempt::Retry(retry_after, format!("HTTP {status}"))),
            _ => Err(Attempt::Fail(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }

    async fn export_grpc(
        mut client: TraceServiceClient<tonic::transport::Channel>,
        tenant: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
        request: ExportTraceServiceRequest,
    ) -> Result<u64, Attempt> {
        let mut request = tonic::Request::new(request);
        if let Some(tenant) = tenant {
            request
                .metadata_mut()
                .insert("x-scope-orgid", tenant.clone());
        }
        match client.export(request).await {
            Ok(response) => Ok(response
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_spans.max(0) as u64)),
            Err(status) => {
                let message = format!("gRPC {:?}: {}", status.code(), status.message());
                match status.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Aborted => Err(Attempt::Retry(None, message)),
                    _ => Err(Attempt::Fail(message)),
                }
            }
        }
    }
}

/// A trace-by-ID phase.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Tempo API base URL (`http://host:3200`).
    pub endpoint: String,
    /// `X-Scope-OrgID`, when not the default tenant.
    pub tenant: Option<String>,
    /// Lookups of IDs that exist.
    pub lookups: usize,
    /// Lookups of random IDs that do not (the workload's 5%).
    pub absent_lookups: usize,
    /// Ask with `start`/`end` around the trace's start time, as Grafana does
    /// when its "time range for trace-by-ID" option is on.
    pub with_time_range: bool,
    /// Which IDs to pick.
    pub seed: u64,
}

/// Latencies and costs of a trace-by-ID phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryReport {
    /// Lookups of existing traces (HTTP 200 with spans).
    pub found: Latencies,
    /// Lookups of absent IDs (HTTP 404).
    pub absent: Latencies,
    /// Object-store GETs of data and bloom objects per found lookup, from
    /// the server's `/metrics` (`None` when it has no such counter).
    pub store_requests_per_found: Option<f64>,
    /// The same for absent lookups.
    pub store_requests_per_absent: Option<f64>,
}

/// Looks up `config.lookups` traces from `traces` (with replacement), then
/// `config.absent_lookups` random IDs, one at a time.
pub async fn query(config: &QueryConfig, traces: &[SentTrace]) -> Result<QueryReport, Error> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = config.endpoint.trim_end_matches('/');
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed);
    let mut report = QueryReport::default();
    if !traces.is_empty() && config.lookups > 0 {
        let before = store_reads(&client, base).await;
        let mut latencies = Vec::with_capacity(config.lookups);
        for _ in 0..config.lookups {
            let trace = traces[rng.random_range(0..traces.len())];
            let took = lookup(&client, base, config, &trace, 200).await?;
            latencies.push(took);
        }
        report.found = Latencies::from_durations(latencies);
        report.store_requests_per_found =
            per_lookup(before, store_reads(&client, base).await, config.lookups);
    }
    if config.absent_lookups > 0 {
        let before = store_reads(&client, base).await;
        let mut latencies = Vec::with_capacity(config.absent_lookups);
        for _ in 0..config.absent_lookups {
            let trace = SentTrace {
                trace_id: rng.random(),
                start_unix_nano: traces.first().map_or(0, |t| t.start_unix_nano),
            };
            latencies.push(lookup(&client, base, config, &trace, 404).await?);
        }
        report.absent = Latencies::from_durations(latencies);
        report.store_requests_per_absent = per_lookup(
            before,
            store_reads(&client, base).await,
            config.absent_lookups,
        );
    }
    Ok(report)
}

/// Requests per lookup from two readings of a counter; a counter absent
/// before the phase (nothing counted yet since start) read as zero.
fn per_lookup(before: Option<f64>, after: Option<f64>, lookups: usize) -> Option<f64> {
    Some((after? - before.unwrap_or(0.0)) / lookups.max(1) as f64)
}

async fn lookup(
    client: &reqwest::Client,
    base: &str,
    config: &QueryConfig,
    trace: &SentTrace,
    expect: u16,
) -> Result<Duration, Error> {
    let id = hex::encode(trace.trace_id);
    let mut url = format!("{base}/api/traces/{id}");
    if config.with_time_range {
        // A window around the root's start, wide enough for late spans.
        let start = trace.start_unix_nano / 1_000_000_000;
        url = format!(
            "{url}?start={}&end={}",
            start.saturating_sub(60),
            start + 900
        );
    }
    let mut request = client.get(&url).header("Accept", "application/protobuf");
    if let Some(tenant) = &config.tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    let took = started.elapsed();
    if status.as_u16() != expect {
        return Err(format!("lookup of {id} answered {status}, expected {expect}").into());
    }
    if expect == 200 && body.is_empty() {
        return Err(format!("lookup of {id} answered an empty trace").into());
    }
    Ok(took)
}

/// The server's count of object-store GETs of data and bloom objects.
async fn store_reads(client: &reqwest::Client, base: &str) -> Option<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    sum_metric(&text, "strata_object_store_requests_total", |labels| {
        labels.contains(r#"operation="get""#)
            && (labels.contains(r#"object="data""#) || labels.contains(r#"object="bloom""#))
    })
}

/// Sums the samples of a Prometheus text-format metric whose labels pass
/// `keep`; `None` when the metric is absent.
pub fn sum_metric(text: &str, name: &str, keep: impl Fn(&str) -> bool) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if !keep(labels) {
            continue;
        }
        if let Ok(value) = value.trim().parse::<f64>() {
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// What a [`run_sink`] received.
#[derive(Debug, Default)]
pub struct SinkCounts {
    /// Export requests.
    pub requests: AtomicU64,
    /// Body bytes (HTTP) or encoded message bytes (gRPC).
    pub bytes: AtomicU64,
}

#[derive(Debug, Clone)]
struct GrpcSink(Arc<SinkCounts>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.requests.fetch_add(1, Ordering::Relaxed);
        self.0
            .bytes
            .fetch_add(request.get_ref().encoded_len() as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A no-op OTLP receiver on bound listeners for gRPC and HTTP that
/// acknowledges everything, until `cancel` fires.
pub async fn run_sink(
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    counts: Arc<SinkCounts>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let grpc_server = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(GrpcSink(Arc::clone(&counts)))
                .max_decoding_message_size(usize::MAX),
        )
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener),
            cancel.clone().cancelled_owned(),
        );
    let http_counts = Arc::clone(&counts);
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: Bytes| {
                let counts = Arc::clone(&http_counts);
                async move {
                    counts.requests.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    (
                        [("Content-Type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let http_server =
        axum::serve(http_listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
    let (grpc_result, http_result) = tokio::join!(grpc_server, http_server);
    grpc_result?;
    http_result?;
    Ok(())
}
