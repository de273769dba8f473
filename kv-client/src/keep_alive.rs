//! Keeping a lease alive in the background: [`Client::keep_alive`] spawns
//! a task that renews the lease every third of its TTL and reports, through
//! the [`KeepAlive`] handle, when the lease is lost.
//!
//! The task owns the only sender of a `watch` channel; the handle (and
//! anyone who cloned its receiver) reads it. Dropping the handle aborts the
//! task, so a lease outlives its holder by at most one TTL.
//!
//! A keep-alive goes through the client's failover transport, so a 503,
//! a refused connection or a timeout moves on to another node, as it does
//! during a leader change. Those failures are retried until the time the
//! lease would run out, counted from the start of the last keep-alive that
//! succeeded (the server counts from when it received it, later, so the
//! client never believes in a lease the server has already ended). A new
//! leader gives every lease its whole TTL again, so a failover shorter
//! than two thirds of the TTL costs nothing.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use schemas::api::{ErrorCode, Lease, LeaseId, LeaseRevoked};

use crate::client::Client;
use crate::error::Result;
use crate::request::CallLimits;

/// Pause after a failed keep-alive before the next one.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Why a kept-alive lease is lost; the keys attached to it are (or are
/// about to be) deleted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseLost {
    /// The server no longer knows the lease (`lease_not_found`): it
    /// expired or was revoked.
    #[error("lease {id} is gone (lease_not_found): it expired or was revoked")]
    NotFound {
        /// The lease.
        id: LeaseId,
    },
    /// No keep-alive succeeded for a whole TTL: the cluster was out of
    /// reach, so the lease has expired or is about to.
    #[error(
        "lease {id}: no keep-alive succeeded before it ran out (TTL {ttl_s} s); last error: {last_error}"
    )]
    TimedOut {
        /// The lease.
        id: LeaseId,
        /// Its TTL, in seconds.
        ttl_s: u64,
        /// What the last attempt failed with.
        last_error: String,
    },
    /// The server refused a keep-alive for a reason a retry does not
    /// change (say, the token may not keep leases alive).
    #[error("lease {id}: a keep-alive was refused: {message}")]
    Refused {
        /// The lease.
        id: LeaseId,
        /// The server's error code.
        code: ErrorCode,
        /// The whole error.
        message: String,
    },
    /// The keep-alive task ended without saying why (it panicked).
    #[error("lease {id}: the keep-alive task stopped")]
    KeeperStopped {
        /// The lease.
        id: LeaseId,
    },
}

/// Where a kept-alive lease stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepAliveStatus {
    /// Alive as far as the client knows, after `renewals` successful
    /// keep-alives (0: none sent or answered yet).
    Alive {
        /// Keep-alives that succeeded so far.
        renewals: u64,
    },
    /// Lost for good; the task has stopped.
    Lost(LeaseLost),
}

/// A lease kept alive by a background task, made by [`Client::keep_alive`]
/// or [`Client::grant_lease_kept_alive`]. Dropping it stops the keep-alives
/// (the lease then expires after its TTL); [`KeepAlive::revoke`] ends the
/// lease at once.
///
/// ```no_run
/// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
/// let kept = client.grant_lease_kept_alive(10).await?;
/// let options = kv_client::WriteOptions::new().lease(kept.id());
/// client.put_with("brokers/b1", &"10.0.0.7:10911", options).await?;
/// // Serve until the lease is lost (the cluster was out of reach too long).
/// let lost = kept.lost().await;
/// eprintln!("registration lost: {lost}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping the handle stops the keep-alives"]
pub struct KeepAlive {
    lease: Lease,
    client: Client,
    status: watch::Receiver<KeepAliveStatus>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// The lease's id, for [`WriteOptions::lease`](crate::WriteOptions::lease).
    pub fn id(&self) -> LeaseId {
        self.lease.id
    }

    /// The lease's TTL, in seconds.
    pub fn ttl_s(&self) -> u64 {
        self.lease.ttl_s
    }

    /// Where the lease stands now.
    pub fn status(&self) -> KeepAliveStatus {
        self.status.borrow().clone()
    }

    /// Waits for the next change (a renewal, or the loss) and returns the
    /// new status. Once the lease is lost it returns at once, every time.
    pub async fn changed(&mut self) -> KeepAliveStatus {
        if self.status.changed().await.is_err() {
            return self.final_status();
        }
        self.status.borrow_and_update().clone()
    }

    /// Waits until the lease is lost, and says why. While keep-alives
    /// succeed this never returns; put a timeout on it if need be.
    pub async fn lost(&self) -> LeaseLost {
        let mut status = self.status.clone();
        loop {
            if let KeepAliveStatus::Lost(lost) = &*status.borrow_and_update() {
                return lost.clone();
            }
            if status.changed().await.is_err() {
                return match self.final_status() {
                    KeepAliveStatus::Lost(lost) => lost,
                    KeepAliveStatus::Alive { .. } => LeaseLost::KeeperStopped { id: self.id() },
                };
            }
        }
    }

    /// Stops the keep-alives and revokes the lease: it and its keys are
    /// deleted in one write.
    pub async fn revoke(self) -> Result<LeaseRevoked> {
        self.task.abort();
        self.client.revoke_lease(self.lease.id).await
    }

    /// The status once the task has ended: `Lost`, or `KeeperStopped`
    /// when it ended without saying so.
    fn final_status(&self) -> KeepAliveStatus {
        match &*self.status.borrow() {
            KeepAliveStatus::Lost(lost) => KeepAliveStatus::Lost(lost.clone()),
            KeepAliveStatus::Alive { .. } => {
                KeepAliveStatus::Lost(LeaseLost::KeeperStopped { id: self.id() })
            }
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Keeps `lease` alive in the background until the handle is dropped
    /// or the lease is lost. When the lease was last renewed is not known,
    /// so the first keep-alive goes out at once. Must be called within a
    /// Tokio runtime.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let lease = client.grant_lease(30).await?;
    /// let kept = client.keep_alive(lease);
    /// # let _ = kept;
    /// # Ok(())
    /// # }
    /// ```
    pub fn keep_alive(&self, lease: Lease) -> KeepAlive {
        let now = Instant::now();
        self.spawn_keeper(lease, now, now + Duration::from_secs(lease.ttl_s))
    }

    /// Keeps `lease` alive in the background, as [`Client::keep_alive`]
    /// does, knowing it had `left` to live when it was read (the
    /// `remaining_ttl_s` of [`Client::lease`], measured from before that
    /// call): if no keep-alive gets through, the loss is reported once
    /// `left` has run out, not a whole TTL from now.
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// # use std::time::{Duration, Instant};
    /// let asked = Instant::now();
    /// if let Some(info) = client.lease(42).await? {
    ///     let lease = kv_client::Lease { id: 42, ttl_s: info.ttl_s };
    ///     let left = Duration::from_secs(info.remaining_ttl_s).saturating_sub(asked.elapsed());
    ///     let kept = client.keep_alive_with_time_left(lease, left);
    /// #   let _ = kept;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn keep_alive_with_time_left(&self, lease: Lease, left: Duration) -> KeepAlive {
        let now = Instant::now();
        self.spawn_keeper(lease, now, now + left)
    }

    /// Grants a lease of `ttl_s` seconds and keeps it alive in the
    /// background (see [`Client::keep_alive`]).
    ///
    /// ```no_run
    /// # async fn example(client: kv_client::Client) -> Result<(), kv_client::Error> {
    /// let kept = client.grant_lease_kept_alive(10).await?;
    /// println!("lease {} kept alive", kept.id());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn grant_lease_kept_alive(&self, ttl_s: u64) -> Result<KeepAlive> {
        let asked_at = Instant::now();
        let lease = self.grant_lease(ttl_s).await?;
        let ttl = Duration::from_secs(lease.ttl_s);
        Ok(self.spawn_keeper(lease, asked_at + ttl / 3, asked_at + ttl))
    }

    /// Starts the task that sends the first keep-alive at `first` and
    /// takes the lease to end at `expires` until one gets through.
    fn spawn_keeper(&self, lease: Lease, first: Instant, expires: Instant) -> KeepAlive {
        let (sender, status) = watch::channel(KeepAliveStatus::Alive { renewals: 0 });
        let task = tokio::spawn(keep(self.clone(), lease, first, expires, sender));
        KeepAlive {
            lease,
            client: self.clone(),
            status,
            task,
        }
    }
}

/// The task: renews the lease every third of its TTL, retries failures
/// until the TTL since the last renewal has run out, and ends with the
/// loss reported. Each step is bounded by that TTL.
async fn keep(
    client: Client,
    lease: Lease,
    mut next: Instant,
    mut expires: Instant,
    status: watch::Sender<KeepAliveStatus>,
) {
    let ttl = Duration::from_secs(lease.ttl_s);
    let interval = ttl / 3;
    let mut renewals = 0;
    let mut last_error = String::from("none");
    let lost = loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        let Some(left) = expires
            .checked_duration_since(sent)
            .filter(|left| !left.is_zero())
        else {
            break LeaseLost::TimedOut {
                id: lease.id,
                ttl_s: lease.ttl_s,
                last_error,
            };
        };
        let limits = CallLimits {
            attempt_timeout: interval.min(left),
            deadline: left,
        };
        let answer = tokio::time::timeout(left, client.keep_alive_within(lease.id, limits)).await;
        match answer {
            Ok(Ok(_)) => {
                expires = sent + ttl;
                renewals += 1;
                next = sent + interval;
                debug!(lease = lease.id, renewals, "lease kept alive");
                status.send_replace(KeepAliveStatus::Alive { renewals });
            }
            Ok(Err(error)) if error.code() == Some(ErrorCode::LeaseNotFound) => {
                break LeaseLost::NotFound { id: lease.id };
            }
            Ok(Err(error)) if !error.is_retryable() && error.code().is_some() => {
                break LeaseLost::Refused {
                    id: lease.id,
                    code: error.code().unwrap_or(ErrorCode::Unknown),
                    message: error.to_string(),
                };
            }
            Ok(Err(error)) => {
                warn!(lease = lease.id, %error, "keep-alive failed; retrying");
                last_error = error.to_string();
                next = (Instant::now() + RETRY_PAUSE).min(expires);
            }
            Err(_) => last_error = format!("no answer within the {left:?} the lease had left"),
        }
    };
    warn!(lease = lease.id, %lost, "lease lost");
    status.send_replace(KeepAliveStatus::Lost(lost));
}
