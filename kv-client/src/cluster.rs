//! The cluster (`/v1/cluster`): who leads, how far each node is, and
//! membership changes.

use reqwest::Method;
use schemas::api::{AddMember, AlarmList, ClusterStatus, ErrorCode, NodeId, NodeSpace};
use tracing::debug;

use crate::client::Client;
use crate::error::Result;
use crate::request::Request;

/// How long the server may take to let a new member catch up before it
/// makes it a voter.
const MEMBER_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(130);

impl Client {
    /// The cluster's status, as the node that answers sees it.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let status = client.cluster_status().await?;
    /// println!("term {}, applied {}", status.term, status.applied_index);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let request = Request::new(Method::GET, ["v1", "cluster"]);
        self.call(&request).await?.success()?.json()
    }

    /// Adds node `id`, whose client API is at `addr` and peer port at
    /// `peer_addr` (each `http://host:port`), to the cluster: as a learner,
    /// made a voter once it has caught up. That may
    /// take the server up to two minutes, so this call waits that much
    /// longer than others; asking again for a node already added is safe.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.add_member(4, "http://10.0.0.4:7070", "http://10.0.0.4:7170").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn add_member(&self, id: NodeId, addr: &str, peer_addr: &str) -> Result<()> {
        let body = crate::kv::to_json(&AddMember {
            id,
            addr: addr.to_string(),
            peer_addr: peer_addr.to_string(),
            voter: true,
            update_only: false,
            empty_log: false,
        })?;
        let mut request = Request::write(Method::POST, ["v1", "cluster", "members"]).json(body);
        request.extra_time = MEMBER_CATCH_UP;
        self.call(&request).await?.success()?;
        Ok(())
    }

    /// Removes node `id` from the cluster. A removal whose answer was lost
    /// and whose retry finds the node gone is a success: the node was a
    /// member when the call began.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// client.remove_member(4).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        let request = Request::write(
            Method::DELETE,
            [
                "v1".to_string(),
                "cluster".into(),
                "members".into(),
                id.to_string(),
            ],
        );
        // A removal retried after its answer was lost finds the node gone
        // (404): the node was a member before the call, so the removal is
        // done, and says so rather than that it never was one.
        let was_member = self
            .cluster_status()
            .await
            .is_ok_and(|status| status.members.iter().any(|member| member.id == id));
        match self
            .call(&request)
            .await
            .and_then(|answer| answer.success())
        {
            Ok(_) => Ok(()),
            Err(error) if was_member && error.code() == Some(ErrorCode::MemberNotFound) => {
                debug!(
                    node = id,
                    "removed already: by an earlier attempt of this call, or meanwhile"
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The alarms raised in the cluster (NOSPACE: a member crossed
    /// `--quota-bytes` or `--min-free-bytes`). Needs an admin token on a
    /// cluster run with `--auth`.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// for alarm in client.alarms().await?.alarms {
    ///     println!("node {}: {} ({})", alarm.member, alarm.alarm, alarm.reason);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn alarms(&self) -> Result<AlarmList> {
        let request = Request::new(Method::GET, ["v1", "alarms"]);
        self.call(&request).await?.success()?.json()
    }

    /// Disarms every alarm, once each member that raised one has room
    /// again (else `alarm_holds`); gives the alarms disarmed.
    pub async fn disarm_alarms(&self) -> Result<AlarmList> {
        let request = Request::write(Method::DELETE, ["v1", "alarms"]);
        self.call(&request).await?.success()?.json()
    }

    /// The answering node's disk: what its quota counts, what is free, and
    /// the limit it crosses, if any.
    pub async fn space(&self) -> Result<NodeSpace> {
        let request = Request::new(Method::GET, ["v1", "space"]);
        self.call(&request).await?.success()?.json()
    }
}
