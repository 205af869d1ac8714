//! Prometheus CR discovery (docs/architecture.md, "Prometheus CRs"): ServiceMonitors and PodMonitors
//! (`monitoring.coreos.com/v1`) turned into scrape jobs named and shaped like
//! prometheus-operator's, which join the file's jobs.
//!
//! - [`spec`]: the monitor fields the generator reads.
//! - [`selection`]: which monitors are selected (monitor and namespace selectors,
//!   allow/deny namespaces).
//! - [`credentials`]: Secret and ConfigMap keys monitors reference, inlined into jobs.
//! - [`generate`]: the pure generator, and the parse of its output by the file's parser.
//! - [`watcher`]: the task watching monitors and publishing the generated jobs.
//! - [`combined`]: the file's jobs and the generated ones as one job set and one discovery view.

pub mod combined;
pub mod credentials;
pub mod generate;
pub mod selection;
pub mod spec;
pub mod watcher;
