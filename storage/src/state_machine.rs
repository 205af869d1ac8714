//! The state machine on sled: openraft's `RaftStateMachine` and `RaftSnapshotBuilder`, around
//! an application-supplied [`StateMachineLogic`].
//!
//! The storage layer knows nothing about what the records mean. The logic applies entries to
//! its in-memory state and reports which records changed; this module writes those records,
//! together with the applied log id and membership, in **one sled batch** per `apply` call, so
//! the tree never shows a state that does not match its applied index. Restart loads the tree,
//! not a log replay.
//!
//! Layout of a `state-<generation>` tree (keys end in a chunk number, see `records`):
//! `[0x00] "applied"`, `[0x00] "membership"` (storage-owned), and
//! `[0x01][key len u32 BE][key]` for each application record. Each `apply` call ends with a
//! durable flush before the new state is published to readers. `meta` holds `state_tree` (the
//! current generation) and `snapshot` (current snapshot file name and meta). Installing a
//! snapshot fills a fresh generation and then switches `state_tree`, so a crash mid-install
//! leaves the old state current.

use std::collections::BTreeMap;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::RwLock;
use std::sync::atomic::Ordering;

use futures::Stream;
use futures::StreamExt;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::Snapshot;
use openraft::StoredMembership;
use openraft::alias::LogIdOf;
use openraft::alias::SnapshotMetaOf;
use openraft::alias::SnapshotOf;
use openraft::alias::StoredMembershipOf;
use openraft::entry::RaftEntry;
use openraft::storage::EntryResponder;
use openraft::storage::RaftStateMachine;

use crate::DataDir;
use crate::data_dir::STATE_TREE_PREFIX;
use crate::data_dir::Shared;
use crate::envelope;
use crate::error::StorageError;
use crate::log_store::StorageTypes;
use crate::records;
use crate::records::Joiner;
use crate::snapshot_file::SnapshotFile;
use crate::snapshot_file::SnapshotReader;
use crate::snapshot_file::copy_snapshot;
use crate::snapshot_file::write_snapshot;

const STATE_TREE_KEY: &[u8] = b"state_tree";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const APPLIED_KEY: &[u8] = b"\x00applied";
const MEMBERSHIP_KEY: &[u8] = b"\x00membership";
/// Present while a large apply is being written in sub-batches.
const TORN_APPLY_KEY: &[u8] = b"\x00torn-apply";
/// Records per sled batch of one apply (bounds how long sled's global write lock is held).
const PERSIST_BATCH_RECORDS: usize = 512;
const RECORD_PREFIX: u8 = 0x01;
/// Records per sled batch while filling a tree from a snapshot.
const INSTALL_BATCH: usize = 4096;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Put { value: Vec<u8>, fresh: bool },
    Delete,
}

/// Record changes produced by applying entries: the last change to a key wins.
#[derive(Debug, Default)]
pub struct Changes {
    records: BTreeMap<Vec<u8>, Change>,
}

impl Changes {
    /// Store `value` under `key`.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.records.insert(
            key.into(),
            Change::Put {
                value: value.into(),
                fresh: false,
            },
        );
    }

    /// Store `value` under a `key` that holds nothing in the store yet (for example a record
    /// created by this very entry). The store then skips looking for older chunks of the key,
    /// which is most of the cost of writing many new records. Wrong use leaves stale chunks
    /// that fail their checksum at the next start, so only claim it when certain.
    pub fn put_fresh(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let key = key.into();
        // A key changed earlier in the same apply call may already have chunks on disk.
        let fresh = !self.records.contains_key(&key);
        self.records.insert(
            key,
            Change::Put {
                value: value.into(),
                fresh,
            },
        );
    }

    /// Remove `key`.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.records.insert(key.into(), Change::Delete);
    }

    /// Number of distinct keys touched.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The changes in key order; `None` means delete.
    pub fn into_records(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.records.into_iter().map(|(key, change)| match change {
            Change::Put { value, .. } => (key, Some(value)),
            Change::Delete => (key, None),
        })
    }
}

/// What the application plugs into the store: a deterministic state machine over records.
pub trait StateMachineLogic<C: StorageTypes>: Send + Sync + 'static {
    /// Apply one committed entry (normal, blank or membership) to the in-memory state and
    /// record every key it changed in `changes`. Must be deterministic: the same entries in the
    /// same order produce the same state and records on every replica.
    fn apply(&mut self, entry: &C::Entry, changes: &mut Changes) -> C::R;

    /// Replace the whole state with `records` (every key/value written earlier through
    /// [`Changes`]), at startup or when a snapshot is installed. Either succeeds completely or
    /// leaves the previous state untouched. Must not publish to readers yet: the store calls
    /// [`StateMachineLogic::after_persist`] once the restored state is durable and current.
    fn restore(&mut self, records: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<(), String>;

    /// Called once the state is durable and current (after each `apply` call's records are
    /// written, after opening, after installing a snapshot): the point to publish it to readers.
    fn after_persist(&mut self) {}
}

/// Name of the state tree of `generation`.
fn state_tree_name(generation: u64) -> String {
    format!("{STATE_TREE_PREFIX}{generation}")
}

fn record_base(key: &[u8]) -> Vec<u8> {
    let mut base = Vec::with_capacity(5 + key.len());
    base.push(RECORD_PREFIX);
    base.extend_from_slice(&(key.len() as u32).to_be_bytes());
    base.extend_from_slice(key);
    base
}

fn record_key(base: &[u8]) -> Option<&[u8]> {
    if base.len() < 5 || base[0] != RECORD_PREFIX {
        return None;
    }
    let len = u32::from_be_bytes(base[1..5].try_into().ok()?) as usize;
    (base.len() == 5 + len).then(|| &base[5..])
}

/// The current state tree. Writers (apply, install) take the write lock only around
/// synchronous sled calls; the snapshot builder holds the read lock while it copies the tree,
/// because sled iterators are not point-in-time (crates.md §2.3).
struct StateTree {
    generation: u64,
    tree: sled::Tree,
}

/// Reads and verifies every application record of `tree`.
fn read_records(tree: &sled::Tree, shared: &Shared) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>> {
    let db_path = shared.db_path.clone();
    Joiner::new(tree.range(vec![RECORD_PREFIX]..)).map(move |joined| {
        let (base, sealed) = joined.map_err(|e| StorageError::corrupted(&db_path, format!("state tree: {e}")))?;
        let key = record_key(&base)
            .ok_or_else(|| StorageError::corrupted(&db_path, "malformed state record key"))?
            .to_vec();
        let payload = envelope::open(&sealed).map_err(|e| {
            StorageError::corrupted(
                &db_path,
                format!("state record {:?}: {e}", String::from_utf8_lossy(&key)),
            )
        })?;
        Ok((key, payload.to_vec()))
    })
}

fn read_reserved<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
    shared: &Shared,
) -> Result<Option<T>, StorageError> {
    let Some(bytes) = tree
        .get(records::chunk_key(key, 0))
        .map_err(shared.sled_error("read state"))?
    else {
        return Ok(None);
    };
    envelope::decode(&bytes).map(Some).map_err(|e| {
        StorageError::corrupted(
            &shared.db_path,
            format!("state key {:?}: {e}", String::from_utf8_lossy(key)),
        )
    })
}

/// Feed `records` to `restore`, turning the first read error into the result.
fn restore_from(
    restore: impl FnOnce(&mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<(), String>,
    records: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StorageError>>,
    source: &std::path::Path,
) -> Result<(), StorageError> {
    let mut failure = None;
    let mut plain = records.map_while(|r| match r {
        Ok(record) => Some(record),
        Err(e) => {
            failure = Some(e);
            None
        }
    });
    let restored = restore(&mut plain);
    drop(plain);
    if let Some(e) = failure {
        return Err(e);
    }
    restored.map_err(|detail| StorageError::corrupted(source, format!("records do not restore: {detail}")))
}

/// The state-machine store. Owned by openraft's state-machine worker.
pub struct StateMachineStore<C: StorageTypes, L: StateMachineLogic<C>> {
    shared: Arc<Shared>,
    state: Arc<RwLock<StateTree>>,
    /// Serializes snapshot builds and installs end to end (files, pointer, cleanup). An async
    /// mutex: an install holds it across its durable flushes.
    snapshot_gate: Arc<tokio::sync::Mutex<()>>,
    logic: L,
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
}

/// Builds snapshot files from the current state tree.
pub struct SnapshotBuilder<C: StorageTypes> {
    shared: Arc<Shared>,
    state: Arc<RwLock<StateTree>>,
    snapshot_gate: Arc<tokio::sync::Mutex<()>>,
    _types: PhantomData<C>,
}

impl<C: StorageTypes, L: StateMachineLogic<C>> StateMachineStore<C, L> {
    /// Open the state machine in `data_dir`, loading its records into `logic`.
    pub fn open(data_dir: &DataDir, mut logic: L) -> Result<Self, StorageError> {
        let shared = Arc::clone(&data_dir.shared);
        verify_current_snapshot::<C>(&shared)?;
        let generation: u64 = match shared.meta_get(STATE_TREE_KEY)? {
            Some(generation) => generation,
            None => {
                shared
                    .meta
                    .insert(STATE_TREE_KEY, envelope::encode(&0u64))
                    .map_err(shared.sled_error("write meta"))?;
                0
            }
        };
        let current = state_tree_name(generation);
        for name in shared.db.tree_names() {
            let name_text = String::from_utf8_lossy(&name).to_string();
            if name_text.starts_with(STATE_TREE_PREFIX) && name_text != current {
                // Left over from an install that crashed before switching, or from before one
                // that completed.
                tracing::info!(tree = %name_text, "dropping stale state tree");
                shared
                    .db
                    .drop_tree(&name)
                    .map_err(shared.sled_error("drop stale state tree"))?;
            }
        }
        let mut tree = shared
            .db
            .open_tree(&current)
            .map_err(shared.sled_error("open state tree"))?;
        if read_reserved::<bool>(&tree, TORN_APPLY_KEY, &shared)?.unwrap_or(false) {
            tree = rebuild_after_torn_apply::<C>(&shared, generation)?;
        }
        let applied: Option<LogIdOf<C>> = read_reserved::<Option<LogIdOf<C>>>(&tree, APPLIED_KEY, &shared)?.flatten();
        let membership: StoredMembershipOf<C> = read_reserved(&tree, MEMBERSHIP_KEY, &shared)?.unwrap_or_default();

        let recovered_applied = applied.as_ref().map(|l| l.index + 1).unwrap_or(0);
        let witnessed = shared.witness_marks().applied;
        if recovered_applied < witnessed {
            return Err(StorageError::corrupted(
                &shared.db_path,
                format!(
                    "sled recovered the state machine at applied index+1 {recovered_applied} but {} \
                     records {witnessed} as durable; the file is corrupted. Do not reuse this data \
                     directory: move it aside and let the replica rejoin under a new node id",
                    shared.witness_path().display()
                ),
            ));
        }
        shared.applied_written.store(recovered_applied, Ordering::Release);
        restore_from(
            |records| logic.restore(records),
            read_records(&tree, &shared),
            &shared.db_path,
        )?;
        // Loaded from the durable tree: visible to readers from now on.
        logic.after_persist();

        let generation = state_generation(&shared)?;
        Ok(Self {
            shared,
            state: Arc::new(RwLock::new(StateTree { generation, tree })),
            snapshot_gate: Arc::new(tokio::sync::Mutex::new(())),
            logic,
            applied,
            membership,
        })
    }

    /// The application logic (for reads that bypass openraft, e.g. in tests).
    pub fn logic(&self) -> &L {
        &self.logic
    }

    /// Write the current state's records to a new snapshot file at `path` under a
    /// caller-chosen `meta`, without touching this store (offline quorum-loss recovery: the
    /// survivor's records become the snapshot of a new cluster incarnation whose membership
    /// differs from the one recorded here). The file is fsync'd and renamed into place.
    pub fn export_snapshot(
        &self,
        meta: &SnapshotMetaOf<C>,
        path: &std::path::Path,
    ) -> Result<SnapshotFile, StorageError> {
        // The read lock keeps the tree still while it is copied (sled iterators are not
        // point-in-time).
        let state = self.state.read().expect("state lock poisoned");
        write_snapshot(path, &envelope::encode(meta), read_records(&state.tree, &self.shared))?;
        drop(state);
        SnapshotFile::open(path)
    }

    /// Leave the state tree as a crash between the sub-batches of a large apply would.
    /// Fault injection for tests only.
    #[doc(hidden)]
    pub fn simulate_torn_apply(&self) -> Result<(), StorageError> {
        let state = self.state.read().expect("state lock poisoned");
        state
            .tree
            .insert(records::chunk_key(TORN_APPLY_KEY, 0), envelope::encode(&true))
            .map_err(self.shared.sled_error("mark apply"))?;
        state.tree.flush().map_err(self.shared.sled_error("flush"))?;
        Ok(())
    }

    fn builder(&self) -> SnapshotBuilder<C> {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
            state: Arc::clone(&self.state),
            snapshot_gate: Arc::clone(&self.snapshot_gate),
            _types: PhantomData,
        }
    }

    /// Write `changes` plus the applied id and membership to the current tree.
    ///
    /// Small updates are one atomic batch. sled 0.34's `apply_batch` holds a process-wide
    /// write lock for its whole duration, so a large update (a 10k-target batch) is written in
    /// sub-batches, bracketed by the torn-apply marker: the Raft log's own writes get the lock
    /// in between and heartbeats keep flowing. A crash between the brackets leaves the marker,
    /// and the next start rebuilds the state from the snapshot and the log (see `open`).
    fn persist(&self, changes: Changes) -> Result<(), StorageError> {
        let state = self.state.write().expect("state lock poisoned");
        let tree = &state.tree;
        let records: Vec<(Vec<u8>, Change)> = changes.records.into_iter().collect();
        let bracketed = records.len() > PERSIST_BATCH_RECORDS;
        if bracketed {
            tree.insert(records::chunk_key(TORN_APPLY_KEY, 0), envelope::encode(&true))
                .map_err(self.shared.sled_error("mark apply"))?;
        }
        let mut pending = records.into_iter().peekable();
        loop {
            let mut batch = sled::Batch::default();
            for (key, change) in pending.by_ref().take(PERSIST_BATCH_RECORDS) {
                self.add_record(tree, &mut batch, &key, change)?;
            }
            if pending.peek().is_none() {
                batch.insert(records::chunk_key(APPLIED_KEY, 0), envelope::encode(&self.applied));
                batch.insert(
                    records::chunk_key(MEMBERSHIP_KEY, 0),
                    envelope::encode(&self.membership),
                );
                if bracketed {
                    batch.remove(records::chunk_key(TORN_APPLY_KEY, 0));
                }
                tree.apply_batch(batch).map_err(self.shared.sled_error("apply"))?;
                break;
            }
            tree.apply_batch(batch).map_err(self.shared.sled_error("apply"))?;
        }
        let applied = self.applied.as_ref().map(|l| l.index + 1).unwrap_or(0);
        self.shared.applied_written.fetch_max(applied, Ordering::AcqRel);
        Ok(())
    }

    /// Add one record change to `batch`.
    fn add_record(
        &self,
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        key: &[u8],
        change: Change,
    ) -> Result<(), StorageError> {
        let base = record_base(key);
        let mut chunk_count = 0u32;
        if let Change::Put { value, fresh } = change {
            let sealed = envelope::seal(&value);
            for (chunk, piece) in records::chunks(&sealed) {
                batch.insert(records::chunk_key(&base, chunk), piece);
                chunk_count = chunk + 1;
            }
            if fresh {
                return Ok(());
            }
        }
        // Remove chunks a longer earlier value left behind (or all of them on delete).
        for row in tree.scan_prefix(&base) {
            let (stored_key, _) = row.map_err(self.shared.sled_error("read state"))?;
            if let Some((_, chunk)) = records::split_chunk_key(&stored_key)
                && chunk >= chunk_count
            {
                batch.remove(stored_key);
            }
        }
        Ok(())
    }

    async fn install(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFile) -> Result<(), StorageError> {
        let _gate = Arc::clone(&self.snapshot_gate).lock_owned().await;
        let shared = Arc::clone(&self.shared);
        let file_name = snapshot_file_name::<C>(meta);
        let path = shared.snapshot_dir.join(&file_name);
        let next_generation = self.state.read().expect("state lock poisoned").generation + 1;
        let applied = meta.last_log_id.clone();
        let membership = meta.last_membership.clone();

        // 1. Durable private copy, then a fresh tree filled from it.
        let fill_shared = Arc::clone(&shared);
        let fill_path = path.clone();
        let tree = tokio::task::spawn_blocking(move || -> Result<sled::Tree, StorageError> {
            if snapshot.path() != fill_path {
                copy_snapshot(&snapshot, &fill_path)?;
            }
            fill_tree::<C>(&fill_shared, next_generation, Some(&fill_path), &applied, &membership)
        })
        .await
        .map_err(|e| StorageError::Contract(format!("snapshot install task failed: {e}")))??;
        shared.flush_durable(|_| {}).await?;

        // 2. Load the new records into the logic (not yet visible to readers) before anything
        //    points at them.
        restore_from(
            |records| self.logic.restore(records),
            read_records(&tree, &shared),
            &path,
        )?;

        // 3. Switch: the state-tree pointer and the snapshot pointer, then make it durable.
        let applied_mark = meta.last_log_id.as_ref().map(|l| l.index + 1).unwrap_or(0);
        shared
            .lower_witness(move |marks| marks.applied = marks.applied.min(applied_mark))
            .await?;
        let old_tree = {
            let mut state = self.state.write().expect("state lock poisoned");
            let mut switch = sled::Batch::default();
            switch.insert(STATE_TREE_KEY, envelope::encode(&next_generation));
            switch.insert(SNAPSHOT_KEY, envelope::encode(&(file_name.clone(), meta.clone())));
            shared
                .meta
                .apply_batch(switch)
                .map_err(shared.sled_error("switch state tree"))?;
            let old = std::mem::replace(
                &mut *state,
                StateTree {
                    generation: next_generation,
                    tree,
                },
            );
            shared.applied_written.store(applied_mark, Ordering::Release);
            old
        };
        shared
            .flush_durable(move |marks| marks.applied = marks.applied.max(applied_mark))
            .await?;
        shared
            .db
            .drop_tree(state_tree_name(old_tree.generation).as_bytes())
            .map_err(shared.sled_error("drop old state tree"))?;
        self.applied = meta.last_log_id.clone();
        self.membership = meta.last_membership.clone();
        // Readers see the installed state only now that the switch is durable.
        self.logic.after_persist();
        remove_other_snapshots(&shared, &file_name);
        Ok(())
    }
}

/// Create the state tree of `generation` (dropping any leftover), fill it with the records of
/// the snapshot at `snapshot` (or none), and stamp it with `applied` and `membership`.
fn fill_tree<C: StorageTypes>(
    shared: &Shared,
    generation: u64,
    snapshot: Option<&std::path::Path>,
    applied: &Option<LogIdOf<C>>,
    membership: &StoredMembershipOf<C>,
) -> Result<sled::Tree, StorageError> {
    let name = state_tree_name(generation);
    shared
        .db
        .drop_tree(name.as_bytes())
        .map_err(shared.sled_error("drop tree"))?;
    let tree = shared
        .db
        .open_tree(&name)
        .map_err(shared.sled_error("open state tree"))?;
    let mut batch = sled::Batch::default();
    if let Some(path) = snapshot {
        let local = SnapshotFile::open(path)?;
        let reader = SnapshotReader::new(local.reader(), path)?;
        let mut pending = 0;
        for record in reader {
            let (key, value) = record?;
            let base = record_base(&key);
            for (chunk, piece) in records::chunks(&envelope::seal(&value)) {
                batch.insert(records::chunk_key(&base, chunk), piece);
            }
            pending += 1;
            if pending == INSTALL_BATCH {
                tree.apply_batch(std::mem::take(&mut batch))
                    .map_err(shared.sled_error("install"))?;
                pending = 0;
            }
        }
    }
    batch.insert(records::chunk_key(APPLIED_KEY, 0), envelope::encode(applied));
    batch.insert(records::chunk_key(MEMBERSHIP_KEY, 0), envelope::encode(membership));
    tree.apply_batch(batch).map_err(shared.sled_error("install"))?;
    Ok(tree)
}

fn snapshot_file_name<C: StorageTypes>(meta: &SnapshotMetaOf<C>) -> String {
    match &meta.last_log_id {
        Some(id) => format!("snapshot-{}-{}.snap", id.leader_id, id.index),
        None => "snapshot-empty.snap".to_string(),
    }
    .replace(['/', ' ', ':'], "_")
}

fn remove_other_snapshots(shared: &Shared, keep: &str) {
    let Ok(entries) = std::fs::read_dir(&shared.snapshot_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name != keep && name.ends_with(".snap") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl<C: StorageTypes> SnapshotBuilder<C> {
    fn build(&self) -> Result<SnapshotOf<C, SnapshotFile>, StorageError> {
        let shared = &self.shared;
        let state = self.state.read().expect("state lock poisoned");
        let applied: Option<LogIdOf<C>> =
            read_reserved::<Option<LogIdOf<C>>>(&state.tree, APPLIED_KEY, shared)?.flatten();
        let membership: StoredMembershipOf<C> = read_reserved(&state.tree, MEMBERSHIP_KEY, shared)?.unwrap_or_default();
        let meta = SnapshotMetaOf::<C> {
            last_log_id: applied,
            last_membership: membership,
        };
        let file_name = snapshot_file_name::<C>(&meta);
        let path = shared.snapshot_dir.join(&file_name);
        let meta_bytes = envelope::encode(&meta);
        write_snapshot(&path, &meta_bytes, read_records(&state.tree, shared))?;
        drop(state);
        // The tree must be durable at least as far as any snapshot that lets the log be purged.
        shared.flush_durable_blocking(|_| {})?;

        let current: Option<(String, SnapshotMetaOf<C>)> = shared.meta_get(SNAPSHOT_KEY)?;
        let newer = current.as_ref().is_none_or(|(_, m)| m.last_log_id <= meta.last_log_id);
        if newer {
            shared
                .meta
                .insert(SNAPSHOT_KEY, envelope::encode(&(file_name.clone(), meta.clone())))
                .map_err(shared.sled_error("write meta"))?;
            // The new pointer must be on disk before the file the old one names is deleted.
            shared.flush_durable_blocking(|_| {})?;
            remove_other_snapshots(shared, &file_name);
        }
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile::open(path)?,
        })
    }
}

impl<C: StorageTypes> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotFile>, io::Error> {
        // openraft builds in its own task, possibly while a snapshot is being installed.
        let _gate = Arc::clone(&self.snapshot_gate).lock_owned().await;
        let builder = SnapshotBuilder::<C> {
            shared: Arc::clone(&self.shared),
            state: Arc::clone(&self.state),
            snapshot_gate: Arc::clone(&self.snapshot_gate),
            _types: PhantomData,
        };
        let snapshot = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))??;
        Ok(snapshot)
    }
}

impl<C: StorageTypes, L: StateMachineLogic<C>> RaftStateMachine<C> for StateMachineStore<C, L> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(&mut self) -> Result<(Option<LogIdOf<C>>, StoredMembershipOf<C>), io::Error> {
        Ok((self.applied.clone(), self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.next().await {
            batch.push(item?);
        }
        // Applying a large batch and writing its records is long synchronous work; keep it off
        // the async workers so heartbeats and replication do not stall behind it.
        let responses = run_blocking(|| -> Result<_, StorageError> {
            let mut changes = Changes::default();
            let mut responses = Vec::with_capacity(batch.len());
            for (entry, responder) in batch {
                let log_id = entry.log_id();
                if let Some(membership) = entry.get_membership() {
                    self.membership = StoredMembership::new(Some(log_id.clone()), membership.clone());
                }
                let response = self.logic.apply(&entry, &mut changes);
                self.applied = Some(log_id);
                if let Some(responder) = responder {
                    responses.push((responder, response));
                }
            }
            self.persist(changes)?;
            Ok(responses)
        })?;
        // Durable before anyone can read it: a replica must never serve a revision it could
        // forget in a crash (DESIGN.md I3, "not even across its own restart").
        self.shared.flush_durable(|_| {}).await?;
        self.logic.after_persist();
        for (responder, response) in responses {
            responder.send(response);
        }
        Ok(())
    }

    async fn try_create_snapshot_builder(&mut self, _force: bool) -> Option<Self::SnapshotBuilder> {
        Some(self.builder())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.builder()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFile) -> Result<(), io::Error> {
        Ok(self.install(meta, snapshot).await?)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<C, SnapshotFile>>, io::Error> {
        let current: Option<(String, SnapshotMetaOf<C>)> = self.shared.meta_get(SNAPSHOT_KEY)?;
        let Some((file_name, meta)) = current else {
            return Ok(None);
        };
        let snapshot = open_snapshot(&self.shared, &file_name)?;
        Ok(Some(Snapshot { meta, snapshot }))
    }
}

/// The current state-tree generation recorded in `meta`.
fn state_generation(shared: &Shared) -> Result<u64, StorageError> {
    Ok(shared.meta_get(STATE_TREE_KEY)?.unwrap_or(0))
}

/// The last apply was interrupted between its sub-batches: the tree mixes two states. Rebuild
/// it from the current snapshot (or empty), so openraft re-applies the committed log after it.
/// The log after a snapshot is never purged, so nothing is lost.
fn rebuild_after_torn_apply<C: StorageTypes>(shared: &Shared, generation: u64) -> Result<sled::Tree, StorageError> {
    let snapshot: Option<(String, SnapshotMetaOf<C>)> = shared.meta_get(SNAPSHOT_KEY)?;
    tracing::warn!(
        snapshot = ?snapshot.as_ref().map(|(file, _)| file),
        "the last apply was interrupted; rebuilding the state machine from the snapshot and the log"
    );
    let next = generation + 1;
    let (path, applied, membership) = match &snapshot {
        Some((file, meta)) => (
            Some(shared.snapshot_dir.join(file)),
            meta.last_log_id.clone(),
            meta.last_membership.clone(),
        ),
        None => (None, None, StoredMembershipOf::<C>::default()),
    };
    let tree = fill_tree::<C>(shared, next, path.as_deref(), &applied, &membership)?;
    shared.db.flush().map_err(shared.sled_error("flush"))?;
    let applied_mark = applied.as_ref().map(|l| l.index + 1).unwrap_or(0);
    shared.lower_witness_now(|marks| marks.applied = marks.applied.min(applied_mark))?;
    shared
        .meta
        .insert(STATE_TREE_KEY, envelope::encode(&next))
        .map_err(shared.sled_error("switch state tree"))?;
    shared.db.flush().map_err(shared.sled_error("flush"))?;
    shared
        .db
        .drop_tree(state_tree_name(generation).as_bytes())
        .map_err(shared.sled_error("drop torn state tree"))?;
    Ok(tree)
}

/// Run `work` where blocking is allowed: in place on a multi-threaded runtime (other tasks
/// move to another worker), directly otherwise.
fn run_blocking<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// A replica must not start on a damaged, missing or mismatched snapshot: it is what followers
/// are rebuilt from. Also removes temporary files of builds or copies a crash interrupted
/// (nothing else can be writing while the store opens).
fn verify_current_snapshot<C: StorageTypes>(shared: &Shared) -> Result<(), StorageError> {
    if let Ok(entries) = std::fs::read_dir(&shared.snapshot_dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let current: Option<(String, SnapshotMetaOf<C>)> = shared.meta_get(SNAPSHOT_KEY)?;
    if let Some((file_name, meta)) = current {
        let file = open_snapshot(shared, &file_name)?;
        let (meta_bytes, _) = file.verify()?;
        let stored: SnapshotMetaOf<C> = envelope::decode(&meta_bytes)
            .map_err(|e| StorageError::corrupted(file.path(), format!("snapshot meta: {e}")))?;
        if stored != meta {
            return Err(StorageError::corrupted(
                file.path(),
                "the snapshot file does not hold the snapshot the database points at",
            ));
        }
    }
    Ok(())
}

/// Open the snapshot `file_name` recorded as current; a missing file is corruption.
fn open_snapshot(shared: &Shared, file_name: &str) -> Result<SnapshotFile, StorageError> {
    let path = shared.snapshot_dir.join(file_name);
    if !path.exists() {
        return Err(StorageError::corrupted(&path, "the current snapshot file is missing"));
    }
    SnapshotFile::open(path)
}
