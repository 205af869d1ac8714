//! The parts of prometheus-operator's `monitoring.coreos.com/v1` ServiceMonitor and PodMonitor
//! that the generator reads, as the CRDs spell them (camelCase). Every field has a default
//! and unknown fields are ignored, so a monitor written for a newer CRD version still
//! decodes; what it uses beyond these fields is simply not generated (docs/architecture.md).

use std::collections::BTreeMap;

use serde::Deserialize;

/// `ServiceMonitor.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub job_label: String,
    pub target_labels: Vec<String>,
    pub pod_target_labels: Vec<String>,
    pub endpoints: Vec<Endpoint>,
    pub selector: LabelSelector,
    pub namespace_selector: NamespaceSelector,
    pub sample_limit: Option<u64>,
    pub target_limit: Option<u64>,
}

/// `PodMonitor.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMonitorSpec {
    pub job_label: String,
    pub pod_target_labels: Vec<String>,
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
    pub selector: LabelSelector,
    pub namespace_selector: NamespaceSelector,
    pub sample_limit: Option<u64>,
    pub target_limit: Option<u64>,
}

/// `metav1.LabelSelector` as a monitor's `selector`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// Where the monitored objects are: `any`, a list of names, or (neither) the monitor's own
/// namespace.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NamespaceSelector {
    pub any: bool,
    pub match_names: Vec<String>,
}

/// A port given by name or number (`intstr.IntOrString`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl IntOrString {
    /// Go's `IntOrString.String()`.
    pub fn text(&self) -> String {
        match self {
            IntOrString::Int(number) => number.to_string(),
            IntOrString::String(name) => name.clone(),
        }
    }
}

/// What ServiceMonitor endpoints and PodMonitor endpoints share.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ScrapeSettings {
    pub path: String,
    pub scheme: String,
    pub params: Option<BTreeMap<String, Vec<String>>>,
    pub interval: String,
    pub scrape_timeout: String,
    pub honor_labels: bool,
    pub honor_timestamps: Option<bool>,
    pub follow_redirects: Option<bool>,
    #[serde(rename = "enableHttp2")]
    pub enable_http2: Option<bool>,
    pub filter_running: Option<bool>,
    pub relabelings: Vec<RelabelConfig>,
    pub metric_relabelings: Vec<RelabelConfig>,
    pub tls_config: Option<TlsConfig>,
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token_file: String,
    pub bearer_token_secret: Option<SecretKeySelector>,
    pub authorization: Option<Authorization>,
}

/// One `ServiceMonitor.spec.endpoints` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    /// The Service port's name.
    pub port: String,
    /// The pod's container port, by name or number (used when `port` is empty).
    pub target_port: Option<IntOrString>,
    #[serde(flatten)]
    pub settings: ScrapeSettings,
}

/// One `PodMonitor.spec.podMetricsEndpoints` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    pub port: Option<String>,
    pub port_number: Option<i64>,
    /// Deprecated in favour of `port`/`portNumber`, still honoured.
    pub target_port: Option<IntOrString>,
    #[serde(flatten)]
    pub settings: ScrapeSettings,
}

/// A relabeling as monitors write it; rendered by the generator as Prometheus reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub target_label: String,
    pub regex: String,
    pub modulus: u64,
    pub replacement: Option<String>,
    pub action: String,
}

/// A key of a Secret in the monitor's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(default)]
pub struct SecretKeySelector {
    pub name: String,
    pub key: String,
}

/// A key of a Secret or of a ConfigMap (TLS CA and certificate).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecretOrConfigMap {
    pub secret: Option<SecretKeySelector>,
    pub config_map: Option<SecretKeySelector>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TlsConfig {
    pub ca: SecretOrConfigMap,
    pub cert: SecretOrConfigMap,
    pub key_secret: Option<SecretKeySelector>,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct BasicAuth {
    pub username: SecretKeySelector,
    pub password: SecretKeySelector,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Authorization {
    #[serde(rename = "type")]
    pub kind: String,
    pub credentials: Option<SecretKeySelector>,
    pub credentials_file: String,
}

/// Which kind of monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MonitorKind {
    ServiceMonitor,
    PodMonitor,
}

impl MonitorKind {
    /// The resource's plural, as in its API path.
    pub fn plural(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "servicemonitors",
            MonitorKind::PodMonitor => "podmonitors",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "ServiceMonitor",
            MonitorKind::PodMonitor => "PodMonitor",
        }
    }

    /// The job name prefix prometheus-operator uses.
    pub fn job_prefix(self) -> &'static str {
        match self {
            MonitorKind::ServiceMonitor => "serviceMonitor",
            MonitorKind::PodMonitor => "podMonitor",
        }
    }
}

/// A monitor's spec, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MonitorSpec {
    Service(ServiceMonitorSpec),
    Pod(PodMonitorSpec),
}

/// One ServiceMonitor or PodMonitor as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: MonitorSpec,
}

impl Monitor {
    pub fn kind(&self) -> MonitorKind {
        match self.spec {
            MonitorSpec::Service(_) => MonitorKind::ServiceMonitor,
            MonitorSpec::Pod(_) => MonitorKind::PodMonitor,
        }
    }

    /// Decode an object's `spec` (JSON as the API server serves it).
    pub fn from_parts(
        kind: MonitorKind,
        namespace: String,
        name: String,
        labels: BTreeMap<String, String>,
        spec: serde_json::Value,
    ) -> Result<Self, serde_json::Error> {
        let spec = match kind {
            MonitorKind::ServiceMonitor => MonitorSpec::Service(serde_json::from_value(spec)?),
            MonitorKind::PodMonitor => MonitorSpec::Pod(serde_json::from_value(spec)?),
        };
        Ok(Monitor {
            namespace,
            name,
            labels,
            spec,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unknown_fields_are_ignored_and_missing_ones_default() {
        let spec: ServiceMonitorSpec = serde_json::from_value(json!({
            "endpoints": [{"port": "web", "interval": "15s", "futureField": {"x": 1},
                           "tlsConfig": {"ca": {"secret": {"name": "tls", "key": "ca.crt"}}}}],
            "selector": {"matchLabels": {"app": "x"}},
            "somethingNew": true
        }))
        .expect("decodes");
        assert_eq!(spec.endpoints[0].port, "web");
        assert_eq!(spec.endpoints[0].settings.interval, "15s");
        let ca = spec.endpoints[0]
            .settings
            .tls_config
            .as_ref()
            .and_then(|t| t.ca.secret.as_ref());
        assert_eq!(ca.map(|s| s.name.as_str()), Some("tls"));
        assert!(!spec.namespace_selector.any);
    }

    #[test]
    fn target_ports_are_numbers_or_names() {
        let endpoint: PodMetricsEndpoint = serde_json::from_value(json!({"targetPort": 8080})).expect("decodes");
        assert_eq!(endpoint.target_port, Some(IntOrString::Int(8080)));
        let endpoint: PodMetricsEndpoint = serde_json::from_value(json!({"targetPort": "metrics"})).expect("decodes");
        assert_eq!(endpoint.target_port.map(|p| p.text()), Some("metrics".to_string()));
    }
}
