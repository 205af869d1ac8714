//! Target processing at scale, single thread, in upstream's benchmark shape
//! (docs/benchmarks.md, "Target processing"): 5 targets per group, 20 groups per job, about 40
//! EndpointSlice-style labels per target with a unique `target_id`.
//!
//! For each size it measures, in a fresh child process (so peak memory is per size):
//! - build: discovery groups → relabel (seed, no-sharding wrapper, the job's rules) → target
//!   identity → desired targets (the `relabel-config` filter, as upstream's default), without
//!   and with upstream's keep/drop variant (even jobs `keep .*` on `__address__`, odd `drop .*`);
//! - plan: the full plan from an empty table for 10 collectors, per strategy;
//! - incremental: 1% of the groups replaced by new ones, re-processed and planned incrementally
//!   against a table that holds the full allocation (balanced and consistent-hashing);
//! - peak resident memory (VmHWM) after build+plan, and at the end (table included).
//!
//! `cargo bench --bench processing` runs 100k and 1M; `-- --sizes 10000,100000` picks sizes;
//! `-- --parse FILE` times one parse of a file_sd JSON file (the scale benchmark's files,
//! kept with its `--keep`, are the ones to use).

use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use ta_raft::intern::Interner;
use ta_raft::model::Labels;
use target_allocator::allocation::StrategyName;
use target_allocator::allocation::StrategySettings;
use target_allocator::allocation::membership::ObservedCollector;
use target_allocator::allocation::membership::ObservedCollectors;
use target_allocator::allocation::membership::Readiness;
use target_allocator::allocation::planner;
use target_allocator::allocation::planner::Scope;
use target_allocator::allocation::strategy;
use target_allocator::discovery::TargetGroup;
use target_allocator::pipeline::DesiredState;
use target_allocator::relabel::Rule;
use target_allocator::relabel::RuleSpec;
use target_allocator::targets::FilterStrategy;
use target_allocator::targets::JobSettings;

const TARGETS_PER_GROUP: usize = 5;
const GROUPS_PER_JOB: usize = 20;

fn job_settings(index: usize, relabel_variant: bool) -> JobSettings {
    let rules = if relabel_variant {
        let action = if index.is_multiple_of(2) { "keep" } else { "drop" };
        let spec = RuleSpec {
            source_labels: Some(vec!["__address__".into()]),
            regex: Some(".*".into()),
            action: Some(action.into()),
            ..Default::default()
        };
        vec![Rule::new(&spec).expect("static rule")]
    } else {
        Vec::new()
    };
    JobSettings {
        name: format!("test-job-{index}"),
        scrape_interval: Duration::from_secs(30),
        scrape_timeout: Duration::from_secs(10),
        metrics_path: "/metrics".into(),
        scheme: "http".into(),
        params: Default::default(),
        rules,
    }
}

/// One EndpointSlice-like group: slice- and service-level labels on the group, endpoint-
/// and pod-level labels on each target. `generation` makes fresh target ids.
fn group(job: usize, group: usize, generation: usize, interner: &mut Interner) -> TargetGroup {
    let mut labels = |pairs: Vec<(&str, String)>| {
        Labels::new(
            pairs
                .into_iter()
                .map(|(n, v)| (interner.intern(n), interner.intern(&v)))
                .collect(),
        )
    };
    let service = format!("service-{job}");
    let group_labels = labels(vec![
        ("__meta_kubernetes_namespace", format!("namespace-{}", job % 50)),
        (
            "__meta_kubernetes_endpointslice_name",
            format!("{service}-slice-{group}"),
        ),
        ("__meta_kubernetes_endpointslice_address_type", "IPv4".into()),
        (
            "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name",
            service.clone(),
        ),
        (
            "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name",
            "true".into(),
        ),
        (
            "__meta_kubernetes_endpointslice_label_endpointslice_kubernetes_io_managed_by",
            "endpointslice-controller.k8s.io".into(),
        ),
        (
            "__meta_kubernetes_endpointslice_labelpresent_endpointslice_kubernetes_io_managed_by",
            "true".into(),
        ),
        ("__meta_kubernetes_service_name", service.clone()),
        ("__meta_kubernetes_service_label_app", format!("app-{job}")),
        ("__meta_kubernetes_service_labelpresent_app", "true".into()),
        (
            "__meta_kubernetes_service_annotation_prometheus_io_scrape",
            "true".into(),
        ),
        (
            "__meta_kubernetes_service_annotationpresent_prometheus_io_scrape",
            "true".into(),
        ),
    ]);
    let targets = (0..TARGETS_PER_GROUP)
        .map(|t| {
            let serial = ((job * GROUPS_PER_JOB + group) * TARGETS_PER_GROUP + t) as u64;
            let ip = format!("10.{}.{}.{}", (serial >> 16) & 255, (serial >> 8) & 255, serial & 255);
            let pod = format!("{service}-{:x}-{t}", serial ^ 0x5a5a);
            let node = format!("node-{}", serial % 100);
            labels(vec![
                ("__address__", format!("{ip}:8080")),
                ("__meta_kubernetes_endpointslice_port", "8080".into()),
                ("__meta_kubernetes_endpointslice_port_name", "metrics".into()),
                ("__meta_kubernetes_endpointslice_port_protocol", "TCP".into()),
                ("__meta_kubernetes_endpointslice_port_app_protocol", "http".into()),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_ready",
                    "true".into(),
                ),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_serving",
                    "true".into(),
                ),
                (
                    "__meta_kubernetes_endpointslice_endpoint_conditions_terminating",
                    "false".into(),
                ),
                ("__meta_kubernetes_endpointslice_endpoint_hostname", pod.clone()),
                ("__meta_kubernetes_endpointslice_endpoint_node_name", node.clone()),
                (
                    "__meta_kubernetes_endpointslice_endpoint_zone",
                    format!("zone-{}", serial % 3),
                ),
                ("__meta_kubernetes_endpointslice_address_target_kind", "Pod".into()),
                ("__meta_kubernetes_endpointslice_address_target_name", pod.clone()),
                ("__meta_kubernetes_pod_name", pod.clone()),
                ("__meta_kubernetes_pod_ip", ip.clone()),
                ("__meta_kubernetes_pod_label_app", format!("app-{job}")),
                ("__meta_kubernetes_pod_labelpresent_app", "true".into()),
                (
                    "__meta_kubernetes_pod_label_pod_template_hash",
                    format!("{:x}", job * 7919),
                ),
                ("__meta_kubernetes_pod_labelpresent_pod_template_hash", "true".into()),
                ("__meta_kubernetes_pod_container_name", "app".into()),
                ("__meta_kubernetes_pod_container_port_name", "metrics".into()),
                ("__meta_kubernetes_pod_container_port_number", "8080".into()),
                ("__meta_kubernetes_pod_container_port_protocol", "TCP".into()),
                ("__meta_kubernetes_pod_ready", "true".into()),
                ("__meta_kubernetes_pod_phase", "Running".into()),
                ("__meta_kubernetes_pod_node_name", node),
                (
                    "__meta_kubernetes_pod_host_ip",
                    format!("192.168.{}.{}", (serial >> 8) & 255, serial & 255),
                ),
                (
                    "__meta_kubernetes_pod_uid",
                    format!("{:032x}", serial.wrapping_mul(0x9e3779b97f4a7c15)),
                ),
                ("__meta_kubernetes_pod_controller_kind", "ReplicaSet".into()),
                ("__meta_kubernetes_pod_controller_name", format!("{service}-rs")),
                ("target_id", format!("{serial}-{generation}")),
            ])
        })
        .collect();
    TargetGroup {
        source: format!("{job}/{group}").into(),
        targets,
        labels: group_labels,
    }
}

fn peak_resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn collectors(count: usize) -> ObservedCollectors {
    (0..count)
        .map(|c| {
            (
                format!("collector-{c}"),
                ObservedCollector {
                    node: Some(format!("node-{c}")),
                    readiness: Readiness::Ready,
                },
            )
        })
        .collect()
}

fn settings(name: StrategyName) -> StrategySettings {
    StrategySettings {
        strategy: name,
        fallback: (name == StrategyName::PerNode).then_some(StrategyName::ConsistentHashing),
        ..Default::default()
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// One size, one variant, in this process. Prints one Markdown row per measurement.
fn child(targets: usize, relabel_variant: bool, incremental: bool, only: Option<&str>) {
    let jobs = targets / (TARGETS_PER_GROUP * GROUPS_PER_JOB);
    let mut interner = Interner::default();
    let settings_per_job: Vec<JobSettings> = (0..jobs).map(|j| job_settings(j, relabel_variant)).collect();
    let groups: Vec<Vec<Arc<TargetGroup>>> = (0..jobs)
        .map(|j| {
            (0..GROUPS_PER_JOB)
                .map(|g| Arc::new(group(j, g, 0, &mut interner)))
                .collect()
        })
        .collect();
    let baseline = peak_resident_bytes();
    let variant = if relabel_variant {
        "keep/drop relabel"
    } else {
        "no rules"
    };

    let started = Instant::now();
    let mut state = DesiredState::new();
    // As the leader does before a round that starts from nothing.
    state.reserve(groups.iter().flatten().map(|g| g.targets.len()).sum());
    for (job, job_groups) in settings_per_job.iter().zip(&groups) {
        state.update_job(job, FilterStrategy::RelabelConfig, job_groups);
    }
    let build_ms = ms(started);
    let kept = state.desired().len();
    println!("| {targets} | {variant} | build (relabel, identity, dedup) | {build_ms:.1} ms | {kept} kept |");

    let observed = collectors(10);
    let empty = ta_raft::Table::new();
    let mut full_plans = Vec::new();
    for name in [
        StrategyName::ConsistentHashing,
        StrategyName::LeastWeighted,
        StrategyName::PerNode,
        StrategyName::Balanced,
    ] {
        if only.is_some_and(|only| only != name.as_str()) {
            continue;
        }
        let strategy = strategy::build(&settings(name)).expect("valid settings");
        let started = Instant::now();
        let plan = planner::plan(&planner::PlanInput {
            table: &empty,
            desired: state.desired(),
            scope: Scope::Everything,
            collectors: &observed,
            strategy: strategy.as_ref(),
            grace_period: Duration::from_secs(30),
            now_unix_millis: 1_000_000,
            rebalance_budget: None,
        });
        let plan_ms = ms(started);
        println!(
            "| {targets} | {variant} | full plan, {} | {plan_ms:.1} ms | build + plan {:.1} ms |",
            name.as_str(),
            build_ms + plan_ms
        );
        full_plans.push((name, plan.commands));
    }
    let after_plan = peak_resident_bytes();
    println!(
        "| {targets} | {variant} | peak resident after build + 4 plans | {:.0} MiB | {:.0} bytes per target (over the {:.0} MiB of generated groups) |",
        after_plan as f64 / 1048576.0,
        (after_plan.saturating_sub(baseline)) as f64 / targets as f64,
        baseline as f64 / 1048576.0
    );
    if !incremental {
        return;
    }

    let original_groups = groups.clone();
    drop(state);
    for (name, commands) in full_plans {
        if name != StrategyName::ConsistentHashing && name != StrategyName::Balanced {
            continue;
        }
        let strategy = strategy::build(&settings(name)).expect("valid settings");
        let started = Instant::now();
        let mut table = empty.clone();
        for command in &commands {
            table = ta_raft::apply::apply(&table, table.revision + 1, command).table;
        }
        let apply_ms = ms(started);
        drop(commands);
        // The table holds the original groups' allocation; start from them again.
        let mut groups = original_groups.clone();
        let mut state = DesiredState::new();
        for (job, job_groups) in settings_per_job.iter().zip(&groups) {
            state.update_job(job, FilterStrategy::RelabelConfig, job_groups);
        }
        // 1% of the groups are replaced by groups of new targets (pods rolled).
        let mut changed_groups = 0;
        for (j, job_groups) in groups.iter_mut().enumerate() {
            for (g, slot) in job_groups.iter_mut().enumerate() {
                if (j * GROUPS_PER_JOB + g).is_multiple_of(100) {
                    *slot = Arc::new(group(j, g, 1 + name as usize, &mut interner));
                    changed_groups += 1;
                }
            }
        }
        let started = Instant::now();
        let mut changed = Vec::new();
        for (job, job_groups) in settings_per_job.iter().zip(&groups) {
            changed.extend(state.update_job(job, FilterStrategy::RelabelConfig, job_groups));
        }
        let update_ms = ms(started);
        let started = Instant::now();
        let plan = planner::plan(&planner::PlanInput {
            table: &table,
            desired: state.desired(),
            scope: Scope::Changed(&changed),
            collectors: &observed,
            strategy: strategy.as_ref(),
            grace_period: Duration::from_secs(30),
            now_unix_millis: 1_000_000,
            rebalance_budget: None,
        });
        let plan_ms = ms(started);
        println!(
            "| {targets} | {variant} | incremental 1% ({changed_groups} groups, {} ids changed), {} | {:.1} ms | re-process {update_ms:.1} ms + plan {plan_ms:.1} ms ({} added, {} removed, {} moved); setup apply of the full plan {apply_ms:.0} ms |",
            changed.len(),
            name.as_str(),
            update_ms + plan_ms,
            plan.summary.targets_added,
            plan.summary.targets_removed,
            plan.summary.targets_moved,
        );
    }
    println!(
        "| {targets} | {variant} | peak resident at the end (tables included) | {:.0} MiB | |",
        peak_resident_bytes() as f64 / 1048576.0
    );
}

/// `--parse FILE`: one parse of a file_sd JSON file into interned groups, as a replica's
/// first round does (a fresh process, so every string is new to it), timed.
fn parse_file(path: &str) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("processing: cannot read {path}: {e}");
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    let parsed = target_allocator::discovery::group_list::parse_json_groups(
        &bytes,
        path,
        ("__meta_filepath", path),
        &mut Interner::default(),
    );
    let elapsed = started.elapsed();
    match parsed {
        Ok(groups) => println!(
            "| parse {path} | {} groups, {:.1} MB | {:.1} ms | {:.0} MB/s |",
            groups.len(),
            bytes.len() as f64 / 1e6,
            elapsed.as_secs_f64() * 1e3,
            bytes.len() as f64 / 1e6 / elapsed.as_secs_f64()
        ),
        Err(e) => {
            eprintln!("processing: {path}: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--parse") {
        let Some(path) = args.get(position + 1) else {
            eprintln!("processing: --parse needs a file");
            std::process::exit(2);
        };
        parse_file(path);
        return;
    }
    if let Some(position) = args.iter().position(|a| a == "--child") {
        let targets: usize = args.get(position + 1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
        let relabel_variant = args.iter().any(|a| a == "--relabel");
        let incremental = args.iter().any(|a| a == "--incremental");
        // `--only <strategy>`: plan with that strategy alone (for profiling one plan).
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|p| args.get(p + 1))
            .map(String::as_str);
        child(targets, relabel_variant, incremental, only);
        return;
    }
    let sizes: Vec<usize> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|p| args.get(p + 1))
        .map(|list| list.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("processing: cannot find this benchmark's own executable");
        std::process::exit(1);
    };
    println!("| targets | variant | measurement | time / memory | detail |");
    println!("|---|---|---|---|---|");
    for &size in &sizes {
        for relabel in [false, true] {
            eprintln!("processing: {size} targets, relabel variant: {relabel}");
            let mut child = Process::new(&exe);
            child.arg("--child").arg(size.to_string());
            if relabel {
                child.arg("--relabel");
            } else {
                child.arg("--incremental");
            }
            match child.status() {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("processing: child for {size} targets failed: {status}"),
                Err(e) => eprintln!("processing: cannot start child: {e}"),
            }
        }
    }
}
