//! I1 one owner: no view lists a target under two collectors.
//!
//! A view is assembled from one response per collector, so a target the replica gives to two
//! collectors shows up in two lists; that is the only form of "two owners" a poller can see.
//! A target listed under no collector is judged by liveness (new targets) and I4 (a target
//! that vanishes), since only the workload knows which targets should exist.

use std::collections::BTreeMap;

use super::Run;
use super::counted;
use super::listed;
use crate::history::ServedView;
use crate::report::Violation;
use crate::report::ViolationKind;

pub(super) fn check(run: &Run) -> Vec<Violation> {
    let mut violations = Vec::new();
    // A replica polled many times at one revision serves the same view each time; checking
    // it once keeps one violation per replica and revision instead of one per poll.
    let mut checked: BTreeMap<(&str, u64), &ServedView> = BTreeMap::new();
    for observation in &run.observations {
        let key = (observation.replica, observation.view.revision);
        if checked
            .get(&key)
            .is_some_and(|view| view.same_assignment(observation.view))
        {
            continue;
        }
        checked.insert(key, observation.view);
        let doubled: Vec<String> = observation
            .view
            .owners()
            .into_iter()
            .filter(|(_, owners)| owners.len() > 1)
            .map(|(target, owners)| {
                format!(
                    "{target} under {}",
                    owners.into_iter().collect::<Vec<_>>().join(" and ")
                )
            })
            .collect();
        if !doubled.is_empty() {
            violations.push(Violation::new(
                ViolationKind::DoubleOwner,
                [observation.replica],
                observation.at,
                Some(observation.view.revision),
                format!(
                    "{} listed under two collectors: {}",
                    counted(doubled.len(), "target"),
                    listed(doubled)
                ),
            ));
        }
    }
    violations
}
