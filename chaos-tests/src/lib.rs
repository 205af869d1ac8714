//! The chaos suite of the highly-available target allocator: real faults injected into a real
//! cluster while targets and collectors churn, every replica watched the way collectors watch
//! it, and the invariants (docs/architecture.md, "Invariants") checked on what was seen. It treats the service as a
//! black box: it depends on nothing of the workspace, only on the HTTP API.
//!
//! ```text
//!  backend (docker, netns) ── faults ──────────────┐
//!  workload (file_sd targets, collectors) ─────────┼─► History ─► check ─► Report ─► JSON
//!  poller (/scrape_configs, /jobs, …/targets) ─────┘                              └► Markdown
//! ```
//!
//! - [`backend`]: where replicas run (docker, netns) and the faults done to them;
//! - [`cluster_config`]: each replica's config, from the same settings the checker judges by;
//! - [`workload`]: target churn through a `file_sd` file, and collectors joining and leaving;
//! - [`poller`]: every replica polled as collectors poll it, one view per poll;
//! - [`faults`]: the named faults and the seeded schedules that compose them;
//! - [`run`]: one run, start to verdict; [`cluster`] and [`recorder`] serve it;
//! - [`history`], [`checker`] ([`check`]) and [`report`]: what was seen, judged against I1,
//!   I2, I3, I4, I6 and liveness, with failover, convergence and availability measured — a pure
//!   library, no runtime and no IO, unit-tested on synthetic histories;
//! - [`timeline`]: the run drawn as an SVG.
//!
//! docs/chaos.md says how to run it and what each check means.

pub mod backend;
pub mod checker;
pub mod cluster;
pub mod cluster_config;
pub mod faults;
pub mod history;
pub mod poller;
pub mod recorder;
pub mod report;
pub mod run;
mod seconds;
pub mod shutdown;
pub mod timeline;
pub mod workload;

pub use checker::check;
pub use history::History;
pub use report::Report;
