//! Membership automation on the leader: a configured replica that answers under a node id
//! the membership does not know (it came back with a wiped volume) is swapped in: adopt the
//! cluster id, add as learner, wait until it has caught up, then one membership change that
//! promotes it and removes the stale id of the same name. One change at a time.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;

use crate::bootstrap::PROBE_TIMEOUT;
use crate::bootstrap::request_adoption;
use crate::network::wire::IdentityReply;
use crate::network::wire::path;
use crate::replica::Context;
use crate::types::NodeId;
use crate::types::PeerNode;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const CATCH_UP_LIMIT: Duration = Duration::from_secs(120);

/// Run on every replica; acts only while this replica leads.
pub(crate) async fn run(context: Arc<Context>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        if !context.raft.is_leader() {
            continue;
        }
        if let Err(problem) = reconcile_once(&context).await {
            tracing::warn!(%problem, "membership reconciliation failed; will retry");
        }
    }
}

async fn reconcile_once(context: &Context) -> Result<(), String> {
    let metrics = context.raft.metrics().borrow_watched().clone();
    if metrics.membership_config.log_id() != metrics.committed_membership_config.log_id() {
        // A change is still in flight; one at a time (openraft#1351).
        return Ok(());
    }
    let Some(cluster_id) = *context.cluster_id.borrow() else {
        return Ok(());
    };
    let membership = metrics.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let nodes: Vec<(NodeId, PeerNode)> = membership.nodes().map(|(id, node)| (*id, node.clone())).collect();

    for (name, url) in &context.config.peers {
        if *name == context.config.name {
            continue;
        }
        let Ok(reply) = context
            .http
            .get::<IdentityReply>(url, path::IDENTITY, PROBE_TIMEOUT)
            .await
        else {
            continue;
        };
        if &reply.name != name || voters.contains(&reply.node_id) {
            continue;
        }
        let stale: BTreeSet<NodeId> = nodes
            .iter()
            .filter(|(id, node)| node.name == *name && *id != reply.node_id)
            .map(|(id, _)| *id)
            .collect();
        tracing::info!(%name, new_id = reply.node_id, ?stale, "replica returned under a new node id; replacing it");

        if reply.cluster_id.is_none() {
            request_adoption(context, name, url, reply.node_id, cluster_id).await?;
        } else if reply.cluster_id != Some(cluster_id) {
            return Err(format!("{name} belongs to another cluster ({:?})", reply.cluster_id));
        }

        let node = PeerNode {
            name: name.clone(),
            url: url.clone(),
        };
        if !nodes.iter().any(|(id, _)| *id == reply.node_id) {
            tokio::time::timeout(CATCH_UP_LIMIT, context.raft.add_learner(reply.node_id, node, true))
                .await
                .map_err(|_| format!("{name} did not catch up within {CATCH_UP_LIMIT:?}"))?
                .map_err(|e| format!("adding {name} as learner failed: {e}"))?;
        }
        let mut new_voters: BTreeSet<NodeId> = voters.difference(&stale).copied().collect();
        new_voters.insert(reply.node_id);
        context
            .raft
            .change_membership(new_voters.clone(), false)
            .await
            .map_err(|e| format!("promoting {name} failed: {e}"))?;
        tracing::info!(%name, voters = ?new_voters, "membership changed");
        return Ok(());
    }
    Ok(())
}
