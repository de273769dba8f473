//! What one client can take of a node through the name server's port: file
//! descriptors, memory for compressed bodies and for answers it does not
//! read. Each case used to cost the node far more than the client sent.

use std::io::Write;
use std::time::Duration;

use integration_tests::remoting::{ask, command, connect, POLL};
use integration_tests::TestServer;
use schemas::remoting::{request_code as code, response_code, RemotingCommand, SerializeType};
use tokio::net::TcpStream;
use tokio::time::Instant;

const MIB: u64 = 1 << 20;

/// Out of file descriptors, the name server's accept loop backs off, as
/// the HTTP ports do. It used to try again at once: a core's worth of CPU
/// and a log line per try (tens of MB of log a second). Once connections
/// close it serves again.
#[tokio::test]
async fn out_of_file_descriptors_the_name_server_backs_off_and_serves_again() {
    let server = TestServer::start().await;
    let pid = server.pid().expect("the server runs");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors are listed")
        .count();
    let limit = open + 8;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit: {status}");
    let mut held = Vec::new();
    for _ in 0..16 {
        // The kernel completes the connection; the server's accept fails.
        held.push(
            TcpStream::connect(server.namesrv_addr())
                .await
                .expect("the listen backlog takes it"),
        );
    }
    let failed = "namesrv: accept failed";
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.log_count(failed) == 0 {
        assert!(Instant::now() < deadline, "no accept failed");
        tokio::time::sleep(POLL).await;
    }
    // A window to count the tries in, not a wait for a condition.
    let before = server.log_count(failed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries = server.log_count(failed) - before;
    assert!(tries <= 100, "{tries} failed accepts logged in a second");

    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut client = connect(&server).await;
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]),
        )
        .await;
        if let Ok(answer) = answer {
            assert_eq!(answer.code, 0, "{answer:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served once connections closed"
        );
    }
}

/// A REGISTER_BROKER whose body is `body`, compressed.
fn compressed_registration(broker: &str, body: Vec<u8>) -> RemotingCommand {
    let crc = schemas::remoting::body_crc32(&body).to_string();
    command(
        code::REGISTER_BROKER,
        &[
            ("brokerAddr", "127.0.0.1:20999"),
            ("brokerId", "0"),
            ("brokerName", broker),
            ("clusterName", "DefaultCluster"),
            ("compressed", "true"),
            ("bodyCrc32", &crc),
        ],
        body,
        SerializeType::Json,
    )
}

/// Compressed registration bodies are inflated one at a time and within
/// the inflated budget: a few KiB that inflate to 32 MiB, sent six at
/// once, used to be inflated all at once before any waited for the
/// budget, each holding its 32 MiB.
#[tokio::test]
async fn compressed_bodies_sent_at_once_are_inflated_one_at_a_time() {
    const BODIES: usize = 6;
    const INFLATED: u64 = 32 * MIB;
    let server = TestServer::start().await;
    let mut zeros = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zeros
        .write_all(&vec![0; INFLATED as usize])
        .expect("deflating to memory");
    let body = zeros.finish().expect("deflating to memory");
    assert!(body.len() < 64 << 10, "{} bytes sent", body.len());
    let before = server.resident_bytes();
    let sends = (0..BODIES).map(|n| {
        let (server, body) = (&server, body.clone());
        async move {
            connect(server)
                .await
                .with_answer_timeout(Duration::from_secs(120))
                .call(compressed_registration(&format!("broker-z{n}"), body))
                .await
        }
    });
    for answer in futures::future::join_all(sends).await {
        // Each is answered; zeros are no registration.
        assert_eq!(answer.code, response_code::SYSTEM_ERROR, "{answer:?}");
    }
    let grown = server.peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 2 * INFLATED,
        "{} MiB at the peak for {BODIES} bodies of {} MiB inflated",
        grown / MIB,
        INFLATED / MIB
    );
    let mut client = connect(&server).await;
    assert_eq!(
        ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[])
            .await
            .code,
        0
    );
}

/// A client that sends requests and reads no answer holds a bounded share
/// of the node's memory: its next request waits once its answers not yet
/// written pass 4 MiB. It used to hold an answer for each of the up to 512
/// requests it had sent. Other connections are served meanwhile, and once
/// it reads, it gets every answer.
#[tokio::test]
async fn a_client_that_reads_no_answers_holds_a_bounded_share_of_memory() {
    const REQUESTS: i32 = 100;
    let server = TestServer::start().await;
    let mut client = connect(&server).await;
    let value = "v".repeat(900_000);
    for key in ["k0", "k1", "k2"] {
        let entry = [
            ("namespace", "big"),
            ("key", key),
            ("value", value.as_str()),
        ];
        assert_eq!(ask(&mut client, code::PUT_KV_CONFIG, &entry).await.code, 0);
    }
    let before = server.resident_bytes();
    let mut silent = connect(&server).await;
    let mut frames = Vec::new();
    for opaque in 1..=REQUESTS {
        let mut list = command(
            code::GET_KVLIST_BY_NAMESPACE,
            &[("namespace", "big")],
            Vec::new(),
            SerializeType::Json,
        );
        list.opaque = opaque;
        frames.extend(list.encode());
    }
    silent.send_raw(&frames).await;
    // A window to watch the memory in, not a wait for a condition: the
    // answers are 2.7 MB each, 270 MB if all were built.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let grown = server.resident_bytes().saturating_sub(before);
        assert!(
            grown < 150 * MIB,
            "{} MiB held for a client that reads nothing",
            grown / MIB
        );
        tokio::time::sleep(POLL).await;
    }
    let other = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(other.code, 0, "{other:?}");
    let mut silent = silent.with_answer_timeout(Duration::from_secs(60));
    let mut answered = std::collections::BTreeSet::new();
    for _ in 1..=REQUESTS {
        let answer = silent.read_frame().await.expect("every answer comes");
        assert_eq!(answer.code, 0, "{:?}", answer.remark);
        answered.insert(answer.opaque);
    }
    assert_eq!(answered, (1..=REQUESTS).collect());
}

/// Clients that declare 16 MiB frames and never finish them hold a bounded
/// share of the node's memory: a large frame takes its size from a budget
/// of 64 MiB before its body is read, and one that is not whole within the
/// idle timeout is closed. Each used to hold 16 MiB for as long as it sent
/// a byte every two minutes. Other clients are served meanwhile.
#[tokio::test]
async fn large_frames_never_finished_hold_a_bounded_share_of_memory() {
    const CONNECTIONS: usize = 24;
    const FRAME: usize = 16 << 20;
    let server = TestServer::start_with(&["--namesrv-idle-timeout-s", "4"]).await;
    let before = server.resident_bytes();
    // A length word declaring the largest frame, and all of it but its
    // last byte.
    let mut bytes = ((FRAME - 4) as i32).to_be_bytes().to_vec();
    bytes.resize(FRAME - 1, 0);
    let bytes = std::sync::Arc::new(bytes);
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, bytes) = (server.namesrv_addr(), std::sync::Arc::clone(&bytes));
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = TcpStream::connect(addr).await.expect("connects");
                let sent = stream.write_all(&bytes).await;
                // Written whole or not, the node closes it.
                let mut rest = [0u8; 1];
                let closed =
                    tokio::time::timeout(Duration::from_secs(30), stream.read(&mut rest)).await;
                (sent.is_ok(), closed)
            })
        })
        .collect();
    let mut client = connect(&server).await;
    let answer = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(answer.code, 0, "served meanwhile: {answer:?}");
    for sender in senders {
        let (_, closed) = sender.await.expect("the sender runs");
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "the node closes a frame never finished: {closed:?}"
        );
    }
    let grown = server.peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 96 * MIB,
        "{} MiB at the peak for {CONNECTIONS} frames of 16 MiB never finished",
        grown / MIB
    );
    assert!(
        server.log_contains("took longer than the idle timeout"),
        "{}",
        server.log_tail(20)
    );
    // The first client has been idle past the timeout meanwhile.
    let mut client = connect(&server).await;
    let answer = ask(&mut client, code::GET_BROKER_CLUSTER_INFO, &[]).await;
    assert_eq!(answer.code, 0, "served after: {answer:?}");
}
