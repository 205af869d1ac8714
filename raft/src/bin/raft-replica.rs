//! Runs one replica of the replicated table with the dev API (for tests and benchmarks).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ta_raft::ClusterConfig;
use ta_raft::RaftTimings;

/// One replica of the replicated assignment table, with a small JSON client API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// This replica's stable name; must be one of the --peer names.
    #[arg(long)]
    name: String,
    /// Data directory (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address of the peer (Raft) server.
    #[arg(long)]
    peer_listen: SocketAddr,
    /// Address of the dev client API.
    #[arg(long)]
    client_listen: SocketAddr,
    /// An initial member as NAME=URL; repeat for every replica (this one included).
    #[arg(long = "peer", value_parser = parse_peer, required = true)]
    peers: Vec<(String, String)>,
    /// Heartbeat interval in milliseconds.
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds.
    #[arg(long)]
    election_min_ms: Option<u64>,
    /// Maximum election timeout in milliseconds.
    #[arg(long)]
    election_max_ms: Option<u64>,
    /// Staleness lease in milliseconds.
    #[arg(long)]
    lease_ms: Option<u64>,
    /// Build a snapshot after this many entries.
    #[arg(long)]
    snapshot_after_entries: Option<u64>,
    /// Entries kept in the log behind a snapshot.
    #[arg(long)]
    keep_behind_snapshot: Option<u64>,
}

fn parse_peer(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=URL"))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let defaults = RaftTimings::default();
    let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
    let timings = RaftTimings {
        heartbeat_interval: ms(args.heartbeat_ms, defaults.heartbeat_interval),
        election_timeout_min: ms(args.election_min_ms, defaults.election_timeout_min),
        election_timeout_max: ms(args.election_max_ms, defaults.election_timeout_max),
        lease: ms(args.lease_ms, defaults.lease),
        snapshot_after_entries: args.snapshot_after_entries.unwrap_or(defaults.snapshot_after_entries),
        log_entries_kept_behind_snapshot: args
            .keep_behind_snapshot
            .unwrap_or(defaults.log_entries_kept_behind_snapshot),
        ..defaults
    };
    let config = ClusterConfig {
        name: args.name,
        data_dir: args.data_dir,
        peer_listen_addr: args.peer_listen,
        peers: args.peers.into_iter().collect::<BTreeMap<_, _>>(),
        timings,
    };
    match ta_raft::dev_api::run(config, args.client_listen, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raft-replica: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::SignalKind;
    use tokio::signal::unix::signal;
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
