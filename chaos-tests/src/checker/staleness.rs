//! I6 bounded staleness: a replica cut off from the leader stops serving once its lease has
//! run out, for as long as the fault lasts.
//!
//! Only faults marked `isolating` apply: a killed or paused replica cannot answer at all. The
//! replica last heard from a leader no later than the fault's start, so any assignment it
//! serves after `start + lease + slack` and before the heal breaks the rule. One violation per
//! fault and replica, at the first offending poll, with how long it went on.

use super::Run;
use super::counted;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

pub(super) fn check(run: &Run) -> Vec<Violation> {
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
