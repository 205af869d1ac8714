//! The pure generator: selected monitors → scrape configs shaped like prometheus-operator's
//! `generateServiceMonitorConfig` / `generatePodMonitorConfig` (pkg/prometheus/promcfg.go,
//! with `WithEndpointSliceSupport` and `WithInlineTLSConfig`, as upstream's allocator calls
//! it), then read through the same parser as the file's scrape configs, with the synthetic
//! Prometheus's global defaults (`prometheus_cr.scrape_interval`, 10 s timeout capped by the
//! interval, `prometheus_cr.scrape_protocols`).
//!
//! One job per endpoint: `serviceMonitor/<ns>/<name>/<index>` with `kubernetes_sd_configs`
//! role `endpointslice`, `podMonitor/<ns>/<name>/<index>` with role `pod`. The relabelings
//! are prometheus-operator's, in its order, ending with the `$(SHARD)` hashmod rules, which
//! are served as they are for the collector to substitute (the allocator neutralises them
//! when filtering, docs/allocation.md, "Targets").
//!
//! A monitor whose credentials cannot all be resolved is left out whole, as
//! prometheus-operator rejects it; so are jobs reading files when
//! `deny_fs_access_through_sms` is set.

use std::collections::BTreeMap;

use serde_json::Map;
use serde_json::Value as Json;
use serde_json::json;

use super::credentials::CredentialRef;
use super::credentials::CredentialValues;
use super::credentials::references;
use super::selection::Selection;
use super::spec::IntOrString;
use super::spec::LabelSelector;
use super::spec::Monitor;
use super::spec::MonitorSpec;
use super::spec::NamespaceSelector;
use super::spec::PodMetricsEndpoint;
use super::spec::PodMonitorSpec;
use super::spec::RelabelConfig;
use super::spec::ScrapeSettings;
use super::spec::ServiceMonitorSpec;
use crate::config::problem::KeyPath;
use crate::config::problem::Report;
use crate::config::scrape;
use crate::config::scrape::ScrapeConfig;
use crate::config::scrape::ScrapeDefaults;
use crate::config::yaml;
use crate::discovery::Interner;

/// Prometheus's default scrape timeout, which the synthetic Prometheus keeps.
const DEFAULT_SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the generator reads besides the monitors.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub selection: &'a Selection,
    /// Labels of each namespace (read only for namespace selectors with requirements).
    pub namespace_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    pub credentials: &'a CredentialValues,
    /// `prometheus_cr.deny_fs_access_through_sms`.
    pub deny_fs_access: bool,
    /// Set as `kubeconfig_file` of every `kubernetes_sd_configs` entry, as upstream does
    /// with its own kubeconfig; `None` in-cluster.
    pub kubeconfig_file: Option<&'a str>,
}

/// One generated job, before parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedJob {
    pub name: String,
    /// `serviceMonitor/<ns>/<name>` of the monitor it came from.
    pub monitor: String,
    /// The scrape config as prometheus-operator writes it.
    pub config: Json,
}

/// The generator's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generated {
    pub jobs: Vec<GeneratedJob>,
    /// Monitors or jobs left out, and why.
    pub problems: Vec<String>,
}

/// Generate the jobs of every selected monitor, in (kind, namespace, name) order.
pub fn generate(monitors: &[Monitor], context: Context<'_>) -> Generated {
    let mut selected: Vec<&Monitor> = monitors
        .iter()
        .filter(|m| context.selection.selects(m, context.namespace_labels))
        .collect();
    selected.sort_by(|a, b| (a.kind(), &a.namespace, &a.name).cmp(&(b.kind(), &b.namespace, &b.name)));
    let mut out = Generated::default();
    for monitor in selected {
        let monitor_id = format!("{}/{}/{}", monitor.kind().job_prefix(), monitor.namespace, monitor.name);
        let missing: Vec<CredentialRef> = references(monitor)
            .into_iter()
            .filter(|r| !context.credentials.contains_key(r))
            .collect();
        if let Some(first) = missing.first() {
            out.problems.push(format!(
                "{monitor_id} skipped: cannot read {first}{}",
                if missing.len() > 1 {
                    format!(" (and {} more)", missing.len() - 1)
                } else {
                    String::new()
                }
            ));
            continue;
        }
        let jobs: Vec<Json> = match &monitor.spec {
            MonitorSpec::Service(spec) => (0..spec.endpoints.len())
                .map(|index| service_monitor_job(monitor, spec, index, &context))
                .collect(),
            MonitorSpec::Pod(spec) => (0..spec.pod_metrics_endpoints.len())
                .map(|index| pod_monitor_job(monitor, spec, index, &context))
                .collect(),
        };
        for (index, config) in jobs.into_iter().enumerate() {
            let name = format!("{monitor_id}/{index}");
            if context.deny_fs_access
                && let Some(field) = file_access(&config)
            {
                out.problems.push(format!(
                    "{name} dropped: it reads {field} from the collector's file system and deny_fs_access_through_sms is set"
                ));
                continue;
            }
            out.jobs.push(GeneratedJob {
                name,
                monitor: monitor_id.clone(),
                config,
            });
        }
    }
    out
}

/// The defaults the synthetic Prometheus gives every generated job.
pub fn defaults(config: &crate::config::PrometheusCrConfig) -> ScrapeDefaults {
    ScrapeDefaults {
        scrape_interval: config.scrape_interval,
        scrape_timeout: DEFAULT_SCRAPE_TIMEOUT.min(config.scrape_interval),
        scrape_protocols: config.scrape_protocols.clone(),
    }
}

/// Read generated jobs through the file's scrape-config parser. A job the parser refuses is
/// left out, with its problems.
pub fn parse(jobs: &[GeneratedJob], defaults: &ScrapeDefaults) -> (Vec<ScrapeConfig>, Vec<String>) {
    let mut configs = Vec::new();
    let mut problems = Vec::new();
    let mut interner = Interner::default();
    for job in jobs {
        // JSON is YAML; the parser gives every problem a key path.
        let node = match yaml::parse(&job.config.to_string()) {
            Ok(node) => node,
            Err(error) => {
                problems.push(format!("{}: {error}", job.name));
                continue;
            }
        };
        let mut report = Report::new(job.monitor.clone());
        match scrape::decode(&node, &KeyPath::root(), defaults, &mut report, &mut interner) {
            Some(config) if !report.has_errors() => configs.push(config),
            _ => problems.extend(
                report
                    .errors
                    .iter()
                    .map(|p| format!("{} left out: {} {}", job.name, p.key_path, p.message)),
            ),
        }
    }
    (configs, problems)
}

/// The first file-reading field of a generated job (prometheus-operator's
/// `arbitraryFSAccessThroughSMs: Deny`).
fn file_access(config: &Json) -> Option<&'static str> {
    let has = |pointer: &str| {
        config
            .pointer(pointer)
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    };
    [
        ("/bearer_token_file", "bearer_token_file"),
        ("/authorization/credentials_file", "authorization.credentials_file"),
        ("/tls_config/ca_file", "tls_config.ca_file"),
        ("/tls_config/cert_file", "tls_config.cert_file"),
        ("/tls_config/key_file", "tls_config.key_file"),
    ]
    .into_iter()
    .find(|(pointer, _)| has(pointer))
    .map(|(_, field)| field)
}

/// Prometheus-operator's `sanitizeLabelName`.
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// An ordered object under construction (serde_json sorts keys; order does not matter to
/// Prometheus and the parser).
struct Job(Map<String, Json>);

impl Job {
    fn set(&mut self, key: &str, value: Json) {
        self.0.insert(key.to_string(), value);
    }
}

fn rule(pairs: &[(&str, Json)]) -> Json {
    Json::Object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

fn kubernetes_sd(role: &str, monitor: &Monitor, namespace_selector: &NamespaceSelector, context: &Context<'_>) -> Json {
    let mut sd = Map::new();
    sd.insert("role".into(), json!(role));
    let names: Vec<String> = if namespace_selector.any {
        Vec::new()
    } else if namespace_selector.match_names.is_empty() {
        vec![monitor.namespace.clone()]
    } else {
        namespace_selector.match_names.clone()
    };
    if !names.is_empty() {
        sd.insert("namespaces".into(), json!({ "names": names }));
    }
    if let Some(path) = context.kubeconfig_file {
        sd.insert("kubeconfig_file".into(), json!(path));
    }
    json!([sd])
}

/// The settings both monitor kinds write the same way, before the relabelings.
fn common_settings(job: &mut Job, monitor: &Monitor, settings: &ScrapeSettings, context: &Context<'_>) {
    job.set("honor_labels", json!(settings.honor_labels));
    if let Some(honor) = settings.honor_timestamps {
        job.set("honor_timestamps", json!(honor));
    }
    if !settings.interval.is_empty() {
        job.set("scrape_interval", json!(settings.interval));
    }
    if !settings.scrape_timeout.is_empty() {
        job.set("scrape_timeout", json!(settings.scrape_timeout));
    }
    if !settings.path.is_empty() {
        job.set("metrics_path", json!(settings.path));
    }
    if let Some(params) = &settings.params {
        job.set("params", json!(params));
    }
    if !settings.scheme.is_empty() {
        job.set("scheme", json!(settings.scheme.to_lowercase()));
    }
    if let Some(follow) = settings.follow_redirects {
        job.set("follow_redirects", json!(follow));
    }
    if let Some(http2) = settings.enable_http2 {
        job.set("enable_http2", json!(http2));
    }
    let value = |r: CredentialRef| context.credentials.get(&r).cloned().unwrap_or_default();
    let namespace = &monitor.namespace;
    if let Some(tls) = &settings.tls_config {
        let mut tls_config = Map::new();
        if let Some(skip) = tls.insecure_skip_verify {
            tls_config.insert("insecure_skip_verify".into(), json!(skip));
        }
        if let Some(ca) = CredentialRef::either(namespace, &tls.ca) {
            tls_config.insert("ca".into(), json!(value(ca)));
        }
        if let Some(cert) = CredentialRef::either(namespace, &tls.cert) {
            tls_config.insert("cert".into(), json!(value(cert)));
        }
        if let Some(key) = &tls.key_secret {
            tls_config.insert("key".into(), json!(value(CredentialRef::secret(namespace, key))));
        }
        if let Some(server_name) = tls.server_name.as_ref().filter(|s| !s.is_empty()) {
            tls_config.insert("server_name".into(), json!(server_name));
        }
        if let Some(min) = &tls.min_version {
            tls_config.insert("min_version".into(), json!(min));
        }
        if let Some(max) = &tls.max_version {
            tls_config.insert("max_version".into(), json!(max));
        }
        for (key, path) in [
            ("ca_file", &tls.ca_file),
            ("cert_file", &tls.cert_file),
            ("key_file", &tls.key_file),
        ] {
            if !path.is_empty() {
                tls_config.insert(key.into(), json!(path));
            }
        }
        job.set("tls_config", Json::Object(tls_config));
    }
    if !settings.bearer_token_file.is_empty() {
        job.set("bearer_token_file", json!(settings.bearer_token_file));
    }
    if let Some(token) = settings.bearer_token_secret.as_ref().filter(|s| !s.name.is_empty()) {
        job.set("bearer_token", json!(value(CredentialRef::secret(namespace, token))));
    }
    if let Some(basic) = &settings.basic_auth {
        job.set(
            "basic_auth",
            json!({
                "username": value(CredentialRef::secret(namespace, &basic.username)),
                "password": value(CredentialRef::secret(namespace, &basic.password)),
            }),
        );
    }
    if let Some(authorization) = &settings.authorization {
        let kind = if authorization.kind.trim().is_empty() {
            "Bearer"
        } else {
            authorization.kind.trim()
        };
        let mut auth = Map::new();
        auth.insert("type".into(), json!(kind));
        if let Some(credentials) = &authorization.credentials {
            auth.insert(
                "credentials".into(),
                json!(value(CredentialRef::secret(namespace, credentials))),
            );
        }
        if !authorization.credentials_file.is_empty() {
            auth.insert("credentials_file".into(), json!(authorization.credentials_file));
        }
        job.set("authorization", Json::Object(auth));
    }
}

/// Keep/drop rules for a monitor's label selector on `__meta_kubernetes_<object>_label_*`.
fn selector_rules(selector: &LabelSelector, object: &str, rules: &mut Vec<Json>) {
    let label = |key: &str| format!("__meta_kubernetes_{object}_label_{}", sanitize_label_name(key));
    let present = |key: &str| format!("__meta_kubernetes_{object}_labelpresent_{}", sanitize_label_name(key));
    for (key, value) in &selector.match_labels {
        rules.push(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!([label(key), present(key)])),
            ("regex", json!(format!("({value});true"))),
        ]));
    }
    for expression in &selector.match_expressions {
        let key = &expression.key;
        let values = expression.values.join("|");
        let generated = match expression.operator.as_str() {
            "In" => rule(&[
                ("action", json!("keep")),
                ("source_labels", json!([label(key), present(key)])),
                ("regex", json!(format!("({values});true"))),
            ]),
            "NotIn" => rule(&[
                ("action", json!("drop")),
                ("source_labels", json!([label(key), present(key)])),
                ("regex", json!(format!("({values});true"))),
            ]),
            "Exists" => rule(&[
                ("action", json!("keep")),
                ("source_labels", json!([present(key)])),
                ("regex", json!("true")),
            ]),
            "DoesNotExist" => rule(&[
                ("action", json!("drop")),
                ("source_labels", json!([present(key)])),
                ("regex", json!("true")),
            ]),
            // The CRD's validation refuses other operators.
            _ => continue,
        };
        rules.push(generated);
    }
}

/// prometheus-operator's `generateRelabelConfig`: only the fields that are set.
fn user_rules(configs: &[RelabelConfig]) -> Vec<Json> {
    configs
        .iter()
        .map(|c| {
            let mut object = Map::new();
            if !c.source_labels.is_empty() {
                object.insert("source_labels".into(), json!(c.source_labels));
            }
            if let Some(separator) = &c.separator {
                object.insert("separator".into(), json!(separator));
            }
            if !c.target_label.is_empty() {
                object.insert("target_label".into(), json!(c.target_label));
            }
            if !c.regex.is_empty() {
                object.insert("regex".into(), json!(c.regex));
            }
            if c.modulus != 0 {
                object.insert("modulus".into(), json!(c.modulus));
            }
            if let Some(replacement) = &c.replacement {
                object.insert("replacement".into(), json!(replacement));
            }
            if !c.action.is_empty() {
                object.insert("action".into(), json!(c.action.to_lowercase()));
            }
            Json::Object(object)
        })
        .collect()
}

fn running_filter() -> Json {
    rule(&[
        ("action", json!("drop")),
        ("source_labels", json!(["__meta_kubernetes_pod_phase"])),
        ("regex", json!("(Failed|Succeeded)")),
    ])
}

fn label_copy(source: &str, target: &str) -> Json {
    rule(&[("source_labels", json!([source])), ("target_label", json!(target))])
}

fn target_label_rule(source: String, label: &str) -> Json {
    rule(&[
        ("source_labels", json!([source])),
        ("target_label", json!(sanitize_label_name(label))),
        ("regex", json!("(.+)")),
        ("replacement", json!("${1}")),
    ])
}

/// The `$(SHARD)` rules, kept for the collector.
fn sharding_rules() -> [Json; 3] {
    [
        rule(&[
            ("source_labels", json!(["__address__", "__tmp_hash"])),
            ("target_label", json!("__tmp_hash")),
            ("regex", json!("(.+);")),
            ("replacement", json!("$1")),
            ("action", json!("replace")),
        ]),
        rule(&[
            ("source_labels", json!(["__tmp_hash"])),
            ("target_label", json!("__tmp_hash")),
            ("modulus", json!(1)),
            ("action", json!("hashmod")),
        ]),
        rule(&[
            ("source_labels", json!(["__tmp_hash", "__tmp_disable_sharding"])),
            ("regex", json!("$(SHARD);|.+;.+")),
            ("action", json!("keep")),
        ]),
    ]
}

fn limits(job: &mut Job, sample_limit: Option<u64>, target_limit: Option<u64>) {
    if let Some(limit) = sample_limit.filter(|l| *l > 0) {
        job.set("sample_limit", json!(limit));
    }
    if let Some(limit) = target_limit.filter(|l| *l > 0) {
        job.set("target_limit", json!(limit));
    }
}

fn finish(job: &mut Job, rules: Vec<Json>, settings: &ScrapeSettings) {
    job.set("relabel_configs", Json::Array(rules));
    let metric_rules = user_rules(&settings.metric_relabelings);
    if !metric_rules.is_empty() {
        job.set("metric_relabel_configs", Json::Array(metric_rules));
    }
}

fn service_monitor_job(monitor: &Monitor, spec: &ServiceMonitorSpec, index: usize, context: &Context<'_>) -> Json {
    let endpoint = &spec.endpoints[index];
    let settings = &endpoint.settings;
    let mut job = Job(Map::new());
    job.set(
        "job_name",
        json!(format!("serviceMonitor/{}/{}/{index}", monitor.namespace, monitor.name)),
    );
    job.set(
        "kubernetes_sd_configs",
        kubernetes_sd("endpointslice", monitor, &spec.namespace_selector, context),
    );
    common_settings(&mut job, monitor, settings, context);

    let mut rules = vec![label_copy("job", "__tmp_prometheus_job_name")];
    selector_rules(&spec.selector, "service", &mut rules);
    if !endpoint.port.is_empty() {
        rules.push(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!(["__meta_kubernetes_endpointslice_port_name"])),
            ("regex", json!(endpoint.port)),
        ]));
    } else if let Some(target_port) = &endpoint.target_port {
        rules.extend(target_port_rule(target_port));
    }
    let kind_and_name = json!([
        "__meta_kubernetes_endpointslice_address_target_kind",
        "__meta_kubernetes_endpointslice_address_target_name"
    ]);
    for (kind, label) in [("Node", "node"), ("Pod", "pod")] {
        rules.push(rule(&[
            ("source_labels", kind_and_name.clone()),
            ("separator", json!(";")),
            ("regex", json!(format!("{kind};(.*)"))),
            ("replacement", json!("${1}")),
            ("target_label", json!(label)),
        ]));
    }
    rules.push(label_copy("__meta_kubernetes_namespace", "namespace"));
    rules.push(label_copy("__meta_kubernetes_service_name", "service"));
    rules.push(label_copy("__meta_kubernetes_pod_name", "pod"));
    rules.push(label_copy("__meta_kubernetes_pod_container_name", "container"));
    if settings.filter_running.unwrap_or(true) {
        rules.push(running_filter());
    }
    for label in &spec.target_labels {
        rules.push(target_label_rule(
            format!("__meta_kubernetes_service_label_{}", sanitize_label_name(label)),
            label,
        ));
    }
    for label in &spec.pod_target_labels {
        rules.push(target_label_rule(
            format!("__meta_kubernetes_pod_label_{}", sanitize_label_name(label)),
            label,
        ));
    }
    rules.push(rule(&[
        ("source_labels", json!(["__meta_kubernetes_service_name"])),
        ("target_label", json!("job")),
        ("replacement", json!("${1}")),
    ]));
    if !spec.job_label.is_empty() {
        rules.push(target_label_rule(
            format!(
                "__meta_kubernetes_service_label_{}",
                sanitize_label_name(&spec.job_label)
            ),
            "job",
        ));
    }
    let endpoint_label = if !endpoint.port.is_empty() {
        Some(endpoint.port.clone())
    } else {
        endpoint
            .target_port
            .as_ref()
            .map(IntOrString::text)
            .filter(|t| !t.is_empty())
    };
    if let Some(value) = endpoint_label {
        rules.push(rule(&[
            ("target_label", json!("endpoint")),
            ("replacement", json!(value)),
        ]));
    }
    rules.extend(user_rules(&settings.relabelings));
    rules.extend(sharding_rules());
    finish(&mut job, rules, settings);
    limits(&mut job, spec.sample_limit, spec.target_limit);
    Json::Object(job.0)
}

/// A keep rule on the pod's container port, by name or number.
fn target_port_rule(port: &IntOrString) -> Option<Json> {
    match port {
        IntOrString::String(name) if !name.is_empty() => Some(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!(["__meta_kubernetes_pod_container_port_name"])),
            ("regex", json!(name)),
        ])),
        IntOrString::Int(number) if *number != 0 => Some(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!(["__meta_kubernetes_pod_container_port_number"])),
            ("regex", json!(number)),
        ])),
        _ => None,
    }
}

fn pod_monitor_job(monitor: &Monitor, spec: &PodMonitorSpec, index: usize, context: &Context<'_>) -> Json {
    let endpoint: &PodMetricsEndpoint = &spec.pod_metrics_endpoints[index];
    let settings = &endpoint.settings;
    let mut job = Job(Map::new());
    job.set(
        "job_name",
        json!(format!("podMonitor/{}/{}/{index}", monitor.namespace, monitor.name)),
    );
    job.set(
        "kubernetes_sd_configs",
        kubernetes_sd("pod", monitor, &spec.namespace_selector, context),
    );
    common_settings(&mut job, monitor, settings, context);

    let mut rules = vec![label_copy("job", "__tmp_prometheus_job_name")];
    if settings.filter_running.unwrap_or(true) {
        rules.push(running_filter());
    }
    selector_rules(&spec.selector, "pod", &mut rules);
    let port_name = endpoint.port.as_ref().filter(|p| !p.is_empty());
    if let Some(name) = port_name {
        rules.push(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!(["__meta_kubernetes_pod_container_port_name"])),
            ("regex", json!(name)),
        ]));
    } else if let Some(number) = endpoint.port_number.filter(|n| *n != 0) {
        rules.push(rule(&[
            ("action", json!("keep")),
            ("source_labels", json!(["__meta_kubernetes_pod_container_port_number"])),
            ("regex", json!(number)),
        ]));
    } else if let Some(target_port) = &endpoint.target_port {
        rules.extend(target_port_rule(target_port));
    }
    rules.push(label_copy("__meta_kubernetes_namespace", "namespace"));
    rules.push(label_copy("__meta_kubernetes_pod_container_name", "container"));
    rules.push(label_copy("__meta_kubernetes_pod_name", "pod"));
    for label in &spec.pod_target_labels {
        rules.push(target_label_rule(
            format!("__meta_kubernetes_pod_label_{}", sanitize_label_name(label)),
            label,
        ));
    }
    rules.push(rule(&[
        ("target_label", json!("job")),
        ("replacement", json!(format!("{}/{}", monitor.namespace, monitor.name))),
    ]));
    if !spec.job_label.is_empty() {
        rules.push(target_label_rule(
            format!("__meta_kubernetes_pod_label_{}", sanitize_label_name(&spec.job_label)),
            "job",
        ));
    }
    let endpoint_label = match port_name {
        Some(name) => Some(name.clone()),
        None => endpoint
            .target_port
            .as_ref()
            .map(IntOrString::text)
            .filter(|t| !t.is_empty()),
    };
    if let Some(value) = endpoint_label {
        rules.push(rule(&[
            ("target_label", json!("endpoint")),
            ("replacement", json!(value)),
        ]));
    }
    rules.extend(user_rules(&settings.relabelings));
    rules.extend(sharding_rules());
    finish(&mut job, rules, settings);
    limits(&mut job, spec.sample_limit, spec.target_limit);
    Json::Object(job.0)
}

#[cfg(test)]
#[path = "generate_tests.rs"]
mod tests;
