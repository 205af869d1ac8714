//! Collector discovery from Kubernetes (docs/architecture.md, "Kubernetes collector
//! discovery"): one task watches the pods of `collector_namespace` selected by
//! `collector_selector` and owns the resulting collector set, which it publishes as a
//! [`CollectorView`] on a `watch` channel. Every replica runs it, so a newly elected leader
//! starts with the set already listed.
//!
//! ```text
//!  API server ─list/watch─► kube watcher (+ backoff) ─► PodCache ─► watch<CollectorView>
//!                                                                    ├─► leader loop
//!                                                                    └─► /readyz
//! ```
//!
//! - **Selector**: `collector_selector` as the list/watch label selector. No selector (or
//!   `{}`) means every pod of the namespace, as upstream (its nil selector turns into "").
//! - **Mapping**: [`super::collector_pod`]. The view reports each pod's readiness with the
//!   time it stopped being ready; membership applies the grace period, not this module.
//! - **Sync**: `synced` turns true at the end of the first complete list and stays true.
//!   Before it the view is empty and means "not known yet", never "no collectors" (I7).
//! - **Relists** (the watch history expired, 410): the pods of the relist are gathered
//!   aside and replace the set in one step when it is complete, so the set never lacks a
//!   pod that existed throughout.
//! - **Errors** (403, API server unreachable, ...): logged, counted, and shown in
//!   [`CollectorView::error`], while the set stays the last good one. Nothing a failing API
//!   server does can make a collector look absent. The watcher retries with kube-runtime's
//!   default backoff (0.8 s doubling to 30 s). The error is cleared by the next event that
//!   arrives, or after [`ERROR_FORGET_AFTER`] without another error (a recovered watch on a
//!   quiet namespace produces no event to clear it with).
//! - **Batching**: upstream rebuilds its map at most every 5 s; here the leader loop
//!   coalesces, so the view is republished after every batch of events that arrived
//!   together, and only when it changed.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::collector_pod::observed_collector;
use super::watch_error::WatchFailure;
use super::watch_error::describe;
use crate::allocation::membership::ObservedCollectors;
use crate::config::Config;

/// How long an error stays in the view after the last failure, when no event clears it.
/// Longer than the watcher's longest backoff (30 s), so a persistent failure never flickers.
pub const ERROR_FORGET_AFTER: Duration = Duration::from_secs(90);
/// Most watcher events handled as one batch (one publication).
const MAX_BATCH: usize = 1024;

/// What collector discovery currently knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorView {
    /// True once the first complete list of pods has arrived.
    pub synced: bool,
    /// Every collector, by pod name: the last good set while the watch fails.
    pub collectors: ObservedCollectors,
    /// The current problem, if listing or watching is failing.
    pub error: Option<String>,
    /// How many times the view was published (0: the initial, empty view), so a reader can
    /// tell whether it missed a publication.
    pub generation: u64,
}

/// Which pods are collectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorPods {
    pub namespace: String,
    /// Kubernetes label selector syntax; `None` selects every pod of the namespace.
    pub label_selector: Option<String>,
}

impl CollectorPods {
    /// `collector_namespace` and `collector_selector`.
    pub fn from_config(config: &Config) -> Self {
        let label_selector = config
            .collector_selector
            .as_ref()
            .map(|selector| selector.to_selector_string())
            .filter(|selector| !selector.is_empty());
        Self {
            namespace: config.collector_namespace.clone(),
            label_selector,
        }
    }

    fn watcher_config(&self) -> watcher::Config {
        let config = watcher::Config::default();
        match &self.label_selector {
            Some(selector) => config.labels(selector),
            None => config,
        }
    }
}

impl std::fmt::Display for CollectorPods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.label_selector {
            Some(selector) => write!(f, "pods matching {selector:?} in namespace {:?}", self.namespace),
            None => write!(f, "all pods in namespace {:?}", self.namespace),
        }
    }
}

/// A subscription to collector discovery, for the leader loop and `/readyz`.
#[derive(Debug, Clone)]
pub struct CollectorDiscovery {
    pods: CollectorPods,
    view: watch::Receiver<CollectorView>,
}

impl CollectorDiscovery {
    pub fn subscribe(&self) -> watch::Receiver<CollectorView> {
        self.view.clone()
    }

    /// Why this replica is not ready yet, if collector discovery holds it back: the pods have
    /// not been listed once.
    pub fn not_ready_reason(&self) -> Option<String> {
        let view = self.view.borrow();
        if view.synced {
            return None;
        }
        Some(match &view.error {
            Some(error) => format!("collector discovery has not listed {} yet: {error}", self.pods),
            None => format!("collector discovery has not listed {} yet", self.pods),
        })
    }
}

/// The collector pod watcher, ready to run.
pub struct CollectorWatcher {
    api: Api<Pod>,
    pods: CollectorPods,
    publish: watch::Sender<CollectorView>,
    errors_metric: Option<prometheus::IntCounterVec>,
}

impl CollectorWatcher {
    /// A watcher of `pods` through `client`, and the subscription to what it will publish.
    /// `errors_metric` (labels `resource`, `reason`) counts watch failures.
    pub fn new(
        client: Client,
        pods: CollectorPods,
        errors_metric: Option<prometheus::IntCounterVec>,
    ) -> (Self, CollectorDiscovery) {
        let (publish, view) = watch::channel(CollectorView::default());
        let api = Api::namespaced(client, &pods.namespace);
        let discovery = CollectorDiscovery {
            pods: pods.clone(),
            view,
        };
        (
            Self {
                api,
                pods,
                publish,
                errors_metric,
            },
            discovery,
        )
    }

    /// Watch until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(pods = %self.pods, "collector discovery: watching");
        let events = watcher(self.api.clone(), self.pods.watcher_config())
            .default_backoff()
            .ready_chunks(MAX_BATCH);
        let mut events = std::pin::pin!(events);
        let mut cache = PodCache::default();
        let mut error: Option<(String, Instant)> = None;
        loop {
            let forget_error = async {
                match &error {
                    Some((_, at)) => tokio::time::sleep_until(*at + ERROR_FORGET_AFTER).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                () = forget_error => {
                    tracing::info!(pods = %self.pods, "collector discovery: no watch errors for a while; error cleared");
                    error = None;
                }
                batch = events.next() => {
                    let Some(batch) = batch else {
                        // The watcher stream never ends by itself; keep the last view.
                        tracing::error!(pods = %self.pods, "collector discovery: the watch stream ended");
                        return;
                    };
                    for item in batch {
                        match item {
                            Ok(event) => {
                                cache.apply(event);
                                error = None;
                            }
                            Err(failure) => {
                                if let Some(text) = self.report(&failure, cache.synced) {
                                    error = Some((text, Instant::now()));
                                }
                            }
                        }
                    }
                }
            }
            self.publish(&cache, error.as_ref().map(|(text, _)| text));
        }
    }

    /// Log and count a watch failure; the text to show in the view, if it is a problem.
    fn report(&self, failure: &watcher::Error, synced: bool) -> Option<String> {
        let kind = WatchFailure::of(failure);
        if let Some(metric) = &self.errors_metric {
            metric.with_label_values(&["pods", kind.as_str()]).inc();
        }
        let text = describe(failure, "pods", &self.pods.namespace);
        match kind {
            WatchFailure::Expired => {
                tracing::info!(pods = %self.pods, "collector discovery: {text}");
                None
            }
            WatchFailure::Forbidden | WatchFailure::Other => {
                if synced {
                    tracing::warn!(pods = %self.pods, "collector discovery: {text}; keeping the last known collectors");
                } else {
                    tracing::warn!(pods = %self.pods, "collector discovery: {text}; not ready until the pods are listed");
                }
                Some(text)
            }
        }
    }

    fn publish(&self, cache: &PodCache, error: Option<&String>) {
        self.publish.send_if_modified(|view| {
            if view.synced == cache.synced && view.error.as_ref() == error && view.collectors == cache.current {
                return false;
            }
            *view = CollectorView {
                synced: cache.synced,
                collectors: cache.current.clone(),
                error: error.cloned(),
                generation: view.generation + 1,
            };
            true
        });
    }
}

/// The collectors as the watch events describe them. Only complete lists replace the set.
#[derive(Debug, Default)]
struct PodCache {
    /// The set as of the last complete list plus the changes watched since.
    current: ObservedCollectors,
    /// The collectors of a relist in progress (between `Init` and `InitDone`).
    relisting: Option<ObservedCollectors>,
    synced: bool,
}

impl PodCache {
    fn apply(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relisting = Some(ObservedCollectors::new()),
            watcher::Event::InitApply(pod) => {
                let relisting = self.relisting.get_or_insert_with(ObservedCollectors::new);
                if let Some((id, collector)) = observed_collector(&pod) {
                    relisting.insert(id, collector);
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    self.current = listed;
                }
                self.synced = true;
            }
            watcher::Event::Apply(pod) => match observed_collector(&pod) {
                Some((id, collector)) => {
                    self.current.insert(id, collector);
                }
                // Unscheduled again (not possible today) or terminating: absent.
                None => {
                    if let Some(name) = &pod.metadata.name {
                        self.current.remove(name);
                    }
                }
            },
            watcher::Event::Delete(pod) => {
                if let Some(name) = &pod.metadata.name {
                    self.current.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocation::membership::ObservedCollector;
    use crate::allocation::membership::Readiness;

    fn pod(name: &str, node: Option<&str>, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "observability"},
            "spec": {"nodeName": node, "containers": []},
            "status": {
                "phase": "Running",
                "conditions": [{
                    "type": "Ready",
                    "status": if ready { "True" } else { "False" },
                    "lastTransitionTime": "2026-01-01T00:00:00Z"
                }]
            }
        }))
        .expect("a valid Pod")
    }

    fn names(collectors: &ObservedCollectors) -> Vec<&str> {
        collectors.keys().map(String::as_str).collect()
    }

    fn listed(cache: &mut PodCache, pods: Vec<Pod>) {
        cache.apply(watcher::Event::Init);
        for pod in pods {
            cache.apply(watcher::Event::InitApply(pod));
        }
        cache.apply(watcher::Event::InitDone);
    }

    #[test]
    fn nothing_is_known_before_the_first_complete_list() {
        let mut cache = PodCache::default();
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod("c-0", Some("n-0"), true)));
        assert!(!cache.synced);
        assert!(cache.current.is_empty());
        cache.apply(watcher::Event::InitDone);
        assert!(cache.synced);
        assert_eq!(names(&cache.current), ["c-0"]);
    }

    #[test]
    fn a_relist_replaces_the_set_only_when_complete() {
        let mut cache = PodCache::default();
        listed(
            &mut cache,
            vec![pod("c-0", Some("n-0"), true), pod("c-1", Some("n-1"), true)],
        );
        cache.apply(watcher::Event::Init);
        cache.apply(watcher::Event::InitApply(pod("c-1", Some("n-1"), true)));
        assert_eq!(names(&cache.current), ["c-0", "c-1"], "mid-relist: the old set stands");
        cache.apply(watcher::Event::InitApply(pod("c-2", Some("n-2"), true)));
        cache.apply(watcher::Event::InitDone);
        assert_eq!(
            names(&cache.current),
            ["c-1", "c-2"],
            "c-0 was deleted while not watched"
        );
        assert!(cache.synced);
    }

    #[test]
    fn watched_changes_update_the_set() {
        let mut cache = PodCache::default();
        listed(
            &mut cache,
            vec![pod("c-0", Some("n-0"), true), pod("unscheduled", None, false)],
        );
        assert_eq!(names(&cache.current), ["c-0"]);
        cache.apply(watcher::Event::Apply(pod("c-0", Some("n-0"), false)));
        assert_eq!(
            cache.current["c-0"],
            ObservedCollector {
                node: Some("n-0".into()),
                readiness: Readiness::NotReadySince {
                    unix_millis: 1_767_225_600_000
                }
            }
        );
        cache.apply(watcher::Event::Apply(pod("unscheduled", Some("n-1"), true)));
        assert_eq!(names(&cache.current), ["c-0", "unscheduled"], "scheduled now");
        let mut terminating = pod("c-0", Some("n-0"), true);
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:01:00Z".parse().expect("a timestamp"),
        ));
        cache.apply(watcher::Event::Apply(terminating));
        assert_eq!(names(&cache.current), ["unscheduled"]);
        cache.apply(watcher::Event::Delete(pod("unscheduled", Some("n-1"), true)));
        assert!(cache.current.is_empty());
        assert!(cache.synced, "an empty set after sync is a real empty set");
    }

    #[test]
    fn the_selector_comes_from_collector_selector_and_none_selects_every_pod() {
        let mut config = crate::config::parse(
            "test.yaml",
            "collector_namespace: observability\nconfig:\n  scrape_configs: [{job_name: a, static_configs: [{targets: ['x:1']}]}]\n",
            &crate::config::UpstreamFlags::default(),
            &|_| None,
        )
        .expect("a valid configuration")
        .config;
        assert_eq!(
            CollectorPods::from_config(&config),
            CollectorPods {
                namespace: "observability".into(),
                label_selector: None
            }
        );
        config.collector_selector = Some(crate::config::LabelSelector {
            match_labels: [("app".to_string(), "collector".to_string())].into(),
            match_expressions: Vec::new(),
        });
        assert_eq!(
            CollectorPods::from_config(&config).label_selector.as_deref(),
            Some("app=collector")
        );
        config.collector_selector = Some(crate::config::LabelSelector::default());
        assert_eq!(
            CollectorPods::from_config(&config).label_selector,
            None,
            "{{}} selects all"
        );
    }
}
