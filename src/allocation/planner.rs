//! The planner: a pure function of (desired targets, observed collectors, the current table,
//! the strategy, now) to one command batch for the replicated table. Only the leader runs it;
//! replicas apply its decisions, never re-run strategies (DESIGN.md, "The leader decides").
//!
//! Every decision carries its precondition (`Expect`, or the expected previous owner of a
//! move), so a plan made against a table that changed meanwhile is rejected whole and
//! re-planned, never half-applied.
//!
//! Two scopes: a full plan compares every desired target with the table (a new leader, a
//! periodic check); an incremental plan looks only at the targets discovery says changed,
//! which is what keeps a 1% change at a million targets cheap. When the member set changes,
//! the targets needing a new owner are found by a scan either way.

use std::time::Duration;

use rustc_hash::FxHashMap;
use rustc_hash::FxHashSet;
use ta_raft::Command;
use ta_raft::CommandBuilder;
use ta_raft::Expect;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;

use super::desired::DesiredTarget;
use super::desired::DesiredTargets;
use super::membership;
use super::membership::CollectorChange;
use super::membership::ObservedCollectors;
use super::state::Allocation;
use super::strategy::Strategy;

/// Which targets may differ between discovery and the table.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Compare every target.
    Everything,
    /// Only these may have been added, removed or relabeled since the table was last
    /// reconciled with discovery.
    Changed(&'a [TargetId]),
}

/// Everything a plan depends on.
pub struct PlanInput<'a> {
    pub table: &'a Table,
    pub desired: &'a DesiredTargets,
    pub scope: Scope<'a>,
    pub collectors: &'a ObservedCollectors,
    pub strategy: &'a dyn Strategy,
    /// `collector_not_ready_grace_period`.
    pub grace_period: Duration,
    /// The leader's clock, Unix milliseconds.
    pub now_unix_millis: u64,
    /// Moves allowed now only to even out counts (`balanced`'s churn budget); `None`: unlimited.
    pub rebalance_budget: Option<usize>,
}

/// What a plan does, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub targets_added: usize,
    pub targets_removed: usize,
    /// Existing targets given another owner (rebalancing included).
    pub targets_moved: usize,
    /// Existing targets whose served labels changed.
    pub labels_refreshed: usize,
    /// Of those moves, the ones made only to even out counts.
    pub rebalance_moves: usize,
    /// Targets added or reassigned that no collector could take.
    pub left_unassigned: usize,
    pub collectors_set: usize,
    pub collectors_removed: usize,
}

/// A plan: its command batches, in order, and its summary.
///
/// A large plan is cut into several entries of bounded size, so that no single log entry
/// stalls heartbeats or replication and applying one overlaps replicating the next. Each
/// entry is a consistent step on its own (every target in it has exactly one owner after it;
/// collectors are set in the first entry and removed in the last, after every move away from
/// them), so a reader at any revision between them sees a valid table (docs/architecture.md,
/// I1). An entry rejected on its preconditions leaves the earlier ones applied and the later
/// ones unproposed; the leader then re-plans everything.
pub struct Plan {
    pub commands: Vec<Command>,
    pub summary: PlanSummary,
    pub decisions: usize,
}

impl PlanSummary {
    /// True when the plan adds, removes, moves or relabels a target (not only collectors).
    pub fn changes_targets(&self) -> bool {
        self.targets_added + self.targets_removed + self.targets_moved + self.labels_refreshed > 0
    }
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.decisions == 0
    }
}

/// The weight of one entry: label references plus a few per decision. About 11,000 targets of
/// 43 labels, a few MiB encoded.
pub const ENTRY_WEIGHT_LIMIT: usize = 1_000_000;

/// Builds a plan's entries, starting a new one whenever the current one reaches the limit.
struct Entries {
    done: Vec<Command>,
    current: CommandBuilder,
    weight: usize,
    limit: usize,
    decisions: usize,
}

impl Entries {
    fn new(limit: usize) -> Self {
        Self {
            done: Vec::new(),
            current: CommandBuilder::new(),
            weight: 0,
            limit: limit.max(1),
            decisions: 0,
        }
    }

    /// The entry to add the next decision to, given its weight; cuts before it if needed.
    fn next(&mut self, weight: usize) -> &mut CommandBuilder {
        if self.weight > 0 && self.weight + weight > self.limit {
            let full = std::mem::take(&mut self.current);
            self.decisions += full.len();
            self.done.push(full.build());
            self.weight = 0;
        }
        self.weight += weight;
        &mut self.current
    }

    fn finish(mut self) -> (Vec<Command>, usize) {
        if !self.current.is_empty() {
            self.decisions += self.current.len();
            self.done.push(self.current.build());
        }
        (self.done, self.decisions)
    }
}

/// Weight of a decision that carries no labels.
const DECISION_WEIGHT: usize = 4;

/// Plan the next batch, cut into entries of [`ENTRY_WEIGHT_LIMIT`].
pub fn plan(input: &PlanInput<'_>) -> Plan {
    plan_in_entries(input, ENTRY_WEIGHT_LIMIT)
}

/// [`plan`] with another entry size (tests cut small plans into many entries).
pub fn plan_in_entries(input: &PlanInput<'_>, entry_weight_limit: usize) -> Plan {
    let table = input.table;
    let membership = membership::reconcile(table, input.collectors, input.grace_period, input.now_unix_millis);

    // Targets discovery no longer wants, and the desired ones to look at.
    let mut removed: FxHashSet<TargetId> = FxHashSet::default();
    let mut examined: Vec<TargetId> = Vec::new();
    match input.scope {
        Scope::Everything => {
            removed.extend(table.targets.keys().filter(|id| !input.desired.contains_key(id)));
            examined.extend(input.desired.keys().copied());
        }
        Scope::Changed(changed) => {
            for id in changed {
                if input.desired.contains_key(id) {
                    examined.push(*id);
                } else if table.targets.contains_key(id) {
                    removed.insert(*id);
                }
            }
        }
    }
    examined.sort_unstable();
    examined.dedup();

    // Both in id order, as `examined` is.
    let mut added: Vec<TargetId> = Vec::new();
    let mut relabeled: Vec<TargetId> = Vec::new();
    for &id in &examined {
        match (table.targets.get(&id), input.desired.get(&id)) {
            (None, Some(_)) => added.push(id),
            (Some(current), Some(wanted)) if current.labels != wanted.labels => relabeled.push(id),
            _ => {}
        }
    }

    // Targets needing a decision, in id order.
    let everything = matches!(input.scope, Scope::Everything);
    let candidates: Vec<TargetId> = if input.strategy.is_stateless() && (everything || membership.members_changed) {
        let mut all: Vec<TargetId> = input.desired.keys().copied().collect();
        all.sort_unstable();
        all
    } else {
        let has_member_owner = |id: &TargetId| {
            table
                .targets
                .get(id)
                .and_then(|t| t.collector.as_ref())
                .is_some_and(|owner| membership.members.contains_key(owner))
        };
        let mut needing: Vec<TargetId> = added.clone();
        if everything || membership.members_changed {
            needing.extend(
                table
                    .targets
                    .keys()
                    .filter(|id| !removed.contains(id) && input.desired.contains_key(id) && !has_member_owner(id)),
            );
        } else {
            needing.extend(examined.iter().filter(|id| !has_member_owner(id)));
        }
        needing.sort_unstable();
        needing.dedup();
        needing
    };

    let mut allocation = Allocation::new(
        table,
        input.desired,
        &membership.members,
        &removed,
        input.strategy.bookkeeping(),
    );
    allocation.reserve(candidates.len());
    input.strategy.assign(&mut allocation, &candidates);
    let rebalance_moves = input.strategy.rebalance(&mut allocation, input.rebalance_budget);
    let decided = allocation.into_decisions();

    // The batch: collectors first (targets may name them), collector removals last (they
    // must own nothing once the batch is applied).
    let mut summary = PlanSummary {
        rebalance_moves,
        ..Default::default()
    };
    let mut entries = Entries::new(entry_weight_limit);
    for change in &membership.changes {
        if let CollectorChange::Set { id, node, state } = change {
            entries.next(DECISION_WEIGHT).set_collector(id, node.as_deref(), *state);
            summary.collectors_set += 1;
        }
    }
    let mut removed_sorted: Vec<(Option<&Symbol>, Option<&Symbol>, TargetId)> = removed
        .iter()
        .map(|id| {
            let target = table.targets.get(id);
            (target.map(|t| &t.job), target.and_then(|t| t.collector.as_ref()), *id)
        })
        .collect();
    removed_sorted.sort_unstable();
    for (_, _, id) in removed_sorted {
        entries.next(DECISION_WEIGHT).remove_target(id, Expect::Present);
        summary.targets_removed += 1;
    }
    // Each touched target with why: added and relabeled ones sort before a decision on the
    // same id, so the dedup keeps the reason that needs its labels.
    let mut touched: Vec<(TargetId, Touch)> = Vec::with_capacity(decided.len() + added.len() + relabeled.len());
    touched.extend(added.iter().map(|id| (*id, Touch::Added)));
    touched.extend(relabeled.iter().map(|id| (*id, Touch::Relabeled)));
    touched.extend(decided.keys().map(|id| (*id, Touch::Decided)));
    touched.sort_unstable();
    touched.dedup_by_key(|(id, _)| *id);
    // In (job, new owner) order: the read model rebuilds the body of each (job, collector)
    // an entry touches, so an entry of a large plan touches a few bodies instead of all.
    let touched: Vec<Touched<'_>> = touched
        .into_iter()
        .filter_map(|(id, touch)| {
            let wanted = input.desired.get(&id)?;
            let current: Option<&Symbol> = table.targets.get(&id).and_then(|t| t.collector.as_ref());
            let owner: Option<&Symbol> = match decided.get(&id) {
                Some(decision) => decision.as_ref(),
                None => current,
            };
            Some((wanted, owner, current, id, touch))
        })
        .collect();
    // Jobs and owners are few: rank them by name once and sort by rank, not by text; the
    // keys are worked out once per target, not once per comparison.
    let job_rank = rank(touched.iter().map(|t| &t.0.job));
    let owner_rank = rank(touched.iter().filter_map(|t| t.1));
    let mut order: Vec<(u64, TargetId, u32)> = touched
        .iter()
        .enumerate()
        .map(|(index, (wanted, owner, _, id, _))| {
            let job = job_rank[&wanted.job.id()] as u64;
            let owner = owner.map_or(0, |o| owner_rank[&o.id()] as u64 + 1);
            ((job << 32) | owner, *id, index as u32)
        })
        .collect();
    order.sort_unstable();
    let touched: Vec<_> = order.into_iter().map(|(_, _, index)| touched[index as usize]).collect();
    for (wanted, owner, current, id, touch) in touched {
        let upsert_weight = DECISION_WEIGHT + 2 * wanted.labels.len();
        if touch == Touch::Added {
            entries
                .next(upsert_weight)
                .upsert_target_labels(id, &wanted.job, &wanted.labels, owner, Expect::Absent);
            summary.targets_added += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        } else if touch == Touch::Relabeled {
            entries.next(upsert_weight).upsert_target_labels(
                id,
                &wanted.job,
                &wanted.labels,
                owner,
                Expect::OwnedBy(current.cloned()),
            );
            summary.labels_refreshed += 1;
            if owner != current {
                summary.targets_moved += 1;
                summary.left_unassigned += usize::from(owner.is_none());
            }
        } else if owner != current {
            entries.next(DECISION_WEIGHT).move_target_between(id, current, owner);
            summary.targets_moved += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        }
    }
    for change in &membership.changes {
        if let CollectorChange::Remove { id } = change {
            // In the last entry: by then every move away from it is applied.
            entries.next(0).remove_collector(id);
            summary.collectors_removed += 1;
        }
    }
    let (commands, decisions) = entries.finish();
    Plan {
        commands,
        summary,
        decisions,
    }
}

/// A target in a plan's batch: wanted as, new owner, current owner, id, why.
type Touched<'a> = (
    &'a DesiredTarget,
    Option<&'a Symbol>,
    Option<&'a Symbol>,
    TargetId,
    Touch,
);

/// Why a target is in a plan's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Touch {
    Added,
    Relabeled,
    /// Only its owner may change.
    Decided,
}

/// Each distinct symbol's position in name order, by symbol number.
fn rank<'s>(symbols: impl Iterator<Item = &'s Symbol>) -> FxHashMap<u32, usize> {
    let mut distinct: FxHashMap<u32, &Symbol> = FxHashMap::default();
    for symbol in symbols {
        distinct.entry(symbol.id()).or_insert(symbol);
    }
    let mut sorted: Vec<&Symbol> = distinct.into_values().collect();
    sorted.sort_unstable();
    sorted
        .into_iter()
        .enumerate()
        .map(|(rank, symbol)| (symbol.id(), rank))
        .collect()
}
