//! The discovery manager: runs one provider task per configured source of every job and one
//! aggregating task that owns the combined view, published as [`Discovered`] on a `watch`
//! channel. The combined view says whether every source has finished its first sync, which
//! the leader waits for before proposing removals (I7, docs/architecture.md).
//!
//! Sources this build does not run (`Unsupported`) get no task; they count as synced with
//! nothing discovered, so they cannot block I7 forever, and are listed in
//! [`Discovered::unsupported`]. A provider task that ends on its own (it should not) keeps
//! its last snapshot and is reported in [`Discovered::errors`]; if it never synced, the view
//! never becomes synced, which is the safe side of I7.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Provider;
use super::ProviderSnapshot;
use super::ServiceDiscoveryConfig;
use super::TargetGroup;
use super::dns_sd::DnsProvider;
use super::dns_sd::Nameservers;
use super::file_sd::FileProvider;
use super::http_sd::HttpProvider;
use super::kubernetes_sd::KubernetesProvider;
use super::static_sd::StaticProvider;

/// What providers need besides their own configuration.
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// `User-Agent` of `http_sd` requests.
    pub user_agent: String,
    /// DNS servers for `dns_sd`.
    pub nameservers: Nameservers,
    /// `limits.max_source_bytes`: the largest file_sd file or http_sd body read.
    pub max_source_bytes: u64,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            user_agent: format!("target-allocator/{}", env!("CARGO_PKG_VERSION")),
            nameservers: Nameservers::System,
            max_source_bytes: crate::config::LimitsConfig::default().max_source_bytes,
        }
    }
}

/// The combined view of all jobs' sources.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// Every job's groups: all groups of all its sources, in source order. A group that did
    /// not change keeps its `Arc` from one generation to the next.
    pub jobs: BTreeMap<String, Vec<Arc<TargetGroup>>>,
    /// True once every running source has completed its first round.
    pub all_synced: bool,
    /// `(job, source, error)` for every source whose latest round failed (its last good
    /// groups are still in `jobs`). Sources are named by their configuration key and
    /// position, e.g. `file_sd_configs[0]`.
    pub errors: Vec<(String, String, String)>,
    /// `(job, configuration key)` of sources this build does not run.
    pub unsupported: Vec<(String, String)>,
    /// Increases with every publication; 0 is the initial, empty view.
    pub generation: u64,
    /// Whether discovery runs on this replica: only the leader discovers
    /// ([`crate::discovery::gate`]); a follower's view is empty, unsynced and not running.
    pub running: bool,
}

/// The provider for one source, or `None` for a source this build does not run.
pub fn provider_for(config: &ServiceDiscoveryConfig, options: &DiscoveryOptions) -> Option<Box<dyn Provider>> {
    match config {
        ServiceDiscoveryConfig::Static(groups) => Some(Box::new(StaticProvider::new(groups.clone()))),
        ServiceDiscoveryConfig::File(file) => Some(Box::new(FileProvider::new(file.clone(), options.max_source_bytes))),
        ServiceDiscoveryConfig::Http(http) => Some(Box::new(HttpProvider::new(
            http.clone(),
            options.user_agent.clone(),
            options.max_source_bytes,
        ))),
        ServiceDiscoveryConfig::Dns(dns) => Some(Box::new(DnsProvider::new(dns.clone(), options.nameservers))),
        ServiceDiscoveryConfig::Kubernetes(kubernetes) => Some(Box::new(KubernetesProvider::new(kubernetes.clone()))),
        ServiceDiscoveryConfig::Unsupported { .. } => None,
    }
}

/// The configuration key of a source (`file_sd_configs`, ...).
fn config_key(config: &ServiceDiscoveryConfig) -> &str {
    match config {
        ServiceDiscoveryConfig::Static(_) => "static_configs",
        ServiceDiscoveryConfig::File(_) => "file_sd_configs",
        ServiceDiscoveryConfig::Http(_) => "http_sd_configs",
        ServiceDiscoveryConfig::Dns(_) => "dns_sd_configs",
        ServiceDiscoveryConfig::Kubernetes(_) => "kubernetes_sd_configs",
        ServiceDiscoveryConfig::Unsupported { key } => key,
    }
}

/// Running discovery for a set of jobs.
pub struct DiscoveryManager {
    view: watch::Receiver<Discovered>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl DiscoveryManager {
    /// Start every job's sources (on the current Tokio runtime). The tasks stop when
    /// `shutdown` is cancelled, when [`DiscoveryManager::shutdown`] is called, or when the
    /// manager is dropped.
    pub fn start(
        jobs: Vec<(String, Vec<ServiceDiscoveryConfig>)>,
        options: &DiscoveryOptions,
        shutdown: &CancellationToken,
    ) -> Self {
        let shutdown = shutdown.child_token();
        let mut tasks = Vec::new();
        let mut sources = Vec::new();
        let mut job_names: Vec<String> = Vec::new();
        let mut unsupported = Vec::new();
        for (job, configs) in jobs {
            // A repeated job name adds its sources to the first one's.
            let job_index = match job_names.iter().position(|name| *name == job) {
                Some(index) => index,
                None => {
                    job_names.push(job.clone());
                    job_names.len() - 1
                }
            };
            let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
            for config in &configs {
                let key = config_key(config).to_string();
                let position = per_key.entry(key.clone()).or_default();
                let description = match config {
                    // Prometheus merges all of a job's `static_configs` into one source.
                    ServiceDiscoveryConfig::Static(_) => key.clone(),
                    _ => format!("{key}[{position}]"),
                };
                *position += 1;
                let Some(provider) = provider_for(config, options) else {
                    unsupported.push((job.clone(), key));
                    continue;
                };
                let (publish, receiver) = watch::channel(ProviderSnapshot::default());
                tasks.push(tokio::spawn(provider.run(publish, shutdown.clone())));
                sources.push(Source {
                    job_index,
                    description,
                    snapshot: ProviderSnapshot::default(),
                    stopped: false,
                    receiver: Some(receiver),
                });
            }
        }
        let initial = Discovered {
            jobs: job_names.iter().map(|job| (job.clone(), Vec::new())).collect(),
            all_synced: sources.is_empty(),
            errors: Vec::new(),
            unsupported: unsupported.clone(),
            generation: 0,
            running: true,
        };
        let (publish, view) = watch::channel(initial);
        let aggregator = Aggregator {
            job_names,
            sources,
            unsupported,
            job_groups: Vec::new(),
            generation: 0,
        };
        tasks.push(tokio::spawn(aggregator.run(publish, shutdown.clone())));
        Self { view, shutdown, tasks }
    }

    /// A subscription to the combined view.
    pub fn subscribe(&self) -> watch::Receiver<Discovered> {
        self.view.clone()
    }

    /// Stop every task and return once all have ended.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            if let Err(error) = task.await {
                tracing::warn!(%error, "discovery task ended abnormally");
            }
        }
    }
}

impl Drop for DiscoveryManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// One running source as the aggregator sees it.
struct Source {
    job_index: usize,
    description: String,
    snapshot: ProviderSnapshot,
    stopped: bool,
    /// `None` while a wait for its next change holds it.
    receiver: Option<watch::Receiver<ProviderSnapshot>>,
}

type Change = (usize, watch::Receiver<ProviderSnapshot>, bool);
type ChangeWait = Pin<Box<dyn Future<Output = Change> + Send>>;

/// The task owning the combined view.
struct Aggregator {
    job_names: Vec<String>,
    sources: Vec<Source>,
    unsupported: Vec<(String, String)>,
    /// Each job's concatenated groups as last published, rebuilt only when one of the job's
    /// sources changed.
    job_groups: Vec<Vec<Arc<TargetGroup>>>,
    generation: u64,
}

impl Aggregator {
    async fn run(mut self, publish: watch::Sender<Discovered>, shutdown: CancellationToken) {
        // Providers may have published before this task first ran: start from what is there.
        let mut waits: Vec<Option<ChangeWait>> = Vec::with_capacity(self.sources.len());
        for (index, source) in self.sources.iter_mut().enumerate() {
            waits.push(source.receiver.take().map(|mut receiver| {
                source.snapshot = receiver.borrow_and_update().clone();
                wait_for_change(index, receiver)
            }));
        }
        self.job_groups = vec![Vec::new(); self.job_names.len()];
        let mut dirty_jobs: Vec<usize> = (0..self.job_names.len()).collect();
        loop {
            self.republish(&publish, &dirty_jobs);
            let changes = tokio::select! {
                () = shutdown.cancelled() => return,
                changes = next_changes(&mut waits) => changes,
            };
            dirty_jobs.clear();
            for (index, mut receiver, open) in changes {
                let Some(source) = self.sources.get_mut(index) else {
                    continue;
                };
                source.snapshot = receiver.borrow_and_update().clone();
                if open {
                    waits[index] = Some(wait_for_change(index, receiver));
                } else if !shutdown.is_cancelled() {
                    source.stopped = true;
                    tracing::warn!(source = %source.description, "discovery provider stopped on its own");
                }
                if !dirty_jobs.contains(&source.job_index) {
                    dirty_jobs.push(source.job_index);
                }
            }
        }
    }

    fn republish(&mut self, publish: &watch::Sender<Discovered>, dirty_jobs: &[usize]) {
        for &job_index in dirty_jobs {
            let groups = self
                .sources
                .iter()
                .filter(|source| source.job_index == job_index)
                .flat_map(|source| source.snapshot.groups.iter().cloned())
                .collect();
            if let Some(slot) = self.job_groups.get_mut(job_index) {
                *slot = groups;
            }
        }
        let mut errors = Vec::new();
        for source in &self.sources {
            let job = self.job_names.get(source.job_index).cloned().unwrap_or_default();
            if let Some(error) = &source.snapshot.last_error {
                errors.push((job.clone(), source.description.clone(), error.clone()));
            }
            if source.stopped {
                errors.push((job, source.description.clone(), "the discovery provider stopped".into()));
            }
        }
        self.generation += 1;
        let view = Discovered {
            jobs: self
                .job_names
                .iter()
                .cloned()
                .zip(self.job_groups.iter().cloned())
                .collect(),
            all_synced: self.sources.iter().all(|source| source.snapshot.synced),
            errors,
            unsupported: self.unsupported.clone(),
            generation: self.generation,
            running: true,
        };
        publish.send_replace(view);
    }
}

/// Wait for the provider's next publication; `false` when it has gone away.
fn wait_for_change(index: usize, mut receiver: watch::Receiver<ProviderSnapshot>) -> ChangeWait {
    Box::pin(async move {
        let open = receiver.changed().await.is_ok();
        (index, receiver, open)
    })
}

/// Every source that changed, once at least one did. One task owns all the receivers, so
/// this polls their waits itself instead of spawning a forwarder per source.
async fn next_changes(waits: &mut [Option<ChangeWait>]) -> Vec<Change> {
    std::future::poll_fn(|context| {
        let mut ready = Vec::new();
        for slot in waits.iter_mut() {
            if let Some(wait) = slot
                && let Poll::Ready(change) = wait.as_mut().poll(context)
            {
                ready.push(change);
                *slot = None;
            }
        }
        if ready.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(ready)
        }
    })
    .await
}
