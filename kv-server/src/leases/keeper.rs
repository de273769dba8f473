//! The leader's deadlines of the leases: kept in memory only, as etcd's
//! lessor keeps them. Keep-alives move a deadline without a write; what is
//! replicated is a lease's grant and its end.
//!
//! A node keeps deadlines only while it leads, from the moment its term's
//! first entry is applied (every grant committed before is then in its
//! view). It then gives every lease its full TTL from that moment: a lease
//! never ends early because the leader changed, only late.

use std::collections::{BTreeSet, HashMap};
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
    /// The term this node leads in, once it keeps the deadlines.
    leading: Option<u64>,
    /// Each lease's TTL and deadline.
    leases: HashMap<LeaseId, Tracked>,
    /// The deadlines in order, for the expiry loop.
    queue: BTreeSet<(Instant, LeaseId)>,
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
    /// This node keeps no deadlines: it does not lead (yet).
    NotLeading,
}

impl LeaseKeeper {
    /// Starts keeping the deadlines of `leases` (id and TTL) as the leader
    /// of `term`, each a full TTL from `now`. Nothing if it already does.
    pub fn promote(&self, term: u64, leases: Vec<(LeaseId, Duration)>, now: Instant) {
        let mut state = self.state.lock();
        if state.leading == Some(term) {
            return;
        }
        state.leases.clear();
        state.queue.clear();
        state.leading = Some(term);
        for (id, ttl) in leases {
            state.track(id, ttl, now);
        }
    }

    /// Whether this node keeps deadlines as the leader of `term`.
    pub fn leads_in(&self, term: u64) -> bool {
        self.state.lock().leading == Some(term)
    }

    /// Stops keeping deadlines: this node no longer leads.
    pub fn demote(&self) {
        let mut state = self.state.lock();
        state.leading = None;
        state.leases.clear();
        state.queue.clear();
    }

    /// Lease `id` of `ttl` was granted (applied here).
    pub fn granted(&self, id: LeaseId, ttl: Duration, now: Instant) {
        let mut state = self.state.lock();
        if state.leading.is_some() && !state.leases.contains_key(&id) {
            state.track(id, ttl, now);
        }
    }

    /// Lease `id` ended (applied here), or is known gone.
    pub fn ended(&self, id: LeaseId) {
        let mut state = self.state.lock();
        if let Some(tracked) = state.leases.remove(&id) {
            state.queue.remove(&(tracked.deadline, id));
        }
    }

    /// A keep-alive of lease `id` at `now`: its deadline becomes a full TTL
    /// away.
    pub fn keep_alive(&self, id: LeaseId, now: Instant) -> KeepAlive {
        let mut state = self.state.lock();
        if state.leading.is_none() {
            return KeepAlive::NotLeading;
        }
        match state.leases.get(&id).copied() {
            Some(tracked) if !tracked.expiring => {
                state.queue.remove(&(tracked.deadline, id));
                state.track(id, tracked.ttl, now);
                KeepAlive::Renewed(tracked.ttl)
            }
            _ => KeepAlive::NotFound,
        }
    }

    /// The time lease `id` has left at `now`, if this node keeps the
    /// deadlines (`Some(ZERO)`: it is due, expiring, or unknown here).
    pub fn remaining(&self, id: LeaseId, now: Instant) -> Option<Duration> {
        let state = self.state.lock();
        state.leading?;
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

    /// The expiry of lease `id` could not be proposed: try again at `at`,
    /// if this node still keeps it.
    pub fn retry_at(&self, id: LeaseId, at: Instant) {
        let mut state = self.state.lock();
        if let Some(tracked) = state.leases.get_mut(&id) {
            tracked.expiring = false;
            tracked.deadline = at;
            state.queue.insert((at, id));
        }
    }
}

impl KeeperState {
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

    #[test]
    fn a_grant_applied_before_the_promotion_is_tracked_when_reported_again_after_it() {
        // The lease loop reads the leases, then promotes: a grant applied
        // in between is reported while the keeper does not lead yet, so
        // the loop reports every lease again once it does.
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.granted(7, TTL, now);
        keeper.promote(3, vec![(1, TTL)], now);
        assert_eq!(keeper.keep_alive(7, now), KeepAlive::NotFound);
        keeper.granted(1, TTL, now);
        keeper.granted(7, TTL, now);
        assert_eq!(keeper.keep_alive(7, now), KeepAlive::Renewed(TTL));
        assert_eq!(keeper.keep_alive(1, now), KeepAlive::Renewed(TTL));
        assert_eq!(keeper.due(now + TTL, 10), vec![1, 7]);
    }

    #[test]
    fn a_follower_keeps_no_deadlines_and_answers_not_leading() {
        let keeper = LeaseKeeper::default();
        let now = Instant::now();
        keeper.granted(1, TTL, now);
        assert_eq!(keeper.keep_alive(1, now), KeepAlive::NotLeading);
        assert_eq!(keeper.remaining(1, now), None);
        assert!(keeper.due(now + 2 * TTL, 10).is_empty());
    }

    #[test]
    fn a_promotion_gives_every_lease_its_full_ttl_from_then() {
        let keeper = LeaseKeeper::default();
        let promoted = Instant::now();
        keeper.promote(3, vec![(1, TTL), (2, 2 * TTL)], promoted);
        assert!(keeper.leads_in(3));
        assert_eq!(keeper.remaining(1, promoted), Some(TTL));
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
        keeper.promote(1, vec![(7, TTL)], start);
        let later = start + TTL / 2;
        assert_eq!(keeper.keep_alive(7, later), KeepAlive::Renewed(TTL));
        assert!(keeper.due(start + TTL, 10).is_empty(), "renewed past it");
        assert_eq!(keeper.due(later + TTL, 10), vec![7]);
        assert_eq!(
            keeper.keep_alive(7, later + TTL),
            KeepAlive::NotFound,
            "an expiring lease cannot be saved"
        );
        assert_eq!(keeper.keep_alive(8, later), KeepAlive::NotFound);
    }

    #[test]
    fn due_leases_come_earliest_first_at_most_max_at_a_time() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        keeper.promote(1, vec![], start);
        for id in 1..=5 {
            keeper.granted(id, TTL + Duration::from_millis(6 - id), start);
        }
        let end = start + 2 * TTL;
        assert_eq!(keeper.due(end, 2), vec![5, 4]);
        assert_eq!(keeper.due(end, 10), vec![3, 2, 1]);
    }

    #[test]
    fn an_expiry_that_could_not_be_proposed_comes_due_again() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        keeper.promote(1, vec![(1, TTL)], start);
        assert_eq!(keeper.due(start + TTL, 10), vec![1]);
        keeper.retry_at(1, start + TTL + Duration::from_secs(1));
        assert!(keeper.due(start + TTL, 10).is_empty());
        assert_eq!(
            keeper.due(start + TTL + Duration::from_secs(1), 10),
            vec![1]
        );
        keeper.ended(1);
        assert_eq!(keeper.keep_alive(1, start), KeepAlive::NotFound);
    }

    #[test]
    fn a_demotion_forgets_every_deadline_and_a_new_term_starts_over() {
        let keeper = LeaseKeeper::default();
        let start = Instant::now();
        keeper.promote(1, vec![(1, TTL)], start);
        keeper.demote();
        assert_eq!(keeper.remaining(1, start), None);
        assert_eq!(keeper.keep_alive(1, start), KeepAlive::NotLeading);
        let again = start + TTL;
        keeper.promote(2, vec![(1, TTL)], again);
        assert_eq!(keeper.remaining(1, again), Some(TTL));
    }
}
