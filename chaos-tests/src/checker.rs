//! [`check`]: judges a [`History`] against the invariants (docs/architecture.md, "Invariants") that can be seen from
//! outside (I1, I2, I3, I4, I6 and liveness) and measures failover, convergence and
//! availability. A pure function of the history: no runtime, no IO, no clock, so every rule is
//! unit-tested on synthetic histories (`checker/tests.rs`).
//!
//! ```text
//!                     ┌─► one_owner   (I1) ─┐
//!                     ├─► agreement   (I2) ─┤
//!  History ─► Run ────┼─► durability  (I3) ─┼─► violations ─┐
//!  (polls and events  ├─► stability   (I4) ─┤               ├─► Report
//!   sorted by time,   ├─► staleness   (I6) ─┤               │
//!   faults paired)    ├─► liveness         ─┘               │
//!                     └─► measurements ─────────────────────┘
//! ```
//!
//! One module per invariant; each says how its rule is checked and what it forgives.

mod agreement;
mod durability;
mod liveness;
mod measurements;
mod one_owner;
mod stability;
mod staleness;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeSet;
use std::fmt::Display;
use std::time::Duration;

use crate::history::Event;
use crate::history::EventKind;
use crate::history::History;
use crate::history::Poll;
use crate::history::PollOutcome;
use crate::history::RunParameters;
use crate::history::ServedView;
use crate::report::Report;
use crate::report::TimingSummary;

/// Items named in a violation's details before the rest are only counted.
const ITEMS_LISTED: usize = 5;

/// Judges a run. The report carries the history's seed so a failure can be replayed.
pub fn check(history: &History) -> Report {
    let mut run = Run::new(history);
    let mut violations = one_owner::check(&run);
    violations.extend(agreement::check(&run));
    violations.extend(durability::check(&run));
    violations.extend(stability::check(&run));
    violations.extend(staleness::check(&run));
    let (liveness_violations, liveness_notes) = liveness::check(&run);
    violations.extend(liveness_violations);
    run.notes.extend(liveness_notes);
    violations.sort_by(|a, b| a.at.cmp(&b.at).then(a.kind.cmp(&b.kind)));

    let faults = measurements::fault_summaries(&run);
    let failover = TimingSummary::of(faults.iter().filter_map(|fault| fault.failover).collect());
    let convergence = measurements::convergence_samples(&run);
    let convergence_summary =
        TimingSummary::of(convergence.iter().filter_map(|sample| sample.converged_after).collect());
    Report {
        seed: history.seed,
        duration: history.end,
        replicas: history.replicas.clone(),
        polls: history.polls.len(),
        revisions_seen: run
            .observations
            .iter()
            .map(|observation| observation.view.revision)
            .collect::<BTreeSet<_>>()
            .len(),
        faults,
        violations,
        availability: measurements::availability(&run),
        failover,
        convergence,
        convergence_summary,
        notes: run.notes,
    }
}

/// The history in the order the checks read it, with the facts several checks share.
pub(crate) struct Run<'h> {
    pub history: &'h History,
    pub parameters: &'h RunParameters,
    /// Every poll by time; ties keep the order they were recorded in.
    pub polls: Vec<&'h Poll>,
    /// The polls that served a view, by time.
    pub observations: Vec<Observation<'h>>,
    /// Every event by time.
    pub events: Vec<&'h Event>,
    /// Faults with their heals paired, by start.
    pub faults: Vec<Fault<'h>>,
    /// When a leader may have begun leading afresh, by time: the first sighting of each term
    /// higher than every one seen before, and the first sighting of a leader just restarted
    /// (a leader restarted with its vote committed leads on in the same term, but its
    /// leader loop starts over).
    pub leadership_starts: Vec<LeadershipStart>,
    pub notes: Vec<String>,
}

/// One replica serving one view at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observation<'h> {
    pub replica: &'h str,
    pub at: Duration,
    pub view: &'h ServedView,
}

#[derive(Debug, Clone)]
pub(crate) struct Fault<'h> {
    pub name: &'h str,
    pub affected: &'h BTreeSet<String>,
    pub isolating: bool,
    pub started: Duration,
    /// `None` if the fault was still active when the run ended.
    pub healed: Option<Duration>,
}

impl Fault<'_> {
    pub fn active_at(&self, at: Duration) -> bool {
        self.started <= at && self.healed.is_none_or(|healed| at < healed)
    }
}

impl<'h> Run<'h> {
    /// The reaction window after `cause`, stretched past any fault under way while the leader
    /// was reacting (begun before the cause or during the window): a failover or a cluster
    /// restart delays the reaction until a leader runs again, and the heal bounds that.
    pub fn reaction_deadline(&self, cause: Duration) -> Duration {
        let window = self.parameters.reaction_window();
        let mut deadline = cause + window;
        loop {
            let stretched = self
                .faults
                .iter()
                .filter(|fault| fault.started <= deadline && fault.healed.is_none_or(|healed| healed >= cause))
                .map(|fault| fault.healed.unwrap_or(self.history.end) + window)
                .fold(deadline, Duration::max);
            if stretched == deadline {
                return deadline;
            }
            deadline = stretched;
        }
    }

    /// The latest moment the leader may start the grace period of a collector silent since
    /// `left`: the departure lag later (plus the slack and a coalescing window for the leader
    /// loop), unless leadership begins afresh meanwhile. A leader starting to lead gives every
    /// collector the table still lists as ready a fresh registration, since their polls may
    /// have gone to its predecessor, so the lag starts again from that start (bounded by its
    /// first sighting, see [`Run::leadership_starts`]). Collectors seen at once (no departure
    /// lag) are not registered, so nothing restarts for them.
    pub fn departure_noticed_by(&self, left: Duration) -> Duration {
        let parameters = self.parameters;
        let lag = parameters.departure_lag + parameters.slack;
        let mut noticed = left + lag;
        if parameters.departure_lag.is_zero() {
            return noticed;
        }
        // A leadership that began afresh before the departure was noticed (or whose
        // predecessor stopped before then: a replica killed before the lag ran out cannot
        // notice anything, however long its successor takes to appear) starts the lag again.
        // Each extension can bring another start within reach: until nothing changes.
        loop {
            let before = noticed;
            for start in &self.leadership_starts {
                if start.interrupted <= noticed + parameters.coalesce_window && start.seen >= left {
                    noticed = noticed.max(start.seen + parameters.coalesce_window + lag);
                }
            }
            if noticed == before {
                return noticed;
            }
        }
    }

    pub fn new(history: &'h History) -> Self {
        let mut polls: Vec<&Poll> = history.polls.iter().collect();
        polls.sort_by_key(|poll| poll.at);
        let observations: Vec<Observation> = polls
            .iter()
            .filter_map(|poll| match &poll.outcome {
                PollOutcome::Served(view) => Some(Observation {
                    replica: poll.replica.as_str(),
                    at: poll.at,
                    view,
                }),
                PollOutcome::Unavailable { .. } | PollOutcome::Unreachable => None,
            })
            .collect();
        let mut events: Vec<&Event> = history.events.iter().collect();
        events.sort_by_key(|event| event.at);
        let leadership_starts = leadership_starts(history, &observations, &events);

        let mut faults: Vec<Fault> = Vec::new();
        let mut notes = Vec::new();
        for event in events.iter().copied() {
            match &event.kind {
                EventKind::FaultStarted {
                    name,
                    affected,
                    isolating,
                } => faults.push(Fault {
                    name,
                    affected,
                    isolating: *isolating,
                    started: event.at,
                    healed: None,
                }),
                EventKind::FaultHealed { name } => {
                    match faults
                        .iter_mut()
                        .find(|fault| fault.name == name.as_str() && fault.healed.is_none())
                    {
                        Some(fault) => fault.healed = Some(event.at),
                        None => notes.push(format!(
                            "the heal of \"{name}\" at {} matches no open fault and was ignored",
                            crate::seconds::text(event.at)
                        )),
                    }
                }
                _ => {}
            }
        }
        Run {
            history,
            parameters: &history.parameters,
            polls,
            observations,
            events,
            faults,
            leadership_starts,
            notes,
        }
    }

    /// The observation with the highest revision served before `at`; the earliest such one
    /// when several replicas served it. A poll at `at` itself counts as after.
    pub fn highest_served_before(&self, at: Duration) -> Option<&Observation<'h>> {
        let before = self.observations.partition_point(|observation| observation.at < at);
        self.observations[..before]
            .iter()
            .max_by_key(|observation| (observation.view.revision, std::cmp::Reverse(observation.at)))
    }

    /// The leader the last poll before `at` named.
    pub fn leader_before(&self, at: Duration) -> Option<&'h str> {
        let before = self.observations.partition_point(|observation| observation.at < at);
        self.observations[..before]
            .iter()
            .rev()
            .find_map(|observation| observation.view.leader.as_deref())
    }

    /// Observations with `from <= at <= until`.
    pub fn observations_between(&self, from: Duration, until: Duration) -> &[Observation<'h>] {
        let start = self.observations.partition_point(|observation| observation.at < from);
        let end = self.observations.partition_point(|observation| observation.at <= until);
        &self.observations[start..end.max(start)]
    }

    /// Events with `from <= at <= until`.
    pub fn events_between(&self, from: Duration, until: Duration) -> impl Iterator<Item = &'h Event> + '_ {
        self.events
            .iter()
            .copied()
            .filter(move |event| from <= event.at && event.at <= until)
    }
}

/// A leader seen leading afresh ([`Run::leadership_starts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeadershipStart {
    /// Its first sighting.
    pub seen: Duration,
    /// From when its predecessor may have stopped leading: the start of the fault that
    /// restarted the leader, when one did (its leader loop stopped then, not when the new
    /// one was first seen); the sighting itself for a new term, whose cause is not recorded.
    pub interrupted: Duration,
}

/// See [`Run::leadership_starts`].
fn leadership_starts(history: &History, observations: &[Observation], events: &[&Event]) -> Vec<LeadershipStart> {
    let mut starts = Vec::new();
    let mut highest_term = None;
    for observation in observations {
        if let Some(term) = observation.view.leader_term
            && highest_term.is_none_or(|highest| term > highest)
        {
            highest_term = Some(term);
            starts.push(LeadershipStart {
                seen: observation.at,
                interrupted: observation.at,
            });
        }
    }
    for event in events {
        let restarted: Vec<&str> = match &event.kind {
            EventKind::ReplicaRestarted { replica, .. } => vec![replica.as_str()],
            EventKind::FullRestart => history.replicas.iter().map(String::as_str).collect(),
            _ => continue,
        };
        let first_leader_named = observations
            .iter()
            .filter(|observation| observation.at >= event.at)
            .find_map(|observation| Some((observation.at, observation.view.leader.as_deref()?)));
        if let Some((at, leader)) = first_leader_named
            && restarted.contains(&leader)
        {
            // The replicas went down when the fault that restarts them began, which is
            // recorded before the restart event (a full restart records it after the hold).
            let fault_began = events
                .iter()
                .filter(|earlier| earlier.at <= event.at)
                .filter_map(|earlier| match &earlier.kind {
                    EventKind::FaultStarted { affected, .. } if restarted.iter().all(|r| affected.contains(*r)) => {
                        Some(earlier.at)
                    }
                    _ => None,
                })
                .next_back()
                .unwrap_or(event.at);
            starts.push(LeadershipStart {
                seen: at,
                interrupted: fault_began,
            });
        }
    }
    starts.sort_by_key(|start| (start.seen, start.interrupted));
    starts
}

/// "1 target", "2 targets".
pub(crate) fn counted(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// "a, b, c and 4 more": names the first few items of a possibly long list.
pub(crate) fn listed<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|item| item.to_string()).collect();
    let shown = items.iter().take(ITEMS_LISTED).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(ITEMS_LISTED) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// The targets two views assign differently, as "app/t1: c1 vs c2", with their count.
pub(crate) fn differences(first: &ServedView, second: &ServedView) -> (usize, String) {
    let first_owners = first.owners();
    let second_owners = second.owners();
    let targets: BTreeSet<_> = first_owners.keys().chain(second_owners.keys()).collect();
    let describe = |owners: Option<&BTreeSet<&str>>| match owners {
        Some(owners) if !owners.is_empty() => owners.iter().copied().collect::<Vec<_>>().join("+"),
        _ => "none".to_string(),
    };
    let differing: Vec<String> = targets
        .into_iter()
        .filter(|target| first_owners.get(**target) != second_owners.get(**target))
        .map(|target| {
            format!(
                "{target}: {} vs {}",
                describe(first_owners.get(*target)),
                describe(second_owners.get(*target))
            )
        })
        .collect();
    (differing.len(), listed(differing))
}
