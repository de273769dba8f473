//! With `--auth`, a client's write is checked twice: by the node that took
//! the request, before it is proposed (`api::auth`, which answers at once
//! and names what is missing), and here, when it applies, against the
//! roles and tokens as they stand at that point of the log.
//!
//! The first check reads that node's copy of the ACL, which may not hold a
//! revocation or a role change that was proposed before the write and is
//! applied just ahead of it. Such a write would otherwise land for a token
//! that no longer may make it. Every node applies the same entries to the
//! same view, so every node refuses the same writes here, as etcd does at
//! apply. A refused write changes nothing and answers 401 (the token is
//! gone) or 403 (it lacks the permission).

use schemas::api::Access;

use crate::acl::is_acl_key;
use crate::acl::principal::Principal;
use crate::error::StoreError;
use crate::store::leases::attached_keys;
use crate::store::view::ViewBatch;
use crate::types::{CommandResult, Op, TxnOp};

/// The refusal of `op`, asked for by the token whose secret hashes to
/// `token`, as the roles and tokens in `view` stand; `None` if it may go on.
pub(super) fn refusal(
    view: &ViewBatch<'_>,
    token: &str,
    op: &Op,
) -> Result<Option<CommandResult>, StoreError> {
    let Some(principal) = view.principal(token)? else {
        return Ok(Some(CommandResult::AccessRefused {
            token_known: false,
            reason: "the token was revoked before the write applied; nothing changed".to_string(),
        }));
    };
    Ok(allowed(view, &principal, op)?
        .err()
        .map(|reason| CommandResult::AccessRefused {
            token_known: true,
            reason: format!("{reason} (by the roles as they stood when the write applied)"),
        }))
}

/// Whether `principal` may do `op`, as the client API's routes ask it
/// (`api::auth::needs`): write on a written key, read on a compared or
/// read one, write on every key a revoked lease deletes, admin for the
/// roles and tokens themselves and for what only the nodes propose.
fn allowed(
    view: &ViewBatch<'_>,
    principal: &Principal,
    op: &Op,
) -> Result<Result<(), String>, StoreError> {
    Ok(match op {
        Op::Put { key, lease, .. } => put_allowed(view, principal, key, *lease)?,
        Op::Delete { key, .. } => write_key(principal, key),
        Op::Txn(txn) => {
            let reads = txn.compare.iter().map(|compare| &compare.key);
            let mut checks: Vec<Result<(), String>> = reads
                .map(|key| principal.check_key(Access::Read, key))
                .collect();
            for op in txn.success.iter().chain(&txn.failure) {
                checks.push(txn_op_allowed(view, principal, op)?);
            }
            checks.into_iter().collect()
        }
        Op::LeaseGrant { .. } => Ok(()),
        Op::LeaseRevoke { id } => {
            lease_keys_writable(view, principal, *id, "which its revoke deletes")?
        }
        // Never built by the API; the token must be allowed what the inner
        // one asks as well, and the inner token is checked when it applies.
        Op::ByToken { op, .. } => allowed(view, principal, op)?,
        Op::LeaseExpire { .. } | Op::AlarmRaise { .. } | Op::AlarmDisarm { .. } | Op::Batch(_) => {
            principal.check_admin("make this change")
        }
    })
}

/// Whether `principal` may write `key`: a role's or token's key needs
/// admin, any other write on it.
fn write_key(principal: &Principal, key: &str) -> Result<(), String> {
    if is_acl_key(key) {
        principal.check_admin("manage roles and tokens")
    } else {
        principal.check_key(Access::ReadWrite, key)
    }
}

/// Whether `principal` may put `key`, attached to `lease` if one is given.
fn put_allowed(
    view: &ViewBatch<'_>,
    principal: &Principal,
    key: &str,
    lease: Option<u64>,
) -> Result<Result<(), String>, StoreError> {
    let writable = write_key(principal, key);
    match lease {
        Some(id) if writable.is_ok() => lease_keys_writable(
            view,
            principal,
            id,
            "whose revoke it could block by attaching a key",
        ),
        _ => Ok(writable),
    }
}

/// Whether `principal` may write every key attached to lease `id`, `why`
/// saying what it is asked for. A key attached by a writer of another
/// prefix would keep the lease's owner from revoking it, or reading it
/// (etcd checks a put's lease the same way). The refusal names no key:
/// the caller may not read them.
fn lease_keys_writable(
    view: &ViewBatch<'_>,
    principal: &Principal,
    id: u64,
    why: &str,
) -> Result<Result<(), String>, StoreError> {
    // Whoever may write every key (root) need not read them.
    if principal.may_all(Access::ReadWrite, "") {
        return Ok(Ok(()));
    }
    let keys = attached_keys(view, id)?;
    Ok(
        if keys
            .iter()
            .all(|(key, _)| principal.may(Access::ReadWrite, key))
        {
            Ok(())
        } else {
            Err(format!(
                "token '{}' may not write every key attached to lease {id}, {why}",
                principal.name
            ))
        },
    )
}

/// Whether `principal` may run one operation of a transaction's branch.
fn txn_op_allowed(
    view: &ViewBatch<'_>,
    principal: &Principal,
    op: &TxnOp,
) -> Result<Result<(), String>, StoreError> {
    Ok(match op {
        TxnOp::Put { key, lease, .. } => put_allowed(view, principal, key, *lease)?,
        TxnOp::Delete { key } => write_key(principal, key),
        TxnOp::DeletePrefix { prefix } => principal.check_prefix(Access::ReadWrite, prefix),
        TxnOp::Get { key } => principal.check_key(Access::Read, key),
        TxnOp::GetPrefix { prefix, .. } => principal.check_prefix(Access::Read, prefix),
    })
}

#[cfg(test)]
mod tests {
    use schemas::api::{Permission, Role};
    use tempfile::TempDir;

    use super::*;
    use crate::acl::{role_key, token_key, StoredToken};
    use crate::store::apply::{apply_command, Applied};
    use crate::store::view::View;
    use crate::types::{Command, Condition, Txn};

    const WRITER: &str = "aa11";

    fn command(op: Op) -> Command {
        Command {
            timestamp_ms: 1_000,
            idempotency_key: None,
            request_hash: None,
            op,
        }
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            condition: Condition::Always,
            lease: None,
        }
    }

    fn delete(key: &str) -> Op {
        Op::Delete {
            key: key.into(),
            condition: Condition::Always,
        }
    }

    /// A view holding role `writer` (readwrite on `app/`) and the token
    /// `WRITER` holding it, as the ACL API writes them.
    fn view_with_writer() -> (TempDir, View) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let view = View::open(dir.path()).expect("a fresh view opens");
        let role = Role {
            name: "writer".into(),
            permissions: vec![Permission {
                prefix: "app/".into(),
                access: Access::ReadWrite,
            }],
            admin: false,
        };
        let token = StoredToken {
            name: "writer".into(),
            roles: vec!["writer".into()],
            created_ms: 1,
        };
        let role = serde_json::to_string(&role).expect("serializes");
        let token = serde_json::to_string(&token).expect("serializes");
        let acl = Op::Batch(vec![
            command(put(&role_key("writer"), &role)),
            command(put(&token_key(WRITER), &token)),
        ]);
        apply_at(&view, 1, 1, &command(acl));
        (dir, view)
    }

    fn apply_at(view: &View, log_index: u64, next_offset: u64, command: &Command) -> Applied {
        let mut batch = view.batch();
        let applied = apply_command(&mut batch, log_index, next_offset, command).expect("applies");
        view.commit(batch);
        applied
    }

    fn by_writer(op: Op) -> Command {
        command(op).by_token(Some(WRITER))
    }

    fn refused(result: &CommandResult) -> (bool, &str) {
        match result {
            CommandResult::AccessRefused {
                token_known,
                reason,
            } => (*token_known, reason),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_tokens_write_applies_as_its_own_while_the_token_may_make_it() {
        let (_dir, view) = view_with_writer();
        let applied = apply_at(&view, 2, 3, &by_writer(put("app/a", "1")));
        assert!(
            matches!(applied.result, CommandResult::Written { revision: 3, .. }),
            "{:?}",
            applied.result
        );
        assert_eq!(applied.records.len(), 1);
        assert_eq!(
            view.get("app/a").expect("reads").expect("written").value,
            b"1"
        );
    }

    #[test]
    fn a_write_behind_its_tokens_revocation_in_the_same_entry_changes_nothing() {
        let (_dir, view) = view_with_writer();
        let entry = Op::Batch(vec![
            command(delete(&token_key(WRITER))),
            by_writer(put("app/a", "1")),
        ]);
        let applied = apply_at(&view, 2, 3, &command(entry));
        let CommandResult::Batch(results) = applied.result else {
            panic!("a batch's results: {:?}", applied.result);
        };
        let (known, reason) = refused(&results[1]);
        assert!(!known, "{reason}");
        assert!(reason.contains("revoked"), "{reason}");
        assert_eq!(applied.records.len(), 1, "only the revocation's record");
        assert!(view.get("app/a").expect("reads").is_none());
    }

    #[test]
    fn a_write_the_tokens_roles_no_longer_allow_is_refused_naming_the_key() {
        let (_dir, view) = view_with_writer();
        // Allowed first, so the token is resolved and kept before its role
        // goes.
        let applied = apply_at(&view, 2, 3, &by_writer(put("app/a", "1")));
        assert!(matches!(applied.result, CommandResult::Written { .. }));
        apply_at(&view, 3, 4, &command(delete(&role_key("writer"))));
        let applied = apply_at(&view, 4, 5, &by_writer(put("app/a", "2")));
        let (known, reason) = refused(&applied.result);
        assert!(known, "{reason}");
        assert!(reason.contains("\"app/a\""), "{reason}");
        assert!(applied.records.is_empty());
    }

    #[test]
    fn each_kind_of_command_needs_what_its_route_needs() {
        let (_dir, view) = view_with_writer();
        let txn = |compare_key: &str, put_key: &str| {
            Op::Txn(Txn {
                compare: vec![crate::types::Compare {
                    key: compare_key.into(),
                    target: crate::types::CompareTarget::Exists(false),
                    op: crate::types::CompareOp::Equal,
                }],
                success: vec![TxnOp::Put {
                    key: put_key.into(),
                    value: "1".into(),
                    lease: None,
                }],
                failure: vec![],
            })
        };
        let cases = [
            (put("other/a", "1"), false),
            (delete("other/a"), false),
            (put(&role_key("writer"), "{}"), false),
            (txn("app/x", "app/y"), true),
            (txn("other/x", "app/y"), false),
            (txn("app/x", "other/y"), false),
            (
                Op::LeaseGrant {
                    ttl_ms: 10_000,
                    max_leases: 10,
                },
                true,
            ),
            (Op::AlarmDisarm { member: 1 }, false),
        ];
        for (index, (op, allowed)) in cases.into_iter().enumerate() {
            let index = index as u64;
            let applied = apply_at(&view, 10 + index, 10 + index, &by_writer(op.clone()));
            let was_refused = matches!(applied.result, CommandResult::AccessRefused { .. });
            assert_eq!(was_refused, !allowed, "{op:?}: {:?}", applied.result);
        }
    }

    /// A put (alone or in a transaction) attaching a key to a lease that
    /// holds keys the token may not write is refused: the lease's owner
    /// could no longer revoke it. Attaching to a lease whose keys the token
    /// may write, or an empty one, applies.
    #[test]
    fn a_put_onto_a_lease_holding_keys_the_token_may_not_write_is_refused() {
        let (_dir, view) = view_with_writer();
        let grant = Op::LeaseGrant {
            ttl_ms: 60_000,
            max_leases: 10,
        };
        let leased = |key: &str, id: u64| Op::Put {
            key: key.into(),
            value: "1".into(),
            condition: Condition::Always,
            lease: Some(id),
        };
        let CommandResult::LeaseGranted { id: theirs, .. } =
            apply_at(&view, 2, 2, &command(grant.clone())).result
        else {
            panic!("a grant");
        };
        let CommandResult::LeaseGranted { id: ours, .. } =
            apply_at(&view, 3, 3, &command(grant)).result
        else {
            panic!("a grant");
        };
        // Another owner's key on `theirs` (root writes it).
        apply_at(&view, 4, 4, &command(leased("other/k", theirs)));
        let txn_onto = |id: u64| {
            Op::Txn(Txn {
                compare: vec![],
                success: vec![TxnOp::Put {
                    key: "app/t".into(),
                    value: "1".into(),
                    lease: Some(id),
                }],
                failure: vec![],
            })
        };
        let cases = [
            (leased("app/a", theirs), false),
            (txn_onto(theirs), false),
            (leased("app/a", ours), true),
            (txn_onto(ours), true),
        ];
        for (index, (op, allowed)) in cases.into_iter().enumerate() {
            let at = 10 + index as u64;
            let applied = apply_at(&view, at, at, &by_writer(op.clone()));
            match (&applied.result, allowed) {
                (CommandResult::AccessRefused { reason, .. }, false) => {
                    assert!(reason.contains("attached to lease"), "{reason}");
                    assert!(!reason.contains("other/k"), "names no key: {reason}");
                }
                (CommandResult::AccessRefused { .. }, true) | (_, false) => {
                    panic!("{op:?}: {:?}", applied.result)
                }
                _ => {}
            }
        }
    }
}
