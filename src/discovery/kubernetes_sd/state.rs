//! What one `kubernetes_sd_configs` entry currently knows: the objects of every watch, which
//! watches have completed their initial list, their errors, and the target groups built from
//! the objects. Fed with kube-runtime [`watcher::Event`]s (no I/O here, so tests feed it
//! directly), it decides what the provider publishes:
//!
//! - Nothing is published as discovered until every watch has completed its first list
//!   (`InitDone`): before that, an empty or partial view is not "these are all the targets"
//!   (I7, docs/architecture.md), and an endpoints group built before its pods are listed
//!   would lack the pod labels relabel rules select on.
//! - A relist (after a watch expired, or a reconnect that needs one) replaces that watch's
//!   objects only when it completes, so a relist in progress never looks like deletions.
//! - An error never removes anything: the objects stay as last listed and the error is
//!   reported until that watch delivers again.
//!
//! Groups are rebuilt only for objects that changed (and, for the endpoints roles, for the
//! endpoints whose pods or service changed); an unchanged group keeps its `Arc`.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use tokio::sync::watch;

use super::super::ProviderSnapshot;
use super::super::TargetGroup;
use super::KubernetesRole;
use super::ObjectLookup;
use super::endpoints;
use super::endpointslice;
use super::endpointslice::SliceView;
use super::ingress;
use super::namespace_and_name;
use super::node;
use super::objects::Pod;
use super::pod;
use super::pod::PodView;
use super::service;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects (nodes).
pub type ObjectKey = (String, String);

/// One watch: a kind of object, in one namespace or in all (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    pub kind: KubernetesRole,
    pub namespace: Option<String>,
}

impl WatchSpec {
    fn describe(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{} watch in namespace {namespace:?}", self.kind),
            None => format!("{} watch in all namespaces", self.kind),
        }
    }
}

/// The watches a role needs, per namespace (`None`: all namespaces): the role's own kind,
/// plus the services and pods whose labels the endpoints roles attach. Nodes are
/// cluster-scoped and watched once.
pub fn watch_specs(role: KubernetesRole, namespaces: &[Option<String>]) -> Vec<WatchSpec> {
    let kinds: &[KubernetesRole] = match role {
        KubernetesRole::Endpoints => &[KubernetesRole::Endpoints, KubernetesRole::Service, KubernetesRole::Pod],
        KubernetesRole::EndpointSlice => &[
            KubernetesRole::EndpointSlice,
            KubernetesRole::Service,
            KubernetesRole::Pod,
        ],
        KubernetesRole::Node => {
            return vec![WatchSpec {
                kind: KubernetesRole::Node,
                namespace: None,
            }];
        }
        KubernetesRole::Pod => &[KubernetesRole::Pod],
        KubernetesRole::Service => &[KubernetesRole::Service],
        KubernetesRole::Ingress => &[KubernetesRole::Ingress],
    };
    let mut specs = Vec::new();
    for namespace in namespaces {
        for kind in kinds {
            specs.push(WatchSpec {
                kind: *kind,
                namespace: namespace.clone(),
            });
        }
    }
    specs
}

/// A watcher event of any of the kinds this discovery watches. Pods are the largest objects;
/// the enum travels boxed in [`WatchUpdate`], so the difference costs nothing.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "always boxed in WatchUpdate")]
pub enum KindEvent {
    Pod(watcher::Event<Pod>),
    Service(watcher::Event<Service>),
    Endpoints(watcher::Event<Endpoints>),
    EndpointSlice(watcher::Event<EndpointSlice>),
    Node(watcher::Event<Node>),
    Ingress(watcher::Event<Ingress>),
}

/// What one watch (by index into the specs) delivered.
#[derive(Debug)]
pub enum WatchUpdate {
    Event(usize, Box<KindEvent>),
    /// The watch failed (it retries by itself, with backoff); the message for `last_error`.
    Failed(usize, String),
}

impl WatchUpdate {
    pub fn event(watch: usize, event: KindEvent) -> Self {
        WatchUpdate::Event(watch, Box::new(event))
    }
}

/// How an object of kind `K` is kept in the cache: most kinds as themselves (slimmed), pods
/// as the [`PodView`] the conversions read.
trait Kept<K>: PartialEq + Sized {
    fn keep(object: K) -> Self;
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta> + PartialEq> Kept<K> for K {
    fn keep(object: K) -> Self {
        slim(object)
    }
}

impl Kept<EndpointSlice> for SliceView {
    fn keep(slice: EndpointSlice) -> Self {
        SliceView::of(&slice)
    }
}

impl Kept<Pod> for PodView {
    fn keep(pod: Pod) -> Self {
        PodView::of(&pod)
    }
}

/// The objects of one kind, from all the watches of that kind, kept as `V`.
struct ObjectCache<K, V = K> {
    objects: BTreeMap<ObjectKey, V>,
    /// Objects of a relist in progress, per watch, swapped in when it completes.
    relisting: HashMap<usize, BTreeMap<ObjectKey, V>>,
    kind: PhantomData<fn(K)>,
}

impl<K, V> Default for ObjectCache<K, V> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            relisting: HashMap::new(),
            kind: PhantomData,
        }
    }
}

fn key_of(meta: &ObjectMeta) -> ObjectKey {
    let (namespace, name) = namespace_and_name(meta);
    (namespace.to_string(), name.to_string())
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>, V: Kept<K>> ObjectCache<K, V> {
    /// Apply one event of watch `watch`, whose objects are those of `namespace` (all when
    /// `None`). Returns the keys whose object appeared, changed or went away, and whether
    /// the event completed a list.
    fn apply(&mut self, watch: usize, namespace: Option<&str>, event: watcher::Event<K>) -> (Vec<ObjectKey>, bool) {
        match event {
            watcher::Event::Apply(object) => {
                let key = key_of(object.metadata());
                (self.upsert(key, V::keep(object)).into_iter().collect(), false)
            }
            watcher::Event::Delete(object) => {
                let key = key_of(object.metadata());
                let removed = self.objects.remove(&key).is_some();
                (if removed { vec![key] } else { Vec::new() }, false)
            }
            watcher::Event::Init => {
                self.relisting.insert(watch, BTreeMap::new());
                (Vec::new(), false)
            }
            watcher::Event::InitApply(object) => {
                let key = key_of(object.metadata());
                self.relisting.entry(watch).or_default().insert(key, V::keep(object));
                (Vec::new(), false)
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.remove(&watch).unwrap_or_default();
                (self.replace_scope(namespace, listed), true)
            }
        }
    }

    /// Insert or replace; the key if anything changed.
    fn upsert(&mut self, key: ObjectKey, object: V) -> Option<ObjectKey> {
        if self.objects.get(&key) == Some(&object) {
            return None;
        }
        self.objects.insert(key.clone(), object);
        Some(key)
    }

    /// Make the objects of `namespace` (all when `None`) exactly `listed`.
    fn replace_scope(&mut self, namespace: Option<&str>, listed: BTreeMap<ObjectKey, V>) -> Vec<ObjectKey> {
        if self.objects.is_empty() {
            // The first list: every object is new. Taking the listed map whole saves
            // inserting 100k pods one by one into another (8% of applying them, profiled).
            let changed = listed.keys().cloned().collect();
            self.objects = listed;
            return changed;
        }
        let in_scope = |key: &ObjectKey| namespace.is_none_or(|namespace| key.0 == namespace);
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|key| in_scope(key) && !listed.contains_key(*key))
            .cloned()
            .collect();
        let mut changed = Vec::new();
        for key in gone {
            self.objects.remove(&key);
            changed.push(key);
        }
        for (key, object) in listed {
            changed.extend(self.upsert(key, object));
        }
        changed
    }

    fn get(&self, key: &ObjectKey) -> Option<&V> {
        self.objects.get(key)
    }
}

impl<K, V> ObjectLookup<V> for ObjectCache<K, V> {
    fn find(&self, namespace: &str, name: &str) -> Option<&V> {
        self.objects.get(&(namespace.to_string(), name.to_string()))
    }
}

/// Drop what no conversion reads and what changes on every write (`managedFields` is most
/// of an object's size), so memory stays small and a no-op update compares equal.
fn slim<K: k8s_openapi::Metadata<Ty = ObjectMeta>>(mut object: K) -> K {
    let meta = object.metadata_mut();
    meta.managed_fields = None;
    meta.resource_version = None;
    object
}

/// Progress of one watch.
#[derive(Debug, Clone)]
struct WatchProgress {
    spec: WatchSpec,
    /// Has completed at least one full list. Never reset: a later relist replaces objects
    /// only when it completes, so the view stays complete meanwhile.
    synced: bool,
    /// The latest failure, until the watch delivers an event again.
    error: Option<String>,
}

/// The state of one `kubernetes_sd_configs` entry.
pub struct DiscoveryState {
    role: KubernetesRole,
    watches: Vec<WatchProgress>,
    pods: ObjectCache<Pod, PodView>,
    services: ObjectCache<Service>,
    endpoints: ObjectCache<Endpoints>,
    endpoint_slices: ObjectCache<EndpointSlice, SliceView>,
    nodes: ObjectCache<Node>,
    ingresses: ObjectCache<Ingress>,
    /// Built groups, by the key of the object of the role's kind.
    groups: BTreeMap<ObjectKey, Arc<TargetGroup>>,
    /// Objects of the role's kind whose group must be rebuilt.
    dirty: BTreeSet<ObjectKey>,
    /// Pods and services that changed since the last rebuild (endpoints roles only).
    changed_pods: BTreeSet<ObjectKey>,
    changed_services: BTreeSet<ObjectKey>,
}

impl DiscoveryState {
    pub fn new(role: KubernetesRole, specs: Vec<WatchSpec>) -> Self {
        Self {
            role,
            watches: specs
                .into_iter()
                .map(|spec| WatchProgress {
                    spec,
                    synced: false,
                    error: None,
                })
                .collect(),
            pods: ObjectCache::default(),
            services: ObjectCache::default(),
            endpoints: ObjectCache::default(),
            endpoint_slices: ObjectCache::default(),
            nodes: ObjectCache::default(),
            ingresses: ObjectCache::default(),
            groups: BTreeMap::new(),
            dirty: BTreeSet::new(),
            changed_pods: BTreeSet::new(),
            changed_services: BTreeSet::new(),
        }
    }

    /// True once every watch has completed its first list.
    pub fn synced(&self) -> bool {
        self.watches.iter().all(|watch| watch.synced)
    }

    /// The current failures of all watches, one message.
    pub fn last_error(&self) -> Option<String> {
        let errors: Vec<String> = self
            .watches
            .iter()
            .filter_map(|watch| {
                watch
                    .error
                    .as_ref()
                    .map(|error| format!("{}: {error}", watch.spec.describe()))
            })
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }

    /// Take in one update.
    pub fn apply(&mut self, update: WatchUpdate) {
        let (index, event) = match update {
            WatchUpdate::Failed(index, message) => {
                if let Some(watch) = self.watches.get_mut(index) {
                    tracing::warn!(watch = %watch.spec.describe(), error = %message,
                        "kubernetes_sd: watch failed; keeping what it last listed");
                    watch.error = Some(message);
                }
                return;
            }
            WatchUpdate::Event(index, event) => (index, *event),
        };
        let Some(watch) = self.watches.get_mut(index) else {
            return;
        };
        watch.error = None;
        let namespace = watch.spec.namespace.clone();
        let namespace = namespace.as_deref();
        let (kind, (changed, list_done)) = match event {
            KindEvent::Pod(event) => (KubernetesRole::Pod, self.pods.apply(index, namespace, event)),
            KindEvent::Service(event) => (KubernetesRole::Service, self.services.apply(index, namespace, event)),
            KindEvent::Endpoints(event) => (KubernetesRole::Endpoints, self.endpoints.apply(index, namespace, event)),
            KindEvent::EndpointSlice(event) => (
                KubernetesRole::EndpointSlice,
                self.endpoint_slices.apply(index, namespace, event),
            ),
            KindEvent::Node(event) => (KubernetesRole::Node, self.nodes.apply(index, namespace, event)),
            KindEvent::Ingress(event) => (KubernetesRole::Ingress, self.ingresses.apply(index, namespace, event)),
        };
        if list_done && let Some(watch) = self.watches.get_mut(index) {
            watch.synced = true;
        }
        if kind == self.role {
            self.dirty.extend(changed);
        } else if kind == KubernetesRole::Pod {
            self.changed_pods.extend(changed);
        } else if kind == KubernetesRole::Service {
            self.changed_services.extend(changed);
        }
    }

    /// All groups, rebuilt where something changed; `None` until synced.
    pub fn groups(&mut self) -> Option<Vec<Arc<TargetGroup>>> {
        if !self.synced() {
            return None;
        }
        self.mark_dependents_dirty();
        if !self.dirty.is_empty() {
            for key in std::mem::take(&mut self.dirty) {
                match self.build(&key) {
                    Some(group) => {
                        let unchanged = self.groups.get(&key).is_some_and(|old| **old == group);
                        if !unchanged {
                            self.groups.insert(key, Arc::new(group));
                        }
                    }
                    None => {
                        self.groups.remove(&key);
                    }
                }
            }
        }
        Some(self.groups.values().cloned().collect())
    }

    /// Publish the current view unless subscribers already have exactly it.
    pub fn publish_to(&mut self, publish: &watch::Sender<ProviderSnapshot>) {
        let synced = self.synced();
        let groups = self.groups().unwrap_or_default();
        let last_error = self.last_error();
        publish.send_if_modified(|current| {
            let unchanged = current.synced == synced
                && current.last_error == last_error
                && current.groups.len() == groups.len()
                && current.groups.iter().zip(&groups).all(|(a, b)| Arc::ptr_eq(a, b));
            if unchanged {
                return false;
            }
            *current = ProviderSnapshot {
                groups: Arc::new(groups),
                synced,
                last_error,
            };
            true
        });
    }

    /// For the endpoints roles: the endpoints whose pods or service changed.
    fn mark_dependents_dirty(&mut self) {
        let changed_pods = std::mem::take(&mut self.changed_pods);
        let changed_services = std::mem::take(&mut self.changed_services);
        if changed_pods.is_empty() && changed_services.is_empty() {
            return;
        }
        // Namespace → names, borrowed, so checking each reference allocates nothing.
        let mut changed_pod_names: HashMap<&str, BTreeSet<&str>> = HashMap::new();
        for (namespace, name) in &changed_pods {
            changed_pod_names.entry(namespace).or_default().insert(name);
        }
        let pod_changed = |(namespace, name): (&str, &str)| {
            changed_pod_names
                .get(namespace)
                .is_some_and(|names| names.contains(name))
        };
        match self.role {
            KubernetesRole::EndpointSlice => {
                for (key, slice) in &self.endpoint_slices.objects {
                    let service_changed = slice
                        .service()
                        .is_some_and(|service| changed_services.contains(&(key.0.clone(), service.to_string())));
                    if service_changed || slice.referenced_pods().any(pod_changed) {
                        self.dirty.insert(key.clone());
                    }
                }
            }
            KubernetesRole::Endpoints => {
                for (key, object) in &self.endpoints.objects {
                    if changed_services.contains(key) || endpoints::referenced_pods(object).any(pod_changed) {
                        self.dirty.insert(key.clone());
                    }
                }
            }
            KubernetesRole::Pod | KubernetesRole::Service | KubernetesRole::Node | KubernetesRole::Ingress => {}
        }
    }

    /// The group of the role's object at `key`, `None` when it is gone (or, for a node,
    /// has no address).
    fn build(&mut self, key: &ObjectKey) -> Option<TargetGroup> {
        match self.role {
            KubernetesRole::Pod => self.pods.get(key).map(pod::pod_group),
            KubernetesRole::Service => self.services.get(key).map(service::service_group),
            KubernetesRole::Node => self.nodes.get(key).and_then(node::node_group),
            KubernetesRole::Ingress => self.ingresses.get(key).map(ingress::ingress_group),
            KubernetesRole::EndpointSlice => self
                .endpoint_slices
                .get(key)
                .map(|s| endpointslice::slice_group(s, &self.services, &self.pods)),
            KubernetesRole::Endpoints => self
                .endpoints
                .get(key)
                .map(|e| endpoints::endpoints_group(e, &self.services, &self.pods)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::object;
    use super::*;

    fn pod(name: &str, ip: &str, port: i32) -> Pod {
        object(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": name}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": port}]}]},
            "status": {"podIP": ip}
        }))
    }

    fn service(labels: serde_json::Value) -> Service {
        object(json!({"metadata": {"name": "web", "namespace": "ns", "labels": labels}}))
    }

    fn slice(name: &str, pod_name: &str, ip: &str) -> EndpointSlice {
        object(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": [ip], "targetRef": {"kind": "Pod", "name": pod_name, "namespace": "ns"}}]
        }))
    }

    fn addresses(groups: &[Arc<TargetGroup>]) -> Vec<String> {
        groups
            .iter()
            .flat_map(|g| g.targets.iter())
            .filter_map(|t| t.get("__address__").map(str::to_string))
            .collect()
    }

    /// Watch indexes of `watch_specs(EndpointSlice, [ns])`.
    const SLICES: usize = 0;
    const SERVICES: usize = 1;
    const PODS: usize = 2;

    fn endpointslice_state() -> DiscoveryState {
        let specs = watch_specs(KubernetesRole::EndpointSlice, &[Some("ns".to_string())]);
        assert_eq!(
            specs.iter().map(|s| s.kind).collect::<Vec<_>>(),
            [
                KubernetesRole::EndpointSlice,
                KubernetesRole::Service,
                KubernetesRole::Pod
            ]
        );
        DiscoveryState::new(KubernetesRole::EndpointSlice, specs)
    }

    fn list<K>(state: &mut DiscoveryState, watch: usize, wrap: fn(watcher::Event<K>) -> KindEvent, objects: Vec<K>) {
        state.apply(WatchUpdate::event(watch, wrap(watcher::Event::Init)));
        for object in objects {
            state.apply(WatchUpdate::event(watch, wrap(watcher::Event::InitApply(object))));
        }
        state.apply(WatchUpdate::event(watch, wrap(watcher::Event::InitDone)));
    }

    #[test]
    fn synced_only_after_every_watch_listed_and_nothing_published_before() {
        let mut state = endpointslice_state();
        let (sender, receiver) = watch::channel(ProviderSnapshot::default());
        list(
            &mut state,
            SLICES,
            KindEvent::EndpointSlice,
            vec![slice("web-1", "p1", "10.0.0.1")],
        );
        list(
            &mut state,
            SERVICES,
            KindEvent::Service,
            vec![service(json!({"tier": "front"}))],
        );
        state.publish_to(&sender);
        assert!(!receiver.borrow().synced);
        assert!(
            receiver.borrow().groups.is_empty(),
            "nothing before the pods are listed"
        );
        assert_eq!(state.groups(), None);

        // The pods' list is still in progress: not synced.
        state.apply(WatchUpdate::event(PODS, KindEvent::Pod(watcher::Event::Init)));
        state.apply(WatchUpdate::event(
            PODS,
            KindEvent::Pod(watcher::Event::InitApply(pod("p1", "10.0.0.1", 8080))),
        ));
        assert!(!state.synced());
        state.apply(WatchUpdate::event(PODS, KindEvent::Pod(watcher::Event::InitDone)));
        assert!(state.synced());
        state.publish_to(&sender);
        let snapshot = receiver.borrow().clone();
        assert!(snapshot.synced);
        assert_eq!(snapshot.last_error, None);
        assert_eq!(addresses(&snapshot.groups), ["10.0.0.1:8080"]);
        let group = &snapshot.groups[0];
        assert_eq!(group.source, "endpointslice/ns/web-1");
        assert_eq!(group.labels.get("__meta_kubernetes_service_label_tier"), Some("front"));
        assert_eq!(group.targets[0].get("__meta_kubernetes_pod_name"), Some("p1"));
        assert_eq!(group.targets[0].get("__meta_kubernetes_pod_label_app"), Some("p1"));
    }

    #[test]
    fn pod_and_service_changes_rebuild_only_the_slices_that_refer_to_them() {
        let mut state = endpointslice_state();
        list(
            &mut state,
            SLICES,
            KindEvent::EndpointSlice,
            vec![slice("web-1", "p1", "10.0.0.1"), slice("web-2", "p2", "10.0.0.2")],
        );
        list(&mut state, SERVICES, KindEvent::Service, vec![service(json!({}))]);
        list(
            &mut state,
            PODS,
            KindEvent::Pod,
            vec![pod("p1", "10.0.0.1", 8080), pod("p2", "10.0.0.2", 8080)],
        );
        let before = state.groups().unwrap_or_default();
        assert_eq!(before.len(), 2);

        // A pod gains a container port: only its slice changes (a new uncovered-port target).
        state.apply(WatchUpdate::event(
            PODS,
            KindEvent::Pod(watcher::Event::Apply({
                let mut p = pod("p2", "10.0.0.2", 8080);
                if let Some(spec) = p.spec.as_mut()
                    && let Some(ports) = spec.containers[0].ports.as_mut()
                {
                    ports.push(object(json!({"containerPort": 9090})));
                }
                p
            })),
        ));
        let after_pod = state.groups().unwrap_or_default();
        assert!(Arc::ptr_eq(&before[0], &after_pod[0]), "web-1 untouched");
        assert_eq!(addresses(&after_pod[1..]), ["10.0.0.2:8080", "10.0.0.2:9090"]);

        // The service gains a label: both slices carry it.
        state.apply(WatchUpdate::event(
            SERVICES,
            KindEvent::Service(watcher::Event::Apply(service(json!({"team": "a"})))),
        ));
        let after_service = state.groups().unwrap_or_default();
        assert!(
            after_service
                .iter()
                .all(|g| g.labels.get("__meta_kubernetes_service_label_team") == Some("a"))
        );

        // An identical re-delivery (a resync) changes nothing, not even the allocations.
        state.apply(WatchUpdate::event(
            SERVICES,
            KindEvent::Service(watcher::Event::Apply(service(json!({"team": "a"})))),
        ));
        let again = state.groups().unwrap_or_default();
        assert!(again.iter().zip(&after_service).all(|(a, b)| Arc::ptr_eq(a, b)));

        // The pod goes away: its slice loses the pod labels (the endpoint itself remains).
        state.apply(WatchUpdate::event(
            PODS,
            KindEvent::Pod(watcher::Event::Delete(pod("p1", "10.0.0.1", 8080))),
        ));
        let after_delete = state.groups().unwrap_or_default();
        assert_eq!(after_delete[0].targets[0].get("__meta_kubernetes_pod_name"), None);
    }

    #[test]
    fn an_error_after_sync_keeps_the_last_good_groups_and_a_relist_replaces_them_only_when_complete() {
        let specs = watch_specs(KubernetesRole::Pod, &[Some("a".to_string()), Some("b".to_string())]);
        let mut state = DiscoveryState::new(KubernetesRole::Pod, specs);
        let (sender, receiver) = watch::channel(ProviderSnapshot::default());
        let in_namespace = |namespace: &str, name: &str, ip: &str| -> Pod {
            let mut p = pod(name, ip, 80);
            p.metadata.namespace = Some(namespace.to_string());
            p
        };
        list(&mut state, 0, KindEvent::Pod, vec![in_namespace("a", "p1", "10.0.0.1")]);
        // Namespace b's first list fails: nothing is synced, the error is reported.
        state.apply(WatchUpdate::Failed(1, "403 Forbidden".into()));
        state.publish_to(&sender);
        assert!(!receiver.borrow().synced);
        let error = receiver.borrow().last_error.clone().unwrap_or_default();
        assert!(error.contains("pod watch in namespace \"b\": 403 Forbidden"), "{error}");

        list(
            &mut state,
            1,
            KindEvent::Pod,
            vec![in_namespace("b", "p2", "10.0.0.2"), in_namespace("b", "p3", "10.0.0.3")],
        );
        state.publish_to(&sender);
        assert!(receiver.borrow().synced);
        assert_eq!(receiver.borrow().last_error, None);
        assert_eq!(
            addresses(&receiver.borrow().groups),
            ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]
        );

        // After sync, a failure keeps everything.
        state.apply(WatchUpdate::Failed(1, "connection refused".into()));
        state.publish_to(&sender);
        assert_eq!(receiver.borrow().groups.len(), 3);
        assert!(receiver.borrow().synced);
        assert!(receiver.borrow().last_error.is_some());

        // A relist of b in progress keeps b's old objects; completing it drops p3 only.
        state.apply(WatchUpdate::event(1, KindEvent::Pod(watcher::Event::Init)));
        state.apply(WatchUpdate::event(
            1,
            KindEvent::Pod(watcher::Event::InitApply(in_namespace("b", "p2", "10.0.0.2"))),
        ));
        state.publish_to(&sender);
        assert_eq!(receiver.borrow().groups.len(), 3, "no removal mid-relist");
        assert_eq!(receiver.borrow().last_error, None, "the watch delivers again");
        state.apply(WatchUpdate::event(1, KindEvent::Pod(watcher::Event::InitDone)));
        state.publish_to(&sender);
        assert_eq!(addresses(&receiver.borrow().groups), ["10.0.0.1:80", "10.0.0.2:80"]);
    }

    #[test]
    fn every_role_watches_its_kinds_in_every_namespace_and_nodes_once() {
        let namespaces = [Some("a".to_string()), Some("b".to_string())];
        assert_eq!(watch_specs(KubernetesRole::Endpoints, &namespaces).len(), 6);
        assert_eq!(watch_specs(KubernetesRole::Ingress, &namespaces).len(), 2);
        assert_eq!(
            watch_specs(KubernetesRole::Node, &namespaces),
            [WatchSpec {
                kind: KubernetesRole::Node,
                namespace: None
            }]
        );
        assert_eq!(
            watch_specs(KubernetesRole::Service, &[None]),
            [WatchSpec {
                kind: KubernetesRole::Service,
                namespace: None
            }]
        );
    }

    #[test]
    fn a_node_without_addresses_has_no_group_and_a_deleted_node_loses_its_group() {
        let mut state = DiscoveryState::new(KubernetesRole::Node, watch_specs(KubernetesRole::Node, &[None]));
        let with_address: Node = object(json!({
            "metadata": {"name": "n1"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.1.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        }));
        let bare: Node = object(json!({"metadata": {"name": "n2"}}));
        list(&mut state, 0, KindEvent::Node, vec![with_address.clone(), bare]);
        let groups = state.groups().unwrap_or_default();
        assert_eq!(addresses(&groups), ["10.1.0.1:10250"]);
        assert_eq!(groups[0].source, "node/n1");
        state.apply(WatchUpdate::event(
            0,
            KindEvent::Node(watcher::Event::Delete(with_address)),
        ));
        assert_eq!(state.groups().unwrap_or_default().len(), 0);
    }
}
