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

use std::collections::BTreeSet;
use std::time::Duration;

use rustc_hash::FxHashSet;
use ta_raft::Command;
use ta_raft::CommandBuilder;
use ta_raft::Expect;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;

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

/// A command batch and its summary.
pub struct Plan {
    pub command: Command,
    pub summary: PlanSummary,
    pub decisions: usize,
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.decisions == 0
    }
}

/// Plan the next batch.
pub fn plan(input: &PlanInput<'_>) -> Plan {
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

    let mut added: BTreeSet<TargetId> = BTreeSet::new();
    let mut relabeled: BTreeSet<TargetId> = BTreeSet::new();
    for &id in &examined {
        match (table.targets.get(&id), input.desired.get(&id)) {
            (None, Some(_)) => {
                added.insert(id);
            }
            (Some(current), Some(wanted)) if current.labels != wanted.labels => {
                relabeled.insert(id);
            }
            _ => {}
        }
    }

    // Targets needing a decision.
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
        let mut needing: BTreeSet<TargetId> = added.clone();
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
        needing.into_iter().collect()
    };

    let mut allocation = Allocation::new(
        table,
        input.desired,
        &membership.members,
        &removed,
        input.strategy.bookkeeping(),
    );
    input.strategy.assign(&mut allocation, &candidates);
    let rebalance_moves = input.strategy.rebalance(&mut allocation, input.rebalance_budget);
    let decided = allocation.into_decisions();

    // The batch: collectors first (targets may name them), collector removals last (they
    // must own nothing once the batch is applied).
    let mut summary = PlanSummary {
        rebalance_moves,
        ..Default::default()
    };
    let mut builder = CommandBuilder::new();
    for change in &membership.changes {
        if let CollectorChange::Set { id, node, state } = change {
            builder.set_collector(id, node.as_deref(), *state);
            summary.collectors_set += 1;
        }
    }
    let mut removed_sorted: Vec<TargetId> = removed.iter().copied().collect();
    removed_sorted.sort_unstable();
    for id in removed_sorted {
        builder.remove_target(id, Expect::Present);
        summary.targets_removed += 1;
    }
    let mut touched: BTreeSet<TargetId> = decided.keys().copied().collect();
    touched.extend(added.iter().copied());
    touched.extend(relabeled.iter().copied());
    for id in touched {
        let Some(wanted) = input.desired.get(&id) else {
            continue;
        };
        let current: Option<&Symbol> = table.targets.get(&id).and_then(|t| t.collector.as_ref());
        let owner: Option<&Symbol> = match decided.get(&id) {
            Some(decision) => decision.as_ref(),
            None => current,
        };
        if added.contains(&id) {
            builder.upsert_target_labels(id, &wanted.job, &wanted.labels, owner, Expect::Absent);
            summary.targets_added += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        } else if relabeled.contains(&id) {
            let expect = builder.owned_by(current.map(|c| c.as_ref()));
            builder.upsert_target_labels(id, &wanted.job, &wanted.labels, owner, expect);
            summary.labels_refreshed += 1;
            if owner != current {
                summary.targets_moved += 1;
                summary.left_unassigned += usize::from(owner.is_none());
            }
        } else if owner != current {
            builder.move_target(id, current.map(|c| c.as_ref()), owner.map(|o| o.as_ref()));
            summary.targets_moved += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        }
    }
    for change in &membership.changes {
        if let CollectorChange::Remove { id } = change {
            builder.remove_collector(id);
            summary.collectors_removed += 1;
        }
    }
    let decisions = builder.len();
    Plan {
        command: builder.build(),
        summary,
        decisions,
    }
}
