//! Collector discovery from Kubernetes against a fake API server over real HTTP
//! (`support::fake_api_server`), with the real kube client and watcher.
//!
//! The first scenarios run the collector watcher alone and read what it publishes; every
//! publication is recorded, so a scenario can check that no pod present throughout ever
//! went missing from the published set. The last ones run a real single-replica service
//! whose kubeconfig points at the fake server, and read `/readyz` and the assignment served.
//!
//! Every wait is bounded; a hang fails with what was expected and what was last seen.

mod api_support;
mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use api_support::Cluster;
use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use support::fake_api_server::FakeApiServer;
use target_allocator::allocation::membership::ObservedCollector;
use target_allocator::allocation::membership::Readiness;
use target_allocator::kubernetes::collectors::CollectorDiscovery;
use target_allocator::kubernetes::collectors::CollectorPods;
use target_allocator::kubernetes::collectors::CollectorView;
use target_allocator::kubernetes::collectors::CollectorWatcher;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const NAMESPACE: &str = "observability";
const SELECTOR: &str = "app=collector";
/// Bound on anything that normally takes well under a second (or one watcher backoff).
const LIMIT: Duration = Duration::from_secs(15);
/// Bound on a whole scenario.
const SCENARIO_LIMIT: Duration = Duration::from_secs(60);

/// 2026-01-01T00:00:00Z, when the test pods' Ready conditions last changed.
const TRANSITION_MILLIS: u64 = 1_767_225_600_000;

/// A collector pod (labelled `app=collector`), scheduled on `node` unless `None`.
fn collector_pod(name: &str, node: Option<&str>, ready: bool) -> Pod {
    pod(name, node, ready, &[("app", "collector")])
}

fn pod(name: &str, node: Option<&str>, ready: bool, labels: &[(&str, &str)]) -> Pod {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "otc-container", "image": "otel/collector"}]},
        "status": {
            "phase": if node.is_some() { "Running" } else { "Pending" },
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]
        }
    }))
    .expect("a valid Pod")
}

/// A collector pod that turned unready just now, as the kubelet reports it.
fn collector_pod_unready_now(name: &str, node: &str) -> Pod {
    let mut pod = collector_pod(name, Some(node), false);
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    for condition in pod
        .status
        .as_mut()
        .and_then(|status| status.conditions.as_mut())
        .into_iter()
        .flatten()
    {
        condition.last_transition_time = Some(now.clone());
    }
    pod
}

fn ready_on(node: &str) -> ObservedCollector {
    ObservedCollector {
        node: Some(node.to_string()),
        readiness: Readiness::Ready,
    }
}

/// The collectors' names in a view.
fn names(view: &CollectorView) -> Vec<String> {
    view.collectors.keys().cloned().collect()
}

/// A collector watcher running against the fake server, with every publication recorded.
struct Discovery {
    discovery: CollectorDiscovery,
    view: watch::Receiver<CollectorView>,
    publications: Arc<Mutex<Vec<CollectorView>>>,
    shutdown: CancellationToken,
}

impl Discovery {
    fn start(server: &FakeApiServer) -> Self {
        let pods = CollectorPods {
            namespace: NAMESPACE.to_string(),
            label_selector: Some(SELECTOR.to_string()),
        };
        let (watcher, discovery) = CollectorWatcher::new(server.client(), pods, None);
        let shutdown = CancellationToken::new();
        // Subscribed before the watcher runs: a subscription counts what was published before
        // it as seen, so one made after could miss the first publication (seen once in CI:
        // the history then started at generation 2).
        let mut recorder = discovery.subscribe();
        tokio::spawn(watcher.run(shutdown.clone()));
        let publications = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&publications);
        tokio::spawn(async move {
            while recorder.changed().await.is_ok() {
                let view = recorder.borrow_and_update().clone();
                recorded.lock().expect("publications").push(view);
            }
        });
        Self {
            view: discovery.subscribe(),
            discovery,
            publications,
            shutdown,
        }
    }

    /// Wait until the published view satisfies `condition`.
    async fn wait_for(&mut self, what: &str, condition: impl Fn(&CollectorView) -> bool) -> CollectorView {
        let waited = tokio::time::timeout(LIMIT, async {
            self.view
                .wait_for(|view| condition(view))
                .await
                .map(|view| view.clone())
        })
        .await;
        match waited {
            Ok(Ok(view)) => view,
            Ok(Err(_)) => panic!("expected {what}, but the watcher stopped"),
            Err(_) => panic!("expected {what} within {LIMIT:?}; last view: {:?}", *self.view.borrow()),
        }
    }

    /// Every publication so far, checked to be complete (no generation skipped).
    fn publications(&self) -> Vec<CollectorView> {
        let publications = self.publications.lock().expect("publications").clone();
        for (index, view) in publications.iter().enumerate() {
            assert_eq!(
                view.generation,
                index as u64 + 1,
                "the recorder missed a publication; the history cannot be judged"
            );
        }
        publications
    }

    /// Check that from the first synced publication on, every publication had `name`.
    fn assert_never_lacked(&self, name: &str) {
        for view in self.publications().iter().skip_while(|view| !view.synced) {
            assert!(
                view.collectors.contains_key(name),
                "publication {} lacks {name}, present throughout: {view:?}",
                view.generation
            );
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Run a scenario with an overall bound, so a hang fails instead of blocking the suite.
async fn scenario(body: impl Future<Output = ()>) {
    if tokio::time::timeout(SCENARIO_LIMIT, body).await.is_err() {
        panic!("the scenario did not finish within {SCENARIO_LIMIT:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_list_reports_scheduled_selected_pods_on_their_nodes() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        server.apply(&collector_pod("collector-1", Some("node-b"), true));
        server.apply(&collector_pod("collector-unscheduled", None, false));
        server.apply(&pod("prometheus-0", Some("node-a"), true, &[("app", "prometheus")]));

        let mut discovery = Discovery::start(&server);
        let view = discovery.wait_for("the first list", |view| view.synced).await;

        assert_eq!(
            view.collectors,
            [
                ("collector-0".to_string(), ready_on("node-a")),
                ("collector-1".to_string(), ready_on("node-b")),
            ]
            .into(),
            "unscheduled and unselected pods are not collectors"
        );
        assert_eq!(view.error, None);
        assert_eq!(discovery.discovery.not_ready_reason(), None);
        let list = server
            .requests()
            .into_iter()
            .find(|request| request.verb == "list")
            .expect("a list request");
        assert_eq!(list.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(list.label_selector.as_deref(), Some(SELECTOR));
        assert!(
            discovery.publications().iter().all(|view| view.synced),
            "nothing is published before the list is complete"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_changed_terminating_and_deleted_pods_are_followed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        let mut discovery = Discovery::start(&server);
        discovery.wait_for("the first list", |view| view.synced).await;

        tracing::info!("a collector is added");
        server.apply(&collector_pod("collector-1", Some("node-b"), true));
        discovery
            .wait_for("collector-1 added", |view| view.collectors.contains_key("collector-1"))
            .await;

        tracing::info!("a collector becomes unready: reported with the time of the transition");
        server.apply(&collector_pod("collector-0", Some("node-a"), false));
        let view = discovery
            .wait_for("collector-0 unready", |view| {
                view.collectors.get("collector-0").map(|c| c.readiness) != Some(Readiness::Ready)
            })
            .await;
        assert_eq!(
            view.collectors["collector-0"].readiness,
            Readiness::NotReadySince {
                unix_millis: TRANSITION_MILLIS
            }
        );

        tracing::info!("a pod leaving the selection is no longer a collector");
        server.apply(&pod("collector-1", Some("node-b"), true, &[("app", "retired")]));
        discovery
            .wait_for("collector-1 unselected", |view| {
                !view.collectors.contains_key("collector-1")
            })
            .await;

        tracing::info!("a terminating collector is absent at once");
        let mut terminating = collector_pod("collector-0", Some("node-a"), true);
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:05:00Z".parse().expect("a timestamp"),
        ));
        server.apply(&terminating);
        discovery
            .wait_for("collector-0 terminating", |view| view.collectors.is_empty())
            .await;

        tracing::info!("a new collector, then deleted");
        server.apply(&collector_pod("collector-2", Some("node-c"), true));
        discovery
            .wait_for("collector-2 added", |view| names(view) == ["collector-2"])
            .await;
        assert!(server.delete::<Pod>(Some(NAMESPACE), "collector-2"));
        let view = discovery
            .wait_for("collector-2 deleted", |view| view.collectors.is_empty())
            .await;
        assert!(view.synced, "an empty set after the list is a real empty set");
        assert_eq!(
            server.count("list", "pods"),
            1,
            "all of it followed by watching, no relist"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_watch_resumes_where_it_was_and_sees_changes_made_meanwhile() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        let mut discovery = Discovery::start(&server);
        discovery.wait_for("the first list", |view| view.synced).await;
        let watches_before = server.count("watch", "pods");

        tracing::info!("the API server drops every watch; a pod is added before the client is back");
        server.drop_watches();
        server.apply(&collector_pod("collector-1", Some("node-b"), true));

        discovery
            .wait_for("collector-1 seen after the resume", |view| {
                names(view) == ["collector-0", "collector-1"]
            })
            .await;
        assert!(
            server.count("watch", "pods") > watches_before,
            "the watch was restarted"
        );
        assert_eq!(
            server.count("list", "pods"),
            1,
            "resumed from its resourceVersion, no relist"
        );
        let resumed = server
            .requests()
            .into_iter()
            .rfind(|request| request.verb == "watch")
            .expect("a watch request");
        assert!(
            resumed.resource_version.as_deref().is_some_and(|v| v != "0"),
            "the watch resumed from a resource version: {resumed:?}"
        );
        discovery.assert_never_lacked("collector-0");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_history_relists_without_dropping_pods_that_stayed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        // One pod per page: a relist takes several requests, so a set replaced before the
        // relist is complete would be published short of pods.
        server.set_page_size(Some(1));
        for (name, node) in [
            ("collector-0", "node-a"),
            ("collector-1", "node-b"),
            ("collector-2", "node-c"),
        ] {
            server.apply(&collector_pod(name, Some(node), true));
        }
        let mut discovery = Discovery::start(&server);
        let view = discovery.wait_for("the first list", |view| view.synced).await;
        assert_eq!(names(&view), ["collector-0", "collector-1", "collector-2"]);

        tracing::info!("the history is compacted; meanwhile collector-0 goes and collector-3 comes");
        server.expire_history();
        assert!(server.delete::<Pod>(Some(NAMESPACE), "collector-0"));
        server.apply(&collector_pod("collector-3", Some("node-d"), true));

        let view = discovery
            .wait_for("the relisted set", |view| {
                names(view) == ["collector-1", "collector-2", "collector-3"]
            })
            .await;
        assert!(view.synced);
        assert_eq!(view.error, None, "an expired watch is routine, not an error");
        let requests = server.requests();
        assert!(
            requests.iter().any(|r| r.verb == "watch" && r.status == 410),
            "the resumed watch was told its version expired: {requests:?}"
        );
        let first_pages = requests
            .iter()
            .filter(|r| r.verb == "list" && r.continue_token.is_none())
            .count();
        assert_eq!(first_pages, 2, "the 410 led to exactly one relist");
        discovery.assert_never_lacked("collector-1");
        discovery.assert_never_lacked("collector-2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_from_the_start_is_not_synced_says_why_and_syncs_once_allowed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        server.forbid("pods");
        let mut discovery = Discovery::start(&server);

        let view = discovery
            .wait_for("the 403 reported", |view| view.error.is_some())
            .await;
        assert!(!view.synced);
        assert!(view.collectors.is_empty());
        let error = view.error.unwrap_or_default();
        assert!(error.contains("forbidden"), "{error}");
        assert!(error.contains(NAMESPACE), "the error names the namespace: {error}");
        assert!(error.contains("list and watch on pods"), "and the permission: {error}");
        let reason = discovery.discovery.not_ready_reason().expect("not ready");
        assert!(reason.contains("forbidden") && reason.contains(SELECTOR), "{reason}");

        tracing::info!("the RBAC rule is fixed");
        server.allow("pods");
        let view = discovery.wait_for("the first list", |view| view.synced).await;
        assert_eq!(names(&view), ["collector-0"]);
        assert_eq!(view.error, None);
        assert_eq!(discovery.discovery.not_ready_reason(), None);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_after_the_list_keeps_the_last_good_set_and_reports_the_error() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        server.apply(&collector_pod("collector-1", Some("node-b"), true));
        let mut discovery = Discovery::start(&server);
        discovery.wait_for("the first list", |view| view.synced).await;

        tracing::info!("the permission is revoked, and collector-1 is deleted where we cannot see");
        server.forbid("pods");
        assert!(server.delete::<Pod>(Some(NAMESPACE), "collector-1"));
        let view = discovery
            .wait_for("the 403 reported", |view| view.error.is_some())
            .await;
        assert!(view.synced, "still synced: the set is the last good one");
        assert_eq!(names(&view), ["collector-0", "collector-1"], "nothing deleted");
        assert!(view.error.unwrap_or_default().contains("forbidden"));
        assert_eq!(discovery.discovery.not_ready_reason(), None, "ready once listed");

        tracing::info!("allowed again: the watch resumes and catches up");
        server.allow("pods");
        let view = discovery
            .wait_for("the deletion seen", |view| names(view) == ["collector-0"])
            .await;
        assert_eq!(view.error, None);
        discovery.assert_never_lacked("collector-0");
        assert!(
            discovery
                .publications()
                .iter()
                .filter(|view| view.error.is_some())
                .all(|view| view.collectors.len() == 2),
            "while forbidden, the set never shrank"
        );
    })
    .await;
}

// === The service: readiness gate, grace period, I7 ===

const JOB: &str = "node-exporter";
const TARGETS: usize = 24;

/// A single-replica service configuration: collectors from the fake API server (through a
/// kubeconfig file), one job of static targets, the default consistent-hashing strategy.
fn service_document(kubeconfig: &std::path::Path, grace: &str) -> String {
    let targets: Vec<String> = (0..TARGETS).map(|i| format!("'10.0.0.{i}:9100'")).collect();
    format!(
        "kube_config_file_path: {kubeconfig}\n\
         collector_namespace: {NAMESPACE}\n\
         collector_selector:\n  matchlabels:\n    app: collector\n\
         collector_not_ready_grace_period: {grace}\n\
         config:\n  scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n    - targets: [{targets}]\n",
        kubeconfig = kubeconfig.display(),
        targets = targets.join(", "),
    )
}

/// The kubeconfig for `server`, written into a temporary directory.
fn write_kubeconfig(server: &FakeApiServer) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join("kubeconfig"), server.kubeconfig(NAMESPACE)).expect("write the kubeconfig");
    dir
}

/// Which targets each collector serves, from `/jobs/{job}/targets`.
async fn assignment(cluster: &Cluster) -> serde_json::Value {
    let fetched = cluster.get(0, &format!("/jobs/{JOB}/targets")).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    fetched.json()
}

/// Sample the assignment every 100 ms for `period`; each sample must equal `expected`.
async fn assert_assignment_holds(cluster: &Cluster, expected: &serde_json::Value, period: Duration, what: &str) {
    let until = tokio::time::Instant::now() + period;
    while tokio::time::Instant::now() < until {
        let now = assignment(cluster).await;
        assert_eq!(&now, expected, "{what}: the assignment changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Plans this replica has committed as leader since it started (`/metrics`).
async fn plans_applied(cluster: &Cluster) -> u64 {
    let metrics = cluster.get(0, "/metrics").await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("target_allocator_plans_total{outcome=\"applied\"} "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no applied plans counter in /metrics:\n{metrics}"))
}

/// Like [`assert_assignment_holds`], and the leader plans nothing at all meanwhile: not even
/// a collector recorded as absent, which would move nothing yet but start its grace timer.
async fn assert_nothing_planned(cluster: &Cluster, expected: &serde_json::Value, period: Duration, what: &str) {
    let plans = plans_applied(cluster).await;
    assert_assignment_holds(cluster, expected, period, what).await;
    assert_eq!(
        plans_applied(cluster).await,
        plans,
        "{what}: the leader committed a plan"
    );
}

fn collectors_of(assignment: &serde_json::Value) -> Vec<String> {
    assignment
        .as_object()
        .map(|collectors| collectors.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_kubeconfig_stops_the_replica_at_startup_naming_the_file() {
    scenario(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "clusters: [").expect("write a broken kubeconfig");
        let port = api_support::free_ports(1)[0];
        let document = format!(
            "listen_addr: 127.0.0.1:{port}\n{}",
            service_document(&kubeconfig, "30s")
        );
        let config = target_allocator::config::parse(
            "targetallocator.yaml",
            &document,
            &target_allocator::config::UpstreamFlags::default(),
            &|_| None,
        )
        .expect("a valid configuration")
        .config;
        let error = target_allocator::service::run(config, CancellationToken::new())
            .await
            .expect_err("the kubeconfig cannot be used");
        let text = error.to_string();
        assert!(
            text.contains("Kubernetes discovery (collectors or Prometheus CRs) cannot start"),
            "{text}"
        );
        assert!(text.contains(&kubeconfig.display().to_string()), "{text}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replica_is_not_ready_until_the_collector_pods_are_listed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&collector_pod("collector-0", Some("node-a"), true));
        server.forbid("pods");
        let kubeconfig = write_kubeconfig(&server);
        let mut cluster = Cluster::new(1, &service_document(&kubeconfig.path().join("kubeconfig"), "30s"));
        cluster.start(0);

        tracing::info!("forbidden: /readyz says why");
        let reason = api_support::eventually("/readyz 503 naming the 403", LIMIT, || async {
            let fetched = cluster.try_get(0, "/readyz").await?;
            let text = fetched.text();
            if fetched.status == StatusCode::SERVICE_UNAVAILABLE && text.contains("forbidden") {
                Ok(text)
            } else {
                Err(format!("{} {text}", fetched.status))
            }
        })
        .await;
        assert!(reason.contains("collector discovery"), "{reason}");
        assert!(reason.contains(NAMESPACE), "{reason}");

        tracing::info!("allowed: ready, and the targets go to the listed collector");
        server.allow("pods");
        cluster.wait_ready(0).await;
        let served = cluster.wait_allocated(0, JOB, TARGETS).await;
        assert_eq!(collectors_of(&served), ["collector-0"]);
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_leaving_within_the_grace_period_and_a_restart_before_the_list_move_nothing() {
    scenario(async {
        let server = FakeApiServer::start().await;
        for (name, node) in [
            ("collector-0", "node-a"),
            ("collector-1", "node-b"),
            ("collector-2", "node-c"),
        ] {
            server.apply(&collector_pod(name, Some(node), true));
        }
        let kubeconfig = write_kubeconfig(&server);
        let mut cluster = Cluster::new(1, &service_document(&kubeconfig.path().join("kubeconfig"), "20s"));
        cluster.start(0);
        cluster.wait_ready(0).await;
        let before = cluster.wait_allocated(0, JOB, TARGETS).await;
        assert_eq!(collectors_of(&before), ["collector-0", "collector-1", "collector-2"]);

        tracing::info!("collector-1 is deleted and comes back (a StatefulSet pod restart) within the grace");
        assert!(server.delete::<Pod>(Some(NAMESPACE), "collector-1"));
        assert_assignment_holds(&cluster, &before, Duration::from_secs(3), "collector-1 gone").await;
        server.apply(&collector_pod("collector-1", Some("node-b"), true));
        assert_assignment_holds(&cluster, &before, Duration::from_secs(2), "collector-1 back").await;

        tracing::info!("collector-2 turns unready for a while, then ready again");
        server.apply(&collector_pod_unready_now("collector-2", "node-c"));
        assert_assignment_holds(&cluster, &before, Duration::from_secs(2), "collector-2 unready").await;
        server.apply(&collector_pod("collector-2", Some("node-c"), true));

        tracing::info!("restart while the pods cannot be listed: no collector is taken for absent (I7)");
        cluster.stop_all().await;
        server.forbid("pods");
        cluster.start(0);
        api_support::eventually("the restarted replica serving", LIMIT, || async {
            let fetched = cluster.try_get(0, &format!("/jobs/{JOB}/targets")).await?;
            (fetched.status == StatusCode::OK).then_some(()).ok_or(fetched.text())
        })
        .await;
        let readyz = cluster.get(0, "/readyz").await;
        assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE, "{}", readyz.text());
        assert_eq!(plans_applied(&cluster).await, 0, "restarted: no plan before the list");
        assert_nothing_planned(&cluster, &before, Duration::from_secs(3), "pods not listed yet").await;

        tracing::info!("listed again: ready, and still nothing moved");
        server.allow("pods");
        cluster.wait_ready(0).await;
        assert_assignment_holds(&cluster, &before, Duration::from_secs(2), "pods listed").await;

        tracing::info!("the permission is revoked after the list: the table keeps every collector");
        // Let the return of collector-2 be recorded first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.forbid("pods");
        assert!(server.delete::<Pod>(Some(NAMESPACE), "collector-0"));
        assert_nothing_planned(&cluster, &before, Duration::from_secs(3), "403 after the list").await;
        let readyz = cluster.get(0, "/readyz").await;
        assert_eq!(readyz.status, StatusCode::OK, "listed once: still ready");
        cluster.stop_all().await;
    })
    .await;
}
