//! Heavy work never costs the leadership: three replica processes plan, replicate, apply and
//! serve a table large enough to keep both cores busy (a cold start's full plan, cut into
//! several log entries), then a follower killed and restarted rebuilds all of it from its log
//! and catches up. Through
//! both, the Raft term every replica reports stays the first leader's: no election happened.
//! A count, not a time; the peer port's round trip during the load is printed, not asserted.

mod end_to_end_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use end_to_end_support::Cluster;
use end_to_end_support::ClusterSpec;
use end_to_end_support::Collectors;
use end_to_end_support::Job;
use end_to_end_support::eventually;
use end_to_end_support::runtime;
use end_to_end_support::serial;
use tokio_util::sync::CancellationToken;

/// Targets per job; two jobs. A debug build plans and applies this about as slowly as a
/// release build does ten times as many, with three replicas on two cores.
const TARGETS_PER_JOB: usize = 15_000;
const STARTUP: Duration = Duration::from_secs(180);

/// Terms and peer round trips seen by the background sampler.
#[derive(Default)]
struct Samples {
    terms: BTreeSet<u64>,
    round_trips_ms: Vec<f64>,
    /// Answers without a term header (no leader known yet) are not elections.
    answers: usize,
}

/// Labels every target of a job carries, Kubernetes-like: with them a full plan weighs
/// several of the leader's bounded log entries.
const LABELS_PER_TARGET: usize = 40;

fn job(name: &str, second_octet: usize) -> Job {
    let mut job = Job::new(
        name,
        (0..TARGETS_PER_JOB).map(|i| format!("10.{second_octet}.{}.{}:9100", i / 250, i % 250)),
    );
    let labels: serde_json::Map<String, serde_json::Value> = (0..LABELS_PER_TARGET)
        .map(|l| (format!("label_{l}"), serde_json::json!(format!("{name}-value-{l}"))))
        .collect();
    job.labels = Some(serde_json::Value::Object(labels));
    job
}

fn p99(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * 0.99).round() as usize]
}

#[test]
fn a_full_plan_of_a_large_table_and_a_follower_catching_up_cause_no_election() {
    let _serial = serial();
    runtime().block_on(async {
        let collectors: Vec<String> = (0..5).map(|i| format!("collector-{i}")).collect();
        let cluster = Arc::new(Cluster::start(ClusterSpec {
            strategy: "consistent-hashing",
            grace_period: "30s",
            collectors: Collectors::Static(collectors.clone()),
            jobs: vec![job("node", 1), job("app", 2)],
        }));

        // Every 100 ms: the term each replica reports, and a peer-port round trip.
        let samples = Arc::new(Mutex::new(Samples::default()));
        let stop = CancellationToken::new();
        let sampler = {
            let (cluster, samples, stop) = (Arc::clone(&cluster), Arc::clone(&samples), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    for i in 0..Cluster::SIZE {
                        if let Ok((_, headers, _)) = cluster.get(i, "/livez").await {
                            let term = headers
                                .get(target_allocator::api::TERM_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse::<u64>().ok());
                            let mut samples = samples.lock().expect("samples");
                            samples.answers += 1;
                            samples.terms.extend(term);
                        }
                        let started = Instant::now();
                        if cluster.peer_status(i).await.is_ok() {
                            let ms = started.elapsed().as_secs_f64() * 1000.0;
                            samples.lock().expect("samples").round_trips_ms.push(ms);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };

        cluster.wait_ready(&[0, 1, 2], STARTUP).await;
        let started = Instant::now();
        for i in 0..Cluster::SIZE {
            cluster.wait_fully_assigned(i, &collectors, STARTUP).await;
        }
        eprintln!(
            "all three serve {} targets, {:?} after the first was ready",
            2 * TARGETS_PER_JOB,
            started.elapsed()
        );
        let first_term = {
            let samples = samples.lock().expect("samples");
            eprintln!("terms seen through the cold start: {:?}", samples.terms);
            *samples.terms.first().expect("a leader term was reported")
        };

        // A follower loses everything in memory, replays its log and catches up.
        let leader = cluster.agreed_leader(&[0, 1, 2]).await.expect("one leader");
        let follower = (0..Cluster::SIZE).find(|&i| i != leader).expect("a follower");
        cluster.kill(follower);
        cluster.restart(follower);
        let caught_up = Instant::now();
        cluster.wait_ready(&[follower], STARTUP).await;
        cluster.wait_fully_assigned(follower, &collectors, STARTUP).await;
        eprintln!("{} caught up after {:?}", cluster.name(follower), caught_up.elapsed());
        // Heartbeats keep arriving after the load: any election would show by now.
        tokio::time::sleep(Duration::from_secs(3)).await;

        stop.cancel();
        sampler.await.expect("sampler");
        let after_first: Vec<u64> = {
            let mut samples = samples.lock().expect("samples");
            let rtt = p99(&mut samples.round_trips_ms);
            let max = samples.round_trips_ms.last().copied().unwrap_or_default();
            eprintln!(
                "peer round trip p99 {rtt:.1} ms, max {max:.1} ms over {} samples; {} answers",
                samples.round_trips_ms.len(),
                samples.answers
            );
            samples.terms.iter().copied().filter(|&t| t != first_term).collect()
        };
        assert!(
            after_first.is_empty(),
            "elections happened under load: terms {:?} after the first leader's term {first_term}",
            after_first
        );
        let still_leader = eventually(
            "the replicas to agree on the leader",
            Duration::from_secs(10),
            async || cluster.agreed_leader(&[0, 1, 2]).await,
        )
        .await;
        assert_eq!(
            cluster.name(still_leader),
            cluster.name(leader),
            "the leader changed without a new term"
        );
    });
}
