//! Everything that talks to the Kubernetes API server. Each watched resource has one owning
//! task built on kube-runtime's `watcher` (a lost watch resumes from its `resourceVersion`,
//! an expired one relists, errors back off), which keeps its own cache and publishes a
//! complete view on a `watch` channel with a `synced` flag, like discovery's providers: a
//! consumer never mistakes "not listed yet" for "nothing there" (docs/architecture.md, invariant I7).
//!
//! - [`client`]: which configuration to connect with, and the client.
//! - [`collector_pod`]: the pure mapping from a pod to a collector (docs/architecture.md, "Kubernetes collector discovery").
//! - [`collectors`]: the collector pod watcher and its published view.
//! - [`prometheus_cr`]: ServiceMonitors and PodMonitors turned into jobs.
//! - [`watch_error`]: what a watch failure means and how it is reported.

pub mod client;
pub mod collector_pod;
pub mod collectors;
pub mod prometheus_cr;
pub mod watch_error;
