//! A small builder for synthetic histories, so each test reads as the story of a run: who
//! served what from when to when, which faults came and went, what the workload changed.
//!
//! Times are seconds from the start of the run. Replicas are `a`, `b`, `c`; targets are
//! addresses in job `app`; collectors are plain names.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::history::EventKind;
use crate::history::History;
use crate::history::Poll;
use crate::history::PollOutcome;
use crate::history::RunParameters;
use crate::history::ServedView;
use crate::history::TargetKey;

pub const ALL: &[&str] = &["a", "b", "c"];

/// Polls come every half second, like a collector's poller in the CI profile.
const POLL_INTERVAL_MILLISECONDS: u64 = 500;

pub fn seconds(value: f64) -> Duration {
    Duration::from_millis((value * 1000.0).round() as u64)
}

pub fn target(address: &str) -> TargetKey {
    TargetKey::new("app", address)
}

/// A view at `revision` led by `leader` in term 1, with each collector's targets.
pub fn view(revision: u64, leader: &str, assignment: &[(&str, &[&str])]) -> ServedView {
    ServedView {
        revision,
        leader: Some(leader.to_string()),
        leader_term: Some(1),
        assignment: assignment
            .iter()
            .map(|(collector, targets)| (collector.to_string(), targets.iter().map(|t| target(t)).collect()))
            .collect(),
    }
}

/// Derived views, as the next revision of a running cluster would be.
pub trait Evolve {
    fn at_revision(&self, revision: u64) -> ServedView;
    fn led_by(&self, leader: &str) -> ServedView;
    /// The same leader in term `term` (a new term of one leader is invisible in its name).
    fn in_term(&self, term: u64) -> ServedView;
    /// `target` listed under `collector` only (added, or moved there).
    fn assigning(&self, address: &str, collector: &str) -> ServedView;
    /// `target` also listed under `collector`, keeping its current owner: two owners.
    fn also_listing(&self, address: &str, collector: &str) -> ServedView;
}

impl Evolve for ServedView {
    fn at_revision(&self, revision: u64) -> ServedView {
        ServedView {
            revision,
            ..self.clone()
        }
    }

    fn led_by(&self, leader: &str) -> ServedView {
        ServedView {
            leader: Some(leader.to_string()),
            ..self.clone()
        }
    }

    fn in_term(&self, term: u64) -> ServedView {
        ServedView {
            leader_term: Some(term),
            ..self.clone()
        }
    }

    fn assigning(&self, address: &str, collector: &str) -> ServedView {
        let mut next = self.clone();
        for targets in next.assignment.values_mut() {
            targets.remove(&target(address));
        }
        next.assignment
            .entry(collector.to_string())
            .or_default()
            .insert(target(address));
        next
    }

    fn also_listing(&self, address: &str, collector: &str) -> ServedView {
        let mut next = self.clone();
        next.assignment
            .entry(collector.to_string())
            .or_default()
            .insert(target(address));
        next
    }
}

#[derive(Clone)]
pub struct Scenario {
    history: History,
}

impl Scenario {
    /// Seed 7; the service's default timings (lease 3 s, grace 30 s, coalescing 1 s), polls
    /// every 0.5 s, 1 s of slack, the deadlines (10 s, coalescing + 5 s).
    pub fn new() -> Self {
        let parameters = RunParameters {
            grace_period: seconds(30.0),
            lease: seconds(3.0),
            coalesce_window: seconds(1.0),
            poll_interval: Duration::from_millis(POLL_INTERVAL_MILLISECONDS),
            departure_lag: Duration::ZERO,
            slack: seconds(1.0),
            convergence_deadline: seconds(10.0),
            assignment_margin: seconds(5.0),
        };
        Scenario {
            history: History::new(7, ALL.iter().copied(), parameters),
        }
    }

    /// Collectors `c1` and `c2` with targets `t1`–`t3` and `t4`–`t6`, every replica serving
    /// that at revision 10 under leader `a`, polled from 0.5 s until `until`.
    pub fn settled_until(until: f64) -> (Self, ServedView) {
        Self::settled_until_with(until, |_| {})
    }

    /// [`Scenario::settled_until`] with other timings.
    pub fn settled_until_with(until: f64, adjust: impl FnOnce(&mut RunParameters)) -> (Self, ServedView) {
        let settled = settled_view();
        let mut scenario = Scenario::new();
        adjust(&mut scenario.history.parameters);
        let scenario = scenario
            .collectors_joined(0.0, &["c1", "c2"])
            .targets_added(0.0, &["t1", "t2", "t3", "t4", "t5", "t6"])
            .serve(ALL, 0.5, until, &settled);
        (scenario, settled)
    }

    /// `replicas` serve `view` at every poll from `from` until before `until`.
    pub fn serve(self, replicas: &[&str], from: f64, until: f64, view: &ServedView) -> Self {
        self.polls(replicas, from, until, || PollOutcome::Served(view.clone()))
    }

    /// `replicas` answer 503 at every poll from `from` until before `until`.
    pub fn unavailable(self, replicas: &[&str], from: f64, until: f64) -> Self {
        self.polls(replicas, from, until, || PollOutcome::Unavailable { status: 503 })
    }

    /// `replicas` do not answer at any poll from `from` until before `until`.
    pub fn unreachable(self, replicas: &[&str], from: f64, until: f64) -> Self {
        self.polls(replicas, from, until, || PollOutcome::Unreachable)
    }

    fn polls(mut self, replicas: &[&str], from: f64, until: f64, outcome: impl Fn() -> PollOutcome) -> Self {
        let (mut at, until) = (seconds(from), seconds(until));
        while at < until {
            for replica in replicas {
                self.history.record_poll(Poll {
                    replica: replica.to_string(),
                    at,
                    outcome: outcome(),
                });
            }
            at += Duration::from_millis(POLL_INTERVAL_MILLISECONDS);
        }
        self
    }

    pub fn fault(mut self, at: f64, name: &str, affected: &[&str], isolating: bool) -> Self {
        self.history.record_event(
            seconds(at),
            EventKind::FaultStarted {
                name: name.to_string(),
                affected: names(affected),
                isolating,
            },
        );
        self
    }

    pub fn heal(mut self, at: f64, name: &str) -> Self {
        self.history
            .record_event(seconds(at), EventKind::FaultHealed { name: name.to_string() });
        self
    }

    pub fn targets_added(mut self, at: f64, addresses: &[&str]) -> Self {
        self.history.record_event(
            seconds(at),
            EventKind::TargetsChanged {
                added: addresses.iter().map(|address| target(address)).collect(),
                removed: BTreeSet::new(),
                relabeled: BTreeSet::new(),
            },
        );
        self
    }

    pub fn collectors_joined(mut self, at: f64, collectors: &[&str]) -> Self {
        self.history.record_event(
            seconds(at),
            EventKind::CollectorsChanged {
                joined: names(collectors),
                left: BTreeSet::new(),
            },
        );
        self
    }

    pub fn collectors_left(mut self, at: f64, collectors: &[&str]) -> Self {
        self.history.record_event(
            seconds(at),
            EventKind::CollectorsChanged {
                joined: BTreeSet::new(),
                left: names(collectors),
            },
        );
        self
    }

    pub fn restarted(mut self, at: f64, replica: &str, wiped: bool) -> Self {
        self.history.record_event(
            seconds(at),
            EventKind::ReplicaRestarted {
                replica: replica.to_string(),
                wiped,
            },
        );
        self
    }

    pub fn full_restart(mut self, at: f64) -> Self {
        self.history.record_event(seconds(at), EventKind::FullRestart);
        self
    }

    /// Observation stops at `at`.
    pub fn ends(mut self, at: f64) -> History {
        self.history.finish(seconds(at));
        self.history
    }
}

fn settled_view() -> ServedView {
    view(10, "a", &[("c1", &["t1", "t2", "t3"]), ("c2", &["t4", "t5", "t6"])])
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| item.to_string()).collect()
}
