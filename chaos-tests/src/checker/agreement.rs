//! I2 agreement: every view of one revision assigns the same targets to the same collectors,
//! whichever replica served it and whenever.
//!
//! The first view seen at a revision is the reference; each replica that later serves a
//! different assignment at that revision is reported once. The same replica serving two
//! assignments at one revision is reported too: a revision must name one state.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Observation;
use super::Run;
use super::counted;
use super::differences;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

pub(super) fn check(run: &Run) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut reference: BTreeMap<u64, &Observation> = BTreeMap::new();
    let mut reported: BTreeSet<(u64, &str)> = BTreeSet::new();
    for observation in &run.observations {
        let revision = observation.view.revision;
        let Some(first) = reference.get(&revision) else {
            reference.insert(revision, observation);
            continue;
        };
        if first.view.same_assignment(observation.view) || !reported.insert((revision, observation.replica)) {
            continue;
        }
        let (count, examples) = differences(first.view, observation.view);
        let replicas: BTreeSet<&str> = [first.replica, observation.replica].into();
        violations.push(Violation::new(
            ViolationKind::Disagreement,
            replicas,
            observation.at,
            Some(revision),
            format!(
                "{} at {} and {} at {} served revision {revision} with {} assigned differently: {examples}",
                first.replica,
                seconds::text(first.at),
                observation.replica,
                seconds::text(observation.at),
                counted(count, "target"),
            ),
        ));
    }
    violations
}
