//! Upstream's `consistent-hashing` placement, ring for ring: the same collector for every
//! target as the Go allocator, so migrating from upstream moves nothing
//! (docs/allocation.md, "`consistent-hashing`").
//!
//! upstream uses `buraksezer/consistent` with 1061 partitions, 5 points per member and a load
//! factor of 1.1, hashing with xxHash64 (seed 0). Each partition goes to the first member
//! clockwise from the partition's hash that is still under the load bound; a target belongs
//! to the partition `xxh64(__address__) mod 1061`. Two layouts exist: v1.0.0 (operator HEAD)
//! and v0.10.0 (operator v0.158.0 and older), which differ in how ring points are named and
//! how the load bound is rounded.

use ta_raft::intern::Symbol;
use xxhash_rust::xxh64::xxh64;

use super::StrategyName;
use super::state::Allocation;
use super::state::Bookkeeping;
use super::state::Candidate;
use super::strategy::Strategy;

/// Partitions on the ring.
pub const PARTITION_COUNT: u64 = 1061;
/// Ring points per member.
pub const POINTS_PER_MEMBER: usize = 5;
/// A member may own at most `ceil(partitions / members × LOAD)` partitions.
pub const LOAD: f64 = 1.1;

/// Which version of upstream's ring library to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RingLayout {
    /// `buraksezer/consistent` v1.0.0, used by the operator after v0.158.0.
    #[default]
    V1,
    /// v0.10.0, used by the operator up to v0.158.0.
    V0_10,
}

impl RingLayout {
    fn point_name(self, member: &str, point: usize) -> String {
        match self {
            RingLayout::V1 => format!("{point}:{member}"),
            RingLayout::V0_10 => format!("{member}{point}"),
        }
    }

    fn load_bound(self, members: usize) -> f64 {
        match self {
            RingLayout::V1 => (PARTITION_COUNT as f64 / members as f64 * LOAD).ceil(),
            // v0.10 divided the integers first.
            RingLayout::V0_10 => ((PARTITION_COUNT / members as u64) as f64 * LOAD).ceil(),
        }
    }
}

/// Why a ring cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    #[error("no collector to place targets on")]
    NoMembers,
    /// upstream panics here; the load factor makes it unreachable for distinct members.
    #[error("partition {partition} found no member under the load bound")]
    NoRoom { partition: u64 },
}

/// A built ring: the owner of every partition.
#[derive(Debug, Clone)]
pub struct HashRing {
    members: Vec<String>,
    /// Index into `members` for each partition.
    owners: Vec<u32>,
}

impl HashRing {
    /// Build the ring of `members` (collector names; order does not matter).
    pub fn new<S: AsRef<str>>(members: impl IntoIterator<Item = S>, layout: RingLayout) -> Result<Self, RingError> {
        let mut members: Vec<String> = members.into_iter().map(|m| m.as_ref().to_string()).collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        // (point hash, member index), sorted by hash: the ring.
        let mut points: Vec<(u64, u32)> = members
            .iter()
            .enumerate()
            .flat_map(|(index, member)| {
                (0..POINTS_PER_MEMBER)
                    .map(move |point| (xxh64(layout.point_name(member, point).as_bytes(), 0), index as u32))
            })
            .collect();
        points.sort_unstable();

        let bound = layout.load_bound(members.len());
        let mut loads = vec![0f64; members.len()];
        let mut owners = Vec::with_capacity(PARTITION_COUNT as usize);
        for partition in 0..PARTITION_COUNT {
            let key = xxh64(&partition.to_le_bytes(), 0);
            let start = points.partition_point(|(hash, _)| *hash < key) % points.len();
            let owner = (0..points.len())
                .map(|step| points[(start + step) % points.len()].1)
                .find(|&member| loads[member as usize] + 1.0 <= bound)
                .ok_or(RingError::NoRoom { partition })?;
            loads[owner as usize] += 1.0;
            owners.push(owner);
        }
        Ok(Self { members, owners })
    }

    /// The collector owning targets at `address` (the target's `__address__`).
    pub fn owner(&self, address: &str) -> &str {
        &self.members[self.owner_index(address)]
    }

    /// Position in [`HashRing::members`] of the collector owning targets at `address`.
    pub fn owner_index(&self, address: &str) -> usize {
        self.owner_index_of_hash(xxh64(address.as_bytes(), 0))
    }

    /// [`HashRing::owner_index`] of an address by its xxHash64 (seed 0).
    pub fn owner_index_of_hash(&self, address_hash: u64) -> usize {
        self.owners[(address_hash % PARTITION_COUNT) as usize] as usize
    }

    /// The members, sorted by name.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Partitions owned by each member, in member name order.
    pub fn partitions_per_member(&self) -> Vec<(&str, usize)> {
        let mut counts = vec![0usize; self.members.len()];
        for &owner in &self.owners {
            counts[owner as usize] += 1;
        }
        self.members.iter().map(String::as_str).zip(counts).collect()
    }
}

/// The `consistent-hashing` strategy: each target goes to the ring owner of its
/// `__address__` among the members; with no member it stays unassigned.
pub struct ConsistentHashing {
    layout: RingLayout,
}

impl ConsistentHashing {
    pub fn new(layout: RingLayout) -> Self {
        Self { layout }
    }
}

impl Strategy for ConsistentHashing {
    fn name(&self) -> StrategyName {
        StrategyName::ConsistentHashing
    }

    fn is_stateless(&self) -> bool {
        true
    }

    fn bookkeeping(&self) -> Bookkeeping {
        Bookkeeping::None
    }

    fn assign(&self, allocation: &mut Allocation<'_>, candidates: &[Candidate<'_>]) {
        let members: Vec<Symbol> = allocation.members().keys().cloned().collect();
        // `HashRing` sorts its members by name, as the `BTreeMap` keys already are, so its
        // owner index is an index into `members`.
        let ring = HashRing::new(members.iter(), self.layout).ok();
        for candidate in candidates {
            let owner = ring
                .as_ref()
                .map(|ring| members[ring.owner_index_of_hash(candidate.address_hash)].clone());
            allocation.assign_candidate(candidate, owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_match_upstream_goldens_for_both_layouts() {
        // Upstream's server goldens before and after its #5479 (docs/allocation.md).
        let cases: [(&[&str], &str, &str, Option<&str>); 5] = [
            (
                &["test-collector1", "test-collector2"],
                "test-url",
                "test-collector1",
                Some("test-collector1"),
            ),
            (
                &["test-collector1", "test-collector2"],
                "test-url2",
                "test-collector1",
                Some("test-collector2"),
            ),
            (
                &["test-collector1", "test-collector2"],
                "test-url3",
                "test-collector1",
                Some("test-collector1"),
            ),
            (
                &["test-collector", "test-collector2"],
                "test-url",
                "test-collector",
                Some("test-collector2"),
            ),
            (
                &["test-collector", "test-collector2"],
                "test-url4",
                "test-collector2",
                None,
            ),
        ];
        for (members, target, v1, v0_10) in cases {
            let ring = HashRing::new(members.iter().copied(), RingLayout::V1).unwrap();
            assert_eq!(ring.owner(target), v1, "v1.0.0 {members:?} {target}");
            if let Some(expected) = v0_10 {
                let ring = HashRing::new(members.iter().copied(), RingLayout::V0_10).unwrap();
                assert_eq!(ring.owner(target), expected, "v0.10.0 {members:?} {target}");
            }
        }
    }

    fn spread(n: usize, layout: RingLayout) -> Vec<usize> {
        let members: Vec<String> = (0..n).map(|i| format!("collector-{i}")).collect();
        let ring = HashRing::new(&members, layout).unwrap();
        // Report in collector-0..N-1 order (name order differs once N > 10).
        members
            .iter()
            .map(|m| {
                ring.partitions_per_member()
                    .iter()
                    .find(|(name, _)| name == m)
                    .unwrap()
                    .1
            })
            .collect()
    }

    #[test]
    fn partition_spread_matches_upstream() {
        assert_eq!(spread(2, RingLayout::V1), [584, 477]);
        assert_eq!(spread(3, RingLayout::V1), [281, 390, 390]);
        assert_eq!(spread(5, RingLayout::V1), [157, 234, 234, 202, 234]);
        assert_eq!(
            spread(10, RingLayout::V1),
            [104, 117, 117, 44, 117, 94, 117, 117, 117, 117]
        );
        assert_eq!(
            spread(10, RingLayout::V0_10),
            [117, 117, 99, 117, 108, 46, 117, 117, 117, 106]
        );
    }

    #[test]
    fn the_owner_depends_on_the_address_only_and_not_on_member_order() {
        let forward = HashRing::new(["c-a", "c-b", "c-c"], RingLayout::V1).unwrap();
        let backward = HashRing::new(["c-c", "c-b", "c-a"], RingLayout::V1).unwrap();
        for n in 0..500 {
            let address = format!("10.0.{}.{}:9100", n / 250, n % 250);
            assert_eq!(forward.owner(&address), backward.owner(&address));
        }
    }

    #[test]
    fn no_members_is_an_error_not_a_panic() {
        assert_eq!(
            HashRing::new(Vec::<String>::new(), RingLayout::V1).unwrap_err(),
            RingError::NoMembers
        );
    }

    #[test]
    fn every_partition_has_an_owner_for_many_fleet_sizes() {
        for n in 1..=64 {
            for layout in [RingLayout::V1, RingLayout::V0_10] {
                let members: Vec<String> = (0..n).map(|i| format!("otel-collector-{i}")).collect();
                let ring = HashRing::new(&members, layout).unwrap();
                let total: usize = ring.partitions_per_member().iter().map(|(_, c)| c).sum();
                assert_eq!(total, PARTITION_COUNT as usize, "n={n} {layout:?}");
            }
        }
    }
}
