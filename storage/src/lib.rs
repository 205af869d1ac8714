//! Durable storage of one replica: openraft's log and state-machine traits on sled 0.34.
//!
//! This crate stores checksummed bytes and knows nothing about targets or collectors: the
//! state machine's meaning comes from a [`StateMachineLogic`] supplied by the `raft` crate.
//!
//! ```text
//!   openraft ──► LogStore (RaftLogStorage)          ──┐
//!            ──► StateMachineStore (RaftStateMachine) ─┤─► DataDir: sled + witness + snapshots
//!            ──► SnapshotBuilder (RaftSnapshotBuilder)─┘
//! ```
//!
//! Durability rules (docs/architecture.md, "Durability rules"), and where each lives:
//! - one writer: `LogStore` is not `Clone`; openraft drives it from a single task;
//! - every log write (append, vote, truncate, purge) is flushed and the `sled/db` file
//!   fsync'd before it returns (`data_dir::Shared::flush_durable`);
//! - no holes: a non-contiguous append is rejected (`log_store`);
//! - values are checksummed and versioned (`envelope`), chunked below sled's blob threshold
//!   (`records`); log entries over 256 KiB live in fsync'd files of their own (`payloads`);
//! - snapshots are fsync'd files renamed into place (`snapshot_file`);
//! - the state machine lives in memory; an apply is served only once the committed index
//!   that makes a restart re-apply it is durable, and a restart loads the current snapshot
//!   and replays the log after it (`state_machine`);
//! - sled's silent truncation on a damaged record is caught by the durability witness
//!   (`witness`), so a damaged replica refuses to start instead of forgetting its log.

mod data_dir;
pub mod envelope;
mod error;
mod log_store;
mod payloads;
mod records;
mod snapshot_file;
mod state_machine;
mod witness;

pub use data_dir::DATA_DIR_ENTRIES;
pub use data_dir::DataDir;
pub use error::StorageError;
pub use log_store::LogReader;
pub use log_store::LogStore;
pub use log_store::StorageTypes;
pub use snapshot_file::SnapshotFile;
pub use state_machine::Record;
pub use state_machine::SnapshotBuilder;
pub use state_machine::SnapshotSource;
pub use state_machine::StateMachineLogic;
pub use state_machine::StateMachineStore;
pub use witness::WITNESS_FILE;
pub use witness::sync_directory;

/// Open the log store and state-machine store of `data_dir`, verifying both against the
/// durability witness.
pub fn open_stores<C, L>(data_dir: &DataDir, logic: L) -> Result<(LogStore<C>, StateMachineStore<C, L>), StorageError>
where
    C: StorageTypes,
    L: StateMachineLogic<C>,
{
    let log = LogStore::<C>::open(data_dir)?;
    let state_machine = StateMachineStore::open(data_dir, logic)?;
    Ok((log, state_machine))
}
