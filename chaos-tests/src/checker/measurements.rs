//! What the report measures rather than judges: each fault's effect on leadership (failover
//! time), convergence after each heal, and availability.
//!
//! - Failover: the leader a fault hit is the one the last poll before it named; failover ends
//!   at the first poll naming another leader, looked for until the fault's heal plus the
//!   convergence deadline (a leader that is only paused briefly may keep its role: no sample).
//!   A fault on every replica (a full or rolling restart) gives no sample: what follows it is
//!   the cluster starting, not a failover.
//! - Convergence: after each heal, until the next fault starts or the run ends, as defined by
//!   liveness (every replica serving the highest revision seen before the heal, or later).
//! - Availability: polls answered with an assignment, per replica and overall, and during
//!   faults for the replicas no active fault affected (the majority side, which should not go
//!   dark; the minority must, by I6).

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use super::Run;
use super::liveness;
use crate::history::PollOutcome;
use crate::report::Availability;
use crate::report::ConvergenceSample;
use crate::report::FaultSummary;
use crate::report::Share;

pub(super) fn fault_summaries(run: &Run) -> Vec<FaultSummary> {
    run.faults
        .iter()
        .map(|fault| {
            let hit_leader = run
                .leader_before(fault.started)
                .filter(|leader| fault.affected.contains(*leader));
            let look_until = fault
                .healed
                .map_or(run.history.end, |healed| healed + run.parameters.convergence_deadline);
            let whole_cluster = fault.affected.len() >= run.history.replicas.len();
            let failover = hit_leader.filter(|_| !whole_cluster).and_then(|old| {
                run.observations_between(fault.started, look_until)
                    .iter()
                    .find(|observation| observation.view.leader.as_deref().is_some_and(|leader| leader != old))
                    .map(|observation| observation.at - fault.started)
            });
            FaultSummary {
                name: fault.name.to_string(),
                affected: fault.affected.clone(),
                isolating: fault.isolating,
                started: fault.started,
                healed: fault.healed,
                hit_leader: hit_leader.map(str::to_string),
                failover,
            }
        })
        .collect()
}

pub(super) fn convergence_samples(run: &Run) -> Vec<ConvergenceSample> {
    let mut healed: Vec<_> = run
        .faults
        .iter()
        .filter_map(|fault| fault.healed.map(|at| (at, fault.name)))
        .collect();
    healed.sort();
    healed
        .into_iter()
        .map(|(at, name)| {
            let until = run
                .faults
                .iter()
                .map(|fault| fault.started)
                .filter(|started| *started > at)
                .min()
                .unwrap_or(run.history.end);
            ConvergenceSample {
                fault: name.to_string(),
                healed: at,
                converged_after: liveness::catch_up(run, at, until).converged_after(at),
            }
        })
        .collect()
}

pub(super) fn availability(run: &Run) -> Availability {
    let served = |outcome: &PollOutcome| matches!(outcome, PollOutcome::Served(_));
    let mut per_replica: BTreeMap<String, (usize, usize)> = run
        .history
        .replicas
        .iter()
        .map(|replica| (replica.clone(), (0, 0)))
        .collect();
    let mut overall = (0, 0);
    let mut majority_side = (0, 0);
    for poll in &run.polls {
        let answered = usize::from(served(&poll.outcome));
        let counts = per_replica.entry(poll.replica.clone()).or_default();
        counts.0 += answered;
        counts.1 += 1;
        overall.0 += answered;
        overall.1 += 1;
        let active: Vec<_> = run.faults.iter().filter(|fault| fault.active_at(poll.at)).collect();
        let affected: BTreeSet<&String> = active.iter().flat_map(|fault| fault.affected.iter()).collect();
        if !active.is_empty() && !affected.contains(&poll.replica) {
            majority_side.0 += answered;
            majority_side.1 += 1;
        }
    }
    Availability {
        overall: Share::new(overall.0, overall.1),
        per_replica: per_replica
            .into_iter()
            .map(|(replica, (served, polls))| (replica, Share::new(served, polls)))
            .collect(),
        majority_side_during_faults: Share::new(majority_side.0, majority_side.1),
    }
}
