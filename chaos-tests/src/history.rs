//! The history of one chaos run as the harness saw it from outside: every poll of every
//! replica, every fault it injected and healed, every change its workload made, and the run's
//! parameters. The history holds facts only; judging them is the checker's job.
//!
//! Times are offsets from the start of the run, so a history is independent of clocks and can
//! be saved as JSON and checked again later.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;

/// A scrape target as collectors see it: its job and its address (`__address__`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetKey {
    pub job: String,
    pub address: String,
}

impl TargetKey {
    pub fn new(job: impl Into<String>, address: impl Into<String>) -> Self {
        TargetKey {
            job: job.into(),
            address: address.into(),
        }
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.job, self.address)
    }
}

/// The timings the checker judges against. They must match the configuration the replicas
/// and the harness ran with; the checker cannot discover them from outside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParameters {
    /// `collector_not_ready_grace_period`: a collector gone for less than this moves nothing.
    #[serde(with = "crate::seconds")]
    pub grace_period: Duration,
    /// How long a replica keeps serving without hearing from a leader (I6).
    #[serde(with = "crate::seconds")]
    pub lease: Duration,
    /// `coalesce_window`: how long the leader gathers changes before proposing one batch.
    #[serde(with = "crate::seconds")]
    pub coalesce_window: Duration,
    /// How often the poller asks each replica; an observation is up to this late.
    #[serde(with = "crate::seconds")]
    pub poll_interval: Duration,
    /// How long after a collector stops polling the allocator may first notice it gone (the
    /// `register_on_poll` ttl; zero for collectors whose absence is seen at once).
    #[serde(with = "crate::seconds", default)]
    pub departure_lag: Duration,
    /// Tolerance added to every deadline for process scheduling and request latency, so a
    /// check fails on a broken rule rather than on a slow machine.
    #[serde(with = "crate::seconds")]
    pub slack: Duration,
    /// After the last fault heals, every replica must have caught up within this (10 s).
    #[serde(with = "crate::seconds")]
    pub convergence_deadline: Duration,
    /// A target the workload adds must be served within `coalesce_window` plus this (5 s).
    #[serde(with = "crate::seconds")]
    pub assignment_margin: Duration,
}

impl RunParameters {
    /// How long after a workload change the moves it causes may first be observed: the
    /// leader waits up to one coalescing window, then the poller needs up to one interval.
    pub fn reaction_window(&self) -> Duration {
        self.coalesce_window + self.poll_interval + self.slack
    }
}

impl Default for RunParameters {
    /// The service's defaults (lease 3 s, grace 30 s, coalescing 1 s) and the issue's
    /// deadlines (convergence 10 s, assignment coalescing + 5 s).
    fn default() -> Self {
        RunParameters {
            grace_period: Duration::from_secs(30),
            lease: Duration::from_secs(3),
            coalesce_window: Duration::from_secs(1),
            poll_interval: Duration::from_millis(500),
            departure_lag: Duration::ZERO,
            slack: Duration::from_secs(1),
            convergence_deadline: Duration::from_secs(10),
            assignment_margin: Duration::from_secs(5),
        }
    }
}

/// One poll of one replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    /// The replica's name (what it sends as `X-Allocator-Replica`).
    pub replica: String,
    #[serde(with = "crate::seconds")]
    pub at: Duration,
    pub outcome: PollOutcome,
}

/// What a poll got back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PollOutcome {
    /// A complete view: every response of the poll was 200 and carried the same
    /// `X-Allocator-Revision`. A poller that sees the revision change midway must retry or
    /// drop the poll, never record a mixture of two revisions.
    Served(ServedView),
    /// The replica answered but would not serve (503 while stale or unconfigured).
    Unavailable { status: u16 },
    /// No answer: refused, reset or timed out.
    Unreachable,
}

/// One replica's assignment at one revision, assembled from `/jobs` and every
/// `/jobs/{job}/targets?collector_id=…`.
///
/// Kept per collector, as the responses come, rather than as a map from target to owner: a
/// map cannot hold a target listed under two collectors, and that is exactly what I1 must be
/// able to see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServedView {
    /// `X-Allocator-Revision`.
    pub revision: u64,
    /// `X-Allocator-Leader`, `None` when the header was empty.
    pub leader: Option<String>,
    /// `X-Allocator-Term`: the Raft term of that leader (absent in histories recorded before
    /// the header existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_term: Option<u64>,
    /// Collector → the targets listed for it, over all jobs.
    pub assignment: BTreeMap<String, BTreeSet<TargetKey>>,
}

impl ServedView {
    /// Every listed target with the collectors that list it (one, unless I1 is broken).
    pub fn owners(&self) -> BTreeMap<&TargetKey, BTreeSet<&str>> {
        let mut owners: BTreeMap<&TargetKey, BTreeSet<&str>> = BTreeMap::new();
        for (collector, targets) in &self.assignment {
            for target in targets {
                owners.entry(target).or_default().insert(collector.as_str());
            }
        }
        owners
    }

    /// Whether some collector lists `target`.
    pub fn lists(&self, target: &TargetKey) -> bool {
        self.assignment.values().any(|targets| targets.contains(target))
    }

    /// Whether two views assign the same targets to the same collectors. A collector listed
    /// with no targets counts as absent: pollers differ in which collectors they ask about.
    pub fn same_assignment(&self, other: &ServedView) -> bool {
        fn non_empty(view: &ServedView) -> impl Iterator<Item = (&String, &BTreeSet<TargetKey>)> {
            view.assignment.iter().filter(|(_, targets)| !targets.is_empty())
        }
        non_empty(self).eq(non_empty(other))
    }
}

/// Something the harness did, at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(with = "crate::seconds")]
    pub at: Duration,
    pub kind: EventKind,
}

/// The harness's actions. Faults are named; a `FaultHealed` closes the oldest open fault of
/// that name, so a schedule may repeat a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    FaultStarted {
        name: String,
        /// The replicas the fault acts on (killed, paused, or on the cut-off side).
        affected: BTreeSet<String>,
        /// The affected replicas keep running but cannot hear from a leader (isolation,
        /// partition, loss of the leader's messages), so after their lease they must stop
        /// serving (I6). False for kills and pauses: those cannot answer at all.
        isolating: bool,
    },
    FaultHealed {
        name: String,
    },
    /// The workload rewrote its `file_sd` file.
    TargetsChanged {
        added: BTreeSet<TargetKey>,
        removed: BTreeSet<TargetKey>,
        /// Targets whose labels changed; their owner may change with them.
        relabeled: BTreeSet<TargetKey>,
    },
    /// Collectors the workload started (or started polling as) and stopped.
    CollectorsChanged {
        joined: BTreeSet<String>,
        left: BTreeSet<String>,
    },
    /// One replica's process started again, on its own volume or on an empty one.
    ReplicaRestarted {
        replica: String,
        wiped: bool,
    },
    /// Every replica had been stopped and all were started again at this moment.
    FullRestart,
}

/// The whole record of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The seed the run's schedule and workload were drawn from, carried into the report.
    pub seed: u64,
    /// Every replica of the cluster by name, including those that never answered.
    pub replicas: BTreeSet<String>,
    pub parameters: RunParameters,
    /// When observation stopped; deadlines after this cannot be judged.
    #[serde(with = "crate::seconds")]
    pub end: Duration,
    pub polls: Vec<Poll>,
    pub events: Vec<Event>,
}

impl History {
    pub fn new(seed: u64, replicas: impl IntoIterator<Item = impl Into<String>>, parameters: RunParameters) -> Self {
        History {
            seed,
            replicas: replicas.into_iter().map(Into::into).collect(),
            parameters,
            end: Duration::ZERO,
            polls: Vec::new(),
            events: Vec::new(),
        }
    }

    pub fn record_poll(&mut self, poll: Poll) {
        self.end = self.end.max(poll.at);
        self.polls.push(poll);
    }

    pub fn record_event(&mut self, at: Duration, kind: EventKind) {
        self.end = self.end.max(at);
        self.events.push(Event { at, kind });
    }

    /// Marks the end of observation, if later than anything recorded.
    pub fn finish(&mut self, at: Duration) {
        self.end = self.end.max(at);
    }
}
