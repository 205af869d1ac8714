//! What discovery wants allocated: one entry per target identity, with what strategies place
//! it by (`__address__` for `consistent-hashing`, the node for `per-node`) and the labels the
//! table must serve for it.

use rustc_hash::FxHashMap;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::Labels;

/// A target the discovery pipeline wants allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredTarget {
    pub job: Symbol,
    /// The served labels (discovered, pre-relabel).
    pub labels: Labels,
    /// The Kubernetes node the target runs on, by upstream's `per-node` rules.
    pub node: Option<Symbol>,
    /// xxHash64 (seed 0) of the `__address__` label, which `consistent-hashing` places by.
    /// Worked out when the target is built, while its address is in the cache: in a plan of
    /// 100k targets, reading each address again cost two cache misses per target. The
    /// address itself is not kept beside the labels: holding a second reference to its
    /// symbol cost a locked increment per target built, for nothing a plan reads.
    address_hash: u64,
}

impl DesiredTarget {
    /// `address`: the `__address__` of `labels` (empty without one).
    pub fn new(job: Symbol, address: &str, labels: Labels, node: Option<Symbol>) -> Self {
        Self::with_address_hash(job, labels, node, Self::hash_address(address))
    }

    /// [`DesiredTarget::new`] given the address's [`DesiredTarget::hash_address`].
    pub fn with_address_hash(job: Symbol, labels: Labels, node: Option<Symbol>, address_hash: u64) -> Self {
        Self {
            job,
            labels,
            node,
            address_hash,
        }
    }

    /// What `consistent-hashing` places an address by.
    pub fn hash_address(address: &str) -> u64 {
        xxhash_rust::xxh64::xxh64(address.as_bytes(), 0)
    }

    /// The `__address__` label (empty without one).
    pub fn address(&self) -> &str {
        self.labels.get("__address__").unwrap_or("")
    }

    /// xxHash64 (seed 0) of the address.
    pub fn address_hash(&self) -> u64 {
        self.address_hash
    }
}

/// Every target discovery wants allocated, by identity.
pub type DesiredTargets = FxHashMap<TargetId, DesiredTarget>;

/// Labels that name a target's node, in upstream's order of preference (`per_node.go`).
pub const NODE_LABELS: [&str; 3] = [
    "__meta_kubernetes_pod_node_name",
    "__meta_kubernetes_node_name",
    "__meta_kubernetes_endpoint_node_name",
];

/// The EndpointSlice target's kind and name: a `Node` target names its node.
pub const SLICE_TARGET_KIND: &str = "__meta_kubernetes_endpointslice_address_target_kind";
pub const SLICE_TARGET_NAME: &str = "__meta_kubernetes_endpointslice_address_target_name";

/// The node of a target with served labels `labels`, as upstream's `per-node` reads it:
/// the first non-empty node label, else the EndpointSlice target name when its kind is `Node`.
pub fn node_of(labels: &Labels) -> Option<&str> {
    if let Some(node) = NODE_LABELS
        .iter()
        .filter_map(|name| labels.get(name))
        .find(|value| !value.is_empty())
    {
        return Some(node);
    }
    if labels.get(SLICE_TARGET_KIND) == Some("Node") {
        return labels.get(SLICE_TARGET_NAME).filter(|name| !name.is_empty());
    }
    None
}

#[cfg(test)]
mod tests {

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(
            pairs
                .iter()
                .map(|(n, v)| (Symbol::from(*n), Symbol::from(*v)))
                .collect(),
        )
    }

    #[test]
    fn node_comes_from_the_first_non_empty_node_label() {
        let pod_and_endpoint = labels(&[
            ("__meta_kubernetes_pod_node_name", ""),
            ("__meta_kubernetes_node_name", "node-b"),
            ("__meta_kubernetes_endpoint_node_name", "node-c"),
        ]);
        assert_eq!(node_of(&pod_and_endpoint), Some("node-b"));
    }

    #[test]
    fn endpointslice_node_targets_use_the_target_name_and_other_kinds_have_no_node() {
        let node_kind = labels(&[
            ("__meta_kubernetes_endpointslice_address_target_kind", "Node"),
            ("__meta_kubernetes_endpointslice_address_target_name", "node-x"),
        ]);
        assert_eq!(node_of(&node_kind), Some("node-x"));
        let pod_kind = labels(&[
            ("__meta_kubernetes_endpointslice_address_target_kind", "Pod"),
            ("__meta_kubernetes_endpointslice_address_target_name", "pod-x"),
            // Not consulted by upstream.
            ("__meta_kubernetes_endpointslice_endpoint_node_name", "node-y"),
        ]);
        assert_eq!(node_of(&pod_kind), None);
    }
}
