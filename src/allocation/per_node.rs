//! `per-node`, upstream semantics (`per_node.go`): a target goes to the collector on its
//! node (`desired::node_of`). A target with no node goes to the fallback strategy if one is
//! configured, else stays unassigned; a node without a collector leaves its targets
//! unassigned (no fallback then, as upstream). Where two collectors share a node upstream
//! picks one at random; here the smallest name wins, so every replica agrees.

use std::collections::BTreeMap;

use ta_raft::intern::Symbol;

use super::StrategyName;
use super::state::Allocation;
use super::state::Bookkeeping;
use super::state::Candidate;
use super::strategy::Strategy;

/// The `per-node` strategy.
pub struct PerNode {
    fallback: Option<Box<dyn Strategy>>,
}

impl PerNode {
    pub fn new(fallback: Option<Box<dyn Strategy>>) -> Self {
        Self { fallback }
    }
}

impl Strategy for PerNode {
    fn name(&self) -> StrategyName {
        StrategyName::PerNode
    }

    /// Node-placed targets follow the node map, so all targets are re-decided on a member
    /// change; a sticky fallback keeps its own targets where they are.
    fn is_stateless(&self) -> bool {
        true
    }

    fn bookkeeping(&self) -> Bookkeeping {
        self.fallback.as_ref().map_or(Bookkeeping::None, |f| f.bookkeeping())
    }

    fn assign(&self, allocation: &mut Allocation<'_>, candidates: &[Candidate<'_>]) {
        let mut by_node: BTreeMap<Symbol, Symbol> = BTreeMap::new();
        for (id, member) in allocation.members() {
            if let Some(node) = &member.node {
                by_node.entry(node.clone()).or_insert_with(|| id.clone());
            }
        }
        let mut without_node = Vec::new();
        for candidate in candidates {
            match &candidate.wanted.node {
                Some(node) => {
                    let owner = by_node.get(node).cloned();
                    allocation.assign_candidate(candidate, owner);
                }
                None => without_node.push(*candidate),
            }
        }
        match &self.fallback {
            Some(fallback) => fallback.assign(allocation, &without_node),
            None => {
                for candidate in without_node {
                    allocation.assign_candidate(&candidate, None);
                }
            }
        }
    }
}
