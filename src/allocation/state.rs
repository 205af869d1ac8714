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

/// A target needing a decision, with what discovery wants for it (so strategies read it
/// without a lookup per target).
pub type Candidate<'a> = (TargetId, &'a DesiredTarget);

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
    decided: FxHashMap<TargetId, Option<Symbol>>,
    /// Targets per member by symbol number (only with `Bookkeeping::Counts` or more).
    counts: Option<FxHashMap<u32, usize>>,
    /// Targets per job and member, by symbol numbers (only with `Bookkeeping::CountsPerJob`).
    job_counts: Option<FxHashMap<u32, FxHashMap<u32, usize>>>,
}

impl<'a> Allocation<'a> {
    pub fn new(
        table: &'a Table,
        desired: &'a DesiredTargets,
        members: &'a BTreeMap<Symbol, Member>,
        removed: &'a FxHashSet<TargetId>,
        bookkeeping: Bookkeeping,
    ) -> Self {
        let mut allocation = Self {
            table,
            desired,
            members,
            removed,
            member_ids: members.keys().map(Symbol::id).collect(),
            decided: FxHashMap::default(),
            counts: None,
            job_counts: None,
        };
        if bookkeeping >= Bookkeeping::Counts {
            let mut counts: FxHashMap<u32, usize> = members.keys().map(|id| (id.id(), 0)).collect();
            let mut job_counts: FxHashMap<u32, FxHashMap<u32, usize>> = FxHashMap::default();
            for (id, target) in &table.targets {
                if removed.contains(id) {
                    continue;
                }
                let Some(owner) = &target.collector else { continue };
                if let Some(count) = counts.get_mut(&owner.id()) {
                    *count += 1;
                    if bookkeeping == Bookkeeping::CountsPerJob {
                        *job_counts
                            .entry(target.job.id())
                            .or_default()
                            .entry(owner.id())
                            .or_default() += 1;
                    }
                }
            }
            allocation.counts = Some(counts);
            if bookkeeping == Bookkeeping::CountsPerJob {
                allocation.job_counts = Some(job_counts);
            }
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

    /// The target as discovery wants it (`None` if it is being removed).
    pub fn desired(&self, id: TargetId) -> Option<&'a DesiredTarget> {
        self.desired.get(&id)
    }

    /// The current owner: this plan's decision, else the table's.
    pub fn owner(&self, id: TargetId) -> Option<&Symbol> {
        match self.decided.get(&id) {
            Some(decided) => decided.as_ref(),
            None => self.table.targets.get(&id).and_then(|t| t.collector.as_ref()),
        }
    }

    /// The current owner if it is still a member.
    pub fn member_owner(&self, id: TargetId) -> Option<&Symbol> {
        self.owner(id).filter(|owner| self.member_ids.contains(&owner.id()))
    }

    /// Targets owned by `collector` (requires counts).
    pub fn count(&self, collector: &Symbol) -> usize {
        self.counts
            .as_ref()
            .and_then(|counts| counts.get(&collector.id()).copied())
            .unwrap_or(0)
    }

    /// Targets of `job` owned by `collector` (requires per-job counts).
    pub fn job_count(&self, collector: &Symbol, job: &Symbol) -> usize {
        self.job_counts
            .as_ref()
            .and_then(|counts| counts.get(&job.id()))
            .and_then(|per_member| per_member.get(&collector.id()).copied())
            .unwrap_or(0)
    }

    /// Give `id` to `owner` (or leave it unassigned).
    pub fn assign(&mut self, id: TargetId, owner: Option<Symbol>) {
        let current = self.owner(id);
        if current == owner.as_ref() {
            return;
        }
        // By symbol number: `previous` is a member (held by `members`), `owner` is held by
        // the caller until it is stored in `decided` below.
        let previous = current.map(Symbol::id).filter(|id| self.member_ids.contains(id));
        let owner_id = owner.as_ref().map(Symbol::id);
        let job = match self.job_counts {
            Some(_) => self.desired.get(&id).map(|t| t.job.id()),
            None => None,
        };
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
        let in_table = self.table.targets.keys().copied();
        let decided_new = self
            .decided
            .keys()
            .copied()
            .filter(|id| !self.table.targets.contains_key(id));
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
    pub fn into_decisions(self) -> FxHashMap<TargetId, Option<Symbol>> {
        self.decided
    }
}
