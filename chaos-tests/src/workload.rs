//! The workload that runs while faults are injected, as the cluster's users would cause it:
//!
//! - **target churn**: the harness owns a `file_sd` file that every replica watches, and
//!   rewrites it atomically to add targets, remove them and change their labels;
//! - **collector churn**: the harness plays `register_on_poll` collectors (the poller asks for
//!   their assignments, which registers them); some leave for less than the grace period (they
//!   must move nothing), some for longer (their targets must move), and come back. Static
//!   collectors are always there.
//!
//! Every choice comes from the run's seed; every change is recorded in the history at the
//! moment the harness made it, which is when the checker starts the clock on its effects.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use serde_json::json;
use tokio::sync::watch;

use crate::history::EventKind;
use crate::history::TargetKey;
use crate::recorder::Recorder;
use crate::shutdown::Shutdown;
use crate::shutdown::sleep_or_cancel;

/// The job whose targets never change: a baseline the faults must not disturb.
pub const FIXED_JOB: &str = "fixed";
/// The job read from the harness's `file_sd` file.
pub const CHURNED_JOB: &str = "churned";
/// The `file_sd` file's name in the workload directory.
pub const TARGETS_FILE: &str = "targets.json";

const FIXED_TARGETS: usize = 8;
const INITIAL_CHURNED_TARGETS: usize = 16;
const MIN_CHURNED_TARGETS: usize = 8;
const MAX_CHURNED_TARGETS: usize = 32;
/// Collectors the harness can play; `INITIAL_POLLED` of them poll from the start.
const POLLED_POOL: usize = 4;
const INITIAL_POLLED: usize = 3;

/// Addresses of the fixed job's targets.
pub fn fixed_targets() -> Vec<String> {
    (0..FIXED_TARGETS)
        .map(|index| format!("10.9.0.{}:9100", index + 1))
        .collect()
}

/// The workload's settings, from the run's profile and cluster settings.
#[derive(Debug, Clone)]
pub struct WorkloadSettings {
    /// Pause between two target changes, drawn uniformly.
    pub target_change_every: (Duration, Duration),
    /// Pause between two collector departures, drawn uniformly.
    pub collector_change_every: (Duration, Duration),
    /// A short absence: long enough for the allocator to notice (past the registration
    /// ttl), back well within the grace period after that.
    pub short_absence: Duration,
    /// A long absence: past the registration ttl plus the grace period, so its targets move.
    pub long_absence: Duration,
}

/// The workload's state: the targets in the file and the collectors being played.
pub struct Workload {
    rng: StdRng,
    workload_dir: PathBuf,
    /// Churned target address → its `version` label.
    targets: BTreeMap<String, u32>,
    next_target: u32,
    polled_pool: Vec<String>,
    polling: BTreeSet<String>,
    collectors: watch::Sender<BTreeSet<String>>,
}

impl Workload {
    /// Writes the initial target file. `collectors` carries the polled collectors to the
    /// poller, which asks for their assignments (and so keeps them registered).
    pub fn new(seed: u64, workload_dir: &Path) -> std::io::Result<(Self, watch::Receiver<BTreeSet<String>>)> {
        let polled_pool: Vec<String> = (0..POLLED_POOL).map(|index| format!("polled-{index}")).collect();
        let polling: BTreeSet<String> = polled_pool.iter().take(INITIAL_POLLED).cloned().collect();
        let (collectors, receiver) = watch::channel(polling.clone());
        let mut workload = Workload {
            // Distinct from the fault schedule's stream, so changing one leaves the other alone.
            rng: StdRng::seed_from_u64(seed ^ 0x776f_726b_6c6f_6164),
            workload_dir: workload_dir.to_path_buf(),
            targets: BTreeMap::new(),
            next_target: 0,
            polled_pool,
            polling,
            collectors,
        };
        for _ in 0..INITIAL_CHURNED_TARGETS {
            workload.add_target();
        }
        workload.write_targets()?;
        Ok((workload, receiver))
    }

    /// Every target the cluster should serve now.
    pub fn targets(&self) -> BTreeSet<TargetKey> {
        let fixed = fixed_targets()
            .into_iter()
            .map(|address| TargetKey::new(FIXED_JOB, address));
        let churned = self
            .targets
            .keys()
            .map(|address| TargetKey::new(CHURNED_JOB, address.clone()));
        fixed.chain(churned).collect()
    }

    /// The collectors being played now.
    pub fn polling(&self) -> &BTreeSet<String> {
        &self.polling
    }

    fn add_target(&mut self) -> String {
        self.next_target += 1;
        let address = format!("10.8.{}.{}:9100", self.next_target / 250, self.next_target % 250 + 1);
        self.targets.insert(address.clone(), 1);
        address
    }

    fn write_targets(&self) -> std::io::Result<()> {
        let groups: Vec<_> = self
            .targets
            .iter()
            .map(|(address, version)| json!({ "targets": [address], "labels": { "version": version.to_string() } }))
            .collect();
        let text = serde_json::to_string_pretty(&groups).expect("a JSON value always serialises");
        // Replicas must never read a half-written file: write aside, then rename over.
        let partial = self.workload_dir.join(format!(".{TARGETS_FILE}.partial"));
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, self.workload_dir.join(TARGETS_FILE))
    }

    /// Add, remove and relabel a few targets, write the file, and say what changed.
    pub fn change_targets(&mut self) -> std::io::Result<EventKind> {
        // Changed on a copy, kept only once written: a change that never reached the file
        // must not reach the history either.
        let before = (self.targets.clone(), self.next_target);
        let change = self.change_targets_in_memory();
        if let Err(error) = self.write_targets() {
            (self.targets, self.next_target) = before;
            return Err(error);
        }
        Ok(change)
    }

    fn change_targets_in_memory(&mut self) -> EventKind {
        let mut added = BTreeSet::new();
        let mut removed = BTreeSet::new();
        let mut relabeled = BTreeSet::new();
        let count = self.rng.gen_range(1..=3);
        for _ in 0..count {
            let action = self.rng.gen_range(0..3);
            let size = self.targets.len();
            if action == 0 && size < MAX_CHURNED_TARGETS || size <= MIN_CHURNED_TARGETS {
                added.insert(self.add_target());
            } else if action == 1 {
                let address = self.targets.keys().choose(&mut self.rng).cloned().expect("never empty");
                if added.contains(&address) || relabeled.contains(&address) {
                    continue;
                }
                self.targets.remove(&address);
                removed.insert(address);
            } else {
                let address = self.targets.keys().choose(&mut self.rng).cloned().expect("never empty");
                if added.contains(&address) {
                    continue;
                }
                *self.targets.get_mut(&address).expect("chosen from the map") += 1;
                relabeled.insert(address);
            }
        }
        let keys = |addresses: BTreeSet<String>| {
            addresses
                .into_iter()
                .map(|address| TargetKey::new(CHURNED_JOB, address))
                .collect()
        };
        EventKind::TargetsChanged {
            added: keys(added),
            removed: keys(removed),
            relabeled: keys(relabeled),
        }
    }

    /// A polled collector stops polling; at least one keeps polling.
    pub fn collector_leaves(&mut self) -> Option<String> {
        if self.polling.len() <= 1 {
            return None;
        }
        let leaving = self.polling.iter().choose(&mut self.rng).cloned()?;
        self.polling.remove(&leaving);
        self.collectors.send_replace(self.polling.clone());
        Some(leaving)
    }

    /// `collector` polls again.
    pub fn collector_returns(&mut self, collector: &str) {
        self.polling.insert(collector.to_string());
        self.collectors.send_replace(self.polling.clone());
    }

    /// A collector of the pool that is not polling and not due back from an absence, if
    /// any, joins.
    pub fn collector_joins(&mut self, returning: &BTreeSet<String>) -> Option<String> {
        let joining = self
            .polled_pool
            .iter()
            .filter(|collector| !self.polling.contains(*collector) && !returning.contains(*collector))
            .choose(&mut self.rng)
            .cloned()?;
        self.collector_returns(&joining);
        Some(joining)
    }

    fn draw(&mut self, (low, high): (Duration, Duration)) -> Duration {
        if high <= low {
            return low;
        }
        self.rng.gen_range(low..high)
    }
}

/// Run the workload until `shutdown`: target changes and collector departures on their own
/// seeded rhythms, each recorded as it is made.
pub async fn drive(workload: Workload, settings: WorkloadSettings, recorder: Arc<Recorder>, shutdown: Shutdown) {
    let workload = Arc::new(tokio::sync::Mutex::new(workload));
    let targets = drive_targets(workload.clone(), settings.clone(), recorder.clone(), shutdown.clone());
    let collectors = drive_collectors(workload, settings, recorder, shutdown);
    tokio::join!(targets, collectors);
}

async fn drive_targets(
    workload: Arc<tokio::sync::Mutex<Workload>>,
    settings: WorkloadSettings,
    recorder: Arc<Recorder>,
    shutdown: Shutdown,
) {
    loop {
        let pause = workload.lock().await.draw(settings.target_change_every);
        if !sleep_or_cancel(pause, &shutdown).await {
            return;
        }
        let change = workload.lock().await.change_targets();
        match change {
            Ok(event) => recorder.event(event),
            Err(error) => recorder.note(format!("cannot rewrite the targets file: {error}")),
        }
    }
}

async fn drive_collectors(
    workload: Arc<tokio::sync::Mutex<Workload>>,
    settings: WorkloadSettings,
    recorder: Arc<Recorder>,
    shutdown: Shutdown,
) {
    // Returns due: (when, collector).
    let mut returns: Vec<(tokio::time::Instant, String)> = Vec::new();
    let mut next_departure = tokio::time::Instant::now() + workload.lock().await.draw(settings.collector_change_every);
    loop {
        let next_return = returns.iter().map(|(at, _)| *at).min();
        let wake = next_return.map_or(next_departure, |at| at.min(next_departure));
        if !sleep_or_cancel(wake.saturating_duration_since(tokio::time::Instant::now()), &shutdown).await {
            return;
        }
        let now = tokio::time::Instant::now();
        let mut workload = workload.lock().await;
        let (due, later): (Vec<_>, Vec<_>) = returns.into_iter().partition(|(at, _)| *at <= now);
        returns = later;
        let joined: BTreeSet<String> = due.into_iter().map(|(_, collector)| collector).collect();
        for collector in &joined {
            workload.collector_returns(collector);
        }
        let mut left = BTreeSet::new();
        if now >= next_departure {
            next_departure = now + workload.draw(settings.collector_change_every);
            // Now and then the spare collector of the pool joins for good, which moves
            // targets to it; otherwise a polling one leaves for a while.
            let spare_joins = workload.rng.gen_bool(0.2);
            let returning: BTreeSet<String> = returns.iter().map(|(_, collector)| collector.clone()).collect();
            if spare_joins && let Some(joining) = workload.collector_joins(&returning) {
                let mut joined_now = joined.clone();
                joined_now.insert(joining);
                recorder.event(EventKind::CollectorsChanged {
                    joined: joined_now,
                    left: BTreeSet::new(),
                });
                continue;
            } else if let Some(leaving) = workload.collector_leaves() {
                let away = if workload.rng.gen_bool(0.5) {
                    settings.short_absence
                } else {
                    settings.long_absence
                };
                returns.push((now + away, leaving.clone()));
                left.insert(leaving);
            }
        }
        if !joined.is_empty() || !left.is_empty() {
            recorder.event(EventKind::CollectorsChanged { joined, left });
        }
    }
}
