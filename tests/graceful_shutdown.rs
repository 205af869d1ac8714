//! SIGTERM on the leader: it hands leadership to another voter first, then drains and exits
//! 0 within the shutdown deadline; the survivors keep serving the same assignment throughout.

mod end_to_end_support;

use std::time::Duration;
use std::time::Instant;

use end_to_end_support::Cluster;
use end_to_end_support::ClusterSpec;
use end_to_end_support::Collectors;
use end_to_end_support::Job;
use end_to_end_support::eventually;
use end_to_end_support::runtime;
use end_to_end_support::serial;
use end_to_end_support::show_assignment;

const STARTUP: Duration = Duration::from_secs(30);

#[test]
fn a_terminated_leader_hands_over_and_nothing_moves_or_stops_serving() {
    let _serial = serial();
    runtime().block_on(async {
        let collectors: Vec<String> = (0..3).map(|i| format!("collector-{i}")).collect();
        let jobs = vec![
            Job::new("app", (0..6).map(|i| format!("10.1.0.{i}:8080"))),
            Job::new("serviceMonitor/ns/web/0", (0..4).map(|i| format!("10.2.0.{i}:9090"))),
        ];
        let cluster = Cluster::start(ClusterSpec {
            strategy: "consistent-hashing",
            grace_period: "30s",
            collectors: Collectors::Static(collectors.clone()),
            jobs,
        });
        cluster.wait_ready(&[0, 1, 2], STARTUP).await;
        let before = cluster.wait_fully_assigned(0, &collectors, STARTUP).await;
        let leader = cluster.agreed_leader(&[0, 1, 2]).await.expect("one leader");
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

        // Readers poll the survivors through the whole handover.
        let sampling = {
            let endpoints: Vec<String> = survivors.iter().map(|&i| cluster.endpoint(i)).collect();
            let collectors = collectors.clone();
            let http = cluster.http().clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let until = Instant::now() + Duration::from_secs(6);
                while Instant::now() < until {
                    for endpoint in &endpoints {
                        let url = end_to_end_support::http_sd_url(endpoint, "app", &collectors[0]);
                        match http.get(&url).send().await {
                            Ok(response) if response.status().is_success() => {}
                            Ok(response) => failures.push(format!("{url}: {}", response.status())),
                            Err(e) => failures.push(format!("{url}: {e}")),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                failures
            })
        };

        let started = Instant::now();
        let (status, exited_after) = tokio::task::block_in_place(|| cluster.terminate(leader));
        eprintln!("{} exited with {status} after {exited_after:?}", cluster.name(leader));
        assert!(status.success(), "a terminated replica exits 0, got {status}");
        assert!(
            exited_after < target_allocator::service::SHUTDOWN_DEADLINE,
            "shutdown took {exited_after:?}, beyond the {:?} deadline",
            target_allocator::service::SHUTDOWN_DEADLINE
        );
        let new_leader = eventually(
            "the survivors agree on a new leader",
            Duration::from_secs(10),
            async || cluster.agreed_leader(&survivors).await,
        )
        .await;
        eprintln!(
            "SIGTERM → new leader {} agreed after {:?}",
            cluster.name(new_leader),
            started.elapsed()
        );
        assert_ne!(new_leader, leader);

        let failures = sampling.await.expect("sampler");
        assert!(
            failures.is_empty(),
            "the survivors stopped serving during a planned handover:\n  {}",
            failures.join("\n  ")
        );
        for &i in &survivors {
            let after = cluster.wait_fully_assigned(i, &collectors, STARTUP).await;
            assert_eq!(
                after,
                before,
                "{} serves a different assignment after the handover:\n  {}\nbefore:\n  {}",
                cluster.name(i),
                show_assignment(&after),
                show_assignment(&before)
            );
        }
    });
}
