//! The state machine: openraft's `RaftStateMachine` and `RaftSnapshotBuilder`, around an
//! application-supplied [`StateMachineLogic`].
//!
//! The state lives in memory and is made durable by the Raft log and by snapshots, as
//! openraft intends for such machines: applying an entry is a memory operation, and nothing is
//! written per record. A restart loads the current snapshot and openraft re-applies the
//! committed log after it (`StorageHelper::get_initial_state`). The log after a snapshot is
//! never purged, so that replay always finds what it needs.
//!
//! Durability rules kept (docs/architecture.md, "The state machine"):
//! - an apply call publishes its state to readers only after the committed index covering it
//!   is durable, so a restarted replica re-applies at least as far as it ever served (I3);
//! - a snapshot is a checksummed file written to a temporary name, fsync'd, renamed and its
//!   directory fsync'd, and only then recorded as current in `meta`; a damaged, missing or
//!   mismatched current snapshot refuses to start, naming the file.
//!
//! Data directories of the earlier layout (one sled record per application record in
//! `state-<generation>` trees) are read by dropping those trees: the current snapshot file has
//! the same format, and the log after it was never purged.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
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
use crate::snapshot_file::SnapshotFile;
use crate::snapshot_file::SnapshotReader;
use crate::snapshot_file::copy_snapshot;
use crate::snapshot_file::write_snapshot;

const SNAPSHOT_KEY: &[u8] = b"snapshot";

pub use crate::snapshot_file::Record;

/// A point-in-time copy of the application state that a snapshot is written from, on
/// another thread while the state machine goes on applying.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Every record of the state, in any deterministic order.
    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_>;
}

/// What the application plugs into the store: a deterministic state machine in memory.
pub trait StateMachineLogic<C: StorageTypes>: Send + Sync + 'static {
    /// The frozen copy [`StateMachineLogic::freeze`] returns.
    type Frozen: SnapshotSource;

    /// Apply one committed entry (normal, blank or membership) to the in-memory state. Must
    /// be deterministic: the same entries in the same order produce the same state on every
    /// replica.
    fn apply(&mut self, entry: &C::Entry) -> C::R;

    /// The state as it is now, cheap to take (the table uses persistent maps), to write a
    /// snapshot from.
    fn freeze(&self) -> Self::Frozen;

    /// Replace the whole state with `records` (as [`SnapshotSource::records`] produced them),
    /// at startup or when a snapshot is installed. Either succeeds completely or leaves the
    /// previous state untouched. Must not publish to readers yet: the store calls
    /// [`StateMachineLogic::after_persist`] once the restored state is durable and current.
    fn restore(&mut self, records: &mut dyn Iterator<Item = Record>) -> Result<(), String>;

    /// Called once the state may be served (after each `apply` call once the log covering it
    /// is durable, after opening, after installing a snapshot): the point to publish it to
    /// readers.
    fn after_persist(&mut self) {}
}

/// Feed `records` to `restore`, turning the first read error into the result.
fn restore_from(
    restore: impl FnOnce(&mut dyn Iterator<Item = Record>) -> Result<(), String>,
    records: impl Iterator<Item = Result<Record, StorageError>>,
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

/// Restore `restore` from the snapshot file at `path`, verifying every frame as it goes.
fn restore_from_file(
    restore: impl FnOnce(&mut dyn Iterator<Item = Record>) -> Result<(), String>,
    path: &std::path::Path,
) -> Result<(), StorageError> {
    let file = SnapshotFile::open(path)?;
    let reader = SnapshotReader::new(file.reader(), path)?;
    restore_from(restore, reader, path)
}

/// The state-machine store. Owned by openraft's state-machine worker.
pub struct StateMachineStore<C: StorageTypes, L: StateMachineLogic<C>> {
    shared: Arc<Shared>,
    /// Serializes snapshot builds and installs end to end (files, pointer, cleanup). An async
    /// mutex: an install holds it across its durable flushes.
    snapshot_gate: Arc<tokio::sync::Mutex<()>>,
    logic: L,
    applied: Option<LogIdOf<C>>,
    membership: StoredMembershipOf<C>,
}

/// Writes a snapshot file from a frozen copy of the state.
pub struct SnapshotBuilder<C: StorageTypes, F: SnapshotSource> {
    shared: Arc<Shared>,
    snapshot_gate: Arc<tokio::sync::Mutex<()>>,
    frozen: Option<(F, SnapshotMetaOf<C>)>,
    _types: PhantomData<C>,
}

impl<C: StorageTypes, L: StateMachineLogic<C>> StateMachineStore<C, L> {
    /// Open the state machine in `data_dir`: the current snapshot, if any, loaded into
    /// `logic`. openraft re-applies the committed log after it.
    pub fn open(data_dir: &DataDir, mut logic: L) -> Result<Self, StorageError> {
        let shared = Arc::clone(&data_dir.shared);
        verify_current_snapshot::<C>(&shared)?;
        let legacy = drop_legacy_state_trees(&shared)?;
        let current: Option<(String, SnapshotMetaOf<C>)> = shared.meta_get(SNAPSHOT_KEY)?;
        let (applied, membership) = match &current {
            Some((file_name, meta)) => {
                let path = shared.snapshot_dir.join(file_name);
                restore_from_file(|records| logic.restore(records), &path)?;
                (meta.last_log_id.clone(), meta.last_membership.clone())
            }
            None => (None, StoredMembershipOf::<C>::default()),
        };
        let recovered_applied = applied.as_ref().map(|l| l.index + 1).unwrap_or(0);
        if legacy {
            // The earlier layout witnessed the applied index of its state tree; what survives
            // a restart now is the snapshot.
            shared.lower_witness_now(|marks| marks.applied = marks.applied.min(recovered_applied))?;
        }
        let witnessed = shared.witness_marks().applied;
        if recovered_applied < witnessed {
            return Err(StorageError::corrupted(
                &shared.db_path,
                format!(
                    "sled recovered the current snapshot at applied index+1 {recovered_applied} but {} \
                     records {witnessed} as durable; the file is corrupted. Do not reuse this data \
                     directory: move it aside and let the replica rejoin under a new node id",
                    shared.witness_path().display()
                ),
            ));
        }
        shared.applied_written.store(recovered_applied, Ordering::Release);
        shared.applied_in_memory.store(recovered_applied, Ordering::Release);
        // Loaded from the durable snapshot: visible to readers from now on.
        logic.after_persist();
        Ok(Self {
            shared,
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

    /// The applied log id and membership of the state held now.
    pub fn applied(&self) -> (Option<LogIdOf<C>>, StoredMembershipOf<C>) {
        (self.applied.clone(), self.membership.clone())
    }

    /// Write the current state to a new snapshot file at `path` under a caller-chosen
    /// `meta`, without touching this store (offline quorum-loss recovery: the survivor's
    /// state becomes the snapshot of a new cluster incarnation whose membership differs from
    /// the one recorded here). The file is fsync'd and renamed into place.
    pub fn export_snapshot(
        &self,
        meta: &SnapshotMetaOf<C>,
        path: &std::path::Path,
    ) -> Result<SnapshotFile, StorageError> {
        let frozen = self.logic.freeze();
        write_snapshot(path, &envelope::encode(meta), frozen.records().map(Ok))?;
        SnapshotFile::open(path)
    }

    fn builder(&self) -> SnapshotBuilder<C, L::Frozen> {
        SnapshotBuilder {
            shared: Arc::clone(&self.shared),
            snapshot_gate: Arc::clone(&self.snapshot_gate),
            frozen: Some((
                self.logic.freeze(),
                SnapshotMetaOf::<C> {
                    last_log_id: self.applied.clone(),
                    last_membership: self.membership.clone(),
                },
            )),
            _types: PhantomData,
        }
    }

    async fn install(&mut self, meta: &SnapshotMetaOf<C>, snapshot: SnapshotFile) -> Result<(), StorageError> {
        let _gate = Arc::clone(&self.snapshot_gate).lock_owned().await;
        let shared = Arc::clone(&self.shared);
        let file_name = snapshot_file_name::<C>(meta);
        let path = shared.snapshot_dir.join(&file_name);

        // 1. A durable private copy.
        if snapshot.path() != path {
            let copy_path = path.clone();
            tokio::task::spawn_blocking(move || copy_snapshot(&snapshot, &copy_path))
                .await
                .map_err(|e| StorageError::Contract(format!("snapshot install task failed: {e}")))??;
        }

        // 2. Load it into the logic (not yet visible to readers) before anything points at it.
        run_blocking(|| restore_from_file(|records| self.logic.restore(records), &path))?;

        // 3. Switch the snapshot pointer and make it durable.
        let applied_mark = meta.last_log_id.as_ref().map(|l| l.index + 1).unwrap_or(0);
        shared
            .lower_witness(move |marks| marks.applied = marks.applied.min(applied_mark))
            .await?;
        shared
            .meta
            .insert(SNAPSHOT_KEY, envelope::encode(&(file_name.clone(), meta.clone())))
            .map_err(shared.sled_error("switch snapshot"))?;
        shared.applied_written.store(applied_mark, Ordering::Release);
        shared.applied_in_memory.store(applied_mark, Ordering::Release);
        shared
            .flush_durable(move |marks| marks.applied = marks.applied.max(applied_mark))
            .await?;
        self.applied = meta.last_log_id.clone();
        self.membership = meta.last_membership.clone();
        // Readers see the installed state only now that the switch is durable.
        self.logic.after_persist();
        remove_other_snapshots(&shared, &file_name);
        Ok(())
    }
}

/// Drop the per-record state trees of the earlier layout; true if there were any.
fn drop_legacy_state_trees(shared: &Shared) -> Result<bool, StorageError> {
    let mut dropped = false;
    for name in shared.db.tree_names() {
        let name_text = String::from_utf8_lossy(&name).to_string();
        if name_text.starts_with(STATE_TREE_PREFIX) {
            tracing::info!(tree = %name_text, "dropping a state tree of the earlier layout; the snapshot and the log hold the state");
            shared
                .db
                .drop_tree(&name)
                .map_err(shared.sled_error("drop legacy state tree"))?;
            dropped = true;
        }
    }
    if dropped {
        shared.db.flush().map_err(shared.sled_error("flush"))?;
    }
    Ok(dropped)
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

impl<C: StorageTypes, F: SnapshotSource> SnapshotBuilder<C, F> {
    fn build(
        shared: &Shared,
        frozen: &F,
        meta: SnapshotMetaOf<C>,
    ) -> Result<SnapshotOf<C, SnapshotFile>, StorageError> {
        let file_name = snapshot_file_name::<C>(&meta);
        let path = shared.snapshot_dir.join(&file_name);
        let meta_bytes = envelope::encode(&meta);
        write_snapshot(&path, &meta_bytes, frozen.records().map(Ok))?;

        let current: Option<(String, SnapshotMetaOf<C>)> = shared.meta_get(SNAPSHOT_KEY)?;
        let newer = current.as_ref().is_none_or(|(_, m)| m.last_log_id <= meta.last_log_id);
        if newer {
            shared
                .meta
                .insert(SNAPSHOT_KEY, envelope::encode(&(file_name.clone(), meta.clone())))
                .map_err(shared.sled_error("write meta"))?;
            let applied_mark = meta.last_log_id.as_ref().map(|l| l.index + 1).unwrap_or(0);
            // The new pointer must be on disk before the file the old one names is deleted,
            // and before the log it covers may be purged.
            shared.flush_durable_blocking(|marks| marks.applied = marks.applied.max(applied_mark))?;
            remove_other_snapshots(shared, &file_name);
        }
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile::open(path)?,
        })
    }
}

impl<C: StorageTypes, F: SnapshotSource> RaftSnapshotBuilder<C> for SnapshotBuilder<C, F> {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<C, SnapshotFile>, io::Error> {
        // openraft builds in its own task, possibly while a snapshot is being installed.
        let _gate = Arc::clone(&self.snapshot_gate).lock_owned().await;
        let (frozen, meta) = self
            .frozen
            .take()
            .ok_or_else(|| io::Error::other("a snapshot builder builds once"))?;
        let shared = Arc::clone(&self.shared);
        let snapshot = tokio::task::spawn_blocking(move || Self::build(&shared, &frozen, meta))
            .await
            .map_err(|e| io::Error::other(format!("snapshot task failed: {e}")))??;
        Ok(snapshot)
    }
}

impl<C: StorageTypes, L: StateMachineLogic<C>> RaftStateMachine<C> for StateMachineStore<C, L> {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = SnapshotBuilder<C, L::Frozen>;

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
        // Applying a large batch is long synchronous work; keep it off the async workers so
        // heartbeats and replication do not stall behind it.
        let responses = run_blocking(|| {
            let mut responses = Vec::with_capacity(batch.len());
            for (entry, responder) in batch {
                let log_id = entry.log_id();
                if let Some(membership) = entry.get_membership() {
                    self.membership = StoredMembership::new(Some(log_id.clone()), membership.clone());
                }
                let response = self.logic.apply(&entry);
                self.applied = Some(log_id);
                if let Some(responder) = responder {
                    responses.push((responder, response));
                }
            }
            responses
        });
        // Served only once a restart would re-apply at least this far: the entries are in the
        // durable log already; the committed index that makes openraft replay them must be
        // durable too (docs/architecture.md, I3: "not even across its own restart").
        if let Some(applied) = &self.applied {
            crate::log_store::raise_committed::<C>(&self.shared, applied)?;
            self.shared
                .applied_in_memory
                .fetch_max(applied.index + 1, std::sync::atomic::Ordering::AcqRel);
        }
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
