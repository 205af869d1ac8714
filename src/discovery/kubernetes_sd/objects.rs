//! The objects `kubernetes_sd` watches in bulk, decoded as only what the conversions read.
//!
//! A `role: endpointslice` or `endpoints` watch lists every pod of its namespaces. Decoding a
//! pod as `k8s_openapi`'s `Pod` builds every field of its spec and status (hundreds of
//! optional fields, each container's probes, resources, environment...) only to drop them
//! when the pod is turned into a [`PodView`](super::pod::PodView): measured at 100k pods it
//! was a large share of a cold start's CPU on the leader. These types name the fields that
//! are read; serde skips the rest of the JSON without building anything. `metadata` keeps
//! what the conversions and the watcher read (the watcher resumes from `resourceVersion`)
//! and skips `managedFields`, which is most of a real object's size.
//!
//! A field that Kubernetes may send as `null` is an `Option` or decoded with
//! [`null_as_default`], as Go's encoder writes nil slices and maps as `null`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde::Deserializer;

/// `null` or absent decodes as the type's default.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The part of `metadata` that is read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
}

fn slim_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let Some(meta) = Option::<SlimMeta>::deserialize(deserializer)? else {
        return Ok(ObjectMeta::default());
    };
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        annotations: meta.annotations,
        owner_references: meta.owner_references,
        ..ObjectMeta::default()
    })
}

/// A `v1` Pod, as far as `kubernetes_sd` reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Pod {
    #[serde(default, deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodSpec>,
    #[serde(default)]
    pub status: Option<PodStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Container {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    pub image: Option<String>,
    pub ports: Option<Vec<ContainerPort>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_port: i32,
    pub name: Option<String>,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
    pub phase: Option<String>,
    pub conditions: Option<Vec<PodCondition>>,
    pub container_statuses: Option<Vec<ContainerStatus>>,
    pub init_container_statuses: Option<Vec<ContainerStatus>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodCondition {
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ContainerStatus {
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: Option<String>,
}

impl k8s_openapi::Resource for Pod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for Pod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pod_decodes_what_is_read_and_skips_the_rest() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-1", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "labels": {"app": "web"}, "annotations": null,
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:metadata": {}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": "rs", "controller": true}]
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 8080,
                    "name": "http", "protocol": "TCP"}], "resources": {"limits": {"cpu": "1"}},
                    "env": [{"name": "A", "value": "b"}]}],
                "initContainers": null,
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {
                "podIP": "10.0.0.1", "hostIP": "192.168.0.1", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                "containerStatuses": [{"name": "app", "containerID": "containerd://c1", "ready": true}]
            }
        }))
        .expect("decodes");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-1"));
        assert_eq!(
            pod.metadata.resource_version.as_deref(),
            Some("42"),
            "the watcher resumes from it"
        );
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.metadata.owner_references.as_ref().map(Vec::len), Some(1));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(
            spec.containers[0].ports.as_ref().expect("ports")[0].container_port,
            8080
        );
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(status.host_ip.as_deref(), Some("192.168.0.1"));
        assert_eq!(status.conditions.as_ref().expect("conditions")[0].status, "True");
        assert_eq!(
            status.container_statuses.as_ref().expect("statuses")[0]
                .container_id
                .as_deref(),
            Some("containerd://c1")
        );
    }

    #[test]
    fn nulls_and_absent_fields_decode_as_empty() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": null,
            "spec": {"containers": null},
            "status": {"podIP": null}
        }))
        .expect("decodes");
        assert_eq!(pod.metadata, ObjectMeta::default());
        assert!(pod.spec.expect("spec").containers.is_empty());
        let bare: Pod = serde_json::from_value(json!({})).expect("decodes");
        assert_eq!(bare, Pod::default());
    }
}
