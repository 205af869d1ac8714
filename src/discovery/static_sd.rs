//! `static_configs`: groups fixed by the configuration. They are published once, synced at
//! once, with sources `"0"`, `"1"`, … in configuration order as Prometheus numbers them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Provider;
use super::ProviderSnapshot;
use super::TargetGroup;
use super::publish_round;

/// Provider for one job's `static_configs`.
pub struct StaticProvider {
    groups: Vec<TargetGroup>,
}

impl StaticProvider {
    pub fn new(groups: Vec<TargetGroup>) -> Self {
        Self { groups }
    }

    /// The groups as published: renumbered by position whatever source they came with.
    pub fn snapshot_groups(&self) -> Vec<Arc<TargetGroup>> {
        self.groups
            .iter()
            .enumerate()
            .map(|(index, group)| {
                Arc::new(TargetGroup {
                    source: index.to_string().into(),
                    ..group.clone()
                })
            })
            .collect()
    }
}

impl Provider for StaticProvider {
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            publish_round(&publish, self.snapshot_groups(), None);
            // Keeping the sender open tells subscribers the source is alive, not finished.
            shutdown.cancelled().await;
        })
    }
}
