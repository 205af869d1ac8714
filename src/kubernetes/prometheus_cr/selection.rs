//! Which monitors the allocator turns into jobs, with prometheus-operator's semantics for
//! the synthetic Prometheus upstream builds from `prometheus_cr` (docs/architecture.md, "Prometheus CRs"):
//!
//! - monitor selector: `None` selects no monitor, `{}` every monitor;
//! - namespace selector: `None` means only the Prometheus's own namespace
//!   (`collector_namespace`), `{}` every namespace, otherwise the namespaces whose labels
//!   match;
//! - `allow_namespaces` (when not empty) and `deny_namespaces` scope what is watched at all.

use std::collections::BTreeMap;

use super::spec::Monitor;
use super::spec::MonitorKind;
use crate::config::LabelSelector;
use crate::config::PrometheusCrConfig;

/// The selection rules, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub service_monitor_selector: Option<LabelSelector>,
    pub pod_monitor_selector: Option<LabelSelector>,
    pub service_monitor_namespace_selector: Option<LabelSelector>,
    pub pod_monitor_namespace_selector: Option<LabelSelector>,
    pub allow_namespaces: Vec<String>,
    pub deny_namespaces: Vec<String>,
    /// The synthetic Prometheus's namespace.
    pub own_namespace: String,
}

/// What a namespace selector needs to be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceNeed {
    /// No namespace labels are needed.
    Nothing,
    /// The labels of namespaces are needed (a non-empty namespace selector).
    Labels,
}

impl Selection {
    pub fn from_config(config: &PrometheusCrConfig, collector_namespace: &str) -> Self {
        Self {
            service_monitor_selector: config.service_monitor_selector.clone(),
            pod_monitor_selector: config.pod_monitor_selector.clone(),
            service_monitor_namespace_selector: config.service_monitor_namespace_selector.clone(),
            pod_monitor_namespace_selector: config.pod_monitor_namespace_selector.clone(),
            allow_namespaces: config.allow_namespaces.clone(),
            deny_namespaces: config.deny_namespaces.clone(),
            own_namespace: collector_namespace.to_string(),
        }
    }

    /// Whether the namespaces' labels have to be watched.
    pub fn namespace_need(&self) -> NamespaceNeed {
        let needs_labels =
            |selector: &Option<LabelSelector>| selector.as_ref().is_some_and(|s| *s != LabelSelector::default());
        if needs_labels(&self.service_monitor_namespace_selector) || needs_labels(&self.pod_monitor_namespace_selector)
        {
            NamespaceNeed::Labels
        } else {
            NamespaceNeed::Nothing
        }
    }

    /// Whether objects in `namespace` are watched at all.
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        (self.allow_namespaces.is_empty() || self.allow_namespaces.iter().any(|n| n == namespace))
            && !self.deny_namespaces.iter().any(|n| n == namespace)
    }

    /// Whether `monitor` is selected, given the labels of every namespace (only read when a
    /// namespace selector has requirements; a namespace not listed has no labels).
    pub fn selects(&self, monitor: &Monitor, namespace_labels: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
        if !self.namespace_allowed(&monitor.namespace) {
            return false;
        }
        let (selector, namespace_selector) = match monitor.kind() {
            MonitorKind::ServiceMonitor => (&self.service_monitor_selector, &self.service_monitor_namespace_selector),
            MonitorKind::PodMonitor => (&self.pod_monitor_selector, &self.pod_monitor_namespace_selector),
        };
        let Some(selector) = selector else {
            return false;
        };
        if !selector.matches(&monitor.labels) {
            return false;
        }
        match namespace_selector {
            None => monitor.namespace == self.own_namespace,
            Some(selector) if *selector == LabelSelector::default() => true,
            Some(selector) => {
                let empty = BTreeMap::new();
                selector.matches(namespace_labels.get(&monitor.namespace).unwrap_or(&empty))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::prometheus_cr::spec::MonitorSpec;

    fn monitor(namespace: &str, labels: &[(&str, &str)]) -> Monitor {
        Monitor {
            namespace: namespace.into(),
            name: "m".into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            spec: MonitorSpec::Service(Default::default()),
        }
    }

    fn selection() -> Selection {
        Selection::from_config(&PrometheusCrConfig::default(), "observability")
    }

    #[test]
    fn a_missing_monitor_selector_selects_nothing_and_an_empty_one_everything() {
        let none = BTreeMap::new();
        let mut selection = selection();
        assert!(!selection.selects(&monitor("a", &[]), &none));
        selection.service_monitor_selector = Some(LabelSelector::default());
        assert!(selection.selects(&monitor("a", &[]), &none));
        selection.service_monitor_selector = Some(LabelSelector {
            match_labels: [("team".to_string(), "x".to_string())].into(),
            match_expressions: Vec::new(),
        });
        assert!(!selection.selects(&monitor("a", &[]), &none));
        assert!(selection.selects(&monitor("a", &[("team", "x")]), &none));
    }

    #[test]
    fn namespace_selectors_allow_and_deny() {
        let mut labels = BTreeMap::new();
        labels.insert("prod".to_string(), [("env".to_string(), "prod".to_string())].into());
        let mut selection = selection();
        selection.service_monitor_selector = Some(LabelSelector::default());
        assert_eq!(selection.namespace_need(), NamespaceNeed::Nothing);
        // No namespace selector: only the Prometheus's own namespace.
        selection.service_monitor_namespace_selector = None;
        assert!(selection.selects(&monitor("observability", &[]), &labels));
        assert!(!selection.selects(&monitor("prod", &[]), &labels));
        selection.service_monitor_namespace_selector = Some(LabelSelector {
            match_labels: [("env".to_string(), "prod".to_string())].into(),
            match_expressions: Vec::new(),
        });
        assert_eq!(selection.namespace_need(), NamespaceNeed::Labels);
        assert!(selection.selects(&monitor("prod", &[]), &labels));
        assert!(!selection.selects(&monitor("dev", &[]), &labels));
        selection.service_monitor_namespace_selector = Some(LabelSelector::default());
        selection.deny_namespaces = vec!["prod".into()];
        assert!(!selection.selects(&monitor("prod", &[]), &labels));
        assert!(selection.selects(&monitor("dev", &[]), &labels));
        selection.deny_namespaces.clear();
        selection.allow_namespaces = vec!["dev".into()];
        assert!(!selection.selects(&monitor("prod", &[]), &labels));
        assert!(selection.selects(&monitor("dev", &[]), &labels));
    }
}
