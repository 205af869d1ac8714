//! Our `cluster:` section: this replica's name, data directory, peer address, the initial
//! members and the Raft timings, into a `ta_raft::ClusterConfig` checked by its own
//! `validate()`.
//!
//! The section is optional. Without it the allocator is a single replica
//! ([`single_replica`]): its name is the host name, its data lives in [`DEFAULT_DATA_DIR`],
//! its peer server listens on [`DEFAULT_PEER_LISTEN_ADDR`] and it is its only peer. Within the
//! section, `name`, `data_dir` and `peer_listen_addr` have the same defaults, `peers` is
//! required (the initial members, name → `http://host:port`), and every Raft timing defaults
//! to `ta_raft::RaftTimings::default()`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use ta_raft::ClusterConfig;
use ta_raft::RaftTimings;

use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::yaml::Node;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/target-allocator";
pub const DEFAULT_PEER_LISTEN_ADDR: &str = "0.0.0.0:7400";
const DEFAULT_PEER_PORT: u16 = 7400;

/// Timing keys under `cluster.raft`, as `ClusterConfig::validate` names them.
const TIMING_KEYS: [&str; 8] = [
    "heartbeat_interval",
    "election_timeout_min",
    "election_timeout_max",
    "lease",
    "append_timeout",
    "snapshot_chunk_timeout",
    "snapshot_after_entries",
    "log_entries_kept_behind_snapshot",
];

/// The configuration of a replica without a `cluster:` section: a cluster of one.
pub fn single_replica(name: String) -> ClusterConfig {
    let peers = BTreeMap::from([(name.clone(), format!("http://127.0.0.1:{DEFAULT_PEER_PORT}"))]);
    ClusterConfig {
        name,
        data_dir: PathBuf::from(DEFAULT_DATA_DIR),
        peer_listen_addr: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PEER_PORT)),
        peers,
        timings: RaftTimings::default(),
    }
}

/// Decode `cluster:` (not null); `default_name` is the host name.
pub fn decode(node: &Node, path: &KeyPath, default_name: &str, report: &mut Report) -> Option<ClusterConfig> {
    let mut fields = Fields::of(node, path, report)?;
    let errors_before = report.errors.len();
    let name = fields
        .string("name", report)
        .unwrap_or_else(|| default_name.to_string());
    let data_dir = fields
        .string("data_dir", report)
        .unwrap_or_else(|| DEFAULT_DATA_DIR.to_string());
    let peer_listen_addr = fields
        .string("peer_listen_addr", report)
        .unwrap_or_else(|| DEFAULT_PEER_LISTEN_ADDR.to_string());
    let peer_listen_addr = match peer_listen_addr.parse::<SocketAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            report.error(
                &path.key("peer_listen_addr"),
                Some(fields.line_of("peer_listen_addr")),
                format!("{peer_listen_addr:?} is not an IP address and port, such as 0.0.0.0:7400"),
            );
            None
        }
    };
    let peers = fields.string_map("peers", report).unwrap_or_default();
    let timings = match fields.take("raft") {
        Some(raft) => decode_timings(raft, &path.key("raft"), report),
        None => RaftTimings::default(),
    };
    fields.finish(report);
    let config = ClusterConfig {
        name,
        data_dir: PathBuf::from(data_dir),
        peer_listen_addr: peer_listen_addr?,
        peers,
        timings,
    };
    if let Err(errors) = config.validate() {
        for problem in errors.problems {
            let (problem_path, line) = locate(&problem, node, path);
            // The key path is shown already; do not repeat it in the message.
            let message = problem
                .strip_prefix(&format!("{problem_path}: "))
                .map_or(problem.clone(), str::to_string);
            report.error(&problem_path, Some(line), message);
        }
    }
    (report.errors.len() == errors_before).then_some(config)
}

/// The key a problem from `ClusterConfig::validate` is about, and its line.
fn locate(problem: &str, node: &Node, path: &KeyPath) -> (KeyPath, usize) {
    let line_of = |n: Option<&Node>| n.map_or(node.line, |n| n.line);
    if let Some(rest) = problem.strip_prefix("cluster.peers.") {
        let peer = rest.split(':').next().unwrap_or_default();
        let peers = node.get("peers");
        return (
            path.key("peers").key(peer),
            line_of(peers.and_then(|p| p.get(peer)).or(peers)),
        );
    }
    if problem.starts_with("cluster.peers") {
        return (path.key("peers"), line_of(node.get("peers")));
    }
    if problem.starts_with("cluster.name") {
        return (path.key("name"), line_of(node.get("name")));
    }
    if let Some(key) = TIMING_KEYS.iter().find(|key| problem.starts_with(*key)) {
        let raft = node.get("raft");
        return (
            path.key("raft").key(key),
            line_of(raft.and_then(|r| r.get(key)).or(raft)),
        );
    }
    (path.clone(), node.line)
}

fn decode_timings(node: &Node, path: &KeyPath, report: &mut Report) -> RaftTimings {
    let mut timings = RaftTimings::default();
    let Some(mut fields) = Fields::of(node, path, report) else {
        return timings;
    };
    let durations = [
        ("heartbeat_interval", &mut timings.heartbeat_interval),
        ("election_timeout_min", &mut timings.election_timeout_min),
        ("election_timeout_max", &mut timings.election_timeout_max),
        ("lease", &mut timings.lease),
        ("append_timeout", &mut timings.append_timeout),
        ("snapshot_chunk_timeout", &mut timings.snapshot_chunk_timeout),
    ];
    for (key, slot) in durations {
        if let Some(duration) = fields.go_duration(key, report) {
            *slot = duration;
        }
    }
    if let Some(count) = fields.unsigned("snapshot_after_entries", report) {
        timings.snapshot_after_entries = count;
    }
    if let Some(count) = fields.unsigned("log_entries_kept_behind_snapshot", report) {
        timings.log_entries_kept_behind_snapshot = count;
    }
    fields.finish(report);
    timings
}
