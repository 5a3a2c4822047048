//! Owning a job across compactor processes, through the object store alone.
//!
//! A job holds a lease on each of its input blocks: an object
//! `<tenant>/<block>/lease-<epoch>.json` created with a conditional write
//! (`PutMode::Create`), so of two compactors creating the same epoch one
//! fails. A lease is alive while its object's last-modified time is within
//! the TTL; the owner rewrites it to renew. After creating its lease a
//! compactor lists the block's leases again and backs off if any other is
//! alive: whichever of two racing compactors created second sees the first.
//!
//! A lease that expired belonged to a compactor that died (or stalled past
//! the TTL). Its body names the output block it was writing: if that block
//! is committed, the job is finished by marking its inputs; if not, the
//! partial output is deleted before the job runs again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use strata_common::catalog::block_objects;
use strata_common::storage::{delete_if_exists, get_if_exists};
use strata_common::{BlockId, TenantId, paths};

use crate::error::{Error, Result};

/// Contents of a lease object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeaseBody {
    /// Who holds it: host and process.
    pub(crate) owner: String,
    /// The block the job writes.
    pub(crate) output: BlockId,
    /// The job's inputs, every one of which carries this lease.
    pub(crate) inputs: Vec<BlockId>,
}

/// The outcome of trying to lease a job's inputs.
#[derive(Debug)]
pub(crate) enum Acquired {
    /// Every input is ours until [`JobLease::release`].
    Held(JobLease),
    /// Another compactor holds (or just took) one of the inputs.
    Conflict,
}

/// Leases held on a job's inputs.
#[derive(Debug)]
pub(crate) struct JobLease {
    tenant: TenantId,
    held: Vec<(BlockId, u64)>,
    body: Vec<u8>,
    ttl: Duration,
    renewed: SystemTime,
    /// Jobs of dead owners found on the inputs, for the caller to finish or
    /// clean up.
    pub(crate) expired: Vec<LeaseBody>,
}

fn is_alive(object: &ObjectMeta, ttl: Duration, now: SystemTime) -> bool {
    let modified =
        UNIX_EPOCH + Duration::from_millis(object.last_modified.timestamp_millis().max(0) as u64);
    modified + ttl > now
}

async fn list_leases(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    block: BlockId,
) -> Result<Vec<(u64, ObjectMeta)>> {
    let objects = block_objects(store, tenant, block).await?;
    Ok(objects
        .map(|b| {
            b.leases()
                .into_iter()
                .map(|(epoch, o)| (epoch, o.clone()))
                .collect()
        })
        .unwrap_or_default())
}

impl JobLease {
    /// Leases every input (in ID order, so racing compactors collide on the
    /// first block they share), or none.
    pub(crate) async fn acquire(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        body: &LeaseBody,
        ttl: Duration,
    ) -> Result<Acquired> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| strata_common::Error::corrupt(format!("encoding lease: {e}")))?;
        let mut lease = JobLease {
            tenant: tenant.clone(),
            held: Vec::new(),
            body: bytes,
            ttl,
            renewed: SystemTime::now(),
            expired: Vec::new(),
        };
        let mut inputs = body.inputs.clone();
        inputs.sort();
        for block in inputs {
            match lease.acquire_one(store, block).await {
                Ok(true) => {}
                Ok(false) => {
                    lease.release(store).await?;
                    metrics::counter!("strata_compactor_lease_conflicts_total").increment(1);
                    return Ok(Acquired::Conflict);
                }
                Err(e) => {
                    lease.release(store).await?;
                    return Err(e);
                }
            }
        }
        Ok(Acquired::Held(lease))
    }

    /// Leases one block; false on a conflict.
    async fn acquire_one(&mut self, store: &dyn ObjectStore, block: BlockId) -> Result<bool> {
        let now = SystemTime::now();
        let existing = list_leases(store, &self.tenant, block).await?;
        if existing.iter().any(|(_, o)| is_alive(o, self.ttl, now)) {
            return Ok(false);
        }
        let epoch = existing.last().map_or(0, |(epoch, _)| epoch + 1);
        let path = paths::lease_path(&self.tenant, block, epoch);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&path, PutPayload::from(self.body.clone()), create)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(strata_common::Error::object_store("put", &path)(e).into()),
        }
        self.held.push((block, epoch));
        // Whoever created second sees the first: back off if anyone else
        // holds a live lease now.
        let now = SystemTime::now();
        let after = list_leases(store, &self.tenant, block).await?;
        if after
            .iter()
            .any(|(e, o)| *e != epoch && is_alive(o, self.ttl, now))
        {
            return Ok(false);
        }
        // The expired leases are ours to settle and remove.
        for (_, object) in after.iter().filter(|(e, _)| *e != epoch) {
            if let Some(bytes) = get_if_exists(store, &object.location).await? {
                match serde_json::from_slice::<LeaseBody>(&bytes) {
                    Ok(body) if !self.expired.contains(&body) => self.expired.push(body),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(path = %object.location, error = %e, "ignoring unreadable lease")
                    }
                }
            }
            delete_if_exists(store, &object.location).await?;
        }
        Ok(true)
    }

    /// Rewrites the leases if a quarter of the TTL has passed, and checks
    /// that nobody took them over (which happens only if we stalled past
    /// the TTL). A job must stop when this fails.
    pub(crate) async fn renew_if_due(&mut self, store: &dyn ObjectStore) -> Result<()> {
        if self.renewed.elapsed().unwrap_or_default() < self.ttl / 4 {
            return Ok(());
        }
        self.verify(store).await?;
        for (block, epoch) in &self.held {
            let path = paths::lease_path(&self.tenant, *block, *epoch);
            store
                .put(&path, PutPayload::from(self.body.clone()))
                .await
                .map_err(strata_common::Error::object_store("put", &path))?;
        }
        self.renewed = SystemTime::now();
        Ok(())
    }

    /// Checks that every lease is still ours: it exists, its renewal is
    /// within the TTL, and no later epoch exists.
    pub(crate) async fn verify(&self, store: &dyn ObjectStore) -> Result<()> {
        let now = SystemTime::now();
        for (block, epoch) in &self.held {
            let leases = list_leases(store, &self.tenant, *block).await?;
            let ours = leases.iter().find(|(e, _)| e == epoch);
            let newest = leases.last().map(|(e, _)| *e);
            let alive = ours.is_some_and(|(_, o)| is_alive(o, self.ttl, now));
            if !alive || newest != Some(*epoch) {
                return Err(Error::LeaseLost { block: *block });
            }
        }
        Ok(())
    }

    /// Deletes the leases.
    pub(crate) async fn release(self, store: &dyn ObjectStore) -> Result<()> {
        for (block, epoch) in &self.held {
            delete_if_exists(store, &paths::lease_path(&self.tenant, *block, *epoch)).await?;
        }
        Ok(())
    }
}

/// A name for this process in lease bodies and logs.
pub(crate) fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::local::LocalFileSystem;

    use super::*;

    fn body(inputs: Vec<BlockId>) -> LeaseBody {
        LeaseBody {
            owner: "test".into(),
            output: BlockId::new_v7(),
            inputs,
        }
    }

    #[tokio::test]
    async fn one_owner_at_a_time_on_local_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        lease_protocol(store).await;
    }

    /// The same against the S3 server `scripts/test.sh` starts: the
    /// protocol depends on the server honouring `If-None-Match: *`.
    #[tokio::test]
    async fn one_owner_at_a_time_on_s3() {
        let Ok(endpoint) = std::env::var("STRATA_TEST_S3_ENDPOINT") else {
            eprintln!("STRATA_TEST_S3_ENDPOINT not set: skipping (scripts/test.sh sets it)");
            return;
        };
        let prefix = format!("lease-test-{}", BlockId::new_v7());
        let options = strata_common::S3Options {
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("testtest".into()),
            allow_http: Some(true),
            virtual_hosted_style: None,
        };
        let store = strata_common::StorageLocation::parse(&format!("s3://traces/{prefix}"))
            .unwrap()
            .open(&options)
            .unwrap();
        lease_protocol(store).await;
    }

    async fn lease_protocol(store: Arc<dyn ObjectStore>) {
        let tenant = TenantId::default_tenant();
        let (a, b, c) = (BlockId::new_v7(), BlockId::new_v7(), BlockId::new_v7());
        let ttl = Duration::from_secs(60);

        let first = body(vec![a, b]);
        let Acquired::Held(held) = JobLease::acquire(store.as_ref(), &tenant, &first, ttl)
            .await
            .unwrap()
        else {
            panic!("the first job gets its leases");
        };
        // Creating an existing lease epoch fails: this is what decides a
        // race between two compactors that listed at the same moment.
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let again = store
            .put_opts(
                &paths::lease_path(&tenant, a, 0),
                PutPayload::from_static(b"{}"),
                create,
            )
            .await;
        assert!(
            matches!(again, Err(object_store::Error::AlreadyExists { .. })),
            "{again:?}"
        );
        // A job sharing block b conflicts and leaves no lease on c behind.
        let second = body(vec![c, b]);
        assert!(matches!(
            JobLease::acquire(store.as_ref(), &tenant, &second, ttl)
                .await
                .unwrap(),
            Acquired::Conflict
        ));
        assert!(
            list_leases(store.as_ref(), &tenant, c)
                .await
                .unwrap()
                .is_empty()
        );
        held.verify(store.as_ref()).await.unwrap();

        // With a TTL of zero the first job's leases count as expired: the
        // next owner takes them over and learns which job died.
        let Acquired::Held(taken) =
            JobLease::acquire(store.as_ref(), &tenant, &second, Duration::ZERO)
                .await
                .unwrap()
        else {
            panic!("expired leases are taken over");
        };
        assert_eq!(taken.expired, vec![first]);
        assert!(
            held.verify(store.as_ref()).await.is_err(),
            "the old owner lost it"
        );
        taken.release(store.as_ref()).await.unwrap();
        assert!(
            list_leases(store.as_ref(), &tenant, b)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
