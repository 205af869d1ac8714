//! The checker's verdict on one run: violations with what an operator needs to find them in
//! the replicas' logs (kind, replicas, time, revision, details), the measurements (failover,
//! convergence, availability), and the seed that reproduces the run. Serialised to JSON with
//! serde and rendered to Markdown by [`render_markdown`]; the report computes nothing itself.

mod markdown;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

pub use markdown::render_markdown;
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    /// How long the run was observed.
    #[serde(with = "crate::seconds")]
    pub duration: Duration,
    pub replicas: BTreeSet<String>,
    pub polls: usize,
    /// Distinct revisions served by any replica.
    pub revisions_seen: usize,
    pub faults: Vec<FaultSummary>,
    /// Sorted by time.
    pub violations: Vec<Violation>,
    pub availability: Availability,
    /// From a fault hitting the leader to the first poll naming another leader.
    pub failover: TimingSummary,
    /// One sample per healed fault.
    pub convergence: Vec<ConvergenceSample>,
    pub convergence_summary: TimingSummary,
    /// What the checker noticed about the history itself (an unmatched heal, targets added too
    /// late to judge); not violations of the service's invariants.
    pub notes: Vec<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn to_markdown(&self) -> String {
        render_markdown(self)
    }
}

/// One broken rule, located well enough to look it up in the replicas' logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The invariant it breaks (docs/architecture.md, "Invariants") (`I1` … `I6`, or `liveness`).
    pub invariant: String,
    pub replicas: Vec<String>,
    #[serde(with = "crate::seconds")]
    pub at: Duration,
    pub revision: Option<u64>,
    pub details: String,
}

impl Violation {
    pub fn new(
        kind: ViolationKind,
        replicas: impl IntoIterator<Item = impl Into<String>>,
        at: Duration,
        revision: Option<u64>,
        details: impl Into<String>,
    ) -> Self {
        Violation {
            kind,
            invariant: kind.invariant().to_string(),
            replicas: replicas.into_iter().map(Into::into).collect(),
            at,
            revision,
            details: details.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// I1: one view lists a target under two collectors.
    DoubleOwner,
    /// I2: two views at one revision assign differently.
    Disagreement,
    /// I3: a replica served a lower revision than it had served before.
    RevisionBackwards,
    /// I3: after a full restart a replica first served less than the cluster had before it.
    StateLostAfterFullRestart,
    /// I4: a target changed owner with no collector or target change to explain it.
    UnexplainedMove,
    /// I4: a target moved while a collector was away for less than the grace period.
    MoveWithinGrace,
    /// I6: a replica cut off from the leader served past its lease.
    StaleServing,
    /// I6: a replica served a revision older than one served more than the lease before.
    SupersededServing,
    /// Liveness: replicas had not caught up by the deadline after the last heal.
    NotConverged,
    /// Liveness: a collector gone past the grace period still held targets after the leader
    /// had time to react.
    DepartedCollectorKeptTargets,
    /// Liveness: a target the workload added was not served by its deadline.
    NewTargetUnassigned,
    /// Liveness could not be judged: a fault never healed, or the run ended before the
    /// convergence deadline. A run that cannot show liveness must not pass.
    LivenessUnjudged,
}

impl ViolationKind {
    pub fn invariant(self) -> &'static str {
        match self {
            ViolationKind::DoubleOwner => "I1",
            ViolationKind::Disagreement => "I2",
            ViolationKind::RevisionBackwards | ViolationKind::StateLostAfterFullRestart => "I3",
            ViolationKind::UnexplainedMove | ViolationKind::MoveWithinGrace => "I4",
            ViolationKind::StaleServing | ViolationKind::SupersededServing => "I6",
            ViolationKind::NotConverged
            | ViolationKind::NewTargetUnassigned
            | ViolationKind::DepartedCollectorKeptTargets
            | ViolationKind::LivenessUnjudged => "liveness",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ViolationKind::DoubleOwner => "double owner",
            ViolationKind::Disagreement => "disagreement",
            ViolationKind::RevisionBackwards => "revision backwards",
            ViolationKind::StateLostAfterFullRestart => "state lost after full restart",
            ViolationKind::UnexplainedMove => "unexplained move",
            ViolationKind::MoveWithinGrace => "move within grace period",
            ViolationKind::StaleServing => "stale serving",
            ViolationKind::SupersededServing => "superseded state served",
            ViolationKind::NotConverged => "not converged",
            ViolationKind::DepartedCollectorKeptTargets => "departed collector kept targets",
            ViolationKind::NewTargetUnassigned => "new target unassigned",
            ViolationKind::LivenessUnjudged => "liveness unjudged",
        };
        formatter.write_str(name)
    }
}

/// One injected fault and what it did to leadership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultSummary {
    pub name: String,
    pub affected: BTreeSet<String>,
    pub isolating: bool,
    #[serde(with = "crate::seconds")]
    pub started: Duration,
    #[serde(with = "crate::seconds::optional")]
    pub healed: Option<Duration>,
    /// The leader the fault hit, as the last poll before it named it.
    pub hit_leader: Option<String>,
    /// Time to the first poll naming another leader; `None` if the fault did not hit the
    /// leader or no other leader was seen before the fault's convergence deadline.
    #[serde(with = "crate::seconds::optional")]
    pub failover: Option<Duration>,
}

/// How long replicas took to catch up after one heal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceSample {
    pub fault: String,
    #[serde(with = "crate::seconds")]
    pub healed: Duration,
    /// `None` when the next fault began, or the run ended, first.
    #[serde(with = "crate::seconds::optional")]
    pub converged_after: Option<Duration>,
}

/// Percentiles by nearest rank over the samples that resolved.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimingSummary {
    pub samples: usize,
    #[serde(with = "crate::seconds::optional")]
    pub p50: Option<Duration>,
    #[serde(with = "crate::seconds::optional")]
    pub p99: Option<Duration>,
    #[serde(with = "crate::seconds::optional")]
    pub max: Option<Duration>,
}

impl TimingSummary {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return TimingSummary::default();
        }
        samples.sort();
        let rank = |quantile: f64| {
            let index = ((quantile * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[index]
        };
        TimingSummary {
            samples: samples.len(),
            p50: Some(rank(0.50)),
            p99: Some(rank(0.99)),
            max: samples.last().copied(),
        }
    }
}

/// Polls answered with an assignment, out of polls made.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Share {
    pub served: usize,
    pub polls: usize,
    /// `served / polls`, `None` without polls.
    pub ratio: Option<f64>,
}

impl Share {
    pub fn new(served: usize, polls: usize) -> Self {
        Share {
            served,
            polls,
            ratio: (polls > 0).then(|| served as f64 / polls as f64),
        }
    }
}

/// Availability is measured, not judged: a minority must go dark (I6), a majority should not.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Availability {
    pub overall: Share,
    pub per_replica: BTreeMap<String, Share>,
    /// Polls made while a fault was active, of replicas no active fault affected.
    pub majority_side_during_faults: Share,
}
