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

/// The most entry bytes one append RPC carries (at least one entry always goes). openraft
/// batches up to `max_payload_entries` entries; a plan's bounded entries are up to a few MiB
/// each, so without this a catching-up follower would be sent hundreds of MiB in one request
/// and its heartbeats would queue behind it.
const MAX_APPEND_BYTES: usize = 8 << 20;

/// Cut `rpc` to the longest prefix of its entries within `max_bytes` (never empty when it had
/// entries). Returns the cut request and, when entries were left out, the id of the last one
/// sent, which a successful reply then acknowledges as a partial success.
fn bounded_append(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    max_bytes: usize,
) -> (
    AppendEntriesRequest<TypeConfig>,
    Option<openraft::alias::LogIdOf<TypeConfig>>,
) {
    let mut bytes = 0usize;
    let mut keep = 0usize;
    for entry in &rpc.entries {
        bytes = bytes.saturating_add(entry_bytes(entry));
        if keep > 0 && bytes > max_bytes {
            break;
        }
        keep += 1;
    }
    if keep == rpc.entries.len() {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(|entry| entry.log_id);
    (rpc, last)
}

/// Approximate wire size of an entry: its command's encoding (membership and blank entries
/// are small).
fn entry_bytes(entry: &crate::types::Entry) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.encoded().len(),
        _ => 64,
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
        let offered = rpc.entries.len();
        let (rpc, last_sent) = bounded_append(rpc, MAX_APPEND_BYTES);
        let entries = rpc.entries.len();
        let started = std::time::Instant::now();
        let response = self.call(path::APPEND, rpc, timeout).await;
        if entries > 0 {
            tracing::debug!(target = self.target, entries, offered, elapsed = ?started.elapsed(), "append RPC");
        }
        match (response?, last_sent) {
            // The follower has the prefix that was sent; openraft sends the rest next.
            (AppendEntriesResponse::Success, Some(last_sent)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last_sent)))
            }
            (response, _) => Ok(response),
        }
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

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::vote::RaftLeaderIdExt;

    use super::*;
    use crate::command::CommandBuilder;
    use crate::types::Entry;

    fn entry(index: u64, targets: usize) -> Entry {
        let mut builder = CommandBuilder::new();
        for t in 0..targets {
            builder.upsert_target(
                crate::TargetId(t as u64),
                "job",
                [("__address__", format!("10.0.{}.{}:80", t / 256, t % 256).as_str())],
                None,
                crate::command::Expect::Anything,
            );
        }
        Entry {
            log_id: openraft::LogId::new(openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(2, 1), index),
            payload: EntryPayload::Normal(builder.build()),
        }
    }

    fn request(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: openraft::Vote::new_committed(2, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn an_append_is_cut_to_the_byte_budget_and_acknowledges_what_was_sent() {
        let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1000)).collect();
        let one = entry_bytes(&entries[0]);
        let (cut, last) = bounded_append(request(entries.clone()), 2 * one + one / 2);
        assert_eq!(cut.entries.len(), 2);
        assert_eq!(last, Some(entries[1].log_id));

        let (whole, last) = bounded_append(request(entries.clone()), usize::MAX);
        assert_eq!(whole.entries.len(), 5);
        assert_eq!(last, None);
    }

    #[test]
    fn an_entry_larger_than_the_budget_still_goes_alone() {
        let entries: Vec<Entry> = (1..=3).map(|i| entry(i, 1000)).collect();
        let (cut, last) = bounded_append(request(entries.clone()), 10);
        assert_eq!(cut.entries.len(), 1);
        assert_eq!(last, Some(entries[0].log_id));
        let (heartbeat, last) = bounded_append(request(Vec::new()), 10);
        assert!(heartbeat.entries.is_empty());
        assert_eq!(last, None);
    }
}
