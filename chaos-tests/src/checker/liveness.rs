//! Liveness: after the last fault heals every replica catches up within the convergence
//! deadline, and every target the workload adds is served within the coalescing window plus
//! the assignment margin.
//!
//! Convergence is catching up, not a shared instant: with the workload still running,
//! replicas are rarely at one revision at the same moment. After a heal, the highest revision
//! any replica served until then is the cluster's state; a replica has caught up once it
//! serves that revision or a later one (I2 already checks that replicas at one revision
//! agree). A run that cannot show liveness (a fault never healed, or the run ended before the
//! deadline with replicas still behind) is reported as unjudged, so it cannot pass.
//!
//! A collector gone past the departure lag plus the grace period holds no targets once the
//! leader had time to react (the other half of the grace period: it delays moves, it does not
//! prevent them). Leadership beginning afresh (a new term, or a restarted leader) before the
//! departure was noticed restarts the lag ([`Run::departure_noticed_by`]).
//!
//! A new target's deadline starts at the workload's change; a fault active before it passes
//! pushes it to that fault's heal plus the same margin, since the leader may be gone or the
//! cluster down meanwhile.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;

use super::Run;
use super::counted;
use super::listed;
use crate::history::EventKind;
use crate::history::TargetKey;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

/// Where the replicas stood some time after a heal.
pub(super) struct CatchUp<'h> {
    /// The highest revision served until the heal.
    pub revision: u64,
    /// Each replica's first poll at that revision or later, if it came in time.
    pub caught_up: BTreeMap<&'h str, Option<Duration>>,
}

impl CatchUp<'_> {
    /// How long after `healed` the last replica caught up, if all did.
    pub fn converged_after(&self, healed: Duration) -> Option<Duration> {
        self.caught_up
            .values()
            .copied()
            .collect::<Option<Vec<_>>>()
            .map(|times| times.into_iter().max().unwrap_or(healed).saturating_sub(healed))
    }

    fn lagging(&self) -> Vec<&str> {
        self.caught_up
            .iter()
            .filter(|(_, at)| at.is_none())
            .map(|(replica, _)| *replica)
            .collect()
    }
}

pub(super) fn catch_up<'h>(run: &Run<'h>, healed: Duration, until: Duration) -> CatchUp<'h> {
    let revision = run
        .highest_served_before(healed)
        .map_or(0, |observation| observation.view.revision);
    let after = run.observations_between(healed, until);
    let caught_up = run
        .history
        .replicas
        .iter()
        .map(|replica| {
            let at = after
                .iter()
                .find(|observation| observation.replica == replica && observation.view.revision >= revision)
                .map(|observation| observation.at);
            (replica.as_str(), at)
        })
        .collect();
    CatchUp { revision, caught_up }
}

/// Violations, and notes about what could not be judged.
pub(super) fn check(run: &Run) -> (Vec<Violation>, Vec<String>) {
    let mut violations = convergence(run);
    let (unassigned, notes) = new_targets(run);
    violations.extend(unassigned);
    violations.extend(departed_collectors_release_targets(run));
    (violations, notes)
}

fn departed_collectors_release_targets(run: &Run) -> Vec<Violation> {
    let parameters = run.parameters;
    // Collector → when it left, while it is away.
    let mut away: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut absences: Vec<(&str, Duration, Duration)> = Vec::new();
    for event in &run.events {
        let EventKind::CollectorsChanged { joined, left } = &event.kind else {
            continue;
        };
        for collector in left {
            away.entry(collector.as_str()).or_insert(event.at);
        }
        for collector in joined {
            if let Some(left_at) = away.remove(collector.as_str()) {
                absences.push((collector, left_at, event.at));
            }
        }
    }
    absences.extend(
        away.into_iter()
            .map(|(collector, left_at)| (collector, left_at, run.history.end)),
    );

    let mut violations = Vec::new();
    for (collector, left_at, returned) in absences {
        let deadline = run.reaction_deadline(run.departure_noticed_by(left_at) + parameters.grace_period);
        let still_holding = run.observations_between(deadline, returned).iter().find(|observation| {
            observation.at > deadline
                && observation
                    .view
                    .assignment
                    .get(collector)
                    .is_some_and(|targets| !targets.is_empty())
        });
        if let Some(observation) = still_holding {
            let targets = &observation.view.assignment[collector];
            violations.push(Violation::new(
                ViolationKind::DepartedCollectorKeptTargets,
                [observation.replica],
                observation.at,
                Some(observation.view.revision),
                format!(
                    "{collector} left at {} and was still away, yet held {} at {}: {}",
                    seconds::text(left_at),
                    counted(targets.len(), "target"),
                    seconds::text(observation.at),
                    listed(targets.iter().map(ToString::to_string).collect::<Vec<_>>()),
                ),
            ));
        }
    }
    violations
}

fn convergence(run: &Run) -> Vec<Violation> {
    let end = run.history.end;
    let never_healed: Vec<_> = run.faults.iter().filter(|fault| fault.healed.is_none()).collect();
    if !never_healed.is_empty() {
        return never_healed
            .into_iter()
            .map(|fault| {
                Violation::new(
                    ViolationKind::LivenessUnjudged,
                    fault.affected,
                    end,
                    None,
                    format!(
                        "\"{}\" started at {} and never healed, so convergence cannot be judged",
                        fault.name,
                        seconds::text(fault.started)
                    ),
                )
            })
            .collect();
    }
    let Some(last_heal) = run.faults.iter().filter_map(|fault| fault.healed).max() else {
        return Vec::new();
    };
    let deadline = last_heal + run.parameters.convergence_deadline;
    let state = catch_up(run, last_heal, deadline);
    let lagging = state.lagging();
    if lagging.is_empty() {
        return Vec::new();
    }
    let (kind, outcome) = if end < deadline {
        (
            ViolationKind::LivenessUnjudged,
            format!("the run ended at {}, before the deadline", seconds::text(end)),
        )
    } else {
        (ViolationKind::NotConverged, "by the deadline".to_string())
    };
    vec![Violation::new(
        kind,
        lagging.iter().copied(),
        deadline.min(end),
        Some(state.revision),
        format!(
            "after the last heal at {} (deadline {}), {} had not served revision {} (the highest served before the heal) or later {outcome}",
            seconds::text(last_heal),
            seconds::text(run.parameters.convergence_deadline),
            lagging.join(", "),
            state.revision,
        ),
    )]
}

fn new_targets(run: &Run) -> (Vec<Violation>, Vec<String>) {
    let margin = run.parameters.coalesce_window + run.parameters.assignment_margin;
    let mut violations = Vec::new();
    let mut unjudged = 0;
    for event in &run.events {
        let EventKind::TargetsChanged { added, .. } = &event.kind else {
            continue;
        };
        if added.is_empty() {
            continue;
        }
        let Some(deadline) = assignment_deadline(run, event.at, margin) else {
            // A fault that never healed: reported by the convergence check.
            unjudged += added.len();
            continue;
        };
        if deadline > run.history.end {
            unjudged += added.len();
            continue;
        }
        let withdrawn: BTreeSet<&TargetKey> = run
            .events_between(event.at, deadline)
            .filter(|later| later.at > event.at)
            .flat_map(|later| match &later.kind {
                EventKind::TargetsChanged { removed, .. } => removed.iter().collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect();
        let served = run.observations_between(event.at, deadline);
        let missing: Vec<&TargetKey> = added
            .iter()
            .filter(|target| !withdrawn.contains(target))
            .filter(|target| !served.iter().any(|observation| observation.view.lists(target)))
            .collect();
        if missing.is_empty() {
            continue;
        }
        let extended = if deadline > event.at + margin {
            " (extended past the faults meanwhile)"
        } else {
            ""
        };
        violations.push(Violation::new(
            ViolationKind::NewTargetUnassigned,
            &run.history.replicas,
            deadline,
            run.highest_served_before(deadline)
                .map(|observation| observation.view.revision),
            format!(
                "{} added at {} served by no replica by {}{extended}: {}",
                counted(missing.len(), "target"),
                seconds::text(event.at),
                seconds::text(deadline),
                listed(missing),
            ),
        ));
    }
    let notes = if unjudged > 0 {
        vec![format!(
            "{unjudged} targets were added too close to the end of the run (or during a fault that never healed) for their assignment to be judged"
        )]
    } else {
        Vec::new()
    };
    (violations, notes)
}

/// `added + margin`, pushed to `heal + margin` by every fault active before that; `None` if
/// one of those faults never healed.
fn assignment_deadline(run: &Run, added: Duration, margin: Duration) -> Option<Duration> {
    let mut deadline = added + margin;
    loop {
        let mut extended = deadline;
        for fault in &run.faults {
            let overlaps = fault.started <= deadline && fault.healed.is_none_or(|healed| healed >= added);
            if overlaps {
                extended = extended.max(fault.healed? + margin);
            }
        }
        if extended == deadline {
            return Some(deadline);
        }
        deadline = extended;
    }
}
