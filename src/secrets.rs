//! Masking of Prometheus `Secret` fields in one rendered scrape config, as upstream serves
//! `/scrape_configs` over plain HTTP (docs/compatibility.md, "Secrets in `/scrape_configs`"):
//! every secret becomes `"<secret>"`.
//!
//! The field list was read from Prometheus v3.14.0 (commit `d15adb9ad7`, `discovery/**` and
//! `config/config.go`) and from `prometheus/common` v0.70.1 (`config/http_config.go`,
//! `config/headers.go`, `config/config.go`), the version that Prometheus release pins.

use serde_json::Map;
use serde_json::Value;

/// What a masked secret reads as (`prometheus/common` `secretToken`).
pub const SECRET_MASK: &str = "<secret>";

/// Secret fields an SD config has of its own, besides those of an inlined HTTP client
/// config, by the SD config's key prefix (`<name>_sd_configs`).
const SERVICE_DISCOVERY_SECRETS: &[(&str, &[&str])] = &[
    ("aws", &["secret_key"]),
    ("azure", &["client_secret"]),
    ("consul", &["token", "password"]),
    ("ec2", &["secret_key"]),
    ("ecs", &["secret_key"]),
    ("elasticache", &["secret_key"]),
    ("lightsail", &["secret_key"]),
    ("marathon", &["auth_token"]),
    ("msk", &["secret_key"]),
    ("oci", &["key_passphrase"]),
    ("openstack", &["password", "application_credential_secret"]),
    ("outscale", &["secret_key"]),
    ("ovhcloud", &["application_secret", "consumer_key"]),
    ("rds", &["secret_key"]),
    ("scaleway", &["secret_key"]),
    ("stackit", &["service_account_key", "private_key"]),
    ("uyuni", &["password"]),
];

/// Mask, in place, every Prometheus `Secret` of one scrape config (a JSON object with
/// snake_case keys, as Prometheus marshals a `scrape_config`).
///
/// Only non-empty strings are replaced: Prometheus omits an empty secret, so there is
/// nothing to hide, and values of other types are left as they are. Anything that is not an
/// object is left unchanged.
pub fn mask_secrets(config: &mut Value) {
    let Some(scrape_config) = config.as_object_mut() else {
        return;
    };
    mask_http_client(scrape_config);
    for (key, value) in scrape_config.iter_mut() {
        let Some(kind) = key.strip_suffix("_sd_configs") else {
            continue;
        };
        let Some(entries) = value.as_array_mut() else {
            continue;
        };
        let own_secrets = SERVICE_DISCOVERY_SECRETS
            .iter()
            .find(|(name, _)| *name == kind)
            .map_or(&[][..], |(_, fields)| *fields);
        for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
            // Most SD configs inline an HTTP client config; for those that do not, none of its
            // keys is present, so masking them is harmless.
            mask_http_client(entry);
            for field in own_secrets {
                mask_field(entry, field);
            }
        }
    }
}

/// The fields of an inlined `HTTPClientConfig`.
fn mask_http_client(client: &mut Map<String, Value>) {
    if let Some(basic_auth) = object_at(client, "basic_auth") {
        mask_field(basic_auth, "password");
    }
    if let Some(authorization) = object_at(client, "authorization") {
        mask_field(authorization, "credentials");
    }
    if let Some(oauth2) = object_at(client, "oauth2") {
        mask_field(oauth2, "client_secret");
        mask_field(oauth2, "client_certificate_key");
        mask_tls(oauth2);
        mask_proxy(oauth2);
    }
    mask_field(client, "bearer_token");
    mask_tls(client);
    mask_proxy(client);
    if let Some(headers) = object_at(client, "http_headers") {
        for header in headers.values_mut().filter_map(Value::as_object_mut) {
            if let Some(secrets) = header.get_mut("secrets") {
                mask_list(secrets);
            }
        }
    }
}

/// `tls_config.key`, the inline PEM key (`key_file` is a path, not a secret).
fn mask_tls(holder: &mut Map<String, Value>) {
    if let Some(tls) = object_at(holder, "tls_config") {
        mask_field(tls, "key");
    }
}

/// The inlined `ProxyConfig`: `proxy_connect_header` maps a header name to a list of secrets.
fn mask_proxy(holder: &mut Map<String, Value>) {
    if let Some(headers) = object_at(holder, "proxy_connect_header") {
        for values in headers.values_mut() {
            mask_list(values);
        }
    }
}

fn object_at<'a>(holder: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    holder.get_mut(key).and_then(Value::as_object_mut)
}

fn mask_field(holder: &mut Map<String, Value>, key: &str) {
    if let Some(value) = holder.get_mut(key) {
        mask_value(value);
    }
}

fn mask_list(list: &mut Value) {
    if let Some(items) = list.as_array_mut() {
        items.iter_mut().for_each(mask_value);
    }
}

fn mask_value(value: &mut Value) {
    if value.as_str().is_some_and(|secret| !secret.is_empty()) {
        *value = Value::String(SECRET_MASK.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn masked(mut config: Value) -> Value {
        mask_secrets(&mut config);
        config
    }

    #[test]
    fn masks_every_http_client_secret_at_the_top_level() {
        let config = json!({
            "job_name": "j",
            "basic_auth": {"username": "u", "password": "p", "password_file": "/f"},
            "authorization": {"type": "Bearer", "credentials": "c", "credentials_file": "/c"},
            "oauth2": {
                "client_id": "id",
                "client_secret": "s",
                "client_secret_file": "/s",
                "client_certificate_key": "pem",
                "tls_config": {"key": "k", "key_file": "/k"},
                "proxy_connect_header": {"X-A": ["a", "b"]},
            },
            "bearer_token": "t",
            "bearer_token_file": "/t",
            "tls_config": {"ca": "ca", "cert": "cert", "key": "k", "key_file": "/k", "insecure_skip_verify": false},
            "proxy_url": "http://proxy:3128",
            "proxy_connect_header": {"Proxy-Authorization": ["Basic x"], "X-B": ["1", "2"]},
            "http_headers": {"X-Token": {"values": ["v"], "secrets": ["s1", "s2"], "files": ["/h"]}},
        });
        let expected = json!({
            "job_name": "j",
            "basic_auth": {"username": "u", "password": "<secret>", "password_file": "/f"},
            "authorization": {"type": "Bearer", "credentials": "<secret>", "credentials_file": "/c"},
            "oauth2": {
                "client_id": "id",
                "client_secret": "<secret>",
                "client_secret_file": "/s",
                "client_certificate_key": "<secret>",
                "tls_config": {"key": "<secret>", "key_file": "/k"},
                "proxy_connect_header": {"X-A": ["<secret>", "<secret>"]},
            },
            "bearer_token": "<secret>",
            "bearer_token_file": "/t",
            "tls_config": {"ca": "ca", "cert": "cert", "key": "<secret>", "key_file": "/k", "insecure_skip_verify": false},
            "proxy_url": "http://proxy:3128",
            "proxy_connect_header": {"Proxy-Authorization": ["<secret>"], "X-B": ["<secret>", "<secret>"]},
            "http_headers": {"X-Token": {"values": ["v"], "secrets": ["<secret>", "<secret>"], "files": ["/h"]}},
        });
        assert_eq!(masked(config), expected);
    }

    #[test]
    fn masks_the_http_client_inside_every_sd_config_entry() {
        let config = json!({
            "job_name": "j",
            "kubernetes_sd_configs": [
                {"role": "pod", "bearer_token": "t1"},
                {"role": "node", "tls_config": {"key": "k", "key_file": "/k"}, "basic_auth": {"password": "p"}},
            ],
            "http_sd_configs": [{"url": "http://sd", "authorization": {"credentials": "c"}}],
            "nomad_sd_configs": [{"server": "http://n", "oauth2": {"client_secret": "s"}}],
        });
        let expected = json!({
            "job_name": "j",
            "kubernetes_sd_configs": [
                {"role": "pod", "bearer_token": "<secret>"},
                {"role": "node", "tls_config": {"key": "<secret>", "key_file": "/k"}, "basic_auth": {"password": "<secret>"}},
            ],
            "http_sd_configs": [{"url": "http://sd", "authorization": {"credentials": "<secret>"}}],
            "nomad_sd_configs": [{"server": "http://n", "oauth2": {"client_secret": "<secret>"}}],
        });
        assert_eq!(masked(config), expected);
    }

    #[test]
    fn masks_the_secrets_service_discovery_configs_have_of_their_own() {
        let cases: &[(&str, &[&str])] = &[
            ("aws", &["secret_key"]),
            ("ec2", &["secret_key"]),
            ("ecs", &["secret_key"]),
            ("elasticache", &["secret_key"]),
            ("lightsail", &["secret_key"]),
            ("msk", &["secret_key"]),
            ("rds", &["secret_key"]),
            ("azure", &["client_secret"]),
            ("consul", &["token", "password"]),
            ("marathon", &["auth_token"]),
            ("oci", &["key_passphrase"]),
            ("openstack", &["password", "application_credential_secret"]),
            ("outscale", &["secret_key"]),
            ("ovhcloud", &["application_secret", "consumer_key"]),
            ("scaleway", &["secret_key"]),
            ("stackit", &["service_account_key", "private_key"]),
            ("uyuni", &["password"]),
        ];
        for (kind, fields) in cases {
            let mut entry = Map::new();
            entry.insert("username".into(), json!("u"));
            for field in *fields {
                entry.insert((*field).into(), json!("real"));
            }
            let key = format!("{kind}_sd_configs");
            let result = masked(json!({ key.clone(): [Value::Object(entry)] }));
            let masked_entry = &result[&key][0];
            for field in *fields {
                assert_eq!(masked_entry[*field], json!("<secret>"), "{kind}.{field}");
            }
            assert_eq!(masked_entry["username"], json!("u"), "{kind}");
        }
    }

    #[test]
    fn leaves_secret_named_fields_of_other_sd_configs_alone() {
        // `password` is a secret for consul, not a field dns_sd_configs has; only the listed
        // kinds get their own fields masked.
        let config = json!({"dns_sd_configs": [{"names": ["a"], "password": "x", "secret_key": "y"}]});
        assert_eq!(masked(config.clone()), config);
    }

    #[test]
    fn leaves_empty_secrets_alone() {
        let config = json!({
            "bearer_token": "",
            "basic_auth": {"username": "u", "password": ""},
            "tls_config": {"key": ""},
            "proxy_connect_header": {"X": [""]},
            "consul_sd_configs": [{"token": "", "password": ""}],
        });
        assert_eq!(masked(config.clone()), config);
    }

    #[test]
    fn leaves_a_config_without_secrets_unchanged() {
        let config = json!({
            "job_name": "j",
            "scheme": "https",
            "metrics_path": "/metrics",
            "scrape_interval": "30s",
            "basic_auth": {"username": "u", "password_file": "/p"},
            "authorization": {"type": "Bearer", "credentials_file": "/c"},
            "tls_config": {"ca_file": "/ca", "cert_file": "/c", "key_file": "/k", "insecure_skip_verify": true},
            "static_configs": [{"targets": ["a:1"], "labels": {"password": "not-a-secret"}}],
            "file_sd_configs": [{"files": ["/x.json"]}],
            "relabel_configs": [{"action": "keep", "regex": "bearer_token"}],
        });
        assert_eq!(masked(config.clone()), config);
    }

    #[test]
    fn tolerates_unexpected_shapes() {
        for config in [
            json!(null),
            json!("text"),
            json!([1, 2]),
            json!({"basic_auth": "x", "tls_config": [1], "kubernetes_sd_configs": {"a": 1}}),
            json!({"proxy_connect_header": {"X": "single"}, "http_headers": {"X": {"secrets": "s"}}}),
            json!({"bearer_token": 5, "consul_sd_configs": [1, null, {"token": true}]}),
        ] {
            assert_eq!(masked(config.clone()), config);
        }
    }
}
