//! `strata-e2e`: the end-to-end benchmark runner.
//!
//! Builds nothing: it runs an existing release `strata` (build it first with
//! `cargo build --release -p strata -p strata-benches --bins`). Each run
//! starts Strata on a fresh data directory with the WAL on, sends a fixed
//! volume of TS-1 with the in-process load generator, and measures:
//!
//! - ingest: acknowledged spans/s, Strata's CPU seconds per million spans
//!   (ingest plus the final flush, from `/proc/<pid>/stat`) and peak RSS;
//! - storage: bytes per span on the object store against raw OTLP;
//! - freshness: acknowledgement → readable by ID;
//! - trace-by-ID p50/p99 for recent IDs (still live), IDs in blocks (after a
//!   restart) and absent IDs, with and without a time range, with the
//!   object-store requests each made;
//! - the same lookups over ~1,000 small blocks (a second ingest with a small
//!   `--block-max-bytes`), the target's "1,000 blocks" case;
//! - compaction of those blocks with `strata compact --once`: input MB/s per
//!   CPU second, write amplification, peak RSS, blocks and bytes per span
//!   before and after, and the same lookups again afterwards;
//! - the TraceQL search mix (limit 20): latency p50/p99 and spans evaluated
//!   per second per vCPU, on the first store after a restart (the blocks as
//!   cut) and on the many-blocks store after compaction.
//!
//! Prints JSON (`--json-out`) and appends a Markdown table with the machine,
//! commit and command to `--markdown` (e.g. `docs/benchmarks.md`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use rand::Rng;
use serde::Serialize;
use strata_benches::WorkloadKind;
use strata_benches::loadgen::{
    self, Error, Limit, Protocol, QueryConfig, QueryReport, SendConfig, SendReport, SentTrace,
    SinkCounts,
};
use strata_benches::stats::{self, Latencies, median};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "strata-e2e",
    about = "End-to-end benchmark: a release strata fed TS-1 by the load generator"
)]
struct Args {
    /// The `strata` binary [default: $CARGO_TARGET_DIR/release/strata, else
    /// target/release/strata].
    #[arg(long)]
    strata: Option<PathBuf>,
    /// Spans per run (2M by default; e.g. 10M for the larger volume).
    #[arg(long, default_value_t = 2_000_000)]
    spans: u64,
    /// Runs; figures are the median over runs.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// OTLP transport.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Spans per export request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Workload.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Ts1)]
    workload: WorkloadKind,
    /// Trace-by-ID lookups per phase (plus 5% absent IDs).
    #[arg(long, default_value_t = 1_000)]
    lookups: usize,
    /// Ack → readable probes.
    #[arg(long, default_value_t = 50)]
    freshness_probes: usize,
    /// `--block-max-bytes` of the many-blocks phase; 4MiB cuts 2M TS-1
    /// spans into about 1,000 blocks. 0 skips the phase.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    many_blocks_max_bytes: u64,
    /// Skip measuring the generator's own ceiling against a no-op sink.
    #[arg(long)]
    skip_ceiling: bool,
    /// Skip compacting the many-blocks store.
    #[arg(long)]
    skip_compaction: bool,
    /// Times each search of the TraceQL mix runs per phase (0 skips it).
    #[arg(long, default_value_t = 20)]
    search_repetitions: usize,
    /// First of the four consecutive ports Strata listens on (HTTP, OTLP
    /// gRPC, OTLP HTTP, Zipkin).
    #[arg(long, default_value_t = 13200)]
    base_port: u16,
    /// Where run directories go [default: a temporary directory].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Write the full results as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Append a Markdown summary to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Lookups in one setting, without and with a time range.
#[derive(Debug, Clone, Default, Serialize)]
struct LookupPair {
    no_range: QueryReport,
    time_range: QueryReport,
}

/// One query of the TraceQL search mix, repeated.
#[derive(Debug, Clone, Default, Serialize)]
struct SearchReport {
    /// The query.
    query: String,
    /// Latency over the repetitions.
    latency: Latencies,
    /// Traces returned (last repetition).
    traces: usize,
    /// Spans the engine evaluated exactly (after pruning and pushdown).
    inspected_spans: u64,
    /// Sources completed of those planned (less when the limit stopped it).
    completed_jobs: u64,
    /// Sources planned.
    total_jobs: u64,
    /// Spans of the store covered per second of median latency per vCPU,
    /// when the search covered every source (a full scan's rate).
    store_spans_per_second_per_vcpu: Option<f64>,
}

/// The TraceQL search mix of `reference/workload.md` on TS-1's data:
/// Tempo's four reference queries first (in TS-1 `service-03` is an RPC
/// service, so the first matches nothing and scans typed columns whole),
/// then the rest of the mix.
const SEARCH_MIX: &[&str] = &[
    r#"{ resource.service.name = "service-03" && span.http.response.status_code >= 500 }"#,
    "{ status = error }",
    r#"{ resource.service.name = "no-such-service" }"#,
    r#"{ span.app.feature = "feature-7" && duration > 100ms }"#,
    r#"{ resource.service.name = "service-01" && span.http.response.status_code >= 500 }"#,
    r#"{ name = "GET /api/v1/service-00/op0" }"#,
    "{ duration > 1s }",
    r#"{ span.user.id = "user-5x" }"#,
    "{ kind = server } >> { status = error }",
    "{ status = error } with (most_recent=true)",
];

#[derive(Debug, Clone, Default, Serialize)]
struct RunResult {
    ingest: SendReport,
    server_cpu_seconds: f64,
    cpu_seconds_per_million_spans: f64,
    peak_rss_bytes: u64,
    spans_in_blocks: u64,
    blocks: usize,
    object_store_bytes: u64,
    at_rest_bytes_per_span: f64,
    data_parquet_bytes_per_span: f64,
    raw_over_at_rest: f64,
    freshness: Latencies,
    lookup_recent: LookupPair,
    lookup_blocks: LookupPair,
    search_blocks: Vec<SearchReport>,
    many_blocks: Option<ManyBlocks>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct ManyBlocks {
    block_max_bytes: u64,
    blocks: usize,
    lookup: LookupPair,
    compaction: Option<Compaction>,
}

/// One `strata compact --once` over the many-blocks store.
#[derive(Debug, Clone, Default, Serialize)]
struct Compaction {
    /// The command's own report (`--json`).
    report: serde_json::Value,
    search_after: Vec<SearchReport>,
    cpu_seconds: f64,
    wall_seconds: f64,
    peak_rss_bytes: u64,
    /// `data.parquet` bytes read per CPU second, in MB (10^6).
    input_mb_per_cpu_second: f64,
    /// Bytes written by every job ÷ bytes of the blocks first compacted.
    write_amplification: f64,
    blocks_before: usize,
    blocks_after: usize,
    spans_before: u64,
    spans_after: u64,
    bytes_per_span_before: f64,
    bytes_per_span_after: f64,
    lookup_after: LookupPair,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    commit: String,
    command: String,
    cpu_model: String,
    vcpus: usize,
    spans_per_run: u64,
    protocol: Protocol,
    connections: usize,
    batch: usize,
    workload: WorkloadKind,
    generator_ceiling: Option<SendReport>,
    runs: Vec<RunResult>,
}

struct Ports {
    http: u16,
    grpc: u16,
    otlp_http: u16,
    zipkin: u16,
}

impl Ports {
    fn from_base(base: u16) -> Self {
        Self {
            http: base,
            grpc: base + 1,
            otlp_http: base + 2,
            zipkin: base + 3,
        }
    }

    fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn otlp_url(&self, protocol: Protocol) -> String {
        match protocol {
            Protocol::Http => format!("http://127.0.0.1:{}", self.otlp_http),
            Protocol::Grpc => format!("http://127.0.0.1:{}", self.grpc),
        }
    }
}

/// A running `strata` child process.
struct Server {
    child: Child,
}

impl Server {
    async fn start(
        binary: &Path,
        dir: &Path,
        ports: &Ports,
        extra: &[String],
    ) -> Result<Self, Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("strata.log"))
            .map_err(|e| format!("opening the log in {}: {e}", dir.display()))?;
        let child = Command::new(binary)
            .arg("--storage")
            .arg(dir.join("data"))
            .arg("--wal-dir")
            .arg(dir.join("wal"))
            .args(["--http-addr", &format!("127.0.0.1:{}", ports.http)])
            .args(["--otlp-grpc-addr", &format!("127.0.0.1:{}", ports.grpc)])
            .args([
                "--otlp-http-addr",
                &format!("127.0.0.1:{}", ports.otlp_http),
            ])
            .args(["--zipkin-addr", &format!("127.0.0.1:{}", ports.zipkin)])
            // Compaction is measured on its own (`strata compact --once`);
            // a background pass would compete with the phase being measured.
            .args(["--compaction-enabled", "false"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut server = Self { child };
        let client = reqwest::Client::new();
        let ready = format!("{}/ready", ports.query_url());
        for _ in 0..600 {
            if let Ok(r) = client.get(&ready).send().await
                && r.status().is_success()
            {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                return Err(format!(
                    "strata exited during start ({status}); see {}",
                    dir.join("strata.log").display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.child.kill().ok();
        Err("strata did not become ready within 60 s".into())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for a clean exit; returns the CPU time it had used
    /// when last seen and its peak RSS.
    async fn stop(mut self) -> Result<(Duration, u64), Error> {
        let pid = self.pid();
        let (mut cpu, mut rss) = (
            stats::process_cpu(pid).unwrap_or_default(),
            stats::peak_rss_bytes(pid).unwrap_or(0),
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!("strata exited with {status}").into());
                }
                return Ok((cpu, rss));
            }
            if Instant::now() > deadline {
                self.child.kill().ok();
                return Err("strata did not stop within 300 s".into());
            }
            // Zombie-safe: /proc stays readable until we reap the child.
            cpu = stats::process_cpu(pid).unwrap_or(cpu);
            rss = stats::peak_rss_bytes(pid).unwrap_or(rss);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(error) = run(args).await {
        eprintln!("strata-e2e: {error}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let binary = args.strata.clone().unwrap_or_else(default_binary);
    if !binary.is_file() {
        return Err(format!(
            "no strata binary at {}; build it with `cargo build --release -p strata -p strata-benches --bins`",
            binary.display()
        )
        .into());
    }
    let (cpu_model, vcpus) = stats::machine();
    let scratch;
    let work_dir = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            scratch = tempfile::TempDir::new()?;
            scratch.path().to_path_buf()
        }
    };
    eprintln!(
        "strata-e2e: {} runs of {} spans with {}; {cpu_model}, {vcpus} vCPUs",
        args.runs,
        args.spans,
        binary.display()
    );
    let generator_ceiling = if args.skip_ceiling {
        None
    } else {
        let ceiling = measure_ceiling(&args).await?;
        eprintln!(
            "generator ceiling (no-op sink): {:.0} spans/s",
            ceiling.spans_per_second
        );
        Some(ceiling)
    };
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let dir = work_dir.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let result = one_run(&args, &binary, &dir, run as u64).await?;
        eprintln!(
            "run {run}: {:.0} spans/s, {:.1} CPU-s/M spans, peak RSS {} MiB, {:.1} B/span at rest \
             ({:.1}x), freshness p50 {:.1} ms, by ID recent p50 {:.1} ms, blocks p50 {:.1} ms{}",
            result.ingest.spans_per_second,
            result.cpu_seconds_per_million_spans,
            result.peak_rss_bytes / (1024 * 1024),
            result.at_rest_bytes_per_span,
            result.raw_over_at_rest,
            result.freshness.p50_ms,
            result.lookup_recent.no_range.found.p50_ms,
            result.lookup_blocks.no_range.found.p50_ms,
            result
                .many_blocks
                .as_ref()
                .map_or(String::new(), |m| format!(
                    ", {} blocks p50 {:.1} ms",
                    m.blocks, m.lookup.no_range.found.p50_ms
                )),
        );
        std::fs::remove_dir_all(&dir).ok();
        runs.push(result);
    }
    let report = Report {
        date: today(),
        commit: commit(),
        command: std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
        cpu_model,
        vcpus,
        spans_per_run: args.spans,
        protocol: args.protocol,
        connections: args.connections,
        batch: args.batch,
        workload: args.workload,
        generator_ceiling,
        runs,
    };
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json_out {
        Some(path) => {
            std::fs::write(path, &json).map_err(|e| format!("writing {}: {e}", path.display()))?
        }
        None => println!("{json}"),
    }
    let markdown = markdown(&report);
    eprintln!("{markdown}");
    if let Some(path) = &args.markdown {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
        write!(file, "\n{markdown}")?;
    }
    Ok(())
}

fn default_binary() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("release").join("strata")
}

/// The generator's throughput against a no-op sink with the same settings.
async fn measure_ceiling(args: &Args) -> Result<SendReport, Error> {
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = match args.protocol {
        Protocol::Grpc => format!("http://{}", grpc.local_addr()?),
        Protocol::Http => format!("http://{}", http.local_addr()?),
    };
    let cancel = CancellationToken::new();
    let sink = tokio::spawn(loadgen::run_sink(
        grpc,
        http,
        Arc::new(SinkCounts::default()),
        cancel.clone(),
    ));
    let report = loadgen::send(&send_config(args, endpoint, args.spans.min(1_000_000), 1)).await;
    cancel.cancel();
    sink.await??;
    report
}

fn send_config(args: &Args, endpoint: String, spans: u64, seed: u64) -> SendConfig {
    SendConfig {
        endpoint,
        protocol: args.protocol,
        tenant: None,
        connections: args.connections,
        rate: None,
        limit: Limit::Spans(spans),
        batch: args.batch,
        workload: args.workload,
        seed,
        start_unix_nano: now_unix_nano(),
        max_retries: 1_000,
    }
}

async fn one_run(args: &Args, binary: &Path, dir: &Path, seed: u64) -> Result<RunResult, Error> {
    let ports = Ports::from_base(args.base_port);
    let mut result = RunResult::default();

    // Ingest, with the WAL on (it always is).
    let server = Server::start(binary, dir, &ports, &[]).await?;
    let cpu_before = stats::process_cpu(server.pid()).unwrap_or_default();
    let ingest = loadgen::send(&send_config(
        args,
        ports.otlp_url(args.protocol),
        args.spans,
        seed,
    ))
    .await?;
    if ingest.requests_failed > 0 {
        return Err(format!("ingest failed: {:?}", ingest.failures).into());
    }
    let cpu_ingested = stats::process_cpu(server.pid()).unwrap_or_default();
    result.freshness = freshness(&ports, args.freshness_probes).await?;
    let traces = ingest.traces.clone();
    // Lookups while the newest spans are still in memory.
    result.lookup_recent = lookups(args, &ports, &traces, seed).await?;
    let cpu_after_queries = stats::process_cpu(server.pid()).unwrap_or_default();
    let (cpu_at_exit, peak_rss) = server.stop().await?;
    // Ingest CPU: sending plus the final flush, without probes and queries.
    let cpu =
        cpu_ingested.saturating_sub(cpu_before) + cpu_at_exit.saturating_sub(cpu_after_queries);
    result.server_cpu_seconds = cpu.as_secs_f64();
    result.peak_rss_bytes = peak_rss;

    let (spans_in_blocks, blocks, data_bytes) = block_stats(&dir.join("data"))?;
    let store_bytes = dir_size(&dir.join("data"))?;
    result.spans_in_blocks = spans_in_blocks;
    result.blocks = blocks;
    result.object_store_bytes = store_bytes;
    result.cpu_seconds_per_million_spans =
        cpu.as_secs_f64() / (ingest.spans_acknowledged as f64 / 1e6);
    result.at_rest_bytes_per_span = store_bytes as f64 / spans_in_blocks.max(1) as f64;
    result.data_parquet_bytes_per_span = data_bytes as f64 / spans_in_blocks.max(1) as f64;
    result.raw_over_at_rest = ingest.raw_otlp_bytes_per_span / result.at_rest_bytes_per_span;
    result.ingest = ingest;

    // Lookups from blocks, after a restart (cold caches), then searches.
    let server = Server::start(binary, dir, &ports, &[]).await?;
    result.lookup_blocks = lookups(args, &ports, &traces, seed).await?;
    result.search_blocks = search_mix(args, &ports, spans_in_blocks).await?;
    server.stop().await?;

    if args.many_blocks_max_bytes > 0 {
        let many_dir = dir.join("many-blocks");
        std::fs::create_dir_all(&many_dir)?;
        let extra = vec![
            "--block-max-bytes".to_owned(),
            args.many_blocks_max_bytes.to_string(),
        ];
        let server = Server::start(binary, &many_dir, &ports, &extra).await?;
        let ingest = loadgen::send(&send_config(
            args,
            ports.otlp_url(args.protocol),
            args.spans,
            seed,
        ))
        .await?;
        server.stop().await?;
        let (_, blocks, _) = block_stats(&many_dir.join("data"))?;
        let server = Server::start(binary, &many_dir, &ports, &extra).await?;
        let lookup = lookups(args, &ports, &ingest.traces, seed).await?;
        server.stop().await?;
        let compaction = if args.skip_compaction {
            None
        } else {
            Some(compact(args, binary, &many_dir, &ports, &ingest.traces, seed).await?)
        };
        result.many_blocks = Some(ManyBlocks {
            block_max_bytes: args.many_blocks_max_bytes,
            blocks,
            lookup,
            compaction,
        });
    }
    Ok(result)
}

/// Runs `strata compact --once` on the many-blocks store, then a second
/// pass that deletes the compacted inputs (a grace period of milliseconds,
/// as if the querier polls had passed), and measures the lookups again.
async fn compact(
    args: &Args,
    binary: &Path,
    dir: &Path,
    ports: &Ports,
    traces: &[SentTrace],
    seed: u64,
) -> Result<Compaction, Error> {
    let data = dir.join("data");
    let (spans_before, blocks_before, _) = block_stats(&data)?;
    let bytes_before = dir_size(&data)?;
    let run_pass = |grace: &'static str| {
        let cpu_before = stats::reaped_children_cpu();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .args(["compact", "--once", "--json", "--storage"])
            .arg(&data)
            .args(["--blocklist-poll", "1ms", "--deletion-delay", grace])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {} compact: {e}", binary.display()))?;
        let pid = child.id();
        let mut rss = 0;
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut out) = stdout {
                use std::io::Read;
                out.read_to_string(&mut text).ok();
            }
            text
        });
        let status = loop {
            rss = stats::peak_rss_bytes(pid).unwrap_or(rss);
            if let Some(status) = child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = started.elapsed();
        let cpu = stats::reaped_children_cpu().saturating_sub(cpu_before);
        let text = reader.join().map_err(|_| "reading compact output")?;
        if !status.success() {
            return Err::<_, Error>(format!("strata compact exited with {status}").into());
        }
        let report: serde_json::Value = serde_json::from_str(&text)?;
        Ok((report, cpu, wall, rss))
    };
    let (report, cpu, wall, rss) = run_pass("1h")?;
    // Everything marked is past a 2 ms grace period by now.
    run_pass("2ms")?;
    let (spans_after, blocks_after, _) = block_stats(&data)?;
    let bytes_after = dir_size(&data)?;
    let bytes_read = report["bytes_read"].as_f64().unwrap_or(0.0);
    let bytes_written = report["bytes_written"].as_f64().unwrap_or(0.0);
    let server = Server::start(binary, dir, ports, &[]).await?;
    let lookup_after = lookups(args, ports, traces, seed).await?;
    let search_after = search_mix(args, ports, spans_after).await?;
    server.stop().await?;
    Ok(Compaction {
        cpu_seconds: cpu.as_secs_f64(),
        wall_seconds: wall.as_secs_f64(),
        peak_rss_bytes: rss,
        input_mb_per_cpu_second: bytes_read / 1e6 / cpu.as_secs_f64().max(1e-9),
        write_amplification: bytes_written / bytes_before.max(1) as f64,
        blocks_before,
        blocks_after,
        spans_before,
        spans_after,
        bytes_per_span_before: bytes_before as f64 / spans_before.max(1) as f64,
        bytes_per_span_after: bytes_after as f64 / spans_after.max(1) as f64,
        report,
        lookup_after,
        search_after,
    })
}

/// Runs the TraceQL search mix `--search-repetitions` times each.
async fn search_mix(
    args: &Args,
    ports: &Ports,
    store_spans: u64,
) -> Result<Vec<SearchReport>, Error> {
    if args.search_repetitions == 0 {
        return Ok(Vec::new());
    }
    let client = reqwest::Client::new();
    let vcpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut reports = Vec::new();
    for query in SEARCH_MIX {
        let mut samples = Vec::with_capacity(args.search_repetitions);
        let mut last = serde_json::Value::Null;
        // One warm-up: block metadata is cached after the first search.
        for i in 0..=args.search_repetitions {
            let started = Instant::now();
            let response = client
                .get(format!("{}/api/search", ports.query_url()))
                .query(&[("q", *query), ("limit", "20")])
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(format!("search {query}: {}", response.text().await?).into());
            }
            last = serde_json::from_slice(&response.bytes().await?)?;
            if i > 0 {
                samples.push(started.elapsed());
            }
        }
        let latency = Latencies::from_durations(samples);
        let metric = |name: &str| {
            let v = &last["metrics"][name];
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0)
        };
        let (completed_jobs, total_jobs) = (metric("completedJobs"), metric("totalJobs"));
        reports.push(SearchReport {
            query: (*query).to_owned(),
            traces: last["traces"].as_array().map_or(0, Vec::len),
            inspected_spans: metric("inspectedSpans"),
            completed_jobs,
            total_jobs,
            store_spans_per_second_per_vcpu: (completed_jobs == total_jobs && latency.p50_ms > 0.0)
                .then(|| store_spans as f64 / (latency.p50_ms / 1e3) / vcpus),
            latency,
        });
    }
    Ok(reports)
}

async fn lookups(
    args: &Args,
    ports: &Ports,
    traces: &[SentTrace],
    seed: u64,
) -> Result<LookupPair, Error> {
    let mut config = QueryConfig {
        endpoint: ports.query_url(),
        tenant: None,
        lookups: args.lookups,
        absent_lookups: args.lookups / 20,
        with_time_range: false,
        seed,
    };
    let no_range = loadgen::query(&config, traces).await?;
    config.with_time_range = true;
    config.seed = seed + 1_000;
    let time_range = loadgen::query(&config, traces).await?;
    Ok(LookupPair {
        no_range,
        time_range,
    })
}

/// Acknowledgement → readable by ID: send one small trace, then poll the
/// Tempo API until it answers with it.
async fn freshness(ports: &Ports, probes: usize) -> Result<Latencies, Error> {
    let client = reqwest::Client::new();
    let mut samples = Vec::with_capacity(probes);
    for _ in 0..probes {
        let trace_id: [u8; 16] = rand::rng().random();
        let now = now_unix_nano();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: trace_id.to_vec(),
                        span_id: rand::rng().random::<[u8; 8]>().to_vec(),
                        name: "freshness probe".into(),
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1_000_000,
                        ..Span::default()
                    }],
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        let response = client
            .post(format!("http://127.0.0.1:{}/v1/traces", ports.otlp_http))
            .header("Content-Type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("freshness probe refused: {}", response.status()).into());
        }
        let acknowledged = Instant::now();
        let url = format!("{}/api/traces/{}", ports.query_url(), hex::encode(trace_id));
        loop {
            let status = client.get(&url).send().await?.status();
            if status.is_success() {
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(60) {
                return Err("a probe span was not readable within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(acknowledged.elapsed());
    }
    Ok(Latencies::from_durations(samples))
}

/// Spans, blocks and `data.parquet` bytes from the blocks' `meta.json`.
fn block_stats(root: &Path) -> Result<(u64, usize, u64), Error> {
    let mut spans = 0;
    let mut blocks = 0;
    let mut data = 0;
    for path in files(root)? {
        if path.file_name().is_some_and(|n| n == "meta.json") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let meta: serde_json::Value = serde_json::from_str(&text)?;
            spans += meta["span_count"].as_u64().unwrap_or(0);
            data += meta["data_size_bytes"].as_u64().unwrap_or(0);
            blocks += 1;
        }
    }
    Ok((spans, blocks, data))
}

fn dir_size(root: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for path in files(root)? {
        total += std::fs::metadata(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?
            .len();
    }
    Ok(total)
}

fn files(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("listing {}: {e}", dir.display()).into()),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

fn today() -> String {
    Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "unknown date".into(), |s| s.trim().to_owned())
}

fn commit() -> String {
    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| !o.stdout.is_empty());
    if dirty {
        format!("{head} (modified)")
    } else {
        head
    }
}

/// Median and range over runs of one figure.
fn spread(runs: &[RunResult], figure: impl Fn(&RunResult) -> f64) -> (f64, f64, f64) {
    let values: Vec<f64> = runs.iter().map(figure).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&values), min, max)
}

fn markdown(report: &Report) -> String {
    let runs = &report.runs;
    let mut out = format!(
        "### End to end, {} (commit {})\n\n```sh\n{}\n```\n\n\
         {} ({} vCPUs), release build, load generator in-process on the same cores; \
         workload {:?}, {} spans per run over OTLP/{:?} in {}-span requests on {} connections; \
         raw OTLP {:.0} B/span; median of {} runs (min – max).\n\n\
         | measure | median | min – max | target |\n| --- | --- | --- | --- |\n",
        report.date,
        report.commit,
        report.command,
        report.cpu_model,
        report.vcpus,
        report.workload,
        report.spans_per_run,
        report.protocol,
        report.batch,
        report.connections,
        median(
            &runs
                .iter()
                .map(|r| r.ingest.raw_otlp_bytes_per_span)
                .collect::<Vec<_>>()
        ),
        runs.len(),
    );
    let mut row =
        |name: &str, unit: &str, decimals: usize, target: &str, f: &dyn Fn(&RunResult) -> f64| {
            let (m, lo, hi) = spread(runs, f);
            out.push_str(&format!(
            "| {name} | {m:.decimals$} {unit} | {lo:.decimals$} – {hi:.decimals$} | {target} |\n"
        ));
        };
    let per_vcpu_target = format!("≥ {} spans/s (50k per vCPU)", 50_000 * report.vcpus);
    row(
        "ingest, acknowledged",
        "spans/s",
        0,
        &per_vcpu_target,
        &|r| r.ingest.spans_per_second,
    );
    row(
        "server CPU, ingest + flush",
        "CPU-s per M spans",
        1,
        "≤ 20",
        &|r| r.cpu_seconds_per_million_spans,
    );
    row("peak RSS", "MiB", 0, "", &|r| {
        r.peak_rss_bytes as f64 / 1_048_576.0
    });
    row("at rest, all objects", "B/span", 1, "", &|r| {
        r.at_rest_bytes_per_span
    });
    row("raw OTLP ÷ at rest", "×", 1, "≥ 10×", &|r| {
        r.raw_over_at_rest
    });
    row("blocks after ingest", "", 0, "", &|r| r.blocks as f64);
    row("freshness, ack → readable, p50", "ms", 1, "", &|r| {
        r.freshness.p50_ms
    });
    row("freshness, ack → readable, p99", "ms", 1, "", &|r| {
        r.freshness.p99_ms
    });
    for (label, pick) in [
        (
            "recent",
            &(|r: &RunResult| r.lookup_recent.clone()) as &dyn Fn(&RunResult) -> LookupPair,
        ),
        ("in blocks, after restart", &|r: &RunResult| {
            r.lookup_blocks.clone()
        }),
    ] {
        let pick = &pick;
        row(&format!("trace-by-ID {label}, p50"), "ms", 1, "", &|r| {
            pick(r).no_range.found.p50_ms
        });
        row(&format!("trace-by-ID {label}, p99"), "ms", 1, "", &|r| {
            pick(r).no_range.found.p99_ms
        });
        row(
            &format!("trace-by-ID {label}, with time range, p50"),
            "ms",
            1,
            "",
            &|r| pick(r).time_range.found.p50_ms,
        );
        row(
            &format!("trace-by-ID {label}, store GETs per lookup"),
            "",
            1,
            "",
            &|r| {
                pick(r)
                    .no_range
                    .store_requests_per_found
                    .unwrap_or(f64::NAN)
            },
        );
        row(
            &format!("trace-by-ID {label}, absent ID, p50"),
            "ms",
            2,
            "",
            &|r| pick(r).no_range.absent.p50_ms,
        );
    }
    if runs.iter().all(|r| r.many_blocks.is_some()) {
        let many = |r: &RunResult| r.many_blocks.clone().unwrap_or_default();
        row("many-blocks phase: blocks", "", 0, "1,000", &|r| {
            many(r).blocks as f64
        });
        row(
            "trace-by-ID over many blocks, no time range, p50",
            "ms",
            1,
            "≤ 10 ms",
            &|r| many(r).lookup.no_range.found.p50_ms,
        );
        row(
            "trace-by-ID over many blocks, no time range, p99",
            "ms",
            1,
            "",
            &|r| many(r).lookup.no_range.found.p99_ms,
        );
        row(
            "trace-by-ID over many blocks, with time range, p50",
            "ms",
            1,
            "",
            &|r| many(r).lookup.time_range.found.p50_ms,
        );
        row(
            "trace-by-ID over many blocks, store GETs per lookup",
            "",
            1,
            "",
            &|r| {
                many(r)
                    .lookup
                    .no_range
                    .store_requests_per_found
                    .unwrap_or(f64::NAN)
            },
        );
        row(
            "trace-by-ID over many blocks, absent ID, p50",
            "ms",
            2,
            "",
            &|r| many(r).lookup.no_range.absent.p50_ms,
        );
    }
    if runs.iter().all(|r| {
        r.many_blocks
            .as_ref()
            .is_some_and(|m| m.compaction.is_some())
    }) {
        let compaction = |r: &RunResult| {
            r.many_blocks
                .as_ref()
                .and_then(|m| m.compaction.clone())
                .unwrap_or_default()
        };
        row("compaction: blocks before", "", 0, "", &|r| {
            compaction(r).blocks_before as f64
        });
        row("compaction: blocks after", "", 0, "few", &|r| {
            compaction(r).blocks_after as f64
        });
        row("compaction: spans after ÷ before", "", 4, "1", &|r| {
            let c = compaction(r);
            c.spans_after as f64 / c.spans_before.max(1) as f64
        });
        row(
            "compaction: input MB/s per CPU second",
            "MB/s",
            1,
            "",
            &|r| compaction(r).input_mb_per_cpu_second,
        );
        row("compaction: CPU seconds", "s", 1, "", &|r| {
            compaction(r).cpu_seconds
        });
        row("compaction: peak RSS", "MiB", 0, "", &|r| {
            compaction(r).peak_rss_bytes as f64 / 1_048_576.0
        });
        row(
            "compaction: write amplification (bytes written ÷ bytes before)",
            "×",
            2,
            "",
            &|r| compaction(r).write_amplification,
        );
        row("at rest before compaction", "B/span", 1, "", &|r| {
            compaction(r).bytes_per_span_before
        });
        row("at rest after compaction", "B/span", 1, "", &|r| {
            compaction(r).bytes_per_span_after
        });
        row(
            "trace-by-ID after compaction, no time range, p50",
            "ms",
            1,
            "≤ 10 ms",
            &|r| compaction(r).lookup_after.no_range.found.p50_ms,
        );
        row(
            "trace-by-ID after compaction, no time range, p99",
            "ms",
            1,
            "",
            &|r| compaction(r).lookup_after.no_range.found.p99_ms,
        );
        row(
            "trace-by-ID after compaction, store GETs per lookup",
            "",
            1,
            "",
            &|r| {
                compaction(r)
                    .lookup_after
                    .no_range
                    .store_requests_per_found
                    .unwrap_or(f64::NAN)
            },
        );
        row(
            "trace-by-ID after compaction, absent ID, p50",
            "ms",
            2,
            "",
            &|r| compaction(r).lookup_after.no_range.absent.p50_ms,
        );
    }
    type PickSearches<'a> = &'a dyn Fn(&RunResult) -> Option<Vec<SearchReport>>;
    let searches: [(&str, PickSearches); 2] = [
        ("blocks as cut, after restart", &|r| {
            Some(r.search_blocks.clone())
        }),
        ("after compaction", &|r| {
            r.many_blocks
                .as_ref()
                .and_then(|m| m.compaction.as_ref())
                .map(|c| c.search_after.clone())
        }),
    ];
    for (phase, pick) in searches {
        let Some(first) = runs.first().and_then(pick) else {
            continue;
        };
        for (i, search) in first.iter().enumerate() {
            let get = |r: &RunResult| -> SearchReport {
                pick(r).and_then(|s| s.get(i).cloned()).unwrap_or_default()
            };
            let (p50, lo, hi) = spread(runs, |r: &RunResult| get(r).latency.p50_ms);
            let (p99, _, _) = spread(runs, |r: &RunResult| get(r).latency.p99_ms);
            let (rate, _, _) = spread(runs, |r: &RunResult| {
                get(r).store_spans_per_second_per_vcpu.unwrap_or(f64::NAN)
            });
            let rate = if rate.is_finite() {
                format!(", full scan {:.0}M spans/s/vCPU", rate / 1e6)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "| search ({phase}) `{}` | p50 {p50:.1} ms, p99 {p99:.1} ms | {lo:.1} – {hi:.1} | {} traces, {} spans evaluated, {}/{} sources{rate} |\n",
                search.query.replace('|', "\\|"),
                search.traces,
                search.inspected_spans,
                search.completed_jobs,
                search.total_jobs,
            ));
        }
    }
    out.push_str("| SQL mix | not built yet | | |\n");
    if let Some(ceiling) = &report.generator_ceiling {
        out.push_str(&format!(
            "\nGenerator ceiling against a no-op sink, same settings: {:.0} spans/s.\n",
            ceiling.spans_per_second
        ));
    }
    out
}
