//! The Raft log on sled: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! Rules (docs/architecture.md, "Durability rules, and where they live"): one writer (`LogStore` is not `Clone`; openraft drives it from one
//! task), and every write is durable (sled flush + fsync of `sled/db` + witness) before the
//! method returns and before the append callback fires. Appends must continue the log without
//! holes; anything else is rejected.
//!
//! Keys in the `log` tree: `index (u64 BE) ++ chunk (u32 BE)`; values: chunks of a sealed
//! bincode `Entry`. Keys in `meta`: `vote`, `committed`, `last_purged`.
//!
//! The entries appended and not yet applied are also kept in memory, as appended
//! ([`Recent`]): openraft reads every entry back, once per follower to replicate it and once
//! to apply it, and reading a leader's own entries from sled meant decoding, on the leader,
//! the commands it had just built. The cache is always a contiguous tail of the log; what it
//! does not hold is read from sled as before.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use openraft::LogState;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::RaftTypeConfig;
use openraft::alias::LogIdOf;
use openraft::alias::VoteOf;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::vote::RaftLeaderId;
use openraft::vote::RaftVote;

use crate::DataDir;
use crate::data_dir::Shared;
use crate::envelope;
use crate::error::StorageError;
use crate::payloads;
use crate::payloads::PayloadRef;
use crate::records;
use crate::records::Joiner;
use crate::witness::Marks;

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

/// The type configurations this store supports: openraft's default `u64` node ids and terms.
pub trait StorageTypes: RaftTypeConfig<NodeId = u64, Term = u64, Entry: Clone> {}
impl<C> StorageTypes for C where C: RaftTypeConfig<NodeId = u64, Term = u64, Entry: Clone> {}

/// How one log entry is kept in the `log` tree: its sealed encoding itself, or a reference to
/// a payload file holding it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
enum StoredEntry {
    Inline(Vec<u8>),
    External(PayloadRef),
}

fn log_value(stored: &StoredEntry) -> Vec<u8> {
    envelope::encode(stored)
}

fn log_key(index: u64, chunk: u32) -> Vec<u8> {
    records::chunk_key(&index.to_be_bytes(), chunk)
}

fn plus_one<C: StorageTypes>(log_id: Option<&LogIdOf<C>>) -> u64 {
    log_id.map(|l| l.index() + 1).unwrap_or(0)
}

/// Raise the stored committed index to at least `applied` (entries are applied only once
/// committed), so that the next flush makes it durable. Normally openraft has saved it already
/// and this is a comparison; it never lowers what the log store wrote.
pub(crate) fn raise_committed<C: StorageTypes>(shared: &Shared, applied: &LogIdOf<C>) -> Result<(), StorageError> {
    if shared.committed_written.load(Ordering::Acquire) > applied.index() {
        return Ok(());
    }
    let mut undecodable = None;
    shared
        .meta
        .fetch_and_update(COMMITTED_KEY, |current| {
            let stored: Option<LogIdOf<C>> = match current.map(envelope::decode::<Option<LogIdOf<C>>>) {
                Some(Ok(stored)) => stored,
                Some(Err(e)) => {
                    undecodable = Some(e.to_string());
                    return current.map(<[u8]>::to_vec);
                }
                None => None,
            };
            if stored.as_ref() >= Some(applied) {
                current.map(<[u8]>::to_vec)
            } else {
                Some(envelope::encode(&Some(applied.clone())))
            }
        })
        .map_err(shared.sled_error("raise committed"))?;
    if let Some(detail) = undecodable {
        return Err(StorageError::corrupted(&shared.db_path, format!("committed: {detail}")));
    }
    shared
        .committed_written
        .fetch_max(plus_one::<C>(Some(applied)), Ordering::AcqRel);
    Ok(())
}

/// Most bytes (sealed size) of entries kept in memory; past it the oldest are dropped.
const RECENT_BYTES: usize = 64 << 20;

/// The newest entries as appended, not applied yet: a contiguous tail of the log.
struct Recent<C: StorageTypes> {
    entries: VecDeque<(C::Entry, usize)>,
    bytes: usize,
}

impl<C: StorageTypes> Default for Recent<C> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
        }
    }
}

impl<C: StorageTypes> Recent<C> {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.index())
    }

    /// Append entries that continue the tail (anything else starts the tail over).
    fn push(&mut self, entries: impl IntoIterator<Item = (C::Entry, usize)>, applied_through: u64) {
        for (entry, size) in entries {
            let continues = self
                .entries
                .back()
                .is_none_or(|(last, _)| last.index() + 1 == entry.index());
            if !continues {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        self.drop_applied(applied_through);
        while self.bytes > RECENT_BYTES
            && let Some((_, size)) = self.entries.pop_front()
        {
            self.bytes -= size;
        }
    }

    /// Drop entries below `end` (applied, or purged).
    fn drop_applied(&mut self, end: u64) {
        while let Some((entry, size)) = self.entries.front()
            && entry.index() < end
        {
            self.bytes -= size;
            self.entries.pop_front();
        }
    }

    /// Drop entries at `start` and after (truncated).
    fn drop_from(&mut self, start: u64) {
        while let Some((entry, size)) = self.entries.back()
            && entry.index() >= start
        {
            self.bytes -= size;
            self.entries.pop_back();
        }
    }

    /// `[start, end)` if held entirely (`end` `None`: through the last appended).
    fn range(&self, start: u64, end: Option<u64>) -> Option<Vec<C::Entry>> {
        let first = self.first_index()?;
        let last = self.entries.back().map(|(entry, _)| entry.index())?;
        let end = end.unwrap_or(last + 1);
        if start < first || end > last + 1 {
            return None;
        }
        if end <= start {
            return Some(Vec::new());
        }
        let skip = (start - first) as usize;
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take((end - start) as usize)
                .map(|(entry, _)| entry.clone())
                .collect(),
        )
    }
}

/// The single writer of the Raft log.
pub struct LogStore<C: StorageTypes> {
    shared: Arc<Shared>,
    recent: Arc<Mutex<Recent<C>>>,
    last_purged: Option<LogIdOf<C>>,
    last_log: Option<LogIdOf<C>>,
}

/// A read-only handle to the log, used by openraft's replication tasks.
pub struct LogReader<C: StorageTypes> {
    shared: Arc<Shared>,
    recent: Arc<Mutex<Recent<C>>>,
    _types: PhantomData<C>,
}

impl<C: StorageTypes> Clone for LogReader<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            recent: Arc::clone(&self.recent),
            _types: PhantomData,
        }
    }
}

/// The cache, whatever a panicking holder left (it only ever holds whole entries).
fn lock<C: StorageTypes>(recent: &Mutex<Recent<C>>) -> std::sync::MutexGuard<'_, Recent<C>> {
    recent.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<C: StorageTypes> LogStore<C> {
    /// Open the log in `data_dir`, checking it against the durability witness.
    pub fn open(data_dir: &DataDir) -> Result<Self, StorageError> {
        let shared = Arc::clone(&data_dir.shared);
        let last_purged: Option<LogIdOf<C>> = shared.meta_get(LAST_PURGED_KEY)?;
        let reader = LogReader::<C> {
            shared: Arc::clone(&shared),
            recent: Arc::default(),
            _types: PhantomData,
        };
        finish_interrupted_purge::<C>(&shared, last_purged.as_ref())?;
        let last_entry = reader.last_entry_id()?;
        let last_log = match (&last_entry, &last_purged) {
            (Some(entry), _) => Some(entry.clone()),
            (None, purged) => purged.clone(),
        };
        let vote: Option<VoteOf<C>> = shared.meta_get(VOTE_KEY)?;
        let committed: Option<LogIdOf<C>> = shared.meta_get::<Option<LogIdOf<C>>>(COMMITTED_KEY)?.flatten();
        shared
            .committed_written
            .store(plus_one::<C>(committed.as_ref()), Ordering::Release);

        let recovered = Marks {
            last_log: plus_one::<C>(last_log.as_ref()),
            last_purged: plus_one::<C>(last_purged.as_ref()),
            vote_term: vote.as_ref().map(|v| v.leader_id().term()).unwrap_or(0),
            committed: plus_one::<C>(committed.as_ref()),
            applied: u64::MAX,
        };
        let shortfalls = shared.witness_marks().shortfalls(&recovered);
        if !shortfalls.is_empty() {
            return Err(StorageError::corrupted(
                &shared.db_path,
                format!(
                    "sled recovered less than {} records as durable ({}); sled stops recovery at \
                     the first damaged record, so this file is corrupted. Do not reuse this data \
                     directory: move it aside and let the replica rejoin under a new node id",
                    shared.witness_path().display(),
                    shortfalls.join("; ")
                ),
            ));
        }
        let store = Self {
            shared,
            recent: Arc::default(),
            last_purged,
            last_log,
        };
        store.remove_orphaned_payloads()?;
        Ok(store)
    }

    /// Payload files no log entry refers to: left by a crash between writing the file and
    /// committing its reference, or between dropping references and deleting files. A log
    /// entry that cannot be read is an error, never a reason to delete a file.
    fn remove_orphaned_payloads(&self) -> Result<(), StorageError> {
        let first = plus_one::<C>(self.last_purged.as_ref());
        let end = plus_one::<C>(self.last_log.as_ref());
        let mut orphans = Vec::new();
        for (index, name) in payloads::files(&self.shared.payload_dir)? {
            let referenced = (first..end).contains(&index)
                && matches!(self.stored_entry(index)?, Some(StoredEntry::External(r)) if r.file == name);
            if !referenced {
                orphans.push(name);
            }
        }
        for name in &orphans {
            payloads::remove(&self.shared.payload_dir, name)?;
        }
        if !orphans.is_empty() {
            tracing::info!(removed = orphans.len(), "removed orphaned log payload files");
        }
        Ok(())
    }

    /// How the entry at `index` is stored, without reading its payload file.
    fn stored_entry(&self, index: u64) -> Result<Option<StoredEntry>, StorageError> {
        let db_path = &self.shared.db_path;
        let rows = self.shared.log.range(log_key(index, 0)..log_key(index + 1, 0));
        let Some(joined) = Joiner::new(rows).next() else {
            return Ok(None);
        };
        let (_, bytes) = joined.map_err(|e| StorageError::corrupted(db_path, format!("log tree: {e}")))?;
        envelope::decode(&bytes)
            .map(Some)
            .map_err(|e| StorageError::corrupted(db_path, format!("log entry {index}: {e}")))
    }

    /// Leave the log as a crash between a purge's two steps would: `last_purged` recorded,
    /// the entries not yet removed. Fault injection for tests only.
    #[doc(hidden)]
    pub fn simulate_interrupted_purge(&self, log_id: &LogIdOf<C>) -> Result<(), StorageError> {
        self.shared
            .meta
            .insert(LAST_PURGED_KEY, envelope::encode(log_id))
            .map_err(self.shared.sled_error("save last purged"))?;
        self.shared.flush_durable_blocking(|_| {})
    }

    fn reader(&self) -> LogReader<C> {
        LogReader {
            shared: Arc::clone(&self.shared),
            recent: Arc::clone(&self.recent),
            _types: PhantomData,
        }
    }

    async fn append_entries(&mut self, entries: Vec<C::Entry>) -> Result<(), StorageError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let mut expected = self.last_log.as_ref().map(|last| last.index() + 1);
        if let Some(next) = expected
            && first.index() != next
        {
            return Err(StorageError::Contract(format!(
                "append would leave a hole or overwrite: log ends at {:?}, batch starts at {}",
                self.last_log.as_ref().map(|l| l.index()),
                first.index()
            )));
        }
        let mut batch = sled::Batch::default();
        let mut wrote_payloads = false;
        let mut sizes = Vec::with_capacity(entries.len());
        for entry in &entries {
            let index = entry.index();
            if let Some(next) = expected
                && index != next
            {
                return Err(StorageError::Contract(format!(
                    "append batch is not contiguous: expected index {next}, found {index}"
                )));
            }
            let sealed = envelope::encode(entry);
            sizes.push(sealed.len());
            let stored = if sealed.len() > payloads::THRESHOLD {
                wrote_payloads = true;
                let dir = self.shared.payload_dir.clone();
                let reference = tokio::task::spawn_blocking(move || payloads::write(&dir, index, &sealed))
                    .await
                    .map_err(|e| StorageError::Contract(format!("payload task failed: {e}")))??;
                log_value(&StoredEntry::External(reference))
            } else {
                log_value(&StoredEntry::Inline(sealed))
            };
            for (chunk, piece) in records::chunks(&stored) {
                batch.insert(log_key(index, chunk), piece);
            }
            expected = Some(index + 1);
        }
        if wrote_payloads {
            payloads::sync(&self.shared.payload_dir)?;
        }
        let last = entries.last().expect("non-empty").log_id();
        self.shared
            .log
            .apply_batch(batch)
            .map_err(self.shared.sled_error("append"))?;
        let last_plus_one = last.index() + 1;
        self.shared
            .flush_durable(move |marks| marks.last_log = marks.last_log.max(last_plus_one))
            .await?;
        self.last_log = Some(last);
        let applied_through = self.shared.applied_in_memory.load(Ordering::Acquire);
        lock(&self.recent).push(entries.into_iter().zip(sizes), applied_through);
        Ok(())
    }
}

/// Remove every log key in `range` in one sled batch (not flushed); returns how many keys.
fn remove_log_keys(
    shared: &Shared,
    range: impl RangeBounds<Vec<u8>>,
    operation: &'static str,
) -> Result<usize, StorageError> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for row in shared.log.range(range) {
        let (key, _) = row.map_err(shared.sled_error("read log"))?;
        batch.remove(key);
        removed += 1;
    }
    if removed > 0 {
        shared.log.apply_batch(batch).map_err(shared.sled_error(operation))?;
    }
    Ok(removed)
}

/// A crash between a purge's two steps (recording `last_purged`, removing the entries) can
/// leave entries at or below `last_purged`; openraft refuses such a log ("inverted log order")
/// when the purge point is past the last entry. Finish the purge.
fn finish_interrupted_purge<C: StorageTypes>(
    shared: &Shared,
    last_purged: Option<&LogIdOf<C>>,
) -> Result<(), StorageError> {
    let Some(purged) = last_purged else {
        return Ok(());
    };
    if remove_log_keys(shared, ..log_key(purged.index() + 1, 0), "purge")? == 0 {
        return Ok(());
    }
    tracing::info!(through = purged.index(), "finished a purge interrupted by a crash");
    shared.flush_durable_blocking(|_| {})?;
    let through = purged.index();
    payloads::remove_where(&shared.payload_dir, |index, _| index <= through)?;
    Ok(())
}

impl<C: StorageTypes> LogReader<C> {
    fn last_entry_id(&self) -> Result<Option<LogIdOf<C>>, StorageError> {
        let Some((key, _)) = self.shared.log.last().map_err(self.shared.sled_error("read log"))? else {
            return Ok(None);
        };
        let Some((base, _)) = records::split_chunk_key(&key) else {
            return Err(StorageError::corrupted(&self.shared.db_path, "malformed log key"));
        };
        let index = u64::from_be_bytes(
            base.try_into()
                .map_err(|_| StorageError::corrupted(&self.shared.db_path, "malformed log key"))?,
        );
        let entries = self.read_range(index, Some(index + 1))?;
        Ok(entries.last().map(|e| e.log_id()))
    }

    fn read_range(&self, start: u64, end: Option<u64>) -> Result<Vec<C::Entry>, StorageError> {
        let db_path = &self.shared.db_path;
        let rows = match end {
            Some(end) if end <= start => return Ok(Vec::new()),
            Some(end) => self.shared.log.range(log_key(start, 0)..log_key(end, 0)),
            None => self.shared.log.range(log_key(start, 0)..),
        };
        let mut entries: Vec<C::Entry> = Vec::new();
        for joined in Joiner::new(rows) {
            let (base, bytes) = joined.map_err(|e| StorageError::corrupted(db_path, format!("log tree: {e}")))?;
            let index = u64::from_be_bytes(
                base.as_slice()
                    .try_into()
                    .map_err(|_| StorageError::corrupted(db_path, "malformed log key"))?,
            );
            let stored: StoredEntry = envelope::decode(&bytes)
                .map_err(|e| StorageError::corrupted(db_path, format!("log entry {index}: {e}")))?;
            let (sealed, source) = match stored {
                StoredEntry::Inline(sealed) => (sealed, db_path.clone()),
                StoredEntry::External(reference) => (
                    payloads::read(&self.shared.payload_dir, &reference)?,
                    self.shared.payload_dir.join(&reference.file),
                ),
            };
            let entry: C::Entry = envelope::decode(&sealed)
                .map_err(|e| StorageError::corrupted(&source, format!("log entry {index}: {e}")))?;
            if entry.index() != index {
                return Err(StorageError::corrupted(
                    db_path,
                    format!("log entry stored at {index} claims index {}", entry.index()),
                ));
            }
            if let Some(previous) = entries.last()
                && previous.index() + 1 != index
            {
                return Err(StorageError::corrupted(
                    db_path,
                    format!("hole in the log between {} and {index}", previous.index()),
                ));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

fn bounds(range: &impl RangeBounds<u64>) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => Some(e + 1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl<C: StorageTypes> RaftLogReader<C> for LogReader<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        let (start, end) = bounds(&range);
        {
            let mut recent = lock(&self.recent);
            recent.drop_applied(self.shared.applied_in_memory.load(Ordering::Acquire));
            if let Some(entries) = recent.range(start, end) {
                return Ok(entries);
            }
        }
        Ok(self.read_range(start, end)?)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        Ok(self.shared.meta_get(VOTE_KEY)?)
    }
}

impl<C: StorageTypes> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, io::Error> {
        RaftLogReader::<C>::try_get_log_entries(&mut self.reader(), range).await
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<C>>, io::Error> {
        RaftLogReader::<C>::read_vote(&mut self.reader()).await
    }
}

impl<C: StorageTypes> RaftLogStorage<C> for LogStore<C> {
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        Ok(LogState {
            last_purged_log_id: self.last_purged.clone(),
            last_log_id: self.last_log.clone(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &VoteOf<C>) -> Result<(), io::Error> {
        self.shared
            .meta
            .insert(VOTE_KEY, envelope::encode(vote))
            .map_err(self.shared.sled_error("save vote"))?;
        let term = vote.leader_id().term();
        self.shared
            .flush_durable(move |marks| marks.vote_term = marks.vote_term.max(term))
            .await?;
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        // Not flushed here: committed becomes durable with the next append's flush (sled
        // flushes are database-wide) or sled's periodic fsync. The witness only counts it after
        // such a flush (see `Shared::flush_durable`).
        self.shared
            .meta
            .insert(COMMITTED_KEY, envelope::encode(&committed))
            .map_err(self.shared.sled_error("save committed"))?;
        self.shared
            .committed_written
            .fetch_max(plus_one::<C>(committed.as_ref()), Ordering::AcqRel);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogIdOf<C>>, io::Error> {
        let committed: Option<Option<LogIdOf<C>>> = self.shared.meta_get(COMMITTED_KEY)?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Durable before the callback and before returning: nothing is ever in flight, which
        // rules out openraft#2118 and #1252 (docs/architecture.md, "Durability rules, and where they live").
        let started = std::time::Instant::now();
        let result = self.append_entries(entries.into_iter().collect()).await;
        tracing::debug!(elapsed = ?started.elapsed(), "log append durable");
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                let error = io::Error::from(error);
                callback.io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogIdOf<C>>) -> Result<(), io::Error> {
        let keep_through = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        let current_end = plus_one::<C>(self.last_log.as_ref());
        if keep_through >= current_end {
            return Ok(());
        }
        let new_last = match &last_log_id {
            Some(id) => Some(id.clone()),
            None => self.last_purged.clone(),
        };
        let new_mark = plus_one::<C>(new_last.as_ref());
        self.shared
            .lower_witness(move |marks| marks.last_log = marks.last_log.min(new_mark))
            .await?;
        lock(&self.recent).drop_from(keep_through);
        remove_log_keys(&self.shared, log_key(keep_through, 0).., "truncate")?;
        self.shared.flush_durable(|_| {}).await?;
        payloads::remove_where(&self.shared.payload_dir, |index, _| index >= keep_through)?;
        self.last_log = new_last;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogIdOf<C>) -> Result<(), io::Error> {
        // Record the purge point first, so a crash mid-purge never leaves the log looking
        // as if it started later than recorded.
        self.shared
            .meta
            .insert(LAST_PURGED_KEY, envelope::encode(&log_id))
            .map_err(self.shared.sled_error("save last purged"))?;
        lock(&self.recent).drop_applied(log_id.index() + 1);
        remove_log_keys(&self.shared, ..log_key(log_id.index() + 1, 0), "purge")?;
        let purged_mark = log_id.index() + 1;
        self.shared
            .flush_durable(move |marks| {
                marks.last_purged = marks.last_purged.max(purged_mark);
                marks.last_log = marks.last_log.max(purged_mark);
            })
            .await?;
        let purged_through = log_id.index();
        payloads::remove_where(&self.shared.payload_dir, |index, _| index <= purged_through)?;
        if self.last_log.as_ref().is_none_or(|last| last.index() < log_id.index()) {
            self.last_log = Some(log_id.clone());
        }
        self.last_purged = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderIdExt;

    use super::*;

    openraft::declare_raft_types!(
        TestTypes: D = String, R = (),
    );

    type TestEntry = <TestTypes as RaftTypeConfig>::Entry;

    fn entry(index: u64) -> TestEntry {
        let log_id = openraft::LogId::new(openraft::alias::LeaderIdOf::<TestTypes>::new_committed(1, 1), index);
        TestEntry::new_normal(log_id, format!("entry {index}"))
    }

    fn indexes(entries: Option<Vec<TestEntry>>) -> Option<Vec<u64>> {
        entries.map(|entries| entries.iter().map(|e| e.index()).collect())
    }

    #[test]
    fn the_cache_is_a_contiguous_tail_that_drops_what_is_applied_truncated_or_too_big() {
        let mut recent = Recent::<TestTypes>::default();
        recent.push((1..=5).map(|i| (entry(i), 10)), 0);
        assert_eq!(indexes(recent.range(2, Some(4))), Some(vec![2, 3]));
        assert_eq!(indexes(recent.range(3, None)), Some(vec![3, 4, 5]));
        assert_eq!(
            indexes(recent.range(0, Some(3))),
            None,
            "below the tail: read from sled"
        );
        assert_eq!(indexes(recent.range(4, Some(7))), None, "past the tail: read from sled");

        recent.drop_applied(3);
        assert_eq!(recent.first_index(), Some(3));
        assert_eq!(recent.bytes, 30);
        recent.drop_from(5);
        assert_eq!(indexes(recent.range(3, None)), Some(vec![3, 4]));

        // An append that does not continue the tail (after a truncation elsewhere) restarts it.
        recent.push([(entry(9), 10)], 0);
        assert_eq!(indexes(recent.range(9, None)), Some(vec![9]));
        assert_eq!(recent.bytes, 10);

        // What is applied is dropped as it is pushed; the byte bound drops the oldest.
        recent.push([(entry(10), 10), (entry(11), RECENT_BYTES)], 10);
        assert_eq!(indexes(recent.range(11, None)), Some(vec![11]));
        recent.push([(entry(12), 1)], 0);
        assert_eq!(indexes(recent.range(12, None)), Some(vec![12]));
        assert_eq!(recent.bytes, 1);
    }
}
