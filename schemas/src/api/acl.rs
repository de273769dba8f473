//! `/v1/acl`: roles, tokens and the one-time bootstrap of the root token.
//!
//! A role grants `read` or `readwrite` on key prefixes (the typed topic
//! and subscription APIs count as the prefixes `topics/` and
//! `subscriptions/`), and `admin` for membership, roles and tokens. A token
//! holds roles; its secret is shown once, when it is made, and the store
//! keeps only its SHA-256 hash.
//!
//! ```
//! use schemas::api::{Access, Permission, Role};
//!
//! let role: Role = serde_json::from_str(
//!     r#"{"name":"brokers","permissions":[{"prefix":"topics/","access":"readwrite"}]}"#,
//! ).unwrap();
//! assert_eq!(role.permissions[0], Permission { prefix: "topics/".into(), access: Access::ReadWrite });
//! assert!(!role.admin);
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The prefix of the keys that hold roles and tokens. Its first byte is a
/// control character, which no key of the KV API may hold, so no client
/// can read or write these keys; lists, the change feed and replay skip
/// them.
pub const ACL_PREFIX: &str = "\u{0}acl/";

/// The name of the token bootstrap makes.
pub const ROOT_TOKEN_NAME: &str = "root";

/// What a permission allows on the keys under its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Point reads, lists, watches, the change feed and replay.
    Read,
    /// Reads, and puts and deletes.
    ReadWrite,
}

impl Access {
    /// Whether this access includes `wanted`.
    pub fn allows(self, wanted: Access) -> bool {
        self == Access::ReadWrite || wanted == Access::Read
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::ReadWrite => "write",
        })
    }
}

/// Access to the keys that start with a prefix (`""` is every key).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// The keys it covers: those that start with it.
    pub prefix: String,
    /// What it allows on them.
    pub access: Access,
}

/// Longest role or token name, in bytes.
pub const MAX_ACL_NAME_BYTES: usize = 128;

/// Checks a role or token name: 1 to [`MAX_ACL_NAME_BYTES`] bytes, without
/// '/' or control characters, and neither `.` nor `..`; the refusal says so.
///
/// ```
/// assert!(schemas::api::check_acl_name("brokers").is_ok());
/// assert!(schemas::api::check_acl_name("").is_err());
/// assert!(schemas::api::check_acl_name("a/b").is_err());
/// assert!(schemas::api::check_acl_name("..").is_err());
/// ```
pub fn check_acl_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_ACL_NAME_BYTES
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "name {name:?} must be 1 to {MAX_ACL_NAME_BYTES} bytes, without '/' or control characters"
        ));
    }
    // In a URL these are dot segments, which a client resolves away.
    if name == "." || name == ".." {
        return Err(format!(
            "name {name:?} cannot be a name: a URL would read it as a dot segment"
        ));
    }
    Ok(())
}

/// A named set of permissions, the body of `PUT /v1/acl/roles/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// The role's name (as in the path).
    pub name: String,
    /// The key prefixes it may read or write.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Whether it may change the membership, roles and tokens.
    #[serde(default)]
    pub admin: bool,
}

impl Role {
    /// Checks that each permission's prefix could begin a key (at most
    /// [`crate::MAX_KEY_BYTES`], no control character, no leading `/`), so
    /// that a role never holds a permission that grants nothing.
    pub fn validate(&self) -> Result<(), crate::ValidationError> {
        for (i, permission) in self.permissions.iter().enumerate() {
            let prefix = &permission.prefix;
            let field = format!("permissions[{i}].prefix");
            if prefix.len() > crate::MAX_KEY_BYTES {
                return Err(crate::ValidationError::TooLong {
                    field,
                    len: prefix.len(),
                    max: crate::MAX_KEY_BYTES,
                    unit: "bytes",
                });
            }
            let reason = if let Some(c) = prefix.chars().find(|c| c.is_control()) {
                format!("control character U+{:04X} begins no key", u32::from(c))
            } else if prefix.starts_with('/') {
                "a key never starts with '/'".to_string()
            } else {
                continue;
            };
            return Err(crate::ValidationError::Malformed {
                field,
                value: prefix.escape_debug().to_string(),
                reason,
            });
        }
        Ok(())
    }
}

/// `GET /v1/acl/roles`: every role, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoleList {
    /// The roles, in name order.
    pub roles: Vec<Role>,
}

/// The body of `POST /v1/acl/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name for the token, unique in the cluster (what logs and
    /// errors call it, and what revokes it).
    pub name: String,
    /// The roles it holds; each must exist.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The secret to give it ([`SECRET_HEX_DIGITS`] hex digits, random),
    /// made by the caller so that a retry after a lost answer is answered
    /// the same token rather than refused with the secret lost; the server
    /// makes one when it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The optional body of `POST /v1/acl/bootstrap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// The root token's secret, made by the caller, as in
    /// [`CreateToken::token`]: a bootstrap retried with it after a lost
    /// answer is answered the same root token (Consul's bootstrap secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Hex digits in a token's secret (256 random bits).
pub const SECRET_HEX_DIGITS: usize = 64;

/// Whether `text` has the shape of a token's secret: [`SECRET_HEX_DIGITS`]
/// hex digits.
///
/// ```
/// assert!(schemas::api::is_well_formed_secret(&"a1".repeat(32)));
/// assert!(!schemas::api::is_well_formed_secret("abc"));
/// ```
pub fn is_well_formed_secret(text: &str) -> bool {
    text.len() == SECRET_HEX_DIGITS && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// A token as listed: never its secret, nor its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenInfo {
    /// The token's name.
    pub name: String,
    /// The roles it holds (the root token holds none: it may do anything).
    pub roles: Vec<String>,
    /// When it was made, ms since the epoch.
    pub created_ms: u64,
}

/// `GET /v1/acl/tokens`: every token, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    /// The tokens, in name order.
    pub tokens: Vec<TokenInfo>,
}

/// A token just made: the only answer that shows its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreatedToken {
    /// The token's name.
    pub name: String,
    /// The secret to send as `Authorization: Bearer <token>`; the cluster
    /// keeps only its hash, so it cannot be shown again.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(prefixes: &[&str]) -> Role {
        Role {
            name: "r".into(),
            permissions: prefixes
                .iter()
                .map(|prefix| Permission {
                    prefix: prefix.to_string(),
                    access: Access::Read,
                })
                .collect(),
            admin: false,
        }
    }

    #[test]
    fn a_prefix_that_begins_no_key_is_refused_naming_it() {
        assert!(role(&["", "app/", "app/a", "é"]).validate().is_ok());
        let long = "k".repeat(crate::MAX_KEY_BYTES + 1);
        for (prefixes, field) in [
            (vec!["app/", "\u{0}acl/"], "permissions[1].prefix"),
            (vec!["/app"], "permissions[0].prefix"),
            (vec![long.as_str()], "permissions[0].prefix"),
        ] {
            let error = role(&prefixes).validate().expect_err(field);
            assert_eq!(error.field(), field, "{prefixes:?}: {error}");
        }
    }
}
