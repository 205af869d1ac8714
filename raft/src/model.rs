//! The replicated assignment table: what every replica agrees on.
//!
//! Targets (id → job, served labels, collector), collectors (id → node, ready or absent since
//! a time), and per-job scrape configs (opaque JSON text here). Maps are persistent
//! (`imbl`), so publishing the table to readers after each apply is an O(1) clone.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;

use imbl::OrdMap;
use rustc_hash::FxBuildHasher;
use serde::Deserialize;
use serde::Serialize;

use crate::intern::Symbol;

/// Stable identity of a target: xxHash64 (seed 0) over the identity labels, each
/// `name 0xFF value 0xFF`, skipping names starting with `__meta_`, then the job name
/// (upstream-compat.md §4.4). Upstream hashes in Prometheus `labels.Builder` order (the
/// untouched discovered labels by name, then labels set by seeding and relabeling in the
/// order first set); without relabeling that is name order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetId(pub u64);

impl TargetId {
    /// Hash `job` and the post-relabel identity labels, in the order given.
    pub fn compute<'a>(job: &str, identity_labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        for (name, value) in identity_labels {
            if name.starts_with("__meta_") {
                continue;
            }
            hasher.update(name.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(value.as_bytes());
            hasher.update(&[0xff]);
        }
        hasher.update(job.as_bytes());
        Self(hasher.digest())
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A label set sorted by name, with interned names and values (most repeat across targets).
///
/// Sets made with [`Labels::shared`] are one allocation per distinct set while any holds it
/// ([`LabelSets`]): on the leader, the desired state and the applied table share every
/// target's labels instead of holding a copy each. Short-lived sets use [`Labels::new`] and
/// never enter the registry.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Arc<[(Symbol, Symbol)]>);

/// The process's label sets, by a hash of their symbol numbers. A set only this registry
/// holds is dropped by the next sweep, once as many sets were created since the last one
/// as were alive after it.
#[derive(Default)]
struct LabelSets {
    by_hash: HashMap<u64, SmallSets, FxBuildHasher>,
    created_since_sweep: usize,
    alive_after_sweep: usize,
}

/// The sets of one hash (almost always one).
type SmallSets = Vec<Arc<[(Symbol, Symbol)]>>;

fn label_sets() -> &'static Mutex<LabelSets> {
    static SETS: OnceLock<Mutex<LabelSets>> = OnceLock::new();
    SETS.get_or_init(Mutex::default)
}

/// Hash of a set by symbol numbers: equal sets have equal numbers while either is held.
fn set_hash(pairs: &[(Symbol, Symbol)]) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    for (name, value) in pairs {
        hasher.write_u32(name.id());
        hasher.write_u32(value.id());
    }
    hasher.finish()
}

impl LabelSets {
    fn share(&mut self, pairs: Arc<[(Symbol, Symbol)]>) -> Arc<[(Symbol, Symbol)]> {
        let hash = set_hash(&pairs);
        if let Some(existing) = self
            .by_hash
            .get(&hash)
            .and_then(|sets| sets.iter().find(|set| set[..] == pairs[..]))
        {
            return Arc::clone(existing);
        }
        if self.created_since_sweep > self.alive_after_sweep.max(1 << 16) {
            self.by_hash.retain(|_, sets| {
                sets.retain(|set| Arc::strong_count(set) > 1);
                !sets.is_empty()
            });
            self.created_since_sweep = 0;
            self.alive_after_sweep = self.by_hash.values().map(Vec::len).sum();
        }
        self.by_hash.entry(hash).or_default().push(Arc::clone(&pairs));
        self.created_since_sweep += 1;
        pairs
    }
}

impl Labels {
    /// Build from pairs; sorts by name and keeps the last value of a repeated name.
    pub fn new(mut pairs: Vec<(Symbol, Symbol)>) -> Self {
        // Commands carry labels already sorted (see `CommandBuilder`); checking is one pass.
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        pairs.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = later.1.clone();
                true
            } else {
                false
            }
        });
        Self(pairs.into())
    }

    /// [`Labels::new`], sharing the allocation with any equal set made this way: for sets
    /// that live as long as a target does (the desired state's, the table's).
    pub fn shared(pairs: Vec<(Symbol, Symbol)>) -> Self {
        let labels = Self::new(pairs);
        if labels.is_empty() {
            return labels;
        }
        let mut sets = label_sets().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Self(sets.share(labels.0))
    }

    /// [`Labels::shared`] for pairs already sorted by name with no name repeated (a merge of
    /// two label sets, say), which skips checking that.
    pub fn shared_sorted(pairs: Vec<(Symbol, Symbol)>) -> Self {
        debug_assert!(
            pairs.is_sorted_by(|a, b| a.0 < b.0),
            "shared_sorted given unsorted labels"
        );
        if pairs.is_empty() {
            return Self::default();
        }
        let mut sets = label_sets().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Self(sets.share(pairs.into()))
    }

    /// Iterate `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The pairs, sorted by name.
    pub fn pairs(&self) -> &[(Symbol, Symbol)] {
        &self.0
    }

    /// Value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// One allocated target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub job: Symbol,
    /// The discovered labels served on the wire (pre-relabel, `__meta_*` included).
    pub labels: Labels,
    /// The owning collector; `None` while no collector can take it.
    pub collector: Option<Symbol>,
}

/// Whether a collector currently takes targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CollectorState {
    Ready,
    /// Gone (not ready, deleted, stopped polling) since this leader-supplied time. Kept in
    /// the table so the grace period survives a leader failover.
    AbsentSince {
        unix_millis: u64,
    },
}

/// A collector known to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    /// Kubernetes node the collector runs on (for `per-node`), if known.
    pub node: Option<Symbol>,
    pub state: CollectorState,
}

/// The whole replicated state at one revision.
#[derive(Clone, Default)]
pub struct Table {
    /// Log index of the last entry that changed the table (0 before any).
    pub revision: u64,
    pub targets: OrdMap<TargetId, Target>,
    pub collectors: OrdMap<Symbol, Collector>,
    /// Per-job scrape config, opaque JSON text.
    pub scrape_configs: OrdMap<Symbol, Arc<str>>,
    /// Digest of the configuration a leader last reconciled the scrape configs with; `None`
    /// until one has, which is when a replica has nothing trustworthy to serve yet.
    pub config_digest: Option<u64>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A digest of the table contents (revision excluded), equal on replicas that agree.
    pub fn digest(&self) -> u64 {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        for (id, target) in &self.targets {
            hasher.update(&id.0.to_le_bytes());
            hasher.update(target.job.as_bytes());
            hasher.update(&[0xfe]);
            for (name, value) in target.labels.iter() {
                hasher.update(name.as_bytes());
                hasher.update(&[0xff]);
                hasher.update(value.as_bytes());
                hasher.update(&[0xff]);
            }
            hasher.update(target.collector.as_deref().unwrap_or("\u{0}").as_bytes());
            hasher.update(&[0xfd]);
        }
        for (id, collector) in &self.collectors {
            hasher.update(id.as_bytes());
            hasher.update(&[0xfe]);
            hasher.update(collector.node.as_deref().unwrap_or("\u{0}").as_bytes());
            match collector.state {
                CollectorState::Ready => hasher.update(&[1]),
                CollectorState::AbsentSince { unix_millis } => {
                    hasher.update(&[2]);
                    hasher.update(&unix_millis.to_le_bytes());
                }
            }
        }
        for (job, config) in &self.scrape_configs {
            hasher.update(job.as_bytes());
            hasher.update(&[0xfe]);
            hasher.update(config.as_bytes());
            hasher.update(&[0xfd]);
        }
        if let Some(digest) = self.config_digest {
            hasher.update(&digest.to_le_bytes());
        }
        hasher.digest()
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("revision", &self.revision)
            .field("targets", &self.targets.len())
            .field("collectors", &self.collectors)
            .field("jobs", &self.scrape_configs.len())
            .finish()
    }
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
            && self.targets == other.targets
            && self.collectors == other.collectors
            && self.scrape_configs == other.scrape_configs
            && self.config_digest == other.config_digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_ids_match_upstream_vectors() {
        // upstream-compat.md §4.4, from upstream's server goldens.
        let cases = [
            ("test-job", "test-value", 11170662653441480747u64),
            ("test-job", "test-value2", 5467859392755170604),
            ("test-job2", "test-value2", 1641186170520627519),
            ("test-job2", "test-value3", 14477087093029933912),
        ];
        for (job, value, expected) in cases {
            assert_eq!(
                TargetId::compute(job, [("test_label", value)]),
                TargetId(expected),
                "{job} {value}"
            );
        }
    }

    #[test]
    fn meta_labels_do_not_change_identity() {
        let plain = TargetId::compute("j", [("__address__", "a:1")]);
        let with_meta = TargetId::compute("j", [("__address__", "a:1"), ("__meta_pod", "p")]);
        assert_eq!(plain, with_meta);
        assert_ne!(plain, TargetId::compute("other", [("__address__", "a:1")]));
    }

    #[test]
    fn equal_label_sets_share_one_allocation() {
        let s = |x: &str| Symbol::from(x);
        let a = Labels::shared(vec![(s("job"), s("x")), (s("__address__"), s("share-1:80"))]);
        let b = Labels::shared(vec![(s("__address__"), s("share-1:80")), (s("job"), s("x"))]);
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let c = Labels::shared(vec![(s("__address__"), s("share-2:80"))]);
        assert!(!Arc::ptr_eq(&a.0, &c.0));
        assert_eq!(a, b);
    }

    #[test]
    fn labels_sort_and_keep_the_last_duplicate() {
        let s = |x: &str| Symbol::from(x);
        let labels = Labels::new(vec![(s("b"), s("2")), (s("a"), s("1")), (s("b"), s("3"))]);
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("a", "1"), ("b", "3")]);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
    }
}
