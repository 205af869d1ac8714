//! One replica of the replicated table: storage, identity, Raft, the peer server, and the
//! background tasks (bootstrap, membership automation), behind one handle.
//!
//! ```text
//!             propose(Command) ──► Raft (leader) ──► peers ──► quorum durable
//!                                     │ apply (every replica)
//!   table() / subscribe() ◄── watch ◄─ TableMachine ──► sled state tree
//!   linearizable_table() : read index from the leader, wait until applied, then table()
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::Instant;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use ta_storage::DataDir;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::command::Command;
use crate::command::Response;
use crate::config::ClusterConfig;
use crate::contact::Freshness;
use crate::contact::LeaderContact;
use crate::error::ProposeError;
use crate::error::ReadError;
use crate::error::StartError;
use crate::identity::ClusterId;
use crate::identity::NodeIdentity;
use crate::identity::{self};
use crate::model::Table;
use crate::network::client::LocalPeer;
use crate::network::client::PeerHttp;
use crate::network::client::PeerNetwork;
use crate::network::server::PeerService;
use crate::network::server::router;
use crate::network::wire::Envelope;
use crate::network::wire::Header;
use crate::network::wire::ReadIndexReply;
use crate::network::wire::path;
use crate::persist::TableMachine;
use crate::types::NodeId;
use crate::types::PeerNode;
use crate::types::Raft;

/// How long a linearizable read waits for this replica to apply up to the read index.
const READ_CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

/// What the background tasks share.
pub(crate) struct Context {
    pub raft: Raft,
    pub config: ClusterConfig,
    pub data_dir: DataDir,
    pub http: PeerHttp,
    pub cluster_id: watch::Receiver<Option<ClusterId>>,
    pub cluster_id_sender: watch::Sender<Option<ClusterId>>,
}

/// A snapshot of a replica's Raft position, for status output and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaStatus {
    pub node_id: NodeId,
    pub name: String,
    pub role: ServerState,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    /// Last log index covered by the current snapshot.
    pub snapshot: Option<u64>,
    /// Last purged log index.
    pub purged: Option<u64>,
    /// Table revision (log index of the last entry that changed it).
    pub revision: u64,
    pub voters: Vec<(NodeId, PeerNode)>,
    pub stale: bool,
}

fn freshness_from(
    metrics: &openraft::RaftMetrics<crate::types::TypeConfig>,
    contact: &LeaderContact,
    lease: Duration,
) -> Freshness {
    let alone = metrics.membership_config.membership().voter_ids().count() == 1;
    // A leader is judged by its quorum's acknowledgements once it has one. Until the first
    // one arrives (the first milliseconds of a term) it is judged as the follower it just was,
    // by its contact with the previous leader: otherwise a planned handover would make the
    // new leader answer 503 for a poll or two while nothing is stale (docs/architecture.md).
    let quorum_acked = match metrics.state {
        ServerState::Leader if alone => Some(Duration::ZERO),
        ServerState::Leader => metrics.last_quorum_acked.as_ref().map(|acked| acked.elapsed()),
        _ => None,
    };
    let as_follower = quorum_acked.is_none();
    let since = quorum_acked.or_else(|| contact.since());
    match Freshness::judge(since, lease) {
        fresh @ Freshness::Fresh { .. } if as_follower => {
            let applied = metrics.last_applied.as_ref().map(|log_id| log_id.index);
            match contact.caught_up(applied) {
                Ok(()) => fresh,
                Err(needed) => Freshness::CatchingUp { applied, needed },
            }
        }
        other => other,
    }
}

fn compute_status(
    raft: &Raft,
    identity: &NodeIdentity,
    table: &watch::Receiver<Table>,
    contact: &LeaderContact,
    lease: Duration,
) -> ReplicaStatus {
    let metrics = raft.metrics().borrow_watched().clone();
    let voters: Vec<(NodeId, PeerNode)> = {
        let membership = metrics.membership_config.membership();
        let voter_ids: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .filter(|(id, _)| voter_ids.contains(id))
            .map(|(id, node)| (*id, node.clone()))
            .collect()
    };
    ReplicaStatus {
        node_id: identity.node_id,
        name: identity.name.clone(),
        role: metrics.state,
        term: metrics.current_term,
        leader: metrics.current_leader,
        last_log_index: metrics.last_log_index,
        committed: metrics.local_committed.map(|l| l.index),
        applied: metrics.last_applied.map(|l| l.index),
        snapshot: metrics.snapshot.map(|l| l.index),
        purged: metrics.purged.map(|l| l.index),
        revision: table.borrow().revision,
        voters,
        stale: freshness_from(&metrics, contact, lease).is_stale(),
    }
}

/// A proposal in flight (see [`Replica::submit`]).
pub struct Proposal {
    committed: openraft::alias::OneshotReceiverOf<crate::types::TypeConfig, crate::types::LogId>,
    applied: openraft::alias::OneshotReceiverOf<
        crate::types::TypeConfig,
        openraft::raft::ClientWriteResult<crate::types::TypeConfig>,
    >,
}

impl Proposal {
    /// Wait until the entry is committed (durable on a quorum); returns its log index.
    pub async fn committed(&mut self) -> Result<u64, ProposeError> {
        match (&mut self.committed).await {
            Ok(log_id) => Ok(log_id.index),
            // The commit signal is dropped when the write fails; the apply result says why.
            Err(_) => Err(ProposeError::Unknown("not committed".into())),
        }
    }

    /// Wait until this replica has applied the entry.
    pub async fn applied(self) -> Result<Response, ProposeError> {
        match self.applied.await {
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(openraft::errors::ClientWriteError::ForwardToLeader(forward))) => Err(ProposeError::NotLeader {
                leader: forward.leader_id.zip(forward.leader_node),
            }),
            Ok(Err(e)) => Err(ProposeError::Unknown(e.to_string())),
            Err(e) => Err(ProposeError::Unknown(e.to_string())),
        }
    }
}

/// A running replica.
pub struct Replica {
    context: Arc<Context>,
    identity: NodeIdentity,
    table: watch::Receiver<Table>,
    contact: Arc<LeaderContact>,
    service: Arc<PeerService>,
    peer_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
}

impl Replica {
    /// Open the data directory, start Raft and the peer server, and begin bootstrap.
    ///
    /// Fails before binding any port if the configuration or the data directory is bad.
    pub async fn start(config: ClusterConfig) -> Result<Self, StartError> {
        config.validate()?;
        let raft_config = Arc::new(config.raft_config().validate()?);
        let data_dir = {
            let path = config.data_dir.clone();
            tokio::task::spawn_blocking(move || DataDir::open(path))
                .await
                .map_err(|e| StartError::Raft(e.to_string()))??
        };
        let identity = identity::load_or_create(&data_dir, &config.name).await?;
        let (cluster_id_sender, cluster_id) = watch::channel(identity::cluster_id(&data_dir)?);
        let (machine, table) = TableMachine::new();
        let (log, state_machine) = {
            let data_dir = data_dir.clone();
            tokio::task::spawn_blocking(move || ta_storage::open_stores(&data_dir, machine))
                .await
                .map_err(|e| StartError::Raft(e.to_string()))??
        };

        let http = PeerHttp::new();
        let local = Arc::new(LocalPeer {
            node_id: identity.node_id,
            cluster_id: cluster_id.clone(),
            peers: config.peers.clone(),
            append_timeout: config.timings.append_timeout,
            snapshot_chunk_timeout: config.timings.snapshot_chunk_timeout,
        });
        let network = PeerNetwork::new(http.clone(), local);
        let raft = Raft::new(identity.node_id, raft_config, network, log, state_machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;

        let contact = Arc::new(LeaderContact::new(config.timings.lease));
        let service = Arc::new(PeerService::new(
            raft.clone(),
            identity.node_id,
            config.name.clone(),
            data_dir.clone(),
            cluster_id_sender.clone(),
            Arc::clone(&contact),
        ));
        let listener = tokio::net::TcpListener::bind(config.peer_listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.peer_listen_addr,
                source,
            })?;
        let peer_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.peer_listen_addr,
            source,
        })?;

        let (shutdown, shutdown_signal) = watch::channel(false);
        let context = Arc::new(Context {
            raft,
            config,
            data_dir,
            http,
            cluster_id,
            cluster_id_sender,
        });
        {
            let raft = context.raft.clone();
            let identity = identity.clone();
            let table = table.clone();
            let contact = Arc::clone(&contact);
            let lease = context.config.timings.lease;
            service.set_status_source(Arc::new(move || {
                compute_status(&raft, &identity, &table, &contact, lease)
            }));
        }
        let mut tasks = JoinSet::new();
        let mut server_shutdown = shutdown_signal.clone();
        let served = Arc::clone(&service);
        tasks.spawn(async move {
            let serve = axum::serve(listener, router(served)).with_graceful_shutdown(async move {
                let _ = server_shutdown.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::error!(%e, "peer server failed");
            }
        });
        tasks.spawn(crate::bootstrap::run(Arc::clone(&context), shutdown_signal.clone()));
        tasks.spawn(crate::membership::run(Arc::clone(&context), shutdown_signal));
        tracing::info!(
            name = %context.config.name,
            node_id = identity.node_id,
            %peer_addr,
            "replica started"
        );
        Ok(Self {
            context,
            identity,
            table,
            contact,
            service,
            peer_addr,
            shutdown,
            tasks: tokio::sync::Mutex::new(tasks),
        })
    }

    /// This replica's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The address the peer server is bound to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The underlying Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.context.raft
    }

    /// The cluster id, once bootstrapped or adopted.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        *self.context.cluster_id.borrow()
    }

    /// Local read: the table as applied on this replica (may lag the leader).
    pub fn table(&self) -> Table {
        self.table.borrow().clone()
    }

    /// A receiver that sees every newly applied table.
    pub fn subscribe(&self) -> watch::Receiver<Table> {
        self.table.clone()
    }

    /// Whether this replica may serve assignments (docs/architecture.md, invariant I6).
    pub fn freshness(&self) -> Freshness {
        freshness_from(
            &self.context.raft.metrics().borrow_watched(),
            &self.contact,
            self.context.config.timings.lease,
        )
    }

    /// Raft role, term, indexes and revision.
    pub fn status(&self) -> ReplicaStatus {
        compute_status(
            &self.context.raft,
            &self.identity,
            &self.table,
            &self.contact,
            self.context.config.timings.lease,
        )
    }

    /// The current leader's name, if this replica knows one.
    pub fn leader_name(&self) -> Option<String> {
        self.leader_and_term().map(|(name, _)| name)
    }

    /// The current leader's name and term, if this replica knows one. A replica knows a
    /// leader only for its own current term, so the term is the leader's.
    pub fn leader_and_term(&self) -> Option<(String, u64)> {
        let metrics = self.context.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|node| (node.name.clone(), metrics.current_term))
    }

    /// Every voter's status: this replica's own, the others' asked over the peer port.
    pub async fn cluster_status(&self) -> Vec<(String, Result<ReplicaStatus, String>)> {
        let own = self.status();
        let mut asks = JoinSet::new();
        for (id, node) in &own.voters {
            if *id == self.identity.node_id {
                continue;
            }
            let url = self.peer_url(node);
            let http = self.context.http.clone();
            let name = node.name.clone();
            asks.spawn(async move {
                let answer: Result<ReplicaStatus, String> = http
                    .get(&url, path::STATUS, Duration::from_secs(2))
                    .await
                    .map_err(|e| e.to_string());
                (name, answer)
            });
        }
        let mut statuses = vec![(own.name.clone(), Ok(own))];
        while let Some(answer) = asks.join_next().await {
            if let Ok(answer) = answer {
                statuses.push(answer);
            }
        }
        statuses.sort_by(|a, b| a.0.cmp(&b.0));
        statuses
    }

    /// Where to reach `node`: the configured peer URL for its name, else the one it announced.
    fn peer_url(&self, node: &PeerNode) -> String {
        self.context
            .config
            .peer_url(&node.name)
            .unwrap_or(&node.url)
            .to_string()
    }

    /// The current leader and its peer URL, if known.
    fn leader_peer_url(&self) -> Option<(NodeId, String)> {
        let metrics = self.context.raft.metrics().borrow_watched().clone();
        let leader = metrics.current_leader?;
        let node = metrics.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, self.peer_url(&node)))
    }

    /// Install the receiver of messages followers forward to the leader
    /// ([`Replica::forward_to_leader`]).
    pub fn set_forward_handler(&self, handler: crate::network::server::ForwardHandler) {
        self.service.set_forward_handler(handler);
    }

    /// Deliver `message` to the leader's forward handler (locally when this replica leads).
    pub async fn forward_to_leader(&self, message: Vec<u8>) -> Result<(), ProposeError> {
        let (leader, url) = self.leader_peer_url().ok_or(ProposeError::NotLeader { leader: None })?;
        if leader == self.identity.node_id {
            return if self.service.deliver_forwarded(message) {
                Ok(())
            } else {
                Err(ProposeError::Unknown("no forward handler installed".into()))
            };
        }
        let cluster_id = self.cluster_id().ok_or(ProposeError::NotLeader { leader: None })?;
        let envelope = Envelope {
            header: Header {
                cluster_id,
                from: self.identity.node_id,
                to: leader,
            },
            body: message,
        };
        self.context
            .http
            .post::<_, ()>(&url, path::FORWARD, &envelope, Duration::from_secs(2))
            .await
            .map_err(|e| ProposeError::Unknown(e.to_string()))
    }

    /// Commit `command` through Raft. Only the leader accepts proposals.
    pub async fn propose(&self, command: Command) -> Result<Response, ProposeError> {
        match self.context.raft.client_write(command).await {
            Ok(response) => Ok(response.data),
            Err(error) => match error.forward_to_leader() {
                Some(forward) => Err(ProposeError::NotLeader {
                    leader: forward.leader_id.zip(forward.leader_node.clone()),
                }),
                None => Err(ProposeError::Unknown(error.to_string())),
            },
        }
    }

    /// Submit `command` and follow it: [`Proposal::committed`] resolves when it is durable on
    /// a quorum, [`Proposal::applied`] when this replica has applied it.
    pub async fn submit(&self, command: Command) -> Result<Proposal, ProposeError> {
        let (responder, committed, applied) = openraft::impls::ProgressResponder::new();
        self.context
            .raft
            .write(command)
            .responder(responder)
            .await
            .map_err(|e| ProposeError::Unknown(e.to_string()))?;
        Ok(Proposal { committed, applied })
    }

    /// Linearizable read: the leader confirms its read index with a quorum, this replica
    /// waits until it has applied that far, then reads locally.
    pub async fn linearizable_table(&self) -> Result<Table, ReadError> {
        let raft = &self.context.raft;
        let read_index = if raft.is_leader() {
            raft.ensure_linearizable(openraft::ReadPolicy::ReadIndex)
                .await
                .map_err(|e| ReadError::Leader(e.to_string()))?
                .index()
        } else {
            let (leader, url) = self.leader_peer_url().ok_or(ReadError::NoLeader)?;
            let cluster_id = self.cluster_id().ok_or(ReadError::NoLeader)?;
            let envelope = Envelope {
                header: Header {
                    cluster_id,
                    from: self.identity.node_id,
                    to: leader,
                },
                body: (),
            };
            let reply: ReadIndexReply = self
                .context
                .http
                .post(&url, path::READ_INDEX, &envelope, READ_CATCH_UP_LIMIT)
                .await
                .map_err(|e| ReadError::Leader(e.to_string()))?;
            reply.read_log_id.index
        };
        raft.wait(Some(READ_CATCH_UP_LIMIT))
            .applied_index_at_least(Some(read_index), "linearizable read")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ReadError::CatchUpTimeout {
                    read_index,
                    waited: READ_CATCH_UP_LIMIT,
                },
                openraft::metrics::WaitError::ShuttingDown => ReadError::ShuttingDown,
            })?;
        Ok(self.table())
    }

    /// Hand leadership to another voter (used before a planned shutdown).
    pub async fn transfer_leadership(&self) -> bool {
        let status = self.status();
        if status.role != ServerState::Leader {
            return false;
        }
        let Some((target, _)) = status.voters.iter().find(|(id, _)| *id != self.identity.node_id) else {
            return false;
        };
        self.context.raft.trigger().transfer_leader(*target).await.is_ok()
    }

    /// Stop serving peers and stop Raft; waits for background tasks.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        if let Err(e) = self.context.raft.shutdown().await {
            tracing::warn!(%e, "raft shutdown reported an error");
        }
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use openraft::metrics::SerdeInstant;

    use super::*;

    const LEASE: Duration = Duration::from_secs(3);

    fn leader_of_three(quorum_acked_ago: Option<Duration>) -> openraft::RaftMetrics<crate::types::TypeConfig> {
        // `new_initial` has no voters, so this leader is not a sole voter.
        let mut metrics = openraft::RaftMetrics::new_initial(1);
        metrics.state = ServerState::Leader;
        metrics.last_quorum_acked = quorum_acked_ago.map(|ago| {
            let mut at = <openraft::alias::InstantOf<crate::types::TypeConfig> as openraft::Instant>::now();
            at -= ago;
            SerdeInstant::new(at)
        });
        metrics
    }

    #[test]
    fn a_leader_acknowledged_by_its_quorum_is_judged_by_that_acknowledgement() {
        let contact = LeaderContact::new(LEASE);
        contact.touch(None);
        let recent = leader_of_three(Some(Duration::from_millis(100)));
        assert!(!freshness_from(&recent, &contact, LEASE).is_stale());
        let old = leader_of_three(Some(Duration::from_secs(5)));
        assert!(
            freshness_from(&old, &contact, LEASE).is_stale(),
            "recent contact with a former leader does not rescue a leader its quorum left"
        );
    }

    #[test]
    fn a_new_leader_before_its_first_acknowledgement_is_judged_as_the_follower_it_was() {
        let just_elected = leader_of_three(None);
        let handed_over = LeaderContact::new(LEASE);
        handed_over.touch(None);
        assert!(
            !freshness_from(&just_elected, &handed_over, LEASE).is_stale(),
            "a planned handover must not make the new leader answer 503"
        );
        let never_followed = LeaderContact::new(LEASE);
        assert!(freshness_from(&just_elected, &never_followed, LEASE).is_stale());
        let behind = LeaderContact::new(LEASE);
        behind.touch(Some(10));
        assert_eq!(
            freshness_from(&just_elected, &behind, LEASE),
            Freshness::CatchingUp {
                applied: None,
                needed: 10
            }
        );
    }
}
