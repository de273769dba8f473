//! A partitioning proxy between the nodes' peer ports, on loopback.
//!
//! Every node gets one proxy port, and the cluster's `--peers` name the
//! proxies instead of the real peer ports, so every Raft RPC, forwarded
//! write and read-index call between two nodes passes through the proxy of
//! the node it goes to. All connections come from 127.0.0.1, so the proxy
//! learns which node opened a connection from the kernel: the connection's
//! socket inode (`/proc/net/tcp`) among the open files of each node's
//! process (`/proc/<pid>/fd`). Links are directed: cutting `from → to`
//! refuses what `from` sends to `to`, and nothing else.
//!
//! A cut closes the link's open connections (an RPC in flight fails) and
//! holds its new ones silent, as a lost route would: the sender's requests
//! time out instead of being refused.
//!
//! A proxy listens only while its node runs, so a connection to a node that
//! is down is refused, as it would be without the proxy. (A proxy that took
//! the connection and then closed it would turn "surely not delivered" into
//! "may have been delivered" for the sender.)

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a connection on a cut link is held silent before it is closed.
const SILENT_HOLD: Duration = Duration::from_secs(30);
/// How long a relayed connection may stay idle before it is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(120);

/// How often, and how far apart, a proxy tries to listen again when its
/// node starts.
const REBIND_ATTEMPTS: usize = 100;
const REBIND_PAUSE: Duration = Duration::from_millis(50);

/// A directed link: what `.0` sends to `.1`.
pub type Link = (u64, u64);

/// The proxies of every node and the set of cut links. Stops when dropped.
pub struct PeerNetwork {
    /// Node id → the port of its proxy.
    proxy_ports: BTreeMap<u64, u16>,
    /// The cut links; every relay watches it and closes when its link is cut.
    cut: watch::Sender<BTreeSet<Link>>,
    /// Process id → node id of the running nodes, for telling who connects.
    pids: Arc<Mutex<BTreeMap<u32, u64>>>,
    /// The nodes that run now: a proxy listens only while its node does.
    running: watch::Sender<BTreeSet<u64>>,
    tasks: Vec<JoinHandle<()>>,
}

impl PeerNetwork {
    /// Starts a proxy for every `(node id, real peer address)`.
    pub async fn start(targets: &[(u64, SocketAddr)]) -> std::io::Result<PeerNetwork> {
        let (cut, _) = watch::channel(BTreeSet::new());
        let (running, _) = watch::channel(BTreeSet::new());
        let pids = Arc::new(Mutex::new(BTreeMap::new()));
        let mut proxy_ports = BTreeMap::new();
        let mut tasks = Vec::new();
        for &(node, target) in targets {
            let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let address = listener.local_addr()?;
            proxy_ports.insert(node, address.port());
            let relays = Relays {
                node,
                target,
                cut: cut.subscribe(),
                pids: Arc::clone(&pids),
            };
            // The port stays this proxy's: it is bound again whenever the
            // node starts.
            drop(listener);
            tasks.push(tokio::spawn(relays.serve(address, running.subscribe())));
        }
        Ok(PeerNetwork {
            proxy_ports,
            cut,
            pids,
            running,
            tasks,
        })
    }

    /// The peer URL the other nodes use for `node`: its proxy.
    pub fn peer_url(&self, node: u64) -> String {
        format!("http://127.0.0.1:{}", self.proxy_ports[&node])
    }

    /// Records that `node` now runs as process `pid` (`None`: not running).
    pub fn set_pid(&self, node: u64, pid: Option<u32>) {
        let mut pids = self
            .pids
            .lock()
            .expect("the pid table's lock is not poisoned");
        pids.retain(|_, owner| *owner != node);
        if let Some(pid) = pid {
            pids.insert(pid, node);
        }
        self.running.send_modify(|running| {
            if pid.is_some() {
                running.insert(node);
            } else {
                running.remove(&node);
            }
        });
    }

    /// Cuts every link in `links` (adding to those already cut).
    pub fn cut(&self, links: &[Link]) {
        self.cut
            .send_modify(|cut| cut.extend(links.iter().copied()));
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.cut.send_modify(BTreeSet::clear);
    }

    /// The links that are cut now.
    pub fn cut_links(&self) -> BTreeSet<Link> {
        self.cut.borrow().clone()
    }
}

impl Drop for PeerNetwork {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What one proxy needs to relay connections to its node.
struct Relays {
    node: u64,
    target: SocketAddr,
    cut: watch::Receiver<BTreeSet<Link>>,
    pids: Arc<Mutex<BTreeMap<u32, u64>>>,
}

impl Relays {
    /// Listens on `address` while the node runs (as `running` says), and
    /// relays every connection it accepts.
    async fn serve(self, address: SocketAddr, mut running: watch::Receiver<BTreeSet<u64>>) {
        loop {
            if running
                .wait_for(|running| running.contains(&self.node))
                .await
                .is_err()
            {
                return;
            }
            let Some(listener) = listen_again(address).await else {
                // The node stays unreachable: the history reports it.
                eprintln!(
                    "the proxy of node {} cannot listen on {address} again",
                    self.node
                );
                return;
            };
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, from_addr)) => self.relay_from(stream, from_addr),
                        Err(_) => return,
                    },
                    changed = running.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !running.borrow_and_update().contains(&self.node) {
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Relays one accepted connection, once the node that opened it is
    /// known.
    fn relay_from(&self, stream: TcpStream, from_addr: SocketAddr) {
        let (node, target) = (self.node, self.target);
        let cut = self.cut.clone();
        let pids = Arc::clone(&self.pids);
        tokio::spawn(async move {
            let proxy_port = stream.local_addr().map_or(0, |addr| addr.port());
            let table = pids
                .lock()
                .expect("the pid table's lock is not poisoned")
                .clone();
            let source = tokio::task::spawn_blocking(move || {
                source_node(from_addr.port(), proxy_port, &table)
            })
            .await
            .ok()
            .flatten();
            relay(stream, source.map(|from| (from, node)), target, cut).await;
        });
    }
}

/// Binds `address` again, retrying for a while should the port be held.
async fn listen_again(address: SocketAddr) -> Option<TcpListener> {
    for _ in 0..REBIND_ATTEMPTS {
        if let Ok(listener) = listen(address) {
            return Some(listener);
        }
        tokio::time::sleep(REBIND_PAUSE).await;
    }
    None
}

/// A listener on `address`, which may be bound again once dropped (the
/// connections it accepted may linger in TIME_WAIT).
fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Relays one connection on `link` (unknown source: never cut) to
/// `target`, closing it when the link is cut.
async fn relay(
    mut client: TcpStream,
    link: Option<Link>,
    target: SocketAddr,
    mut cut: watch::Receiver<BTreeSet<Link>>,
) {
    let is_cut = |cut: &BTreeSet<Link>| link.is_some_and(|link| cut.contains(&link));
    if is_cut(&cut.borrow_and_update()) {
        hold_silent(client, link, cut).await;
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return,
            changed = cut.changed() => {
                if changed.is_err() || is_cut(&cut.borrow_and_update()) {
                    return;
                }
            }
            () = tokio::time::sleep(IDLE_LIMIT) => return,
        }
    }
}

/// Reads and drops what arrives on a cut link until it heals, the sender
/// closes, or [`SILENT_HOLD`] passes; then closes the connection.
async fn hold_silent(
    mut client: TcpStream,
    link: Option<Link>,
    mut cut: watch::Receiver<BTreeSet<Link>>,
) {
    let deadline = tokio::time::Instant::now() + SILENT_HOLD;
    let mut sink = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut sink) => {
                if !matches!(read, Ok(n) if n > 0) {
                    return;
                }
            }
            changed = cut.changed() => {
                let healed = link.is_none_or(|link| !cut.borrow_and_update().contains(&link));
                if changed.is_err() || healed {
                    return;
                }
            }
            () = tokio::time::sleep_until(deadline) => return,
        }
    }
}

/// The node whose process holds the loopback socket connected from
/// `local_port` to `remote_port`, found through `/proc`.
fn source_node(local_port: u16, remote_port: u16, pids: &BTreeMap<u32, u64>) -> Option<u64> {
    let inode = socket_inode(local_port, remote_port)?;
    let wanted = format!("socket:[{inode}]");
    pids.iter().find_map(|(pid, node)| {
        let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        entries
            .flatten()
            .any(|entry| {
                std::fs::read_link(entry.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
            .then_some(*node)
    })
}

/// The inode of the IPv4 TCP socket from `local_port` to `remote_port`
/// (`/proc/net/tcp` writes ports in hex after the address).
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!(":{local_port:04X}");
    let remote = format!(":{remote_port:04X}");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let matches = fields.get(1).is_some_and(|field| field.ends_with(&local))
            && fields.get(2).is_some_and(|field| field.ends_with(&remote));
        matches.then(|| fields.get(9)?.parse().ok()).flatten()
    })
}
