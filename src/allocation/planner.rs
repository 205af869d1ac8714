//! The planner: a pure function of (desired targets, observed collectors, the current table,
//! the strategy, now) to one command batch for the replicated table. Only the leader runs it;
//! replicas apply its decisions, never re-run strategies (docs/allocation.md, "The leader decides").
//!
//! Every decision carries its precondition (`Expect`, or the expected previous owner of a
//! move), so a plan made against a table that changed meanwhile is rejected whole and
//! re-planned, never half-applied.
//!
//! Two scopes: a full plan compares every desired target with the table (a new leader, a
//! periodic check); an incremental plan looks only at the targets discovery says changed,
//! which is what keeps a 1% change at a million targets cheap. When the member set changes,
//! the targets needing a new owner are found by a scan either way.

use std::time::Duration;

use rustc_hash::FxHashMap;
use rustc_hash::FxHashSet;
use ta_raft::Command;
use ta_raft::CommandBuilder;
use ta_raft::Expect;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::Target;

use super::desired::DesiredTarget;
use super::desired::DesiredTargets;
use super::membership;
use super::membership::CollectorChange;
use super::membership::ObservedCollectors;
use super::state::Allocation;
use super::state::Candidate;
use super::strategy::Strategy;

/// Which targets may differ between discovery and the table.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Compare every target.
    Everything,
    /// Only these may have been added, removed or relabeled since the table was last
    /// reconciled with discovery.
    Changed(&'a [TargetId]),
}

/// Everything a plan depends on.
pub struct PlanInput<'a> {
    pub table: &'a Table,
    pub desired: &'a DesiredTargets,
    pub scope: Scope<'a>,
    pub collectors: &'a ObservedCollectors,
    pub strategy: &'a dyn Strategy,
    /// `collector_not_ready_grace_period`.
    pub grace_period: Duration,
    /// The leader's clock, Unix milliseconds.
    pub now_unix_millis: u64,
    /// Moves allowed now only to even out counts (`balanced`'s churn budget); `None`: unlimited.
    pub rebalance_budget: Option<usize>,
}

/// What a plan does, in numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub targets_added: usize,
    pub targets_removed: usize,
    /// Existing targets given another owner (rebalancing included).
    pub targets_moved: usize,
    /// Existing targets whose served labels changed.
    pub labels_refreshed: usize,
    /// Of those moves, the ones made only to even out counts.
    pub rebalance_moves: usize,
    /// Targets added or reassigned that no collector could take.
    pub left_unassigned: usize,
    pub collectors_set: usize,
    pub collectors_removed: usize,
}

/// A plan: its command batches, in order, and its summary.
///
/// A large plan is cut into several entries of bounded size, so that no single log entry
/// stalls heartbeats or replication and applying one overlaps replicating the next. Each
/// entry is a consistent step on its own (every target in it has exactly one owner after it;
/// collectors are set in the first entry and removed in the last, after every move away from
/// them), so a reader at any revision between them sees a valid table (docs/architecture.md,
/// I1). An entry rejected on its preconditions leaves the earlier ones applied and the later
/// ones unproposed; the leader then re-plans everything.
pub struct Plan {
    pub commands: Vec<Command>,
    pub summary: PlanSummary,
    pub decisions: usize,
}

impl PlanSummary {
    /// True when the plan adds, removes, moves or relabels a target (not only collectors).
    pub fn changes_targets(&self) -> bool {
        self.targets_added + self.targets_removed + self.targets_moved + self.labels_refreshed > 0
    }
}

impl Plan {
    /// True when the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.decisions == 0
    }
}

/// The weight of one entry: label references plus a few per decision. About 11,000 targets of
/// 43 labels, a few MiB encoded.
pub const ENTRY_WEIGHT_LIMIT: usize = 1_000_000;

/// Builds a plan's entries, starting a new one whenever the current one reaches the limit.
struct Entries {
    done: Vec<Command>,
    current: CommandBuilder,
    weight: usize,
    limit: usize,
    decisions: usize,
}

impl Entries {
    fn new(limit: usize) -> Self {
        Self {
            done: Vec::new(),
            current: CommandBuilder::new(),
            weight: 0,
            limit: limit.max(1),
            decisions: 0,
        }
    }

    /// The entry to add the next decision to, given its weight; cuts before it if needed.
    fn next(&mut self, weight: usize) -> &mut CommandBuilder {
        if self.weight > 0 && self.weight + weight > self.limit {
            let capacity = self.current.len();
            let full = std::mem::replace(&mut self.current, CommandBuilder::with_capacity(capacity));
            self.decisions += full.len();
            self.done.push(full.build());
            self.weight = 0;
        }
        self.weight += weight;
        &mut self.current
    }

    fn finish(mut self) -> (Vec<Command>, usize) {
        if !self.current.is_empty() {
            self.decisions += self.current.len();
            self.done.push(self.current.build());
        }
        (self.done, self.decisions)
    }
}

/// How many targets ahead of the command being built their memory is asked for.
const PREFETCH_DISTANCE: usize = 8;

/// Weight of a decision that carries no labels.
const DECISION_WEIGHT: usize = 4;

/// Plan the next batch, cut into entries of [`ENTRY_WEIGHT_LIMIT`].
pub fn plan(input: &PlanInput<'_>) -> Plan {
    plan_in_entries(input, ENTRY_WEIGHT_LIMIT)
}

/// [`plan`] with another entry size (tests cut small plans into many entries).
pub fn plan_in_entries(input: &PlanInput<'_>, entry_weight_limit: usize) -> Plan {
    let table = input.table;
    let membership = membership::reconcile(table, input.collectors, input.grace_period, input.now_unix_millis);

    // Targets discovery no longer wants, and the desired ones to look at with what the table
    // holds for them, in id order. A full plan walks the desired targets and the table side
    // by side instead of searching one for each entry of the other: at 100k targets and
    // more, each search is a cache miss.
    let mut removed: FxHashSet<TargetId> = FxHashSet::default();
    // The removed targets as the table holds them, found by the same search.
    let mut removed_targets: Vec<(TargetId, &Target)> = Vec::new();
    // The examined targets as candidates (`in_table` filled in), and beside each what the
    // table holds for it: a full plan of a stateless strategy then decides `examined` itself
    // instead of a copy of it.
    let mut examined: Vec<Candidate<'_>> = Vec::new();
    let mut currents: Vec<Option<&Target>> = Vec::new();
    match input.scope {
        Scope::Everything => {
            // Read in storage order, so what the plan needs of each target is copied while it
            // is in the cache; sorted by id afterwards.
            examined = collect_by_id(
                input.desired.keys().copied(),
                input
                    .desired
                    .iter()
                    .map(|(id, target)| Candidate::new(*id, target, None)),
                |candidate| candidate.id,
            );
            let mut in_table = table.targets().iter().peekable();
            currents.reserve(examined.len());
            for candidate in &mut examined {
                let id = candidate.id;
                while let Some((&gone_id, gone)) = in_table.next_if(|(table_id, _)| **table_id < id) {
                    removed_targets.push((gone_id, gone));
                }
                let current = in_table.next_if(|(table_id, _)| **table_id == id).map(|(_, t)| t);
                candidate.in_table = current.and_then(|t| t.collector.as_ref());
                currents.push(current);
            }
            removed_targets.extend(in_table.map(|(id, target)| (*id, target)));
        }
        Scope::Changed(changed) => {
            // In id order, so that consecutive searches of the table share most of their path.
            let mut changed = changed.to_vec();
            changed.sort_unstable();
            changed.dedup();
            for id in &changed {
                match input.desired.get_key_value(id) {
                    Some((id, target)) => {
                        let current = table.targets().get(id);
                        examined.push(Candidate::new(*id, target, current.and_then(|t| t.collector.as_ref())));
                        currents.push(current);
                    }
                    None => {
                        if let Some(target) = table.targets().get(id) {
                            removed_targets.push((*id, target));
                        }
                    }
                }
            }
        }
    }

    removed.extend(removed_targets.iter().map(|(id, _)| *id));

    // Targets needing a decision, in id order.
    let everything = matches!(input.scope, Scope::Everything);
    let has_member_owner = |current: Option<&Target>| {
        current
            .and_then(|t| t.collector.as_ref())
            .is_some_and(|owner| membership.members.contains_key(owner))
    };
    let needing_owner = || {
        examined
            .iter()
            .zip(&currents)
            .filter(|(_, current)| !has_member_owner(**current))
            .map(|(candidate, _)| *candidate)
            .collect::<Vec<_>>()
    };
    let chosen: Vec<Candidate<'_>>;
    let candidates: &[Candidate<'_>] = if input.strategy.is_stateless() && everything {
        &examined
    } else if input.strategy.is_stateless() && membership.members_changed {
        let all: Vec<Candidate<'_>> = input
            .desired
            .iter()
            .map(|(id, wanted)| Candidate::new(*id, wanted, table.targets().get(id).and_then(|t| t.collector.as_ref())))
            .collect();
        chosen = sort_by_id(all, |candidate| candidate.id);
        &chosen
    } else if everything {
        // Every examined target, the whole table's desired ones among them.
        chosen = needing_owner();
        &chosen
    } else {
        let mut needing = needing_owner();
        if membership.members_changed {
            needing.extend(table.targets().iter().filter_map(|(id, current)| {
                if removed.contains(id) || has_member_owner(Some(current)) {
                    return None;
                }
                input
                    .desired
                    .get_key_value(id)
                    .map(|(id, wanted)| Candidate::new(*id, wanted, current.collector.as_ref()))
            }));
            needing = sort_by_id(needing, |candidate| candidate.id);
            needing.dedup_by_key(|candidate| candidate.id);
        }
        chosen = needing;
        &chosen
    };

    let mut allocation = Allocation::new(
        table,
        input.desired,
        &membership.members,
        &removed,
        removed_targets.iter().map(|(_, target)| target.collector.as_ref()),
        input.strategy.bookkeeping(),
    );
    allocation.reserve(candidates.len());
    input.strategy.assign(&mut allocation, candidates);
    let rebalance_moves = input.strategy.rebalance(&mut allocation, input.rebalance_budget);
    let decided = allocation.into_decisions();

    // The batch: collectors first (targets may name them), collector removals last (they
    // must own nothing once the batch is applied).
    let mut summary = PlanSummary {
        rebalance_moves,
        ..Default::default()
    };
    let mut entries = Entries::new(entry_weight_limit);
    for change in &membership.changes {
        if let CollectorChange::Set { id, node, state } = change {
            entries.next(DECISION_WEIGHT).set_collector(id, node.as_deref(), *state);
            summary.collectors_set += 1;
        }
    }
    // In (job, owner) order, as the touched targets below; ranked by name once instead of
    // comparing names in the sort.
    let job_rank = rank(removed_targets.iter().map(|(_, target)| (target.job.id(), &target.job)));
    let owner_rank = rank(
        removed_targets
            .iter()
            .filter_map(|(_, target)| target.collector.as_ref())
            .map(|owner| (owner.id(), owner)),
    );
    let mut removed_sorted: Vec<(usize, usize, TargetId)> = removed_targets
        .iter()
        .map(|(id, target)| {
            let owner = target.collector.as_ref().map_or(0, |o| owner_rank[&o.id()] + 1);
            (job_rank[&target.job.id()], owner, *id)
        })
        .collect();
    removed_sorted.sort_unstable();
    for (_, _, id) in removed_sorted {
        entries.next(DECISION_WEIGHT).remove_target(id, Expect::Present);
        summary.targets_removed += 1;
    }
    // Each touched target with why, in id order: the examined ones that are new, relabeled
    // or decided, then any other target a decision moved (only rebalancing decides those).
    let mut touched: Vec<Touched<'_>> = Vec::with_capacity(decided.len().max(examined.len()));
    let mut decided_examined = 0;
    let mut decisions = decided.ascending();
    for (row, &current_target) in examined.iter().zip(&currents) {
        let current = row.in_table;
        let decision = decisions.get(row.id);
        decided_examined += usize::from(decision.is_some());
        let owner = decision.map_or(current, Option::as_ref);
        let touch = match current_target {
            None => Touch::Added,
            Some(target) if target.labels != row.wanted.labels => Touch::Relabeled,
            Some(_) if decision.is_some() => Touch::Decided,
            Some(_) => continue,
        };
        touched.push(Touched {
            wanted: row.wanted,
            job: row.job,
            owner,
            current,
            id: row.id,
            touch,
        });
    }
    if decided_examined < decided.len() {
        let mut others: Vec<Touched<'_>> = decided
            .iter()
            .filter(|(id, _)| examined.binary_search_by_key(*id, |row| row.id).is_err())
            .filter_map(|(id, decision)| {
                let wanted = input.desired.get(id)?;
                Some(Touched {
                    wanted,
                    job: wanted.job.id(),
                    owner: decision.as_ref(),
                    current: table.targets().get(id).and_then(|t| t.collector.as_ref()),
                    id: *id,
                    touch: Touch::Decided,
                })
            })
            .collect();
        others.sort_unstable_by_key(|touched| touched.id);
        touched = merge_by_id(touched, others);
    }

    // In (job, new owner) order, ids ascending within each: the read model rebuilds the
    // body of each (job, collector) an entry touches, so an entry of a large plan touches a
    // few bodies instead of all.
    let touched = order_by_job_and_owner(touched);

    for (
        position,
        &Touched {
            wanted,
            owner,
            current,
            id,
            touch,
            ..
        },
    ) in touched.iter().enumerate()
    {
        // The targets come in (job, owner) order, neither the order their desired entries
        // are stored in nor the order their label sets were made in: each would be a cache
        // miss, waited for in turn. Their lines are asked for ahead instead, the entry's
        // first and, once it has arrived, the label set it points to.
        if let Some(later) = touched.get(position + 2 * PREFETCH_DISTANCE) {
            ta_raft::prefetch::prefetch(later.wanted as *const DesiredTarget);
        }
        if let Some(later) = touched.get(position + PREFETCH_DISTANCE) {
            later.wanted.labels.prefetch();
        }
        let upsert_weight = DECISION_WEIGHT + 2 * wanted.labels.len();
        if touch == Touch::Added {
            entries
                .next(upsert_weight)
                .upsert_target_labels(id, &wanted.job, &wanted.labels, owner, Expect::Absent);
            summary.targets_added += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        } else if touch == Touch::Relabeled {
            entries.next(upsert_weight).upsert_target_labels(
                id,
                &wanted.job,
                &wanted.labels,
                owner,
                Expect::OwnedBy(current.cloned()),
            );
            summary.labels_refreshed += 1;
            if owner != current {
                summary.targets_moved += 1;
                summary.left_unassigned += usize::from(owner.is_none());
            }
        } else if owner != current {
            entries.next(DECISION_WEIGHT).move_target_between(id, current, owner);
            summary.targets_moved += 1;
            summary.left_unassigned += usize::from(owner.is_none());
        }
    }
    for change in &membership.changes {
        if let CollectorChange::Remove { id } = change {
            // In the last entry: by then every move away from it is applied.
            entries.next(0).remove_collector(id);
            summary.collectors_removed += 1;
        }
    }
    let (commands, decisions) = entries.finish();

    Plan {
        commands,
        summary,
        decisions,
    }
}

/// Radix digits of [`sort_by_id`] and [`collect_by_id`]: ids are hashes, spread evenly over
/// the 64 bits, so placing items by their top 16 bits leaves almost nothing for the insertion
/// sorts that finish. They are placed 8 bits at a time: first into 256 buckets (256 places
/// written at once, which the caches keep; with all 65,536 at once each write missed), then
/// within each bucket of a few hundred items through a small buffer, in the cache. A
/// comparison sort of 100k rows was a third of a full plan's instructions, and its moves of
/// 40-byte rows across 4 MB missed the cache.
const RADIX_BITS: u32 = 8;
const RADIX_BUCKETS: usize = 1 << RADIX_BITS;
/// Below this, a comparison sort.
const RADIX_FROM: usize = 4096;

fn top_digit(id: TargetId) -> usize {
    (id.0 >> (64 - RADIX_BITS)) as usize
}

/// Where each top-digit bucket starts, given every id once.
fn bucket_bounds(ids: impl Iterator<Item = TargetId>) -> [usize; RADIX_BUCKETS + 1] {
    let mut bounds = [0usize; RADIX_BUCKETS + 1];
    for id in ids {
        bounds[top_digit(id) + 1] += 1;
    }
    for b in 0..RADIX_BUCKETS {
        bounds[b + 1] += bounds[b];
    }
    bounds
}

/// `items` in ascending id order, sorted in place (a second 4 MB buffer at 100k rows cost
/// more in page faults than the sort).
fn sort_by_id<T: Copy>(mut items: Vec<T>, id: impl Fn(&T) -> TargetId) -> Vec<T> {
    if items.len() < RADIX_FROM {
        items.sort_unstable_by_key(|item| id(item));
        return items;
    }
    let bounds = bucket_bounds(items.iter().map(&id));
    // Each item is moved straight to the next free slot of its bucket, and the item it
    // displaces goes on to its own.
    let mut at = bounds;
    for b in 0..RADIX_BUCKETS {
        while at[b] < bounds[b + 1] {
            let mut item = items[at[b]];
            let mut home = top_digit(id(&item));
            while home != b {
                std::mem::swap(&mut item, &mut items[at[home]]);
                at[home] += 1;
                home = top_digit(id(&item));
            }
            items[at[b]] = item;
            at[b] += 1;
        }
    }
    finish_buckets(&mut items, &bounds, id);
    items
}

/// `items`, whose ids are `ids` in the same order, collected in ascending id order: the
/// items are written once, straight into their buckets.
fn collect_by_id<T: Copy>(
    ids: impl Iterator<Item = TargetId>,
    items: impl ExactSizeIterator<Item = T>,
    id: impl Fn(&T) -> TargetId,
) -> Vec<T> {
    if items.len() < RADIX_FROM {
        let mut items: Vec<T> = items.collect();
        items.sort_unstable_by_key(|item| id(item));
        return items;
    }
    let bounds = bucket_bounds(ids);
    let mut items = items.peekable();
    let Some(&first) = items.peek() else {
        return Vec::new();
    };
    let mut placed = vec![first; bounds[RADIX_BUCKETS]];
    let mut at = bounds;
    for item in items {
        let b = top_digit(id(&item));
        placed[at[b]] = item;
        at[b] += 1;
    }
    finish_buckets(&mut placed, &bounds, id);
    placed
}

/// Items placed by their top digit (bucket `b` at `bounds[b]..bounds[b + 1]`) into full id
/// order.
fn finish_buckets<T: Copy>(items: &mut [T], bounds: &[usize; RADIX_BUCKETS + 1], id: impl Fn(&T) -> TargetId) {
    let next = |item: &T| ((id(item).0 >> (64 - 2 * RADIX_BITS)) as usize) & (RADIX_BUCKETS - 1);
    let mut buffer: Vec<T> = Vec::new();
    for b in 0..RADIX_BUCKETS {
        let (start, end) = (bounds[b], bounds[b + 1]);
        buffer.clear();
        buffer.extend_from_slice(&items[start..end]);
        let mut at = [0usize; RADIX_BUCKETS + 1];
        for item in &buffer {
            at[next(item) + 1] += 1;
        }
        at[0] = start;
        for sub in 0..RADIX_BUCKETS {
            at[sub + 1] += at[sub];
        }
        let sub_bounds = at;
        for item in &buffer {
            let sub = next(item);
            items[at[sub]] = *item;
            at[sub] += 1;
        }
        // Items sharing their top 16 bits: a neighbour or two for hash ids; ids that are
        // not spread (small numbers in tests) fall to a comparison sort, not a quadratic one.
        for sub in 0..RADIX_BUCKETS {
            let run = &mut items[sub_bounds[sub]..sub_bounds[sub + 1]];
            if run.len() > 16 {
                run.sort_unstable_by_key(|item| id(item));
                continue;
            }
            for i in 1..run.len() {
                let item = run[i];
                let mut j = i;
                while j > 0 && id(&run[j - 1]) > id(&item) {
                    run[j] = run[j - 1];
                    j -= 1;
                }
                run[j] = item;
            }
        }
    }
}

/// Two lists of touched targets, each in id order, as one in id order.
fn merge_by_id<'a>(left: Vec<Touched<'a>>, right: Vec<Touched<'a>>) -> Vec<Touched<'a>> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let (mut left, mut right) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let next = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) if l.id <= r.id => left.next(),
            (Some(_), Some(_)) => right.next(),
            (Some(_), None) => left.next(),
            (None, _) => right.next(),
        };
        match next {
            Some(item) => merged.push(item),
            None => return merged,
        }
    }
}

/// `touched` (in id order) grouped by (job, new owner), both in name order, keeping id order
/// within each group. Jobs and owners are few: each is ranked by name once, and the targets
/// are placed by counting their groups, a pass and a half instead of a sort.
fn order_by_job_and_owner(touched: Vec<Touched<'_>>) -> Vec<Touched<'_>> {
    // Keyed by the copied job number: reading `wanted` here would be a cache miss per target.
    let job_rank = rank(touched.iter().map(|t| (t.job, &t.wanted.job)));
    let owner_rank = rank(touched.iter().filter_map(|t| t.owner).map(|o| (o.id(), o)));
    let owners = owner_rank.len() + 1;
    let buckets = job_rank.len() * owners;
    let keys: Vec<usize> = touched
        .iter()
        .map(|t| {
            let owner = t.owner.map_or(0, |o| owner_rank[&o.id()] + 1);
            job_rank[&t.job] * owners + owner
        })
        .collect();
    if buckets > 4 * touched.len() + 1024 {
        // Many more groups than targets (a small plan over many jobs): a stable sort.
        let mut order: Vec<(usize, usize)> = keys.into_iter().zip(0..).collect();
        order.sort_by_key(|(key, _)| *key);
        return order.into_iter().map(|(_, index)| touched[index]).collect();
    }
    let mut starts = vec![0usize; buckets + 1];
    for &key in &keys {
        starts[key + 1] += 1;
    }
    for bucket in 0..buckets {
        starts[bucket + 1] += starts[bucket];
    }
    let Some(&first) = touched.first() else {
        return touched;
    };
    let mut ordered = vec![first; touched.len()];
    for (item, key) in touched.iter().zip(keys) {
        ordered[starts[key]] = *item;
        starts[key] += 1;
    }
    ordered
}

/// A target in a plan's batch.
#[derive(Clone, Copy)]
struct Touched<'a> {
    wanted: &'a DesiredTarget,
    /// `wanted`'s job, by symbol number.
    job: u32,
    owner: Option<&'a Symbol>,
    current: Option<&'a Symbol>,
    id: TargetId,
    touch: Touch,
}

/// Why a target is in a plan's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Touch {
    Added,
    Relabeled,
    /// Only its owner may change.
    Decided,
}

/// Each distinct symbol's position in name order, by symbol number. Given each symbol's
/// number beside it, only one symbol per number is read.
fn rank<'s>(symbols: impl Iterator<Item = (u32, &'s Symbol)>) -> FxHashMap<u32, usize> {
    let mut distinct: FxHashMap<u32, &Symbol> = FxHashMap::default();
    for (id, symbol) in symbols {
        distinct.entry(id).or_insert(symbol);
    }
    let mut sorted: Vec<&Symbol> = distinct.into_values().collect();
    sorted.sort_unstable();
    sorted
        .into_iter()
        .enumerate()
        .map(|(rank, symbol)| (symbol.id(), rank))
        .collect()
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn radix_orders_by_id_like_a_comparison_sort_for_spread_and_clustered_ids() {
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        for len in [0, 1, 5, RADIX_FROM - 1, RADIX_FROM, 20_000] {
            for spread in [true, false] {
                // (id, payload): equal ids may come in any order, so the payload is compared
                // only through the multiset.
                let items: Vec<(TargetId, u32)> = (0..len as u32)
                    .map(|payload| {
                        let id = if spread {
                            random.r#gen::<u64>()
                        } else {
                            // Small numbers, many repeated: the top bits are all zero.
                            random.gen_range(0..len as u64 / 3 + 1)
                        };
                        (TargetId(id), payload)
                    })
                    .collect();
                let mut expected = items.clone();
                expected.sort_unstable();
                let context = format!("seed {seed}, {len} items, spread {spread}");
                let mut sorted = sort_by_id(items.clone(), |item| item.0);
                assert!(sorted.windows(2).all(|w| w[0].0 <= w[1].0), "{context}");
                sorted.sort_unstable();
                assert_eq!(sorted, expected, "{context}: sort_by_id");
                let ids: Vec<TargetId> = items.iter().map(|item| item.0).collect();
                let mut collected = collect_by_id(ids.into_iter(), items.into_iter(), |item| item.0);
                assert!(collected.windows(2).all(|w| w[0].0 <= w[1].0), "{context}");
                collected.sort_unstable();
                assert_eq!(collected, expected, "{context}: collect_by_id");
            }
        }
    }
}
