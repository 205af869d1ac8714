//! `target-allocator check-config FILE`: load a configuration as a replica would, print every
//! problem and warning as `FILE:LINE: key.path: message`, and on success a summary of what
//! the allocator would run. Exit codes follow sysexits: 0 valid, 64 invalid, 66 unreadable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::Config;
use super::Environment;
use super::LoadError;
use super::UpstreamFlags;
use crate::allocation::StrategyName;
use crate::allocation::consistent_hashing::RingLayout;
use crate::discovery::ServiceDiscoveryConfig;

pub const EXIT_VALID: u8 = 0;
pub const EXIT_INVALID: u8 = 64;
pub const EXIT_UNREADABLE: u8 = 66;

/// Settings of `target-allocator check-config`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckConfigArgs {
    /// The file to check (default: `--config-file`).
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub upstream: UpstreamFlags,
}

/// Run the command with the process environment, printing to stdout and stderr.
pub fn run(args: &CheckConfigArgs) -> ExitCode {
    let path = args.file.clone().unwrap_or_else(|| args.upstream.config_file.clone());
    let code = check(
        &path,
        &args.upstream,
        &super::process_environment,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// Check `path`; the summary goes to `out`, problems and warnings to `err`.
pub fn check(path: &Path, flags: &UpstreamFlags, env: Environment, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // Output errors (a closed pipe) cannot change the verdict, so they are ignored.
    match super::load_file(path, flags, env) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            let _ = write!(out, "{}", summary(&path.display().to_string(), &loaded.config));
            EXIT_VALID
        }
        Err(LoadError::Invalid { problems, warnings }) => {
            for warning in &warnings {
                let _ = writeln!(err, "warning: {warning}");
            }
            for problem in &problems {
                let _ = writeln!(err, "{problem}");
            }
            let _ = writeln!(
                err,
                "{}: {} problem(s); the configuration is invalid",
                path.display(),
                problems.len()
            );
            EXIT_INVALID
        }
        Err(unreadable @ LoadError::Unreadable { .. }) => {
            let _ = writeln!(err, "{unreadable}");
            EXIT_UNREADABLE
        }
    }
}

fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("{count} {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// What the allocator would run with this configuration.
pub fn summary(file: &str, config: &Config) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{file}: valid");
    let jobs = config.scrape_configs();
    let _ = writeln!(
        text,
        "jobs: {}{}",
        jobs.len(),
        if config.prometheus_cr.enabled {
            " (plus jobs from Prometheus CRs)"
        } else {
            ""
        }
    );
    for job in jobs {
        let mut sources: BTreeMap<String, usize> = BTreeMap::new();
        for source in &job.discovery {
            let (kind, count) = match source {
                ServiceDiscoveryConfig::Static(groups) => {
                    ("static".to_string(), groups.iter().map(|g| g.targets.len()).sum())
                }
                ServiceDiscoveryConfig::File(_) => ("file_sd".to_string(), 1),
                ServiceDiscoveryConfig::Http(_) => ("http_sd".to_string(), 1),
                ServiceDiscoveryConfig::Dns(_) => ("dns_sd".to_string(), 1),
                ServiceDiscoveryConfig::Kubernetes(kubernetes) => (super::kubernetes_sd::summary_name(kubernetes), 1),
                ServiceDiscoveryConfig::Unsupported { key } => (format!("{key} (not run by this build)"), 1),
            };
            *sources.entry(kind).or_default() += count;
        }
        let sources = if sources.is_empty() {
            "no discovery".to_string()
        } else {
            sources
                .iter()
                .map(|(kind, count)| {
                    if kind == "static" {
                        format!("static: {}", plural(*count, "target"))
                    } else {
                        format!("{kind}: {count}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            text,
            "  {}: {}; {}",
            job.job.name,
            sources,
            plural(job.job.rules.len(), "relabel rule")
        );
    }
    let settings = &config.strategy;
    let mut strategy = settings.strategy.as_str().to_string();
    if let Some(fallback) = settings.fallback {
        let _ = write!(strategy, ", fallback {}", fallback.as_str());
    }
    match settings.strategy {
        StrategyName::ConsistentHashing => {
            let layout = match settings.ring_layout {
                RingLayout::V1 => "v1.0.0",
                RingLayout::V0_10 => "v0.10.0",
            };
            let _ = write!(strategy, " (ring layout {layout})");
        }
        StrategyName::Balanced => {
            let moves = settings
                .balanced
                .max_moves_per_minute
                .map_or("unlimited".to_string(), |m| m.to_string());
            let cap = settings
                .balanced
                .max_targets_per_collector
                .map_or("none".to_string(), |m| m.to_string());
            let _ = write!(
                strategy,
                " (max moves per minute: {moves}, max targets per collector: {cap})"
            );
        }
        StrategyName::LeastWeighted | StrategyName::PerNode => {}
    }
    let _ = writeln!(text, "strategy: {strategy}");
    let _ = writeln!(
        text,
        "filter strategy: {}",
        if config.filter_strategy_name.is_empty() {
            "\"\" (filtering off)".to_string()
        } else {
            config.filter_strategy_name.clone()
        }
    );
    let collectors = &config.collectors;
    if collectors.uses_kubernetes() {
        let selector = match &config.collector_selector {
            Some(selector) => format!("selector {:?}", selector.to_selector_string()),
            None => "no selector: every pod".to_string(),
        };
        let _ = writeln!(
            text,
            "collectors: kubernetes pods in namespace {:?}, {selector}",
            config.collector_namespace
        );
    } else {
        if !collectors.static_ids.is_empty() {
            let _ = writeln!(text, "collectors: static: {}", collectors.static_ids.join(", "));
        }
        if collectors.register_on_poll.enabled {
            let _ = writeln!(
                text,
                "collectors: register on poll (ttl {})",
                crate::go_duration::format(collectors.register_on_poll.ttl)
            );
        }
    }
    match &config.cluster {
        Some(cluster) => {
            let peers = cluster
                .peers
                .iter()
                .map(|(name, url)| format!("{name}={url}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(text, "cluster: this replica {:?}, peers: {peers}", cluster.name);
        }
        None => {
            let _ = writeln!(
                text,
                "cluster: no cluster section: single replica {:?}",
                config.host_name
            );
        }
    }
    text
}
