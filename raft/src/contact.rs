//! Leader contact and staleness (DESIGN.md I6): a follower that has not heard from a leader
//! within its lease, or a leader that has not heard from a quorum, reports itself stale so
//! the HTTP layer stops serving possibly superseded assignments.

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
}

impl Default for LeaderContact {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_millis: AtomicU64::new(NEVER),
        }
    }
}

impl LeaderContact {
    /// Record contact now.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_millis.store(now, Ordering::Release);
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
}

impl Freshness {
    pub fn is_stale(&self) -> bool {
        matches!(self, Freshness::Stale { .. })
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
        contact.touch();
        assert!(!Freshness::judge(contact.since(), Duration::from_secs(3)).is_stale());
        assert!(Freshness::judge(Some(Duration::from_secs(4)), Duration::from_secs(3)).is_stale());
    }
}
