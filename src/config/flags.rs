//! Upstream's command-line flags (docs/compatibility.md, "Command-line flags"), so the operator's container
//! arguments work unchanged. A flag overrides the file and the environment only when it is
//! given, which is why every setting is an `Option`. Boolean flags read like Go's `pflag`:
//! `--flag`, `--flag=true`, `--flag=false` (also `1`, `t`, `F`, ...), never `--flag false`.
//! The controller-runtime zap flags are accepted and mapped to our log level.

use std::path::PathBuf;

/// Upstream's default `--config-file`.
pub const DEFAULT_CONFIG_FILE: &str = "/conf/targetallocator.yaml";

#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFlags {
    /// The configuration file.
    #[arg(long = "config-file", default_value = DEFAULT_CONFIG_FILE)]
    pub config_file: PathBuf,
    /// Plain HTTP listen address (overrides `listen_addr`).
    #[arg(long = "listen-addr")]
    pub listen_addr: Option<String>,
    /// Watch Prometheus CRs (overrides `prometheus_cr.enabled`).
    #[arg(long = "enable-prometheus-cr-watcher", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_prometheus_cr_watcher: Option<bool>,
    /// Kubeconfig file (overrides `kube_config_file_path`).
    #[arg(long = "kubeconfig-path")]
    pub kubeconfig_path: Option<String>,
    /// Serve the mTLS listener (overrides `https.enabled`).
    #[arg(long = "enable-https-server", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub enable_https_server: Option<bool>,
    /// mTLS listen address (overrides `https.listen_addr`).
    #[arg(long = "listen-addr-https")]
    pub listen_addr_https: Option<String>,
    /// CA of client certificates (overrides `https.ca_file_path`).
    #[arg(long = "https-ca-file")]
    pub https_ca_file: Option<String>,
    /// Server certificate (overrides `https.tls_cert_file_path`).
    #[arg(long = "https-tls-cert-file")]
    pub https_tls_cert_file: Option<String>,
    /// Server key (overrides `https.tls_key_file_path`).
    #[arg(long = "https-tls-key-file")]
    pub https_tls_key_file: Option<String>,
    /// Serve secrets over plain HTTP (overrides `allow_insecure_auth_secrets`).
    #[arg(long = "allow-insecure-auth-secrets", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_insecure_auth_secrets: Option<bool>,
    /// Development logging (zap): debug level.
    #[arg(long = "zap-devel", value_parser = parse_go_bool, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub zap_devel: Option<bool>,
    /// Log encoding (zap): json or console. Accepted for compatibility.
    #[arg(long = "zap-encoder", value_parser = ["json", "console"])]
    pub zap_encoder: Option<String>,
    /// Log level (zap): debug, info, error, panic, or a verbosity integer > 0.
    #[arg(long = "zap-log-level", value_parser = parse_zap_level)]
    pub zap_log_level: Option<String>,
    /// Level from which zap adds stack traces: info, error or panic. Accepted for compatibility.
    #[arg(long = "zap-stacktrace-level", value_parser = ["info", "error", "panic"])]
    pub zap_stacktrace_level: Option<String>,
    /// Time encoding (zap). Accepted for compatibility.
    #[arg(long = "zap-time-encoding", value_parser = ["epoch", "millis", "nano", "iso8601", "rfc3339", "rfc3339nano"])]
    pub zap_time_encoding: Option<String>,
}

impl Default for UpstreamFlags {
    fn default() -> Self {
        UpstreamFlags {
            config_file: PathBuf::from(DEFAULT_CONFIG_FILE),
            listen_addr: None,
            enable_prometheus_cr_watcher: None,
            kubeconfig_path: None,
            enable_https_server: None,
            listen_addr_https: None,
            https_ca_file: None,
            https_tls_cert_file: None,
            https_tls_key_file: None,
            allow_insecure_auth_secrets: None,
            zap_devel: None,
            zap_encoder: None,
            zap_log_level: None,
            zap_stacktrace_level: None,
            zap_time_encoding: None,
        }
    }
}

impl UpstreamFlags {
    /// The `tracing` level the zap flags ask for, if any: `--zap-log-level` first, then
    /// `--zap-devel` (debug). zap's `panic` is our `error`; verbosity `1` is `debug`, more is
    /// `trace`.
    pub fn log_level(&self) -> Option<&'static str> {
        match self.zap_log_level.as_deref() {
            Some("debug") => return Some("debug"),
            Some("info") => return Some("info"),
            Some("error") | Some("panic") => return Some("error"),
            Some(other) => {
                return match other.parse::<u8>() {
                    Ok(1) => Some("debug"),
                    Ok(_) => Some("trace"),
                    Err(_) => None,
                };
            }
            None => {}
        }
        self.zap_devel.filter(|devel| *devel).map(|_| "debug")
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not a boolean (true or false)")),
    }
}

fn parse_zap_level(value: &str) -> Result<String, String> {
    match value {
        "debug" | "info" | "error" | "panic" => Ok(value.to_string()),
        other if other.parse::<u8>().is_ok_and(|n| n > 0) => Ok(other.to_string()),
        other => Err(format!(
            "{other:?} is not a zap level (debug, info, error, panic, or an integer > 0)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Harness {
        #[command(flatten)]
        flags: UpstreamFlags,
    }

    fn parse(args: &[&str]) -> UpstreamFlags {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Harness::try_parse_from(all).expect("flags parse").flags
    }

    #[test]
    fn nothing_given_overrides_nothing() {
        assert_eq!(parse(&[]), UpstreamFlags::default());
    }

    #[test]
    fn boolean_flags_read_like_pflag() {
        assert_eq!(parse(&["--enable-https-server"]).enable_https_server, Some(true));
        assert_eq!(parse(&["--enable-https-server=false"]).enable_https_server, Some(false));
        assert_eq!(
            parse(&["--allow-insecure-auth-secrets=1"]).allow_insecure_auth_secrets,
            Some(true)
        );
        let mut all = vec!["test", "--enable-prometheus-cr-watcher=maybe"];
        assert!(Harness::try_parse_from(all.drain(..)).is_err());
    }

    #[test]
    fn zap_flags_map_to_a_log_level() {
        assert_eq!(parse(&["--zap-log-level=debug"]).log_level(), Some("debug"));
        assert_eq!(parse(&["--zap-log-level", "3"]).log_level(), Some("trace"));
        assert_eq!(parse(&["--zap-devel"]).log_level(), Some("debug"));
        assert_eq!(
            parse(&["--zap-encoder=json", "--zap-time-encoding=rfc3339"]).log_level(),
            None
        );
    }
}
