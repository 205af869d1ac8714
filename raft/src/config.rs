//! The `cluster:` settings of one replica, validated all at once before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Raft timings. Defaults are chosen for fsync on ordinary disks and pods on one network:
/// a leader killed is replaced within about 2 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTimings {
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// A follower that hears nothing for a random time in `[min, max]` starts an election.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A replica that has not heard from a leader (or, as leader, from a quorum) for this long
    /// reports itself stale and must stop serving assignments (docs/architecture.md, invariant I6).
    pub lease: Duration,
    /// Timeout of an append that carries entries (heartbeats use openraft's own budget).
    pub append_timeout: Duration,
    /// Timeout of one snapshot chunk upload.
    pub snapshot_chunk_timeout: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the snapshot, so a briefly lagging follower catches up
    /// from the log instead of needing a whole snapshot.
    pub log_entries_kept_behind_snapshot: u64,
}

/// Why these election defaults: a follower refuses to vote while its own leader lease runs
/// (openraft sets it to `election_timeout_max` after each append it accepts), so the first
/// candidate to time out after a leader dies is normally refused and wins on its second
/// timeout. Failover therefore takes about two election timeouts: 1.0–1.8 s here, inside the
/// 2 s failover budget (docs/architecture.md, "Invariants").
impl Default for RaftTimings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(900),
            lease: Duration::from_secs(3),
            append_timeout: Duration::from_secs(5),
            snapshot_chunk_timeout: Duration::from_secs(10),
            snapshot_after_entries: 5000,
            log_entries_kept_behind_snapshot: 1000,
        }
    }
}

/// Where this replica lives and who its initial peers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This replica's stable name (e.g. `ta-0`); must be a key of `peers`.
    pub name: String,
    /// Data directory (sled database, snapshots, identity).
    pub data_dir: PathBuf,
    /// Address the peer (Raft) HTTP server binds.
    pub peer_listen_addr: SocketAddr,
    /// Initial members: name → peer URL (`http://host:port`). The lowest name bootstraps.
    pub peers: BTreeMap<String, String>,
    pub timings: RaftTimings,
}

/// Every problem found in a [`ClusterConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}

impl ClusterConfig {
    /// Check every setting; report all problems at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut problems = Vec::new();
        if self.name.trim().is_empty() {
            problems.push("cluster.name is empty".to_string());
        }
        if self.peers.is_empty() {
            problems.push("cluster.peers is empty: list every initial replica by name and URL".to_string());
        } else if !self.peers.contains_key(&self.name) {
            problems.push(format!(
                "cluster.name {:?} is not one of cluster.peers ({})",
                self.name,
                self.peers.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (name, url) in &self.peers {
            if let Err(problem) = check_peer_url(url) {
                problems.push(format!("cluster.peers.{name}: {problem}"));
            }
        }
        let t = &self.timings;
        if t.heartbeat_interval.is_zero() {
            problems.push("heartbeat_interval must be positive".to_string());
        }
        if t.election_timeout_min >= t.election_timeout_max {
            problems.push(format!(
                "election_timeout_min ({:?}) must be below election_timeout_max ({:?})",
                t.election_timeout_min, t.election_timeout_max
            ));
        }
        if t.heartbeat_interval * 3 > t.election_timeout_min {
            problems.push(format!(
                "heartbeat_interval ({:?}) must be at most a third of election_timeout_min ({:?})",
                t.heartbeat_interval, t.election_timeout_min
            ));
        }
        if t.lease < t.election_timeout_max {
            problems.push(format!(
                "lease ({:?}) must be at least election_timeout_max ({:?}), or replicas go stale during a normal election",
                t.lease, t.election_timeout_max
            ));
        }
        if t.snapshot_after_entries == 0 {
            problems.push("snapshot_after_entries must be positive".to_string());
        }
        if t.log_entries_kept_behind_snapshot == 0 {
            problems.push(
                "log_entries_kept_behind_snapshot must be positive (0 can stall a follower, openraft#1828)".to_string(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors { problems })
        }
    }

    /// The peer URL of `name` from the configuration.
    pub fn peer_url(&self, name: &str) -> Option<&str> {
        self.peers.get(name).map(String::as_str)
    }

    /// The name that bootstraps a new cluster: the lowest.
    pub fn bootstrap_name(&self) -> Option<&str> {
        self.peers.keys().next().map(String::as_str)
    }

    /// openraft's configuration for these timings.
    pub fn raft_config(&self) -> openraft::Config {
        let t = &self.timings;
        openraft::Config {
            cluster_name: "target-allocator".to_string(),
            heartbeat_interval: t.heartbeat_interval.as_millis() as u64,
            election_timeout_min: t.election_timeout_min.as_millis() as u64,
            election_timeout_max: t.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: t.snapshot_chunk_timeout.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_after_entries),
            max_in_snapshot_log_to_keep: t.log_entries_kept_behind_snapshot,
            enable_pre_vote: Some(true),
            ..Default::default()
        }
    }
}

fn check_peer_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!("{url:?} needs an explicit port"));
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{url:?} has an invalid port {port:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ClusterConfig {
        ClusterConfig {
            name: "ta-0".into(),
            data_dir: "/tmp/x".into(),
            peer_listen_addr: "127.0.0.1:7000".parse().unwrap(),
            peers: [
                ("ta-0".to_string(), "http://127.0.0.1:7000".to_string()),
                ("ta-1".to_string(), "http://127.0.0.1:7001".to_string()),
            ]
            .into(),
            timings: RaftTimings::default(),
        }
    }

    #[test]
    fn defaults_are_valid_and_openraft_accepts_them() {
        config().validate().unwrap();
        config().raft_config().validate().unwrap();
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = config();
        c.name = "ta-9".into();
        c.peers.insert("ta-2".into(), "127.0.0.1:7002".into());
        c.timings.election_timeout_min = Duration::from_secs(5);
        c.timings.lease = Duration::from_millis(10);
        let problems = c.validate().unwrap_err().problems;
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems.iter().any(|p| p.contains("ta-9")));
        assert!(problems.iter().any(|p| p.contains("cluster.peers.ta-2")));
        assert!(problems.iter().any(|p| p.contains("election_timeout_min")));
        assert!(problems.iter().any(|p| p.contains("lease")));
    }
}
