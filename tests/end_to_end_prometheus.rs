//! End to end with real collectors: three `target-allocator` replicas (child processes) and
//! Debian's `prometheus` servers discovering their targets through `http_sd_configs`, each
//! pointed at a different replica with its own `collector_id`, as the OpenTelemetry
//! collector's Prometheus receiver configures them (docs/getting-started.md, "OpenTelemetry Collector").
//!
//! Scenarios:
//! 1. every target is scraped by exactly one Prometheus, and is up;
//! 2. SIGKILL of the leader: a different leader is elected, no target moves (every surviving
//!    replica serves the same assignment, and so does the killed one once restarted), and no
//!    Prometheus's set of active targets ever shrinks;
//! 3. a collector that stops polling (`register_on_poll`) loses its targets after ttl + grace,
//!    to the other two, and only its targets move;
//! 4. a client doing what the receiver does (`/scrape_configs`, `$(SHARD)`, the FNV-1 hash,
//!    http_sd URLs with `url.QueryEscape`d job names) gets the same answer from every replica;
//!    and a replica without quorum answers `/scrape_configs` with 503 and a body that is not
//!    a YAML mapping.
//!
//! Scenarios 1–3 need the `prometheus` binary: without it they are skipped with a message,
//! unless `TA_REQUIRE_PROMETHEUS` is set (CI sets it), when they fail. The scenarios run one at
//! a time (two cores; real election timeouts).

mod end_to_end_support;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use end_to_end_support::Assignment;
use end_to_end_support::Cluster;
use end_to_end_support::ClusterSpec;
use end_to_end_support::Collectors;
use end_to_end_support::Exporters;
use end_to_end_support::Fleet;
use end_to_end_support::Job;
use end_to_end_support::REFRESH;
use end_to_end_support::TargetKey;
use end_to_end_support::all_targets;
use end_to_end_support::eventually;
use end_to_end_support::fetch_http_sd;
use end_to_end_support::http_sd_content_type_ok;
use end_to_end_support::http_sd_url;
use end_to_end_support::owned_by;
use end_to_end_support::prometheus_or_skip;
use end_to_end_support::runtime;
use end_to_end_support::serial;
use end_to_end_support::show_assignment;
use end_to_end_support::show_targets;
use serde_json::json;
use yaml_rust2::Yaml;
use yaml_rust2::YamlEmitter;
use yaml_rust2::YamlLoader;

/// Generous bounds for startup steps; they only limit how long a failure takes to report.
const STARTUP: Duration = Duration::from_secs(30);
/// Prometheus applies discovery updates at most every 5 s (its discovery manager's throttle),
/// then scrapes every second: a change in http_sd shows in `/api/v1/targets` within this.
const PROMETHEUS_CATCH_UP: Duration = Duration::from_secs(20);

fn collector_ids() -> Vec<String> {
    (0..3).map(|i| format!("prom-{i}")).collect()
}

/// Twelve targets over three jobs, two of them with names that need escaping in the http_sd
/// URL (`/` → `%2F`, space → `+`).
fn example_jobs(exporters: &Exporters) -> Vec<Job> {
    let address = |range: std::ops::Range<usize>| exporters.addresses[range].to_vec();
    vec![
        Job::new("app", address(0..5)),
        Job::new("serviceMonitor/ns/web/0", address(5..9)),
        Job::new("my job", address(9..12)),
    ]
}

/// The running system of scenarios 1 and 2: exporters, three replicas with static collectors
/// `prom-0..2`, and three Prometheus servers, `prom-i` polling replica `ta-i`, all scraping.
struct StaticSetup {
    exporters: Exporters,
    cluster: Cluster,
    fleet: Fleet,
    /// The assignment every replica serves, which the Prometheus servers scrape.
    assignment: Assignment,
}

async fn start_static_setup(prometheus: &std::path::Path) -> StaticSetup {
    let exporters = Exporters::start(12).await;
    let jobs = example_jobs(&exporters);
    let cluster = Cluster::start(ClusterSpec {
        strategy: "consistent-hashing",
        grace_period: "5s",
        collectors: Collectors::Static(collector_ids()),
        jobs: jobs.clone(),
    });
    cluster.wait_ready(&[0, 1, 2], STARTUP).await;
    let assignment = cluster.wait_fully_assigned(0, &collector_ids(), STARTUP).await;
    for i in 1..3 {
        let served = cluster.wait_fully_assigned(i, &collector_ids(), STARTUP).await;
        assert_eq!(
            served,
            assignment,
            "{} serves a different assignment than {}:\n  {}\nvs\n  {}",
            cluster.name(i),
            cluster.name(0),
            show_assignment(&served),
            show_assignment(&assignment)
        );
    }
    let fleet = Fleet::start(
        prometheus,
        &(0..3)
            .map(|i| (collector_ids()[i].clone(), cluster.endpoint(i)))
            .collect::<Vec<_>>(),
        &jobs,
    );
    fleet.wait_ready(STARTUP).await;
    fleet.wait_scraping(&assignment, PROMETHEUS_CATCH_UP).await;
    StaticSetup {
        exporters,
        cluster,
        fleet,
        assignment,
    }
}

/// Which Prometheus servers have each target active.
async fn scraped_by(fleet: &Fleet) -> BTreeMap<TargetKey, Vec<(String, String)>> {
    let mut by_target: BTreeMap<TargetKey, Vec<(String, String)>> = BTreeMap::new();
    for i in 0..fleet.len() {
        let active = fleet.active_targets(i).await.unwrap_or_else(|e| panic!("{e}"));
        for target in active {
            by_target
                .entry(target.key)
                .or_default()
                .push((fleet.collector_id(i).to_string(), target.health));
        }
    }
    by_target
}

// ---------------------------------------------------------------------------------------------
// Scenario 1

#[test]
fn every_target_is_scraped_by_exactly_one_prometheus() {
    let _serial = serial();
    let Some(prometheus) = prometheus_or_skip("every_target_is_scraped_by_exactly_one_prometheus") else {
        return;
    };
    runtime().block_on(async {
        let started = Instant::now();
        let setup = start_static_setup(&prometheus).await;
        let expected = all_targets(&setup.cluster.spec.jobs);

        let by_target = scraped_by(&setup.fleet).await;
        for target in &expected {
            match by_target.get(target).map(Vec::as_slice) {
                Some([(collector, health)]) => {
                    assert_eq!(
                        Some(collector),
                        setup.assignment.get(target),
                        "{target} is scraped by {collector}, but the allocator assigns it to {:?}",
                        setup.assignment.get(target)
                    );
                    assert_eq!(
                        health, "up",
                        "{target} is scraped by {collector} with health {health:?}"
                    );
                }
                other => panic!("{target} should be scraped by exactly one Prometheus; scraped by {other:?}"),
            }
        }
        let unexpected: Vec<&TargetKey> = by_target.keys().filter(|t| !expected.contains(t)).collect();
        assert!(
            unexpected.is_empty(),
            "Prometheus scrapes targets that are not configured: {}",
            show_targets(unexpected)
        );
        for address in &setup.exporters.addresses {
            assert!(
                setup.exporters.scrapes(address) > 0,
                "exporter {address} was never scraped"
            );
        }
        println!(
            "scenario 1: {} targets over {} Prometheus servers ({}), in {:?}",
            expected.len(),
            setup.fleet.len(),
            show_assignment(&setup.assignment),
            started.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Scenario 2

/// How often each Prometheus's active targets are sampled during the failover.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

#[test]
fn killing_the_leader_moves_no_target_and_no_prometheus_loses_one() {
    let _serial = serial();
    let Some(prometheus) = prometheus_or_skip("killing_the_leader_moves_no_target_and_no_prometheus_loses_one") else {
        return;
    };
    runtime().block_on(async {
        let started = Instant::now();
        let setup = start_static_setup(&prometheus).await;
        let (cluster, fleet, before) = (&setup.cluster, &setup.fleet, &setup.assignment);
        let everyone = [0, 1, 2];
        let old_leader = eventually("the three replicas to agree on a leader", STARTUP, async || {
            cluster.agreed_leader(&everyone).await
        })
        .await;
        let survivors: Vec<usize> = everyone.iter().copied().filter(|&i| i != old_leader).collect();
        let mut initial_sets = Vec::new();
        for i in 0..fleet.len() {
            initial_sets.push(fleet.active_set(i).await.unwrap_or_else(|e| panic!("{e}")));
        }

        // Sample every Prometheus's active targets through the whole failover window.
        let done = AtomicBool::new(false);
        let sampler = async {
            let mut previous = initial_sets.clone();
            let mut shrinks = Vec::new();
            let mut samples = 0usize;
            while !done.load(Ordering::SeqCst) {
                let at = started.elapsed();
                for (i, previous) in previous.iter_mut().enumerate() {
                    let current = fleet.active_set(i).await.unwrap_or_else(|e| panic!("sampling: {e}"));
                    let lost: Vec<&TargetKey> = previous.difference(&current).collect();
                    if !lost.is_empty() {
                        shrinks.push(format!(
                            "at {at:?} prometheus {} lost {}",
                            fleet.collector_id(i),
                            show_targets(lost)
                        ));
                    }
                    *previous = current;
                }
                samples += 1;
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
            (samples, shrinks, previous)
        };

        let faults = async {
            let killed_at = Instant::now();
            cluster.kill(old_leader);
            let new_leader = eventually(
                &format!(
                    "the survivors {:?} to agree on a leader other than the killed {}",
                    survivors.iter().map(|&i| cluster.name(i)).collect::<Vec<_>>(),
                    cluster.name(old_leader)
                ),
                Duration::from_secs(15),
                async || cluster.agreed_leader(&survivors).await,
            )
            .await;
            let failover = killed_at.elapsed();
            println!(
                "scenario 2: SIGKILL of leader {} -> new leader {} in {failover:?}",
                cluster.name(old_leader),
                cluster.name(new_leader)
            );
            // The header agrees with /debug/status on every survivor.
            for &i in &survivors {
                eventually(
                    &format!("{} to name {} in X-Allocator-Leader", cluster.name(i), cluster.name(new_leader)),
                    Duration::from_secs(5),
                    async || {
                        let (_, headers, _) = cluster.get(i, "/livez").await?;
                        let leader = headers
                            .get("x-allocator-leader")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        if leader == cluster.name(new_leader) {
                            Ok(())
                        } else {
                            Err(format!("X-Allocator-Leader: {leader:?}"))
                        }
                    },
                )
                .await;
            }

            // No target moved: each survivor serves exactly the assignment of before.
            let check_unmoved = async |among: &[usize]| {
                for &i in among {
                    let served = eventually(
                        &format!("{} to serve the http_sd endpoints again (200)", cluster.name(i)),
                        Duration::from_secs(15),
                        async || cluster.assignment_via_http_sd(i, &collector_ids()).await,
                    )
                    .await;
                    let moved: Vec<String> = before
                        .iter()
                        .filter(|(target, owner)| served.get(*target) != Some(*owner))
                        .map(|(target, owner)| format!("{target}: {owner} -> {:?}", served.get(target)))
                        .collect();
                    assert!(
                        moved.is_empty() && served.len() == before.len(),
                        "after the failover {} serves a different assignment: moved {moved:?}; now {}",
                        cluster.name(i),
                        show_assignment(&served)
                    );
                }
            };
            check_unmoved(&survivors).await;

            // Stay a while under the new leader: its full re-plan must not move anything either,
            // and the Prometheus servers have time to apply whatever http_sd now says.
            let settle_until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < settle_until {
                check_unmoved(&survivors).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }

            // The killed replica comes back on its data directory and serves the same table.
            cluster.restart(old_leader);
            cluster.wait_ready(&[old_leader], STARTUP).await;
            check_unmoved(&everyone).await;
            let settle_until = Instant::now() + Duration::from_secs(6);
            while Instant::now() < settle_until {
                check_unmoved(&everyone).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            done.store(true, Ordering::SeqCst);
            failover
        };

        // What Prometheus sees, sampled much more often than it polls: every http_sd answer of
        // every replica during the window is either not 200 (http_sd keeps its last targets)
        // or exactly the targets of before. A 200 with fewer targets would make a Prometheus
        // drop them.
        let http_sd_watch = async {
            let mut unavailable = 0usize;
            let mut served = 0usize;
            let mut wrong = Vec::new();
            while !done.load(Ordering::SeqCst) {
                for i in everyone {
                    for job in &cluster.spec.jobs {
                        for collector in collector_ids() {
                            let url = http_sd_url(&cluster.endpoint(i), &job.name, &collector);
                            match fetch_http_sd(cluster.http(), &url).await {
                                Err(_) => unavailable += 1,
                                Ok(groups) => {
                                    served += 1;
                                    let got: BTreeSet<String> = groups.into_iter().flat_map(|g| g.targets).collect();
                                    let want: BTreeSet<String> = owned_by(before, &collector)
                                        .into_iter()
                                        .filter(|t| t.job == job.name)
                                        .map(|t| t.address)
                                        .collect();
                                    if got != want {
                                        wrong.push(format!(
                                            "at {:?} {} served {url} with {got:?} instead of {want:?}",
                                            started.elapsed(),
                                            cluster.name(i)
                                        ));
                                    }
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (served, unavailable, wrong)
        };

        let ((samples, shrinks, last_sets), failover, (served, unavailable, wrong)) =
            tokio::join!(sampler, faults, http_sd_watch);
        assert!(
            wrong.is_empty(),
            "during the failover a replica answered http_sd with 200 and other targets than before ({} such answers):\n  {}",
            wrong.len(),
            wrong.iter().take(20).cloned().collect::<Vec<_>>().join("\n  ")
        );
        assert!(
            shrinks.is_empty(),
            "a Prometheus lost active targets during the failover ({samples} samples every {SAMPLE_EVERY:?}):\n  {}",
            shrinks.join("\n  ")
        );
        for (i, last) in last_sets.iter().enumerate() {
            assert_eq!(
                last,
                &owned_by(before, fleet.collector_id(i)),
                "prometheus {} ends with other targets than before the failover",
                fleet.collector_id(i)
            );
        }
        fleet.wait_scraping(before, PROMETHEUS_CATCH_UP).await;
        println!(
            "scenario 2: kill -> new leader {failover:?}; {samples} samples of each Prometheus, none shrank; http_sd answers during the window: {served} x 200 (all unchanged), {unavailable} refused or not 200; total {:?}",
            started.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Scenario 3

#[test]
fn a_collector_that_stops_polling_loses_only_its_targets_to_the_others() {
    let _serial = serial();
    let Some(prometheus) = prometheus_or_skip("a_collector_that_stops_polling_loses_only_its_targets_to_the_others")
    else {
        return;
    };
    const TTL: Duration = Duration::from_secs(3);
    const GRACE: Duration = Duration::from_secs(2);
    runtime().block_on(async {
        let started = Instant::now();
        let exporters = Exporters::start(12).await;
        let jobs = example_jobs(&exporters);
        let expected = all_targets(&jobs);
        let cluster = Cluster::start(ClusterSpec {
            strategy: "balanced",
            grace_period: "2s",
            collectors: Collectors::RegisterOnPoll { ttl: "3s" },
            jobs: jobs.clone(),
        });
        cluster.wait_ready(&[0, 1, 2], STARTUP).await;
        let ids = collector_ids();
        let fleet = Fleet::start(
            &prometheus,
            &(0..3).map(|i| (ids[i].clone(), cluster.endpoint(i))).collect::<Vec<_>>(),
            &jobs,
        );
        fleet.wait_ready(STARTUP).await;

        // The assignment is read without a collector_id: an http_sd read as prom-2 would
        // register prom-2 again.
        let registered = eventually(
            "all three Prometheus servers registered by polling, every target assigned, counts within one",
            STARTUP,
            async || {
                let assignment = cluster.assignment_via_debug(0).await?;
                let counts: Vec<usize> = ids.iter().map(|id| owned_by(&assignment, id).len()).collect();
                let assigned: BTreeSet<TargetKey> = assignment.keys().cloned().collect();
                let spread = counts.iter().max().unwrap_or(&0) - counts.iter().min().unwrap_or(&0);
                if assigned == expected && assignment.values().all(|o| ids.contains(o)) && spread <= 1 {
                    Ok(assignment)
                } else {
                    Err(show_assignment(&assignment))
                }
            },
        )
        .await;
        fleet.wait_scraping(&registered, PROMETHEUS_CATCH_UP).await;
        let before = cluster
            .assignment_via_debug(0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            before,
            registered,
            "the assignment changed while nothing happened: {} then {}",
            show_assignment(&registered),
            show_assignment(&before)
        );
        let leaving = &ids[2];
        let leavers_targets = owned_by(&before, leaving);

        fleet.stop(2);
        let stopped_at = Instant::now();
        let after = eventually(
            &format!("the targets of {leaving} to move to the other collectors after ttl {TTL:?} + grace {GRACE:?}"),
            Duration::from_secs(30),
            async || {
                let now = cluster.assignment_via_debug(0).await?;
                // Targets of the others must never move, not even for a moment.
                for (target, owner) in &before {
                    if owner != leaving {
                        assert_eq!(
                            now.get(target),
                            Some(owner),
                            "{target} of {owner} moved while only {leaving} left; assignment now {}",
                            show_assignment(&now)
                        );
                    }
                }
                let assigned: BTreeSet<TargetKey> = now.keys().cloned().collect();
                if assigned == expected && now.values().all(|o| o != leaving) {
                    Ok(now)
                } else {
                    Err(show_assignment(&now))
                }
            },
        )
        .await;
        let moved_after = stopped_at.elapsed();
        // The leaver's last poll was at most one refresh before the stop, and a replica forwards
        // a poll at most one refresh late: expiry cannot come sooner than ttl + grace - 2 refreshes.
        assert!(
            moved_after >= TTL + GRACE - 2 * REFRESH,
            "{leaving}'s targets moved {moved_after:?} after it stopped, before ttl {TTL:?} + grace {GRACE:?} could pass"
        );
        for (target, owner) in &before {
            let now = after.get(target).map(String::as_str);
            if owner == leaving {
                assert!(
                    matches!(now, Some(o) if o != leaving.as_str() && ids.iter().any(|id| id == o)),
                    "{target} of {leaving} should now belong to another collector; it belongs to {now:?}"
                );
            } else {
                assert_eq!(now, Some(owner.as_str()), "{target} of {owner} moved");
            }
        }
        for i in 1..3 {
            eventually(
                &format!("{} to serve the same assignment as {}", cluster.name(i), cluster.name(0)),
                Duration::from_secs(10),
                async || {
                    let served = cluster.assignment_via_debug(i).await?;
                    if served == after {
                        Ok(())
                    } else {
                        Err(show_assignment(&served))
                    }
                },
            )
            .await;
        }
        fleet.wait_scraping(&after, PROMETHEUS_CATCH_UP).await;
        println!(
            "scenario 3: {} targets of {leaving} moved {moved_after:?} after it stopped (ttl {TTL:?} + grace {GRACE:?}): {}; others kept theirs; total {:?}",
            leavers_targets.len(),
            show_assignment(&after),
            started.elapsed()
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Scenario 4: the collector's receiver, without Prometheus

/// FNV-1 64-bit (Go's `fnv.New64`, not 64a): multiply, then xor.
struct Fnv1 {
    hash: u64,
}

impl Fnv1 {
    fn new() -> Self {
        Self {
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01b3);
            self.hash ^= u64::from(byte);
        }
    }
}

/// `value` with every mapping's keys sorted, recursively.
fn sorted_yaml(value: &Yaml) -> Yaml {
    match value {
        Yaml::Hash(hash) => {
            let mut entries: Vec<(&Yaml, &Yaml)> = hash.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let mut sorted = yaml_rust2::yaml::Hash::new();
            for (key, value) in entries {
                sorted.insert(key.clone(), sorted_yaml(value));
            }
            Yaml::Hash(sorted)
        }
        Yaml::Array(items) => Yaml::Array(items.iter().map(sorted_yaml).collect()),
        other => other.clone(),
    }
}

/// What the receiver does with a `/scrape_configs` body (§3.3): replace `$(SHARD)` with the
/// shard ("0"), parse it as YAML into job → scrape config. Anything but a mapping of job names
/// to mappings is an error, and a receiver keeps its last config.
fn receiver_parse(body: &str) -> Result<BTreeMap<String, Yaml>, String> {
    let text = body.replace("$(SHARD)", "0");
    let documents = YamlLoader::load_from_str(&text).map_err(|e| format!("not YAML: {e}"))?;
    let [document] = documents.as_slice() else {
        return Err(format!("{} YAML documents", documents.len()));
    };
    let Yaml::Hash(jobs) = document else {
        return Err(format!("not a mapping: {document:?}"));
    };
    jobs.iter()
        .map(|(job, config)| match (job, config) {
            (Yaml::String(job), Yaml::Hash(_)) => Ok((job.clone(), config.clone())),
            _ => Err(format!("entry {job:?} is not job name → scrape config mapping")),
        })
        .collect()
}

/// The receiver's change-detection hash: FNV-1 64 over, for each job in sorted order, the job
/// name and the YAML encoding of its parsed scrape config. We cannot run Prometheus's Go
/// unmarshal-then-marshal; we hash a canonical re-serialisation instead (keys sorted
/// recursively, emitted by yaml-rust2). The property that matters is the same: the hash is
/// stable across polls and identical on every replica, so no collector sees a config change
/// that did not happen.
fn receiver_hash(configs: &BTreeMap<String, Yaml>) -> u64 {
    let mut hasher = Fnv1::new();
    for (job, config) in configs {
        hasher.write(job.as_bytes());
        let mut encoded = String::new();
        YamlEmitter::new(&mut encoded)
            .dump(&sorted_yaml(config))
            .expect("emit YAML");
        hasher.write(encoded.as_bytes());
    }
    hasher.hash
}

/// Jobs as prometheus-operator generates them for the collector: a ServiceMonitor job name
/// with slashes and its sharding rules (`$(SHARD)` left for the collector to fill in), a job
/// name with a space, and a plain one.
fn receiver_jobs() -> Vec<Job> {
    let addresses = |base: u8, count: u8| (0..count).map(move |i| format!("192.0.2.{}:9100", base + i));
    let mut service_monitor = Job::new("serviceMonitor/ns/app/0", addresses(10, 5));
    service_monitor.relabel_configs = Some(json!([
        {"source_labels": ["__address__"], "modulus": 1, "target_label": "__tmp_hash", "action": "hashmod"},
        {"source_labels": ["__tmp_hash", "__tmp_disable_sharding"], "regex": "$(SHARD);|.+;.+", "action": "keep"},
    ]));
    vec![
        service_monitor,
        Job::new("my job", addresses(20, 4)),
        Job::new("plain", addresses(30, 3)),
    ]
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn a_collector_client_gets_the_same_configs_and_targets_from_every_replica() {
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        let jobs = receiver_jobs();
        let collectors: Vec<String> = (0..3).map(|i| format!("collector-{i}")).collect();
        let cluster = Cluster::start(ClusterSpec {
            strategy: "consistent-hashing",
            grace_period: "5s",
            collectors: Collectors::Static(collectors.clone()),
            jobs: jobs.clone(),
        });
        cluster.wait_ready(&[0, 1, 2], STARTUP).await;
        let expected = all_targets(&jobs);
        for i in 0..3 {
            cluster.wait_fully_assigned(i, &collectors, STARTUP).await;
        }

        // The URLs the receiver builds: url.QueryEscape of the job, the collector id as is.
        let endpoint = cluster.endpoint(0);
        assert_eq!(
            http_sd_url(&endpoint, "serviceMonitor/ns/app/0", "collector-0"),
            format!("{endpoint}/jobs/serviceMonitor%2Fns%2Fapp%2F0/targets?collector_id=collector-0")
        );
        assert_eq!(
            http_sd_url(&endpoint, "my job", "collector-1"),
            format!("{endpoint}/jobs/my+job/targets?collector_id=collector-1")
        );

        let mut hashes = Vec::new();
        let mut assignments = Vec::new();
        for i in 0..3 {
            let name = cluster.name(i).to_string();
            // Two polls: the hash must not change between them.
            let mut polled = Vec::new();
            for _ in 0..2 {
                let (status, headers, body) = cluster
                    .get(i, "/scrape_configs")
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(status, reqwest::StatusCode::OK, "{name}: /scrape_configs: {body}");
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/json"),
                    "{name}: /scrape_configs content type"
                );
                assert!(
                    body.contains("$(SHARD)"),
                    "{name}: /scrape_configs must keep $(SHARD) literally for the collector to fill in (§11.4): {body}"
                );
                let configs = receiver_parse(&body).unwrap_or_else(|e| panic!("{name}: /scrape_configs: {e}: {body}"));
                let names: BTreeSet<&str> = configs.keys().map(String::as_str).collect();
                let wanted: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                assert_eq!(names, wanted, "{name}: jobs of /scrape_configs");
                for (job, config) in &configs {
                    assert_eq!(
                        config["job_name"].as_str(),
                        Some(job.as_str()),
                        "{name}: job_name inside the config of {job:?}"
                    );
                }
                polled.push(receiver_hash(&configs));
            }
            assert_eq!(
                polled[0], polled[1],
                "{name}: the config hash changed between two polls"
            );
            hashes.push((name.clone(), polled[0]));

            // One http_sd discoverer per job and collector, as the receiver sets them up.
            let mut assignment = Assignment::new();
            for job in &jobs {
                for collector in &collectors {
                    let url = http_sd_url(&cluster.endpoint(i), &job.name, collector);
                    let response = cluster
                        .http()
                        .get(&url)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{url}: {e}"));
                    assert_eq!(response.status(), reqwest::StatusCode::OK, "{name}: {url}");
                    let content_type = response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    assert!(
                        content_type.starts_with("application/json") && http_sd_content_type_ok(&content_type),
                        "{name}: {url}: Content-Type {content_type:?}"
                    );
                    let body = response.text().await.expect("body");
                    let value: serde_json::Value =
                        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {url}: not JSON ({e}): {body}"));
                    assert!(value.is_array(), "{name}: {url}: not a JSON array: {body}");
                    let groups = fetch_http_sd(cluster.http(), &url)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    for group in groups {
                        let [address] = group.targets.as_slice() else {
                            panic!("{name}: {url}: a group must hold exactly one target: {group:?}");
                        };
                        assert_eq!(
                            group.labels.get("__address__"),
                            Some(address),
                            "{name}: {url}: __address__ must be among the labels: {group:?}"
                        );
                        assert!(
                            group.labels.keys().all(|label| valid_label_name(label)),
                            "{name}: {url}: invalid label name in {group:?}"
                        );
                        let key = TargetKey {
                            job: job.name.clone(),
                            address: address.clone(),
                        };
                        if let Some(other) = assignment.insert(key.clone(), collector.clone()) {
                            panic!("{name}: {key} is served to both {other} and {collector}");
                        }
                    }
                }
            }
            let served: BTreeSet<TargetKey> = assignment.keys().cloned().collect();
            assert_eq!(
                served,
                expected,
                "{name}: the collectors together must get every target exactly once; missing {}, unexpected {}",
                show_targets(expected.difference(&served)),
                show_targets(served.difference(&expected))
            );
            assignments.push((name, assignment));
        }
        assert!(
            hashes.iter().all(|(_, hash)| *hash == hashes[0].1),
            "the receiver's config hash differs between replicas: {hashes:x?}"
        );
        for (name, assignment) in &assignments[1..] {
            assert_eq!(
                assignment, &assignments[0].1,
                "{name} and {} serve different assignments",
                assignments[0].0
            );
        }
        println!(
            "scenario 4: hash {:#018x} on every replica; {}; in {:?}",
            hashes[0].1,
            show_assignment(&assignments[0].1),
            started.elapsed()
        );
    });
}

#[test]
fn a_replica_without_quorum_answers_scrape_configs_with_503_and_no_yaml_mapping() {
    let _serial = serial();
    runtime().block_on(async {
        let started = Instant::now();
        // ta-0 alone: the other two peers are configured but never started, so no leader is
        // ever elected and no scrape config is ever committed.
        let cluster = Cluster::start_only(
            ClusterSpec {
                strategy: "consistent-hashing",
                grace_period: "5s",
                collectors: Collectors::Static(vec!["collector-0".into()]),
                jobs: receiver_jobs(),
            },
            &[0],
        );
        eventually("ta-0 to answer /livez", STARTUP, async || {
            cluster.check_alive();
            match cluster.get(0, "/livez").await? {
                (status, _, _) if status == reqwest::StatusCode::OK => Ok(()),
                (status, _, body) => Err(format!("{status} {body:?}")),
            }
        })
        .await;
        // Longer than two election timeouts and the lease: whatever it tries, it stays unready.
        let watch_until = Instant::now() + Duration::from_secs(3);
        let mut answers = 0;
        while Instant::now() < watch_until {
            let (status, headers, body) = cluster.get(0, "/scrape_configs").await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                status,
                reqwest::StatusCode::SERVICE_UNAVAILABLE,
                "ta-0 without quorum: /scrape_configs must be 503; body {body:?}"
            );
            assert!(
                !body.trim().is_empty(),
                "ta-0 without quorum: an empty /scrape_configs body reads as zero jobs to a collector (§11.3)"
            );
            if let Ok(configs) = receiver_parse(&body) {
                panic!(
                    "ta-0 without quorum: the collector would read this 503 body as {} jobs and drop its TA jobs (§11.3): {body:?}",
                    configs.len()
                );
            }
            let documents = YamlLoader::load_from_str(&body.replace("$(SHARD)", "0"));
            assert!(
                !matches!(documents.as_deref(), Ok([Yaml::Hash(_)]) | Ok([Yaml::Null]) | Ok([])),
                "ta-0 without quorum: /scrape_configs body is a YAML mapping, null or empty: {body:?}"
            );
            assert_eq!(
                headers.get("x-allocator-leader").and_then(|v| v.to_str().ok()),
                Some(""),
                "ta-0 without quorum names a leader"
            );
            let (ready, _, _) = cluster.get(0, "/readyz").await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ready, reqwest::StatusCode::SERVICE_UNAVAILABLE, "ta-0 without quorum: /readyz");
            // http_sd must fail too (any non-200), so Prometheus keeps its last targets.
            let url = http_sd_url(&cluster.endpoint(0), "my job", "collector-0");
            let (sd_status, _, sd_body) = cluster
                .get(0, url.trim_start_matches(&cluster.endpoint(0)))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(
                sd_status,
                reqwest::StatusCode::OK,
                "ta-0 without quorum serves http_sd targets: {sd_body:?}"
            );
            answers += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "scenario 4b: {answers} answers of a replica without quorum, all 503 with a non-mapping body; in {:?}",
            started.elapsed()
        );
    });
}
