//! What the unit tests of the hops between nodes share: a client of the
//! peer port and addresses where no node answers.

use tokio::net::TcpListener;

/// A port nothing listens on.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    addr
}

/// A client naming no cluster, as a node that knows none yet does.
pub fn peer_client(dir: &tempfile::TempDir) -> crate::peer::PeerClient {
    let cluster_id = crate::peer::ClusterId::open(dir.path()).unwrap();
    crate::peer::PeerClient::new(
        reqwest::Client::new(),
        None,
        std::sync::Arc::new(cluster_id),
    )
}

/// An address that takes connections and never answers; the task holding
/// them is aborted when the test is done.
pub async fn silent_peer() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, holder)
}
