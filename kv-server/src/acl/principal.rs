//! What a resolved token may do, and refusals that name what it lacks.

use schemas::api::{Access, Permission, Role, ROOT_TOKEN_NAME};

/// A token as requests are checked against it: its name and the union of
/// its roles.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, for logs and refusals.
    pub name: String,
    /// Whether one of its roles is `admin` (or it is root).
    pub admin: bool,
    /// Every permission of every role it holds.
    pub permissions: Vec<Permission>,
}

impl Principal {
    /// The root token: every key, read and write, and admin.
    pub fn root() -> Principal {
        Principal {
            name: ROOT_TOKEN_NAME.to_string(),
            admin: true,
            permissions: vec![Permission {
                prefix: String::new(),
                access: Access::ReadWrite,
            }],
        }
    }

    /// A token holding `roles` (those found; a deleted role grants nothing).
    pub fn with_roles<'a>(name: &str, roles: impl IntoIterator<Item = &'a Role>) -> Principal {
        let mut principal = Principal {
            name: name.to_string(),
            admin: false,
            permissions: Vec::new(),
        };
        for role in roles {
            principal.admin |= role.admin;
            principal
                .permissions
                .extend(role.permissions.iter().cloned());
        }
        principal
    }

    /// Whether it may `access` the key `key`.
    pub fn may(&self, access: Access, key: &str) -> bool {
        self.permissions
            .iter()
            .any(|granted| granted.access.allows(access) && key.starts_with(&granted.prefix))
    }

    /// Whether it may `access` every key that starts with `prefix`: one of
    /// its prefixes is a prefix of it.
    pub fn may_all(&self, access: Access, prefix: &str) -> bool {
        self.may(access, prefix)
    }

    /// `Err` naming the key and what it may do instead, unless it may
    /// `access` `key`.
    pub fn check_key(&self, access: Access, key: &str) -> Result<(), String> {
        if self.may(access, key) {
            return Ok(());
        }
        Err(format!(
            "token '{}' may not {access} key {key:?}; {}",
            self.name,
            self.granted(access)
        ))
    }

    /// `Err` naming the prefix and what it may do instead, unless it may
    /// `access` every key under `prefix`.
    pub fn check_prefix(&self, access: Access, prefix: &str) -> Result<(), String> {
        if self.may_all(access, prefix) {
            return Ok(());
        }
        Err(format!(
            "token '{}' may not {access} every key under prefix {prefix:?} (a list needs {access} on the whole prefix); {}",
            self.name,
            self.granted(access)
        ))
    }

    /// `Err` unless it is admin.
    pub fn check_admin(&self, what: &str) -> Result<(), String> {
        if self.admin {
            return Ok(());
        }
        Err(format!(
            "token '{}' may not {what}: that needs a role with admin",
            self.name
        ))
    }

    /// The prefixes it may `access`, as a refusal lists them.
    fn granted(&self, access: Access) -> String {
        let prefixes: Vec<String> = self
            .permissions
            .iter()
            .filter(|granted| granted.access.allows(access))
            .map(|granted| format!("{:?}", granted.prefix))
            .collect();
        if prefixes.is_empty() {
            format!("it may {access} no key")
        } else {
            format!("it may {access}: {}", prefixes.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, permissions: &[(&str, Access)], admin: bool) -> Role {
        Role {
            name: name.to_string(),
            permissions: permissions
                .iter()
                .map(|(prefix, access)| Permission {
                    prefix: prefix.to_string(),
                    access: *access,
                })
                .collect(),
            admin,
        }
    }

    #[test]
    fn readwrite_includes_read_and_read_does_not_include_write() {
        let app = Principal::with_roles(
            "app",
            &[role(
                "r",
                &[("topics/", Access::ReadWrite), ("config/", Access::Read)],
                false,
            )],
        );
        // (access, key, allowed)
        let cases = [
            (Access::Read, "topics/a", true),
            (Access::ReadWrite, "topics/a", true),
            (Access::Read, "config/x", true),
            (Access::ReadWrite, "config/x", false),
            (Access::Read, "topicsx", false),
            (Access::Read, "other", false),
        ];
        for (access, key, allowed) in cases {
            assert_eq!(app.may(access, key), allowed, "{access} {key}");
        }
        assert!(!app.admin);
    }

    #[test]
    fn a_prefix_is_covered_only_by_a_granted_prefix_of_it() {
        let app = Principal::with_roles("app", &[role("r", &[("topics/", Access::Read)], false)]);
        assert!(app.may_all(Access::Read, "topics/"));
        assert!(app.may_all(Access::Read, "topics/orders"));
        assert!(!app.may_all(Access::Read, "topic"));
        assert!(!app.may_all(Access::Read, ""));
    }

    #[test]
    fn roles_add_up_and_admin_comes_from_any_of_them() {
        let ops = Principal::with_roles(
            "ops",
            &[
                role("a", &[("a/", Access::Read)], false),
                role("b", &[("b/", Access::ReadWrite)], true),
            ],
        );
        assert!(ops.admin);
        assert!(ops.may(Access::Read, "a/1") && ops.may(Access::ReadWrite, "b/1"));
        assert!(ops.check_admin("add a member").is_ok());
    }

    #[test]
    fn root_may_do_anything() {
        let root = Principal::root();
        assert!(root.admin);
        assert!(root.may(Access::ReadWrite, "any/key"));
        assert!(root.may_all(Access::Read, ""));
    }

    #[test]
    fn refusals_name_the_token_the_key_and_what_it_may_do() {
        let app = Principal::with_roles(
            "app",
            &[role("r", &[("topics/", Access::ReadWrite)], false)],
        );
        let refusal = app.check_key(Access::ReadWrite, "a/b").unwrap_err();
        assert_eq!(
            refusal,
            "token 'app' may not write key \"a/b\"; it may write: \"topics/\""
        );
        let nothing = Principal::with_roles("none", &[]);
        assert!(nothing
            .check_prefix(Access::Read, "x/")
            .unwrap_err()
            .contains("it may read no key"));
        assert!(nothing
            .check_admin("add a member")
            .unwrap_err()
            .contains("needs a role with admin"));
    }
}
