//! Black-box chaos suite for the target allocator (faults injected into real processes or
//! containers, an invariant checker, reports). Built out by the chaos-suite issue; the
//! replicated table's own fault scenarios live in `raft/tests/cluster.rs` today.
