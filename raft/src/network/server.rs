//! The peer HTTP server: Raft RPCs in, checked for cluster and addressee, handed to openraft;
//! plus the small cluster-management endpoints (identity, cluster-id adoption, read index).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use openraft::ReadPolicy;
use openraft::Snapshot;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::raft::AppendEntriesResponse;
use serde::Serialize;
use ta_storage::DataDir;
use ta_storage::SnapshotFile;
use tokio::sync::watch;

use super::wire::AdoptRequest;
use super::wire::Envelope;
use super::wire::IdentityReply;
use super::wire::ReadIndexReply;
use super::wire::Rejection;
use super::wire::SnapshotChunk;
use super::wire::SnapshotChunkReply;
use super::wire::{self};
use crate::contact::LeaderContact;
use crate::identity::ClusterId;
use crate::identity::{self};
use crate::types::NodeId;
use crate::types::Raft;
use crate::types::TypeConfig;

/// Incoming snapshot transfers idle longer than this are discarded.
const TRANSFER_IDLE_LIMIT: Duration = Duration::from_secs(120);

struct IncomingSnapshot {
    path: PathBuf,
    file: std::fs::File,
    next_offset: u64,
    last_chunk_at: Instant,
}

/// Receives what a follower forwards to the leader (opaque to this crate; the service
/// layer decides the format, e.g. collector registrations).
pub type ForwardHandler = Arc<dyn Fn(Vec<u8>) + Send + Sync>;

/// Computes this replica's status on demand.
pub type StatusSource = Arc<dyn Fn() -> crate::replica::ReplicaStatus + Send + Sync>;

/// State shared by the peer handlers.
pub struct PeerService {
    raft: Raft,
    node_id: NodeId,
    name: String,
    data_dir: DataDir,
    cluster_id: watch::Sender<Option<ClusterId>>,
    contact: Arc<LeaderContact>,
    incoming: Mutex<HashMap<u128, IncomingSnapshot>>,
    adopt_lock: tokio::sync::Mutex<()>,
    forward: std::sync::RwLock<Option<ForwardHandler>>,
    status: std::sync::RwLock<Option<StatusSource>>,
}

impl PeerService {
    /// Install the receiver of forwarded messages.
    pub fn set_forward_handler(&self, handler: ForwardHandler) {
        *self.forward.write().expect("forward handler lock poisoned") = Some(handler);
    }

    /// Install the status source.
    pub fn set_status_source(&self, source: StatusSource) {
        *self.status.write().expect("status source lock poisoned") = Some(source);
    }

    /// Hand `message` to the installed forward handler; false if none is installed.
    pub fn deliver_forwarded(&self, message: Vec<u8>) -> bool {
        let handler = self.forward.read().expect("forward handler lock poisoned").clone();
        match handler {
            Some(handler) => {
                handler(message);
                true
            }
            None => false,
        }
    }

    pub fn new(
        raft: Raft,
        node_id: NodeId,
        name: String,
        data_dir: DataDir,
        cluster_id: watch::Sender<Option<ClusterId>>,
        contact: Arc<LeaderContact>,
    ) -> Self {
        Self {
            raft,
            node_id,
            name,
            data_dir,
            cluster_id,
            contact,
            incoming: Mutex::new(HashMap::new()),
            adopt_lock: tokio::sync::Mutex::new(()),
            forward: std::sync::RwLock::new(None),
            status: std::sync::RwLock::new(None),
        }
    }

    /// Open an envelope: decode, then check cluster and addressee.
    fn open<T: serde::de::DeserializeOwned>(&self, body: &[u8], limit: usize) -> Result<T, Rejection> {
        let envelope: Envelope<T> = wire::decode(body, limit)?;
        let expected = *self.cluster_id.borrow();
        if expected != Some(envelope.header.cluster_id) {
            return Err(Rejection::WrongCluster {
                expected,
                received: envelope.header.cluster_id,
            });
        }
        if envelope.header.to != self.node_id {
            return Err(Rejection::WrongNode {
                addressed: envelope.header.to,
                actual: self.node_id,
            });
        }
        Ok(envelope.body)
    }
}

/// The peer router with per-route body limits.
pub fn router(service: Arc<PeerService>) -> Router {
    use wire::path;
    Router::new()
        .route(
            path::APPEND,
            post(append).layer(DefaultBodyLimit::max(wire::APPEND_BODY_LIMIT)),
        )
        .route(
            path::VOTE,
            post(vote).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .route(
            path::PRE_VOTE,
            post(pre_vote).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .route(
            path::SNAPSHOT_CHUNK,
            post(snapshot_chunk).layer(DefaultBodyLimit::max(wire::SNAPSHOT_BODY_LIMIT)),
        )
        .route(
            path::TRANSFER_LEADER,
            post(transfer_leader).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .route(path::IDENTITY, get(identity_reply))
        .route(
            path::ADOPT,
            post(adopt).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .route(
            path::READ_INDEX,
            post(read_index).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .route(path::STATUS, get(status_reply))
        .route(
            path::FORWARD,
            post(forward).layer(DefaultBodyLimit::max(wire::SMALL_BODY_LIMIT)),
        )
        .with_state(service)
}

/// A bincode body holding `Result<T, Rejection>`; decoding failures are 400, the rest 200.
fn reply<T: Serialize>(result: Result<T, Rejection>) -> Response {
    let status = match &result {
        Err(Rejection::BadRequest(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    (status, wire::encode(&result)).into_response()
}

fn unavailable(error: impl std::fmt::Display) -> Rejection {
    Rejection::Unavailable(error.to_string())
}

async fn append(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    let result = async {
        let started = std::time::Instant::now();
        let request =
            service.open::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&body, wire::APPEND_BODY_LIMIT)?;
        let decoded = started.elapsed();
        let entries = request.entries.len();
        let reaches_commit = reaches_leader_commit(&request);
        let leader_commit = request.leader_commit.as_ref().map(|log_id| log_id.index);
        let response = service.raft.append_entries(request).await.map_err(unavailable)?;
        if entries > 0 {
            tracing::debug!(entries, bytes = body.len(), ?decoded, total = ?started.elapsed(), "append handled");
        }
        // Contact means being in step with a leader, not merely hearing one: a follower back
        // from a partition or a restart is told of commits its log does not hold yet, and
        // serving its old table as fresh would hand collectors a superseded assignment (I6).
        if matches!(response, AppendEntriesResponse::Success) && reaches_commit {
            service.contact.touch(leader_commit);
        }
        Ok(response)
    }
    .await;
    reply(result)
}

/// Whether this replica's log holds everything the leader has committed once `request` is
/// appended: its last entry (or, for a heartbeat, the entry it matches) is at or past the
/// leader's commit.
fn reaches_leader_commit(request: &openraft::raft::AppendEntriesRequest<TypeConfig>) -> bool {
    let last_held = request
        .entries
        .last()
        .map(|entry| entry.log_id.index)
        .or(request.prev_log_id.as_ref().map(|log_id| log_id.index));
    let committed = request.leader_commit.as_ref().map(|log_id| log_id.index);
    last_held >= committed
}

/// Open the envelope of a small RPC, hand its body to `call`, encode the reply.
async fn small_rpc<Request, Reply, Failure, Call>(
    service: &PeerService,
    body: &[u8],
    call: impl FnOnce(Request) -> Call,
) -> Response
where
    Request: serde::de::DeserializeOwned,
    Reply: Serialize,
    Failure: std::fmt::Display,
    Call: std::future::Future<Output = Result<Reply, Failure>>,
{
    let result = match service.open::<Request>(body, wire::SMALL_BODY_LIMIT) {
        Ok(request) => call(request).await.map_err(unavailable),
        Err(rejection) => Err(rejection),
    };
    reply(result)
}

async fn status_reply(State(service): State<Arc<PeerService>>) -> Response {
    let source = service.status.read().expect("status source lock poisoned").clone();
    reply(match source {
        Some(source) => Ok(source()),
        None => Err(Rejection::Unavailable("replica is starting".into())),
    })
}

async fn forward(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    small_rpc(&service, &body, |message: Vec<u8>| async {
        if service.deliver_forwarded(message) {
            Ok(())
        } else {
            Err("this replica does not accept forwarded messages yet")
        }
    })
    .await
}

async fn vote(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    small_rpc(&service, &body, |request| service.raft.vote(request)).await
}

async fn pre_vote(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    small_rpc(&service, &body, |request| service.raft.pre_vote(request)).await
}

async fn transfer_leader(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    small_rpc(&service, &body, |request| service.raft.handle_transfer_leader(request)).await
}

async fn snapshot_chunk(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    let result = async {
        let chunk = service.open::<SnapshotChunk>(&body, wire::SNAPSHOT_BODY_LIMIT)?;
        receive_chunk(&service, chunk).await
    }
    .await;
    reply(result)
}

async fn receive_chunk(service: &Arc<PeerService>, chunk: SnapshotChunk) -> Result<SnapshotChunkReply, Rejection> {
    let snapshot_dir = service.data_dir.path().join("snapshots");
    let transfer = chunk.transfer;
    let writer = Arc::clone(service);
    let data = chunk.data;
    let offset = chunk.offset;
    let finishing = chunk.last.is_some();
    // File IO on the blocking pool; the map lock is only held inside that closure.
    let written = tokio::task::spawn_blocking(move || -> Result<(u64, Option<PathBuf>), Rejection> {
        use std::io::Write;
        let mut incoming = writer.incoming.lock().expect("incoming lock poisoned");
        incoming.retain(|_, t| {
            let keep = t.last_chunk_at.elapsed() < TRANSFER_IDLE_LIMIT;
            if !keep {
                let _ = std::fs::remove_file(&t.path);
            }
            keep
        });
        if offset == 0 && !incoming.contains_key(&transfer) {
            let path = snapshot_dir.join(format!("incoming-{transfer:032x}.part"));
            let file = std::fs::File::create(&path).map_err(unavailable)?;
            incoming.insert(
                transfer,
                IncomingSnapshot {
                    path,
                    file,
                    next_offset: 0,
                    last_chunk_at: Instant::now(),
                },
            );
        }
        let Some(state) = incoming.get_mut(&transfer) else {
            return Err(Rejection::SnapshotOutOfOrder {
                expected: 0,
                received: offset,
            });
        };
        if state.next_offset != offset {
            return Err(Rejection::SnapshotOutOfOrder {
                expected: state.next_offset,
                received: offset,
            });
        }
        state.file.write_all(&data).map_err(unavailable)?;
        state.next_offset += data.len() as u64;
        state.last_chunk_at = Instant::now();
        if !finishing {
            return Ok((state.next_offset, None));
        }
        state.file.sync_all().map_err(unavailable)?;
        let finished = incoming.remove(&transfer).expect("present");
        Ok((finished.next_offset, Some(finished.path)))
    })
    .await
    .map_err(unavailable)??;

    let (next_offset, complete) = written;
    let (Some(path), Some(completion)) = (complete, chunk.last) else {
        return Ok(SnapshotChunkReply::Accepted { next_offset });
    };
    // Check every frame before openraft sees it: install must not start on garbage.
    let verified = tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> Result<SnapshotFile, Rejection> {
            let file = SnapshotFile::open(&path).map_err(unavailable)?;
            file.verify().map_err(unavailable)?;
            Ok(file)
        }
    })
    .await
    .map_err(unavailable)?;
    let file = match verified {
        Ok(file) => file,
        Err(rejection) => {
            let _ = std::fs::remove_file(&path);
            return Err(rejection);
        }
    };
    let snapshot_index = completion.meta.last_log_id.as_ref().map(|log_id| log_id.index);
    let snapshot = Snapshot {
        meta: completion.meta,
        snapshot: file,
    };
    let installed = service.raft.install_full_snapshot(completion.vote, snapshot).await;
    let _ = std::fs::remove_file(&path);
    service.contact.touch(snapshot_index);
    Ok(SnapshotChunkReply::Installed(installed.map_err(unavailable)?))
}

async fn identity_reply(State(service): State<Arc<PeerService>>) -> Response {
    let initialized = service.raft.is_initialized().await.unwrap_or(false);
    let leader = service.raft.metrics().borrow_watched().current_leader;
    reply::<IdentityReply>(Ok(IdentityReply {
        name: service.name.clone(),
        node_id: service.node_id,
        cluster_id: *service.cluster_id.borrow(),
        initialized,
        leader,
    }))
}

async fn adopt(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    let result = async {
        let request: AdoptRequest = wire::decode(&body, wire::SMALL_BODY_LIMIT)?;
        if request.node_id != service.node_id {
            return Err(Rejection::WrongNode {
                addressed: request.node_id,
                actual: service.node_id,
            });
        }
        let _serialized = service.adopt_lock.lock().await;
        let current = *service.cluster_id.borrow();
        match current {
            Some(existing) if existing == request.cluster_id => Ok(()),
            Some(existing) => Err(Rejection::WrongCluster {
                expected: Some(existing),
                received: request.cluster_id,
            }),
            None => {
                identity::adopt_cluster_id(&service.data_dir, request.cluster_id)
                    .await
                    .map_err(unavailable)?;
                service.cluster_id.send_replace(Some(request.cluster_id));
                tracing::info!(cluster_id = %request.cluster_id, by = %request.requested_by, "adopted cluster id");
                Ok(())
            }
        }
    }
    .await;
    reply(result)
}

async fn read_index(State(service): State<Arc<PeerService>>, body: Bytes) -> Response {
    let result = async {
        service.open::<()>(&body, wire::SMALL_BODY_LIMIT)?;
        let linearizer = service
            .raft
            .get_read_linearizer(ReadPolicy::ReadIndex)
            .await
            .map_err(|e| match e.forward_to_leader() {
                Some(forward) => Rejection::NotLeader {
                    leader: forward.leader_id.zip(forward.leader_node.clone()),
                },
                None => unavailable(e),
            })?;
        Ok(ReadIndexReply {
            read_log_id: *linearizer.read_log_id().log_id(),
        })
    }
    .await;
    reply(result)
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::raft::AppendEntriesRequest;
    use openraft::vote::RaftLeaderIdExt;

    use super::reaches_leader_commit;
    use crate::types::Entry;
    use crate::types::LogId;
    use crate::types::TypeConfig;

    fn log_id(index: u64) -> LogId {
        openraft::LogId::new(openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(2, 1), index)
    }

    fn append(prev: Option<u64>, entries: &[u64], commit: Option<u64>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(2, 1),
            prev_log_id: prev.map(log_id),
            entries: entries.iter().map(|&index| Entry::new_blank(log_id(index))).collect(),
            leader_commit: commit.map(log_id),
        }
    }

    #[test]
    fn a_heartbeat_behind_the_commit_is_no_contact_yet() {
        // Back from a partition: the leader matches index 225 and has committed 228.
        assert!(!reaches_leader_commit(&append(Some(225), &[], Some(228))));
        // The catch-up append brings 226..=228.
        assert!(reaches_leader_commit(&append(Some(225), &[226, 227, 228], Some(228))));
        // In step: the heartbeat matches the commit.
        assert!(reaches_leader_commit(&append(Some(228), &[], Some(228))));
        // A fresh cluster with nothing committed.
        assert!(reaches_leader_commit(&append(None, &[], None)));
    }
}
