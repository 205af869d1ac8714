//! Service discovery: where targets come from. Each configured source of a job (one entry
//! of `static_configs`, `file_sd_configs`, `http_sd_configs`, `dns_sd_configs`, and later
//! Kubernetes) runs as one [`Provider`] task that owns its state and publishes complete
//! snapshots of its target groups through a `watch` channel, with a flag saying whether its
//! first full sync is done. The leader must not treat "nothing discovered yet" as "everything
//! gone" (DESIGN.md I7), so consumers wait for [`ProviderSnapshot::synced`] on every source.
//!
//! Groups are shared (`Arc`): a provider republishes unchanged groups as the same `Arc`, so
//! downstream processing can skip them by pointer identity.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use ta_raft::intern::Interner;
pub use ta_raft::intern::Symbol;
pub use ta_raft::model::Labels;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// One target group, as Prometheus's `targetgroup.Group`. Label strings are interned
/// (`Interner`, one per provider): at scale most names and values repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Identifies the group within its provider (Prometheus `Source`), e.g. `path/to/file.json:0`.
    pub source: String,
    /// Each target's own labels (`__address__` at least).
    pub targets: Vec<Labels>,
    /// Labels common to the group; a target's own label wins on a clash.
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
    /// A source this build keeps for serving (`/scrape_configs`) but does not run yet, by
    /// its Prometheus key (`kubernetes_sd_configs`, ...). Reported by `check-config`.
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
