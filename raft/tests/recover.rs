//! Quorum-loss recovery on a real 3-replica cluster (child processes, real sled on disk):
//! two volumes lost for good, the survivor recovered offline with `ta_raft::recover`, the
//! wiped replicas rejoin through the leader's membership automation.

mod support;

use std::time::Duration;
use std::time::Instant;

use support::Cluster;
use support::Options;
use ta_raft::recover::Destination;
use ta_raft::recover::RecoverRequest;
use ta_raft::recover::recover;
use ta_raft::workload::BatchShape;
use ta_raft::workload::new_targets;

const ALL: [usize; 3] = [0, 1, 2];
const PATIENCE: Duration = Duration::from_secs(20);
/// Two replicas join one at a time, each as learner first.
const REJOIN_PATIENCE: Duration = Duration::from_secs(60);

fn shape(targets: usize) -> BatchShape {
    BatchShape {
        targets,
        ..BatchShape::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_survivor_recovered_offline_leads_a_new_cluster_that_wiped_replicas_rejoin() {
    let mut cluster = Cluster::start(3, Options::default()).await;
    cluster.wait_for_leader(&ALL, PATIENCE).await;
    cluster
        .commit(&ALL, &new_targets(cluster.seed, 0, &shape(300)), PATIENCE)
        .await;
    let before = cluster.wait_converged(&ALL, PATIENCE).await;
    let old_ids: Vec<u64> = {
        let mut ids = Vec::new();
        for i in ALL {
            ids.push(cluster.status(i).await.expect("status").node_id);
        }
        ids
    };

    tracing::info!("phase: all three stop; two volumes are lost for good");
    for i in ALL {
        cluster.kill(i).await;
    }
    cluster.wipe(0);
    cluster.wipe(2);

    tracing::info!("phase: recover ta-1 offline, in place");
    // ta-1, not the lowest name: the empty ta-0 must wait to be added instead of bootstrapping.
    let report = recover(RecoverRequest {
        data_dir: cluster.data_dir(1).to_path_buf(),
        destination: Destination::InPlace,
        confirmed_new_cluster: true,
    })
    .await
    .expect("recover");
    println!("{report}");
    assert_eq!(report.revision, before.revision);
    assert_eq!(report.targets, 300);
    assert!(!old_ids.contains(&report.new_node_id));

    tracing::info!("phase: the survivor starts alone, leads, and serves the same table");
    cluster.restart(1).await;
    let started = Instant::now();
    assert_eq!(cluster.wait_for_leader(&[1], PATIENCE).await, 1);
    println!("recovered replica led after {:?}", started.elapsed());
    let alone = cluster
        .table(1, true)
        .await
        .expect("linearizable read on the lone leader");
    assert_eq!(
        alone, before,
        "the recovered table differs from the one before the loss"
    );
    let status = cluster.status(1).await.expect("status");
    assert_eq!(status.node_id, report.new_node_id);
    assert_eq!(status.voters.len(), 1);

    tracing::info!("phase: the other two start with empty volumes and are added back");
    cluster.restart(0).await;
    cluster.restart(2).await;
    let deadline = Instant::now() + REJOIN_PATIENCE;
    loop {
        let voters = cluster.status(1).await.map(|s| s.voters).unwrap_or_default();
        if voters.len() == 3 {
            let mut names: Vec<String> = voters.iter().map(|(_, name)| name.clone()).collect();
            names.sort();
            assert_eq!(names, ["ta-0", "ta-1", "ta-2"]);
            assert!(
                voters.iter().all(|(id, _)| !old_ids.contains(id)),
                "an old node id was reused"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voters after {REJOIN_PATIENCE:?}: {voters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("three voters again after {:?}", started.elapsed());

    tracing::info!("phase: a new write commits on the rebuilt cluster and every replica applies it");
    let revision = cluster
        .commit(&ALL, &new_targets(cluster.seed, 300, &shape(10)), PATIENCE)
        .await;
    assert!(revision > before.revision);
    let after = cluster.wait_converged(&ALL, PATIENCE).await;
    assert_eq!(after.revision, revision);
    assert_eq!(after.assignments.len(), 310);
    for (target, collector) in &before.assignments {
        assert_eq!(after.assignments.get(target), Some(collector), "target {target} moved");
    }
}
