//! Service discovery: where targets come from. Each configured source of a job (one entry
//! of `static_configs`, `file_sd_configs`, `http_sd_configs`, `dns_sd_configs`,
//! `kubernetes_sd_configs`) runs as one [`Provider`] task that owns its state and publishes complete
//! snapshots of its target groups through a `watch` channel, with a flag saying whether its
//! first full sync is done. The leader must not treat "nothing discovered yet" as "everything
//! gone" (docs/architecture.md, I7), so consumers wait for [`ProviderSnapshot::synced`] on every source.
//!
//! Groups are shared (`Arc`): a provider republishes unchanged groups as the same `Arc`, so
//! downstream processing can skip them by pointer identity.

pub mod dns_sd;
pub mod file_sd;
pub mod gate;
pub mod group_list;
pub mod http_sd;
pub mod kubernetes_sd;
pub mod manager;
pub mod static_sd;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use kubernetes_sd::KubernetesSdConfig;
pub use ta_raft::intern::Interner;
pub use ta_raft::intern::Symbol;
pub use ta_raft::model::Labels;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Identifies a group within its provider (Prometheus `Source`), e.g. `path/to/file.json:0`.
///
/// A file of a million one-target groups has a million sources that differ only in their
/// index; kept as text they were 8% of a leader's memory (shape S, 100k). So a source is a
/// shared prefix and an optional index, `"{prefix}:{index}"` when it has one. Equality is by
/// that pair: a provider names its groups one way, so equal texts are equal pairs.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct GroupSource {
    prefix: Arc<str>,
    index: Option<u32>,
}

impl GroupSource {
    /// `"{prefix}:{index}"`, sharing `prefix` with the other groups of one file.
    pub fn indexed(prefix: &Arc<str>, index: usize) -> Self {
        match u32::try_from(index) {
            Ok(index) => Self {
                prefix: Arc::clone(prefix),
                index: Some(index),
            },
            // Four billion groups in one file: beyond any limit, but never wrong.
            Err(_) => Self::from(format!("{prefix}:{index}")),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self.index {
            None => *self.prefix == *text,
            Some(index) => text
                .strip_prefix(&*self.prefix)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|digits| {
                    // The text `index` formats to: no sign, no leading zero.
                    digits.parse::<u32>().ok() == Some(index)
                        && !digits.starts_with('+')
                        && (digits.len() == 1 || !digits.starts_with('0'))
                }),
        }
    }
}

impl From<String> for GroupSource {
    fn from(text: String) -> Self {
        Self {
            prefix: text.into(),
            index: None,
        }
    }
}

impl From<&str> for GroupSource {
    fn from(text: &str) -> Self {
        Self {
            prefix: text.into(),
            index: None,
        }
    }
}

impl std::fmt::Display for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            None => f.write_str(&self.prefix),
            Some(index) => write!(f, "{}:{index}", self.prefix),
        }
    }
}

impl std::fmt::Debug for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

impl PartialEq<str> for GroupSource {
    fn eq(&self, other: &str) -> bool {
        self.matches(other)
    }
}

impl PartialEq<&str> for GroupSource {
    fn eq(&self, other: &&str) -> bool {
        self.matches(other)
    }
}

impl PartialEq<String> for GroupSource {
    fn eq(&self, other: &String) -> bool {
        self.matches(other)
    }
}

/// One target group, as Prometheus's `targetgroup.Group`. Label strings are interned
/// (`Interner`, one per provider): at scale most names and values repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Identifies the group within its provider.
    pub source: GroupSource,
    /// Each target's own labels (`__address__` at least).
    pub targets: Vec<Labels>,
    /// Labels common to the group; a target's own label wins on a clash. Only the merge of
    /// the two is meaningful: a list of one-target groups keeps part of each group's labels
    /// with its target instead (docs/architecture.md, "Memory layout").
    pub labels: Labels,
}

/// Everything one provider currently knows.
#[derive(Debug, Clone, Default)]
pub struct ProviderSnapshot {
    /// All current groups of the provider (a complete view, not a delta).
    pub groups: Arc<Vec<Arc<TargetGroup>>>,
    /// True once the provider has completed its first full discovery round (even if that
    /// round found nothing or failed and was reported).
    pub synced: bool,
    /// The last problem, if the latest round failed; the groups are then the last good ones.
    pub last_error: Option<String>,
}

/// The configuration of one discovery source of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceDiscoveryConfig {
    /// `static_configs`: fixed groups, synced at once.
    Static(Vec<TargetGroup>),
    File(FileSdConfig),
    Http(HttpSdConfig),
    Dns(DnsSdConfig),
    Kubernetes(KubernetesSdConfig),
    /// A source this build keeps for serving (`/scrape_configs`) but does not run yet, by
    /// its Prometheus key (`consul_sd_configs`, ...). Reported by `check-config`.
    Unsupported {
        key: String,
    },
}

/// `file_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSdConfig {
    /// Paths; the last path component may be a glob (`*.json`, `*.yaml`, `*.yml`).
    pub files: Vec<String>,
    /// Re-read interval besides file-change notifications (Prometheus default 5m).
    pub refresh_interval: Duration,
}

/// `http_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSdConfig {
    pub url: String,
    /// Poll interval (Prometheus default 60s).
    pub refresh_interval: Duration,
}

/// DNS record type of a `dns_sd_configs` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsRecordType {
    #[default]
    Srv,
    A,
    Aaaa,
}

/// `dns_sd_configs` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    pub record_type: DnsRecordType,
    /// Required for A and AAAA, ignored for SRV.
    pub port: Option<u16>,
    /// Prometheus default 30s.
    pub refresh_interval: Duration,
}

/// A running discovery source.
pub trait Provider: Send + 'static {
    /// Run until `shutdown` is cancelled, publishing complete snapshots on `publish`.
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// Rounds that read and parse whole files or bodies at once, across all providers: each
/// holds its input and the groups it builds, so ten jobs refreshing together would hold ten
/// inputs. Two keep both cores busy at start.
pub(crate) static PARSE_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The label holding a target's address.
pub const ADDRESS_LABEL: &str = "__address__";

/// Whether `name` may be a label name in discovered target groups. Prometheus 3 (which the
/// collector's receiver embeds) validates names with its UTF-8 scheme: any non-empty valid
/// UTF-8 string, and a Rust `str` is always valid UTF-8.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// The groups of a fresh discovery round, reusing the previous round's `Arc` for every group
/// whose source and content did not change, so consumers can skip it by pointer.
pub(crate) fn share_unchanged(previous: &[Arc<TargetGroup>], fresh: Vec<TargetGroup>) -> Vec<Arc<TargetGroup>> {
    let by_source: HashMap<&GroupSource, &Arc<TargetGroup>> =
        previous.iter().map(|group| (&group.source, group)).collect();
    fresh
        .into_iter()
        .map(|group| match by_source.get(&group.source) {
            Some(old) if ***old == group => Arc::clone(old),
            _ => Arc::new(group),
        })
        .collect()
}

/// Publish a completed round (so `synced` is set), unless it is exactly what subscribers
/// already have: an unchanged round must not wake the whole pipeline.
pub(crate) fn publish_round(
    publish: &watch::Sender<ProviderSnapshot>,
    groups: Vec<Arc<TargetGroup>>,
    last_error: Option<String>,
) {
    publish.send_if_modified(|current| {
        let unchanged = current.synced
            && current.last_error == last_error
            && current.groups.len() == groups.len()
            && current.groups.iter().zip(&groups).all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return false;
        }
        *current = ProviderSnapshot {
            groups: Arc::new(groups),
            synced: true,
            last_error,
        };
        true
    });
}

/// An error with its chain of causes on one line: client libraries (reqwest, hickory) keep
/// the useful part ("connection refused") in the source, not in the top-level message.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A `tokio` interval for periodic refreshes: the first tick is one period away (the caller
/// has just refreshed), and a late tick is not followed by a burst of catch-up ticks.
pub(crate) fn refresh_ticker(period: Duration) -> tokio::time::Interval {
    // A zero period would make `interval_at` panic; a config loader rejects it, but a
    // provider must not trust that.
    let period = period.max(Duration::from_millis(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indexed_source_reads_and_compares_as_its_text() {
        let prefix: Arc<str> = "/etc/sd/a.json".into();
        let source = GroupSource::indexed(&prefix, 12);
        assert_eq!(source.to_string(), "/etc/sd/a.json:12");
        assert_eq!(format!("{source:?}"), "\"/etc/sd/a.json:12\"");
        assert!(source == "/etc/sd/a.json:12");
        for other in [
            "/etc/sd/a.json:012",
            "/etc/sd/a.json:+12",
            "/etc/sd/a.json:1",
            "/etc/sd/a.json12",
            "/etc/sd/a.json",
        ] {
            assert!(source != other, "{other}");
        }
        assert!(GroupSource::indexed(&prefix, 0) == "/etc/sd/a.json:0");
        assert_eq!(GroupSource::from("pod/ns/p"), GroupSource::from("pod/ns/p".to_string()));
        let text = GroupSource::from("pod/ns/p");
        assert!(text == "pod/ns/p" && text != "pod/ns/q");
    }

    fn group(source: &str, address: &str) -> TargetGroup {
        let mut interner = Interner::default();
        TargetGroup {
            source: source.into(),
            targets: vec![Labels::new(vec![(
                interner.intern(ADDRESS_LABEL),
                interner.intern(address),
            )])],
            labels: Labels::default(),
        }
    }

    #[test]
    fn an_unchanged_group_keeps_its_allocation_and_a_changed_one_gets_a_new_one() {
        let previous = vec![Arc::new(group("a", "1.1.1.1:80")), Arc::new(group("b", "2.2.2.2:80"))];
        let fresh = share_unchanged(&previous, vec![group("a", "1.1.1.1:80"), group("b", "3.3.3.3:80")]);
        assert!(Arc::ptr_eq(&fresh[0], &previous[0]));
        assert!(!Arc::ptr_eq(&fresh[1], &previous[1]));
    }

    #[test]
    fn republishing_the_same_round_does_not_notify_subscribers() {
        let (sender, mut receiver) = watch::channel(ProviderSnapshot::default());
        let groups = vec![Arc::new(group("a", "1.1.1.1:80"))];
        publish_round(&sender, groups.clone(), None);
        assert!(receiver.has_changed().unwrap_or(false));
        receiver.borrow_and_update();
        publish_round(&sender, groups.clone(), None);
        assert!(!receiver.has_changed().unwrap_or(true));
        publish_round(&sender, groups, Some("boom".into()));
        assert!(receiver.has_changed().unwrap_or(false));
    }

    #[test]
    fn label_names_follow_the_utf8_scheme() {
        assert!(is_valid_label_name("__meta_x"));
        assert!(is_valid_label_name("service.name"));
        assert!(!is_valid_label_name(""));
    }
}
