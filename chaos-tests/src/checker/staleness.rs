//! I6 bounded staleness, two ways:
//!
//! - **Cut off**: a replica cut off from the leader stops serving once its lease has run out,
//!   for as long as the fault lasts. Only faults marked `isolating` apply: a killed or paused
//!   replica cannot answer at all. The replica last heard from a leader no later than the
//!   fault's start, so any assignment it serves after `start + lease + slack` and before the
//!   heal breaks the rule. One violation per fault and replica, at the first offending poll.
//! - **Superseded**: whatever the fault (a leader resumed after a pause, a replica back from a
//!   restart), no replica serves a revision older than one any replica served more than
//!   `lease + slack` earlier: by then it must have heard of it, or stopped serving. One
//!   violation per replica and stretch of such polls.

use std::collections::BTreeMap;

use super::Run;
use super::counted;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

pub(super) fn check(run: &Run) -> Vec<Violation> {
    let mut violations = cut_off_replicas_stop(run);
    violations.extend(nothing_superseded_for_long(run));
    violations
}

fn cut_off_replicas_stop(run: &Run) -> Vec<Violation> {
    let mut violations = Vec::new();
    let parameters = run.parameters;
    for fault in run.faults.iter().filter(|fault| fault.isolating) {
        let must_stop_by = fault.started + parameters.lease + parameters.slack;
        let until = fault.healed.unwrap_or(run.history.end);
        for replica in fault.affected {
            let stale: Vec<_> = run
                .observations_between(must_stop_by, until)
                .iter()
                .filter(|observation| observation.replica == replica && observation.at > must_stop_by)
                .filter(|observation| fault.healed.is_none_or(|healed| observation.at < healed))
                .collect();
            let (Some(first), Some(last)) = (stale.first(), stale.last()) else {
                continue;
            };
            violations.push(Violation::new(
                ViolationKind::StaleServing,
                [replica.as_str()],
                first.at,
                Some(first.view.revision),
                format!(
                    "cut off by \"{}\" at {} (lease {}), yet served assignments {} from {} to {}",
                    fault.name,
                    seconds::text(fault.started),
                    seconds::text(parameters.lease),
                    counted(stale.len(), "time"),
                    seconds::text(first.at),
                    seconds::text(last.at),
                ),
            ));
        }
    }
    violations
}

fn nothing_superseded_for_long(run: &Run) -> Vec<Violation> {
    let bound = run.parameters.lease + run.parameters.slack;
    // The highest revision served by anyone up to each observation (observations are by time).
    let mut highest_so_far = Vec::with_capacity(run.observations.len());
    let mut highest = 0;
    for observation in &run.observations {
        highest = highest.max(observation.view.revision);
        highest_so_far.push(highest);
    }
    let mut violations = Vec::new();
    // Per replica, the first offending poll of the stretch under way and how many followed.
    let mut stretches: BTreeMap<&str, (usize, u64, usize)> = BTreeMap::new();
    let mut close = |replica: &str, (first, known, count): (usize, u64, usize)| {
        let observation = &run.observations[first];
        violations.push(Violation::new(
            ViolationKind::SupersededServing,
            [replica],
            observation.at,
            Some(observation.view.revision),
            format!(
                "served revision {} at {} ({}), although revision {known} had been served more than the lease plus slack ({}) earlier",
                observation.view.revision,
                seconds::text(observation.at),
                counted(count, "poll"),
                seconds::text(bound),
            ),
        ));
    };
    for (index, observation) in run.observations.iter().enumerate() {
        let earlier = run
            .observations
            .partition_point(|other| other.at + bound < observation.at);
        let known = earlier.checked_sub(1).map_or(0, |last| highest_so_far[last]);
        if observation.view.revision < known {
            stretches
                .entry(observation.replica)
                .and_modify(|(_, _, count)| *count += 1)
                .or_insert((index, known, 1));
        } else if let Some(stretch) = stretches.remove(observation.replica) {
            close(observation.replica, stretch);
        }
    }
    for (replica, stretch) in std::mem::take(&mut stretches) {
        close(replica, stretch);
    }
    violations
}
