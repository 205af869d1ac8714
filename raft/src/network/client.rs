//! Outbound Raft RPCs: openraft's `RaftNetworkFactory` and `RaftNetworkV2` over HTTP.
//!
//! Addresses come from the local `cluster.peers` by the target's name first (names are
//! stable, pod IPs are not), and from the membership record otherwise. Any transport failure,
//! timeout or rejection by the receiver maps to `Unreachable`, so openraft backs off.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::RaftNetworkFactory;
use openraft::RaftNetworkV2;
use openraft::errors::RPCError;
use openraft::errors::ReplicationClosed;
use openraft::errors::StreamingError;
use openraft::errors::Unreachable;
use openraft::network::RPCOption;
use openraft::raft::AppendEntriesRequest;
use openraft::raft::AppendEntriesResponse;
use openraft::raft::SnapshotResponse;
use openraft::raft::TransferLeaderRequest;
use openraft::raft::TransferLeaderResponse;
use openraft::raft::VoteRequest;
use openraft::raft::VoteResponse;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ta_storage::SnapshotFile;
use tokio::sync::watch;

use super::wire::Envelope;
use super::wire::Header;
use super::wire::Rejection;
use super::wire::SnapshotChunk;
use super::wire::SnapshotChunkReply;
use super::wire::SnapshotCompletion;
use super::wire::path;
use super::wire::{self};
use crate::identity::ClusterId;
use crate::types::NodeId;
use crate::types::PeerNode;
use crate::types::TypeConfig;

/// Why an outbound call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("peer {url} unreachable: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("peer {url} timed out after {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("peer {url} rejected the request: {rejection}")]
    Rejected { url: String, rejection: Rejection },
}

/// A small HTTP client for peer endpoints, shared by Raft RPCs and cluster management.
#[derive(Clone)]
pub struct PeerHttp {
    http: reqwest::Client,
}

impl Default for PeerHttp {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerHttp {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("HTTP client configuration is static");
        Self { http }
    }

    /// POST a bincode body and decode a bincode `Result<T, Rejection>` reply.
    pub async fn post<Req: Serialize, T: DeserializeOwned>(
        &self,
        base: &str,
        route: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let url = format!("{base}{route}");
        let request = self.http.post(&url).timeout(timeout).body(wire::encode(body));
        self.exchange(url, request, timeout).await
    }

    /// GET and decode a bincode `Result<T, Rejection>` reply.
    pub async fn get<T: DeserializeOwned>(&self, base: &str, route: &str, timeout: Duration) -> Result<T, CallError> {
        let url = format!("{base}{route}");
        let request = self.http.get(&url).timeout(timeout);
        self.exchange(url, request, timeout).await
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        url: String,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let classify = |e: reqwest::Error, url: &str| {
            if e.is_timeout() {
                CallError::Timeout {
                    url: url.to_string(),
                    after: timeout,
                }
            } else {
                CallError::Unreachable {
                    url: url.to_string(),
                    detail: e.to_string(),
                }
            }
        };
        let response = request.send().await.map_err(|e| classify(e, &url))?;
        let bytes = response.bytes().await.map_err(|e| classify(e, &url))?;
        let result: Result<T, Rejection> =
            wire::decode(&bytes, wire::APPEND_BODY_LIMIT).map_err(|rejection| CallError::Rejected {
                url: url.clone(),
                rejection,
            })?;
        result.map_err(|rejection| CallError::Rejected { url, rejection })
    }
}

/// What every outbound client needs to know about the local replica.
pub struct LocalPeer {
    pub node_id: NodeId,
    pub cluster_id: watch::Receiver<Option<ClusterId>>,
    /// `cluster.peers` from the local configuration: name → URL.
    pub peers: BTreeMap<String, String>,
    pub append_timeout: Duration,
    pub snapshot_chunk_timeout: Duration,
}

/// Creates one [`PeerClient`] per replication target.
#[derive(Clone)]
pub struct PeerNetwork {
    http: PeerHttp,
    local: Arc<LocalPeer>,
}

impl PeerNetwork {
    pub fn new(http: PeerHttp, local: Arc<LocalPeer>) -> Self {
        Self { http, local }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerClient {
        let url = self
            .local
            .peers
            .get(&node.name)
            .cloned()
            .unwrap_or_else(|| node.url.clone());
        PeerClient {
            http: self.http.clone(),
            local: Arc::clone(&self.local),
            target,
            url,
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient {
    http: PeerHttp,
    local: Arc<LocalPeer>,
    target: NodeId,
    url: String,
}

fn unreachable(error: impl std::fmt::Display) -> Unreachable<TypeConfig> {
    Unreachable::from_string(error)
}

impl PeerClient {
    fn envelope<T>(&self, body: T) -> Result<Envelope<T>, Unreachable<TypeConfig>> {
        let cluster_id = (*self.local.cluster_id.borrow())
            .ok_or_else(|| unreachable("this replica has not joined a cluster yet"))?;
        Ok(Envelope {
            header: Header {
                cluster_id,
                from: self.local.node_id,
                to: self.target,
            },
            body,
        })
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        route: &str,
        body: Req,
        timeout: Duration,
    ) -> Result<Resp, Unreachable<TypeConfig>> {
        let envelope = self.envelope(body)?;
        self.http
            .post(&self.url, route, &envelope, timeout)
            .await
            .map_err(unreachable)
    }

    async fn upload_snapshot(
        &self,
        vote: openraft::alias::VoteOf<TypeConfig>,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
    ) -> Result<SnapshotResponse<TypeConfig>, Unreachable<TypeConfig>> {
        let transfer: u128 = rand::random();
        let file = Arc::new(snapshot.snapshot);
        let total = file.len();
        let mut offset = 0u64;
        let mut completion = Some(SnapshotCompletion {
            vote,
            meta: snapshot.meta,
        });
        loop {
            let reader = Arc::clone(&file);
            let data = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let remaining = (total - offset).min(wire::SNAPSHOT_CHUNK_LEN as u64) as usize;
                let mut buffer = vec![0u8; remaining];
                let mut filled = 0;
                while filled < remaining {
                    let n = reader.read_at(&mut buffer[filled..], offset + filled as u64)?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::UnexpectedEof.into());
                    }
                    filled += n;
                }
                Ok(buffer)
            })
            .await
            .map_err(unreachable)?
            .map_err(unreachable)?;
            let last = offset + data.len() as u64 >= total;
            let chunk = SnapshotChunk {
                transfer,
                offset,
                data,
                last: if last { completion.take() } else { None },
            };
            let sent = chunk.data.len() as u64;
            let reply: SnapshotChunkReply = self
                .call(path::SNAPSHOT_CHUNK, chunk, self.local.snapshot_chunk_timeout)
                .await?;
            match reply {
                SnapshotChunkReply::Installed(response) => return Ok(response),
                SnapshotChunkReply::Accepted { next_offset } if next_offset == offset + sent && !last => {
                    offset = next_offset;
                }
                other => return Err(unreachable(format!("unexpected snapshot chunk reply {other:?}"))),
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotFile;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft budgets replication RPCs by the heartbeat interval; an append carrying a
        // large batch (a remote fsync of megabytes) needs longer than a heartbeat does.
        let timeout = if rpc.entries.is_empty() {
            option.soft_ttl()
        } else {
            option.soft_ttl().max(self.local.append_timeout)
        };
        let entries = rpc.entries.len();
        let started = std::time::Instant::now();
        let response = self.call(path::APPEND, rpc, timeout).await;
        if entries > 0 {
            tracing::debug!(target = self.target, entries, elapsed = ?started.elapsed(), "append RPC");
        }
        Ok(response?)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(path::VOTE, rpc, option.soft_ttl()).await?)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(path::PRE_VOTE, rpc, option.soft_ttl()).await?)
    }

    async fn full_snapshot(
        &mut self,
        vote: openraft::alias::VoteOf<TypeConfig>,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>,
        cancel: impl Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = self.upload_snapshot(vote, snapshot) => Ok(result?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        Ok(self.call(path::TRANSFER_LEADER, req, option.soft_ttl()).await?)
    }
}
