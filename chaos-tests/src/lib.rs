//! The chaos suite of the highly-available target allocator: real faults injected into a real
//! cluster while targets and collectors churn, every replica watched the way collectors watch
//! it, and the invariants of DESIGN.md checked on what was seen. It treats the service as a
//! black box: it depends on nothing of the workspace, only on the HTTP API.
//!
//! ```text
//!  backend (docker, netns) ── faults ──────────────┐
//!  workload (file_sd targets, collectors) ─────────┼─► History ─► check ─► Report ─► JSON
//!  poller (/scrape_configs, /jobs, …/targets) ─────┘                              └► Markdown
//! ```
//!
//! Built so far, as a pure library with no runtime and no IO:
//!
//! - [`history`]: what a run records (polls, faults, workload changes, parameters);
//! - [`checker`]: [`check`], judging a history against I1, I2, I3, I4, I6 and liveness, and
//!   measuring failover, convergence and availability;
//! - [`report`]: the verdict, serialisable to JSON and rendered to Markdown.
//!
//! Not built yet: the backends, the poller, the workload, the faults and their schedules, the
//! command-line binary and the CI profile. docs/chaos.md says what each check means.

pub mod checker;
pub mod history;
pub mod report;
mod seconds;

pub use checker::check;
pub use history::History;
pub use report::Report;
