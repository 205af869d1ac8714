//! The state machine transition: a pure, deterministic function of (table, log index,
//! command). No clock, no randomness, no IO: every replica computes the same table.
//!
//! A batch is checked decision by decision against a working copy (an O(1) clone of the
//! persistent maps); a broken precondition does not stop the checks, so a rejection lists
//! every conflict, and the original table is returned untouched.

use std::collections::BTreeSet;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use crate::command::Command;
use crate::command::Conflict;
use crate::command::ConflictReason;
use crate::command::Decision;
use crate::command::DecodeError;
use crate::command::Expect;
use crate::command::Outcome;
use crate::intern::Symbol;
use crate::model::Collector;
use crate::model::Table;
use crate::model::Target;
use crate::model::TargetId;

/// Keys whose stored records changed, for persistence.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangedKeys {
    pub targets: BTreeSet<TargetId>,
    /// The subset of `targets` that did not exist before this command (no stored record yet).
    pub created: BTreeSet<TargetId>,
    pub collectors: BTreeSet<Symbol>,
    pub jobs: BTreeSet<Symbol>,
    pub config_digest: bool,
}

impl ChangedKeys {
    /// Number of changed records (`created` is a subset of `targets`).
    pub fn len(&self) -> usize {
        self.targets.len() + self.collectors.len() + self.jobs.len() + usize::from(self.config_digest)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The result of [`apply`].
#[derive(Debug, Clone)]
pub struct Transition {
    pub table: Table,
    pub outcome: Outcome,
    pub changed: ChangedKeys,
}

/// Apply `command`, carried by the log entry at `index`, to `table`.
pub fn apply(table: &Table, index: u64, command: &Command) -> Transition {
    let body = match command.body() {
        Ok(body) => body,
        Err(error) => {
            let reason = match error {
                DecodeError::BadStringRef(reference) => ConflictReason::BadStringRef(*reference),
                DecodeError::Malformed(_) | DecodeError::BadGroupRef(_) => {
                    ConflictReason::Undecodable(error.to_string())
                }
            };
            return Transition {
                table: table.clone(),
                outcome: Outcome::Rejected {
                    conflicts: vec![Conflict {
                        decision: usize::MAX,
                        reason,
                    }],
                },
                changed: ChangedKeys::default(),
            };
        }
    };
    let mut applier = BatchApplier::new(table);
    let mut conflicts = Vec::new();
    for (position, decision) in body.decisions.iter().enumerate() {
        if let Err(reason) = applier.decide(decision) {
            conflicts.push(Conflict {
                decision: position,
                reason,
            });
        }
    }
    conflicts.extend(applier.orphaned_targets());

    if !conflicts.is_empty() {
        return Transition {
            table: table.clone(),
            outcome: Outcome::Rejected { conflicts },
            changed: ChangedKeys::default(),
        };
    }
    let BatchApplier {
        mut working, changed, ..
    } = applier;
    if changed.is_empty() {
        return Transition {
            table: table.clone(),
            outcome: Outcome::Unchanged,
            changed,
        };
    }
    working.revision = index;
    Transition {
        table: working,
        outcome: Outcome::Applied { changes: changed.len() },
        changed,
    }
}

/// The state of applying one batch.
struct BatchApplier {
    working: Table,
    changed: ChangedKeys,
    /// Each target may be touched once per batch (a planner bug otherwise).
    seen_targets: FxHashSet<TargetId>,
    removed_collectors: BTreeSet<Symbol>,
}

impl BatchApplier {
    fn new(table: &Table) -> Self {
        Self {
            working: table.clone(),
            changed: ChangedKeys::default(),
            seen_targets: FxHashSet::default(),
            removed_collectors: BTreeSet::new(),
        }
    }

    fn known_collector(&self, collector: Option<&Symbol>) -> Result<(), ConflictReason> {
        match collector {
            Some(c) if !self.working.collectors.contains_key(c) => Err(ConflictReason::UnknownCollector(c.to_string())),
            _ => Ok(()),
        }
    }

    fn first_touch(&mut self, id: TargetId) -> Result<(), ConflictReason> {
        if self.seen_targets.insert(id) {
            Ok(())
        } else {
            Err(ConflictReason::DuplicateTarget(id))
        }
    }

    fn check_expect(&self, id: TargetId, expect: &Expect) -> Result<(), ConflictReason> {
        let current = self.working.targets().get(&id);
        match (expect, current) {
            (Expect::Anything, _) | (Expect::Absent, None) | (Expect::Present, Some(_)) => Ok(()),
            (Expect::Absent, Some(_)) => Err(ConflictReason::TargetExists(id)),
            (Expect::Present | Expect::OwnedBy(_), None) => Err(ConflictReason::TargetMissing(id)),
            (Expect::OwnedBy(expected), Some(target)) => {
                if target.collector == *expected {
                    Ok(())
                } else {
                    Err(ConflictReason::OwnerChanged {
                        target: id,
                        expected: expected.as_deref().map(str::to_string),
                        actual: target.collector.as_deref().map(str::to_string),
                    })
                }
            }
        }
    }

    fn decide(&mut self, decision: &Decision) -> Result<(), ConflictReason> {
        match decision {
            Decision::UpsertTarget {
                id,
                job,
                labels,
                collector,
                expect,
            } => {
                self.first_touch(*id)?;
                self.check_expect(*id, expect)?;
                self.known_collector(collector.as_ref())?;
                let target = Target {
                    job: job.clone(),
                    labels: labels.clone(),
                    collector: collector.clone(),
                };
                match self.working.targets().get(id) {
                    Some(existing) if *existing == target => {}
                    existing => {
                        if existing.is_none() {
                            self.changed.created.insert(*id);
                        }
                        self.working.insert_target(*id, target);
                        self.changed.targets.insert(*id);
                    }
                }
            }
            Decision::RemoveTarget { id, expect } => {
                self.first_touch(*id)?;
                self.check_expect(*id, expect)?;
                if self.working.remove_target(id).is_some() {
                    self.changed.targets.insert(*id);
                }
            }
            Decision::MoveTarget { id, from, to } => {
                self.first_touch(*id)?;
                let Some(current) = self.working.targets().get(id) else {
                    return Err(ConflictReason::TargetMissing(*id));
                };
                if current.collector != *from {
                    return Err(ConflictReason::OwnerChanged {
                        target: *id,
                        expected: from.as_deref().map(str::to_string),
                        actual: current.collector.as_deref().map(str::to_string),
                    });
                }
                self.known_collector(to.as_ref())?;
                if from != to {
                    self.working.set_owner(id, to.clone());
                    self.changed.targets.insert(*id);
                }
            }
            Decision::SetCollector { id, node, state } => {
                let collector = Collector {
                    node: node.clone(),
                    state: *state,
                };
                if self.working.collectors.get(id) != Some(&collector) {
                    self.working.collectors.insert(id.clone(), collector);
                    self.changed.collectors.insert(id.clone());
                }
            }
            Decision::RemoveCollector { id } => {
                if let Some((symbol, _)) = self.working.collectors.remove_with_key(id) {
                    self.changed.collectors.insert(symbol.clone());
                    self.removed_collectors.insert(symbol);
                }
            }
            Decision::SetScrapeConfig { job, config } => {
                if self.working.scrape_configs.get(job) != Some(config) {
                    self.working.scrape_configs.insert(job.clone(), Arc::clone(config));
                    self.changed.jobs.insert(job.clone());
                }
            }
            Decision::RemoveScrapeConfig { job } => {
                if let Some((symbol, _)) = self.working.scrape_configs.remove_with_key(job) {
                    self.changed.jobs.insert(symbol);
                }
            }
            Decision::SetConfigDigest { digest } => {
                if self.working.config_digest != Some(*digest) {
                    self.working.config_digest = Some(*digest);
                    self.changed.config_digest = true;
                }
            }
        }
        Ok(())
    }

    /// Collectors removed by this batch must own no target once the batch is applied (I1).
    fn orphaned_targets(&self) -> Vec<Conflict> {
        let mut conflicts = Vec::new();
        for collector in &self.removed_collectors {
            if self.working.collectors.contains_key(collector.as_ref()) {
                continue;
            }
            let owned = self.working.owned_by(collector);
            if owned > 0 {
                conflicts.push(Conflict {
                    decision: usize::MAX,
                    reason: ConflictReason::CollectorStillOwnsTargets {
                        collector: collector.to_string(),
                        targets: owned,
                    },
                });
            }
        }
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use bincode::Options;

    use super::*;
    use crate::command::CommandBuilder;
    use crate::model::CollectorState;

    fn id(n: u64) -> TargetId {
        TargetId(n)
    }

    fn with_collectors(names: &[&str]) -> Table {
        let mut b = CommandBuilder::new();
        for name in names {
            b.set_collector(name, Some("node-a"), CollectorState::Ready);
        }
        apply(&Table::new(), 1, &b.build()).table
    }

    fn add_target(b: &mut CommandBuilder, n: u64, collector: &str) {
        let address = format!("10.0.0.{n}:9100");
        b.upsert_target(
            id(n),
            "job",
            [("__address__", address.as_str())],
            Some(collector),
            Expect::Absent,
        );
    }

    fn owner(table: &Table, n: u64) -> Option<&str> {
        table.targets().get(&id(n)).and_then(|t| t.collector.as_deref())
    }

    #[test]
    fn a_batch_applies_every_decision_and_bumps_the_revision() {
        let table = with_collectors(&["c0", "c1"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        add_target(&mut b, 2, "c1");
        b.set_scrape_config("job", r#"{"job_name":"job"}"#);
        let t = apply(&table, 7, &b.build());
        assert_eq!(t.outcome, Outcome::Applied { changes: 3 });
        assert_eq!(t.table.revision, 7);
        assert_eq!(owner(&t.table, 1), Some("c0"));
        assert_eq!(owner(&t.table, 2), Some("c1"));
        assert_eq!(t.changed.targets, [id(1), id(2)].into());
        assert_eq!(t.changed.jobs.len(), 1);
    }

    #[test]
    fn a_stale_move_rejects_the_whole_batch() {
        let mut table = with_collectors(&["c0", "c1", "c2"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        add_target(&mut b, 2, "c0");
        table = apply(&table, 2, &b.build()).table;

        // A plan made when target 1 was still on c1 (it is on c0): rejected, and the valid
        // move of target 2 in the same batch is not applied either.
        let mut b = CommandBuilder::new();
        b.move_target(id(2), Some("c0"), Some("c2"));
        b.move_target(id(1), Some("c1"), Some("c2"));
        let t = apply(&table, 3, &b.build());
        let Outcome::Rejected { conflicts } = &t.outcome else {
            panic!("expected rejection, got {:?}", t.outcome)
        };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].decision, 1);
        assert!(matches!(&conflicts[0].reason, ConflictReason::OwnerChanged { actual: Some(a), .. } if a == "c0"));
        assert_eq!(t.table, table, "a rejected batch changes nothing");
        assert_eq!(owner(&t.table, 2), Some("c0"));
        assert!(t.changed.is_empty());
    }

    #[test]
    fn preconditions_are_enforced() {
        let mut table = with_collectors(&["c0"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        table = apply(&table, 2, &b.build()).table;

        let reject = |b: CommandBuilder| match apply(&table, 3, &b.build()).outcome {
            Outcome::Rejected { conflicts } => conflicts[0].reason.clone(),
            other => panic!("expected rejection, got {other:?}"),
        };
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        assert_eq!(reject(b), ConflictReason::TargetExists(id(1)));

        let mut b = CommandBuilder::new();
        b.remove_target(id(9), Expect::Present);
        assert_eq!(reject(b), ConflictReason::TargetMissing(id(9)));

        let mut b = CommandBuilder::new();
        let expect = b.owned_by(Some("c9"));
        b.remove_target(id(1), expect);
        assert!(matches!(reject(b), ConflictReason::OwnerChanged { .. }));

        let mut b = CommandBuilder::new();
        add_target(&mut b, 2, "nobody");
        assert_eq!(reject(b), ConflictReason::UnknownCollector("nobody".into()));

        let mut b = CommandBuilder::new();
        b.move_target(id(1), Some("c0"), None);
        b.remove_target(id(1), Expect::Anything);
        assert_eq!(reject(b), ConflictReason::DuplicateTarget(id(1)));
    }

    #[test]
    fn a_removed_collector_must_hand_over_its_targets_in_the_same_batch() {
        let mut table = with_collectors(&["c0", "c1"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        add_target(&mut b, 2, "c1");
        table = apply(&table, 2, &b.build()).table;

        let mut b = CommandBuilder::new();
        b.remove_collector("c0");
        let t = apply(&table, 3, &b.build());
        assert!(matches!(&t.outcome, Outcome::Rejected { conflicts }
            if conflicts[0].reason == ConflictReason::CollectorStillOwnsTargets { collector: "c0".into(), targets: 1 }));

        let mut b = CommandBuilder::new();
        b.move_target(id(1), Some("c0"), Some("c1"));
        b.remove_collector("c0");
        let t = apply(&table, 3, &b.build());
        assert_eq!(t.outcome, Outcome::Applied { changes: 2 });
        assert_eq!(owner(&t.table, 1), Some("c1"));
        assert_eq!(
            owner(&t.table, 2),
            Some("c1"),
            "the other collector's targets did not move"
        );
    }

    #[test]
    fn identical_values_change_nothing_and_keep_the_revision() {
        let mut table = with_collectors(&["c0"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        table = apply(&table, 2, &b.build()).table;

        let mut b = CommandBuilder::new();
        let expect = b.owned_by(Some("c0"));
        b.upsert_target(id(1), "job", [("__address__", "10.0.0.1:9100")], Some("c0"), expect);
        b.set_collector("c0", Some("node-a"), CollectorState::Ready);
        let t = apply(&table, 3, &b.build());
        assert_eq!(t.outcome, Outcome::Unchanged);
        assert_eq!(t.table.revision, 2);
    }

    #[test]
    fn label_refresh_keeps_the_owner() {
        let mut table = with_collectors(&["c0", "c1"]);
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c1");
        table = apply(&table, 2, &b.build()).table;

        let mut b = CommandBuilder::new();
        let expect = b.owned_by(Some("c1"));
        b.upsert_target(
            id(1),
            "job",
            [("__address__", "10.0.0.1:9100"), ("__meta_pod", "p-2")],
            Some("c1"),
            expect,
        );
        let t = apply(&table, 3, &b.build());
        assert_eq!(t.outcome, Outcome::Applied { changes: 1 });
        assert_eq!(t.table.targets()[&id(1)].labels.get("__meta_pod"), Some("p-2"));
        assert_eq!(owner(&t.table, 1), Some("c1"));
    }

    #[test]
    fn absent_collectors_carry_their_time_in_the_table() {
        let table = with_collectors(&["c0"]);
        let mut b = CommandBuilder::new();
        b.set_collector(
            "c0",
            Some("node-a"),
            CollectorState::AbsentSince {
                unix_millis: 1_700_000_000_000,
            },
        );
        let t = apply(&table, 5, &b.build());
        assert_eq!(
            t.table.collectors["c0"].state,
            CollectorState::AbsentSince {
                unix_millis: 1_700_000_000_000
            }
        );
    }

    #[test]
    fn an_undecodable_command_is_rejected_not_panicking() {
        let table = with_collectors(&["c0"]);
        let t = apply(&table, 2, &Command::from_encoded(vec![0xff, 0xff, 0xff]));
        assert!(matches!(&t.outcome, Outcome::Rejected { conflicts }
            if matches!(conflicts[0].reason, ConflictReason::Undecodable(_))));
        assert_eq!(t.table, table);
    }

    #[test]
    fn a_command_survives_the_wire_unchanged() {
        let mut b = CommandBuilder::new();
        add_target(&mut b, 1, "c0");
        let command = b.build();
        let bytes = ta_storage::envelope::codec().serialize(&command).unwrap();
        let back: Command = ta_storage::envelope::codec().deserialize(&bytes).unwrap();
        assert_eq!(back, command);
        assert_eq!(back.body().unwrap(), command.body().unwrap());
    }

    #[test]
    fn apply_is_deterministic() {
        let table = with_collectors(&["c0", "c1", "c2"]);
        let mut b = CommandBuilder::new();
        for n in 0..500 {
            let collector = ["c0", "c1", "c2"][(n % 3) as usize];
            add_target(&mut b, n, collector);
        }
        let command = b.build();
        let first = apply(&table, 9, &command);
        let second = apply(&table, 9, &command);
        assert_eq!(first.table, second.table);
        assert_eq!(first.table.digest(), second.table.digest());
        assert_eq!(first.changed, second.changed);
    }
}
