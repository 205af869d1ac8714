//! String interning for label names and values: at a million targets most strings repeat
//! (`__meta_kubernetes_namespace`, node names, job names), so each distinct string is kept
//! once, in one registry per process, and named everywhere by a 4-byte [`Symbol`].
//!
//! A label pair is then 8 bytes instead of the 32 of two `Arc<str>`, which is most of the
//! memory of a large table, of discovery's desired state and of its target groups
//! (docs/architecture.md, "Memory layout").
//!
//! Lifetimes: a symbol holds a reference count on its string. A string nobody holds is
//! freed by the next sweep, which runs under the registry lock when a new string is interned
//! and at least half of the index may be such strings (counted as references drop to zero).
//! Only interning, which holds that lock too, can revive a string whose count reached zero,
//! so a sweep never frees a string that a symbol names.
//!
//! The only module allowed `unsafe`: a 4-byte handle that derefs to `&str` needs a registry
//! whose slots are read without a lock. Each unsafe block below says what holds.

#![allow(unsafe_code)]

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::hash::Hasher;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering as AtomicOrdering;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

/// An interned string: 4 bytes, compared for equality by number, ordered and hashed by its
/// text (so maps keyed by symbols can be searched with a `&str`, and iterate in text order).
pub struct Symbol(NonZeroU32);

/// One registry slot.
struct Slot {
    /// The text, a leaked `Box<str>` (null while the slot is free).
    text: AtomicPtr<u8>,
    len: AtomicU32,
    references: AtomicU32,
    /// [`hash_text`] of the text, worked out once when it is interned: target identities
    /// hash every label value of every target, and reading this is one load of the slot
    /// the text is found through anyway, instead of a read of the text and a hash of it.
    hash: AtomicU64,
}

/// The first chunk holds `1 << FIRST_CHUNK_BITS` slots; each next one twice as many.
const FIRST_CHUNK_BITS: u32 = 10;
const CHUNKS: usize = 22;

struct Registry {
    /// Slot storage that never moves: chunk `k` holds `1 << (FIRST_CHUNK_BITS + k)` slots.
    chunks: [AtomicPtr<Slot>; CHUNKS],
    state: Mutex<State>,
    /// No live symbol names a longer string: raised by `intern` before it hands the symbol
    /// out, lowered only by a sweep, to the longest survivor (both under the state lock).
    longest: AtomicU32,
    /// References that dropped to zero since the last sweep: at most this many strings can
    /// be freed (fewer when interning revived some). Sweeping on this instead of on the
    /// number created keeps a growing registry from walking all of its strings at every
    /// doubling to free none: in a profile of a cold start of a million one-target groups
    /// those walks were 4% of the three replicas' samples (docs/benchmarks.md, "Interning
    /// and parsing at a million one-target groups").
    released: AtomicUsize,
}

struct State {
    /// Text → slot number, by the text's hash. An entry keeps the upper half of that hash,
    /// so growing the table reads no text (at millions of strings, re-hashing texts on each
    /// doubling was over a quarter of the registry's interning time) and a probe reads the
    /// text of a slot only when the halves match. An entry is removed before its text is
    /// freed.
    index: HashTable<IndexEntry>,
    free: Vec<u32>,
    next: u32,
}

#[derive(Clone, Copy)]
struct IndexEntry {
    slot: u32,
    /// The upper 32 bits of the text's [`hash_text`].
    hash: u32,
}

/// Where the index files an entry: 32 bits of hash spread over all 64 (the table reads the
/// low bits for the bucket and the top 7 for its tag).
#[inline]
fn index_hash(upper: u32) -> u64 {
    u64::from(upper).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

#[inline]
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        chunks: std::array::from_fn(|_| AtomicPtr::new(std::ptr::null_mut())),
        state: Mutex::new(State {
            index: HashTable::new(),
            free: Vec::new(),
            next: 0,
        }),
        longest: AtomicU32::new(0),
        released: AtomicUsize::new(0),
    })
}

/// Chunk and offset of slot `n`.
#[inline]
fn locate(n: u32) -> (usize, usize) {
    let shifted = n as u64 + (1u64 << FIRST_CHUNK_BITS);
    let top = 63 - shifted.leading_zeros();
    let chunk = (top - FIRST_CHUNK_BITS) as usize;
    (chunk, (shifted - (1u64 << top)) as usize)
}

impl Registry {
    #[inline]
    fn slot(&self, n: u32) -> &Slot {
        let (chunk, offset) = locate(n);
        let base = self.chunks[chunk].load(AtomicOrdering::Acquire);
        debug_assert!(!base.is_null(), "slot {n} of an unallocated chunk");
        // SAFETY: a slot number is handed out only after its chunk was allocated (under the
        // lock, published with Release); chunks are never freed or moved.
        unsafe { &*base.add(offset) }
    }

    /// Allocate chunk `chunk` if needed. Called under the state lock.
    fn ensure_chunk(&self, chunk: usize) {
        if chunk >= CHUNKS {
            panic!("more than 4 billion distinct strings interned");
        }
        if !self.chunks[chunk].load(AtomicOrdering::Acquire).is_null() {
            return;
        }
        let slots: Box<[Slot]> = (0..1usize << (FIRST_CHUNK_BITS as usize + chunk))
            .map(|_| Slot {
                text: AtomicPtr::new(std::ptr::null_mut()),
                len: AtomicU32::new(0),
                references: AtomicU32::new(0),
                hash: AtomicU64::new(0),
            })
            .collect();
        self.chunks[chunk].store(Box::leak(slots).as_mut_ptr(), AtomicOrdering::Release);
    }

    /// The text of slot `n`.
    ///
    /// # Safety
    /// The text must not be freed while the borrow lives: the caller holds a symbol of the
    /// slot, or holds the state lock and found the slot in the index.
    unsafe fn text(&self, n: u32) -> &str {
        let slot = self.slot(n);
        let text = slot.text.load(AtomicOrdering::Acquire);
        let len = slot.len.load(AtomicOrdering::Relaxed) as usize;
        // SAFETY: the slot's text is a leaked `str` of this length (published with Release
        // after it was written), alive by the caller's promise.
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(text, len)) }
    }

    fn intern(&self, text: &str) -> Symbol {
        let full_hash = hash_text(text);
        let upper = (full_hash >> 32) as u32;
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let found = state.index.find(index_hash(upper), |entry| {
            // SAFETY: we hold the lock and the slot is in the index; only a sweep, under the
            // lock, frees an indexed slot's text, after removing its entry.
            entry.hash == upper && unsafe { self.text(entry.slot) } == text
        });
        if let Some(&IndexEntry { slot: n, .. }) = found {
            self.slot(n).references.fetch_add(1, AtomicOrdering::Relaxed);
            return Symbol(NonZeroU32::new(n + 1).expect("slot numbers are below u32::MAX"));
        }
        let released = self.released.load(AtomicOrdering::Relaxed);
        if released > (1 << 16) && released > state.index.len() / 2 {
            self.sweep(&mut state);
        }
        let n = match state.free.pop() {
            Some(n) => n,
            None => {
                let n = state.next;
                assert!(n < u32::MAX - 1, "more than 4 billion distinct strings interned");
                self.ensure_chunk(locate(n).0);
                state.next += 1;
                n
            }
        };
        let len = u32::try_from(text.len()).expect("a label string shorter than 4 GiB");
        let leaked: &'static mut str = Box::leak(Box::<str>::from(text));
        let slot = self.slot(n);
        slot.len.store(len, AtomicOrdering::Relaxed);
        slot.references.store(1, AtomicOrdering::Relaxed);
        slot.hash.store(full_hash, AtomicOrdering::Relaxed);
        self.longest.fetch_max(len, AtomicOrdering::Relaxed);
        slot.text.store(leaked.as_mut_ptr(), AtomicOrdering::Release);
        state
            .index
            .insert_unique(index_hash(upper), IndexEntry { slot: n, hash: upper }, |entry| {
                index_hash(entry.hash)
            });
        Symbol(NonZeroU32::new(n + 1).expect("slot numbers are below u32::MAX"))
    }

    /// Free every string no symbol names. Called under the state lock.
    fn sweep(&self, state: &mut State) {
        // Before the walk: a reference released during it is either seen by it or counted.
        self.released.store(0, AtomicOrdering::Relaxed);
        let mut freed = Vec::new();
        let mut longest = 0;
        state.index.retain(|&mut IndexEntry { slot: n, .. }| {
            let slot = self.slot(n);
            if slot.references.load(AtomicOrdering::Acquire) == 0 {
                freed.push(n);
                false
            } else {
                longest = longest.max(slot.len.load(AtomicOrdering::Relaxed));
                true
            }
        });
        self.longest.store(longest, AtomicOrdering::Relaxed);
        for n in freed {
            let slot = self.slot(n);
            let text = slot.text.swap(std::ptr::null_mut(), AtomicOrdering::AcqRel);
            let len = slot.len.load(AtomicOrdering::Relaxed) as usize;
            // SAFETY: the text was leaked from a `Box<str>` of this length by `intern`, its
            // index key is gone, and no symbol names it (count zero, and only `intern`, which
            // holds the lock we hold, can raise a zero count).
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(text, len) as *mut str) });
            state.free.push(n);
        }
    }
}

/// An upper bound on the length in bytes of every string a live symbol names. While it is
/// within a limit, every label is: checking that costs one load instead of reading the
/// length of each label of each target, which at 100k targets was a quarter of processing
/// discovery (docs/architecture.md, "Memory layout").
pub fn longest_interned() -> usize {
    // A symbol received from another thread came with a happens-before edge from its
    // `intern`, so even a relaxed load sees the raise made for it.
    registry().longest.load(AtomicOrdering::Relaxed) as usize
}

/// The 64-bit hash of a text that target identities are made of (xxh3), as
/// [`Symbol::text_hash`] keeps it.
#[inline]
pub fn hash_text(text: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl Symbol {
    /// The interned copy of `text`, adding it if new.
    pub fn new(text: &str) -> Self {
        registry().intern(text)
    }

    /// The text.
    #[inline]
    pub fn as_str(&self) -> &str {
        // SAFETY: this symbol holds a reference, so the slot's text is not freed or replaced
        // while it (and so the returned borrow) lives.
        unsafe { registry().text(self.0.get() - 1) }
    }

    /// [`hash_text`] of the text, without reading it.
    #[inline]
    pub fn text_hash(&self) -> u64 {
        // Stored before the slot's text was published; this symbol was handed out after.
        registry().slot(self.0.get() - 1).hash.load(AtomicOrdering::Relaxed)
    }

    /// The registry's number for this string: equal strings have equal numbers while either
    /// is held. For caches keyed by symbol, never for anything that outlives the process.
    #[inline]
    pub fn id(&self) -> u32 {
        self.0.get()
    }
}

impl Clone for Symbol {
    #[inline]
    fn clone(&self) -> Self {
        let previous = registry()
            .slot(self.0.get() - 1)
            .references
            .fetch_add(1, AtomicOrdering::Relaxed);
        if previous == u32::MAX {
            // As `Arc` does on overflow: continuing would free a string still named.
            std::process::abort();
        }
        Self(self.0)
    }
}

impl Drop for Symbol {
    #[inline]
    fn drop(&mut self) {
        let registry = registry();
        let previous = registry
            .slot(self.0.get() - 1)
            .references
            .fetch_sub(1, AtomicOrdering::Release);
        if previous == 1 {
            registry.released.fetch_add(1, AtomicOrdering::Relaxed);
        }
    }
}

impl std::ops::Deref for Symbol {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Symbol {
    #[inline]
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Symbol {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Symbol {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Symbol {}

impl PartialOrd for Symbol {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Symbol {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        if self.0 == other.0 {
            return Ordering::Equal;
        }
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Symbol {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, which `Borrow<str>` requires.
        self.as_str().hash(state);
    }
}

impl Default for Symbol {
    fn default() -> Self {
        Self::new("")
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<&str> for Symbol {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Symbol {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl serde::Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(Self::new(&text))
    }
}

/// A local cache of symbols in front of the process registry: a parser or an applier that
/// sees the same strings again and again finds them here without taking the registry lock.
/// It holds a reference to each symbol it returned until [`Interner::collect_garbage`].
#[derive(Default)]
pub struct Interner {
    strings: HashSet<Symbol, FxBuildHasher>,
}

impl Interner {
    /// The shared copy of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> Symbol {
        if let Some(existing) = self.strings.get(s) {
            return existing.clone();
        }
        let symbol = Symbol::new(s);
        self.strings.insert(symbol.clone());
        symbol
    }

    /// Forget strings nobody but this cache holds. Cheap enough to run after large removals.
    pub fn collect_garbage(&mut self) {
        self.strings
            .retain(|s| registry().slot(s.0.get() - 1).references.load(AtomicOrdering::Relaxed) > 1);
    }

    /// Number of distinct strings held.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// True when no strings are held.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_are_one_symbol() {
        let mut interner = Interner::default();
        let a = interner.intern("node-a");
        let b = interner.intern("node-a");
        assert_eq!(a.id(), b.id());
        assert_eq!(Symbol::from("node-a"), a);
        assert_eq!(interner.len(), 1);
        assert_eq!(std::mem::size_of::<Option<Symbol>>(), 4);
    }

    #[test]
    fn the_kept_hash_is_the_hash_of_the_text_also_in_a_reused_slot() {
        // Enough strings created and dropped that sweeps free slots and later ones reuse them.
        for round in 0..3 {
            let held: Vec<Symbol> = (0..70_000).map(|i| Symbol::new(&format!("hash-{round}-{i}"))).collect();
            for symbol in held.iter().step_by(997) {
                assert_eq!(symbol.text_hash(), hash_text(symbol.as_str()), "{}", symbol.as_str());
            }
        }
        assert_eq!(Symbol::from("").text_hash(), hash_text(""));
    }

    #[test]
    fn garbage_collection_drops_unreferenced_strings() {
        let mut interner = Interner::default();
        let kept = interner.intern("kept");
        drop(interner.intern("dropped"));
        interner.collect_garbage();
        assert_eq!(interner.len(), 1);
        assert_eq!(interner.intern("kept").as_ref(), kept.as_ref());
    }

    #[test]
    fn symbols_order_and_hash_as_their_text() {
        let (b, a) = (Symbol::from("b-order"), Symbol::from("a-order"));
        assert!(a < b);
        let mut map = std::collections::BTreeMap::new();
        map.insert(b.clone(), 2);
        map.insert(a.clone(), 1);
        assert_eq!(map.get("a-order"), Some(&1));
        let hashed: HashSet<Symbol> = [a, b].into_iter().collect();
        assert!(hashed.contains("b-order"));
    }

    #[test]
    fn the_longest_bound_covers_every_live_string_and_falls_once_the_long_one_is_swept() {
        let long = "x".repeat((1 << 20) + 7);
        let held = Symbol::from(long.as_str());
        assert!(longest_interned() >= long.len());
        drop(held);
        // More strings released than a sweep waits for (at least 65536 and half the index):
        // the long one is freed and the bound falls back below it (no other test interns a
        // string this long).
        let churn: Vec<Symbol> = (0..140_000).map(|i| Symbol::from(format!("bound-{i}"))).collect();
        drop(churn);
        for i in 0..140_000 {
            drop(Symbol::from(format!("bound-again-{i}")));
        }
        assert!(longest_interned() < long.len(), "bound {}", longest_interned());
    }

    #[test]
    fn slots_are_located_across_chunks() {
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1023), (0, 1023));
        assert_eq!(locate(1024), (1, 0));
        assert_eq!(locate(3071), (1, 2047));
        assert_eq!(locate(3072), (2, 0));
    }

    #[test]
    fn swept_strings_are_freed_and_their_slots_reused_while_held_ones_survive() {
        // Many short-lived strings from several threads, with some held throughout.
        let held: Vec<Symbol> = (0..1000).map(|i| Symbol::from(format!("held-{i}"))).collect();
        std::thread::scope(|scope| {
            for t in 0..4 {
                scope.spawn(move || {
                    for round in 0..50_000 {
                        let s = Symbol::from(format!("churn-{t}-{round}"));
                        assert_eq!(s.as_str(), format!("churn-{t}-{round}"));
                        let again = s.clone();
                        drop(s);
                        assert_eq!(&*again, format!("churn-{t}-{round}"));
                    }
                });
            }
        });
        for (i, symbol) in held.iter().enumerate() {
            assert_eq!(symbol.as_str(), format!("held-{i}"));
        }
        let state = registry().state.lock().unwrap();
        // 200k strings were created; sweeps keep the registry near what is alive.
        assert!(
            (state.next as usize) < 150_000,
            "slots were not reused: {} allocated",
            state.next
        );
    }
}
