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

/// Stable identity of a target, from its job and its identity labels: the labels not named
/// `__meta_*`, in Prometheus `labels.Builder` order (the untouched discovered labels by name,
/// then the labels seeding and relabeling set, in the order first set; without relabeling
/// that is name order). Two targets have the same identity when their jobs are equal and
/// their identity labels are the same sequence, as with upstream's `ItemHash`, up to a 64-bit
/// hash collision. The number itself is not upstream's, which only its debug pages show
/// (docs/architecture.md, "Target identity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetId(pub u64);

impl TargetId {
    /// Hash `job` and the post-relabel identity labels, in the order given.
    pub fn compute<'a>(job: &str, identity_labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut hasher = IdentityHasher::new();
        for (name, value) in identity_labels {
            if name.starts_with("__meta_") {
                continue;
            }
            hasher.add(name, value);
        }
        hasher.finish(string_hash(job))
    }
}

/// The hash of one label name, value or job name that identities are made of (xxh3, 64 bits).
/// A caller that adds the same string to many identities (a label name, a seeded value, the
/// job) hashes it once.
#[inline]
pub fn string_hash(text: &str) -> u64 {
    crate::intern::hash_text(text)
}

/// [`TargetId::compute`] one label at a time, for callers that already know which labels
/// are `__meta_*` (and so skip them themselves).
///
/// The identity is a sum of one term per label, each mixing the label's name, value and
/// position in the sequence, so a term needs only the hashes of its two strings: the hashes
/// of names and seeded values are worked out once per job instead of once per target (with
/// one hash over the concatenated labels, gathering and hashing the bytes of the labels that
/// are the same for every target was a fifth of building them).
#[derive(Debug, Clone, Default)]
pub struct IdentityHasher {
    sum: u64,
    position: u64,
}

impl IdentityHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one identity label (never a `__meta_*` one).
    #[inline]
    pub fn add(&mut self, name: &str, value: &str) {
        self.add_hashed(string_hash(name), string_hash(value));
    }

    /// [`IdentityHasher::add`] of a label whose name and value hash ([`string_hash`]) to these.
    #[inline]
    pub fn add_hashed(&mut self, name: u64, value: u64) {
        const POSITION: u64 = 0x9e37_79b9_7f4a_7c15;
        const VALUE: u64 = 0xc2b2_ae3d_27d4_eb4f;
        self.position += 1;
        // A folded 128-bit product: every bit of either side reaches the term.
        let product = u128::from(name ^ self.position.wrapping_mul(POSITION)) * u128::from(value ^ VALUE);
        self.sum = self.sum.wrapping_add((product as u64) ^ ((product >> 64) as u64));
    }

    /// The identity of what was added, with the job whose name hashes to `job`
    /// ([`string_hash`]); the hasher is empty again afterwards.
    pub fn finish(&mut self, job: u64) -> TargetId {
        const JOB: u64 = 0x1656_67b1_9e37_79f9;
        let mut x = self.sum ^ job.wrapping_mul(JOB);
        *self = Self::default();
        // murmur3's finalizer: a bijection that spreads the sum over every bit.
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        TargetId(x)
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A label set sorted by name, with interned names and values (most repeat across targets).
///
/// Two layouts behind one interface:
/// - flat: one sorted array. Sets made with [`Labels::shared`] are one allocation per
///   distinct set while any holds it ([`LabelSets`]); short-lived sets use [`Labels::new`]
///   and never enter the registry.
/// - merged: a discovered group's labels and one target's own labels, kept as the two arrays
///   discovery made plus the order that interleaves them ([`LabelMerger`]). The targets of
///   a group share its labels instead of each holding a merged copy, and building one costs
///   a few reference counts instead of one per label (docs/architecture.md, "Memory
///   layout").
///
/// Equality, hashing and iteration see only the pairs, never the layout.
#[derive(Clone, Default)]
pub struct Labels(Repr);

type Pairs = Arc<[(Symbol, Symbol)]>;

#[derive(Clone)]
enum Repr {
    Flat(Pairs),
    Merged(Arc<Merged>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Flat(Pairs::default())
    }
}

struct Merged {
    group: Pairs,
    own: Pairs,
    steps: Arc<[MergeStep]>,
}

/// One step of interleaving a group's labels with a target's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MergeStep {
    Group,
    Own,
    /// Both have the name; the target's own value wins.
    Both,
}

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
type SmallSets = Vec<Pairs>;

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
    fn share(&mut self, pairs: Pairs) -> Pairs {
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

/// `pairs` in name order, one per name, the last value given for a name winning: the order
/// and values of [`Labels::new`], for a caller that keeps the vector.
///
/// Discovery builds the labels of most targets of a job with the same names in the same
/// order, and sorting them compares names as text: at 100k Kubernetes targets of ~43 labels,
/// the sorts were a fifth of building the groups. So the outcome for a sequence of names
/// (which pair goes where, which repeats are dropped) is remembered per thread for a few
/// sequences, found again by symbol numbers, and replayed without comparing a text.
pub fn sorted_by_name(pairs: Vec<(Symbol, Symbol)>) -> Vec<(Symbol, Symbol)> {
    // Commands carry labels already sorted (see `CommandBuilder`); checking is one pass, and
    // remembering their order would save nothing.
    if pairs.len() < NameOrders::SHORTEST || pairs.is_sorted_by(|a, b| a.0 <= b.0) {
        return sort_and_dedup(pairs);
    }
    NAME_ORDERS.with(|orders| orders.borrow_mut().sorted(pairs))
}

fn sort_and_dedup(mut pairs: Vec<(Symbol, Symbol)>) -> Vec<(Symbol, Symbol)> {
    if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    pairs.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            std::mem::swap(&mut earlier.1, &mut later.1);
        }
        same
    });
    pairs
}

thread_local! {
    static NAME_ORDERS: std::cell::RefCell<NameOrders> = std::cell::RefCell::default();
}

/// The last few name sequences [`sorted_by_name`] sorted, with the outcome of each.
#[derive(Default)]
struct NameOrders {
    /// Most recently used first.
    orders: Vec<NameOrder>,
}

struct NameOrder {
    /// Held, so that their numbers stay theirs while remembered.
    names: Vec<Symbol>,
    /// The index of each kept pair, in name order.
    kept: Vec<u32>,
}

impl NameOrders {
    /// Shorter sequences are sorted directly: too few comparisons to save.
    const SHORTEST: usize = 8;
    /// Sequences remembered per thread: discovery builds a few kinds of label sets in turn
    /// (a pod's, a target's, a group's).
    const KEPT: usize = 4;

    fn sorted(&mut self, pairs: Vec<(Symbol, Symbol)>) -> Vec<(Symbol, Symbol)> {
        let found = self
            .orders
            .iter()
            .position(|order| LabelMerger::same_names(&order.names, &pairs));
        let position = match found {
            Some(position) => position,
            None => {
                if self.orders.len() == Self::KEPT {
                    self.orders.pop();
                }
                self.orders.push(NameOrder::of(&pairs));
                self.orders.len() - 1
            }
        };
        // Most recently used first, so the next search finds the sequence at once.
        self.orders[..=position].rotate_right(1);
        self.orders[0].apply(pairs)
    }
}

impl NameOrder {
    fn of(pairs: &[(Symbol, Symbol)]) -> Self {
        // Stable: of pairs with the same name, the last given sorts last.
        let mut order: Vec<u32> = (0..pairs.len() as u32).collect();
        order.sort_by(|&a, &b| pairs[a as usize].0.cmp(&pairs[b as usize].0));
        let mut kept: Vec<u32> = Vec::with_capacity(order.len());
        for index in order {
            match kept.last_mut() {
                Some(last) if pairs[*last as usize].0 == pairs[index as usize].0 => *last = index,
                _ => kept.push(index),
            }
        }
        Self {
            names: pairs.iter().map(|(name, _)| name.clone()).collect(),
            kept,
        }
    }

    fn apply(&self, pairs: Vec<(Symbol, Symbol)>) -> Vec<(Symbol, Symbol)> {
        let mut slots: Vec<Option<(Symbol, Symbol)>> = pairs.into_iter().map(Some).collect();
        self.kept
            .iter()
            .map(|&index| slots[index as usize].take().expect("each pair is kept at most once"))
            .collect()
    }
}

/// The two parts of a merged label set ([`Labels::parts`]).
pub struct LabelParts<'a> {
    /// The group's labels, in name order.
    pub group: &'a [(Symbol, Symbol)],
    /// Names the group's allocation: equal keys are the same array while both sets are held.
    pub group_key: usize,
    /// The target's own labels, in name order.
    pub own: &'a [(Symbol, Symbol)],
}

/// Numbers the group arrays of merged label sets in the order they are first met, for an
/// encoder that writes each group once and refers to it by number afterwards.
#[derive(Default)]
pub struct GroupNumbers {
    by_key: rustc_hash::FxHashMap<usize, u32>,
}

impl GroupNumbers {
    /// The number of this group array, and whether it is new (to be written out first).
    /// The caller keeps every numbered set alive while numbering, so keys are not reused.
    pub fn number(&mut self, parts: &LabelParts<'_>) -> (u32, bool) {
        let next = self.by_key.len() as u32;
        match self.by_key.entry(parts.group_key) {
            std::collections::hash_map::Entry::Occupied(found) => (*found.get(), false),
            std::collections::hash_map::Entry::Vacant(slot) => (*slot.insert(next), true),
        }
    }
}

/// Pairs of a label set in name order.
pub struct PairIter<'a> {
    group: &'a [(Symbol, Symbol)],
    own: &'a [(Symbol, Symbol)],
    /// `None` for a flat set, which is all in `group`.
    steps: Option<std::slice::Iter<'a, MergeStep>>,
}

impl<'a> Iterator for PairIter<'a> {
    type Item = &'a (Symbol, Symbol);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let Some(steps) = &mut self.steps else {
            let (first, rest) = self.group.split_first()?;
            self.group = rest;
            return Some(first);
        };
        // The steps were worked out for exactly these arrays, so the indexing holds.
        match steps.next()? {
            MergeStep::Group => {
                let (first, rest) = self.group.split_first()?;
                self.group = rest;
                Some(first)
            }
            MergeStep::Own => {
                let (first, rest) = self.own.split_first()?;
                self.own = rest;
                Some(first)
            }
            MergeStep::Both => {
                self.group = self.group.get(1..)?;
                let (first, rest) = self.own.split_first()?;
                self.own = rest;
                Some(first)
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match &self.steps {
            Some(steps) => steps.len(),
            None => self.group.len(),
        };
        (len, Some(len))
    }
}

impl ExactSizeIterator for PairIter<'_> {}

/// Merges a group's labels with its targets' own ones ([`Labels::merge`]). The targets of a
/// group, and most groups of a job, carry the same label names, so the interleaving is worked
/// out (comparing names as text) once and replayed while the names are the same symbols.
#[derive(Default)]
pub struct LabelMerger {
    /// The names the steps were worked out for; held, so their numbers stay theirs.
    group_names: Vec<Symbol>,
    own_names: Vec<Symbol>,
    steps: Option<Arc<[MergeStep]>>,
    /// Counts the times the steps were worked out.
    generation: u64,
    /// The generation the last merge's result was laid out by, if it went through the steps.
    last: Option<u64>,
}

impl LabelMerger {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the layout of the last merge's result: two results with the same `Some` value
    /// have the same names in the same order, and each pair sits at the same
    /// [`Labels::positions`]. `None` when the last merge returned one side as it was.
    pub fn last_layout(&self) -> Option<u64> {
        self.last
    }

    fn same_names(names: &[Symbol], pairs: &[(Symbol, Symbol)]) -> bool {
        // Every name compared, without stopping at the first difference: a loop the compiler
        // turns into a few vector compares, where nearly every call finds the names equal.
        names.len() == pairs.len()
            && names
                .iter()
                .zip(pairs)
                .fold(true, |same, (name, (other, _))| same & (name.id() == other.id()))
    }

    fn steps_for(&mut self, group: &[(Symbol, Symbol)], own: &[(Symbol, Symbol)]) -> Arc<[MergeStep]> {
        if let Some(steps) = &self.steps
            && Self::same_names(&self.own_names, own)
            && Self::same_names(&self.group_names, group)
        {
            return Arc::clone(steps);
        }
        let mut steps = Vec::with_capacity(group.len() + own.len());
        let (mut g, mut t) = (0, 0);
        while g < group.len() || t < own.len() {
            let step = match (group.get(g), own.get(t)) {
                (Some(gp), Some(tp)) => match gp.0.cmp(&tp.0) {
                    std::cmp::Ordering::Less => MergeStep::Group,
                    std::cmp::Ordering::Greater => MergeStep::Own,
                    std::cmp::Ordering::Equal => MergeStep::Both,
                },
                (Some(_), None) => MergeStep::Group,
                _ => MergeStep::Own,
            };
            match step {
                MergeStep::Group => g += 1,
                MergeStep::Own => t += 1,
                MergeStep::Both => {
                    g += 1;
                    t += 1;
                }
            }
            steps.push(step);
        }
        let steps: Arc<[MergeStep]> = steps.into();
        self.generation += 1;
        self.group_names = group.iter().map(|(name, _)| name.clone()).collect();
        self.own_names = own.iter().map(|(name, _)| name.clone()).collect();
        self.steps = Some(Arc::clone(&steps));
        steps
    }
}

impl Labels {
    /// Build from pairs; sorts by name and keeps the last value of a repeated name.
    pub fn new(pairs: Vec<(Symbol, Symbol)>) -> Self {
        Self(Repr::Flat(sorted_by_name(pairs).into()))
    }

    /// [`Labels::new`], sharing the allocation with any equal set made this way: for sets
    /// that live as long as a target does (the desired state's, the table's).
    pub fn shared(pairs: Vec<(Symbol, Symbol)>) -> Self {
        let Repr::Flat(pairs) = Self::new(pairs).0 else {
            unreachable!("Labels::new makes flat sets")
        };
        if pairs.is_empty() {
            return Self(Repr::Flat(pairs));
        }
        let mut sets = label_sets().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Self(Repr::Flat(sets.share(pairs)))
    }

    /// A group's labels merged with one target's own: every name of either, the target's
    /// value where both have it. Shares both inputs instead of copying them.
    pub fn merge(group: &Labels, own: &Labels, merger: &mut LabelMerger) -> Labels {
        merger.last = None;
        if group.is_empty() {
            return own.clone();
        }
        if own.is_empty() {
            return group.clone();
        }
        let (group, own) = (group.flat(), own.flat());
        let steps = merger.steps_for(&group, &own);
        merger.last = Some(merger.generation);
        if steps.len() == group.len() && steps.iter().all(|step| *step == MergeStep::Both) {
            // Every group label is overridden: the target's own set is the whole answer.
            return Labels(Repr::Flat(own));
        }
        Labels(Repr::Merged(Arc::new(Merged { group, own, steps })))
    }

    /// A merged set's two parts: the group's labels, which the group's targets share, and
    /// the target's own. Commands and snapshots carry a merged set as these, each group once,
    /// so a replica that reads them shares a group's labels as the leader that made them
    /// does (docs/architecture.md, "Memory layout"). `None` for a flat set.
    pub fn parts(&self) -> Option<LabelParts<'_>> {
        match &self.0 {
            Repr::Flat(_) => None,
            Repr::Merged(merged) => Some(LabelParts {
                group: &merged.group,
                group_key: Arc::as_ptr(&merged.group) as *const () as usize,
                own: &merged.own,
            }),
        }
    }

    /// The set as one array (shared when it is one already).
    fn flat(&self) -> Pairs {
        match &self.0 {
            Repr::Flat(pairs) => Arc::clone(pairs),
            Repr::Merged(_) => self.pair_iter().cloned().collect::<Vec<_>>().into(),
        }
    }

    /// Where each pair sits, in name order: the array (0 for a flat set's only one or a
    /// merged set's group labels, 1 for a merged set's own labels) and the index in it, for
    /// [`Labels::pair_at`]. Sets with the same [`LabelMerger::last_layout`] share these, so a
    /// caller works them out once and then reads only the pairs it needs.
    pub fn positions(&self) -> Vec<(u8, u32)> {
        match &self.0 {
            Repr::Flat(pairs) => (0..pairs.len() as u32).map(|index| (0, index)).collect(),
            Repr::Merged(merged) => {
                let (mut group, mut own) = (0u32, 0u32);
                merged
                    .steps
                    .iter()
                    .map(|step| match step {
                        MergeStep::Group => {
                            group += 1;
                            (0, group - 1)
                        }
                        MergeStep::Own => {
                            own += 1;
                            (1, own - 1)
                        }
                        MergeStep::Both => {
                            group += 1;
                            own += 1;
                            (1, own - 1)
                        }
                    })
                    .collect()
            }
        }
    }

    /// The pair at a position [`Labels::positions`] gave for this set or one of the same
    /// layout. Panics on a position of another layout, which is a caller's bug.
    #[inline]
    pub fn pair_at(&self, (part, index): (u8, u32)) -> &(Symbol, Symbol) {
        match &self.0 {
            Repr::Flat(pairs) => &pairs[index as usize],
            Repr::Merged(merged) if part == 0 => &merged.group[index as usize],
            Repr::Merged(merged) => &merged.own[index as usize],
        }
    }

    /// Start loading the allocation this set's reference count and length live in, without
    /// waiting for it ([`crate::prefetch`]).
    #[inline]
    pub fn prefetch(&self) {
        match &self.0 {
            Repr::Flat(pairs) => crate::prefetch::prefetch(Arc::as_ptr(pairs) as *const u8),
            Repr::Merged(merged) => crate::prefetch::prefetch(Arc::as_ptr(merged) as *const u8),
        }
    }

    /// Iterate `(name, value)` in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.pair_iter().map(|(n, v)| (n.as_ref(), v.as_ref()))
    }

    /// The interned pairs in name order.
    #[inline]
    pub fn pair_iter(&self) -> PairIter<'_> {
        match &self.0 {
            Repr::Flat(pairs) => PairIter {
                group: pairs,
                own: &[],
                steps: None,
            },
            Repr::Merged(merged) => PairIter {
                group: &merged.group,
                own: &merged.own,
                steps: Some(merged.steps.iter()),
            },
        }
    }

    /// Value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let find = |pairs: &'_ [(Symbol, Symbol)]| -> Option<usize> {
            pairs.binary_search_by(|(n, _)| n.as_ref().cmp(name)).ok()
        };
        match &self.0 {
            Repr::Flat(pairs) => find(pairs).map(|i| pairs[i].1.as_ref()),
            Repr::Merged(merged) => match find(&merged.own) {
                Some(i) => Some(merged.own[i].1.as_ref()),
                None => find(&merged.group).map(|i| merged.group[i].1.as_ref()),
            },
        }
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Flat(pairs) => pairs.len(),
            Repr::Merged(merged) => merged.steps.len(),
        }
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when both are the same allocation(s), which implies equal.
    fn same_allocation(&self, other: &Labels) -> bool {
        match (&self.0, &other.0) {
            (Repr::Flat(a), Repr::Flat(b)) => Arc::ptr_eq(a, b),
            (Repr::Merged(a), Repr::Merged(b)) => {
                Arc::ptr_eq(a, b)
                    || (Arc::ptr_eq(&a.group, &b.group) && Arc::ptr_eq(&a.own, &b.own) && a.steps == b.steps)
            }
            _ => false,
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        if self.same_allocation(other) {
            return true;
        }
        match (&self.0, &other.0) {
            (Repr::Flat(a), Repr::Flat(b)) => a[..] == b[..],
            _ => self.len() == other.len() && self.pair_iter().eq(other.pair_iter()),
        }
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for pair in self.pair_iter() {
            pair.hash(state);
        }
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
    /// Changed only through [`Table::insert_target`], [`Table::remove_target`] and
    /// [`Table::set_owner`], which keep `owned` in step.
    targets: OrdMap<TargetId, Target>,
    /// Targets per owning collector, by symbol number (the numbers stay theirs: every counted
    /// target holds its owner's symbol). Kept so that a plan needing counts at a million
    /// targets reads them instead of scanning the table. Shared between clones until one
    /// changes (each applied batch copies it once: as many entries as collectors own targets).
    owned: Arc<rustc_hash::FxHashMap<u32, usize>>,
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

    /// Every target, by id.
    pub fn targets(&self) -> &OrdMap<TargetId, Target> {
        &self.targets
    }

    /// Add or replace target `id`; returns what it replaced.
    pub fn insert_target(&mut self, id: TargetId, target: Target) -> Option<Target> {
        self.count(target.collector.as_ref(), 1);
        let previous = self.targets.insert(id, target);
        if let Some(previous) = &previous {
            self.uncount(previous.collector.as_ref());
        }
        previous
    }

    /// Remove target `id`; returns it if it was there.
    pub fn remove_target(&mut self, id: &TargetId) -> Option<Target> {
        let removed = self.targets.remove(id);
        if let Some(removed) = &removed {
            self.uncount(removed.collector.as_ref());
        }
        removed
    }

    /// Give target `id` to `collector`; false when there is no such target.
    pub fn set_owner(&mut self, id: &TargetId, collector: Option<Symbol>) -> bool {
        let Some(target) = self.targets.get_mut(id) else {
            return false;
        };
        let previous = std::mem::replace(&mut target.collector, collector.clone());
        self.count(collector.as_ref(), 1);
        self.uncount(previous.as_ref());
        true
    }

    /// How many targets `collector` owns.
    pub fn owned_by(&self, collector: &Symbol) -> usize {
        self.owned.get(&collector.id()).copied().unwrap_or(0)
    }

    fn count(&mut self, owner: Option<&Symbol>, by: usize) {
        if let Some(owner) = owner {
            *Arc::make_mut(&mut self.owned).entry(owner.id()).or_default() += by;
        }
    }

    fn uncount(&mut self, owner: Option<&Symbol>) {
        let Some(owner) = owner else { return };
        let owned = Arc::make_mut(&mut self.owned);
        if let Some(count) = owned.get_mut(&owner.id()) {
            *count -= 1;
            if *count == 0 {
                // The symbol number may go to another name once no target holds this one.
                owned.remove(&owner.id());
            }
        }
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
    use rand::Rng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn owner_counts_follow_every_change_to_the_targets() {
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        let owners = [
            None,
            Some(Symbol::from("c-0")),
            Some(Symbol::from("c-1")),
            Some(Symbol::from("c-2")),
        ];
        let mut table = Table::new();
        for step in 0..2_000 {
            let id = TargetId(random.gen_range(0..64));
            let owner = owners[random.gen_range(0..owners.len())].clone();
            // A clone taken now must keep its own counts whatever the original does next.
            let before = (random.gen_range(0..20) == 0).then(|| (table.clone(), table.owned_by(&Symbol::from("c-1"))));
            match random.gen_range(0..3) {
                0 => {
                    let target = Target {
                        job: Symbol::from("job"),
                        labels: Labels::new(Vec::new()),
                        collector: owner,
                    };
                    table.insert_target(id, target);
                }
                1 => {
                    table.remove_target(&id);
                }
                _ => {
                    table.set_owner(&id, owner);
                }
            }
            for collector in owners.iter().flatten() {
                let scanned = table
                    .targets()
                    .values()
                    .filter(|t| t.collector.as_ref() == Some(collector))
                    .count();
                assert_eq!(
                    table.owned_by(collector),
                    scanned,
                    "seed {seed}, step {step}, {collector}"
                );
            }
            if let Some((clone, count)) = before {
                assert_eq!(clone.owned_by(&Symbol::from("c-1")), count, "seed {seed}, step {step}");
            }
        }
    }

    #[test]
    fn identities_are_equal_exactly_for_the_same_job_and_label_sequence() {
        let id = |job: &str, labels: &[(&str, &str)]| TargetId::compute(job, labels.iter().copied());
        let base = id("j", &[("a", "1"), ("b", "2")]);
        assert_eq!(base, id("j", &[("a", "1"), ("b", "2")]));
        // Upstream hashes in builder order: the same labels in another order are another
        // target (a label seeding set comes after the untouched ones).
        assert_ne!(base, id("j", &[("b", "2"), ("a", "1")]));
        assert_ne!(base, id("j2", &[("a", "1"), ("b", "2")]));
        assert_ne!(base, id("j", &[("a", "2"), ("b", "1")]));
        // A name and a value do not trade places.
        assert_ne!(id("j", &[("a", "b")]), id("j", &[("b", "a")]));
        assert_ne!(base, id("j", &[("a", "1")]));
        assert_ne!(id("j", &[]), id("", &[("j", "")]));
    }

    #[test]
    fn adding_hashed_strings_is_adding_the_strings() {
        let mut by_text = IdentityHasher::new();
        let mut by_hash = IdentityHasher::new();
        for (name, value) in [("__address__", "10.0.0.1:80"), ("job", "x"), ("zone", "")] {
            by_text.add(name, value);
            by_hash.add_hashed(string_hash(name), string_hash(value));
        }
        assert_eq!(by_text.finish(string_hash("x")), by_hash.finish(string_hash("x")));
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
        assert!(a.same_allocation(&b));
        let c = Labels::shared(vec![(s("__address__"), s("share-2:80"))]);
        assert!(!a.same_allocation(&c));
        assert_eq!(a, b);
    }

    #[test]
    fn positions_read_the_same_pairs_for_every_set_of_one_merger_layout() {
        let s = |x: &str| Symbol::from(x);
        let set = |pairs: &[(&str, &str)]| Labels::new(pairs.iter().map(|(n, v)| (s(n), s(v))).collect());
        let mut merger = LabelMerger::new();
        let group = set(&[("a", "1"), ("c", "group"), ("e", "5")]);
        let first = Labels::merge(&group, &set(&[("b", "x"), ("c", "own")]), &mut merger);
        let layout = merger.last_layout();
        assert!(layout.is_some());
        let positions = first.positions();
        let read: Vec<_> = positions.iter().map(|&p| first.pair_at(p).clone()).collect();
        assert_eq!(read, first.pair_iter().cloned().collect::<Vec<_>>());
        let second = Labels::merge(&group, &set(&[("b", "y"), ("c", "own-2")]), &mut merger);
        assert_eq!(merger.last_layout(), layout, "same names: same layout");
        let read: Vec<_> = positions.iter().map(|&p| second.pair_at(p).clone()).collect();
        assert_eq!(read, second.pair_iter().cloned().collect::<Vec<_>>());
        Labels::merge(&group, &set(&[("d", "z")]), &mut merger);
        assert_ne!(merger.last_layout(), layout, "other names: another layout");
        let alone = Labels::merge(&Labels::default(), &set(&[("b", "x")]), &mut merger);
        assert_eq!(merger.last_layout(), None, "one side as it was");
        assert_eq!(alone.positions(), [(0, 0)]);
    }

    #[test]
    fn merged_sets_read_and_compare_like_the_flat_merge() {
        use rand::Rng;
        use rand::SeedableRng;
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let mut merger = LabelMerger::new();
        for case in 0..2000 {
            let mut set = |prefix: &str| -> Vec<(Symbol, Symbol)> {
                let mut pairs = Vec::new();
                for name in names {
                    if random.gen_bool(0.5) {
                        let value = format!("{prefix}{}", random.gen_range(0..3));
                        pairs.push((Symbol::from(name), Symbol::from(value)));
                    }
                }
                pairs
            };
            let (group, own) = (Labels::new(set("g")), Labels::new(set("t")));
            let merged = Labels::merge(&group, &own, &mut merger);
            let mut expected: std::collections::BTreeMap<&str, &str> = group.iter().collect();
            expected.extend(own.iter());
            let context = format!("seed {seed}, case {case}, group {group:?}, own {own:?}");
            assert_eq!(
                merged.iter().collect::<Vec<_>>(),
                expected.clone().into_iter().collect::<Vec<_>>(),
                "{context}"
            );
            assert_eq!(merged.len(), expected.len(), "{context}");
            for name in names {
                assert_eq!(merged.get(name), expected.get(name).copied(), "{context}");
            }
            let flat = Labels::new(merged.pair_iter().cloned().collect());
            assert_eq!(merged, flat, "{context}");
            assert_eq!(flat, merged, "{context}");
            let hash = |labels: &Labels| {
                use std::hash::BuildHasher;
                rustc_hash::FxBuildHasher.hash_one(labels)
            };
            assert_eq!(hash(&merged), hash(&flat), "{context}");
        }
    }

    #[test]
    fn remembered_name_orders_sort_as_sorting_does() {
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        let names: Vec<Symbol> = (0..12)
            .map(|n| Symbol::from(format!("name-{}", (n * 7) % 12)))
            .collect();
        // More sequences than are remembered, each met many times, in random turns.
        let mut sequences: Vec<Vec<usize>> = (0..NameOrders::KEPT + 3)
            .map(|_| {
                let len = random.gen_range(NameOrders::SHORTEST - 1..20);
                (0..len).map(|_| random.gen_range(0..names.len())).collect()
            })
            .collect();
        // And one already in name order, without a repeat.
        let mut in_order: Vec<usize> = (0..names.len()).collect();
        in_order.sort_by_key(|&n| names[n].as_str());
        sequences.push(in_order);
        for round in 0..500 {
            let sequence = &sequences[random.gen_range(0..sequences.len())];
            let pairs: Vec<(Symbol, Symbol)> = sequence
                .iter()
                .map(|&n| {
                    (
                        names[n].clone(),
                        Symbol::from(format!("v{}", random.gen_range(0..1000))),
                    )
                })
                .collect();
            let expected = sort_and_dedup(pairs.clone());
            assert_eq!(
                sorted_by_name(pairs),
                expected,
                "seed {seed}, round {round}, names {sequence:?}"
            );
        }
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
