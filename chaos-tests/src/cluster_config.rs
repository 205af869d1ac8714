//! The replicas' configuration files: one document per replica, rendered from the backend's
//! placements and the run's settings. The timings here and the checker's
//! [`RunParameters`](crate::history::RunParameters) come from the same [`ClusterSettings`], so
//! the checker judges the cluster by the rules it actually ran with.

use std::time::Duration;

use serde_json::Value;
use serde_json::json;

use crate::backend::Placement;
use crate::workload::CHURNED_JOB;
use crate::workload::FIXED_JOB;
use crate::workload::TARGETS_FILE;
use crate::workload::fixed_targets;

/// What every replica of a run is configured with.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `allocation_strategy`. The checker's I4 rule (targets move when they change, or when a
    /// collector joins or its grace period runs out) is consistent-hashing's: with `balanced`
    /// or `least-weighted`, a removed target can also move others to even out the load.
    pub strategy: String,
    pub grace_period: Duration,
    /// `collectors.register_on_poll.ttl`: a collector stops being observed this long after its
    /// last poll was forwarded.
    pub registration_ttl: Duration,
    pub coalesce_window: Duration,
    /// Collectors configured in `collectors.static`, always present.
    pub static_collectors: Vec<String>,
    /// `cluster.raft.lease` (the service's default, 3 s); the checker's I6 bound.
    pub lease: Duration,
    /// Small, so runs cross snapshots and a wiped replica is rebuilt from one.
    pub snapshot_after_entries: u64,
    /// How often replicas re-read the `file_sd` file besides inotify.
    pub file_sd_refresh: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            strategy: "consistent-hashing".to_string(),
            grace_period: Duration::from_secs(5),
            registration_ttl: Duration::from_secs(3),
            coalesce_window: Duration::from_secs(1),
            static_collectors: vec!["static-0".to_string(), "static-1".to_string()],
            lease: Duration::from_secs(3),
            snapshot_after_entries: 200,
            file_sd_refresh: Duration::from_secs(2),
        }
    }
}

/// A Go/Prometheus duration in milliseconds, which both parsers accept.
fn go_duration(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The config of replica `index` (JSON, which is YAML; the service reads YAML).
pub fn replica_config(settings: &ClusterSettings, placements: &[Placement], index: usize) -> String {
    let placement = &placements[index];
    let peers: serde_json::Map<String, Value> = placements
        .iter()
        .map(|peer| (peer.name.clone(), json!(peer.peer_url)))
        .collect();
    let targets_file = format!("{}/{TARGETS_FILE}", placement.workload_dir);
    let document = json!({
        "listen_addr": placement.listen_addr,
        "allocation_strategy": settings.strategy,
        "collector_not_ready_grace_period": go_duration(settings.grace_period),
        "coalesce_window": go_duration(settings.coalesce_window),
        "collectors": {
            "static": settings.static_collectors,
            "register_on_poll": { "enabled": true, "ttl": go_duration(settings.registration_ttl) },
        },
        "cluster": {
            "name": placement.name,
            "data_dir": placement.data_dir,
            "peer_listen_addr": placement.peer_listen_addr,
            "peers": peers,
            "raft": {
                "lease": go_duration(settings.lease),
                "snapshot_after_entries": settings.snapshot_after_entries,
                "log_entries_kept_behind_snapshot": settings.snapshot_after_entries / 4,
            },
        },
        "config": {
            "scrape_configs": [
                {
                    "job_name": FIXED_JOB,
                    "static_configs": [{ "targets": fixed_targets(), "labels": { "tier": "fixed" } }],
                },
                {
                    "job_name": CHURNED_JOB,
                    "file_sd_configs": [{
                        "files": [targets_file],
                        "refresh_interval": go_duration(settings.file_sd_refresh),
                    }],
                },
            ],
        },
    });
    serde_json::to_string_pretty(&document).expect("a JSON value always serialises")
}
