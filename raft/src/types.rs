//! openraft type configuration of the allocator cluster.

use std::fmt;

use serde::Deserialize;
use serde::Serialize;

use crate::command::Command;
use crate::command::Response;

/// A member of the Raft group as recorded in the membership: its stable name (e.g. `ta-0`)
/// and the peer URL it had when it joined. The local `cluster.peers` config wins over the
/// recorded URL, because names are stable and addresses (pod IPs) are not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub name: String,
    pub url: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.url)
    }
}

openraft::declare_raft_types!(
    /// The allocator's Raft types: commands are decision batches, node ids random `u64`s.
    pub TypeConfig:
        D = Command,
        R = Response,
        Node = PeerNode,
);

/// Raft node id: random, created with the data directory, never reused.
pub type NodeId = u64;
/// The log entry type.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// The log id type.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// The concrete Raft handle.
pub type Raft = openraft::Raft<TypeConfig, ta_storage::StateMachineStore<TypeConfig, crate::persist::TableMachine>>;
