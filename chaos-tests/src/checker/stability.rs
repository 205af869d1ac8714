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
//! - its previous owner having been gone long enough for the allocator to notice (the
//!   departure lag: a silent `register_on_poll` collector is noticed only when its
//!   registration expires) and for the grace period to run out, and either still away or
//!   back no longer than a reaction ago;
//! - a change of membership the allocator acts on: a collector joining, or a departed one's
//!   grace period running out. Any target may move then, not only the joiner's or the
//!   departed one's: upstream's consistent-hashing bounds each collector's load, so a change
//!   of members also shifts some ring partitions between the others. The leader acts on a
//!   change in one batch, so each change explains the moves of one pair of views only (the
//!   first with otherwise unexplained moves in its window). A collector back before its
//!   grace period could have run out never left as far as the allocator knows, so its return
//!   is no join.
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
    let mut unused_changes = collectors.membership_changes(run);
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
            if new == Some(old) || explained(run, &collectors, target, old, observed) {
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
        if !unexplained.is_empty()
            && let Some(position) = unused_changes
                .iter()
                .position(|change| change.earliest <= observed && observed <= run.reaction_deadline(change.latest))
        {
            unused_changes.remove(position);
            continue;
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

fn explained(run: &Run, collectors: &CollectorTimeline, target: &TargetKey, old: &str, observed: Duration) -> bool {
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
    touched_by_workload || collectors.gone_past_grace(run, old, observed)
}

/// Whether the leader's reaction to something at `cause` may first be observed at
/// `observed`: not before it (less the slack), and not after [`Run::reaction_deadline`].
fn reaction_reaches(run: &Run, cause: Duration, observed: Duration) -> bool {
    // A poll is stamped when it starts, and its answers may already show a cause that came
    // while it ran: slack covers that.
    cause <= observed + run.parameters.slack && observed <= run.reaction_deadline(cause)
}

/// Whether `collector` held a target in the newest revision served at or before `at`.
fn holds_targets(run: &Run, collector: &str, at: Duration) -> bool {
    run.observations
        .iter()
        .take_while(|observation| observation.at <= at)
        .max_by_key(|observation| observation.view.revision)
        .is_some_and(|observation| {
            observation
                .view
                .assignment
                .get(collector)
                .is_some_and(|targets| !targets.is_empty())
        })
}

/// Each collector's absences and joins, from the workload's `CollectorsChanged` events.
struct CollectorTimeline<'h> {
    absences: Vec<Absence<'h>>,
    joins: Vec<Duration>,
    /// How long after leaving a collector's targets may first move: the departure lag plus
    /// the grace period, less the slack.
    moves_allowed_after: Duration,
}

struct Absence<'h> {
    collector: &'h str,
    left: Duration,
    returned: Option<Duration>,
}

/// A change of membership the leader acts on, at some moment in `earliest..=latest`.
struct MembershipChange {
    earliest: Duration,
    latest: Duration,
}

impl<'h> CollectorTimeline<'h> {
    fn new(run: &Run<'h>) -> Self {
        let parameters = run.parameters;
        let moves_allowed_after = (parameters.departure_lag + parameters.grace_period).saturating_sub(parameters.slack);
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
                        // A return after a short absence leaves its targets where they were;
                        // but a collector that holds none by then (released after an earlier
                        // absence, and gone again before any leader gave it a share) can only
                        // gain targets: its return is a join (CI-profile seed
                        // 12708714499950252813).
                        if event.at - absence.left >= moves_allowed_after || !holds_targets(run, collector, event.at) {
                            joins.push(event.at);
                        }
                    }
                    None => joins.push(event.at),
                }
            }
        }
        CollectorTimeline {
            absences,
            joins,
            moves_allowed_after,
        }
    }

    /// `collector` had been gone long enough by `observed`, and had not come back, or came
    /// back so recently that the moves of its departure may still be arriving.
    fn gone_past_grace(&self, run: &Run, collector: &str, observed: Duration) -> bool {
        self.absences
            .iter()
            .filter(|absence| absence.collector == collector)
            .any(|absence| {
                let moves_from = absence.left + self.moves_allowed_after;
                moves_from <= observed
                    && absence
                        .returned
                        .is_none_or(|returned| returned >= moves_from && observed <= run.reaction_deadline(returned))
            })
    }

    /// Every join, and every departure whose grace period ran out, sorted by time.
    fn membership_changes(&self, run: &Run) -> Vec<MembershipChange> {
        let parameters = run.parameters;
        let joins = self.joins.iter().map(|&at| MembershipChange {
            earliest: at,
            latest: at,
        });
        let dropped = self.absences.iter().filter_map(|absence| {
            let earliest = absence.left + self.moves_allowed_after;
            let stays_away = absence.returned.is_none_or(|returned| returned >= earliest);
            stays_away.then(|| MembershipChange {
                earliest,
                latest: run.departure_noticed_by(absence.left) + parameters.grace_period,
            })
        });
        let mut changes: Vec<MembershipChange> = joins.chain(dropped).collect();
        changes.sort_by_key(|change| change.earliest);
        changes
    }

    /// `collector` was away when the move was observed, or had just come back.
    fn away_near(&self, run: &Run, collector: &str, observed: Duration) -> bool {
        self.absences.iter().any(|absence| {
            absence.collector == collector
                && absence.left <= observed
                && absence
                    .returned
                    .is_none_or(|returned| observed <= run.reaction_deadline(returned))
        })
    }
}
