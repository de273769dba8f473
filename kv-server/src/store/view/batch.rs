//! A batch of changes to the view being prepared by the state machine:
//! reads through it see its own changes over the view's.

use std::sync::Arc;

use uuid::Uuid;

use super::layers::Unwritten;
use super::layout::{
    attachment_key, decode_idempotent_write, decode_revision, decode_u64, encode_applied,
    encode_idempotent_write, encode_membership, encode_revision, entry_key, expiry_id, expiry_key,
    idempotency_key, IdempotentWrite, KeyEntry, APPLIED_KEY, CLOCK_KEY, EXPIRY_PREFIX,
    LEASE_COUNT_KEY, MEMBERSHIP_KEY, REVISION_KEY,
};
use super::View;
use crate::acl::cache::principal_of;
use crate::acl::is_acl_key;
use crate::acl::principal::Principal;
use crate::error::StoreError;
use crate::types::{LogId, NodeId, Revision, StoredMembership};

/// Changes to the view being prepared; reads through it see them.
pub struct ViewBatch<'a> {
    pub(super) view: &'a View,
    /// Raw keys written in this batch: `None` for removed.
    pub(super) pending: Unwritten,
    /// The members whose NOSPACE alarm is raised as of this batch, once
    /// looked up or changed (see `store::alarms`): every write that adds
    /// data asks, and the key changes only with the alarm.
    pub(in crate::store) nospace: Option<Option<Vec<NodeId>>>,
    /// Whether the batch changed a role or token: then its checks at apply
    /// read them through it, not from the view's resolved tokens.
    pub(super) acl_changed: bool,
}

impl ViewBatch<'_> {
    fn raw_get(&self, raw: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(raw) {
            Some(value) => Ok(value.clone()),
            None => self.view.raw_get(raw),
        }
    }

    fn raw_put(&mut self, raw: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(raw, Some(value));
    }

    fn raw_remove(&mut self, raw: Vec<u8>) {
        self.pending.insert(raw, None);
    }

    /// The entry of `key` as of this batch.
    pub fn get(&self, key: &str) -> Result<Option<KeyEntry>, StoreError> {
        let raw = entry_key(key);
        match self.raw_get(&raw)? {
            Some(bytes) => Ok(Some(KeyEntry::decode(&raw, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Sets the entry of `key`.
    pub fn put(&mut self, key: &str, entry: &KeyEntry) {
        self.acl_changed |= is_acl_key(key);
        self.raw_put(entry_key(key), entry.encode());
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        self.acl_changed |= is_acl_key(key);
        self.raw_remove(entry_key(key));
    }

    /// The token whose secret hashes to `hash`, with its roles, as of this
    /// batch. Resolved once per change of the roles and tokens and kept in
    /// the view (the state machine alone applies, so nothing commits
    /// between a lookup and its insert); a batch that changed them reads
    /// them through itself.
    pub fn principal(&self, hash: &str) -> Result<Option<Arc<Principal>>, StoreError> {
        let resolve =
            || Ok::<_, StoreError>(principal_of(|key| self.get(key), hash)?.map(Arc::new));
        if self.acl_changed {
            return resolve();
        }
        let db = self.view.pinned();
        if let Some(found) = db.principals.lock().get(hash) {
            return Ok(Some(Arc::clone(found)));
        }
        let found = resolve()?;
        if let Some(principal) = &found {
            db.principals
                .lock()
                .insert(hash.to_string(), Arc::clone(principal));
        }
        Ok(found)
    }

    /// The remembered result of the write with idempotency key `id`.
    pub fn idempotent_write(&self, id: &Uuid) -> Result<Option<IdempotentWrite>, StoreError> {
        let raw = idempotency_key(id);
        match self.raw_get(&raw)? {
            Some(bytes) => decode_idempotent_write(&raw, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Remembers the result of the write with idempotency key `id`.
    pub fn remember(&mut self, id: &Uuid, write: &IdempotentWrite) {
        self.raw_put(idempotency_key(id), encode_idempotent_write(write));
        self.raw_put(expiry_key(write.timestamp_ms, id), Vec::new());
    }

    /// Forgets idempotent writes accepted before `before_ms`; returns how
    /// many.
    pub fn expire_idempotent_writes(&mut self, before_ms: u64) -> Result<usize, StoreError> {
        let end = expiry_key(before_ms, &Uuid::nil());
        let mut expired = Vec::new();
        // Not a consistent scan, and needs none: only the state machine
        // commits, and it is here, so a checkpoint can write nothing the
        // scan's copy of the layers lacks.
        for item in self.view.raw_scan(vec![EXPIRY_PREFIX], &[EXPIRY_PREFIX]) {
            let (raw, _) = item?;
            if raw >= end {
                break;
            }
            if self.pending.get(&raw) == Some(&None) {
                continue;
            }
            expired.push(raw);
        }
        for raw in &expired {
            let id = expiry_id(raw)?;
            self.raw_remove(raw.clone());
            self.raw_remove(idempotency_key(&id));
        }
        Ok(expired.len())
    }

    /// Records the last applied log id and the store's revision as of it,
    /// in the same batch, so the view never holds one without the other.
    pub fn set_applied(&mut self, applied: &LogId, revision: Revision) {
        self.raw_put(APPLIED_KEY.to_vec(), encode_applied(applied));
        self.raw_put(REVISION_KEY.to_vec(), encode_revision(revision));
    }

    /// Records the membership.
    pub fn set_membership(&mut self, membership: &StoredMembership) {
        self.raw_put(MEMBERSHIP_KEY.to_vec(), encode_membership(membership));
    }

    /// Records that `key` was put with lease `id`.
    pub fn attach(&mut self, id: u64, key: &str) {
        self.raw_put(attachment_key(id, key), Vec::new());
    }

    /// Forgets the attachment of lease `id` to `key`: the key moved to
    /// another lease, or to none, or is gone.
    pub fn detach(&mut self, id: u64, key: &str) {
        self.raw_remove(attachment_key(id, key));
    }

    /// Forgets the attachments of lease `id` to `keys`.
    pub fn forget_attachments(&mut self, id: u64, keys: &[String]) {
        for key in keys {
            self.raw_remove(attachment_key(id, key));
        }
    }

    /// How many leases exist, as of this batch.
    pub fn lease_count(&self) -> Result<u64, StoreError> {
        match self.raw_get(LEASE_COUNT_KEY)? {
            Some(bytes) => decode_revision(&bytes),
            None => Ok(0),
        }
    }

    /// Records how many leases exist.
    pub fn set_lease_count(&mut self, count: u64) {
        self.raw_put(LEASE_COUNT_KEY.to_vec(), encode_revision(count));
    }

    /// The apply clock as of this batch: the time the last write was
    /// applied at (ms), 0 before the first.
    pub fn clock_ms(&self) -> Result<u64, StoreError> {
        match self.raw_get(CLOCK_KEY)? {
            Some(bytes) => decode_u64(CLOCK_KEY, &bytes),
            None => Ok(0),
        }
    }

    /// Moves the apply clock to `ms`, unless it is already later.
    pub fn advance_clock(&mut self, ms: u64) -> Result<(), StoreError> {
        if ms > self.clock_ms()? {
            self.raw_put(CLOCK_KEY.to_vec(), encode_revision(ms));
        }
        Ok(())
    }
}
