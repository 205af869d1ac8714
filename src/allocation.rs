//! Allocation strategies: which collector takes which target. Today: upstream's
//! consistent-hashing ring (`consistent_hashing`); the strategy trait, `least-weighted`,
//! `per-node`, `balanced` and the planner arrive with the rest of the allocation engine.

pub mod consistent_hashing;
