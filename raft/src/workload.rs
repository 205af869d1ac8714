//! Seeded synthetic target batches in upstream's benchmark shape (~40 labels per target,
//! Kubernetes service-discovery style, most values shared), for tests and benchmarks.

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::command::Command;
use crate::command::CommandBuilder;
use crate::command::Expect;
use crate::model::CollectorState;
use crate::model::TargetId;

/// Parameters of a synthetic batch.
#[derive(Debug, Clone)]
pub struct BatchShape {
    /// Targets in the batch.
    pub targets: usize,
    /// Labels per target (at least 8).
    pub labels_per_target: usize,
    /// Collectors the targets are spread over (registered in the same batch).
    pub collectors: usize,
    /// Number of jobs.
    pub jobs: usize,
}

impl Default for BatchShape {
    fn default() -> Self {
        Self {
            targets: 1000,
            labels_per_target: 40,
            collectors: 3,
            jobs: 10,
        }
    }
}

/// Build a batch adding `shape.targets` new targets numbered from `first`, round-robin over
/// collectors `collector-0..N`, with every target's labels derived from `seed` and its number.
pub fn new_targets(seed: u64, first: u64, shape: &BatchShape) -> Command {
    let mut rng = StdRng::seed_from_u64(seed ^ first.rotate_left(17));
    let mut builder = CommandBuilder::new();
    for c in 0..shape.collectors {
        builder.set_collector(
            &format!("collector-{c}"),
            Some(&format!("node-{c}")),
            CollectorState::Ready,
        );
    }
    let mut labels: Vec<(String, String)> = Vec::with_capacity(shape.labels_per_target);
    for n in first..first + shape.targets as u64 {
        let job = format!("serviceMonitor/ns-{}/app-{}/0", n % 7, n as usize % shape.jobs.max(1));
        let pod = format!("app-{}-{:05x}", n % 97, rng.r#gen::<u32>() & 0xfffff);
        let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        labels.clear();
        labels.push(("__address__".into(), format!("{ip}:8080")));
        labels.push(("__meta_kubernetes_namespace".into(), format!("ns-{}", n % 7)));
        labels.push(("__meta_kubernetes_pod_name".into(), pod.clone()));
        labels.push(("__meta_kubernetes_pod_ip".into(), ip));
        labels.push(("__meta_kubernetes_pod_node_name".into(), format!("node-{}", n % 50)));
        labels.push((
            "__meta_kubernetes_pod_uid".into(),
            format!("{:032x}", rng.r#gen::<u128>()),
        ));
        labels.push(("__meta_kubernetes_pod_ready".into(), "true".into()));
        labels.push((
            "__meta_kubernetes_endpointslice_name".into(),
            format!("app-{}-x7k2p", n % 97),
        ));
        let mut extra = 0;
        while labels.len() < shape.labels_per_target {
            labels.push((
                format!("__meta_kubernetes_pod_label_key_{extra}"),
                format!("value-{}", (n + extra) % 13),
            ));
            extra += 1;
        }
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let id = TargetId::compute(&job, [("__address__", labels[0].1.as_str()), ("job", job.as_str())]);
        let collector = format!("collector-{}", n as usize % shape.collectors.max(1));
        builder.upsert_target(id, &job, pairs, Some(&collector), Expect::Absent);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_reproducible_from_their_seed() {
        let shape = BatchShape {
            targets: 50,
            ..Default::default()
        };
        assert_eq!(new_targets(7, 0, &shape), new_targets(7, 0, &shape));
        assert_ne!(new_targets(7, 0, &shape), new_targets(8, 0, &shape));
    }

    #[test]
    fn consecutive_batches_do_not_collide() {
        let shape = BatchShape {
            targets: 100,
            ..Default::default()
        };
        let table = crate::apply::apply(&crate::model::Table::new(), 1, &new_targets(1, 0, &shape)).table;
        let next = crate::apply::apply(&table, 2, &new_targets(1, 100, &shape));
        assert!(
            matches!(next.outcome, crate::command::Outcome::Applied { .. }),
            "{:?}",
            next.outcome
        );
        assert_eq!(next.table.targets().len(), 200);
    }
}
