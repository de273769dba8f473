//! Tokens resolved once, so a request costs a hash and a map lookup, not
//! reads of the store.
//!
//! The state machine bumps the store's ACL generation each time it applies
//! a key under the ACL prefix (or installs a snapshot). The cache remembers
//! the generation its entries were read at and drops them all when the
//! store's has moved on, so a revoked token or a deleted role stops
//! working on a node as soon as that node applies the change.
//!
//! Why this is safe without a lock across the store read: the generation
//! is read *before* the store, and bumped *after* the change is in the
//! view. An entry built from an older view is therefore filed under an
//! older generation, which the next lookup sees as stale.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use schemas::api::Role;

use crate::acl::principal::Principal;
use crate::acl::{role_key, root_key, token_key, StoredRoot, StoredToken};
use crate::error::StoreError;
use crate::store::view::KeyEntry;
use crate::store::Store;

/// Resolved tokens, by the hash of their secret. Unknown tokens are not
/// remembered, so guessing cannot grow it; it holds at most the tokens
/// that exist.
#[derive(Default)]
pub struct TokenCache {
    /// The ACL generation the entries were read at, and the entries.
    entries: RwLock<(u64, HashMap<String, Arc<Principal>>)>,
}

impl TokenCache {
    /// The token whose secret hashes to `hash`, if the store holds it.
    pub fn resolve(&self, store: &Store, hash: &str) -> Result<Option<Arc<Principal>>, StoreError> {
        let generation = store.acl_generation();
        {
            let entries = self.entries.read();
            if entries.0 == generation {
                if let Some(principal) = entries.1.get(hash) {
                    return Ok(Some(Arc::clone(principal)));
                }
            }
        }
        let Some(principal) = load(store, hash)? else {
            return Ok(None);
        };
        let principal = Arc::new(principal);
        let mut entries = self.entries.write();
        if entries.0 < generation {
            *entries = (generation, HashMap::new());
        }
        if entries.0 == generation {
            entries.1.insert(hash.to_string(), Arc::clone(&principal));
        }
        Ok(Some(principal))
    }
}

/// Reads a token and its roles from the store: point reads, no scan.
fn load(store: &Store, hash: &str) -> Result<Option<Principal>, StoreError> {
    principal_of(|key| store.get(key), hash)
}

/// The token whose secret hashes to `hash`, with its roles, as `get` reads
/// the ACL's keys (the store, or a batch being applied): point reads, no
/// scan.
pub fn principal_of(
    get: impl Fn(&str) -> Result<Option<KeyEntry>, StoreError>,
    hash: &str,
) -> Result<Option<Principal>, StoreError> {
    if let Some(entry) = get(&token_key(hash))? {
        let token: StoredToken = decode(&token_key(hash), &entry.value)?;
        let mut roles = Vec::with_capacity(token.roles.len());
        for name in &token.roles {
            if let Some(entry) = get(&role_key(name))? {
                roles.push(decode::<Role>(&role_key(name), &entry.value)?);
            }
        }
        return Ok(Some(Principal::with_roles(&token.name, &roles)));
    }
    if let Some(entry) = get(&root_key())? {
        let root: StoredRoot = decode(&root_key(), &entry.value)?;
        if root.hash == hash {
            return Ok(Some(Principal::root()));
        }
    }
    Ok(None)
}

/// An ACL record read back; the API wrote it, so a failure is damage.
pub fn decode<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|error| StoreError::CorruptViewEntry {
        key: format!("k{key:?}"),
        reason: format!("the ACL record does not parse: {error}"),
    })
}
