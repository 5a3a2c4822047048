#![allow(clippy::unwrap_used)]

//! Hot paths of ingest and block cutting on TS-1 data: OTLP decode, OTLP →
//! Arrow, block encoding (sort, Parquet, bloom) and the bloom probe.
//!
//! Throughput is reported in spans/s (criterion "elements").

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use strata_benches::{Ts1, Ts1Config, Workload, request_spans};
use strata_common::block::{BlockWriteOptions, encode_block};
use strata_common::bloom::{BloomShard, build_shards, shard_for};
use strata_common::convert::request_to_batch;
use strata_common::{BlockId, TenantId, TraceId};

fn ingest(c: &mut Criterion) {
    let request = Ts1::new(&Ts1Config::default()).request(8_192);
    let spans = request_spans(&request).count() as u64;
    let encoded = request.encode_to_vec();

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(spans));
    group.bench_function("otlp_protobuf_decode", |b| {
        b.iter(|| ExportTraceServiceRequest::decode(black_box(encoded.as_slice())).unwrap())
    });
    group.bench_function("otlp_to_arrow", |b| {
        b.iter(|| request_to_batch(black_box(&request)).unwrap())
    });
    group.finish();
}

fn block(c: &mut Criterion) {
    let mut ts1 = Ts1::new(&Ts1Config::default());
    let batches: Vec<_> = (0..8)
        .map(|_| request_to_batch(&ts1.request(8_192)).unwrap())
        .collect();
    let spans: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let options = BlockWriteOptions::default();
    let tenant = TenantId::default_tenant();

    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(spans));
    group.sample_size(10);
    group.bench_function("encode", |b| {
        b.iter(|| {
            encode_block(
                tenant.clone(),
                BlockId::new_v7(),
                0,
                black_box(&batches),
                &options,
            )
            .unwrap()
        })
    });
    group.finish();
}

fn bloom(c: &mut Criterion) {
    let ids: Vec<TraceId> = (0..100_000u64)
        .map(|n| {
            let x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&x.to_be_bytes());
            bytes[8..].copy_from_slice(&(!x).to_le_bytes());
            TraceId::new(bytes)
        })
        .collect();
    let (params, shards) = build_shards(&ids, 0.01, 100 * 1024).unwrap();
    let shards: Vec<BloomShard> = shards
        .into_iter()
        .map(|s| BloomShard::from_bytes(s).unwrap())
        .collect();
    let mut group = c.benchmark_group("bloom");
    group.throughput(Throughput::Elements(1));
    group.bench_function("probe", |b| {
        let mut n = 0usize;
        b.iter_batched(
            || {
                n = (n + 7919) % ids.len();
                ids[n]
            },
            |id| shards[shard_for(&id, params.shard_count) as usize].may_contain(black_box(&id)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ingest, block, bloom);
criterion_main!(benches);
