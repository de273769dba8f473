//! Who may do what, with `--auth`: roles and tokens kept as keys of the
//! store itself, and the cache that resolves a request's token.
//!
//! Roles and tokens are ordinary keys under [`ACL_PREFIX`], written by
//! ordinary `Op::Put`/`Op::Delete` commands through Raft, so replication,
//! snapshots, view rebuilds and the topic carry them with no change. The
//! prefix starts with a control character, which the KV API refuses in a
//! key, and lists, the change feed and replay skip internal keys (see
//! `store::internal`), so no client sees or writes these keys but through
//! `/v1/acl`.
//!
//! ```text
//! \0acl/root           → StoredRoot   the root token's hash (written once, by bootstrap)
//! \0acl/roles/<name>   → Role         permissions and the admin flag
//! \0acl/tokens/<hash>  → StoredToken  a token's name, roles, creation time
//! \0acl/names/<name>   → StoredName   the hash of the token of that name (keeps names unique)
//! ```
//!
//! * [`principal`]: what a resolved token may do, and the refusals naming
//!   what it lacks.
//! * [`secret`]: making a token's secret and hashing it.
//! * [`cache`]: tokens resolved once, dropped when an ACL key is applied.

pub mod cache;
pub mod principal;
pub mod secret;

use serde::{Deserialize, Serialize};

pub use schemas::api::ACL_PREFIX;

/// Whether a stored key holds a role or token.
pub fn is_acl_key(key: &str) -> bool {
    key.starts_with(ACL_PREFIX)
}

/// The key of the root token.
pub fn root_key() -> String {
    format!("{ACL_PREFIX}root")
}

/// The prefix of every role's key.
pub fn roles_prefix() -> String {
    format!("{ACL_PREFIX}roles/")
}

/// The key of a role.
pub fn role_key(name: &str) -> String {
    format!("{ACL_PREFIX}roles/{name}")
}

/// The prefix of every token's key.
pub fn tokens_prefix() -> String {
    format!("{ACL_PREFIX}tokens/")
}

/// The key of a token, by the hash of its secret.
pub fn token_key(hash: &str) -> String {
    format!("{ACL_PREFIX}tokens/{hash}")
}

/// The key that claims a token name.
pub fn name_key(name: &str) -> String {
    format!("{ACL_PREFIX}names/{name}")
}

/// The root token as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRoot {
    /// Always [`schemas::api::ROOT_TOKEN_NAME`].
    pub name: String,
    /// SHA-256 of the secret, lowercase hex.
    pub hash: String,
    /// When bootstrap made it, ms since the epoch.
    pub created_ms: u64,
}

/// A token as stored under its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredToken {
    /// The token's unique name.
    pub name: String,
    /// The roles it holds. A role's delete takes it from every token in
    /// the same write; a name left by an older build grants nothing while
    /// no role has it.
    pub roles: Vec<String>,
    /// When it was made, ms since the epoch.
    pub created_ms: u64,
}

/// A token name's claim: which token holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredName {
    /// SHA-256 of the token's secret, lowercase hex.
    pub hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_keys_are_internal_keys_the_kv_api_refuses() {
        for key in [root_key(), role_key("zzz"), token_key("ff"), name_key("~")] {
            assert!(is_acl_key(&key), "{key:?}");
            assert!(crate::store::internal::is_internal_key(&key), "{key:?}");
            assert!(
                schemas::validate_key(&key).is_err(),
                "{key:?} is refused by the KV API"
            );
        }
    }
}
