//! `role: endpoints` (Prometheus `endpoints.go`, core/v1 `Endpoints`, deprecated by
//! Kubernetes in favour of EndpointSlices but still what many configurations use): one group
//! per Endpoints object, `endpoints/<namespace>/<name>`, with one target per subset port ×
//! address, ready addresses first (`__meta_kubernetes_endpoint_ready="true"`), then the
//! not-ready ones (`"false"`). Pod and service labels are attached as in the endpointslice
//! role; the service is the one with the Endpoints object's name.

use k8s_openapi::api::core::v1::EndpointAddress;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::core::v1::Service;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::NAMESPACE_LABEL;
use super::ObjectLookup;
use super::add_object_meta_labels;
use super::build_group;
use super::join_host_port;
use super::namespace_and_name;
use super::pod;
use super::pod::PodView;
use super::service;

pub const ENDPOINT_NODE_NAME: &str = "__meta_kubernetes_endpoint_node_name";
pub const ENDPOINT_HOSTNAME: &str = "__meta_kubernetes_endpoint_hostname";
pub const ENDPOINT_READY: &str = "__meta_kubernetes_endpoint_ready";
pub const PORT_NAME: &str = "__meta_kubernetes_endpoint_port_name";
pub const PORT_PROTOCOL: &str = "__meta_kubernetes_endpoint_port_protocol";
pub const ADDRESS_TARGET_KIND: &str = "__meta_kubernetes_endpoint_address_target_kind";
pub const ADDRESS_TARGET_NAME: &str = "__meta_kubernetes_endpoint_address_target_name";

/// The group source of an Endpoints object.
pub fn endpoints_source(namespace: &str, name: &str) -> String {
    format!("endpoints/{namespace}/{name}")
}

/// Every address of every subset, ready ones and not-ready ones.
fn all_addresses(endpoints: &Endpoints) -> impl Iterator<Item = &EndpointAddress> {
    endpoints.subsets.iter().flatten().flat_map(|subset| {
        subset
            .addresses
            .iter()
            .flatten()
            .chain(subset.not_ready_addresses.iter().flatten())
    })
}

/// The pods an Endpoints object's addresses refer to, as `(namespace, name)`.
pub fn referenced_pods(endpoints: &Endpoints) -> impl Iterator<Item = (&str, &str)> {
    super::pod_references(all_addresses(endpoints).filter_map(|address| address.target_ref.as_ref()))
}

/// The group of one Endpoints object; `services` and `pods` are what the provider knows.
pub fn endpoints_group(
    endpoints: &Endpoints,
    services: &dyn ObjectLookup<Service>,
    pods: &dyn ObjectLookup<PodView>,
) -> TargetGroup {
    let (namespace, name) = namespace_and_name(&endpoints.metadata);
    let mut labels = LabelPairs::new();
    labels.set(NAMESPACE_LABEL, namespace);
    if let Some(service) = services.find(namespace, name) {
        labels.merge(&service::service_labels(service));
    }
    add_object_meta_labels(&mut labels, &endpoints.metadata, "endpoints");

    let mut targets = Vec::new();
    // Pods met, in the order met, with the endpoint ports their targets already cover.
    let mut seen_pods: Vec<(&PodView, Vec<i32>)> = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten() {
            let ready = subset.addresses.iter().flatten().map(|address| (address, "true"));
            let not_ready = subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|address| (address, "false"));
            for (address, ready) in ready.chain(not_ready) {
                let mut target = LabelPairs::new();
                target.set(ADDRESS_LABEL, join_host_port(&address.ip, port.port));
                target.set(PORT_NAME, port.name.clone().unwrap_or_default());
                target.set(PORT_PROTOCOL, port.protocol.clone().unwrap_or_default());
                target.set(ENDPOINT_READY, ready);
                if let Some(reference) = &address.target_ref {
                    target.set(ADDRESS_TARGET_KIND, reference.kind.clone().unwrap_or_default());
                    target.set(ADDRESS_TARGET_NAME, reference.name.clone().unwrap_or_default());
                }
                if let Some(node_name) = &address.node_name {
                    target.set(ENDPOINT_NODE_NAME, node_name.as_str());
                }
                if let Some(hostname) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
                    target.set(ENDPOINT_HOSTNAME, hostname);
                }
                if let Some(pod) = super::referenced_pod(address.target_ref.as_ref(), pods) {
                    pod::merge_pod_labels(&mut target, pod);
                    // Unlike the endpointslice role, Prometheus labels the container port
                    // with the endpoint port's protocol here.
                    let protocol = port.protocol.as_deref().unwrap_or_default();
                    if let Some(container) = pod::matching_container_port_labels(pod, port.port, Some(protocol)) {
                        target.merge(&container);
                    }
                    super::note_covered_port(&mut seen_pods, pod, Some(port.port));
                }
                targets.push(target);
            }
        }
    }
    for (pod, covered) in &seen_pods {
        targets.extend(pod::uncovered_container_port_targets(pod, covered));
    }
    build_group(endpoints_source(namespace, name), targets, labels)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    /// Prometheus's `makeEndpoints`.
    fn endpoints() -> Endpoints {
        object(json!({
            "metadata": {
                "name": "testendpoints",
                "namespace": "default",
                "annotations": {"test.annotation": "test"}
            },
            "subsets": [
                {
                    "addresses": [{"ip": "1.2.3.4", "hostname": "testendpoint1", "nodeName": "foobar"}],
                    "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]
                },
                {
                    "addresses": [{"ip": "2.3.4.5"}],
                    "notReadyAddresses": [{"ip": "2.3.4.5"}],
                    "ports": [{"name": "testport", "port": 9001, "protocol": "TCP"}]
                },
                {
                    "addresses": [{"ip": "6.7.8.9", "targetRef": {"kind": "Node", "name": "barbaz"}}],
                    "ports": [{"name": "testport", "port": 9002, "protocol": "TCP"}]
                }
            ]
        }))
    }

    const GROUP_LABELS: [(&str, &str); 4] = [
        ("__meta_kubernetes_namespace", "default"),
        ("__meta_kubernetes_endpoints_name", "testendpoints"),
        ("__meta_kubernetes_endpoints_annotation_test_annotation", "test"),
        ("__meta_kubernetes_endpoints_annotationpresent_test_annotation", "true"),
    ];

    #[test]
    fn ready_and_not_ready_addresses_match_prometheus() {
        let group = endpoints_group(&endpoints(), &Vec::new(), &Vec::new());
        assert_group(
            &group,
            "endpoints/default/testendpoints",
            &GROUP_LABELS,
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_endpoint_hostname", "testendpoint1"),
                    ("__meta_kubernetes_endpoint_node_name", "foobar"),
                    ("__meta_kubernetes_endpoint_port_name", "testport"),
                    ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
                    ("__meta_kubernetes_endpoint_ready", "true"),
                ],
                &[
                    ("__address__", "2.3.4.5:9001"),
                    ("__meta_kubernetes_endpoint_port_name", "testport"),
                    ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
                    ("__meta_kubernetes_endpoint_ready", "true"),
                ],
                &[
                    ("__address__", "2.3.4.5:9001"),
                    ("__meta_kubernetes_endpoint_port_name", "testport"),
                    ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
                    ("__meta_kubernetes_endpoint_ready", "false"),
                ],
                &[
                    ("__address__", "6.7.8.9:9002"),
                    ("__meta_kubernetes_endpoint_address_target_kind", "Node"),
                    ("__meta_kubernetes_endpoint_address_target_name", "barbaz"),
                    ("__meta_kubernetes_endpoint_port_name", "testport"),
                    ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
                    ("__meta_kubernetes_endpoint_ready", "true"),
                ],
            ],
        );
    }

    #[test]
    fn the_service_of_the_same_name_adds_its_labels() {
        let services: Vec<Service> = vec![object(json!({
            "metadata": {"name": "testendpoints", "namespace": "default", "labels": {"app/name": "test"}}
        }))];
        let group = endpoints_group(&endpoints(), &services, &Vec::new());
        assert_eq!(
            group.labels.get("__meta_kubernetes_service_name"),
            Some("testendpoints")
        );
        assert_eq!(
            group.labels.get("__meta_kubernetes_service_label_app_name"),
            Some("test")
        );
        assert_eq!(
            group.labels.get("__meta_kubernetes_service_labelpresent_app_name"),
            Some("true")
        );
        assert_eq!(group.labels.len(), GROUP_LABELS.len() + 3);
    }

    #[test]
    fn a_pod_address_gets_pod_labels_and_uncovered_container_ports_become_targets() {
        // Prometheus's `TestEndpointsDiscoveryWithPod` shape.
        let pods: Vec<PodView> = vec![PodView::of(&object(json!({
            "metadata": {"name": "testpod", "namespace": "default", "uid": "deadbeef"},
            "spec": {
                "nodeName": "testnode",
                "containers": [{
                    "name": "c1",
                    "image": "c1:latest",
                    "ports": [
                        {"name": "mainport", "containerPort": 9000, "protocol": "TCP"},
                        {"name": "sideport", "containerPort": 9001, "protocol": "TCP"}
                    ]
                }]
            },
            "status": {"hostIP": "2.3.4.5", "podIP": "1.2.3.4"}
        })))];
        let endpoints: Endpoints = object(json!({
            "metadata": {"name": "testendpoints", "namespace": "default"},
            "subsets": [{
                "addresses": [{
                    "ip": "4.3.2.1",
                    "targetRef": {"kind": "Pod", "name": "testpod", "namespace": "default"}
                }],
                "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]
            }]
        }));
        let group = endpoints_group(&endpoints, &Vec::new(), &pods);
        let pod_labels = [
            ("__meta_kubernetes_pod_name", "testpod"),
            ("__meta_kubernetes_pod_ip", "1.2.3.4"),
            ("__meta_kubernetes_pod_ready", "unknown"),
            ("__meta_kubernetes_pod_phase", ""),
            ("__meta_kubernetes_pod_node_name", "testnode"),
            ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
            ("__meta_kubernetes_pod_uid", "deadbeef"),
        ];
        let endpoint_target: Vec<_> = [
            ("__address__", "4.3.2.1:9000"),
            ("__meta_kubernetes_endpoint_port_name", "testport"),
            ("__meta_kubernetes_endpoint_port_protocol", "TCP"),
            ("__meta_kubernetes_endpoint_ready", "true"),
            ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpoint_address_target_name", "testpod"),
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
        let uncovered: Vec<_> = [
            ("__address__", "1.2.3.4:9001"),
            ("__meta_kubernetes_pod_container_name", "c1"),
            ("__meta_kubernetes_pod_container_image", "c1:latest"),
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
            "endpoints/default/testendpoints",
            &[
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_endpoints_name", "testendpoints"),
            ],
            &[&endpoint_target, &uncovered],
        );
        let referenced: Vec<_> = referenced_pods(&endpoints).collect();
        assert_eq!(referenced, [("default", "testpod")]);
    }

    #[test]
    fn ipv6_endpoint_addresses_are_bracketed() {
        let endpoints: Endpoints = object(json!({
            "metadata": {"name": "e", "namespace": "ns"},
            "subsets": [{"notReadyAddresses": [{"ip": "::1"}], "ports": [{"port": 80}]}]
        }));
        let group = endpoints_group(&endpoints, &Vec::new(), &Vec::new());
        assert_eq!(group.targets[0].get("__address__"), Some("[::1]:80"));
        assert_eq!(group.targets[0].get("__meta_kubernetes_endpoint_ready"), Some("false"));
    }
}
