//! The strategy trait: given the members and the targets needing a decision, choose owners.
//!
//! Two kinds of strategy exist. Stateless ones (`consistent-hashing`, `per-node` with a
//! stateless fallback) compute each target's owner from the target and the member set alone,
//! so the planner re-decides every target when the members change, exactly as upstream
//! re-runs every target through the strategy. Sticky ones (`least-weighted`, `balanced`) keep
//! a target on its owner while that owner is a member; they only place targets that have no
//! member owner, and `balanced` may also move some to even out counts.

use super::StrategyName;
use super::StrategySettings;
use super::balanced::Balanced;
use super::consistent_hashing::ConsistentHashing;
use super::least_weighted::LeastWeighted;
use super::per_node::PerNode;
use super::state::Allocation;
use super::state::Bookkeeping;
use super::state::Candidate;

/// An allocation strategy.
pub trait Strategy: Send + Sync {
    /// The configured name.
    fn name(&self) -> StrategyName;

    /// True when a target's owner depends only on the target and the member set.
    fn is_stateless(&self) -> bool;

    /// Counts the strategy reads while deciding.
    fn bookkeeping(&self) -> Bookkeeping;

    /// Decide an owner for each of `candidates` (ascending ids). Sticky strategies keep a
    /// candidate on its owner when that owner is a member.
    fn assign(&self, allocation: &mut Allocation<'_>, candidates: &[Candidate<'_>]);

    /// Moves beyond the candidates, to even out counts, at most `budget` of them (`None`:
    /// unlimited). Returns how many were made.
    fn rebalance(&self, _allocation: &mut Allocation<'_>, _budget: Option<usize>) -> usize {
        0
    }
}

/// Why a strategy cannot be built from settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("allocation_fallback_strategy cannot be per-node")]
    PerNodeFallback,
}

/// The strategy `settings` describe.
pub fn build(settings: &StrategySettings) -> Result<Box<dyn Strategy>, StrategyError> {
    match settings.strategy {
        StrategyName::PerNode => {
            let fallback = match settings.fallback {
                None => None,
                Some(StrategyName::PerNode) => return Err(StrategyError::PerNodeFallback),
                Some(name) => Some(build_simple(name, settings)),
            };
            Ok(Box::new(PerNode::new(fallback)))
        }
        // Upstream ignores the fallback for every strategy but per-node.
        name => Ok(build_simple(name, settings)),
    }
}

fn build_simple(name: StrategyName, settings: &StrategySettings) -> Box<dyn Strategy> {
    match name {
        StrategyName::ConsistentHashing => Box::new(ConsistentHashing::new(settings.ring_layout)),
        StrategyName::LeastWeighted => Box::new(LeastWeighted),
        StrategyName::Balanced => Box::new(Balanced::new(settings.balanced)),
        StrategyName::PerNode => Box::new(PerNode::new(None)),
    }
}
