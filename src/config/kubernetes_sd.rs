//! `kubernetes_sd_configs` entries, decoded and checked with Prometheus's rules
//! (`discovery/kubernetes/kubernetes.go`, `SDConfig.UnmarshalYAML`): a role is required and
//! must be known; `api_server` and `kubeconfig_file` exclude each other and `own_namespace`;
//! HTTP client settings need `api_server`; at most one selector per role, only for the kinds
//! of objects the role watches, with label and field selectors that parse. Unlike
//! Prometheus, which stops at the first problem, every problem is reported.

use serde_json::Value as Json;

use super::decode;
use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::service_discovery::HTTP_CLIENT_KEYS;
use super::service_discovery::fill_http_client_defaults;
use super::yaml::Node;
use super::yaml::Value;
use crate::discovery::kubernetes_sd::KubernetesRole;
use crate::discovery::kubernetes_sd::KubernetesSdConfig;
use crate::discovery::kubernetes_sd::NamespaceDiscovery;
use crate::discovery::kubernetes_sd::RoleSelector;

const ROLE_LIST: &str = "pod, service, endpoints, endpointslice, node, ingress";

/// `attach_metadata` keys Prometheus knows; none is applied by this build yet.
const ATTACH_METADATA_KEYS: [&str; 5] = ["node", "namespace", "deployment", "job", "cronjob"];

/// Decode one entry. Returns the configuration and the entry as served on `/scrape_configs`,
/// or `None` when a problem was reported.
pub fn decode(node: &Node, path: &KeyPath, report: &mut Report) -> Option<(KubernetesSdConfig, Json)> {
    let errors_before = report.errors.len();
    let mut fields = Fields::of(node, path, report)?;
    let role_name = fields.string("role", report);
    let api_server = fields.string("api_server", report).filter(|s| !s.is_empty());
    let kubeconfig_file = fields.string("kubeconfig_file", report).filter(|s| !s.is_empty());
    let namespaces = fields
        .take("namespaces")
        .and_then(|n| namespaces(n, &path.key("namespaces"), report))
        .unwrap_or_default();
    let selector_nodes = fields.take("selectors");
    if let Some(attach) = fields.take("attach_metadata") {
        attach_metadata(attach, &path.key("attach_metadata"), report);
    }
    let custom_http_client: Vec<&str> = HTTP_CLIENT_KEYS
        .iter()
        .copied()
        .filter(|key| fields.raw(key).is_some_and(|value| is_custom_http_setting(key, value)))
        .collect();
    fields.accept(&HTTP_CLIENT_KEYS);
    let role_line = Some(fields.line_of("role"));
    fields.finish(report);

    let role = match role_name.as_deref() {
        None | Some("") => {
            report.error(
                &path.key("role"),
                role_line,
                format!("role missing (one of: {ROLE_LIST})"),
            );
            None
        }
        Some(name) => {
            let role = KubernetesRole::parse(name);
            if role.is_none() {
                report.error(
                    &path.key("role"),
                    role_line,
                    format!("unknown Kubernetes SD role {name:?} (one of: {ROLE_LIST})"),
                );
            }
            role
        }
    };
    if let Some(url) = &api_server {
        check_api_server(url, &path.key("api_server"), line_of(node, "api_server"), report);
    }
    if api_server.is_some() && kubeconfig_file.is_some() {
        report.error(
            path,
            Some(node.line),
            "cannot use 'kubeconfig_file' and 'api_server' simultaneously",
        );
    }
    if !custom_http_client.is_empty() {
        let keys = custom_http_client.join(", ");
        if kubeconfig_file.is_some() {
            report.error(
                path,
                Some(node.line),
                format!("cannot use a custom HTTP client configuration ({keys}) together with 'kubeconfig_file'"),
            );
        } else if api_server.is_none() {
            report.error(
                path,
                Some(node.line),
                format!(
                    "to use custom HTTP client configuration ({keys}) please provide the 'api_server' URL explicitly"
                ),
            );
        } else {
            report.warn(
                path,
                Some(node.line),
                format!("HTTP client settings ({keys}) are not applied to the Kubernetes API client by this build yet"),
            );
        }
    }
    if namespaces.own_namespace {
        let own_line = node
            .get("namespaces")
            .and_then(|n| n.get("own_namespace"))
            .map(|n| n.line);
        if api_server.is_some() {
            report.error(
                &path.key("namespaces").key("own_namespace"),
                own_line,
                "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
            );
        }
        if kubeconfig_file.is_some() {
            report.error(
                &path.key("namespaces").key("own_namespace"),
                own_line,
                "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously",
            );
        }
    }
    let selectors = selector_nodes
        .map(|n| selectors(n, role, &path.key("selectors"), report))
        .unwrap_or_default();

    let mut rendered = node.to_json();
    if let Some(object) = rendered.as_object_mut() {
        // Prometheus always marshals `kubeconfig_file`, even when empty.
        object
            .entry("kubeconfig_file")
            .or_insert_with(|| Json::String(String::new()));
    }
    fill_http_client_defaults(&mut rendered);

    let role = role?;
    if report.errors.len() > errors_before {
        return None;
    }
    Some((
        KubernetesSdConfig {
            role,
            api_server,
            kubeconfig_file,
            namespaces,
            selectors,
        },
        rendered,
    ))
}

fn line_of(node: &Node, key: &str) -> Option<usize> {
    Some(node.get(key).map(|n| n.line).unwrap_or(node.line))
}

/// Prometheus compares the HTTP client settings with their defaults: writing the defaults
/// out (`follow_redirects: true`, `enable_http2: true`, as a marshalled config does) is not
/// a custom configuration.
fn is_custom_http_setting(key: &str, value: &Node) -> bool {
    !matches!(
        (key, &value.value),
        (_, Value::Null) | ("follow_redirects" | "enable_http2", Value::Bool(true))
    )
}

fn check_api_server(url: &str, path: &KeyPath, line: Option<usize>, report: &mut Report) {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        None => report.error(path, line, format!("URL scheme must be 'http' or 'https': {url:?}")),
        Some(rest) if rest.split(['/', '?', '#']).next().unwrap_or_default().is_empty() => {
            report.error(path, line, format!("host is missing in URL {url:?}"))
        }
        Some(_) => {}
    }
}

fn namespaces(node: &Node, path: &KeyPath, report: &mut Report) -> Option<NamespaceDiscovery> {
    let mut fields = Fields::of(node, path, report)?;
    let own_namespace = fields.bool("own_namespace", report).unwrap_or(false);
    let names = fields.string_list("names", report).unwrap_or_default();
    fields.finish(report);
    Some(NamespaceDiscovery { own_namespace, names })
}

fn attach_metadata(node: &Node, path: &KeyPath, report: &mut Report) {
    let Some(mut fields) = Fields::of(node, path, report) else {
        return;
    };
    for key in ATTACH_METADATA_KEYS {
        if fields.bool(key, report) == Some(true) {
            report.warn(
                &path.key(key),
                Some(fields.line_of(key)),
                "attaching metadata is not supported by this build yet; the option is ignored",
            );
        }
    }
    fields.finish(report);
}

fn selectors(node: &Node, role: Option<KubernetesRole>, path: &KeyPath, report: &mut Report) -> Vec<RoleSelector> {
    let Some(items) = decode::items(node, path, report) else {
        return Vec::new();
    };
    let mut selectors: Vec<RoleSelector> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = path.index(index);
        let Some(mut fields) = Fields::of(item, &item_path, report) else {
            continue;
        };
        let role_name = fields.string("role", report).unwrap_or_default();
        let label = fields.string("label", report).filter(|s| !s.is_empty());
        let field = fields.string("field", report).filter(|s| !s.is_empty());
        let role_line = Some(fields.line_of("role"));
        fields.finish(report);
        let mut ok = true;
        if let Some(label) = &label
            && let Err(problem) = check_label_selector(label)
        {
            report.error(
                &item_path.key("label"),
                line_of(item, "label"),
                format!("invalid label selector {label:?}: {problem}"),
            );
            ok = false;
        }
        if let Some(field) = &field
            && let Err(problem) = check_field_selector(field)
        {
            report.error(
                &item_path.key("field"),
                line_of(item, "field"),
                format!("invalid field selector {field:?}: {problem}"),
            );
            ok = false;
        }
        let selector_role = KubernetesRole::parse(&role_name);
        let Some(selector_role) =
            selector_role.filter(|r| role.is_none_or(|role| role.allowed_selector_roles().contains(r)))
        else {
            let message = match role {
                Some(role) => format!(
                    "{role} role supports only {} selectors, not {role_name:?}",
                    role.allowed_selector_roles()
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => format!("unknown Kubernetes SD role {role_name:?} (one of: {ROLE_LIST})"),
            };
            report.error(&item_path.key("role"), role_line, message);
            continue;
        };
        if selectors.iter().any(|s| s.role == selector_role) {
            report.error(
                &item_path.key("role"),
                role_line,
                format!("duplicated selector role: {selector_role}"),
            );
            continue;
        }
        if role == Some(KubernetesRole::Pod) && selector_role == KubernetesRole::Node {
            report.warn(
                &item_path.key("role"),
                role_line,
                "a node selector only applies with attach_metadata.node, which this build does not support yet; ignored",
            );
        }
        if ok {
            selectors.push(RoleSelector {
                role: selector_role,
                label,
                field,
            });
        }
    }
    selectors
}

/// Whether `selector` parses as a Kubernetes label selector (`labels.Parse`): requirements
/// separated by commas, each `key`, `!key`, `key=value`, `key==value`, `key!=value`,
/// `key>n`, `key<n`, `key in (a,b)` or `key notin (a,b)`; keys are qualified names, values
/// label values.
pub fn check_label_selector(selector: &str) -> Result<(), String> {
    for requirement in split_requirements(selector)? {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            return Err("an empty requirement".into());
        }
        if let Some(key) = requirement.strip_prefix('!') {
            check_label_key(key.trim())?;
            continue;
        }
        if let Some((key, values)) = split_set_requirement(requirement) {
            check_label_key(key)?;
            let values = values
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("expected a parenthesised list of values in {requirement:?}"))?;
            for value in values.split(',') {
                check_label_value(value.trim())?;
            }
            continue;
        }
        let operator = ["!=", "==", "=", ">", "<"]
            .iter()
            .filter_map(|op| requirement.find(op).map(|at| (at, *op)))
            .min_by_key(|(at, op)| (*at, std::cmp::Reverse(op.len())));
        match operator {
            None => check_label_key(requirement)?,
            Some((at, operator)) => {
                let key = requirement[..at].trim();
                let value = requirement[at + operator.len()..].trim();
                check_label_key(key)?;
                if matches!(operator, ">" | "<") {
                    value
                        .parse::<i64>()
                        .map_err(|_| format!("{value:?} is not an integer (for {operator})"))?;
                } else {
                    check_label_value(value)?;
                }
            }
        }
    }
    Ok(())
}

/// Split on commas outside parentheses.
fn split_requirements(selector: &str) -> Result<Vec<&str>, String> {
    if selector.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (at, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?,
            ',' if depth == 0 => {
                parts.push(&selector[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    parts.push(&selector[start..]);
    Ok(parts)
}

/// `key in (...)` / `key notin (...)`: the key and the parenthesised part.
fn split_set_requirement(requirement: &str) -> Option<(&str, &str)> {
    let mut words = requirement.splitn(2, char::is_whitespace);
    let key = words.next()?;
    let rest = words.next()?.trim_start();
    for operator in ["notin", "in"] {
        if let Some(values) = rest.strip_prefix(operator)
            && values.trim_start().starts_with('(')
        {
            return Some((key, values.trim()));
        }
    }
    None
}

/// A qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9_.-]`, beginning and ending with an alphanumeric.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let valid_prefix = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !valid_prefix {
            return Err(format!("{key:?} has an invalid prefix (a DNS subdomain)"));
        }
    }
    if name.is_empty() {
        return Err(format!("{key:?} is not a valid label key (empty name)"));
    }
    check_name_characters(name).map_err(|problem| format!("{key:?} is not a valid label key ({problem})"))
}

/// A label value: empty, or like a name.
fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_characters(value).map_err(|problem| format!("{value:?} is not a valid label value ({problem})"))
}

fn check_name_characters(name: &str) -> Result<(), &'static str> {
    if name.len() > 63 {
        return Err("longer than 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only alphanumerics, '-', '_' and '.' are allowed");
    }
    let alphanumeric_ends = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric_ends {
        return Err("must begin and end with an alphanumeric character");
    }
    Ok(())
}

/// Whether `selector` parses as a Kubernetes field selector (`fields.ParseSelector`): terms
/// separated by unescaped commas, each with `=`, `==` or `!=`.
pub fn check_field_selector(selector: &str) -> Result<(), String> {
    let mut term = String::new();
    let mut escaped = false;
    let mut terms = Vec::new();
    for c in selector.chars() {
        if escaped {
            // An escaped character is part of a value, never an operator or separator.
            term.push('x');
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' => terms.push(std::mem::take(&mut term)),
            c => term.push(c),
        }
    }
    if escaped {
        return Err("a trailing backslash".into());
    }
    terms.push(term);
    for term in terms.iter().filter(|t| !t.is_empty()) {
        if !term.contains('=') {
            return Err(format!(
                "can't understand {term:?} (want field=value, field==value or field!=value)"
            ));
        }
    }
    Ok(())
}

/// The summary name of an entry for `check-config`.
pub fn summary_name(config: &KubernetesSdConfig) -> String {
    format!("kubernetes_sd ({})", config.role)
}

#[cfg(test)]
mod tests {
    use super::super::yaml;
    use super::*;

    fn decode_text(text: &str) -> (Option<(KubernetesSdConfig, Json)>, Report) {
        let mut report = Report::new("test.yaml");
        let root = match yaml::parse(text) {
            Ok(root) => root,
            Err(e) => panic!("test YAML does not parse: {}", e.message),
        };
        let decoded = decode(
            &root,
            &KeyPath::root().key("kubernetes_sd_configs").index(0),
            &mut report,
        );
        (decoded, report)
    }

    fn problems(report: &Report) -> Vec<String> {
        report
            .errors
            .iter()
            .map(|p| format!("{}: {}", p.key_path, p.message))
            .collect()
    }

    #[test]
    fn a_full_entry_is_read() {
        let (decoded, report) = decode_text(
            "role: endpointslice\n\
             namespaces:\n  names: [a, b]\n\
             selectors:\n\
             - role: pod\n  label: app=web,tier in (front, back)\n\
             - role: endpointslice\n  field: metadata.name=x\n",
        );
        assert!(report.errors.is_empty(), "{:?}", problems(&report));
        let Some((config, rendered)) = decoded else {
            panic!("no config")
        };
        assert_eq!(config.role, KubernetesRole::EndpointSlice);
        assert_eq!(config.namespaces.names, ["a", "b"]);
        assert_eq!(
            config
                .selector_for(KubernetesRole::Pod)
                .and_then(|s| s.label.as_deref()),
            Some("app=web,tier in (front, back)")
        );
        assert_eq!(
            config
                .selector_for(KubernetesRole::EndpointSlice)
                .and_then(|s| s.field.as_deref()),
            Some("metadata.name=x")
        );
        assert_eq!(rendered["kubeconfig_file"], "");
        assert_eq!(rendered["follow_redirects"], true);
        assert_eq!(rendered["namespaces"]["names"][1], "b");
    }

    #[test]
    fn every_problem_of_an_entry_is_reported_with_its_key_path() {
        let (decoded, report) = decode_text(
            "role: endpointslice\n\
             api_server: https://k8s.example:6443\n\
             kubeconfig_file: /etc/kube/config\n\
             namespaces:\n  own_namespace: true\n\
             selectors:\n\
             - role: node\n\
             - role: pod\n  label: 'a in (b'\n\
             - role: service\n\
             - role: service\n  field: nonsense\n",
        );
        assert!(decoded.is_none());
        let problems = problems(&report);
        let expected = [
            "kubernetes_sd_configs[0]: cannot use 'kubeconfig_file' and 'api_server' simultaneously",
            "kubernetes_sd_configs[0].namespaces.own_namespace: cannot use 'api_server' and 'namespaces.own_namespace' simultaneously",
            "kubernetes_sd_configs[0].namespaces.own_namespace: cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously",
            "kubernetes_sd_configs[0].selectors[0].role: endpointslice role supports only pod, service, endpointslice selectors, not \"node\"",
            "kubernetes_sd_configs[0].selectors[1].label: invalid label selector \"a in (b\": unbalanced parentheses",
            "kubernetes_sd_configs[0].selectors[3].field: invalid field selector \"nonsense\": can't understand \"nonsense\" (want field=value, field==value or field!=value)",
            "kubernetes_sd_configs[0].selectors[3].role: duplicated selector role: service",
        ];
        assert_eq!(problems, expected);
    }

    #[test]
    fn a_missing_or_unknown_role_is_reported() {
        let (decoded, report) = decode_text("namespaces: {names: [x]}\n");
        assert!(decoded.is_none());
        assert_eq!(
            problems(&report),
            [
                "kubernetes_sd_configs[0].role: role missing (one of: pod, service, endpoints, endpointslice, node, ingress)"
            ]
        );
        let (decoded, report) = decode_text("role: Pods\n");
        assert!(decoded.is_none());
        assert_eq!(
            problems(&report),
            [
                "kubernetes_sd_configs[0].role: unknown Kubernetes SD role \"Pods\" (one of: pod, service, endpoints, endpointslice, node, ingress)"
            ]
        );
    }

    #[test]
    fn http_client_settings_need_api_server_and_are_reported_as_not_applied() {
        let (decoded, report) = decode_text("role: pod\nbearer_token: secret\n");
        assert!(decoded.is_none());
        assert_eq!(
            problems(&report),
            [
                "kubernetes_sd_configs[0]: to use custom HTTP client configuration (bearer_token) please provide the 'api_server' URL explicitly"
            ]
        );
        // The defaults written out, as a marshalled Prometheus config has them, are fine.
        let (decoded, report) = decode_text("role: pod\nfollow_redirects: true\nenable_http2: true\n");
        assert!(decoded.is_some(), "{:?}", problems(&report));
        assert!(report.warnings.is_empty());
        let (decoded, report) = decode_text("role: node\napi_server: http://127.0.0.1:8001\nbearer_token: x\n");
        assert!(decoded.is_some(), "{:?}", problems(&report));
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].message.contains("not applied"));
    }

    #[test]
    fn attach_metadata_is_accepted_and_reported_as_unsupported() {
        let (decoded, report) = decode_text("role: pod\nattach_metadata:\n  node: true\n  namespace: false\n");
        assert!(decoded.is_some());
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(
            report.warnings[0].key_path,
            "kubernetes_sd_configs[0].attach_metadata.node"
        );
    }

    #[test]
    fn a_node_selector_on_the_pod_role_is_accepted_and_reported_as_ignored() {
        let (decoded, report) = decode_text("role: pod\nselectors:\n- role: node\n  label: zone=a\n");
        assert!(decoded.is_some(), "{:?}", problems(&report));
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(
            report.warnings[0].key_path,
            "kubernetes_sd_configs[0].selectors[0].role"
        );
    }

    #[test]
    fn bad_api_server_urls_are_reported() {
        let (decoded, report) = decode_text("role: pod\napi_server: k8s.example:6443\n");
        assert!(decoded.is_none());
        assert!(problems(&report)[0].contains("scheme"), "{:?}", problems(&report));
    }

    #[test]
    fn label_selectors_follow_the_kubernetes_grammar() {
        for valid in [
            "",
            "app",
            "!app",
            "app=web",
            "app==web",
            "app!=web",
            "app.kubernetes.io/name=x",
            "tier in (a, b),env notin (prod)",
            "replicas>2",
            "app=",
        ] {
            assert_eq!(check_label_selector(valid), Ok(()), "{valid:?}");
        }
        for invalid in [
            "a b",
            "app=we b",
            "=x",
            "a in (b",
            "replicas>x",
            "-a=b",
            "Bad_Prefix/x=y",
        ] {
            assert!(check_label_selector(invalid).is_err(), "{invalid:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn selector_checks_never_panic(text in "\\PC{0,40}") {
            let _ = check_label_selector(&text);
            let _ = check_field_selector(&text);
        }
    }

    #[test]
    fn field_selectors_need_an_operator_per_term() {
        assert_eq!(check_field_selector("metadata.name=x,spec.nodeName!=y"), Ok(()));
        assert_eq!(check_field_selector(r"metadata.name=a\,b"), Ok(()));
        assert_eq!(check_field_selector(""), Ok(()));
        assert!(check_field_selector("metadata.name").is_err());
    }
}
