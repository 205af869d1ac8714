//! Prometheus CR discovery end to end: a real single-replica service whose kubeconfig points
//! at the fake API server (`support::fake_api_server`), ServiceMonitors and PodMonitors
//! applied, changed and deleted there, the jobs read back from `/scrape_configs` and `/jobs`,
//! and the targets their `kubernetes_sd_configs` discover in the same fake server (services,
//! endpoint slices, pods) read back from `/jobs/{job}/targets?collector_id=…`.
//!
//! Every wait is bounded.

mod api_support;
mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use api_support::Cluster;
use axum::http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use serde_json::json;
use support::fake_api_server::FakeApiServer;
use support::kubernetes_objects::ContainerPort;
use support::kubernetes_objects::Served;
use support::kubernetes_objects::endpoint_slice;
use support::kubernetes_objects::expected;
use support::kubernetes_objects::leak;
use support::kubernetes_objects::meta;
use support::kubernetes_objects::pod_target_labels;
use support::kubernetes_objects::pod_with_ports;
use support::kubernetes_objects::served_targets;
use support::kubernetes_objects::service;

const NAMESPACE: &str = "observability";
const MONITORING: &str = "monitoring.coreos.com/v1";
/// Bound on one change showing up: regeneration is rate limited to 2 s, and a missing CRD
/// is retried with the watcher's backoff (up to 30 s).
const LIMIT: Duration = Duration::from_secs(40);
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);
const FILE_JOB: &str = "file-job";

async fn scenario(body: impl Future<Output = ()>) {
    tokio::time::timeout(SCENARIO_LIMIT, body)
        .await
        .expect("the scenario finishes in time");
}

fn service_monitor(namespace: &str, name: &str, port: &str) -> Value {
    json!({
        "apiVersion": MONITORING,
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a"}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "endpoints": [{
                "port": port,
                "interval": "15s",
                "basicAuth": {"username": {"name": "auth", "key": "user"}, "password": {"name": "auth", "key": "pass"}}
            }]
        }
    })
}

fn secret(namespace: &str) -> k8s_openapi::api::core::v1::Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "auth", "namespace": namespace},
        // base64 of "alice" and "s3cret"
        "data": {"user": "YWxpY2U=", "pass": "czNjcmV0"}
    }))
    .expect("a valid Secret")
}

/// One replica: static collector, one file job, ServiceMonitors selected by `team: a`
/// anywhere but in `denied`.
fn start(server: &FakeApiServer) -> (Cluster, tempfile::TempDir) {
    start_with(server, "")
}

/// [`start`] with `extra` (YAML lines indented by two spaces) added to `prometheus_cr`.
fn start_with(server: &FakeApiServer, extra: &str) -> (Cluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig(NAMESPACE)).expect("write the kubeconfig");
    let document = format!(
        "kube_config_file_path: {kubeconfig}\n\
         collector_namespace: {NAMESPACE}\n\
         collectors:\n  static: [collector-0]\n\
         prometheus_cr:\n  enabled: true\n  service_monitor_selector:\n    matchLabels:\n      team: a\n  \
         deny_namespaces: [denied]\n\
         {extra}\
         config:\n  scrape_configs:\n  - job_name: {FILE_JOB}\n    static_configs:\n    - targets: ['10.0.0.1:9100']\n",
        kubeconfig = kubeconfig.display(),
    );
    let mut cluster = Cluster::new(1, &document);
    cluster.start(0);
    (cluster, dir)
}

/// `/scrape_configs` once it satisfies `condition`.
async fn scrape_configs_where(cluster: &Cluster, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    api_support::eventually(what, LIMIT, || async {
        let fetched = cluster.try_get(0, "/scrape_configs").await?;
        if fetched.status != StatusCode::OK {
            return Err(format!("{} {}", fetched.status, fetched.text()));
        }
        let configs = fetched.json();
        if condition(&configs) {
            Ok(configs)
        } else {
            Err(configs.to_string())
        }
    })
    .await
}

const JOB: &str = "serviceMonitor/apps/web/0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_monitor_becomes_a_job_that_follows_changes_and_deletion() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&secret("apps"));
        server.apply_json(MONITORING, "servicemonitors", service_monitor("apps", "web", "http"));
        server.apply_json(MONITORING, "servicemonitors", service_monitor("denied", "web", "http"));
        let (mut cluster, _dir) = start(&server);

        tracing::info!("applied: the job is served next to the file job, secrets masked");
        let configs = scrape_configs_where(&cluster, "the generated job", |c| c.get(JOB).is_some()).await;
        assert!(configs.get(FILE_JOB).is_some(), "{configs}");
        assert!(
            configs.get("serviceMonitor/denied/web/0").is_none(),
            "a monitor in a denied namespace has no job: {configs}"
        );
        let job = &configs[JOB];
        assert_eq!(job["job_name"], json!(JOB));
        assert_eq!(job["scrape_interval"], json!("15s"));
        assert_eq!(job["kubernetes_sd_configs"][0]["role"], json!("endpointslice"));
        assert_eq!(job["basic_auth"]["username"], json!("alice"));
        assert_eq!(job["basic_auth"]["password"], json!("<secret>"), "masked on plain HTTP");
        let rules = job["relabel_configs"].to_string();
        assert!(rules.contains("$(SHARD);|.+;.+"), "{rules}");
        assert!(rules.contains("__meta_kubernetes_endpointslice_port_name"), "{rules}");

        // `/jobs` lists only jobs with targets (docs/compatibility.md, "The HTTP API"); this one has none,
        // the fake server holding no endpoint slices, like any job whose discovery finds nothing.
        // The file job's targets are planned in a batch of their own, possibly a coalescing
        // window after the scrape configs: wait for them rather than race them.
        let jobs = api_support::eventually("the file job on /jobs", LIMIT, || async {
            let jobs = cluster.try_get(0, "/jobs").await?.json();
            match jobs.get(FILE_JOB) {
                Some(_) => Ok(jobs),
                None => Err(jobs.to_string()),
            }
        })
        .await;
        assert!(jobs.get(JOB).is_none(), "{jobs}");

        tracing::info!("modified: the job follows");
        server.apply_json(MONITORING, "servicemonitors", service_monitor("apps", "web", "metrics"));
        scrape_configs_where(&cluster, "the job with the new port", |c| {
            c[JOB]["relabel_configs"].to_string().contains("\"metrics\"")
        })
        .await;

        tracing::info!("deleted: the job goes, the file job stays");
        assert!(server.delete_json(MONITORING, "servicemonitors", Some("apps"), "web"));
        let configs = scrape_configs_where(&cluster, "the job removed", |c| c.get(JOB).is_none()).await;
        assert!(configs.get(FILE_JOB).is_some(), "{configs}");
        cluster.stop_all().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_reported_and_picked_up_once_installed() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.unserve("servicemonitors");
        server.apply(&secret("apps"));
        let (mut cluster, _dir) = start(&server);

        tracing::info!("no CRD: the replica serves the file job and reports the error");
        cluster.wait_ready(0).await;
        scrape_configs_where(&cluster, "the file job", |c| c.get(FILE_JOB).is_some()).await;
        api_support::eventually("a servicemonitors watch error on /metrics", LIMIT, || async {
            let text = cluster.try_get(0, "/metrics").await?.text();
            let counted = text.lines().any(|line| {
                line.starts_with("target_allocator_kubernetes_watch_errors_total")
                    && line.contains("resource=\"servicemonitors\"")
                    && !line.ends_with(" 0")
            });
            if counted {
                Ok(())
            } else {
                Err("no error counted yet".to_string())
            }
        })
        .await;

        tracing::info!("CRD installed and a monitor applied: the job appears");
        server.serve("servicemonitors");
        server.apply_json(MONITORING, "servicemonitors", service_monitor("apps", "web", "http"));
        let configs = scrape_configs_where(&cluster, "the generated job", |c| c.get(JOB).is_some()).await;
        assert!(configs.get(FILE_JOB).is_some(), "{configs}");
        cluster.stop_all().await;
    })
    .await;
}

const COLLECTOR: &str = "collector-0";
/// Where the monitored workloads of the scenarios below live.
const APPS: &str = "apps";

/// The `_link` `/jobs` gives `job`, once `job` has targets.
async fn job_link(cluster: &Cluster, job: &str) -> String {
    api_support::eventually(&format!("{job} on /jobs"), LIMIT, || async {
        let fetched = cluster.try_get(0, "/jobs").await?;
        if fetched.status != StatusCode::OK {
            return Err(format!("{} {}", fetched.status, fetched.text()));
        }
        let jobs = fetched.json();
        jobs[job]["_link"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| jobs.to_string())
    })
    .await
}

/// Wait until `link` (a job's `/jobs/{job}/targets`) serves the static collector exactly
/// `addresses`.
async fn wait_served(cluster: &Cluster, link: &str, addresses: &[&str]) -> Served {
    let mut wanted: Vec<&str> = addresses.to_vec();
    wanted.sort_unstable();
    let path = format!("{link}?collector_id={COLLECTOR}");
    api_support::eventually(&format!("{path} serving exactly {wanted:?}"), LIMIT, || async {
        let fetched = cluster.try_get(0, &path).await?;
        if fetched.status != StatusCode::OK {
            return Err(format!("{} {}", fetched.status, fetched.text()));
        }
        let served = served_targets(&fetched.body)?;
        let now: Vec<&str> = served.keys().map(String::as_str).collect();
        if now == wanted {
            Ok(served.clone())
        } else {
            Err(format!("{now:?}"))
        }
    })
    .await
}

/// The labels a collector's rules read are served as discovered: `__address__` and
/// `__meta_kubernetes_*` only, none of what the generated relabelings would write
/// (`namespace`, `service`, `pod`, `endpoint`, `__tmp_*`...).
fn assert_discovered_labels_only(served: &Served) {
    for (address, labels) in served {
        assert_eq!(labels.get("__address__"), Some(address), "{labels:?}");
        let others: Vec<&String> = labels
            .keys()
            .filter(|name| *name != "__address__" && !name.starts_with("__meta_kubernetes_"))
            .collect();
        assert!(others.is_empty(), "{address} is served relabelled labels {others:?}");
    }
}

/// The container ports of the monitored pods: the one monitored, and one that is not.
const WEB_PORTS: &[ContainerPort<'static>] = &[("http", 8080), ("admin", 9090)];

fn apps_pod(name: &str, ip: &str, app: &str) -> Pod {
    pod_with_ports(APPS, name, ip, json!({"app": app}), WEB_PORTS)
}

/// The labels Prometheus's endpointslice role gives the target of [`apps_pod`] `name` on the
/// `http` port of the slice of service `web`.
fn web_endpoint_labels(name: &str, ip: &str) -> BTreeMap<&'static str, &'static str> {
    let mut wanted = pod_target_labels(APPS, name, ip, "web");
    // The endpointslice role has no container id (only the pod role has).
    wanted.remove("__meta_kubernetes_pod_container_id");
    wanted.insert("__meta_kubernetes_pod_container_port_name", "http");
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
        ("__meta_kubernetes_endpointslice_port_name", "http"),
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
        ("__meta_kubernetes_endpointslice_address_target_name", leak(name)),
        ("__meta_kubernetes_service_name", "web"),
        ("__meta_kubernetes_service_label_app", "web"),
        ("__meta_kubernetes_service_labelpresent_app", "true"),
    ]));
    wanted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_monitor_selects_its_service_endpoints_and_they_are_served() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&secret(APPS));
        // `web`, selected by the monitor: two pods behind its slice.
        server.apply(&service(APPS, "web", ("http", 8080)));
        server.apply(&apps_pod("web-0", "10.3.0.1", "web"));
        server.apply(&apps_pod("web-1", "10.3.0.2", "web"));
        let web = [("web-0", "10.3.0.1"), ("web-1", "10.3.0.2")];
        server.apply(&endpoint_slice(APPS, "web", ("http", 8080), &web));
        // `db`, not selected (`app: db`), though its port has the same name.
        server.apply(&service(APPS, "db", ("http", 8080)));
        server.apply(&apps_pod("db-0", "10.3.1.1", "db"));
        server.apply(&endpoint_slice(APPS, "db", ("http", 8080), &[("db-0", "10.3.1.1")]));
        server.apply_json(MONITORING, "servicemonitors", service_monitor(APPS, "web", "http"));
        let (mut cluster, _dir) = start(&server);

        tracing::info!("the job's link on /jobs, its name query-escaped");
        let link = job_link(&cluster, JOB).await;
        assert_eq!(link, "/jobs/serviceMonitor%2Fapps%2Fweb%2F0/targets");

        tracing::info!("the web pods' http endpoints are served, with their discovered labels");
        // Neither the db service's endpoints (its service label fails the selector's keep)
        // nor the pods' uncovered `admin` container port (no slice port name) are.
        let served = wait_served(&cluster, &link, &["10.3.0.1:8080", "10.3.0.2:8080"]).await;
        assert_eq!(meta(&served["10.3.0.1:8080"]), web_endpoint_labels("web-0", "10.3.0.1"));
        assert_eq!(meta(&served["10.3.0.2:8080"]), web_endpoint_labels("web-1", "10.3.0.2"));
        assert_discovered_labels_only(&served);

        tracing::info!("a pod joins the slice: served");
        server.apply(&apps_pod("web-2", "10.3.0.3", "web"));
        let web = [("web-0", "10.3.0.1"), ("web-1", "10.3.0.2"), ("web-2", "10.3.0.3")];
        server.apply(&endpoint_slice(APPS, "web", ("http", 8080), &web));
        let served = wait_served(&cluster, &link, &["10.3.0.1:8080", "10.3.0.2:8080", "10.3.0.3:8080"]).await;
        assert_eq!(meta(&served["10.3.0.3:8080"]), web_endpoint_labels("web-2", "10.3.0.3"));

        tracing::info!("a pod leaves the slice: no longer served");
        let web = [("web-1", "10.3.0.2"), ("web-2", "10.3.0.3")];
        server.apply(&endpoint_slice(APPS, "web", ("http", 8080), &web));
        assert!(server.delete::<Pod>(Some(APPS), "web-0"));
        wait_served(&cluster, &link, &["10.3.0.2:8080", "10.3.0.3:8080"]).await;
        cluster.stop_all().await;
    })
    .await;
}

const POD_JOB: &str = "podMonitor/apps/web/0";

/// A PodMonitor `name` in `namespace` selecting the pods labelled `app: <name>`, scraping
/// their container port named `port`.
fn pod_monitor(namespace: &str, name: &str, port: &str) -> Value {
    json!({
        "apiVersion": MONITORING,
        "kind": "PodMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a"}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "podMetricsEndpoints": [{"port": port, "interval": "15s"}]
        }
    })
}

/// The labels Prometheus's pod role gives the target of [`apps_pod`] `name` on its `http`
/// port.
fn web_pod_labels(name: &str, ip: &str) -> BTreeMap<&'static str, &'static str> {
    let mut wanted = pod_target_labels(APPS, name, ip, "web");
    wanted.insert("__meta_kubernetes_pod_container_port_name", "http");
    wanted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_monitor_selects_its_pods_by_label_and_port() {
    scenario(async {
        let server = FakeApiServer::start().await;
        server.apply(&apps_pod("web-0", "10.4.0.1", "web"));
        server.apply(&apps_pod("web-1", "10.4.0.2", "web"));
        // Not selected: another app, and a web pod that has finished (the running filter).
        server.apply(&apps_pod("db-0", "10.4.1.1", "db"));
        let mut finished = apps_pod("web-done", "10.4.0.9", "web");
        finished.status.as_mut().expect("a pod status").phase = Some("Succeeded".to_string());
        server.apply(&finished);
        server.apply_json(MONITORING, "podmonitors", pod_monitor(APPS, "web", "http"));
        let (mut cluster, _dir) = start_with(&server, "  pod_monitor_selector:\n    matchLabels:\n      team: a\n");

        let link = job_link(&cluster, POD_JOB).await;
        assert_eq!(link, "/jobs/podMonitor%2Fapps%2Fweb%2F0/targets");
        let configs = scrape_configs_where(&cluster, "the pod monitor's job", |c| c.get(POD_JOB).is_some()).await;
        assert_eq!(configs[POD_JOB]["kubernetes_sd_configs"][0]["role"], json!("pod"));

        tracing::info!("the web pods' http ports are served, with their discovered labels");
        // Not their `admin` ports, nor the db pod, nor the finished pod.
        let served = wait_served(&cluster, &link, &["10.4.0.1:8080", "10.4.0.2:8080"]).await;
        assert_eq!(meta(&served["10.4.0.1:8080"]), web_pod_labels("web-0", "10.4.0.1"));
        assert_eq!(meta(&served["10.4.0.2:8080"]), web_pod_labels("web-1", "10.4.0.2"));
        assert_discovered_labels_only(&served);

        tracing::info!("a pod added: served");
        server.apply(&apps_pod("web-2", "10.4.0.3", "web"));
        let served = wait_served(&cluster, &link, &["10.4.0.1:8080", "10.4.0.2:8080", "10.4.0.3:8080"]).await;
        assert_eq!(meta(&served["10.4.0.3:8080"]), web_pod_labels("web-2", "10.4.0.3"));

        tracing::info!("a pod deleted, another relabelled out of the selector: neither served");
        assert!(server.delete::<Pod>(Some(APPS), "web-0"));
        server.apply(&apps_pod("web-1", "10.4.0.2", "db"));
        wait_served(&cluster, &link, &["10.4.0.3:8080"]).await;
        cluster.stop_all().await;
    })
    .await;
}
