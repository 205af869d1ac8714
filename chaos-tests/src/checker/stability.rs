//! I4 stability: every change of owner is explained by the workload, never by a fault; a
//! collector back within the grace period moved nothing.
//!
//! The cluster's history is rebuilt from all replicas' views: the first view seen at each
//! revision, ordered by revision (a poller sees only some revisions, so consecutive means
//! consecutive among those seen). For each target listed under one collector in both of two
//! consecutive views, a different owner, or none, is a move.
//!
//! When was the move committed? No later than the moment the poller first saw the newer
//! revision or any later one ("observed"): a lagging follower may show the newer revision
//! long after the leader moved past it, so its own first sighting is not the bound. And no
//! earlier than its cause. A cause is a workload event whose reaction (coalescing window +
//! poll interval + slack, stretched to a fault's heal plus that window when a fault starts
//! while the leader reacts) reaches the observation:
//!
//! - a `TargetsChanged` adding, removing or relabeling that target;
//! - its previous owner having left at least the grace period (less the slack) before the
//!   observation, and either still away or back no longer than a reaction ago (moves away
//!   from a collector gone longer than the grace period are expected);
//! - a collector joining, if the target went to it: strategies move targets only to a joiner.
//!   A collector back before its grace period ended never left as far as the allocator knows,
//!   so its return is no join.
//!
//! Replica faults, restarts and failovers explain nothing. An unexplained move while either
//! collector involved was away is reported as a move within the grace period, any other as an
//! unexplained move; one violation per pair of revisions and kind, listing the targets.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Observation;
use super::Run;
use super::counted;
use super::listed;
use crate::history::EventKind;
use crate::history::TargetKey;
use crate::report::Violation;
use crate::report::ViolationKind;
use crate::seconds;

pub(super) fn check(run: &Run) -> Vec<Violation> {
    let collectors = CollectorTimeline::new(run);
    let mut first_views: BTreeMap<u64, &Observation> = BTreeMap::new();
    for observation in &run.observations {
        first_views.entry(observation.view.revision).or_insert(observation);
    }
    let views: Vec<&Observation> = first_views.into_values().collect();
    // For each view, the first time its revision or a later one was seen.
    let mut first_observed = vec![Duration::MAX; views.len()];
    let mut earliest = Duration::MAX;
    for (index, view) in views.iter().enumerate().rev() {
        earliest = earliest.min(view.at);
        first_observed[index] = earliest;
    }

    let mut violations = Vec::new();
    for (index, pair) in views.windows(2).enumerate() {
        let (before, after) = (pair[0], pair[1]);
        let observed = first_observed[index + 1];
        let mut unexplained: BTreeMap<ViolationKind, Vec<String>> = BTreeMap::new();
        let after_owners = after.view.owners();
        for (target, owners) in before.view.owners() {
            let [old] = owners.into_iter().collect::<Vec<_>>()[..] else {
                continue; // I1 reports it.
            };
            let new = match after_owners.get(target) {
                None => None,
                Some(owners) if owners.len() == 1 => owners.first().copied(),
                Some(_) => continue,
            };
            if new == Some(old) || explained(run, &collectors, target, old, new, observed) {
                continue;
            }
            let away = |collector: &str| collectors.away_near(run, collector, observed);
            let kind = if away(old) || new.is_some_and(away) {
                ViolationKind::MoveWithinGrace
            } else {
                ViolationKind::UnexplainedMove
            };
            unexplained
                .entry(kind)
                .or_default()
                .push(format!("{target} {old} → {}", new.unwrap_or("none")));
        }
        for (kind, moves) in unexplained {
            let reason = match kind {
                ViolationKind::MoveWithinGrace => format!(
                    "while a collector involved was away for less than the grace period ({})",
                    seconds::text(run.parameters.grace_period)
                ),
                _ => "with no workload change touching them and no collector joining or leaving".to_string(),
            };
            violations.push(Violation::new(
                kind,
                [after.replica],
                after.at,
                Some(after.view.revision),
                format!(
                    "{} moved between revision {} and revision {} (observed at {}) {reason}: {}",
                    counted(moves.len(), "target"),
                    before.view.revision,
                    after.view.revision,
                    seconds::text(observed),
                    listed(moves),
                ),
            ));
        }
    }
    violations
}

fn explained(
    run: &Run,
    collectors: &CollectorTimeline,
    target: &TargetKey,
    old: &str,
    new: Option<&str>,
    observed: Duration,
) -> bool {
    let touched_by_workload = run.events.iter().any(|event| match &event.kind {
        EventKind::TargetsChanged {
            added,
            removed,
            relabeled,
        } => {
            (added.contains(target) || removed.contains(target) || relabeled.contains(target))
                && reaction_reaches(run, event.at, observed)
        }
        _ => false,
    });
    touched_by_workload
        || collectors.gone_past_grace(run, old, observed)
        || new.is_some_and(|new| collectors.joined_before(run, new, observed))
}

/// Whether the leader's reaction to something at `cause` may first be observed at
/// `observed`: not before it, and not after [`reaction_deadline`].
fn reaction_reaches(run: &Run, cause: Duration, observed: Duration) -> bool {
    cause <= observed && observed <= reaction_deadline(run, cause)
}

/// The reaction window after `cause`, stretched past any fault that began while the leader
/// was reacting: a failover delays the reaction until a new leader runs, and the heal bounds
/// that.
fn reaction_deadline(run: &Run, cause: Duration) -> Duration {
    let window = run.parameters.reaction_window();
    let mut deadline = cause + window;
    loop {
        let stretched = run
            .faults
            .iter()
            .filter(|fault| cause <= fault.started && fault.started <= deadline)
            .map(|fault| fault.healed.unwrap_or(run.history.end) + window)
            .fold(deadline, Duration::max);
        if stretched == deadline {
            return deadline;
        }
        deadline = stretched;
    }
}

/// Each collector's absences and joins, from the workload's `CollectorsChanged` events.
struct CollectorTimeline<'h> {
    absences: Vec<Absence<'h>>,
    joins: Vec<Join<'h>>,
    grace_less_slack: Duration,
}

struct Absence<'h> {
    collector: &'h str,
    left: Duration,
    returned: Option<Duration>,
}

struct Join<'h> {
    collector: &'h str,
    at: Duration,
}

impl<'h> CollectorTimeline<'h> {
    fn new(run: &Run<'h>) -> Self {
        let grace_less_slack = run.parameters.grace_period.saturating_sub(run.parameters.slack);
        let mut absences: Vec<Absence> = Vec::new();
        let mut joins = Vec::new();
        for event in run.events.iter().copied() {
            let EventKind::CollectorsChanged { joined, left } = &event.kind else {
                continue;
            };
            for collector in left {
                let already_away = absences
                    .iter()
                    .any(|absence| absence.collector == collector && absence.returned.is_none());
                if !already_away {
                    absences.push(Absence {
                        collector,
                        left: event.at,
                        returned: None,
                    });
                }
            }
            for collector in joined {
                match absences
                    .iter_mut()
                    .find(|absence| absence.collector == collector && absence.returned.is_none())
                {
                    Some(absence) => {
                        absence.returned = Some(event.at);
                        if event.at - absence.left >= grace_less_slack {
                            joins.push(Join {
                                collector,
                                at: event.at,
                            });
                        }
                    }
                    None => joins.push(Join {
                        collector,
                        at: event.at,
                    }),
                }
            }
        }
        CollectorTimeline {
            absences,
            joins,
            grace_less_slack,
        }
    }

    /// `collector` had been gone the grace period by `observed`, and had not come back, or
    /// came back so recently that the moves of its departure may still be arriving.
    fn gone_past_grace(&self, run: &Run, collector: &str, observed: Duration) -> bool {
        self.absences
            .iter()
            .filter(|absence| absence.collector == collector)
            .any(|absence| {
                let moves_from = absence.left + self.grace_less_slack;
                moves_from <= observed
                    && absence
                        .returned
                        .is_none_or(|returned| returned >= moves_from && observed <= reaction_deadline(run, returned))
            })
    }

    fn joined_before(&self, run: &Run, collector: &str, observed: Duration) -> bool {
        self.joins
            .iter()
            .any(|join| join.collector == collector && reaction_reaches(run, join.at, observed))
    }

    /// `collector` was away when the move was observed, or had just come back.
    fn away_near(&self, run: &Run, collector: &str, observed: Duration) -> bool {
        self.absences.iter().any(|absence| {
            absence.collector == collector
                && absence.left <= observed
                && absence
                    .returned
                    .is_none_or(|returned| observed <= reaction_deadline(run, returned))
        })
    }
}
