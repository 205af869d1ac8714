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
    rounds: usize,
    sizes: Vec<usize>,
    labels: usize,
    failovers: usize,
    dir: PathBuf,
}

fn settings() -> Settings {
    let mut s = Settings {
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
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_cluster(root: &std::path::Path) -> Vec<Replica> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
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
    println!("| targets/batch | batches | seconds | targets/s |");
    println!("|---:|---:|---:|---:|");
    for &size in &settings.sizes {
        let shape = shape_of(size);
        let commands: Vec<_> = (0..settings.rounds)
            .map(|i| new_targets(43, next + (i * size) as u64, &shape))
            .collect();
        next += (settings.rounds * size) as u64;
        settle(&replicas).await;
        let started = Instant::now();
        for command in commands {
            replicas[lead].propose(command).await.expect("commit");
        }
        let took = started.elapsed();
        println!(
            "| {size} | {} | {:.2} | {:.0} |",
            settings.rounds,
            took.as_secs_f64(),
            (size * settings.rounds) as f64 / took.as_secs_f64()
        );
    }
    settle(&replicas).await;
    let sizes: Vec<usize> = replicas.iter().map(|r| r.table().targets.len()).collect();
    println!("\ntable size at the end: {sizes:?} targets per replica");
    for replica in &replicas {
        replica.shutdown().await;
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
        replicas[lead]
            .propose(new_targets(round as u64, 0, &shape))
            .await
            .expect("commit");
        // Let heartbeats settle so every round starts from a steady state.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != lead).collect();
        let stopped_at = Instant::now();
        replicas[lead].shutdown().await;
        let new_leader = leader(&replicas, &survivors).await;
        elected.push(stopped_at.elapsed());
        loop {
            if replicas[new_leader]
                .propose(new_targets(round as u64, 100, &shape))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        commit_latency(&settings).await;
        failover(&settings).await;
    });
}
