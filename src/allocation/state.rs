//! The working view a strategy decides on: current owners (the table plus this plan's
//! decisions so far), the members that may own targets, and, when a strategy asks for them,
//! per-collector target counts and lists kept up to date as owners change.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use rustc_hash::FxHashSet;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;

use super::desired::DesiredTarget;
use super::desired::DesiredTargets;
use super::membership::Member;

/// A target needing a decision, with what discovery wants for it and its owner in the
/// table, so that deciding it searches neither map again (at a million targets each search
/// is a few cache misses).
#[derive(Clone, Copy)]
pub struct Candidate<'a> {
    pub id: TargetId,
    pub wanted: &'a DesiredTarget,
    /// The owner the table gives it.
    pub in_table: Option<&'a Symbol>,
    /// `wanted`'s job (its symbol number) and address hash, copied while the desired targets
    /// are read in the order they are stored: the candidates come in id order, in which
    /// reading `wanted` again is a cache miss per target.
    pub job: u32,
    pub address_hash: u64,
}

impl<'a> Candidate<'a> {
    pub fn new(id: TargetId, wanted: &'a DesiredTarget, in_table: Option<&'a Symbol>) -> Self {
        Self {
            id,
            wanted,
            in_table,
            job: wanted.job.id(),
            address_hash: wanted.address_hash(),
        }
    }
}

/// What bookkeeping a strategy needs beyond owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bookkeeping {
    /// Owners only.
    None,
    /// Targets per collector.
    Counts,
    /// Targets per collector and per (collector, job).
    CountsPerJob,
}

/// The owners a plan decided, by target. Strategies decide their candidates in ascending
/// id order, so most decisions append to a sorted list: looking one up is a comparison with
/// the last while deciding and a walk in step with the planner's rows afterwards, instead of
/// a hash-map probe (a cache miss each at 100k targets). Decisions out of that order
/// (rebalancing, a fallback's second pass) go to a map.
#[derive(Default)]
pub struct Decisions {
    in_order: Vec<(TargetId, Option<Symbol>)>,
    others: FxHashMap<TargetId, Option<Symbol>>,
}

impl Decisions {
    fn reserve(&mut self, decisions: usize) {
        self.in_order.reserve(decisions);
    }

    /// The decision on `id`, if any.
    pub fn get(&self, id: &TargetId) -> Option<&Option<Symbol>> {
        if let Some(owner) = self.others.get(id) {
            return Some(owner);
        }
        match self.in_order.last() {
            Some((last, _)) if last < id => None,
            _ => self
                .in_order
                .binary_search_by_key(id, |(decided, _)| *decided)
                .ok()
                .map(|index| &self.in_order[index].1),
        }
    }

    fn insert(&mut self, id: TargetId, owner: Option<Symbol>) {
        match self.in_order.last() {
            None => self.in_order.push((id, owner)),
            // An id in `others` is below an id of `in_order`, which only grows upwards.
            Some((last, _)) if *last < id => self.in_order.push((id, owner)),
            _ => match self.in_order.binary_search_by_key(&id, |(decided, _)| *decided) {
                Ok(index) => self.in_order[index].1 = owner,
                Err(_) => {
                    self.others.insert(id, owner);
                }
            },
        }
    }

    /// Number of targets decided.
    pub fn len(&self) -> usize {
        self.in_order.len() + self.others.len()
    }

    /// True when nothing was decided.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every decision, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&TargetId, &Option<Symbol>)> {
        self.in_order
            .iter()
            .map(|(id, owner)| (id, owner))
            .chain(self.others.iter())
    }

    /// Decisions looked up in ascending id order, each in amortised constant time.
    pub fn ascending(&self) -> Ascending<'_> {
        Ascending {
            decisions: self,
            next: 0,
        }
    }
}

/// A cursor over [`Decisions`] for ids asked in ascending order.
pub struct Ascending<'a> {
    decisions: &'a Decisions,
    next: usize,
}

impl<'a> Ascending<'a> {
    /// The decision on `id`, which must not be below any id asked before.
    pub fn get(&mut self, id: TargetId) -> Option<&'a Option<Symbol>> {
        let in_order = &self.decisions.in_order;
        while self.next < in_order.len() && in_order[self.next].0 < id {
            self.next += 1;
        }
        match in_order.get(self.next) {
            Some((decided, owner)) if *decided == id => Some(owner),
            _ if self.decisions.others.is_empty() => None,
            _ => self.decisions.others.get(&id),
        }
    }
}

/// Owners under decision.
pub struct Allocation<'a> {
    table: &'a Table,
    desired: &'a DesiredTargets,
    members: &'a BTreeMap<Symbol, Member>,
    /// Targets removed by this plan: not counted, never reassigned.
    removed: &'a FxHashSet<TargetId>,
    /// The members by symbol number (held by `members`, so the numbers stay theirs): a
    /// membership check per target is then a hash of a number, not a search by text.
    member_ids: FxHashSet<u32>,
    /// Owners decided by this plan, overriding the table.
    decided: Decisions,
    /// Targets per member by symbol number (only with `Bookkeeping::Counts` or more).
    counts: Option<FxHashMap<u32, usize>>,
    /// Targets per job and member, by symbol numbers (only with `Bookkeeping::CountsPerJob`).
    job_counts: Option<FxHashMap<u32, FxHashMap<u32, usize>>>,
}

impl<'a> Allocation<'a> {
    /// `removed_owners`: the owners in the table of the targets in `removed`.
    pub fn new<'r>(
        table: &'a Table,
        desired: &'a DesiredTargets,
        members: &'a BTreeMap<Symbol, Member>,
        removed: &'a FxHashSet<TargetId>,
        removed_owners: impl Iterator<Item = Option<&'r Symbol>>,
        bookkeeping: Bookkeeping,
    ) -> Self {
        let mut allocation = Self {
            table,
            desired,
            members,
            removed,
            member_ids: members.keys().map(Symbol::id).collect(),
            decided: Decisions::default(),
            counts: None,
            job_counts: None,
        };
        if bookkeeping == Bookkeeping::Counts {
            // The table keeps its owners' counts: at a million targets a scan for them would
            // cost more than the rest of a small plan.
            let mut counts: FxHashMap<u32, usize> = members.keys().map(|id| (id.id(), table.owned_by(id))).collect();
            for owner in removed_owners.flatten() {
                if let Some(count) = counts.get_mut(&owner.id()) {
                    *count -= 1;
                }
            }
            allocation.counts = Some(counts);
        } else if bookkeeping == Bookkeeping::CountsPerJob {
            let mut counts: FxHashMap<u32, usize> = members.keys().map(|id| (id.id(), 0)).collect();
            let mut job_counts: FxHashMap<u32, FxHashMap<u32, usize>> = FxHashMap::default();
            for (id, target) in table.targets() {
                if removed.contains(id) {
                    continue;
                }
                let Some(owner) = &target.collector else { continue };
                if let Some(count) = counts.get_mut(&owner.id()) {
                    *count += 1;
                    *job_counts
                        .entry(target.job.id())
                        .or_default()
                        .entry(owner.id())
                        .or_default() += 1;
                }
            }
            allocation.counts = Some(counts);
            allocation.job_counts = Some(job_counts);
        }
        allocation
    }

    /// Room for `decisions` more decisions without growing.
    pub fn reserve(&mut self, decisions: usize) {
        self.decided.reserve(decisions);
    }

    /// The collectors that may own targets, by id.
    pub fn members(&self) -> &BTreeMap<Symbol, Member> {
        self.members
    }

    /// The current owner: this plan's decision, else the table's.
    pub fn owner(&self, id: TargetId) -> Option<&Symbol> {
        match self.decided.get(&id) {
            Some(decided) => decided.as_ref(),
            None => self.table.targets().get(&id).and_then(|t| t.collector.as_ref()),
        }
    }

    /// The current owner if it is still a member.
    pub fn member_owner(&self, id: TargetId) -> Option<&Symbol> {
        self.owner(id).filter(|owner| self.member_ids.contains(&owner.id()))
    }

    /// [`Allocation::owner`] of a candidate.
    pub fn candidate_owner<'c>(&'c self, candidate: &Candidate<'c>) -> Option<&'c Symbol> {
        match self.decided.get(&candidate.id) {
            Some(decided) => decided.as_ref(),
            None => candidate.in_table,
        }
    }

    /// [`Allocation::member_owner`] of a candidate.
    pub fn candidate_member_owner<'c>(&'c self, candidate: &Candidate<'c>) -> Option<&'c Symbol> {
        self.candidate_owner(candidate)
            .filter(|owner| self.member_ids.contains(&owner.id()))
    }

    /// [`Allocation::assign`] for a candidate.
    pub fn assign_candidate(&mut self, candidate: &Candidate<'_>, owner: Option<Symbol>) {
        let current = match self.decided.get(&candidate.id) {
            Some(decided) => decided.as_ref().map(Symbol::id),
            None => candidate.in_table.map(Symbol::id),
        };
        self.assign_over(candidate.id, current, Some(candidate.job), owner);
    }

    /// Targets owned by `collector` (requires counts).
    pub fn count(&self, collector: &Symbol) -> usize {
        self.counts
            .as_ref()
            .and_then(|counts| counts.get(&collector.id()).copied())
            .unwrap_or(0)
    }

    /// Targets of `job` (by symbol number) owned by `collector` (requires per-job counts).
    pub fn job_count(&self, collector: &Symbol, job: u32) -> usize {
        self.job_counts
            .as_ref()
            .and_then(|counts| counts.get(&job))
            .and_then(|per_member| per_member.get(&collector.id()).copied())
            .unwrap_or(0)
    }

    /// Give `id` to `owner` (or leave it unassigned).
    pub fn assign(&mut self, id: TargetId, owner: Option<Symbol>) {
        let current = self.owner(id).map(Symbol::id);
        let job = match self.job_counts {
            Some(_) => self.desired.get(&id).map(|t| t.job.id()),
            None => None,
        };
        self.assign_over(id, current, job, owner);
    }

    /// Give `id`, owned by symbol number `current` now and of job `job`, to `owner`.
    fn assign_over(&mut self, id: TargetId, current: Option<u32>, job: Option<u32>, owner: Option<Symbol>) {
        // By symbol number (equal numbers are equal names while both are held): `current`
        // is held by the table or by `decided`, `owner` by the caller until it is stored in
        // `decided` below.
        let owner_id = owner.as_ref().map(Symbol::id);
        if current == owner_id {
            return;
        }
        let previous = current.filter(|id| self.member_ids.contains(id));
        if let Some(counts) = &mut self.counts {
            if let Some(previous) = previous
                && let Some(count) = counts.get_mut(&previous)
            {
                *count = count.saturating_sub(1);
            }
            if let Some(owner) = owner_id
                && let Some(count) = counts.get_mut(&owner)
            {
                *count += 1;
            }
        }
        if let (Some(job_counts), Some(job)) = (&mut self.job_counts, job) {
            let per_member = job_counts.entry(job).or_default();
            if let Some(previous) = previous
                && let Some(count) = per_member.get_mut(&previous)
            {
                *count = count.saturating_sub(1);
            }
            if let Some(owner) = owner_id {
                *per_member.entry(owner).or_default() += 1;
            }
        }
        self.decided.insert(id, owner);
    }

    /// Every target a member owns now, by member, ids ascending (a scan of the table).
    pub fn targets_by_member(&self) -> BTreeMap<Symbol, Vec<TargetId>> {
        let mut by_member: BTreeMap<Symbol, Vec<TargetId>> =
            self.members.keys().map(|id| (id.clone(), Vec::new())).collect();
        let in_table = self.table.targets().keys().copied();
        let decided_new = self
            .decided
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !self.table.targets().contains_key(id));
        for id in in_table.chain(decided_new) {
            if self.removed.contains(&id) {
                continue;
            }
            if let Some(owner) = self.member_owner(id)
                && let Some(list) = by_member.get_mut(owner)
            {
                list.push(id);
            }
        }
        for list in by_member.values_mut() {
            list.sort_unstable();
        }
        by_member
    }

    /// The decisions made, by target.
    pub fn into_decisions(self) -> Decisions {
        self.decided
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::Rng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn decisions_answer_like_a_map_in_and_out_of_id_order() {
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        let owners = [None, Some(Symbol::from("c-0")), Some(Symbol::from("c-1"))];
        for round in 0..50 {
            let mut decisions = Decisions::default();
            let mut model: BTreeMap<TargetId, Option<Symbol>> = BTreeMap::new();
            let mut next = 0u64;
            for _ in 0..random.gen_range(0..300) {
                // Mostly ascending, as strategies decide; sometimes any id, as rebalancing does.
                let id = if random.gen_bool(0.8) {
                    next += random.gen_range(1..4);
                    TargetId(next)
                } else {
                    TargetId(random.gen_range(0..next + 2))
                };
                let owner = owners[random.gen_range(0..owners.len())].clone();
                decisions.insert(id, owner.clone());
                model.insert(id, owner);
            }
            let context = format!("seed {seed}, round {round}");
            assert_eq!(decisions.len(), model.len(), "{context}");
            let mut all: Vec<(TargetId, Option<Symbol>)> =
                decisions.iter().map(|(id, owner)| (*id, owner.clone())).collect();
            all.sort_by_key(|(id, _)| *id);
            assert_eq!(all, model.clone().into_iter().collect::<Vec<_>>(), "{context}");
            let mut ascending = decisions.ascending();
            for probe in 0..next + 3 {
                let id = TargetId(probe);
                assert_eq!(decisions.get(&id), model.get(&id), "{context}, get {probe}");
                assert_eq!(ascending.get(id), model.get(&id), "{context}, ascending {probe}");
            }
        }
    }
}
