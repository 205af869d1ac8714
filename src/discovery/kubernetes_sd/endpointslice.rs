//! `role: endpointslice` (Prometheus `endpointslice.go`, `discovery.k8s.io/v1`): one group per
//! slice, `endpointslice/<namespace>/<name>`, with one target per endpoint address × slice
//! port. A target whose endpoint refers to a known pod gets the pod labels and, when a
//! container exposes that port, its container-port labels; every container port of such a
//! pod that no slice port covered becomes a target of its own. The group gets the labels of
//! the slice's service (the `kubernetes.io/service-name` label) when that service is known.
//! The secondary slice of a dual-stack service has no targets (they would repeat the primary
//! slice's).

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use ta_raft::intern::Symbol;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::META_PREFIX;
use super::NAMESPACE_LABEL;
use super::ObjectLookup;
use super::add_object_meta_labels;
use super::build_group;
use super::join_host_port;
use super::namespace_and_name;
use super::pod;
use super::pod::PodView;
use super::sanitize_label_name;
use super::service;

/// The label of a slice naming its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

pub const ADDRESS_TYPE: &str = "__meta_kubernetes_endpointslice_address_type";
pub const PORT_NAME: &str = "__meta_kubernetes_endpointslice_port_name";
pub const PORT_PROTOCOL: &str = "__meta_kubernetes_endpointslice_port_protocol";
pub const PORT: &str = "__meta_kubernetes_endpointslice_port";
pub const PORT_APP_PROTOCOL: &str = "__meta_kubernetes_endpointslice_port_app_protocol";
pub const CONDITIONS_READY: &str = "__meta_kubernetes_endpointslice_endpoint_conditions_ready";
pub const CONDITIONS_SERVING: &str = "__meta_kubernetes_endpointslice_endpoint_conditions_serving";
pub const CONDITIONS_TERMINATING: &str = "__meta_kubernetes_endpointslice_endpoint_conditions_terminating";
pub const ENDPOINT_ZONE: &str = "__meta_kubernetes_endpointslice_endpoint_zone";
pub const ENDPOINT_HOSTNAME: &str = "__meta_kubernetes_endpointslice_endpoint_hostname";
pub const ENDPOINT_NODE_NAME: &str = "__meta_kubernetes_endpointslice_endpoint_node_name";
pub const ADDRESS_TARGET_KIND: &str = "__meta_kubernetes_endpointslice_address_target_kind";
pub const ADDRESS_TARGET_NAME: &str = "__meta_kubernetes_endpointslice_address_target_name";

/// The group source of a slice.
pub fn endpoint_slice_source(namespace: &str, name: &str) -> String {
    format!("endpointslice/{namespace}/{name}")
}

/// What the conversion reads of a slice, taken once when it arrives. A typed `EndpointSlice`
/// keeps every decoded field (each endpoint's full `targetRef`, hints, the whole metadata):
/// measured at 100k endpoints, about 90 MB of the leader's memory; a view keeps the labels
/// each endpoint and port contributes, already interned, and the pod references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    namespace: String,
    name: String,
    /// The slice's own group labels: namespace, address type, name, labels, annotations.
    labels: LabelPairs,
    address_type: String,
    service: Option<String>,
    ports: Box<[PortView]>,
    endpoints: Box<[EndpointView]>,
}

/// One slice port: its number and the labels every target on it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortView {
    number: Option<i32>,
    labels: LabelPairs,
}

/// One endpoint: its addresses, the labels all its targets get, the pod it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointView {
    addresses: Box<[Symbol]>,
    labels: LabelPairs,
    /// `(namespace, name)` of the referenced pod (a `targetRef` of kind `Pod`).
    pod: Option<(Symbol, Symbol)>,
}

impl SliceView {
    /// The view of `slice`.
    pub fn of(slice: &EndpointSlice) -> Self {
        let (namespace, name) = namespace_and_name(&slice.metadata);
        let mut labels = LabelPairs::new();
        labels.set(NAMESPACE_LABEL, namespace);
        labels.set(ADDRESS_TYPE, slice.address_type.as_str());
        add_object_meta_labels(&mut labels, &slice.metadata, "endpointslice");
        let ports = slice
            .ports
            .iter()
            .flatten()
            .map(|port| {
                let mut labels = LabelPairs::new();
                if let Some(name) = &port.name {
                    labels.set(PORT_NAME, name.as_str());
                }
                if let Some(protocol) = &port.protocol {
                    labels.set(PORT_PROTOCOL, protocol.as_str());
                }
                if let Some(number) = port.port {
                    labels.set(PORT, number.to_string());
                }
                if let Some(app_protocol) = &port.app_protocol {
                    labels.set(PORT_APP_PROTOCOL, app_protocol.as_str());
                }
                PortView {
                    number: port.port,
                    labels: labels.shrunk(),
                }
            })
            .collect();
        let endpoints = slice
            .endpoints
            .iter()
            .map(|endpoint| EndpointView {
                addresses: endpoint.addresses.iter().map(|a| Symbol::new(a)).collect(),
                labels: endpoint_labels(endpoint).shrunk(),
                pod: super::pod_references(endpoint.target_ref.iter())
                    .next()
                    .map(|(namespace, name)| (Symbol::new(namespace), Symbol::new(name))),
            })
            .collect();
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            labels: labels.shrunk(),
            address_type: slice.address_type.clone(),
            service: service_name(slice).map(str::to_string),
            ports,
            endpoints,
        }
    }

    /// The name of the service the slice belongs to.
    pub fn service(&self) -> Option<&str> {
        self.service.as_deref()
    }

    /// The pods the slice's endpoints refer to, as `(namespace, name)`.
    pub fn referenced_pods(&self) -> impl Iterator<Item = (&str, &str)> {
        self.endpoints
            .iter()
            .filter_map(|endpoint| endpoint.pod.as_ref())
            .map(|(namespace, name)| (namespace.as_str(), name.as_str()))
    }
}

/// The name of the service a slice belongs to.
pub fn service_name(slice: &EndpointSlice) -> Option<&str> {
    slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
        .map(String::as_str)
}

/// The group of one slice, from its view; `services` and `pods` are what the provider
/// currently knows.
pub fn slice_group(
    slice: &SliceView,
    services: &dyn ObjectLookup<Service>,
    pods: &dyn ObjectLookup<PodView>,
) -> TargetGroup {
    let source = endpoint_slice_source(&slice.namespace, &slice.name);
    let mut labels = slice.labels.clone();
    let service = slice
        .service()
        .and_then(|service| services.find(&slice.namespace, service));
    if let Some(service) = service {
        labels.merge(&service::service_labels(service));
    }
    if service.is_some_and(|service| is_secondary_ip_family(service, &slice.address_type)) {
        return build_group(source, Vec::new(), labels);
    }

    let mut targets = Vec::new();
    // Pods met, in the order met, with the slice ports their targets already cover.
    let mut seen_pods: Vec<(&PodView, Vec<i32>)> = Vec::new();
    for endpoint in &slice.endpoints {
        let pod = endpoint
            .pod
            .as_ref()
            .and_then(|(namespace, name)| pods.find(namespace.as_str(), name.as_str()));
        for port in &slice.ports {
            // The container port labels depend on the pod and the port, not the address.
            let container = pod
                .zip(port.number)
                .and_then(|(pod, number)| pod::matching_container_port_labels(pod, number, None));
            for address in &endpoint.addresses {
                let mut target = LabelPairs::new();
                match port.number {
                    Some(number) => target.set(ADDRESS_LABEL, join_host_port(address.as_str(), number)),
                    None => target.set_symbols(super::constant(ADDRESS_LABEL), address.clone()),
                }
                target.merge(&port.labels);
                target.merge(&endpoint.labels);
                if let Some(pod) = pod {
                    pod::merge_pod_labels(&mut target, pod);
                    if let Some(container) = &container {
                        target.merge(container);
                    }
                    super::note_covered_port(&mut seen_pods, pod, port.number);
                }
                targets.push(target);
            }
        }
    }
    for (pod, covered) in &seen_pods {
        targets.extend(pod::uncovered_container_port_targets(pod, covered));
    }
    build_group(source, targets, labels)
}

/// The labels of one endpoint, shared by its targets (every port and address).
fn endpoint_labels(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> LabelPairs {
    let mut labels = LabelPairs::new();
    let conditions = endpoint.conditions.as_ref();
    for (label, condition) in [
        (CONDITIONS_READY, conditions.and_then(|c| c.ready)),
        (CONDITIONS_SERVING, conditions.and_then(|c| c.serving)),
        (CONDITIONS_TERMINATING, conditions.and_then(|c| c.terminating)),
    ] {
        if let Some(value) = condition {
            labels.set(label, value);
        }
    }
    if let Some(hostname) = &endpoint.hostname {
        labels.set(ENDPOINT_HOSTNAME, hostname.as_str());
    }
    if let Some(reference) = &endpoint.target_ref {
        labels.set(ADDRESS_TARGET_KIND, reference.kind.as_deref().unwrap_or_default());
        labels.set(ADDRESS_TARGET_NAME, reference.name.as_deref().unwrap_or_default());
    }
    if let Some(node_name) = &endpoint.node_name {
        labels.set(ENDPOINT_NODE_NAME, node_name.as_str());
    }
    if let Some(zone) = &endpoint.zone {
        labels.set(ENDPOINT_ZONE, zone.as_str());
    }
    for (key, value) in endpoint.deprecated_topology.iter().flatten() {
        let key = sanitize_label_name(key);
        labels.set_built(
            format!("{META_PREFIX}endpointslice_endpoint_topology_{key}"),
            value.as_str(),
        );
        labels.set_built(
            format!("{META_PREFIX}endpointslice_endpoint_topology_present_{key}"),
            "true",
        );
    }
    labels
}

/// Whether `slice` is the secondary IP family of a dual-stack service: its address type is
/// not the service's first IP family.
fn is_secondary_ip_family(service: &Service, address_type: &str) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    let dual_stack = matches!(
        spec.ip_family_policy.as_deref(),
        Some("PreferDualStack" | "RequireDualStack")
    );
    match spec.ip_families.as_deref().and_then(|families| families.first()) {
        Some(primary) if dual_stack => primary != address_type,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    /// The group of `slice` as the provider builds it, from the slice's view.
    fn endpoint_slice_group(
        slice: &EndpointSlice,
        services: &dyn ObjectLookup<Service>,
        pods: &dyn ObjectLookup<PodView>,
    ) -> TargetGroup {
        slice_group(&SliceView::of(slice), services, pods)
    }

    /// Prometheus's `makeEndpointSliceV1`.
    fn slice() -> EndpointSlice {
        object(json!({
            "metadata": {
                "name": "testendpoints",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "testendpoints"},
                "annotations": {"test.annotation": "test"}
            },
            "addressType": "IPv4",
            "ports": [{"name": "testport", "port": 9000, "protocol": "TCP", "appProtocol": "http"}],
            "endpoints": [
                {
                    "addresses": ["1.2.3.4"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "hostname": "testendpoint1",
                    "targetRef": {},
                    "nodeName": "foobar",
                    "deprecatedTopology": {"topology": "value"},
                    "zone": "us-east-1a"
                },
                {
                    "addresses": ["2.3.4.5"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "zone": "us-east-1b"
                },
                {
                    "addresses": ["3.4.5.6"],
                    "conditions": {"ready": false, "serving": true, "terminating": true},
                    "zone": "us-east-1c"
                },
                {
                    "addresses": ["4.5.6.7"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "targetRef": {"kind": "Node", "name": "barbaz"},
                    "zone": "us-east-1a"
                }
            ]
        }))
    }

    const SLICE_PORT: [(&str, &str); 4] = [
        ("__meta_kubernetes_endpointslice_port", "9000"),
        ("__meta_kubernetes_endpointslice_port_app_protocol", "http"),
        ("__meta_kubernetes_endpointslice_port_name", "testport"),
        ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
    ];

    fn with_port(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        pairs.iter().copied().chain(SLICE_PORT).collect()
    }

    fn expected_targets() -> Vec<Vec<(&'static str, &'static str)>> {
        vec![
            with_port(&[
                ("__address__", "1.2.3.4:9000"),
                ("__meta_kubernetes_endpointslice_address_target_kind", ""),
                ("__meta_kubernetes_endpointslice_address_target_name", ""),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "true"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                    "false",
                ),
                ("__meta_kubernetes_endpointslice_endpoint_hostname", "testendpoint1"),
                ("__meta_kubernetes_endpointslice_endpoint_node_name", "foobar"),
                (
                    "__meta_kubernetes_endpointslice_endpoint_topology_present_topology",
                    "true",
                ),
                ("__meta_kubernetes_endpointslice_endpoint_topology_topology", "value"),
                ("__meta_kubernetes_endpointslice_endpoint_zone", "us-east-1a"),
            ]),
            with_port(&[
                ("__address__", "2.3.4.5:9000"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "true"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                    "false",
                ),
                ("__meta_kubernetes_endpointslice_endpoint_zone", "us-east-1b"),
            ]),
            with_port(&[
                ("__address__", "3.4.5.6:9000"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "false"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                    "true",
                ),
                ("__meta_kubernetes_endpointslice_endpoint_zone", "us-east-1c"),
            ]),
            with_port(&[
                ("__address__", "4.5.6.7:9000"),
                ("__meta_kubernetes_endpointslice_address_target_kind", "Node"),
                ("__meta_kubernetes_endpointslice_address_target_name", "barbaz"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "true"),
                ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                    "false",
                ),
                ("__meta_kubernetes_endpointslice_endpoint_zone", "us-east-1a"),
            ]),
        ]
    }

    const SLICE_LABELS: [(&str, &str); 7] = [
        ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
        ("__meta_kubernetes_namespace", "default"),
        ("__meta_kubernetes_endpointslice_name", "testendpoints"),
        (
            "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
            "testendpoints",
        ),
        (
            "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name",
            "true",
        ),
        ("__meta_kubernetes_endpointslice_annotation_test_annotation", "test"),
        (
            "__meta_kubernetes_endpointslice_annotationpresent_test_annotation",
            "true",
        ),
    ];

    fn no_services() -> Vec<Service> {
        Vec::new()
    }

    fn no_pods() -> Vec<PodView> {
        Vec::new()
    }

    fn targets_of<'a>(expected: &'a [Vec<(&'static str, &'static str)>]) -> Vec<&'a [(&'static str, &'static str)]> {
        expected.iter().map(|target| target.as_slice()).collect()
    }

    #[test]
    fn a_slice_without_known_service_or_pods_matches_prometheus() {
        let group = endpoint_slice_group(&slice(), &no_services(), &no_pods());
        let expected = expected_targets();
        assert_group(
            &group,
            "endpointslice/default/testendpoints",
            &SLICE_LABELS,
            &targets_of(&expected),
        );
    }

    #[test]
    fn the_known_service_adds_its_labels_to_the_group() {
        let services: Vec<Service> = vec![object(json!({
            "metadata": {"name": "testendpoints", "namespace": "default", "labels": {"app/name": "test"}}
        }))];
        let group = endpoint_slice_group(&slice(), &services, &no_pods());
        let mut labels = SLICE_LABELS.to_vec();
        labels.extend([
            ("__meta_kubernetes_service_label_app_name", "test"),
            ("__meta_kubernetes_service_labelpresent_app_name", "true"),
            ("__meta_kubernetes_service_name", "testendpoints"),
        ]);
        let expected = expected_targets();
        assert_group(
            &group,
            "endpointslice/default/testendpoints",
            &labels,
            &targets_of(&expected),
        );
    }

    fn pod_labels_of_testpod(ip: &'static str) -> [(&'static str, &'static str); 7] {
        [
            ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
            ("__meta_kubernetes_pod_ip", ip),
            ("__meta_kubernetes_pod_name", "testpod"),
            ("__meta_kubernetes_pod_node_name", "testnode"),
            ("__meta_kubernetes_pod_phase", ""),
            ("__meta_kubernetes_pod_ready", "unknown"),
            ("__meta_kubernetes_pod_uid", "deadbeef"),
        ]
    }

    #[test]
    fn a_pod_endpoint_gets_pod_and_container_labels_and_uncovered_ports_become_targets() {
        // Prometheus's `TestEndpointSliceDiscoveryAdd`.
        let pods: Vec<PodView> = vec![PodView::of(&object(json!({
            "metadata": {"name": "testpod", "namespace": "default", "uid": "deadbeef"},
            "spec": {
                "nodeName": "testnode",
                "containers": [
                    {"name": "c1", "image": "c1:latest",
                     "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]},
                    {"name": "c2", "image": "c2:latest",
                     "ports": [{"name": "sideport", "containerPort": 9001, "protocol": "TCP"}]}
                ]
            },
            "status": {"hostIP": "2.3.4.5", "podIP": "1.2.3.4"}
        })))];
        let slice: EndpointSlice = object(json!({
            "metadata": {"name": "testendpoints", "namespace": "default"},
            "addressType": "IPv4",
            "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}],
            "endpoints": [{
                "addresses": ["4.3.2.1"],
                "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"},
                "conditions": {"ready": false}
            }]
        }));
        let group = endpoint_slice_group(&slice, &no_services(), &pods);
        let pod_labels = pod_labels_of_testpod("1.2.3.4");
        let first: Vec<_> = [
            ("__address__", "4.3.2.1:9000"),
            ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpointslice_address_target_name", "testpod"),
            ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "false"),
            ("__meta_kubernetes_endpointslice_port", "9000"),
            ("__meta_kubernetes_endpointslice_port_name", "testport"),
            ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_name", "c1"),
            ("__meta_kubernetes_pod_container_image", "c1:latest"),
            ("__meta_kubernetes_pod_container_port_name", "mainport"),
            ("__meta_kubernetes_pod_container_port_number", "9000"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ]
        .into_iter()
        .chain(pod_labels)
        .collect();
        let second: Vec<_> = [
            ("__address__", "1.2.3.4:9001"),
            ("__meta_kubernetes_pod_container_name", "c2"),
            ("__meta_kubernetes_pod_container_image", "c2:latest"),
            ("__meta_kubernetes_pod_container_port_name", "sideport"),
            ("__meta_kubernetes_pod_container_port_number", "9001"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
        ]
        .into_iter()
        .chain(pod_labels)
        .collect();
        assert_group(
            &group,
            "endpointslice/default/testendpoints",
            &[
                ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
                ("__meta_kubernetes_endpointslice_name", "testendpoints"),
                ("__meta_kubernetes_namespace", "default"),
            ],
            &[&first, &second],
        );
    }

    #[test]
    fn init_container_ports_match_and_uncovered_ones_are_exposed() {
        // Prometheus's `TestEndpointSliceDiscoverySidecarContainer`.
        let pods: Vec<PodView> = vec![PodView::of(&object(json!({
            "metadata": {"name": "testpod", "namespace": "default", "uid": "deadbeef"},
            "spec": {
                "nodeName": "testnode",
                "initContainers": [
                    {"name": "ic1", "image": "ic1:latest",
                     "ports": [{"name": "initport", "containerPort": 1111, "protocol": "TCP"}]},
                    {"name": "ic2", "image": "ic2:latest",
                     "ports": [{"name": "initport", "containerPort": 9111, "protocol": "TCP"}]}
                ],
                "containers": [
                    {"name": "c1", "image": "c1:latest",
                     "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]}
                ]
            },
            "status": {"hostIP": "2.3.4.5", "podIP": "4.3.2.1"}
        })))];
        let slice: EndpointSlice = object(json!({
            "metadata": {"name": "testsidecar", "namespace": "default"},
            "addressType": "IPv4",
            "ports": [
                {"name": "testport", "port": 9000, "protocol": "TCP"},
                {"name": "initport", "port": 9111, "protocol": "TCP"}
            ],
            "endpoints": [{
                "addresses": ["4.3.2.1"],
                "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"}
            }]
        }));
        let group = endpoint_slice_group(&slice, &no_services(), &pods);
        let pod_labels = pod_labels_of_testpod("4.3.2.1");
        let endpoint_target =
            |port: &'static str, port_name: &'static str, container: &'static str, init: &'static str| {
                let address = if port == "9000" { "4.3.2.1:9000" } else { "4.3.2.1:9111" };
                let image = if container == "c1" { "c1:latest" } else { "ic2:latest" };
                let container_port_name = if container == "c1" { "mainport" } else { "initport" };
                [
                    ("__address__", address),
                    ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
                    ("__meta_kubernetes_endpointslice_address_target_name", "testpod"),
                    ("__meta_kubernetes_endpointslice_port", port),
                    ("__meta_kubernetes_endpointslice_port_name", port_name),
                    ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_image", image),
                    ("__meta_kubernetes_pod_container_name", container),
                    ("__meta_kubernetes_pod_container_port_name", container_port_name),
                    ("__meta_kubernetes_pod_container_port_number", port),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", init),
                ]
                .into_iter()
                .chain(pod_labels)
                .collect::<Vec<_>>()
            };
        let uncovered: Vec<_> = [
            ("__address__", "4.3.2.1:1111"),
            ("__meta_kubernetes_pod_container_image", "ic1:latest"),
            ("__meta_kubernetes_pod_container_name", "ic1"),
            ("__meta_kubernetes_pod_container_port_name", "initport"),
            ("__meta_kubernetes_pod_container_port_number", "1111"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "true"),
        ]
        .into_iter()
        .chain(pod_labels)
        .collect();
        assert_group(
            &group,
            "endpointslice/default/testsidecar",
            &[
                ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
                ("__meta_kubernetes_endpointslice_name", "testsidecar"),
                ("__meta_kubernetes_namespace", "default"),
            ],
            &[
                &endpoint_target("9000", "testport", "c1", "false"),
                &endpoint_target("9111", "initport", "ic2", "true"),
                &uncovered,
            ],
        );
    }

    fn dual_stack_service(policy: &str, families: &[&str]) -> Service {
        object(json!({
            "metadata": {"name": "testendpoints", "namespace": "default"},
            "spec": {"ipFamilyPolicy": policy, "ipFamilies": families}
        }))
    }

    #[test]
    fn the_secondary_slice_of_a_dual_stack_service_has_no_targets() {
        let mut v6 = slice();
        v6.address_type = "IPv6".into();
        for policy in ["PreferDualStack", "RequireDualStack"] {
            let services = vec![dual_stack_service(policy, &["IPv4", "IPv6"])];
            let group = endpoint_slice_group(&v6, &services, &no_pods());
            assert!(group.targets.is_empty(), "{policy}");
            assert_eq!(
                group.labels.get("__meta_kubernetes_service_name"),
                Some("testendpoints")
            );
            let primary = endpoint_slice_group(&slice(), &services, &no_pods());
            assert_eq!(primary.targets.len(), 4, "{policy}");
        }
        let single_stack = vec![dual_stack_service("SingleStack", &["IPv4"])];
        let group = endpoint_slice_group(&v6, &single_stack, &no_pods());
        assert_eq!(group.targets.len(), 4);
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_a_portless_slice_port_keeps_the_bare_address() {
        let slice: EndpointSlice = object(json!({
            "metadata": {"name": "s", "namespace": "ns"},
            "addressType": "IPv6",
            "ports": [{"port": 8080}, {"name": "any"}],
            "endpoints": [{"addresses": ["fd00::1"]}]
        }));
        let group = endpoint_slice_group(&slice, &no_services(), &no_pods());
        assert_group(
            &group,
            "endpointslice/ns/s",
            &[
                ("__meta_kubernetes_endpointslice_address_type", "IPv6"),
                ("__meta_kubernetes_endpointslice_name", "s"),
                ("__meta_kubernetes_namespace", "ns"),
            ],
            &[
                &[
                    ("__address__", "[fd00::1]:8080"),
                    ("__meta_kubernetes_endpointslice_port", "8080"),
                ],
                &[
                    ("__address__", "fd00::1"),
                    ("__meta_kubernetes_endpointslice_port_name", "any"),
                ],
            ],
        );
    }

    #[test]
    fn the_view_names_the_service_and_only_the_pods_referenced() {
        let view = SliceView::of(&slice());
        assert_eq!(view.service(), Some("testendpoints"));
        assert_eq!(
            view.referenced_pods().count(),
            0,
            "an empty targetRef and a Node are not pods"
        );
        let with_pod: EndpointSlice = object(json!({
            "metadata": {"name": "s", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["1.2.3.4"], "targetRef": {"kind": "Pod", "name": "p", "namespace": "other"}},
                {"addresses": ["1.2.3.5"], "targetRef": {"kind": "Node", "name": "n"}}
            ]
        }));
        let view = SliceView::of(&with_pod);
        assert_eq!(view.service(), None);
        assert_eq!(view.referenced_pods().collect::<Vec<_>>(), [("other", "p")]);
    }
}
