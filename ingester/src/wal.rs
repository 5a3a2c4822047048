//! The write-ahead log: an export is acknowledged only once it is here, on
//! disk, fsynced.
//!
//! # Layout
//!
//! The log is a directory of segment files, `00000000000000000007.wal`,
//! numbered in write order. A segment starts with the 8-byte magic
//! `STRWAL01`, then holds records:
//!
//! ```text
//! [u32 LE payload length][u32 LE CRC-32 of payload][payload]
//! payload = [u8 version = 1][u16 LE tenant length][tenant][OTLP ExportTraceServiceRequest protobuf]
//! ```
//!
//! # Group commit
//!
//! One writer thread owns the active segment. Appenders hand it records
//! through a channel; it writes every record waiting, issues a single
//! `fdatasync` for all of them and then acknowledges each, so concurrent
//! requests share the cost of a sync.
//!
//! # Retention
//!
//! Each append reports the segment it landed in. The ingester tags the
//! batch with that number and, once spans are safe in a block, asks the log
//! to drop segments that no unflushed batch still needs
//! ([`Wal::segments_before`], [`Wal::delete`]). An [`AppendGuard`] keeps a segment alive from
//! the moment a record is written until the caller has placed the batch in
//! its buffer, so no segment is deleted while its data is in between.
//!
//! # Recovery
//!
//! [`Wal::open`] reads every segment in order. A record with a bad length
//! or checksum ends its segment: the rest of the file is cut off (and logged),
//! earlier records are kept, and start-up goes on.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use strata_common::TenantId;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// First bytes of every segment file.
const MAGIC: &[u8; 8] = b"STRWAL01";
/// Payload format version.
const RECORD_VERSION: u8 = 1;
/// Length and checksum before every payload.
const HEADER_LEN: usize = 8;
/// Largest payload accepted on replay: anything bigger is corruption.
const MAX_PAYLOAD: usize = 1 << 30;
/// Records written per sync at most, so one sync never waits on an unbounded queue.
const MAX_RECORDS_PER_SYNC: usize = 1024;

/// Where the log lives and how it is cut into segments.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory of segment files.
    pub dir: PathBuf,
    /// A segment is closed once it holds this many bytes.
    pub segment_max_bytes: u64,
}

/// One record read back at start-up.
#[derive(Debug, Clone)]
pub struct ReplayedRecord {
    /// Segment it came from.
    pub segment: u64,
    /// The tenant.
    pub tenant: TenantId,
    /// The request as OTLP protobuf.
    pub request: Bytes,
}

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segments read.
    pub segments: usize,
    /// Records recovered.
    pub records: usize,
    /// Bytes cut off damaged segment tails.
    pub truncated_bytes: u64,
}

#[derive(Debug, Default)]
struct WalState {
    /// Closed and active segments with their sizes.
    segments: BTreeMap<u64, u64>,
    /// The segment being written.
    active: u64,
    /// Records written but not yet released by their appenders, per segment.
    in_flight: BTreeMap<u64, usize>,
}

impl WalState {
    fn total_bytes(&self) -> u64 {
        self.segments.values().sum()
    }
}

type Shared = Arc<Mutex<WalState>>;

fn lock(state: &Shared) -> MutexGuard<'_, WalState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

struct AppendRequest {
    record: Vec<u8>,
    ack: oneshot::Sender<Result<u64>>,
}

/// Work for the writer thread.
#[derive(Debug)]
enum Command {
    Append(AppendRequest),
    /// Close the active segment (if it holds records) and start a new one.
    Rotate(oneshot::Sender<()>),
}

/// The write-ahead log.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    state: Shared,
    sender: Mutex<Option<mpsc::UnboundedSender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for AppendRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendRequest")
            .field("bytes", &self.record.len())
            .finish()
    }
}

/// Keeps the segment holding a just-written record from being deleted
/// until dropped; drop it once the record's data is in the live buffer.
#[derive(Debug)]
pub struct AppendGuard {
    segment: u64,
    state: Shared,
}

impl AppendGuard {
    /// The segment the record was written to.
    pub fn segment(&self) -> u64 {
        self.segment
    }
}

impl Drop for AppendGuard {
    fn drop(&mut self) {
        release(&self.state, self.segment);
    }
}

fn release(state: &Shared, segment: u64) {
    let mut state = lock(state);
    if let Some(count) = state.in_flight.get_mut(&segment) {
        *count -= 1;
        if *count == 0 {
            state.in_flight.remove(&segment);
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Wal { context, source }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(format!("syncing directory {}", dir.display())))
}

/// Encodes one record (header and payload).
pub fn encode_record(tenant: &TenantId, request: &[u8]) -> Vec<u8> {
    let tenant = tenant.as_str().as_bytes();
    let payload_len = 1 + 2 + tenant.len() + request.len();
    let mut out = Vec::with_capacity(HEADER_LEN + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
    out.extend_from_slice(tenant);
    out.extend_from_slice(request);
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the payload of a record whose checksum matched.
fn decode_payload(payload: &[u8]) -> Option<(TenantId, Bytes)> {
    let (&version, rest) = payload.split_first()?;
    if version != RECORD_VERSION || rest.len() < 2 {
        return None;
    }
    let tenant_len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
    let tenant = rest.get(2..2 + tenant_len)?;
    let tenant = TenantId::new(std::str::from_utf8(tenant).ok()?).ok()?;
    Some((tenant, Bytes::copy_from_slice(&rest[2 + tenant_len..])))
}

/// Reads a segment's records; returns them and the length of the valid
/// prefix of the file.
fn read_segment(path: &Path, seq: u64) -> Result<(Vec<ReplayedRecord>, u64, u64)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io_error(format!("reading {}", path.display())))?;
    let file_len = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // Not even a header: a segment created right before a crash.
        return Ok((Vec::new(), 0, file_len));
    }
    let mut records = Vec::new();
    let mut offset = MAGIC.len();
    while offset < bytes.len() {
        let Some(header) = bytes.get(offset..offset + HEADER_LEN) else {
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_PAYLOAD {
            break;
        }
        let Some(payload) = bytes.get(offset + HEADER_LEN..offset + HEADER_LEN + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some((tenant, request)) = decode_payload(payload) else {
            break;
        };
        records.push(ReplayedRecord {
            segment: seq,
            tenant,
            request,
        });
        offset += HEADER_LEN + len;
    }
    Ok((records, offset as u64, file_len))
}

impl Wal {
    /// Opens the log in `config.dir` (created if missing), recovering every
    /// record it holds. New records go to a fresh segment.
    pub fn open(config: &WalConfig) -> Result<(Self, Vec<ReplayedRecord>, ReplayReport)> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let mut seqs: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_error(format!("listing {}", dir.display())))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();

        let mut state = WalState::default();
        let mut replayed = Vec::new();
        let mut report = ReplayReport::default();
        for &seq in &seqs {
            let path = segment_path(&dir, seq);
            let (records, valid, file_len) = read_segment(&path, seq)?;
            if valid < file_len {
                warn!(
                    segment = %path.display(),
                    kept_records = records.len(),
                    cut_bytes = file_len - valid,
                    "write-ahead log segment has a torn or corrupt tail; cutting it off"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(format!("opening {}", path.display())))?;
                file.set_len(valid)
                    .and_then(|()| file.sync_all())
                    .map_err(io_error(format!("truncating {}", path.display())))?;
                report.truncated_bytes += file_len - valid;
            }
            report.segments += 1;
            report.records += records.len();
            state.segments.insert(seq, valid);
            replayed.extend(records);
        }

        let active = seqs.last().map_or(1, |last| last + 1);
        let file = create_segment(&dir, active)?;
        state.active = active;
        state.segments.insert(active, MAGIC.len() as u64);
        let state = Arc::new(Mutex::new(state));

        let (sender, receiver) = mpsc::unbounded_channel::<Command>();
        let writer = Writer {
            dir: dir.clone(),
            file: BufWriter::new(file),
            segment_max_bytes: config.segment_max_bytes,
            state: Arc::clone(&state),
        };
        let handle = std::thread::Builder::new()
            .name("strata-wal".into())
            .spawn(move || writer.run(receiver))
            .map_err(io_error("starting the WAL writer thread"))?;
        if report.records > 0 || report.truncated_bytes > 0 {
            info!(
                segments = report.segments,
                records = report.records,
                truncated_bytes = report.truncated_bytes,
                "write-ahead log recovered"
            );
        }
        let wal = Self {
            dir,
            state,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(handle)),
        };
        wal.report_size();
        Ok((wal, replayed, report))
    }

    /// Appends a record and returns once it is fsynced.
    pub async fn append(&self, tenant: &TenantId, request: &[u8]) -> Result<AppendGuard> {
        let record = encode_record(tenant, request);
        let (ack, done) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|sender| {
                sender
                    .send(Command::Append(AppendRequest { record, ack }))
                    .is_ok()
            })
            .unwrap_or(false);
        if !sent {
            return Err(Error::WalClosed);
        }
        let segment = done.await.map_err(|_| Error::WalClosed)??;
        self.report_size();
        Ok(AppendGuard {
            segment,
            state: Arc::clone(&self.state),
        })
    }

    /// Closes the active segment if it holds records, so that it can be
    /// deleted once its data is flushed (a clean shutdown then leaves
    /// nothing to replay).
    pub async fn rotate(&self) {
        let (done, rotated) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|sender| sender.send(Command::Rotate(done)).is_ok());
        if sent {
            let _ = rotated.await;
        }
    }

    /// The closed segments older than `keep_from` that no [`AppendGuard`]
    /// holds. Call it while nothing can add data to the caller's buffers
    /// (under their lock), with `keep_from` the oldest segment those buffers
    /// need (`u64::MAX` when empty): records written later land in the
    /// active segment or newer, which this never returns.
    pub fn segments_before(&self, keep_from: u64) -> Vec<u64> {
        let state = lock(&self.state);
        let in_flight = state.in_flight.keys().next().copied().unwrap_or(u64::MAX);
        let limit = keep_from.min(in_flight).min(state.active);
        state.segments.range(..limit).map(|(seq, _)| *seq).collect()
    }

    /// Deletes segments (from [`segments_before`](Self::segments_before)).
    pub fn delete(&self, segments: &[u64]) -> Result<usize> {
        for seq in segments {
            let path = segment_path(&self.dir, *seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(format!("deleting {}", path.display()))(e)),
            }
            lock(&self.state).segments.remove(seq);
        }
        if !segments.is_empty() {
            sync_dir(&self.dir)?;
            self.report_size();
        }
        Ok(segments.len())
    }

    /// Bytes on disk.
    pub fn size_bytes(&self) -> u64 {
        lock(&self.state).total_bytes()
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        lock(&self.state).segments.len()
    }

    fn report_size(&self) {
        let (bytes, segments) = {
            let state = lock(&self.state);
            (state.total_bytes(), state.segments.len())
        };
        metrics::gauge!("strata_wal_bytes").set(bytes as f64);
        metrics::gauge!("strata_wal_segments").set(segments as f64);
    }

    /// Stops the writer thread after it has synced what it holds.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.close();
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<File> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_error(format!("creating {}", path.display())))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(io_error(format!("writing {}", path.display())))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    file: BufWriter<File>,
    segment_max_bytes: u64,
    state: Shared,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Command>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = Vec::new();
            let mut rotations = Vec::new();
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Append(request) => batch.push(request),
                    Command::Rotate(done) => rotations.push(done),
                }
                if batch.len() < MAX_RECORDS_PER_SYNC {
                    next = receiver.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.write_batch(batch);
            }
            if !rotations.is_empty() {
                let (active, size) = {
                    let state = lock(&self.state);
                    (
                        state.active,
                        state.segments.get(&state.active).copied().unwrap_or(0),
                    )
                };
                if size > MAGIC.len() as u64 {
                    self.rotate(active);
                }
                for done in rotations {
                    let _ = done.send(());
                }
            }
        }
        let _ = self
            .file
            .flush()
            .and_then(|()| self.file.get_ref().sync_data());
    }

    fn write_batch(&mut self, batch: Vec<AppendRequest>) {
        let started = Instant::now();
        let segment = lock(&self.state).active;
        let mut written = 0u64;
        let mut result = Ok(());
        for request in &batch {
            if let Err(e) = self.file.write_all(&request.record) {
                result = Err(e);
                break;
            }
            written += request.record.len() as u64;
        }
        let result = result
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.get_ref().sync_data());
        metrics::histogram!("strata_wal_sync_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("strata_wal_records_per_sync").record(batch.len() as f64);

        match result {
            Ok(()) => {
                let size = {
                    let mut state = lock(&self.state);
                    *state.in_flight.entry(segment).or_default() += batch.len();
                    let size = state.segments.entry(segment).or_default();
                    *size += written;
                    *size
                };
                for request in batch {
                    if request.ack.send(Ok(segment)).is_err() {
                        // The appender gave up waiting: no guard will release this.
                        release(&self.state, segment);
                    }
                }
                if size >= self.segment_max_bytes {
                    self.rotate(segment);
                }
            }
            Err(e) => {
                warn!(error = %e, "write-ahead log write failed; starting a new segment");
                metrics::counter!("strata_wal_write_failures_total").increment(1);
                let message = e.to_string();
                for request in batch {
                    let _ = request.ack.send(Err(Error::Wal {
                        context: "appending to the write-ahead log".into(),
                        source: std::io::Error::other(message.clone()),
                    }));
                }
                // The failed write may have left half a record: never append
                // after it. Recovery cuts the damaged tail off.
                self.rotate(segment);
            }
        }
    }

    fn rotate(&mut self, current: u64) {
        let next = current + 1;
        match create_segment(&self.dir, next) {
            Ok(file) => {
                self.file = BufWriter::new(file);
                let mut state = lock(&self.state);
                state.active = next;
                state.segments.insert(next, MAGIC.len() as u64);
            }
            Err(e) => {
                // Keep writing to the current segment; a later rotation retries.
                warn!(error = %e, "could not start a new write-ahead log segment");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, segment_max_bytes: u64) -> WalConfig {
        WalConfig {
            dir: dir.to_owned(),
            segment_max_bytes,
        }
    }

    fn tenant() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    #[tokio::test]
    async fn records_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, replayed, _) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert!(replayed.is_empty());
        for n in 0..10u8 {
            drop(wal.append(&tenant(), &[n; 100]).await.unwrap());
        }
        drop(wal);
        let (_wal, replayed, report) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert_eq!(report.records, 10);
        assert_eq!(report.truncated_bytes, 0);
        let firsts: Vec<u8> = replayed.iter().map(|r| r.request[0]).collect();
        assert_eq!(firsts, (0..10).collect::<Vec<_>>());
        assert!(replayed.iter().all(|r| r.tenant == tenant()));
    }

    #[tokio::test]
    async fn concurrent_appends_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = Wal::open(&config(dir.path(), 1 << 30)).unwrap();
        let wal = Arc::new(wal);
        let tasks: Vec<_> = (0..64)
            .map(|n| {
                let wal = Arc::clone(&wal);
                tokio::spawn(async move {
                    wal.append(&tenant(), &[n as u8; 1000])
                        .await
                        .unwrap()
                        .segment()
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1);
        }
        assert!(wal.size_bytes() > 64 * 1000);
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        for n in 0..3u8 {
            drop(wal.append(&tenant(), &[n; 50]).await.unwrap());
        }
        drop(wal);
        // Simulate a crash mid-record: half a header and payload at the end.
        let path = segment_path(dir.path(), 1);
        let record = encode_record(&tenant(), &[9; 50]);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&record[..record.len() / 2]).unwrap();
        drop(file);

        let (wal, replayed, report) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert_eq!(replayed.len(), 3);
        assert!(report.truncated_bytes > 0);
        // The next open finds a clean log.
        drop(wal);
        let (_, replayed, report) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert_eq!((replayed.len(), report.truncated_bytes), (3, 0));
    }

    #[tokio::test]
    async fn a_corrupt_record_ends_its_segment_but_not_the_log() {
        let dir = tempfile::tempdir().unwrap();
        // Tiny segments: every record closes its segment.
        let (wal, _, _) = Wal::open(&config(dir.path(), 1)).unwrap();
        for n in 0..3u8 {
            drop(wal.append(&tenant(), &[n; 50]).await.unwrap());
        }
        drop(wal);
        // Flip a payload byte in the middle segment.
        let path = segment_path(dir.path(), 2);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();

        let (_, replayed, report) = Wal::open(&config(dir.path(), 1)).unwrap();
        let firsts: Vec<u8> = replayed.iter().map(|r| r.request[0]).collect();
        assert_eq!(firsts, vec![0, 2], "only the damaged record is lost");
        assert!(report.truncated_bytes > 0);
    }

    #[tokio::test]
    async fn truncation_keeps_segments_still_needed() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = Wal::open(&config(dir.path(), 1)).unwrap();
        let first = wal.append(&tenant(), b"one").await.unwrap();
        let second = wal.append(&tenant(), b"two").await.unwrap();
        assert_eq!((first.segment(), second.segment()), (1, 2));
        // Segment 1 is still held by its guard.
        assert_eq!(wal.delete(&wal.segments_before(u64::MAX)).unwrap(), 0);
        drop(first);
        assert_eq!(wal.delete(&wal.segments_before(2)).unwrap(), 1);
        assert!(!segment_path(dir.path(), 1).exists());
        let third = wal.append(&tenant(), b"three").await.unwrap();
        assert_eq!(third.segment(), 3);
        drop(second);
        // Segment 3 is still held; the active segment is never deleted.
        assert_eq!(wal.delete(&wal.segments_before(u64::MAX)).unwrap(), 1);
        assert!(segment_path(dir.path(), 3).exists());
    }

    #[tokio::test]
    async fn when_nothing_is_needed_the_active_segment_goes_too() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _, _) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        drop(wal.append(&tenant(), b"flushed").await.unwrap());
        wal.rotate().await;
        wal.delete(&wal.segments_before(u64::MAX)).unwrap();
        drop(wal);
        let (_, replayed, _) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert!(replayed.is_empty(), "a clean log replays nothing");
    }

    #[test]
    fn garbage_and_empty_files_open_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), b"not a wal").unwrap();
        fs::write(segment_path(dir.path(), 2), b"").unwrap();
        let (_, replayed, report) = Wal::open(&config(dir.path(), 1 << 20)).unwrap();
        assert!(replayed.is_empty());
        assert_eq!(report.segments, 2);
    }
}
