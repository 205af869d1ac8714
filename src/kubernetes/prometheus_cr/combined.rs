//! The file's jobs and the jobs generated from Prometheus CRs, as one job set and one
//! discovery view for the leader loop.
//!
//! One task owns both: when the generated jobs change it restarts a discovery manager for
//! them (the file's jobs keep their own manager, never restarted), and republishes the
//! merged [`JobSet`] and [`Discovered`].
//!
//! - **Precedence**: on a name clash the file's job wins and the generated one is left out
//!   with a warning. Upstream resolves clashes in nondeterministic order
//!   (docs/architecture.md, "Prometheus CRs", "Precedence"); a fixed rule is the only testable one, and a generated name
//!   (`serviceMonitor/...`) can only clash with a file job written to collide on purpose.
//! - **Sync** (I7): the job set is synced once the CR view is; the merged discovery view is
//!   synced when both managers are, so a restart never makes the leader remove targets.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::watcher::PrometheusCrView;
use crate::config::scrape::ScrapeConfig;
use crate::discovery::manager::Discovered;
use crate::discovery::manager::DiscoveryManager;
use crate::discovery::manager::DiscoveryOptions;

/// Every job the allocator serves, from the file and from CRs.
#[derive(Debug, Clone, Default)]
pub struct JobSet {
    pub configs: Arc<Vec<ScrapeConfig>>,
    /// False while generated jobs may still be missing (the CRs not listed yet): jobs
    /// absent from the set must not be removed from the table then.
    pub synced: bool,
}

impl JobSet {
    /// The file's jobs alone (Prometheus CRs disabled): complete from the start.
    pub fn from_file(configs: &[ScrapeConfig]) -> Self {
        Self {
            configs: Arc::new(configs.to_vec()),
            synced: true,
        }
    }
}

/// The file's jobs plus the generated ones that do not clash.
pub fn merge(file: &[ScrapeConfig], generated: &PrometheusCrView) -> JobSet {
    let file_names: BTreeSet<&str> = file.iter().map(|c| c.job.name.as_str()).collect();
    let mut configs = file.to_vec();
    for job in generated.jobs.iter() {
        if file_names.contains(job.job.name.as_str()) {
            tracing::warn!(job = %job.job.name, "a job generated from a Prometheus CR has the name of a file job; the file's wins");
            continue;
        }
        configs.push(job.clone());
    }
    JobSet {
        configs: Arc::new(configs),
        synced: generated.synced,
    }
}

/// Merge two discovery views; the first wins on a job present in both.
fn merge_discovered(file: &Discovered, generated: &Discovered, generation: u64) -> Discovered {
    let mut jobs = generated.jobs.clone();
    jobs.extend(file.jobs.iter().map(|(k, v)| (k.clone(), v.clone())));
    Discovered {
        jobs,
        all_synced: file.all_synced && generated.all_synced,
        errors: file.errors.iter().chain(&generated.errors).cloned().collect(),
        unsupported: file.unsupported.iter().chain(&generated.unsupported).cloned().collect(),
        generation,
        running: file.running,
    }
}

/// Subscriptions to the merged views.
pub struct Combined {
    pub jobs: watch::Receiver<JobSet>,
    pub discovery: watch::Receiver<Discovered>,
}

/// Start the task; it ends with `shutdown`. `on_regenerated` is called for every new CR
/// view (upstream counts these as `EventSourcePrometheusCR` events).
pub fn spawn(
    file_jobs: Vec<ScrapeConfig>,
    mut file_discovery: watch::Receiver<Discovered>,
    mut generated: watch::Receiver<PrometheusCrView>,
    options: DiscoveryOptions,
    on_regenerated: impl Fn() + Send + 'static,
    shutdown: CancellationToken,
) -> (Combined, tokio::task::JoinHandle<()>) {
    let initial_view = generated.borrow_and_update().clone();
    let (publish_jobs, jobs) = watch::channel(merge(&file_jobs, &initial_view));
    let (publish_discovery, discovery) = watch::channel(file_discovery.borrow_and_update().clone());
    let task = tokio::spawn(async move {
        let mut generation = 0u64;
        let mut manager: Option<DiscoveryManager> = None;
        let mut generated_discovery: watch::Receiver<Discovered> = watch::channel(Discovered {
            all_synced: true,
            ..Discovered::default()
        })
        .1;
        let mut running: Vec<(String, Vec<crate::discovery::ServiceDiscoveryConfig>)> = Vec::new();
        let mut restart = |view: &PrometheusCrView,
                           manager: &mut Option<DiscoveryManager>,
                           receiver: &mut watch::Receiver<Discovered>| {
            let set = merge(&file_jobs, view);
            let wanted: Vec<(String, Vec<crate::discovery::ServiceDiscoveryConfig>)> = set.configs[file_jobs.len()..]
                .iter()
                .map(|c| (c.job.name.clone(), c.discovery.clone()))
                .collect();
            if wanted != running {
                // Dropping the old manager stops its providers.
                let started = DiscoveryManager::start(wanted.clone(), &options, &shutdown);
                *receiver = started.subscribe();
                *manager = Some(started);
                running = wanted;
            }
            publish_jobs.send_replace(set);
        };
        restart(&initial_view, &mut manager, &mut generated_discovery);
        loop {
            generation += 1;
            let merged = merge_discovered(
                &file_discovery.borrow_and_update(),
                &generated_discovery.borrow_and_update(),
                generation,
            );
            publish_discovery.send_replace(merged);
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = file_discovery.changed() => if changed.is_err() { break },
                changed = generated_discovery.changed() => if changed.is_err() {
                    // Replaced below on the next restart; until then nothing more comes.
                    generated_discovery = watch::channel(Discovered { all_synced: true, ..Discovered::default() }).1;
                },
                changed = generated.changed() => {
                    if changed.is_err() { break }
                    let view = generated.borrow_and_update().clone();
                    on_regenerated();
                    restart(&view, &mut manager, &mut generated_discovery);
                }
            }
        }
        if let Some(manager) = manager {
            manager.shutdown().await;
        }
    });
    (Combined { jobs, discovery }, task)
}
