//! Configuration: every setting is a flag, a `STRATA_*` environment variable
//! and a key of the YAML file given by `--config`.
//!
//! Precedence: flag, then environment, then file, then the default. The YAML
//! key is the flag name with underscores (`--block-max-bytes` ↔
//! `block_max_bytes`); unknown keys are an error, so typos do not pass
//! silently.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use strata_common::block::BlockWriteOptions;
use strata_common::{S3Options, StorageLocation, TenantId};
use strata_ingester::{IngesterConfig, TenantLimits};
use strata_querier::QuerierConfig;

use crate::error::{Error, Result};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Strata: a trace store on Arrow, Parquet and DataFusion, speaking OTLP and Grafana Tempo's API.",
    long_about = None,
    after_help = "Every option is also a key of the YAML file given by --config: the option name with \
underscores, e.g. `block_max_bytes: 64MiB`. A flag beats its environment variable, which beats the \
file, which beats the default.\n\nWith no options Strata runs every component in one process, \
storing blocks under ./data/blocks and its write-ahead log under ./data/wal."
)]
pub(crate) struct Cli {
    /// YAML configuration file.
    #[arg(long, global = true, env = "STRATA_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) settings: Settings,

    /// Without a command, Strata runs the components of --target.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// One-shot operations on the store; they read the same settings.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum Command {
    /// Run one compactor pass over the store (merge, retention, deletion,
    /// tenant index) and exit.
    Compact {
        /// One pass, then exit (to run continuously use --target compactor).
        #[arg(long, required = true)]
        once: bool,
        /// Print the pass report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the blocks in the store.
    Blocks {
        #[command(subcommand)]
        command: BlocksCommand,
    },
}

/// `strata blocks ...`
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum BlocksCommand {
    /// List blocks: tenant, ID, state, level, time range, spans, traces, bytes.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one block's metadata, objects and leases as JSON.
    Inspect {
        /// The block ID.
        block_id: String,
        /// The tenant to look in [default: every tenant].
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Which components this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// Ingester, querier and compactor in one process.
    All,
    /// OTLP receivers, buffers and block cutting.
    Ingester,
    /// The query API over blocks (and in-process live data).
    Querier,
    /// Block compaction, retention and the tenant index over the object store.
    Compactor,
}

impl Target {
    pub(crate) fn runs_ingester(self) -> bool {
        matches!(self, Self::All | Self::Ingester)
    }

    pub(crate) fn runs_querier(self) -> bool {
        matches!(self, Self::All | Self::Querier)
    }

    pub(crate) fn runs_compactor(self) -> bool {
        matches!(self, Self::All | Self::Compactor)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, humantime::DurationError> {
    humantime::parse_duration(text)
}

/// Every setting, each optional so that flags, environment and file can be
/// layered. Defaults are applied by [`Settings::resolve`].
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// Components to run [default: all].
    #[arg(long, global = true, env = "STRATA_TARGET", value_enum)]
    pub(crate) target: Option<Target>,

    /// Where blocks live: a directory (`./data/blocks`, `file:///var/lib/strata`),
    /// `memory://`, or `s3://bucket/prefix` [default: ./data/blocks].
    #[arg(long, global = true, env = "STRATA_STORAGE", value_name = "URL")]
    pub(crate) storage: Option<String>,

    /// HTTP address of the query API, /metrics and /ready [default: 0.0.0.0:3200].
    #[arg(long, global = true, env = "STRATA_HTTP_ADDR", value_name = "ADDR")]
    pub(crate) http_addr: Option<SocketAddr>,

    /// OTLP/gRPC receiver address [default: 0.0.0.0:4317].
    #[arg(
        long,
        global = true,
        env = "STRATA_OTLP_GRPC_ADDR",
        value_name = "ADDR"
    )]
    pub(crate) otlp_grpc_addr: Option<SocketAddr>,

    /// OTLP/HTTP receiver address [default: 0.0.0.0:4318].
    #[arg(
        long,
        global = true,
        env = "STRATA_OTLP_HTTP_ADDR",
        value_name = "ADDR"
    )]
    pub(crate) otlp_http_addr: Option<SocketAddr>,

    /// Zipkin v2 receiver address (`POST /api/v2/spans`) [default: 0.0.0.0:9411].
    #[arg(long, global = true, env = "STRATA_ZIPKIN_ADDR", value_name = "ADDR")]
    pub(crate) zipkin_addr: Option<SocketAddr>,

    /// Write-ahead log directory; blocks waiting for upload are queued in its
    /// `blocks/` subdirectory [default: ./data/wal].
    #[arg(long, global = true, env = "STRATA_WAL_DIR", value_name = "DIR")]
    pub(crate) wal_dir: Option<PathBuf>,

    /// Disk budget of the write-ahead log plus the upload queue; beyond it
    /// exports are refused with 503 / UNAVAILABLE and Retry-After [default: 16GiB].
    #[arg(long, global = true, env = "STRATA_WAL_MAX_BYTES", value_name = "SIZE")]
    pub(crate) wal_max_bytes: Option<ByteSize>,

    /// A trace is complete once no span has arrived for this long [default: 10s].
    #[arg(long, global = true, env = "STRATA_TRACE_IDLE_PERIOD", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) trace_idle_period: Option<Duration>,

    /// ... or once it has been live this long [default: 30s].
    #[arg(long, global = true, env = "STRATA_TRACE_MAX_LIVE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) trace_max_live: Option<Duration>,

    /// Cut a tenant's complete traces into a block when they reach this size
    /// (in-memory Arrow bytes, about 2 KiB per typical span) [default: 128MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_BLOCK_MAX_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) block_max_bytes: Option<ByteSize>,

    /// ... or when the oldest of them has waited this long [default: 1m].
    #[arg(long, global = true, env = "STRATA_BLOCK_MAX_AGE", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) block_max_age: Option<Duration>,

    /// Refuse spans (HTTP 429 / gRPC RESOURCE_EXHAUSTED) while spans held in
    /// memory exceed this size [default: 2GiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_MAX_LIVE_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) max_live_bytes: Option<ByteSize>,

    /// Time allowed for one block upload before it is retried [default: 1m].
    #[arg(long, global = true, env = "STRATA_UPLOAD_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) upload_timeout: Option<Duration>,

    /// Per-tenant ingestion rate in OTLP bytes per second; 0 = unlimited [default: 64MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_INGESTION_RATE_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) ingestion_rate_bytes: Option<ByteSize>,

    /// Per-tenant burst allowance above the rate [default: 128MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_INGESTION_BURST_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) ingestion_burst_bytes: Option<ByteSize>,

    /// Spans held live per trace; more are dropped and counted; 0 = unlimited [default: 100000].
    #[arg(
        long,
        global = true,
        env = "STRATA_MAX_SPANS_PER_TRACE",
        value_name = "N"
    )]
    pub(crate) max_spans_per_trace: Option<u64>,

    /// OTLP bytes held live per trace; more spans are dropped and counted [default: 50MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_MAX_BYTES_PER_TRACE",
        value_name = "SIZE"
    )]
    pub(crate) max_bytes_per_trace: Option<ByteSize>,

    /// String and bytes attribute values are cut to this size and counted [default: 64KiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_MAX_ATTRIBUTE_VALUE_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) max_attribute_value_bytes: Option<ByteSize>,

    /// Per-tenant overrides of the five limits above, e.g.
    /// `tenant_limits: {team-a: {ingestion_rate_bytes: 10485760}}`. YAML only.
    #[arg(skip)]
    pub(crate) tenant_limits: Option<HashMap<String, TenantLimits>>,

    /// Largest accepted OTLP request, after decompression [default: 16MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_MAX_REQUEST_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) max_request_bytes: Option<ByteSize>,

    /// Keep spans queryable in the ingester this long after their block is
    /// written, so queriers that find blocks by polling never miss them
    /// [default: 2 × blocklist poll; 0 with --target all, where the
    /// in-process querier learns of new blocks at once].
    #[arg(long, global = true, env = "STRATA_COMPLETE_BLOCK_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) complete_block_timeout: Option<Duration>,

    /// How often queriers re-list blocks in the store [default: 15s].
    #[arg(long, global = true, env = "STRATA_BLOCKLIST_POLL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) blocklist_poll: Option<Duration>,

    /// Memory for cached bloom-filter shards [default: 256MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_BLOOM_CACHE_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) bloom_cache_bytes: Option<ByteSize>,

    /// Memory for cached block trace tables and attribute summaries, which
    /// search and tag autocomplete read [default: 256MiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_METADATA_CACHE_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) metadata_cache_bytes: Option<ByteSize>,

    /// Memory DataFusion may use for query execution [default: 1GiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_QUERY_MEMORY_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) query_memory_bytes: Option<ByteSize>,

    /// Threads running queries, apart from those serving ingest
    /// [default: one per CPU].
    #[arg(long, global = true, env = "STRATA_QUERY_THREADS", value_name = "N")]
    pub(crate) query_threads: Option<usize>,

    /// Target bloom-filter false-positive rate of new blocks [default: 0.001].
    #[arg(
        long,
        global = true,
        env = "STRATA_BLOOM_FALSE_POSITIVE_RATE",
        value_name = "RATE"
    )]
    pub(crate) bloom_false_positive_rate: Option<f64>,

    /// Delete blocks whose newest span is older than this [default: 14d].
    #[arg(long, global = true, env = "STRATA_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) retention: Option<Duration>,

    /// How often the compactor runs [default: 5m].
    #[arg(long, global = true, env = "STRATA_COMPACTION_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) compaction_interval: Option<Duration>,

    /// How long a compacted or expired block stays readable before its
    /// objects are removed; at least twice the blocklist poll [default: 5m].
    #[arg(long, global = true, env = "STRATA_DELETION_DELAY", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) deletion_delay: Option<Duration>,

    /// Per-tenant retention overriding --retention, e.g.
    /// `tenant_retention: {team-a: 30d}`. YAML only.
    #[arg(skip)]
    pub(crate) tenant_retention: Option<HashMap<String, String>>,

    /// Merge blocks; with false the compactor still applies retention,
    /// deletes retired blocks and writes the tenant index [default: true].
    #[arg(
        long,
        global = true,
        env = "STRATA_COMPACTION_ENABLED",
        value_name = "BOOL"
    )]
    pub(crate) compaction_enabled: Option<bool>,

    /// Blocks are compacted within time windows of this length [default: 1h].
    #[arg(long, global = true, env = "STRATA_COMPACTION_WINDOW", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) compaction_window: Option<Duration>,

    /// Most blocks merged by one compaction job [default: 8].
    #[arg(
        long,
        global = true,
        env = "STRATA_COMPACTION_MAX_INPUT_BLOCKS",
        value_name = "N"
    )]
    pub(crate) compaction_max_input_blocks: Option<usize>,

    /// Most spans merged by one compaction job [default: 20000000].
    #[arg(
        long,
        global = true,
        env = "STRATA_COMPACTION_MAX_JOB_SPANS",
        value_name = "N"
    )]
    pub(crate) compaction_max_job_spans: Option<u64>,

    /// Largest compacted block: a job's inputs hold at most this much data [default: 4GiB].
    #[arg(
        long,
        global = true,
        env = "STRATA_COMPACTION_MAX_BLOCK_BYTES",
        value_name = "SIZE"
    )]
    pub(crate) compaction_max_block_bytes: Option<ByteSize>,

    /// A compaction job's lease on its input blocks lapses this long after
    /// its last renewal, so another compactor can redo a crashed job [default: 5m].
    #[arg(long, global = true, env = "STRATA_COMPACTION_LEASE_TTL", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) compaction_lease_ttl: Option<Duration>,

    /// How long a graceful shutdown may spend flushing buffered spans [default: 30s].
    #[arg(long, global = true, env = "STRATA_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(with = "humantime_serde")]
    pub(crate) shutdown_timeout: Option<Duration>,

    /// S3 endpoint URL, overriding AWS_ENDPOINT_URL.
    #[arg(long, global = true, env = "STRATA_S3_ENDPOINT", value_name = "URL")]
    pub(crate) s3_endpoint: Option<String>,

    /// S3 region, overriding AWS_REGION.
    #[arg(long, global = true, env = "STRATA_S3_REGION")]
    pub(crate) s3_region: Option<String>,

    /// S3 access key ID, overriding AWS_ACCESS_KEY_ID.
    #[arg(long, global = true, env = "STRATA_S3_ACCESS_KEY_ID")]
    pub(crate) s3_access_key_id: Option<String>,

    /// S3 secret access key, overriding AWS_SECRET_ACCESS_KEY.
    #[arg(
        long,
        global = true,
        env = "STRATA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub(crate) s3_secret_access_key: Option<String>,

    /// Allow plain-HTTP S3 endpoints, overriding AWS_ALLOW_HTTP.
    #[arg(long, global = true, env = "STRATA_S3_ALLOW_HTTP", value_name = "BOOL")]
    pub(crate) s3_allow_http: Option<bool>,

    /// Use virtual-hosted-style S3 requests instead of path-style.
    #[arg(
        long,
        global = true,
        env = "STRATA_S3_VIRTUAL_HOSTED_STYLE",
        value_name = "BOOL"
    )]
    pub(crate) s3_virtual_hosted_style: Option<bool>,

    /// Log filter, e.g. `info` or `strata=debug,info`; RUST_LOG also works [default: info].
    #[arg(long, global = true, env = "STRATA_LOG_LEVEL", value_name = "FILTER")]
    pub(crate) log_level: Option<String>,

    /// Log format [default: text].
    #[arg(long, global = true, env = "STRATA_LOG_FORMAT", value_enum)]
    pub(crate) log_format: Option<LogFormat>,
}

/// Layers `$over` on `$under` field by field.
macro_rules! layer {
    ($over:expr, $under:expr, $($field:ident),+ $(,)?) => {
        Settings { $($field: $over.$field.or($under.$field)),+ }
    };
}

/// Resolved configuration with every default applied.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) target: Target,
    pub(crate) storage: StorageLocation,
    pub(crate) s3: S3Options,
    pub(crate) http_addr: SocketAddr,
    pub(crate) otlp_grpc_addr: SocketAddr,
    pub(crate) otlp_http_addr: SocketAddr,
    pub(crate) zipkin_addr: SocketAddr,
    pub(crate) ingester: IngesterConfig,
    pub(crate) querier: QuerierConfig,
    pub(crate) compactor: strata_compactor::CompactorConfig,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) log_level: String,
    pub(crate) log_format: LogFormat,
}

impl Settings {
    /// Reads a YAML settings file.
    pub(crate) fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigFile {
            path: path.to_owned(),
            message: source.to_string(),
        })?;
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| Error::ConfigFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// These settings, with gaps filled from `under`.
    pub(crate) fn over(self, under: Settings) -> Settings {
        layer!(
            self,
            under,
            target,
            storage,
            http_addr,
            otlp_grpc_addr,
            otlp_http_addr,
            zipkin_addr,
            wal_dir,
            wal_max_bytes,
            trace_idle_period,
            trace_max_live,
            block_max_bytes,
            block_max_age,
            max_live_bytes,
            upload_timeout,
            ingestion_rate_bytes,
            ingestion_burst_bytes,
            max_spans_per_trace,
            max_bytes_per_trace,
            max_attribute_value_bytes,
            tenant_limits,
            max_request_bytes,
            complete_block_timeout,
            blocklist_poll,
            bloom_cache_bytes,
            metadata_cache_bytes,
            query_memory_bytes,
            query_threads,
            bloom_false_positive_rate,
            retention,
            compaction_interval,
            deletion_delay,
            tenant_retention,
            compaction_enabled,
            compaction_window,
            compaction_max_input_blocks,
            compaction_max_job_spans,
            compaction_max_block_bytes,
            compaction_lease_ttl,
            shutdown_timeout,
            s3_endpoint,
            s3_region,
            s3_access_key_id,
            s3_secret_access_key,
            s3_allow_http,
            s3_virtual_hosted_style,
            log_level,
            log_format,
        )
    }

    /// The limits for tenants without an override.
    fn limits_defaults(&self) -> TenantLimits {
        let defaults = TenantLimits::default();
        TenantLimits {
            ingestion_rate_bytes: self
                .ingestion_rate_bytes
                .map_or(defaults.ingestion_rate_bytes, |b| b.as_u64()),
            ingestion_burst_bytes: self
                .ingestion_burst_bytes
                .map_or(defaults.ingestion_burst_bytes, |b| b.as_u64()),
            max_spans_per_trace: self
                .max_spans_per_trace
                .unwrap_or(defaults.max_spans_per_trace),
            max_bytes_per_trace: self
                .max_bytes_per_trace
                .map_or(defaults.max_bytes_per_trace, |b| b.as_u64()),
            max_attribute_value_bytes: self
                .max_attribute_value_bytes
                .map_or(defaults.max_attribute_value_bytes, |b| b.as_u64()),
        }
    }

    fn tenant_limit_overrides(&self) -> Result<HashMap<TenantId, TenantLimits>> {
        self.tenant_limits
            .iter()
            .flatten()
            .map(|(tenant, limits)| {
                let tenant = TenantId::new(tenant.clone())
                    .map_err(|e| Error::Config(format!("tenant_limits: {e}")))?;
                Ok((tenant, limits.clone()))
            })
            .collect()
    }

    fn compactor_config(
        &self,
        blocklist_poll: Duration,
        bloom_false_positive_rate: f64,
    ) -> Result<strata_compactor::CompactorConfig> {
        let defaults = strata_compactor::CompactorConfig::default();
        let deletion_delay = self.deletion_delay.unwrap_or(defaults.deletion_delay);
        if deletion_delay < 2 * blocklist_poll {
            return Err(Error::Config(format!(
                "deletion_delay ({}) must be at least twice blocklist_poll ({}): a querier may read a block until it has polled twice",
                humantime::format_duration(deletion_delay),
                humantime::format_duration(blocklist_poll)
            )));
        }
        let tenant_retention = self
            .tenant_retention
            .iter()
            .flatten()
            .map(|(tenant, retention)| {
                let tenant = TenantId::new(tenant.clone())
                    .map_err(|e| Error::Config(format!("tenant_retention: {e}")))?;
                let retention = humantime::parse_duration(retention).map_err(|e| {
                    Error::Config(format!("tenant_retention: {tenant}: {retention:?}: {e}"))
                })?;
                Ok((tenant, retention))
            })
            .collect::<Result<_>>()?;
        let max_input_blocks = self
            .compaction_max_input_blocks
            .unwrap_or(defaults.max_input_blocks);
        if max_input_blocks < 2 {
            return Err(Error::Config(
                "compaction_max_input_blocks must be at least 2".into(),
            ));
        }
        let window = self.compaction_window.unwrap_or(defaults.window);
        if window.is_zero() {
            return Err(Error::Config(
                "compaction_window must be greater than zero".into(),
            ));
        }
        Ok(strata_compactor::CompactorConfig {
            interval: self.compaction_interval.unwrap_or(defaults.interval),
            merge: self.compaction_enabled.unwrap_or(defaults.merge),
            retention: self.retention.unwrap_or(defaults.retention),
            tenant_retention,
            deletion_delay,
            window,
            max_input_blocks,
            max_job_spans: self
                .compaction_max_job_spans
                .unwrap_or(defaults.max_job_spans),
            max_block_bytes: self
                .compaction_max_block_bytes
                .map_or(defaults.max_block_bytes, |b| b.as_u64()),
            lease_ttl: self.compaction_lease_ttl.unwrap_or(defaults.lease_ttl),
            block: strata_compactor::compacted_block_options(BlockWriteOptions {
                bloom_false_positive_rate,
                ..BlockWriteOptions::default()
            }),
        })
    }

    /// Applies defaults and checks values.
    pub(crate) fn resolve(self) -> Result<Config> {
        let bytes = |name: &'static str, value: Option<ByteSize>, default: u64| -> Result<usize> {
            let value = value.map_or(default, |b| b.as_u64());
            if value == 0 {
                return Err(Error::Config(format!("{name} must be greater than zero")));
            }
            usize::try_from(value).map_err(|_| Error::Config(format!("{name} is too large")))
        };
        const MIB: u64 = 1024 * 1024;
        let default_addr = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));

        let bloom_false_positive_rate = self
            .bloom_false_positive_rate
            .unwrap_or(BlockWriteOptions::default().bloom_false_positive_rate);
        if !(bloom_false_positive_rate > 0.0 && bloom_false_positive_rate < 1.0) {
            return Err(Error::Config(format!(
                "bloom_false_positive_rate must be between 0 and 1, got {bloom_false_positive_rate}"
            )));
        }
        let storage = StorageLocation::parse(self.storage.as_deref().unwrap_or("./data/blocks"))
            .map_err(|e| Error::Config(e.to_string()))?;
        let querier_defaults = QuerierConfig::default();
        let blocklist_poll = self
            .blocklist_poll
            .unwrap_or(querier_defaults.blocklist_poll);
        if blocklist_poll.is_zero() {
            return Err(Error::Config(
                "blocklist_poll must be greater than zero".into(),
            ));
        }

        let compactor = self.compactor_config(blocklist_poll, bloom_false_positive_rate)?;
        let target = self.target.unwrap_or(Target::All);
        let limits = self.limits_defaults();
        let tenant_limits = self.tenant_limit_overrides()?;
        Ok(Config {
            target,
            storage,
            s3: S3Options {
                endpoint: self.s3_endpoint,
                region: self.s3_region,
                access_key_id: self.s3_access_key_id,
                secret_access_key: self.s3_secret_access_key,
                allow_http: self.s3_allow_http,
                virtual_hosted_style: self.s3_virtual_hosted_style,
            },
            http_addr: self.http_addr.unwrap_or(default_addr(3200)),
            otlp_grpc_addr: self.otlp_grpc_addr.unwrap_or(default_addr(4317)),
            otlp_http_addr: self.otlp_http_addr.unwrap_or(default_addr(4318)),
            zipkin_addr: self.zipkin_addr.unwrap_or(default_addr(9411)),
            ingester: IngesterConfig {
                wal_dir: self.wal_dir.unwrap_or_else(|| PathBuf::from("./data/wal")),
                wal_segment_bytes: 64 * MIB,
                wal_max_bytes: bytes("wal_max_bytes", self.wal_max_bytes, 16 * 1024 * MIB)? as u64,
                trace_idle_period: self.trace_idle_period.unwrap_or(Duration::from_secs(10)),
                trace_max_live: self.trace_max_live.unwrap_or(Duration::from_secs(30)),
                block_max_bytes: bytes("block_max_bytes", self.block_max_bytes, 128 * MIB)?,
                block_max_age: self.block_max_age.unwrap_or(Duration::from_secs(60)),
                max_live_bytes: bytes("max_live_bytes", self.max_live_bytes, 2048 * MIB)?,
                max_request_bytes: bytes("max_request_bytes", self.max_request_bytes, 16 * MIB)?,
                upload_timeout: self.upload_timeout.unwrap_or(Duration::from_secs(60)),
                // With --target all the querier hears of each block before the
                // ingester retires its copy, so nothing needs to linger.
                complete_block_timeout: self.complete_block_timeout.unwrap_or(
                    if target == Target::All {
                        Duration::ZERO
                    } else {
                        2 * blocklist_poll
                    },
                ),
                flush_check_interval: Duration::from_secs(1),
                limits,
                tenant_limits,
                block: BlockWriteOptions {
                    bloom_false_positive_rate,
                    ..BlockWriteOptions::default()
                },
            },
            querier: QuerierConfig {
                blocklist_poll,
                bloom_cache_bytes: bytes(
                    "bloom_cache_bytes",
                    self.bloom_cache_bytes,
                    querier_defaults.bloom_cache_bytes,
                )? as u64,
                metadata_cache_bytes: bytes(
                    "metadata_cache_bytes",
                    self.metadata_cache_bytes,
                    querier_defaults.metadata_cache_bytes,
                )? as u64,
                query_memory_bytes: bytes(
                    "query_memory_bytes",
                    self.query_memory_bytes,
                    querier_defaults.query_memory_bytes as u64,
                )?,
                query_threads: self.query_threads.unwrap_or(querier_defaults.query_threads),
            },
            compactor,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
            log_level: self.log_level.unwrap_or_else(|| "info".to_owned()),
            log_format: self.log_format.unwrap_or(LogFormat::Text),
        })
    }
}

impl Cli {
    /// Layers flags and environment over the config file and resolves;
    /// returns the command to run, if any.
    pub(crate) fn into_config(self) -> Result<(Config, Option<Command>)> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        Ok((self.settings.over(file).resolve()?, self.command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_run_everything_on_local_disk() {
        let config = Settings::default().resolve().unwrap();
        assert_eq!(config.target, Target::All);
        assert_eq!(
            config.storage,
            StorageLocation::Local("./data/blocks".into())
        );
        assert_eq!(config.ingester.wal_dir, PathBuf::from("./data/wal"));
        assert_eq!(config.zipkin_addr.port(), 9411);
        assert_eq!(config.http_addr.port(), 3200);
        assert_eq!(config.otlp_grpc_addr.port(), 4317);
        assert_eq!(config.otlp_http_addr.port(), 4318);
    }

    #[test]
    fn flags_beat_the_file() {
        let file: Settings = serde_yaml_ng::from_str(
            "block_max_bytes: 8MiB\nblock_max_age: 10s\nstorage: memory://\ntarget: querier\n",
        )
        .unwrap();
        let flags = Settings {
            block_max_age: Some(Duration::from_secs(2)),
            ..Settings::default()
        };
        let config = flags.over(file).resolve().unwrap();
        assert_eq!(config.ingester.block_max_bytes, 8 * 1024 * 1024);
        assert_eq!(config.ingester.block_max_age, Duration::from_secs(2));
        assert_eq!(config.storage, StorageLocation::Memory);
        assert_eq!(config.target, Target::Querier);
    }

    #[test]
    fn tenant_limit_overrides_come_from_yaml() {
        let file: Settings = serde_yaml_ng::from_str(
            "ingestion_rate_bytes: 1MiB\ntenant_limits:\n  team-a:\n    ingestion_rate_bytes: 100\n    max_spans_per_trace: 7\n",
        )
        .unwrap();
        let config = file.resolve().unwrap();
        assert_eq!(config.ingester.limits.ingestion_rate_bytes, 1024 * 1024);
        let team_a = &config.ingester.tenant_limits[&TenantId::new("team-a").unwrap()];
        assert_eq!(
            (team_a.ingestion_rate_bytes, team_a.max_spans_per_trace),
            (100, 7)
        );
        let bad: Settings = serde_yaml_ng::from_str("tenant_limits:\n  \"a/b\": {}\n").unwrap();
        assert!(bad.resolve().is_err(), "tenant IDs are validated");
    }

    #[test]
    fn unknown_yaml_keys_are_rejected() {
        let error = serde_yaml_ng::from_str::<Settings>("blok_max_bytes: 1MiB\n").unwrap_err();
        assert!(error.to_string().contains("blok_max_bytes"), "{error}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let zero = Settings {
            block_max_bytes: Some(ByteSize::b(0)),
            ..Settings::default()
        };
        assert!(zero.resolve().is_err());
        let rate = Settings {
            bloom_false_positive_rate: Some(1.5),
            ..Settings::default()
        };
        assert!(rate.resolve().is_err());
        // Compacted blocks must outlive two block-list polls.
        let grace = Settings {
            blocklist_poll: Some(Duration::from_secs(60)),
            deletion_delay: Some(Duration::from_secs(90)),
            ..Settings::default()
        };
        let error = grace.resolve().unwrap_err().to_string();
        assert!(error.contains("deletion_delay"), "{error}");
        let retention: Settings =
            serde_yaml_ng::from_str("tenant_retention:\n  team-a: 30d\n").unwrap();
        let config = retention.resolve().unwrap();
        assert_eq!(
            config
                .compactor
                .retention_for(&TenantId::new("team-a").unwrap()),
            Duration::from_secs(30 * 24 * 3600)
        );
        let bad: Settings = serde_yaml_ng::from_str("tenant_retention:\n  team-a: soon\n").unwrap();
        assert!(bad.resolve().is_err());
    }

    #[test]
    fn every_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        for arg in Cli::command().get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(
                env.as_deref().is_some_and(|e| e.starts_with("STRATA_")),
                "--{} has no STRATA_ variable",
                arg.get_id()
            );
        }
    }
}
