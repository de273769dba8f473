//! The long-poll watch registry: who is waiting for which key or prefix.
//!
//! A long-poll (`GET /v1/kv/{key}?index=N&wait=30s`, or a prefix list with
//! `index`) asks "tell me when this key, or any key under this prefix,
//! changes after revision N", as Consul's blocking queries do. The HTTP
//! handler registers a [`Waiter`] with [`WatchRegistry::watch`] and awaits
//! it under `tokio::time::timeout`; the state machine, after applying a
//! batch of entries, calls [`WatchRegistry::notify`] with the keys it put or
//! deleted and their revisions, and that resolves exactly the waiters of
//! those keys and of every watched prefix of them.
//!
//! # Protocol: register first, then read
//!
//! The state machine writes the view *before* it notifies. A handler that
//! read the view first and registered afterwards could miss a change applied
//! and notified between the two steps, so handlers do it the other way round:
//!
//! 1. `let waiter = registry.watch(target, n);`
//! 2. read the view; if it already shows a change after `n`, answer at once
//!    (dropping the waiter deregisters it);
//! 3. else `timeout(wait, waiter).await`, then read the view and answer.
//!
//! Every change is either notified before step 1, and then the view read in
//! step 2 already holds it, or after step 1, and then it wakes the waiter.
//! [`Waiter::registered_at`] makes the first half checkable: it is the
//! registry's [`last_notified`](WatchRegistry::last_notified) revision at
//! registration, and the read in step 2 must reflect at least that revision.
//!
//! # Cost
//!
//! A waiter is a `tokio::sync::oneshot` sender and its `after` revision in a
//! map entry; there is no task per waiter and nothing is allocated per
//! revision. Key waiters are indexed by exact key. Prefix waiters are indexed
//! by exact prefix, plus the set of prefix lengths in use: a changed key of
//! length L looks up only its own prefixes at those lengths (at most L + 1
//! lookups, one per length actually watched), so a notify never scans
//! waiters of unrelated keys. The empty prefix `""` watches every key.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// A store revision: the Raft log index of the last applied entry.
pub use crate::types::Revision;

/// What a long-poll watches.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WatchTarget {
    /// Exactly this key.
    Key(String),
    /// Every key that starts with this prefix (`""` is every key).
    Prefix(String),
}

/// The registry of waiting long-polls; clones share the same registry.
#[derive(Clone, Default)]
pub struct WatchRegistry {
    /// Shared by every clone and by every live [`Waiter`].
    index: Arc<Mutex<Index>>,
}

/// A registered long-poll; resolves to the revision of the change that woke it.
///
/// Dropping it (on timeout, client disconnect or an early answer)
/// deregisters it at once.
pub struct Waiter {
    /// Keeps the registry alive, so the sender stays there until it fires.
    index: Arc<Mutex<Index>>,
    /// Where the sender is filed.
    target: Filed,
    /// The sender's id within its key's or prefix's slots.
    id: WaiterId,
    /// The registry's last notified revision when this waiter registered.
    registered_at: Revision,
    /// Receives the revision of the waking change.
    receiver: oneshot::Receiver<Revision>,
}

/// Tells waiters apart within one key's or prefix's slots; never reused.
type WaiterId = u64;

/// The waiters of one exact key or one exact prefix.
type Slots = HashMap<WaiterId, Slot>;

/// One waiter as the registry holds it.
struct Slot {
    /// Only changes with a revision above this wake the waiter.
    after: Revision,
    /// Resolves the waiter.
    sender: oneshot::Sender<Revision>,
}

/// A [`WatchTarget`] as filed in the index; the name is shared with the map key.
#[derive(Clone, Debug)]
enum Filed {
    Key(Arc<str>),
    Prefix(Arc<str>),
}

/// The registry's state, behind one (blocking, non-poisoning) mutex.
///
/// Ownership: the registry handles and every [`Waiter`] share it; the state
/// machine's task locks it in `notify`, HTTP handler tasks in `watch` and in
/// `Waiter::drop`. Every critical section is a few map operations with no
/// `.await` and no call out of this module (`oneshot::Sender::send` only
/// stores the value and schedules the receiving task, it never runs it), so
/// a plain mutex is safe and cannot deadlock. No section panics halfway
/// through an update, so the maps stay consistent even after a panic
/// elsewhere, and the lock does not poison.
#[derive(Default)]
struct Index {
    /// Waiters of exact keys.
    keys: HashMap<Arc<str>, Slots>,
    /// Waiters of prefixes, by exact prefix.
    prefixes: HashMap<Arc<str>, Slots>,
    /// Prefix length in bytes → number of entries of `prefixes` that long.
    prefix_lengths: BTreeMap<usize, usize>,
    /// Number of registered waiters, all maps together.
    waiting: usize,
    /// The id the next waiter gets.
    next_id: WaiterId,
    /// The highest change revision notified so far.
    last_notified: Revision,
}

impl WatchRegistry {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest; the returned [`Waiter`] resolves when a change to
    /// `target` with a revision above `after` is notified.
    pub fn watch(&self, target: WatchTarget, after: Revision) -> Waiter {
        let (sender, receiver) = oneshot::channel();
        let target = match target {
            WatchTarget::Key(key) => Filed::Key(key.into()),
            WatchTarget::Prefix(prefix) => Filed::Prefix(prefix.into()),
        };
        let mut index = self.index.lock();
        let id = index.next_id;
        index.next_id += 1;
        index.insert(&target, id, Slot { after, sender });
        Waiter {
            index: Arc::clone(&self.index),
            target,
            id,
            registered_at: index.last_notified,
            receiver,
        }
    }

    /// Called by the state machine after applying, with the (key, revision)
    /// of every put and delete in apply order; wakes exactly the waiters
    /// whose key or prefix matches a changed key.
    pub fn notify<'a>(&self, changes: impl IntoIterator<Item = (&'a str, Revision)>) {
        let mut index = self.index.lock();
        let before = index.waiting;
        for (key, revision) in changes {
            index.notify_one(key, revision);
        }
        let woken = before - index.waiting;
        if woken > 0 {
            tracing::trace!(woken, waiting = index.waiting, "long-poll waiters woken");
        }
    }

    /// Wakes every waiter registered below `revision`, whatever it watches:
    /// after a snapshot install replaced the whole state at once, any key
    /// may have changed.
    pub fn notify_all(&self, revision: Revision) {
        let mut guard = self.index.lock();
        let index = &mut *guard;
        index.last_notified = index.last_notified.max(revision);
        let mut woken = 0;
        for slots in index.keys.values_mut() {
            woken += fire(slots, revision);
        }
        index.keys.retain(|_, slots| !slots.is_empty());
        let mut emptied = Vec::new();
        for (prefix, slots) in index.prefixes.iter_mut() {
            woken += fire(slots, revision);
            if slots.is_empty() {
                emptied.push(Arc::clone(prefix));
            }
        }
        for prefix in emptied {
            index.prefixes.remove(&prefix);
            index.forget_prefix_length(prefix.len());
        }
        index.waiting -= woken;
    }

    /// Wakes every waiter, whatever it watches: the node is shutting down,
    /// and a long-poll answers what it holds now, as at the end of its
    /// wait, rather than be cut off with no answer when the grace ends.
    pub fn wake_all(&self) {
        let mut guard = self.index.lock();
        let index = &mut *guard;
        for (_, slots) in index.keys.drain().chain(index.prefixes.drain()) {
            for (_, slot) in slots {
                // A receiver dropped meanwhile is deregistering itself.
                let _ = slot.sender.send(slot.after);
            }
        }
        index.prefix_lengths.clear();
        index.waiting = 0;
    }

    /// Number of waiters currently registered (for the metrics gauge).
    pub fn waiting(&self) -> usize {
        self.index.lock().waiting
    }

    /// The highest change revision notified so far (0 before the first).
    #[cfg(test)]
    pub fn last_notified(&self) -> Revision {
        self.index.lock().last_notified
    }
}

impl fmt::Debug for WatchRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = self.index.lock();
        f.debug_struct("WatchRegistry")
            .field("waiting", &index.waiting)
            .field("last_notified", &index.last_notified)
            .finish()
    }
}

impl Waiter {
    /// The registry's last notified revision when this waiter registered:
    /// the state read after registering must reflect at least this revision.
    #[cfg(test)]
    pub fn registered_at(&self) -> Revision {
        self.registered_at
    }
}

impl Future for Waiter {
    type Output = Revision;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Revision> {
        Pin::new(&mut self.receiver).poll(cx).map(|received| {
            received.expect(
                "a waiter's sender is only dropped by sending: the waiter keeps the registry alive",
            )
        })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // A waiter that already fired is gone from the index; this is a no-op.
        self.index.lock().remove(&self.target, self.id);
    }
}

impl fmt::Debug for Waiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Waiter")
            .field("target", &self.target)
            .field("id", &self.id)
            .field("registered_at", &self.registered_at)
            .finish()
    }
}

impl Index {
    /// Files `slot` under `target`.
    fn insert(&mut self, target: &Filed, id: WaiterId, slot: Slot) {
        match target {
            Filed::Key(key) => {
                self.keys
                    .entry(Arc::clone(key))
                    .or_default()
                    .insert(id, slot);
            }
            Filed::Prefix(prefix) => match self.prefixes.entry(Arc::clone(prefix)) {
                Entry::Occupied(slots) => {
                    slots.into_mut().insert(id, slot);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(Slots::from([(id, slot)]));
                    *self.prefix_lengths.entry(prefix.len()).or_default() += 1;
                }
            },
        }
        self.waiting += 1;
    }

    /// Removes waiter `id` from `target`, if it is still there.
    fn remove(&mut self, target: &Filed, id: WaiterId) {
        let (map, name) = match target {
            Filed::Key(key) => (&mut self.keys, key),
            Filed::Prefix(prefix) => (&mut self.prefixes, prefix),
        };
        let Some(slots) = map.get_mut(&**name) else {
            return;
        };
        if slots.remove(&id).is_none() {
            return;
        }
        self.waiting -= 1;
        if slots.is_empty() {
            map.remove(&**name);
            if let Filed::Prefix(prefix) = target {
                self.forget_prefix_length(prefix.len());
            }
        }
    }

    /// Wakes the waiters of `key` and of its watched prefixes whose `after`
    /// is below `revision`.
    fn notify_one(&mut self, key: &str, revision: Revision) {
        self.last_notified = self.last_notified.max(revision);
        if let Some(slots) = self.keys.get_mut(key) {
            self.waiting -= fire(slots, revision);
            if slots.is_empty() {
                self.keys.remove(key);
            }
        }
        // Only the prefix lengths in use, and only up to the key's length.
        let mut from = 0;
        while let Some((&length, _)) = self.prefix_lengths.range(from..).next() {
            if length > key.len() {
                break;
            }
            from = length + 1;
            let Some(prefix) = key.get(..length) else {
                continue; // not a char boundary, so no watched prefix ends here
            };
            let Some(slots) = self.prefixes.get_mut(prefix) else {
                continue;
            };
            self.waiting -= fire(slots, revision);
            if slots.is_empty() {
                self.prefixes.remove(prefix);
                self.forget_prefix_length(length);
            }
        }
    }

    /// Counts one fewer prefix of `length` bytes.
    fn forget_prefix_length(&mut self, length: usize) {
        if let std::collections::btree_map::Entry::Occupied(mut count) =
            self.prefix_lengths.entry(length)
        {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}

/// Sends `revision` to, and removes, every slot registered below it;
/// returns how many were removed.
fn fire(slots: &mut Slots, revision: Revision) -> usize {
    let before = slots.len();
    for (id, slot) in std::mem::take(slots) {
        if slot.after < revision {
            // A receiver dropped meanwhile is deregistering itself; nothing to do.
            let _ = slot.sender.send(revision);
        } else {
            slots.insert(id, slot);
        }
    }
    before - slots.len()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::*;

    /// Long enough for a sent value to be seen, short enough to assert "not woken".
    const QUIET: Duration = Duration::from_millis(10);

    fn key(name: &str) -> WatchTarget {
        WatchTarget::Key(name.to_owned())
    }

    fn prefix(name: &str) -> WatchTarget {
        WatchTarget::Prefix(name.to_owned())
    }

    /// The revision that woke `waiter`, or `None` if it is still waiting.
    async fn woken(waiter: &mut Waiter) -> Option<Revision> {
        timeout(QUIET, waiter).await.ok()
    }

    /// Asserts that nothing is left registered, indexes included.
    fn assert_empty(registry: &WatchRegistry) {
        let index = registry.index.lock();
        assert_eq!(index.waiting, 0);
        assert!(index.keys.is_empty(), "key index not empty");
        assert!(index.prefixes.is_empty(), "prefix index not empty");
        assert!(index.prefix_lengths.is_empty(), "prefix lengths not empty");
    }

    #[tokio::test]
    async fn key_waiter_wakes_with_the_changed_revision() {
        let registry = WatchRegistry::new();
        let waiter = registry.watch(key("topics/orders"), 4);
        registry.notify([("topics/orders", 7)]);
        assert_eq!(timeout(QUIET, waiter).await, Ok(7));
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn key_waiter_ignores_other_keys() {
        let registry = WatchRegistry::new();
        let mut waiter = registry.watch(key("topics/orders"), 4);
        registry.notify([("topics/orders2", 5), ("topics/order", 6), ("topics/", 7)]);
        assert_eq!(woken(&mut waiter).await, None);
        assert_eq!(registry.waiting(), 1);
    }

    #[tokio::test]
    async fn prefix_waiter_wakes_for_keys_under_the_prefix_only() {
        let registry = WatchRegistry::new();
        let mut topics = registry.watch(prefix("topics/"), 0);
        registry.notify([("topicsX", 1), ("subscriptions/g", 2), ("topics", 3)]);
        assert_eq!(woken(&mut topics).await, None);
        registry.notify([("topics/orders", 4), ("topics/billing", 5)]);
        assert_eq!(woken(&mut topics).await, Some(4), "first matching change");
        assert_empty(&registry);

        let mut multibyte = registry.watch(prefix("tö"), 0);
        registry.notify([("t", 6), ("tx", 7), ("tø/a", 8)]);
        assert_eq!(woken(&mut multibyte).await, None);
        registry.notify([("tö/a", 9)]);
        assert_eq!(woken(&mut multibyte).await, Some(9));
    }

    #[tokio::test]
    async fn prefix_waiter_matches_the_key_equal_to_the_prefix() {
        let registry = WatchRegistry::new();
        let waiter = registry.watch(prefix("topics/a"), 0);
        registry.notify([("topics/a", 3)]);
        assert_eq!(timeout(QUIET, waiter).await, Ok(3));
    }

    #[tokio::test]
    async fn empty_prefix_sees_every_key() {
        let registry = WatchRegistry::new();
        for (revision, changed) in [(1, "topics/a"), (2, "subscriptions/g"), (3, "")] {
            let waiter = registry.watch(prefix(""), revision - 1);
            registry.notify([(changed, revision)]);
            assert_eq!(timeout(QUIET, waiter).await, Ok(revision), "{changed:?}");
        }
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn changes_at_or_below_after_do_not_wake() {
        let registry = WatchRegistry::new();
        let mut at = registry.watch(key("k"), 10);
        let mut above = registry.watch(prefix("k"), 12);
        registry.notify([("k", 9), ("k", 10)]);
        assert_eq!(woken(&mut at).await, None);
        assert_eq!(woken(&mut above).await, None);
        registry.notify([("k", 11)]);
        assert_eq!(woken(&mut at).await, Some(11));
        assert_eq!(woken(&mut above).await, None);
        assert_eq!(registry.waiting(), 1);
        registry.notify([("k", 13)]);
        assert_eq!(woken(&mut above).await, Some(13));
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn notify_all_wakes_key_and_prefix_waiters_below_the_revision() {
        let registry = WatchRegistry::new();
        let mut on_key = registry.watch(key("a/1"), 3);
        let mut on_prefix = registry.watch(prefix("b/"), 3);
        let mut ahead = registry.watch(key("c"), 9);
        registry.notify_all(7);
        assert_eq!(woken(&mut on_key).await, Some(7));
        assert_eq!(woken(&mut on_prefix).await, Some(7));
        assert_eq!(woken(&mut ahead).await, None);
        assert_eq!(registry.waiting(), 1);
        drop(ahead);
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn dropping_a_waiter_deregisters_it() {
        let registry = WatchRegistry::new();
        let by_key = registry.watch(key("topics/a"), 0);
        let by_prefix = registry.watch(prefix("topics/"), 0);
        let everything = registry.watch(prefix(""), 0);
        assert_eq!(registry.waiting(), 3);
        drop(by_key);
        drop(by_prefix);
        drop(everything);
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn a_timed_out_waiter_deregisters_when_dropped() {
        let registry = WatchRegistry::new();
        let result = timeout(QUIET, registry.watch(prefix("topics/"), 0)).await;
        assert!(result.is_err(), "nothing was notified");
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn a_woken_waiter_dropped_unpolled_leaves_nothing_behind() {
        let registry = WatchRegistry::new();
        let waiter = registry.watch(key("k"), 0);
        registry.notify([("k", 1)]);
        drop(waiter);
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn ten_thousand_waiters_on_distinct_keys_one_notify_wakes_one() {
        let registry = WatchRegistry::new();
        let mut waiters: Vec<Waiter> = (0..10_000)
            .map(|n| registry.watch(key(&format!("topics/t{n:05}")), 0))
            .collect();
        assert_eq!(registry.waiting(), 10_000);
        registry.notify([("topics/t04242", 1)]);
        assert_eq!(registry.waiting(), 9_999);
        assert_eq!(woken(&mut waiters.swap_remove(4242)).await, Some(1));
        for waiter in waiters.iter_mut().skip(4240).take(4) {
            assert_eq!(woken(waiter).await, None);
        }
        drop(waiters);
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn one_notify_wakes_every_waiter_of_a_key() {
        let registry = WatchRegistry::new();
        let waiters: Vec<Waiter> = (0..100).map(|_| registry.watch(key("k"), 0)).collect();
        registry.notify([("k", 5)]);
        assert_eq!(registry.waiting(), 0);
        for waiter in waiters {
            assert_eq!(timeout(QUIET, waiter).await, Ok(5));
        }
        assert_empty(&registry);
    }

    #[tokio::test]
    async fn notify_between_watch_and_await_is_not_lost() {
        let registry = WatchRegistry::new();
        let waiter = registry.watch(key("k"), 3);
        registry.notify([("k", 4)]); // before anyone polls the waiter
        assert_eq!(timeout(QUIET, waiter).await, Ok(4));
    }

    #[tokio::test]
    async fn registered_at_is_the_last_notified_revision() {
        let registry = WatchRegistry::new();
        assert_eq!(registry.watch(key("k"), 0).registered_at(), 0);
        registry.notify([("a", 5), ("b", 6)]);
        registry.notify([("a", 2)]); // never moves backwards
        assert_eq!(registry.last_notified(), 6);
        assert_eq!(registry.watch(key("k"), 0).registered_at(), 6);
    }

    /// A state machine writing a view, then notifying, races long-polls that
    /// follow the register-then-read protocol; every poller must see every
    /// revision of its key up to the last, or time out on a lost wake-up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn register_then_read_protocol_never_misses_a_change() {
        const LAST: Revision = 400;
        let registry = WatchRegistry::new();
        let view: Arc<Mutex<HashMap<String, Revision>>> = Arc::default();

        let pollers: Vec<_> = (0..8)
            .map(|poller| {
                let (registry, view) = (registry.clone(), Arc::clone(&view));
                tokio::spawn(async move {
                    let target = if poller % 2 == 0 {
                        key("k0")
                    } else {
                        prefix("k")
                    };
                    let read = || {
                        let view = view.lock();
                        match &target {
                            WatchTarget::Key(name) => view.get(name).copied().unwrap_or(0),
                            WatchTarget::Prefix(_) => view.values().copied().max().unwrap_or(0),
                        }
                    };
                    let mut seen = 0;
                    while seen < LAST {
                        let waiter = registry.watch(target.clone(), seen);
                        let applied = view.lock().values().copied().max();
                        assert!(applied.unwrap_or(0) >= waiter.registered_at());
                        let current = read();
                        if current <= seen {
                            let woke = timeout(Duration::from_secs(10), waiter).await;
                            let woke = woke.expect("lost wake-up");
                            assert!(woke > seen);
                        }
                        seen = read();
                    }
                })
            })
            .collect();

        for revision in 1..=LAST {
            let changed = format!("k{}", revision % 4);
            view.lock().insert(changed.clone(), revision);
            registry.notify([(changed.as_str(), revision)]);
            if revision % 16 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for poller in pollers {
            poller.await.expect("poller panicked");
        }
        assert_empty(&registry);
    }
}
