//! Errors of the replicated table, carrying what a caller acts on.

use crate::config::ConfigErrors;
use crate::identity::IdentityError;
use crate::types::NodeId;
use crate::types::PeerNode;

/// A replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Storage(#[from] ta_storage::StorageError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("openraft rejected the timings: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("Raft failed to start: {0}")]
    Raft(String),
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader proposes; this is who it is, when known.
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader { leader: Option<(NodeId, PeerNode)> },
    /// The outcome is unknown (leadership lost mid-write, shutdown, storage failure).
    #[error("proposal outcome unknown: {0}")]
    Unknown(String),
}

/// A linearizable read could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no leader is known; cannot confirm the read index")]
    NoLeader,
    #[error("leader did not confirm the read index: {0}")]
    Leader(String),
    #[error("this replica did not apply up to the read index {read_index} within {waited:?}")]
    CatchUpTimeout {
        read_index: u64,
        waited: std::time::Duration,
    },
    #[error("replica is shutting down")]
    ShuttingDown,
}
