//! Prometheus CR discovery end to end: a real single-replica service whose kubeconfig points
//! at the fake API server (`support::fake_api_server`), ServiceMonitors applied, changed and
//! deleted there, and the jobs read back from `/scrape_configs` and `/jobs`.
//!
//! Generated jobs discover nothing until `kubernetes_sd_configs` runs (another branch); these
//! tests check the jobs themselves. Every wait is bounded.

mod api_support;
mod support;

use std::future::Future;
use std::time::Duration;

use api_support::Cluster;
use axum::http::StatusCode;
use serde_json::Value;
use serde_json::json;
use support::fake_api_server::FakeApiServer;

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
    let dir = tempfile::tempdir().expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig(NAMESPACE)).expect("write the kubeconfig");
    let document = format!(
        "kube_config_file_path: {kubeconfig}\n\
         collector_namespace: {NAMESPACE}\n\
         collectors:\n  static: [collector-0]\n\
         prometheus_cr:\n  enabled: true\n  service_monitor_selector:\n    matchLabels:\n      team: a\n  \
         deny_namespaces: [denied]\n\
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

        // `/jobs` lists only jobs with targets (upstream-compat.md §2.2); this one has none
        // until `kubernetes_sd_configs` runs, like any job whose discovery finds nothing.
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
