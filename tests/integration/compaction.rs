//! Two compactor processes over one store while a client keeps querying,
//! one of them killed in the middle of a job: no span lost, none
//! duplicated, no query error, and the killed job is finished by the other.
//! Also `strata compact --once` and `strata blocks list|inspect`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use futures::{StreamExt, TryStreamExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use object_store::{ObjectStore, ObjectStoreExt};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata_common::block::{BlockWriteOptions, read_block, write_block};
use strata_common::catalog::list_block_objects;
use strata_common::convert::request_to_batch;
use strata_common::schema::columns;
use strata_common::testing::request_with_spans;
use strata_common::{BlockMeta, TenantId, paths};
use strata_compactor::{CompactorConfig, MetaCache, TenantState, plan_jobs};
use strata_querier::tempopb::TraceByIdResponse;

use crate::support::process::Options;
use crate::support::storage::TestStorage;
use crate::support::{Strata, http_client};

/// Span IDs by trace ID (hex).
type Expected = BTreeMap<String, BTreeSet<[u8; 8]>>;

const TRACES: usize = 120;
const BLOCKS: usize = 24;

fn attribute(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// Writes `BLOCKS` level-0 blocks in which every trace is spread over
/// several blocks, and one block that repeats another exactly (an export
/// retried after its acknowledgement was lost).
async fn write_fixture(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
) -> (Expected, Vec<BlockMeta>) {
    let mut rng = StdRng::seed_from_u64(7);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let traces: Vec<[u8; 16]> = (0..TRACES).map(|_| rng.random()).collect();
    let mut expected = Expected::new();
    let mut blocks: Vec<Vec<Span>> = vec![Vec::new(); BLOCKS - 1];
    for trace in &traces {
        for _ in 0..rng.random_range(8..=40) {
            let span_id: [u8; 8] = rng.random();
            let start = now - rng.random_range(1_000_000_000..600_000_000_000u64);
            let span = Span {
                trace_id: trace.to_vec(),
                span_id: span_id.to_vec(),
                name: format!("op-{}", rng.random_range(0..20)),
                start_time_unix_nano: start,
                end_time_unix_nano: start + rng.random_range(1_000..5_000_000),
                attributes: vec![attribute(
                    "http.route",
                    format!("/r/{}", rng.random_range(0..50)),
                )],
                ..Span::default()
            };
            expected
                .entry(hex::encode(trace))
                .or_default()
                .insert(span_id);
            blocks[rng.random_range(0..BLOCKS - 1)].push(span);
        }
    }
    let duplicate = blocks[3].clone();
    blocks.push(duplicate);
    let mut metas = Vec::new();
    for spans in blocks {
        let batch = request_to_batch(&request_with_spans(spans)).unwrap();
        let meta = write_block(
            Arc::clone(store),
            tenant.clone(),
            vec![batch],
            0,
            BlockWriteOptions::default(),
        )
        .await
        .unwrap();
        metas.push(meta);
    }
    (expected, metas)
}

/// Fetches a trace and compares its span IDs with `want`; `Err` describes
/// any difference or failure.
async fn check_trace(
    client: &reqwest::Client,
    http: &str,
    trace: &str,
    want: &BTreeSet<[u8; 8]>,
) -> Result<(), String> {
    let response = client
        .get(format!("{http}/api/v2/traces/{trace}"))
        .header("Accept", "application/protobuf")
        .send()
        .await
        .map_err(|e| format!("{trace}: request failed: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{trace}: body: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{trace}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let response =
        TraceByIdResponse::decode(body.as_ref()).map_err(|e| format!("{trace}: decode: {e}"))?;
    if response.status != 0 {
        return Err(format!("{trace}: partial: {}", response.message));
    }
    let ids: Vec<[u8; 8]> = response
        .trace
        .unwrap_or_default()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.span_id.as_slice().try_into().unwrap())
        .collect();
    let got: BTreeSet<[u8; 8]> = ids.iter().copied().collect();
    if got.len() != ids.len() {
        return Err(format!(
            "{trace}: {} spans, {} distinct",
            ids.len(),
            got.len()
        ));
    }
    if &got != want {
        return Err(format!("{trace}: {} spans, want {}", got.len(), want.len()));
    }
    Ok(())
}

/// Every (trace, span) row in the tenant's live blocks, read from storage.
async fn stored_spans(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
) -> (usize, Vec<(String, [u8; 8])>) {
    let state = TenantState::load(store.as_ref(), tenant, &mut MetaCache::default())
        .await
        .unwrap();
    let mut rows = Vec::new();
    for meta in state.live.values() {
        for batch in read_block(Arc::clone(store), meta).await.unwrap() {
            let traces = batch
                .column_by_name(columns::TRACE_ID)
                .unwrap()
                .as_fixed_size_binary();
            let spans = batch
                .column_by_name(columns::SPAN_ID)
                .unwrap()
                .as_fixed_size_binary();
            for row in 0..batch.num_rows() {
                rows.push((
                    hex::encode(traces.value(row)),
                    spans.value(row).try_into().unwrap(),
                ));
            }
        }
    }
    (state.live.len(), rows)
}

async fn lease_bodies(store: &Arc<dyn ObjectStore>) -> Vec<serde_json::Value> {
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut bodies = Vec::new();
    for object in objects {
        let is_lease = object
            .location
            .filename()
            .is_some_and(|f| f.starts_with(paths::LEASE_FILE_PREFIX));
        // A lease may be released between the LIST and the GET.
        if is_lease
            && let Ok(result) = store.get(&object.location).await
            && let Ok(bytes) = result.bytes().await
            && let Ok(body) = serde_json::from_slice(&bytes)
        {
            bodies.push(body);
        }
    }
    bodies
}

fn compactor_args(storage: &TestStorage) -> Options<'static> {
    Options {
        args: [
            "--target",
            "compactor",
            "--compaction-interval",
            "500ms",
            "--compaction-max-input-blocks",
            "3",
            "--compaction-lease-ttl",
            "4s",
            "--blocklist-poll",
            "1s",
            "--deletion-delay",
            "2s",
        ]
        .map(String::from)
        .to_vec(),
        env: storage.env.clone(),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_compactors_and_a_kill_lose_and_duplicate_nothing_while_queries_run() {
    let storage = TestStorage::s3().unwrap_or_else(TestStorage::local);
    let store = storage.store();
    let tenant = TenantId::default_tenant();
    let (expected, inputs) = write_fixture(&store, &tenant).await;
    let expected = Arc::new(expected);

    let querier = Strata::start(
        &storage.url,
        storage.dir.path(),
        Options {
            args: [
                "--target",
                "querier",
                "--blocklist-poll",
                "1s",
                "--deletion-delay",
                "2s",
            ]
            .map(String::from)
            .to_vec(),
            env: storage.env.clone(),
            ..Options::default()
        },
    );
    // Every trace reads back whole before compaction starts.
    let client = http_client();
    for (trace, want) in expected.iter() {
        check_trace(&client, &querier.http, trace, want)
            .await
            .unwrap();
    }

    // A client querying every trace, over and over, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let queries = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, errors, queries, expected) = (
            Arc::clone(&stop),
            Arc::clone(&errors),
            Arc::clone(&queries),
            Arc::clone(&expected),
        );
        let http = querier.http.clone();
        tokio::spawn(async move {
            let client = http_client();
            while !stop.load(Ordering::Relaxed) {
                let round: Vec<(String, BTreeSet<[u8; 8]>)> = expected
                    .iter()
                    .map(|(t, w)| (t.clone(), w.clone()))
                    .collect();
                let found: Vec<Result<(), String>> = futures::stream::iter(round)
                    .map(|(trace, want)| {
                        let (client, http) = (client.clone(), http.clone());
                        async move { check_trace(&client, &http, &trace, &want).await }
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await;
                queries.fetch_add(found.len(), Ordering::Relaxed);
                errors
                    .lock()
                    .unwrap()
                    .extend(found.into_iter().filter_map(Result::err));
            }
        })
    };

    let mut compactors = vec![
        Strata::start(&storage.url, storage.dir.path(), compactor_args(&storage)),
        Strata::start(&storage.url, storage.dir.path(), compactor_args(&storage)),
    ];

    // Kill whichever compactor is first seen holding a lease, mid-job.
    let pids: Vec<i32> = compactors.iter().map(|c| c.pid().as_raw()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed_job = loop {
        assert!(Instant::now() < deadline, "no compaction job seen in 60 s");
        let held = lease_bodies(&store).await.into_iter().find_map(|body| {
            let pid: i32 = body["owner"].as_str()?.rsplit('/').next()?.parse().ok()?;
            pids.contains(&pid).then_some((pid, body))
        });
        if let Some((pid, body)) = held {
            kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
            break body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_pid: i32 = killed_job["owner"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let survivor = compactors
        .iter()
        .position(|c| c.pid().as_raw() != killed_pid)
        .unwrap();
    let survivor = compactors.remove(survivor);

    // The survivor finishes everything, the killed job included once its
    // lease lapses: few live blocks, nothing left to compact, no leases.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let listing = list_block_objects(store.as_ref(), &tenant, None)
            .await
            .unwrap();
        let state = TenantState::load(store.as_ref(), &tenant, &mut MetaCache::default())
            .await
            .unwrap();
        let leases = listing.values().map(|b| b.leases().len()).sum::<usize>();
        let inputs_retired = inputs.iter().all(|m| !state.live.contains_key(&m.block_id));
        // The compactors' settings: nothing left that they could merge.
        let settings = CompactorConfig {
            max_input_blocks: 3,
            ..CompactorConfig::default()
        };
        let live: Vec<_> = state.live.values().cloned().collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let done = plan_jobs(&live, &settings, now).is_empty();
        if done && leases == 0 && inputs_retired && state.compacted.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not settle: {} live, {} compacted, {leases} leases; survivor log:\n{}",
            state.live.len(),
            state.compacted.len(),
            survivor.log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Keep querying across at least two more polls and a full round, then stop.
    let settled = queries.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    while queries.load(Ordering::Relaxed) < settled + TRACES {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();

    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} query errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );

    // The killed job's output is either committed (it got that far) or
    // gone: a partial output never stays behind.
    let output: strata_common::BlockId = killed_job["output"].as_str().unwrap().parse().unwrap();
    let listing = list_block_objects(store.as_ref(), &tenant, None)
        .await
        .unwrap();
    if let Some(objects) = listing.get(&output) {
        assert!(
            objects.committed || objects.compacted,
            "partial output {output} left behind"
        );
    }

    // In storage: every span exactly once, in a few large blocks.
    let (live_blocks, rows) = stored_spans(&store, &tenant).await;
    // 24 blocks merged three at a time leave at most one block per level.
    assert!(live_blocks <= 4, "{live_blocks} live blocks");
    let mut seen = HashSet::new();
    for (trace, span) in &rows {
        assert!(
            seen.insert((trace.clone(), *span)),
            "span {trace}/{} stored twice",
            hex::encode(span)
        );
    }
    let want: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(rows.len(), want, "every span stored once");
    for (trace, spans) in expected.iter() {
        for span in spans {
            assert!(
                seen.contains(&(trace.clone(), *span)),
                "span {trace}/{} lost",
                hex::encode(span)
            );
        }
    }
    let log = survivor.log_text();
    assert!(log.contains("compacted blocks"), "survivor log:\n{log}");
    survivor.terminate();
    querier.terminate();
}

fn strata_command(storage: &TestStorage, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .args(["--storage", &storage.url])
        .envs(storage.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn compact_once_and_the_blocks_commands() {
    let storage = TestStorage::local();
    let store = storage.store();
    let tenant = TenantId::default_tenant();
    let (expected, inputs) = write_fixture(&store, &tenant).await;

    let (ok, list, err) = strata_command(&storage, &["blocks", "list"]);
    assert!(ok, "{err}");
    assert!(
        list.contains(&format!("{BLOCKS} blocks, {BLOCKS} live")),
        "{list}"
    );

    let (ok, out, err) = strata_command(&storage, &["compact", "--once", "--json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["jobs_failed"], 0, "{report}");
    assert_eq!(
        report["blocks_in"].as_u64().unwrap() as usize,
        BLOCKS + report["jobs_run"].as_u64().unwrap() as usize - 1,
        "{report}"
    );
    assert_eq!(report["live_blocks"], 1, "{report}");
    assert_eq!(report["outstanding_blocks"], 0, "{report}");
    assert!(
        report["merge"]["duplicates_dropped"].as_u64().unwrap() > 0,
        "{report}"
    );
    let spans: usize = expected.values().map(BTreeSet::len).sum();
    assert_eq!(
        report["merge"]["spans_in"].as_u64().unwrap() as usize
            - report["merge"]["duplicates_dropped"].as_u64().unwrap() as usize,
        report["merge"]["spans_out"].as_u64().unwrap() as usize
    );

    let (ok, out, err) = strata_command(&storage, &["blocks", "list", "--json"]);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let live: Vec<_> = rows.iter().filter(|r| r["state"] == "live").collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["spans"].as_u64().unwrap() as usize, spans);
    assert!(live[0]["level"].as_u64().unwrap() >= 2);
    assert!(rows.iter().filter(|r| r["state"] == "compacted").count() >= BLOCKS);

    let (ok, out, err) = strata_command(
        &storage,
        &["blocks", "inspect", &inputs[0].block_id.to_string()],
    );
    assert!(ok, "{err}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["state"], "compacted");
    assert_eq!(inspected["compacted"]["reason"], "compaction");
    assert!(inspected["objects"].as_array().unwrap().len() >= 3);

    let (ok, _, err) = strata_command(&storage, &["blocks", "inspect", "not-a-block-id"]);
    assert!(!ok);
    assert!(err.contains("invalid block ID"), "{err}");
}
