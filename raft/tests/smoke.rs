use std::collections::BTreeMap;
use std::time::Duration;

use ta_raft::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_and_replicate() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,openraft=warn")
        .with_test_writer()
        .try_init();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: BTreeMap<String, String> = (0..3)
        .map(|i| (format!("ta-{i}"), format!("http://127.0.0.1:{}", ports[i])))
        .collect();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let config = ClusterConfig {
            name: format!("ta-{i}"),
            data_dir: dirs[i].path().to_path_buf(),
            peer_listen_addr: format!("127.0.0.1:{}", ports[i]).parse().unwrap(),
            peers: peers.clone(),
            timings: RaftTimings::default(),
        };
        replicas.push(Replica::start(config).await.unwrap());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(r) = replicas.iter().find(|r| r.raft().is_leader()) {
            break r;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut b = CommandBuilder::new();
    b.set_collector("c0", None, CollectorState::Ready);
    b.upsert_target(TargetId(1), "job", [("__address__", "a:1")], Some("c0"), Expect::Absent);
    let response = leader.propose(b.build()).await.unwrap();
    assert!(matches!(response.outcome, Outcome::Applied { .. }), "{response:?}");
    for r in &replicas {
        let t = r.linearizable_table().await.unwrap();
        assert_eq!(t.targets.len(), 1, "{}", r.identity().name);
        println!("{:?}", r.status());
    }
    for r in &replicas {
        r.shutdown().await;
    }
}
