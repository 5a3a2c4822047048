#![allow(clippy::unwrap_used)]

//! Compaction on a real local store: many small blocks holding fragments of
//! the same traces (and duplicated spans) become one block in which every
//! trace is contiguous and every span appears once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, RecordBatch};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use strata_common::block::{
    BlockWriteOptions, StreamingBlockWriter, read_block, read_meta, write_block,
};
use strata_common::catalog::{TenantIndex, read_compacted_meta};
use strata_common::convert::request_to_batch;
use strata_common::schema::columns;
use strata_common::storage::get_bytes;
use strata_common::testing::request_with_spans;
use strata_common::{BlockMeta, TenantId, paths};
use strata_compactor::{Compactor, CompactorConfig, MetaCache, TenantState};

const TRACES: u8 = 60;
const BLOCKS: usize = 12;

fn span(trace: u8, span: u8, start: u64, label: &str) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: format!("span-{span}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_000,
        attributes: vec![KeyValue {
            key: "label".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(label.into())),
            }),
            ..KeyValue::default()
        }],
        ..Span::default()
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn local_store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    (dir, store)
}

async fn write(store: &Arc<dyn ObjectStore>, tenant: &TenantId, spans: Vec<Span>) -> BlockMeta {
    let batch = request_to_batch(&request_with_spans(spans)).unwrap();
    write_block(
        Arc::clone(store),
        tenant.clone(),
        vec![batch],
        0,
        BlockWriteOptions::default(),
    )
    .await
    .unwrap()
}

/// (trace, span, label) of every row, in block order.
fn rows(batches: &[RecordBatch]) -> Vec<(u8, u8, u64, String)> {
    let mut out = Vec::new();
    for batch in batches {
        let traces = batch
            .column_by_name(columns::TRACE_ID)
            .unwrap()
            .as_fixed_size_binary();
        let spans = batch
            .column_by_name(columns::SPAN_ID)
            .unwrap()
            .as_fixed_size_binary();
        let starts = batch
            .column_by_name(columns::START_TIME)
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let attributes = batch
            .column_by_name(columns::ATTRIBUTES)
            .unwrap()
            .as_list::<i32>();
        for row in 0..batch.num_rows() {
            let attrs = attributes.value(row);
            let label = attrs
                .as_struct()
                .column_by_name("str")
                .unwrap()
                .as_string::<i32>()
                .value(0)
                .to_owned();
            out.push((
                traces.value(row)[0],
                spans.value(row)[0],
                starts.value(row) as u64,
                label,
            ));
        }
    }
    out
}

#[tokio::test]
async fn small_blocks_become_one_with_fragments_joined_and_duplicates_dropped() {
    let (_dir, store) = local_store();
    let tenant = TenantId::new("acme").unwrap();
    let base = now_nanos() - 60_000_000_000;

    // Every trace has one span in every block, so each is in 12 fragments.
    let mut expected = BTreeMap::new();
    let mut inputs = Vec::new();
    for block in 0..BLOCKS {
        let mut spans = Vec::new();
        for trace in 1..=TRACES {
            let start = base + (block as u64) * 1_000_000 + u64::from(trace);
            let s = span(trace, block as u8 + 1, start, "original");
            expected.insert((trace, block as u8 + 1), (start, "original".to_owned()));
            spans.push(s);
        }
        // Block 3 repeats block 2's spans of trace 5 exactly (a retried
        // export): they must appear once.
        if block == 3 {
            spans.push(span(5, 3, base + 2_000_000 + 5, "original"));
        }
        // Block 4 has a span with block 1's ID for trace 9 but different
        // content: not a duplicate, both stay.
        if block == 4 {
            spans.push(span(9, 2, base + 1_000_000 + 9, "changed"));
        }
        inputs.push(write(&store, &tenant, spans).await);
    }
    let input_spans: u64 = inputs.iter().map(|m| m.span_count).sum();
    assert_eq!(input_spans, u64::from(TRACES) * BLOCKS as u64 + 2);

    let compactor = Compactor::new(
        Arc::clone(&store),
        CompactorConfig {
            max_input_blocks: 4,
            ..CompactorConfig::default()
        },
    );
    let report = compactor.run_once(SystemTime::now()).await.unwrap();
    // 12 level-0 blocks -> 3 level-1 -> 1 level-2.
    assert_eq!(report.jobs_run, 4, "{report:?}");
    assert_eq!(report.jobs_failed, 0);
    assert_eq!(report.live_blocks, 1);
    assert_eq!(report.outstanding_blocks, 0);
    assert_eq!(report.merge.duplicates_dropped, 1);

    let state = load_state(&store, &tenant).await;
    assert_eq!(state.live.len(), 1);
    assert_eq!(
        state.compacted.len(),
        BLOCKS + 3,
        "inputs stay through the grace period"
    );
    let output = state.live.values().next().unwrap();
    assert_eq!(output.compaction_level, 2);
    assert_eq!(output.trace_count, u64::from(TRACES));
    assert_eq!(output.span_count, input_spans - 1);
    assert_eq!(
        output.start_time_unix_nano,
        inputs.iter().map(|m| m.start_time_unix_nano).min().unwrap()
    );
    assert_eq!(
        output.end_time_unix_nano,
        inputs.iter().map(|m| m.end_time_unix_nano).max().unwrap()
    );
    assert!(output.attribute_keys.span.contains("label"));

    let batches = read_block(Arc::clone(&store), output).await.unwrap();
    let rows = rows(&batches);
    assert_eq!(rows.len() as u64, input_spans - 1);
    // Sorted by trace, then start: each trace is one contiguous run.
    assert!(
        rows.windows(2)
            .all(|w| (w[0].0, w[0].2) <= (w[1].0, w[1].2))
    );
    let mut seen = HashSet::new();
    for (trace, span, start, label) in &rows {
        if label == "changed" {
            assert_eq!((*trace, *span), (9, 2));
            continue;
        }
        assert!(
            seen.insert((*trace, *span)),
            "span {trace}/{span} appears twice"
        );
        assert_eq!(expected[&(*trace, *span)], (*start, label.clone()));
    }
    assert_eq!(seen.len(), expected.len());

    // Inputs are marked and name their replacement chain; the index lists
    // the one live block.
    let marker = read_compacted_meta(store.as_ref(), &tenant, inputs[0].block_id)
        .await
        .unwrap()
        .unwrap();
    assert!(marker.replaced_by.is_some());
    assert!(
        read_meta(store.as_ref(), &tenant, inputs[0].block_id)
            .await
            .unwrap()
            .is_none()
    );
    let path = paths::tenant_index_path(&tenant);
    let index =
        TenantIndex::decode(&get_bytes(store.as_ref(), &path).await.unwrap(), &path).unwrap();
    assert_eq!(index.blocks.len(), 1);
    assert_eq!(index.blocks[0].block_id, output.block_id);
    assert_eq!(index.compacted.len(), BLOCKS + 3);

    // After the grace period only the output's objects are left.
    let later = SystemTime::now() + Duration::from_secs(301);
    let report = compactor.run_once(later).await.unwrap();
    assert_eq!(report.retirement.blocks_deleted, BLOCKS + 3);
    let state = load_state(&store, &tenant).await;
    assert_eq!(state.objects.len(), 1);
    assert!(state.compacted.is_empty());
}

#[tokio::test]
async fn a_committed_output_hides_its_inputs_and_the_next_pass_marks_them() {
    // A compactor that died after committing its output but before marking
    // the inputs: readers already ignore the inputs; the next pass marks them.
    let (_dir, store) = local_store();
    let tenant = TenantId::new("acme").unwrap();
    let now = now_nanos();
    let input = write(&store, &tenant, vec![span(1, 1, now, "original")]).await;
    let batches = read_block(Arc::clone(&store), &input).await.unwrap();
    let mut writer = StreamingBlockWriter::new(
        Arc::clone(&store),
        tenant.clone(),
        strata_common::BlockId::new_v7(),
        1,
        1,
        Vec::new(),
        BlockWriteOptions::default(),
    )
    .unwrap();
    for batch in &batches {
        writer.write(batch).await.unwrap();
    }
    let output = writer.finish(vec![input.block_id]).await.unwrap();

    let state = load_state(&store, &tenant).await;
    assert_eq!(
        state.live.keys().copied().collect::<Vec<_>>(),
        vec![output.block_id]
    );
    assert_eq!(state.replaced_unmarked.len(), 1);

    let compactor = Compactor::new(Arc::clone(&store), CompactorConfig::default());
    let report = compactor.run_once(SystemTime::now()).await.unwrap();
    assert_eq!(report.retirement.blocks_rolled_forward, 1);
    let marker = read_compacted_meta(store.as_ref(), &tenant, input.block_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.replaced_by, Some(output.block_id));
}

#[tokio::test]
async fn with_merging_off_a_pass_only_indexes() {
    let (_dir, store) = local_store();
    let tenant = TenantId::new("acme").unwrap();
    let now = now_nanos();
    for trace in 1..=3 {
        write(&store, &tenant, vec![span(trace, 1, now, "original")]).await;
    }
    let compactor = Compactor::new(
        Arc::clone(&store),
        CompactorConfig {
            merge: false,
            ..CompactorConfig::default()
        },
    );
    let report = compactor.run_once(SystemTime::now()).await.unwrap();
    assert_eq!(report.jobs_run, 0);
    assert_eq!(report.live_blocks, 3);
    assert_eq!(report.outstanding_blocks, 3, "the three could be merged");
    let path = paths::tenant_index_path(&tenant);
    let index =
        TenantIndex::decode(&get_bytes(store.as_ref(), &path).await.unwrap(), &path).unwrap();
    assert_eq!(index.blocks.len(), 3);
}

#[tokio::test]
async fn joined_fragments_get_their_structure_and_trace_facts_recomputed() {
    let (_dir, store) = local_store();
    let tenant = TenantId::new("acme").unwrap();
    let base = now_nanos() - 60_000_000_000;
    let with_parent = |mut s: Span, parent: u8, service_kind: i32| {
        s.parent_span_id = vec![parent; 8];
        s.kind = service_kind;
        s
    };
    // Trace 1: the root and one child in the first block; a late
    // grandchild, whose parent is in the first block, in the second.
    let root = span(1, 1, base, "root");
    let child = with_parent(span(1, 2, base + 10, "child"), 1, 3);
    let late = with_parent(span(1, 3, base + 20, "late"), 2, 2);
    let first = write(&store, &tenant, vec![root, child]).await;
    let second = write(&store, &tenant, vec![late]).await;

    // Before the merge the late span is an orphan in its block.
    let orphan = strata_common::block::read_trace_table(store.as_ref(), &second)
        .await
        .unwrap()
        .entries()
        .unwrap();
    assert_eq!(orphan[0].root_span_name, None);
    assert_eq!(first.format_version, 2);

    let compactor = Compactor::new(Arc::clone(&store), CompactorConfig::default());
    let report = compactor.run_once(SystemTime::now()).await.unwrap();
    assert_eq!(report.merge.traces_joined, 1, "{report:?}");
    let state = load_state(&store, &tenant).await;
    let output = state.live.values().next().unwrap();

    // The joined trace's facts span both fragments.
    let table = strata_common::block::read_trace_table(store.as_ref(), output)
        .await
        .unwrap();
    let entry = table.entry(0).unwrap();
    assert_eq!(entry.span_count, 3);
    assert_eq!(entry.root_span_name.as_deref(), Some("span-1"));
    assert_eq!(entry.start_unix_nano, base);
    assert_eq!(entry.end_unix_nano, base + 20 + 1_000);

    // The stored nested sets: root [1,6] > child [2,5] > late [3,4].
    let path = paths::data_path(&tenant, output.block_id);
    let bytes = get_bytes(store.as_ref(), &path).await.unwrap();
    let stored: Vec<RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let column = |name: &str| -> Vec<i32> {
        stored
            .iter()
            .flat_map(|b| {
                b.column_by_name(name)
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int32Type>()
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(column("nested_set_left"), [1, 2, 3]);
    assert_eq!(column("nested_set_right"), [6, 5, 4]);
    assert_eq!(column("nested_set_parent"), [-1, 1, 2]);
    assert_eq!(column("child_count"), [1, 1, 0]);
    let summary = strata_common::block::read_summary(store.as_ref(), output)
        .await
        .unwrap();
    assert_eq!(summary.attribute("span", "label").unwrap().count, 3);
}

#[tokio::test]
async fn version_1_inputs_are_upgraded_by_the_merge() {
    // The committed version-1 fixture block plus a new block: the output is
    // version 2, and reads back the same spans.
    let (dir, store) = local_store();
    let (tenant, v1_meta) = v1_fixture(dir.path(), &store).await;
    let v1_rows = read_block(Arc::clone(&store), &v1_meta).await.unwrap();
    let v1_spans: usize = v1_rows.iter().map(RecordBatch::num_rows).sum();
    // In the same compaction window as the fixture's spans.
    let extra = span(0x0c, 1, v1_meta.start_time_unix_nano + 5, "new");
    let second = write(&store, &tenant, vec![extra]).await;

    let compactor = Compactor::new(Arc::clone(&store), CompactorConfig::default());
    // The fixture is old: judge the window as of its own time.
    let now = UNIX_EPOCH + Duration::from_nanos(second.end_time_unix_nano + 1_000_000_000);
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.jobs_run, 1, "{report:?}");
    let state = load_state(&store, &tenant).await;
    let output = state.live.values().next().unwrap();
    assert_eq!(output.format_version, 2);
    assert_eq!(output.span_count as usize, v1_spans + 1);
    assert!(
        output
            .dedicated_columns
            .iter()
            .any(|d| d.column_name() == "span.http.route"),
        "well-known keys of a version-1 input get their columns: {:?}",
        output.dedicated_columns
    );
    let merged = read_block(Arc::clone(&store), output).await.unwrap();
    let spans: usize = merged.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(spans, v1_spans + 1);
}

#[tokio::test]
async fn a_lone_version_1_block_is_upgraded() {
    let (dir, store) = local_store();
    let (tenant, v1_meta) = v1_fixture(dir.path(), &store).await;
    let compactor = Compactor::new(Arc::clone(&store), CompactorConfig::default());
    let now = UNIX_EPOCH + Duration::from_nanos(v1_meta.end_time_unix_nano + 1_000_000_000);
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.jobs_run, 1, "{report:?}");
    let state = load_state(&store, &tenant).await;
    let live: Vec<_> = state.live.values().collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].format_version, 2);
    assert_eq!(live[0].span_count, v1_meta.span_count);
    // Nothing left to do on the next pass.
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.jobs_run, 0, "{report:?}");
}

/// The tenant's blocks as a compactor sees them.
async fn load_state(store: &Arc<dyn ObjectStore>, tenant: &TenantId) -> TenantState {
    TenantState::load(store.as_ref(), tenant, &mut MetaCache::default())
        .await
        .unwrap()
}

/// The committed version-1 fixture block, copied into the store at `root`.
async fn v1_fixture(root: &std::path::Path, store: &Arc<dyn ObjectStore>) -> (TenantId, BlockMeta) {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../common/tests/fixtures/v1-block/fixture");
    let tenant = TenantId::new("fixture").unwrap();
    let target = root.join("fixture");
    std::fs::create_dir_all(&target).unwrap();
    for entry in walk(&fixture) {
        let relative = entry.strip_prefix(&fixture).unwrap();
        let to = target.join(relative);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let v1: strata_common::BlockId = "019ad000-0000-7000-8000-000000000001".parse().unwrap();
    let meta = read_meta(store.as_ref(), &tenant, v1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(meta.format_version, 1);
    (tenant, meta)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
