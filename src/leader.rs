//! The leader loop: discovery and collector membership in, command batches out.
//!
//! Discovery runs on the leader only (`discovery/gate.rs`): the loop keeps its desired targets
//! in step with what discovery publishes, which is nothing on a follower, so a follower holds
//! no desired state. Only the leader plans and proposes. Changes are coalesced: the loop wakes
//! once per `coalesce_window`, or on a discovery change when no plan went out within the
//! window (once discovery has been quiet for 200 ms, so a change that arrives as a stream of
//! updates is one batch; the change completing the first sync at once), and turns whatever
//! arrived since into one batch. A new leader
//! starts discovery cold; until it has synced, plans never remove a target, and the table
//! already holds every assignment, so nothing moves meanwhile.
//!
//! Safety rules (docs/architecture.md, I4, I7):
//! - A new leader first waits until it has applied everything committed before its term
//!   (a linearizable read), then plans the whole table once.
//! - Until every discovery source has completed its first round, plans never remove a
//!   target: an empty list before sync is not "all gone".
//! - Grace timers live in the table (`AbsentSince`), so a failover neither restarts nor
//!   forgets them.
//! - With collectors from Kubernetes, nothing about targets or collectors is planned until
//!   the collector pods have been listed once: an unlisted collector is unknown, not absent.
//! - Every decision carries its precondition; a plan made against a table that changed
//!   (for instance by an old leader's last batch) is rejected whole and re-planned from
//!   scratch, never half-applied.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use openraft::ServerState;
use openraft::async_runtime::watch::WatchReceiver;
use ta_raft::CommandBuilder;
use ta_raft::Outcome;
use ta_raft::ProposeError;
use ta_raft::Replica;
use ta_raft::TargetId;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::allocation::StrategyName;
use crate::allocation::planner;
use crate::allocation::planner::PlanInput;
use crate::allocation::planner::Scope;
use crate::allocation::strategy::Strategy;
use crate::api::Refusals;
use crate::blocking::off_the_runtime;
use crate::config::Config;
use crate::config::scrape::ScrapeConfig;
use crate::discovery::manager::Discovered;
use crate::kubernetes::collectors::CollectorView;
use crate::kubernetes::prometheus_cr::combined::JobSet;
use crate::metrics::Metrics;
use crate::pipeline::DesiredState;
use crate::registration::Registry;

/// What the loop needs.
pub struct LeaderLoop {
    pub replica: Arc<Replica>,
    pub config: Arc<Config>,
    pub strategy: Box<dyn Strategy>,
    pub discovery: watch::Receiver<Discovered>,
    /// Every job: the file's, plus those generated from Prometheus CRs when enabled. The
    /// job set changes at run time only with Prometheus CRs.
    pub jobs: watch::Receiver<JobSet>,
    pub registrations: mpsc::Receiver<Vec<String>>,
    /// Collector discovery from Kubernetes; `None` when collectors are static or register
    /// on poll (the registry then reports them).
    pub kubernetes_collectors: Option<watch::Receiver<CollectorView>>,
    pub metrics: Arc<Metrics>,
    pub coalesce_window: Duration,
    /// What `limits:` refuses, published for `/debug/status`.
    pub refusals: Arc<ArcSwap<Refusals>>,
}

/// The scrape configs the job set wants in the table, as JSON text by job, and their
/// digest.
///
/// A job set that is not complete yet (Prometheus CRs not listed) gets another digest than
/// the same jobs once complete, so that the table is revisited, and stale jobs removed, when
/// it completes.
fn wanted_scrape_configs(jobs: &JobSet) -> (Vec<(String, String)>, u64) {
    let mut configs: Vec<(String, String)> = jobs
        .configs
        .iter()
        .map(|scrape| (scrape.job.name.clone(), scrape.rendered.to_string()))
        .collect();
    configs.sort();
    configs.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
    for (job, text) in &configs {
        hasher.update(job.as_bytes());
        hasher.update(&[0xff]);
        hasher.update(text.as_bytes());
        hasher.update(&[0xff]);
    }
    if !jobs.synced {
        hasher.update(b"incomplete");
    }
    (configs, hasher.digest())
}

fn unix_millis_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Moves made to even out counts, for `balanced.max_moves_per_minute`.
#[derive(Default)]
struct MoveBudget {
    recent: VecDeque<(Instant, usize)>,
}

impl MoveBudget {
    const WINDOW: Duration = Duration::from_secs(60);

    fn remaining(&mut self, per_minute: Option<u32>, now: Instant) -> Option<usize> {
        let limit = per_minute? as usize;
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= Self::WINDOW)
        {
            self.recent.pop_front();
        }
        let used: usize = self.recent.iter().map(|(_, moves)| moves).sum();
        Some(limit.saturating_sub(used))
    }

    fn spend(&mut self, moves: usize, now: Instant) {
        if moves > 0 {
            self.recent.push_back((now, moves));
        }
    }
}

/// Leadership as the loop last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leading {
    No,
    /// Leader in this term, caught up and planning.
    Yes {
        term: u64,
    },
}

impl LeaderLoop {
    /// Run until `shutdown`.
    /// Woken by a discovery change: wait until discovery has been quiet for
    /// [`DISCOVERY_SETTLE`] (at most one coalesce window), so that a change arriving as a
    /// stream of updates (a rollout seen through kubernetes_sd: pods deleted and added, then
    /// their slices) goes out as one plan instead of its first update at once and the rest a
    /// window later. The change that completes discovery's first sync (`was_synced` false)
    /// is planned at once: a cold start waits for nothing more. False when discovery has
    /// closed.
    async fn settle_discovery(&mut self, shutdown: &CancellationToken, was_synced: bool) -> bool {
        let settle = DISCOVERY_SETTLE.min(self.coalesce_window);
        let until = tokio::time::Instant::now() + self.coalesce_window;
        loop {
            if !was_synced && self.discovery.borrow().all_synced {
                return true;
            }
            let quiet_at = (tokio::time::Instant::now() + settle).min(until);
            tokio::select! {
                () = shutdown.cancelled() => return true,
                () = tokio::time::sleep_until(quiet_at) => return true,
                changed = self.discovery.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                    if tokio::time::Instant::now() >= until {
                        return true;
                    }
                }
            }
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let collectors = &self.config.collectors;
        let mut registry = Registry::new(
            collectors.static_ids.clone(),
            collectors.register_on_poll.enabled,
            collectors.register_on_poll.ttl,
        );
        let mut jobs = self.jobs.borrow_and_update().clone();
        let (mut wanted_configs, mut config_digest) = wanted_scrape_configs(&jobs);
        let strategy_name = self.config.strategy.strategy.as_str();
        let limits = self.config.limits;
        let mut desired = DesiredState::with_limits(limits);
        let mut refusals = Refusals::default();
        let mut synced = false;
        let mut pending: Vec<TargetId> = Vec::new();
        let mut full_plan_needed = true;
        let mut leading = Leading::No;
        let mut budget = MoveBudget::default();
        let mut last_observed = None;
        let mut rebalance_pending = false;
        let mut waiting_for_collectors_logged = false;
        let mut ticker = tokio::time::interval(self.coalesce_window);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        // The last proposal of targets: a discovery change wakes the loop at once unless one
        // went out within the coalesce window, so a change arriving alone is planned without
        // waiting for the next tick, and a stream of changes still makes one batch per window.
        let mut last_plan: Option<Instant> = None;
        let mut discovery_open = true;
        // When this leadership began: its first plan waits up to FIRST_PLAN_SYNC_WINDOWS
        // windows for discovery to sync every job, so a cold start goes out as one plan
        // rather than one for the jobs that answered first and another a window later for
        // the rest (kubernetes_sd lists 100k pods in 1-3 s here). The table already holds
        // every assignment a failover must keep serving, so waiting moves nothing.
        let mut leading_since = Instant::now();
        loop {
            let may_wake = discovery_open && last_plan.is_none_or(|at| at.elapsed() >= self.coalesce_window);
            let woken_by_discovery = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => false,
                changed = self.discovery.changed(), if may_wake => {
                    discovery_open = changed.is_ok();
                    discovery_open
                }
            };
            if woken_by_discovery {
                discovery_open = self.settle_discovery(&shutdown, synced).await;
            }
            let now = Instant::now();
            while let Ok(ids) = self.registrations.try_recv() {
                registry.heard(ids, now);
            }
            // A changed job set (Prometheus CRs): new wanted scrape configs, the targets of
            // jobs that left are forgotten, and every job's groups are processed again.
            let mut jobs_changed = false;
            if self.jobs.has_changed().unwrap_or(false) {
                let new_jobs = self.jobs.borrow_and_update().clone();
                for gone in jobs
                    .configs
                    .iter()
                    .filter(|old| !new_jobs.configs.iter().any(|new| new.job.name == old.job.name))
                {
                    pending.extend(desired.remove_job(&gone.job, self.config.filter_strategy));
                }
                jobs = new_jobs;
                (wanted_configs, config_digest) = wanted_scrape_configs(&jobs);
                jobs_changed = true;
            }
            // `changed()` above marked the new view as seen.
            if woken_by_discovery || self.discovery.has_changed().unwrap_or(false) || jobs_changed {
                let discovered = self.discovery.borrow_and_update().clone();
                synced = discovered.all_synced;
                // Timed by `process_targets_duration` inside.
                pending.extend(off_the_runtime(|| {
                    self.process_discovered(&jobs.configs, &mut desired, &discovered)
                }));
                self.publish_refusals(&mut refusals, &desired, limits.max_targets);
            }

            // Leadership.
            let (state, term) = {
                let metrics = self.replica.raft().metrics().borrow_watched().clone();
                (metrics.state, metrics.current_term)
            };
            if state != ServerState::Leader {
                if leading != Leading::No {
                    tracing::info!("no longer the leader; planning stops");
                }
                leading = Leading::No;
                // A future term plans everything anyway; do not accumulate.
                pending.clear();
                full_plan_needed = true;
                continue;
            }
            if leading != (Leading::Yes { term }) {
                // Apply everything an earlier leader committed before planning against it.
                if let Err(e) = self.replica.linearizable_table().await {
                    tracing::info!(%e, "leader not caught up yet");
                    continue;
                }
                tracing::info!(term, synced, "leading: planning the whole table");
                leading = Leading::Yes { term };
                leading_since = now;
                full_plan_needed = true;
                registry.adopt_table(&self.replica.table(), now);
            }

            // Scrape configs first: a replica is ready once they are in the table.
            let table = self.replica.table();
            if table.config_digest != Some(config_digest) {
                let mut builder = CommandBuilder::new();
                for (job, text) in &wanted_configs {
                    if table.scrape_configs.get(job.as_str()).map(|t| t.as_ref()) != Some(text.as_str()) {
                        builder.set_scrape_config(job, text.clone());
                    }
                }
                // I7 for jobs too: a job missing from a job set not complete yet stays.
                if synced && jobs.synced {
                    for job in table.scrape_configs.keys() {
                        if wanted_configs.binary_search_by(|(j, _)| j.as_str().cmp(job)).is_err() {
                            builder.remove_scrape_config(job);
                        }
                    }
                }
                builder.set_config_digest(config_digest);
                match self.propose(builder.build(), &mut leading).await {
                    Some(Outcome::Rejected { conflicts }) => {
                        tracing::warn!(?conflicts, "scrape configs rejected");
                        continue;
                    }
                    None => continue,
                    Some(_) => {}
                }
            }

            // Targets and collectors.
            let observed = match &self.kubernetes_collectors {
                None => registry.observed(now),
                Some(view) => {
                    let view = view.borrow();
                    if !view.synced {
                        // I7: before the first list every collector would look absent.
                        if !waiting_for_collectors_logged {
                            tracing::info!(error = ?view.error, "waiting for the collector pods to be listed before planning");
                            waiting_for_collectors_logged = true;
                        }
                        continue;
                    }
                    view.collectors.clone()
                }
            };
            self.metrics.collectors_discovered.set(observed.len() as f64);
            let table = self.replica.table();
            let absent_collectors = table
                .collectors
                .values()
                .any(|c| c.state != ta_raft::CollectorState::Ready);
            let observed_changed = last_observed.as_ref() != Some(&observed);
            if !full_plan_needed && pending.is_empty() && !observed_changed && !absent_collectors && !rebalance_pending
            {
                continue;
            }
            // limits.max_targets: a source gone wrong must not replace the table; the last
            // good assignment stays served until discovery is back under the limit.
            if refusals.max_targets.is_some() {
                continue;
            }
            if !synced && now.duration_since(leading_since) < self.coalesce_window * FIRST_PLAN_SYNC_WINDOWS {
                continue;
            }
            let everything: Vec<TargetId>;
            let scope = if synced && full_plan_needed {
                Scope::Everything
            } else if synced {
                Scope::Changed(&pending)
            } else {
                // No removals before sync: look only at targets discovery does want.
                everything = if full_plan_needed {
                    desired.desired().keys().copied().collect()
                } else {
                    pending
                        .iter()
                        .copied()
                        .filter(|id| desired.desired().contains_key(id))
                        .collect()
                };
                Scope::Changed(&everything)
            };
            let per_minute = match self.config.strategy.strategy {
                StrategyName::Balanced => self.config.strategy.balanced.max_moves_per_minute,
                _ => None,
            };
            let rebalance_budget = budget.remaining(per_minute, now);
            let started = Instant::now();
            let plan = off_the_runtime(|| {
                planner::plan(&PlanInput {
                    table: &table,
                    desired: desired.desired(),
                    scope,
                    collectors: &observed,
                    strategy: self.strategy.as_ref(),
                    grace_period: self.config.collector_not_ready_grace_period,
                    now_unix_millis: unix_millis_now(),
                    rebalance_budget,
                })
            });
            let method = if full_plan_needed {
                "SetTargets"
            } else {
                "SetCollectors"
            };
            let planned = started.elapsed();
            self.metrics
                .time_to_allocate
                .with_label_values(&[method, strategy_name])
                .observe(planned.as_secs_f64());
            if plan.is_empty() {
                last_observed = Some(observed);
                pending.clear();
                rebalance_pending = false;
                if synced {
                    full_plan_needed = false;
                }
                continue;
            }
            let summary = plan.summary.clone();
            let proposed = Instant::now();
            // Only target changes count against the window: a new leader's first plan (its
            // collectors) must not hold back the targets its discovery is about to deliver.
            if summary.changes_targets() {
                last_plan = Some(proposed);
                // The next tick a full window from now, so a stream of changes still makes
                // one batch per window.
                ticker.reset();
            }
            match self.propose_entries(plan.commands, &mut leading).await {
                Some(Outcome::Rejected { conflicts }) => {
                    tracing::info!(
                        conflicts = conflicts.len(),
                        first = ?conflicts.first(),
                        "plan rejected (the table changed underneath it); re-planning everything"
                    );
                    self.metrics.plans.with_label_values(&["rejected"]).inc();
                    full_plan_needed = true;
                }
                Some(_) => {
                    self.metrics.plans.with_label_values(&["applied"]).inc();
                    let reassigned = summary.targets_moved.saturating_sub(summary.rebalance_moves);
                    self.metrics
                        .targets_moved
                        .with_label_values(&["rebalance"])
                        .inc_by(summary.rebalance_moves as u64);
                    self.metrics
                        .targets_moved
                        .with_label_values(&["reassigned"])
                        .inc_by(reassigned as u64);
                    budget.spend(summary.rebalance_moves, now);
                    rebalance_pending = summary.rebalance_moves > 0;
                    tracing::info!(
                        added = summary.targets_added,
                        removed = summary.targets_removed,
                        moved = summary.targets_moved,
                        relabeled = summary.labels_refreshed,
                        rebalanced = summary.rebalance_moves,
                        unassigned = summary.left_unassigned,
                        collectors_set = summary.collectors_set,
                        collectors_removed = summary.collectors_removed,
                        revision = self.replica.table().revision,
                        plan_ms = planned.as_millis() as u64,
                        replicate_and_apply_ms = proposed.elapsed().as_millis() as u64,
                        "plan applied"
                    );
                    if plan.decisions >= TRIM_AFTER_DECISIONS {
                        // The plan's commands and the planner's maps are freed by now; the
                        // read model's trim may have run before they were.
                        off_the_runtime(crate::memory::release_free_memory);
                    }
                    last_observed = Some(observed);
                    pending.clear();
                    if synced {
                        full_plan_needed = false;
                    }
                }
                None => {
                    full_plan_needed = true;
                }
            }
        }
    }

    /// Log, count and publish what the limits refuse now, when it changed.
    fn publish_refusals(&self, refusals: &mut Refusals, desired: &DesiredState, max_targets: usize) {
        let wanted = desired.desired().len();
        let now = Refusals {
            max_targets: (wanted > max_targets).then_some((wanted, max_targets)),
            targets_by_job: desired.refused().clone(),
        };
        if now == *refusals {
            return;
        }
        match now.max_targets {
            Some((wanted, max)) => tracing::error!(
                wanted,
                max,
                "discovery wants more targets than limits.max_targets; no target change is planned \
                 and the last good assignment is served until it is back under the limit"
            ),
            None if refusals.max_targets.is_some() => {
                tracing::info!(wanted, "discovery is back under limits.max_targets; planning resumes")
            }
            None => {}
        }
        self.metrics
            .limit_exceeded
            .with_label_values(&["max_targets"])
            .set(if now.max_targets.is_some() { 1.0 } else { 0.0 });
        for job in refusals.targets_by_job.keys() {
            if !now.targets_by_job.contains_key(job) {
                self.metrics.targets_refused.with_label_values(&[job.as_str()]).set(0.0);
            }
        }
        for (job, count) in &now.targets_by_job {
            if refusals.targets_by_job.get(job) != Some(count) {
                tracing::warn!(
                    job = %job,
                    refused = count,
                    "targets refused: a label longer than limits.max_label_bytes or more labels \
                     than limits.max_labels_per_target"
                );
            }
            self.metrics
                .targets_refused
                .with_label_values(&[job.as_str()])
                .set(*count as f64);
        }
        *refusals = now;
        self.refusals.store(Arc::new(refusals.clone()));
    }

    /// Bring the desired targets up to date; returns the ids that changed.
    fn process_discovered(
        &self,
        jobs: &[ScrapeConfig],
        desired: &mut DesiredState,
        discovered: &Discovered,
    ) -> Vec<TargetId> {
        let started = Instant::now();
        let mut changed = Vec::new();
        if desired.desired().is_empty() {
            desired.reserve(discovered.jobs.values().flatten().map(|g| g.targets.len()).sum());
        }
        for scrape in jobs {
            let job = &scrape.job;
            let groups = discovered.jobs.get(&job.name).map(Vec::as_slice).unwrap_or(&[]);
            let job_started = Instant::now();
            changed.extend(desired.update_job(job, self.config.filter_strategy, groups));
            let seen: usize = groups.iter().map(|g| g.targets.len()).sum();
            self.metrics
                .targets_per_job
                .with_label_values(&[job.name.as_str()])
                .set(seen as f64);
            self.metrics
                .process_target_groups_duration
                .with_label_values(&[job.name.as_str()])
                .observe(job_started.elapsed().as_secs_f64());
        }
        self.metrics.targets_remaining.set(desired.desired().len() as f64);
        self.metrics
            .process_targets_duration
            .observe(started.elapsed().as_secs_f64());
        changed
    }

    /// Propose a plan's entries in order, keeping up to [`ENTRIES_IN_FLIGHT`] of them
    /// replicating at once, and wait until all submitted are applied here. Stops submitting at
    /// the first rejected entry (the later ones were planned on top of it) and returns that
    /// rejection; otherwise `Applied` with the changes of all. `None` when a proposal failed.
    async fn propose_entries(&self, commands: Vec<ta_raft::Command>, leading: &mut Leading) -> Option<Outcome> {
        if commands.len() <= 1 {
            return match commands.into_iter().next() {
                Some(command) => self.propose(command, leading).await,
                None => Some(Outcome::Unchanged),
            };
        }
        let mut waiting = VecDeque::new();
        let mut commands = commands.into_iter();
        let mut changes = 0usize;
        let mut result: Option<Outcome> = None;
        let mut failed = false;
        loop {
            while !failed && result.is_none() && waiting.len() < ENTRIES_IN_FLIGHT {
                let Some(command) = commands.next() else { break };
                match self.replica.submit(command).await {
                    Ok(proposal) => waiting.push_back(proposal),
                    Err(e) => {
                        tracing::warn!(%e, "proposal failed");
                        failed = true;
                    }
                }
            }
            // Everything submitted is awaited, so the next plan sees the table they make.
            let Some(proposal) = waiting.pop_front() else { break };
            match proposal.applied().await {
                Ok(response) => match response.outcome {
                    Outcome::Applied { changes: applied } => changes += applied,
                    Outcome::Unchanged => {}
                    rejected @ Outcome::Rejected { .. } => {
                        if result.is_none() {
                            result = Some(rejected);
                        }
                    }
                },
                Err(ProposeError::NotLeader { .. }) => {
                    *leading = Leading::No;
                    failed = true;
                }
                Err(e) => {
                    tracing::warn!(%e, "proposal failed");
                    failed = true;
                }
            }
        }
        if failed {
            return None;
        }
        Some(result.unwrap_or(if changes > 0 {
            Outcome::Applied { changes }
        } else {
            Outcome::Unchanged
        }))
    }

    /// Propose and wait until applied here; `None` when the proposal failed (leadership lost
    /// or Raft unavailable).
    async fn propose(&self, command: ta_raft::Command, leading: &mut Leading) -> Option<Outcome> {
        match self.replica.propose(command).await {
            Ok(response) => Some(response.outcome),
            Err(ProposeError::NotLeader { .. }) => {
                *leading = Leading::No;
                None
            }
            Err(e) => {
                tracing::warn!(%e, "proposal failed");
                None
            }
        }
    }
}

/// Entries of one plan replicating at once: the next is encoded and sent while the previous
/// is applied, and a follower never has more than this many of a plan's entries queued.
const ENTRIES_IN_FLIGHT: usize = 4;
/// A new leader's first plan waits this many coalesce windows for discovery to sync.
const FIRST_PLAN_SYNC_WINDOWS: u32 = 5;
/// A plan of at least this many decisions gives freed memory back once it is applied.
const TRIM_AFTER_DECISIONS: usize = 50_000;

/// How long discovery must stay quiet after a change before the change is planned.
const DISCOVERY_SETTLE: Duration = Duration::from_millis(200);
