//! `balanced` (ours, docs/architecture.md, invariant I5): sticky placement with the fewest possible moves.
//!
//! - A target keeps its collector while that collector is a member, including while it is
//!   absent within the grace period (I4).
//! - A target without a member owner (new, or its collector left) goes to the ready collector
//!   with the fewest targets (ties: smallest name), below `max_targets_per_collector`.
//! - Then, while the ready collectors' counts differ by more than one (or one is over the
//!   cap), one target moves from the most to the least loaded, within the move budget. A
//!   collector joining N others with m targets therefore takes ⌊m/(N+1)⌋ or ⌈m/(N+1)⌉
//!   targets, all from the most loaded, and a collector leaving moves only its own.
//! - Collectors absent within the grace period neither give nor receive.

use std::collections::BTreeSet;

use ta_raft::intern::Symbol;

use super::BalancedSettings;
use super::StrategyName;
use super::state::Allocation;
use super::state::Bookkeeping;
use super::state::Candidate;
use super::strategy::Strategy;

/// The `balanced` strategy.
pub struct Balanced {
    settings: BalancedSettings,
}

impl Balanced {
    pub fn new(settings: BalancedSettings) -> Self {
        Self { settings }
    }

    fn cap(&self) -> usize {
        self.settings
            .max_targets_per_collector
            .map_or(usize::MAX, |cap| cap as usize)
    }

    /// Ready members ordered by (count, name).
    fn receivers(allocation: &Allocation<'_>) -> BTreeSet<(usize, Symbol)> {
        allocation
            .members()
            .iter()
            .filter(|(_, member)| member.ready)
            .map(|(id, _)| (allocation.count(id), id.clone()))
            .collect()
    }
}

impl Strategy for Balanced {
    fn name(&self) -> StrategyName {
        StrategyName::Balanced
    }

    fn is_stateless(&self) -> bool {
        false
    }

    fn bookkeeping(&self) -> Bookkeeping {
        Bookkeeping::Counts
    }

    fn assign(&self, allocation: &mut Allocation<'_>, candidates: &[Candidate<'_>]) {
        let cap = self.cap();
        let mut receivers = Self::receivers(allocation);
        for candidate in candidates {
            if allocation.candidate_member_owner(candidate).is_some() {
                continue;
            }
            let least = receivers.first().filter(|(count, _)| *count < cap).cloned();
            match least {
                Some((count, member)) => {
                    receivers.remove(&(count, member.clone()));
                    receivers.insert((count + 1, member.clone()));
                    allocation.assign_candidate(candidate, Some(member));
                }
                None => allocation.assign_candidate(candidate, None),
            }
        }
    }

    fn rebalance(&self, allocation: &mut Allocation<'_>, budget: Option<usize>) -> usize {
        let cap = self.cap();
        let mut receivers = Self::receivers(allocation);
        let needs_move = |receivers: &BTreeSet<(usize, Symbol)>| match (receivers.first(), receivers.last()) {
            (Some((least, _)), Some((most, _))) => *least < cap && (most - least > 1 || *most > cap),
            _ => false,
        };
        if !needs_move(&receivers) {
            return 0;
        }
        let mut owned = allocation.targets_by_member();
        let mut moves = 0;
        while needs_move(&receivers) && budget.is_none_or(|budget| moves < budget) {
            let (Some(least), Some(most)) = (receivers.pop_first(), receivers.pop_last()) else {
                break;
            };
            let Some(target) = owned.get_mut(&most.1).and_then(Vec::pop) else {
                break;
            };
            allocation.assign(target, Some(least.1.clone()));
            if let Some(list) = owned.get_mut(&least.1) {
                list.push(target);
            }
            receivers.insert((least.0 + 1, least.1));
            receivers.insert((most.0 - 1, most.1));
            moves += 1;
        }
        moves
    }
}
