//! `lease grant|keepalive|revoke|get|list`.

use kv_client::{Client, KeepAliveStatus, Lease, LeaseId};

use crate::cli::LeaseCommand;
use crate::output::{Failure, Printer};

pub async fn run(client: &Client, printer: &Printer, command: LeaseCommand) -> Result<(), Failure> {
    match command {
        LeaseCommand::Grant { ttl } => {
            let lease = client.grant_lease(ttl).await?;
            if printer.is_json() {
                return printer.json(&lease);
            }
            printer.line(format!(
                "granted lease {} (TTL {} s)",
                lease.id, lease.ttl_s
            ))
        }
        LeaseCommand::Keepalive { id, once: true } => {
            let renewed = client.keep_alive_once(id).await?;
            if printer.is_json() {
                return printer.json(&renewed);
            }
            printer.line(format!(
                "lease {} kept alive (TTL {} s)",
                renewed.id, renewed.ttl_s
            ))
        }
        LeaseCommand::Keepalive { id, once: false } => keep_alive(client, printer, id).await,
        LeaseCommand::Revoke { id } => {
            let revoked = client.revoke_lease(id).await?;
            if printer.is_json() {
                return printer.json(&revoked);
            }
            printer.line(format!(
                "revoked lease {} at revision {} ({} keys deleted)",
                revoked.id, revoked.revision, revoked.deleted
            ))
        }
        LeaseCommand::Get { id } => {
            let info = client.lease(id).await?.ok_or_else(|| not_found(id))?;
            if printer.is_json() {
                return printer.json(&info);
            }
            printer.fields(vec![
                ("id", info.id.to_string()),
                ("ttl_s", info.ttl_s.to_string()),
                ("remaining_ttl_s", info.remaining_ttl_s.to_string()),
                ("keys", info.keys.join(", ")),
            ])
        }
        LeaseCommand::List => {
            let leases = client.leases().await?;
            if printer.is_json() {
                return printer.json(&leases);
            }
            printer.table(
                &["ID", "TTL_S", "REMAINING_TTL_S"],
                leases.iter().map(|lease| {
                    vec![
                        lease.id.to_string(),
                        lease.ttl_s.to_string(),
                        lease.remaining_ttl_s.to_string(),
                    ]
                }),
            )
        }
    }
}

/// The error of a lease that does not exist, with the server's code.
fn not_found(id: LeaseId) -> Failure {
    Failure::error(format!(
        "lease {id} not found (lease_not_found): never granted, revoked or expired"
    ))
}

/// Keeps lease `id` alive until Ctrl-C (exit 0) or until it is lost
/// (exit 1), printing each renewal.
async fn keep_alive(client: &Client, printer: &Printer, id: LeaseId) -> Result<(), Failure> {
    let asked = std::time::Instant::now();
    // A keep-alive first, which any token may send (reading the lease needs
    // read on its keys): its answer is the whole TTL, counted from before
    // it was sent, so a lost keep-alive is reported no later than the lease
    // runs out.
    let renewed = match client.keep_alive_once(id).await {
        Ok(renewed) => renewed,
        Err(error) if error.is_not_found() => return Err(not_found(id)),
        Err(error) => return Err(error.into()),
    };
    let left = std::time::Duration::from_secs(renewed.ttl_s).saturating_sub(asked.elapsed());
    let ttl_s = renewed.ttl_s;
    let lease = Lease { id, ttl_s };
    let mut kept = client.keep_alive_with_time_left(lease, left);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            signal = &mut interrupted => {
                signal.map_err(|error| Failure::error(format!("cannot wait for Ctrl-C: {error}")))?;
                return Ok(());
            }
            status = kept.changed() => match status {
                KeepAliveStatus::Alive { renewals } => {
                    if printer.is_json() {
                        printer.json_line(&serde_json::json!({
                            "id": id, "ttl_s": ttl_s, "renewals": renewals
                        }))?;
                    } else {
                        printer.line(format!(
                            "lease {id} kept alive (TTL {} s, renewal {renewals})",
                            ttl_s
                        ))?;
                    }
                }
                KeepAliveStatus::Lost(lost) => return Err(Failure::error(lost)),
            },
        }
    }
}
