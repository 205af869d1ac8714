//! From discovered target groups to the desired targets the planner reads, incrementally.
//! Discovery republishes an unchanged group as the same `Arc`; such a group is not relabeled
//! again, so a 1% change costs about 1% of a full pass. The result is the desired-target map
//! plus the ids that changed, which is what an incremental plan needs.
//!
//! Dedup (upstream §4.4): targets of one job that collapse to one identity are one target.
//! Within a group the last wins; across groups the most recently processed group's labels
//! win, and the target stays while any group still yields it.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use ta_raft::TargetId;

use crate::allocation::desired::DesiredTargets;
use crate::config::LimitsConfig;
use crate::discovery::TargetGroup;
use crate::targets::FilterStrategy;
use crate::targets::JobPreparation;
use crate::targets::JobSettings;
use crate::targets::PreparedJob;
use crate::targets::build_group_into;

/// The ids one group yielded. Most groups of a large file_sd or http_sd source hold one
/// target: their id is kept inline rather than in an allocation of its own.
enum Ids {
    One(TargetId),
    Many(Box<[TargetId]>),
}

impl Ids {
    fn from_vec(ids: Vec<TargetId>) -> Self {
        match ids.as_slice() {
            [id] => Ids::One(*id),
            _ => Ids::Many(ids.into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[TargetId] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(ids) => ids,
        }
    }
}

/// What one processed group yielded.
struct ProcessedGroup {
    group: Arc<TargetGroup>,
    ids: Ids,
    /// Targets of the group refused by the limits.
    refused: usize,
}

/// Whether a target with these served labels is within `limits.max_label_bytes` and
/// `limits.max_labels_per_target`; one above either is refused, counted, and not allocated
/// (docs/compatibility.md, "Limits").
fn within_limits(limits: &LimitsConfig, labels: &ta_raft::model::Labels) -> bool {
    labels.len() <= limits.max_labels_per_target && within_label_bytes(limits, labels)
}

/// Whether every name and value of `labels` is within `limits.max_label_bytes`.
fn within_label_bytes(limits: &LimitsConfig, labels: &ta_raft::model::Labels) -> bool {
    labels
        .iter()
        .all(|(name, value)| name.len() <= limits.max_label_bytes && value.len() <= limits.max_label_bytes)
}

/// One job as processed last time.
#[derive(Default)]
struct ProcessedJob {
    groups: Vec<ProcessedGroup>,
    preparation: Option<JobPreparation>,
}

/// Desired targets kept in step with discovery.
#[derive(Default)]
pub struct DesiredState {
    desired: DesiredTargets,
    /// Per job, the groups processed last time, by position, and what preparing the job
    /// made, for the next pass.
    jobs: FxHashMap<String, ProcessedJob>,
    /// For a target more than one processed group yields: how many others do. A desired
    /// target without an entry is yielded by exactly one group, which is nearly every target,
    /// so the map stays small instead of holding a count per target (at a million targets
    /// that map was 20 MB).
    also_yielded_by: FxHashMap<TargetId, u32>,
    limits: LimitsConfig,
    /// Per job with any, the targets of its current groups the limits refused.
    refused: BTreeMap<String, usize>,
}

impl DesiredState {
    pub fn new() -> Self {
        Self::default()
    }

    /// A state that refuses targets above `limits`.
    pub fn with_limits(limits: LimitsConfig) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Per job, the targets of its current groups that the limits refused (jobs with none
    /// are left out).
    pub fn refused(&self) -> &BTreeMap<String, usize> {
        &self.refused
    }

    /// Every desired target.
    pub fn desired(&self) -> &DesiredTargets {
        &self.desired
    }

    /// Room for `targets` more desired targets. A caller about to add many jobs at once (a
    /// cold start: every job is new) grows the map once instead of doubling it job by job:
    /// at 100k targets in 1,000 jobs, the rehashes on the way were 16% of building them.
    pub fn reserve(&mut self, targets: usize) {
        self.desired.reserve(targets);
    }

    /// Bring `job` up to date with its current `groups`; returns the ids that were added,
    /// removed or relabeled (possibly with repeats).
    pub fn update_job(
        &mut self,
        job: &JobSettings,
        filter: FilterStrategy,
        groups: &[Arc<TargetGroup>],
    ) -> Vec<TargetId> {
        // The common case under churn elsewhere: this job's groups are all the same `Arc`s.
        if let Some(previous) = self.jobs.get(&job.name)
            && previous.groups.len() == groups.len()
            && previous
                .groups
                .iter()
                .zip(groups)
                .all(|(p, g)| Arc::ptr_eq(&p.group, g))
        {
            return Vec::new();
        }
        let previous = self.jobs.remove(&job.name).unwrap_or_default();
        let mut prepared = PreparedJob::resume(job, filter, previous.preparation);
        let mut previous_by_pointer: FxHashMap<*const TargetGroup, ProcessedGroup> = previous
            .groups
            .into_iter()
            .map(|processed| (Arc::as_ptr(&processed.group), processed))
            .collect();
        let mut changed = Vec::new();
        let mut processed_now = Vec::with_capacity(groups.len());
        let every_string_within = ta_raft::intern::longest_interned() <= self.limits.max_label_bytes;
        if previous_by_pointer.is_empty() {
            // A job seen for the first time: room for its targets at once rather than
            // rehashing the map several times on the way.
            self.desired
                .reserve(groups.iter().map(|group| group.targets.len()).sum());
        }
        let mut built = Vec::new();
        for group in groups {
            if let Some(unchanged) = previous_by_pointer.remove(&Arc::as_ptr(group)) {
                processed_now.push(unchanged);
                continue;
            }
            // Every served label comes from the group's labels or a target's own: when all of
            // those are within the byte limit, only the counts are left to check per target.
            // While no live string is longer than the limit, none of them is.
            let bytes_within = every_string_within
                || (within_label_bytes(&self.limits, &group.labels)
                    && group.targets.iter().all(|own| within_label_bytes(&self.limits, own)));
            build_group_into(&mut prepared, group, &mut built);
            let mut ids = Vec::with_capacity(built.len());
            let mut refused = 0;
            for target in built.drain(..) {
                let within = if bytes_within {
                    target.target.labels.len() <= self.limits.max_labels_per_target
                } else {
                    within_limits(&self.limits, &target.target.labels)
                };
                if !within {
                    refused += 1;
                    continue;
                }
                match self.desired.entry(target.id) {
                    Entry::Occupied(mut existing) => {
                        // Yielded already: by another group, or by this group's previous
                        // version, which is forgotten below.
                        *self.also_yielded_by.entry(target.id).or_default() += 1;
                        if *existing.get() != target.target {
                            changed.push(target.id);
                            existing.insert(target.target);
                        }
                    }
                    Entry::Vacant(slot) => {
                        changed.push(target.id);
                        slot.insert(target.target);
                    }
                }
                ids.push(target.id);
            }
            processed_now.push(ProcessedGroup {
                group: Arc::clone(group),
                ids: Ids::from_vec(ids),
                refused,
            });
        }
        // Groups gone or replaced: forget what only they yielded.
        for (_, gone) in previous_by_pointer {
            for &id in gone.ids.as_slice() {
                match self.also_yielded_by.get_mut(&id) {
                    Some(others) => {
                        *others -= 1;
                        if *others == 0 {
                            self.also_yielded_by.remove(&id);
                        }
                    }
                    None => {
                        if self.desired.remove(&id).is_some() {
                            changed.push(id);
                        }
                    }
                }
            }
        }
        let refused: usize = processed_now.iter().map(|group| group.refused).sum();
        if refused > 0 {
            self.refused.insert(job.name.clone(), refused);
        } else {
            self.refused.remove(&job.name);
        }
        if groups.is_empty() {
            // A job with no groups is gone (or empty): nothing to keep for it.
            return changed;
        }
        self.jobs.insert(
            job.name.clone(),
            ProcessedJob {
                groups: processed_now,
                preparation: Some(prepared.keep()),
            },
        );
        changed
    }

    /// Forget a job entirely; returns the ids removed.
    pub fn remove_job(&mut self, job: &JobSettings, filter: FilterStrategy) -> Vec<TargetId> {
        self.update_job(job, filter, &[])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use rand::Rng;
    use rand::SeedableRng;
    use ta_raft::intern::Symbol;
    use ta_raft::model::Labels;

    use super::*;

    fn job() -> JobSettings {
        JobSettings {
            name: "j".into(),
            scrape_interval: Duration::from_secs(30),
            scrape_timeout: Duration::from_secs(10),
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            params: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    /// A group of `addresses`; a target's labels follow from its address alone, so a target
    /// two groups yield is the same target in both.
    fn group(source: usize, addresses: &[usize]) -> Arc<TargetGroup> {
        let s = |x: String| Symbol::from(x.as_str());
        Arc::new(TargetGroup {
            source: source.to_string().into(),
            targets: addresses
                .iter()
                .map(|a| {
                    Labels::new(vec![
                        (s("__address__".into()), s(format!("10.0.0.{a}:80"))),
                        (s("zone".into()), s(format!("z{}", a % 3))),
                    ])
                })
                .collect(),
            labels: Labels::new(vec![(s("team".into()), s("t".into()))]),
        })
    }

    fn ids_of(state: &DesiredState) -> BTreeSet<TargetId> {
        state.desired().keys().copied().collect()
    }

    #[test]
    fn a_target_two_groups_yield_stays_until_both_are_gone() {
        let mut state = DesiredState::new();
        let (a, b) = (group(0, &[1, 2]), group(1, &[2, 3]));
        let changed = state.update_job(&job(), FilterStrategy::RelabelConfig, &[a.clone(), b.clone()]);
        assert_eq!(state.desired().len(), 3);
        assert_eq!(changed.iter().collect::<BTreeSet<_>>().len(), 3);
        let before = ids_of(&state);
        // The group yielding 2 and 3 goes: 3 goes, 2 stays (group a yields it).
        let changed = state.update_job(&job(), FilterStrategy::RelabelConfig, std::slice::from_ref(&a));
        assert_eq!(state.desired().len(), 2);
        let gone: Vec<_> = before.difference(&ids_of(&state)).copied().collect();
        assert_eq!(changed, gone, "only the target no group yields any more changed");
        // A new version of a with the same targets changes nothing.
        let changed = state.update_job(&job(), FilterStrategy::RelabelConfig, &[group(0, &[1, 2])]);
        assert!(changed.is_empty());
        assert_eq!(state.desired().len(), 2);
        let changed = state.update_job(&job(), FilterStrategy::RelabelConfig, &[]);
        assert_eq!(changed.len(), 2);
        assert!(state.desired().is_empty());
        assert!(state.also_yielded_by.is_empty());
    }

    #[test]
    fn incremental_updates_match_a_fresh_build_over_random_histories() {
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        let mut state = DesiredState::new();
        let mut groups: Vec<Arc<TargetGroup>> = Vec::new();
        for step in 0..300 {
            match random.gen_range(0..4) {
                // Add a group, replace one (a new version), drop one, or change nothing.
                0 => {
                    let addresses: Vec<usize> = (0..random.gen_range(0..4)).map(|_| random.gen_range(0..12)).collect();
                    groups.push(group(random.gen_range(0..1000), &addresses));
                }
                1 if !groups.is_empty() => {
                    let at = random.gen_range(0..groups.len());
                    let addresses: Vec<usize> = (0..random.gen_range(0..4)).map(|_| random.gen_range(0..12)).collect();
                    groups[at] = group(at, &addresses);
                }
                2 if !groups.is_empty() => {
                    groups.remove(random.gen_range(0..groups.len()));
                }
                _ => {}
            }
            let before = ids_of(&state);
            let changed: BTreeSet<TargetId> = state
                .update_job(&job(), FilterStrategy::RelabelConfig, &groups)
                .into_iter()
                .collect();
            let mut fresh = DesiredState::new();
            fresh.update_job(&job(), FilterStrategy::RelabelConfig, &groups);
            assert_eq!(ids_of(&state), ids_of(&fresh), "seed {seed}, step {step}");
            for (id, target) in fresh.desired() {
                assert_eq!(state.desired().get(id), Some(target), "seed {seed}, step {step}");
            }
            let moved: BTreeSet<TargetId> = before.symmetric_difference(&ids_of(&state)).copied().collect();
            assert!(
                moved.is_subset(&changed),
                "seed {seed}, step {step}: {moved:?} not in {changed:?}"
            );
            // The extra counts are exactly the groups beyond the first that yield a target.
            let settings = job();
            let mut prepared = PreparedJob::new(&settings, FilterStrategy::RelabelConfig);
            let mut yielding: BTreeMap<TargetId, u32> = BTreeMap::new();
            for group in &groups {
                for target in crate::targets::build_group(&mut prepared, group) {
                    *yielding.entry(target.id).or_default() += 1;
                }
            }
            let expected: BTreeMap<TargetId, u32> = yielding
                .into_iter()
                .filter(|(_, groups)| *groups > 1)
                .map(|(id, groups)| (id, groups - 1))
                .collect();
            let extra: BTreeMap<TargetId, u32> = state.also_yielded_by.iter().map(|(id, n)| (*id, *n)).collect();
            assert_eq!(extra, expected, "seed {seed}, step {step}");
        }
    }
}
