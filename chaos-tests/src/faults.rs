//! The faults, each a named scenario done to real processes and networks through the backend
//! and recorded in the history as it happens, and the seeded schedules that compose them.
//!
//! A fault's start is recorded before the backend acts, so the checker's windows contain the
//! real fault. Its heal is recorded after a replica is started again (it cannot answer
//! before), but before a network is repaired: the cut-off replica may hear from a leader, and
//! rightly serve, while the repair command is still running.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::backend::BackendError;
use crate::cluster::Cluster;
use crate::cluster::ClusterError;
use crate::history::EventKind;
use crate::recorder::Recorder;

/// How long a replica may take to be ready again after it starts.
const READY_WITHIN: Duration = Duration::from_secs(45);
/// How long an election may take before a fault that targets the leader gives up.
const LEADER_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Fault {
    /// SIGKILL the leader, restart it after the hold.
    KillLeader,
    /// SIGKILL a follower, restart it after the hold.
    KillFollower,
    /// SIGSTOP the leader past the election timeout, then SIGCONT.
    PauseLeader,
    /// Cut the leader off from the majority, both ways; the harness still polls it.
    IsolateLeader,
    /// The leader's requests to one follower are dropped; the follower's to it pass.
    OneWayPartition,
    /// Cut one follower off from the others, both ways.
    PartitionFollower,
    /// SIGKILL every replica, then start them all.
    FullRestart,
    /// SIGKILL a follower, delete its data, start it: it rejoins under a new node id.
    WipeFollower,
    /// SIGTERM and restart each replica in turn, followers first, waiting for each to be ready.
    RollingRestart,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::OneWayPartition,
        Fault::PartitionFollower,
        Fault::FullRestart,
        Fault::WipeFollower,
        Fault::RollingRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::PauseLeader => "pause-leader",
            Fault::IsolateLeader => "isolate-leader",
            Fault::OneWayPartition => "one-way-partition",
            Fault::PartitionFollower => "partition-follower",
            Fault::FullRestart => "full-restart",
            Fault::WipeFollower => "wipe-follower",
            Fault::RollingRestart => "rolling-restart",
        }
    }

    /// How long the fault is held, drawn from this range. Partitions are held past the lease
    /// plus slack, so the checker sees the cut-off side stop serving (I6); a pause is held
    /// past the election timeout.
    fn hold_range(self, lease: Duration) -> (Duration, Duration) {
        let seconds = Duration::from_secs;
        match self {
            Fault::IsolateLeader | Fault::PartitionFollower => (lease + seconds(4), lease + seconds(8)),
            Fault::PauseLeader => (seconds(2), seconds(5)),
            Fault::RollingRestart => (Duration::ZERO, Duration::ZERO),
            _ => (seconds(2), seconds(6)),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// What one injected fault did, for the progress line.
#[derive(Debug, Clone)]
pub struct Injected {
    pub fault: Fault,
    pub affected: BTreeSet<String>,
    pub held: Duration,
}

impl fmt::Display for Injected {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let affected: Vec<&str> = self.affected.iter().map(String::as_str).collect();
        write!(
            formatter,
            "{} on {} (held {:.1} s)",
            self.fault,
            affected.join(", "),
            self.held.as_secs_f64()
        )
    }
}

/// Inject `fault` and heal it. `rng` picks the follower and the hold.
pub async fn inject(
    fault: Fault,
    cluster: &Cluster,
    recorder: &Recorder,
    rng: &mut StdRng,
    lease: Duration,
) -> Result<Injected, FaultError> {
    let (low, high) = fault.hold_range(lease);
    let held = if high > low { rng.gen_range(low..high) } else { low };
    let leader = cluster.wait_leader(LEADER_WITHIN).await?;
    let followers: Vec<String> = cluster.names().into_iter().filter(|name| *name != leader).collect();
    let follower = followers.choose(rng).cloned().expect("a cluster has followers");
    let name = fault.name().to_string();
    let started = |affected: &BTreeSet<String>, isolating: bool| {
        recorder.event(EventKind::FaultStarted {
            name: name.clone(),
            affected: affected.clone(),
            isolating,
        });
    };
    let healed = || recorder.event(EventKind::FaultHealed { name: name.clone() });
    let restarted = |replica: &str, wiped: bool| {
        recorder.event(EventKind::ReplicaRestarted {
            replica: replica.to_string(),
            wiped,
        })
    };

    let affected: BTreeSet<String> = match fault {
        Fault::KillLeader | Fault::KillFollower => {
            let victim = if fault == Fault::KillLeader { leader } else { follower };
            let affected = BTreeSet::from([victim.clone()]);
            started(&affected, false);
            let target = victim.clone();
            cluster.act(move |backend| backend.kill(&target)).await?;
            tokio::time::sleep(held).await;
            let target = victim.clone();
            cluster.act(move |backend| backend.start(&target)).await?;
            restarted(&victim, false);
            healed();
            affected
        }
        Fault::PauseLeader => {
            let affected = BTreeSet::from([leader.clone()]);
            started(&affected, false);
            let target = leader.clone();
            cluster.act(move |backend| backend.pause(&target)).await?;
            tokio::time::sleep(held).await;
            cluster.act(move |backend| backend.resume(&leader)).await?;
            healed();
            affected
        }
        Fault::IsolateLeader | Fault::PartitionFollower => {
            let victim = if fault == Fault::IsolateLeader {
                leader
            } else {
                follower
            };
            let affected = BTreeSet::from([victim.clone()]);
            started(&affected, true);
            cluster.act(move |backend| backend.isolate(&victim)).await?;
            tokio::time::sleep(held).await;
            healed();
            cluster.act(|backend| backend.heal_network()).await?;
            affected
        }
        Fault::OneWayPartition => {
            // The follower stops hearing the leader, but may call it and the other replicas
            // (and win an election), so it is not held to I6 here.
            let affected = BTreeSet::from([follower.clone()]);
            started(&affected, false);
            cluster.act(move |backend| backend.cut(&leader, &follower)).await?;
            tokio::time::sleep(held).await;
            healed();
            cluster.act(|backend| backend.heal_network()).await?;
            affected
        }
        Fault::FullRestart => {
            let everyone: BTreeSet<String> = cluster.names().into_iter().collect();
            started(&everyone, false);
            for replica in &everyone {
                let target = replica.clone();
                cluster.act(move |backend| backend.kill(&target)).await?;
            }
            tokio::time::sleep(held).await;
            recorder.event(EventKind::FullRestart);
            for replica in &everyone {
                let target = replica.clone();
                cluster.act(move |backend| backend.start(&target)).await?;
            }
            healed();
            everyone
        }
        Fault::WipeFollower => {
            let affected = BTreeSet::from([follower.clone()]);
            started(&affected, false);
            let target = follower.clone();
            cluster
                .act(move |backend| {
                    backend.kill(&target)?;
                    backend.wipe(&target)
                })
                .await?;
            tokio::time::sleep(held).await;
            let target = follower.clone();
            cluster.act(move |backend| backend.start(&target)).await?;
            restarted(&follower, true);
            healed();
            affected
        }
        Fault::RollingRestart => {
            let everyone: BTreeSet<String> = cluster.names().into_iter().collect();
            started(&everyone, false);
            let mut order = followers.clone();
            order.shuffle(rng);
            order.push(leader);
            for replica in &order {
                let target = replica.clone();
                cluster
                    .act(move |backend| {
                        backend.stop(&target)?;
                        backend.start(&target)
                    })
                    .await?;
                restarted(replica, false);
                cluster.wait_ready(replica, READY_WITHIN).await?;
            }
            healed();
            everyone
        }
    };
    Ok(Injected { fault, affected, held })
}

/// The CI schedule: every fault once, in an order drawn from the seed.
pub fn every_fault_once(rng: &mut StdRng) -> Vec<Fault> {
    let mut faults = Fault::ALL.to_vec();
    faults.shuffle(rng);
    faults
}

/// The soak schedule's next fault: any, drawn from the seed.
pub fn any_fault(rng: &mut StdRng) -> Fault {
    *Fault::ALL.choose(rng).expect("the catalogue is not empty")
}
