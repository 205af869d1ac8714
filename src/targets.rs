//! From discovered target groups to allocatable targets, as upstream builds them
//! (upstream-compat.md §4.2–4.4): merge group and target labels into the served labels, seed
//! the job's defaults, run the job's relabel rules inside the no-sharding wrapper, drop what
//! they drop, hash the identity, and keep the last target of each identity.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use ta_raft::TargetId;

use ta_raft::intern::Symbol;
use ta_raft::model::Labels;

use crate::allocation::desired::DesiredTarget;
use crate::allocation::desired::node_of;
use crate::discovery::TargetGroup;
use crate::prometheus_duration;
use crate::relabel;
use crate::relabel::LabelBuilder;
use crate::relabel::Rule;

/// Whether relabel rules decide which targets exist (`filter_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterStrategy {
    /// `relabel-config` (upstream's default): seed, relabel, drop, hash the result.
    #[default]
    RelabelConfig,
    /// Any other value, `""` included, in upstream: no seeds, no rules, nothing dropped.
    Disabled,
}

impl FilterStrategy {
    /// Upstream's reading of `filter_strategy`: only `relabel-config` turns filtering on.
    pub fn from_config(value: &str) -> Self {
        if value == "relabel-config" {
            FilterStrategy::RelabelConfig
        } else {
            FilterStrategy::Disabled
        }
    }
}

/// What of a scrape config target building needs.
#[derive(Debug, Clone)]
pub struct JobSettings {
    pub name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    /// URL parameters (`params:`); the first value of each is seeded as `__param_<name>`.
    pub params: BTreeMap<String, Vec<String>>,
    /// The job's `relabel_configs`, compiled.
    pub rules: Vec<Rule>,
}

/// A target ready for allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatableTarget {
    pub id: TargetId,
    pub target: DesiredTarget,
}

/// Labels of `group` merged with one target's own; the target's value wins on a clash.
/// Both inputs are sorted, so this is one merge pass; with no group labels it is a share.
pub fn served_labels(group_labels: &Labels, target_labels: &Labels) -> Labels {
    LabelMerger::default().merge(group_labels, target_labels)
}

/// One step of merging a group's labels with a target's.
#[derive(Clone, Copy)]
enum MergeStep {
    Group,
    Target,
    /// Both have the name; the target's value wins.
    Both,
}

/// [`served_labels`] for the targets of one group. The targets of a group almost always carry
/// the same label names, so the order of the merge is worked out (by comparing names as text)
/// for the first target and replayed for the next ones whose names are the same symbols.
#[derive(Default)]
struct LabelMerger {
    /// Symbol numbers of the names the steps were worked out for.
    names: Vec<u32>,
    steps: Vec<MergeStep>,
}

impl LabelMerger {
    fn merge(&mut self, group_labels: &Labels, target_labels: &Labels) -> Labels {
        if group_labels.is_empty() {
            return target_labels.clone();
        }
        let (group, target) = (group_labels.pairs(), target_labels.pairs());
        let same_names =
            self.names.len() == target.len() && target.iter().zip(&self.names).all(|((name, _), id)| name.id() == *id);
        if !same_names {
            self.plan(group, target);
        }
        let mut merged: Vec<(Symbol, Symbol)> = Vec::with_capacity(self.steps.len());
        let (mut g, mut t) = (0, 0);
        for step in &self.steps {
            match step {
                MergeStep::Group => {
                    merged.push(group[g].clone());
                    g += 1;
                }
                MergeStep::Target => {
                    merged.push(target[t].clone());
                    t += 1;
                }
                MergeStep::Both => {
                    merged.push(target[t].clone());
                    g += 1;
                    t += 1;
                }
            }
        }
        // Sorted by construction; shared with the table's copy once applied (on the leader).
        Labels::shared_sorted(merged)
    }

    fn plan(&mut self, group: &[(Symbol, Symbol)], target: &[(Symbol, Symbol)]) {
        self.names.clear();
        self.names.extend(target.iter().map(|(name, _)| name.id()));
        self.steps.clear();
        let (mut g, mut t) = (0, 0);
        while g < group.len() || t < target.len() {
            let step = match (group.get(g), target.get(t)) {
                (Some(gp), Some(tp)) => match gp.0.cmp(&tp.0) {
                    std::cmp::Ordering::Less => MergeStep::Group,
                    std::cmp::Ordering::Greater => MergeStep::Target,
                    std::cmp::Ordering::Equal => MergeStep::Both,
                },
                (Some(_), None) => MergeStep::Group,
                _ => MergeStep::Target,
            };
            match step {
                MergeStep::Group => g += 1,
                MergeStep::Target => t += 1,
                MergeStep::Both => {
                    g += 1;
                    t += 1;
                }
            }
            self.steps.push(step);
        }
    }
}

/// A job prepared for building its targets: what seeding sets, computed once per pass
/// instead of once per target.
pub struct PreparedJob<'a> {
    pub settings: &'a JobSettings,
    pub symbol: Symbol,
    pub filter: FilterStrategy,
    /// Prometheus's `PopulateDiscoveredLabels` defaults in the order it sets them.
    seeds: Vec<(Symbol, String)>,
    disable_sharding: Symbol,
}

impl<'a> PreparedJob<'a> {
    pub fn new(settings: &'a JobSettings, filter: FilterStrategy) -> Self {
        let mut seeds = vec![
            (Symbol::from("job"), settings.name.clone()),
            (
                Symbol::from("__scrape_interval__"),
                prometheus_duration::format(settings.scrape_interval),
            ),
            (
                Symbol::from("__scrape_timeout__"),
                prometheus_duration::format(settings.scrape_timeout),
            ),
            (Symbol::from("__metrics_path__"), settings.metrics_path.clone()),
            (Symbol::from("__scheme__"), settings.scheme.clone()),
        ];
        for (name, values) in &settings.params {
            if let Some(first) = values.first() {
                seeds.push((Symbol::from(format!("__param_{name}")), first.clone()));
            }
        }
        Self {
            settings,
            symbol: Symbol::from(settings.name.as_str()),
            filter,
            seeds,
            disable_sharding: Symbol::from(DISABLE_SHARDING),
        }
    }

    /// The identity of a target with served labels `served` when the job has no relabel rules:
    /// what [`relabel_builder`] then [`TargetId::compute`] give, without building labels
    /// (`None` for a job with more seeds than this tracks; the caller builds them then).
    fn identity_without_rules(&self, served: &Labels) -> Option<TargetId> {
        let job = &self.settings.name;
        if self.filter == FilterStrategy::Disabled {
            return Some(TargetId::compute(job, served.iter()));
        }
        if self.seeds.len() > 64 {
            return None;
        }
        let seed_index = |name: &Symbol| self.seeds.iter().position(|(seed, _)| seed == name);
        // A seed is set where the discovered value is empty or absent; setting an empty value
        // deletes. Either way a discovered label of that name is no longer untouched, and
        // neither is the no-sharding label, which is set and then deleted.
        let mut discovered: u64 = 0;
        for (name, value) in served.pairs() {
            if let Some(i) = seed_index(name)
                && !value.is_empty()
            {
                discovered |= 1 << i;
            }
        }
        let seeded = |i: usize| discovered & (1 << i) == 0;
        let untouched = served
            .pairs()
            .iter()
            .filter(|(name, _)| *name != self.disable_sharding && seed_index(name).is_none_or(|i| !seeded(i)))
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let set = self
            .seeds
            .iter()
            .enumerate()
            .filter(|(i, (_, value))| seeded(*i) && !value.is_empty())
            .map(|(_, (name, value))| (name.as_str(), value.as_str()));
        Some(TargetId::compute(job, untouched.chain(set)))
    }
}

/// Build the allocatable targets of `job` from one discovered group. Targets that collapse
/// to one identity are one target; the last one wins (upstream §4.4).
pub fn build_group(job: &PreparedJob<'_>, group: &TargetGroup) -> Vec<AllocatableTarget> {
    let mut built: Vec<AllocatableTarget> = Vec::with_capacity(group.targets.len());
    // A static config can hold thousands of targets in one group: find repeats by id.
    let mut positions: HashMap<TargetId, usize> = HashMap::with_capacity(group.targets.len());
    let mut merger = LabelMerger::default();
    let without_rules = job.settings.rules.is_empty();
    for target_labels in &group.targets {
        let served = merger.merge(&group.labels, target_labels);
        let fast = if without_rules {
            job.identity_without_rules(&served)
        } else {
            None
        };
        let id = match fast {
            Some(id) => id,
            None => {
                let Some(builder) = relabel_builder(job, LabelBuilder::from_labels(served.clone())) else {
                    continue;
                };
                TargetId::compute(&job.settings.name, builder.range())
            }
        };
        let address: Symbol = served
            .pairs()
            .iter()
            .find(|(n, _)| n.as_ref() == "__address__")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| Symbol::from(""));
        let node = node_of(&served).map(Symbol::from);
        let target = DesiredTarget {
            job: job.symbol.clone(),
            address,
            labels: served,
            node,
        };
        match positions.get(&id) {
            Some(&index) => built[index].target = target,
            None => {
                positions.insert(id, built.len());
                built.push(AllocatableTarget { id, target });
            }
        }
    }
    built
}

/// Build the allocatable targets of `job` from its discovered `groups` (see [`build_group`]).
pub fn build(job: &JobSettings, filter: FilterStrategy, groups: &[TargetGroup]) -> Vec<AllocatableTarget> {
    let prepared = PreparedJob::new(job, filter);
    let mut by_id: HashMap<TargetId, usize> = HashMap::new();
    let mut built: Vec<AllocatableTarget> = Vec::new();
    for group in groups {
        for target in build_group(&prepared, group) {
            match by_id.get(&target.id) {
                Some(&index) => built[index] = target,
                None => {
                    by_id.insert(target.id, built.len());
                    built.push(target);
                }
            }
        }
    }
    built
}

/// The labels of one target after seeding and relabeling, or `None` if the rules drop it.
/// Served labels in, identity labels out (in `labels.Builder` order via `range`).
pub fn relabel_target(
    job: &JobSettings,
    filter: FilterStrategy,
    served_labels: &[(String, String)],
) -> Option<LabelBuilder> {
    let base = LabelBuilder::new(served_labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    relabel_builder(&PreparedJob::new(job, filter), base)
}

/// The label prometheus-operator's sharding `keep` reads. The allocator does not know the
/// collector's `SHARD`, so every job's rules run wrapped in setting it and deleting it
/// afterwards (upstream's no-sharding wrapper: a `replace` to `"true"` and a `labeldrop`,
/// which for this literal name are exactly a set and a delete). The served scrape config
/// never contains the wrapper.
const DISABLE_SHARDING: &str = "__tmp_disable_sharding";

fn relabel_builder(job: &PreparedJob<'_>, mut builder: LabelBuilder) -> Option<LabelBuilder> {
    if job.filter == FilterStrategy::RelabelConfig {
        seed(&mut builder, job);
        builder.set(DISABLE_SHARDING, "true");
        if !relabel::process(&job.settings.rules, &mut builder) {
            return None;
        }
        builder.delete(DISABLE_SHARDING);
    }
    Some(builder)
}

/// Prometheus's `PopulateDiscoveredLabels` defaults, each set only if absent or empty.
fn seed(builder: &mut LabelBuilder, job: &PreparedJob<'_>) {
    for (name, value) in &job.seeds {
        if builder.get(name).is_empty() {
            builder.set(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relabel::RuleSpec;

    fn job(name: &str, rules: Vec<RuleSpec>) -> JobSettings {
        JobSettings {
            name: name.to_string(),
            scrape_interval: Duration::from_secs(30),
            scrape_timeout: Duration::from_secs(10),
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            params: BTreeMap::new(),
            rules: rules.iter().map(|spec| Rule::new(spec).unwrap()).collect(),
        }
    }

    fn group(targets: &[&[(&str, &str)]], labels: &[(&str, &str)]) -> TargetGroup {
        let map = |pairs: &[(&str, &str)]| {
            Labels::new(
                pairs
                    .iter()
                    .map(|(n, v)| (Symbol::from(*n), Symbol::from(*v)))
                    .collect(),
            )
        };
        TargetGroup {
            source: "0".into(),
            targets: targets.iter().map(|t| map(t)).collect(),
            labels: map(labels),
        }
    }

    #[test]
    fn identities_without_rules_are_the_ones_relabeling_gives() {
        use rand::Rng;
        use rand::SeedableRng;
        let seed: u64 = rand::random();
        let mut random = rand::rngs::StdRng::seed_from_u64(seed);
        // Names that seeding or the no-sharding wrapper touch, a meta label and plain ones.
        let names = [
            "job",
            "__scrape_interval__",
            "__scrape_timeout__",
            "__metrics_path__",
            "__scheme__",
            "__param_module",
            "__tmp_disable_sharding",
            "__meta_kubernetes_pod_name",
            "__address__",
            "instance",
            "zone",
        ];
        let values = ["", "a", "/metrics", "http", "30s"];
        for case in 0..2000 {
            let mut settings = job("fast", vec![]);
            if random.gen_bool(0.3) {
                settings.metrics_path = String::new();
            }
            if random.gen_bool(0.5) {
                settings
                    .params
                    .insert("module".into(), vec![values[random.gen_range(0..values.len())].into()]);
            }
            let mut pairs: Vec<(Symbol, Symbol)> = Vec::new();
            for name in names {
                if random.gen_bool(0.5) {
                    let value = values[random.gen_range(0..values.len())];
                    pairs.push((Symbol::from(name), Symbol::from(value)));
                }
            }
            let served = Labels::new(pairs);
            for filter in [FilterStrategy::RelabelConfig, FilterStrategy::Disabled] {
                let prepared = PreparedJob::new(&settings, filter);
                let fast = prepared.identity_without_rules(&served).expect("few seeds");
                let builder = relabel_builder(&prepared, LabelBuilder::from_labels(served.clone())).expect("no rules");
                let slow = TargetId::compute(&settings.name, builder.range());
                assert_eq!(fast, slow, "seed {seed}, case {case}, {filter:?}, labels {served:?}");
            }
        }
    }

    #[test]
    fn merged_labels_are_the_same_whether_the_merge_order_is_worked_out_or_replayed() {
        let s = |x: &str| Symbol::from(x);
        let group = Labels::new(vec![(s("b"), s("g")), (s("d"), s("g")), (s("f"), s("g"))]);
        let mut merger = LabelMerger::default();
        let first = Labels::new(vec![(s("a"), s("1")), (s("d"), s("t1")), (s("g"), s("1"))]);
        let second = Labels::new(vec![(s("a"), s("2")), (s("d"), s("t2")), (s("g"), s("2"))]);
        let other_names = Labels::new(vec![(s("c"), s("3")), (s("f"), s("t3"))]);
        for target in [&first, &second, &other_names, &first] {
            let replayed = merger.merge(&group, target);
            let mut expected: std::collections::BTreeMap<&str, &str> = group.iter().collect();
            expected.extend(target.iter());
            assert_eq!(
                replayed.iter().collect::<Vec<_>>(),
                expected.into_iter().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn without_filtering_ids_match_upstream_vectors() {
        // upstream-compat.md §4.4, from upstream's server goldens (no relabeling).
        let cases = [
            ("test-job", "test-value", 11170662653441480747u64),
            ("test-job", "test-value2", 5467859392755170604),
            ("test-job2", "test-value2", 1641186170520627519),
            ("test-job2", "test-value3", 14477087093029933912),
        ];
        for (name, value, expected) in cases {
            let built = build(
                &job(name, vec![]),
                FilterStrategy::Disabled,
                &[group(&[&[("test_label", value)]], &[])],
            );
            assert_eq!(built[0].id, TargetId(expected), "{name} {value}");
        }
    }

    #[test]
    fn target_labels_win_over_group_labels_and_served_labels_stay_unrelabeled() {
        let rules = vec![RuleSpec {
            action: Some("labeldrop".into()),
            regex: Some("__meta_.*".into()),
            ..Default::default()
        }];
        let built = build(
            &job("j", rules),
            FilterStrategy::RelabelConfig,
            &[group(
                &[&[("__address__", "10.0.0.1:80"), ("zone", "b")]],
                &[("zone", "a"), ("__meta_pod", "p")],
            )],
        );
        assert_eq!(built.len(), 1);
        assert_eq!(&*built[0].target.address, "10.0.0.1:80");
        assert_eq!(
            built[0].target.labels.iter().collect::<Vec<_>>(),
            vec![("__address__", "10.0.0.1:80"), ("__meta_pod", "p"), ("zone", "b")]
        );
    }

    #[test]
    fn the_sharding_keep_passes_without_knowing_the_shard() {
        // prometheus-operator's rules, with $(SHARD) left for the collector to substitute.
        let rules = vec![
            RuleSpec {
                action: Some("hashmod".into()),
                source_labels: Some(vec!["__address__".into()]),
                target_label: Some("__tmp_hash".into()),
                modulus: Some(1),
                ..Default::default()
            },
            RuleSpec {
                action: Some("keep".into()),
                source_labels: Some(vec!["__tmp_hash".into(), "__tmp_disable_sharding".into()]),
                regex: Some("$(SHARD);|.+;.+".into()),
                ..Default::default()
            },
        ];
        let built = build(
            &job("j", rules),
            FilterStrategy::RelabelConfig,
            &[group(&[&[("__address__", "a:1")]], &[])],
        );
        assert_eq!(built.len(), 1, "the no-sharding wrapper keeps the target");
    }

    #[test]
    fn dropped_targets_disappear_and_collapsing_identities_keep_the_last() {
        let rules = vec![
            RuleSpec {
                action: Some("drop".into()),
                source_labels: Some(vec!["env".into()]),
                regex: Some("dev".into()),
                ..Default::default()
            },
            // Rewrite every address to one host: all kept targets collapse to one identity.
            RuleSpec {
                action: Some("replace".into()),
                target_label: Some("__address__".into()),
                replacement: Some("shared:9100".into()),
                ..Default::default()
            },
        ];
        let groups = [group(
            &[
                &[("__address__", "a:1"), ("env", "prod"), ("n", "first")],
                &[("__address__", "b:1"), ("env", "dev"), ("n", "dropped")],
                &[("__address__", "c:1"), ("env", "prod"), ("n", "last")],
            ],
            &[],
        )];
        let rules_without_n = {
            let mut r = rules.clone();
            r.push(RuleSpec {
                action: Some("labeldrop".into()),
                regex: Some("n".into()),
                ..Default::default()
            });
            r
        };
        let built = build(&job("j", rules_without_n), FilterStrategy::RelabelConfig, &groups);
        assert_eq!(built.len(), 1);
        assert_eq!(&*built[0].target.address, "c:1", "served labels of the last target win");
        let built = build(&job("j", rules), FilterStrategy::RelabelConfig, &groups);
        assert_eq!(built.len(), 2, "distinct remaining labels keep identities apart");
    }

    #[test]
    fn seeds_fill_only_missing_or_empty_labels_and_take_part_in_identity() {
        let mut settings = job("node", vec![]);
        settings
            .params
            .insert("module".into(), vec!["http_2xx".into(), "ignored".into()]);
        let with_job_label = build(
            &settings,
            FilterStrategy::RelabelConfig,
            &[group(&[&[("__address__", "a:1"), ("job", "custom")]], &[])],
        );
        let without = build(
            &settings,
            FilterStrategy::RelabelConfig,
            &[group(&[&[("__address__", "a:1")]], &[])],
        );
        assert_ne!(
            with_job_label[0].id, without[0].id,
            "a discovered job label is kept, not overwritten"
        );

        let unfiltered = build(
            &settings,
            FilterStrategy::Disabled,
            &[group(&[&[("__address__", "a:1")]], &[])],
        );
        assert_ne!(
            unfiltered[0].id, without[0].id,
            "seeds are part of the filtered identity"
        );
        assert_eq!(FilterStrategy::from_config(""), FilterStrategy::Disabled);
        assert_eq!(
            FilterStrategy::from_config("relabel-config"),
            FilterStrategy::RelabelConfig
        );
    }

    #[test]
    fn the_same_address_in_two_jobs_is_two_targets() {
        let groups = [group(&[&[("__address__", "a:1")]], &[])];
        let first = build(&job("one", vec![]), FilterStrategy::RelabelConfig, &groups);
        let second = build(&job("two", vec![]), FilterStrategy::RelabelConfig, &groups);
        assert_ne!(first[0].id, second[0].id);
    }
}
