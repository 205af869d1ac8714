//! The checker on synthetic histories: a clean run with faults passes, and each kind of
//! violation is caught by the rule meant to catch it and by no other, so every check is
//! proven able to fail (and not to fail on what it must forgive).

pub(crate) mod scenario;

use std::collections::BTreeSet;
use std::time::Duration;

use scenario::ALL;
use scenario::Evolve;
use scenario::Scenario;
use scenario::seconds;

use super::check;
use crate::history::History;
use crate::history::ServedView;
use crate::report::Report;
use crate::report::Violation;
use crate::report::ViolationKind;

fn kinds(report: &Report) -> Vec<ViolationKind> {
    let kinds: BTreeSet<ViolationKind> = report.violations.iter().map(|violation| violation.kind).collect();
    kinds.into_iter().collect()
}

/// The only violation of `kind`, failing with the whole report if there is not exactly one.
fn only(report: &Report, kind: ViolationKind) -> &Violation {
    let found: Vec<&Violation> = report
        .violations
        .iter()
        .filter(|violation| violation.kind == kind)
        .collect();
    assert_eq!(found.len(), 1, "{}", report.to_markdown());
    found[0]
}

fn assert_kinds(report: &Report, expected: &[ViolationKind]) {
    assert_eq!(kinds(report), expected, "{}", report.to_markdown());
}

/// Leader isolation, a new target, a collector away briefly, a collector joining, a follower
/// killed and restarted, a full restart: everything a healthy cluster should do.
fn clean_run_with_faults() -> History {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let elected_b = settled.at_revision(11).led_by("b");
    let with_t7 = elected_b.at_revision(12).assigning("t7", "c1");
    let c3_took_t2 = with_t7.at_revision(13).assigning("t2", "c3");
    let after_restart = c3_took_t2.at_revision(14).led_by("c");
    scenario
        // Leader a is cut off: it serves until its 3 s lease runs out, then answers 503; b and
        // c elect b, whose first entry is revision 11.
        .fault(5.0, "isolate leader a", &["a"], true)
        .serve(&["a"], 5.0, 8.0, &settled)
        .unavailable(&["a"], 8.0, 15.0)
        .serve(&["b", "c"], 5.0, 7.0, &settled)
        .serve(&["b", "c"], 7.0, 10.5, &elected_b)
        // The workload adds t7; the new leader assigns it at once.
        .targets_added(10.0, &["t7"])
        .serve(&["b", "c"], 10.5, 15.0, &with_t7)
        // Healed: a catches up with the majority.
        .heal(15.0, "isolate leader a")
        .serve(ALL, 15.0, 21.5, &with_t7)
        // c2 is away 4 s, well within the 30 s grace period: nothing moves.
        .collectors_left(16.0, &["c2"])
        .collectors_joined(20.0, &["c2"])
        // c3 joins and takes one target, from c1.
        .collectors_joined(21.0, &["c3"])
        .serve(ALL, 21.5, 24.0, &c3_took_t2)
        // Follower c is killed and restarted on its own volume.
        .fault(24.0, "kill follower c", &["c"], false)
        .serve(&["a", "b"], 24.0, 30.0, &c3_took_t2)
        .unreachable(&["c"], 24.0, 26.0)
        .restarted(26.0, "c", false)
        .heal(26.0, "kill follower c")
        .serve(&["c"], 26.0, 30.0, &c3_took_t2)
        // Every replica killed and started again; c is elected and serves the same table.
        .fault(30.0, "full restart", ALL, false)
        .unreachable(ALL, 30.0, 32.0)
        .full_restart(32.0)
        .heal(32.0, "full restart")
        .unavailable(ALL, 32.0, 34.0)
        .serve(ALL, 34.0, 45.0, &after_restart)
        .ends(45.0)
}

#[test]
fn a_clean_run_with_faults_passes_and_is_measured() {
    let report = check(&clean_run_with_faults());

    assert!(report.passed(), "{}", report.to_markdown());
    assert_eq!(report.seed, 7);
    assert_eq!(report.revisions_seen, 5);
    let hit: Vec<_> = report.faults.iter().map(|fault| fault.hit_leader.as_deref()).collect();
    assert_eq!(hit, [Some("a"), None, Some("b")]);
    // b named leader 2 s after a was cut off; the full restart is the cluster starting, not a
    // failover.
    assert_eq!(report.failover.samples, 1);
    assert_eq!(report.failover.p50, Some(seconds(2.0)));
    assert_eq!(report.failover.max, Some(seconds(2.0)));
    let converged: Vec<_> = report.convergence.iter().map(|sample| sample.converged_after).collect();
    assert_eq!(converged, [Some(seconds(0.0)), Some(seconds(0.0)), Some(seconds(2.0))]);
    assert_eq!(report.availability.majority_side_during_faults.ratio, Some(1.0));
    let isolated_leader = &report.availability.per_replica["a"];
    assert!(isolated_leader.served < isolated_leader.polls);
}

#[test]
fn a_target_listed_under_two_collectors_has_two_owners() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let doubled = settled.at_revision(11).also_listing("t1", "c2");
    let history = scenario.serve(ALL, 5.0, 10.0, &doubled).ends(10.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::DoubleOwner]);
    // Once per replica and revision, not once per poll.
    assert_eq!(report.violations.len(), 3);
    assert!(report.violations[0].details.contains("app/t1 under c1 and c2"));
}

#[test]
fn replicas_serving_one_revision_differently_disagree() {
    let (scenario, settled) = Scenario::settled_until(6.0);
    let t7_on_c1 = settled.at_revision(11).assigning("t7", "c1");
    let t7_on_c2 = settled.at_revision(11).assigning("t7", "c2");
    let history = scenario
        .targets_added(5.0, &["t7"])
        .serve(&["a", "c"], 6.0, 12.0, &t7_on_c1)
        .serve(&["b"], 6.5, 12.0, &t7_on_c2)
        .ends(12.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::Disagreement]);
    let violation = only(&report, ViolationKind::Disagreement);
    assert_eq!(violation.replicas, ["a", "b"]);
    assert_eq!(violation.revision, Some(11));
    assert!(violation.details.contains("app/t7: c1 vs c2"), "{}", violation.details);
}

#[test]
fn a_replica_serving_an_older_revision_after_its_restart_goes_backwards() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let history = scenario
        .fault(5.0, "kill follower b", &["b"], false)
        .serve(&["a", "c"], 5.0, 20.0, &settled)
        .unreachable(&["b"], 5.0, 7.0)
        .restarted(7.0, "b", false)
        .heal(7.0, "kill follower b")
        .serve(&["b"], 7.0, 8.0, &settled.at_revision(9))
        .serve(&["b"], 8.0, 20.0, &settled)
        .ends(20.0);

    let report = check(&history);

    // Serving the old state is also serving a superseded one (I6).
    assert_kinds(
        &report,
        &[ViolationKind::RevisionBackwards, ViolationKind::SupersededServing],
    );
    let violation = only(&report, ViolationKind::RevisionBackwards);
    assert_eq!(violation.replicas, ["b"]);
    assert_eq!(violation.at, seconds(7.0));
    assert!(
        violation.details.contains("across its restart at 7.00 s"),
        "{}",
        violation.details
    );
}

#[test]
fn a_full_restart_bringing_back_an_older_state_lost_it() {
    let (scenario, settled) = Scenario::settled_until(5.5);
    let with_t7 = settled.at_revision(11).assigning("t7", "c1");
    let new_leader_entry = with_t7.at_revision(12);
    let history = scenario
        .targets_added(5.0, &["t7"])
        // c lags behind: revision 11 has not reached it when the cluster goes down.
        .serve(&["a", "b"], 5.5, 10.0, &with_t7)
        .serve(&["c"], 5.5, 10.0, &settled)
        .fault(10.0, "full restart", ALL, false)
        .unreachable(ALL, 10.0, 12.0)
        .full_restart(12.0)
        .heal(12.0, "full restart")
        // c serves its own older state before catching up: the cluster went back in time.
        .serve(&["c"], 12.0, 13.0, &settled)
        .serve(&["c"], 13.0, 25.0, &new_leader_entry)
        .serve(&["a", "b"], 12.0, 25.0, &new_leader_entry)
        .ends(25.0);

    let report = check(&history);

    assert_kinds(
        &report,
        &[
            ViolationKind::StateLostAfterFullRestart,
            ViolationKind::SupersededServing,
        ],
    );
    let violation = only(&report, ViolationKind::StateLostAfterFullRestart);
    assert_eq!(violation.replicas, ["c"]);
    assert_eq!(violation.revision, Some(10));
}

#[test]
fn a_target_moving_when_the_leader_dies_is_an_unexplained_move() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let moved = settled.at_revision(11).led_by("b").assigning("t1", "c2");
    let history = scenario
        .fault(5.0, "kill leader a", &["a"], false)
        .unreachable(&["a"], 5.0, 8.0)
        .serve(&["b", "c"], 5.0, 7.0, &settled)
        .serve(&["b", "c"], 7.0, 20.0, &moved)
        .restarted(8.0, "a", false)
        .heal(8.0, "kill leader a")
        .serve(&["a"], 8.0, 20.0, &moved)
        .ends(20.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::UnexplainedMove]);
    let violation = only(&report, ViolationKind::UnexplainedMove);
    assert_eq!(violation.revision, Some(11));
    assert!(violation.details.contains("app/t1 c1 → c2"), "{}", violation.details);
    assert_eq!(report.failover.max, Some(seconds(2.0)));
}

#[test]
fn a_collector_back_within_the_grace_period_must_keep_its_targets() {
    let (scenario, settled) = Scenario::settled_until(7.0);
    let moved = settled.at_revision(11).assigning("t4", "c1");
    let history = scenario
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 7.0, 20.0, &moved)
        .collectors_joined(10.0, &["c2"])
        .ends(20.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::MoveWithinGrace]);
    assert!(
        only(&report, ViolationKind::MoveWithinGrace)
            .details
            .contains("app/t4 c2 → c1")
    );
}

/// A settled run until `until` with a 5 s grace period and a 3 s departure lag, and the view
/// once `c2`'s targets `t4`–`t6` went to `c1` (revision 11).
fn departure_of_c2_settled_until(until: f64) -> (Scenario, ServedView, ServedView) {
    let (scenario, settled) = Scenario::settled_until_with(until, |parameters| {
        parameters.grace_period = seconds(5.0);
        parameters.departure_lag = seconds(3.0);
    });
    let released = settled
        .at_revision(11)
        .assigning("t4", "c1")
        .assigning("t5", "c1")
        .assigning("t6", "c1");
    (scenario, settled, released)
}

#[test]
fn a_collector_holding_nothing_that_returns_after_a_short_absence_joins() {
    let (scenario, _, released) = departure_of_c2_settled_until(14.0);
    let rejoined = released
        .at_revision(12)
        .assigning("t4", "c2")
        .assigning("t5", "c2")
        .assigning("t6", "c2");
    // c2 leaves at 5 s and is released by 14 s; it polls once at 20 s and is gone again
    // before any leader gives it a share, then returns at 23 s, 2.9 s later: it holds
    // nothing, so that return can only give it targets (CI-profile seed
    // 12708714499950252813, where the share came with a new leader).
    let history = scenario
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 14.0, 24.0, &released)
        .collectors_joined(20.0, &["c2"])
        .collectors_left(20.1, &["c2"])
        .collectors_joined(23.0, &["c2"])
        .serve(ALL, 24.0, 30.0, &rejoined)
        .ends(30.0);

    let report = check(&history);
    assert!(report.passed(), "{}", report.to_markdown());
}

#[test]
fn targets_of_a_departed_collector_moving_before_the_grace_period_ends_are_flagged() {
    let (scenario, settled) = Scenario::settled_until(7.0);
    let moved = settled.at_revision(11).assigning("t4", "c1");
    let history = scenario
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 7.0, 20.0, &moved)
        .ends(20.0);

    assert_kinds(&check(&history), &[ViolationKind::MoveWithinGrace]);
}

#[test]
fn targets_of_a_collector_gone_past_the_grace_period_may_move() {
    let (scenario, settled) = Scenario::settled_until(36.0);
    let moved = settled
        .at_revision(11)
        .assigning("t4", "c1")
        .assigning("t5", "c1")
        .assigning("t6", "c1");
    let history = scenario
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 36.0, 40.0, &moved)
        .ends(40.0);

    let report = check(&history);

    assert!(report.passed(), "{}", report.to_markdown());
}

#[test]
fn a_joining_collector_may_shift_targets_in_one_batch_but_not_later() {
    let (scenario, settled) = Scenario::settled_until(6.0);
    // Consistent-hashing with bounded loads: the join moves t1 to c3 and shifts t4 as well.
    let joined = settled.at_revision(11).assigning("t1", "c3").assigning("t4", "c1");
    // A second batch moving more, still within the join's reaction window: not the join's.
    let again = joined.at_revision(12).assigning("t5", "c1");
    let later = again.at_revision(13).assigning("t6", "c1");
    let history = scenario
        .collectors_joined(5.0, &["c3"])
        .serve(ALL, 6.0, 7.0, &joined)
        .serve(ALL, 7.0, 20.0, &again)
        .serve(ALL, 20.0, 24.0, &later)
        .ends(24.0);

    let report = check(&history);

    let revisions: Vec<_> = report.violations.iter().map(|violation| violation.revision).collect();
    assert_eq!(revisions, [Some(12), Some(13)], "{}", report.to_markdown());
    assert!(report.violations[0].details.contains("app/t5 c2 → c1"));
    assert!(report.violations[1].details.contains("app/t6 c2 → c1"));
}

#[test]
fn a_silent_collector_is_noticed_only_after_the_departure_lag() {
    let (scenario, settled) = Scenario::settled_until_with(5.0, |parameters| {
        parameters.grace_period = seconds(5.0);
        parameters.departure_lag = seconds(3.0);
    });
    let moved = settled.at_revision(11).assigning("t4", "c1");
    // Left at 5 s: the allocator may notice at 8 s, and move at 13 s (less 1 s of slack).
    let early = scenario
        .clone()
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 5.0, 10.5, &settled)
        .serve(ALL, 10.5, 14.0, &moved)
        .ends(14.0);
    let in_time = scenario
        .collectors_left(5.0, &["c2"])
        .serve(ALL, 5.0, 12.5, &settled)
        .serve(ALL, 12.5, 16.0, &moved)
        .ends(16.0);

    assert_kinds(&check(&early), &[ViolationKind::MoveWithinGrace]);
    let report = check(&in_time);
    assert!(report.passed(), "{}", report.to_markdown());
}

#[test]
fn a_new_leader_term_before_a_departure_is_noticed_restarts_the_departure_lag() {
    let (scenario, settled, released) = departure_of_c2_settled_until(6.5);
    // c2 falls silent at 5 s; at 6.5 s, before its registration expires, the leader is paused.
    // Under the old leader its targets would move by 5 + 3 + 5 + 1 s of slack + a reaction
    // (16.5 s). But b, elected in term 2 (first seen at 8 s), registers every collector the
    // table lists as ready afresh, so c2 is noticed gone only at 8 + 3 s and released at 16 s
    // plus a coalescing window, seen at 18 s.
    let story = |new_leader: &ServedView| {
        scenario
            .clone()
            .collectors_left(5.0, &["c2"])
            .fault(6.5, "pause-leader", &["a"], false)
            .serve(&["b", "c"], 6.5, 8.0, &settled)
            .unreachable(&["a"], 6.5, 9.0)
            .heal(9.0, "pause-leader")
            .serve(&["b", "c"], 8.0, 18.0, new_leader)
            .serve(&["a"], 9.0, 18.0, new_leader)
            .serve(ALL, 18.0, 25.0, &released.led_by("b").in_term(2))
            .ends(25.0)
    };

    let report = check(&story(&settled.led_by("b").in_term(2)));
    assert!(report.passed(), "{}", report.to_markdown());
    // The same story with no new term seen (a history without the term header): too late.
    let report = check(&story(&settled.led_by("b")));
    assert_kinds(&report, &[ViolationKind::DepartedCollectorKeptTargets]);
}

#[test]
fn a_full_restart_begun_before_the_lag_ran_out_restarts_it_however_late_the_leader_returns() {
    let (scenario, settled, released) = departure_of_c2_settled_until(6.5);
    // c2 falls silent at 5 s; every replica is killed at 6.5 s, before the lag could run out
    // (8 s), and only comes back at 11.5 s: no leader could notice c2 before the restarted
    // one, first seen at 12 s, which registers it afresh (seed 10082322574750803730 of the
    // CI profile had this shape, with a 5.3 s hold). Released by 12 + 1 + 3 + 1 + 5 s.
    let story = |released_at: f64| {
        scenario
            .clone()
            .collectors_left(5.0, &["c2"])
            .fault(6.5, "full-restart", ALL, false)
            .unreachable(ALL, 6.5, 12.0)
            .full_restart(11.0)
            .heal(11.5, "full-restart")
            .serve(ALL, 12.0, released_at, &settled)
            .serve(ALL, released_at, 40.0, &released)
            .ends(40.0)
    };

    let report = check(&story(22.5));
    assert!(report.passed(), "{}", report.to_markdown());
    // Still held well after that: the departure is enforced from the restarted leader on.
    let report = check(&story(32.0));
    assert_kinds(&report, &[ViolationKind::DepartedCollectorKeptTargets]);
}

#[test]
fn a_leader_restarted_in_its_own_term_also_restarts_the_departure_lag() {
    let (scenario, settled, released) = departure_of_c2_settled_until(6.5);
    // A full restart at 6.5 s: `a` leads again in term 1 (its vote was committed), but its
    // leader loop starts over at 8.5 s and registers c2 afresh.
    let story = |restart_recorded: bool| {
        let scenario = scenario
            .clone()
            .collectors_left(5.0, &["c2"])
            .fault(6.5, "full-restart", ALL, false)
            .unreachable(ALL, 6.5, 8.5);
        let scenario = if restart_recorded {
            scenario.full_restart(8.0)
        } else {
            scenario
        };
        scenario
            .heal(8.0, "full-restart")
            .serve(ALL, 8.5, 18.5, &settled)
            .serve(ALL, 18.5, 25.0, &released)
            .ends(25.0)
    };

    let report = check(&story(true));
    assert!(report.passed(), "{}", report.to_markdown());
    let report = check(&story(false));
    assert_kinds(&report, &[ViolationKind::DepartedCollectorKeptTargets]);
}

#[test]
fn a_collector_gone_past_the_grace_period_must_lose_its_targets() {
    let (scenario, _) = Scenario::settled_until(40.0);
    // c2 left at 5 s; its targets should have moved by 5 + 30 + 1 s of slack + a reaction.
    let history = scenario.collectors_left(5.0, &["c2"]).ends(40.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::DepartedCollectorKeptTargets]);
    let details = &only(&report, ViolationKind::DepartedCollectorKeptTargets).details;
    assert!(details.contains("c2 left at 5"), "{details}");
}

#[test]
fn an_isolated_replica_serving_past_its_lease_is_stale() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let history = scenario
        .fault(5.0, "isolate follower c", &["c"], true)
        .serve(ALL, 5.0, 25.0, &settled)
        .heal(15.0, "isolate follower c")
        .ends(25.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::StaleServing]);
    let violation = only(&report, ViolationKind::StaleServing);
    assert_eq!(violation.replicas, ["c"]);
    // Fault at 5 s + lease 3 s + slack 1 s: the poll at 9.5 s is the first too late.
    assert_eq!(violation.at, seconds(9.5));
}

#[test]
fn a_resumed_leader_serving_a_superseded_revision_is_stale() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let elected_b = settled.at_revision(11).led_by("b");
    let history = scenario
        .fault(5.0, "pause leader a", &["a"], false)
        .unreachable(&["a"], 5.0, 12.0)
        .serve(&["b", "c"], 5.0, 7.0, &settled)
        .serve(&["b", "c"], 7.0, 20.0, &elected_b)
        .heal(12.0, "pause leader a")
        // Revision 11 was served from 7 s; at 12 s, more than lease + slack later, a still
        // serves revision 10.
        .serve(&["a"], 12.0, 13.0, &settled)
        .serve(&["a"], 13.0, 20.0, &elected_b)
        .ends(20.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::SupersededServing]);
    let violation = only(&report, ViolationKind::SupersededServing);
    assert_eq!(violation.replicas, ["a"]);
    assert!(violation.details.contains("2 polls"), "{}", violation.details);
}

#[test]
fn a_replica_that_never_catches_up_after_the_last_heal_has_not_converged() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let history = scenario
        .fault(5.0, "kill follower c", &["c"], false)
        .serve(&["a", "b"], 5.0, 30.0, &settled)
        .unreachable(&["c"], 5.0, 8.0)
        .restarted(8.0, "c", false)
        .heal(8.0, "kill follower c")
        .unavailable(&["c"], 8.0, 30.0)
        .ends(30.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::NotConverged]);
    let violation = only(&report, ViolationKind::NotConverged);
    assert_eq!(violation.replicas, ["c"]);
    assert_eq!(violation.at, seconds(18.0));
    assert_eq!(report.convergence[0].converged_after, None);
}

#[test]
fn a_new_target_no_replica_serves_is_unassigned() {
    let (scenario, _) = Scenario::settled_until(20.0);
    let history = scenario.targets_added(5.0, &["t7"]).ends(20.0);

    let report = check(&history);

    assert_kinds(&report, &[ViolationKind::NewTargetUnassigned]);
    let violation = only(&report, ViolationKind::NewTargetUnassigned);
    // Added at 5 s, coalescing 1 s + 5 s.
    assert_eq!(violation.at, seconds(11.0));
    assert!(violation.details.contains("app/t7"));
}

#[test]
fn a_run_ending_before_convergence_can_be_judged_does_not_pass() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let history = scenario
        .fault(5.0, "kill follower c", &["c"], false)
        .serve(&["a", "b"], 5.0, 9.0, &settled)
        .unreachable(&["c"], 5.0, 8.0)
        .heal(8.0, "kill follower c")
        .unavailable(&["c"], 8.0, 9.0)
        .ends(9.0);

    assert_kinds(&check(&history), &[ViolationKind::LivenessUnjudged]);
}

#[test]
fn a_fault_that_never_heals_does_not_pass() {
    let (scenario, settled) = Scenario::settled_until(5.0);
    let history = scenario
        .fault(5.0, "kill follower c", &["c"], false)
        .serve(&["a", "b"], 5.0, 30.0, &settled)
        .unreachable(&["c"], 5.0, 30.0)
        .ends(30.0);

    assert_kinds(&check(&history), &[ViolationKind::LivenessUnjudged]);
}

#[test]
fn the_report_carries_the_seed_into_json_and_markdown() {
    let (scenario, _) = Scenario::settled_until(20.0);
    let report = check(&scenario.targets_added(5.0, &["t7"]).ends(20.0));

    let json = report.to_json().expect("a report serialises");
    assert!(json.contains("\"seed\": 7"), "{json}");
    assert!(json.contains("\"kind\": \"new_target_unassigned\""), "{json}");
    let parsed: Report = serde_json::from_str(&json).expect("the JSON reads back");
    assert_eq!(parsed, report);

    let markdown = report.to_markdown();
    assert!(markdown.contains("Seed `7`"), "{markdown}");
    assert!(markdown.contains("**failed** with 1 violation."), "{markdown}");
    assert!(
        markdown.contains("| liveness | new target unassigned | 11.00 s |"),
        "{markdown}"
    );
}

#[test]
fn a_history_can_be_saved_and_checked_again() {
    let history = clean_run_with_faults();

    let json = serde_json::to_string(&history).expect("a history serialises");
    let parsed: History = serde_json::from_str(&json).expect("the JSON reads back");

    assert_eq!(parsed, history);
    assert_eq!(check(&parsed), check(&history));
    assert_eq!(parsed.end, Duration::from_secs(45));
}
