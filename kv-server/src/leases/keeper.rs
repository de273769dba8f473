//! The leader's deadlines of the leases: kept in memory only, as etcd's
//! lessor keeps them. Keep-alives move a deadline without a write; what is
//! replicated is a lease's grant and its end.
//!
//! A node keeps deadlines only while it leads, from the moment its term's
//! first entry is applied (every grant committed before is then in its
//! view). It then gives every lease its full TTL from that moment: a lease
//! never ends early because the leader changed, only late.
//!
//! Taking the lead has two steps, so that no lease that ends meanwhile is
//! kept: [`LeaseKeeper::start_leading`] first, from which grants and ends
//! applied here are followed; then the list of leases, read after it, given
//! to [`LeaseKeeper::loaded`], which leaves out every lease that ended in
//! between.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::types::LeaseId;

/// The deadlines, and whether this node keeps them.
#[derive(Debug, Default)]
pub struct LeaseKeeper {
    state: Mutex<KeeperState>,
}

#[derive(Debug, Default)]
struct KeeperState {
    /// Whether this node keeps the deadlines.
    phase: Phase,
    /// Each lease's TTL and deadline.
    leases: HashMap<LeaseId, Tracked>,
    /// The deadlines in order, for the expiry loop.
    queue: BTreeSet<(Instant, LeaseId)>,
}

/// Where the keeper is in taking the lead.
#[derive(Debug, Default, PartialEq, Eq)]
enum Phase {
    /// It keeps no deadlines.
    #[default]
    Following,
    /// It leads in `term` and reads the leases: grants applied are tracked,
    /// and the leases that end are noted in `ended`, so that the list,
    /// which may have been read before they ended, does not bring them back.
    Loading { term: u64, ended: HashSet<LeaseId> },
    /// It keeps the deadlines as the leader of this term.
    Leading(u64),
}

#[derive(Clone, Copy, Debug)]
struct Tracked {
    ttl: Duration,
    deadline: Instant,
    /// Its expiry is proposed: keep-alives no longer save it.
    expiring: bool,
}

/// What a keep-alive found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// The deadline is now a full TTL away.
    Renewed(Duration),
    /// No such lease, or it is expiring.
    NotFound,
    /// This node keeps no deadlines: it does not lead (yet), or leads in
    /// another term than the caller's.
    NotLeading,
}

impl LeaseKeeper {
    /// The first step of taking the lead in `term`: from now on grants and
    /// ends applied here are followed. The caller then reads every lease
    /// and gives them to [`LeaseKeeper::loaded`]. Starts over from nothing
    /// unless it already leads in `term`.
    pub fn start_leading(&self, term: u64) {
        let mut state = self.state.lock();
        if state.phase == Phase::Leading(term) {
            return;
        }
        state.leases.clear();
        state.queue.clear();
        state.phase = Phase::Loading {
            term,
            ended: HashSet::new(),
        };
    }

    /// The second step: keeps the deadlines of `leases` (id and TTL), read
    /// after [`LeaseKeeper::start_leading`] of `term`, each a full TTL from
    /// `now`, but for those that ended since, and from then on leads.
    /// Nothing if the keeper no longer loads for `term` (it was demoted).
    pub fn loaded(&self, term: u64, leases: Vec<(LeaseId, Duration)>, now: Instant) {
        let mut state = self.state.lock();
        let ended = match &mut state.phase {
            Phase::Loading {
                term: loading,
                ended,
            } if *loading == term => std::mem::take(ended),
            _ => return,
        };
        for (id, ttl) in leases {
            if !ended.contains(&id) && !state.leases.contains_key(&id) {
                state.track(id, ttl, now);
            }
        }
        state.phase = Phase::Leading(term);
    }

    /// Whether this node keeps deadlines as the leader of `term`.
    pub fn leads_in(&self, term: u64) -> bool {
        self.state.lock().phase == Phase::Leading(term)
    }

    /// Stops keeping deadlines: this node no longer leads.
    pub fn demote(&self) {
        let mut state = self.state.lock();
        state.phase = Phase::Following;
        state.leases.clear();
        state.queue.clear();
    }

    /// Lease `id` of `ttl` was granted (applied here).
    pub fn granted(&self, id: LeaseId, ttl: Duration, now: Instant) {
        let mut state = self.state.lock();
        if state.phase != Phase::Following && !state.leases.contains_key(&id) {
            state.track(id, ttl, now);
        }
    }

    /// Lease `id` ended (applied here), or is known gone.
    pub fn ended(&self, id: LeaseId) {
        let mut state = self.state.lock();
        if let Some(tracked) = state.leases.remove(&id) {
            state.queue.remove(&(tracked.deadline, id));
        }
        if let Phase::Loading { ended, .. } = &mut state.phase {
            ended.insert(id);
        }
    }

    /// A keep-alive of lease `id` at `now`, on a node that leads in
    /// `leader_term` (`None`: it does not lead): its deadline becomes a
    /// full TTL away. A keeper of another term, one still loading, or a
    /// node that no longer leads keeps no deadline the cluster would honour.
    /// A lease past its deadline is not found, as in etcd, even before its
    /// expiry is proposed (expiries are paced): its client must learn that
    /// it lapsed, not have it back.
    pub fn keep_alive(&self, id: LeaseId, now: Instant, leader_term: Option<u64>) -> KeepAlive {
        let mut state = self.state.lock();
        if !state.leads_in(leader_term) {
            return KeepAlive::NotLeading;
        }
        match state.leases.get(&id).copied() {
            Some(tracked) if !tracked.expiring && tracked.deadline > now => {
                state.queue.remove(&(tracked.deadline, id));
                state.track(id, tracked.ttl, now);
                KeepAlive::Renewed(tracked.ttl)
            }
            _ => KeepAlive::NotFound,
        }
    }

    /// The time lease `id` has left at `now`, if this node keeps the
    /// deadlines as the leader of `leader_term` (`Some(ZERO)`: it is due,
    /// expiring, or unknown here).
    pub fn remaining(
        &self,
        id: LeaseId,
        now: Instant,
        leader_term: Option<u64>,
    ) -> Option<Duration> {
        let state = self.state.lock();
        if !state.leads_in(leader_term) {
            return None;
        }
        Some(match state.leases.get(&id) {
            Some(tracked) if !tracked.expiring => tracked.deadline.saturating_duration_since(now),
            _ => Duration::ZERO,
        })
    }

    /// Up to `max` leases whose deadline has passed at `now`, earliest
    /// first, each marked expiring: the caller proposes their expiry.
    pub fn due(&self, now: Instant, max: usize) -> Vec<LeaseId> {
        let mut state = self.state.lock();
        let mut due = Vec::new();
        while due.len() < max {
            let Some(&(deadline, id)) = state.queue.first() else {
                break;
            };
            if deadline > now {
                break;
            }
            state.queue.pop_first();
            if let Some(tracked) = state.leases.get_mut(&id) {
                tracked.expiring = true;
                due.push(id);
            }
        }
        due
    }

    /// The expiry of lease `id` was not committed in time: propose it again
    /// at `at`, if this node still keeps it. It stays expiring, so no
    /// keep-alive saves it meanwhile: the expiry proposed may still be
    /// committed, as etcd never renews a lease past its deadline.
    pub fn retry_at(&self, id: LeaseId, at: Instant) {
        let mut state = self.state.lock();
        if let Some(tracked) = state.leases.get_mut(&id) {
            tracked.deadline = at;
            state.queue.insert((at, id));
        }
    }
}

impl KeeperState {
    /// Whether this keeper keeps the deadlines for a node leading in
    /// `leader_term`.
    fn leads_in(&self, leader_term: Option<u64>) -> bool {
        leader_term.is_some_and(|term| self.phase == Phase::Leading(term))
    }

    fn track(&mut self, id: LeaseId, ttl: Duration, now: Instant) {
        let deadline = now + ttl;
        self.leases.insert(
            id,
            Tracked {
                ttl,
                deadline,
                expiring: false,
            },
        );
        self.queue.insert((deadline, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    /// Both steps of taking the lead in `term`, with `leases` read between.
    fn promote(keeper: &LeaseKeeper, term: u64, leases: Vec<(LeaseId, Duration)>, now: Instant) {
        keeper.start_leading(term);
        keeper.loaded(term, leases, now);
    }

    #[test]
    fn a_grant_applied_while_the_leases_are_read_is_tracked() {
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.granted(7, TTL, now);
        assert_eq!(keeper.keep_alive(7, now, Some(3)), KeepAlive::NotLeading);
        keeper.start_leading(3);
        // Applied after the list below was read: only `granted` says so.
        keeper.granted(8, TTL, now);
        keeper.loaded(3, vec![(1, TTL), (7, TTL)], now);
        for id in [1, 7, 8] {
            assert_eq!(keeper.keep_alive(id, now, Some(3)), KeepAlive::Renewed(TTL));
        }
        assert_eq!(keeper.due(now + TTL, 10), vec![1, 7, 8]);
    }

    #[test]
    fn a_lease_that_ends_while_the_leases_are_read_is_not_kept() {
        // The list was read before lease 2's end was applied: it still
        // names the lease, which must not come back with a full TTL.
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.start_leading(3);
        keeper.ended(2);
        keeper.loaded(3, vec![(1, TTL), (2, TTL)], now);
        assert_eq!(keeper.keep_alive(2, now, Some(3)), KeepAlive::NotFound);
        assert_eq!(keeper.keep_alive(1, now, Some(3)), KeepAlive::Renewed(TTL));
        assert_eq!(keeper.due(now + TTL, 10), vec![1]);
    }

    #[test]
    fn a_keeper_still_loading_or_demoted_meanwhile_answers_not_leading() {
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.start_leading(3);
        assert_eq!(keeper.keep_alive(1, now, Some(3)), KeepAlive::NotLeading);
        assert_eq!(keeper.remaining(1, now, Some(3)), None);
        keeper.demote();
        keeper.loaded(3, vec![(1, TTL)], now);
        assert!(!keeper.leads_in(3));
        assert_eq!(keeper.keep_alive(1, now, Some(3)), KeepAlive::NotLeading);
    }

    #[test]
    fn a_follower_keeps_no_deadlines_and_answers_not_leading() {
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.granted(1, TTL, now);
        assert_eq!(keeper.keep_alive(1, now, None), KeepAlive::NotLeading);
        assert_eq!(keeper.remaining(1, now, None), None);
        assert!(keeper.due(now + 2 * TTL, 10).is_empty());
    }

    #[test]
    fn a_node_no_longer_leading_in_the_keepers_term_renews_nothing() {
        // The keeper still leads in term 3, but the node has lost the lead
        // (its lease loop has not demoted the keeper yet) or leads in a
        // later term: a renewal there would count for nothing.
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        promote(&keeper, 3, vec![(1, TTL)], now);
        assert_eq!(keeper.keep_alive(1, now, None), KeepAlive::NotLeading);
        assert_eq!(keeper.keep_alive(1, now, Some(4)), KeepAlive::NotLeading);
        assert_eq!(keeper.remaining(1, now, None), None);
        assert_eq!(keeper.remaining(1, now, Some(4)), None);
        assert_eq!(keeper.remaining(1, now, Some(3)), Some(TTL));
    }

    #[test]
    fn a_promotion_gives_every_lease_its_full_ttl_from_then() {
        let keeper = LeaseKeeper::default();
        let promoted = Instant::now();
        promote(&keeper, 3, vec![(1, TTL), (2, 2 * TTL)], promoted);
        assert!(keeper.leads_in(3));
        assert_eq!(keeper.remaining(1, promoted, Some(3)), Some(TTL));
        assert!(keeper
            .due(promoted + TTL - Duration::from_millis(1), 10)
            .is_empty());
        assert_eq!(keeper.due(promoted + TTL, 10), vec![1]);
        assert_eq!(keeper.due(promoted + 2 * TTL, 10), vec![2]);
    }

    #[test]
    fn a_keep_alive_moves_the_deadline_until_the_lease_is_expiring() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        promote(&keeper, 1, vec![(7, TTL)], start);
        let later = start + TTL / 2;
        assert_eq!(
            keeper.keep_alive(7, later, Some(1)),
            KeepAlive::Renewed(TTL)
        );
        assert!(keeper.due(start + TTL, 10).is_empty(), "renewed past it");
        assert_eq!(keeper.due(later + TTL, 10), vec![7]);
        assert_eq!(
            keeper.keep_alive(7, later + TTL, Some(1)),
            KeepAlive::NotFound,
            "an expiring lease cannot be saved"
        );
        assert_eq!(keeper.keep_alive(8, later, Some(1)), KeepAlive::NotFound);
    }

    #[test]
    fn a_lease_past_its_deadline_is_not_renewed_before_its_expiry_is_proposed() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        promote(&keeper, 1, vec![(7, TTL)], start);
        assert_eq!(
            keeper.keep_alive(7, start + TTL, Some(1)),
            KeepAlive::NotFound
        );
        assert_eq!(keeper.due(start + TTL, 10), vec![7], "still due");
    }

    #[test]
    fn due_leases_come_earliest_first_at_most_max_at_a_time() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        promote(&keeper, 1, vec![], start);
        for id in 1..=5 {
            keeper.granted(id, TTL + Duration::from_millis(6 - id), start);
        }
        let end = start + 2 * TTL;
        assert_eq!(keeper.due(end, 2), vec![5, 4]);
        assert_eq!(keeper.due(end, 10), vec![3, 2, 1]);
    }

    #[test]
    fn an_expiry_not_committed_in_time_comes_due_again_and_no_keep_alive_saves_it() {
        // The expiry proposed may still be committed: the lease must not be
        // renewed in the meantime.
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        promote(&keeper, 1, vec![(1, TTL)], start);
        assert_eq!(keeper.due(start + TTL, 10), vec![1]);
        let retry = start + TTL + Duration::from_secs(1);
        keeper.retry_at(1, retry);
        assert_eq!(
            keeper.keep_alive(1, start + TTL, Some(1)),
            KeepAlive::NotFound
        );
        assert_eq!(
            keeper.remaining(1, start + TTL, Some(1)),
            Some(Duration::ZERO)
        );
        assert!(keeper.due(start + TTL, 10).is_empty());
        assert_eq!(keeper.due(retry, 10), vec![1]);
        keeper.ended(1);
        assert_eq!(keeper.keep_alive(1, start, Some(1)), KeepAlive::NotFound);
        assert!(keeper.due(retry + TTL, 10).is_empty());
    }

    #[test]
    fn a_demotion_forgets_every_deadline_and_a_new_term_starts_over() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        promote(&keeper, 1, vec![(1, TTL)], start);
        keeper.demote();
        assert_eq!(keeper.remaining(1, start, Some(1)), None);
        assert_eq!(keeper.keep_alive(1, start, Some(1)), KeepAlive::NotLeading);
        let again = start + TTL;
        promote(&keeper, 2, vec![(1, TTL)], again);
        assert_eq!(keeper.remaining(1, again, Some(2)), Some(TTL));
    }
}
