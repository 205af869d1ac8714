//! `role: ingress` (Prometheus `ingress.go`, `networking.k8s.io/v1`): one group per ingress,
//! `ingress/<namespace>/<name>`, with one target per rule × HTTP path whose address is the
//! rule's host (for blackbox probing). The scheme is `https` when a TLS entry's host (or
//! `*.` wildcard) matches the rule's host. A rule without `http` counts as the path `/`; a
//! rule with an empty `http.paths` list has no targets; an empty path is `/`.

use k8s_openapi::api::networking::v1::Ingress;

use super::super::ADDRESS_LABEL;
use super::super::TargetGroup;
use super::LabelPairs;
use super::NAMESPACE_LABEL;
use super::add_object_meta_labels;
use super::build_group;
use super::namespace_and_name;

pub const SCHEME: &str = "__meta_kubernetes_ingress_scheme";
pub const HOST: &str = "__meta_kubernetes_ingress_host";
pub const PATH: &str = "__meta_kubernetes_ingress_path";
pub const CLASS_NAME: &str = "__meta_kubernetes_ingress_class_name";

/// The group source of an ingress.
pub fn ingress_source(namespace: &str, name: &str) -> String {
    format!("ingress/{namespace}/{name}")
}

/// The group of one ingress.
pub fn ingress_group(ingress: &Ingress) -> TargetGroup {
    let (namespace, name) = namespace_and_name(&ingress.metadata);
    let spec = ingress.spec.as_ref();
    let mut labels = LabelPairs::new();
    labels.set(NAMESPACE_LABEL, namespace);
    if let Some(class) = spec.and_then(|s| s.ingress_class_name.as_deref()) {
        labels.set(CLASS_NAME, class);
    }
    add_object_meta_labels(&mut labels, &ingress.metadata, "ingress");

    let tls_hosts: Vec<&str> = spec
        .and_then(|s| s.tls.as_deref())
        .unwrap_or_default()
        .iter()
        .flat_map(|tls| tls.hosts.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut targets = Vec::new();
    for rule in spec.and_then(|s| s.rules.as_deref()).unwrap_or_default() {
        let host = rule.host.as_deref().unwrap_or_default();
        let scheme = if tls_hosts.iter().any(|pattern| matches_host_pattern(pattern, host)) {
            "https"
        } else {
            "http"
        };
        let paths: Vec<&str> = match &rule.http {
            None => vec!["/"],
            Some(http) => http
                .paths
                .iter()
                .map(|path| path.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/"))
                .collect(),
        };
        for path in paths {
            let mut target = LabelPairs::new();
            target.set(ADDRESS_LABEL, host);
            target.set(SCHEME, scheme);
            target.set(HOST, host);
            target.set(PATH, path);
            targets.push(target);
        }
    }
    build_group(ingress_source(namespace, name), targets, labels)
}

/// Whether `host` equals `pattern` or matches it as a `*.rest` wildcard of the same depth.
fn matches_host_pattern(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let pattern_parts: Vec<&str> = pattern.split('.').collect();
    let host_parts: Vec<&str> = host.split('.').collect();
    pattern_parts.first() == Some(&"*")
        && pattern_parts.len() == host_parts.len()
        && pattern_parts[1..] == host_parts[1..]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_group;
    use super::super::test_support::object;
    use super::*;

    /// Prometheus's `makeIngress` with the given TLS hosts.
    fn ingress(tls_hosts: Option<&[&str]>) -> Ingress {
        let mut ingress = json!({
            "metadata": {
                "name": "testingress",
                "namespace": "default",
                "labels": {"test/label": "testvalue"},
                "annotations": {"test/annotation": "testannotationvalue"}
            },
            "spec": {
                "ingressClassName": "testclass",
                "rules": [
                    {"host": "example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {}},
                        {"path": "/foo", "pathType": "Prefix", "backend": {}}
                    ]}},
                    {"host": "nobackend.example.com", "http": {"paths": []}},
                    {"host": "test.example.com", "http": {"paths": [{"pathType": "Prefix", "backend": {}}]}}
                ]
            }
        });
        if let Some(hosts) = tls_hosts {
            ingress["spec"]["tls"] = json!([{"hosts": hosts}]);
        }
        object(ingress)
    }

    fn expect(group: &TargetGroup, scheme1: &str, scheme2: &str) {
        assert_group(
            group,
            "ingress/default/testingress",
            &[
                ("__meta_kubernetes_ingress_name", "testingress"),
                ("__meta_kubernetes_namespace", "default"),
                ("__meta_kubernetes_ingress_label_test_label", "testvalue"),
                ("__meta_kubernetes_ingress_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_ingress_annotation_test_annotation",
                    "testannotationvalue",
                ),
                ("__meta_kubernetes_ingress_annotationpresent_test_annotation", "true"),
                ("__meta_kubernetes_ingress_class_name", "testclass"),
            ],
            &[
                &[
                    ("__meta_kubernetes_ingress_scheme", scheme1),
                    ("__meta_kubernetes_ingress_host", "example.com"),
                    ("__meta_kubernetes_ingress_path", "/"),
                    ("__address__", "example.com"),
                ],
                &[
                    ("__meta_kubernetes_ingress_scheme", scheme1),
                    ("__meta_kubernetes_ingress_host", "example.com"),
                    ("__meta_kubernetes_ingress_path", "/foo"),
                    ("__address__", "example.com"),
                ],
                &[
                    ("__meta_kubernetes_ingress_scheme", scheme2),
                    ("__meta_kubernetes_ingress_host", "test.example.com"),
                    ("__address__", "test.example.com"),
                    ("__meta_kubernetes_ingress_path", "/"),
                ],
            ],
        );
    }

    #[test]
    fn an_ingress_without_tls_is_http() {
        expect(&ingress_group(&ingress(None)), "http", "http");
    }

    #[test]
    fn tls_hosts_make_their_rules_https() {
        let all = ingress(Some(&["example.com", "test.example.com"]));
        expect(&ingress_group(&all), "https", "https");
        let mixed = ingress(Some(&["example.com"]));
        expect(&ingress_group(&mixed), "https", "http");
        let wildcard = ingress(Some(&["*.example.com"]));
        expect(&ingress_group(&wildcard), "http", "https");
    }

    #[test]
    fn a_rule_without_http_is_the_root_path() {
        let ingress: Ingress = object(json!({
            "metadata": {"name": "i", "namespace": "ns"},
            "spec": {"rules": [{"host": "a.example"}]}
        }));
        let group = ingress_group(&ingress);
        assert_eq!(group.targets.len(), 1);
        assert_eq!(group.targets[0].get("__meta_kubernetes_ingress_path"), Some("/"));
        assert_eq!(group.labels.get("__meta_kubernetes_ingress_class_name"), None);
    }

    #[test]
    fn wildcards_match_one_level_only() {
        assert!(matches_host_pattern("*.example.com", "a.example.com"));
        assert!(!matches_host_pattern("*.example.com", "a.b.example.com"));
        assert!(!matches_host_pattern("*.example.com", "example.com"));
        assert!(matches_host_pattern("x.example.com", "x.example.com"));
    }
}
