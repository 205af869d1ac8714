//! Differential test: our seeding and relabeling against Prometheus's own, as printed by
//! `promtool check service-discovery` from the Debian `prometheus` package (`.ci/run`
//! installs it). Seeded random jobs of static targets and relabel rules; for every target,
//! both must agree on whether it is kept and on its final labels.
//!
//! promtool reports the labels after Prometheus's own last step (`PopulateLabels`): it drops
//! a target without `__address__`, adds the scheme's default port, removes `__meta_*` labels
//! and adds `instance`. The allocator does not do that step (the collector does), so the test
//! applies it to our output before comparing. Known, documented gap (docs/allocation.md,
//! as upstream): a target whose rules delete `__address__` is kept by the allocator.
//!
//! `TA_TEST_SEED=<seed>` replays a run; every failure prints the seed and the config.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::Value;
use serde_json::json;
use target_allocator::relabel::Rule;
use target_allocator::relabel::RuleSpec;
use target_allocator::targets::FilterStrategy;
use target_allocator::targets::JobSettings;
use target_allocator::targets::relabel_target;

const JOBS: usize = 12;
const GROUPS_PER_JOB: usize = 6;
const TARGETS_PER_GROUP: usize = 4;

const NAMES: [&str; 8] = ["env", "team", "zone", "app", "__meta_pod", "__meta_ns", "tier", "job"];
const VALUES: [&str; 10] = ["prod", "dev", "a", "B", "x-1", "10", "Foo-Bar", "a;b", "", "\u{663}9"];
const REGEXES: [&str; 12] = [
    "(.*)",
    "(.+)",
    "prod|dev",
    "(\\w+)-(\\d+)",
    "([^;]*);(.*)",
    "a.*",
    "[A-Z].*",
    "(\\d+)",
    "__meta_(.+)",
    "(env|team)",
    "zone|tier",
    "x-.*",
];
const TARGET_LABELS: [&str; 6] = ["new", "copy", "env", "${1}_x", "tier", "shard"];
const REPLACEMENTS: [&str; 6] = ["$1", "${2}", "fixed", "$1-$2", "", "v_${1}"];

fn seed() -> u64 {
    std::env::var("TA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random)
}

fn pick<'a>(rng: &mut StdRng, from: &[&'a str]) -> &'a str {
    from.choose(rng).expect("non-empty")
}

fn sources(rng: &mut StdRng) -> Option<Vec<String>> {
    let count = rng.gen_range(1..=2);
    Some((0..count).map(|_| pick(rng, &NAMES).to_string()).collect())
}

/// A random rule our validation accepts (Prometheus must accept it too).
fn random_rule(rng: &mut StdRng) -> RuleSpec {
    loop {
        let action = pick(
            rng,
            &[
                "replace",
                "replace",
                "keep",
                "drop",
                "keepequal",
                "dropequal",
                "hashmod",
                "labelmap",
                "labeldrop",
                "labelkeep",
                "lowercase",
                "uppercase",
            ],
        );
        let mut spec = RuleSpec {
            action: Some(action.to_string()),
            ..Default::default()
        };
        match action {
            "replace" => {
                spec.source_labels = sources(rng);
                spec.regex = Some(pick(rng, &REGEXES).to_string());
                spec.target_label = Some(pick(rng, &TARGET_LABELS).to_string());
                spec.replacement = Some(pick(rng, &REPLACEMENTS).to_string());
            }
            "keep" | "drop" => {
                spec.source_labels = sources(rng);
                spec.regex = Some(pick(rng, &REGEXES).to_string());
            }
            "keepequal" | "dropequal" => {
                spec.source_labels = sources(rng);
                spec.target_label = Some(pick(rng, &["env", "team", "zone"]).to_string());
            }
            "hashmod" => {
                spec.source_labels = sources(rng);
                spec.target_label = Some("shard".to_string());
                spec.modulus = Some(*[1u64, 2, 7, 1000].choose(rng).expect("non-empty"));
            }
            "labelmap" => {
                spec.regex = Some(pick(rng, &["__meta_(.+)", "(env|team)", "(.*)o(.*)"]).to_string());
                spec.replacement = Some(pick(rng, &["$1", "m_$1", "${1}_${2}"]).to_string());
            }
            // Never remove `__address__` or the seeded `__*` labels: a target without an
            // address is the documented allocator gap, and promtool then stops reporting the
            // rest of its group.
            "labeldrop" => {
                spec.regex = Some(pick(rng, &["__meta_.*", "env|team", "z.*", "tier|app"]).to_string());
            }
            "labelkeep" => {
                spec.regex = Some(
                    pick(
                        rng,
                        &[
                            "__.*|env|team|zone|app|tier|job|shard|new|copy|lower|upper",
                            "__.*|env",
                            "__.*|job|zone",
                        ],
                    )
                    .to_string(),
                );
            }
            _ => {
                spec.source_labels = sources(rng);
                spec.target_label = Some(pick(rng, &["lower", "upper", "env"]).to_string());
            }
        }
        if Rule::new(&spec).is_ok() {
            return spec;
        }
    }
}

fn rule_json(spec: &RuleSpec) -> Value {
    let mut rule = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        rule.insert(key.to_string(), value);
    };
    if let Some(v) = &spec.source_labels {
        put("source_labels", json!(v));
    }
    if let Some(v) = &spec.separator {
        put("separator", json!(v));
    }
    if let Some(v) = &spec.regex {
        put("regex", json!(v));
    }
    if let Some(v) = spec.modulus {
        put("modulus", json!(v));
    }
    if let Some(v) = &spec.target_label {
        put("target_label", json!(v));
    }
    if let Some(v) = &spec.replacement {
        put("replacement", json!(v));
    }
    if let Some(v) = &spec.action {
        put("action", json!(v));
    }
    Value::Object(rule)
}

struct Case {
    job: JobSettings,
    config: Value,
    /// Served labels of each target, in the order promtool reports them.
    targets: Vec<Vec<(String, String)>>,
}

fn random_case(rng: &mut StdRng, index: usize) -> Case {
    let name = format!("job-{index}");
    let rule_count = rng.gen_range(1..=5);
    let specs: Vec<RuleSpec> = (0..rule_count).map(|_| random_rule(rng)).collect();
    let mut groups = Vec::new();
    let mut targets = Vec::new();
    for g in 0..GROUPS_PER_JOB {
        let mut labels = BTreeMap::new();
        for _ in 0..rng.gen_range(0..=4) {
            let value = pick(rng, &VALUES);
            let name = pick(rng, &NAMES);
            // An empty value in a static config is no label at all; the `job` label is the
            // job's own, not a static one.
            if !value.is_empty() && name != "job" {
                labels.insert(name.to_string(), value.to_string());
            }
        }
        let addresses: Vec<String> = (0..TARGETS_PER_GROUP)
            .map(|t| match rng.gen_range(0..4) {
                0 => format!("host-{g}-{t}"),
                _ => format!("10.{index}.{g}.{t}:{}", [9100, 8080, 80][t % 3]),
            })
            .collect();
        for address in &addresses {
            let mut served: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            served.push(("__address__".to_string(), address.clone()));
            served.sort();
            targets.push(served);
        }
        groups.push(json!({ "targets": addresses, "labels": labels }));
    }
    let config = json!({
        "job_name": name,
        "scrape_interval": "30s",
        "scrape_timeout": "10s",
        "metrics_path": "/metrics",
        "scheme": "http",
        "params": { "module": ["http_2xx"] },
        "relabel_configs": specs.iter().map(rule_json).collect::<Vec<_>>(),
        "static_configs": groups,
    });
    let job = JobSettings {
        name,
        scrape_interval: Duration::from_secs(30),
        scrape_timeout: Duration::from_secs(10),
        metrics_path: "/metrics".to_string(),
        scheme: "http".to_string(),
        params: [("module".to_string(), vec!["http_2xx".to_string()])].into(),
        rules: specs.iter().map(|s| Rule::new(s).expect("generated valid")).collect(),
    };
    Case { job, config, targets }
}

/// Prometheus's `PopulateLabels` after relabeling, applied to our labels for comparison.
/// `None`: Prometheus drops the target.
fn as_prometheus_reports(mut labels: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    let address = labels.get("__address__")?.clone();
    let has_port = address.rsplit_once(':').is_some_and(|(_, port)| !port.is_empty());
    let address = if has_port { address } else { format!("{address}:80") };
    labels.insert("__address__".to_string(), address.clone());
    labels.retain(|name, _| !name.starts_with("__meta_"));
    labels.entry("instance".to_string()).or_insert(address);
    Some(labels)
}

fn promtool(config_path: &std::path::Path, job: &str) -> Vec<Value> {
    let output = Command::new("promtool")
        .args(["check", "service-discovery", "--timeout=1s"])
        .arg(config_path)
        .arg(job)
        .output()
        .expect(
            "promtool not found: install Debian's `prometheus` package (`apt-get install -y prometheus`); \
             .ci/run does this",
        );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "promtool output is not JSON ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[test]
fn seeding_and_relabeling_agree_with_promtool() {
    let seed = seed();
    println!("relabel differential seed = {seed} (replay with TA_TEST_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<Case> = (0..JOBS).map(|i| random_case(&mut rng, i)).collect();
    let config = json!({
        "global": { "scrape_interval": "30s", "scrape_timeout": "10s" },
        "scrape_configs": cases.iter().map(|c| c.config.clone()).collect::<Vec<_>>(),
    });
    // JSON is YAML: Prometheus reads it as is.
    let config_path = match std::env::var_os("TA_DIFFERENTIAL_CONFIG") {
        Some(path) => std::path::PathBuf::from(path),
        None => dir.path().join("prometheus.yml"),
    };
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");

    let mut compared = 0;
    let mut kept = 0;
    for case in &cases {
        let reported = promtool(&config_path, &case.job.name);
        assert_eq!(
            reported.len(),
            case.targets.len(),
            "seed {seed}: promtool reported {} targets for {}, expected {}",
            reported.len(),
            case.job.name,
            case.targets.len()
        );
        // promtool 2.42 neither keeps the configured order nor reports reliable
        // `discoveredLabels` (for some kept targets they already show relabeled labels).
        // Generated rules never rewrite `__address__` and addresses are unique per job, so
        // kept targets are matched by their final address; dropped ones by count.
        let mut theirs_kept: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut theirs_dropped = 0;
        for report in &reported {
            if report.get("error").is_some() {
                panic!(
                    "seed {seed}: promtool reported an error for {}: {report}\n  job: {}",
                    case.job.name, case.config
                );
            }
            let labels: BTreeMap<String, String> =
                serde_json::from_value(report["labels"].clone()).expect("labels map");
            match labels.get("__address__").cloned() {
                Some(address) => {
                    theirs_kept.insert(address, labels);
                }
                None => theirs_dropped += 1,
            }
        }
        let mut ours_dropped = 0;
        for served in &case.targets {
            let ours = relabel_target(&case.job, FilterStrategy::RelabelConfig, served)
                .map(|builder| builder.labels().into_iter().collect::<BTreeMap<_, _>>());
            let Some(expected) = ours.clone().and_then(as_prometheus_reports) else {
                ours_dropped += 1;
                continue;
            };
            let theirs = theirs_kept.remove(&expected["__address__"]);
            if theirs.as_ref() != Some(&expected) {
                panic!(
                    "seed {seed}: {} disagrees for served labels {served:?}\n  rules: {}\n  ours (before PopulateLabels): {ours:?}\n  ours as Prometheus reports: {expected:?}\n  promtool: {theirs:?}",
                    case.job.name,
                    serde_json::to_string(&case.config["relabel_configs"]).unwrap_or_default(),
                );
            }
            kept += 1;
        }
        assert!(
            theirs_kept.is_empty() && ours_dropped == theirs_dropped,
            "seed {seed}: {}: promtool kept {:?} that we drop ({ours_dropped} dropped by us, {theirs_dropped} by promtool)\n  rules: {}",
            case.job.name,
            theirs_kept.keys().collect::<Vec<_>>(),
            serde_json::to_string(&case.config["relabel_configs"]).unwrap_or_default(),
        );
        compared += case.targets.len();
    }
    println!("compared {compared} targets against promtool, {kept} kept");
    assert!(
        kept > 0 && kept < compared,
        "seed {seed}: a useful run keeps some targets and drops some"
    );
}
