//! One entry of `config.scrape_configs`, with Prometheus's own rules: global defaults filled
//! in, the scrape timeout capped by the interval, relabel rules compiled, discovery sources
//! decoded, and the entry rendered as Prometheus would marshal it for `/scrape_configs`
//! (docs/compatibility.md, "/scrape_configs"). Keys this allocator does not interpret are served as written.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use serde_json::json;

use super::decode;
use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::service_discovery;
use super::yaml::Node;
use super::yaml::Value;
use crate::discovery::Interner;
use crate::discovery::ServiceDiscoveryConfig;
use crate::prometheus_duration;
use crate::relabel::Action;
use crate::relabel::Rule;
use crate::relabel::RuleSpec;
use crate::targets::JobSettings;

/// Scrape protocols Prometheus knows.
pub const SCRAPE_PROTOCOLS: [&str; 5] = [
    "PrometheusProto",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
];

/// Prometheus's default `scrape_protocols`.
pub const DEFAULT_SCRAPE_PROTOCOLS: [&str; 4] = [
    "OpenMetricsText1.0.0",
    "OpenMetricsText0.0.1",
    "PrometheusText1.0.0",
    "PrometheusText0.0.4",
];

/// Scrape-config keys that are valid in Prometheus and served as written.
const PASS_THROUGH_KEYS: [&str; 21] = [
    "sample_limit",
    "target_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
    "body_size_limit",
    "keep_dropped_targets",
    "native_histogram_bucket_limit",
    "native_histogram_min_bucket_factor",
    "scrape_classic_histograms",
    "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
    "scrape_native_histograms",
    "scrape_fallback_protocol",
    "track_timestamps_staleness",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "extra_scrape_metrics",
    "scrape_failure_log_file",
    "fallback_scrape_protocol",
    "enable_compression",
];

/// What the `global:` block gives every scrape config.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeDefaults {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub scrape_protocols: Vec<String>,
}

/// One scrape config, decoded.
#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    /// What target building needs (name, interval, timeout, path, scheme, params, rules).
    pub job: JobSettings,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    /// `metric_relabel_configs`, compiled (never used to filter targets, as upstream).
    pub metric_relabel_rules: Vec<Rule>,
    /// Each discovery source of the job.
    pub discovery: Vec<ServiceDiscoveryConfig>,
    /// The scrape config as Prometheus marshals it, defaults filled, for `/scrape_configs`.
    pub rendered: Json,
    /// Where the entry starts in the file.
    pub line: usize,
}

/// Decode one scrape config; `None` if it has problems (all of them reported).
pub fn decode(
    node: &Node,
    path: &KeyPath,
    defaults: &ScrapeDefaults,
    report: &mut Report,
    interner: &mut Interner,
) -> Option<ScrapeConfig> {
    let errors_before = report.errors.len();
    let mut fields = Fields::of(node, path, report)?;
    if !matches!(node.value, Value::Mapping(_)) {
        report.error(path, Some(node.line), "a scrape config cannot be empty");
        return None;
    }
    let name = fields.string("job_name", report).unwrap_or_default();
    if name.is_empty() {
        report.error(&path.key("job_name"), Some(node.line), "job_name is empty");
    }
    let honor_labels = fields.bool("honor_labels", report).unwrap_or(false);
    let honor_timestamps = fields.bool("honor_timestamps", report).unwrap_or(true);
    let enable_compression = fields.bool("enable_compression", report).unwrap_or(true);
    let follow_redirects = fields.bool("follow_redirects", report).unwrap_or(true);
    let enable_http2 = fields.bool("enable_http2", report).unwrap_or(true);

    let explicit_interval = fields
        .prometheus_duration("scrape_interval", report)
        .filter(|d| !d.is_zero());
    let scrape_interval = explicit_interval.unwrap_or(defaults.scrape_interval);
    let explicit_timeout = fields
        .prometheus_duration("scrape_timeout", report)
        .filter(|d| !d.is_zero());
    let scrape_timeout = match explicit_timeout {
        Some(timeout) => {
            if timeout > scrape_interval {
                report.error(
                    &path.key("scrape_timeout"),
                    Some(fields.line_of("scrape_timeout")),
                    format!(
                        "scrape timeout {} is greater than the scrape interval {} of job {name:?}",
                        prometheus_duration::format(timeout),
                        prometheus_duration::format(scrape_interval)
                    ),
                );
            }
            timeout
        }
        // Prometheus: the global timeout, but never more than this job's interval.
        None => defaults.scrape_timeout.min(scrape_interval),
    };

    let scrape_protocols = match fields.take("scrape_protocols") {
        Some(node) => scrape_protocols(node, &path.key("scrape_protocols"), report).unwrap_or_default(),
        None => defaults.scrape_protocols.clone(),
    };
    let metrics_path = fields
        .string("metrics_path", report)
        .unwrap_or_else(|| "/metrics".to_string());
    let scheme = fields.string("scheme", report).unwrap_or_else(|| "http".to_string());
    if scheme != "http" && scheme != "https" {
        report.error(
            &path.key("scheme"),
            Some(fields.line_of("scheme")),
            format!("scheme must be http or https, not {scheme:?}"),
        );
    }
    let params = match fields.take("params") {
        Some(node) => params(node, &path.key("params"), report),
        None => BTreeMap::new(),
    };
    let (rules, rendered_rules) = match fields.take("relabel_configs") {
        Some(node) => relabel_rules(node, &path.key("relabel_configs"), report),
        None => (Vec::new(), Vec::new()),
    };
    let (metric_rules, rendered_metric_rules) = match fields.take("metric_relabel_configs") {
        Some(node) => relabel_rules(node, &path.key("metric_relabel_configs"), report),
        None => (Vec::new(), Vec::new()),
    };

    let mut discovery = Vec::new();
    let mut rendered_discovery = Vec::new();
    let discovery_keys: Vec<String> = match &node.value {
        Value::Mapping(entries) => entries
            .iter()
            .map(|(k, _)| k.text.clone())
            .filter(|k| service_discovery::is_discovery_key(k))
            .collect(),
        _ => Vec::new(),
    };
    for key in discovery_keys {
        let Some(list) = fields.take(&key) else { continue };
        let (sources, json) = service_discovery::decode(&key, list, &path.key(&key), report, interner);
        discovery.extend(sources);
        rendered_discovery.push((key, json));
    }

    fields.accept(&PASS_THROUGH_KEYS);
    fields.accept(&service_discovery::HTTP_CLIENT_KEYS);
    for key in fields.unknown() {
        report.warn(
            &path.key(&key.text),
            Some(key.line),
            "unknown scrape config key, ignored by the allocator but served in /scrape_configs",
        );
    }

    let mut rendered = node.to_json();
    if let Some(object) = rendered.as_object_mut() {
        let mut set = |key: &str, value: Json| {
            object.insert(key.to_string(), value);
        };
        set("job_name", json!(name));
        set("honor_timestamps", json!(honor_timestamps));
        set("enable_compression", json!(enable_compression));
        set("follow_redirects", json!(follow_redirects));
        set("enable_http2", json!(enable_http2));
        set("metrics_path", json!(metrics_path));
        set("scheme", json!(scheme));
        set("scrape_interval", json!(prometheus_duration::format(scrape_interval)));
        set("scrape_timeout", json!(prometheus_duration::format(scrape_timeout)));
        set("scrape_protocols", json!(scrape_protocols));
        if honor_labels {
            set("honor_labels", json!(true));
        }
        for (key, rules) in [
            ("relabel_configs", rendered_rules),
            ("metric_relabel_configs", rendered_metric_rules),
        ] {
            if rules.is_empty() {
                object.remove(key);
            } else {
                object.insert(key.to_string(), Json::Array(rules));
            }
        }
        if params.is_empty() {
            object.remove("params");
        }
        for (key, json) in rendered_discovery {
            object.insert(key, json);
        }
        // Null values are "unset" for Prometheus and are not marshalled.
        object.retain(|_, value| !value.is_null());
    }

    if report.errors.len() > errors_before {
        return None;
    }
    Some(ScrapeConfig {
        job: JobSettings {
            name,
            scrape_interval,
            scrape_timeout,
            metrics_path,
            scheme,
            params,
            rules,
        },
        honor_labels,
        honor_timestamps,
        metric_relabel_rules: metric_rules,
        discovery,
        rendered,
        line: node.line,
    })
}

/// A `scrape_protocols` list: known names, each once.
pub fn scrape_protocols(node: &Node, path: &KeyPath, report: &mut Report) -> Option<Vec<String>> {
    let protocols = decode::string_list(node, path, report)?;
    let mut ok = true;
    for (index, protocol) in protocols.iter().enumerate() {
        if !SCRAPE_PROTOCOLS.contains(&protocol.as_str()) {
            report.error(
                &path.index(index),
                Some(node.line),
                format!(
                    "unknown scrape protocol {protocol:?} (one of {})",
                    SCRAPE_PROTOCOLS.join(", ")
                ),
            );
            ok = false;
        } else if protocols[..index].contains(protocol) {
            report.error(
                &path.index(index),
                Some(node.line),
                format!("duplicated protocol {protocol:?}"),
            );
            ok = false;
        }
    }
    if protocols.is_empty() {
        report.error(path, Some(node.line), "scrape_protocols cannot be empty");
        ok = false;
    }
    ok.then_some(protocols)
}

/// `params: {name: [values]}`.
fn params(node: &Node, path: &KeyPath, report: &mut Report) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let Some(fields) = Fields::of(node, path, report) else {
        return out;
    };
    if let Value::Mapping(entries) = &fields.node.value {
        for (key, value) in entries {
            if let Some(values) = decode::string_list(value, &path.key(&key.text), report) {
                out.insert(key.text.clone(), values);
            }
        }
    }
    out
}

/// A relabel rule list: compiled rules and their renderings. Every problem of every rule is
/// reported; a problem about one field is filed under that field's key path.
pub fn relabel_rules(node: &Node, path: &KeyPath, report: &mut Report) -> (Vec<Rule>, Vec<Json>) {
    let mut rules = Vec::new();
    let mut rendered = Vec::new();
    let Some(items) = decode::items(node, path, report) else {
        return (rules, rendered);
    };
    for (index, item) in items.iter().enumerate() {
        let rule_path = path.index(index);
        if let Some(rule) = relabel_rule(item, &rule_path, report) {
            rendered.push(render_rule(&rule));
            rules.push(rule);
        }
    }
    (rules, rendered)
}

fn relabel_rule(node: &Node, path: &KeyPath, report: &mut Report) -> Option<Rule> {
    let mut fields = Fields::of(node, path, report)?;
    let errors_before = report.errors.len();
    let spec = RuleSpec {
        source_labels: fields.string_list("source_labels", report),
        separator: fields.string("separator", report),
        regex: fields.string("regex", report),
        modulus: fields.unsigned("modulus", report),
        target_label: fields.string("target_label", report),
        replacement: fields.string("replacement", report),
        action: fields.string("action", report),
    };
    fields.finish(report);
    if report.errors.len() > errors_before {
        return None;
    }
    match Rule::new(&spec) {
        Ok(rule) => Some(rule),
        Err(problems) => {
            for problem in problems {
                let key = field_of_problem(&problem);
                let (problem_path, line) = match key.filter(|k| node.get(k).is_some()) {
                    Some(key) => (path.key(key), node.get(key).map_or(node.line, |n| n.line)),
                    None => (path.clone(), node.line),
                };
                report.error(&problem_path, Some(line), one_line(&problem));
            }
            None
        }
    }
}

/// A problem on one line: the `regex` crate's errors draw the pattern with a caret over
/// several lines; keep their first line and the closing `error: ...` line.
fn one_line(problem: &str) -> String {
    let mut lines = problem.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().trim_end_matches(':');
    match lines.next_back() {
        Some(last) => format!("{first}: {}", last.trim_start_matches("error: ")),
        None => first.to_string(),
    }
}

/// Which rule field a problem from `Rule::new` is about, to point at it.
fn field_of_problem(problem: &str) -> Option<&'static str> {
    if problem.starts_with("invalid regex") {
        Some("regex")
    } else if problem.starts_with("unknown relabel action") {
        Some("action")
    } else if problem.contains("'modulus'") {
        Some("modulus")
    } else if problem.contains("valid 'target_label'") {
        Some("target_label")
    } else if problem.contains("valid 'replacement'") {
        Some("replacement")
    } else {
        None
    }
}

/// A rule as Prometheus marshals it after applying defaults; upstream deletes `regex` from
/// keepequal/dropequal rules (prometheus#12534).
pub fn render_rule(rule: &Rule) -> Json {
    let mut object = serde_json::Map::new();
    if !rule.source_labels.is_empty() {
        object.insert("source_labels".into(), json!(rule.source_labels));
    }
    object.insert("separator".into(), json!(rule.separator));
    if !matches!(rule.action, Action::KeepEqual | Action::DropEqual) {
        object.insert("regex".into(), json!(rule.regex_source));
    }
    if rule.modulus != 0 {
        object.insert("modulus".into(), json!(rule.modulus));
    }
    if !rule.target_label.is_empty() {
        object.insert("target_label".into(), json!(rule.target_label));
    }
    object.insert("replacement".into(), json!(rule.replacement));
    object.insert("action".into(), json!(rule.action.name()));
    Json::Object(object)
}
