//! Internal keys: state the server keeps as ordinary keys of the store
//! (roles and tokens under `\0acl/`, and any later `\0…` family), which no
//! client reads or writes through the KV API.
//!
//! Every key starting with `\0` is internal. The KV API refuses control
//! characters in keys, so a client key never starts with one; lists, the
//! change feed, replay and watch notifications leave internal keys out, so
//! a new family of internal keys is hidden with no change there.

/// The first byte of every internal key.
pub const INTERNAL_PREFIX: &str = "\u{0}";

/// Keys at and after this one sort after every internal key and before
/// every key the KV API takes (none holds a control character): a scan of
/// all keys starts here to skip the internal ones.
pub const AFTER_INTERNAL_KEYS: &str = "\u{1}";

/// Whether a stored key is internal, hidden from every client-facing read.
pub fn is_internal_key(key: &str) -> bool {
    key.starts_with(INTERNAL_PREFIX)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use compaction::TopicConfig;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
    use tempfile::TempDir;

    use super::*;
    use crate::store::log_store::LogStore;
    use crate::store::queries::PageBounds;
    use crate::store::{DataDirs, Store};
    use crate::types::{Command, Condition, Entry, Node, Op};
    use crate::watch::WatchTarget;

    /// An internal key of a family other than the ACL's.
    pub(crate) const INTERNAL_KEY: &str = "\u{0}lease/00000000000000000001";
    /// The client key written next to it.
    pub(crate) const CLIENT_KEY: &str = "brokers/a";

    fn entry(index: u64, payload: EntryPayload<crate::types::TypeConfig>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    /// A put of `key` at log index `index`.
    pub(crate) fn put(index: u64, key: &str) -> Entry {
        entry(
            index,
            EntryPayload::Normal(Command {
                timestamp_ms: 1_000,
                idempotency_key: None,
                request_hash: None,
                op: Op::Put {
                    key: key.to_string(),
                    value: "{}".to_string(),
                    condition: Condition::Always,
                    lease: None,
                },
            }),
        )
    }

    /// A store that applied a put of [`INTERNAL_KEY`] at revision 1,
    /// written through the store as the server writes its internal keys
    /// (the HTTP API refuses them). The directory must outlive the store.
    pub(crate) fn store_holding_an_internal_key() -> (TempDir, Store) {
        let root = tempfile::tempdir().expect("a temporary directory");
        let dirs = DataDirs::new(root.path());
        let log = LogStore::open(&dirs.raft, Some(1)).expect("the raft log opens");
        let store = Store::open(&dirs, TopicConfig::default(), &log).expect("the store opens");
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, Node::default())]),
        );
        store
            .apply_entries(vec![entry(0, EntryPayload::Membership(membership))])
            .expect("applies");
        store
            .apply_entries(vec![put(1, INTERNAL_KEY)])
            .expect("applies");
        (root, store)
    }

    #[test]
    fn internal_keys_sort_before_the_skip_point_and_every_valid_key_after_it() {
        for key in [
            format!("{}root", schemas::api::ACL_PREFIX),
            "\u{0}lease/00000000000000000001".to_string(),
            "\u{0}\u{10ffff}".to_string(),
        ] {
            assert!(is_internal_key(&key), "{key:?}");
            assert!(key.as_str() < AFTER_INTERNAL_KEYS, "{key:?}");
        }
        for key in ["!", "0", "topics/x", "~"] {
            assert!(schemas::validate_key(key).is_ok(), "{key:?} is a valid key");
            assert!(!is_internal_key(key), "{key:?}");
            assert!(key > AFTER_INTERNAL_KEYS, "{key:?}");
        }
    }

    #[test]
    fn an_internal_key_never_shows_in_lists_the_change_feed_or_watches() {
        let (_root, store) = store_holding_an_internal_key();
        let _watching = store.watch(WatchTarget::Prefix(String::new()), 1);
        store
            .apply_entries(vec![put(2, INTERNAL_KEY)])
            .expect("applies");
        assert_eq!(
            store.watchers(),
            1,
            "a write of an internal key wakes no one"
        );
        store
            .apply_entries(vec![put(3, CLIENT_KEY)])
            .expect("applies");
        assert_eq!(
            store.watchers(),
            0,
            "a write of a client key wakes the watch"
        );

        let page = store
            .list("", None, PageBounds::entries(100))
            .expect("lists");
        let (listed, more) = (page.entries, page.more);
        let keys: Vec<&str> = listed.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!((keys, more), (vec![CLIENT_KEY], false));
        let listed = store
            .list(INTERNAL_PREFIX, None, PageBounds::entries(100))
            .expect("lists")
            .entries;
        assert!(listed.is_empty(), "{listed:?}");

        let feed = store
            .changes_after("", 0, PageBounds::entries(100), |_| true)
            .expect("reads the feed");
        let keys: Vec<&str> = feed.writes.iter().map(|write| write.key.as_str()).collect();
        assert_eq!(keys, vec![CLIENT_KEY]);
        assert_eq!(feed.next, 3, "the feed moves on over internal keys");
    }
}
