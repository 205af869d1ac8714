//! The upstream-compatible HTTP API of running replicas (docs/compatibility.md, "The HTTP API";
//! invariants I2 and I6 of docs/architecture.md): each test starts the real service in-process
//! (`target_allocator::service::run`) as a cluster of one or three replicas with its own
//! ports and data directories, and talks to it over HTTP.

mod api_support;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;
use std::time::Instant;

use api_support::Cluster;
use api_support::Fetched;
use api_support::LEADER;
use api_support::LEASE;
use api_support::REPLICA;
use api_support::STARTUP_LIMIT;
use api_support::eventually;
use axum::http::StatusCode;
use reqwest::Method;
use serde_json::Value;
use serde_json::json;

const SERVICE_MONITOR_JOB: &str = "serviceMonitor/ns/app/0";
const SERVICE_MONITOR_ESCAPED: &str = "serviceMonitor%2Fns%2Fapp%2F0";
const SERVICE_MONITOR_TARGETS: usize = 9;
const MY_JOB_TARGETS: usize = 6;
const COLLECTORS: [&str; 3] = ["c-0", "c-1", "c-2"];

/// Three static collectors and three jobs:
/// - a prometheus-operator-style job (`/` in its name, basic auth, the `$(SHARD)` keep rule,
///   `dropequal`/`keepequal` rules whose default `regex` upstream deletes);
/// - `my job` (a space in its name);
/// - `no-targets`, whose only target its relabel rules drop.
fn document(allow_insecure_auth_secrets: bool) -> String {
    let monitor_targets: Vec<String> = (1..=SERVICE_MONITOR_TARGETS)
        .map(|i| format!("10.0.0.{i}:8080"))
        .collect();
    let my_job_targets: Vec<String> = (1..=MY_JOB_TARGETS).map(|i| format!("10.1.0.{i}:9100")).collect();
    format!(
        r#"allow_insecure_auth_secrets: {allow_insecure_auth_secrets}
coalesce_window: 200ms
collector_not_ready_grace_period: 1s
collectors:
  static: [c-0, c-1, c-2]
config:
  scrape_configs:
  - job_name: {SERVICE_MONITOR_JOB}
    basic_auth:
      username: scraper
      password: hunter2
    static_configs:
    - targets: [{monitor}]
      labels:
        __meta_kubernetes_namespace: ns
        env: prod
    relabel_configs:
    - source_labels: [__address__]
      target_label: __tmp_hash
      modulus: 1
      action: hashmod
    - source_labels: [__tmp_hash, __tmp_disable_sharding]
      regex: "$(SHARD);|.+;.+"
      action: keep
    - source_labels: [__address__]
      target_label: job
      action: dropequal
    metric_relabel_configs:
    - source_labels: [instance]
      target_label: exported_instance
      action: keepequal
  - job_name: my job
    static_configs:
    - targets: [{my_job}]
      labels:
        team: a b
  - job_name: no-targets
    static_configs:
    - targets: [10.2.0.1:9100]
    relabel_configs:
    - source_labels: [__address__]
      regex: nothing-matches
      action: keep
"#,
        monitor = monitor_targets.join(", "),
        my_job = my_job_targets.join(", "),
    )
}

/// A cluster of `size` replicas of [`document`], all started, replica 0 serving every
/// target.
async fn started(size: usize, allow_insecure_auth_secrets: bool) -> Cluster {
    let mut cluster = Cluster::new(size, &document(allow_insecure_auth_secrets));
    cluster.start_all();
    for i in 0..size {
        cluster.wait_ready(i).await;
    }
    cluster
        .wait_allocated(0, SERVICE_MONITOR_ESCAPED, SERVICE_MONITOR_TARGETS)
        .await;
    cluster.wait_allocated(0, "my+job", MY_JOB_TARGETS).await;
    cluster
}

fn assert_json_content_type(fetched: &Fetched, what: &str) {
    assert_eq!(
        fetched.header("content-type"),
        Some("application/json"),
        "{what}: Content-Type"
    );
}

/// The groups of an http_sd body, checked for upstream's shape: one group per target, its
/// only address the `__address__` label, label keys sorted, a trailing newline.
fn groups(fetched: &Fetched, what: &str) -> Vec<(String, BTreeMap<String, String>)> {
    assert_eq!(fetched.status, StatusCode::OK, "{what}: {}", fetched.text());
    assert_json_content_type(fetched, what);
    assert!(
        fetched.body.ends_with(b"]\n"),
        "{what}: no trailing newline: {:?}",
        fetched.text()
    );
    let parsed: Vec<Value> = serde_json::from_slice(&fetched.body)
        .unwrap_or_else(|e| panic!("{what}: not a JSON array ({e}): {}", fetched.text()));
    let mut out = Vec::new();
    let mut canonical = Vec::new();
    for group in parsed {
        let object = group.as_object().unwrap_or_else(|| panic!("{what}: group {group}"));
        assert_eq!(
            object.keys().collect::<BTreeSet<_>>(),
            BTreeSet::from([&"labels".to_string(), &"targets".to_string()]),
            "{what}: group keys"
        );
        let targets: Vec<String> = serde_json::from_value(group["targets"].clone()).expect("targets are strings");
        let labels: BTreeMap<String, String> =
            serde_json::from_value(group["labels"].clone()).expect("labels are a string map");
        assert_eq!(targets.len(), 1, "{what}: one target per group: {group}");
        assert_eq!(
            labels.get("__address__"),
            Some(&targets[0]),
            "{what}: __address__ in labels: {group}"
        );
        // Re-encoded with `targets` first and sorted label keys, as upstream writes a group.
        canonical.push(format!(
            "{{\"targets\":{},\"labels\":{}}}",
            serde_json::to_string(&targets).expect("encode"),
            serde_json::to_string(&labels).expect("encode")
        ));
        out.push((targets[0].clone(), labels));
    }
    assert_eq!(
        fetched.text(),
        format!("[{}]\n", canonical.join(",")),
        "{what}: compact encoding, `targets` then `labels`, label keys sorted"
    );
    out
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("a valid gzip stream");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_configs_are_served_masked_and_as_upstream_renders_them() {
    let mut cluster = started(1, false).await;
    let fetched = cluster.get(0, "/scrape_configs").await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_json_content_type(&fetched, "/scrape_configs");
    assert!(
        !fetched.body.ends_with(b"\n"),
        "/scrape_configs has no trailing newline: {:?}",
        fetched.text()
    );
    let configs = fetched.json();
    let jobs: BTreeSet<&str> = configs
        .as_object()
        .expect("a JSON object keyed by job")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(jobs, BTreeSet::from([SERVICE_MONITOR_JOB, "my job", "no-targets"]));

    let monitor = &configs[SERVICE_MONITOR_JOB];
    assert_eq!(monitor["job_name"], SERVICE_MONITOR_JOB);
    assert_eq!(monitor["basic_auth"]["username"], "scraper");
    assert_eq!(monitor["basic_auth"]["password"], "<secret>", "masked over plain HTTP");
    assert!(
        !fetched.text().contains("hunter2"),
        "the secret leaks: {}",
        fetched.text()
    );

    let rules = monitor["relabel_configs"].as_array().expect("relabel_configs");
    assert_eq!(
        rules.len(),
        3,
        "the job's own rules only, no sharding wrapper: {rules:?}"
    );
    assert_eq!(rules[1]["regex"], "$(SHARD);|.+;.+", "$(SHARD) kept literally");
    assert_eq!(rules[1]["action"], "keep");
    assert_eq!(rules[2]["action"], "dropequal");
    assert!(
        rules[2].get("regex").is_none(),
        "regex removed from dropequal: {}",
        rules[2]
    );
    assert_eq!(rules[2]["target_label"], "job");
    let metric_rules = monitor["metric_relabel_configs"]
        .as_array()
        .expect("metric_relabel_configs");
    assert_eq!(metric_rules[0]["action"], "keepequal");
    assert!(
        metric_rules[0].get("regex").is_none(),
        "regex removed from keepequal: {}",
        metric_rules[0]
    );
    assert_eq!(rules[0]["regex"], "(.*)", "other rules keep Prometheus's default regex");
    assert!(
        !fetched.text().contains("__tmp_disable_sharding\",\"replacement"),
        "the sharding wrapper is not served"
    );
    cluster.stop_all().await;

    let mut cluster = started(1, true).await;
    let fetched = cluster.get(0, "/scrape_configs").await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert!(!fetched.body.ends_with(b"\n"));
    let configs = fetched.json();
    assert_eq!(
        configs[SERVICE_MONITOR_JOB]["basic_auth"]["password"], "hunter2",
        "allow_insecure_auth_secrets serves the real value"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_job_targets_follow_the_http_sd_contract() {
    let mut cluster = started(1, false).await;

    // /jobs: only jobs with targets, links query-escaped, keys sorted, trailing newline.
    let jobs = cluster.get(0, "/jobs").await;
    assert_eq!(jobs.status, StatusCode::OK);
    assert_json_content_type(&jobs, "/jobs");
    assert_eq!(
        jobs.text(),
        "{\"my job\":{\"_link\":\"/jobs/my+job/targets\"},\
         \"serviceMonitor/ns/app/0\":{\"_link\":\"/jobs/serviceMonitor%2Fns%2Fapp%2F0/targets\"}}\n"
    );
    let redirect = cluster.get(0, "/jobs/").await;
    assert_eq!(redirect.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(redirect.header("location"), Some("/jobs"));
    redirect.assert_allocator_headers("ta-0", "301");

    // One group per target, every target with exactly one collector.
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for collector in COLLECTORS {
        let path = format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id={collector}");
        let fetched = cluster.get(0, &path).await;
        for (address, labels) in groups(&fetched, &path) {
            let expected: BTreeMap<String, String> = [
                ("__address__", address.as_str()),
                ("__meta_kubernetes_namespace", "ns"),
                ("env", "prod"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            assert_eq!(labels, expected, "{path}: the discovered (pre-relabel) labels");
            assert!(
                seen.insert(address.clone(), collector).is_none(),
                "{address} served to two collectors"
            );
        }
        let again = cluster.get(0, &path).await;
        assert_eq!(again.body, fetched.body, "{path}: the same bytes on every request");
    }
    let expected: BTreeSet<String> = (1..=SERVICE_MONITOR_TARGETS)
        .map(|i| format!("10.0.0.{i}:8080"))
        .collect();
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // `my job`, requested with `+` and with `%20`.
    let mut plus_total = 0;
    for collector in COLLECTORS {
        let plus = cluster
            .get(0, &format!("/jobs/my+job/targets?collector_id={collector}"))
            .await;
        let percent = cluster
            .get(0, &format!("/jobs/my%20job/targets?collector_id={collector}"))
            .await;
        let plus_groups = groups(&plus, "my+job");
        groups(&percent, "my%20job");
        assert_eq!(plus.body, percent.body, "`+` and `%20` both decode to a space");
        for (address, labels) in &plus_groups {
            assert_eq!(labels.get("team").map(String::as_str), Some("a b"), "{address}");
            assert_eq!(labels.len(), 2, "{address}: {labels:?}");
        }
        plus_total += plus_groups.len();
    }
    assert_eq!(plus_total, MY_JOB_TARGETS);

    // Unknown job, unknown collector, empty collector id: `[]` and 200.
    for path in [
        "/jobs/unknown/targets?collector_id=c-0".to_string(),
        "/jobs/no-targets/targets?collector_id=c-0".to_string(),
        format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id=nobody"),
        format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id="),
    ] {
        let fetched = cluster.get(0, &path).await;
        assert_eq!(fetched.status, StatusCode::OK, "{path}");
        assert_json_content_type(&fetched, &path);
        assert_eq!(fetched.text(), "[]\n", "{path}");
    }

    // Lower-case escapes decode as well.
    let lower = cluster
        .get(0, "/jobs/serviceMonitor%2fns%2fapp%2f0/targets?collector_id=c-0")
        .await;
    let upper = cluster
        .get(0, &format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id=c-0"))
        .await;
    assert_eq!(lower.body, upper.body, "%2f is %2F");

    // A raw `/` in the job is not the job.
    let raw_slash = cluster
        .get(0, "/jobs/serviceMonitor/ns/app/0/targets?collector_id=c-0")
        .await;
    assert_eq!(raw_slash.status, StatusCode::NOT_FOUND, "{}", raw_slash.text());

    // An undecodable escape: 500 with the error as a JSON string.
    let bad = cluster.get(0, "/jobs/%zz/targets?collector_id=c-0").await;
    assert_eq!(bad.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", bad.text());
    assert_json_content_type(&bad, "%zz");
    assert!(bad.json().is_string(), "a JSON string: {:?}", bad.text());
    assert!(bad.text().contains("%zz"), "{:?}", bad.text());
    bad.assert_allocator_headers("ta-0", "500");

    // No collector id: every collector, each with its groups.
    let all = cluster
        .get(0, &format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets"))
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_json_content_type(&all, "per-collector map");
    assert!(all.body.ends_with(b"}\n"), "trailing newline: {:?}", all.text());
    let map = all.json();
    let map = map.as_object().expect("an object keyed by collector");
    assert_eq!(
        map.keys().map(String::as_str).collect::<Vec<_>>(),
        COLLECTORS,
        "every collector, even one without targets of this job"
    );
    for collector in COLLECTORS {
        assert_eq!(
            map[collector]["_link"],
            format!("/debug/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id={collector}")
        );
        let one = cluster
            .get(
                0,
                &format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id={collector}"),
            )
            .await;
        assert_eq!(map[collector]["targets"], one.json(), "{collector}: the same groups");
    }
    let unknown = cluster.get(0, "/jobs/unknown/targets").await;
    assert_eq!(unknown.status, StatusCode::OK);
    let unknown = unknown.json();
    assert_eq!(
        unknown.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(COLLECTORS.iter().map(|c| c.to_string()).collect()),
        "an unknown job lists every collector too: {unknown}"
    );
    assert_eq!(unknown["c-1"]["targets"], json!([]));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_compression_headers_and_unmatched_routes() {
    let mut cluster = started(1, false).await;
    let path = format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id=c-0");
    let plain = cluster.get(0, &path).await;
    assert_eq!(plain.status, StatusCode::OK);
    let etag = plain.header("etag").expect("an ETag").to_string();

    // Conditional request.
    let not_modified = cluster.get_with(0, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(
        not_modified.body.is_empty(),
        "304 has no body: {:?}",
        not_modified.text()
    );
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    not_modified.assert_allocator_headers("ta-0", "304");
    let other_tag = cluster.get_with(0, &path, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(other_tag.status, StatusCode::OK);
    assert_eq!(other_tag.body, plain.body);

    // gzip when asked, the same bytes once decompressed.
    for route in [path.as_str(), "/scrape_configs", "/jobs"] {
        let identity = cluster.get(0, route).await;
        let gzipped = cluster.get_with(0, route, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gzipped.status, StatusCode::OK, "{route}");
        assert_eq!(gzipped.header("content-encoding"), Some("gzip"), "{route}");
        assert_eq!(gunzip(&gzipped.body), identity.body, "{route}: same bytes decompressed");
        let gzip_tag = gzipped
            .header("etag")
            .expect("an ETag on the gzip encoding")
            .to_string();
        assert_ne!(
            Some(gzip_tag.as_str()),
            identity.header("etag"),
            "{route}: a strong ETag names one encoding"
        );
        let gzip_revalidated = cluster
            .get_with(0, route, &[("accept-encoding", "gzip"), ("if-none-match", &gzip_tag)])
            .await;
        assert_eq!(
            gzip_revalidated.status,
            StatusCode::NOT_MODIFIED,
            "{route}: gzip revalidation"
        );
        assert!(
            identity.header("content-encoding").is_none(),
            "{route}: identity unless asked"
        );
    }

    // The three headers on every response.
    let leader_named = eventually("ta-0 names itself leader", STARTUP_LIMIT, || async {
        let livez = cluster.try_get(0, "/livez").await?;
        match livez.header(LEADER) {
            Some("ta-0") => Ok(livez),
            other => Err(format!("{LEADER}: {other:?}")),
        }
    })
    .await;
    assert_eq!(leader_named.status, StatusCode::OK);
    assert!(leader_named.body.is_empty());
    for route in [
        "/livez",
        "/readyz",
        "/jobs",
        "/scrape_configs",
        "/metrics",
        "/nowhere",
        "/jobs/x",
        "/",
        "/debug/status",
    ] {
        let fetched = cluster.get(0, route).await;
        fetched.assert_allocator_headers("ta-0", route);
        assert_eq!(fetched.header(LEADER), Some("ta-0"), "{route}");
        assert!(fetched.revision() > 0, "{route}: revision of an applied table");
    }

    // Unmatched paths and methods other than GET: gin's 404.
    for (method, route) in [
        (Method::GET, "/nowhere"),
        (Method::GET, "/jobs/x"),
        (Method::GET, "/jobs/x/targets/extra"),
        (Method::GET, "/targets"),
        (Method::GET, "/collectors"),
        (Method::POST, "/jobs"),
        (Method::PUT, "/scrape_configs"),
        (Method::DELETE, "/jobs/my+job/targets"),
        (Method::POST, "/livez"),
        (Method::PATCH, "/nowhere"),
        (Method::HEAD, "/jobs"),
        (Method::HEAD, "/livez"),
    ] {
        let fetched = cluster.request(0, method.clone(), route, &[]).await;
        let what = format!("{method} {route}");
        assert_eq!(fetched.status, StatusCode::NOT_FOUND, "{what}");
        assert_eq!(fetched.header("content-type"), Some("text/plain"), "{what}");
        if method != Method::HEAD {
            assert_eq!(fetched.text(), "404 page not found", "{what}");
        }
        fetched.assert_allocator_headers("ta-0", &what);
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_upstream_names_and_ours() {
    let mut cluster = started(1, false).await;
    cluster.get(0, "/jobs").await;
    let metrics = cluster.get(0, "/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        metrics.header("content-type")
    );
    let text = metrics.text();
    let names: BTreeSet<&str> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    for name in [
        "opentelemetry_allocator_targets",
        "opentelemetry_allocator_targets_per_collector",
        "opentelemetry_allocator_collectors_allocatable",
        "opentelemetry_allocator_http_duration_seconds_bucket",
        "opentelemetry_allocator_time_to_allocate_bucket",
        "target_allocator_raft_term",
        "target_allocator_raft_leader",
        "target_allocator_raft_apply_lag",
        "target_allocator_targets_moved_total",
    ] {
        assert!(names.contains(name), "/metrics has no sample of {name}:\n{text}");
    }
    assert!(
        text.contains("opentelemetry_allocator_targets{job_name=\"serviceMonitor/ns/app/0\"} 9"),
        "targets seen per job:\n{text}"
    );
    assert!(
        text.contains(
            "opentelemetry_allocator_targets_per_collector{collector_name=\"c-0\",strategy=\"consistent-hashing\"}"
        ),
        "per-collector gauge with upstream's labels:\n{text}"
    );
    assert!(text.contains("target_allocator_raft_leader 1"), "{text}");
    assert!(
        text.contains("opentelemetry_allocator_http_duration_seconds_count{path=\"/jobs\"}"),
        "route template as the path label:\n{text}"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_quorum_is_alive_but_not_ready() {
    let mut cluster = Cluster::new(3, &document(false));
    cluster.start(0);
    let livez = eventually("ta-0 answers /livez", STARTUP_LIMIT, || async {
        cluster.try_get(0, "/livez").await
    })
    .await;
    assert_eq!(livez.status, StatusCode::OK);
    livez.assert_allocator_headers("ta-0", "/livez");
    // Alone for longer than an election and the lease: still nothing to serve.
    tokio::time::sleep(LEASE + Duration::from_millis(500)).await;
    for _ in 0..3 {
        let readyz = cluster.get(0, "/readyz").await;
        assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE, "{}", readyz.text());
        readyz.assert_allocator_headers("ta-0", "/readyz");
        assert_not_serving(&cluster.get(0, "/scrape_configs").await, "/scrape_configs");
        assert_not_serving(&cluster.get(0, "/jobs").await, "/jobs");
        assert_not_serving(
            &cluster.get(0, "/jobs/my+job/targets?collector_id=c-0").await,
            "/jobs/my+job/targets",
        );
        assert_eq!(cluster.get(0, "/livez").await.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cluster.stop_all().await;
}

/// 503, and a body a collector cannot take for its job map (docs/compatibility.md, "The HTTP API"): not
/// empty, not a JSON object, not a YAML mapping.
fn assert_not_serving(fetched: &Fetched, what: &str) {
    assert_eq!(
        fetched.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        fetched.text()
    );
    assert!(
        !fetched.body.is_empty(),
        "{what}: an empty body means zero jobs to a collector"
    );
    let text = fetched.text();
    if let Ok(value) = serde_json::from_str::<Value>(&text) {
        assert!(!value.is_object(), "{what}: a JSON object: {text}");
        assert!(!value.is_null(), "{what}: null means zero jobs: {text}");
    }
    let yaml = yaml_rust2::YamlLoader::load_from_str(&text);
    assert!(
        !matches!(yaml.as_deref(), Ok([yaml_rust2::Yaml::Hash(_)])),
        "{what}: a YAML mapping: {text}"
    );
    fetched.assert_allocator_headers(fetched.header(REPLICA).unwrap_or_default(), &format!("{what} (503)"));
}

/// Bodies, ETags and revisions of `path` from every running replica, once all report the
/// same revision.
async fn agreeing(cluster: &Cluster, path: &str) -> Vec<Fetched> {
    eventually(
        &format!("every replica serves {path} at one revision"),
        STARTUP_LIMIT,
        || async {
            let mut answers = Vec::new();
            for i in 0..cluster.replicas.len() {
                let fetched = cluster.try_get(i, path).await?;
                if fetched.status != StatusCode::OK {
                    return Err(format!(
                        "{}: {} {}",
                        cluster.replicas[i].name,
                        fetched.status,
                        fetched.text()
                    ));
                }
                answers.push(fetched);
            }
            let revisions: Vec<u64> = answers.iter().map(Fetched::revision).collect();
            if revisions.iter().all(|r| *r == revisions[0]) {
                Ok(answers)
            } else {
                Err(format!("revisions {revisions:?}"))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_and_linearizable_reads_are_current() {
    let mut cluster = started(3, false).await;
    let leader = cluster.wait_leader(0).await;
    for i in 0..3 {
        cluster
            .wait_allocated(i, SERVICE_MONITOR_ESCAPED, SERVICE_MONITOR_TARGETS)
            .await;
        assert_eq!(
            cluster.wait_leader(i).await,
            leader,
            "every replica names the same leader"
        );
    }

    // I2: the same bytes and ETag at the same revision.
    for path in COLLECTORS
        .iter()
        .map(|c| format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id={c}"))
        .chain([
            "/jobs/my+job/targets?collector_id=c-1".to_string(),
            "/scrape_configs".into(),
            "/jobs".into(),
        ])
    {
        let answers = agreeing(&cluster, &path).await;
        for (i, answer) in answers.iter().enumerate().skip(1) {
            assert_eq!(answer.body, answers[0].body, "{path}: ta-{i} and ta-0 differ");
            assert_eq!(
                answer.header("etag"),
                answers[0].header("etag"),
                "{path}: ETag of ta-{i}"
            );
            assert_eq!(answer.header(REPLICA), Some(cluster.replicas[i].name.as_str()));
            assert_eq!(answer.header(LEADER), Some(cluster.replicas[leader].name.as_str()));
        }
        assert!(answers[0].header("etag").is_some(), "{path}: an ETag");
    }

    // A linearizable read on a follower is at least as new as the leader at request time.
    let path = format!("/jobs/{SERVICE_MONITOR_ESCAPED}/targets?collector_id=c-0");
    for follower in (0..3).filter(|i| *i != leader) {
        for _ in 0..3 {
            let at_leader = cluster.get(leader, &path).await.revision();
            let read = cluster.get(follower, &format!("{path}&consistency=linearizable")).await;
            assert_eq!(read.status, StatusCode::OK, "{}", read.text());
            assert!(
                read.revision() >= at_leader,
                "linearizable read on ta-{follower} at revision {}, leader was at {at_leader}",
                read.revision()
            );
        }
    }

    // `target-allocator status`: one row per replica, one Leader.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_target-allocator"))
        .args(["status", "--endpoint", &cluster.replicas[1].url])
        .output()
        .await
        .expect("run target-allocator status");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "status failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.first().is_some_and(|w| w.starts_with("ta-")))
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        ["ta-0", "ta-1", "ta-2"],
        "one row per replica:\n{stdout}"
    );
    let leaders: Vec<&str> = rows.iter().filter(|r| r[1] == "Leader").map(|r| r[0]).collect();
    assert_eq!(
        leaders,
        [cluster.replicas[leader].name.as_str()],
        "one Leader:\n{stdout}"
    );
    assert!(
        stdout.contains("3 collectors") && stdout.contains("15 targets"),
        "the allocation summary:\n{stdout}"
    );
    cluster.stop_all().await;
}

/// I6: the survivor of a cluster that lost its quorum stops serving within its lease.
async fn survivor_goes_stale(survivor_leads: bool) {
    let mut cluster = started(3, false).await;
    let leader = cluster.wait_leader(0).await;
    let survivor = if survivor_leads { leader } else { (leader + 1) % 3 };
    cluster.wait_ready(survivor).await;
    let path = "/jobs/my+job/targets?collector_id=c-0";
    assert_eq!(cluster.get(survivor, path).await.status, StatusCode::OK);

    let others: Vec<usize> = (0..3).filter(|i| *i != survivor).collect();
    cluster.stop(&others).await;
    let stopped = Instant::now();
    let limit = LEASE + Duration::from_millis(1500);
    let name = cluster.replicas[survivor].name.clone();
    eventually(
        &format!("{name} answers 503 on {path} and /readyz once alone"),
        limit,
        || async {
            let targets = cluster.try_get(survivor, path).await?;
            let readyz = cluster.try_get(survivor, "/readyz").await?;
            if targets.status == StatusCode::SERVICE_UNAVAILABLE && readyz.status == StatusCode::SERVICE_UNAVAILABLE {
                Ok(())
            } else {
                Err(format!(
                    "{path}: {} {}; /readyz: {}",
                    targets.status,
                    targets.text(),
                    readyz.status
                ))
            }
        },
    )
    .await;
    let took = stopped.elapsed();
    assert_not_serving(&cluster.get(survivor, path).await, path);
    assert_not_serving(&cluster.get(survivor, "/scrape_configs").await, "/scrape_configs");
    assert_eq!(cluster.get(survivor, "/livez").await.status, StatusCode::OK);
    eprintln!("{name} (leader: {survivor_leads}) stopped serving {took:?} after losing its quorum");
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_without_quorum_stops_serving_within_its_lease() {
    survivor_goes_stale(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_without_leader_stops_serving_within_its_lease() {
    survivor_goes_stale(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_registers_by_polling_a_follower_and_expires() {
    const TTL: Duration = Duration::from_secs(5);
    const GRACE: Duration = Duration::from_secs(1);
    let mut cluster = Cluster::new(
        3,
        r#"coalesce_window: 200ms
collector_not_ready_grace_period: 1s
collectors:
  register_on_poll:
    enabled: true
    ttl: 5s
config:
  scrape_configs:
  - job_name: x
    static_configs:
    - targets: [10.3.0.1:80, 10.3.0.2:80, 10.3.0.3:80, 10.3.0.4:80]
"#,
    );
    cluster.start_all();
    for i in 0..3 {
        cluster.wait_ready(i).await;
    }
    let leader = cluster.wait_leader(0).await;
    let follower = (leader + 1) % 3;
    let status = cluster.get(leader, "/debug/status").await.json();
    assert_eq!(status["collectors"], 0, "no collector before any poll: {status}");

    let poll = format!("{}/jobs/x/targets?collector_id=newbie", cluster.replicas[follower].url);
    let polling = {
        let http = cluster.http.clone();
        let poll = poll.clone();
        tokio::spawn(async move {
            loop {
                let _ = http.get(&poll).send().await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    let served = eventually(
        "newbie receives all 4 targets of x by polling a follower",
        STARTUP_LIMIT,
        || async {
            let fetched = cluster.try_request(Method::GET, &poll, &[]).await?;
            let body: Value = serde_json::from_slice(&fetched.body).map_err(|e| format!("{e}: {}", fetched.text()))?;
            match body.as_array() {
                Some(groups) if groups.len() == 4 => Ok(groups.clone()),
                _ => Err(fetched.text()),
            }
        },
    )
    .await;
    assert!(served.iter().all(|g| g["labels"]["__address__"].is_string()));
    for i in 0..3 {
        let table = cluster.get(i, "/jobs/x/targets").await.json();
        assert_eq!(
            table.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["newbie".to_string()]),
            "ta-{i} lists newbie in its table: {table}"
        );
    }
    let status = cluster.get(follower, "/debug/status").await.json();
    assert_eq!(status["collectors"], 1, "{status}");

    polling.abort();
    let _ = polling.await;
    let stopped = Instant::now();
    // Registered for the ttl after the last poll it heard of (forwarded at most a refresh,
    // ttl/4, earlier), then the grace period: still there well inside that window.
    tokio::time::sleep(TTL / 2).await;
    let table = cluster.get(leader, "/jobs/x/targets").await.json();
    assert!(
        table.get("newbie").is_some(),
        "newbie removed {:?} after its last poll, before ttl {TTL:?}: {table}",
        stopped.elapsed()
    );
    let limit = TTL + GRACE + Duration::from_secs(4);
    eventually(
        "newbie gone from the table within ttl + grace + 4s of its last poll",
        limit.saturating_sub(stopped.elapsed()),
        || async {
            let table = cluster.try_get(follower, "/jobs/x/targets").await?;
            let status = cluster.try_get(follower, "/debug/status").await?;
            let collectors = status.json()["collectors"].clone();
            if table.text() == "{}\n" && collectors == 0 {
                Ok(())
            } else {
                Err(format!("/jobs/x/targets: {}; collectors: {collectors}", table.text()))
            }
        },
    )
    .await;
    eprintln!("newbie gone {:?} after its last poll", stopped.elapsed());
    cluster.stop_all().await;
}
