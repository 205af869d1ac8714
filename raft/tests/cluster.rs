//! Scenarios on a real 3-replica cluster: child processes, real sockets, real sled on disk,
//! faults injected by name. Each prints its seed; a failure prints the seed and replica logs.

mod support;

use std::time::Duration;
use std::time::Instant;

use support::Cluster;
use support::Options;
use ta_raft::dev_api::ProposeReply;
use ta_raft::workload::BatchShape;
use ta_raft::workload::new_targets;

const ALL: [usize; 3] = [0, 1, 2];
const PATIENCE: Duration = Duration::from_secs(20);

/// Scenarios run one at a time: three replicas each, on a 2-core machine, with real
/// election timeouts.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn shape(targets: usize) -> BatchShape {
    BatchShape {
        targets,
        ..BatchShape::default()
    }
}

fn others(of: usize) -> Vec<usize> {
    ALL.iter().copied().filter(|&i| i != of).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elects_a_leader_and_every_replica_applies_the_same_table() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, Options::default()).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;

    tracing::info!("phase: commit a batch through the leader; all replicas apply it");
    let revision = cluster
        .commit(&ALL, &new_targets(cluster.seed, 0, &shape(100)), PATIENCE)
        .await;
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.revision, revision);
    assert_eq!(table.assignments.len(), 100);

    tracing::info!("phase: a follower refuses proposals and names the leader");
    let follower = others(leader)[0];
    let reply = cluster
        .propose(follower, &new_targets(cluster.seed, 100, &shape(1)))
        .await
        .unwrap();
    assert_eq!(
        reply,
        ProposeReply::NotLeader {
            leader: Some(cluster.name(leader).to_string())
        }
    );

    tracing::info!("phase: every replica serves a linearizable read at or past the commit");
    for i in ALL {
        let read = cluster.table(i, true).await.expect("linearizable read");
        assert!(
            read.revision >= revision,
            "{} read revision {}",
            cluster.name(i),
            read.revision
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_a_10k_target_batch_with_40_labels_each() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, Options::default()).await;
    cluster.wait_for_leader(&ALL, PATIENCE).await;
    let batch = new_targets(cluster.seed, 0, &shape(10_000));
    let started = Instant::now();
    cluster.commit(&ALL, &batch, PATIENCE).await;
    println!(
        "10k-target batch committed in {:?} (debug build, via the dev API)",
        started.elapsed()
    );
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.assignments.len(), 10_000);
    assert!(
        table.assignments.values().all(Option::is_some),
        "every target has an owner"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_new_one_and_loses_nothing_committed() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, Options::default()).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;
    for batch in 0..5 {
        cluster
            .commit(&ALL, &new_targets(cluster.seed, batch * 100, &shape(100)), PATIENCE)
            .await;
    }
    let before = cluster.wait_converged(&ALL, PATIENCE).await;

    tracing::info!(leader = cluster.name(leader), "phase: kill -9 the leader");
    cluster.kill(leader).await;
    let killed_at = Instant::now();
    let survivors = others(leader);
    let new_leader = cluster.wait_for_leader(&survivors, PATIENCE).await;
    let elected_after = killed_at.elapsed();
    cluster
        .commit(&survivors, &new_targets(cluster.seed, 500, &shape(100)), PATIENCE)
        .await;
    let committing_after = killed_at.elapsed();
    println!(
        "failover: {} elected {elected_after:?} after the kill, first commit {committing_after:?} after",
        cluster.name(new_leader)
    );

    tracing::info!("phase: everything committed before the kill is still there, on the same owners");
    let after = cluster.wait_converged(&survivors, PATIENCE).await;
    for (id, owner) in &before.assignments {
        assert_eq!(
            after.assignments.get(id),
            Some(owner),
            "target {id} lost or moved by failover"
        );
    }
    assert_eq!(after.assignments.len(), 600);

    tracing::info!("phase: the old leader returns and catches up");
    cluster.restart(leader).await;
    let all = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(all.digest, after.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_while_the_majority_can_and_healing_converges() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, Options::default()).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;
    cluster
        .commit(&ALL, &new_targets(cluster.seed, 0, &shape(50)), PATIENCE)
        .await;

    tracing::info!(leader = cluster.name(leader), "phase: isolate the leader");
    cluster.net.isolate(leader);
    let minority_batch = new_targets(cluster.seed, 1000, &shape(50));
    let minority_attempt = tokio::time::timeout(Duration::from_secs(4), cluster.propose(leader, &minority_batch)).await;
    assert!(
        !matches!(minority_attempt, Ok(Ok(ProposeReply::Committed { .. }))),
        "an isolated leader committed: {minority_attempt:?}"
    );

    tracing::info!("phase: the majority elects a leader and commits");
    let majority = others(leader);
    cluster.wait_for_leader(&majority, PATIENCE).await;
    cluster
        .commit(&majority, &new_targets(cluster.seed, 2000, &shape(50)), PATIENCE)
        .await;

    tracing::info!("phase: the isolated old leader reports itself stale");
    let deadline = Instant::now() + PATIENCE;
    while !cluster.status(leader).await.is_some_and(|s| s.stale) {
        assert!(
            Instant::now() < deadline,
            "isolated replica never reported itself stale"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    tracing::info!("phase: heal; everyone converges on the majority's history");
    cluster.net.heal();
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.assignments.len(), 100, "the minority's batch must not survive");
    for (i, status) in futures_statuses(&cluster).await {
        assert!(!status.stale, "{} still stale after heal", cluster.name(i));
    }
}

async fn futures_statuses(cluster: &Cluster) -> Vec<(usize, ta_raft::dev_api::StatusView)> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut statuses = Vec::new();
        for i in ALL {
            if let Some(status) = cluster.status(i).await {
                statuses.push((i, status));
            }
        }
        if statuses.len() == ALL.len() && statuses.iter().all(|(_, s)| !s.stale) {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not become fresh again: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_replica_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let options = Options {
        flags: ["--snapshot-after-entries", "10", "--keep-behind-snapshot", "5"]
            .map(String::from)
            .to_vec(),
    };
    let cluster = Cluster::start(3, options).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;
    let lagging = others(leader)[1];
    cluster
        .commit(&ALL, &new_targets(cluster.seed, 0, &shape(20)), PATIENCE)
        .await;
    cluster.wait_converged(&ALL, PATIENCE).await;

    tracing::info!(
        lagging = cluster.name(lagging),
        "phase: cut a follower off while the log moves on"
    );
    cluster.net.isolate(lagging);
    let majority = others(lagging);
    for batch in 1..=40 {
        cluster
            .commit(&majority, &new_targets(cluster.seed, batch * 20, &shape(20)), PATIENCE)
            .await;
    }
    let behind = cluster.status(lagging).await.expect("lagging status");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let purged = cluster.status(leader).await.and_then(|s| s.purged);
        if purged > behind.last_log_index {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leader never purged past the lagging replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "leader purged its log past index {:?}, the lagging replica stopped at {:?}: only a snapshot can bring it back",
        cluster.status(leader).await.and_then(|s| s.purged),
        behind.last_log_index
    );

    tracing::info!("phase: heal; the follower installs a snapshot and converges");
    cluster.net.heal();
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.assignments.len(), 820);
    let caught_up = cluster.status(lagging).await.unwrap();
    assert!(
        caught_up.snapshot.is_some(),
        "the follower has a snapshot: {caught_up:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_cluster_restart_keeps_every_committed_revision() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, Options::default()).await;
    cluster.wait_for_leader(&ALL, PATIENCE).await;
    for batch in 0..6 {
        cluster
            .commit(&ALL, &new_targets(cluster.seed, batch * 200, &shape(200)), PATIENCE)
            .await;
    }
    let before = cluster.wait_converged(&ALL, PATIENCE).await;

    tracing::info!("phase: kill -9 every replica, then start them again");
    for i in ALL {
        cluster.kill(i).await;
    }
    for i in ALL {
        cluster.restart(i).await;
    }

    tracing::info!("phase: no replica ever serves a revision older than before the crash");
    let deadline = Instant::now() + PATIENCE;
    let mut seen = [false; 3];
    while !seen.iter().all(|s| *s) {
        for i in ALL {
            if let Some(table) = cluster.table(i, false).await {
                assert!(
                    table.revision >= before.revision,
                    "{} came back at revision {} < {}",
                    cluster.name(i),
                    table.revision,
                    before.revision
                );
                seen[i] = true;
            }
        }
        assert!(Instant::now() < deadline, "replicas did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_for_leader(&ALL, PATIENCE).await;
    let after = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(after, before, "the restarted cluster has exactly the committed state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_wiped_volume_rejoins_under_a_new_id() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start(3, Options::default()).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;
    cluster
        .commit(&ALL, &new_targets(cluster.seed, 0, &shape(100)), PATIENCE)
        .await;
    cluster.wait_converged(&ALL, PATIENCE).await;
    let wiped = *others(leader)
        .get(rand::Rng::gen_range(&mut cluster.rng, 0..2))
        .expect("a follower");
    let old_id = cluster.status(wiped).await.unwrap().node_id;

    tracing::info!(
        replica = cluster.name(wiped),
        old_id,
        "phase: lose the replica's volume"
    );
    cluster.kill(wiped).await;
    cluster.wipe(wiped);
    cluster.restart(wiped).await;

    tracing::info!("phase: the leader swaps the new id in and drops the stale one");
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_id = loop {
        let (Some(replica), Some(leader_status)) = (cluster.status(wiped).await, cluster.status(leader).await) else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let voters: Vec<u64> = leader_status.voters.iter().map(|(id, _)| *id).collect();
        if replica.node_id != old_id && voters.contains(&replica.node_id) && !voters.contains(&old_id) {
            break replica.node_id;
        }
        assert!(
            Instant::now() < deadline,
            "wiped replica was not swapped in: {leader_status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_id, old_id);
    cluster
        .commit(&ALL, &new_targets(cluster.seed, 100, &shape(100)), PATIENCE)
        .await;
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.assignments.len(), 200);
    let statuses: Vec<usize> = futures_statuses(&cluster)
        .await
        .iter()
        .map(|(_, s)| s.voters.len())
        .collect();
    assert_eq!(statuses, vec![3, 3, 3], "three voters everywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_loss_and_delayed_links_keep_the_cluster_committing_and_agreeing() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, Options::default()).await;
    let leader = cluster.wait_for_leader(&ALL, PATIENCE).await;
    let [a, b] = others(leader)[..] else { unreachable!() };

    tracing::info!("phase: the leader's messages to one follower are lost; another link is slow");
    cluster.net.drop_one_way(leader, a);
    cluster.net.delay(b, leader, Duration::from_millis(30));
    for batch in 0..5 {
        cluster
            .commit(&ALL, &new_targets(cluster.seed, batch * 30, &shape(30)), PATIENCE)
            .await;
    }

    tracing::info!("phase: heal; all replicas agree");
    cluster.net.heal();
    let table = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(table.assignments.len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_addressed_to_another_cluster_or_node_are_rejected_before_raft() {
    use ta_raft::identity::ClusterId;
    use ta_raft::network::client::CallError;
    use ta_raft::network::client::PeerHttp;
    use ta_raft::network::wire::Envelope;
    use ta_raft::network::wire::Header;
    use ta_raft::network::wire::IdentityReply;
    use ta_raft::network::wire::Rejection;
    use ta_raft::network::wire::path;

    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3, Options::default()).await;
    cluster.wait_for_leader(&ALL, PATIENCE).await;
    let http = PeerHttp::new();
    let base = format!("http://127.0.0.1:{}", cluster.net.port(1, 0));
    let identity: IdentityReply = http.get(&base, path::IDENTITY, Duration::from_secs(2)).await.unwrap();
    let cluster_id = identity.cluster_id.expect("joined");

    let vote = |cluster_id, to| Envelope {
        header: Header {
            cluster_id,
            from: 7,
            to,
        },
        body: openraft::raft::VoteRequest::<ta_raft::types::TypeConfig>::new(openraft::Vote::new(999, 7), None),
    };
    let timeout = Duration::from_secs(2);
    let wrong_cluster = http
        .post::<_, openraft::raft::VoteResponse<ta_raft::types::TypeConfig>>(
            &base,
            path::VOTE,
            &vote(ClusterId(42), identity.node_id),
            timeout,
        )
        .await;
    assert!(
        matches!(
            wrong_cluster,
            Err(CallError::Rejected {
                rejection: Rejection::WrongCluster { .. },
                ..
            })
        ),
        "{wrong_cluster:?}"
    );
    let wrong_node = http
        .post::<_, openraft::raft::VoteResponse<ta_raft::types::TypeConfig>>(
            &base,
            path::VOTE,
            &vote(cluster_id, identity.node_id ^ 1),
            timeout,
        )
        .await;
    assert!(
        matches!(
            wrong_node,
            Err(CallError::Rejected {
                rejection: Rejection::WrongNode { .. },
                ..
            })
        ),
        "{wrong_node:?}"
    );

    tracing::info!("phase: the term in those rejected votes never reached Raft");
    let status = cluster.status(0).await.unwrap();
    assert!(status.term < 999, "a rejected RPC changed the term: {status:?}");
}
