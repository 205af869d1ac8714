//! What one collector pod means to collector membership: the pure mapping from a Kubernetes
//! `Pod` to an [`ObservedCollector`] (or to nothing), following upstream's collector watcher
//! (docs/architecture.md, "Kubernetes collector discovery"). No clock is read here: readiness is reported with the time the
//! pod stopped being ready, and `allocation::membership` applies the grace period, so the
//! grace timer is the same on every leader (docs/architecture.md, I4).

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::allocation::membership::ObservedCollector;
use crate::allocation::membership::Readiness;

/// The collector a pod stands for: its id (the pod name, which the collector sends as
/// `collector_id`) and what membership needs to know about it; `None` when the pod is not a
/// collector at the moment.
///
/// - No name, or no `spec.nodeName` (not scheduled yet): skipped, as upstream.
/// - A `deletionTimestamp`: the pod is going away, so it is absent from now on. Membership
///   keeps its targets for the grace period, within which a StatefulSet usually brings the
///   same pod name back. (Upstream keeps a terminating pod for as long as its `Ready`
///   condition holds.)
/// - Readiness: see [`readiness`].
pub fn observed_collector(pod: &Pod) -> Option<(String, ObservedCollector)> {
    let name = pod.metadata.name.as_deref().filter(|name| !name.is_empty())?;
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.as_deref())
        .filter(|node| !node.is_empty())?;
    Some((
        name.to_string(),
        ObservedCollector {
            node: Some(node.to_string()),
            readiness: readiness(pod),
        },
    ))
}

/// A pod's readiness, as the earliest moment upstream's health check starts counting from.
///
/// Upstream drops a pod once either holds for longer than the grace period:
/// - `status.phase != Running` and `status.startTime` is set: counted from `startTime`;
/// - the `Ready` condition is not `True`: counted from its `lastTransitionTime` (a missing
///   time is Go's zero time there, i.e. long ago; here the Unix epoch, with the same effect).
///
/// So the pod is ready when neither applies, and otherwise not ready since the earlier of the
/// applicable times. A pod with neither a `Ready` condition nor a start time (the kubelet has
/// not reported on it yet) counts from its creation: upstream would keep such a pod forever,
/// but a pod stuck there for a whole grace period cannot scrape anything.
pub fn readiness(pod: &Pod) -> Readiness {
    let status = pod.status.as_ref();
    let ready_condition = status
        .and_then(|status| status.conditions.as_ref())
        .and_then(|conditions| conditions.iter().find(|condition| condition.type_ == "Ready"));
    let running = status.and_then(|status| status.phase.as_deref()) == Some("Running");
    let start_time = status.and_then(|status| status.start_time.as_ref());

    let not_running_since = if running { None } else { start_time.map(unix_millis) };
    let unready_since = match ready_condition {
        Some(condition) if condition.status == "True" => None,
        Some(condition) => Some(condition.last_transition_time.as_ref().map_or(0, unix_millis)),
        None => None,
    };
    let since = match (not_running_since, unready_since) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    match since {
        Some(unix_millis) => Readiness::NotReadySince { unix_millis },
        None if ready_condition.is_none() && start_time.is_none() => match &pod.metadata.creation_timestamp {
            Some(created) => Readiness::NotReadySince {
                unix_millis: unix_millis(created),
            },
            None => Readiness::Ready,
        },
        None => Readiness::Ready,
    }
}

/// A Kubernetes time in Unix milliseconds; times before 1970 are the epoch.
fn unix_millis(time: &Time) -> u64 {
    u64::try_from(time.0.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-01T00:00:00Z.
    const NEW_YEAR: u64 = 1_767_225_600_000;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("a valid Pod")
    }

    /// A pod of the collector StatefulSet, scheduled on `node`, with the given status.
    fn collector(name: &str, node: &str, status: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {
                "name": name,
                "namespace": "observability",
                "creationTimestamp": "2025-12-31T23:59:00Z",
                "labels": {"app.kubernetes.io/component": "opentelemetry-collector"}
            },
            "spec": {"nodeName": node, "containers": [{"name": "otc-container", "image": "otel"}]},
            "status": status
        }))
    }

    fn running_and_ready() -> serde_json::Value {
        serde_json::json!({
            "phase": "Running",
            "startTime": "2025-12-31T23:59:30Z",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-12-31T23:59:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]
        })
    }

    #[test]
    fn a_running_ready_pod_is_a_ready_collector_named_after_the_pod_on_its_node() {
        let observed = observed_collector(&collector("collector-0", "node-a", running_and_ready()));
        assert_eq!(
            observed,
            Some((
                "collector-0".to_string(),
                ObservedCollector {
                    node: Some("node-a".to_string()),
                    readiness: Readiness::Ready,
                }
            ))
        );
    }

    #[test]
    fn an_unscheduled_pod_is_not_a_collector() {
        let mut unscheduled = collector("collector-0", "", serde_json::json!({"phase": "Pending"}));
        assert_eq!(observed_collector(&unscheduled), None, "empty nodeName");
        if let Some(spec) = unscheduled.spec.as_mut() {
            spec.node_name = None;
        }
        assert_eq!(observed_collector(&unscheduled), None, "no nodeName");
        unscheduled.spec = None;
        assert_eq!(observed_collector(&unscheduled), None, "no spec");
    }

    #[test]
    fn a_terminating_pod_is_absent_even_while_still_ready() {
        let mut terminating = collector("collector-0", "node-a", running_and_ready());
        terminating.metadata.deletion_timestamp = Some(Time("2026-01-01T00:05:00Z".parse().expect("a timestamp")));
        assert_eq!(observed_collector(&terminating), None);
    }

    #[test]
    fn a_pod_without_a_name_is_ignored() {
        let mut nameless = collector("collector-0", "node-a", running_and_ready());
        nameless.metadata.name = None;
        assert_eq!(observed_collector(&nameless), None);
    }

    #[test]
    fn a_running_pod_whose_ready_condition_turned_false_is_unready_since_that_transition() {
        let pod = collector(
            "collector-0",
            "node-a",
            serde_json::json!({
                "phase": "Running",
                "startTime": "2025-12-31T23:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }),
        );
        assert_eq!(readiness(&pod), Readiness::NotReadySince { unix_millis: NEW_YEAR });
    }

    #[test]
    fn a_pod_not_running_counts_from_the_earlier_of_its_start_and_its_ready_transition() {
        let pending = collector(
            "collector-0",
            "node-a",
            serde_json::json!({
                "phase": "Pending",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:10Z"}]
            }),
        );
        assert_eq!(readiness(&pending), Readiness::NotReadySince { unix_millis: NEW_YEAR });
        // Upstream checks the phase even when the Ready condition says True.
        let succeeded_but_ready = collector(
            "collector-0",
            "node-a",
            serde_json::json!({
                "phase": "Succeeded",
                "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}]
            }),
        );
        assert_eq!(
            readiness(&succeeded_but_ready),
            Readiness::NotReadySince { unix_millis: NEW_YEAR }
        );
    }

    #[test]
    fn an_unknown_ready_condition_is_unready_and_one_without_a_time_counts_from_long_ago() {
        let unknown = collector(
            "collector-0",
            "node-a",
            serde_json::json!({
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "Unknown", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
            }),
        );
        assert_eq!(readiness(&unknown), Readiness::NotReadySince { unix_millis: NEW_YEAR });
        let timeless = collector(
            "collector-0",
            "node-a",
            serde_json::json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
        );
        assert_eq!(readiness(&timeless), Readiness::NotReadySince { unix_millis: 0 });
    }

    #[test]
    fn a_pod_the_kubelet_has_not_reported_on_counts_from_its_creation() {
        let fresh = collector("collector-0", "node-a", serde_json::json!({"phase": "Pending"}));
        assert_eq!(
            readiness(&fresh),
            Readiness::NotReadySince {
                unix_millis: NEW_YEAR - 60_000
            }
        );
        let mut no_status = collector("collector-0", "node-a", serde_json::json!({}));
        no_status.status = None;
        no_status.metadata.creation_timestamp = None;
        assert_eq!(readiness(&no_status), Readiness::Ready, "nothing to count from");
    }

    #[test]
    fn a_pod_without_a_ready_condition_but_running_is_ready_as_upstream() {
        let running = collector(
            "collector-0",
            "node-a",
            serde_json::json!({"phase": "Running", "startTime": "2025-12-31T23:59:30Z"}),
        );
        assert_eq!(readiness(&running), Readiness::Ready);
    }
}
