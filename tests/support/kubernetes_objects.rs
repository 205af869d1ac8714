//! Kubernetes objects for the fake API server (pods, services, endpoint slices shaped like
//! the fixtures of Prometheus's `discovery/kubernetes` tests), the `__meta_kubernetes_*`
//! labels Prometheus gives their targets, and the reading of served http_sd target lists.
//! Shared by the tests that follow discovery to served targets (`kubernetes_sd`,
//! `prometheus_cr`).

#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::Value;
use serde_json::json;

/// One container port of [`pod_with_ports`]: `(name, number)`, protocol TCP.
pub type ContainerPort<'a> = (&'a str, u16);

/// A running pod in `namespace` with one container exposing `metrics` 8080, labelled `labels`,
/// as in Prometheus's `makePod` (plus labels).
pub fn pod(namespace: &str, name: &str, ip: &str, labels: Value) -> Pod {
    pod_with_ports(namespace, name, ip, labels, &[("metrics", 8080)])
}

/// [`pod`] whose one container `app` exposes `ports`.
pub fn pod_with_ports(namespace: &str, name: &str, ip: &str, labels: Value, ports: &[ContainerPort<'_>]) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(port_name, number)| json!({"name": port_name, "protocol": "TCP", "containerPort": number}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "labels": labels,
            "annotations": {"test/annotation": "testannotationvalue"},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d9f", "uid": "rs", "controller": true
            }]
        },
        "spec": {
            "nodeName": "testnode",
            "containers": [{"name": "app", "image": "app:1.0", "ports": ports}]
        },
        "status": {
            "podIP": ip,
            "hostIP": "2.3.4.5",
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "containerID": "containerd://c0ffee", "image": "", "imageID": "",
                "ready": true, "restartCount": 0
            }]
        }
    }))
    .expect("a valid Pod")
}

/// The labels Prometheus's pod role gives the target of [`pod`]'s `metrics` port
/// (`labels` = `{"app": app}`).
pub fn pod_target_labels(namespace: &str, name: &str, ip: &str, app: &str) -> BTreeMap<&'static str, &'static str> {
    expected(&[
        ("__meta_kubernetes_namespace", leak(namespace)),
        ("__meta_kubernetes_pod_name", leak(name)),
        ("__meta_kubernetes_pod_label_app", leak(app)),
        ("__meta_kubernetes_pod_labelpresent_app", "true"),
        (
            "__meta_kubernetes_pod_annotation_test_annotation",
            "testannotationvalue",
        ),
        ("__meta_kubernetes_pod_annotationpresent_test_annotation", "true"),
        ("__meta_kubernetes_pod_node_name", "testnode"),
        ("__meta_kubernetes_pod_ip", leak(ip)),
        ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
        ("__meta_kubernetes_pod_ready", "true"),
        ("__meta_kubernetes_pod_phase", "Running"),
        ("__meta_kubernetes_pod_uid", leak(&format!("uid-{name}"))),
        ("__meta_kubernetes_pod_controller_kind", "ReplicaSet"),
        ("__meta_kubernetes_pod_controller_name", "web-5d9f"),
        ("__meta_kubernetes_pod_container_name", "app"),
        ("__meta_kubernetes_pod_container_image", "app:1.0"),
        ("__meta_kubernetes_pod_container_port_name", "metrics"),
        ("__meta_kubernetes_pod_container_port_number", "8080"),
        ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
        ("__meta_kubernetes_pod_container_init", "false"),
        ("__meta_kubernetes_pod_container_id", "containerd://c0ffee"),
    ])
}

/// A service `name` in `namespace` labelled and selecting `{"app": name}`, with one TCP port
/// `(port_name, number)`.
pub fn service(namespace: &str, name: &str, port: (&str, u16)) -> Service {
    let (port_name, number) = port;
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": port_name, "port": number, "protocol": "TCP"}]}
    }))
    .expect("a valid Service")
}

/// The endpoint slice `<service>-abcde` of `service` in `namespace` with one TCP port
/// `(port_name, number)` and one ready endpoint per pod `(name, ip)` (on node `testnode`,
/// zone `zone-a`, its `targetRef` the pod).
pub fn endpoint_slice(namespace: &str, service: &str, port: (&str, u16), pods: &[(&str, &str)]) -> EndpointSlice {
    let (port_name, number) = port;
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|(name, ip)| {
            json!({
                "addresses": [ip],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": "testnode",
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "name": name, "namespace": namespace}
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abcde"),
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service}
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": number, "protocol": "TCP"}]
    }))
    .expect("a valid EndpointSlice")
}

/// One served target: its address and its labels as served (`__address__` among them).
pub type Served = BTreeMap<String, BTreeMap<String, String>>;

/// The targets of an http_sd body (`/jobs/{job}/targets?collector_id=…`), keyed by address.
pub fn served_targets(body: &[u8]) -> Result<Served, String> {
    let groups: Vec<Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut served = Served::new();
    for group in groups {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(group["labels"].clone()).map_err(|e| format!("labels: {e}"))?;
        for target in group["targets"].as_array().into_iter().flatten() {
            let address = target.as_str().ok_or("a target is not a string")?.to_string();
            served.insert(address, labels.clone());
        }
    }
    Ok(served)
}

/// `labels` restricted to the `__meta_kubernetes_*` ones, for comparison with Prometheus's.
pub fn meta(labels: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    labels
        .iter()
        .filter(|(name, _)| name.starts_with("__meta_kubernetes_"))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

pub fn expected(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
    pairs.iter().copied().collect()
}

/// A test's expected values live as long as the test.
pub fn leak(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}
