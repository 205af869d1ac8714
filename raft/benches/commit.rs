//! Commit latency and throughput of target batches on a local 3-replica cluster with real
//! fsync, plus leader failover time. Prints figures; asserts nothing.
//!
//! `cargo bench -p ta-raft --bench commit -- [--rounds N] [--sizes 100,1000,10000]
//!  [--labels 40] [--failovers N] [--dir PATH]`
//!
//! Three replicas run in this process, each with its own sled data directory (under `--dir`,
//! default the system temp dir) and its own peer port on 127.0.0.1. Latency is measured from
//! `propose` on the leader until it returns: the batch is durable on a quorum (appended and
//! fsync'd), committed, and applied (and fsync'd) on the leader.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use ta_raft::ClusterConfig;
use ta_raft::RaftTimings;
use ta_raft::Replica;
use ta_raft::workload::BatchShape;
use ta_raft::workload::new_targets;

struct Settings {
    /// Run each replica as its own `raft-replica` process instead of in this process.
    processes: bool,
    rounds: usize,
    sizes: Vec<usize>,
    labels: usize,
    failovers: usize,
    dir: PathBuf,
}

fn settings() -> Settings {
    let mut s = Settings {
        processes: false,
        rounds: 30,
        sizes: vec![100, 1000, 10_000],
        labels: 40,
        failovers: 10,
        dir: std::env::temp_dir(),
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--rounds" => s.rounds = value.parse().expect("--rounds N"),
            "--sizes" => s.sizes = value.split(',').map(|v| v.parse().expect("--sizes a,b,c")).collect(),
            "--labels" => s.labels = value.parse().expect("--labels N"),
            "--failovers" => s.failovers = value.parse().expect("--failovers N"),
            "--dir" => s.dir = PathBuf::from(value),
            "--processes" => {
                s.processes = true;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    s
}

/// `count` distinct free ports (asking for one at a time can return the same port twice).
fn free_ports(count: usize) -> Vec<u16> {
    let holders: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    holders.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

async fn start_cluster(root: &std::path::Path) -> Vec<Replica> {
    let ports = free_ports(3);
    let peers: BTreeMap<String, String> = (0..3)
        .map(|i| (format!("ta-{i}"), format!("http://127.0.0.1:{}", ports[i])))
        .collect();
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let config = ClusterConfig {
            name: format!("ta-{i}"),
            data_dir: root.join(format!("ta-{i}")),
            peer_listen_addr: format!("127.0.0.1:{port}").parse().unwrap(),
            peers: peers.clone(),
            timings: RaftTimings::default(),
        };
        replicas.push(Replica::start(config).await.expect("start replica"));
    }
    replicas
}

async fn leader(replicas: &[Replica], among: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(&i) = among.iter().find(|&&i| replicas[i].raft().is_leader()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// Wait until every replica has applied everything the leader has, so the next batch is
/// measured on an idle cluster.
async fn settle(replicas: &[Replica]) {
    loop {
        let applied: Vec<Option<u64>> = replicas.iter().map(|r| r.status().applied).collect();
        let last = replicas.iter().filter_map(|r| r.status().last_log_index).max();
        if applied.iter().all(|a| *a == last) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Figures {
    commit: Vec<Duration>,
    applied: Vec<Duration>,
}

fn row(size: usize, encoded: usize, mut figures: Figures) -> String {
    figures.commit.sort();
    figures.applied.sort();
    let c = &figures.commit;
    let a = &figures.applied;
    format!(
        "| {size} | {:.2} MB | {} | {} | {} | {} | {} | {} |",
        encoded as f64 / 1e6,
        ms(percentile(c, 50.0)),
        ms(percentile(c, 90.0)),
        ms(percentile(c, 99.0)),
        ms(*c.last().unwrap()),
        ms(percentile(a, 50.0)),
        ms(*a.last().unwrap()),
    )
}

async fn commit_latency(settings: &Settings) {
    let root = tempfile::tempdir_in(&settings.dir).expect("bench dir");
    let replicas = start_cluster(root.path()).await;
    let lead = leader(&replicas, &[0, 1, 2]).await;
    println!(
        "\n## Commit latency: 3 replicas, {} labels per target, {} batches per size (data under {})\n",
        settings.labels,
        settings.rounds,
        settings.dir.display()
    );
    println!("Each batch is proposed on an idle cluster (all replicas applied the previous one).");
    println!("commit = durable (fsync) on a quorum and committed; applied = applied and fsync'd on the leader.\n");
    println!("| targets/batch | encoded | commit p50 ms | p90 | p99 | max | applied p50 ms | max |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut next = 0u64;
    let shape_of = |size| BatchShape {
        targets: size,
        labels_per_target: settings.labels,
        collectors: 3,
        jobs: 10,
    };
    for &size in &settings.sizes {
        let shape = shape_of(size);
        let warmup = 2;
        let mut figures = Figures {
            commit: Vec::new(),
            applied: Vec::new(),
        };
        let mut encoded = 0;
        for round in 0..settings.rounds + warmup {
            let command = new_targets(42, next, &shape);
            next += size as u64;
            encoded = ta_raft::network::wire::encode(&command).len();
            settle(&replicas).await;
            let started = Instant::now();
            let mut proposal = replicas[lead].submit(command).await.expect("submit");
            proposal.committed().await.expect("commit");
            let committed = started.elapsed();
            let response = proposal.applied().await.expect("apply");
            let applied = started.elapsed();
            assert!(matches!(response.outcome, ta_raft::Outcome::Applied { .. }));
            if round >= warmup {
                figures.commit.push(committed);
                figures.applied.push(applied);
            }
        }
        println!("{}", row(size, encoded, figures));
    }

    println!(
        "\n## Sustained throughput: batches proposed back to back, each after the previous applied on the leader\n"
    );
    println!("| targets/batch | batches | seconds | targets/s | leader changes |");
    println!("|---:|---:|---:|---:|---:|");
    for &size in &settings.sizes {
        let shape = shape_of(size);
        let commands: Vec<_> = (0..settings.rounds)
            .map(|i| new_targets(43, next + (i * size) as u64, &shape))
            .collect();
        next += (settings.rounds * size) as u64;
        settle(&replicas).await;
        let started = Instant::now();
        let mut leader_changes = 0;
        let mut current = lead;
        for command in commands {
            loop {
                match replicas[current].propose(command.clone()).await {
                    Ok(_) => break,
                    Err(ta_raft::ProposeError::NotLeader { .. }) => {
                        leader_changes += 1;
                        current = leader(&replicas, &[0, 1, 2]).await;
                    }
                    Err(e) => panic!("commit failed: {e}"),
                }
            }
        }
        let took = started.elapsed();
        println!(
            "| {size} | {} | {:.2} | {:.0} | {leader_changes} |",
            settings.rounds,
            took.as_secs_f64(),
            (size * settings.rounds) as f64 / took.as_secs_f64()
        );
    }
    settle(&replicas).await;
    let sizes: Vec<usize> = replicas.iter().map(|r| r.table().targets().len()).collect();
    println!("\ntable size at the end: {sizes:?} targets per replica");
    for replica in &replicas {
        replica.shutdown().await;
    }
}

/// A freshly elected leader may refuse a proposal until its first entry commits; retry.
async fn commit_with_retry(replica: &Replica, command: ta_raft::Command) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match replica.propose(command.clone()).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "could not commit: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn failover(settings: &Settings) {
    if settings.failovers == 0 {
        return;
    }
    println!(
        "\n## Failover: leader stopped, until a survivor commits ({} rounds)\n",
        settings.failovers
    );
    let mut elected = Vec::new();
    let mut committed = Vec::new();
    for round in 0..settings.failovers {
        let root = tempfile::tempdir_in(&settings.dir).expect("bench dir");
        let replicas = start_cluster(root.path()).await;
        let lead = leader(&replicas, &[0, 1, 2]).await;
        let shape = BatchShape {
            targets: 100,
            ..BatchShape::default()
        };
        commit_with_retry(&replicas[lead], new_targets(round as u64, 0, &shape)).await;
        // Let heartbeats settle so every round starts from a steady state.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != lead).collect();
        let stopped_at = Instant::now();
        replicas[lead].shutdown().await;
        let new_leader = leader(&replicas, &survivors).await;
        elected.push(stopped_at.elapsed());
        commit_with_retry(&replicas[new_leader], new_targets(round as u64, 100, &shape)).await;
        committed.push(stopped_at.elapsed());
        for &i in &survivors {
            replicas[i].shutdown().await;
        }
    }
    elected.sort();
    committed.sort();
    println!("| measure | p50 ms | max ms |");
    println!("|---|---:|---:|");
    println!(
        "| new leader elected | {} | {} |",
        ms(percentile(&elected, 50.0)),
        ms(*elected.last().unwrap())
    );
    println!(
        "| first commit by the new leader | {} | {} |",
        ms(percentile(&committed, 50.0)),
        ms(*committed.last().unwrap())
    );
}

/// Commit latency with every replica in its own process (as deployed: one per pod), measured
/// through the dev API of the leader: upload of the command, decode, commit.
mod processes {
    use super::*;
    use std::process::Child;
    use std::process::Command as Process;

    pub struct ProcessCluster {
        children: Vec<Child>,
        clients: Vec<String>,
        http: reqwest::Client,
        _root: tempfile::TempDir,
    }

    impl Drop for ProcessCluster {
        fn drop(&mut self) {
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn binary() -> PathBuf {
        // target/release/deps/commit-<hash> → target/release/raft-replica
        let exe = std::env::current_exe().expect("bench path");
        let path = exe
            .parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .join("raft-replica");
        assert!(
            path.exists(),
            "{} not found: run `cargo build --release -p ta-raft --bins` first",
            path.display()
        );
        path
    }

    pub async fn start(dir: &std::path::Path) -> ProcessCluster {
        let root = tempfile::tempdir_in(dir).expect("bench dir");
        let ports = free_ports(6);
        let (peer, client) = ports.split_at(3);
        let mut children = Vec::new();
        for i in 0..3 {
            let mut command = Process::new(binary());
            command
                .arg("--name")
                .arg(format!("ta-{i}"))
                .arg("--data-dir")
                .arg(root.path().join(format!("ta-{i}")))
                .arg("--peer-listen")
                .arg(format!("127.0.0.1:{}", peer[i]))
                .arg("--client-listen")
                .arg(format!("127.0.0.1:{}", client[i]))
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::null());
            for (j, port) in peer.iter().enumerate() {
                command.arg("--peer").arg(format!("ta-{j}=http://127.0.0.1:{port}"));
            }
            children.push(command.spawn().expect("spawn raft-replica"));
        }
        ProcessCluster {
            children,
            clients: client.iter().map(|p| format!("http://127.0.0.1:{p}")).collect(),
            http: reqwest::Client::new(),
            _root: root,
        }
    }

    impl ProcessCluster {
        async fn status(&self, i: usize) -> Option<serde_json::Value> {
            self.http
                .get(format!("{}/status", self.clients[i]))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()
        }

        pub async fn leader(&self) -> usize {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                for i in 0..3 {
                    if self.status(i).await.is_some_and(|s| s["role"] == "Leader") {
                        return i;
                    }
                }
                assert!(Instant::now() < deadline, "no leader");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        pub async fn settle(&self) {
            loop {
                let mut applied = Vec::new();
                let mut last = Vec::new();
                for i in 0..3 {
                    let s = self.status(i).await.unwrap_or_default();
                    applied.push(s["applied"].as_u64());
                    last.push(s["last_log_index"].as_u64());
                }
                let newest = last.iter().flatten().max().copied();
                if applied.iter().all(|a| *a == newest) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        pub async fn propose(&self, leader: usize, body: Vec<u8>, wait: &str) {
            let response = self
                .http
                .post(format!("{}/propose?wait={wait}", self.clients[leader]))
                .body(body)
                .send()
                .await
                .expect("propose");
            assert!(response.status().is_success(), "propose failed: {}", response.status());
        }
    }

    pub async fn commit_latency(settings: &Settings) {
        let cluster = start(&settings.dir).await;
        let lead = cluster.leader().await;
        println!(
            "\n## Commit latency, one process per replica: 3 replicas, {} labels per target, {} batches per size\n",
            settings.labels, settings.rounds
        );
        println!("Measured by the client of the leader's dev API: upload and decode of the command, then");
        println!("commit (durable on a quorum) or apply (applied and fsync'd on the leader).\n");
        println!("| targets/batch | encoded | commit p50 ms | p90 | p99 | max | applied p50 ms | max |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut next = 0u64;
        for &size in &settings.sizes {
            let shape = BatchShape {
                targets: size,
                labels_per_target: settings.labels,
                collectors: 3,
                jobs: 10,
            };
            let mut figures = Figures {
                commit: Vec::new(),
                applied: Vec::new(),
            };
            let mut encoded = 0;
            for round in 0..settings.rounds + 2 {
                for wait in ["commit", "apply"] {
                    let body = ta_raft::network::wire::encode(&new_targets(42, next, &shape));
                    next += size as u64;
                    encoded = body.len();
                    cluster.settle().await;
                    let started = Instant::now();
                    cluster.propose(lead, body, wait).await;
                    if round >= 2 {
                        match wait {
                            "commit" => figures.commit.push(started.elapsed()),
                            _ => figures.applied.push(started.elapsed()),
                        }
                    }
                }
            }
            println!("{}", row(size, encoded, figures));
        }
    }
}

fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if settings.processes {
            processes::commit_latency(&settings).await;
        } else {
            commit_latency(&settings).await;
            failover(&settings).await;
        }
    });
}
