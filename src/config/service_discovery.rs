//! The discovery sources of one scrape config (`static_configs`, `file_sd_configs`,
//! `http_sd_configs`, `dns_sd_configs`, `kubernetes_sd_configs` (in its own module), and any other `*_sd_configs` kept as unsupported),
//! decoded and checked with Prometheus's rules, each with its rendering for
//! `/scrape_configs` (Prometheus's defaults filled in).

use std::time::Duration;

use serde_json::Value as Json;
use serde_json::json;

use super::decode;
use super::decode::Fields;
use super::kubernetes_sd;
use super::problem::KeyPath;
use super::problem::Report;
use super::yaml::Node;
use crate::discovery::DnsRecordType;
use crate::discovery::DnsSdConfig;
use crate::discovery::FileSdConfig;
use crate::discovery::HttpSdConfig;
use crate::discovery::Interner;
use crate::discovery::Labels;
use crate::discovery::ServiceDiscoveryConfig;
use crate::discovery::TargetGroup;
use crate::prometheus_duration;

const FILE_SD_REFRESH: Duration = Duration::from_secs(5 * 60);
const HTTP_SD_REFRESH: Duration = Duration::from_secs(60);
const DNS_SD_REFRESH: Duration = Duration::from_secs(30);

/// Keys of Prometheus's HTTP client settings, which `http_sd_configs` entries may carry and
/// which are served as written.
pub const HTTP_CLIENT_KEYS: [&str; 13] = [
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "follow_redirects",
    "enable_http2",
    "http_headers",
];

/// Whether a scrape-config key names a discovery source.
pub fn is_discovery_key(key: &str) -> bool {
    key == "static_configs" || key.ends_with("_sd_configs")
}

/// Decode the list under discovery key `key`. Returns the sources and the list as served.
pub fn decode(
    key: &str,
    node: &Node,
    path: &KeyPath,
    report: &mut Report,
    interner: &mut Interner,
) -> (Vec<ServiceDiscoveryConfig>, Json) {
    let Some(items) = decode::items(node, path, report) else {
        return (Vec::new(), node.to_json());
    };
    let mut sources = Vec::new();
    let mut rendered = Vec::new();
    let mut static_groups = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = path.index(index);
        let decoded = match key {
            "static_configs" => static_group(item, index, &item_path, report, interner).map(|(group, json)| {
                static_groups.push(group);
                (None, json)
            }),
            "file_sd_configs" => {
                file_sd(item, &item_path, report).map(|(c, j)| (Some(ServiceDiscoveryConfig::File(c)), j))
            }
            "http_sd_configs" => {
                http_sd(item, &item_path, report).map(|(c, j)| (Some(ServiceDiscoveryConfig::Http(c)), j))
            }
            "dns_sd_configs" => {
                dns_sd(item, &item_path, report).map(|(c, j)| (Some(ServiceDiscoveryConfig::Dns(c)), j))
            }
            "kubernetes_sd_configs" => kubernetes_sd::decode(item, &item_path, report)
                .map(|(c, j)| (Some(ServiceDiscoveryConfig::Kubernetes(c)), j)),
            other => Some((
                Some(ServiceDiscoveryConfig::Unsupported { key: other.to_string() }),
                item.to_json(),
            )),
        };
        if let Some((source, json)) = decoded {
            sources.extend(source);
            rendered.push(json);
        }
    }
    if key == "static_configs" && !static_groups.is_empty() {
        // Prometheus runs all static groups of a job as one provider.
        sources.insert(0, ServiceDiscoveryConfig::Static(static_groups));
    }
    (sources, Json::Array(rendered))
}

fn static_group(
    node: &Node,
    index: usize,
    path: &KeyPath,
    report: &mut Report,
    interner: &mut Interner,
) -> Option<(TargetGroup, Json)> {
    let mut fields = Fields::of(node, path, report)?;
    let targets = fields.string_list("targets", report).unwrap_or_default();
    let labels = fields.string_map("labels", report).unwrap_or_default();
    fields.finish(report);
    let errors_before = report.errors.len();
    for (target_index, target) in targets.iter().enumerate() {
        // Prometheus's `CheckTargetAddress`: an address is host:port, never a URL.
        if target.contains('/') {
            report.error(
                &path.key("targets").index(target_index),
                Some(node.line),
                format!("{target:?} is not a valid hostname (a target is host:port, not a URL)"),
            );
        }
    }
    for name in labels.keys() {
        if name.is_empty() {
            report.error(&path.key("labels"), Some(node.line), "a label name is empty");
        }
    }
    if report.errors.len() > errors_before {
        return None;
    }
    let address = interner.intern("__address__");
    let group = TargetGroup {
        source: index.to_string().into(),
        targets: targets
            .iter()
            .map(|t| Labels::new(vec![(address.clone(), interner.intern(t))]))
            .collect(),
        labels: Labels::new(
            labels
                .iter()
                .map(|(k, v)| (interner.intern(k), interner.intern(v)))
                .collect(),
        ),
    };
    let mut json = json!({ "targets": targets });
    if !labels.is_empty() {
        json["labels"] = json!(labels);
    }
    Some((group, json))
}

/// Prometheus's pattern for file SD paths: only the last component may hold `*`, and the
/// extension is json, yml or yaml.
fn valid_file_pattern(path: &str) -> bool {
    let (directory, file) = path.rsplit_once('/').unwrap_or(("", path));
    if directory.contains('*') {
        return false;
    }
    let Some((_, extension)) = file.rsplit_once('.') else {
        return false;
    };
    matches!(extension, "json" | "yml" | "yaml" | "JSON" | "YML" | "YAML")
}

fn refresh_interval(fields: &mut Fields, default: Duration, report: &mut Report) -> Duration {
    fields
        .prometheus_duration("refresh_interval", report)
        .unwrap_or(default)
}

fn file_sd(node: &Node, path: &KeyPath, report: &mut Report) -> Option<(FileSdConfig, Json)> {
    let mut fields = Fields::of(node, path, report)?;
    let files = fields.string_list("files", report);
    let refresh = refresh_interval(&mut fields, FILE_SD_REFRESH, report);
    fields.finish(report);
    // `None` here is a files list with a bad item, already reported.
    let mut ok = files.is_some() || node.get("files").is_none_or(Node::is_null);
    let files = files.unwrap_or_default();
    if files.is_empty() && ok {
        report.error(
            &path.key("files"),
            Some(node.line),
            "file service discovery config must contain at least one path name",
        );
        ok = false;
    }
    for (index, file) in files.iter().enumerate() {
        if !valid_file_pattern(file) {
            report.error(
                &path.key("files").index(index),
                Some(node.line),
                format!("path name {file:?} is not valid for file discovery (only the last component may hold *; extension json, yml or yaml)"),
            );
            ok = false;
        }
    }
    let json = json!({ "files": files, "refresh_interval": prometheus_duration::format(refresh) });
    ok.then_some((
        FileSdConfig {
            files,
            refresh_interval: refresh,
        },
        json,
    ))
}

fn http_sd(node: &Node, path: &KeyPath, report: &mut Report) -> Option<(HttpSdConfig, Json)> {
    let mut fields = Fields::of(node, path, report)?;
    let url = fields.string("url", report);
    let refresh = refresh_interval(&mut fields, HTTP_SD_REFRESH, report);
    fields.accept(&HTTP_CLIENT_KEYS);
    fields.finish(report);
    let line = Some(fields_line(node, "url"));
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        report.error(&path.key("url"), Some(node.line), "URL is missing");
        return None;
    };
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        None => {
            report.error(
                &path.key("url"),
                line,
                format!("URL scheme must be 'http' or 'https': {url:?}"),
            );
            return None;
        }
        Some(rest) if rest.split(['/', '?', '#']).next().unwrap_or_default().is_empty() => {
            report.error(&path.key("url"), line, format!("host is missing in URL {url:?}"));
            return None;
        }
        Some(_) => {}
    }
    let mut json = node.to_json();
    json["url"] = json!(url);
    json["refresh_interval"] = json!(prometheus_duration::format(refresh));
    fill_http_client_defaults(&mut json);
    Some((
        HttpSdConfig {
            url,
            refresh_interval: refresh,
        },
        json,
    ))
}

/// `follow_redirects` and `enable_http2` default to true and are always marshalled.
pub fn fill_http_client_defaults(json: &mut Json) {
    if let Some(object) = json.as_object_mut() {
        for key in ["follow_redirects", "enable_http2"] {
            if object.get(key).is_none_or(Json::is_null) {
                object.insert(key.to_string(), Json::Bool(true));
            }
        }
    }
}

fn fields_line(node: &Node, key: &str) -> usize {
    node.get(key).map(|n| n.line).unwrap_or(node.line)
}

fn dns_sd(node: &Node, path: &KeyPath, report: &mut Report) -> Option<(DnsSdConfig, Json)> {
    let mut fields = Fields::of(node, path, report)?;
    let names = fields.string_list("names", report);
    let type_name = fields.string("type", report).unwrap_or_else(|| "SRV".to_string());
    let port = fields.unsigned("port", report);
    let refresh = refresh_interval(&mut fields, DNS_SD_REFRESH, report);
    fields.finish(report);
    let mut ok = names.is_some();
    let names = names.unwrap_or_default();
    if names.is_empty() {
        report.error(
            &path.key("names"),
            Some(node.line),
            "DNS-SD config must contain at least one SRV record name",
        );
        ok = false;
    }
    let type_line = Some(fields_line(node, "type"));
    let record_type = match type_name.to_uppercase().as_str() {
        "SRV" => Some(DnsRecordType::Srv),
        "A" => Some(DnsRecordType::A),
        "AAAA" => Some(DnsRecordType::Aaaa),
        "MX" | "NS" => {
            report.error(
                &path.key("type"),
                type_line,
                format!("record type {type_name} is valid in Prometheus but not supported by this allocator"),
            );
            None
        }
        _ => {
            report.error(
                &path.key("type"),
                type_line,
                format!("invalid DNS-SD records type {type_name:?} (SRV, A or AAAA)"),
            );
            None
        }
    };
    let port = match port {
        Some(p) => match u16::try_from(p) {
            Ok(p) => Some(p),
            Err(_) => {
                report.error(
                    &path.key("port"),
                    Some(fields_line(node, "port")),
                    format!("port {p} is out of range"),
                );
                ok = false;
                None
            }
        },
        None => None,
    };
    if matches!(record_type, Some(DnsRecordType::A | DnsRecordType::Aaaa)) && port.is_none_or(|p| p == 0) {
        report.error(
            &path.key("port"),
            Some(node.line),
            "a port is required in DNS-SD configs for all record types except SRV",
        );
        ok = false;
    }
    let record_type = record_type?;
    let json = json!({
        "names": names,
        "type": type_name.to_uppercase(),
        "port": port.unwrap_or(0),
        "refresh_interval": prometheus_duration::format(refresh),
    });
    ok.then_some((
        DnsSdConfig {
            names,
            record_type,
            port,
            refresh_interval: refresh,
        },
        json,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_patterns_follow_prometheus() {
        assert!(valid_file_pattern("/etc/targets/*.json"));
        assert!(valid_file_pattern("targets.yml"));
        assert!(valid_file_pattern("/a/b/foo*.yaml"));
        assert!(!valid_file_pattern("/etc/*/targets.json"));
        assert!(!valid_file_pattern("/etc/targets/*.txt"));
        assert!(!valid_file_pattern("/etc/targets/noextension"));
    }
}
