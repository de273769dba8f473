//! TLS on both ports: a cluster whose client port speaks HTTPS and whose
//! peer port speaks mutual TLS forms, replicates and serves kvctl and
//! kv-client; a client that does not trust the cluster's CA, or a caller
//! of the peer port without a certificate from that CA, is refused at the
//! handshake and changes nothing; bad TLS flags stop the server at start.
//!
//! The certificates are made here with rcgen: a CA, one node certificate
//! for 127.0.0.1 and localhost (server and client use, so it doubles as
//! each node's identity towards the others), a client certificate, and a
//! second, unrelated CA with a client certificate of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use integration_tests::{kvctl, server_binary, HarnessTls, TestCluster};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use schemas::api::ClusterStatus;
use serde_json::json;
use tempfile::TempDir;

/// How long a server with bad flags may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// A certificate authority: its certificate and the key it signs with.
struct Authority {
    certificate: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("a key pair is generated");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names is valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = params.self_signed(&key).expect("a CA signs itself");
        Authority { certificate, key }
    }

    /// A certificate for `names` (IP addresses and DNS names) signed by
    /// this CA, good for server and client use, as (cert PEM, key PEM).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("a key pair is generated");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("the names are valid");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .expect("the CA signs");
        (certificate.pem(), key.serialize_pem())
    }
}

/// The PEM files of one test, in a temporary directory.
struct Pki {
    dir: TempDir,
    ca_pem: String,
    client_identity_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let ca = Authority::new("kv test CA");
        let wrong_ca = Authority::new("some other CA");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("a PEM file is written")
        };
        let ca_pem = ca.certificate.pem();
        write("ca.pem", &ca_pem);
        write("wrong-ca.pem", &wrong_ca.certificate.pem());
        let (node, node_key) = ca.issue(&["127.0.0.1", "localhost"]);
        write("node.pem", &node);
        write("node-key.pem", &node_key);
        let (client, client_key) = ca.issue(&["kv-test-client"]);
        write("client.pem", &client);
        write("client-key.pem", &client_key);
        let (stranger, stranger_key) = wrong_ca.issue(&["127.0.0.1"]);
        write("stranger.pem", &stranger);
        write("stranger-key.pem", &stranger_key);
        write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all\n",
        );
        Pki {
            dir,
            ca_pem,
            client_identity_pem: format!("{client}\n{client_key}"),
        }
    }

    /// The path of one of the files, as a string for command lines.
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The node flags for TLS on both ports (and `extra`).
    fn node_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--tls-cert",
            "node.pem",
            "--tls-key",
            "node-key.pem",
            "--peer-tls-cert",
            "node.pem",
            "--peer-tls-key",
            "node-key.pem",
            "--peer-tls-ca",
            "ca.pem",
        ]
        .chunks(2)
        .flat_map(|pair| [pair[0].to_string(), self.path(pair[1])])
        .collect();
        args.extend(extra.iter().map(|arg| arg.to_string()));
        args
    }

    fn harness(&self, with_identity: bool) -> HarnessTls {
        HarnessTls {
            client_https: true,
            peer_https: true,
            ca_pem: self.ca_pem.clone().into_bytes(),
            identity_pem: with_identity.then(|| self.client_identity_pem.clone().into_bytes()),
        }
    }

    /// A cluster of `size` nodes with TLS on both ports.
    async fn cluster(&self, size: u64, extra: &[&str]) -> TestCluster {
        let args = self.node_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let with_identity = extra.contains(&"--tls-client-ca");
        TestCluster::start_tls(size, &args, self.harness(with_identity)).await
    }

    /// A kv-client of `endpoints` trusting `ca` (a file of this PKI).
    fn client(&self, endpoints: &[String], ca: &str) -> kv_client::ClientBuilder {
        kv_client::Client::builder(endpoints)
            .ca_certificate_file(self.file(ca))
            .deadline(Duration::from_secs(10))
    }
}

/// A reqwest client trusting the test CA, presenting `identity` (cert and
/// key files of the PKI) if given, for raw calls on the peer port.
fn raw_client(pki: &Pki, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(5))
        .add_root_certificate(
            reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("the CA is PEM"),
        );
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(pki.file(cert)).expect("the cert is there");
        pem.extend(std::fs::read(pki.file(key)).expect("the key is there"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("an identity"));
    }
    builder.build().expect("the raw client builds")
}

async fn status(cluster: &TestCluster, id: u64) -> ClusterStatus {
    let status = cluster
        .status(id)
        .await
        .expect("the node answers over https");
    serde_json::from_value(status).expect("/v1/cluster answers a ClusterStatus")
}

async fn a_follower(cluster: &TestCluster) -> u64 {
    let leader = cluster.leader().await;
    cluster
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a 3-node cluster has followers")
}

#[tokio::test]
async fn a_cluster_with_tls_on_both_ports_forms_replicates_and_serves_kvctl_and_kv_client() {
    let pki = Pki::new();
    let cluster = pki.cluster(3, &[]).await;
    let follower = a_follower(&cluster).await;
    let follower_url = cluster.node(follower).base_url();
    assert!(follower_url.starts_with("https://"), "{follower_url}");

    // kv-client, given only a follower: its write is forwarded to the
    // leader over the peer port's mutual TLS.
    let client = pki
        .client(std::slice::from_ref(&follower_url), "ca.pem")
        .build()
        .expect("the client builds with the CA");
    let written = client
        .put("tls/by-client", &json!({"over": "https"}))
        .await
        .expect("a write through a follower over https");
    let read = client
        .get("tls/by-client")
        .await
        .expect("a read")
        .expect("just written");
    assert_eq!(read.mod_revision, written.revision);

    // kvctl, the same way.
    let ca = pki.path("ca.pem");
    kvctl(
        &follower_url,
        &["--cacert", &ca, "put", "tls/by-kvctl", "7"],
    )
    .await
    .success();
    let entry = kvctl(
        &cluster.urls().join(","),
        &["--cacert", &ca, "-o", "json", "get", "tls/by-kvctl"],
    )
    .await
    .success()
    .json();
    assert_eq!(entry["value"], json!(7), "{entry}");
    // Each node publishes its client URL once it is a member: poll until
    // all three have.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let members = loop {
        let cluster_status = kvctl(
            &follower_url,
            &["--cacert", &ca, "-o", "json", "cluster", "status"],
        )
        .await
        .success()
        .json();
        let members = cluster_status["members"]
            .as_array()
            .expect("members")
            .clone();
        assert_eq!(members.len(), 3, "{cluster_status}");
        if members.iter().all(|member| member["addr"] != "") {
            break members;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every member published its client URL: {cluster_status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for member in &members {
        assert!(
            member["addr"]
                .as_str()
                .is_some_and(|addr| addr.starts_with("https://")),
            "{member}"
        );
        assert!(
            member["peer_addr"]
                .as_str()
                .is_some_and(|addr| addr.starts_with("https://")),
            "{member}"
        );
    }

    // Both writes reached every node.
    cluster.wait_converged().await;
    for id in cluster.ids() {
        let keys = cluster.keys(id, "tls/").await;
        assert_eq!(keys.len(), 2, "node {id}: {keys:?}");
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_cluster_ca_fails_saying_the_certificate_is_not_trusted() {
    let pki = Pki::new();
    let cluster = pki.cluster(1, &[]).await;
    let url = cluster.node(1).base_url();

    let wrong = pki
        .client(std::slice::from_ref(&url), "wrong-ca.pem")
        .build()
        .unwrap();
    let error = wrong
        .get("any/key")
        .await
        .expect_err("a wrong CA is refused");
    let message = error.to_string();
    assert!(
        matches!(error, kv_client::Error::Tls { .. }),
        "a TLS error, not a retried transport error: {error:?}"
    );
    assert!(message.contains("certificate is not trusted"), "{message}");
    assert!(message.contains(&url), "the endpoint is named: {message}");

    // With no CA at all, nothing is trusted either: no public roots.
    let bare = kv_client::Client::new([&url]).unwrap();
    let message = bare.get("any/key").await.unwrap_err().to_string();
    assert!(message.contains("certificate is not trusted"), "{message}");

    let run = kvctl(
        &url,
        &["--cacert", &pki.path("wrong-ca.pem"), "get", "any/key"],
    )
    .await
    .expect_code(1);
    assert!(
        run.stderr.contains("certificate is not trusted"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&url), "{}", run.stderr);
}

/// Plain HTTP sent to a port that speaks HTTPS is answered 400
/// `tls_required` in plain HTTP, saying to use https://, as Go's servers
/// (etcd's) answer it: kvctl then says so at once, where it used to retry
/// for its whole deadline and end with "invalid HTTP version parsed". The
/// peer port answers a plain caller the same way, and the port still
/// serves HTTPS after. Its warning is logged once per port and 10 s, not
/// once per request. A connection closed before it sent anything is not
/// logged as a failed handshake.
#[tokio::test]
async fn plain_http_to_a_tls_port_is_told_to_use_https() {
    let pki = Pki::new();
    let cluster = pki.cluster(1, &[]).await;
    let node = cluster.node(1);
    let plain_url = node.base_url().replacen("https://", "http://", 1);
    let plain_peer_url = node.peer_url().replacen("https://", "http://", 1);
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a plain client builds");
    for url in [
        format!("{plain_url}/v1/kv/some/key"),
        format!("{plain_peer_url}/raft/vote"),
    ] {
        let response = plain.get(&url).send().await.expect("the port answers");
        assert_eq!(response.status(), 400, "{url}");
        let body: serde_json::Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "tls_required", "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("https://"), "{url}: {message}");
    }
    // A client retrying in a loop does not fill the log: one warning per
    // port (the two above), the rest held back and counted in the next.
    for _ in 0..20 {
        let response = plain
            .get(format!("{plain_url}/v1/kv/some/key"))
            .send()
            .await
            .expect("the port answers");
        assert_eq!(response.status(), 400);
    }
    assert_eq!(
        node.log_count("plain HTTP on a port that speaks HTTPS"),
        2,
        "{}",
        node.log_tail(30)
    );
    // The metric counts every one.
    let metrics = raw_client(&pki, None)
        .get(format!("{}/metrics", node.base_url()))
        .send()
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("its text");
    assert!(
        metrics
            .contains(r#"kv_connections_refused_total{listener="client",reason="plain_http"} 21"#),
        "{}",
        metrics
            .lines()
            .filter(|line| line.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let started = std::time::Instant::now();
    let run = kvctl(
        &plain_url,
        &[
            "--cacert",
            &pki.path("ca.pem"),
            "--timeout",
            "20s",
            "get",
            "some/key",
        ],
    )
    .await
    .expect_code(1);
    assert!(run.stderr.contains("tls_required"), "{}", run.stderr);
    assert!(run.stderr.contains("https://"), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "kvctl retried a port it cannot read: {:?}",
        started.elapsed()
    );

    let https = kvctl(
        &node.base_url(),
        &["--cacert", &pki.path("ca.pem"), "put", "some/key", "1"],
    )
    .await;
    https.success();

    // One endpoint given as http:// among right ones is passed over (a
    // read goes to the first endpoint first).
    let client = pki
        .client(&[plain_url.clone(), node.base_url()], "ca.pem")
        .build()
        .expect("the client builds");
    let read = client
        .get("some/key")
        .await
        .expect("a read through the https:// endpoint");
    assert_eq!(read.map(|kv| kv.value), Some(serde_json::json!(1)));
    // While the other endpoints cannot answer (a node restarting, an
    // election), the call keeps trying them to its deadline, not the
    // http:// one again, and names its refusal when it gives up.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        format!("https://{}", listener.local_addr().expect("its address"))
    };
    let client = pki
        .client(&[plain_url.clone(), closed], "ca.pem")
        .deadline(Duration::from_secs(3))
        .build()
        .expect("the client builds");
    let started = std::time::Instant::now();
    let error = client
        .get("some/key")
        .await
        .expect_err("no endpoint serves");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up after {:?}: {error}",
        started.elapsed()
    );
    assert!(error.to_string().contains("tls_required"), "{error}");

    // A TCP check that connects and closes (a load balancer's) is no failed
    // handshake to warn of.
    let mut cluster = cluster;
    let node = cluster.node_mut(1);
    node.stop().await;
    node.set_env("RUST_LOG", Some("info,kv_server::http=debug"));
    node.restart().await;
    drop(
        tokio::net::TcpStream::connect(node.addr())
            .await
            .expect("the port accepts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !node.log_contains("a connection closed before it sent anything") {
        assert!(
            std::time::Instant::now() < deadline,
            "the closed connection was never seen\n{}",
            node.log_tail(10)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !node.log_contains("TLS handshake failed"),
        "{}",
        node.log_tail(10)
    );
}

/// A node stopping (SIGTERM) cuts off the TLS handshakes it has begun:
/// they carry no request, and each held the graceful shutdown until its
/// 10 s deadline.
#[tokio::test]
async fn a_stopping_node_does_not_wait_for_handshakes_begun() {
    use tokio::io::AsyncWriteExt;
    let pki = Pki::new();
    let mut cluster = pki.cluster(1, &[]).await;
    let node = cluster.node(1);
    let ports = [
        (node.addr(), node.url("/healthz"), raw_client(&pki, None)),
        (
            node.peer_addr(),
            format!("{}/healthz", node.peer_url()),
            raw_client(&pki, Some(("client.pem", "client-key.pem"))),
        ),
    ];
    let mut begun = Vec::new();
    for (addr, healthz, fresh) in ports {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("the port takes the connection");
        // A handshake record's first byte, and no more.
        stream.write_all(&[22]).await.expect("the byte is sent");
        // A port accepts in order: a later connection answered means the
        // first was taken up by the node, not left in the backlog.
        let answered = fresh.get(&healthz).send().await;
        assert!(answered.is_ok(), "{healthz}: {answered:?}");
        begun.push(stream);
    }
    cluster
        .node_mut(1)
        .stop_closing(begun, Duration::from_secs(5))
        .await;
}

#[tokio::test]
async fn the_peer_port_refuses_a_handshake_without_a_certificate_from_the_cluster_ca() {
    let pki = Pki::new();
    let cluster = pki.cluster(3, &[]).await;
    let client = pki
        .client(&cluster.urls(), "ca.pem")
        .build()
        .expect("the client builds");
    client.put("tls/kept", &1).await.expect("a write");
    cluster.wait_converged().await;
    let leader = cluster.leader().await;
    let before = status(&cluster, leader).await;

    let forged_vote = json!({"vote": {"leader_id": {"term": 1000, "node_id": 9}, "committed": false},
                             "last_log_id": null});
    let no_certificate = raw_client(&pki, None);
    let stranger = raw_client(&pki, Some(("stranger.pem", "stranger-key.pem")));
    let plain = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for id in cluster.ids() {
        let peer = cluster.node(id).peer_url();
        let plain_peer = peer.replacen("https://", "http://", 1);
        for (who, http) in [
            ("no certificate", &no_certificate),
            ("a certificate of another CA", &stranger),
        ] {
            for path in ["/raft/vote", "/v1/cluster/members"] {
                let answer = http
                    .post(format!("{peer}{path}"))
                    .json(&forged_vote)
                    .send()
                    .await;
                assert!(
                    answer.is_err(),
                    "node {id}'s peer port served {path} to a caller with {who}: {answer:?}"
                );
            }
        }
        // Plain HTTP is told, in plain HTTP, to use https://, and served
        // nothing.
        for path in ["/raft/vote", "/v1/cluster/members"] {
            let answer = plain
                .post(format!("{plain_peer}{path}"))
                .json(&forged_vote)
                .send()
                .await
                .expect("a plain caller is answered");
            assert_eq!(answer.status(), 400, "node {id}, {path}");
            let body: serde_json::Value = answer.json().await.expect("a JSON body");
            assert_eq!(
                body["error"]["code"], "tls_required",
                "node {id}, {path}: {body}"
            );
        }
    }
    // A caller with a certificate of the cluster's CA does get HTTP answers.
    let member = raw_client(&pki, Some(("client.pem", "client-key.pem")));
    let answer = member
        .get(format!("{}/no-such-route", cluster.node(leader).peer_url()))
        .send()
        .await
        .expect("a caller with a certificate of the CA completes the handshake");
    assert_eq!(answer.status(), 404);

    let after = status(&cluster, leader).await;
    assert_eq!(
        (after.leader, after.term, after.members.len()),
        (before.leader, before.term, before.members.len()),
        "the leader, its term and the members are unchanged"
    );
    for id in cluster.ids() {
        let keys = cluster.keys(id, "tls/").await;
        assert_eq!(keys.get("tls/kept"), Some(&json!(1)), "node {id}");
    }
    assert!(
        cluster
            .ids()
            .iter()
            .any(|id| cluster.node(*id).log_contains("TLS handshake failed")),
        "the refused handshakes are logged"
    );
}

/// A member added with a plain http:// peer URL to a cluster whose peer
/// ports speak TLS would get the raft log in clear: refused, as `--peers`
/// and `--join` are at start.
#[tokio::test]
async fn a_member_with_a_plain_peer_url_is_refused_where_peers_speak_tls() {
    let pki = Pki::new();
    let cluster = pki.cluster(1, &[]).await;
    let client = raw_client(&pki, None);
    let url = format!("{}/v1/cluster/members", cluster.node(1).base_url());
    for peer_addr in ["http://127.0.0.1:1", "HTTP://127.0.0.1:1"] {
        let answer = client
            .post(&url)
            .json(&json!({"id": 7, "addr": "https://127.0.0.1:2", "peer_addr": peer_addr, "voter": false}))
            .send()
            .await
            .expect("the node answers");
        assert_eq!(answer.status(), 400, "{peer_addr}");
        let body: serde_json::Value = answer.json().await.expect("a JSON error");
        assert_eq!(body["error"]["code"], "invalid_addr", "{body}");
        assert_eq!(body["error"]["field"], "peer_addr", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("https://")),
            "{body}"
        );
    }
    assert_eq!(
        status(&cluster, 1).await.members.len(),
        1,
        "no member was added"
    );
}

#[tokio::test]
async fn with_a_client_ca_the_client_port_serves_only_clients_with_a_certificate() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let cluster = pki.cluster(1, &["--tls-client-ca", &ca]).await;
    let url = cluster.node(1).base_url();

    // Each try is a new connection: the refusal must reach the client
    // every time, not only when it reads the server's alert before its
    // own request is answered by a reset connection.
    for attempt in 0..20 {
        let anonymous = pki
            .client(std::slice::from_ref(&url), "ca.pem")
            .build()
            .unwrap();
        let error = anonymous
            .get("any/key")
            .await
            .expect_err("no certificate, no answer");
        assert!(
            error
                .to_string()
                .contains("refused this client's certificate"),
            "attempt {attempt}: {error}: {error:?}"
        );
    }

    let (cert, key) = (pki.path("client.pem"), pki.path("client-key.pem"));
    let known = pki
        .client(std::slice::from_ref(&url), "ca.pem")
        .client_certificate_files(&cert, &key)
        .build()
        .unwrap();
    known
        .put("mtls/a", &1)
        .await
        .expect("a client with a certificate is served");
    let run = kvctl(
        &url,
        &[
            "--cacert", &ca, "--cert", &cert, "--key", &key, "-o", "json", "get", "mtls/a",
        ],
    )
    .await
    .success();
    assert_eq!(run.json()["value"], json!(1));
    let refused = kvctl(&url, &["--cacert", &ca, "get", "mtls/a"])
        .await
        .expect_code(1);
    assert!(refused.stderr.contains("certificate"), "{}", refused.stderr);
}

/// Runs `kv-server` with `args` on port 0 in a fresh data directory and
/// returns its stderr; it must exit with a failure.
async fn failed_start(args: &[String]) -> String {
    let data = tempfile::tempdir().expect("a temporary directory");
    let data_dir = data.path().to_path_buf();
    let given = args.to_vec();
    let (code, stderr) = tokio::task::spawn_blocking(move || run_with_limit(&given, &data_dir))
        .await
        .expect("the runner does not panic");
    assert_ne!(
        code,
        Some(0),
        "kv-server {args:?} exited successfully: {stderr}"
    );
    stderr
}

fn run_with_limit(args: &[String], data_dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(server_binary())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--peer-listen",
            "127.0.0.1:0",
            "--namesrv-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kv-server can be spawned");
    let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            let output = child.wait_with_output().expect("stderr can be read");
            return (
                status.code(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            );
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kv-server {args:?} kept running: bad TLS flags must stop it");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn bad_tls_flags_stop_the_server_with_a_message_naming_the_flag_and_the_file() {
    let pki = Pki::new();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--tls-cert".into(), pki.path("node.pem")],
            vec!["--tls-cert".into(), "--tls-key".into()],
        ),
        (
            vec![
                "--tls-cert".into(),
                pki.path("garbage.pem"),
                "--tls-key".into(),
                pki.path("node-key.pem"),
            ],
            vec!["--tls-cert".into(), pki.path("garbage.pem")],
        ),
        (
            vec![
                "--tls-cert".into(),
                pki.path("node.pem"),
                "--tls-key".into(),
                pki.path("garbage.pem"),
            ],
            vec!["--tls-key".into(), pki.path("garbage.pem")],
        ),
        (
            vec![
                "--tls-cert".into(),
                pki.path("missing.pem"),
                "--tls-key".into(),
                pki.path("node-key.pem"),
            ],
            vec!["--tls-cert".into(), pki.path("missing.pem")],
        ),
        (
            vec![
                "--peer-tls-cert".into(),
                pki.path("node.pem"),
                "--peer-tls-key".into(),
                pki.path("node-key.pem"),
            ],
            vec!["--peer-tls-ca".into()],
        ),
        (
            // An https:// URL for a plain client port.
            vec!["--advertise".into(), "https://127.0.0.1:7070".into()],
            vec!["--advertise".into(), "https://".into()],
        ),
    ];
    for (args, named) in cases {
        let stderr = failed_start(&args).await;
        for text in named {
            assert!(
                stderr.contains(&text),
                "kv-server {args:?} must name {text}: {stderr}"
            );
        }
    }
}

#[tokio::test]
async fn kv_bench_drives_a_cluster_that_requires_client_certificates() {
    let pki = Pki::new();
    let ca = pki.path("ca.pem");
    let cluster = pki.cluster(1, &["--tls-client-ca", &ca]).await;
    let url = cluster.node(1).base_url();
    let (cert, key) = (pki.path("client.pem"), pki.path("client-key.pem"));
    let args: Vec<String> = [
        "--endpoints",
        &url,
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        "--summary",
        "--connections",
        "2",
        "--ops",
        "20",
        "--keys",
        "10",
        "put",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kv-bench"))
            .args(&args)
            .output()
            .expect("kv-bench can be run")
    })
    .await
    .expect("the blocking task finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kv-bench exited with {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = stdout
        .lines()
        .find(|line| line.starts_with("summary "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(
        summary.contains(" ok=20") && summary.contains(" errors=0"),
        "{summary}"
    );
}
