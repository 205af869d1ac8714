//! The configuration: upstream's `targetallocator.yaml` read exactly as upstream reads it
//! (docs/compatibility.md, "Loading the configuration"), plus our `cluster:`, `collectors:`, `balanced:` and
//! `consistent_hashing:` sections, the environment and upstream's command-line flags.
//!
//! Loading order, as upstream: defaults, then the file, then `OTELCOL_NAMESPACE` and
//! `ALLOW_INSECURE_AUTH_SECRETS=true`, then the flags that were given, then validation.
//! Every problem of the file is collected with its line and key path and returned at once
//! ([`LoadError::Invalid`]); unknown keys are ignored with a warning, as upstream ignores
//! them; a key whose value is `null` keeps its default.
//!
//! `collector_namespace` is required, as upstream, unless collectors come from
//! `collectors.static` or `collectors.register_on_poll` (Kubernetes collector discovery is
//! then not used).

pub mod check;
pub mod cluster;
pub mod decode;
pub mod flags;
pub mod kubernetes_sd;
pub mod problem;
pub mod prometheus;
pub mod scrape;
pub mod selector;
pub mod service_discovery;
pub mod telemetry;
pub mod yaml;

use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

pub use flags::UpstreamFlags;
pub use problem::Problem;
pub use prometheus::GlobalConfig;
pub use prometheus::PrometheusConfig;
pub use scrape::ScrapeConfig;
pub use selector::LabelSelector;
use ta_raft::ClusterConfig;
pub use telemetry::TelemetryConfig;

use crate::allocation::BalancedSettings;
use crate::allocation::StrategyName;
use crate::allocation::StrategySettings;
use crate::allocation::consistent_hashing::RingLayout;
use crate::discovery::Interner;
use crate::targets::FilterStrategy;
use decode::Fields;
use problem::KeyPath;
use problem::Report;
use yaml::Node;

/// Where environment variables come from: the process (`process_environment`) or, in
/// tests, a map.
pub type Environment<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The whole configuration of one replica.
#[derive(Debug, Clone)]
pub struct Config {
    /// Plain HTTP listener (`:8080`).
    pub listen_addr: String,
    /// Kubeconfig (`~/.kube/config`; in-cluster config when the file is missing).
    pub kube_config_file_path: String,
    /// Which pods are collectors; `None` means every pod in the namespace (upstream quirk).
    pub collector_selector: Option<LabelSelector>,
    pub collector_namespace: String,
    /// The Prometheus `config:` block; `None` when absent or null.
    pub prometheus: Option<PrometheusConfig>,
    /// `allocation_strategy`, `allocation_fallback_strategy`, `consistent_hashing:`, `balanced:`.
    pub strategy: StrategySettings,
    /// `filter_strategy` as written (`relabel-config` by default).
    pub filter_strategy_name: String,
    pub filter_strategy: FilterStrategy,
    pub prometheus_cr: PrometheusCrConfig,
    pub https: HttpsConfig,
    pub telemetry: TelemetryConfig,
    pub collector_not_ready_grace_period: Duration,
    /// Ours: discovery and collector changes arriving within this window become one batch.
    pub coalesce_window: Duration,
    pub allow_insecure_auth_secrets: bool,
    /// `cluster:`; `None` means a single replica (see [`Config::cluster_or_single`]).
    pub cluster: Option<ClusterConfig>,
    pub collectors: CollectorsConfig,
    /// Ours: `limits:`, ceilings on what discovery may deliver.
    pub limits: LimitsConfig,
    /// The host name, the default replica name.
    pub host_name: String,
}

/// `limits:` (ours, docs/compatibility.md): what discovery may deliver before it is refused.
/// The defaults fit a million targets with room to spare; they exist so that a source gone
/// wrong (ten times its targets, a 2 GB file, a 1 MB label value) is refused with a clear
/// reason while the last good assignment keeps being served, instead of exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Desired targets over all jobs; above it no target change is planned.
    pub max_targets: usize,
    /// One file_sd file or one http_sd response body; a larger one is not read, and its
    /// last good target groups are kept.
    pub max_source_bytes: u64,
    /// One label name or value of a target; a target with a longer one is refused.
    pub max_label_bytes: usize,
    /// Labels of one target, discovered ones included; a target with more is refused.
    pub max_labels_per_target: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_targets: 2_000_000,
            max_source_bytes: 1 << 30,
            max_label_bytes: 16 << 10,
            max_labels_per_target: 256,
        }
    }
}

/// `prometheus_cr:`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusCrConfig {
    pub enabled: bool,
    /// Empty means all namespaces.
    pub allow_namespaces: Vec<String>,
    pub deny_namespaces: Vec<String>,
    /// Empty means `collector_namespace`.
    pub secret_namespaces: Vec<String>,
    /// `None` selects no monitor (prometheus-operator semantics); `{}` selects all.
    pub service_monitor_selector: Option<LabelSelector>,
    pub pod_monitor_selector: Option<LabelSelector>,
    pub scrape_config_selector: Option<LabelSelector>,
    pub probe_selector: Option<LabelSelector>,
    /// Default `{}`: every namespace; `null` in the file keeps that default.
    pub service_monitor_namespace_selector: Option<LabelSelector>,
    pub pod_monitor_namespace_selector: Option<LabelSelector>,
    pub scrape_config_namespace_selector: Option<LabelSelector>,
    pub probe_namespace_selector: Option<LabelSelector>,
    /// Go duration syntax, as upstream decodes it (default 30s).
    pub scrape_interval: Duration,
    pub evaluation_interval: Duration,
    pub scrape_protocols: Vec<String>,
    /// prometheus-operator `ScrapeClass` objects, camelCase keys, kept as written.
    pub scrape_classes: Vec<serde_json::Value>,
    pub deny_fs_access_through_sms: bool,
}

impl Default for PrometheusCrConfig {
    fn default() -> Self {
        PrometheusCrConfig {
            enabled: false,
            allow_namespaces: Vec::new(),
            deny_namespaces: Vec::new(),
            secret_namespaces: Vec::new(),
            service_monitor_selector: None,
            pod_monitor_selector: None,
            scrape_config_selector: None,
            probe_selector: None,
            service_monitor_namespace_selector: Some(LabelSelector::default()),
            pod_monitor_namespace_selector: Some(LabelSelector::default()),
            scrape_config_namespace_selector: Some(LabelSelector::default()),
            probe_namespace_selector: Some(LabelSelector::default()),
            scrape_interval: Duration::from_secs(30),
            evaluation_interval: Duration::ZERO,
            scrape_protocols: scrape::DEFAULT_SCRAPE_PROTOCOLS.iter().map(|s| s.to_string()).collect(),
            scrape_classes: Vec::new(),
            deny_fs_access_through_sms: false,
        }
    }
}

/// `https:`, the mTLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsConfig {
    pub enabled: bool,
    pub listen_addr: String,
    pub ca_file_path: String,
    pub tls_cert_file_path: String,
    pub tls_key_file_path: String,
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig {
            enabled: false,
            listen_addr: ":8443".to_string(),
            ca_file_path: String::new(),
            tls_cert_file_path: String::new(),
            tls_key_file_path: String::new(),
        }
    }
}

/// Our `collectors:` section: collectors known without Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorsConfig {
    /// `collectors.static`: fixed collector ids.
    pub static_ids: Vec<String>,
    /// `collectors.register_on_poll`.
    pub register_on_poll: RegisterOnPoll,
}

/// A collector polling `/jobs/.../targets?collector_id=` registers itself and stays
/// registered for `ttl` after its last poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterOnPoll {
    pub enabled: bool,
    pub ttl: Duration,
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        CollectorsConfig {
            static_ids: Vec::new(),
            register_on_poll: RegisterOnPoll {
                enabled: false,
                ttl: Duration::from_secs(60),
            },
        }
    }
}

impl CollectorsConfig {
    /// Whether collectors are discovered from Kubernetes pods (upstream's only way).
    pub fn uses_kubernetes(&self) -> bool {
        self.static_ids.is_empty() && !self.register_on_poll.enabled
    }
}

impl Config {
    fn defaults(env: Environment) -> Self {
        let home = env("HOME").unwrap_or_default();
        Config {
            listen_addr: ":8080".to_string(),
            kube_config_file_path: Path::new(&home).join(".kube").join("config").display().to_string(),
            collector_selector: None,
            collector_namespace: String::new(),
            prometheus: None,
            strategy: StrategySettings::default(),
            filter_strategy_name: "relabel-config".to_string(),
            filter_strategy: FilterStrategy::RelabelConfig,
            prometheus_cr: PrometheusCrConfig::default(),
            https: HttpsConfig::default(),
            telemetry: TelemetryConfig::default(),
            collector_not_ready_grace_period: Duration::from_secs(30),
            coalesce_window: Duration::from_secs(1),
            allow_insecure_auth_secrets: false,
            cluster: None,
            collectors: CollectorsConfig::default(),
            limits: LimitsConfig::default(),
            host_name: host_name(env),
        }
    }

    /// The cluster to run: the `cluster:` section, or a cluster of this replica alone.
    pub fn cluster_or_single(&self) -> ClusterConfig {
        self.cluster
            .clone()
            .unwrap_or_else(|| cluster::single_replica(self.host_name.clone()))
    }

    /// The scrape configs of the `config:` block (none if it is absent).
    pub fn scrape_configs(&self) -> &[ScrapeConfig] {
        self.prometheus.as_ref().map_or(&[], |p| p.scrape_configs.as_slice())
    }
}

/// The host name: `HOSTNAME`, else the kernel's, else `localhost`.
fn host_name(env: Environment) -> String {
    env("HOSTNAME")
        .filter(|name| !name.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A loaded configuration, and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// Why no configuration could be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{} problem(s) in the configuration:\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        problems: Vec<Problem>,
        warnings: Vec<Problem>,
    },
}

/// Load `flags.config_file`.
pub fn load(flags: &UpstreamFlags, env: Environment) -> Result<Loaded, LoadError> {
    load_file(&flags.config_file, flags, env)
}

/// Load the file at `path` (instead of `flags.config_file`).
pub fn load_file(path: &Path, flags: &UpstreamFlags, env: Environment) -> Result<Loaded, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&path.display().to_string(), &text, flags, env)
}

/// Load a configuration from its text; `file_name` is used in problems.
pub fn parse(file_name: &str, text: &str, flags: &UpstreamFlags, env: Environment) -> Result<Loaded, LoadError> {
    let mut report = Report::new(file_name);
    let mut config = Config::defaults(env);
    match yaml::parse(text) {
        Ok(root) => {
            decode::report_duplicate_keys(&root, &KeyPath::root(), &mut report);
            decode_file(&root, &mut config, &mut report);
            apply_environment(&mut config, env);
            apply_flags(&mut config, flags);
            validate(&config, &root, &mut report);
        }
        Err(syntax) => report.error(
            &KeyPath::root(),
            Some(syntax.line),
            format!("invalid YAML: {}", syntax.message),
        ),
    }
    // In file order; problems not tied to a line (absent keys, environment) come last.
    let by_line = |p: &Problem| p.line.unwrap_or(usize::MAX);
    report.errors.sort_by_key(by_line);
    report.warnings.sort_by_key(by_line);
    if report.has_errors() {
        return Err(LoadError::Invalid {
            problems: report.errors,
            warnings: report.warnings,
        });
    }
    Ok(Loaded {
        config,
        warnings: report.warnings,
    })
}

fn apply_environment(config: &mut Config, env: Environment) {
    if let Some(namespace) = env("OTELCOL_NAMESPACE") {
        config.collector_namespace = namespace;
    }
    // Upstream sets it only on exactly "true"; any other value leaves the file's setting.
    if env("ALLOW_INSECURE_AUTH_SECRETS").as_deref() == Some("true") {
        config.allow_insecure_auth_secrets = true;
    }
}

fn apply_flags(config: &mut Config, flags: &UpstreamFlags) {
    if let Some(path) = &flags.kubeconfig_path {
        config.kube_config_file_path = path.clone();
    }
    if let Some(address) = &flags.listen_addr {
        config.listen_addr = address.clone();
    }
    if let Some(enabled) = flags.enable_prometheus_cr_watcher {
        config.prometheus_cr.enabled = enabled;
    }
    if let Some(enabled) = flags.enable_https_server {
        config.https.enabled = enabled;
    }
    if let Some(address) = &flags.listen_addr_https {
        config.https.listen_addr = address.clone();
    }
    if let Some(path) = &flags.https_ca_file {
        config.https.ca_file_path = path.clone();
    }
    if let Some(path) = &flags.https_tls_cert_file {
        config.https.tls_cert_file_path = path.clone();
    }
    if let Some(path) = &flags.https_tls_key_file {
        config.https.tls_key_file_path = path.clone();
    }
    if let Some(allow) = flags.allow_insecure_auth_secrets {
        config.allow_insecure_auth_secrets = allow;
    }
}

/// Upstream's `ValidateConfig` (all problems, not the first), adapted to our collector
/// sources.
fn validate(config: &Config, root: &Node, report: &mut Report) {
    // Counted on the file, not on the valid jobs, so an invalid job does not also claim that
    // there are none.
    let config_node = root.get("config");
    let written_jobs = config_node
        .and_then(|c| c.get("scrape_configs"))
        .map_or(0, |list| match &list.value {
            yaml::Value::Sequence(items) => items.len(),
            _ => 0,
        });
    if written_jobs == 0 && !config.prometheus_cr.enabled {
        report.error(
            &KeyPath::root().key("config").key("scrape_configs"),
            config_node.map(|c| c.line),
            "at least one scrape config must be defined, or Prometheus CR watching must be enabled",
        );
    }
    if config.collector_namespace.is_empty() && config.collectors.uses_kubernetes() {
        report.error(
            &KeyPath::root().key("collector_namespace"),
            root.get("collector_namespace").map(|n| n.line),
            "collector namespace must be set (or OTELCOL_NAMESPACE), unless collectors.static or collectors.register_on_poll is used",
        );
    }
    if !config.prometheus_cr.allow_namespaces.is_empty() && !config.prometheus_cr.deny_namespaces.is_empty() {
        report.error(
            &KeyPath::root().key("prometheus_cr"),
            root.get("prometheus_cr").map(|n| n.line),
            "only one of allow_namespaces or deny_namespaces can be set",
        );
    }
}

/// Every key the top level of the file may hold (others are ignored with a warning).
pub const TOP_LEVEL_KEYS: [&str; 19] = [
    "listen_addr",
    "kube_config_file_path",
    "collector_selector",
    "collector_namespace",
    "config",
    "allocation_strategy",
    "allocation_fallback_strategy",
    "filter_strategy",
    "prometheus_cr",
    "https",
    "telemetry",
    "collector_not_ready_grace_period",
    "allow_insecure_auth_secrets",
    "cluster",
    "collectors",
    "balanced",
    "consistent_hashing",
    "coalesce_window",
    "limits",
];

fn decode_file(root: &Node, config: &mut Config, report: &mut Report) {
    let root_path = KeyPath::root();
    let Some(mut fields) = Fields::of(root, &root_path, report) else {
        return;
    };
    if let Some(address) = fields.string("listen_addr", report) {
        config.listen_addr = address;
    }
    if let Some(path) = fields.string("kube_config_file_path", report) {
        config.kube_config_file_path = path;
    }
    if let Some(node) = fields.take("collector_selector") {
        config.collector_selector = selector::decode(node, &root_path.key("collector_selector"), report);
    }
    if let Some(namespace) = fields.string("collector_namespace", report) {
        config.collector_namespace = namespace;
    }
    if let Some(node) = fields.take("config") {
        let mut interner = Interner::default();
        config.prometheus = Some(prometheus::decode(
            node,
            &root_path.key("config"),
            report,
            &mut interner,
        ));
    }
    decode_strategy(&mut fields, config, report);
    if let Some(name) = fields.string("filter_strategy", report) {
        config.filter_strategy = FilterStrategy::from_config(&name);
        if config.filter_strategy == FilterStrategy::Disabled {
            report.warn(
                &root_path.key("filter_strategy"),
                Some(fields.line_of("filter_strategy")),
                format!("{name:?} is not relabel-config: relabel filtering is off and every discovered target is allocated (as upstream)"),
            );
        }
        config.filter_strategy_name = name;
    }
    if let Some(node) = fields.take("prometheus_cr") {
        decode_prometheus_cr(node, &root_path.key("prometheus_cr"), &mut config.prometheus_cr, report);
    }
    if let Some(node) = fields.take("https") {
        decode_https(node, &root_path.key("https"), &mut config.https, report);
    }
    if let Some(node) = fields.take("telemetry") {
        config.telemetry = telemetry::decode(node, &root_path.key("telemetry"), report);
    }
    if let Some(grace) = fields.go_duration("collector_not_ready_grace_period", report) {
        config.collector_not_ready_grace_period = grace;
    }
    if let Some(allow) = fields.bool("allow_insecure_auth_secrets", report) {
        config.allow_insecure_auth_secrets = allow;
    }
    if let Some(node) = fields.take("cluster") {
        config.cluster = cluster::decode(node, &root_path.key("cluster"), &config.host_name, report);
    }
    if let Some(window) = fields.go_duration("coalesce_window", report) {
        if window.is_zero() || window > Duration::from_secs(60) {
            report.error(
                &root_path.key("coalesce_window"),
                Some(fields.line_of("coalesce_window")),
                format!("must be more than 0s and at most 1m, not {window:?}"),
            );
        } else {
            config.coalesce_window = window;
        }
    }
    if let Some(node) = fields.take("collectors") {
        decode_collectors(node, &root_path.key("collectors"), &mut config.collectors, report);
    }
    if let Some(node) = fields.take("limits") {
        decode_limits(node, &root_path.key("limits"), &mut config.limits, report);
    }
    fields.accept(&TOP_LEVEL_KEYS);
    fields.finish(report);
}

fn decode_strategy(fields: &mut Fields, config: &mut Config, report: &mut Report) {
    let path = fields.path.clone();
    if let Some(name) = fields.string("allocation_strategy", report) {
        match StrategyName::parse(&name) {
            Some(strategy) => config.strategy.strategy = strategy,
            None => report.error(
                &path.key("allocation_strategy"),
                Some(fields.line_of("allocation_strategy")),
                format!(
                    "unregistered strategy {name:?} (one of {})",
                    StrategyName::ALL.join(", ")
                ),
            ),
        }
    }
    if let Some(name) = fields
        .string("allocation_fallback_strategy", report)
        .filter(|name| !name.is_empty())
    {
        match StrategyName::parse(&name) {
            Some(strategy) => config.strategy.fallback = Some(strategy),
            None => report.error(
                &path.key("allocation_fallback_strategy"),
                Some(fields.line_of("allocation_fallback_strategy")),
                format!(
                    "unregistered fallback strategy {name:?} (one of {})",
                    StrategyName::ALL.join(", ")
                ),
            ),
        }
    }
    if let Some(node) = fields.take("consistent_hashing") {
        let section = path.key("consistent_hashing");
        if let Some(mut hashing) = Fields::of(node, &section, report) {
            if let Some(layout) = hashing.string("ring_layout", report) {
                match layout.as_str() {
                    "v1.0.0" => config.strategy.ring_layout = RingLayout::V1,
                    "v0.10.0" => config.strategy.ring_layout = RingLayout::V0_10,
                    other => report.error(
                        &section.key("ring_layout"),
                        Some(hashing.line_of("ring_layout")),
                        format!("unknown ring layout {other:?} (v1.0.0, or v0.10.0 for operator v0.158.0 and older)"),
                    ),
                }
            }
            hashing.finish(report);
        }
    }
    if let Some(node) = fields.take("balanced") {
        let section = path.key("balanced");
        if let Some(mut balanced) = Fields::of(node, &section, report) {
            let positive = |key: &str, balanced: &mut Fields, report: &mut Report| {
                let value = balanced.unsigned(key, report)?;
                match u32::try_from(value) {
                    Ok(v) if v > 0 => Some(v),
                    _ => {
                        report.error(
                            &section.key(key),
                            Some(balanced.line_of(key)),
                            format!("must be a positive integer below 2^32, not {value}"),
                        );
                        None
                    }
                }
            };
            config.strategy.balanced = BalancedSettings {
                max_moves_per_minute: positive("max_moves_per_minute", &mut balanced, report),
                max_targets_per_collector: positive("max_targets_per_collector", &mut balanced, report),
            };
            balanced.finish(report);
        }
    }
}

fn decode_prometheus_cr(node: &Node, path: &KeyPath, cr: &mut PrometheusCrConfig, report: &mut Report) {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return;
    };
    if let Some(enabled) = fields.bool("enabled", report) {
        cr.enabled = enabled;
    }
    for (key, slot) in [
        ("allow_namespaces", &mut cr.allow_namespaces),
        ("deny_namespaces", &mut cr.deny_namespaces),
        ("secret_namespaces", &mut cr.secret_namespaces),
    ] {
        if let Some(list) = fields.string_list(key, report) {
            *slot = list;
        }
    }
    for (key, slot) in [
        ("service_monitor_selector", &mut cr.service_monitor_selector),
        ("pod_monitor_selector", &mut cr.pod_monitor_selector),
        ("scrape_config_selector", &mut cr.scrape_config_selector),
        ("probe_selector", &mut cr.probe_selector),
        (
            "service_monitor_namespace_selector",
            &mut cr.service_monitor_namespace_selector,
        ),
        ("pod_monitor_namespace_selector", &mut cr.pod_monitor_namespace_selector),
        (
            "scrape_config_namespace_selector",
            &mut cr.scrape_config_namespace_selector,
        ),
        ("probe_namespace_selector", &mut cr.probe_namespace_selector),
    ] {
        // `null` (what the operator writes for unset selectors) keeps the default.
        if let Some(node) = fields.take(key)
            && let Some(selector) = selector::decode(node, &path.key(key), report)
        {
            *slot = Some(selector);
        }
    }
    if let Some(interval) = fields.go_duration("scrape_interval", report) {
        cr.scrape_interval = interval;
    }
    if let Some(interval) = fields.go_duration("evaluation_interval", report) {
        cr.evaluation_interval = interval;
    }
    if let Some(protocols) = fields.string_list("scrape_protocols", report) {
        for (index, protocol) in protocols.iter().enumerate() {
            if !scrape::SCRAPE_PROTOCOLS.contains(&protocol.as_str()) {
                report.warn(
                    &path.key("scrape_protocols").index(index),
                    Some(fields.line_of("scrape_protocols")),
                    format!(
                        "unknown scrape protocol {protocol:?} (one of {})",
                        scrape::SCRAPE_PROTOCOLS.join(", ")
                    ),
                );
            }
        }
        cr.scrape_protocols = protocols;
    }
    if let Some(classes) = fields.take("scrape_classes") {
        let classes_path = path.key("scrape_classes");
        if let Some(items) = decode::items(classes, &classes_path, report) {
            for (index, class) in items.iter().enumerate() {
                if !matches!(class.value, yaml::Value::Mapping(_)) {
                    report.error(
                        &classes_path.index(index),
                        Some(class.line),
                        format!("a scrape class is a mapping, found {}", class.kind()),
                    );
                } else if class.get("name").and_then(Node::scalar_text).is_none_or(str::is_empty) {
                    report.error(
                        &classes_path.index(index).key("name"),
                        Some(class.line),
                        "a scrape class needs a name",
                    );
                }
                cr.scrape_classes.push(class.to_json());
            }
        }
    }
    if let Some(deny) = fields.bool("deny_fs_access_through_sms", report) {
        cr.deny_fs_access_through_sms = deny;
    }
    fields.finish(report);
}

fn decode_https(node: &Node, path: &KeyPath, https: &mut HttpsConfig, report: &mut Report) {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return;
    };
    if let Some(enabled) = fields.bool("enabled", report) {
        https.enabled = enabled;
    }
    for (key, slot) in [
        ("listen_addr", &mut https.listen_addr),
        ("ca_file_path", &mut https.ca_file_path),
        ("tls_cert_file_path", &mut https.tls_cert_file_path),
        ("tls_key_file_path", &mut https.tls_key_file_path),
    ] {
        if let Some(value) = fields.string(key, report) {
            *slot = value;
        }
    }
    fields.finish(report);
}

fn decode_limits(node: &Node, path: &KeyPath, limits: &mut LimitsConfig, report: &mut Report) {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return;
    };
    let positive = |key: &str, fields: &mut Fields, report: &mut Report| -> Option<u64> {
        let value = fields.unsigned(key, report)?;
        if value == 0 {
            report.error(
                &path.key(key),
                Some(fields.line_of(key)),
                format!("{key} must be positive"),
            );
            return None;
        }
        Some(value)
    };
    if let Some(value) = positive("max_targets", &mut fields, report) {
        limits.max_targets = usize::try_from(value).unwrap_or(usize::MAX);
    }
    if let Some(value) = positive("max_source_bytes", &mut fields, report) {
        limits.max_source_bytes = value;
    }
    if let Some(value) = positive("max_label_bytes", &mut fields, report) {
        limits.max_label_bytes = usize::try_from(value).unwrap_or(usize::MAX);
    }
    if let Some(value) = positive("max_labels_per_target", &mut fields, report) {
        limits.max_labels_per_target = usize::try_from(value).unwrap_or(usize::MAX);
    }
    fields.finish(report);
}

fn decode_collectors(node: &Node, path: &KeyPath, collectors: &mut CollectorsConfig, report: &mut Report) {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return;
    };
    if let Some(ids) = fields.string_list("static", report) {
        for (index, id) in ids.iter().enumerate() {
            let id_path = path.key("static").index(index);
            if id.trim().is_empty() {
                report.error(&id_path, Some(fields.line_of("static")), "a collector id is empty");
            } else if ids[..index].contains(id) {
                report.error(
                    &id_path,
                    Some(fields.line_of("static")),
                    format!("collector {id:?} is listed twice"),
                );
            }
        }
        collectors.static_ids = ids;
    }
    if let Some(node) = fields.take("register_on_poll") {
        let section = path.key("register_on_poll");
        if let Some(mut register) = Fields::of(node, &section, report) {
            if let Some(enabled) = register.bool("enabled", report) {
                collectors.register_on_poll.enabled = enabled;
            }
            if let Some(ttl) = register.go_duration("ttl", report) {
                if ttl.is_zero() {
                    report.error(
                        &section.key("ttl"),
                        Some(register.line_of("ttl")),
                        "ttl must be positive",
                    );
                } else {
                    collectors.register_on_poll.ttl = ttl;
                }
            }
            register.finish(report);
        }
    }
    fields.finish(report);
}
