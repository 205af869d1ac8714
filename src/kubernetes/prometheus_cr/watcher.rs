//! The Prometheus CR watcher: one task lists and watches ServiceMonitors and PodMonitors
//! (cluster-wide, or in each of `allow_namespaces`), and Namespaces when a namespace
//! selector has requirements, owns what they describe, and republishes the generated jobs
//! as a [`PrometheusCrView`] on a `watch` channel.
//!
//! - **Sync** (I7, docs/architecture.md): `synced` turns true once every watched resource has been
//!   listed completely once; before that the jobs are a partial view, so a consumer may add
//!   them but must not remove jobs missing from it.
//! - **Missing CRD** (404 on the resource's path): reported in [`PrometheusCrView::errors`]
//!   and logged, and counts as listed with no monitors (a resource that does not exist has
//!   no objects); the watcher retries with kube-runtime's backoff (0.8 s doubling to 30 s),
//!   so installing the CRD later is picked up. Never fatal.
//! - **Other failures** (403, unreachable API server): reported the same way while the
//!   last good objects stay, so jobs never vanish because of a failing API server.
//! - **Regeneration** is rate limited: after a change, jobs are regenerated once at most
//!   every [`REGENERATE_AT_MOST_EVERY`] (upstream: 5 s; here shorter, since the leader loop
//!   coalesces too), and every [`REFRESH_EVERY`] anyway so that changed Secrets are read
//!   again (Secrets are fetched, not watched).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::Client;
use kube::api::ApiResource;
use kube::api::DynamicObject;
use kube::api::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::credentials::CredentialRef;
use super::credentials::CredentialValues;
use super::credentials::Source;
use super::credentials::references;
use super::generate;
use super::selection::NamespaceNeed;
use super::selection::Selection;
use super::spec::Monitor;
use super::spec::MonitorKind;
use crate::config::Config;
use crate::config::scrape::ScrapeConfig;
use crate::config::scrape::ScrapeDefaults;
use crate::kubernetes::watch_error::WatchFailure;
use crate::kubernetes::watch_error::describe;

/// Least time between two regenerations.
pub const REGENERATE_AT_MOST_EVERY: Duration = Duration::from_secs(2);
/// Regenerate at least this often, to pick up changed Secrets.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Most watcher events handled as one batch.
const MAX_BATCH: usize = 1024;

/// What Prometheus CR discovery currently generates.
#[derive(Debug, Clone, Default)]
pub struct PrometheusCrView {
    /// True once every watched resource has been listed once.
    pub synced: bool,
    /// The generated jobs, parsed, in (kind, namespace, name, endpoint) order.
    pub jobs: Arc<Vec<ScrapeConfig>>,
    /// Current list/watch problems (a missing CRD among them).
    pub errors: Vec<String>,
    /// Monitors or jobs left out, and why.
    pub problems: Vec<String>,
    /// Increases with every publication; 0 is the initial, empty view.
    pub generation: u64,
}

impl PrometheusCrView {
    /// The jobs as served, to tell whether a regeneration changed anything.
    fn rendered(&self) -> Vec<&serde_json::Value> {
        self.jobs.iter().map(|job| &job.rendered).collect()
    }
}

/// What the watcher needs from the configuration.
#[derive(Debug, Clone)]
pub struct CrSettings {
    pub selection: Selection,
    pub defaults: ScrapeDefaults,
    pub deny_fs_access: bool,
    pub kubeconfig_file: Option<String>,
}

impl CrSettings {
    pub fn from_config(config: &Config) -> Self {
        let kubeconfig_file = Some(config.kube_config_file_path.clone())
            .filter(|path| !path.is_empty() && std::path::Path::new(path).is_file());
        Self {
            selection: Selection::from_config(&config.prometheus_cr, &config.collector_namespace),
            defaults: generate::defaults(&config.prometheus_cr),
            deny_fs_access: config.prometheus_cr.deny_fs_access_through_sms,
            kubeconfig_file,
        }
    }
}

/// One list/watch: a monitor kind in a scope, or the namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Monitors {
        kind: MonitorKind,
        namespace: Option<String>,
    },
    Namespaces,
}

impl Resource {
    fn plural(&self) -> &'static str {
        match self {
            Resource::Monitors { kind, .. } => kind.plural(),
            Resource::Namespaces => "namespaces",
        }
    }

    fn scope(&self) -> &str {
        match self {
            Resource::Monitors {
                namespace: Some(namespace),
                ..
            } => namespace,
            _ => "",
        }
    }
}

type MonitorsByName = BTreeMap<(String, String), Monitor>;
type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;
/// The keys of a Secret or ConfigMap, decoded.
type ObjectData = BTreeMap<String, String>;

/// What one list/watch has seen.
#[derive(Debug, Default)]
struct Listed {
    /// Objects by namespace/name: monitors, or namespaces' labels.
    monitors: BTreeMap<(String, String), Monitor>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    relisting: Option<(MonitorsByName, NamespaceLabels)>,
    synced: bool,
    error: Option<String>,
}

type Incoming = (usize, Result<watcher::Event<DynamicObject>, watcher::Error>);
type NamespaceIncoming = Result<watcher::Event<Namespace>, watcher::Error>;

enum Item {
    Monitor(Incoming),
    Namespace(NamespaceIncoming),
}

/// The watcher, ready to run.
pub struct PrometheusCrWatcher {
    client: Client,
    settings: CrSettings,
    publish: watch::Sender<PrometheusCrView>,
    errors_metric: Option<prometheus::IntCounterVec>,
}

impl PrometheusCrWatcher {
    pub fn new(
        client: Client,
        settings: CrSettings,
        errors_metric: Option<prometheus::IntCounterVec>,
    ) -> (Self, watch::Receiver<PrometheusCrView>) {
        let (publish, view) = watch::channel(PrometheusCrView::default());
        (
            Self {
                client,
                settings,
                publish,
                errors_metric,
            },
            view,
        )
    }

    fn resources(&self) -> Vec<Resource> {
        let scopes: Vec<Option<String>> = if self.settings.selection.allow_namespaces.is_empty() {
            vec![None]
        } else {
            self.settings
                .selection
                .allow_namespaces
                .iter()
                .cloned()
                .map(Some)
                .collect()
        };
        let mut resources = Vec::new();
        for kind in [MonitorKind::ServiceMonitor, MonitorKind::PodMonitor] {
            for namespace in &scopes {
                resources.push(Resource::Monitors {
                    kind,
                    namespace: namespace.clone(),
                });
            }
        }
        if self.settings.selection.namespace_need() == NamespaceNeed::Labels {
            resources.push(Resource::Namespaces);
        }
        resources
    }

    fn stream(&self, index: usize, resource: &Resource) -> BoxStream<'static, Item> {
        match resource {
            Resource::Monitors { kind, namespace } => {
                let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind.kind());
                let api_resource = ApiResource::from_gvk_with_plural(&gvk, kind.plural());
                let api: Api<DynamicObject> = match namespace {
                    Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &api_resource),
                    None => Api::all_with(self.client.clone(), &api_resource),
                };
                watcher(api, watcher::Config::default())
                    .default_backoff()
                    .map(move |item| Item::Monitor((index, item)))
                    .boxed()
            }
            Resource::Namespaces => watcher(Api::<Namespace>::all(self.client.clone()), watcher::Config::default())
                .default_backoff()
                .map(Item::Namespace)
                .boxed(),
        }
    }

    /// Watch until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let resources = self.resources();
        tracing::info!(?resources, "prometheus CR discovery: watching");
        let streams: Vec<BoxStream<'static, Item>> =
            resources.iter().enumerate().map(|(i, r)| self.stream(i, r)).collect();
        let mut events = futures::stream::select_all(streams).ready_chunks(MAX_BATCH);
        let mut listed: Vec<Listed> = resources.iter().map(|_| Listed::default()).collect();
        let namespace_index = resources.iter().position(|r| *r == Resource::Namespaces);
        let mut dirty = true;
        let mut last_generated: Option<Instant> = None;
        loop {
            let due = match (dirty, last_generated) {
                (false, Some(at)) => at + REFRESH_EVERY,
                (true, Some(at)) => at + REGENERATE_AT_MOST_EVERY,
                (_, None) => Instant::now(),
            };
            let all_synced = listed.iter().all(|l| l.synced);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                batch = events.next() => {
                    let Some(batch) = batch else {
                        tracing::error!("prometheus CR discovery: the watch streams ended");
                        return;
                    };
                    for item in batch {
                        match item {
                            Item::Monitor((index, result)) => {
                                if let (Some(state), Some(resource)) = (listed.get_mut(index), resources.get(index)) {
                                    self.apply(resource, state, result);
                                }
                            }
                            Item::Namespace(result) => {
                                if let Some(state) = namespace_index.and_then(|i| listed.get_mut(i)) {
                                    self.apply_namespace(state, result);
                                }
                            }
                        }
                    }
                    dirty = true;
                }
                // Before the first complete list there is nothing worth generating yet.
                () = tokio::time::sleep_until(due), if all_synced || last_generated.is_some() => {
                    self.regenerate(&listed).await;
                    last_generated = Some(Instant::now());
                    dirty = false;
                }
            }
        }
    }

    fn apply(
        &self,
        resource: &Resource,
        state: &mut Listed,
        result: Result<watcher::Event<DynamicObject>, watcher::Error>,
    ) {
        let Resource::Monitors { kind, .. } = resource else {
            return;
        };
        match result {
            Ok(event) => {
                state.error = None;
                let decode = |object: DynamicObject| -> Option<Monitor> {
                    let namespace = object.metadata.namespace.clone().unwrap_or_default();
                    let name = object.metadata.name.clone().unwrap_or_default();
                    let labels = object.metadata.labels.clone().unwrap_or_default();
                    let spec = object.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
                    let spec = if spec.is_null() { serde_json::json!({}) } else { spec };
                    match Monitor::from_parts(*kind, namespace, name, labels, spec) {
                        Ok(monitor) => Some(monitor),
                        Err(error) => {
                            tracing::warn!(kind = kind.kind(), %error, "prometheus CR discovery: a monitor's spec cannot be read; ignored");
                            None
                        }
                    }
                };
                let key = |object: &DynamicObject| {
                    (
                        object.metadata.namespace.clone().unwrap_or_default(),
                        object.metadata.name.clone().unwrap_or_default(),
                    )
                };
                match event {
                    watcher::Event::Init => state.relisting = Some(Default::default()),
                    watcher::Event::InitApply(object) => {
                        let object_key = key(&object);
                        if let Some(monitor) = decode(object) {
                            state
                                .relisting
                                .get_or_insert_with(Default::default)
                                .0
                                .insert(object_key, monitor);
                        }
                    }
                    watcher::Event::InitDone => {
                        if let Some((monitors, _)) = state.relisting.take() {
                            state.monitors = monitors;
                        }
                        state.synced = true;
                    }
                    watcher::Event::Apply(object) => {
                        let object_key = key(&object);
                        match decode(object) {
                            Some(monitor) => state.monitors.insert(object_key, monitor),
                            None => state.monitors.remove(&object_key),
                        };
                    }
                    watcher::Event::Delete(object) => {
                        state.monitors.remove(&key(&object));
                    }
                }
            }
            Err(failure) => {
                let text = self.report(resource, &failure);
                if is_not_found(&failure) {
                    // The CRD is not installed: there are no such monitors.
                    state.monitors.clear();
                    state.relisting = None;
                    state.synced = true;
                }
                if let Some(text) = text {
                    state.error = Some(text);
                }
            }
        }
    }

    fn apply_namespace(&self, state: &mut Listed, result: NamespaceIncoming) {
        match result {
            Ok(event) => {
                state.error = None;
                let entry = |namespace: &Namespace| {
                    (
                        namespace.metadata.name.clone().unwrap_or_default(),
                        namespace.metadata.labels.clone().unwrap_or_default(),
                    )
                };
                match event {
                    watcher::Event::Init => state.relisting = Some(Default::default()),
                    watcher::Event::InitApply(namespace) => {
                        let (name, labels) = entry(&namespace);
                        state
                            .relisting
                            .get_or_insert_with(Default::default)
                            .1
                            .insert(name, labels);
                    }
                    watcher::Event::InitDone => {
                        if let Some((_, namespaces)) = state.relisting.take() {
                            state.namespaces = namespaces;
                        }
                        state.synced = true;
                    }
                    watcher::Event::Apply(namespace) => {
                        let (name, labels) = entry(&namespace);
                        state.namespaces.insert(name, labels);
                    }
                    watcher::Event::Delete(namespace) => {
                        state.namespaces.remove(&entry(&namespace).0);
                    }
                }
            }
            Err(failure) => {
                if let Some(text) = self.report(&Resource::Namespaces, &failure) {
                    state.error = Some(text);
                }
            }
        }
    }

    /// Log and count a failure; the text to show, if it is a problem.
    fn report(&self, resource: &Resource, failure: &watcher::Error) -> Option<String> {
        let kind = WatchFailure::of(failure);
        if let Some(metric) = &self.errors_metric {
            metric.with_label_values(&[resource.plural(), kind.as_str()]).inc();
        }
        let scope = resource.scope();
        let text = if is_not_found(failure) {
            format!(
                "{}.monitoring.coreos.com is not served by the API server (is the prometheus-operator CRD installed?); \
                 retrying",
                resource.plural()
            )
        } else {
            describe(
                failure,
                resource.plural(),
                if scope.is_empty() { "(all)" } else { scope },
            )
        };
        match kind {
            WatchFailure::Expired => {
                tracing::info!("prometheus CR discovery: {text}");
                None
            }
            WatchFailure::Forbidden | WatchFailure::Other => {
                tracing::warn!("prometheus CR discovery: {text}; keeping the last known jobs");
                Some(text)
            }
        }
    }

    async fn regenerate(&self, listed: &[Listed]) {
        let monitors: Vec<Monitor> = listed.iter().flat_map(|l| l.monitors.values().cloned()).collect();
        let mut namespace_labels = BTreeMap::new();
        for state in listed {
            namespace_labels.extend(state.namespaces.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let selected: Vec<&Monitor> = monitors
            .iter()
            .filter(|m| self.settings.selection.selects(m, &namespace_labels))
            .collect();
        let mut wanted: Vec<CredentialRef> = selected.iter().flat_map(|m| references(m)).collect();
        wanted.sort();
        wanted.dedup();
        let (credentials, mut problems) = self.fetch(&wanted).await;
        let generated = generate::generate(
            &monitors,
            generate::Context {
                selection: &self.settings.selection,
                namespace_labels: &namespace_labels,
                credentials: &credentials,
                deny_fs_access: self.settings.deny_fs_access,
                kubeconfig_file: self.settings.kubeconfig_file.as_deref(),
            },
        );
        problems.extend(generated.problems.iter().cloned());
        let (jobs, parse_problems) = generate::parse(&generated.jobs, &self.settings.defaults);
        problems.extend(parse_problems);
        for problem in &problems {
            tracing::warn!("prometheus CR discovery: {problem}");
        }
        let view = PrometheusCrView {
            synced: listed.iter().all(|l| l.synced),
            jobs: Arc::new(jobs),
            errors: listed.iter().filter_map(|l| l.error.clone()).collect(),
            problems,
            generation: 0,
        };
        self.publish.send_if_modified(|current| {
            if current.synced == view.synced
                && current.errors == view.errors
                && current.problems == view.problems
                && current.rendered() == view.rendered()
            {
                return false;
            }
            tracing::info!(
                jobs = view.jobs.len(),
                synced = view.synced,
                "prometheus CR discovery: jobs regenerated"
            );
            *current = PrometheusCrView {
                generation: current.generation + 1,
                ..view
            };
            true
        });
    }

    /// GET every referenced Secret and ConfigMap once; what cannot be read is left out,
    /// with a problem.
    async fn fetch(&self, wanted: &[CredentialRef]) -> (CredentialValues, Vec<String>) {
        let mut values = CredentialValues::new();
        let mut problems = Vec::new();
        let mut objects: BTreeMap<(Source, String, String), Result<ObjectData, String>> = BTreeMap::new();
        for reference in wanted {
            let object_key = (reference.source, reference.namespace.clone(), reference.name.clone());
            if !objects.contains_key(&object_key) {
                let fetched = self.fetch_object(reference).await;
                objects.insert(object_key.clone(), fetched);
            }
            match objects.get(&object_key) {
                Some(Ok(data)) => match data.get(&reference.key) {
                    Some(value) => {
                        values.insert(reference.clone(), value.clone());
                    }
                    None => problems.push(format!("{reference}: no such key")),
                },
                Some(Err(error)) => problems.push(format!("{reference}: {error}")),
                None => {}
            }
        }
        (values, problems)
    }

    async fn fetch_object(&self, reference: &CredentialRef) -> Result<BTreeMap<String, String>, String> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match reference.source {
            Source::Secret => {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &reference.namespace);
                match api.get_opt(&reference.name).await {
                    Ok(Some(secret)) => {
                        let mut data: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
                        for (key, value) in secret.data.unwrap_or_default() {
                            data.insert(key, text(&value.0));
                        }
                        Ok(data)
                    }
                    Ok(None) => Err("the secret does not exist".into()),
                    Err(error) => Err(crate::discovery::error_chain(&error)),
                }
            }
            Source::ConfigMap => {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &reference.namespace);
                match api.get_opt(&reference.name).await {
                    Ok(Some(config_map)) => {
                        let mut data = config_map.data.unwrap_or_default();
                        for (key, value) in config_map.binary_data.unwrap_or_default() {
                            data.insert(key, text(&value.0));
                        }
                        Ok(data)
                    }
                    Ok(None) => Err("the configmap does not exist".into()),
                    Err(error) => Err(crate::discovery::error_chain(&error)),
                }
            }
        }
    }
}

/// Whether a failure is a 404: the resource (its CRD) is not served.
fn is_not_found(failure: &watcher::Error) -> bool {
    match failure {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status))
        | watcher::Error::WatchError(status) => status.is_not_found(),
        _ => false,
    }
}
