//! A real cluster for scenario tests: `raft-replica` child processes with their own data
//! directories and ports, talking through the proxy network of `net.rs`. Faults are named
//! methods (`kill`, `restart`, `wipe`, and the network's `isolate`, `cut`, `drop_one_way`,
//! `delay`). Every random choice comes from the cluster's seed, printed at start and again
//! with the replica logs when a test fails (`TA_TEST_SEED` replays one).

#![allow(dead_code)]

pub mod net;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use ta_raft::Command;
use ta_raft::dev_api::ProposeReply;
use ta_raft::dev_api::StatusView;
use ta_raft::dev_api::TableView;
use tokio::process::Child;

pub use net::Network;

/// Settings passed to every replica.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra command-line flags for `raft-replica` (timings, snapshot policy).
    pub flags: Vec<String>,
}

struct Node {
    name: String,
    data_dir: PathBuf,
    peer_port: u16,
    client_port: u16,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster of replica processes.
pub struct Cluster {
    pub seed: u64,
    pub rng: StdRng,
    pub net: Network,
    root: tempfile::TempDir,
    nodes: Vec<Node>,
    options: Options,
    http: reqwest::Client,
}

/// `count` distinct free ports, with listeners holding them until the caller drops them:
/// asking for one free port at a time can return the same port twice.
fn reserve_ports(count: usize) -> (Vec<u16>, Vec<std::net::TcpListener>) {
    let holders: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let ports = holders.iter().map(|l| l.local_addr().expect("addr").port()).collect();
    (ports, holders)
}

/// The seed of this run: `TA_TEST_SEED` or a fresh one.
pub fn seed() -> u64 {
    std::env::var("TA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_test_writer()
        .try_init();
}

impl Cluster {
    /// Start `size` replicas named `ta-0..`.
    pub async fn start(size: usize, options: Options) -> Self {
        init_tracing();
        let seed = seed();
        println!("cluster seed = {seed} (replay with TA_TEST_SEED={seed})");
        let root = tempfile::tempdir().expect("tempdir");
        let (ports, holders) = reserve_ports(2 * size);
        let (peer_ports, client_ports) = ports.split_at(size);
        // Proxies bind while the replicas' ports are still held, so they cannot take them.
        let net = Network::start(peer_ports).await;
        drop(holders);
        let nodes = (0..size)
            .map(|i| Node {
                name: format!("ta-{i}"),
                data_dir: root.path().join(format!("ta-{i}")),
                peer_port: peer_ports[i],
                client_port: client_ports[i],
                log: root.path().join(format!("ta-{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            seed,
            rng: StdRng::seed_from_u64(seed),
            net,
            root,
            nodes,
            options,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        cluster
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    pub fn data_dir(&self, i: usize) -> &std::path::Path {
        &self.nodes[i].data_dir
    }

    fn spawn(&mut self, i: usize) {
        let mut args = vec![
            "--name".to_string(),
            self.nodes[i].name.clone(),
            "--data-dir".into(),
            self.nodes[i].data_dir.display().to_string(),
            "--peer-listen".into(),
            format!("127.0.0.1:{}", self.nodes[i].peer_port),
            "--client-listen".into(),
            format!("127.0.0.1:{}", self.nodes[i].client_port),
        ];
        for j in 0..self.nodes.len() {
            let port = if i == j {
                self.nodes[j].peer_port
            } else {
                self.net.port(i, j)
            };
            args.push("--peer".into());
            args.push(format!("{}=http://127.0.0.1:{port}", self.nodes[j].name));
        }
        args.extend(self.options.flags.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.nodes[i].log)
            .expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_raft-replica"))
            .args(&args)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn raft-replica");
        self.nodes[i].child = Some(child);
    }

    /// SIGKILL a replica: no shutdown, no flush.
    pub async fn kill(&mut self, i: usize) {
        tracing::info!(node = %self.nodes[i].name, "fault: kill -9");
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill().await;
        }
    }

    /// Start a killed or stopped replica again on the same data directory.
    pub async fn restart(&mut self, i: usize) {
        tracing::info!(node = %self.nodes[i].name, "restart");
        assert!(self.nodes[i].child.is_none(), "restart of a running replica");
        self.spawn(i);
    }

    /// Delete a (killed) replica's data directory: it comes back with a new node id.
    pub fn wipe(&mut self, i: usize) {
        tracing::info!(node = %self.nodes[i].name, "fault: wipe volume");
        assert!(self.nodes[i].child.is_none(), "wipe of a running replica");
        let _ = std::fs::remove_dir_all(&self.nodes[i].data_dir);
    }

    fn url(&self, i: usize, route: &str) -> String {
        format!("http://127.0.0.1:{}{route}", self.nodes[i].client_port)
    }

    /// The replica's status, or `None` if it does not answer.
    pub async fn status(&self, i: usize) -> Option<StatusView> {
        let response = self.http.get(self.url(i, "/status")).send().await.ok()?;
        response.json().await.ok()
    }

    /// The replica's table (`linearizable`: confirmed by the leader first).
    pub async fn table(&self, i: usize, linearizable: bool) -> Option<TableView> {
        let route = if linearizable {
            "/table?consistency=linearizable"
        } else {
            "/table"
        };
        let response = self.http.get(self.url(i, route)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Propose through replica `i`.
    pub async fn propose(&self, i: usize, command: &Command) -> Result<ProposeReply, String> {
        let body = ta_raft::network::wire::encode(command);
        let response = self
            .http
            .post(self.url(i, "/propose"))
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// Index of the replica every live replica in `among` agrees is leader.
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut leader = None;
        for &i in among {
            let status = self.status(i).await?;
            if status.role == "Leader" {
                leader = Some(i);
            }
        }
        let leader = leader?;
        let leader_id = self.status(leader).await?.node_id;
        for &i in among {
            if self.status(i).await?.leader != Some(leader_id) {
                return None;
            }
        }
        Some(leader)
    }

    /// Wait until the replicas in `among` agree on a leader.
    pub async fn wait_for_leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.leader_among(among).await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader among {among:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Propose on whichever replica in `among` leads, retrying until committed.
    pub async fn commit(&self, among: &[usize], command: &Command, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.leader_among(among).await {
                match self.propose(leader, command).await {
                    Ok(ProposeReply::Committed { revision, outcome }) => {
                        assert!(outcome.starts_with("Applied"), "batch not applied: {outcome}");
                        return revision;
                    }
                    Ok(other) => tracing::info!(?other, "proposal not committed, retrying"),
                    Err(e) => tracing::info!(%e, "proposal failed, retrying"),
                }
            }
            assert!(Instant::now() < deadline, "could not commit within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until every replica in `among` has the same table digest and revision, and
    /// return that table.
    pub async fn wait_converged(&self, among: &[usize], within: Duration) -> TableView {
        let deadline = Instant::now() + within;
        loop {
            let mut tables = Vec::new();
            for &i in among {
                tables.push(self.table(i, false).await);
            }
            if let Some(Some(first)) = tables.first()
                && tables.iter().all(|t| {
                    t.as_ref()
                        .is_some_and(|t| t.digest == first.digest && t.revision == first.revision)
                })
            {
                return first.clone();
            }
            assert!(
                Instant::now() < deadline,
                "replicas {among:?} did not converge within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn print_logs(&self) {
        eprintln!(
            "=== failure with cluster seed {} (replay: TA_TEST_SEED={}) ===",
            self.seed, self.seed
        );
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- {} (last {} lines) ---\n{}", node.name, tail.len(), tail.join("\n"));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let _ = child.start_kill();
            }
        }
    }
}
