//! The harness's handle on the running cluster: the backend (whose blocking operations run on
//! a blocking thread), the placements, and probes over HTTP: who leads, who is ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;

use crate::backend::Backend;
use crate::backend::BackendError;
use crate::backend::Placement;

/// How often probes ask while waiting.
const PROBE_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{what} did not happen within {:.0} s", within.as_secs_f64())]
    Timeout { what: String, within: Duration },
}

#[derive(Clone)]
pub struct Cluster {
    backend: Arc<dyn Backend>,
    placements: Vec<Placement>,
    client: reqwest::Client,
}

impl Cluster {
    pub fn new(backend: Arc<dyn Backend>, client: reqwest::Client) -> Self {
        let placements = backend.placements().to_vec();
        Cluster {
            backend,
            placements,
            client,
        }
    }

    pub fn placements(&self) -> &[Placement] {
        &self.placements
    }

    pub fn names(&self) -> Vec<String> {
        self.placements.iter().map(|placement| placement.name.clone()).collect()
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Run a backend operation on a blocking thread.
    pub async fn act<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&dyn Backend) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || operation(backend.as_ref()))
            .await
            .unwrap_or_else(|join_error| Err(BackendError::Other(format!("backend operation panicked: {join_error}"))))
    }

    /// What each replica answers on `path`: its status and `X-Allocator-Leader`, or `None`
    /// when it does not answer.
    async fn ask_all(&self, path: &str) -> BTreeMap<String, Option<(StatusCode, Option<String>)>> {
        let asks = self.placements.iter().map(|placement| {
            let url = format!("{}{path}", placement.api_url);
            let client = self.client.clone();
            async move {
                let answer = client.get(url).send().await.ok().map(|response| {
                    let leader = response
                        .headers()
                        .get("x-allocator-leader")
                        .and_then(|value| value.to_str().ok())
                        .filter(|value| !value.is_empty())
                        .map(str::to_string);
                    (response.status(), leader)
                });
                (placement.name.clone(), answer)
            }
        });
        join_all(asks).await.into_iter().collect()
    }

    /// The leader a majority of replicas name, if any.
    pub async fn leader(&self) -> Option<String> {
        let answers = self.ask_all("/livez").await;
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        for (_, leader) in answers.values().flatten() {
            if let Some(leader) = leader {
                *votes.entry(leader.clone()).or_default() += 1;
            }
        }
        let majority = self.placements.len() / 2 + 1;
        votes
            .into_iter()
            .find(|(_, count)| *count >= majority)
            .map(|(leader, _)| leader)
    }

    /// Wait until a majority names one leader.
    pub async fn wait_leader(&self, within: Duration) -> Result<String, ClusterError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(leader) = self.leader().await {
                return Ok(leader);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: "a majority naming one leader".to_string(),
                    within,
                });
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Wait until every replica is ready (`/readyz` 200) and all name the same leader.
    pub async fn wait_healthy(&self, within: Duration) -> Result<String, ClusterError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let answers = self.ask_all("/readyz").await;
            let leaders: Vec<Option<&String>> = answers
                .values()
                .map(|answer| match answer {
                    Some((StatusCode::OK, leader)) => leader.as_ref(),
                    _ => None,
                })
                .collect();
            if let Some(Some(first)) = leaders.first()
                && leaders.iter().all(|leader| *leader == Some(*first))
            {
                return Ok((*first).clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let states: Vec<String> = answers
                    .iter()
                    .map(|(name, answer)| match answer {
                        Some((status, leader)) => format!("{name}: {status}, leader {leader:?}"),
                        None => format!("{name}: no answer"),
                    })
                    .collect();
                return Err(ClusterError::Timeout {
                    what: format!("every replica ready under one leader ({})", states.join("; ")),
                    within,
                });
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Wait until `replica` answers `/readyz` with 200.
    pub async fn wait_ready(&self, replica: &str, within: Duration) -> Result<(), ClusterError> {
        let url = self
            .placements
            .iter()
            .find(|placement| placement.name == replica)
            .map(|placement| format!("{}/readyz", placement.api_url))
            .ok_or_else(|| BackendError::UnknownReplica(replica.to_string()))?;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(response) = self.client.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("{replica} ready"),
                    within,
                });
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
}
