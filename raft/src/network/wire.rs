//! What travels between replicas on the peer port: bincode bodies, each Raft RPC wrapped in
//! an [`Envelope`] naming the cluster and the addressed node.
//!
//! The server checks both before openraft sees the request: a replica of another cluster
//! incarnation, or a pod that inherited a peer's IP, is rejected instead of being handed a
//! snapshot that would make openraft panic (docs/architecture.md, "Node identity, cluster
//! id, bootstrap, membership").

use bincode::Options;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::identity::ClusterId;
use crate::types::LogId;
use crate::types::NodeId;
use crate::types::PeerNode;
use crate::types::TypeConfig;

/// Route paths on the peer port.
pub mod path {
    pub const APPEND: &str = "/raft/append";
    pub const VOTE: &str = "/raft/vote";
    pub const PRE_VOTE: &str = "/raft/pre-vote";
    pub const SNAPSHOT_CHUNK: &str = "/raft/snapshot-chunk";
    pub const TRANSFER_LEADER: &str = "/raft/transfer-leader";
    pub const IDENTITY: &str = "/cluster/identity";
    pub const ADOPT: &str = "/cluster/adopt";
    pub const READ_INDEX: &str = "/cluster/read-index";
    pub const STATUS: &str = "/cluster/status";
    pub const FORWARD: &str = "/cluster/forward";
}

/// Largest append body accepted (many large batches in one append).
pub const APPEND_BODY_LIMIT: usize = 256 << 20;
/// Size of one snapshot chunk sent.
pub const SNAPSHOT_CHUNK_LEN: usize = 1 << 20;
/// Largest snapshot chunk request accepted.
pub const SNAPSHOT_BODY_LIMIT: usize = SNAPSHOT_CHUNK_LEN + (64 << 10);
/// Largest body of any other peer request.
pub const SMALL_BODY_LIMIT: usize = 1 << 20;

/// Sender, addressee and cluster of an RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub cluster_id: ClusterId,
    pub from: NodeId,
    pub to: NodeId,
}

/// An RPC body with its header.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub header: Header,
    pub body: T,
}

/// Why a replica refused an RPC without passing it to openraft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("addressed to cluster {received}, this replica belongs to {expected:?}")]
    WrongCluster {
        expected: Option<ClusterId>,
        received: ClusterId,
    },
    #[error("addressed to node {addressed}, this replica is node {actual}")]
    WrongNode { addressed: NodeId, actual: NodeId },
    #[error("request body does not decode: {0}")]
    BadRequest(String),
    #[error("snapshot transfer out of order: expected offset {expected}, got {received}")]
    SnapshotOutOfOrder { expected: u64, received: u64 },
    #[error("not the leader; leader is {leader:?}")]
    NotLeader { leader: Option<(NodeId, PeerNode)> },
    #[error("replica cannot serve this now: {0}")]
    Unavailable(String),
}

/// One chunk of a snapshot upload. The last chunk carries the vote and meta that make the
/// receiver install it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub transfer: u128,
    pub offset: u64,
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
    pub last: Option<SnapshotCompletion>,
}

/// Sent with the final chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotCompletion {
    pub vote: openraft::alias::VoteOf<TypeConfig>,
    pub meta: openraft::alias::SnapshotMetaOf<TypeConfig>,
}

/// Reply to a snapshot chunk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SnapshotChunkReply {
    Accepted { next_offset: u64 },
    Installed(openraft::raft::SnapshotResponse<TypeConfig>),
}

/// What a replica says about itself (used by bootstrap and membership automation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityReply {
    pub name: String,
    pub node_id: NodeId,
    pub cluster_id: Option<ClusterId>,
    /// Whether this replica has Raft state (a vote or a log).
    pub initialized: bool,
    pub leader: Option<NodeId>,
}

/// Asks a replica to adopt a cluster id (it accepts only if it has none or the same one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdoptRequest {
    pub cluster_id: ClusterId,
    /// The node id the adopting replica is expected to have.
    pub node_id: NodeId,
    pub requested_by: String,
}

/// The leader's answer to a read-index request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadIndexReply {
    pub read_log_id: LogId,
}

/// Encode a body with the shared codec.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    ta_storage::envelope::codec()
        .serialize(value)
        .expect("serializing into memory cannot fail")
}

/// Decode a body with the shared codec, bounded by `limit` bytes of allocation.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, Rejection> {
    ta_storage::envelope::codec()
        .with_limit(limit as u64)
        .deserialize(bytes)
        .map_err(|e| Rejection::BadRequest(e.to_string()))
}

/// bincode already writes `Vec<u8>` as length + bytes; this keeps the field explicit about
/// being raw bytes without another dependency.
mod serde_bytes_compat {
    use serde::Deserialize;
    use serde::Deserializer;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        <Vec<u8>>::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_length_prefixes_are_rejected_not_allocated() {
        // A body claiming a 1 TiB vector must fail fast.
        let mut body = encode(&Header {
            cluster_id: ClusterId(1),
            from: 2,
            to: 3,
        });
        body.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let result: Result<Envelope<Vec<u8>>, _> = decode(&body, 1 << 20);
        assert!(matches!(result, Err(Rejection::BadRequest(_))));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let result: Result<Envelope<IdentityReply>, _> = decode(&[0xff; 7], 1 << 20);
        assert!(matches!(result, Err(Rejection::BadRequest(_))));
    }
}
