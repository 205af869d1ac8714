//! Loading real configuration files from `tests/testdata/config`: what the operator writes,
//! a minimal and a complete file, every class of bad input (each problem naming file, line
//! and key path), warnings, `null` semantics, and environment and flag precedence.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use target_allocator::allocation::StrategyName;
use target_allocator::allocation::consistent_hashing::RingLayout;
use target_allocator::config;
use target_allocator::config::LoadError;
use target_allocator::config::Loaded;
use target_allocator::config::Problem;
use target_allocator::config::UpstreamFlags;
use target_allocator::discovery::DnsRecordType;
use target_allocator::discovery::ServiceDiscoveryConfig;
use target_allocator::discovery::kubernetes_sd::KubernetesRole;
use target_allocator::discovery::kubernetes_sd::KubernetesSdConfig;
use target_allocator::targets::FilterStrategy;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/config")
        .join(name)
}

/// A fixed environment, so tests never read or change the process's.
fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut map: HashMap<String, String> = HashMap::from([
        ("HOSTNAME".to_string(), "test-host".to_string()),
        ("HOME".to_string(), "/home/tester".to_string()),
    ]);
    for (k, v) in pairs {
        map.insert(k.to_string(), v.to_string());
    }
    move |name: &str| map.get(name).cloned()
}

fn load_with(name: &str, env: &[(&str, &str)], flags: &UpstreamFlags) -> Result<Loaded, LoadError> {
    config::load_file(&testdata(name), flags, &environment(env))
}

fn load_ok(name: &str) -> Loaded {
    match load_with(name, &[], &UpstreamFlags::default()) {
        Ok(loaded) => loaded,
        Err(e) => panic!("{name} should load: {e}"),
    }
}

fn problems_of(name: &str) -> Vec<Problem> {
    match load_with(name, &[], &UpstreamFlags::default()) {
        Ok(_) => panic!("{name} should be refused"),
        Err(LoadError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("{name}: unexpected {other}"),
    }
}

/// The problem at `key_path`, checked to name the file and `line` and to say `says`.
#[track_caller]
fn expect_problem(problems: &[Problem], line: usize, key_path: &str, says: &str) {
    let found = problems
        .iter()
        .find(|p| p.key_path == key_path && p.message.contains(says));
    let Some(problem) = found else {
        panic!("no problem at {key_path} saying {says:?} among:\n{}", listing(problems));
    };
    assert_eq!(problem.line, Some(line), "{problem}");
    assert!(problem.file.ends_with(".yaml"), "{problem}");
    let shown = problem.to_string();
    assert!(
        shown.starts_with(&format!("{}:{line}: {key_path}: ", problem.file)),
        "display is FILE:LINE: key.path: message, got {shown}"
    );
}

fn listing(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

#[test]
fn what_the_operator_writes_loads_with_upstream_meanings() {
    let loaded = load_with(
        "operator.yaml",
        &[("OTELCOL_NAMESPACE", "monitoring")],
        &UpstreamFlags::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let config = loaded.config;
    assert_eq!(config.collector_namespace, "monitoring");
    let selector = config
        .collector_selector
        .as_ref()
        .expect("lowercase matchlabels is read");
    assert_eq!(selector.match_labels.len(), 4);
    assert_eq!(selector.match_labels["app.kubernetes.io/instance"], "monitoring.otel");
    assert_eq!(config.filter_strategy, FilterStrategy::RelabelConfig);
    assert_eq!(config.strategy.strategy, StrategyName::ConsistentHashing);
    // null selectors: monitors select nothing, namespace selectors keep "every namespace".
    let cr = &config.prometheus_cr;
    assert!(cr.enabled);
    assert_eq!(cr.pod_monitor_selector, None);
    assert_eq!(cr.pod_monitor_namespace_selector, Some(Default::default()));
    assert_eq!(
        cr.service_monitor_selector
            .as_ref()
            .map(|s| s.match_labels["release"].as_str()),
        Some("prometheus")
    );
    let jobs = config.scrape_configs();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0].job.scrape_interval, Duration::from_secs(10));
    assert_eq!(jobs[0].job.scrape_timeout, Duration::from_secs(10));
    let ServiceDiscoveryConfig::Static(groups) = &jobs[0].discovery[0] else {
        panic!("static_configs gives a static source: {:?}", jobs[0].discovery);
    };
    assert_eq!(groups[0].targets.len(), 2);
    assert_eq!(groups[0].targets[1].get("__address__"), Some("0.0.0.0:9999"));
    assert_eq!(groups[0].labels.get("team"), Some("platform"));
    // `$$` was already turned into `$` by the operator.
    assert_eq!(jobs[1].job.rules.len(), 3);
    assert_eq!(jobs[1].job.rules[1].replacement, "$1:$2");
    assert_eq!(
        jobs[1].discovery,
        vec![ServiceDiscoveryConfig::Kubernetes(KubernetesSdConfig::new(
            KubernetesRole::Pod
        ))]
    );
    // The global interval (30s) is filled in; the global protocols are inherited.
    assert_eq!(jobs[1].job.scrape_interval, Duration::from_secs(30));
    assert_eq!(jobs[1].rendered["scrape_protocols"][0], "PrometheusProto");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_minimal_file_gets_every_default() {
    let config = load_ok("minimal.yaml").config;
    assert_eq!(config.listen_addr, ":8080");
    assert_eq!(config.kube_config_file_path, "/home/tester/.kube/config");
    assert_eq!(config.collector_selector, None);
    assert_eq!(config.strategy, Default::default());
    assert_eq!(config.filter_strategy, FilterStrategy::RelabelConfig);
    assert_eq!(config.collector_not_ready_grace_period, Duration::from_secs(30));
    assert!(!config.allow_insecure_auth_secrets);
    assert!(!config.https.enabled);
    assert_eq!(config.https.listen_addr, ":8443");
    assert_eq!(config.prometheus_cr.scrape_interval, Duration::from_secs(30));
    assert_eq!(config.prometheus_cr.scrape_protocols.len(), 4);
    assert!(config.cluster.is_none());
    assert_eq!(config.cluster_or_single().name, "test-host");
    assert!(config.collectors.uses_kubernetes());

    let job = &config.scrape_configs()[0];
    assert_eq!(job.job.scrape_interval, Duration::from_secs(60));
    assert_eq!(job.job.scrape_timeout, Duration::from_secs(10));
    assert_eq!(job.job.metrics_path, "/metrics");
    assert_eq!(job.job.scheme, "http");
    assert!(job.honor_timestamps);
    let expected = serde_json::json!({
        "job_name": "node",
        "enable_compression": true,
        "enable_http2": true,
        "follow_redirects": true,
        "honor_timestamps": true,
        "metrics_path": "/metrics",
        "scheme": "http",
        "scrape_interval": "1m",
        "scrape_timeout": "10s",
        "scrape_protocols": ["OpenMetricsText1.0.0", "OpenMetricsText0.0.1", "PrometheusText1.0.0", "PrometheusText0.0.4"],
        "static_configs": [{"targets": ["10.0.0.1:9100"]}],
    });
    assert_eq!(job.rendered, expected);
}

#[test]
fn a_file_with_every_field_is_read_completely() {
    let loaded = load_ok("full.yaml");
    let config = loaded.config;
    assert_eq!(config.listen_addr, ":9080");
    assert_eq!(config.kube_config_file_path, "/etc/kube/config");
    let selector = config.collector_selector.as_ref().expect("selector");
    assert_eq!(
        selector.match_labels["app"], "collector",
        "camelCase wins over lowercase"
    );
    assert_eq!(selector.match_expressions.len(), 2);
    assert_eq!(config.strategy.strategy, StrategyName::PerNode);
    assert_eq!(config.strategy.fallback, Some(StrategyName::ConsistentHashing));
    assert_eq!(config.strategy.ring_layout, RingLayout::V0_10);
    assert_eq!(config.strategy.balanced.max_moves_per_minute, Some(100));
    assert_eq!(config.strategy.balanced.max_targets_per_collector, Some(5000));
    assert_eq!(config.collector_not_ready_grace_period, Duration::from_secs(90));
    assert!(config.allow_insecure_auth_secrets);

    let prometheus = config.prometheus.as_ref().expect("config block");
    assert_eq!(
        prometheus.global.scrape_interval,
        Duration::from_secs(86_400),
        "1d is valid in config:"
    );
    assert_eq!(prometheus.global.evaluation_interval, Duration::from_secs(120));
    assert_eq!(prometheus.global.external_labels["cluster"], "eu-1");
    let jobs = config.scrape_configs();
    assert_eq!(jobs.len(), 4);
    let static_job = &jobs[0];
    assert_eq!(static_job.job.scrape_interval, Duration::from_secs(15));
    assert_eq!(
        static_job.job.scrape_timeout,
        Duration::from_secs(15),
        "the global 20s timeout is capped by the job's 15s interval"
    );
    assert_eq!(static_job.job.metrics_path, "/custom");
    assert_eq!(static_job.job.scheme, "https");
    assert_eq!(static_job.job.params["module"], vec!["http_2xx".to_string()]);
    assert!(static_job.honor_labels);
    assert!(!static_job.honor_timestamps);
    assert_eq!(static_job.job.rules.len(), 3);
    assert_eq!(static_job.metric_relabel_rules.len(), 1);
    let rendered = &static_job.rendered;
    assert_eq!(
        rendered["tls_config"]["insecure_skip_verify"], true,
        "unmodelled keys pass through"
    );
    assert_eq!(
        rendered["relabel_configs"][0],
        serde_json::json!({"source_labels": ["__address__"], "separator": ";", "regex": "a:.*", "replacement": "$1", "action": "keep"})
    );
    assert_eq!(rendered["relabel_configs"][1]["modulus"], 4);
    assert!(
        rendered["relabel_configs"][2].get("regex").is_none(),
        "keepequal is served without regex"
    );
    assert_eq!(rendered["static_configs"][0]["labels"]["env"], "prod");

    let ServiceDiscoveryConfig::File(files) = &jobs[1].discovery[0] else {
        panic!("file_sd")
    };
    assert_eq!(files.files.len(), 2);
    assert_eq!(files.refresh_interval, Duration::from_secs(60));
    assert_eq!(jobs[1].job.scrape_timeout, Duration::from_secs(20));
    let ServiceDiscoveryConfig::Http(http) = &jobs[2].discovery[0] else {
        panic!("http_sd")
    };
    assert_eq!(http.url, "http://sd.example:8080/targets");
    assert_eq!(http.refresh_interval, Duration::from_secs(120));
    assert_eq!(jobs[2].rendered["http_sd_configs"][0]["follow_redirects"], true);
    let ServiceDiscoveryConfig::Dns(srv) = &jobs[3].discovery[0] else {
        panic!("dns_sd")
    };
    assert_eq!(
        (srv.record_type, srv.port, srv.refresh_interval),
        (DnsRecordType::Srv, None, Duration::from_secs(30))
    );
    let ServiceDiscoveryConfig::Dns(a) = &jobs[3].discovery[1] else {
        panic!("dns_sd")
    };
    assert_eq!(
        (a.record_type, a.port, a.refresh_interval),
        (DnsRecordType::A, Some(9100), Duration::from_secs(45))
    );

    let cr = &config.prometheus_cr;
    assert_eq!(cr.allow_namespaces, vec!["team-a", "team-b"]);
    assert_eq!(
        cr.service_monitor_selector,
        Some(Default::default()),
        "{{}} selects all"
    );
    assert_eq!(cr.scrape_config_selector, None);
    assert_eq!(
        cr.service_monitor_namespace_selector.as_ref().unwrap().match_labels["monitored"],
        "yes"
    );
    assert_eq!(cr.scrape_interval, Duration::from_secs(45));
    assert_eq!(cr.scrape_classes[0]["tlsConfig"]["insecureSkipVerify"], true);
    assert!(cr.deny_fs_access_through_sms);
    assert!(config.https.enabled);
    assert_eq!(config.https.tls_key_file_path, "/tls/tls.key");
    assert_eq!(config.telemetry.metric_readers.len(), 2);
    let periodic = config.telemetry.metric_readers[0].periodic.as_ref().unwrap();
    assert_eq!((periodic.interval_ms, periodic.timeout_ms), (10_000, 5_000));
    assert!(periodic.otlp_grpc.as_ref().unwrap().insecure);

    let cluster = config.cluster.as_ref().expect("cluster");
    assert_eq!(cluster.name, "ta-1");
    assert_eq!(cluster.peers.len(), 3);
    assert_eq!(cluster.peer_listen_addr.port(), 7500);
    assert_eq!(cluster.timings.heartbeat_interval, Duration::from_millis(100));
    assert_eq!(cluster.timings.snapshot_after_entries, 10_000);
    assert_eq!(config.collectors.static_ids, vec!["collector-0", "collector-1"]);
    assert_eq!(config.collectors.register_on_poll.ttl, Duration::from_secs(120));
    assert!(!config.collectors.uses_kubernetes());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn an_invalid_regex_is_reported_at_the_regex() {
    let problems = problems_of("invalid_regex.yaml");
    expect_problem(
        &problems,
        9,
        "config.scrape_configs[0].relabel_configs[0].regex",
        "invalid regex",
    );
    assert_eq!(problems.len(), 1, "{}", listing(&problems));
}

#[test]
fn an_unknown_relabel_action_is_reported_at_the_action() {
    let problems = problems_of("unknown_action.yaml");
    expect_problem(
        &problems,
        9,
        "config.scrape_configs[0].relabel_configs[0].action",
        "unknown relabel action",
    );
}

#[test]
fn missing_required_fields_are_all_reported() {
    let problems = problems_of("missing_required.yaml");
    expect_problem(&problems, 3, "config.scrape_configs[0].job_name", "job_name is empty");
    expect_problem(
        &problems,
        8,
        "config.scrape_configs[1].file_sd_configs[0].files",
        "at least one path",
    );
    expect_problem(
        &problems,
        11,
        "config.scrape_configs[2].http_sd_configs[0].url",
        "URL is missing",
    );
    expect_problem(
        &problems,
        14,
        "config.scrape_configs[3].dns_sd_configs[0].port",
        "port is required",
    );
    let namespace = problems
        .iter()
        .find(|p| p.key_path == "collector_namespace")
        .expect("namespace");
    assert_eq!(namespace.line, None, "absent from the file: no line");
    assert_eq!(problems.len(), 5, "{}", listing(&problems));
}

#[test]
fn duplicate_job_names_name_both_places() {
    let problems = problems_of("duplicate_jobs.yaml");
    expect_problem(&problems, 10, "config.scrape_configs[2].job_name", "first at line 4");
    assert_eq!(problems.len(), 1, "{}", listing(&problems));
}

#[test]
fn bad_durations_follow_each_block_s_syntax() {
    let problems = problems_of("bad_durations.yaml");
    // `1d` is Prometheus syntax: refused for the allocator's own durations...
    expect_problem(&problems, 2, "collector_not_ready_grace_period", "Go duration");
    // ...accepted inside config: (line 5 has no problem).
    assert!(problems.iter().all(|p| p.line != Some(5)), "{}", listing(&problems));
    expect_problem(
        &problems,
        8,
        "config.scrape_configs[0].scrape_interval",
        "not a valid Prometheus duration",
    );
    expect_problem(
        &problems,
        14,
        "config.scrape_configs[1].scrape_timeout",
        "greater than the scrape interval",
    );
    assert_eq!(problems.len(), 3, "{}", listing(&problems));
}

#[test]
fn unknown_strategies_list_the_valid_names() {
    let problems = problems_of("unknown_strategy.yaml");
    expect_problem(
        &problems,
        2,
        "allocation_strategy",
        "consistent-hashing, least-weighted, per-node, balanced",
    );
    expect_problem(&problems, 3, "allocation_fallback_strategy", "\"random\"");
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let problems = problems_of("several_problems.yaml");
    expect_problem(&problems, 1, "allocation_strategy", "unregistered strategy");
    expect_problem(&problems, 3, "listen_addr", "already defined at line 2");
    expect_problem(&problems, 4, "collector_not_ready_grace_period", "invalid duration");
    expect_problem(&problems, 8, "config.scrape_configs[0].scheme", "http or https");
    expect_problem(
        &problems,
        12,
        "config.scrape_configs[0].relabel_configs[0].regex",
        "invalid regex",
    );
    expect_problem(
        &problems,
        14,
        "config.scrape_configs[1].job_name",
        "multiple scrape configs",
    );
    expect_problem(
        &problems,
        16,
        "config.scrape_configs[1].static_configs[0].targets[0]",
        "not a valid hostname",
    );
    expect_problem(&problems, 18, "cluster.name", "not one of cluster.peers");
    expect_problem(&problems, 20, "cluster.peers.ta-0", "http://");
    expect_problem(
        &problems,
        22,
        "cluster.raft.election_timeout_min",
        "below election_timeout_max",
    );
    assert!(problems.iter().any(|p| p.key_path == "collector_namespace"));
    assert!(problems.len() >= 11, "{}", listing(&problems));
}

#[test]
fn unreadable_files_are_a_clear_error() {
    let missing = testdata("does-not-exist.yaml");
    match config::load_file(&missing, &UpstreamFlags::default(), &environment(&[])) {
        Err(error @ LoadError::Unreadable { .. }) => {
            assert!(error.to_string().contains("does-not-exist.yaml"), "{error}");
        }
        other => panic!("expected Unreadable, got {other:?}"),
    }
    let directory = testdata("");
    assert!(matches!(
        config::load_file(&directory, &UpstreamFlags::default(), &environment(&[])),
        Err(LoadError::Unreadable { .. })
    ));
}

#[test]
fn yaml_syntax_errors_name_their_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("broken.yaml");
    std::fs::write(
        &path,
        "collector_namespace: x\nconfig:\n  scrape_configs: [\n    {job_name: a\n",
    )
    .expect("write");
    let Err(LoadError::Invalid { problems, .. }) =
        config::load_file(&path, &UpstreamFlags::default(), &environment(&[]))
    else {
        panic!("broken YAML must be refused");
    };
    assert_eq!(problems.len(), 1, "{}", listing(&problems));
    assert!(problems[0].message.starts_with("invalid YAML"), "{}", problems[0]);
    assert!(problems[0].line.is_some_and(|line| line >= 4), "{}", problems[0]);
}

#[test]
fn unknown_keys_are_ignored_with_a_warning() {
    let loaded = load_ok("unknown_keys.yaml");
    let warned: Vec<(&str, Option<usize>)> = loaded.warnings.iter().map(|w| (w.key_path.as_str(), w.line)).collect();
    assert!(warned.contains(&("colector_selector", Some(2))), "{warned:?}");
    assert!(warned.contains(&("https.enabeld", Some(5))), "{warned:?}");
    assert!(
        warned.contains(&("config.scrape_configs[0].scrape_intervall", Some(9))),
        "{warned:?}"
    );
    assert!(!loaded.config.https.enabled);
    let job = &loaded.config.scrape_configs()[0];
    assert_eq!(
        job.job.scrape_interval,
        Duration::from_secs(60),
        "the misspelt key is not read"
    );
    assert_eq!(job.rendered["scrape_intervall"], "10s", "but it is served as written");
}

#[test]
fn null_keeps_every_default() {
    let config = load_ok("nulls.yaml").config;
    assert_eq!(config.listen_addr, ":8080");
    assert_eq!(config.collector_selector, None);
    assert_eq!(config.strategy.strategy, StrategyName::ConsistentHashing);
    assert_eq!(config.filter_strategy, FilterStrategy::RelabelConfig);
    assert_eq!(config.filter_strategy_name, "relabel-config");
    assert_eq!(config.collector_not_ready_grace_period, Duration::from_secs(30));
    assert_eq!(config.prometheus_cr.scrape_interval, Duration::from_secs(30));
    assert_eq!(
        config.prometheus_cr.service_monitor_namespace_selector,
        Some(Default::default())
    );
    assert_eq!(config.prometheus_cr.service_monitor_selector, None);
    assert_eq!(config.https.listen_addr, ":8443");
    assert!(config.prometheus.is_none());
}

#[test]
fn the_environment_overrides_the_file_and_flags_override_both() {
    let plain = load_ok("full.yaml").config;
    assert_eq!(plain.collector_namespace, "observability");

    let from_env = load_with(
        "full.yaml",
        &[
            ("OTELCOL_NAMESPACE", "from-env"),
            ("ALLOW_INSECURE_AUTH_SECRETS", "true"),
        ],
        &UpstreamFlags::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    assert_eq!(from_env.collector_namespace, "from-env");

    // Only exactly "true" turns it on; other values leave the file's setting.
    let minimal = load_with(
        "minimal.yaml",
        &[("ALLOW_INSECURE_AUTH_SECRETS", "yes")],
        &UpstreamFlags::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .config;
    assert!(!minimal.allow_insecure_auth_secrets);

    let flags = UpstreamFlags {
        listen_addr: Some(":7070".to_string()),
        allow_insecure_auth_secrets: Some(false),
        enable_https_server: Some(false),
        listen_addr_https: Some(":7443".to_string()),
        kubeconfig_path: Some("/flag/kubeconfig".to_string()),
        enable_prometheus_cr_watcher: Some(false),
        https_ca_file: Some("/flag/ca".to_string()),
        ..UpstreamFlags::default()
    };
    let from_flags = load_with("full.yaml", &[("ALLOW_INSECURE_AUTH_SECRETS", "true")], &flags)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    assert_eq!(from_flags.listen_addr, ":7070");
    assert!(
        !from_flags.allow_insecure_auth_secrets,
        "a given flag beats file and env"
    );
    assert!(!from_flags.https.enabled);
    assert_eq!(from_flags.https.listen_addr, ":7443");
    assert_eq!(from_flags.https.ca_file_path, "/flag/ca");
    assert_eq!(
        from_flags.https.tls_cert_file_path, "/tls/tls.crt",
        "flags not given change nothing"
    );
    assert_eq!(from_flags.kube_config_file_path, "/flag/kubeconfig");
    assert!(!from_flags.prometheus_cr.enabled);
}

#[test]
fn the_namespace_may_come_from_the_environment_alone() {
    let problems = problems_of("missing_required.yaml");
    assert!(problems.iter().any(|p| p.key_path == "collector_namespace"));
    let Err(LoadError::Invalid { problems, .. }) = load_with(
        "missing_required.yaml",
        &[("OTELCOL_NAMESPACE", "ns")],
        &UpstreamFlags::default(),
    ) else {
        panic!("still invalid");
    };
    assert!(
        problems.iter().all(|p| p.key_path != "collector_namespace"),
        "{}",
        listing(&problems)
    );
}

#[test]
fn without_scrape_configs_prometheus_cr_must_be_enabled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("empty.yaml");
    std::fs::write(&path, "collector_namespace: ns\n").expect("write");
    let Err(LoadError::Invalid { problems, .. }) =
        config::load_file(&path, &UpstreamFlags::default(), &environment(&[]))
    else {
        panic!("no jobs and no CRs must be refused");
    };
    assert!(
        problems[0].message.contains("at least one scrape config"),
        "{}",
        problems[0]
    );
    let flags = UpstreamFlags {
        enable_prometheus_cr_watcher: Some(true),
        ..UpstreamFlags::default()
    };
    let loaded = config::load_file(&path, &flags, &environment(&[])).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.config.prometheus_cr.enabled);
}
