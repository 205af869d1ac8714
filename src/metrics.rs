//! The allocator's own metrics on `/metrics`: upstream's names and labels
//! (docs/compatibility.md, "Metrics"), so dashboards built for upstream keep working, plus ours for the
//! replicated table (Raft term, leadership, indexes, apply lag, moves by reason).
//!
//! Raft positions are read when `/metrics` is scraped, not pushed, so they are never stale.

use prometheus::Encoder;
use prometheus::Gauge;
use prometheus::GaugeVec;
use prometheus::Histogram;
use prometheus::HistogramOpts;
use prometheus::HistogramVec;
use prometheus::IntCounterVec;
use prometheus::IntGauge;
use prometheus::Opts;
use prometheus::Registry;
use ta_raft::ReplicaStatus;

/// The OTel SDK's default histogram boundaries, which upstream's histograms use.
const SDK_DEFAULT_BUCKETS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0,
];
const PROCESSING_BUCKETS: [f64; 6] = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Our HTTP latency histogram: fine enough to see a millisecond budget.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// Every metric the service records.
pub struct Metrics {
    registry: Registry,
    pub targets_per_job: GaugeVec,
    pub targets_remaining: Gauge,
    pub targets_per_collector: GaugeVec,
    pub targets_unassigned: Gauge,
    pub collectors_allocatable: GaugeVec,
    pub collectors_discovered: Gauge,
    pub time_to_allocate: HistogramVec,
    pub process_targets_duration: Histogram,
    pub process_target_groups_duration: HistogramVec,
    pub http_duration: HistogramVec,
    pub events: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub raft_term: IntGauge,
    pub raft_is_leader: IntGauge,
    pub raft_committed_index: IntGauge,
    pub raft_applied_index: IntGauge,
    pub raft_apply_lag: IntGauge,
    pub raft_stale: IntGauge,
    pub table_revision: IntGauge,
    pub targets_moved: IntCounterVec,
    pub plans: IntCounterVec,
    pub kubernetes_watch_errors: IntCounterVec,
    pub targets_refused: GaugeVec,
    pub limit_exceeded: GaugeVec,
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let gauge = GaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are static");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric names are unique");
    gauge
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("metric definitions are static");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric names are unique");
    gauge
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::new(name, help).expect("metric definitions are static");
    registry
        .register(Box::new(gauge.clone()))
        .expect("metric names are unique");
    gauge
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    let histogram = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        .expect("metric definitions are static");
    registry
        .register(Box::new(histogram.clone()))
        .expect("metric names are unique");
    histogram
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definitions are static");
    registry
        .register(Box::new(counter.clone()))
        .expect("metric names are unique");
    counter
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        {
            let process = prometheus::process_collector::ProcessCollector::for_self();
            let _ = registry.register(Box::new(process));
        }
        let r = &registry;
        let process_targets_duration = Histogram::with_opts(
            HistogramOpts::new(
                "opentelemetry_allocator_process_targets_duration_seconds",
                "Wall time of processing all discovered targets once.",
            )
            .buckets(PROCESSING_BUCKETS.to_vec()),
        )
        .expect("metric definitions are static");
        registry
            .register(Box::new(process_targets_duration.clone()))
            .expect("metric names are unique");
        Self {
            targets_per_job: gauge_vec(
                r,
                "opentelemetry_allocator_targets",
                "Targets seen per job in the last processing, before filtering.",
                &["job_name"],
            ),
            targets_remaining: gauge(
                r,
                "opentelemetry_allocator_targets_remaining",
                "Targets to allocate after filtering.",
            ),
            targets_per_collector: gauge_vec(
                r,
                "opentelemetry_allocator_targets_per_collector",
                "Targets assigned to each collector.",
                &["collector_name", "strategy"],
            ),
            targets_unassigned: gauge(
                r,
                "opentelemetry_allocator_targets_unassigned",
                "Targets no collector could take.",
            ),
            collectors_allocatable: gauge_vec(
                r,
                "opentelemetry_allocator_collectors_allocatable",
                "Collectors that may own targets.",
                &["strategy"],
            ),
            collectors_discovered: gauge(
                r,
                "opentelemetry_allocator_collectors_discovered",
                "Collectors discovered (static, registered on poll, or from Kubernetes).",
            ),
            time_to_allocate: histogram_vec(
                r,
                "opentelemetry_allocator_time_to_allocate",
                "Time to plan an allocation, seconds.",
                &SDK_DEFAULT_BUCKETS,
                &["method", "strategy"],
            ),
            process_targets_duration,
            process_target_groups_duration: histogram_vec(
                r,
                "opentelemetry_allocator_process_target_groups_duration_seconds",
                "Wall time of processing one job's target groups.",
                &PROCESSING_BUCKETS,
                &["job_name"],
            ),
            http_duration: histogram_vec(
                r,
                "opentelemetry_allocator_http_duration_seconds",
                "HTTP request duration by route, seconds (upstream buckets).",
                &SDK_DEFAULT_BUCKETS,
                &["path"],
            ),
            events: counter_vec(
                r,
                "opentelemetry_allocator_events_total",
                "Configuration events by source.",
                &["source"],
            ),
            http_request_duration: histogram_vec(
                r,
                "target_allocator_http_request_duration_seconds",
                "HTTP request duration by route, seconds (fine buckets).",
                &LATENCY_BUCKETS,
                &["path"],
            ),
            raft_term: int_gauge(r, "target_allocator_raft_term", "Current Raft term."),
            raft_is_leader: int_gauge(r, "target_allocator_raft_leader", "1 when this replica is the leader."),
            raft_committed_index: int_gauge(
                r,
                "target_allocator_raft_committed_index",
                "Highest log index known committed.",
            ),
            raft_applied_index: int_gauge(
                r,
                "target_allocator_raft_applied_index",
                "Highest log index applied to the table.",
            ),
            raft_apply_lag: int_gauge(
                r,
                "target_allocator_raft_apply_lag",
                "Committed entries not yet applied on this replica.",
            ),
            raft_stale: int_gauge(
                r,
                "target_allocator_stale",
                "1 while this replica is out of contact with a leader beyond its lease (serving 503).",
            ),
            table_revision: int_gauge(
                r,
                "target_allocator_table_revision",
                "Revision of the table this replica serves.",
            ),
            targets_moved: counter_vec(
                r,
                "target_allocator_targets_moved_total",
                "Targets given another collector by plans this replica proposed, by reason.",
                &["reason"],
            ),
            plans: counter_vec(
                r,
                "target_allocator_plans_total",
                "Plans proposed by this replica as leader, by outcome.",
                &["outcome"],
            ),
            kubernetes_watch_errors: counter_vec(
                r,
                "target_allocator_kubernetes_watch_errors_total",
                "Failed Kubernetes lists and watches, by resource and reason (forbidden, expired, other).",
                &["resource", "reason"],
            ),
            targets_refused: gauge_vec(
                r,
                "target_allocator_targets_refused",
                "Discovered targets of each job refused by limits.max_label_bytes or limits.max_labels_per_target (leader only).",
                &["job_name"],
            ),
            limit_exceeded: gauge_vec(
                r,
                "target_allocator_limit_exceeded",
                "1 while a limit is exceeded (max_targets: no target change is planned; the last good assignment is served).",
                &["limit"],
            ),
            registry,
        }
    }

    /// Create the series that only a leader records, so every replica exposes them from the
    /// start (at zero).
    pub fn create_leader_series(&self, strategy: &str) {
        for reason in ["rebalance", "reassigned"] {
            self.targets_moved.with_label_values(&[reason]);
        }
        for outcome in ["applied", "rejected"] {
            self.plans.with_label_values(&[outcome]);
        }
        for method in ["SetTargets", "SetCollectors"] {
            self.time_to_allocate.with_label_values(&[method, strategy]);
        }
    }

    /// Record the Raft position (done just before each scrape).
    pub fn observe_raft(&self, status: &ReplicaStatus) {
        let to_i64 = |value: Option<u64>| value.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        self.raft_term.set(i64::try_from(status.term).unwrap_or(i64::MAX));
        self.raft_is_leader
            .set(i64::from(status.role == openraft::ServerState::Leader));
        self.raft_committed_index.set(to_i64(status.committed));
        self.raft_applied_index.set(to_i64(status.applied));
        self.raft_apply_lag
            .set(to_i64(status.committed).saturating_sub(to_i64(status.applied)).max(0));
        self.raft_stale.set(i64::from(status.stale));
        self.table_revision
            .set(i64::try_from(status.revision).unwrap_or(i64::MAX));
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let encoder = prometheus::TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%e, "metrics encoding failed");
        }
        out
    }
}
