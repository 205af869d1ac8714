//! Leader contact and staleness (docs/architecture.md, I6): a follower that has not heard from
//! a leader within its lease, or a leader that has not heard from a quorum, reports itself
//! stale so the HTTP layer stops serving possibly superseded assignments. A follower that
//! comes back into contact (after a start, a wiped volume or a partition) is catching up until
//! it has applied what the leader had committed then: its log holds those entries, but its
//! table is still an old one while it applies them.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

const NEVER: u64 = u64::MAX;

/// When this replica last accepted an append from a current leader.
#[derive(Debug)]
pub struct LeaderContact {
    epoch: Instant,
    last_millis: AtomicU64,
    lease: Duration,
    /// One more than the log index this replica must have applied before it serves again
    /// (0: nothing): the leader's commit when the current spell of contact began.
    apply_needed: AtomicU64,
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self::new(Duration::from_secs(3))
    }
}

impl LeaderContact {
    /// Contact judged against `lease`: a touch after a longer silence begins a new spell.
    pub fn new(lease: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            last_millis: AtomicU64::new(NEVER),
            lease,
            apply_needed: AtomicU64::new(0),
        }
    }

    /// Record contact now with a leader whose commit index is `leader_commit`.
    pub fn touch(&self, leader_commit: Option<u64>) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let previous = self.last_millis.swap(now, Ordering::AcqRel);
        let lease = self.lease.as_millis() as u64;
        if previous == NEVER || now.saturating_sub(previous) > lease {
            self.apply_needed
                .store(leader_commit.map_or(0, |index| index + 1), Ordering::Release);
        }
    }

    /// Whether a replica that has applied up to `last_applied` has caught up with the commit
    /// its current spell of contact began at; `Err` carries that commit index.
    pub fn caught_up(&self, last_applied: Option<u64>) -> Result<(), u64> {
        let needed = self.apply_needed.load(Ordering::Acquire);
        if last_applied.map_or(0, |index| index + 1) >= needed {
            Ok(())
        } else {
            Err(needed - 1)
        }
    }

    /// Time since the last contact, or `None` if there was none.
    pub fn since(&self) -> Option<Duration> {
        match self.last_millis.load(Ordering::Acquire) {
            NEVER => None,
            at => Some(self.epoch.elapsed().saturating_sub(Duration::from_millis(at))),
        }
    }
}

/// Whether a replica may serve assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// In contact: as leader with a quorum, as follower with a leader, within the lease.
    Fresh { since_contact: Duration },
    /// Out of contact for longer than the lease (or never in contact).
    Stale { since_contact: Option<Duration> },
    /// In contact again, still applying what the leader had committed when contact resumed.
    CatchingUp { applied: Option<u64>, needed: u64 },
}

impl Freshness {
    /// True when the replica must not serve (stale or catching up).
    pub fn is_stale(&self) -> bool {
        !matches!(self, Freshness::Fresh { .. })
    }

    /// Judge `since_contact` against `lease`.
    pub fn judge(since_contact: Option<Duration>, lease: Duration) -> Self {
        match since_contact {
            Some(since) if since <= lease => Freshness::Fresh { since_contact: since },
            other => Freshness::Stale { since_contact: other },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_contacted_is_stale() {
        let contact = LeaderContact::default();
        assert_eq!(contact.since(), None);
        assert!(Freshness::judge(contact.since(), Duration::from_secs(3)).is_stale());
    }

    #[test]
    fn contact_within_the_lease_is_fresh() {
        let contact = LeaderContact::default();
        contact.touch(None);
        assert!(!Freshness::judge(contact.since(), Duration::from_secs(3)).is_stale());
        assert!(Freshness::judge(Some(Duration::from_secs(4)), Duration::from_secs(3)).is_stale());
    }

    #[test]
    fn contact_after_silence_waits_for_the_commit_it_began_at_and_steady_contact_does_not() {
        let contact = LeaderContact::new(Duration::from_millis(50));
        contact.touch(Some(16));
        assert_eq!(
            contact.caught_up(Some(7)),
            Err(16),
            "a wiped or restarted replica applying its backlog"
        );
        assert_eq!(contact.caught_up(Some(16)), Ok(()));
        // In steady contact a newer commit does not make a replica that lags by one entry stop.
        contact.touch(Some(17));
        assert_eq!(contact.caught_up(Some(16)), Ok(()));
        // After a silence longer than the lease, the next contact begins a new spell.
        std::thread::sleep(Duration::from_millis(80));
        contact.touch(Some(30));
        assert_eq!(contact.caught_up(Some(16)), Err(30));
        assert_eq!(LeaderContact::default().caught_up(None), Ok(()));
    }
}
