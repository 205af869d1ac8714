//! The command set: batches of decisions the leader has taken, replicated through the log.
//!
//! A command records decisions (which target goes where), never inputs, so replicas never
//! re-run a strategy and cannot disagree because of code or timing differences. Strings are
//! sent once per batch in a table and referenced by index: a batch of 10k targets with ~40
//! labels each repeats most names and values.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;

use bincode::Options;

use serde::Deserialize;
use serde::Serialize;

use rustc_hash::FxHashMap;

use crate::intern::Symbol;
use crate::model::CollectorState;
use crate::model::Labels;
use crate::model::TargetId;

/// Index into [`Command::strings`].
pub type StringRef = u32;

/// The decisions of one batch and the strings they reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CommandBody {
    pub strings: Vec<String>,
    pub decisions: Vec<Decision>,
}

impl CommandBody {
    /// The string a reference points at.
    pub fn string(&self, reference: StringRef) -> Option<&str> {
        self.strings.get(reference as usize).map(String::as_str)
    }
}

/// One replicated batch of decisions, applied atomically: all of them or none.
///
/// A command travels as one byte blob. A batch of 10k targets (50k strings, 10k label
/// vectors) would otherwise be deep-copied by every clone and re-encoded at every hop: the
/// leader's storage, one log read per follower, the network, each follower's storage. Here
/// the blob is encoded once, cloned by reference count, copied as bytes through every hop,
/// and decoded into a [`CommandBody`] once per replica, when applied.
#[derive(Clone)]
pub struct Command {
    inner: Arc<CommandInner>,
}

struct CommandInner {
    encoded: OnceLock<Vec<u8>>,
    body: OnceLock<Result<CommandBody, String>>,
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
                .serialize(body)
                .expect("serializing into memory cannot fail")
        })
    }

    /// The decisions, decoded on first use. An undecodable blob (only possible from a bug or
    /// a peer speaking another format) is an error for `apply` to reject, never a panic.
    pub fn body(&self) -> Result<&CommandBody, &str> {
        self.inner
            .body
            .get_or_init(|| {
                let encoded = self.inner.encoded.get().expect("a command has a body or its encoding");
                command_codec()
                    .deserialize(encoded)
                    .map_err(|e| format!("command does not decode: {e}"))
            })
            .as_ref()
            .map_err(String::as_str)
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
                .field("strings", &body.strings.len())
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No precondition.
    Anything,
    /// The target must not exist yet.
    Absent,
    /// The target must exist (any owner).
    Present,
    /// The target must exist and be owned by this collector (`None`: unassigned).
    OwnedBy(Option<StringRef>),
}

/// One decision of the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// Add a target, or refresh its labels, with its collector.
    UpsertTarget {
        id: TargetId,
        job: StringRef,
        labels: Vec<(StringRef, StringRef)>,
        collector: Option<StringRef>,
        expect: Expect,
    },
    /// Remove a target.
    RemoveTarget { id: TargetId, expect: Expect },
    /// Move a target from its expected current owner to another collector.
    MoveTarget {
        id: TargetId,
        from: Option<StringRef>,
        to: Option<StringRef>,
    },
    /// Add a collector or change its node or state.
    SetCollector {
        id: StringRef,
        node: Option<StringRef>,
        state: CollectorState,
    },
    /// Forget a collector. It must own no target once the whole batch is applied.
    RemoveCollector { id: StringRef },
    /// Set a job's scrape config (opaque JSON text).
    SetScrapeConfig { job: StringRef, config: String },
    /// Remove a job's scrape config.
    RemoveScrapeConfig { job: StringRef },
    /// Record that a leader has reconciled the scrape configs with its configuration, whose
    /// digest this is. Until the first one, replicas have nothing to serve (not ready).
    /// Appended last: variant numbers are part of the log's encoding.
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

/// Builds a [`Command`], interning strings into its table.
#[derive(Default)]
pub struct CommandBuilder {
    strings: Vec<String>,
    index: FxHashMap<String, StringRef>,
    /// Interned strings by symbol number. `held` keeps each symbol alive, so no number is
    /// reused for another text while the builder lives.
    by_symbol: FxHashMap<u32, StringRef>,
    held: Vec<Symbol>,
    /// Per label position, the last symbol number seen there and its reference: consecutive
    /// targets of a group repeat most of their labels at the same positions.
    recent: Vec<(u32, StringRef)>,
    decisions: Vec<Decision>,
}

impl CommandBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn string(&mut self, s: &str) -> StringRef {
        if let Some(&reference) = self.index.get(s) {
            return reference;
        }
        let reference = self.strings.len() as StringRef;
        self.strings.push(s.to_string());
        self.index.insert(s.to_string(), reference);
        reference
    }

    fn shared_string(&mut self, s: &Symbol) -> StringRef {
        if let Some(&reference) = self.by_symbol.get(&s.id()) {
            return reference;
        }
        // Not hashed by text: a value seen once (a pod name, an IP) is most of a large batch,
        // and the symbol's number names the text while `held` keeps it.
        let reference = self.strings.len() as StringRef;
        self.strings.push(s.to_string());
        self.by_symbol.insert(s.id(), reference);
        self.held.push(s.clone());
        reference
    }

    /// [`CommandBuilder::shared_string`] through the cache of label position `slot`.
    fn shared_string_at(&mut self, slot: usize, s: &Symbol) -> StringRef {
        let id = s.id();
        if let Some(&(seen, reference)) = self.recent.get(slot)
            && seen == id
        {
            return reference;
        }
        let reference = self.shared_string(s);
        if self.recent.len() <= slot {
            self.recent.resize(slot + 1, (0, 0));
        }
        self.recent[slot] = (id, reference);
        reference
    }

    /// [`CommandBuilder::upsert_target`] for an already sorted, interned label set: shared
    /// strings are found by address, which is most of the cost of a large batch.
    pub fn upsert_target_labels(
        &mut self,
        id: TargetId,
        job: &Symbol,
        labels: &Labels,
        collector: Option<&Symbol>,
        expect: Expect,
    ) -> &mut Self {
        let job = self.shared_string(job);
        let labels = labels
            .pairs()
            .iter()
            .enumerate()
            .map(|(i, (n, v))| (self.shared_string_at(2 * i, n), self.shared_string_at(2 * i + 1, v)))
            .collect();
        let collector = collector.map(|c| self.shared_string(c));
        self.push_upsert(id, job, labels, collector, expect)
    }

    fn optional(&mut self, s: Option<&str>) -> Option<StringRef> {
        s.map(|s| self.string(s))
    }

    /// Reference a collector for an [`Expect::OwnedBy`].
    pub fn owned_by(&mut self, collector: Option<&str>) -> Expect {
        Expect::OwnedBy(self.optional(collector))
    }

    pub fn upsert_target<'a>(
        &mut self,
        id: TargetId,
        job: &str,
        labels: impl IntoIterator<Item = (&'a str, &'a str)>,
        collector: Option<&str>,
        expect: Expect,
    ) -> &mut Self {
        let job = self.string(job);
        // Sorted here, once, on the leader, so every replica's apply finds them in order.
        let mut sorted: Vec<(&str, &str)> = labels.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let labels = sorted
            .into_iter()
            .map(|(n, v)| (self.string(n), self.string(v)))
            .collect();
        let collector = self.optional(collector);
        self.push_upsert(id, job, labels, collector, expect)
    }

    fn push_upsert(
        &mut self,
        id: TargetId,
        job: StringRef,
        labels: Vec<(StringRef, StringRef)>,
        collector: Option<StringRef>,
        expect: Expect,
    ) -> &mut Self {
        self.decisions.push(Decision::UpsertTarget {
            id,
            job,
            labels,
            collector,
            expect,
        });
        self
    }

    pub fn remove_target(&mut self, id: TargetId, expect: Expect) -> &mut Self {
        self.decisions.push(Decision::RemoveTarget { id, expect });
        self
    }

    pub fn move_target(&mut self, id: TargetId, from: Option<&str>, to: Option<&str>) -> &mut Self {
        let from = self.optional(from);
        let to = self.optional(to);
        self.decisions.push(Decision::MoveTarget { id, from, to });
        self
    }

    pub fn set_collector(&mut self, id: &str, node: Option<&str>, state: CollectorState) -> &mut Self {
        let id = self.string(id);
        let node = self.optional(node);
        self.decisions.push(Decision::SetCollector { id, node, state });
        self
    }

    pub fn remove_collector(&mut self, id: &str) -> &mut Self {
        let id = self.string(id);
        self.decisions.push(Decision::RemoveCollector { id });
        self
    }

    pub fn set_scrape_config(&mut self, job: &str, config: impl Into<String>) -> &mut Self {
        let job = self.string(job);
        self.decisions.push(Decision::SetScrapeConfig {
            job,
            config: config.into(),
        });
        self
    }

    pub fn set_config_digest(&mut self, digest: u64) -> &mut Self {
        self.decisions.push(Decision::SetConfigDigest { digest });
        self
    }

    pub fn remove_scrape_config(&mut self, job: &str) -> &mut Self {
        let job = self.string(job);
        self.decisions.push(Decision::RemoveScrapeConfig { job });
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
            strings: self.strings,
            decisions: self.decisions,
        })
    }
}
