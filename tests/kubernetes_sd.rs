//! `kubernetes_sd_configs` end to end: a real single-replica service whose job discovers its
//! targets from a fake Kubernetes API server over real HTTP (`support::fake_api_server`,
//! reached through a kubeconfig file, or `api_server`), read back from the served
//! `/jobs/{job}/targets?collector_id=…` (http_sd format). Collectors are static, so the only
//! Kubernetes traffic is target discovery.
//!
//! The expected `__meta_kubernetes_*` label sets are Prometheus's for the same objects (the
//! fixtures follow Prometheus's `discovery/kubernetes` tests, as the unit tests in
//! `src/discovery/kubernetes_sd/` do).
//!
//! Every wait is bounded; a hang fails with what was expected and what was last seen.

mod api_support;
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use api_support::Cluster;
use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use support::fake_api_server::FakeApiServer;
use support::kubernetes_objects;
use support::kubernetes_objects::Served;
use support::kubernetes_objects::expected;
use support::kubernetes_objects::meta;
use support::kubernetes_objects::served_targets;

const NAMESPACE: &str = "default";
const COLLECTOR: &str = "collector-0";
const JOB: &str = "kubernetes-pods";
const STATIC_JOB: &str = "static-nodes";
/// Bound on anything that normally takes well under a second (or one watcher backoff).
const LIMIT: Duration = Duration::from_secs(20);
/// Bound on a whole scenario.
const SCENARIO_LIMIT: Duration = Duration::from_secs(90);

/// Run a scenario with an overall bound, so a hang fails instead of blocking the suite.
async fn scenario(body: impl Future<Output = ()>) {
    if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
        panic!("the scenario did not finish within {SCENARIO_LIMIT:?}");
    }
}

/// The kubeconfig for `server`, written into a temporary directory (kept alive by the
/// returned guard).
fn write_kubeconfig(server: &FakeApiServer) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, server.kubeconfig(NAMESPACE)).expect("write the kubeconfig");
    (dir, path.display().to_string())
}

/// A single-replica service document: one static collector, a static job, and `jobs` (YAML
/// list items of `scrape_configs`, indented by four spaces).
fn service_document(jobs: &str) -> String {
    format!(
        "collectors:\n  static: [{COLLECTOR}]\n\
         config:\n  scrape_configs:\n  \
         - job_name: {STATIC_JOB}\n    static_configs:\n    - targets: ['10.0.0.1:9100']\n\
         {jobs}"
    )
}

/// A `kubernetes_sd_configs` job of `role` reading the fake server through `kubeconfig`,
/// with `extra` appended to the job (e.g. `relabel_configs`, already indented).
fn kubernetes_job(name: &str, role: &str, kubeconfig: &str, extra: &str) -> String {
    format!(
        "  - job_name: {name}\n    kubernetes_sd_configs:\n    \
         - role: {role}\n      kubeconfig_file: {kubeconfig}\n{extra}"
    )
}

/// `/jobs/{job}/targets?collector_id=collector-0`, keyed by address; `Err` while not served.
async fn try_served(cluster: &Cluster, job: &str) -> Result<Served, String> {
    let fetched = cluster
        .try_get(0, &format!("/jobs/{job}/targets?collector_id={COLLECTOR}"))
        .await?;
    if fetched.status != StatusCode::OK {
        return Err(format!("{} {}", fetched.status, fetched.text()));
    }
    served_targets(&fetched.body)
}

/// Wait until the served targets of `job` have exactly `addresses`.
async fn wait_addresses(cluster: &Cluster, job: &str, addresses: &[&str]) -> Served {
    let mut wanted: Vec<&str> = addresses.to_vec();
    wanted.sort_unstable();
    api_support::eventually(&format!("{job} serving exactly {wanted:?}"), LIMIT, || async {
        let served = try_served(cluster, job).await?;
        let now: Vec<&str> = served.keys().map(String::as_str).collect();
        if now == wanted {
            Ok(served.clone())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
}

/// A running pod of [`NAMESPACE`] (see [`kubernetes_objects::pod`]).
fn pod(name: &str, ip: &str, labels: serde_json::Value) -> Pod {
    kubernetes_objects::pod(NAMESPACE, name, ip, labels)
}

/// The labels Prometheus gives the target of [`pod`] (`labels` = `{"app": app}`).
fn pod_target_labels(name: &str, ip: &str, app: &str) -> BTreeMap<&'static str, &'static str> {
    kubernetes_objects::pod_target_labels(NAMESPACE, name, ip, app)
}

/// Start a single replica on `document` and wait until it is ready.
async fn start(document: &str) -> Cluster {
    let mut cluster = Cluster::new(1, document);
    cluster.start(0);
    cluster.wait_ready(0).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_listed_added_and_deleted_are_served_with_prometheus_labels() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web"})));
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web"})));
        let (_dir, kubeconfig) = write_kubeconfig(&server);
        let mut cluster = start(&service_document(&kubernetes_job(JOB, "pod", &kubeconfig, ""))).await;

        tracing::info!("the two listed pods are served, labelled as Prometheus labels them");
        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080"]).await;
        assert_eq!(
            meta(&served["10.1.0.1:8080"]),
            pod_target_labels("web-0", "10.1.0.1", "web")
        );
        assert_eq!(
            meta(&served["10.1.0.2:8080"]),
            pod_target_labels("web-1", "10.1.0.2", "web")
        );
        let list = server
            .requests()
            .into_iter()
            .find(|request| request.verb == "list" && request.resource == "pods")
            .expect("a list of pods");
        assert_eq!(list.namespace, None, "no namespaces configured: all of them");

        tracing::info!("a pod added is served");
        server.apply(&pod("web-2", "10.1.0.3", json!({"app": "web"})));
        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]).await;
        assert_eq!(
            meta(&served["10.1.0.3:8080"]),
            pod_target_labels("web-2", "10.1.0.3", "web")
        );

        tracing::info!("a pod deleted is no longer served");
        assert!(server.delete::<Pod>(Some(NAMESPACE), "web-0"));
        wait_addresses(&cluster, JOB, &["10.1.0.2:8080", "10.1.0.3:8080"]).await;
        wait_addresses(&cluster, STATIC_JOB, &["10.0.0.1:9100"]).await;
        cluster.stop_all().await;
    })
    .await;
}

/// The service `web` selecting the pods of [`pod`] with `app: web`.
fn web_service() -> Service {
    kubernetes_objects::service(NAMESPACE, "web", ("metrics", 8080))
}

/// The endpoint slice of [`web_service`] with one ready endpoint per pod `(name, ip)`.
fn web_slice(pods: &[(&str, &str)]) -> EndpointSlice {
    kubernetes_objects::endpoint_slice(NAMESPACE, "web", ("metrics", 8080), pods)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslice_targets_carry_their_service_and_pod_labels() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&web_service());
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web"})));
        server.apply(&web_slice(&[("web-0", "10.1.0.1")]));
        // `api_server` instead of a kubeconfig: the other way to name the API server.
        let job = format!(
            "  - job_name: {JOB}\n    kubernetes_sd_configs:\n    \
             - role: endpointslice\n      api_server: {url}\n      namespaces:\n        names: [{NAMESPACE}]\n",
            url = server.url()
        );
        let mut cluster = start(&service_document(&job)).await;

        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080"]).await;
        let mut wanted = pod_target_labels("web-0", "10.1.0.1", "web");
        // Prometheus's endpointslice role attaches a pod's container labels without the
        // container id (only its pod role has `__meta_kubernetes_pod_container_id`).
        wanted.remove("__meta_kubernetes_pod_container_id");
        wanted.extend(expected(&[
            ("__meta_kubernetes_endpointslice_name", "web-abcde"),
            ("__meta_kubernetes_endpointslice_address_type", "IPv4"),
            (
                "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
                "web",
            ),
            (
                "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name",
                "true",
            ),
            ("__meta_kubernetes_endpointslice_port", "8080"),
            ("__meta_kubernetes_endpointslice_port_name", "metrics"),
            ("__meta_kubernetes_endpointslice_port_protocol", "TCP"),
            ("__meta_kubernetes_endpointslice_endpoint_conditions_ready", "true"),
            ("__meta_kubernetes_endpointslice_endpoint_conditions_serving", "true"),
            (
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                "false",
            ),
            ("__meta_kubernetes_endpointslice_endpoint_node_name", "testnode"),
            ("__meta_kubernetes_endpointslice_endpoint_zone", "zone-a"),
            ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpointslice_address_target_name", "web-0"),
            ("__meta_kubernetes_service_name", "web"),
            ("__meta_kubernetes_service_label_app", "web"),
            ("__meta_kubernetes_service_labelpresent_app", "true"),
        ]));
        assert_eq!(meta(&served["10.1.0.1:8080"]), wanted);
        for kind in ["endpointslices", "services", "pods"] {
            let watched = server
                .requests()
                .into_iter()
                .filter(|request| request.resource == kind)
                .map(|request| request.namespace)
                .collect::<Vec<_>>();
            assert!(
                !watched.is_empty() && watched.iter().all(|namespace| namespace.as_deref() == Some(NAMESPACE)),
                "{kind} are read in {NAMESPACE} only: {watched:?}"
            );
        }

        tracing::info!("a second pod joins the slice: served with its own pod labels");
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web"})));
        server.apply(&web_slice(&[("web-0", "10.1.0.1"), ("web-1", "10.1.0.2")]));
        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080"]).await;
        assert_eq!(
            served["10.1.0.2:8080"]
                .get("__meta_kubernetes_pod_name")
                .map(String::as_str),
            Some("web-1")
        );

        tracing::info!("the service's labels change: every target of its slices follows");
        let mut relabelled = web_service();
        relabelled.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "front".to_string()),
            ]
            .into(),
        );
        server.apply(&relabelled);
        api_support::eventually("the service label on both targets", LIMIT, || async {
            let served = try_served(&cluster, JOB).await?;
            let tiers: Vec<Option<&str>> = served
                .values()
                .map(|labels| labels.get("__meta_kubernetes_service_label_tier").map(String::as_str))
                .collect();
            (tiers == [Some("front"), Some("front")])
                .then_some(())
                .ok_or(format!("{tiers:?}"))
        })
        .await;
        cluster.stop_all().await;
    })
    .await;
}

/// Fetch the served targets of `job` every 20 ms until `stop` is cancelled; returns every
/// sample that lacked one of `always`, and how many samples were taken.
async fn samples_lacking(
    cluster: &Cluster,
    job: &str,
    always: &[&str],
    stop: tokio_util::sync::CancellationToken,
) -> (Vec<Vec<String>>, usize) {
    let mut lacking = Vec::new();
    let mut samples = 0;
    while !stop.is_cancelled() {
        if let Ok(served) = try_served(cluster, job).await {
            samples += 1;
            if always.iter().any(|address| !served.contains_key(*address)) {
                lacking.push(served.keys().cloned().collect());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (lacking, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_resumes_and_an_expired_history_relists_without_losing_a_pod() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web"})));
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web"})));
        let (_dir, kubeconfig) = write_kubeconfig(&server);
        let mut cluster = start(&service_document(&kubernetes_job(JOB, "pod", &kubeconfig, ""))).await;
        wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080"]).await;
        assert_eq!(server.count("list", "pods"), 1);

        tracing::info!("the watch is dropped and a pod added meanwhile: seen by resuming, not relisting");
        let watches = server.count("watch", "pods");
        server.drop_watches();
        server.apply(&pod("web-2", "10.1.0.3", json!({"app": "web"})));
        wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"]).await;
        assert!(server.count("watch", "pods") > watches, "the watch was resumed");
        assert_eq!(server.count("list", "pods"), 1, "a resumed watch needs no list");

        tracing::info!("the history expires (410): relisted in pages, web-0 and web-1 served throughout");
        // Lists of one item per page make the relist span several requests.
        server.set_page_size(Some(1));
        let stop = tokio_util::sync::CancellationToken::new();
        let sampling = samples_lacking(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080"], stop.clone());
        let changing = async {
            // Let the sampler see the starting state first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            server.expire_history();
            assert!(server.delete::<Pod>(Some(NAMESPACE), "web-2"));
            server.apply(&pod("web-3", "10.1.0.4", json!({"app": "web"})));
            wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.4:8080"]).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        };
        let ((lacking, samples), ()) = tokio::join!(sampling, changing);
        assert!(samples >= 5, "only {samples} samples of the served targets were taken");
        assert!(
            lacking.is_empty(),
            "served without a pod present throughout: {lacking:?}"
        );
        let expired: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|request| request.resource == "pods" && request.status == 410)
            .collect();
        assert!(!expired.is_empty(), "the resumed watch was answered 410");
        assert!(server.count("list", "pods") >= 4, "relisted in pages of one");
        cluster.stop_all().await;
    })
    .await;
}

/// `/debug/status`'s discovery section.
async fn discovery_status(cluster: &Cluster) -> serde_json::Value {
    let fetched = cluster.get(0, "/debug/status").await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    fetched.json()["discovery"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_pods_remove_nothing_are_reported_and_are_served_once_allowed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web"})));
        server.forbid("pods");
        let (_dir, kubeconfig) = write_kubeconfig(&server);
        let mut cluster = start(&service_document(&kubernetes_job(JOB, "pod", &kubeconfig, ""))).await;

        tracing::info!("403 from the start: the static job is served, the error is reported");
        wait_addresses(&cluster, STATIC_JOB, &["10.0.0.1:9100"]).await;
        let status = api_support::eventually("/debug/status reporting the 403", LIMIT, || async {
            let status = discovery_status(&cluster).await;
            let reported = status["errors"].as_array().is_some_and(|errors| {
                errors
                    .iter()
                    .any(|e| e["error"].as_str().is_some_and(|t| t.contains("forbidden")))
            });
            if reported { Ok(status) } else { Err(status.to_string()) }
        })
        .await;
        assert_eq!(status["synced"], false, "{status}");
        let errors = status["errors"].as_array().cloned().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{status}");
        assert_eq!(errors[0]["job"], JOB);
        assert_eq!(errors[0]["source"], "kubernetes_sd_configs[0]");
        assert!(server.count("list", "pods") >= 1);
        assert_eq!(try_served(&cluster, JOB).await.map(|served| served.len()), Ok(0));

        tracing::info!("allowed: the pod is served and the error is gone");
        server.allow("pods");
        wait_addresses(&cluster, JOB, &["10.1.0.1:8080"]).await;
        api_support::eventually("/debug/status synced without errors", LIMIT, || async {
            let status = discovery_status(&cluster).await;
            (status == json!({"running": true, "synced": true, "errors": []}))
                .then_some(())
                .ok_or(status.to_string())
        })
        .await;

        tracing::info!("forbidden after the list: a pod deleted meanwhile stays served (I7) until allowed");
        server.forbid("pods");
        assert!(server.delete::<Pod>(Some(NAMESPACE), "web-0"));
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web"})));
        api_support::eventually("/debug/status reporting the 403 again", LIMIT, || async {
            let status = discovery_status(&cluster).await;
            status["errors"]
                .as_array()
                .is_some_and(|errors| errors.len() == 1)
                .then_some(())
                .ok_or(status.to_string())
        })
        .await;
        for _ in 0..10 {
            let served = try_served(&cluster, JOB).await.expect("served");
            assert_eq!(
                served.keys().collect::<Vec<_>>(),
                ["10.1.0.1:8080"],
                "nothing changes while forbidden"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.allow("pods");
        wait_addresses(&cluster, JOB, &["10.1.0.2:8080"]).await;
        wait_addresses(&cluster, STATIC_JOB, &["10.0.0.1:9100"]).await;
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_configs_apply_to_the_kubernetes_meta_labels() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web", "scrape": "true"})));
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web"})));
        server.apply(&pod("db-0", "10.1.0.3", json!({"app": "db", "scrape": "false"})));
        let (_dir, kubeconfig) = write_kubeconfig(&server);
        let relabel = "    relabel_configs:\n    \
                       - source_labels: [__meta_kubernetes_pod_label_scrape]\n      regex: 'true'\n      action: keep\n    \
                       - source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_name]\n      \
                         separator: /\n      target_label: pod\n";
        let mut cluster = start(&service_document(&kubernetes_job(JOB, "pod", &kubeconfig, relabel))).await;

        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080"]).await;
        // The rules decide which targets are kept; the labels served are the discovered ones,
        // as upstream's, since the collector's Prometheus receiver runs the same rules again.
        assert_eq!(
            meta(&served["10.1.0.1:8080"]).get("__meta_kubernetes_pod_name").copied(),
            Some("web-0")
        );
        assert_eq!(served["10.1.0.1:8080"].get("pod"), None, "labels are served unrelabelled");

        tracing::info!("a pod labelled to be scraped is kept from then on");
        server.apply(&pod("web-1", "10.1.0.2", json!({"app": "web", "scrape": "true"})));
        let served = wait_addresses(&cluster, JOB, &["10.1.0.1:8080", "10.1.0.2:8080"]).await;
        assert_eq!(
            meta(&served["10.1.0.2:8080"]).get("__meta_kubernetes_pod_label_scrape").copied(),
            Some("true")
        );

        tracing::info!("and dropped once the label goes");
        server.apply(&pod("web-0", "10.1.0.1", json!({"app": "web"})));
        wait_addresses(&cluster, JOB, &["10.1.0.2:8080"]).await;
        cluster.stop_all().await;
    })
    .await;
}

/// Prometheus's `makeNode`, named `name` with internal IP `ip`.
fn node(name: &str, ip: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"test-label": "testvalue"},
            "annotations": {"test-annotation": "testannotationvalue"}
        },
        "spec": {"providerID": "aws:///nl-north-7b/i-03149834983492827"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}
        }
    }))
    .expect("a valid Node")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_scoped_nodes_are_served_at_their_kubelet_port() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&node("node-a", "10.0.1.1"));
        let (_dir, kubeconfig) = write_kubeconfig(&server);
        let mut cluster = start(&service_document(&kubernetes_job("kubelets", "node", &kubeconfig, ""))).await;

        let served = wait_addresses(&cluster, "kubelets", &["10.0.1.1:10250"]).await;
        assert_eq!(
            meta(&served["10.0.1.1:10250"]),
            expected(&[
                ("__meta_kubernetes_node_name", "node-a"),
                (
                    "__meta_kubernetes_node_provider_id",
                    "aws:///nl-north-7b/i-03149834983492827"
                ),
                ("__meta_kubernetes_node_label_test_label", "testvalue"),
                ("__meta_kubernetes_node_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_node_annotation_test_annotation",
                    "testannotationvalue"
                ),
                ("__meta_kubernetes_node_annotationpresent_test_annotation", "true"),
                ("__meta_kubernetes_node_address_InternalIP", "10.0.1.1"),
            ])
        );
        assert_eq!(
            served["10.0.1.1:10250"].get("instance").map(String::as_str),
            Some("node-a")
        );
        let watched: Vec<_> = server
            .requests()
            .into_iter()
            .filter(|request| request.resource == "nodes")
            .map(|request| request.namespace)
            .collect();
        assert!(
            !watched.is_empty() && watched.iter().all(Option::is_none),
            "nodes are read at the cluster scope: {watched:?}"
        );

        tracing::info!("a node joins, another leaves");
        server.apply(&node("node-b", "10.0.1.2"));
        assert!(server.delete::<Node>(None, "node-a"));
        wait_addresses(&cluster, "kubelets", &["10.0.1.2:10250"]).await;
        cluster.stop_all().await;
    })
    .await;
}
