//! Helpers shared by the discovery integration tests: running a provider, waiting for a
//! condition on a `watch` channel with a deadline, and reading snapshots.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use target_allocator::discovery::Provider;
use target_allocator::discovery::ProviderSnapshot;
use target_allocator::discovery::TargetGroup;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: conditions normally hold within milliseconds; the deadline only bounds a failure.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// A provider running in its own task.
pub struct Running {
    pub snapshots: watch::Receiver<ProviderSnapshot>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl Running {
    pub fn start(provider: Box<dyn Provider>) -> Self {
        let (publish, snapshots) = watch::channel(ProviderSnapshot::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(provider.run(publish, shutdown.clone()));
        Self {
            snapshots,
            shutdown,
            task,
        }
    }

    /// Wait until the snapshot satisfies `condition`; panics with `what` and the last snapshot
    /// after the deadline.
    pub async fn wait_for(&mut self, what: &str, condition: impl Fn(&ProviderSnapshot) -> bool) -> ProviderSnapshot {
        wait_for(&mut self.snapshots, what, condition).await
    }

    /// Stop the provider and check that its task ends promptly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(DEADLINE, self.task).await;
        assert!(matches!(ended, Ok(Ok(()))), "provider did not stop cleanly: {ended:?}");
    }
}

/// Wait until the channel's value satisfies `condition`.
pub async fn wait_for<T: Clone + std::fmt::Debug>(
    receiver: &mut watch::Receiver<T>,
    what: &str,
    condition: impl Fn(&T) -> bool,
) -> T {
    let waited = tokio::time::timeout(DEADLINE, async {
        receiver
            .wait_for(|value| condition(value))
            .await
            .map(|value| value.clone())
    })
    .await;
    match waited {
        Ok(Ok(value)) => value,
        Ok(Err(_)) => panic!("channel closed while waiting for: {what}"),
        Err(_) => panic!("timed out waiting for: {what}; last value: {:#?}", *receiver.borrow()),
    }
}

/// All `__address__` values of the groups, in order.
pub fn addresses(groups: &[Arc<TargetGroup>]) -> Vec<String> {
    groups
        .iter()
        .flat_map(|group| group.targets.iter())
        .filter_map(|target| target.get("__address__").map(str::to_string))
        .collect()
}

/// The group with this source.
pub fn group<'a>(snapshot: &'a ProviderSnapshot, source: &str) -> Option<&'a Arc<TargetGroup>> {
    snapshot.groups.iter().find(|group| group.source == source)
}

/// Replace a file's content in one step (write beside it, then rename), as configuration
/// management and Kubernetes volume updates do, so no reader sees a half-written file.
pub fn replace_file(path: &Path, content: &str) {
    let temporary = path.with_extension("partial");
    std::fs::write(&temporary, content).unwrap_or_else(|e| panic!("write {}: {e}", temporary.display()));
    std::fs::rename(&temporary, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}
