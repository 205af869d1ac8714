//! Collectors outside Kubernetes: `collectors.static` (always present) and
//! `collectors.register_on_poll` (a collector exists while it polls).
//!
//! Polls reach any replica. Each replica notes the collector ids it serves ([`PollLog`]); a
//! forwarder sends them to the leader in batches, once per id per refresh period, over the
//! peer port. The leader keeps the last time it heard of each id ([`Registry`]); an id not
//! heard of for `ttl` stops being observed, which starts the grace period like any other
//! absent collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use rustc_hash::FxHashMap;
use rustc_hash::FxHashSet;
use serde::Deserialize;
use serde::Serialize;
use ta_raft::CollectorState;
use ta_raft::Replica;
use ta_raft::Table;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::allocation::membership::ObservedCollector;
use crate::allocation::membership::ObservedCollectors;
use crate::allocation::membership::Readiness;

/// Longest collector id accepted (a Kubernetes pod name is at most 253 bytes).
pub const MAX_COLLECTOR_ID_LEN: usize = 253;
/// Most distinct ids one replica notes between two forwards; more are dropped, so a client
/// inventing ids cannot grow memory without bound.
const MAX_PENDING_IDS: usize = 10_000;
/// Most collectors the leader keeps registered.
const MAX_REGISTERED: usize = 10_000;
/// How often a replica forwards what it noted.
const FORWARD_INTERVAL: Duration = Duration::from_secs(1);

/// Whether `id` may be registered.
pub fn valid_collector_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_COLLECTOR_ID_LEN && !id.chars().any(char::is_control)
}

/// A batch a follower forwards to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registrations {
    pub collector_ids: Vec<String>,
}

/// The ids this replica served since the last forward, and when each was last forwarded.
#[derive(Default)]
pub struct PollLog {
    state: Mutex<PollState>,
}

#[derive(Default)]
struct PollState {
    pending: FxHashSet<String>,
    forwarded_at: FxHashMap<String, Instant>,
}

impl PollLog {
    /// Note a poll by `collector_id`.
    pub fn saw(&self, collector_id: &str) {
        if !valid_collector_id(collector_id) {
            return;
        }
        let mut state = self.state.lock().expect("poll log lock poisoned");
        if state.pending.contains(collector_id) || state.pending.len() >= MAX_PENDING_IDS {
            return;
        }
        state.pending.insert(collector_id.to_string());
    }

    /// The ids due for forwarding now: new ones, and known ones last forwarded more than
    /// `refresh` ago.
    fn due(&self, refresh: Duration) -> Vec<String> {
        let mut state = self.state.lock().expect("poll log lock poisoned");
        let now = Instant::now();
        let pending: Vec<String> = state.pending.drain().collect();
        state.forwarded_at.retain(|_, at| now.duration_since(*at) < refresh * 4);
        let mut due = Vec::new();
        for id in pending {
            let fresh = state
                .forwarded_at
                .get(&id)
                .is_some_and(|at| now.duration_since(*at) < refresh);
            if !fresh {
                state.forwarded_at.insert(id.clone(), now);
                due.push(id);
            }
        }
        due.sort();
        due
    }

    /// Forget when ids were forwarded, so the next polls are forwarded at once (after a
    /// failed forward or a change of leader).
    fn forget_forwarded(&self, ids: &[String]) {
        let mut state = self.state.lock().expect("poll log lock poisoned");
        for id in ids {
            state.forwarded_at.remove(id);
        }
    }
}

/// Forward noted polls to the leader until `shutdown`.
pub async fn forward(log: Arc<PollLog>, replica: Arc<Replica>, ttl: Duration, shutdown: CancellationToken) {
    // Several refreshes per ttl, so one lost forward does not expire a live collector.
    let refresh = (ttl / 4).max(Duration::from_secs(1));
    let mut ticker = tokio::time::interval(FORWARD_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let due = log.due(refresh);
        if due.is_empty() {
            continue;
        }
        let message = match serde_json::to_vec(&Registrations {
            collector_ids: due.clone(),
        }) {
            Ok(message) => message,
            Err(_) => continue,
        };
        if let Err(e) = replica.forward_to_leader(message).await {
            tracing::debug!(%e, collectors = due.len(), "registrations not forwarded; retrying");
            log.forget_forwarded(&due);
        }
    }
}

/// The leader's view of collectors outside Kubernetes.
pub struct Registry {
    static_ids: Vec<String>,
    register_on_poll: bool,
    ttl: Duration,
    heard: BTreeMap<String, Instant>,
}

impl Registry {
    pub fn new(static_ids: Vec<String>, register_on_poll: bool, ttl: Duration) -> Self {
        Self {
            static_ids,
            register_on_poll,
            ttl,
            heard: BTreeMap::new(),
        }
    }

    /// Record registrations heard at `now`.
    pub fn heard(&mut self, ids: impl IntoIterator<Item = String>, now: Instant) {
        if !self.register_on_poll {
            return;
        }
        for id in ids {
            if !valid_collector_id(&id) {
                continue;
            }
            if self.heard.len() >= MAX_REGISTERED && !self.heard.contains_key(&id) {
                tracing::warn!(id, "too many registered collectors; registration ignored");
                continue;
            }
            self.heard.insert(id, now);
        }
    }

    /// A new leader gives every ready collector in the table a fresh `ttl`: their polls may
    /// have gone to the old leader, and the next forwards arrive within one refresh.
    pub fn adopt_table(&mut self, table: &Table, now: Instant) {
        if !self.register_on_poll {
            return;
        }
        let ids: Vec<String> = table
            .collectors
            .iter()
            .filter(|(id, collector)| {
                collector.state == CollectorState::Ready && !self.static_ids.iter().any(|s| s == id.as_ref())
            })
            .map(|(id, _)| id.to_string())
            .collect();
        self.heard(ids, now);
    }

    /// Every collector observed at `now`.
    pub fn observed(&mut self, now: Instant) -> ObservedCollectors {
        let ttl = self.ttl;
        self.heard.retain(|_, at| now.duration_since(*at) < ttl);
        let ready = ObservedCollector {
            node: None,
            readiness: Readiness::Ready,
        };
        self.static_ids
            .iter()
            .chain(self.heard.keys())
            .map(|id| (id.clone(), ready.clone()))
            .collect()
    }
}

/// Decode a forwarded batch and pass it to the leader loop.
pub fn forward_handler(sender: mpsc::Sender<Vec<String>>) -> ta_raft::network::server::ForwardHandler {
    Arc::new(
        move |message: Vec<u8>| match serde_json::from_slice::<Registrations>(&message) {
            Ok(batch) => {
                let ids: Vec<String> = batch
                    .collector_ids
                    .into_iter()
                    .filter(|id| valid_collector_id(id))
                    .take(MAX_PENDING_IDS)
                    .collect();
                if sender.try_send(ids).is_err() {
                    tracing::debug!("leader loop busy; registrations dropped until the next forward");
                }
            }
            Err(e) => tracing::warn!(%e, "undecodable forwarded registrations"),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_expire_after_the_ttl() {
        let start = Instant::now();
        let mut registry = Registry::new(vec!["static-0".into()], true, Duration::from_secs(60));
        registry.heard(["polled-0".to_string()], start);
        let observed = registry.observed(start + Duration::from_secs(59));
        assert_eq!(observed.keys().collect::<Vec<_>>(), ["polled-0", "static-0"]);
        let observed = registry.observed(start + Duration::from_secs(61));
        assert_eq!(observed.keys().collect::<Vec<_>>(), ["static-0"]);
    }

    #[test]
    fn bad_ids_are_not_registered() {
        let mut registry = Registry::new(vec![], true, Duration::from_secs(60));
        let now = Instant::now();
        registry.heard(["".to_string(), "a\nb".to_string(), "x".repeat(300)], now);
        assert!(registry.observed(now).is_empty());
    }

    #[test]
    fn polls_are_forwarded_once_per_refresh() {
        let log = PollLog::default();
        log.saw("c-1");
        log.saw("c-1");
        log.saw("");
        assert_eq!(log.due(Duration::from_secs(15)), ["c-1"]);
        log.saw("c-1");
        assert!(log.due(Duration::from_secs(15)).is_empty());
        log.saw("c-1");
        assert_eq!(log.due(Duration::ZERO), ["c-1"]);
    }
}
