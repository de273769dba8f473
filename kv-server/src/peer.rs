//! Requests between the nodes of one cluster, and the cluster's id that
//! keeps clusters apart.
//!
//! The id is a UUID made by the node that forms the cluster and kept in the
//! data directory (`cluster-id`). Every request one node sends another
//! carries it (`X-Kv-Cluster-Id`); a node refuses a request that names
//! another cluster, and logs it, as etcd refuses a peer of another cluster:
//! a node whose data directory belongs elsewhere takes no part in this
//! cluster's votes, entries or snapshots. A node without an id yet (one that
//! waits for the node forming the cluster, or a joining one) takes the id
//! of the first request that names one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::http::HeaderValue;
use parking_lot::{Mutex, RwLock};
use schemas::api::header::{CLUSTER_ID, DATA_FORMAT};
use tokio_rustls::TlsConnector;
use uuid::Uuid;

use crate::error::StoreError;
use crate::peer_channel::PeerChannel;

/// The file in the data directory that holds the id.
const CLUSTER_ID_FILE: &str = "cluster-id";

/// This node's cluster id, as its data directory holds it.
#[derive(Debug)]
pub struct ClusterId {
    /// `data/cluster-id`.
    path: PathBuf,
    /// The id, once known, with its header value made once (every request
    /// between nodes carries it). Written under the lock, so two requests
    /// that both bring the first id cannot adopt two.
    id: RwLock<Option<Known>>,
}

/// A known id and its header value.
#[derive(Debug)]
struct Known {
    id: Uuid,
    header: HeaderValue,
}

impl Known {
    fn new(id: Uuid) -> Known {
        let header =
            HeaderValue::from_str(&id.to_string()).expect("a UUID is a valid header value");
        Known { id, header }
    }
}

/// A request named another cluster than this node's.
#[derive(Debug, thiserror::Error)]
#[error("the request comes from cluster {theirs}; this node belongs to cluster {ours}")]
pub struct ForeignCluster {
    /// The id the request named.
    pub theirs: Uuid,
    /// This node's.
    pub ours: Uuid,
}

impl ClusterId {
    /// Reads the id of the data directory `data_dir`, if it has one.
    pub fn open(data_dir: &Path) -> Result<ClusterId, StoreError> {
        let path = data_dir.join(CLUSTER_ID_FILE);
        let id = match std::fs::read_to_string(&path) {
            Ok(text) => Some(Uuid::parse_str(text.trim()).map_err(|error| {
                StoreError::CorruptClusterId {
                    path: path.clone(),
                    reason: error.to_string(),
                }
            })?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(StoreError::io("read", &path)(error)),
        };
        Ok(ClusterId {
            path,
            id: RwLock::new(id.map(Known::new)),
        })
    }

    /// Refuses a data directory whose raft log reaches `log_reach` past
    /// index 0 with no id: every entry after `initialize`'s came from a
    /// node of this cluster (its own after it named the cluster), with
    /// the id, so the file was removed. Without it the node would take the
    /// id of the first node to call it, whatever its cluster.
    pub fn check_kept(&self, log_reach: u64) -> Result<(), StoreError> {
        if log_reach > 0 && self.get().is_none() {
            return Err(StoreError::ClusterIdMissing {
                path: self.path.clone(),
                last: log_reach,
            });
        }
        Ok(())
    }

    /// The id, if this node knows it.
    pub fn get(&self) -> Option<Uuid> {
        self.id.read().as_ref().map(|known| known.id)
    }

    /// The id as the value of `X-Kv-Cluster-Id`, if this node knows it.
    pub fn header(&self) -> Option<HeaderValue> {
        self.id.read().as_ref().map(|known| known.header.clone())
    }

    /// Makes a new id: the node forming a cluster does, once.
    pub fn create(&self) -> Result<Uuid, StoreError> {
        let mut id = self.id.write();
        if let Some(existing) = id.as_ref() {
            return Ok(existing.id);
        }
        let created = Uuid::new_v4();
        self.save(created)?;
        *id = Some(Known::new(created));
        Ok(created)
    }

    /// Checks the id a request named: the same as this node's passes, none
    /// passes, and a node without an id takes the first one it is told.
    pub fn check(&self, theirs: Option<Uuid>) -> Result<(), CheckError> {
        let Some(theirs) = theirs else {
            return Ok(());
        };
        if let Some(ours) = self.get() {
            return match ours == theirs {
                true => Ok(()),
                false => Err(CheckError::Foreign(ForeignCluster { theirs, ours })),
            };
        }
        let mut id = self.id.write();
        match id.as_ref().map(|known| known.id) {
            Some(ours) if ours != theirs => {
                Err(CheckError::Foreign(ForeignCluster { theirs, ours }))
            }
            Some(_) => Ok(()),
            None => {
                self.save(theirs).map_err(CheckError::Store)?;
                tracing::info!(cluster_id = %theirs, "joined cluster");
                *id = Some(Known::new(theirs));
                Ok(())
            }
        }
    }

    /// Names the cluster `id` (a restored member's, derived from its
    /// backup), replacing any id known before.
    pub fn set(&self, id: Uuid) -> Result<(), StoreError> {
        let mut known = self.id.write();
        self.save(id)?;
        *known = Some(Known::new(id));
        Ok(())
    }

    fn save(&self, id: Uuid) -> Result<(), StoreError> {
        Ok(compaction::fsutil::write_atomic(
            &self.path,
            format!("{id}\n").as_bytes(),
        )?)
    }
}

/// Why a request's cluster id was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// It names another cluster.
    #[error(transparent)]
    Foreign(#[from] ForeignCluster),
    /// The id could not be saved.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The HTTP clients for requests to other nodes: every request names this
/// node's cluster and data format. The calls of each replicated write go
/// through a [`PeerChannel`] per node; the others through one pooled
/// reqwest client.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
    /// Peer TLS, for the channels' `https://` connections.
    tls: Option<TlsConnector>,
    cluster_id: Arc<ClusterId>,
    /// The channels made so far, by node URL: each node's connections are
    /// kept across elections and replication streams.
    channels: Arc<Mutex<HashMap<String, PeerChannel>>>,
}

impl PeerClient {
    /// A client over `http` and, for channels, `tls`, that names
    /// `cluster_id`.
    pub fn new(
        http: reqwest::Client,
        tls: Option<TlsConnector>,
        cluster_id: Arc<ClusterId>,
    ) -> PeerClient {
        PeerClient {
            http,
            tls,
            cluster_id,
            channels: Arc::default(),
        }
    }

    /// A request to another node.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: impl reqwest::IntoUrl,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .request(method, url)
            .header(DATA_FORMAT, crate::store::data_format::DATA_FORMAT);
        match self.cluster_id.header() {
            Some(id) => request.header(CLUSTER_ID, id),
            None => request,
        }
    }

    /// A POST to another node.
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, url)
    }

    /// A GET from another node.
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, url)
    }

    /// A GET that names no cluster: a node asking its peers about theirs
    /// before it takes part, whose own id, if it holds one, need not be
    /// theirs (it asks to learn what they hold).
    pub fn get_naming_no_cluster(&self, url: &str) -> reqwest::RequestBuilder {
        self.http
            .get(url)
            .header(DATA_FORMAT, crate::store::data_format::DATA_FORMAT)
    }

    /// Kept-alive connections to the node at `peer_url`, for the calls
    /// made over and over; the same for every caller.
    pub fn channel(&self, peer_url: &str) -> PeerChannel {
        let mut channels = self.channels.lock();
        if let Some(channel) = channels.get(peer_url) {
            return channel.clone();
        }
        let channel = PeerChannel::new(peer_url, self.tls.as_ref(), Arc::clone(&self.cluster_id));
        channels.insert(peer_url.to_string(), channel.clone());
        channel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_takes_the_first_id_it_is_told_and_refuses_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let (first, other) = (Uuid::new_v4(), Uuid::new_v4());
        let id = ClusterId::open(dir.path()).unwrap();
        // (the id a request names, whether it is taken)
        let cases = [
            (None, true),
            (Some(first), true),
            (None, true),
            (Some(first), true),
            (Some(other), false),
        ];
        for (theirs, taken) in cases {
            assert_eq!(id.check(theirs).is_ok(), taken, "{theirs:?}");
        }
        let reopened = ClusterId::open(dir.path()).unwrap();
        assert_eq!(
            reopened.get(),
            Some(first),
            "the id is kept in the data directory"
        );
    }

    #[test]
    fn the_node_forming_a_cluster_makes_its_id_once() {
        let dir = tempfile::tempdir().unwrap();
        let id = ClusterId::open(dir.path()).unwrap();
        let made = id.create().unwrap();
        assert_eq!(id.create().unwrap(), made);
        assert!(matches!(
            id.check(Some(Uuid::new_v4())),
            Err(CheckError::Foreign(_))
        ));
    }

    #[test]
    fn an_unreadable_id_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CLUSTER_ID_FILE), "not a uuid").unwrap();
        let error = ClusterId::open(dir.path()).unwrap_err().to_string();
        assert!(error.contains("cluster-id"), "{error}");
    }
}
