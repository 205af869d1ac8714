//! Collector membership over time. Collector discovery reports which collectors exist now and
//! whether they are ready; the table remembers since when an unready or vanished collector has
//! been absent, so the grace period survives a leader failover (docs/architecture.md, I4). From the two,
//! this module decides the collectors' next states and which collectors may own targets.
//!
//! Upstream semantics (docs/allocation.md, "Membership"): a collector absent or unready for less than
//! `collector_not_ready_grace_period` stays a member (it keeps, and for upstream's strategies
//! may still receive, targets); after that it is removed and its targets are reallocated. A
//! grace period of zero turns readiness checks off: every observed collector is a member and a
//! vanished one leaves at once.

use std::collections::BTreeMap;
use std::time::Duration;

use ta_raft::CollectorState;
use ta_raft::Table;
use ta_raft::intern::Symbol;

/// A collector's readiness as collector discovery sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not ready since this time (Kubernetes: the Ready condition's last transition, or the
    /// pod's start time), in Unix milliseconds.
    NotReadySince {
        unix_millis: u64,
    },
}

/// One collector as collector discovery reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedCollector {
    pub node: Option<String>,
    pub readiness: Readiness,
}

/// Every collector collector discovery currently reports, by id.
pub type ObservedCollectors = BTreeMap<String, ObservedCollector>;

/// A change to the table's collectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectorChange {
    Set {
        id: Symbol,
        node: Option<Symbol>,
        state: CollectorState,
    },
    Remove {
        id: Symbol,
    },
}

/// A collector that may own targets after this plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: Option<Symbol>,
    pub ready: bool,
}

/// The outcome of reconciling observed collectors with the table.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    /// Changes to record, in id order.
    pub changes: Vec<CollectorChange>,
    /// Collectors that may own targets after the changes: ready ones and those absent for
    /// less than the grace period.
    pub members: BTreeMap<Symbol, Member>,
    /// Collectors removed by the changes (absent for the whole grace period).
    pub removed: Vec<Symbol>,
    /// Whether the members' ids, nodes or readiness differ from the table's collectors before.
    pub members_changed: bool,
}

/// Decide the collectors' next states at `now` (Unix milliseconds).
pub fn reconcile(table: &Table, observed: &ObservedCollectors, grace_period: Duration, now: u64) -> Membership {
    let grace = grace_period.as_millis() as u64;
    let readiness_checked = grace > 0;
    let expired = |since: u64| now.saturating_sub(since) >= grace;

    let mut membership = Membership::default();
    let mut ids: Vec<&str> = observed.keys().map(String::as_str).collect();
    ids.extend(table.collectors.keys().map(|id| id.as_ref()));
    ids.sort_unstable();
    ids.dedup();

    for id in ids {
        let recorded = table.collectors.get(id);
        let seen = observed.get(id);
        let node: Option<Symbol> = match (seen, recorded) {
            (Some(seen), _) => seen.node.as_deref().map(Symbol::from),
            (None, Some(recorded)) => recorded.node.clone(),
            (None, None) => None,
        };
        // The state the collector should have now, or `None` if it is not (or no longer) a member.
        let next: Option<CollectorState> = match (seen.map(|s| s.readiness), recorded.map(|r| r.state)) {
            (Some(Readiness::Ready), _) => Some(CollectorState::Ready),
            (Some(Readiness::NotReadySince { .. }), _) if !readiness_checked => Some(CollectorState::Ready),
            (None, _) if !readiness_checked => None,
            // Unready: discovery's own time (the same for every leader). Vanished: the
            // recorded start of the absence, so a failover does not restart the grace timer;
            // else now.
            (seen, recorded) => {
                let since = match (seen, recorded) {
                    (Some(Readiness::NotReadySince { unix_millis }), _) => unix_millis.min(now),
                    (_, Some(CollectorState::AbsentSince { unix_millis })) => unix_millis,
                    _ => now,
                };
                (!expired(since)).then_some(CollectorState::AbsentSince { unix_millis: since })
            }
        };
        let symbol: Symbol = match recorded {
            Some(_) => table
                .collectors
                .get_key_value(id)
                .map(|(key, _)| key.clone())
                .unwrap_or_else(|| Symbol::from(id)),
            None => Symbol::from(id),
        };
        match next {
            Some(state) => {
                let unchanged = recorded.is_some_and(|r| r.state == state && r.node == node);
                if !unchanged {
                    membership.changes.push(CollectorChange::Set {
                        id: symbol.clone(),
                        node: node.clone(),
                        state,
                    });
                }
                // Readiness counts: it decides who receives targets under `balanced`.
                if recorded.is_none_or(|r| {
                    r.node != node || (r.state == CollectorState::Ready) != (state == CollectorState::Ready)
                }) {
                    membership.members_changed = true;
                }
                let ready = state == CollectorState::Ready;
                membership.members.insert(symbol, Member { node, ready });
            }
            None => {
                if recorded.is_some() {
                    membership.changes.push(CollectorChange::Remove { id: symbol.clone() });
                    membership.removed.push(symbol);
                    membership.members_changed = true;
                }
            }
        }
    }
    membership
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    fn ready(node: &str) -> ObservedCollector {
        ObservedCollector {
            node: Some(node.to_string()),
            readiness: Readiness::Ready,
        }
    }

    fn observed(entries: &[(&str, ObservedCollector)]) -> ObservedCollectors {
        entries.iter().map(|(id, c)| (id.to_string(), c.clone())).collect()
    }

    /// Apply the changes to a table the way the planner's command would.
    fn record(table: &Table, membership: &Membership) -> Table {
        let mut builder = ta_raft::CommandBuilder::new();
        for change in &membership.changes {
            match change {
                CollectorChange::Set { id, node, state } => {
                    builder.set_collector(id, node.as_deref(), *state);
                }
                CollectorChange::Remove { id } => {
                    builder.remove_collector(id);
                }
            }
        }
        ta_raft::apply::apply(table, table.revision + 1, &builder.build()).table
    }

    #[test]
    fn a_collector_absent_within_the_grace_period_stays_a_member_and_keeps_its_start_time() {
        let table = Table::new();
        let both = observed(&[("c0", ready("n0")), ("c1", ready("n1"))]);
        let first = reconcile(&table, &both, GRACE, 1_000);
        assert_eq!(first.members.len(), 2);
        assert!(first.members_changed);
        let table = record(&table, &first);

        let only_c0 = observed(&[("c0", ready("n0"))]);
        let gone = reconcile(&table, &only_c0, GRACE, 2_000);
        assert_eq!(gone.members.len(), 2, "c1 is within its grace period");
        assert!(!gone.members["c1"].ready);
        assert!(gone.members_changed, "c1 no longer receives targets");
        let table = record(&table, &gone);

        // A later round (e.g. a new leader) must not restart the grace timer.
        let later = reconcile(&table, &only_c0, GRACE, 20_000);
        assert!(later.changes.is_empty());
        let expired = reconcile(&table, &only_c0, GRACE, 32_000);
        assert_eq!(expired.removed, vec![Symbol::from("c1")]);
        assert!(expired.members_changed);
    }

    #[test]
    fn a_collector_that_comes_back_in_time_is_ready_again() {
        let table = record(
            &Table::new(),
            &reconcile(&Table::new(), &observed(&[("c0", ready("n0"))]), GRACE, 0),
        );
        let table = record(&table, &reconcile(&table, &observed(&[]), GRACE, 1_000));
        let back = reconcile(&table, &observed(&[("c0", ready("n0"))]), GRACE, 5_000);
        assert_eq!(
            back.changes,
            vec![CollectorChange::Set {
                id: "c0".into(),
                node: Some("n0".into()),
                state: CollectorState::Ready
            }]
        );
    }

    #[test]
    fn an_unready_collector_unready_for_longer_than_the_grace_period_is_never_added() {
        let long_unready = ObservedCollector {
            node: None,
            readiness: Readiness::NotReadySince { unix_millis: 0 },
        };
        let membership = reconcile(&Table::new(), &observed(&[("c0", long_unready)]), GRACE, 60_000);
        assert!(membership.members.is_empty());
        assert!(membership.changes.is_empty());
    }

    #[test]
    fn a_new_unready_collector_is_a_member_during_its_grace_period_as_upstream() {
        let starting = ObservedCollector {
            node: None,
            readiness: Readiness::NotReadySince { unix_millis: 9_000 },
        };
        let membership = reconcile(&Table::new(), &observed(&[("c0", starting)]), GRACE, 10_000);
        assert_eq!(membership.members.len(), 1);
        assert!(!membership.members["c0"].ready);
    }

    #[test]
    fn zero_grace_turns_readiness_checks_off() {
        let unready = ObservedCollector {
            node: None,
            readiness: Readiness::NotReadySince { unix_millis: 0 },
        };
        let table = Table::new();
        let membership = reconcile(&table, &observed(&[("c0", unready)]), Duration::ZERO, 60_000);
        assert!(membership.members["c0"].ready);
        let table = record(&table, &membership);
        let vanished = reconcile(&table, &observed(&[]), Duration::ZERO, 60_001);
        assert_eq!(vanished.removed.len(), 1, "a vanished collector leaves at once");
    }
}
