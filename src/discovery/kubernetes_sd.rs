//! `kubernetes_sd_configs`: targets from the Kubernetes API, as Prometheus's
//! `discovery/kubernetes`, with the same roles, the same `__meta_kubernetes_*` labels and
//! values, the same target addresses and the same group sources, so relabel rules written for
//! Prometheus (or upstream's allocator, which embeds it) keep working unchanged.
//!
//! The conversion from API objects to target groups is pure, one submodule per role
//! ([`pod`], [`service`], [`endpoints`], [`endpointslice`], [`node`], [`ingress`]); the
//! [`state`] module keeps the watched objects and decides when the provider is synced; the
//! [`provider`] module runs the kube-runtime watchers and publishes.
//!
//! Not supported yet: `attach_metadata` (accepted, reported, ignored), the HTTP client
//! settings (authorization, TLS) next to `api_server` (accepted, reported, ignored).

pub mod endpoints;
pub mod endpointslice;
pub mod ingress;
pub mod node;
pub mod objects;
pub mod pod;
pub mod provider;
pub mod service;
pub mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rustc_hash::FxBuildHasher;

use super::Labels;
use super::TargetGroup;
use pod::PodView;
use ta_raft::intern::Symbol;

pub use provider::KubernetesProvider;

/// The kind of object a `kubernetes_sd_configs` entry turns into targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubernetesRole {
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    Node,
    Ingress,
}

impl KubernetesRole {
    /// Every role, in the order Prometheus's messages list them.
    pub const ALL: [KubernetesRole; 6] = [
        KubernetesRole::Pod,
        KubernetesRole::Service,
        KubernetesRole::Endpoints,
        KubernetesRole::EndpointSlice,
        KubernetesRole::Node,
        KubernetesRole::Ingress,
    ];

    /// The role named as in the configuration (case-sensitive, as Prometheus).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesRole::Pod => "pod",
            KubernetesRole::Service => "service",
            KubernetesRole::Endpoints => "endpoints",
            KubernetesRole::EndpointSlice => "endpointslice",
            KubernetesRole::Node => "node",
            KubernetesRole::Ingress => "ingress",
        }
    }

    /// The roles whose `selectors` entries this role accepts: the kinds of objects it
    /// watches (Prometheus's `allowedSelectors`; `node` for `pod` serves `attach_metadata`).
    pub fn allowed_selector_roles(self) -> &'static [KubernetesRole] {
        match self {
            KubernetesRole::Pod => &[KubernetesRole::Pod, KubernetesRole::Node],
            KubernetesRole::Service => &[KubernetesRole::Service],
            KubernetesRole::Endpoints => &[KubernetesRole::Pod, KubernetesRole::Service, KubernetesRole::Endpoints],
            KubernetesRole::EndpointSlice => &[
                KubernetesRole::Pod,
                KubernetesRole::Service,
                KubernetesRole::EndpointSlice,
            ],
            KubernetesRole::Node => &[KubernetesRole::Node],
            KubernetesRole::Ingress => &[KubernetesRole::Ingress],
        }
    }
}

impl fmt::Display for KubernetesRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `namespaces:` of a `kubernetes_sd_configs` entry. Neither set means every namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceDiscovery {
    /// Also watch the namespace the allocator runs in (in-cluster only).
    pub own_namespace: bool,
    pub names: Vec<String>,
}

/// One `selectors:` entry: restricts the watch of one kind of object, server-side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSelector {
    /// The kind of object the selector applies to.
    pub role: KubernetesRole,
    /// A Kubernetes label selector (`app=web,tier!=db`), passed as is.
    pub label: Option<String>,
    /// A Kubernetes field selector (`metadata.name=x`), passed as is.
    pub field: Option<String>,
}

/// `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesSdConfig {
    pub role: KubernetesRole,
    /// An explicit API server URL; with neither this nor `kubeconfig_file`, the in-cluster
    /// configuration (or the local kubeconfig) is used.
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<String>,
    pub namespaces: NamespaceDiscovery,
    /// At most one per role (checked when the configuration is read).
    pub selectors: Vec<RoleSelector>,
}

impl KubernetesSdConfig {
    /// A configuration for `role` with every option at its default.
    pub fn new(role: KubernetesRole) -> Self {
        Self {
            role,
            api_server: None,
            kubeconfig_file: None,
            namespaces: NamespaceDiscovery::default(),
            selectors: Vec::new(),
        }
    }

    /// The selector configured for watches of `kind`, if any.
    pub fn selector_for(&self, kind: KubernetesRole) -> Option<&RoleSelector> {
        self.selectors.iter().find(|selector| selector.role == kind)
    }
}

/// The common prefix of every label this discovery sets.
pub const META_PREFIX: &str = "__meta_kubernetes_";
/// The namespace of the object a group came from.
pub const NAMESPACE_LABEL: &str = "__meta_kubernetes_namespace";
/// The value of every `*_present` companion label.
const PRESENT: &str = "true";

/// Prometheus's `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes
/// `_` (one per character, so `é` is one `_`, as Go's regexp replaces whole runes).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// Go's `net.JoinHostPort`: an IPv6 address (anything with a colon) is bracketed.
pub fn join_host_port(host: &str, port: impl fmt::Display) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The symbol of a constant string, from a per-thread cache keyed by the string's address:
/// label names are the same few dozen constants for every target, and interning each again
/// (a lock and a hash of the text) was a large part of building an EndpointSlice group.
pub fn constant(text: &'static str) -> Symbol {
    derived_constant(text, "", || text.to_string())
}

/// The symbol of a string made from two constants (`make` builds its text), cached per
/// thread by the constants' addresses like [`constant`].
fn derived_constant(first: &'static str, second: &'static str, make: impl FnOnce() -> String) -> Symbol {
    type Key = (usize, usize, usize, usize);
    thread_local! {
        static CONSTANTS: RefCell<HashMap<Key, Symbol, FxBuildHasher>> = RefCell::default();
    }
    let key = (
        first.as_ptr() as usize,
        first.len(),
        second.as_ptr() as usize,
        second.len(),
    );
    CONSTANTS.with_borrow_mut(|constants| constants.entry(key).or_insert_with(|| Symbol::new(&make())).clone())
}

/// A label value as [`LabelPairs::set`] takes it: text is interned, a symbol is shared, a
/// boolean is written as Go's `strconv.FormatBool` writes it.
pub trait LabelValue {
    fn into_symbol(self) -> Symbol;
}

impl LabelValue for &str {
    fn into_symbol(self) -> Symbol {
        Symbol::new(self)
    }
}

impl LabelValue for String {
    fn into_symbol(self) -> Symbol {
        Symbol::new(&self)
    }
}

impl LabelValue for &String {
    fn into_symbol(self) -> Symbol {
        Symbol::new(self)
    }
}

impl LabelValue for &Symbol {
    fn into_symbol(self) -> Symbol {
        self.clone()
    }
}

impl LabelValue for bool {
    fn into_symbol(self) -> Symbol {
        constant(if self { "true" } else { "false" })
    }
}

/// Labels being assembled as Prometheus assembles a `model.LabelSet` (a map): setting a
/// name again replaces its value, and merging another set lets that set's values win.
/// Names and values are interned as they are set, so that a pod's labels, kept as symbols in
/// its [`pod::PodView`], are merged into each of its targets without a string copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelPairs(Vec<(Symbol, Symbol)>);

impl LabelPairs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a label whose name is a constant of this module: its symbol is looked up by
    /// address in a per-thread cache instead of interned again for every target.
    pub fn set(&mut self, name: &'static str, value: impl LabelValue) {
        self.0.push((constant(name), value.into_symbol()));
    }

    /// [`LabelPairs::set`] for a name built at run time (from a label key, say).
    pub fn set_built(&mut self, name: impl AsRef<str>, value: impl LabelValue) {
        self.0.push((Symbol::new(name.as_ref()), value.into_symbol()));
    }

    /// The same pairs without spare capacity, for sets kept for long.
    pub fn shrunk(mut self) -> Self {
        self.0.shrink_to_fit();
        self
    }

    /// Append already interned pairs (later ones win, as with [`LabelPairs::set`]).
    pub fn extend_symbols<'a>(&mut self, pairs: impl IntoIterator<Item = &'a (Symbol, Symbol)>) {
        self.0.extend(pairs.into_iter().cloned());
    }

    /// [`LabelPairs::set`] with strings already interned.
    pub fn set_symbols(&mut self, name: Symbol, value: Symbol) {
        self.0.push((name, value));
    }

    /// `model.LabelSet.Merge(other)`: `other` wins on a clash.
    pub fn merge(&mut self, other: &LabelPairs) {
        self.0.extend(other.0.iter().cloned());
    }

    /// The final set: sorted by name, the last value set for a name kept.
    pub fn into_labels(self) -> Labels {
        Labels::new(self.0)
    }

    /// The pairs in the order set (later ones win).
    pub fn pairs(&self) -> &[(Symbol, Symbol)] {
        &self.0
    }

    /// The final set as plain strings, for tests and messages.
    pub fn to_map(&self) -> std::collections::BTreeMap<String, String> {
        self.0.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }
}

/// `__meta_kubernetes_<resource>_label_<name>` and `_labelpresent_<name>` for every label,
/// the same pair for annotations (Prometheus's `addObjectAnnotationsAndLabels`).
pub fn add_labels_and_annotations(pairs: &mut LabelPairs, meta: &ObjectMeta, resource: &'static str) {
    let present = constant(PRESENT);
    for (kind, map) in [
        (MetaKind::Label, &meta.labels),
        (MetaKind::Annotation, &meta.annotations),
    ] {
        for (key, value) in map.iter().flatten() {
            let (name, present_name) = meta_label_names(resource, kind, key);
            pairs.set_symbols(name, Symbol::new(value));
            pairs.set_symbols(present_name, present.clone());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum MetaKind {
    Label,
    Annotation,
}

/// Distinct `(resource, kind, key)` names kept by [`meta_label_names`] before it starts over
/// (a cluster has a few hundred label and annotation keys; this bounds a pathological one).
const META_NAMES_KEPT: usize = 16_384;

/// The two label names of one Kubernetes label or annotation key, interned. Every pod of a
/// deployment has the same keys, so the names are formatted and interned once per key (per
/// thread) rather than twice per pod.
fn meta_label_names(resource: &'static str, kind: MetaKind, key: &str) -> (Symbol, Symbol) {
    type Names = HashMap<(&'static str, MetaKind), HashMap<Box<str>, (Symbol, Symbol), FxBuildHasher>>;
    thread_local! {
        static NAMES: RefCell<(Names, usize)> = RefCell::default();
    }
    NAMES.with_borrow_mut(|(names, kept)| {
        if let Some(found) = names.get(&(resource, kind)).and_then(|keys| keys.get(key)) {
            return found.clone();
        }
        if *kept >= META_NAMES_KEPT {
            names.clear();
            *kept = 0;
        }
        let (kind_text, present_text) = match kind {
            MetaKind::Label => ("label", "labelpresent"),
            MetaKind::Annotation => ("annotation", "annotationpresent"),
        };
        let sanitized = sanitize_label_name(key);
        let built = (
            Symbol::new(&format!("{META_PREFIX}{resource}_{kind_text}_{sanitized}")),
            Symbol::new(&format!("{META_PREFIX}{resource}_{present_text}_{sanitized}")),
        );
        names
            .entry((resource, kind))
            .or_default()
            .insert(key.into(), built.clone());
        *kept += 1;
        built
    })
}

/// `__meta_kubernetes_<role>_name` plus the labels and annotations (`addObjectMetaLabels`).
pub fn add_object_meta_labels(pairs: &mut LabelPairs, meta: &ObjectMeta, resource: &'static str) {
    let name = derived_constant(resource, "_name", || format!("{META_PREFIX}{resource}_name"));
    pairs.set_symbols(name, Symbol::new(meta.name.as_deref().unwrap_or_default()));
    add_labels_and_annotations(pairs, meta, resource);
}

/// Finds the objects a conversion refers to by namespace and name (the pods and the service
/// of an endpoints role), so the conversions stay pure: the provider passes its caches,
/// tests pass plain vectors.
pub trait ObjectLookup<K> {
    fn find(&self, namespace: &str, name: &str) -> Option<&K>;
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>> ObjectLookup<K> for Vec<K> {
    fn find(&self, namespace: &str, name: &str) -> Option<&K> {
        self.iter()
            .find(|object| namespace_and_name(object.metadata()) == (namespace, name))
    }
}

impl ObjectLookup<PodView> for Vec<PodView> {
    fn find(&self, namespace: &str, name: &str) -> Option<&PodView> {
        self.iter()
            .find(|pod| pod.namespace.as_str() == namespace && pod.name.as_str() == name)
    }
}

/// The namespace and name of an object, `""` for what is absent.
/// The pods among object references (an endpoint's `targetRef`), as `(namespace, name)`.
pub(crate) fn pod_references<'a>(
    references: impl Iterator<Item = &'a ObjectReference>,
) -> impl Iterator<Item = (&'a str, &'a str)> {
    references
        .filter(|reference| reference.kind.as_deref() == Some("Pod"))
        .map(|reference| {
            (
                reference.namespace.as_deref().unwrap_or_default(),
                reference.name.as_deref().unwrap_or_default(),
            )
        })
}

/// The pod an endpoint's `targetRef` names, if the provider knows it.
pub(crate) fn referenced_pod<'p>(
    reference: Option<&ObjectReference>,
    pods: &'p dyn ObjectLookup<PodView>,
) -> Option<&'p PodView> {
    let (namespace, name) = pod_references(reference.into_iter()).next()?;
    pods.find(namespace, name)
}

/// Notes that an endpoint covered `port` of `pod`: the endpoints roles then add targets for
/// the pod's container ports no endpoint covered, as Prometheus does.
pub(crate) fn note_covered_port<'p>(seen_pods: &mut Vec<(&'p PodView, Vec<i32>)>, pod: &'p PodView, port: Option<i32>) {
    match seen_pods
        .iter_mut()
        .find(|(seen, _)| seen.namespace == pod.namespace && seen.name == pod.name)
    {
        Some((_, covered)) => covered.extend(port),
        None => seen_pods.push((pod, port.into_iter().collect())),
    }
}

pub(crate) fn namespace_and_name(meta: &ObjectMeta) -> (&str, &str) {
    (
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// A group from assembled labels.
pub(crate) fn build_group(source: String, targets: Vec<LabelPairs>, labels: LabelPairs) -> TargetGroup {
    TargetGroup {
        source: source.into(),
        targets: targets.into_iter().map(LabelPairs::into_labels).collect(),
        labels: labels.into_labels(),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Fixtures as JSON (the shape the API server sends) and comparisons against label sets
    //! written out as Prometheus's tests write them.

    use std::collections::BTreeMap;

    use super::super::Labels;
    use super::super::TargetGroup;

    /// Decode a fixture; a fixture that does not decode is a bug in the test.
    pub fn object<K: serde::de::DeserializeOwned>(json: serde_json::Value) -> K {
        match serde_json::from_value(json) {
            Ok(object) => object,
            Err(error) => panic!("fixture does not decode: {error}"),
        }
    }

    pub fn map(labels: &Labels) -> BTreeMap<String, String> {
        labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    pub fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let expected: BTreeMap<String, String> = pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        assert_eq!(expected.len(), pairs.len(), "a name is repeated in the expectation");
        expected
    }

    /// Assert a group's source, group labels and targets (in order).
    pub fn assert_group(group: &TargetGroup, source: &str, labels: &[(&str, &str)], targets: &[&[(&str, &str)]]) {
        assert_eq!(group.source, source);
        assert_eq!(map(&group.labels), expected(labels), "group labels of {source}");
        let actual: Vec<_> = group.targets.iter().map(map).collect();
        let wanted: Vec<_> = targets.iter().map(|t| expected(t)).collect();
        assert_eq!(actual.len(), wanted.len(), "number of targets of {source}: {actual:#?}");
        for (index, (a, w)) in actual.iter().zip(&wanted).enumerate() {
            assert_eq!(a, w, "target {index} of {source}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitised_as_prometheus_does() {
        assert_eq!(sanitize_label_name("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize_label_name("test-label"), "test_label");
        assert_eq!(sanitize_label_name("Already_OK_9"), "Already_OK_9");
        assert_eq!(sanitize_label_name("é"), "_");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("1.2.3.4", 80), "1.2.3.4:80");
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("svc.ns.svc", "8080"), "svc.ns.svc:8080");
    }

    #[test]
    fn a_later_value_and_a_merged_set_win() {
        let mut pairs = LabelPairs::new();
        pairs.set("a", "1");
        pairs.set("b", "1");
        pairs.set("a", "2");
        let mut other = LabelPairs::new();
        other.set("b", "3");
        pairs.merge(&other);
        let labels = pairs.into_labels();
        assert_eq!(labels.get("a"), Some("2"));
        assert_eq!(labels.get("b"), Some("3"));
    }

    #[test]
    fn roles_parse_case_sensitively_and_selectors_follow_prometheus() {
        assert_eq!(
            KubernetesRole::parse("endpointslice"),
            Some(KubernetesRole::EndpointSlice)
        );
        assert_eq!(KubernetesRole::parse("Pod"), None);
        assert!(
            KubernetesRole::Pod
                .allowed_selector_roles()
                .contains(&KubernetesRole::Node)
        );
        assert!(
            !KubernetesRole::Service
                .allowed_selector_roles()
                .contains(&KubernetesRole::Pod)
        );
    }
}
