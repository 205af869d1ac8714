//! The command set: batches of decisions the leader has taken, replicated through the log.
//!
//! A command records decisions (which target goes where), never inputs, so replicas never
//! re-run a strategy and cannot disagree because of code or timing differences.
//!
//! In memory a decision names its strings by [`Symbol`] and its labels by [`Labels`], so the
//! leader builds a plan and applies it without copying or re-interning a string. On the wire
//! (the log, the network) a batch sends each string once, in a table, and decisions refer to
//! it by index: a batch of 10k targets with ~40 labels each repeats most names and values.
//! The table is built when the command is first encoded and resolved once when it is decoded.
//! A target whose labels are a discovered group's merged with its own sends the group's
//! labels once per batch and then only its own, so the replica that decodes it shares the
//! group's labels among its targets as the leader does (docs/architecture.md, "Memory
//! layout").

use std::collections::hash_map::Entry as MapEntry;
use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;

use bincode::Options;

use serde::Deserialize;
use serde::Serialize;

use rustc_hash::FxHashMap;

use crate::intern::Symbol;
use crate::model::CollectorState;
use crate::model::GroupNumbers;
use crate::model::LabelMerger;
use crate::model::Labels;
use crate::model::TargetId;

/// Index into a batch's string table on the wire.
pub type StringRef = u32;

/// The decisions of one batch.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CommandBody {
    pub decisions: Vec<Decision>,
}

/// Why an encoded command cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("command does not decode: {0}")]
    Malformed(String),
    #[error("string reference {0} is outside the batch string table")]
    BadStringRef(StringRef),
    #[error("label group {0} is referred to before the batch defines it")]
    BadGroupRef(u32),
}

/// One replicated batch of decisions, applied atomically: all of them or none.
///
/// A command travels as one byte blob. A batch of 10k targets would otherwise be deep-copied
/// by every clone and re-encoded at every hop: the leader's storage, one log read per
/// follower, the network, each follower's storage. Here the blob is encoded once, cloned by
/// reference count, copied as bytes through every hop, and decoded into a [`CommandBody`]
/// once per replica, when applied (never on the leader that built it).
#[derive(Clone)]
pub struct Command {
    inner: Arc<CommandInner>,
}

struct CommandInner {
    encoded: OnceLock<Vec<u8>>,
    body: OnceLock<Result<CommandBody, DecodeError>>,
}

impl Command {
    /// A command from its decisions.
    pub fn new(body: CommandBody) -> Self {
        Self {
            inner: Arc::new(CommandInner {
                encoded: OnceLock::new(),
                body: OnceLock::from(Ok(body)),
            }),
        }
    }

    /// A command from its encoded bytes; decoding waits until [`Command::body`].
    pub fn from_encoded(encoded: Vec<u8>) -> Self {
        Self {
            inner: Arc::new(CommandInner {
                encoded: OnceLock::from(encoded),
                body: OnceLock::new(),
            }),
        }
    }

    /// The encoded bytes (computed once).
    pub fn encoded(&self) -> &[u8] {
        self.inner.encoded.get_or_init(|| {
            let body = self.body().expect("a command built from decisions always has a body");
            command_codec()
                .serialize(&wire::encode(body))
                .expect("serializing into memory cannot fail")
        })
    }

    /// The decisions, decoded on first use. An undecodable blob (only possible from a bug or
    /// a peer speaking another format) is an error for `apply` to reject, never a panic.
    pub fn body(&self) -> Result<&CommandBody, &DecodeError> {
        self.inner
            .body
            .get_or_init(|| {
                let encoded = self.inner.encoded.get().expect("a command has a body or its encoding");
                let wire: wire::BatchIn<'_> = command_codec()
                    .deserialize(encoded)
                    .map_err(|e| DecodeError::Malformed(e.to_string()))?;
                wire::decode(wire)
            })
            .as_ref()
    }
}

/// Commands use bincode with variable-length integers: most string references fit in two
/// bytes instead of four, most lengths in one byte instead of eight.
fn command_codec() -> impl bincode::Options + Copy {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_limit(1 << 30)
}

impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.encoded() == other.encoded()
    }
}

impl Eq for Command {}

impl Default for Command {
    fn default() -> Self {
        Self::new(CommandBody::default())
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.body() {
            Ok(body) => f
                .debug_struct("Command")
                .field("decisions", &body.decisions.len())
                .finish(),
            Err(e) => f.debug_struct("Command").field("error", &e).finish(),
        }
    }
}

impl Serialize for Command {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.encoded())
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an encoded command")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Vec<u8>, E> {
                Ok(bytes.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(bytes)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element()? {
                    bytes.push(byte);
                }
                Ok(bytes)
            }
        }
        deserializer
            .deserialize_byte_buf(BytesVisitor)
            .map(Command::from_encoded)
    }
}

/// A precondition on a target's current state, checked when the batch is applied. A plan
/// made against an older table fails its preconditions and is rejected, not half-applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No precondition.
    Anything,
    /// The target must not exist yet.
    Absent,
    /// The target must exist (any owner).
    Present,
    /// The target must exist and be owned by this collector (`None`: unassigned).
    OwnedBy(Option<Symbol>),
}

/// One decision of the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Add a target, or refresh its labels, with its collector.
    UpsertTarget {
        id: TargetId,
        job: Symbol,
        labels: Labels,
        collector: Option<Symbol>,
        expect: Expect,
    },
    /// Remove a target.
    RemoveTarget { id: TargetId, expect: Expect },
    /// Move a target from its expected current owner to another collector.
    MoveTarget {
        id: TargetId,
        from: Option<Symbol>,
        to: Option<Symbol>,
    },
    /// Add a collector or change its node or state.
    SetCollector {
        id: Symbol,
        node: Option<Symbol>,
        state: CollectorState,
    },
    /// Forget a collector. It must own no target once the whole batch is applied.
    RemoveCollector { id: Symbol },
    /// Set a job's scrape config (opaque JSON text).
    SetScrapeConfig { job: Symbol, config: Arc<str> },
    /// Remove a job's scrape config.
    RemoveScrapeConfig { job: Symbol },
    /// Record that a leader has reconciled the scrape configs with its configuration, whose
    /// digest this is. Until the first one, replicas have nothing to serve (not ready).
    SetConfigDigest { digest: u64 },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.body() {
            Ok(body) => write!(f, "batch({} decisions)", body.decisions.len()),
            Err(_) => write!(f, "batch(undecodable, {} bytes)", self.encoded().len()),
        }
    }
}

/// The result of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Table revision after the entry.
    pub revision: u64,
    pub outcome: Outcome,
}

/// What an entry did to the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The batch was applied; `changes` records (targets, collectors, jobs) actually changed.
    Applied { changes: usize },
    /// Nothing changed (empty batch, identical values, or a non-command entry).
    Unchanged,
    /// A precondition failed; the table is untouched.
    Rejected { conflicts: Vec<Conflict> },
}

/// Why a batch was rejected, per offending decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Position of the decision in the batch (`usize::MAX` for whole-batch checks).
    pub decision: usize,
    pub reason: ConflictReason,
}

/// The broken precondition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ConflictReason {
    #[error("target {0} already exists")]
    TargetExists(TargetId),
    #[error("target {0} does not exist")]
    TargetMissing(TargetId),
    #[error("target {target} is owned by {actual:?}, the plan expected {expected:?}")]
    OwnerChanged {
        target: TargetId,
        expected: Option<String>,
        actual: Option<String>,
    },
    #[error("collector {0:?} is not in the table")]
    UnknownCollector(String),
    #[error("collector {collector:?} is removed but still owns {targets} targets")]
    CollectorStillOwnsTargets { collector: String, targets: usize },
    #[error("target {0} appears twice in the batch")]
    DuplicateTarget(TargetId),
    #[error("string reference {0} is outside the batch string table")]
    BadStringRef(StringRef),
    #[error("{0}")]
    Undecodable(String),
}

/// Builds a [`Command`].
#[derive(Default)]
pub struct CommandBuilder {
    decisions: Vec<Decision>,
}

impl CommandBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `decisions` decisions without growing (a large plan's entries are cut at a
    /// size, so the next one holds about as many as the last).
    pub fn with_capacity(decisions: usize) -> Self {
        Self {
            decisions: Vec::with_capacity(decisions),
        }
    }

    /// Add or refresh a target whose labels are already an interned, sorted set: the set is
    /// shared with the command, not copied.
    pub fn upsert_target_labels(
        &mut self,
        id: TargetId,
        job: &Symbol,
        labels: &Labels,
        collector: Option<&Symbol>,
        expect: Expect,
    ) -> &mut Self {
        self.decisions.push(Decision::UpsertTarget {
            id,
            job: job.clone(),
            labels: labels.clone(),
            collector: collector.cloned(),
            expect,
        });
        self
    }

    /// Reference a collector for an [`Expect::OwnedBy`].
    pub fn owned_by(&mut self, collector: Option<&str>) -> Expect {
        Expect::OwnedBy(collector.map(Symbol::from))
    }

    pub fn upsert_target<'a>(
        &mut self,
        id: TargetId,
        job: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        collector: Option<&str>,
        expect: Expect,
    ) -> &mut Self {
        let labels = Labels::shared(
            labels
                .into_iter()
                .map(|(n, v)| (Symbol::from(n), Symbol::from(v)))
                .collect(),
        );
        self.decisions.push(Decision::UpsertTarget {
            id,
            job: Symbol::from(job),
            labels,
            collector: collector.map(Symbol::from),
            expect,
        });
        self
    }

    pub fn remove_target(&mut self, id: TargetId, expect: Expect) -> &mut Self {
        self.decisions.push(Decision::RemoveTarget { id, expect });
        self
    }

    pub fn move_target(&mut self, id: TargetId, from: Option<&str>, to: Option<&str>) -> &mut Self {
        self.move_target_between(id, from.map(Symbol::from).as_ref(), to.map(Symbol::from).as_ref())
    }

    /// [`CommandBuilder::move_target`] between interned collector names.
    pub fn move_target_between(&mut self, id: TargetId, from: Option<&Symbol>, to: Option<&Symbol>) -> &mut Self {
        self.decisions.push(Decision::MoveTarget {
            id,
            from: from.cloned(),
            to: to.cloned(),
        });
        self
    }

    pub fn set_collector(&mut self, id: &str, node: Option<&str>, state: CollectorState) -> &mut Self {
        self.decisions.push(Decision::SetCollector {
            id: Symbol::from(id),
            node: node.map(Symbol::from),
            state,
        });
        self
    }

    pub fn remove_collector(&mut self, id: &str) -> &mut Self {
        self.decisions.push(Decision::RemoveCollector { id: Symbol::from(id) });
        self
    }

    pub fn set_scrape_config(&mut self, job: &str, config: impl Into<String>) -> &mut Self {
        self.decisions.push(Decision::SetScrapeConfig {
            job: Symbol::from(job),
            config: Arc::from(config.into()),
        });
        self
    }

    pub fn set_config_digest(&mut self, digest: u64) -> &mut Self {
        self.decisions.push(Decision::SetConfigDigest { digest });
        self
    }

    pub fn remove_scrape_config(&mut self, job: &str) -> &mut Self {
        self.decisions
            .push(Decision::RemoveScrapeConfig { job: Symbol::from(job) });
        self
    }

    /// Number of decisions so far.
    pub fn len(&self) -> usize {
        self.decisions.len()
    }

    /// True when no decision was added.
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }

    pub fn build(self) -> Command {
        Command::new(CommandBody {
            decisions: self.decisions,
        })
    }
}

/// The wire form of a batch: a string table and decisions that index it. Its encoding is
/// part of the log's format (variant order included): `strings` first, then `decisions`.
mod wire {
    use super::*;

    #[derive(Serialize, Deserialize)]
    pub(super) enum WireExpect {
        Anything,
        Absent,
        Present,
        OwnedBy(Option<StringRef>),
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum WireDecision<'a> {
        UpsertTarget {
            id: TargetId,
            job: StringRef,
            labels: Vec<(StringRef, StringRef)>,
            collector: Option<StringRef>,
            expect: WireExpect,
        },
        RemoveTarget {
            id: TargetId,
            expect: WireExpect,
        },
        MoveTarget {
            id: TargetId,
            from: Option<StringRef>,
            to: Option<StringRef>,
        },
        SetCollector {
            id: StringRef,
            node: Option<StringRef>,
            state: CollectorState,
        },
        RemoveCollector {
            id: StringRef,
        },
        SetScrapeConfig {
            job: StringRef,
            #[serde(borrow)]
            config: &'a str,
        },
        RemoveScrapeConfig {
            job: StringRef,
        },
        SetConfigDigest {
            digest: u64,
        },
        /// Not a decision: the labels of a discovered group that the upserts after it in the
        /// batch refer to by number (the batch's groups are numbered from 0 in order).
        LabelGroup {
            pairs: Vec<(StringRef, StringRef)>,
        },
        /// [`WireDecision::UpsertTarget`] of a target whose labels are a group's merged with
        /// its own: the group by number, only the own labels written out. The replica that
        /// decodes it shares the group's labels among its targets as the leader does.
        UpsertGroupedTarget {
            id: TargetId,
            job: StringRef,
            group: u32,
            own: Vec<(StringRef, StringRef)>,
            collector: Option<StringRef>,
            expect: WireExpect,
        },
    }

    #[derive(Serialize)]
    pub(super) struct BatchOut<'a> {
        strings: Vec<&'a str>,
        decisions: Vec<WireDecision<'a>>,
    }

    #[derive(Deserialize)]
    pub(super) struct BatchIn<'a> {
        #[serde(borrow)]
        strings: Vec<&'a str>,
        #[serde(borrow)]
        decisions: Vec<WireDecision<'a>>,
    }

    /// Gives each distinct symbol one table index. Symbols are found by number, never by
    /// text: a value seen once (a pod name, an IP) is most of a large batch.
    struct Table<'a> {
        strings: Vec<&'a str>,
        by_symbol: FxHashMap<u32, StringRef>,
        /// Per label position, the last symbol number seen there and its index: consecutive
        /// targets of a group repeat most of their labels at the same positions. One lane
        /// for whole sets and groups, one for targets' own labels.
        recent: [Vec<(u32, StringRef)>; 2],
    }

    /// Lanes of [`Table::recent`].
    const SET: usize = 0;
    const OWN: usize = 1;

    impl<'a> Table<'a> {
        fn string(&mut self, symbol: &'a Symbol) -> StringRef {
            match self.by_symbol.entry(symbol.id()) {
                MapEntry::Occupied(found) => *found.get(),
                MapEntry::Vacant(slot) => {
                    let reference = self.strings.len() as StringRef;
                    self.strings.push(symbol.as_str());
                    *slot.insert(reference)
                }
            }
        }

        fn string_at(&mut self, lane: usize, position: usize, symbol: &'a Symbol) -> StringRef {
            let id = symbol.id();
            if let Some(&(seen, reference)) = self.recent[lane].get(position)
                && seen == id
            {
                return reference;
            }
            let reference = self.string(symbol);
            let recent = &mut self.recent[lane];
            if recent.len() <= position {
                recent.resize(position + 1, (0, 0));
            }
            recent[position] = (id, reference);
            reference
        }

        fn pairs(
            &mut self,
            lane: usize,
            pairs: impl Iterator<Item = &'a (Symbol, Symbol)>,
        ) -> Vec<(StringRef, StringRef)> {
            pairs
                .enumerate()
                .map(|(i, (n, v))| (self.string_at(lane, 2 * i, n), self.string_at(lane, 2 * i + 1, v)))
                .collect()
        }

        fn optional(&mut self, symbol: Option<&'a Symbol>) -> Option<StringRef> {
            symbol.map(|s| self.string(s))
        }

        fn expect(&mut self, expect: &'a Expect) -> WireExpect {
            match expect {
                Expect::Anything => WireExpect::Anything,
                Expect::Absent => WireExpect::Absent,
                Expect::Present => WireExpect::Present,
                Expect::OwnedBy(owner) => WireExpect::OwnedBy(self.optional(owner.as_ref())),
            }
        }
    }

    pub(super) fn encode(body: &CommandBody) -> BatchOut<'_> {
        let mut table = Table {
            strings: Vec::new(),
            by_symbol: FxHashMap::default(),
            recent: [Vec::new(), Vec::new()],
        };
        let mut groups = GroupNumbers::default();
        let mut decisions = Vec::with_capacity(body.decisions.len());
        for decision in &body.decisions {
            let wire = match decision {
                Decision::UpsertTarget {
                    id,
                    job,
                    labels,
                    collector,
                    expect,
                } => match labels.parts() {
                    Some(parts) => {
                        let (group, new) = groups.number(&parts);
                        if new {
                            decisions.push(WireDecision::LabelGroup {
                                pairs: table.pairs(SET, parts.group.iter()),
                            });
                        }
                        WireDecision::UpsertGroupedTarget {
                            id: *id,
                            job: table.string(job),
                            group,
                            own: table.pairs(OWN, parts.own.iter()),
                            collector: table.optional(collector.as_ref()),
                            expect: table.expect(expect),
                        }
                    }
                    None => WireDecision::UpsertTarget {
                        id: *id,
                        job: table.string(job),
                        labels: table.pairs(SET, labels.pair_iter()),
                        collector: table.optional(collector.as_ref()),
                        expect: table.expect(expect),
                    },
                },
                Decision::RemoveTarget { id, expect } => WireDecision::RemoveTarget {
                    id: *id,
                    expect: table.expect(expect),
                },
                Decision::MoveTarget { id, from, to } => WireDecision::MoveTarget {
                    id: *id,
                    from: table.optional(from.as_ref()),
                    to: table.optional(to.as_ref()),
                },
                Decision::SetCollector { id, node, state } => WireDecision::SetCollector {
                    id: table.string(id),
                    node: table.optional(node.as_ref()),
                    state: *state,
                },
                Decision::RemoveCollector { id } => WireDecision::RemoveCollector { id: table.string(id) },
                Decision::SetScrapeConfig { job, config } => WireDecision::SetScrapeConfig {
                    job: table.string(job),
                    config,
                },
                Decision::RemoveScrapeConfig { job } => WireDecision::RemoveScrapeConfig { job: table.string(job) },
                Decision::SetConfigDigest { digest } => WireDecision::SetConfigDigest { digest: *digest },
            };
            decisions.push(wire);
        }
        BatchOut {
            strings: table.strings,
            decisions,
        }
    }

    /// Resolve a batch read from the wire: each string interned once, each label set sorted
    /// (a peer's order is not trusted) and shared.
    pub(super) fn decode(batch: BatchIn<'_>) -> Result<CommandBody, DecodeError> {
        let symbols: Vec<Symbol> = batch.strings.iter().map(|s| Symbol::new(s)).collect();
        let symbol = |reference: StringRef| {
            symbols
                .get(reference as usize)
                .cloned()
                .ok_or(DecodeError::BadStringRef(reference))
        };
        let optional = |reference: Option<StringRef>| reference.map(symbol).transpose();
        let expect = |expect: WireExpect| -> Result<Expect, DecodeError> {
            Ok(match expect {
                WireExpect::Anything => Expect::Anything,
                WireExpect::Absent => Expect::Absent,
                WireExpect::Present => Expect::Present,
                WireExpect::OwnedBy(owner) => Expect::OwnedBy(optional(owner)?),
            })
        };
        let pairs = |labels: Vec<(StringRef, StringRef)>| -> Result<Vec<(Symbol, Symbol)>, DecodeError> {
            labels
                .into_iter()
                .map(|(name, value)| Ok((symbol(name)?, symbol(value)?)))
                .collect()
        };
        let mut groups: Vec<Labels> = Vec::new();
        let mut merger = LabelMerger::new();
        let mut decisions = Vec::with_capacity(batch.decisions.len());
        for decision in batch.decisions {
            decisions.push(match decision {
                WireDecision::UpsertTarget {
                    id,
                    job,
                    labels,
                    collector,
                    expect: wanted,
                } => Decision::UpsertTarget {
                    id,
                    job: symbol(job)?,
                    labels: Labels::shared(pairs(labels)?),
                    collector: optional(collector)?,
                    expect: expect(wanted)?,
                },
                WireDecision::LabelGroup { pairs: labels } => {
                    // Shared: a group whose targets were cut into two batches is one array.
                    groups.push(Labels::shared(pairs(labels)?));
                    continue;
                }
                WireDecision::UpsertGroupedTarget {
                    id,
                    job,
                    group,
                    own,
                    collector,
                    expect: wanted,
                } => {
                    let group = groups.get(group as usize).ok_or(DecodeError::BadGroupRef(group))?;
                    Decision::UpsertTarget {
                        id,
                        job: symbol(job)?,
                        labels: Labels::merge(group, &Labels::new(pairs(own)?), &mut merger),
                        collector: optional(collector)?,
                        expect: expect(wanted)?,
                    }
                }
                WireDecision::RemoveTarget { id, expect: wanted } => Decision::RemoveTarget {
                    id,
                    expect: expect(wanted)?,
                },
                WireDecision::MoveTarget { id, from, to } => Decision::MoveTarget {
                    id,
                    from: optional(from)?,
                    to: optional(to)?,
                },
                WireDecision::SetCollector { id, node, state } => Decision::SetCollector {
                    id: symbol(id)?,
                    node: optional(node)?,
                    state,
                },
                WireDecision::RemoveCollector { id } => Decision::RemoveCollector { id: symbol(id)? },
                WireDecision::SetScrapeConfig { job, config } => Decision::SetScrapeConfig {
                    job: symbol(job)?,
                    config: Arc::from(config),
                },
                WireDecision::RemoveScrapeConfig { job } => Decision::RemoveScrapeConfig { job: symbol(job)? },
                WireDecision::SetConfigDigest { digest } => Decision::SetConfigDigest { digest },
            });
        }
        Ok(CommandBody { decisions })
    }

    #[cfg(test)]
    pub(super) fn encode_raw(strings: Vec<&str>, decisions: Vec<WireDecision<'_>>) -> Vec<u8> {
        command_codec()
            .serialize(&BatchOut { strings, decisions })
            .expect("serializing into memory cannot fail")
    }
}

/// Commands for tests of what reads them.
#[cfg(test)]
pub(crate) mod examples {
    use super::*;

    /// The collectors `c0` and `c1`, then upserts of `groups` discovered groups of
    /// `per_group` targets each, every target's labels its group's merged with its own (as
    /// discovery makes them), then one target whose labels are one flat set. Target ids are
    /// `group * 1000 + index`; the flat one's is `u64::MAX`.
    pub(crate) fn grouped_upserts(groups: u64, per_group: u64) -> Command {
        let s = |text: &str| Symbol::from(text);
        let mut merger = crate::model::LabelMerger::new();
        let mut b = CommandBuilder::new();
        b.set_collector("c0", None, CollectorState::Ready);
        b.set_collector("c1", None, CollectorState::Ready);
        for g in 0..groups {
            let zone = format!("zone-{g}");
            let group = Labels::new(vec![
                (s("__meta_zone"), s(&zone)),
                (s("env"), s("prod")),
                (s("team"), s("a")),
            ]);
            for t in 0..per_group {
                let address = format!("10.{g}.0.{t}:80");
                let own = Labels::new(vec![(s("__address__"), s(&address)), (s("env"), s("canary"))]);
                let labels = Labels::merge(&group, &own, &mut merger);
                let collector = s(if t % 2 == 0 { "c0" } else { "c1" });
                b.upsert_target_labels(
                    TargetId(g * 1000 + t),
                    &s("job"),
                    &labels,
                    Some(&collector),
                    Expect::Absent,
                );
            }
        }
        b.upsert_target(
            TargetId(u64::MAX),
            "job",
            [("__address__", "flat:80")],
            None,
            Expect::Anything,
        );
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::wire::WireDecision;
    use super::wire::WireExpect;
    use super::*;

    #[test]
    fn a_group_s_labels_travel_once_and_its_decoded_targets_share_them() {
        let built = examples::grouped_upserts(3, 4);
        let strings = strings_of(&built);
        // 3 zones, 12 + 1 addresses, __meta_zone env prod team a __address__ canary, job c0 c1.
        assert_eq!(strings.len(), 3 + 13 + 7 + 3, "{strings:?}");

        let back = Command::from_encoded(built.encoded().to_vec());
        let decisions = &back.body().unwrap().decisions;
        assert_eq!(decisions, &built.body().unwrap().decisions);
        let group_of = |decision: &Decision| match decision {
            Decision::UpsertTarget { labels, .. } => labels.parts().map(|parts| parts.group_key),
            other => panic!("an upsert, not {other:?}"),
        };
        for group in decisions[2..14].chunks(4) {
            let first = group_of(&group[0]).expect("a grouped target decodes with its group's labels apart");
            assert!(group.iter().all(|d| group_of(d) == Some(first)), "one array per group");
        }
        assert_ne!(group_of(&decisions[2]), group_of(&decisions[6]));
        assert_eq!(group_of(&decisions[14]), None, "a flat set stays flat");
    }

    #[test]
    fn a_target_of_a_group_the_batch_does_not_define_is_a_decode_error() {
        let bytes = wire::encode_raw(
            vec!["job", "__address__", "a:80"],
            vec![WireDecision::UpsertGroupedTarget {
                id: TargetId(1),
                job: 0,
                group: 0,
                own: vec![(1, 2)],
                collector: None,
                expect: WireExpect::Anything,
            }],
        );
        assert_rejected(bytes, DecodeError::BadGroupRef(0), |reason| {
            matches!(reason, ConflictReason::Undecodable(_))
        });
    }

    /// `bytes` do not decode, with `error`, and applying them is a rejection whose first
    /// conflict's reason passes `reason`, not a panic.
    fn assert_rejected(bytes: Vec<u8>, error: DecodeError, reason: impl Fn(&ConflictReason) -> bool) {
        let command = Command::from_encoded(bytes);
        assert_eq!(command.body(), Err(&error));
        let t = crate::apply::apply(&crate::model::Table::new(), 2, &command);
        assert!(
            matches!(&t.outcome, Outcome::Rejected { conflicts } if reason(&conflicts[0].reason)),
            "rejected, not panicking: {:?}",
            t.outcome
        );
    }

    /// The string table of an encoded command.
    fn strings_of(command: &Command) -> Vec<&str> {
        #[derive(Deserialize)]
        struct Strings<'a> {
            #[serde(borrow)]
            strings: Vec<&'a str>,
        }
        let Strings { strings } = command_codec()
            .allow_trailing_bytes()
            .deserialize(command.encoded())
            .unwrap();
        strings
    }

    #[test]
    fn a_reference_outside_the_string_table_is_a_decode_error() {
        let bytes = wire::encode_raw(
            vec!["job"],
            vec![WireDecision::UpsertTarget {
                id: TargetId(1),
                job: 0,
                labels: vec![(0, 99)],
                collector: None,
                expect: WireExpect::Anything,
            }],
        );
        assert_rejected(bytes, DecodeError::BadStringRef(99), |reason| {
            *reason == ConflictReason::BadStringRef(99)
        });
    }

    #[test]
    fn the_string_table_holds_each_string_once_and_decoding_restores_the_decisions() {
        let mut b = CommandBuilder::new();
        for n in 0..20u64 {
            let address = format!("10.0.0.{n}:80");
            b.upsert_target(
                TargetId(n),
                "job",
                [("__address__", address.as_str()), ("zone", "a")],
                Some("c0"),
                Expect::Absent,
            );
        }
        let expect = b.owned_by(Some("c0"));
        b.remove_target(TargetId(99), expect);
        b.set_scrape_config("job", r#"{"job_name":"job"}"#);
        let built = b.build();
        let strings = strings_of(&built);
        // job, __address__, 20 addresses, zone, a, c0.
        assert_eq!(strings.len(), 25, "{strings:?}");
        let back = Command::from_encoded(built.encoded().to_vec());
        assert_eq!(back.body().unwrap(), built.body().unwrap());
    }
}
