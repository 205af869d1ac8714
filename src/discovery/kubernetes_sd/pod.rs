//! `role: pod` (Prometheus `pod.go`): one group per pod, `pod/<namespace>/<name>`, with one
//! target per container port at `<pod IP>:<port>` and one target at the bare pod IP for each
//! container without ports (the user adds a port by relabelling). Init containers count,
//! marked `__meta_kubernetes_pod_container_init="true"`. A pod without an IP (starting,
//! evicted) has an empty group. The pod labels are also what the endpoints roles attach.
//!
//! A pod is kept as a [`PodView`]: what the conversions read, taken from the object when it
//! arrives. A typed `Pod` is over 4 KB before any of its strings (the spec and status
//! structs are large even when empty), so at 100k pods the cache alone was hundreds of MB on
//! the leader; a view is a few hundred bytes, its labels interned.

use super::objects::Container;
use super::objects::ContainerStatus;
use super::objects::Pod;
use ta_raft::intern::Symbol;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::NAMESPACE_LABEL;
use super::add_object_meta_labels;
use super::build_group;
use super::join_host_port;
use super::namespace_and_name;

pub const POD_IP: &str = "__meta_kubernetes_pod_ip";
pub const POD_READY: &str = "__meta_kubernetes_pod_ready";
pub const POD_PHASE: &str = "__meta_kubernetes_pod_phase";
pub const POD_NODE_NAME: &str = "__meta_kubernetes_pod_node_name";
pub const POD_HOST_IP: &str = "__meta_kubernetes_pod_host_ip";
pub const POD_UID: &str = "__meta_kubernetes_pod_uid";
pub const POD_CONTROLLER_KIND: &str = "__meta_kubernetes_pod_controller_kind";
pub const POD_CONTROLLER_NAME: &str = "__meta_kubernetes_pod_controller_name";
pub const CONTAINER_NAME: &str = "__meta_kubernetes_pod_container_name";
pub const CONTAINER_ID: &str = "__meta_kubernetes_pod_container_id";
pub const CONTAINER_IMAGE: &str = "__meta_kubernetes_pod_container_image";
pub const CONTAINER_INIT: &str = "__meta_kubernetes_pod_container_init";
pub const CONTAINER_PORT_NAME: &str = "__meta_kubernetes_pod_container_port_name";
pub const CONTAINER_PORT_NUMBER: &str = "__meta_kubernetes_pod_container_port_number";
pub const CONTAINER_PORT_PROTOCOL: &str = "__meta_kubernetes_pod_container_port_protocol";

/// What the conversions read of a pod, taken once when it arrives. Every string is interned:
/// the name, IP and container names are also values of the pod's labels, and images and
/// port names repeat across a deployment's pods, so a view adds only a few words per pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub namespace: Symbol,
    pub name: Symbol,
    /// `""` while the pod has no IP.
    pub ip: Symbol,
    /// The pod-wide labels (Prometheus `podLabels`), without the namespace, sorted by name.
    labels: Box<[(Symbol, Symbol)]>,
    /// The containers, then the init containers.
    containers: Box<[ContainerView]>,
}

/// One container of a [`PodView`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    pub name: Symbol,
    pub image: Symbol,
    pub id: Symbol,
    pub init: bool,
    pub ports: Box<[PortView]>,
}

/// One container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortView {
    pub name: Symbol,
    pub number: i32,
    pub protocol: Symbol,
}

impl PodView {
    /// The view of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let (namespace, name) = namespace_and_name(&pod.metadata);
        // Sorted by name (each name once): merged after a target's endpoint labels, they
        // form one sorted run, which is what the final sort of each target finds cheapest.
        let labels = pod_labels_of(pod).into_labels().pair_iter().cloned().collect();
        let containers = containers(pod)
            .map(|(container, init)| ContainerView {
                name: Symbol::new(&container.name),
                image: Symbol::new(container.image.as_deref().unwrap_or_default()),
                id: Symbol::new(container_id(pod, &container.name, init)),
                init,
                ports: container
                    .ports
                    .iter()
                    .flatten()
                    .map(|port| PortView {
                        name: Symbol::new(port.name.as_deref().unwrap_or_default()),
                        number: port.container_port,
                        protocol: Symbol::new(port.protocol.as_deref().unwrap_or_default()),
                    })
                    .collect(),
            })
            .collect();
        Self {
            namespace: Symbol::new(namespace),
            name: Symbol::new(name),
            ip: Symbol::new(pod_ip(pod)),
            labels,
            containers,
        }
    }

    /// The containers, then the init containers.
    pub fn containers(&self) -> &[ContainerView] {
        &self.containers
    }
}

/// The group source of a pod.
pub fn pod_source(namespace: &str, name: &str) -> String {
    format!("pod/{namespace}/{name}")
}

/// The pod's IP, `""` when it has none yet.
fn pod_ip(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|status| status.pod_ip.as_deref())
        .unwrap_or_default()
}

/// The group of one pod.
pub fn pod_group(pod: &PodView) -> TargetGroup {
    let source = pod_source(&pod.namespace, &pod.name);
    let ip = pod.ip.as_str();
    if ip.is_empty() {
        return build_group(source, Vec::new(), LabelPairs::new());
    }
    let mut labels = pod_labels(pod);
    labels.set(NAMESPACE_LABEL, &pod.namespace);

    let mut targets = Vec::new();
    for container in pod.containers() {
        let mut target = LabelPairs::new();
        target.set(CONTAINER_NAME, &container.name);
        target.set(CONTAINER_ID, &container.id);
        target.set(CONTAINER_IMAGE, &container.image);
        target.set(CONTAINER_INIT, container.init);
        if container.ports.is_empty() {
            target.set(ADDRESS_LABEL, ip);
            targets.push(target);
            continue;
        }
        for port in &container.ports {
            let mut port_target = target.clone();
            port_target.set(ADDRESS_LABEL, join_host_port(ip, port.number));
            port_target.set(CONTAINER_PORT_NUMBER, port.number.to_string());
            port_target.set(CONTAINER_PORT_NAME, &port.name);
            port_target.set(CONTAINER_PORT_PROTOCOL, &port.protocol);
            targets.push(port_target);
        }
    }
    build_group(source, targets, labels)
}

/// The pod-wide labels (Prometheus `podLabels`), without the namespace.
pub fn pod_labels(pod: &PodView) -> LabelPairs {
    let mut labels = LabelPairs::new();
    for (name, value) in &pod.labels {
        labels.set_symbols(name.clone(), value.clone());
    }
    labels
}

/// Add the pod-wide labels of `pod` to `target` (they win, as [`LabelPairs::merge`]).
pub fn merge_pod_labels(target: &mut LabelPairs, pod: &PodView) {
    target.extend_symbols(&pod.labels);
}

/// [`pod_labels`] from the object itself.
fn pod_labels_of(pod: &Pod) -> LabelPairs {
    let status = pod.status.as_ref();
    let mut labels = LabelPairs::new();
    labels.set(POD_IP, pod_ip(pod));
    labels.set(POD_READY, pod_ready(pod));
    labels.set(POD_PHASE, status.and_then(|s| s.phase.clone()).unwrap_or_default());
    labels.set(
        POD_NODE_NAME,
        pod.spec
            .as_ref()
            .and_then(|spec| spec.node_name.clone())
            .unwrap_or_default(),
    );
    labels.set(POD_HOST_IP, status.and_then(|s| s.host_ip.clone()).unwrap_or_default());
    labels.set(POD_UID, pod.metadata.uid.clone().unwrap_or_default());
    add_object_meta_labels(&mut labels, &pod.metadata, "pod");
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true));
    if let Some(controller) = controller {
        if !controller.kind.is_empty() {
            labels.set(POD_CONTROLLER_KIND, controller.kind.as_str());
        }
        if !controller.name.is_empty() {
            labels.set(POD_CONTROLLER_NAME, controller.name.as_str());
        }
    }
    labels
}

/// The status of the `Ready` condition in lower case, `unknown` without one.
fn pod_ready(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
        .map_or_else(|| "unknown".to_string(), |c| c.status.to_lowercase())
}

/// The containers, then the init containers, each with whether it is an init container.
fn containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    let spec = pod.spec.as_ref();
    let regular = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    regular.iter().map(|c| (c, false)).chain(init.iter().map(|c| (c, true)))
}

fn container_id<'p>(pod: &'p Pod, container: &str, is_init: bool) -> &'p str {
    let statuses: &[ContainerStatus] = pod
        .status
        .as_ref()
        .and_then(|status| {
            if is_init {
                status.init_container_statuses.as_deref()
            } else {
                status.container_statuses.as_deref()
            }
        })
        .unwrap_or_default();
    statuses
        .iter()
        .find(|status| status.name == container)
        .and_then(|status| status.container_id.as_deref())
        .unwrap_or_default()
}

/// The container-port labels an endpoints role adds to a target of a pod on `port`: those
/// of the matching container port. As Prometheus, the first matching port of each
/// container is taken and a later container overrides an earlier one. `protocol` is the
/// protocol label to use, when the role takes it from the endpoint port instead.
pub fn matching_container_port_labels(pod: &PodView, port: i32, protocol: Option<&str>) -> Option<LabelPairs> {
    let mut found = None;
    for container in pod.containers() {
        let Some(container_port) = container.ports.iter().find(|candidate| candidate.number == port) else {
            continue;
        };
        let mut labels = LabelPairs::new();
        labels.set(CONTAINER_NAME, &container.name);
        labels.set(CONTAINER_IMAGE, &container.image);
        labels.set(CONTAINER_PORT_NAME, &container_port.name);
        labels.set(CONTAINER_PORT_NUMBER, port.to_string());
        let protocol = match protocol {
            Some(protocol) => protocol.to_string(),
            None => container_port.protocol.to_string(),
        };
        labels.set(CONTAINER_PORT_PROTOCOL, protocol);
        labels.set(CONTAINER_INIT, container.init);
        found = Some(labels);
    }
    found
}

/// Targets for the container ports of a pod that no endpoint port covered (the endpoints
/// roles still expose them, with the pod labels), none when the pod has no IP.
pub fn uncovered_container_port_targets(pod: &PodView, covered_ports: &[i32]) -> Vec<LabelPairs> {
    let ip = pod.ip.as_str();
    if ip.is_empty() {
        return Vec::new();
    }
    let pod_labels = pod_labels(pod);
    let mut targets = Vec::new();
    for container in pod.containers() {
        for port in &container.ports {
            if covered_ports.contains(&port.number) {
                continue;
            }
            let mut target = LabelPairs::new();
            target.set(ADDRESS_LABEL, join_host_port(ip, port.number));
            target.set(CONTAINER_NAME, &container.name);
            target.set(CONTAINER_IMAGE, &container.image);
            target.set(CONTAINER_PORT_NAME, &port.name);
            target.set(CONTAINER_PORT_NUMBER, port.number.to_string());
            target.set(CONTAINER_PORT_PROTOCOL, &port.protocol);
            target.set(CONTAINER_INIT, container.init);
            target.merge(&pod_labels);
            targets.push(target);
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    /// Prometheus's `makeMultiPortPods`.
    fn multi_port_pod() -> Pod {
        object(json!({
            "metadata": {
                "name": "testpod",
                "namespace": "default",
                "labels": {"test/label": "testvalue"},
                "annotations": {"test/annotation": "testannotationvalue"},
                "uid": "abc123",
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "kind": "testcontrollerkind",
                    "name": "testcontrollername",
                    "uid": "x",
                    "controller": true
                }]
            },
            "spec": {
                "nodeName": "testnode",
                "containers": [
                    {
                        "name": "testcontainer0",
                        "image": "testcontainer0:latest",
                        "ports": [
                            {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                            {"name": "testport1", "protocol": "UDP", "containerPort": 9001}
                        ]
                    },
                    {"name": "testcontainer1", "image": "testcontainer1:latest"}
                ]
            },
            "status": {
                "podIP": "1.2.3.4",
                "hostIP": "2.3.4.5",
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "testcontainer0", "containerID": "docker://a1b2c3d4e5f6",
                     "image": "", "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "testcontainer1", "containerID": "containerd://6f5e4d3c2b1a",
                     "image": "", "imageID": "", "ready": true, "restartCount": 0}
                ]
            }
        }))
    }

    /// Prometheus's `makeInitContainerPods`.
    fn init_container_pod() -> Pod {
        object(json!({
            "metadata": {"name": "testpod", "namespace": "default", "uid": "abc123"},
            "spec": {
                "nodeName": "testnode",
                "containers": [{
                    "name": "testcontainer",
                    "image": "testcontainer:latest",
                    "ports": [{"name": "testport", "protocol": "TCP", "containerPort": 9000}]
                }],
                "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest"}]
            },
            "status": {
                "podIP": "1.2.3.4",
                "hostIP": "2.3.4.5",
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6",
                    "image": "", "imageID": "", "ready": false, "restartCount": 0}],
                "initContainerStatuses": [{"name": "initcontainer", "containerID": "containerd://6f5e4d3c2b1a",
                    "image": "", "imageID": "", "ready": false, "restartCount": 0}]
            }
        }))
    }

    #[test]
    fn a_pod_with_several_ports_and_a_portless_container_matches_prometheus() {
        let group = pod_group(&PodView::of(&multi_port_pod()));
        assert_group(
            &group,
            "pod/default/testpod",
            &[
                ("__meta_kubernetes_pod_name", "testpod"),
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_pod_label_test_label", "testvalue"),
                ("__meta_kubernetes_pod_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_pod_annotation_test_annotation",
                    "testannotationvalue",
                ),
                ("__meta_kubernetes_pod_annotationpresent_test_annotation", "true"),
                ("__meta_kubernetes_pod_node_name", "testnode"),
                ("__meta_kubernetes_pod_ip", "1.2.3.4"),
                ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
                ("__meta_kubernetes_pod_ready", "true"),
                ("__meta_kubernetes_pod_phase", "Running"),
                ("__meta_kubernetes_pod_uid", "abc123"),
                ("__meta_kubernetes_pod_controller_kind", "testcontrollerkind"),
                ("__meta_kubernetes_pod_controller_name", "testcontrollername"),
            ],
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer0:latest"),
                    ("__meta_kubernetes_pod_container_port_name", "testport0"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
                ],
                &[
                    ("__address__", "1.2.3.4:9001"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer0:latest"),
                    ("__meta_kubernetes_pod_container_port_name", "testport1"),
                    ("__meta_kubernetes_pod_container_port_number", "9001"),
                    ("__meta_kubernetes_pod_container_port_protocol", "UDP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
                ],
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer1"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer1:latest"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "containerd://6f5e4d3c2b1a"),
                ],
            ],
        );
    }

    #[test]
    fn init_containers_are_targets_marked_as_init() {
        let group = pod_group(&PodView::of(&init_container_pod()));
        assert_group(
            &group,
            "pod/default/testpod",
            &[
                ("__meta_kubernetes_pod_name", "testpod"),
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_pod_node_name", "testnode"),
                ("__meta_kubernetes_pod_ip", "1.2.3.4"),
                ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
                ("__meta_kubernetes_pod_ready", "false"),
                ("__meta_kubernetes_pod_phase", "Pending"),
                ("__meta_kubernetes_pod_uid", "abc123"),
            ],
            &[
                &[
                    ("__address__", "1.2.3.4:9000"),
                    ("__meta_kubernetes_pod_container_name", "testcontainer"),
                    ("__meta_kubernetes_pod_container_image", "testcontainer:latest"),
                    ("__meta_kubernetes_pod_container_port_name", "testport"),
                    ("__meta_kubernetes_pod_container_port_number", "9000"),
                    ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                    ("__meta_kubernetes_pod_container_init", "false"),
                    ("__meta_kubernetes_pod_container_id", "docker://a1b2c3d4e5f6"),
                ],
                &[
                    ("__address__", "1.2.3.4"),
                    ("__meta_kubernetes_pod_container_name", "initcontainer"),
                    ("__meta_kubernetes_pod_container_image", "initcontainer:latest"),
                    ("__meta_kubernetes_pod_container_init", "true"),
                    ("__meta_kubernetes_pod_container_id", "containerd://6f5e4d3c2b1a"),
                ],
            ],
        );
    }

    #[test]
    fn a_pod_without_an_ip_has_an_empty_group() {
        let mut pod = init_container_pod();
        if let Some(status) = pod.status.as_mut() {
            status.pod_ip = None;
        }
        let group = pod_group(&PodView::of(&pod));
        assert_group(&group, "pod/default/testpod", &[], &[]);
    }

    #[test]
    fn a_pod_without_status_or_conditions_reads_as_unknown_and_empty() {
        let pod: Pod = object(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
            "status": {"podIP": "fd00::5"}
        }));
        let group = pod_group(&PodView::of(&pod));
        assert_group(
            &group,
            "pod/ns/p",
            &[
                ("__meta_kubernetes_pod_name", "p"),
                ("__meta_kubernetes_namespace", "ns"),
                ("__meta_kubernetes_pod_node_name", ""),
                ("__meta_kubernetes_pod_ip", "fd00::5"),
                ("__meta_kubernetes_pod_host_ip", ""),
                ("__meta_kubernetes_pod_ready", "unknown"),
                ("__meta_kubernetes_pod_phase", ""),
                ("__meta_kubernetes_pod_uid", ""),
            ],
            &[&[
                ("__address__", "[fd00::5]:80"),
                ("__meta_kubernetes_pod_container_name", "c"),
                ("__meta_kubernetes_pod_container_image", ""),
                ("__meta_kubernetes_pod_container_port_name", ""),
                ("__meta_kubernetes_pod_container_port_number", "80"),
                ("__meta_kubernetes_pod_container_port_protocol", ""),
                ("__meta_kubernetes_pod_container_init", "false"),
                ("__meta_kubernetes_pod_container_id", ""),
            ]],
        );
    }

    #[test]
    fn a_portless_ipv6_pod_target_is_the_bare_address() {
        let pod: Pod = object(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app.kubernetes.io/name": "x"}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"podIP": "::1"}
        }));
        let group = pod_group(&PodView::of(&pod));
        assert_eq!(group.targets[0].get("__address__"), Some("::1"));
        assert_eq!(
            group.labels.get("__meta_kubernetes_pod_label_app_kubernetes_io_name"),
            Some("x")
        );
        assert_eq!(
            group
                .labels
                .get("__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"),
            Some("true")
        );
    }
}
