//! From discovered target groups to allocatable targets, as upstream builds them
//! (docs/allocation.md, "Targets"): merge group and target labels into the served labels, seed
//! the job's defaults, run the job's relabel rules inside the no-sharding wrapper, drop what
//! they drop, hash the identity, and keep the last target of each identity.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::time::Duration;

use rustc_hash::FxHashMap;
use ta_raft::TargetId;

use ta_raft::intern::Symbol;
use ta_raft::model::IdentityHasher;
use ta_raft::model::LabelMerger;
use ta_raft::model::Labels;
use ta_raft::model::string_hash;

use crate::allocation::desired::DesiredTarget;
use crate::allocation::desired::NODE_LABELS;
use crate::allocation::desired::SLICE_TARGET_KIND;
use crate::allocation::desired::SLICE_TARGET_NAME;
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
pub fn served_labels(group_labels: &Labels, target_labels: &Labels) -> Labels {
    Labels::merge(group_labels, target_labels, &mut LabelMerger::new())
}

/// What a label name means to target building, by its position in a served label set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Part of the identity as it is.
    Plain,
    /// `__meta_*`: served, never part of the identity.
    Meta,
    /// A name seeding sets (index into the job's seeds).
    Seed(u8),
    /// The no-sharding label, which the wrapper sets and deletes.
    DisableSharding,
}

/// Where a position's value goes besides the identity.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    Address,
    /// One of `NODE_LABELS`, by its index there (its rank of preference).
    Node(u8),
    SliceTargetKind,
    SliceTargetName,
}

/// The positions that matter in served label sets with one sequence of names: worked out
/// once by text and reused, by symbol number, for every target with the same names (the
/// targets of a group, and most groups of a job).
#[derive(Default)]
struct Layout {
    /// The names, held so that their numbers stay theirs.
    names: Vec<Symbol>,
    /// Each name's role and mark, and its [`string_hash`] (for names that can be in an
    /// identity).
    roles: Vec<(Role, Mark, u64)>,
    /// The positions whose label is not a `__meta_*` one without a mark, in name order, with
    /// where each pair sits in served sets of `placed_for`'s layout: all a target's read
    /// looks at (in Kubernetes-style sets, 5 labels of 43).
    relevant: Vec<((u8, u32), Role, Mark, u64)>,
    /// The merger layout `relevant` was placed for (`None`: only the set it was placed from).
    placed_for: Option<u64>,
}

impl Layout {
    fn fits(&self, served: &Labels) -> bool {
        self.names.len() == served.len()
            && self
                .names
                .iter()
                .zip(served.pair_iter())
                .all(|(name, (other, _))| name.id() == other.id())
    }

    fn new(served: &Labels, seeds: &[(Symbol, String)], disable_sharding: &Symbol) -> Self {
        let names: Vec<Symbol> = served.pair_iter().map(|(name, _)| name.clone()).collect();
        let roles = names
            .iter()
            .map(|name| {
                let text = name.as_str();
                let role = if let Some(i) = seeds.iter().position(|(seed, _)| seed == name) {
                    // `identity_without_rules` refuses jobs with more than 64 seeds first.
                    Role::Seed(i as u8)
                } else if name == disable_sharding {
                    Role::DisableSharding
                } else if text.starts_with("__meta_") {
                    Role::Meta
                } else {
                    Role::Plain
                };
                let mark = if text == "__address__" {
                    Mark::Address
                } else if let Some(k) = NODE_LABELS.iter().position(|node| *node == text) {
                    Mark::Node(k as u8)
                } else if text == SLICE_TARGET_KIND {
                    Mark::SliceTargetKind
                } else if text == SLICE_TARGET_NAME {
                    Mark::SliceTargetName
                } else {
                    Mark::None
                };
                let hash = if role == Role::Meta { 0 } else { string_hash(text) };
                (role, mark, hash)
            })
            .collect();
        Self {
            names,
            roles,
            relevant: Vec::new(),
            placed_for: None,
        }
    }

    /// Work out where the relevant pairs sit in `served`, whose names are this layout's.
    fn place(&mut self, served: &Labels, layout: Option<u64>) {
        self.relevant.clear();
        for (position, &(role, mark, hash)) in served.positions().into_iter().zip(&self.roles) {
            if role != Role::Meta || mark != Mark::None {
                self.relevant.push((position, role, mark, hash));
            }
        }
        self.placed_for = layout;
    }
}

/// What one pass over a target's served labels found.
struct Read {
    /// `None` when the caller must relabel to know it.
    id: Option<TargetId>,
    /// [`DesiredTarget::address_hash`] of the `__address__` found.
    address_hash: u64,
    node: Option<Symbol>,
}

/// A job prepared for building its targets: what seeding sets, computed once per pass
/// instead of once per target, and the caches that make the targets of a group cheap.
pub struct PreparedJob<'a> {
    pub settings: &'a JobSettings,
    kept: JobPreparation,
}

/// What [`PreparedJob`] works out for a job, kept between passes ([`PreparedJob::resume`]):
/// a 1% change at a million targets touches 2,000 jobs of 100 targets, and preparing each
/// again (its seeds interned, its label layout worked out by text) cost more than building
/// its changed targets.
pub struct JobPreparation {
    symbol: Symbol,
    filter: FilterStrategy,
    /// What the seeds were made from.
    seeded_from: SeedInputs,
    /// Prometheus's `PopulateDiscoveredLabels` defaults in the order it sets them.
    seeds: Vec<(Symbol, String)>,
    /// The [`string_hash`] of each seed's name and value, and of the job name.
    seed_hashes: Vec<(u64, u64)>,
    job_hash: u64,
    disable_sharding: Symbol,
    merger: LabelMerger,
    layout: Layout,
    /// Reused for every target, so its buffer is allocated once.
    hasher: IdentityHasher,
}

/// The settings seeding reads.
#[derive(PartialEq)]
struct SeedInputs {
    name: String,
    scrape_interval: Duration,
    scrape_timeout: Duration,
    metrics_path: String,
    scheme: String,
    params: BTreeMap<String, Vec<String>>,
}

impl SeedInputs {
    fn of(settings: &JobSettings) -> Self {
        Self {
            name: settings.name.clone(),
            scrape_interval: settings.scrape_interval,
            scrape_timeout: settings.scrape_timeout,
            metrics_path: settings.metrics_path.clone(),
            scheme: settings.scheme.clone(),
            params: settings.params.clone(),
        }
    }

    fn matches(&self, settings: &JobSettings) -> bool {
        self.name == settings.name
            && self.scrape_interval == settings.scrape_interval
            && self.scrape_timeout == settings.scrape_timeout
            && self.metrics_path == settings.metrics_path
            && self.scheme == settings.scheme
            && self.params == settings.params
    }
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
        let seed_hashes = seeds
            .iter()
            .map(|(name, value)| (string_hash(name.as_str()), string_hash(value)))
            .collect();
        Self {
            settings,
            kept: JobPreparation {
                symbol: Symbol::from(settings.name.as_str()),
                filter,
                seeded_from: SeedInputs::of(settings),
                seeds,
                seed_hashes,
                job_hash: string_hash(&settings.name),
                disable_sharding: Symbol::from(DISABLE_SHARDING),
                merger: LabelMerger::new(),
                layout: Layout::default(),
                hasher: IdentityHasher::new(),
            },
        }
    }

    /// [`PreparedJob::new`], reusing what an earlier pass kept when it was made for the same
    /// seeds and filter (the rules are read from `settings` each time).
    pub fn resume(settings: &'a JobSettings, filter: FilterStrategy, kept: Option<JobPreparation>) -> Self {
        match kept {
            Some(kept) if kept.filter == filter && kept.seeded_from.matches(settings) => Self { settings, kept },
            _ => Self::new(settings, filter),
        }
    }

    /// What to keep for the next pass over this job.
    pub fn keep(self) -> JobPreparation {
        self.kept
    }

    /// Make the layout `served`'s: kept as it is for a set the merger laid out as the last
    /// one, roles worked out again only when the names differ.
    fn refresh_layout(&mut self, served: &Labels) {
        let laid_out = self.kept.merger.last_layout();
        if laid_out.is_some() && laid_out == self.kept.layout.placed_for {
            return;
        }
        if !self.kept.layout.fits(served) {
            self.kept.layout = Layout::new(served, &self.kept.seeds, &self.kept.disable_sharding);
        }
        self.kept.layout.place(served, laid_out);
    }

    /// One pass over a target's served labels: its address and node (see [`node_of`]), and,
    /// when the job has no relabel rules (`identity`), its identity as [`relabel_builder`]
    /// then [`TargetId::compute`] give it, without building labels (`None` for a job with
    /// more seeds than this tracks; the caller builds them then).
    ///
    /// [`node_of`]: crate::allocation::desired::node_of
    fn read(&mut self, served: &Labels, identity: bool) -> Read {
        let identity = identity && self.kept.seeds.len() <= 64;
        let disabled = self.kept.filter == FilterStrategy::Disabled;
        self.refresh_layout(served);
        let layout = &self.kept.layout;
        let hasher = &mut self.kept.hasher;
        // A seed is set where the discovered value is empty or absent; setting an empty value
        // deletes. Either way a discovered label of that name is no longer untouched, and
        // neither is the no-sharding label, which is set and then deleted. The untouched
        // labels hash first, in name order, then the ones seeding set, in seed order.
        let mut discovered: u64 = 0;
        let mut address = None;
        let mut nodes: [Option<&Symbol>; NODE_LABELS.len()] = [None; NODE_LABELS.len()];
        let (mut slice_kind, mut slice_name) = (None, None);
        for &(position, role, mark, name_hash) in &layout.relevant {
            let (_, value) = served.pair_at(position);
            match mark {
                Mark::None => {}
                Mark::Address => address = Some(value),
                Mark::Node(k) => nodes[k as usize] = Some(value),
                Mark::SliceTargetKind => slice_kind = Some(value),
                Mark::SliceTargetName => slice_name = Some(value),
            }
            if !identity {
                continue;
            }
            match role {
                Role::Meta => {}
                Role::Plain => hasher.add_hashed(name_hash, value.text_hash()),
                _ if disabled => hasher.add_hashed(name_hash, value.text_hash()),
                Role::DisableSharding => {}
                Role::Seed(i) => {
                    if !value.is_empty() {
                        discovered |= 1 << i;
                        hasher.add_hashed(name_hash, value.text_hash());
                    }
                }
            }
        }
        let id = identity.then(|| {
            if !disabled {
                let seeds = self.kept.seeds.iter().zip(&self.kept.seed_hashes);
                for (i, ((_, value), &(name_hash, value_hash))) in seeds.enumerate() {
                    if discovered & (1 << i) == 0 && !value.is_empty() {
                        hasher.add_hashed(name_hash, value_hash);
                    }
                }
            }
            hasher.finish(self.kept.job_hash)
        });
        let node = nodes
            .iter()
            .flatten()
            .find(|value| !value.is_empty())
            .copied()
            .or_else(|| match (slice_kind, slice_name) {
                (Some(kind), Some(name)) if kind.as_str() == "Node" && !name.is_empty() => Some(name),
                _ => None,
            });
        Read {
            id,
            address_hash: DesiredTarget::hash_address(address.map_or("", |a| a.as_str())),
            node: node.cloned(),
        }
    }
}

/// Build the allocatable targets of `job` from one discovered group. Targets that collapse
/// to one identity are one target; the last one wins (upstream §4.4).
pub fn build_group(job: &mut PreparedJob<'_>, group: &TargetGroup) -> Vec<AllocatableTarget> {
    let mut built = Vec::with_capacity(group.targets.len());
    build_group_into(job, group, &mut built);
    built
}

/// [`build_group`] into `built` (emptied first), for a caller building many groups with one
/// buffer instead of an allocation per group.
pub fn build_group_into(job: &mut PreparedJob<'_>, group: &TargetGroup, built: &mut Vec<AllocatableTarget>) {
    built.clear();
    // A static config can hold thousands of targets in one group: find repeats by id there;
    // a small group is searched in place.
    let mut positions: FxHashMap<TargetId, usize> = FxHashMap::default();
    let many = group.targets.len() > 16;
    let without_rules = job.settings.rules.is_empty();
    for target_labels in &group.targets {
        let served = Labels::merge(&group.labels, target_labels, &mut job.kept.merger);
        let read = job.read(&served, without_rules);
        let id = match read.id {
            Some(id) => id,
            None => {
                let Some(builder) = relabel_builder(job, LabelBuilder::from_labels(served.clone())) else {
                    continue;
                };
                TargetId::compute(&job.settings.name, builder.range())
            }
        };
        let target = DesiredTarget::with_address_hash(job.kept.symbol.clone(), served, read.node, read.address_hash);
        let existing = if many {
            positions.get(&id).copied()
        } else {
            built.iter().position(|b| b.id == id)
        };
        match existing {
            Some(index) => built[index].target = target,
            None => {
                if many {
                    positions.insert(id, built.len());
                }
                built.push(AllocatableTarget { id, target });
            }
        }
    }
}

/// Build the allocatable targets of `job` from its discovered `groups` (see [`build_group`]).
pub fn build(job: &JobSettings, filter: FilterStrategy, groups: &[TargetGroup]) -> Vec<AllocatableTarget> {
    let mut prepared = PreparedJob::new(job, filter);
    let mut by_id: HashMap<TargetId, usize> = HashMap::new();
    let mut built: Vec<AllocatableTarget> = Vec::new();
    for group in groups {
        for target in build_group(&mut prepared, group) {
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
    if job.kept.filter == FilterStrategy::RelabelConfig {
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
    for (name, value) in &job.kept.seeds {
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
            "__meta_kubernetes_pod_node_name",
            "__meta_kubernetes_node_name",
            "__meta_kubernetes_endpoint_node_name",
            SLICE_TARGET_KIND,
            SLICE_TARGET_NAME,
        ];
        let values = ["", "a", "/metrics", "http", "30s", "Node"];
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
                let mut prepared = PreparedJob::new(&settings, filter);
                let read = prepared.read(&served, true);
                let fast = read.id.expect("few seeds");
                assert_eq!(
                    read.node.as_deref(),
                    crate::allocation::desired::node_of(&served),
                    "seed {seed}, case {case}, node of {served:?}"
                );
                let address = served.get("__address__").unwrap_or("");
                assert_eq!(read.address_hash, DesiredTarget::hash_address(address));
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
            let replayed = Labels::merge(&group, target, &mut merger);
            let mut expected: std::collections::BTreeMap<&str, &str> = group.iter().collect();
            expected.extend(target.iter());
            assert_eq!(
                replayed.iter().collect::<Vec<_>>(),
                expected.into_iter().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn without_filtering_ids_are_the_job_and_the_discovered_labels() {
        // Upstream's golden targets (no relabeling): four distinct identities, each the hash
        // of its label sequence and job.
        let cases = [
            ("test-job", "test-value"),
            ("test-job", "test-value2"),
            ("test-job2", "test-value2"),
            ("test-job2", "test-value3"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (name, value) in cases {
            let built = build(
                &job(name, vec![]),
                FilterStrategy::Disabled,
                &[group(&[&[("test_label", value)]], &[])],
            );
            assert_eq!(
                built[0].id,
                TargetId::compute(name, [("test_label", value)]),
                "{name} {value}"
            );
            assert!(seen.insert(built[0].id), "{name} {value}");
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
        assert_eq!(built[0].target.address(), "10.0.0.1:80");
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
        assert_eq!(built[0].target.address(), "c:1", "served labels of the last target win");
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
