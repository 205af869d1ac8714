//! Discovery on the leader only. Followers hold the replicated table and serve it; they need
//! no discovered groups, so running discovery there would only spend CPU, memory and, with
//! `kubernetes_sd`, API-server watches (one upstream replica's worth of watch load, whatever
//! the replica count).
//!
//! [`spawn`] owns a [`DiscoveryManager`] that exists only while this replica leads. Becoming
//! leader starts it; losing leadership stops it and publishes an idle view (no groups, not
//! synced, not running), so the leader loop drops its desired state. A new leader plans no
//! removal until its discovery has synced (docs/architecture.md, I7), and since the table
//! already holds every assignment, starting cold moves nothing.

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::ServiceDiscoveryConfig;
use super::manager::Discovered;
use super::manager::DiscoveryManager;
use super::manager::DiscoveryOptions;

/// The view while discovery does not run here.
fn idle(generation: u64, unsupported: &[(String, String)]) -> Discovered {
    Discovered {
        unsupported: unsupported.to_vec(),
        generation,
        ..Discovered::default()
    }
}

/// Run discovery for `jobs` whenever `leading` is true; returns the view (stable across
/// starts and stops, with its own increasing generation) and the owning task.
pub fn spawn(
    jobs: Vec<(String, Vec<ServiceDiscoveryConfig>)>,
    options: DiscoveryOptions,
    mut leading: watch::Receiver<bool>,
    shutdown: CancellationToken,
) -> (watch::Receiver<Discovered>, JoinHandle<()>) {
    let (publish, view) = watch::channel(idle(0, &[]));
    let task = tokio::spawn(async move {
        let mut generation = 0u64;
        let mut unsupported: Vec<(String, String)> = Vec::new();
        loop {
            // Idle until this replica leads.
            while !*leading.borrow_and_update() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = leading.changed() => if changed.is_err() { return },
                }
            }
            tracing::info!(jobs = jobs.len(), "leading: starting discovery");
            let manager = DiscoveryManager::start(jobs.clone(), &options, &shutdown);
            let mut inner = manager.subscribe();
            let mut fresh = true;
            let stop = loop {
                if std::mem::take(&mut fresh) {
                    let current = inner.borrow_and_update().clone();
                    generation += 1;
                    unsupported.clone_from(&current.unsupported);
                    publish.send_replace(Discovered { generation, ..current });
                }
                tokio::select! {
                    () = shutdown.cancelled() => break true,
                    changed = inner.changed() => {
                        if changed.is_err() {
                            break true;
                        }
                        fresh = true;
                    }
                    changed = leading.changed() => {
                        if changed.is_err() {
                            break true;
                        }
                        if !*leading.borrow_and_update() {
                            break false;
                        }
                    }
                }
            };
            manager.shutdown().await;
            generation += 1;
            publish.send_replace(idle(generation, &unsupported));
            if stop {
                return;
            }
            tracing::info!("no longer leading: discovery stopped, its groups dropped");
        }
    });
    (view, task)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::discovery::Labels;
    use crate::discovery::TargetGroup;

    fn static_job() -> Vec<(String, Vec<ServiceDiscoveryConfig>)> {
        let mut interner = crate::discovery::Interner::default();
        let address = (interner.intern("__address__"), interner.intern("10.0.0.1:80"));
        let group = TargetGroup {
            source: "0".into(),
            targets: vec![Labels::new(vec![address])],
            labels: Labels::default(),
        };
        vec![("job".into(), vec![ServiceDiscoveryConfig::Static(vec![group])])]
    }

    async fn wait_for(view: &mut watch::Receiver<Discovered>, what: &str, ready: impl Fn(&Discovered) -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !ready(&view.borrow_and_update()) {
                view.changed().await.expect("the gate stays up");
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    #[tokio::test]
    async fn discovery_runs_only_while_leading() {
        let (leading, receiver) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let (mut view, task) = spawn(static_job(), DiscoveryOptions::default(), receiver, shutdown.clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let follower = view.borrow_and_update();
            assert!(!follower.running && !follower.all_synced && follower.jobs.is_empty());
        }

        leading.send_replace(true);
        wait_for(&mut view, "the leader's first round", |d| {
            d.running && d.all_synced && d.jobs.get("job").is_some_and(|groups| groups.len() == 1)
        })
        .await;
        let generation = view.borrow().generation;

        leading.send_replace(false);
        wait_for(&mut view, "the idle view", |d| !d.running && d.jobs.is_empty()).await;
        assert!(view.borrow().generation > generation, "generations keep increasing");

        leading.send_replace(true);
        wait_for(&mut view, "discovery again", |d| d.running && d.all_synced).await;
        shutdown.cancel();
        task.await.expect("the gate ends cleanly");
    }
}
