//! The Prometheus `config:` block, read with Prometheus's own rules rather than the
//! allocator's (upstream hands it to Prometheus's unmarshaller, docs/compatibility.md, "Loading the configuration"):
//! Prometheus durations (`1d` is valid), `global` defaults filled into every scrape config,
//! `job_name` required and unique. Only `global` and `scrape_configs` matter to the
//! allocator; the other Prometheus sections are accepted and ignored.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::scrape;
use super::scrape::ScrapeConfig;
use super::scrape::ScrapeDefaults;
use super::yaml::Node;
use crate::discovery::Interner;
use crate::prometheus_duration;

const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// Prometheus top-level sections the allocator has no use for.
const IGNORED_SECTIONS: [&str; 8] = [
    "rule_files",
    "alerting",
    "remote_write",
    "remote_read",
    "storage",
    "tracing",
    "runtime",
    "otlp",
];

/// `global:` keys that are valid but do not concern the allocator.
const IGNORED_GLOBAL_KEYS: [&str; 17] = [
    "rule_query_offset",
    "query_log_file",
    "scrape_failure_log_file",
    "body_size_limit",
    "sample_limit",
    "target_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
    "keep_dropped_targets",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_native_histograms",
    "convert_classic_histograms_to_nhcb",
    "always_scrape_classic_histograms",
    "extra_scrape_metrics",
    "native_histogram_bucket_limit",
];

/// `global:`.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
    pub scrape_protocols: Vec<String>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: BTreeMap::new(),
            scrape_protocols: scrape::DEFAULT_SCRAPE_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The `config:` block.
#[derive(Debug, Clone, Default)]
pub struct PrometheusConfig {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// Decode the block (not null). Scrape configs with problems are left out of the result;
/// their problems are in the report.
pub fn decode(node: &Node, path: &KeyPath, report: &mut Report, interner: &mut Interner) -> PrometheusConfig {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return PrometheusConfig::default();
    };
    let global = match fields.take("global") {
        Some(global) => decode_global(global, &path.key("global"), report),
        None => GlobalConfig::default(),
    };
    let defaults = ScrapeDefaults {
        scrape_interval: global.scrape_interval,
        scrape_timeout: global.scrape_timeout,
        scrape_protocols: global.scrape_protocols.clone(),
    };
    let mut scrape_configs = Vec::new();
    if let Some(list) = fields.take("scrape_configs") {
        let list_path = path.key("scrape_configs");
        let items = super::decode::items(list, &list_path, report).unwrap_or_default();
        let mut first_line_of_job: HashMap<String, usize> = HashMap::new();
        for (index, item) in items.iter().enumerate() {
            let item_path = list_path.index(index);
            // Uniqueness is checked on the raw name, so that a job with other problems still
            // counts as a duplicate.
            if let Some(name) = item.get("job_name").and_then(Node::scalar_text) {
                let line = item.get("job_name").map_or(item.line, |n| n.line);
                match first_line_of_job.get(name) {
                    Some(first) => report.error(
                        &item_path.key("job_name"),
                        Some(line),
                        format!("found multiple scrape configs with job name {name:?} (first at line {first})"),
                    ),
                    None => {
                        first_line_of_job.insert(name.to_string(), line);
                    }
                }
            }
            if let Some(config) = scrape::decode(item, &item_path, &defaults, report, interner) {
                scrape_configs.push(config);
            }
        }
    }
    if let Some(files) = fields.take("scrape_config_files") {
        report.warn(
            &path.key("scrape_config_files"),
            Some(files.line),
            "scrape_config_files is not read by the target allocator; put the scrape configs in scrape_configs",
        );
    }
    fields.accept(&IGNORED_SECTIONS);
    fields.finish(report);
    PrometheusConfig { global, scrape_configs }
}

fn decode_global(node: &Node, path: &KeyPath, report: &mut Report) -> GlobalConfig {
    let mut global = GlobalConfig::default();
    let Some(mut fields) = Fields::of(node, path, report) else {
        return global;
    };
    if let Some(interval) = fields
        .prometheus_duration("scrape_interval", report)
        .filter(|d| !d.is_zero())
    {
        global.scrape_interval = interval;
    }
    match fields
        .prometheus_duration("scrape_timeout", report)
        .filter(|d| !d.is_zero())
    {
        Some(timeout) if timeout > global.scrape_interval => {
            report.error(
                &path.key("scrape_timeout"),
                Some(fields.line_of("scrape_timeout")),
                format!(
                    "global scrape timeout {} is greater than the scrape interval {}",
                    prometheus_duration::format(timeout),
                    prometheus_duration::format(global.scrape_interval)
                ),
            );
        }
        Some(timeout) => global.scrape_timeout = timeout,
        None => global.scrape_timeout = DEFAULT_SCRAPE_TIMEOUT.min(global.scrape_interval),
    }
    if let Some(interval) = fields
        .prometheus_duration("evaluation_interval", report)
        .filter(|d| !d.is_zero())
    {
        global.evaluation_interval = interval;
    }
    if let Some(labels) = fields.string_map("external_labels", report) {
        for name in labels.keys().filter(|name| name.is_empty()) {
            report.error(
                &path.key("external_labels"),
                Some(node.line),
                format!("{name:?} is not a valid label name"),
            );
        }
        global.external_labels = labels;
    }
    if let Some(protocols) = fields.take("scrape_protocols")
        && let Some(protocols) = scrape::scrape_protocols(protocols, &path.key("scrape_protocols"), report)
    {
        global.scrape_protocols = protocols;
    }
    fields.accept(&IGNORED_GLOBAL_KEYS);
    fields.finish(report);
    global
}
