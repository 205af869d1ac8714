//! `role: service` (Prometheus `service.go`): one group per service, `svc/<namespace>/<name>`,
//! with one target per service port at `<name>.<namespace>.svc:<port>` (the cluster DNS
//! name, so a blackbox exporter can probe it). The service labels are also what the
//! endpoints roles attach when they know the service.

use k8s_openapi::api::core::v1::Service;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::NAMESPACE_LABEL;
use super::add_object_meta_labels;
use super::build_group;
use super::join_host_port;
use super::namespace_and_name;

pub const PORT_NAME: &str = "__meta_kubernetes_service_port_name";
pub const PORT_NUMBER: &str = "__meta_kubernetes_service_port_number";
pub const PORT_PROTOCOL: &str = "__meta_kubernetes_service_port_protocol";
pub const CLUSTER_IP: &str = "__meta_kubernetes_service_cluster_ip";
pub const LOAD_BALANCER_IP: &str = "__meta_kubernetes_service_loadbalancer_ip";
pub const EXTERNAL_NAME: &str = "__meta_kubernetes_service_external_name";
pub const TYPE: &str = "__meta_kubernetes_service_type";

/// The group source of a service.
pub fn service_source(namespace: &str, name: &str) -> String {
    format!("svc/{namespace}/{name}")
}

/// The service-wide labels (Prometheus `serviceLabels`): namespace, name, labels and
/// annotations.
pub fn service_labels(service: &Service) -> LabelPairs {
    let mut labels = LabelPairs::new();
    labels.set(NAMESPACE_LABEL, namespace_and_name(&service.metadata).0);
    add_object_meta_labels(&mut labels, &service.metadata, "service");
    labels
}

/// The group of one service.
pub fn service_group(service: &Service) -> TargetGroup {
    let (namespace, name) = namespace_and_name(&service.metadata);
    let spec = service.spec.as_ref();
    let service_type = spec.and_then(|s| s.type_.as_deref()).unwrap_or_default();
    let host = format!("{name}.{namespace}.svc");
    let mut targets = Vec::new();
    for port in spec.and_then(|s| s.ports.as_deref()).unwrap_or_default() {
        let mut target = LabelPairs::new();
        target.set(ADDRESS_LABEL, join_host_port(&host, port.port));
        target.set(PORT_NAME, port.name.clone().unwrap_or_default());
        target.set(PORT_NUMBER, port.port.to_string());
        target.set(PORT_PROTOCOL, port.protocol.clone().unwrap_or_default());
        target.set(TYPE, service_type);
        if service_type == "ExternalName" {
            target.set(
                EXTERNAL_NAME,
                spec.and_then(|s| s.external_name.clone()).unwrap_or_default(),
            );
        } else {
            target.set(CLUSTER_IP, spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default());
        }
        if service_type == "LoadBalancer" {
            target.set(LOAD_BALANCER_IP, load_balancer_ips(service));
        }
        targets.push(target);
    }
    build_group(service_source(namespace, name), targets, service_labels(service))
}

/// The load balancer's ingress IPs joined by commas, or the deprecated
/// `spec.loadBalancerIP` when the status has none.
fn load_balancer_ips(service: &Service) -> String {
    let ips: Vec<&str> = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|ingress| ingress.ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .collect();
    if ips.is_empty() {
        service
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.clone())
            .unwrap_or_default()
    } else {
        ips.join(",")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    fn group(json: serde_json::Value) -> TargetGroup {
        service_group(&object(json))
    }

    #[test]
    fn a_cluster_ip_service_matches_prometheus() {
        // Prometheus's `makeMultiPortService`.
        let group = group(json!({
            "metadata": {
                "name": "testservice",
                "namespace": "default",
                "labels": {"test-label": "testvalue"},
                "annotations": {"test-annotation": "testannotationvalue"}
            },
            "spec": {
                "ports": [
                    {"name": "testport0", "protocol": "TCP", "port": 30900},
                    {"name": "testport1", "protocol": "UDP", "port": 30901}
                ],
                "type": "ClusterIP",
                "clusterIP": "10.0.0.1"
            }
        }));
        let target = |port: &'static str, name: &'static str, protocol: &'static str| {
            vec![
                ("__meta_kubernetes_service_port_protocol", protocol),
                (
                    "__address__",
                    if port == "30900" {
                        "testservice.default.svc:30900"
                    } else {
                        "testservice.default.svc:30901"
                    },
                ),
                ("__meta_kubernetes_service_type", "ClusterIP"),
                ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                ("__meta_kubernetes_service_port_name", name),
                ("__meta_kubernetes_service_port_number", port),
            ]
        };
        assert_group(
            &group,
            "svc/default/testservice",
            &[
                ("__meta_kubernetes_service_name", "testservice"),
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_service_label_test_label", "testvalue"),
                ("__meta_kubernetes_service_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_service_annotation_test_annotation",
                    "testannotationvalue",
                ),
                ("__meta_kubernetes_service_annotationpresent_test_annotation", "true"),
            ],
            &[
                &target("30900", "testport0", "TCP"),
                &target("30901", "testport1", "UDP"),
            ],
        );
    }

    #[test]
    fn an_external_name_service_has_its_external_name_and_no_cluster_ip() {
        let group = group(json!({
            "metadata": {"name": "testservice-external", "namespace": "default"},
            "spec": {
                "ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "ExternalName",
                "externalName": "FooExternalName"
            }
        }));
        assert_group(
            &group,
            "svc/default/testservice-external",
            &[
                ("__meta_kubernetes_service_name", "testservice-external"),
                ("__meta_kubernetes_namespace", "default"),
            ],
            &[&[
                ("__meta_kubernetes_service_port_protocol", "TCP"),
                ("__address__", "testservice-external.default.svc:31900"),
                ("__meta_kubernetes_service_type", "ExternalName"),
                ("__meta_kubernetes_service_port_name", "testport"),
                ("__meta_kubernetes_service_port_number", "31900"),
                ("__meta_kubernetes_service_external_name", "FooExternalName"),
            ]],
        );
    }

    #[test]
    fn load_balancer_ips_come_from_the_status_then_the_spec() {
        let from_spec = group(json!({
            "metadata": {"name": "testservice-loadbalancer", "namespace": "default"},
            "spec": {
                "ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "LoadBalancer",
                "clusterIP": "10.0.0.1",
                "loadBalancerIP": "127.0.0.1"
            }
        }));
        assert_group(
            &from_spec,
            "svc/default/testservice-loadbalancer",
            &[
                ("__meta_kubernetes_service_name", "testservice-loadbalancer"),
                ("__meta_kubernetes_namespace", "default"),
            ],
            &[&[
                ("__meta_kubernetes_service_port_protocol", "TCP"),
                ("__address__", "testservice-loadbalancer.default.svc:31900"),
                ("__meta_kubernetes_service_type", "LoadBalancer"),
                ("__meta_kubernetes_service_port_name", "testport"),
                ("__meta_kubernetes_service_port_number", "31900"),
                ("__meta_kubernetes_service_cluster_ip", "10.0.0.1"),
                ("__meta_kubernetes_service_loadbalancer_ip", "127.0.0.1"),
            ]],
        );
        let from_status = group(json!({
            "metadata": {"name": "testservice-lb-ingress", "namespace": "default"},
            "spec": {
                "ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "LoadBalancer",
                "clusterIP": "10.0.0.1",
                "loadBalancerIP": "127.0.0.1"
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "192.168.1.15"}, {"hostname": "lb.example"}, {"ip": "2001:db8::1"}
            ]}}
        }));
        assert_eq!(
            from_status.targets[0].get("__meta_kubernetes_service_loadbalancer_ip"),
            Some("192.168.1.15,2001:db8::1")
        );
    }

    #[test]
    fn a_service_without_ports_has_no_targets_but_keeps_its_labels() {
        let group = group(json!({"metadata": {"name": "headless", "namespace": "ns"}, "spec": {"clusterIP": "None"}}));
        assert_group(
            &group,
            "svc/ns/headless",
            &[
                ("__meta_kubernetes_service_name", "headless"),
                ("__meta_kubernetes_namespace", "ns"),
            ],
            &[],
        );
    }
}
