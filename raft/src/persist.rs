//! The table as storage records, and the [`StateMachineLogic`] that plugs [`apply`] into the
//! sled store.
//!
//! Records: `t` + target id (u64 BE) → target; `u` + target id → a target of a discovered
//! group, its labels split into the group's (`s` + group number (u32 BE), a record before
//! the group's first target) and its own; `c` + name → collector; `j` + job → scrape config
//! text; `g` → config digest; `r` → revision. Snapshots hold the table as these records; a
//! restart rebuilds it from the snapshot and re-applies the log after it.

use std::sync::Arc;

use openraft::EntryPayload;
use serde::Deserialize;
use serde::Serialize;
use ta_storage::Record;
use ta_storage::SnapshotSource;
use ta_storage::StateMachineLogic;
use tokio::sync::watch;

use bincode::Options;

use crate::apply::apply;
use crate::command::Outcome;
use crate::command::Response;
use crate::intern::Interner;
use crate::intern::Symbol;
use crate::model::Collector;
use crate::model::CollectorState;
use crate::model::GroupNumbers;
use crate::model::LabelMerger;
use crate::model::Labels;
use crate::model::Table;
use crate::model::Target;
use crate::model::TargetId;
use crate::types::Entry;
use crate::types::TypeConfig;

const TARGET: u8 = b't';
/// A target whose labels are a group's merged with its own (see [`GroupedTargetOut`]).
const GROUPED_TARGET: u8 = b'u';
/// A group's labels, numbered in the order the snapshot first refers to them.
const LABEL_GROUP: u8 = b's';
const COLLECTOR: u8 = b'c';
const JOB: u8 = b'j';
const REVISION: &[u8] = b"r";
const CONFIG_DIGEST: &[u8] = b"g";

#[derive(Serialize)]
struct TargetOut<'a> {
    job: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    collector: Option<&'a str>,
}

#[derive(Deserialize)]
struct TargetIn {
    job: String,
    labels: Vec<(String, String)>,
    collector: Option<String>,
}

/// A target of a discovered group: its group's labels by number (a [`LABEL_GROUP`] record
/// earlier in the snapshot) and its own labels, so a restored table shares each group's
/// labels among its targets as the table that was saved did.
#[derive(Serialize)]
struct GroupedTargetOut<'a> {
    job: &'a str,
    group: u32,
    own: Vec<(&'a str, &'a str)>,
    collector: Option<&'a str>,
}

#[derive(Deserialize)]
struct GroupedTargetIn {
    job: String,
    group: u32,
    own: Vec<(String, String)>,
    collector: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CollectorRecord {
    node: Option<String>,
    state: CollectorState,
}

fn key(kind: u8, rest: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + rest.len());
    key.push(kind);
    key.extend_from_slice(rest);
    key
}

/// Records use bincode with variable-length integers: a target's 40 labels would otherwise
/// spend 640 bytes on fixed 8-byte length prefixes. The storage envelope around each record
/// carries its own version and checksum.
fn record_codec() -> impl Options + Copy {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_limit(1 << 30)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    record_codec()
        .serialize(value)
        .expect("serializing into memory cannot fail")
}

/// Every record of `table`, the form snapshots hold it in: targets in id order (each
/// group's labels just before the first target of the group), then collectors, jobs, the
/// config digest and the revision.
pub fn table_records(table: &Table) -> impl Iterator<Item = Record> + '_ {
    let mut groups = GroupNumbers::default();
    let targets = table.targets().iter().flat_map(move |(id, target)| {
        let key_bytes = id.0.to_be_bytes();
        let Some(parts) = target.labels.parts() else {
            let record = (
                key(TARGET, &key_bytes),
                encode(&TargetOut {
                    job: &target.job,
                    labels: target.labels.iter().collect(),
                    collector: target.collector.as_deref(),
                }),
            );
            return [None, Some(record)].into_iter().flatten();
        };
        let (group, new) = groups.number(&parts);
        let group_record = new.then(|| {
            let pairs: Vec<(&str, &str)> = parts.group.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            (key(LABEL_GROUP, &group.to_be_bytes()), encode(&pairs))
        });
        let record = (
            key(GROUPED_TARGET, &key_bytes),
            encode(&GroupedTargetOut {
                job: &target.job,
                group,
                own: parts.own.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
                collector: target.collector.as_deref(),
            }),
        );
        [group_record, Some(record)].into_iter().flatten()
    });
    let collectors = table.collectors.iter().map(|(name, collector)| {
        (
            key(COLLECTOR, name.as_bytes()),
            encode(&CollectorRecord {
                node: collector.node.as_deref().map(str::to_string),
                state: collector.state,
            }),
        )
    });
    let jobs = table
        .scrape_configs
        .iter()
        .map(|(job, config)| (key(JOB, job.as_bytes()), config.as_bytes().to_vec()));
    let digest = table
        .config_digest
        .map(|digest| (CONFIG_DIGEST.to_vec(), digest.to_le_bytes().to_vec()));
    let revision = std::iter::once((REVISION.to_vec(), table.revision.to_le_bytes().to_vec()));
    targets.chain(collectors).chain(jobs).chain(digest).chain(revision)
}

/// A table frozen for a snapshot: an O(1) clone of the persistent maps.
pub struct FrozenTable(pub Table);

impl SnapshotSource for FrozenTable {
    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_> {
        Box::new(table_records(&self.0))
    }
}

fn target_id(key_rest: &[u8]) -> Result<TargetId, String> {
    let bytes = key_rest
        .try_into()
        .map_err(|_| "target key is not 8 bytes".to_string())?;
    Ok(TargetId(u64::from_be_bytes(bytes)))
}

fn intern_pairs(interner: &mut Interner, pairs: &[(String, String)]) -> Vec<(Symbol, Symbol)> {
    pairs
        .iter()
        .map(|(n, v)| (interner.intern(n), interner.intern(v)))
        .collect()
}

/// Rebuild a table from its records.
pub fn table_from_records(
    records: &mut dyn Iterator<Item = (Vec<u8>, Vec<u8>)>,
    interner: &mut Interner,
) -> Result<Table, String> {
    let mut table = Table::new();
    let mut groups: Vec<Labels> = Vec::new();
    let mut merger = LabelMerger::new();
    for (key, value) in records {
        let Some((&kind, rest)) = key.split_first() else {
            return Err("empty record key".into());
        };
        let text =
            |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|e| format!("record key is not UTF-8: {e}"));
        match kind {
            TARGET => {
                let id = target_id(rest)?;
                let stored: TargetIn = record_codec()
                    .deserialize(&value)
                    .map_err(|e| format!("target {id}: {e}"))?;
                let job = interner.intern(&stored.job);
                let pairs = intern_pairs(interner, &stored.labels);
                let collector = stored.collector.as_deref().map(|c| interner.intern(c));
                table.insert_target(
                    id,
                    Target {
                        job,
                        // Shared with discovery's copy should this replica lead.
                        labels: Labels::shared(pairs),
                        collector,
                    },
                );
            }
            LABEL_GROUP => {
                let number = u32::from_be_bytes(
                    rest.try_into()
                        .map_err(|_| "label group key is not 4 bytes".to_string())?,
                );
                if number as usize != groups.len() {
                    return Err(format!(
                        "label group {number} where group {} was expected next",
                        groups.len()
                    ));
                }
                let stored: Vec<(String, String)> = record_codec()
                    .deserialize(&value)
                    .map_err(|e| format!("label group {number}: {e}"))?;
                groups.push(Labels::shared(intern_pairs(interner, &stored)));
            }
            GROUPED_TARGET => {
                let id = target_id(rest)?;
                let stored: GroupedTargetIn = record_codec()
                    .deserialize(&value)
                    .map_err(|e| format!("target {id}: {e}"))?;
                let group = groups
                    .get(stored.group as usize)
                    .ok_or_else(|| format!("target {id} refers to label group {} before it", stored.group))?;
                let own = intern_pairs(interner, &stored.own);
                let job = interner.intern(&stored.job);
                let collector = stored.collector.as_deref().map(|c| interner.intern(c));
                table.insert_target(
                    id,
                    Target {
                        job,
                        labels: Labels::merge(group, &Labels::new(own), &mut merger),
                        collector,
                    },
                );
            }
            COLLECTOR => {
                let name = text(rest)?;
                let stored: CollectorRecord = record_codec()
                    .deserialize(&value)
                    .map_err(|e| format!("collector {name}: {e}"))?;
                let name = interner.intern(&name);
                let node = stored.node.as_deref().map(|n| interner.intern(n));
                table.collectors.insert(
                    name,
                    Collector {
                        node,
                        state: stored.state,
                    },
                );
            }
            JOB => {
                let job = text(rest)?;
                let config = String::from_utf8(value).map_err(|e| format!("scrape config of {job}: {e}"))?;
                let job = interner.intern(&job);
                table.scrape_configs.insert(job, Arc::from(config));
            }
            b'r' if rest.is_empty() => {
                table.revision = u64::from_le_bytes(
                    value
                        .as_slice()
                        .try_into()
                        .map_err(|_| "revision is not 8 bytes".to_string())?,
                );
            }
            b'g' if rest.is_empty() => {
                table.config_digest = Some(u64::from_le_bytes(
                    value
                        .as_slice()
                        .try_into()
                        .map_err(|_| "config digest is not 8 bytes".to_string())?,
                ));
            }
            other => return Err(format!("unknown record kind {other:#04x}")),
        }
    }
    Ok(table)
}

/// The replicated table inside the state-machine store. Publishes the table to readers
/// through a `watch` channel after each persisted apply.
pub struct TableMachine {
    table: Table,
    publisher: watch::Sender<Table>,
}

impl TableMachine {
    /// A machine with an empty table, and the receiver readers subscribe through.
    pub fn new() -> (Self, watch::Receiver<Table>) {
        let (publisher, receiver) = watch::channel(Table::new());
        (
            Self {
                table: Table::new(),
                publisher,
            },
            receiver,
        )
    }
}

impl StateMachineLogic<TypeConfig> for TableMachine {
    type Frozen = FrozenTable;

    fn apply(&mut self, entry: &Entry) -> Response {
        let EntryPayload::Normal(command) = &entry.payload else {
            return Response {
                revision: self.table.revision,
                outcome: Outcome::Unchanged,
            };
        };
        let transition = apply(&self.table, entry.log_id.index, command);
        self.table = transition.table;
        Response {
            revision: self.table.revision,
            outcome: transition.outcome,
        }
    }

    fn freeze(&self) -> FrozenTable {
        FrozenTable(self.table.clone())
    }

    fn restore(&mut self, records: &mut dyn Iterator<Item = Record>) -> Result<(), String> {
        self.table = table_from_records(records, &mut Interner::default())?;
        // Published by `after_persist`, once the store has made this state durable and current.
        Ok(())
    }

    fn after_persist(&mut self) {
        self.publisher.send_replace(self.table.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::CommandBuilder;
    use crate::command::Expect;

    #[test]
    fn records_round_trip_to_the_same_table() {
        let mut b = CommandBuilder::new();
        b.set_collector("c0", Some("node-a"), CollectorState::Ready);
        b.set_collector("c1", None, CollectorState::AbsentSince { unix_millis: 42 });
        for n in 0..50u64 {
            let address = format!("10.1.0.{n}:8080");
            b.upsert_target(
                TargetId(n * 7919),
                if n % 2 == 0 { "serviceMonitor/ns/app/0" } else { "job b" },
                [("__address__", address.as_str()), ("__meta_kubernetes_namespace", "ns")],
                if n % 3 == 0 { None } else { Some("c0") },
                Expect::Absent,
            );
        }
        b.set_scrape_config("job b", r#"{"job_name":"job b"}"#);
        let transition = crate::apply::apply(&Table::new(), 12, &b.build());

        let mut records = table_records(&transition.table);
        let restored = table_from_records(&mut records, &mut Interner::default()).unwrap();
        assert_eq!(restored, transition.table);
        assert_eq!(restored.digest(), transition.table.digest());
    }

    #[test]
    fn a_restored_table_shares_each_group_s_labels_as_the_saved_one_did() {
        let command = crate::command::examples::grouped_upserts(5, 3);
        let saved = crate::apply::apply(&Table::new(), 3, &command).table;
        let records: Vec<Record> = table_records(&saved).collect();
        let groups = records.iter().filter(|(key, _)| key[0] == LABEL_GROUP).count();
        assert_eq!(groups, 5, "each group's labels once");

        let restored = table_from_records(&mut records.into_iter(), &mut Interner::default()).unwrap();
        assert_eq!(restored, saved);
        assert_eq!(restored.digest(), saved.digest());
        let group_key = |id: u64| {
            restored
                .targets()
                .get(&TargetId(id))
                .expect("restored")
                .labels
                .parts()
                .map(|parts| parts.group_key)
        };
        assert!(group_key(0).is_some());
        assert_eq!(group_key(0), group_key(2), "targets of a group share its labels");
        assert_ne!(group_key(0), group_key(1000));
        assert_eq!(group_key(u64::MAX), None);
    }

    #[test]
    fn a_target_before_its_group_is_refused() {
        let command = crate::command::examples::grouped_upserts(1, 2);
        let saved = crate::apply::apply(&Table::new(), 3, &command).table;
        let records = table_records(&saved).filter(|(key, _)| key[0] != LABEL_GROUP);
        let error = table_from_records(&mut records.into_iter(), &mut Interner::default()).unwrap_err();
        assert!(error.contains("label group 0"), "{error}");
    }

    #[test]
    fn unknown_records_are_reported() {
        let mut records = vec![(b"zzz".to_vec(), vec![1])].into_iter();
        assert!(table_from_records(&mut records, &mut Interner::default()).is_err());
    }
}
