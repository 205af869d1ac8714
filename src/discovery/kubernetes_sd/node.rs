//! `role: node` (Prometheus `node.go`): one group per node, `node/<name>`, with one target at
//! the node's preferred address and the kubelet port, `instance` set to the node name, and
//! the first address of every type as `__meta_kubernetes_node_address_<type>`. A node with
//! no address at all has no group (Prometheus logs it and sends nothing).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::add_object_meta_labels;
use super::build_group;
use super::join_host_port;
use super::sanitize_label_name;

pub const PROVIDER_ID: &str = "__meta_kubernetes_node_provider_id";
pub const CONDITION_PREFIX: &str = "__meta_kubernetes_node_condition_";
pub const ADDRESS_PREFIX: &str = "__meta_kubernetes_node_address_";
/// Prometheus sets the instance label of node targets to the node name.
pub const INSTANCE_LABEL: &str = "instance";

/// Address types in order of preference (Kubernetes' `pkg/util/node`).
const ADDRESS_PREFERENCE: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

/// The group source of a node.
pub fn node_source(name: &str) -> String {
    format!("node/{name}")
}

/// The group of one node, `None` when it has no usable address.
pub fn node_group(node: &Node) -> Option<TargetGroup> {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let status = node.status.as_ref();
    let mut addresses_by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for address in status.and_then(|s| s.addresses.as_deref()).unwrap_or_default() {
        addresses_by_type
            .entry(address.type_.as_str())
            .or_default()
            .push(address.address.as_str());
    }
    let host = ADDRESS_PREFERENCE
        .iter()
        .find_map(|kind| addresses_by_type.get(kind).and_then(|a| a.first()))?;
    let kubelet_port = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(0, |k| k.port);

    let mut labels = LabelPairs::new();
    labels.set(
        PROVIDER_ID,
        node.spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default(),
    );
    for condition in status.and_then(|s| s.conditions.as_deref()).unwrap_or_default() {
        labels.set_built(
            format!(
                "{CONDITION_PREFIX}{}",
                sanitize_label_name(&condition.type_.to_lowercase())
            ),
            condition.status.to_lowercase(),
        );
    }
    add_object_meta_labels(&mut labels, &node.metadata, "node");

    let mut target = LabelPairs::new();
    target.set(ADDRESS_LABEL, join_host_port(host, kubelet_port));
    target.set(INSTANCE_LABEL, name);
    for (kind, addresses) in &addresses_by_type {
        if let Some(first) = addresses.first() {
            target.set_built(sanitize_label_name(&format!("{ADDRESS_PREFIX}{kind}")), *first);
        }
    }
    Some(build_group(node_source(name), vec![target], labels))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    /// Prometheus's `makeNode`.
    fn node(labels: serde_json::Value, annotations: serde_json::Value, conditions: serde_json::Value) -> Node {
        object(json!({
            "metadata": {"name": "test", "labels": labels, "annotations": annotations},
            "spec": {"providerID": "aws:///nl-north-7b/i-03149834983492827"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "1.2.3.4"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "conditions": conditions
            }
        }))
    }

    #[test]
    fn a_node_matches_prometheus() {
        let group = node(
            json!({"test-label": "testvalue"}),
            json!({"test-annotation": "testannotationvalue"}),
            json!([]),
        );
        let Some(group) = node_group(&group) else {
            panic!("no group")
        };
        assert_group(
            &group,
            "node/test",
            &[
                ("__meta_kubernetes_node_name", "test"),
                (
                    "__meta_kubernetes_node_provider_id",
                    "aws:///nl-north-7b/i-03149834983492827",
                ),
                ("__meta_kubernetes_node_label_test_label", "testvalue"),
                ("__meta_kubernetes_node_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_node_annotation_test_annotation",
                    "testannotationvalue",
                ),
                ("__meta_kubernetes_node_annotationpresent_test_annotation", "true"),
            ],
            &[&[
                ("__address__", "1.2.3.4:10250"),
                ("instance", "test"),
                ("__meta_kubernetes_node_address_InternalIP", "1.2.3.4"),
            ]],
        );
    }

    #[test]
    fn node_conditions_become_lower_case_labels() {
        let group = node(
            json!({}),
            json!({}),
            json!([
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
                {"type": "DiskPressure", "status": "Unknown"}
            ]),
        );
        let Some(group) = node_group(&group) else {
            panic!("no group")
        };
        assert_group(
            &group,
            "node/test",
            &[
                ("__meta_kubernetes_node_name", "test"),
                (
                    "__meta_kubernetes_node_provider_id",
                    "aws:///nl-north-7b/i-03149834983492827",
                ),
                ("__meta_kubernetes_node_condition_memorypressure", "false"),
                ("__meta_kubernetes_node_condition_ready", "true"),
                ("__meta_kubernetes_node_condition_diskpressure", "unknown"),
            ],
            &[&[
                ("__address__", "1.2.3.4:10250"),
                ("instance", "test"),
                ("__meta_kubernetes_node_address_InternalIP", "1.2.3.4"),
            ]],
        );
    }

    #[test]
    fn the_address_follows_the_type_preference_and_every_type_is_labelled() {
        let node: Node = object(json!({
            "metadata": {"name": "n1"},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "n1.local"},
                    {"type": "ExternalIP", "address": "2001:db8::7"},
                    {"type": "ExternalIP", "address": "203.0.113.9"},
                    {"type": "InternalDNS", "address": "n1.internal"}
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
            }
        }));
        let Some(group) = node_group(&node) else {
            panic!("no group")
        };
        assert_group(
            &group,
            "node/n1",
            &[
                ("__meta_kubernetes_node_name", "n1"),
                ("__meta_kubernetes_node_provider_id", ""),
            ],
            &[&[
                ("__address__", "n1.internal:10250"),
                ("instance", "n1"),
                ("__meta_kubernetes_node_address_Hostname", "n1.local"),
                ("__meta_kubernetes_node_address_ExternalIP", "2001:db8::7"),
                ("__meta_kubernetes_node_address_InternalDNS", "n1.internal"),
            ]],
        );

        let external_v6: Node = object(json!({
            "metadata": {"name": "n2"},
            "status": {"addresses": [{"type": "ExternalIP", "address": "2001:db8::7"}]}
        }));
        let Some(group) = node_group(&external_v6) else {
            panic!("no group")
        };
        // No daemon endpoints: port 0, as Go's zero value.
        assert_eq!(group.targets[0].get("__address__"), Some("[2001:db8::7]:0"));
    }

    #[test]
    fn a_node_without_addresses_has_no_group() {
        let node: Node = object(json!({"metadata": {"name": "bare"}}));
        assert!(node_group(&node).is_none());
    }
}
