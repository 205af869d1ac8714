//! Forming a new cluster exactly once.
//!
//! The replica with the lowest configured name bootstraps, and only when every initial peer
//! answers, none has Raft state yet, and their cluster ids (if any, from an interrupted
//! earlier attempt) agree. It gives every peer the cluster id, then initialises the
//! membership with all of them. Everyone else waits: either for that, or (a replica that
//! returns with a wiped volume) for the leader to add it back (see `membership`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::ClusterId;
use crate::identity::{self};
use crate::network::wire::AdoptRequest;
use crate::network::wire::IdentityReply;
use crate::network::wire::path;
use crate::replica::Context;
use crate::types::PeerNode;

/// How long one peer probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const RETRY_EVERY: Duration = Duration::from_millis(300);
const LOG_WAITING_EVERY: u32 = 10;

/// What one bootstrap attempt found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Initialized,
    WaitingFor(String),
    ClusterExists(String),
}

/// Run until this replica is part of an initialized cluster (or shutdown).
pub(crate) async fn run(context: std::sync::Arc<Context>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut rounds = 0u32;
    loop {
        if context.raft.is_initialized().await.unwrap_or(false) {
            return;
        }
        let is_bootstrapper = context.config.bootstrap_name() == Some(context.config.name.as_str());
        let attempt = if is_bootstrapper {
            try_bootstrap(&context).await
        } else {
            Ok(Attempt::WaitingFor(format!(
                "{} to initialize the cluster or the leader to add this replica",
                context.config.bootstrap_name().unwrap_or("the lowest-named replica")
            )))
        };
        match attempt {
            Ok(Attempt::Initialized) => {
                tracing::info!(name = %context.config.name, "initialized the cluster");
                return;
            }
            Ok(waiting) => {
                if rounds.is_multiple_of(LOG_WAITING_EVERY) {
                    tracing::info!(name = %context.config.name, state = ?waiting, "waiting to join a cluster");
                }
            }
            Err(problem) => tracing::warn!(name = %context.config.name, %problem, "bootstrap attempt failed"),
        }
        rounds += 1;
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(RETRY_EVERY) => {}
        }
    }
}

/// Ask the replica `name` at `url` (expected to be node `node_id`) to adopt `cluster_id`.
pub(crate) async fn request_adoption(
    context: &Context,
    name: &str,
    url: &str,
    node_id: u64,
    cluster_id: ClusterId,
) -> Result<(), String> {
    let request = AdoptRequest {
        cluster_id,
        node_id,
        requested_by: context.config.name.clone(),
    };
    context
        .http
        .post::<_, ()>(url, path::ADOPT, &request, PROBE_TIMEOUT)
        .await
        .map_err(|e| format!("{name} did not adopt the cluster id: {e}"))
}

async fn try_bootstrap(context: &Context) -> Result<Attempt, String> {
    let mut found: BTreeMap<String, (String, IdentityReply)> = BTreeMap::new();
    for (name, url) in &context.config.peers {
        let reply: IdentityReply = match context.http.get(url, path::IDENTITY, PROBE_TIMEOUT).await {
            Ok(reply) => reply,
            Err(e) => return Ok(Attempt::WaitingFor(format!("peer {name}: {e}"))),
        };
        if &reply.name != name {
            return Err(format!(
                "peer URL {url} configured for {name} answers as {:?}",
                reply.name
            ));
        }
        if reply.initialized {
            return Ok(Attempt::ClusterExists(format!(
                "peer {name} already has Raft state; this replica waits to be added by the leader"
            )));
        }
        found.insert(name.clone(), (url.clone(), reply));
    }

    let ids: std::collections::BTreeSet<ClusterId> = found.values().filter_map(|(_, r)| r.cluster_id).collect();
    let cluster_id = match ids.len() {
        0 => ClusterId::random(),
        1 => *ids.iter().next().expect("one id"),
        _ => {
            return Err(format!(
                "peers hold different cluster ids {ids:?}; refusing to bootstrap"
            ));
        }
    };

    // Adopt on ourselves first: once any peer holds the id, a restart must reuse it.
    if context.cluster_id.borrow().is_none() {
        identity::adopt_cluster_id(&context.data_dir, cluster_id)
            .await
            .map_err(|e| e.to_string())?;
        context.cluster_id_sender.send_replace(Some(cluster_id));
    }
    for (name, (url, reply)) in &found {
        request_adoption(context, name, url, reply.node_id, cluster_id).await?;
    }

    let members: BTreeMap<u64, PeerNode> = found
        .iter()
        .map(|(name, (url, reply))| {
            (
                reply.node_id,
                PeerNode {
                    name: name.clone(),
                    url: url.clone(),
                },
            )
        })
        .collect();
    match context.raft.initialize(members).await {
        Ok(()) => Ok(Attempt::Initialized),
        Err(e) if context.raft.is_initialized().await.unwrap_or(false) => {
            tracing::debug!(%e, "initialize raced with an existing state");
            Ok(Attempt::Initialized)
        }
        Err(e) => Err(format!("initialize failed: {e}")),
    }
}
