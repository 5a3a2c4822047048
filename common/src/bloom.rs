//! The per-block trace-ID bloom filter, sharded into small objects.
//!
//! A lookup needs one shard, chosen by hashing the trace ID, so the querier
//! fetches (and caches) a few KiB per block rather than the whole filter.
//! Hashing is fixed by this module: the shard function is 32-bit FNV-1a and
//! each shard is a `bloomfilter::Bloom` with a constant seed, hashing the 16
//! raw ID bytes. Changing any of these breaks lookups in existing blocks, so
//! they are recorded in `meta.json` (`bloom.hash`) and versioned.

use std::hash::{Hash, Hasher};

use bloomfilter::Bloom;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ids::TraceId;

/// Name of the shard/hash scheme written to `meta.json`.
pub const BLOOM_HASH_SCHEME: &str = "fnv1a32-shard/siphash13-bloomfilter3";

/// Fixed seed of every shard's hash functions. Part of the block format.
const SEED: [u8; 32] = *b"strata-trace-id-bloom-seed-v1\0\0\0";

/// The most shards a block may have; beyond it shards grow instead.
const MAX_SHARDS: usize = 1000;

/// Bloom settings recorded in a block's `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BloomParams {
    /// Number of `bloom-<n>` objects.
    pub shard_count: u32,
    /// Target false-positive rate each shard was sized for.
    pub false_positive_rate: f64,
    /// The shard/hash scheme, [`BLOOM_HASH_SCHEME`].
    pub hash: String,
}

/// Hashes the raw ID bytes. `Hash` for arrays is not guaranteed stable across
/// Rust releases, so the bytes are written directly.
struct TraceIdKey([u8; 16]);

impl Hash for TraceIdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

/// 32-bit FNV-1a, the shard selector (the same family Tempo uses).
fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Which shard holds a trace ID.
pub fn shard_for(trace_id: &TraceId, shard_count: u32) -> u32 {
    fnv1a_32(trace_id.as_bytes()) % shard_count.max(1)
}

/// How many shards a filter of `items` IDs at `false_positive_rate` needs.
fn shard_count(items: usize, false_positive_rate: f64, max_shard_bytes: usize) -> Result<usize> {
    if !(false_positive_rate > 0.0 && false_positive_rate < 1.0) {
        return Err(Error::Config {
            message: format!("bloom false-positive rate {false_positive_rate} must be in (0, 1)"),
        });
    }
    let total_bytes = Bloom::<TraceIdKey>::compute_bitmap_size(items.max(1), false_positive_rate);
    Ok(total_bytes
        .div_ceil(max_shard_bytes.max(1))
        .clamp(1, MAX_SHARDS))
}

fn new_shard(items: usize, false_positive_rate: f64) -> Result<Bloom<TraceIdKey>> {
    Bloom::new_for_fp_rate_with_seed(items.max(1), false_positive_rate, &SEED).map_err(|e| {
        Error::Config {
            message: format!("bloom filter: {e}"),
        }
    })
}

fn params(shard_count: usize, false_positive_rate: f64) -> BloomParams {
    BloomParams {
        shard_count: u32::try_from(shard_count).unwrap_or(u32::MAX),
        false_positive_rate,
        hash: BLOOM_HASH_SCHEME.to_owned(),
    }
}

/// Builds the shards for a set of distinct trace IDs; returns their
/// parameters and serialized bytes, shard 0 first. Each shard is sized for
/// the IDs that fall in it.
pub fn build_shards(
    trace_ids: &[TraceId],
    false_positive_rate: f64,
    max_shard_bytes: usize,
) -> Result<(BloomParams, Vec<Vec<u8>>)> {
    let shard_count = shard_count(trace_ids.len(), false_positive_rate, max_shard_bytes)?;
    let params = params(shard_count, false_positive_rate);
    let mut per_shard: Vec<Vec<&TraceId>> = vec![Vec::new(); shard_count];
    for id in trace_ids {
        per_shard[shard_for(id, params.shard_count) as usize].push(id);
    }
    let mut shards = Vec::with_capacity(shard_count);
    for ids in per_shard {
        let mut bloom = new_shard(ids.len(), false_positive_rate)?;
        for id in ids {
            bloom.set(&TraceIdKey(*id.as_bytes()));
        }
        shards.push(bloom.into_bytes());
    }
    Ok((params, shards))
}

/// Builds shards from trace IDs that arrive one at a time (a compaction
/// merge), sized up front for an upper bound on their number: the sum of
/// the inputs' trace counts. Fragments joined by the merge only make the
/// filter emptier than planned, so the false-positive rate holds.
#[derive(Debug)]
pub struct BloomBuilder {
    shards: Vec<Bloom<TraceIdKey>>,
    params: BloomParams,
}

impl BloomBuilder {
    /// A builder for at most about `expected_items` distinct IDs.
    pub fn new(
        expected_items: usize,
        false_positive_rate: f64,
        max_shard_bytes: usize,
    ) -> Result<Self> {
        let shard_count = shard_count(expected_items, false_positive_rate, max_shard_bytes)?;
        // IDs spread over shards by hash, so a shard receives its share
        // give or take a few standard deviations: 5% and a constant cover it.
        let per_shard = expected_items / shard_count + expected_items / shard_count / 20 + 16;
        let shards = (0..shard_count)
            .map(|_| new_shard(per_shard, false_positive_rate))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            shards,
            params: params(shard_count, false_positive_rate),
        })
    }

    /// Adds one ID.
    pub fn insert(&mut self, trace_id: &TraceId) {
        let shard = shard_for(trace_id, self.params.shard_count) as usize;
        if let Some(bloom) = self.shards.get_mut(shard) {
            bloom.set(&TraceIdKey(*trace_id.as_bytes()));
        }
    }

    /// The parameters and serialized shards, shard 0 first.
    pub fn finish(self) -> (BloomParams, Vec<Vec<u8>>) {
        (
            self.params,
            self.shards.into_iter().map(Bloom::into_bytes).collect(),
        )
    }
}

/// One deserialized shard.
#[derive(Debug)]
pub struct BloomShard(Bloom<TraceIdKey>);

impl std::fmt::Debug for TraceIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl BloomShard {
    /// Parses a shard object.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Bloom::from_bytes(bytes)
            .map(Self)
            .map_err(|e| Error::corrupt(format!("bloom shard: {e}")))
    }

    /// Whether the trace ID may be in the block (false means certainly not).
    pub fn may_contain(&self, trace_id: &TraceId) -> bool {
        self.0.check(&TraceIdKey(*trace_id.as_bytes()))
    }

    /// Size of the bitmap in bytes, for cache accounting.
    pub fn size_bytes(&self) -> usize {
        self.0.as_slice().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<TraceId> {
        (0..n)
            .map(|i| {
                let mut bytes = [0u8; 16];
                bytes[..4].copy_from_slice(&i.to_be_bytes());
                bytes[8..12].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_le_bytes());
                TraceId::new(bytes)
            })
            .collect()
    }

    #[test]
    fn every_inserted_id_is_found_in_its_shard() {
        let ids = ids(20_000);
        let (params, shards) = build_shards(&ids, 0.01, 4096).unwrap();
        assert!(params.shard_count > 1, "small shards force sharding");
        assert_eq!(shards.len(), params.shard_count as usize);
        let shards: Vec<BloomShard> = shards
            .into_iter()
            .map(|b| BloomShard::from_bytes(b).unwrap())
            .collect();
        for id in &ids {
            assert!(shards[shard_for(id, params.shard_count) as usize].may_contain(id));
        }
    }

    #[test]
    fn false_positive_rate_is_near_target() {
        let (params, shards) = build_shards(&ids(10_000), 0.01, 1 << 20).unwrap();
        let shards: Vec<BloomShard> = shards
            .into_iter()
            .map(|b| BloomShard::from_bytes(b).unwrap())
            .collect();
        let absent: Vec<TraceId> = (0..10_000u32)
            .map(|i| {
                let mut bytes = [0xffu8; 16];
                bytes[4..8].copy_from_slice(&i.to_le_bytes());
                TraceId::new(bytes)
            })
            .collect();
        let hits = absent
            .iter()
            .filter(|id| shards[shard_for(id, params.shard_count) as usize].may_contain(id))
            .count();
        assert!(hits < 300, "{hits} false positives in 10k");
    }

    #[test]
    fn streamed_ids_are_found_and_the_rate_holds() {
        let ids = ids(20_000);
        let mut builder = BloomBuilder::new(ids.len(), 0.01, 4096).unwrap();
        for id in &ids {
            builder.insert(id);
        }
        let (params, shards) = builder.finish();
        assert!(params.shard_count > 1);
        let shards: Vec<BloomShard> = shards
            .into_iter()
            .map(|b| BloomShard::from_bytes(b).unwrap())
            .collect();
        let probe =
            |id: &TraceId| shards[shard_for(id, params.shard_count) as usize].may_contain(id);
        assert!(ids.iter().all(probe));
        let false_positives = (0..10_000u32)
            .map(|i| {
                let mut bytes = [0xeeu8; 16];
                bytes[4..8].copy_from_slice(&i.to_le_bytes());
                TraceId::new(bytes)
            })
            .filter(|id| probe(id))
            .count();
        assert!(
            false_positives < 300,
            "{false_positives} false positives in 10k"
        );
    }

    #[test]
    fn shard_function_is_stable() {
        // Pinned: changing it would make every existing block unreadable.
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
    }
}
