//! `least-weighted`, upstream semantics (`least_weighted.go`): a target keeps its collector
//! while that collector exists; otherwise it goes to the collector with the fewest targets,
//! ties to the fewest targets of the same job, then to the smallest name. It never moves a
//! target to even out load. Upstream places additions in random map order, which makes its
//! result history- and replica-dependent; here candidates come in id order, so every replica
//! and every leader decides alike.

use super::StrategyName;
use super::state::Allocation;
use super::state::Bookkeeping;
use super::state::Candidate;
use super::strategy::Strategy;

/// The `least-weighted` strategy.
pub struct LeastWeighted;

impl Strategy for LeastWeighted {
    fn name(&self) -> StrategyName {
        StrategyName::LeastWeighted
    }

    fn is_stateless(&self) -> bool {
        false
    }

    fn bookkeeping(&self) -> Bookkeeping {
        Bookkeeping::CountsPerJob
    }

    fn assign(&self, allocation: &mut Allocation<'_>, candidates: &[Candidate<'_>]) {
        for candidate in candidates {
            if allocation.candidate_member_owner(candidate).is_some() {
                continue;
            }
            let least = allocation
                .members()
                .keys()
                .map(|member| {
                    (
                        allocation.count(member),
                        allocation.job_count(member, candidate.job),
                        member,
                    )
                })
                .min()
                .map(|(_, _, member)| member.clone());
            allocation.assign_candidate(candidate, least);
        }
    }
}
