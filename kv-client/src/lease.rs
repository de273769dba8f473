//! Leases (`/v1/leases`), as in etcd: a lease is granted with a TTL, keys
//! written with [`WriteOptions::lease`](crate::WriteOptions::lease) are
//! attached to it, and when no keep-alive reaches the leader for a TTL the
//! lease ends and its keys are deleted in one write.
//!
//! The calls here are one request each; [`Client::keep_alive`] (in
//! `keep_alive.rs`) keeps a lease alive in the background.
//!
//! Neither a grant nor a revoke is deduplicated by the server: a grant
//! retried after its answer was lost may grant a second lease, which
//! expires after its TTL as nobody keeps it alive; a revoke retried so
//! answers `lease_not_found` although it worked.

use reqwest::{Method, StatusCode};

use schemas::api::{
    ErrorCode, GrantLease, Lease, LeaseId, LeaseInfo, LeaseKeepAlive, LeaseList, LeaseRevoked,
    LeaseSummary,
};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::kv::to_json;
use crate::request::{CallLimits, Request};

/// The request path of lease `id`, with `more` segments after it.
fn lease_segments(id: LeaseId, more: &[&str]) -> Vec<String> {
    let mut segments = vec!["v1".to_string(), "leases".to_string(), id.to_string()];
    segments.extend(more.iter().map(|segment| segment.to_string()));
    segments
}

impl Client {
    /// Grants a lease of `ttl_s` seconds (5 to 86,400); a TTL outside that
    /// range is refused before anything is sent. The lease lives until it
    /// is revoked or no keep-alive reaches the leader for `ttl_s` seconds.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let lease = client.grant_lease(10).await?;
    /// let options = kv_client::WriteOptions::new().lease(lease.id);
    /// client.put_with("brokers/b1", &"10.0.0.7:10911", options).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn grant_lease(&self, ttl_s: u64) -> Result<Lease> {
        let grant = GrantLease { ttl_s };
        grant.validate().map_err(|refused| Error::Invalid {
            what: "lease TTL",
            message: refused.message,
        })?;
        let request = Request::new(Method::POST, ["v1", "leases"]).json(to_json(&grant)?);
        self.call(&request).await?.success()?.json()
    }

    /// Sends one keep-alive: the lease has its whole TTL again. A lease
    /// that is gone (expired or revoked) is the error `lease_not_found`
    /// ([`Error::is_not_found`]).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let renewed = client.keep_alive_once(42).await?;
    /// println!("lease {} has {} s again", renewed.id, renewed.ttl_s);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn keep_alive_once(&self, id: LeaseId) -> Result<LeaseKeepAlive> {
        let request = Request::new(Method::POST, lease_segments(id, &["keepalive"]));
        self.call(&request).await?.success()?.json()
    }

    /// One keep-alive whose attempts together take at most `limits`: the
    /// background keeper's, which has no use for an answer that comes
    /// after the lease ran out.
    pub(crate) async fn keep_alive_within(
        &self,
        id: LeaseId,
        limits: CallLimits,
    ) -> Result<LeaseKeepAlive> {
        let mut request = Request::new(Method::POST, lease_segments(id, &["keepalive"]));
        request.limits = Some(limits);
        self.call(&request).await?.success()?.json()
    }

    /// Revokes a lease: the lease and every key attached to it are deleted
    /// in one write. A lease that is gone is the error `lease_not_found`.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let revoked = client.revoke_lease(42).await?;
    /// println!("{} keys deleted at revision {}", revoked.deleted, revoked.revision);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn revoke_lease(&self, id: LeaseId) -> Result<LeaseRevoked> {
        let request = Request::new(Method::DELETE, lease_segments(id, &[]));
        self.call(&request).await?.success()?.json()
    }

    /// A lease's TTL, the time it has left and its keys; `None` when there
    /// is no such lease (never granted, revoked or expired).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// if let Some(info) = client.lease(42).await? {
    ///     println!("{} s left, keys {:?}", info.remaining_ttl_s, info.keys);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease(&self, id: LeaseId) -> Result<Option<LeaseInfo>> {
        let request = Request::new(Method::GET, lease_segments(id, &[]));
        let answer = self.call(&request).await?;
        if answer.status == StatusCode::NOT_FOUND && answer.has_code(ErrorCode::LeaseNotFound) {
            return Ok(None);
        }
        answer.success()?.json().map(Some)
    }

    /// Every lease of the cluster, by id, with its TTL and time left.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// for lease in client.leases().await? {
    ///     println!("{}: {} of {} s left", lease.id, lease.remaining_ttl_s, lease.ttl_s);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn leases(&self) -> Result<Vec<LeaseSummary>> {
        let request = Request::new(Method::GET, ["v1", "leases"]);
        let list: LeaseList = self.call(&request).await?.success()?.json()?;
        Ok(list.leases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ttl_out_of_range_is_refused_before_sending() {
        let client = Client::new(["http://127.0.0.1:1"]).expect("a loopback URL is valid");
        let refused = client.grant_lease(1).await.unwrap_err();
        assert!(matches!(refused, Error::Invalid { .. }), "{refused}");
        assert!(refused.to_string().contains("ttl_s"), "{refused}");
    }

    #[test]
    fn lease_paths_name_the_id() {
        assert_eq!(
            lease_segments(7, &["keepalive"]),
            ["v1", "leases", "7", "keepalive"]
        );
    }
}
