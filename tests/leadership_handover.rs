//! Leadership changes hand over cleanly: a plan the old leader made before it lost
//! leadership, committed after the new leader's first batch, is rejected whole by its
//! preconditions and changes nothing (never half-applied).

use std::time::Duration;

use ta_raft::Outcome;
use ta_raft::apply::apply;
use target_allocator::allocation::StrategySettings;
use target_allocator::allocation::membership::Readiness;
use target_allocator::allocation::planner;
use target_allocator::allocation::planner::PlanInput;
use target_allocator::allocation::planner::Scope;
use target_allocator::allocation::simulation::Simulation;
use target_allocator::allocation::simulation::synthetic_targets;
use target_allocator::allocation::strategy;

#[test]
fn the_old_leaders_in_flight_plan_is_rejected_whole() {
    let settings = StrategySettings::default();
    let mut cluster = Simulation::new(&settings, Duration::from_secs(30)).expect("strategy");
    for (id, target) in synthetic_targets(2_000, 10, 3, 42) {
        cluster.add_target(id, target);
    }
    for collector in ["c-0", "c-1", "c-2"] {
        cluster.set_collector(collector, None, Readiness::Ready);
    }
    cluster.step_full();
    let before = cluster.table.clone();
    let strategy = strategy::build(&settings).expect("strategy");

    // The old leader sees a fourth collector and plans moves onto it...
    let mut old_view = cluster.collectors.clone();
    old_view.insert(
        "c-3".into(),
        target_allocator::allocation::membership::ObservedCollector {
            node: None,
            readiness: Readiness::Ready,
        },
    );
    let stale_plan = planner::plan(&PlanInput {
        table: &before,
        desired: &cluster.desired,
        scope: Scope::Everything,
        collectors: &old_view,
        strategy: strategy.as_ref(),
        grace_period: Duration::from_secs(30),
        now_unix_millis: cluster.now_unix_millis,
        rebalance_budget: None,
    });
    assert!(
        stale_plan.summary.targets_moved > 0,
        "the stale plan must move something to be a test"
    );

    // ...but loses leadership; the new leader sees c-2 leave for good and commits first.
    cluster.remove_collector("c-2");
    cluster.advance(Duration::from_secs(31));
    cluster.step_full();
    cluster.advance(Duration::from_secs(31));
    cluster.step_full();
    let after_new_leader = cluster.table.clone();
    assert!(!after_new_leader.collectors.contains_key("c-2"));

    // The old leader's plan arrives later in the log.
    assert_eq!(stale_plan.commands.len(), 1, "a small plan is one entry");
    let transition = apply(
        &after_new_leader,
        after_new_leader.revision + 1,
        &stale_plan.commands[0],
    );
    assert!(
        matches!(transition.outcome, Outcome::Rejected { .. }),
        "expected the stale plan to be rejected, got {:?}",
        transition.outcome
    );
    assert_eq!(
        transition.table, after_new_leader,
        "a rejected plan must change nothing"
    );
}
