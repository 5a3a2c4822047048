//! `strata-loadgen`: sends the TS-1 (or tracegen) workload to an OTLP
//! endpoint and looks traces up by ID through the Tempo API.
//!
//! ```text
//! strata-loadgen send --protocol grpc --spans 2000000 --ids-out ids.txt
//! strata-loadgen send --rate 50000 --duration 60s --batch 8192
//! strata-loadgen query --ids ids.txt --lookups 1000 --absent 50 --time-range
//! strata-loadgen sink        # a no-op receiver: the generator's own ceiling
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use strata_benches::WorkloadKind;
use strata_benches::loadgen::{
    self, Error, Limit, Protocol, QueryConfig, SendConfig, SentTrace, SinkCounts,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "strata-loadgen",
    version,
    about = "Load generator for Strata: OTLP ingest and trace-by-ID queries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send spans over OTLP and report throughput.
    Send(SendArgs),
    /// Look traces up by ID and report latency.
    Query(QueryArgs),
    /// Run a no-op OTLP receiver (gRPC and HTTP) that acknowledges
    /// everything: send to it to measure the generator's own ceiling.
    Sink(SinkArgs),
}

#[derive(Debug, Args)]
struct SendArgs {
    /// OTLP base URL [default: http://127.0.0.1:4318 for http,
    /// http://127.0.0.1:4317 for grpc].
    #[arg(long)]
    endpoint: Option<String>,
    /// Transport.
    #[arg(long, value_enum, default_value_t = Protocol::Http)]
    protocol: Protocol,
    /// Tenant (`X-Scope-OrgID`).
    #[arg(long)]
    tenant: Option<String>,
    /// Concurrent connections, one request in flight each.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Spans per export request: 512 like an SDK, 8192 like a collector.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Target spans per second; flat out when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many spans (the workload's late spans still held
    /// are sent after them) [default: 1000000 unless --duration is given].
    #[arg(long, conflicts_with = "duration")]
    spans: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Workload.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Ts1)]
    workload: WorkloadKind,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of the first trace in Unix nanoseconds [default: now]. Fix it
    /// for byte-identical runs.
    #[arg(long)]
    start_unix_nano: Option<u64>,
    /// Retries of one request after retryable answers.
    #[arg(long, default_value_t = 20)]
    max_retries: u32,
    /// Write the IDs of acknowledged traces here, one `<hex id> <start ns>`
    /// per line, for a later `query`.
    #[arg(long)]
    ids_out: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// Tempo API base URL.
    #[arg(long, default_value = "http://127.0.0.1:3200")]
    endpoint: String,
    /// Tenant (`X-Scope-OrgID`).
    #[arg(long)]
    tenant: Option<String>,
    /// The ID file `send --ids-out` wrote.
    #[arg(long)]
    ids: PathBuf,
    /// Lookups of existing traces.
    #[arg(long, default_value_t = 1_000)]
    lookups: usize,
    /// Lookups of IDs that do not exist.
    #[arg(long, default_value_t = 50)]
    absent: usize,
    /// Pass `start`/`end` around each trace's start time.
    #[arg(long)]
    time_range: bool,
    /// Which IDs to pick.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct SinkArgs {
    /// gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:4317")]
    grpc: String,
    /// HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:4318")]
    http: String,
}

#[tokio::main]
async fn main() {
    let result = match Cli::parse().command {
        Command::Send(args) => send(args).await,
        Command::Query(args) => query(args).await,
        Command::Sink(args) => sink(args).await,
    };
    if let Err(error) = result {
        eprintln!("strata-loadgen: {error}");
        std::process::exit(1);
    }
}

fn now_unix_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn send(args: SendArgs) -> Result<(), Error> {
    let limit = match (args.spans, args.duration) {
        (Some(spans), _) => Limit::Spans(spans),
        (None, Some(duration)) => Limit::Duration(duration),
        (None, None) => Limit::Spans(1_000_000),
    };
    let endpoint = args.endpoint.unwrap_or_else(|| {
        match args.protocol {
            Protocol::Http => "http://127.0.0.1:4318",
            Protocol::Grpc => "http://127.0.0.1:4317",
        }
        .to_owned()
    });
    let config = SendConfig {
        endpoint,
        protocol: args.protocol,
        tenant: args.tenant,
        connections: args.connections,
        rate: args.rate,
        limit,
        batch: args.batch,
        workload: args.workload,
        seed: args.seed,
        start_unix_nano: args.start_unix_nano.unwrap_or_else(now_unix_nano),
        max_retries: args.max_retries,
    };
    let report = loadgen::send(&config).await?;
    if let Some(path) = &args.ids_out {
        let file =
            std::fs::File::create(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for trace in &report.traces {
            writeln!(out, "{}", trace.to_line())?;
        }
        out.flush()?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "sent {} spans ({} traces) in {:.2} s: {:.0} spans/s, {:.1} MB/s, raw OTLP {:.0} B/span; \
             {} requests acknowledged, {} failed, {} retries, {} spans rejected",
            report.spans_acknowledged,
            report.traces.len(),
            report.elapsed_seconds,
            report.spans_per_second,
            report.bytes_per_second / 1e6,
            report.raw_otlp_bytes_per_span,
            report.requests_acknowledged,
            report.requests_failed,
            report.retries,
            report.spans_rejected,
        );
        for failure in &report.failures {
            println!("  failure: {failure}");
        }
    }
    if report.requests_failed > 0 {
        return Err(format!("{} export requests failed", report.requests_failed).into());
    }
    Ok(())
}

async fn query(args: QueryArgs) -> Result<(), Error> {
    let text = std::fs::read_to_string(&args.ids)
        .map_err(|e| format!("reading {}: {e}", args.ids.display()))?;
    let traces = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(SentTrace::from_line)
        .collect::<Result<Vec<_>, _>>()?;
    let config = QueryConfig {
        endpoint: args.endpoint,
        tenant: args.tenant,
        lookups: args.lookups,
        absent_lookups: args.absent,
        with_time_range: args.time_range,
        seed: args.seed,
    };
    let report = loadgen::query(&config, &traces).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let requests = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.1}"));
        println!(
            "trace-by-ID: {} found p50 {:.1} ms p99 {:.1} ms max {:.1} ms ({} store GETs each); \
             {} absent p50 {:.1} ms p99 {:.1} ms ({} store GETs each)",
            report.found.count,
            report.found.p50_ms,
            report.found.p99_ms,
            report.found.max_ms,
            requests(report.store_requests_per_found),
            report.absent.count,
            report.absent.p50_ms,
            report.absent.p99_ms,
            requests(report.store_requests_per_absent),
        );
    }
    Ok(())
}

async fn sink(args: SinkArgs) -> Result<(), Error> {
    let grpc = tokio::net::TcpListener::bind(&args.grpc)
        .await
        .map_err(|e| format!("binding {}: {e}", args.grpc))?;
    let http = tokio::net::TcpListener::bind(&args.http)
        .await
        .map_err(|e| format!("binding {}: {e}", args.http))?;
    println!(
        "no-op OTLP sink: gRPC on {}, HTTP on {}; Ctrl-C to stop",
        grpc.local_addr()?,
        http.local_addr()?
    );
    let counts = Arc::new(SinkCounts::default());
    let cancel = CancellationToken::new();
    let server = tokio::spawn(loadgen::run_sink(
        grpc,
        http,
        Arc::clone(&counts),
        cancel.clone(),
    ));
    tokio::signal::ctrl_c().await?;
    cancel.cancel();
    server.await??;
    println!(
        "received {} requests, {} bytes",
        counts.requests.load(std::sync::atomic::Ordering::Relaxed),
        counts.bytes.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
