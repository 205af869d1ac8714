//! String interning for label names and values: at a million targets most strings repeat
//! (`__meta_kubernetes_namespace`, node names, job names), so each distinct string is kept
//! once and shared.

use std::collections::HashSet;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

/// An interned string.
pub type Symbol = Arc<str>;

/// A set of shared strings. Interning is an optimisation only: two equal strings compare
/// equal whether or not they came from the same interner, so it is a cache kept beside the
/// table, never part of it. FxHash: keys are our own label strings, not attacker-chosen
/// lookups into a long-lived server map.
#[derive(Default)]
pub struct Interner {
    strings: HashSet<Symbol, FxBuildHasher>,
}

impl Interner {
    /// The shared copy of `s`, adding it if new.
    pub fn intern(&mut self, s: &str) -> Symbol {
        if let Some(existing) = self.strings.get(s) {
            return Arc::clone(existing);
        }
        let symbol: Symbol = Arc::from(s);
        self.strings.insert(Arc::clone(&symbol));
        symbol
    }

    /// Forget strings nobody but the interner holds. Cheap enough to run after large removals.
    pub fn collect_garbage(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
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
    fn equal_strings_share_one_allocation() {
        let mut interner = Interner::default();
        let a = interner.intern("node-a");
        let b = interner.intern("node-a");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(interner.len(), 1);
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
}
