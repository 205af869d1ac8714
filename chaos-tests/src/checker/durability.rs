//! I3 durability: no replica's revision goes backwards, not even across its own restart, and
//! a full-cluster restart loses nothing.
//!
//! - Per replica, each served revision is compared with the one it served before; a drop is
//!   reported once, naming the restart in between if there was one. A replica restarted on a
//!   wiped volume is held to the same rule: a collector behind the Service cannot tell that
//!   the replica is new, it only sees the assignment go back in time.
//! - For each full restart, the highest revision served before it is the state that must
//!   survive. Each replica's first view after it must be at that revision or later, and must
//!   assign the same way unless the workload changed something meanwhile (the revision itself
//!   may grow: a newly elected leader commits an entry of its own).

use std::collections::BTreeMap;

use super::Observation;
use super::Run;
use super::counted;
use super::differences;
use crate::history::EventKind;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

pub(super) fn check(run: &Run) -> Vec<Violation> {
    let mut violations = revisions_never_go_back(run);
    violations.extend(full_restarts_keep_state(run));
    violations
}

fn revisions_never_go_back(run: &Run) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut previous: BTreeMap<&str, &Observation> = BTreeMap::new();
    for observation in &run.observations {
        if let Some(before) = previous.get(observation.replica)
            && observation.view.revision < before.view.revision
        {
            violations.push(Violation::new(
                ViolationKind::RevisionBackwards,
                [observation.replica],
                observation.at,
                Some(observation.view.revision),
                format!(
                    "served revision {} at {}, then revision {}{}",
                    before.view.revision,
                    seconds::text(before.at),
                    observation.view.revision,
                    restart_between(run, observation.replica, before, observation),
                ),
            ));
        }
        previous.insert(observation.replica, observation);
    }
    violations
}

/// " across its restart at 7.00 s (volume wiped)", or nothing if it was not restarted.
fn restart_between(run: &Run, replica: &str, before: &Observation, after: &Observation) -> String {
    run.events_between(before.at, after.at)
        .filter_map(|event| match &event.kind {
            EventKind::ReplicaRestarted {
                replica: restarted,
                wiped,
            } if restarted == replica => Some(format!(
                " across its restart at {}{}",
                seconds::text(event.at),
                if *wiped { " (volume wiped)" } else { "" }
            )),
            EventKind::FullRestart => Some(format!(" across the full restart at {}", seconds::text(event.at))),
            _ => None,
        })
        .last()
        .unwrap_or_default()
}

fn full_restarts_keep_state(run: &Run) -> Vec<Violation> {
    let mut violations = Vec::new();
    let restarts: Vec<_> = run
        .events
        .iter()
        .filter(|event| matches!(event.kind, EventKind::FullRestart))
        .map(|event| event.at)
        .collect();
    for (index, &restart) in restarts.iter().enumerate() {
        let Some(last) = run.highest_served_before(restart) else {
            continue;
        };
        // The first view after this restart, not one after the next.
        let next_restart = restarts.get(index + 1).copied().unwrap_or(run.history.end);
        // A workload change just before the last revision was seen may have been committed
        // after it, unobserved, before the cluster went down.
        let changes_since = last.at.saturating_sub(run.parameters.reaction_window());
        for replica in &run.history.replicas {
            let Some(first) = run
                .observations_between(restart, next_restart)
                .iter()
                .find(|observation| observation.replica == replica)
            else {
                continue;
            };
            let before = format!(
                "revision {} was served by {} at {}, before the full restart at {}",
                last.view.revision,
                last.replica,
                seconds::text(last.at),
                seconds::text(restart)
            );
            if first.view.revision < last.view.revision {
                violations.push(Violation::new(
                    ViolationKind::StateLostAfterFullRestart,
                    [replica.as_str()],
                    first.at,
                    Some(first.view.revision),
                    format!("first served revision {} after it; {before}", first.view.revision),
                ));
            } else if !first.view.same_assignment(last.view) && !workload_changed(run, changes_since, first.at) {
                let (count, examples) = differences(last.view, first.view);
                violations.push(Violation::new(
                    ViolationKind::StateLostAfterFullRestart,
                    [replica.as_str()],
                    first.at,
                    Some(first.view.revision),
                    format!(
                        "first served revision {} assigns {} differently, with no workload change since; {before}: {examples}",
                        first.view.revision,
                        counted(count, "target")
                    ),
                ));
            }
        }
    }
    violations
}

fn workload_changed(run: &Run, from: std::time::Duration, until: std::time::Duration) -> bool {
    run.events_between(from, until).any(|event| {
        matches!(
            event.kind,
            EventKind::TargetsChanged { .. } | EventKind::CollectorsChanged { .. }
        )
    })
}
