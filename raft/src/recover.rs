//! Offline recovery from quorum loss (`target-allocator recover`), like etcd's
//! `--force-new-cluster`.
//!
//! When two of three replicas are gone for good, the survivor can never commit again. This
//! module turns the survivor's data directory into the first member of a **new cluster
//! incarnation**: a new cluster id, a new node id (ids are never reused), and a state machine
//! holding exactly what the survivor had **applied**, installed as a snapshot at the same log
//! index with the membership `{new node}`. Started, the replica is the sole voter, elects
//! itself, and serves the same table at the same revision; the other replicas come back with
//! empty volumes and the leader's membership automation adds them.
//!
//! What is kept and what is dropped: the applied state only. Entries in the survivor's log
//! after its applied index are dropped and counted. Some of them may have been committed by
//! the old quorum (the report says how many the survivor had recorded as committed), but the
//! rest it cannot know to be committed, and replaying log entries into a new incarnation would
//! also replay old membership changes. Normally the gap is empty: a replica applies what it
//! learns is committed at once.
//!
//! ```text
//!  survivor dir ──open (refuses if locked: replica running)──► applied table + log state
//!        │ export records as a snapshot under meta {applied log id, membership {new id}}
//!        ▼
//!  target dir (--output, or <dir>/recovery-staging for --in-place)
//!        identity(new id) + cluster id(new) + install snapshot + vote + purge through applied
//!        ▼ reopen and verify (same applied index, same table digest, sole voter)
//!  --in-place only: old entries → <dir>/pre-recovery-<millis>/, staged entries → <dir>
//! ```
//!
//! Nothing here runs unless the operator confirms; nothing elsewhere in the service does it.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use openraft::Membership;
use openraft::RaftLogReader;
use openraft::StoredMembership;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::storage::SnapshotMeta;
use ta_storage::DATA_DIR_ENTRIES;
use ta_storage::DataDir;
use ta_storage::StorageError;

use crate::identity::ClusterId;
use crate::identity::IdentityError;
use crate::identity::{self};
use crate::model::Table;
use crate::persist::TableMachine;
use crate::types::LogId;
use crate::types::NodeId;
use crate::types::PeerNode;

/// The command-line flag that confirms the operator means it. Named for the consequence.
pub const CONFIRMATION_FLAG: &str = "--yes-form-a-new-cluster-from-this-replica";
/// Where `--in-place` builds the new state before swapping it in (same filesystem, so the
/// swap is a few renames).
pub const STAGING_DIR: &str = "recovery-staging";
/// Prefix of the directory, inside the data directory, that keeps the old state after an
/// in-place recovery.
pub const BACKUP_PREFIX: &str = "pre-recovery-";
/// The exported snapshot, written into the target directory and removed once installed.
const IMPORT_FILE: &str = "recovery-import.snap";
/// sled's flusher thread can hold the file lock briefly after the last handle is dropped.
const REOPEN_PATIENCE: Duration = Duration::from_secs(10);
/// How long a held lock on the survivor's directory may last before it counts as a running
/// replica (see `open_survivor`).
const LOCK_PATIENCE: Duration = Duration::from_secs(3);

/// Where the new state goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A new, empty (or absent) directory; the survivor's directory is left as it is.
    NewDirectory(PathBuf),
    /// Replace the state inside the survivor's directory (its mount point can stay); the old
    /// state is moved to `<data_dir>/pre-recovery-<millis>/`, never deleted.
    InPlace,
}

/// One recovery run.
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// The surviving replica's data directory. The replica must be stopped.
    pub data_dir: PathBuf,
    pub destination: Destination,
    /// The operator passed [`CONFIRMATION_FLAG`].
    pub confirmed_new_cluster: bool,
}

/// Why recovery refused or failed. Every refusal happens before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "recovery forms a NEW cluster from this replica alone: the other replicas must then be wiped, \
         and entries this replica had not applied are lost. Pass {CONFIRMATION_FLAG} to confirm"
    )]
    NotConfirmed,
    #[error("{dir} is not a replica data directory (no {dir}/sled/db){hint}")]
    NotADataDirectory { dir: PathBuf, hint: String },
    #[error(
        "a process holds the lock on {dir}: the replica is probably still running. Stop it \
         (Kubernetes: scale the StatefulSet to 0) and run recover again"
    )]
    ReplicaRunning { dir: PathBuf },
    #[error("{dir} has no node identity; it was never a replica's data directory")]
    NoIdentity { dir: PathBuf },
    #[error("{dir} has no applied state (the replica never applied an entry); there is nothing to recover")]
    NothingApplied { dir: PathBuf },
    #[error("output directory {dir} exists and is not empty; give a new or empty directory")]
    OutputNotEmpty { dir: PathBuf },
    #[error("--output {dir} is the data directory itself; use --in-place to replace its state")]
    OutputIsDataDirectory { dir: PathBuf },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{operation} failed on {path}: {source}")]
    File {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("storage call {operation} failed: {source}")]
    Raft {
        operation: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the new membership is invalid: {0}")]
    Membership(String),
    #[error("the written state does not match the survivor's ({0}); the survivor's directory is unchanged")]
    VerificationFailed(String),
}

fn raft_io(operation: &'static str) -> impl FnOnce(std::io::Error) -> RecoverError {
    move |source| RecoverError::Raft { operation, source }
}

fn file_error<'a>(operation: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RecoverError + 'a {
    move |source| RecoverError::File {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

/// What a recovery did, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub name: String,
    pub survivor_dir: PathBuf,
    pub old_node_id: NodeId,
    pub old_cluster_id: Option<ClusterId>,
    /// Log index of the last applied entry: the new incarnation starts from it.
    pub applied_index: u64,
    pub revision: u64,
    pub targets: usize,
    pub collectors: usize,
    /// Log entries after the applied index, dropped.
    pub dropped_log_entries: u64,
    /// Of those, how many the survivor had recorded as committed (lost writes of the old
    /// cluster, unless another replica comes back; the rest may never have been committed).
    pub dropped_known_committed: u64,
    /// Names of the other replicas in the old membership: to wipe and restart.
    pub other_replicas: Vec<String>,
    pub new_node_id: NodeId,
    pub new_cluster_id: ClusterId,
    /// The directory that now holds the new state.
    pub written_to: PathBuf,
    /// Where the old state is kept: the untouched survivor directory, or the in-place backup.
    pub old_state_at: PathBuf,
    pub in_place: bool,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Recovered replica {} from {}",
            self.name,
            self.survivor_dir.display()
        )?;
        writeln!(
            f,
            "  old identity:   node {} of cluster {}",
            self.old_node_id,
            self.old_cluster_id
                .map(|c| c.to_string())
                .unwrap_or_else(|| "(none)".into())
        )?;
        writeln!(
            f,
            "  table:          revision {}, {} targets, {} collectors (applied through log index {})",
            self.revision, self.targets, self.collectors, self.applied_index
        )?;
        writeln!(
            f,
            "  dropped:        {} log entries after the applied index ({} of them recorded as committed)",
            self.dropped_log_entries, self.dropped_known_committed
        )?;
        writeln!(
            f,
            "  new identity:   node {} of NEW cluster {}, sole voter",
            self.new_node_id, self.new_cluster_id
        )?;
        writeln!(f, "  written to:     {}", self.written_to.display())?;
        writeln!(f, "  old state kept: {}", self.old_state_at.display())?;
        writeln!(f)?;
        writeln!(f, "Next steps:")?;
        let mut step = 1;
        if !self.in_place {
            writeln!(
                f,
                "  {step}. Make {} the data directory of {} (or point its data_dir at it).",
                self.written_to.display(),
                self.name
            )?;
            step += 1;
        }
        writeln!(
            f,
            "  {step}. Start {} alone: it elects itself leader and serves revision {}.",
            self.name, self.revision
        )?;
        step += 1;
        let others = if self.other_replicas.is_empty() {
            "the other replicas".to_string()
        } else {
            self.other_replicas.join(", ")
        };
        writeln!(
            f,
            "  {step}. Wipe the data directories (volumes) of {others} and start them: the leader adds each back \
             (learner, then voter), one at a time."
        )?;
        step += 1;
        write!(
            f,
            "  {step}. Once `target-allocator status` shows every replica as a voter, delete {} if you no longer need it.",
            self.old_state_at.display()
        )
    }
}

/// What the survivor holds.
struct Survivor {
    identity: identity::NodeIdentity,
    cluster_id: Option<ClusterId>,
    applied: LogId,
    node: PeerNode,
    other_replicas: Vec<String>,
    vote_term: u64,
    dropped_log_entries: u64,
    dropped_known_committed: u64,
    table: Table,
}

/// Run a recovery. Refusals (no confirmation, running replica, no applied state, bad output)
/// happen before anything is written.
pub async fn recover(request: RecoverRequest) -> Result<RecoveryReport, RecoverError> {
    if !request.confirmed_new_cluster {
        return Err(RecoverError::NotConfirmed);
    }
    let data_dir = request.data_dir.clone();
    if !data_dir.join("sled").join("db").is_file() {
        return Err(RecoverError::NotADataDirectory {
            hint: interrupted_recovery_hint(&data_dir),
            dir: data_dir,
        });
    }
    let target = match &request.destination {
        Destination::NewDirectory(output) => {
            check_output(&data_dir, output)?;
            output.clone()
        }
        Destination::InPlace => {
            let staging = data_dir.join(STAGING_DIR);
            if staging.exists() {
                // Left by a run interrupted before its swap began (the swap starts only once
                // staging is complete and verified, and a started swap removes the old
                // `sled/db`, which the check above refuses): never used, safe to rebuild.
                std::fs::remove_dir_all(&staging).map_err(file_error("remove stale staging", &staging))?;
            }
            staging
        }
    };

    let old = open_survivor(&data_dir).await?;
    let (survivor, old_state_machine) = read_survivor(&old).await?;

    let written = write_new_incarnation(&survivor, &old_state_machine, &target).await;
    // Release the survivor's database before the swap moves its files.
    drop(old_state_machine);
    drop(old);
    let (new_node_id, new_cluster_id) = written?;
    verify(&target, &survivor, new_node_id).await?;

    let (written_to, old_state_at) = match &request.destination {
        Destination::NewDirectory(output) => (output.clone(), data_dir.clone()),
        Destination::InPlace => {
            let backup = swap_in(&data_dir, &target)?;
            (data_dir.clone(), backup)
        }
    };
    tracing::warn!(
        name = %survivor.identity.name,
        new_node_id,
        %new_cluster_id,
        revision = survivor.table.revision,
        "formed a new cluster incarnation from this replica's applied state"
    );
    Ok(RecoveryReport {
        name: survivor.identity.name.clone(),
        survivor_dir: data_dir,
        old_node_id: survivor.identity.node_id,
        old_cluster_id: survivor.cluster_id,
        applied_index: survivor.applied.index,
        revision: survivor.table.revision,
        targets: survivor.table.targets().len(),
        collectors: survivor.table.collectors.len(),
        dropped_log_entries: survivor.dropped_log_entries,
        dropped_known_committed: survivor.dropped_known_committed,
        other_replicas: survivor.other_replicas.clone(),
        new_node_id,
        new_cluster_id,
        written_to,
        old_state_at,
        in_place: matches!(request.destination, Destination::InPlace),
    })
}

fn check_output(data_dir: &Path, output: &Path) -> Result<(), RecoverError> {
    let same = match (data_dir.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => data_dir == output,
    };
    if same {
        return Err(RecoverError::OutputIsDataDirectory {
            dir: output.to_path_buf(),
        });
    }
    match std::fs::read_dir(output) {
        Ok(mut entries) => match entries.next() {
            Some(_) => Err(RecoverError::OutputNotEmpty {
                dir: output.to_path_buf(),
            }),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(file_error("read output directory", output)(e)),
    }
}

/// A hint for a data directory without `sled/db`: an in-place recovery interrupted mid-swap
/// leaves the old state in a backup directory and the new one in staging.
fn interrupted_recovery_hint(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let leftovers: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with(BACKUP_PREFIX) || name == STAGING_DIR)
        .collect();
    if leftovers.is_empty() {
        return String::new();
    }
    format!(
        "; it holds {} from an interrupted in-place recovery: the old state is in the {BACKUP_PREFIX}* \
         directory; move its entries back into {} and run recover again",
        leftovers.join(", "),
        dir.display()
    )
}

/// Open the survivor's directory. A replica that is running holds sled's lock for as long as
/// it runs; a process that just exited may hold it for a moment (sled's flusher thread), so a
/// held lock is retried briefly before it is reported as a running replica.
async fn open_survivor(dir: &Path) -> Result<DataDir, RecoverError> {
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match DataDir::open(dir) {
            Ok(open) => return Ok(open),
            Err(e) if e.is_locked_by_another_process() => {
                if std::time::Instant::now() >= deadline {
                    return Err(RecoverError::ReplicaRunning { dir: dir.to_path_buf() });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(RecoverError::Storage(e)),
        }
    }
}

type StateMachine = ta_storage::StateMachineStore<crate::types::TypeConfig, TableMachine>;
type LogStore = ta_storage::LogStore<crate::types::TypeConfig>;

async fn read_survivor(old: &DataDir) -> Result<(Survivor, StateMachine), RecoverError> {
    let dir = old.path().to_path_buf();
    let identity = identity::load(old)?.ok_or_else(|| RecoverError::NoIdentity { dir: dir.clone() })?;
    let cluster_id = identity::cluster_id(old)?;
    let (machine, table) = TableMachine::new();
    let (mut log, mut state_machine) = ta_storage::open_stores::<crate::types::TypeConfig, _>(old, machine)?;
    let committed = log.read_committed().await.map_err(raft_io("read committed"))?;
    // The state machine opens at its snapshot; what the survivor applied is that plus the
    // committed log after it, re-applied as openraft would at start.
    replay_committed(&mut log, &mut state_machine, committed).await?;
    let (applied, membership) = state_machine
        .applied_state()
        .await
        .map_err(raft_io("read applied state"))?;
    let applied = applied.ok_or(RecoverError::NothingApplied { dir: dir.clone() })?;
    let log_state = log.get_log_state().await.map_err(raft_io("read log state"))?;
    let vote = log.read_vote().await.map_err(raft_io("read vote"))?;
    let last_log_index = log_state.last_log_id.map(|l| l.index).unwrap_or(0);
    let committed_index = committed.map(|l| l.index).unwrap_or(0);

    let membership = membership.membership();
    let node = membership.get_node(&identity.node_id).cloned().unwrap_or(PeerNode {
        name: identity.name.clone(),
        url: String::new(),
    });
    let other_replicas: BTreeSet<String> = membership
        .nodes()
        .filter(|(id, node)| **id != identity.node_id && node.name != identity.name)
        .map(|(_, node)| node.name.clone())
        .collect();
    let vote_term = vote.map(|v| openraft::vote::RaftVote::leader_id(&v).term).unwrap_or(0);
    let table = table.borrow().clone();
    drop(log);
    Ok((
        Survivor {
            dropped_log_entries: last_log_index.saturating_sub(applied.index),
            dropped_known_committed: committed_index.saturating_sub(applied.index),
            vote_term: vote_term.max(applied.leader_id.term),
            applied,
            node,
            other_replicas: other_replicas.into_iter().collect(),
            identity,
            cluster_id,
            table,
        },
        state_machine,
    ))
}

/// Re-apply the committed log after the state machine's snapshot, in bounded chunks.
async fn replay_committed(
    log: &mut LogStore,
    state_machine: &mut StateMachine,
    committed: Option<LogId>,
) -> Result<(), RecoverError> {
    const CHUNK: u64 = 64;
    let Some(committed) = committed else {
        return Ok(());
    };
    let (applied, _) = state_machine
        .applied_state()
        .await
        .map_err(raft_io("read applied state"))?;
    let last_purged = log
        .get_log_state()
        .await
        .map_err(raft_io("read log state"))?
        .last_purged_log_id;
    let mut next = applied
        .map_or(0, |l| l.index + 1)
        .max(last_purged.map_or(0, |l| l.index + 1));
    let mut reader = log.get_log_reader().await;
    while next <= committed.index {
        let end = (next + CHUNK).min(committed.index + 1);
        let entries = reader
            .try_get_log_entries(next..end)
            .await
            .map_err(raft_io("read committed log"))?;
        // A log that never held index 0 (openraft's own starts there) begins at its first entry.
        let first_expected = match (applied, last_purged, entries.first()) {
            (None, None, Some(first)) if first.log_id.index > next => first.log_id.index,
            _ => next,
        };
        let contiguous = entries
            .iter()
            .enumerate()
            .all(|(i, entry)| entry.log_id.index == first_expected + i as u64);
        if !contiguous || first_expected + entries.len() as u64 != end {
            return Err(RecoverError::VerificationFailed(format!(
                "the committed log has a gap: entries {next}..{end} read {} of them",
                entries.len()
            )));
        }
        let stream = futures::stream::iter(entries.into_iter().map(|entry| Ok((entry, None))));
        state_machine
            .apply(stream)
            .await
            .map_err(raft_io("re-apply the committed log"))?;
        next = end;
    }
    Ok(())
}

/// Write the new incarnation into `target`; returns the new node id and cluster id.
async fn write_new_incarnation(
    survivor: &Survivor,
    old_state_machine: &StateMachine,
    target: &Path,
) -> Result<(NodeId, ClusterId), RecoverError> {
    let new_dir = DataDir::open(target)?;
    // A fresh directory gets a fresh random id: the new node never reuses the old one.
    let identity = identity::load_or_create(&new_dir, &survivor.identity.name).await?;
    if identity.node_id == survivor.identity.node_id {
        return Err(RecoverError::VerificationFailed(
            "the new node id equals the old one (a 1 in 2^64 chance); remove the output and run again".into(),
        ));
    }
    let cluster_id = loop {
        let candidate = ClusterId::random();
        if Some(candidate) != survivor.cluster_id {
            break candidate;
        }
    };
    identity::adopt_cluster_id(&new_dir, cluster_id).await?;

    let new_id = identity.node_id;
    let membership = Membership::new(
        vec![BTreeSet::from([new_id])],
        BTreeMap::from([(new_id, survivor.node.clone())]),
    )
    .map_err(|e| RecoverError::Membership(e.to_string()))?;
    // The same log id as the survivor's last applied entry: the table revision and every later
    // index stay monotonic for clients. The membership is recorded at that id, as if the
    // applied entry had established it; the new incarnation has no earlier history.
    let meta = SnapshotMeta {
        last_log_id: Some(survivor.applied),
        last_membership: StoredMembership::new(Some(survivor.applied), membership),
    };
    let import = target.join(IMPORT_FILE);
    let snapshot = old_state_machine.export_snapshot(&meta, &import)?;

    let (mut log, mut state_machine) =
        ta_storage::open_stores::<crate::types::TypeConfig, _>(&new_dir, TableMachine::new().0)?;
    state_machine
        .install_snapshot(&meta, snapshot)
        .await
        .map_err(raft_io("install snapshot"))?;
    std::fs::remove_file(&import).map_err(file_error("remove imported snapshot", &import))?;
    ta_storage::sync_directory(target)?;
    finish_log(&mut log, survivor, new_id).await?;
    Ok((new_id, cluster_id))
}

/// The log of the new incarnation: empty, purged through the snapshot, committed there, with a
/// vote above every term in it.
async fn finish_log(log: &mut LogStore, survivor: &Survivor, new_id: NodeId) -> Result<(), RecoverError> {
    // One term above anything the survivor saw: the new node's vote must dominate the leader id
    // of the last log id (same-term leader ids of different nodes do not compare), and its
    // first election then moves to a term no old leader ever used.
    let vote = openraft::impls::Vote::new(survivor.vote_term + 1, new_id);
    log.save_vote(&vote).await.map_err(raft_io("save vote"))?;
    log.purge(survivor.applied).await.map_err(raft_io("purge"))?;
    log.save_committed(Some(survivor.applied))
        .await
        .map_err(raft_io("save committed"))?;
    Ok(())
}

/// Reopen the written directory as a replica would and check it holds the survivor's table as
/// the sole voter.
async fn verify(target: &Path, survivor: &Survivor, new_id: NodeId) -> Result<(), RecoverError> {
    let dir = reopen(target).await?;
    let identity =
        identity::load(&dir)?.ok_or_else(|| RecoverError::VerificationFailed("no identity written".into()))?;
    let (machine, table) = TableMachine::new();
    let (mut log, mut state_machine) = ta_storage::open_stores::<crate::types::TypeConfig, _>(&dir, machine)?;
    let (applied, membership) = state_machine
        .applied_state()
        .await
        .map_err(raft_io("read applied state"))?;
    let log_state = log.get_log_state().await.map_err(raft_io("read log state"))?;
    let voters: Vec<NodeId> = membership.membership().voter_ids().collect();
    let recovered = table.borrow().clone();
    let problems: Vec<String> = [
        (identity.node_id != new_id).then(|| format!("identity {} is not {new_id}", identity.node_id)),
        (applied.as_ref() != Some(&survivor.applied)).then(|| format!("applied {applied:?}")),
        (log_state.last_purged_log_id.as_ref() != Some(&survivor.applied))
            .then(|| format!("log purged through {:?}", log_state.last_purged_log_id)),
        (voters != vec![new_id]).then(|| format!("voters {voters:?}")),
        (recovered.digest() != survivor.table.digest() || recovered.revision != survivor.table.revision)
            .then(|| format!("table revision {} differs", recovered.revision)),
    ]
    .into_iter()
    .flatten()
    .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(RecoverError::VerificationFailed(problems.join("; ")))
    }
}

async fn reopen(dir: &Path) -> Result<DataDir, RecoverError> {
    let deadline = std::time::Instant::now() + REOPEN_PATIENCE;
    loop {
        match DataDir::open(dir) {
            Err(e) if e.is_locked_by_another_process() && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Move the old state aside (into a backup inside the data directory, so a mount point can
/// stay) and the staged state in. Order matters for a crash midway: the old `sled` leaves
/// first and the new `sled` arrives last, so a half-swapped directory never mixes two states;
/// it has no `sled/db`, and a rerun of recover refuses it and names the backup. (A replica
/// started on it would start empty, which is why the replica stays stopped until recover
/// reports success.)
fn swap_in(data_dir: &Path, staging: &Path) -> Result<PathBuf, RecoverError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let backup = data_dir.join(format!("{BACKUP_PREFIX}{millis}"));
    std::fs::create_dir(&backup).map_err(file_error("create backup directory", &backup))?;
    for entry in DATA_DIR_ENTRIES {
        let from = data_dir.join(entry);
        if from.exists() {
            std::fs::rename(&from, backup.join(entry)).map_err(file_error("move old state aside", &from))?;
        }
    }
    ta_storage::sync_directory(&backup)?;
    ta_storage::sync_directory(data_dir)?;
    for entry in DATA_DIR_ENTRIES.iter().rev() {
        let from = staging.join(entry);
        if from.exists() {
            std::fs::rename(&from, data_dir.join(entry)).map_err(file_error("move new state in", &from))?;
        }
    }
    ta_storage::sync_directory(data_dir)?;
    std::fs::remove_dir_all(staging).map_err(file_error("remove staging", staging))?;
    ta_storage::sync_directory(data_dir)?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::storage::IOFlushed;
    use openraft::type_config::TypeConfigExt;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::command::CommandBuilder;
    use crate::command::Expect;
    use crate::model::CollectorState;
    use crate::model::TargetId;
    use crate::types::Entry;
    use crate::types::TypeConfig;

    const OTHER_VOTERS: [(NodeId, &str); 2] = [(11, "ta-0"), (12, "ta-2")];

    fn log_id(index: u64) -> LogId {
        openraft::LogId::new(openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(2, 11), index)
    }

    fn request(dir: &Path, destination: Destination) -> RecoverRequest {
        RecoverRequest {
            data_dir: dir.to_path_buf(),
            destination,
            confirmed_new_cluster: true,
        }
    }

    /// A stopped replica `ta-1` of a 3-voter cluster whose log holds a membership entry and
    /// four batches (indexes 1..=5), of which `committed_through` are committed (and so
    /// applied: a restart re-applies the committed log). Returns its identity and the table
    /// it serves.
    async fn stopped_survivor(dir: &Path, committed_through: u64) -> (identity::NodeIdentity, Table) {
        let data_dir = DataDir::open(dir).unwrap();
        let me = identity::load_or_create(&data_dir, "ta-1").await.unwrap();
        identity::adopt_cluster_id(&data_dir, ClusterId::random())
            .await
            .unwrap();
        let mut nodes: BTreeMap<NodeId, PeerNode> = OTHER_VOTERS
            .iter()
            .map(|(id, name)| {
                (
                    *id,
                    PeerNode {
                        name: name.to_string(),
                        url: format!("http://{name}:7400"),
                    },
                )
            })
            .collect();
        nodes.insert(
            me.node_id,
            PeerNode {
                name: "ta-1".into(),
                url: "http://ta-1:7400".into(),
            },
        );
        let voters: BTreeSet<NodeId> = nodes.keys().copied().collect();
        let mut entries = vec![Entry::new_membership(
            log_id(1),
            Membership::new(vec![voters], nodes).unwrap(),
        )];
        for index in 2..=5u64 {
            let mut batch = CommandBuilder::new();
            batch.set_collector(&format!("collector-{index}"), None, CollectorState::Ready);
            let address = format!("10.0.0.{index}:9100");
            batch.upsert_target(
                TargetId(index),
                "job",
                [("__address__", address.as_str())],
                Some(&format!("collector-{index}")),
                Expect::Absent,
            );
            entries.push(Entry::new_normal(log_id(index), batch.build()));
        }
        let (machine, table) = TableMachine::new();
        let (mut log, mut state_machine) = ta_storage::open_stores::<TypeConfig, _>(&data_dir, machine).unwrap();
        let (done, flushed) = TypeConfig::oneshot();
        log.append(entries.clone(), IOFlushed::signal(done)).await.unwrap();
        flushed.await.unwrap().unwrap();
        let applied: Vec<_> = entries
            .into_iter()
            .take(committed_through as usize)
            .map(|e| Ok((e, None)))
            .collect();
        if committed_through > 0 {
            log.save_committed(Some(log_id(committed_through))).await.unwrap();
            state_machine.apply(futures::stream::iter(applied)).await.unwrap();
        }
        let table = table.borrow().clone();
        (me, table)
    }

    fn entries_of(dir: &Path) -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_without_the_confirmation_flag_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        stopped_survivor(dir.path(), 5).await;
        let before = entries_of(dir.path());
        let output = dir.path().join("out");
        let mut unconfirmed = request(dir.path(), Destination::NewDirectory(output.clone()));
        unconfirmed.confirmed_new_cluster = false;
        let error = recover(unconfirmed).await.unwrap_err();
        assert!(matches!(error, RecoverError::NotConfirmed), "{error}");
        assert!(error.to_string().contains(CONFIRMATION_FLAG));
        assert_eq!(entries_of(dir.path()), before);
        assert!(!output.exists());
    }

    #[tokio::test]
    async fn refuses_a_directory_that_is_not_a_replica_and_does_not_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = recover(request(&missing, Destination::InPlace)).await.unwrap_err();
        assert!(matches!(error, RecoverError::NotADataDirectory { .. }), "{error}");
        assert!(!missing.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_a_replica_that_applied_nothing() {
        let dir = tempfile::tempdir().unwrap();
        stopped_survivor(dir.path(), 0).await;
        let error = recover(request(dir.path(), Destination::NewDirectory(dir.path().join("out"))))
            .await
            .unwrap_err();
        assert!(matches!(error, RecoverError::NothingApplied { .. }), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_while_the_replica_holds_its_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        stopped_survivor(dir.path(), 5).await;
        let running = reopen(dir.path()).await.unwrap();
        let error = recover(request(dir.path(), Destination::InPlace)).await.unwrap_err();
        assert!(matches!(error, RecoverError::ReplicaRunning { .. }), "{error}");
        assert!(error.to_string().contains("still running"));
        drop(running);
        assert!(!dir.path().join(STAGING_DIR).exists() || entries_of(&dir.path().join(STAGING_DIR)).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refuses_an_output_that_is_not_empty_or_is_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        stopped_survivor(dir.path(), 5).await;
        let output = tempfile::tempdir().unwrap();
        std::fs::write(output.path().join("something"), b"x").unwrap();
        let error = recover(request(
            dir.path(),
            Destination::NewDirectory(output.path().to_path_buf()),
        ))
        .await
        .unwrap_err();
        assert!(matches!(error, RecoverError::OutputNotEmpty { .. }), "{error}");
        let error = recover(request(dir.path(), Destination::NewDirectory(dir.path().to_path_buf())))
            .await
            .unwrap_err();
        assert!(matches!(error, RecoverError::OutputIsDataDirectory { .. }), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovers_the_applied_table_into_a_new_directory_and_counts_dropped_entries() {
        let dir = tempfile::tempdir().unwrap();
        let (old, table) = stopped_survivor(dir.path(), 3).await;
        let before = entries_of(dir.path());
        let elsewhere = tempfile::tempdir().unwrap();
        let output = elsewhere.path().join("recovered");
        let report = recover(request(dir.path(), Destination::NewDirectory(output.clone())))
            .await
            .unwrap();
        assert_eq!(report.applied_index, 3);
        assert_eq!(report.revision, table.revision);
        assert_eq!((report.targets, report.collectors), (2, 2));
        assert_eq!(report.dropped_log_entries, 2);
        assert_eq!(report.dropped_known_committed, 0);
        assert_eq!(report.other_replicas, vec!["ta-0".to_string(), "ta-2".to_string()]);
        assert_ne!(report.new_node_id, old.node_id);
        assert_eq!(report.written_to, output);
        assert_eq!(
            entries_of(dir.path()),
            before,
            "the survivor's directory gained or lost entries"
        );
        let text = report.to_string();
        assert!(
            text.contains("Wipe the data directories (volumes) of ta-0, ta-2"),
            "{text}"
        );

        // The survivor's own state is still what it was.
        let survivor = reopen(dir.path()).await.unwrap();
        assert_eq!(identity::load(&survivor).unwrap().unwrap(), old);
        let (machine, survivor_table) = TableMachine::new();
        let (mut log, mut state_machine) = ta_storage::open_stores::<TypeConfig, _>(&survivor, machine).unwrap();
        let committed = log.read_committed().await.unwrap();
        replay_committed(&mut log, &mut state_machine, committed).await.unwrap();
        assert_eq!(state_machine.applied_state().await.unwrap().0, Some(log_id(3)));
        assert_eq!(survivor_table.borrow().digest(), table.digest());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_place_keeps_the_old_state_in_a_backup_and_leaves_other_entries_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (old, table) = stopped_survivor(dir.path(), 5).await;
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        let report = recover(request(dir.path(), Destination::InPlace)).await.unwrap();
        assert_eq!(report.dropped_log_entries, 0);
        assert!(report.old_state_at.starts_with(dir.path()));
        assert!(entries_of(&report.old_state_at).contains("sled"));
        assert!(dir.path().join("lost+found").is_dir());
        assert!(!dir.path().join(STAGING_DIR).exists());

        let recovered = reopen(dir.path()).await.unwrap();
        let identity = identity::load(&recovered).unwrap().unwrap();
        assert_eq!(identity.name, "ta-1");
        assert_eq!(identity.node_id, report.new_node_id);
        assert_ne!(identity.node_id, old.node_id);
        assert_eq!(identity::cluster_id(&recovered).unwrap(), Some(report.new_cluster_id));
        let (machine, recovered_table) = TableMachine::new();
        let (_, mut state_machine) = ta_storage::open_stores::<TypeConfig, _>(&recovered, machine).unwrap();
        let (applied, membership) = state_machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(5)));
        assert_eq!(
            membership.membership().voter_ids().collect::<Vec<_>>(),
            vec![identity.node_id]
        );
        assert_eq!(recovered_table.borrow().digest(), table.digest());
        assert_eq!(recovered_table.borrow().revision, table.revision);
    }
}
