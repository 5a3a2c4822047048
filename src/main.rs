//! `strata`: the one binary.
//!
//! Parses configuration, opens storage and wires the components the target
//! asks for: receivers and the flush loop (ingester), block polling and the
//! query API (querier), retention (compactor). On SIGINT/SIGTERM it stops
//! accepting requests, then writes every buffered span to a block before
//! exiting, so nothing acknowledged is held only in memory.

mod admin;
mod config;
mod error;
mod server;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use object_store::ObjectStore;
use strata_common::LiveTraceSource;
use strata_common::storage::MeteredStore;
use strata_compactor::Compactor;
use strata_ingester::{Ingester, OtlpGrpcService};
use strata_querier::{BlockList, Querier};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Config, LogFormat};
use crate::error::{Error, Result};
use crate::server::{ProcessState, bind, process_routes, serve_http};

/// jemalloc rather than glibc malloc: a compaction merge frees on its own
/// thread buffers that object-store reads allocated on others, and glibc's
/// per-thread arenas then hold on to that memory (a `compact --once` over
/// 1,000 blocks grew to 4 GB RSS with glibc, against ~200 MB with one arena).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let (config, command) = match Cli::parse().into_config() {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("strata: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strata: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Some(command) => runtime.block_on(async {
            let store = config.storage.open(&config.s3)?;
            admin::run(&config, store, command).await
        }),
        None => runtime.block_on(run(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "strata stopped with an error");
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Latency buckets for every `*_seconds` histogram.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

async fn run(config: Config) -> Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| Error::Metrics(e.to_string()))?;
    let process = Arc::new(ProcessState {
        metrics,
        ready: AtomicBool::new(false),
    });
    // Every request to the store is counted for /metrics.
    let store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(config.storage.open(&config.s3)?));

    // The ingester announces each written block to an in-process querier, so
    // the querier serves it before its next poll of the store.
    let announce: Arc<OnceLock<Arc<BlockList>>> = Arc::new(OnceLock::new());
    let ingester = match config.target.runs_ingester() {
        false => None,
        true => {
            let announce = Arc::clone(&announce);
            // Opening replays the write-ahead log: acknowledged spans are
            // back in the live buffer (or the upload queue) before we serve.
            let ingester = Ingester::open(Arc::clone(&store), config.ingester.clone())
                .await?
                .with_block_written_hook(Arc::new(move |meta| {
                    if let Some(blocks) = announce.get() {
                        blocks.add(meta.clone());
                    }
                }));
            Some(Arc::new(ingester))
        }
    };
    let querier = match config.target.runs_querier() {
        false => None,
        true => {
            let live: Vec<Arc<dyn LiveTraceSource>> = ingester
                .iter()
                .map(|i| Arc::clone(i) as Arc<dyn LiveTraceSource>)
                .collect();
            let querier = Arc::new(Querier::new(
                Arc::clone(&store),
                live,
                config.querier.clone(),
            )?);
            let _ = announce.set(Arc::clone(querier.block_list()));
            if let Err(e) = querier.block_list().poll().await {
                warn!(error = %e, "initial block list poll failed; retrying in the background");
            }
            Some(querier)
        }
    };

    // Bind every listener before serving, so a taken port fails start-up.
    let http_listener = bind("HTTP API", config.http_addr).await?;
    let ingest_listeners = match &ingester {
        Some(_) => Some((
            bind("OTLP/gRPC", config.otlp_grpc_addr).await?,
            bind("OTLP/HTTP", config.otlp_http_addr).await?,
            bind("Zipkin", config.zipkin_addr).await?,
        )),
        None => None,
    };

    let stop_serving = CancellationToken::new();
    let stop_background = CancellationToken::new();
    let mut servers: JoinSet<Result<()>> = JoinSet::new();
    let mut background: JoinSet<()> = JoinSet::new();

    let mut router = process_routes(Arc::clone(&process));
    if let Some(querier) = &querier {
        router = router.merge(Arc::clone(querier).router());
        background.spawn(Arc::clone(querier).run(stop_background.clone()));
    }
    let http_addr = local_addr(&http_listener, config.http_addr);
    servers.spawn(serve_http(
        "HTTP API",
        http_listener,
        router,
        stop_serving.clone(),
    ));

    let mut ingest_addrs = None;
    if let (Some(ingester), Some((grpc_listener, http_listener, zipkin_listener))) =
        (&ingester, ingest_listeners)
    {
        ingest_addrs = Some(IngestAddrs {
            otlp_grpc: local_addr(&grpc_listener, config.otlp_grpc_addr),
            otlp_http: local_addr(&http_listener, config.otlp_http_addr),
            zipkin: local_addr(&zipkin_listener, config.zipkin_addr),
        });
        servers.spawn(serve_http(
            "OTLP/HTTP",
            http_listener,
            strata_ingester::receiver::http::router(Arc::clone(ingester)),
            stop_serving.clone(),
        ));
        servers.spawn(serve_http(
            "Zipkin",
            zipkin_listener,
            strata_ingester::receiver::zipkin::router(Arc::clone(ingester)),
            stop_serving.clone(),
        ));
        servers.spawn(serve_grpc(
            grpc_listener,
            OtlpGrpcService::new(Arc::clone(ingester)),
            stop_serving.clone(),
        ));
        background.spawn(Arc::clone(ingester).run_cut_loop(stop_background.clone()));
        background.spawn(Arc::clone(ingester).run_upload_loop(stop_background.clone()));
    }
    if config.target.runs_compactor() {
        let compactor = Arc::new(Compactor::new(Arc::clone(&store), config.compactor.clone()));
        background.spawn(compactor.run(stop_background.clone()));
    }

    process.ready.store(true, Ordering::Release);
    print_banner(&config, http_addr, ingest_addrs);

    let mut failure = None;
    tokio::select! {
        () = signals.recv() => info!("shutdown requested"),
        Some(result) = servers.join_next() => {
            failure = Some(match result {
                Ok(Ok(())) => Error::ServerStopped("without an error".into()),
                Ok(Err(e)) => e,
                Err(e) => Error::ServerStopped(e.to_string()),
            });
        }
    }

    // A second signal while we flush means "now": exit at once. Everything
    // acknowledged is in the write-ahead log or the local upload queue.
    tokio::spawn(async move {
        signals.recv().await;
        warn!(
            "second shutdown signal: exiting without flushing; the write-ahead log keeps every acknowledged span"
        );
        std::process::exit(130);
    });

    // Stop accepting work, let in-flight requests finish, then flush.
    process.ready.store(false, Ordering::Release);
    stop_serving.cancel();
    while let Some(result) = servers.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "server stopped with an error"),
            Err(e) => warn!(error = %e, "server task failed"),
        }
    }
    stop_background.cancel();
    while background.join_next().await.is_some() {}
    if let Some(ingester) = &ingester {
        ingester.shutdown(config.shutdown_timeout).await?;
    }
    info!("strata stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn local_addr(listener: &TcpListener, configured: SocketAddr) -> SocketAddr {
    listener.local_addr().unwrap_or(configured)
}

async fn serve_grpc(
    listener: TcpListener,
    service: OtlpGrpcService,
    cancel: CancellationToken,
) -> Result<()> {
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            cancel.cancelled_owned(),
        )
        .await
        .map_err(|e| Error::Serve {
            what: "OTLP/gRPC",
            message: e.to_string(),
        })
}

/// SIGINT and SIGTERM listeners, installed at start-up: a signal that
/// arrives before the servers are up must still mean a graceful stop, not
/// the default of dying with buffered spans.
struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &'static str| {
            signal(kind).map_err(|e| Error::Serve {
                what: name,
                message: format!("cannot listen for the signal: {e}"),
            })
        };
        Ok(Self {
            interrupt: listen(SignalKind::interrupt(), "SIGINT")?,
            terminate: listen(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Where the receivers listen.
#[derive(Debug, Clone, Copy)]
struct IngestAddrs {
    otlp_grpc: SocketAddr,
    otlp_http: SocketAddr,
    zipkin: SocketAddr,
}

/// Tells a person (and the integration tests) where to send and query.
fn print_banner(config: &Config, http: SocketAddr, ingest: Option<IngestAddrs>) {
    println!(
        "Strata {} running: target {:?}, storage {}",
        env!("CARGO_PKG_VERSION"),
        config.target,
        config.storage
    );
    if let Some(addrs) = ingest {
        println!("  send spans  OTLP/gRPC   http://{}", addrs.otlp_grpc);
        println!(
            "              OTLP/HTTP   http://{}/v1/traces",
            addrs.otlp_http
        );
        println!(
            "              Zipkin      http://{}/api/v2/spans",
            addrs.zipkin
        );
        println!(
            "              (write-ahead log in {})",
            config.ingester.wal_dir.display()
        );
    }
    if config.target.runs_querier() {
        println!("  query       Tempo API   http://{http}/api/v2/traces/<trace-id>");
        println!(
            "              (Grafana: add a Tempo data source with URL http://<this-host>:{})",
            http.port()
        );
    }
    println!("  operate     http://{http}/metrics  http://{http}/ready");
}
