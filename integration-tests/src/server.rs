//! One `kv-server` process under test: its port, data directory, log file
//! and lifecycle.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer `/readyz` with 200 after spawning.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two `/readyz` polls.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an offline command (`kv-server rebuild`) may run.
const OFFLINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time limit of one request made through [`TestServer::client`]; long-polls
/// in the tests wait far less.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh ports tried when a picked port was taken before the server bound it.
const PORT_ATTEMPTS: usize = 3;
/// Binds [`free_ports`] may try before it gives up.
const FREE_PORT_BINDS: usize = 1000;
/// Log lines printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// A running (or stopped) `kv-server` on `127.0.0.1`, with its own data
/// directory. Dropping it kills the process and removes the directory.
pub struct TestServer {
    /// Holds `data/` and `server.log`; removed on drop.
    dir: TempDir,
    /// The loopback port of the client API, kept across restarts.
    port: u16,
    /// The loopback port of the peer port (`--peer-listen`), kept across
    /// restarts; 0 lets the system pick one.
    peer_port: u16,
    /// The loopback port of the name server (`--namesrv-listen`), picked
    /// when the server is made and kept across restarts; 0 when the flags
    /// give their own `--namesrv-listen`.
    namesrv_port: u16,
    /// `--node-id`.
    node_id: u64,
    /// Flags added to `--node-id … --listen … --data-dir …`, kept across restarts.
    extra_args: Vec<String>,
    /// Environment variables added to the process, kept across restarts.
    env: Vec<(String, String)>,
    /// The process, while it runs.
    child: Option<Child>,
    /// HTTP client for this server.
    client: reqwest::Client,
    /// Which ports speak HTTPS, and the CA the client trusts; plain HTTP
    /// without it.
    tls: Option<crate::HarnessTls>,
}

/// Why one spawn did not become ready.
enum NotReady {
    /// The process exited; `log` is what it wrote.
    Exited { status: ExitStatus, log: String },
    /// `/readyz` did not answer 200 in time.
    TimedOut,
}

impl TestServer {
    /// Starts a single-node server with default flags and waits until it
    /// knows a leader.
    pub async fn start() -> TestServer {
        TestServer::start_with(&[]).await
    }

    /// Starts a server with extra flags (e.g. `["--snapshot-every", "100"]`)
    /// and waits until it knows a leader. The flags are kept for restarts.
    pub async fn start_with(extra_args: &[&str]) -> TestServer {
        let mut server = TestServer::unstarted(1, 0, 0, extra_args);
        // The ports are free when picked but another process may take one
        // before the server binds it; then the server exits and new ports
        // are tried.
        for attempt in 1..=PORT_ATTEMPTS {
            let [port, peer_port] = free_ports(2)[..] else {
                unreachable!("two ports were asked for")
            };
            (server.port, server.peer_port) = (port, peer_port);
            if attempt > 1 && server.namesrv_port != 0 {
                server.namesrv_port = free_ports(1)[0];
            }
            match server.spawn_and_wait().await {
                Ok(()) => return server,
                Err(NotReady::Exited { log, .. })
                    if attempt < PORT_ATTEMPTS && log.contains("cannot listen") => {}
                Err(not_ready) => server.fail_to_start(not_ready),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A server that is not started yet: node `node_id` with its client API
    /// on `port` and its peer port on `peer_port`, its own data directory
    /// and `extra_args`. [`TestServer::spawn`] starts it.
    pub fn unstarted(node_id: u64, port: u16, peer_port: u16, extra_args: &[&str]) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("kv-it-")
            .tempdir()
            .expect("a temporary directory can be created");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds");
        let own_namesrv_flag = extra_args
            .iter()
            .any(|arg| arg.starts_with("--namesrv-listen"));
        TestServer {
            dir,
            port,
            peer_port,
            namesrv_port: if own_namesrv_flag {
                0
            } else {
                free_ports(1)[0]
            },
            node_id,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            env: Vec::new(),
            child: None,
            client,
            tls: None,
        }
    }

    /// Reaches this node over TLS as `tls` says (its URLs turn https where
    /// its ports speak TLS); the node's own TLS flags are in its args.
    pub fn set_tls(&mut self, tls: crate::HarnessTls) {
        self.client = crate::tls::harness_client(Some(&tls), REQUEST_TIMEOUT);
        self.tls = Some(tls);
    }

    fn client_scheme(&self) -> &'static str {
        self.tls.as_ref().map_or("http", |tls| tls.client_scheme())
    }

    /// Starts the process without waiting for it to be ready.
    pub fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "spawn: node {} is running",
            self.node_id
        );
        let listen = self.addr().to_string();
        let peer_listen = format!("127.0.0.1:{}", self.peer_port);
        let node_id = self.node_id.to_string();
        let namesrv: Vec<String> = match self.namesrv_port {
            0 => Vec::new(),
            port => vec!["--namesrv-listen".into(), format!("127.0.0.1:{port}")],
        };
        let child = Command::new(server_binary())
            .args(["--node-id", &node_id, "--listen", &listen])
            .args(&namesrv)
            .args(["--peer-listen", &peer_listen, "--data-dir"])
            .arg(self.data_dir())
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(self.log_for_append())
            .stderr(self.log_for_append())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot spawn {}: {error}", server_binary().display()));
        self.child = Some(child);
    }

    /// Sets (or with `None` removes) an environment variable of the
    /// process from its next start on.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(existing, _)| existing != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// Waits (at most `limit`) for the process to exit by itself and
    /// returns how it ended; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .expect("wait_exit: the server is not running");
        let status = wait_for_exit(child, limit).await;
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Waits until the spawned process answers `/readyz` with 200, and
    /// fails the test if it exits or takes too long.
    pub async fn wait_ready(&mut self) {
        if let Err(not_ready) = self.wait_healthy(0, "/readyz").await {
            self.fail_to_start(not_ready);
        }
    }

    /// The node's `--node-id`.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's client API base URL.
    pub fn base_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme(), self.port)
    }

    /// The node's peer port base URL, as other nodes reach it.
    pub fn peer_url(&self) -> String {
        let scheme = self.tls.as_ref().map_or("http", |tls| tls.peer_scheme());
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }

    /// The URL of `path` (which starts with `/`) on this server. Keys are
    /// put in the path as they are: tests use keys that need no escaping.
    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.client_scheme(), self.port)
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The address of the server's name server (RocketMQ remoting).
    pub fn namesrv_addr(&self) -> SocketAddr {
        assert!(
            self.namesrv_port != 0,
            "node {} was given its own --namesrv-listen",
            self.node_id
        );
        SocketAddr::from(([127, 0, 0, 1], self.namesrv_port))
    }

    /// The address of the server's peer port.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    /// An HTTP client (pooled, no proxy, 30 s per request).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Bootstraps the ACL system of a server started with `--auth` and
    /// returns the root token.
    pub async fn bootstrap_acl(&self) -> String {
        let answer: serde_json::Value = self
            .client
            .post(self.url("/v1/acl/bootstrap"))
            .send()
            .await
            .expect("the bootstrap answers")
            .json()
            .await
            .expect("a JSON answer");
        answer["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no root token in {answer}"))
            .to_string()
    }

    /// Moves the node's peer port to `peer_port` for its next starts, as
    /// an operator who starts it at another address does.
    pub fn move_peer_port(&mut self, peer_port: u16) {
        self.peer_port = peer_port;
    }

    /// The server's `--data-dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the process is running (as far as this harness started it).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process's resident memory (`VmRSS` of `/proc/<pid>/status`), in
    /// bytes.
    pub fn resident_bytes(&self) -> u64 {
        let child = self
            .child
            .as_ref()
            .expect("resident_bytes: the server is not running");
        let path = format!("/proc/{}/status", child.id());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{path} has no VmRSS line"));
        kib * 1024
    }

    /// The process's peak resident memory so far (`VmHWM` of
    /// `/proc/<pid>/status`), in bytes.
    pub fn peak_resident_bytes(&self) -> u64 {
        let child = self
            .child
            .as_ref()
            .expect("peak_resident_bytes: the server is not running");
        let path = format!("/proc/{}/status", child.id());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {path}: {error}"));
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{path} has no VmHWM line"));
        kib * 1024
    }

    /// Stops the process with SIGTERM as [`TestServer::stop`] does, and
    /// asserts that it exited within `limit` and closed each of `open`
    /// (connections that carry no request) without sending a byte.
    pub async fn stop_closing(&mut self, open: Vec<tokio::net::TcpStream>, limit: Duration) {
        use tokio::io::AsyncReadExt;
        let started = Instant::now();
        self.stop().await;
        let stopped_after = started.elapsed();
        assert!(
            stopped_after < limit,
            "the stop took {stopped_after:?}\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
        for mut stream in open {
            let mut byte = [0u8; 1];
            let read = stream.read(&mut byte).await;
            assert!(
                matches!(read, Ok(0) | Err(_)),
                "the node sent something: {read:?}"
            );
        }
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub async fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("kill9: the server is not running");
        };
        child.kill().expect("SIGKILL can be sent to our own child");
        child.wait().expect("a killed child can be reaped");
    }

    /// Stops the process with SIGTERM and waits for it to exit; it must exit
    /// successfully within 10 s (else it is killed and the test fails).
    pub async fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("signalled just above");
        let status = match wait_for_exit(&mut child, STOP_TIMEOUT).await {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the server did not stop within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
        };
        assert!(
            status.success(),
            "the server stopped with {status} after SIGTERM\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
    }

    /// Starts the server again on the same port and data directory, with
    /// the same flags; stops it gracefully first if it is running.
    pub async fn restart(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        if let Err(not_ready) = self.spawn_and_wait().await {
            self.fail_to_start(not_ready);
        }
    }

    /// Stops the process if it runs and starts it again, waiting only
    /// until it answers `/healthz`: a node catching up (by snapshot, say)
    /// is not ready until it has, and the caller looks at it meanwhile.
    pub async fn restart_live(&mut self) {
        if self.child.is_some() {
            self.stop().await;
        }
        let log_start = std::fs::metadata(self.log_path()).map_or(0, |meta| meta.len());
        self.spawn();
        if let Err(not_live) = self.wait_healthy(log_start, "/healthz").await {
            self.fail_to_start(not_live);
        }
    }

    /// Runs `kv-server rebuild --data-dir <data dir>` while the server is
    /// stopped, and checks that it succeeds.
    pub async fn rebuild_view_offline(&self) {
        let status = self.try_rebuild_view_offline().await;
        assert!(
            status.success(),
            "kv-server rebuild exited with {status}\n{}",
            self.log_tail(LOG_TAIL_LINES)
        );
    }

    /// Runs `kv-server rebuild --data-dir <data dir>` while the server is
    /// stopped (its output goes to the server's log), and gives its exit
    /// status.
    pub async fn try_rebuild_view_offline(&self) -> std::process::ExitStatus {
        assert!(
            self.child.is_none(),
            "rebuilding the view offline needs the server stopped"
        );
        let data_dir = self.data_dir();
        let mut child = Command::new(server_binary())
            .args(["rebuild", "--data-dir"])
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stdout(self.log_for_append())
            .stderr(self.log_for_append())
            .spawn()
            .expect("kv-server rebuild can be spawned");
        let Some(status) = wait_for_exit(&mut child, OFFLINE_TIMEOUT).await else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kv-server rebuild ran longer than {OFFLINE_TIMEOUT:?}");
        };
        status
    }

    /// Whether the server's log (all its runs) contains `text`.
    pub fn log_contains(&self, text: &str) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|log| log.contains(text))
    }

    /// How many times the server's log (all its runs) contains `text`.
    pub fn log_count(&self, text: &str) -> usize {
        std::fs::read_to_string(self.log_path()).map_or(0, |log| log.matches(text).count())
    }

    /// The last `lines` lines the server (and offline commands) wrote.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- last lines of node {} ({}) ---\n{tail}",
            self.node_id,
            self.log_path().display()
        )
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log_for_append(&self) -> File {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the log file in the temporary directory can be opened")
    }

    /// Spawns the process and polls `/readyz` until it answers 200.
    async fn spawn_and_wait(&mut self) -> Result<(), NotReady> {
        let log_start = std::fs::metadata(self.log_path()).map_or(0, |meta| meta.len());
        self.spawn();
        self.wait_healthy(log_start, "/readyz").await
    }

    /// Polls `path` until it answers 200; `log_start` is where this run's
    /// log begins, shown if the process exits.
    async fn wait_healthy(&mut self, log_start: u64, path: &str) -> Result<(), NotReady> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let child = self
                .child
                .as_mut()
                .expect("wait_healthy: the process was spawned");
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                self.child = None;
                let log = read_from(&self.log_path(), log_start);
                return Err(NotReady::Exited { status, log });
            }
            let health = self
                .client
                .get(self.url(path))
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if matches!(health, Ok(response) if response.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Err(NotReady::TimedOut)
    }

    /// Stops the process with SIGSTOP, as a long pause (GC, swap, a stuck
    /// disk) would: it keeps its sockets but answers nothing.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&mut self, signal: libc::c_int) {
        let child = self
            .child
            .as_ref()
            .expect("signal: the server is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) with the pid of a child we have not reaped yet, so
        // the pid cannot have been reused by another process.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            sent, 0,
            "signal {signal} could not be sent to node {}",
            self.node_id
        );
    }

    fn fail_to_start(&mut self, not_ready: NotReady) -> ! {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        match not_ready {
            NotReady::Exited { status, log } => {
                panic!("kv-server on port {} exited with {status} before it was ready:\n{log}", self.port)
            }
            NotReady::TimedOut => panic!(
                "kv-server on port {} did not answer GET /readyz (or /healthz) with 200 within {READY_TIMEOUT:?}\n{}",
                self.port,
                self.log_tail(LOG_TAIL_LINES)
            ),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail(LOG_TAIL_LINES));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Copies the directory tree `from` to `to` (a node's data directory,
/// kept to be damaged again from the same start).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `kv-server` binary: `$KV_SERVER_BIN`, else next to the test
/// executable's profile directory (`<target>/<profile>/deps/<test>` →
/// `<target>/<profile>/kv-server`).
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("kv-server", "KV_SERVER_BIN", "kv-server"))
}

/// A binary of the workspace: `$<env_var>` if set, else `name` in the
/// profile directory the tests were built in; `package` names the cargo
/// package that builds it, for the error message.
pub fn workspace_binary(name: &str, env_var: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{env_var} is {}, which is not a file",
            path.display()
        );
        return path;
    }
    let test_exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = test_exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in <target>/<profile>/deps/");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the {name} binary is not at {}: run `cargo build -p {package} --bins` first \
         (with the same profile and target directory as the tests), \
         or set {env_var} to its path",
        path.display()
    );
    path
}

/// `count` loopback ports nothing listens on right now, none of which this
/// test process has handed out before.
///
/// Tests of one binary run in parallel, and a port one of them was given
/// is free again (to the kernel) until its server binds it, so the kernel
/// may offer it to the next test: a server then fails with "Address
/// already in use". Remembering every port given rules that out; only
/// another process taking a port in between remains, which
/// [`TestServer::start_with`] retries.
///
/// The ports come from outside the kernel's range for outgoing
/// connections (see [`server_ports`]): a server killed and started again
/// on its port would otherwise find it taken, now and then, by a
/// connection made while it was down.
pub fn free_ports(count: usize) -> Vec<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    // Every listener stays bound until all ports are picked,
    // so the kernel offers each at most once per call.
    let mut held = Vec::new();
    let mut picked = Vec::with_capacity(count);
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let range = server_ports();
    let mut next = range
        .as_ref()
        .map(|range| rand::random_range(range.clone()));
    for _ in 0..FREE_PORT_BINDS {
        if picked.len() == count {
            break;
        }
        let port = match (&range, next.as_mut()) {
            (Some(range), Some(next)) => {
                let port = *next;
                *next = if port + 1 < range.end {
                    port + 1
                } else {
                    range.start
                };
                port
            }
            _ => 0,
        };
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        if given.insert(port) {
            picked.push(port);
        }
        held.push(listener);
    }
    assert_eq!(
        picked.len(),
        count,
        "{FREE_PORT_BINDS} binds found only {} ports not handed out before",
        picked.len()
    );
    picked
}

/// Loopback ports for servers: below the kernel's range for outgoing
/// connections (`ip_local_port_range`), or above it when it starts too
/// low. `None` (any port the kernel offers) when neither side has room
/// or the range cannot be read.
fn server_ports() -> Option<std::ops::Range<u16>> {
    const LOWEST: u16 = 10_000;
    const ROOM: u16 = 2_000;
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(low)), Some(Ok(high))) = (bounds.next(), bounds.next()) else {
        return None;
    };
    if low >= LOWEST + ROOM {
        Some(LOWEST..low)
    } else if high <= u16::MAX - ROOM {
        Some(high + 1..u16::MAX)
    } else {
        None
    }
}

/// Polls `child` until it exits or `limit` passes.
async fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of `path` from byte `offset` on.
fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.seek(SeekFrom::Start(offset));
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}
