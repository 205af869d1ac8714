//! From discovered target groups to the desired targets the planner reads, incrementally.
//! Discovery republishes an unchanged group as the same `Arc`; such a group is not relabeled
//! again, so a 1% change costs about 1% of a full pass. The result is the desired-target map
//! plus the ids that changed, which is what an incremental plan needs.
//!
//! Dedup (upstream §4.4): targets of one job that collapse to one identity are one target.
//! Within a group the last wins; across groups the most recently processed group's labels
//! win, and the target stays while any group still yields it.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use ta_raft::TargetId;

use crate::allocation::desired::DesiredTargets;
use crate::config::LimitsConfig;
use crate::discovery::TargetGroup;
use crate::targets::FilterStrategy;
use crate::targets::JobSettings;
use crate::targets::PreparedJob;
use crate::targets::build_group;

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

/// Desired targets kept in step with discovery.
#[derive(Default)]
pub struct DesiredState {
    desired: DesiredTargets,
    /// Per job, the groups processed last time, by position.
    jobs: FxHashMap<String, Vec<ProcessedGroup>>,
    /// How many processed groups yield each target.
    yielded_by: FxHashMap<TargetId, u32>,
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
            && previous.len() == groups.len()
            && previous.iter().zip(groups).all(|(p, g)| Arc::ptr_eq(&p.group, g))
        {
            return Vec::new();
        }
        let mut prepared = PreparedJob::new(job, filter);
        let previous = self.jobs.remove(&job.name).unwrap_or_default();
        let mut previous_by_pointer: FxHashMap<*const TargetGroup, ProcessedGroup> = previous
            .into_iter()
            .map(|processed| (Arc::as_ptr(&processed.group), processed))
            .collect();
        let mut changed = Vec::new();
        let mut processed_now = Vec::with_capacity(groups.len());
        for group in groups {
            if let Some(unchanged) = previous_by_pointer.remove(&Arc::as_ptr(group)) {
                processed_now.push(unchanged);
                continue;
            }
            // Every served label comes from the group's labels or a target's own: when all of
            // those are within the byte limit, only the counts are left to check per target.
            let bytes_within = within_label_bytes(&self.limits, &group.labels)
                && group.targets.iter().all(|own| within_label_bytes(&self.limits, own));
            let built = build_group(&mut prepared, group);
            let mut ids = Vec::with_capacity(built.len());
            let mut refused = 0;
            for target in built {
                let within = if bytes_within {
                    target.target.labels.len() <= self.limits.max_labels_per_target
                } else {
                    within_limits(&self.limits, &target.target.labels)
                };
                if !within {
                    refused += 1;
                    continue;
                }
                *self.yielded_by.entry(target.id).or_default() += 1;
                if self.desired.get(&target.id) != Some(&target.target) {
                    changed.push(target.id);
                    self.desired.insert(target.id, target.target);
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
                if let Some(count) = self.yielded_by.get_mut(&id) {
                    *count -= 1;
                    if *count == 0 {
                        self.yielded_by.remove(&id);
                        self.desired.remove(&id);
                        changed.push(id);
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
        self.jobs.insert(job.name.clone(), processed_now);
        changed
    }

    /// Forget a job entirely; returns the ids removed.
    pub fn remove_job(&mut self, job: &JobSettings, filter: FilterStrategy) -> Vec<TargetId> {
        self.update_job(job, filter, &[])
    }
}
