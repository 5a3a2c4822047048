//! TS-1 end-to-end load generator.
//!
//! Sends TS-1 traces to a running Strata over OTLP/HTTP (protobuf) and then
//! looks traces up by ID through the Tempo API, reporting ingest throughput,
//! raw OTLP bytes per span and lookup latency percentiles.
//!
//! ```text
//! ts1-load --spans 1000000 --otlp http://127.0.0.1:4318 --query http://127.0.0.1:3200
//! ts1-load --skip-ingest --ids ids.txt ...   # look up traces sent earlier
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_benches::{Ts1, Ts1Config};
use tokio::sync::Semaphore;

#[derive(Debug, Parser)]
#[command(about = "TS-1 load generator for Strata (ingest over OTLP/HTTP, trace-by-ID queries)")]
struct Args {
    /// OTLP/HTTP base URL.
    #[arg(long, default_value = "http://127.0.0.1:4318")]
    otlp: String,
    /// Tempo API base URL.
    #[arg(long, default_value = "http://127.0.0.1:3200")]
    query: String,
    /// Spans to send.
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
    /// Spans per export request (512 = SDK default, 8192 = collector-style).
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Export requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Trace-by-ID lookups to run after ingest.
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the IDs of sent traces here (one hex ID per line).
    #[arg(long)]
    save_ids: Option<PathBuf>,
    /// Skip ingest and look up the IDs in this file instead.
    #[arg(long)]
    ids: Option<PathBuf>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;

    let ids: Vec<String> = match &args.ids {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .map(str::to_owned)
            .collect(),
        None => ingest(&args, &client).await?,
    };
    if let Some(path) = &args.save_ids {
        std::fs::write(path, ids.join("\n"))?;
    }
    query(&args, &client, &ids).await
}

async fn ingest(
    args: &Args,
    client: &reqwest::Client,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut ts1 = Ts1::new(&Ts1Config {
        seed: args.seed,
        ..Ts1Config::default()
    });
    let url = format!("{}/v1/traces", args.otlp.trim_end_matches('/'));
    let permits = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = Vec::new();
    let (mut sent_spans, mut sent_bytes) = (0usize, 0usize);
    let started = Instant::now();
    while sent_spans < args.spans {
        let request = ts1.request(args.batch);
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            sent_spans += 1;
            if span.parent_span_id.is_empty() {
                ids.push(hex::encode(&span.trace_id));
            }
        }
        let body = request.encode_to_vec();
        sent_bytes += body.len();
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            // Like an OTel SDK: back off and retry while Strata pushes back.
            let mut delay = Duration::from_millis(50);
            let result = loop {
                let response = client
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => break Ok(()),
                    Ok(r) if matches!(r.status().as_u16(), 429 | 503) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    Ok(r) => break Err(format!("export failed: {}", r.status())),
                    Err(e) => break Err(format!("export failed: {e}")),
                }
            };
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let elapsed = started.elapsed();
    println!(
        "ingest: {sent_spans} spans, {} traces in {:.2}s = {:.0} spans/s; raw OTLP {:.0} B/span; batch {}",
        ids.len(),
        elapsed.as_secs_f64(),
        sent_spans as f64 / elapsed.as_secs_f64(),
        sent_bytes as f64 / sent_spans as f64,
        args.batch
    );
    Ok(ids)
}

async fn query(
    args: &Args,
    client: &reqwest::Client,
    ids: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    if ids.is_empty() || args.queries == 0 {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut found = Vec::with_capacity(args.queries);
    let mut missing = Vec::new();
    for n in 0..args.queries {
        // 5% of lookups are for IDs that do not exist.
        let absent = n % 20 == 19;
        let id = if absent {
            hex::encode(rng.random::<[u8; 16]>())
        } else {
            ids[rng.random_range(0..ids.len())].clone()
        };
        let url = format!("{}/api/traces/{id}", args.query.trim_end_matches('/'));
        let started = Instant::now();
        let response = client
            .get(url)
            .header("Accept", "application/protobuf")
            .send()
            .await?;
        let status = response.status();
        let _body = response.bytes().await?;
        let elapsed = started.elapsed();
        match (absent, status.as_u16()) {
            (true, 404) => missing.push(elapsed),
            (false, 200) => found.push(elapsed),
            (_, code) => return Err(format!("lookup of {id} answered {code}").into()),
        }
    }
    found.sort();
    missing.sort();
    println!(
        "trace-by-ID: {} found: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} absent: p50 {:.1} ms",
        found.len(),
        percentile(&found, 0.5).as_secs_f64() * 1e3,
        percentile(&found, 0.99).as_secs_f64() * 1e3,
        found.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        missing.len(),
        percentile(&missing, 0.5).as_secs_f64() * 1e3,
    );
    Ok(())
}
