//! The running `kubernetes_sd_configs` source: one kube-runtime watcher per kind and
//! namespace the role needs (with the configured label and field selectors, and kube's
//! default backoff, so a failing API server is retried politely and an expired watch
//! relists), all merged into one stream that a single task applies to its
//! [`DiscoveryState`], publishing after each burst of events.
//!
//! The client is built from the entry's settings when the task starts (retried with backoff
//! if that fails, unsynced meanwhile), or injected with [`KubernetesProvider::with_client`]
//! (tests against a fake API server, or a client shared with other Kubernetes watchers).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::Client;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::super::Provider;
use super::super::ProviderSnapshot;
use super::super::error_chain;
use super::KubernetesRole;
use super::KubernetesSdConfig;
use super::NamespaceDiscovery;
use super::objects::Pod;
use super::state::DiscoveryState;
use super::state::KindEvent;
use super::state::WatchSpec;
use super::state::WatchUpdate;
use super::state::watch_specs;
use crate::blocking::off_the_runtime;
use crate::kubernetes::client::ClientSource;

/// First and longest wait between attempts to build the client.
const CLIENT_RETRY_FIRST: Duration = Duration::from_secs(1);
const CLIENT_RETRY_MAX: Duration = Duration::from_secs(60);
/// Most events applied before publishing: a huge relist still publishes now and then
/// (nothing is lost: the rest is applied right after).
const MAX_EVENTS_PER_PUBLICATION: usize = 10_000;
/// Events held (decoded, not yet applied) at most while a publication is held back.
const HELD_BEFORE_APPLYING: usize = 256;
/// Events arriving within this long of a publication wait for the next one (a burst is
/// published, and its groups rebuilt, once rather than per event).
const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Provider for one `kubernetes_sd_configs` entry.
pub struct KubernetesProvider {
    config: KubernetesSdConfig,
    client: Option<Client>,
}

impl KubernetesProvider {
    /// A provider that builds its client from the entry's `api_server` / `kubeconfig_file`.
    pub fn new(config: KubernetesSdConfig) -> Self {
        Self { config, client: None }
    }

    /// A provider using `client`, whatever the entry's client settings say.
    pub fn with_client(config: KubernetesSdConfig, client: Client) -> Self {
        Self {
            config,
            client: Some(client),
        }
    }
}

impl Provider for KubernetesProvider {
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, publish, shutdown))
    }
}

async fn run(provider: KubernetesProvider, publish: watch::Sender<ProviderSnapshot>, shutdown: CancellationToken) {
    let config = provider.config;
    let client = match provider.client {
        Some(client) => client,
        None => {
            let source =
                ClientSource::from_sd_settings(config.api_server.as_deref(), config.kubeconfig_file.as_deref());
            match connect(&source, &publish, &shutdown).await {
                Some(client) => client,
                None => return,
            }
        }
    };
    let namespaces = namespaces_to_watch(&config.namespaces, client.default_namespace());
    let specs = watch_specs(config.role, &namespaces);
    tracing::info!(role = %config.role, watches = specs.len(), "kubernetes_sd: starting watches");
    let mut state = DiscoveryState::new(config.role, specs.clone());
    let streams = specs
        .iter()
        .enumerate()
        .map(|(index, spec)| watch_stream(client.clone(), index, spec, &config));
    let mut updates = futures::stream::select_all(streams);
    let mut last_published: Option<tokio::time::Instant> = None;
    loop {
        let update = tokio::select! {
            () = shutdown.cancelled() => return,
            update = updates.next() => update,
        };
        // The watchers retry forever, so the merged stream does not end; if it did, keep
        // what is published rather than spin.
        let Some(update) = update else {
            tracing::warn!("kubernetes_sd: every watch ended; keeping the last published groups");
            shutdown.cancelled().await;
            return;
        };
        let started = std::time::Instant::now();
        // Apply what is already waiting (a relist arrives as many events) before publishing,
        // so subscribers see one change, not thousands. Decoding and applying an initial
        // list is seconds of CPU: off the runtime.
        let mut applied = off_the_runtime(|| {
            state.apply(update);
            let mut applied = 1;
            while applied < MAX_EVENTS_PER_PUBLICATION && started.elapsed() < PUBLISH_EVERY {
                match updates.next().now_or_never() {
                    Some(Some(update)) => {
                        state.apply(update);
                        applied += 1;
                    }
                    _ => break,
                }
            }
            applied
        });
        // A rollout arrives as a stream of small events (a pod deleted, a pod added, its
        // slice updated): publishing each would rebuild the same groups again and again. So
        // after a publication, what arrives within PUBLISH_EVERY is held and published as
        // one; a change after a quiet spell is still published at once. While events keep
        // coming, a publication goes out every PUBLISH_EVERY (the leader waits for a quiet
        // spell longer than that before planning).
        let hold_until = last_published.map(|at| at + PUBLISH_EVERY);
        let mut held = Vec::new();
        while let Some(deadline) = hold_until.filter(|deadline| *deadline > tokio::time::Instant::now())
            && applied < MAX_EVENTS_PER_PUBLICATION
        {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => break,
                update = updates.next() => match update {
                    Some(update) => {
                        held.push(update);
                        applied += 1;
                        // Decoded objects are large: apply them in small batches.
                        if held.len() >= HELD_BEFORE_APPLYING {
                            off_the_runtime(|| held.drain(..).for_each(|update| state.apply(update)));
                        }
                    }
                    None => break,
                },
            }
        }
        off_the_runtime(|| {
            for update in held {
                state.apply(update);
            }
            state.publish_to(&publish);
        });
        last_published = Some(tokio::time::Instant::now());
        tracing::debug!(
            role = %config.role,
            events = applied,
            ms = started.elapsed().as_millis() as u64,
            "kubernetes_sd: applied and published"
        );
    }
}

/// Build the client, retrying with backoff; `None` when shut down first. Each failure is
/// published as the source's error (unsynced: nothing is known yet).
async fn connect(
    source: &ClientSource,
    publish: &watch::Sender<ProviderSnapshot>,
    shutdown: &CancellationToken,
) -> Option<Client> {
    let mut wait = CLIENT_RETRY_FIRST;
    loop {
        match crate::kubernetes::client::build(source).await {
            Ok(client) => return Some(client),
            Err(error) => {
                let message = error_chain(&error);
                tracing::warn!(error = %message, "kubernetes_sd: no Kubernetes client; retrying");
                publish.send_if_modified(|current| {
                    let changed = current.last_error.as_deref() != Some(message.as_str());
                    current.last_error = Some(message.clone());
                    changed
                });
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(CLIENT_RETRY_MAX);
    }
}

/// The namespaces to watch (`None`: all), as Prometheus's `getNamespaces`: the configured
/// names plus, with `own_namespace`, the client's namespace (the service account's, in a
/// cluster); all namespaces when neither is given. Repeats are watched once.
pub fn namespaces_to_watch(namespaces: &NamespaceDiscovery, own_namespace: &str) -> Vec<Option<String>> {
    if namespaces.names.is_empty() && !namespaces.own_namespace {
        return vec![None];
    }
    let mut watched: Vec<Option<String>> = Vec::new();
    let own = namespaces
        .own_namespace
        .then_some(own_namespace)
        .filter(|own| !own.is_empty());
    for name in namespaces.names.iter().map(String::as_str).chain(own) {
        let name = Some(name.to_string());
        if !watched.contains(&name) {
            watched.push(name);
        }
    }
    watched
}

/// The watcher configuration of one watch: the entry's selector for that kind of object.
fn watcher_config(kind: KubernetesRole, config: &KubernetesSdConfig) -> watcher::Config {
    let mut watcher_config = watcher::Config::default();
    if let Some(selector) = config.selector_for(kind) {
        if let Some(label) = &selector.label {
            watcher_config = watcher_config.labels(label);
        }
        if let Some(field) = &selector.field {
            watcher_config = watcher_config.fields(field);
        }
    }
    watcher_config
}

fn watch_stream(
    client: Client,
    index: usize,
    spec: &WatchSpec,
    config: &KubernetesSdConfig,
) -> BoxStream<'static, WatchUpdate> {
    let watcher_config = watcher_config(spec.kind, config);
    let namespace = spec.namespace.as_deref();
    match spec.kind {
        KubernetesRole::Pod => typed(api::<Pod>(client, namespace), watcher_config, index, KindEvent::Pod),
        KubernetesRole::Service => typed(
            api::<Service>(client, namespace),
            watcher_config,
            index,
            KindEvent::Service,
        ),
        KubernetesRole::Endpoints => typed(
            api::<Endpoints>(client, namespace),
            watcher_config,
            index,
            KindEvent::Endpoints,
        ),
        KubernetesRole::EndpointSlice => typed(
            api::<EndpointSlice>(client, namespace),
            watcher_config,
            index,
            KindEvent::EndpointSlice,
        ),
        // Nodes are cluster-scoped, whatever namespaces are configured.
        KubernetesRole::Node => typed(Api::<Node>::all(client), watcher_config, index, KindEvent::Node),
        KubernetesRole::Ingress => typed(
            api::<Ingress>(client, namespace),
            watcher_config,
            index,
            KindEvent::Ingress,
        ),
    }
}

fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(namespace) => Api::namespaced(client, namespace),
        None => Api::all(client),
    }
}

/// One watcher with backoff, its events tagged with the watch's index.
fn typed<K>(
    api: Api<K>,
    watcher_config: watcher::Config,
    index: usize,
    wrap: fn(watcher::Event<K>) -> KindEvent,
) -> BoxStream<'static, WatchUpdate>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher_config)
        .default_backoff()
        .map(move |result| match result {
            Ok(event) => WatchUpdate::event(index, wrap(event)),
            Err(error) => WatchUpdate::Failed(index, error_chain(&error)),
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::body::Bytes;
    use axum::http::Request;
    use axum::http::Response;
    use axum::http::StatusCode;
    use futures::channel::mpsc;
    use serde_json::json;

    use super::super::RoleSelector;
    use super::*;

    type WatchFeed = mpsc::UnboundedSender<Result<Bytes, Infallible>>;

    /// An API server inside the client's transport (no sockets): answers lists from fixed
    /// replies and watches from feeds the test writes to (or never, keeping them open).
    #[derive(Default)]
    struct FakeApiServer {
        /// Path → the listed items, or the error status to answer.
        lists: HashMap<&'static str, Result<serde_json::Value, StatusCode>>,
        /// Path → the watch stream to answer with (once).
        watches: Mutex<HashMap<&'static str, mpsc::UnboundedReceiver<Result<Bytes, Infallible>>>>,
    }

    impl FakeApiServer {
        fn feed(&mut self, path: &'static str) -> WatchFeed {
            let (sender, receiver) = mpsc::unbounded();
            if let Ok(mut watches) = self.watches.lock() {
                watches.insert(path, receiver);
            }
            sender
        }

        fn answer(&self, request: &Request<kube::client::Body>) -> Response<Body> {
            let path = request.uri().path();
            let watching = request.uri().query().unwrap_or_default().contains("watch=true");
            if watching {
                let feed = self.watches.lock().ok().and_then(|mut watches| watches.remove(path));
                let body = match feed {
                    Some(receiver) => Body::from_stream(receiver),
                    None => Body::from_stream(futures::stream::pending::<Result<Bytes, Infallible>>()),
                };
                return Response::new(body);
            }
            let (status, body) = match self.lists.get(path) {
                Some(Ok(items)) => (
                    StatusCode::OK,
                    json!({"metadata": {"resourceVersion": "1"}, "items": items}),
                ),
                Some(Err(status)) => (*status, status_body(*status, path)),
                None => (StatusCode::NOT_FOUND, status_body(StatusCode::NOT_FOUND, path)),
            };
            let mut response = Response::new(Body::from(body.to_string()));
            *response.status_mut() = status;
            response
        }
    }

    fn status_body(status: StatusCode, path: &str) -> serde_json::Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{path} is {}", status.canonical_reason().unwrap_or_default().to_lowercase()),
            "reason": status.canonical_reason(), "code": status.as_u16()
        })
    }

    fn fake_client(server: FakeApiServer) -> Client {
        let server = Arc::new(server);
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.answer(&request)) }
        });
        Client::new(service, "default")
    }

    fn pod_json(name: &str, ip: &str, resource_version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": resource_version},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"podIP": ip}
        })
    }

    fn watch_event(kind: &str, object: serde_json::Value) -> Result<Bytes, Infallible> {
        Ok(Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))))
    }

    fn addresses(snapshot: &ProviderSnapshot) -> Vec<String> {
        snapshot
            .groups
            .iter()
            .flat_map(|g| g.targets.iter())
            .filter_map(|t| t.get("__address__").map(str::to_string))
            .collect()
    }

    async fn wait_for(
        receiver: &mut watch::Receiver<ProviderSnapshot>,
        what: &str,
        condition: impl FnMut(&ProviderSnapshot) -> bool,
    ) -> ProviderSnapshot {
        let outcome = tokio::time::timeout(Duration::from_secs(10), receiver.wait_for(condition))
            .await
            .map(|waited| waited.map(|snapshot| snapshot.clone()));
        match outcome {
            Ok(Ok(snapshot)) => snapshot,
            _ => panic!("timed out waiting for {what}; last: {:?}", *receiver.borrow()),
        }
    }

    #[tokio::test]
    async fn the_provider_lists_then_follows_the_watch() {
        let mut server = FakeApiServer::default();
        server
            .lists
            .insert("/api/v1/pods", Ok(json!([pod_json("p1", "10.0.0.1", "1")])));
        let feed = server.feed("/api/v1/pods");
        let provider =
            KubernetesProvider::with_client(KubernetesSdConfig::new(KubernetesRole::Pod), fake_client(server));
        let (publish, mut receiver) = watch::channel(ProviderSnapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Box::new(provider).run(publish, shutdown.clone()));

        let first = wait_for(&mut receiver, "the initial list", |s| s.synced).await;
        assert_eq!(addresses(&first), ["10.0.0.1:8080"]);
        assert_eq!(first.groups[0].source, "pod/ns/p1");
        assert_eq!(first.last_error, None);

        assert!(
            feed.unbounded_send(watch_event("ADDED", pod_json("p2", "10.0.0.2", "2")))
                .is_ok()
        );
        wait_for(&mut receiver, "the added pod", |s| {
            addresses(s) == ["10.0.0.1:8080", "10.0.0.2:8080"]
        })
        .await;
        assert!(
            feed.unbounded_send(watch_event("DELETED", pod_json("p1", "10.0.0.1", "3")))
                .is_ok()
        );
        let last = wait_for(&mut receiver, "the deleted pod", |s| addresses(s) == ["10.0.0.2:8080"]).await;
        assert!(last.synced);

        shutdown.cancel();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), task).await.is_ok(),
            "stops on shutdown"
        );
    }

    #[tokio::test]
    async fn a_forbidden_list_is_reported_and_never_counts_as_synced() {
        let mut server = FakeApiServer::default();
        server
            .lists
            .insert("/apis/discovery.k8s.io/v1/endpointslices", Ok(json!([])));
        server.lists.insert("/api/v1/services", Ok(json!([])));
        server.lists.insert("/api/v1/pods", Err(StatusCode::FORBIDDEN));
        let provider = KubernetesProvider::with_client(
            KubernetesSdConfig::new(KubernetesRole::EndpointSlice),
            fake_client(server),
        );
        let (publish, mut receiver) = watch::channel(ProviderSnapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(Box::new(provider).run(publish, shutdown.clone()));

        let failed = wait_for(&mut receiver, "the pods list error", |s| s.last_error.is_some()).await;
        let error = failed.last_error.clone().unwrap_or_default();
        assert!(error.contains("pod watch in all namespaces"), "{error}");
        assert!(error.to_lowercase().contains("forbidden"), "{error}");
        assert!(
            !failed.synced,
            "a watch that never listed keeps the source unsynced (I7)"
        );
        assert!(failed.groups.is_empty());

        shutdown.cancel();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), task).await.is_ok(),
            "stops on shutdown"
        );
    }

    #[test]
    fn namespaces_follow_prometheus() {
        let all = NamespaceDiscovery::default();
        assert_eq!(namespaces_to_watch(&all, "own"), [None]);
        let named = NamespaceDiscovery {
            own_namespace: false,
            names: vec!["a".into(), "b".into(), "a".into()],
        };
        assert_eq!(namespaces_to_watch(&named, "own"), [Some("a".into()), Some("b".into())]);
        let with_own = NamespaceDiscovery {
            own_namespace: true,
            names: vec!["a".into()],
        };
        assert_eq!(
            namespaces_to_watch(&with_own, "own"),
            [Some("a".into()), Some("own".into())]
        );
        let only_own = NamespaceDiscovery {
            own_namespace: true,
            names: Vec::new(),
        };
        assert_eq!(
            namespaces_to_watch(&only_own, "monitoring"),
            [Some("monitoring".into())]
        );
    }

    #[test]
    fn each_watch_gets_the_selector_of_its_kind() {
        let mut config = KubernetesSdConfig::new(KubernetesRole::EndpointSlice);
        config.selectors = vec![
            RoleSelector {
                role: KubernetesRole::Pod,
                label: Some("app=web".into()),
                field: Some("spec.nodeName=n1".into()),
            },
            RoleSelector {
                role: KubernetesRole::Service,
                label: None,
                field: Some("metadata.name=web".into()),
            },
        ];
        let pods = watcher_config(KubernetesRole::Pod, &config);
        assert_eq!(pods.label_selector.as_deref(), Some("app=web"));
        assert_eq!(pods.field_selector.as_deref(), Some("spec.nodeName=n1"));
        let services = watcher_config(KubernetesRole::Service, &config);
        assert_eq!(services.label_selector, None);
        assert_eq!(services.field_selector.as_deref(), Some("metadata.name=web"));
        let slices = watcher_config(KubernetesRole::EndpointSlice, &config);
        assert_eq!((slices.label_selector, slices.field_selector), (None, None));
    }
}
