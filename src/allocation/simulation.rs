//! A deterministic allocation simulator: a table, desired targets and collectors over
//! simulated time, planned by the real planner and applied by the real `apply`. Used by the
//! planner's property tests and the allocation-quality report.

use std::collections::BTreeMap;
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
    /// Plans are cut into entries of this weight (see [`planner::ENTRY_WEIGHT_LIMIT`]).
    pub entry_weight_limit: usize,
    /// Plans that went out as more than one entry.
    pub plans_split: usize,
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
            entry_weight_limit: planner::ENTRY_WEIGHT_LIMIT,
            plans_split: 0,
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

    /// Plan with `scope` and apply its entries in order. Panics if the table rejects an
    /// entry (`apply` itself refuses an owner the table does not hold), or if a revision
    /// between two entries shows a kept target missing or with a third owner
    /// ([`assert_between`]): a plan made against the current table must always apply, and
    /// readers may see any revision (this is a test and report harness).
    pub fn step_with(&mut self, scope: Scope<'_>, rebalance_budget: Option<usize>) -> StepReport {
        let plan = planner::plan_in_entries(
            &planner::PlanInput {
                table: &self.table,
                desired: &self.desired,
                scope,
                collectors: &self.collectors,
                strategy: self.strategy.as_ref(),
                grace_period: self.grace_period,
                now_unix_millis: self.now_unix_millis,
                rebalance_budget,
            },
            self.entry_weight_limit,
        );
        let before = self.table.clone();
        let mut between = Vec::new();
        for command in &plan.commands {
            let transition = ta_raft::apply::apply(&self.table, self.table.revision + 1, command);
            if let Outcome::Rejected { conflicts } = &transition.outcome {
                panic!("a fresh plan was rejected: {conflicts:?}");
            }
            self.table = transition.table;
            between.push(self.table.clone());
        }
        between.pop();
        self.plans_split += usize::from(plan.commands.len() > 1);
        for table in &between {
            assert_between(&before, table, &self.table);
        }
        let moved = before
            .targets()
            .iter()
            .filter(|(id, old)| {
                self.table
                    .targets()
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
        for target in self.table.targets().values() {
            if let Some(owner) = &target.collector {
                *counts.entry(owner.clone()).or_default() += 1;
            }
        }
        counts
    }

    /// Owner of every target.
    pub fn owners(&self) -> BTreeMap<TargetId, Option<Symbol>> {
        self.table
            .targets()
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
            let target = DesiredTarget::new(job, &address, labels, Some(node));
            (id, target)
        })
        .collect()
}

/// A target's labels changed (a pod relabeled): same identity, new served labels.
pub fn relabeled(target: &DesiredTarget, generation: u64) -> DesiredTarget {
    let mut pairs: Vec<(Symbol, Symbol)> = target.labels.pair_iter().cloned().collect();
    pairs.push((Symbol::from("__meta_generation"), Symbol::from(generation.to_string())));
    DesiredTarget::new(
        target.job.clone(),
        target.address(),
        Labels::new(pairs),
        target.node.clone(),
    )
}

/// Allocation quality of one strategy in one world (docs/benchmarks.md, "Allocation quality").
#[derive(Debug, Clone)]
pub struct Quality {
    /// Busiest collector's targets ÷ mean.
    pub max_over_mean: f64,
    /// Relative standard deviation of targets per collector.
    pub relative_std_dev: f64,
    /// Fraction of targets moved when one collector joins.
    pub moved_on_join: f64,
    /// Fraction of targets moved when one collector leaves for longer than the grace period.
    pub moved_on_leave: f64,
    /// Fraction of targets left unassigned after that leave (per-node only).
    pub unassigned_after_leave: f64,
    /// Total moves ÷ targets for a rolling restart of every collector, each one away longer
    /// than the grace period.
    pub rolling_restart_beyond_grace: f64,
    /// The same with each restart within the grace period.
    pub rolling_restart_within_grace: f64,
}

fn counts_of(sim: &Simulation) -> Vec<usize> {
    sim.counts().values().copied().collect()
}

/// Measure `settings` with `collectors` collectors (one per node) and `targets` targets.
pub fn measure_quality(
    settings: &StrategySettings,
    collectors: usize,
    targets: usize,
    seed: u64,
) -> Result<Quality, strategy::StrategyError> {
    let grace = Duration::from_secs(30);
    let mut sim = Simulation::new(settings, grace)?;
    let name = |c: usize| format!("collector-{c}");
    let node = |c: usize| format!("node-{c}");
    for c in 0..collectors {
        sim.set_collector(&name(c), Some(&node(c)), Readiness::Ready);
    }
    for (id, target) in synthetic_targets(targets, (targets / 100).max(1), collectors, seed) {
        sim.add_target(id, target);
    }
    sim.step();
    let m = targets as f64;

    let counts = counts_of(&sim);
    let mean = counts.iter().sum::<usize>() as f64 / counts.len() as f64;
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let variance = counts.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / counts.len() as f64;

    // Join, then undo it.
    sim.set_collector("collector-joining", Some("node-joining"), Readiness::Ready);
    let moved_on_join = sim.step().moved as f64 / m;
    sim.remove_collector("collector-joining");
    sim.step();
    sim.advance(grace * 2);
    sim.step();

    // Leave beyond the grace period: the last collector, as in the reference simulation.
    let leaver = name(collectors - 1);
    sim.remove_collector(&leaver);
    sim.step();
    sim.advance(grace * 2);
    let moved_on_leave = sim.step().moved as f64 / m;
    let unassigned_after_leave = sim.table.targets().values().filter(|t| t.collector.is_none()).count() as f64 / m;
    sim.set_collector(&leaver, Some(&node(collectors - 1)), Readiness::Ready);
    sim.step();

    // Rolling restarts: one collector at a time goes away and comes back.
    let mut rolling = |away: Duration| {
        let mut moves = 0;
        for c in 0..collectors {
            sim.remove_collector(&name(c));
            moves += sim.step().moved;
            sim.advance(away);
            moves += sim.step().moved;
            sim.set_collector(&name(c), Some(&node(c)), Readiness::Ready);
            moves += sim.step().moved;
        }
        moves as f64 / m
    };
    let rolling_restart_within_grace = rolling(grace / 3);
    let rolling_restart_beyond_grace = rolling(grace * 2);

    Ok(Quality {
        max_over_mean: if mean > 0.0 { max / mean } else { 0.0 },
        relative_std_dev: if mean > 0.0 { variance.sqrt() / mean } else { 0.0 },
        moved_on_join,
        moved_on_leave,
        unassigned_after_leave,
        rolling_restart_beyond_grace,
        rolling_restart_within_grace,
    })
}

/// The strategies compared in the quality report, by display name.
pub fn report_strategies() -> Vec<(&'static str, StrategySettings)> {
    use super::StrategyName;
    let with = |strategy, fallback| StrategySettings {
        strategy,
        fallback,
        ..StrategySettings::default()
    };
    vec![
        ("consistent-hashing", with(StrategyName::ConsistentHashing, None)),
        ("least-weighted", with(StrategyName::LeastWeighted, None)),
        ("per-node", with(StrategyName::PerNode, None)),
        ("balanced", with(StrategyName::Balanced, None)),
    ]
}

/// The allocation-quality table for every strategy at every size, as Markdown.
pub fn quality_report(
    collector_counts: &[usize],
    target_counts: &[usize],
    seed: u64,
    mut progress: impl FnMut(&str),
) -> Result<String, strategy::StrategyError> {
    use std::fmt::Write;
    let mut out = String::new();
    for &targets in target_counts {
        for &collectors in collector_counts {
            let _ = writeln!(out, "\n**m = {targets} targets, N = {collectors} collectors**\n");
            let _ = writeln!(
                out,
                "| strategy | max/mean | RSD | moved on join | moved on leave | unassigned after leave | rolling restart, beyond grace (moves/m) | rolling restart, within grace |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
            for (name, settings) in report_strategies() {
                progress(&format!("{name}: {targets} targets, {collectors} collectors"));
                let q = measure_quality(&settings, collectors, targets, seed)?;
                let _ = writeln!(
                    out,
                    "| {name} | {:.3} | {:.3} | {:.4} | {:.4} | {:.4} | {:.2} | {:.2} |",
                    q.max_over_mean,
                    q.relative_std_dev,
                    q.moved_on_join,
                    q.moved_on_leave,
                    q.unassigned_after_leave,
                    q.rolling_restart_beyond_grace,
                    q.rolling_restart_within_grace
                );
            }
        }
    }
    Ok(out)
}

/// A revision between two entries of one plan: a target present before and after the plan
/// is present there too, owned by its owner before or its owner after, so a reader never sees
/// it vanish or pass through a third owner.
pub fn assert_between(before: &Table, between: &Table, after: &Table) {
    for (id, old) in before.targets() {
        let Some(new) = after.targets().get(id) else {
            continue;
        };
        let seen = between.targets().get(id).unwrap_or_else(|| {
            panic!(
                "target {id} is in the table before and after the plan but not at revision {}",
                between.revision
            )
        });
        assert!(
            seen.collector == old.collector || seen.collector == new.collector,
            "target {id} is owned by {:?} at revision {}, neither {:?} before nor {:?} after",
            seen.collector,
            between.revision,
            old.collector,
            new.collector
        );
    }
}
