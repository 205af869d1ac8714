//! Node identity: a random Raft node id created with the data directory and never reused,
//! the replica's stable name, and the cluster id it has joined.
//!
//! Reusing a node id for a replica that lost its log can split the cluster (openraft,
//! "Node IDs must not be reused"); a fresh id per data directory rules that out. The cluster
//! id, set once by the bootstrapping replica, makes peers of another cluster incarnation
//! reject each other's RPCs before openraft sees them.

use rand::Rng;
use serde::Deserialize;
use serde::Serialize;
use ta_storage::DataDir;
use ta_storage::StorageError;

use crate::types::NodeId;

const IDENTITY_KEY: &str = "identity";
const CLUSTER_KEY: &str = "cluster_id";

/// Identifies one Raft group incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClusterId(pub u128);

impl ClusterId {
    pub fn random() -> Self {
        Self(rand::thread_rng().r#gen())
    }
}

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// This data directory's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_id: NodeId,
    /// The replica name the directory was created for.
    pub name: String,
    pub created_unix_millis: u64,
}

/// Why an identity could not be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "data directory {dir} belongs to replica {found:?}, not {expected:?}; a data directory must not move between replicas"
    )]
    WrongReplica {
        dir: String,
        found: String,
        expected: String,
    },
}

/// Load the identity of `data_dir`, creating it (with a fresh random id) on first use.
pub async fn load_or_create(data_dir: &DataDir, name: &str) -> Result<NodeIdentity, IdentityError> {
    if let Some(identity) = data_dir.app_meta::<NodeIdentity>(IDENTITY_KEY)? {
        if identity.name != name {
            return Err(IdentityError::WrongReplica {
                dir: data_dir.path().display().to_string(),
                found: identity.name,
                expected: name.to_string(),
            });
        }
        return Ok(identity);
    }
    // Never 0: some tooling treats 0 as "no node".
    let node_id = rand::thread_rng().gen_range(1..u64::MAX);
    let identity = NodeIdentity {
        node_id,
        name: name.to_string(),
        created_unix_millis: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    data_dir.put_app_meta(IDENTITY_KEY, &identity).await?;
    tracing::info!(node_id, name, "created a new node identity");
    Ok(identity)
}

/// The identity recorded in `data_dir`, if it has one (never creates one).
pub fn load(data_dir: &DataDir) -> Result<Option<NodeIdentity>, StorageError> {
    data_dir.app_meta(IDENTITY_KEY)
}

/// The cluster id this replica has adopted, if any.
pub fn cluster_id(data_dir: &DataDir) -> Result<Option<ClusterId>, StorageError> {
    data_dir.app_meta(CLUSTER_KEY)
}

/// Durably adopt `cluster_id`.
pub async fn adopt_cluster_id(data_dir: &DataDir, cluster_id: ClusterId) -> Result<(), StorageError> {
    data_dir.put_app_meta(CLUSTER_KEY, &cluster_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identity_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let data_dir = DataDir::open(dir.path()).unwrap();
            load_or_create(&data_dir, "ta-0").await.unwrap()
        };
        // sled's flusher can hold the file lock for a moment after the first handle is gone.
        let data_dir = loop {
            match DataDir::open(dir.path()) {
                Err(e) if e.to_string().contains("could not acquire lock") => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                other => break other.unwrap(),
            }
        };
        let again = load_or_create(&data_dir, "ta-0").await.unwrap();
        assert_eq!(first, again);
        assert!(matches!(
            load_or_create(&data_dir, "ta-1").await,
            Err(IdentityError::WrongReplica { .. })
        ));
    }

    #[tokio::test]
    async fn a_new_directory_gets_a_new_id() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let id_a = load_or_create(&DataDir::open(a.path()).unwrap(), "ta-0").await.unwrap();
        let id_b = load_or_create(&DataDir::open(b.path()).unwrap(), "ta-0").await.unwrap();
        assert_ne!(id_a.node_id, id_b.node_id);
    }
}
