//! A deterministic allocation simulator: a table, desired targets and collectors over
//! simulated time, planned by the real planner and applied by the real `apply`. Used by the
//! planner's property tests and the allocation-quality report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ta_raft::Outcome;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::Labels;

use super::StrategySettings;
use super::desired::DesiredTarget;
use super::desired::DesiredTargets;
use super::membership::ObservedCollector;
use super::membership::ObservedCollectors;
use super::membership::Readiness;
use super::planner;
use super::planner::PlanSummary;
use super::planner::Scope;
use super::strategy;
use super::strategy::Strategy;

/// The simulated world.
pub struct Simulation {
    pub table: Table,
    pub desired: DesiredTargets,
    pub collectors: ObservedCollectors,
    strategy: Box<dyn Strategy>,
    pub grace_period: Duration,
    pub now_unix_millis: u64,
    /// Targets changed since the last step (for incremental plans).
    changed: Vec<TargetId>,
}

/// A plan's effect once applied.
#[derive(Debug, Clone, Default)]
pub struct StepReport {
    pub summary: PlanSummary,
    /// Targets present before and after whose owner changed.
    pub moved: usize,
}

impl Simulation {
    /// An empty world. Fails only on settings the strategy rejects.
    pub fn new(settings: &StrategySettings, grace_period: Duration) -> Result<Self, strategy::StrategyError> {
        Ok(Self {
            table: Table::new(),
            desired: DesiredTargets::default(),
            collectors: ObservedCollectors::new(),
            strategy: strategy::build(settings)?,
            grace_period,
            now_unix_millis: 1_000_000,
            changed: Vec::new(),
        })
    }

    pub fn add_target(&mut self, id: TargetId, target: DesiredTarget) {
        self.desired.insert(id, target);
        self.changed.push(id);
    }

    pub fn remove_target(&mut self, id: TargetId) {
        self.desired.remove(&id);
        self.changed.push(id);
    }

    pub fn set_collector(&mut self, id: &str, node: Option<&str>, readiness: Readiness) {
        self.collectors.insert(
            id.to_string(),
            ObservedCollector {
                node: node.map(str::to_string),
                readiness,
            },
        );
    }

    pub fn remove_collector(&mut self, id: &str) {
        self.collectors.remove(id);
    }

    pub fn advance(&mut self, by: Duration) {
        self.now_unix_millis += by.as_millis() as u64;
    }

    /// Plan with `scope` and apply. Panics if the table rejects the plan: a plan made against
    /// the current table must always apply (this is a test and report harness).
    pub fn step_with(&mut self, scope: Scope<'_>, rebalance_budget: Option<usize>) -> StepReport {
        let plan = planner::plan(&planner::PlanInput {
            table: &self.table,
            desired: &self.desired,
            scope,
            collectors: &self.collectors,
            strategy: self.strategy.as_ref(),
            grace_period: self.grace_period,
            now_unix_millis: self.now_unix_millis,
            rebalance_budget,
        });
        let before = self.table.clone();
        let transition = ta_raft::apply::apply(&self.table, self.table.revision + 1, &plan.command);
        if let Outcome::Rejected { conflicts } = &transition.outcome {
            panic!("a fresh plan was rejected: {conflicts:?}");
        }
        self.table = transition.table;
        let moved = before
            .targets
            .iter()
            .filter(|(id, old)| {
                self.table
                    .targets
                    .get(*id)
                    .is_some_and(|new| new.collector != old.collector)
            })
            .count();
        StepReport {
            summary: plan.summary,
            moved,
        }
    }

    /// An incremental step over the targets changed since the last step.
    pub fn step(&mut self) -> StepReport {
        let changed = std::mem::take(&mut self.changed);
        self.step_with(Scope::Changed(&changed), None)
    }

    /// A full step, as a new leader's first plan.
    pub fn step_full(&mut self) -> StepReport {
        self.changed.clear();
        self.step_with(Scope::Everything, None)
    }

    /// Targets per collector in the table, every table collector included.
    pub fn counts(&self) -> BTreeMap<Symbol, usize> {
        let mut counts: BTreeMap<Symbol, usize> = self.table.collectors.keys().map(|c| (c.clone(), 0)).collect();
        for target in self.table.targets.values() {
            if let Some(owner) = &target.collector {
                *counts.entry(owner.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Owner of every target.
    pub fn owners(&self) -> BTreeMap<TargetId, Option<Symbol>> {
        self.table
            .targets
            .iter()
            .map(|(id, t)| (*id, t.collector.clone()))
            .collect()
    }
}

/// Synthetic targets: `count` targets in `jobs` jobs on `nodes` nodes, with a few labels.
pub fn synthetic_targets(count: usize, jobs: usize, nodes: usize, seed: u64) -> Vec<(TargetId, DesiredTarget)> {
    let mut random = StdRng::seed_from_u64(seed);
    let job_names: Vec<Symbol> = (0..jobs.max(1)).map(|j| Symbol::from(format!("job-{j}"))).collect();
    let node_names: Vec<Symbol> = (0..nodes.max(1)).map(|n| Symbol::from(format!("node-{n}"))).collect();
    (0..count)
        .map(|i| {
            let job = job_names[random.gen_range(0..job_names.len())].clone();
            let node = node_names[random.gen_range(0..node_names.len())].clone();
            let address: Symbol = Symbol::from(format!(
                "10.{}.{}.{}:{}",
                (i >> 16) & 255,
                (i >> 8) & 255,
                i & 255,
                8000 + random.gen_range(0..100)
            ));
            let labels = Labels::new(vec![
                (Symbol::from("__address__"), address.clone()),
                (Symbol::from("__meta_kubernetes_pod_node_name"), node.clone()),
                (Symbol::from("target_index"), Symbol::from(i.to_string())),
            ]);
            let id = TargetId::compute(&job, labels.iter());
            let target = DesiredTarget {
                job,
                address,
                labels,
                node: Some(node),
            };
            (id, target)
        })
        .collect()
}

/// A target's labels changed (a pod relabeled): same identity, new served labels.
pub fn relabeled(target: &DesiredTarget, generation: u64) -> DesiredTarget {
    let mut pairs: Vec<(Symbol, Symbol)> = target
        .labels
        .iter()
        .map(|(n, v)| (Arc::from(n), Arc::from(v)))
        .collect();
    pairs.push((Symbol::from("__meta_generation"), Symbol::from(generation.to_string())));
    DesiredTarget {
        labels: Labels::new(pairs),
        ..target.clone()
    }
}
