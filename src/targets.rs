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
    if group_labels.is_empty() {
        return target_labels.clone();
    }
    let mut merged: Vec<(Symbol, Symbol)> = Vec::with_capacity(group_labels.len() + target_labels.len());
    let mut group = group_labels.pairs().iter().peekable();
    let mut target = target_labels.pairs().iter().peekable();
    loop {
        match (group.peek(), target.peek()) {
            (Some(g), Some(t)) => match g.0.cmp(&t.0) {
                std::cmp::Ordering::Less => merged.push((*group.next().expect("peeked")).clone()),
                std::cmp::Ordering::Greater => merged.push((*target.next().expect("peeked")).clone()),
                std::cmp::Ordering::Equal => {
                    group.next();
                    merged.push((*target.next().expect("peeked")).clone());
                }
            },
            (Some(_), None) => merged.extend(group.by_ref().cloned()),
            (None, Some(_)) => merged.extend(target.by_ref().cloned()),
            (None, None) => break,
        }
    }
    // Shared with the table's copy once applied (on the leader).
    Labels::shared(merged)
}

/// Build the allocatable targets of `job` from one discovered group. Targets that collapse
/// to one identity are one target; the last one wins (upstream §4.4).
pub fn build_group(
    job: &JobSettings,
    job_symbol: &Symbol,
    filter: FilterStrategy,
    group: &TargetGroup,
) -> Vec<AllocatableTarget> {
    let mut built: Vec<AllocatableTarget> = Vec::with_capacity(group.targets.len());
    // A static config can hold thousands of targets in one group: find repeats by id.
    let mut positions: HashMap<TargetId, usize> = HashMap::with_capacity(group.targets.len());
    for target_labels in &group.targets {
        let served = served_labels(&group.labels, target_labels);
        let Some(builder) = relabel_builder(job, filter, LabelBuilder::from_labels(served.clone())) else {
            continue;
        };
        let id = TargetId::compute(&job.name, builder.range());
        let address: Symbol = served
            .pairs()
            .iter()
            .find(|(n, _)| n.as_ref() == "__address__")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| Symbol::from(""));
        let node = node_of(&served).map(Symbol::from);
        let target = DesiredTarget {
            job: job_symbol.clone(),
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
    let job_symbol = Symbol::from(job.name.as_str());
    let mut by_id: HashMap<TargetId, usize> = HashMap::new();
    let mut built: Vec<AllocatableTarget> = Vec::new();
    for group in groups {
        for target in build_group(job, &job_symbol, filter, group) {
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
    relabel_builder(job, filter, base)
}

/// The label prometheus-operator's sharding `keep` reads. The allocator does not know the
/// collector's `SHARD`, so every job's rules run wrapped in setting it and deleting it
/// afterwards (upstream's no-sharding wrapper: a `replace` to `"true"` and a `labeldrop`,
/// which for this literal name are exactly a set and a delete). The served scrape config
/// never contains the wrapper.
const DISABLE_SHARDING: &str = "__tmp_disable_sharding";

fn relabel_builder(job: &JobSettings, filter: FilterStrategy, mut builder: LabelBuilder) -> Option<LabelBuilder> {
    if filter == FilterStrategy::RelabelConfig {
        seed(&mut builder, job);
        builder.set(DISABLE_SHARDING, "true");
        if !relabel::process(&job.rules, &mut builder) {
            return None;
        }
        builder.delete(DISABLE_SHARDING);
    }
    Some(builder)
}

/// Prometheus's `PopulateDiscoveredLabels` defaults, each set only if absent or empty.
fn seed(builder: &mut LabelBuilder, job: &JobSettings) {
    let mut set_default = |name: &str, value: &str| {
        if builder.get(name).is_empty() {
            builder.set(name, value);
        }
    };
    set_default("job", &job.name);
    set_default("__scrape_interval__", &prometheus_duration::format(job.scrape_interval));
    set_default("__scrape_timeout__", &prometheus_duration::format(job.scrape_timeout));
    set_default("__metrics_path__", &job.metrics_path);
    set_default("__scheme__", &job.scheme);
    for (name, values) in &job.params {
        if let Some(first) = values.first() {
            set_default(&format!("__param_{name}"), first);
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
