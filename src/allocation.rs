//! Allocation: which collector takes which target. The planner (`planner`) turns desired
//! targets, observed collectors (`membership`) and the current table into one command batch,
//! asking a strategy (`strategy`: `consistent_hashing`, `least_weighted`, `per_node`,
//! `balanced`) to place the targets that need an owner. Settings live here.

pub mod balanced;
pub mod consistent_hashing;
pub mod desired;
pub mod least_weighted;
pub mod membership;
pub mod per_node;
pub mod planner;
pub mod simulation;
pub mod state;
pub mod strategy;

use consistent_hashing::RingLayout;

/// A strategy by its configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrategyName {
    /// `consistent-hashing` (upstream's default).
    ConsistentHashing,
    /// `least-weighted`.
    LeastWeighted,
    /// `per-node`.
    PerNode,
    /// `balanced` (ours, docs/architecture.md, invariant I5).
    Balanced,
}

impl StrategyName {
    /// Every accepted name, for error messages.
    pub const ALL: [&'static str; 4] = ["consistent-hashing", "least-weighted", "per-node", "balanced"];

    /// Parse a configured name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "consistent-hashing" => Some(Self::ConsistentHashing),
            "least-weighted" => Some(Self::LeastWeighted),
            "per-node" => Some(Self::PerNode),
            "balanced" => Some(Self::Balanced),
            _ => None,
        }
    }

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConsistentHashing => "consistent-hashing",
            Self::LeastWeighted => "least-weighted",
            Self::PerNode => "per-node",
            Self::Balanced => "balanced",
        }
    }
}

/// Settings of the `balanced` strategy (config section `balanced:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BalancedSettings {
    /// Moves made only to even out counts (not those forced by a collector leaving) are
    /// limited to this many per minute; `None`: unlimited.
    pub max_moves_per_minute: Option<u32>,
    /// No collector is given more than this many targets; `None`: no cap.
    pub max_targets_per_collector: Option<u32>,
}

/// Everything that chooses how targets are allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategySettings {
    /// `allocation_strategy`.
    pub strategy: StrategyName,
    /// `allocation_fallback_strategy` (used by `per-node` only, as upstream).
    pub fallback: Option<StrategyName>,
    /// `consistent_hashing.ring_layout`: upstream's v1.0.0 layout unless migrating from ≤ 0.158.
    pub ring_layout: RingLayout,
    /// `balanced:`.
    pub balanced: BalancedSettings,
}

impl Default for StrategySettings {
    fn default() -> Self {
        Self {
            strategy: StrategyName::ConsistentHashing,
            fallback: None,
            ring_layout: RingLayout::default(),
            balanced: BalancedSettings::default(),
        }
    }
}
