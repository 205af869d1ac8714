//! The generator against prometheus-operator's golden files (pkg/prometheus/testdata, read at
//! commit 6adcebc5): each expected job below is the golden's job, copied as YAML, with the
//! differences noted where the allocator's generator options differ from the golden's.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_json::json;

use super::*;
use crate::config::LabelSelector as ConfigSelector;
use crate::config::PrometheusCrConfig;
use crate::kubernetes::prometheus_cr::credentials::CredentialRef;
use crate::kubernetes::prometheus_cr::spec::MonitorKind;

fn selection() -> Selection {
    let config = PrometheusCrConfig {
        service_monitor_selector: Some(ConfigSelector::default()),
        pod_monitor_selector: Some(ConfigSelector::default()),
        ..PrometheusCrConfig::default()
    };
    Selection::from_config(&config, "observability")
}

fn monitor(kind: MonitorKind, namespace: &str, name: &str, spec: Json) -> Monitor {
    Monitor::from_parts(kind, namespace.into(), name.into(), BTreeMap::new(), spec).expect("a valid spec")
}

fn generate_with(monitors: &[Monitor], credentials: &CredentialValues, deny_fs_access: bool) -> Generated {
    let selection = selection();
    let namespaces = BTreeMap::new();
    generate(
        monitors,
        Context {
            selection: &selection,
            namespace_labels: &namespaces,
            credentials,
            deny_fs_access,
            kubeconfig_file: None,
        },
    )
}

fn generate_one(monitor: Monitor) -> Json {
    let generated = generate_with(&[monitor], &CredentialValues::new(), false);
    assert!(generated.problems.is_empty(), "{:?}", generated.problems);
    assert_eq!(generated.jobs.len(), 1);
    // Whatever is generated must pass the scrape-config parser.
    let (parsed, problems) = parse(&generated.jobs, &defaults(&PrometheusCrConfig::default()));
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(parsed.len(), 1);
    generated.jobs[0].config.clone()
}

fn expected(golden_job: &str) -> Json {
    crate::config::yaml::parse(golden_job).expect("golden YAML").to_json()
}

const SHARDING_RULES: &str = r#"
  - source_labels:
    - __address__
    - __tmp_hash
    target_label: __tmp_hash
    regex: (.+);
    replacement: $1
    action: replace
  - source_labels:
    - __tmp_hash
    target_label: __tmp_hash
    modulus: 1
    action: hashmod
  - source_labels:
    - __tmp_hash
    - __tmp_disable_sharding
    regex: $(SHARD);|.+;.+
    action: keep
"#;

/// TestServiceMonitorWithEndpointSliceEnable_Expected.golden.
#[test]
fn a_service_monitor_matches_the_endpointslice_golden() {
    let generated = generate_one(monitor(
        MonitorKind::ServiceMonitor,
        "default",
        "test",
        json!({
            "selector": {
                "matchLabels": {"foo": "bar"},
                "matchExpressions": [{"key": "alpha", "operator": "In", "values": ["beta", "gamma"]}]
            },
            "endpoints": [{"port": "web", "interval": "30s"}]
        }),
    ));
    let golden = format!(
        "{}{SHARDING_RULES}",
        r#"
job_name: serviceMonitor/default/test/0
honor_labels: false
kubernetes_sd_configs:
- role: endpointslice
  namespaces:
    names:
    - default
scrape_interval: 30s
relabel_configs:
  - source_labels:
    - job
    target_label: __tmp_prometheus_job_name
  - action: keep
    source_labels:
    - __meta_kubernetes_service_label_foo
    - __meta_kubernetes_service_labelpresent_foo
    regex: (bar);true
  - action: keep
    source_labels:
    - __meta_kubernetes_service_label_alpha
    - __meta_kubernetes_service_labelpresent_alpha
    regex: (beta|gamma);true
  - action: keep
    source_labels:
    - __meta_kubernetes_endpointslice_port_name
    regex: web
  - source_labels:
    - __meta_kubernetes_endpointslice_address_target_kind
    - __meta_kubernetes_endpointslice_address_target_name
    separator: ;
    regex: Node;(.*)
    replacement: ${1}
    target_label: node
  - source_labels:
    - __meta_kubernetes_endpointslice_address_target_kind
    - __meta_kubernetes_endpointslice_address_target_name
    separator: ;
    regex: Pod;(.*)
    replacement: ${1}
    target_label: pod
  - source_labels:
    - __meta_kubernetes_namespace
    target_label: namespace
  - source_labels:
    - __meta_kubernetes_service_name
    target_label: service
  - source_labels:
    - __meta_kubernetes_pod_name
    target_label: pod
  - source_labels:
    - __meta_kubernetes_pod_container_name
    target_label: container
  - action: drop
    source_labels:
    - __meta_kubernetes_pod_phase
    regex: (Failed|Succeeded)
  - source_labels:
    - __meta_kubernetes_service_name
    target_label: job
    replacement: ${1}
  - target_label: endpoint
    replacement: web"#
    );
    assert_eq!(generated, expected(&golden));
}

/// NoEnforcedNamespaceLabelServiceMonitor_Expected.golden: honorLabels, the user's
/// relabelings after the generated ones and before sharding, metricRelabelings. The golden
/// uses the `endpoints` role; with upstream's endpointslice option the port and target rules
/// read the `endpointslice` labels instead, which is the only change made here.
#[test]
fn relabelings_and_metric_relabelings_match_the_golden() {
    let generated = generate_one(monitor(
        MonitorKind::ServiceMonitor,
        "default",
        "test",
        json!({
            "selector": {"matchLabels": {"foo": "bar"}},
            "endpoints": [{
                "port": "https-metrics",
                "honorLabels": true,
                "interval": "30s",
                "metricRelabelings": [{
                    "action": "drop",
                    "regex": "container_(network_tcp_usage_total|network_udp_usage_total|tasks_state|cpu_load_average_10s)",
                    "sourceLabels": ["__name__"]
                }],
                "relabelings": [
                    {"action": "replace", "regex": "(.+)(?::d+)", "replacement": "$1:9537",
                     "sourceLabels": ["__address__"], "targetLabel": "__address__"},
                    {"action": "replace", "replacement": "crio", "targetLabel": "job"}
                ]
            }]
        }),
    ));
    let golden = format!(
        "{}{SHARDING_RULES}{}",
        r#"
job_name: serviceMonitor/default/test/0
honor_labels: true
kubernetes_sd_configs:
- role: endpointslice
  namespaces:
    names:
    - default
scrape_interval: 30s
relabel_configs:
  - source_labels:
    - job
    target_label: __tmp_prometheus_job_name
  - action: keep
    source_labels:
    - __meta_kubernetes_service_label_foo
    - __meta_kubernetes_service_labelpresent_foo
    regex: (bar);true
  - action: keep
    source_labels:
    - __meta_kubernetes_endpointslice_port_name
    regex: https-metrics
  - source_labels:
    - __meta_kubernetes_endpointslice_address_target_kind
    - __meta_kubernetes_endpointslice_address_target_name
    separator: ;
    regex: Node;(.*)
    replacement: ${1}
    target_label: node
  - source_labels:
    - __meta_kubernetes_endpointslice_address_target_kind
    - __meta_kubernetes_endpointslice_address_target_name
    separator: ;
    regex: Pod;(.*)
    replacement: ${1}
    target_label: pod
  - source_labels:
    - __meta_kubernetes_namespace
    target_label: namespace
  - source_labels:
    - __meta_kubernetes_service_name
    target_label: service
  - source_labels:
    - __meta_kubernetes_pod_name
    target_label: pod
  - source_labels:
    - __meta_kubernetes_pod_container_name
    target_label: container
  - action: drop
    source_labels:
    - __meta_kubernetes_pod_phase
    regex: (Failed|Succeeded)
  - source_labels:
    - __meta_kubernetes_service_name
    target_label: job
    replacement: ${1}
  - target_label: endpoint
    replacement: https-metrics
  - source_labels:
    - __address__
    target_label: __address__
    regex: (.+)(?::d+)
    replacement: $1:9537
    action: replace
  - target_label: job
    replacement: crio
    action: replace"#,
        r#"
metric_relabel_configs:
  - source_labels:
    - __name__
    regex: container_(network_tcp_usage_total|network_udp_usage_total|tasks_state|cpu_load_average_10s)
    action: drop
"#
    );
    assert_eq!(generated, expected(&golden));
}

fn pod_monitor_golden(port_rule: &str, endpoint: &str) -> Json {
    expected(&format!(
        r#"
job_name: podMonitor/default/defaultPodMonitor/0
honor_labels: false
kubernetes_sd_configs:
- role: pod
  namespaces:
    names:
    - default
scrape_interval: 30s
relabel_configs:
  - source_labels:
    - job
    target_label: __tmp_prometheus_job_name
  - action: drop
    source_labels:
    - __meta_kubernetes_pod_phase
    regex: (Failed|Succeeded)
  - action: keep
    source_labels:
    - __meta_kubernetes_pod_label_group
    - __meta_kubernetes_pod_labelpresent_group
    regex: (group1);true
{port_rule}
  - source_labels:
    - __meta_kubernetes_namespace
    target_label: namespace
  - source_labels:
    - __meta_kubernetes_pod_container_name
    target_label: container
  - source_labels:
    - __meta_kubernetes_pod_name
    target_label: pod
  - target_label: job
    replacement: default/defaultPodMonitor
{endpoint}{SHARDING_RULES}"#
    ))
}

/// podMonitorObjectWithTargetPortString.golden: a named target port matches the container
/// port's name and becomes the `endpoint` label.
#[test]
fn a_pod_monitor_with_a_named_target_port_matches_the_golden() {
    let generated = generate_one(monitor(
        MonitorKind::PodMonitor,
        "default",
        "defaultPodMonitor",
        json!({
            "selector": {"matchLabels": {"group": "group1"}},
            "podMetricsEndpoints": [{"interval": "30s", "targetPort": "10240"}]
        }),
    ));
    let expected = pod_monitor_golden(
        "  - action: keep\n    source_labels:\n    - __meta_kubernetes_pod_container_port_name\n    regex: \"10240\"",
        "  - target_label: endpoint\n    replacement: \"10240\"",
    );
    assert_eq!(generated, expected);
}

/// podMonitorObjectWithTargetPortInt.golden: a numbered target port matches the container
/// port's number.
#[test]
fn a_pod_monitor_with_a_numbered_target_port_matches_the_golden() {
    let generated = generate_one(monitor(
        MonitorKind::PodMonitor,
        "default",
        "defaultPodMonitor",
        json!({
            "selector": {"matchLabels": {"group": "group1"}},
            "podMetricsEndpoints": [{"interval": "30s", "targetPort": 4242}]
        }),
    ));
    let expected = pod_monitor_golden(
        "  - action: keep\n    source_labels:\n    - __meta_kubernetes_pod_container_port_number\n    regex: 4242",
        "  - target_label: endpoint\n    replacement: \"4242\"",
    );
    assert_eq!(generated, expected);
}

fn secret(namespace: &str, name: &str, key: &str) -> CredentialRef {
    CredentialRef::secret(
        namespace,
        &crate::kubernetes::prometheus_cr::spec::SecretKeySelector {
            name: name.into(),
            key: key.into(),
        },
    )
}

fn authenticated_monitor() -> Monitor {
    monitor(
        MonitorKind::ServiceMonitor,
        "apps",
        "secure",
        json!({
            "selector": {},
            "namespaceSelector": {"any": true},
            "endpoints": [{
                "port": "https",
                "scheme": "https",
                "path": "/custom",
                "params": {"module": ["a"]},
                "scrapeTimeout": "5s",
                "honorTimestamps": false,
                "tlsConfig": {
                    "ca": {"configMap": {"name": "ca", "key": "ca.crt"}},
                    "cert": {"secret": {"name": "tls", "key": "tls.crt"}},
                    "keySecret": {"name": "tls", "key": "tls.key"},
                    "serverName": "app.local",
                    "insecureSkipVerify": false
                },
                "basicAuth": {"username": {"name": "auth", "key": "user"}, "password": {"name": "auth", "key": "pass"}}
            }, {
                "port": "bearer",
                "authorization": {"credentials": {"name": "auth", "key": "token"}}
            }]
        }),
    )
}

fn credentials() -> CredentialValues {
    let mut values = CredentialValues::new();
    values.insert(
        CredentialRef::config_map(
            "apps",
            &crate::kubernetes::prometheus_cr::spec::SecretKeySelector {
                name: "ca".into(),
                key: "ca.crt".into(),
            },
        ),
        "CA PEM".into(),
    );
    values.insert(secret("apps", "tls", "tls.crt"), "CERT PEM".into());
    values.insert(secret("apps", "tls", "tls.key"), "KEY PEM".into());
    values.insert(secret("apps", "auth", "user"), "alice".into());
    values.insert(secret("apps", "auth", "pass"), "s3cret".into());
    values.insert(secret("apps", "auth", "token"), "t0ken".into());
    values
}

/// TLS and auth as `addTLStoYaml` (inline option), `addBasicAuthToYaml` and
/// `addSafeAuthorizationToYaml` write them; `namespaceSelector.any` drops `namespaces`.
#[test]
fn credentials_are_inlined_and_masked_on_plain_http() {
    let generated = generate_with(&[authenticated_monitor()], &credentials(), false);
    assert!(generated.problems.is_empty(), "{:?}", generated.problems);
    let names: Vec<&str> = generated.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["serviceMonitor/apps/secure/0", "serviceMonitor/apps/secure/1"]);
    let first = &generated.jobs[0].config;
    assert_eq!(first["kubernetes_sd_configs"], json!([{"role": "endpointslice"}]));
    assert_eq!(
        first["tls_config"],
        json!({"ca": "CA PEM", "cert": "CERT PEM", "key": "KEY PEM", "server_name": "app.local", "insecure_skip_verify": false})
    );
    assert_eq!(first["basic_auth"], json!({"username": "alice", "password": "s3cret"}));
    assert_eq!(first["scheme"], json!("https"));
    assert_eq!(first["metrics_path"], json!("/custom"));
    assert_eq!(first["params"], json!({"module": ["a"]}));
    assert_eq!(first["honor_timestamps"], json!(false));
    assert_eq!(
        generated.jobs[1].config["authorization"],
        json!({"type": "Bearer", "credentials": "t0ken"})
    );

    let (parsed, problems) = parse(&generated.jobs, &defaults(&PrometheusCrConfig::default()));
    assert!(problems.is_empty(), "{problems:?}");
    let mut served = parsed[0].rendered.clone();
    assert_eq!(served["scrape_timeout"], json!("5s"));
    assert_eq!(served["scrape_interval"], json!("30s"), "prometheus_cr.scrape_interval");
    crate::secrets::mask_secrets(&mut served);
    assert_eq!(served["basic_auth"]["password"], json!(crate::secrets::SECRET_MASK));
    assert_eq!(served["basic_auth"]["username"], json!("alice"));
    assert_eq!(served["tls_config"]["key"], json!(crate::secrets::SECRET_MASK));
    let mut second = parsed[1].rendered.clone();
    crate::secrets::mask_secrets(&mut second);
    assert_eq!(
        second["authorization"]["credentials"],
        json!(crate::secrets::SECRET_MASK)
    );
}

#[test]
fn a_monitor_with_an_unreadable_secret_is_left_out_whole() {
    let mut values = credentials();
    values.remove(&secret("apps", "auth", "token"));
    let generated = generate_with(&[authenticated_monitor()], &values, false);
    assert!(generated.jobs.is_empty());
    assert_eq!(generated.problems.len(), 1);
    assert!(
        generated.problems[0].contains("secret apps/auth"),
        "{:?}",
        generated.problems
    );
}

#[test]
fn file_access_is_dropped_when_denied() {
    let reads_a_file = monitor(
        MonitorKind::ServiceMonitor,
        "apps",
        "files",
        json!({"endpoints": [{"port": "a", "bearerTokenFile": "/var/run/secrets/token"}, {"port": "b"}]}),
    );
    let allowed = generate_with(std::slice::from_ref(&reads_a_file), &CredentialValues::new(), false);
    assert_eq!(allowed.jobs.len(), 2);
    let denied = generate_with(&[reads_a_file], &CredentialValues::new(), true);
    assert_eq!(denied.jobs.len(), 1);
    assert_eq!(denied.jobs[0].name, "serviceMonitor/apps/files/1");
    assert!(
        denied.problems[0].contains("bearer_token_file"),
        "{:?}",
        denied.problems
    );
}

#[test]
fn label_names_are_sanitized_like_prometheus_operator() {
    assert_eq!(sanitize_label_name("app.kubernetes.io/name"), "app_kubernetes_io_name");
}
