//! Credentials monitors reference (basic auth, bearer token, authorization, TLS CA,
//! certificate and key), which upstream fetches from Secrets and ConfigMaps in the monitor's
//! namespace and inlines into the generated scrape config (docs/architecture.md, "Prometheus CRs"). This
//! module lists the references (pure) and holds the fetched values; the watcher does the
//! fetching. Inlined secrets are then masked on plain HTTP like any other (src/secrets.rs).

use std::collections::BTreeMap;

use super::spec::Monitor;
use super::spec::MonitorSpec;
use super::spec::ScrapeSettings;
use super::spec::SecretKeySelector;
use super::spec::SecretOrConfigMap;

/// Where a value lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Secret,
    ConfigMap,
}

/// One key of one Secret or ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CredentialRef {
    pub source: Source,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl CredentialRef {
    pub fn secret(namespace: &str, selector: &SecretKeySelector) -> Self {
        Self {
            source: Source::Secret,
            namespace: namespace.to_string(),
            name: selector.name.clone(),
            key: selector.key.clone(),
        }
    }

    pub fn config_map(namespace: &str, selector: &SecretKeySelector) -> Self {
        Self {
            source: Source::ConfigMap,
            ..Self::secret(namespace, selector)
        }
    }

    /// A Secret-or-ConfigMap reference; `None` when neither is set.
    pub fn either(namespace: &str, reference: &SecretOrConfigMap) -> Option<Self> {
        match (&reference.secret, &reference.config_map) {
            (Some(secret), _) => Some(Self::secret(namespace, secret)),
            (None, Some(config_map)) => Some(Self::config_map(namespace, config_map)),
            (None, None) => None,
        }
    }
}

impl std::fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::Secret => "secret",
            Source::ConfigMap => "configmap",
        };
        write!(f, "key {:?} of {kind} {}/{}", self.key, self.namespace, self.name)
    }
}

/// Fetched values; a reference that could not be fetched is absent.
pub type CredentialValues = BTreeMap<CredentialRef, String>;

/// Every reference of one endpoint's settings.
pub fn references_of_settings(namespace: &str, settings: &ScrapeSettings) -> Vec<CredentialRef> {
    let mut out = Vec::new();
    if let Some(basic) = &settings.basic_auth {
        out.push(CredentialRef::secret(namespace, &basic.username));
        out.push(CredentialRef::secret(namespace, &basic.password));
    }
    if let Some(token) = settings.bearer_token_secret.as_ref().filter(|s| !s.name.is_empty()) {
        out.push(CredentialRef::secret(namespace, token));
    }
    if let Some(credentials) = settings.authorization.as_ref().and_then(|a| a.credentials.as_ref()) {
        out.push(CredentialRef::secret(namespace, credentials));
    }
    if let Some(tls) = &settings.tls_config {
        out.extend(CredentialRef::either(namespace, &tls.ca));
        out.extend(CredentialRef::either(namespace, &tls.cert));
        if let Some(key) = &tls.key_secret {
            out.push(CredentialRef::secret(namespace, key));
        }
    }
    out
}

/// Every reference of a monitor (all endpoints).
pub fn references(monitor: &Monitor) -> Vec<CredentialRef> {
    let settings: Vec<&ScrapeSettings> = match &monitor.spec {
        MonitorSpec::Service(spec) => spec.endpoints.iter().map(|e| &e.settings).collect(),
        MonitorSpec::Pod(spec) => spec.pod_metrics_endpoints.iter().map(|e| &e.settings).collect(),
    };
    settings
        .into_iter()
        .flat_map(|s| references_of_settings(&monitor.namespace, s))
        .collect()
}
