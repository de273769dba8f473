//! The files an operator installs are valid where they go: the systemd
//! unit passes `systemd-analyze verify` with the real binary in place, and
//! the man pages `make man` writes are roff naming every command.

use std::path::Path;
use std::process::Command;

use integration_tests::server_binary;

#[test]
fn the_systemd_unit_verifies_with_the_real_binary() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kv-server.service");
    let text = std::fs::read_to_string(&unit).expect("deploy/kv-server.service exists");
    assert!(
        text.contains("ExecStart=/usr/local/bin/kv-server"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("kv-server.service");
    let binary = server_binary().display().to_string();
    std::fs::write(&copy, text.replace("/usr/local/bin/kv-server", &binary)).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package)");
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{said}");
    assert!(said.trim().is_empty(), "systemd-analyze warns: {said}");
}

#[test]
fn the_man_pages_are_roff_and_name_the_commands_and_flags() {
    let server = Command::new(server_binary())
        .arg("man")
        .output()
        .expect("kv-server man runs");
    assert!(server.status.success());
    let page = String::from_utf8_lossy(&server.stdout);
    assert!(page.contains(".TH kv-server 1"), "{page}");
    for flag in ["quota\\-bytes", "restore", "rebuild"] {
        assert!(page.contains(flag), "kv-server's page lacks {flag}");
    }
    let kvctl = Command::new(integration_tests::kvctl::kvctl_binary())
        .arg("man")
        .output()
        .expect("kvctl man runs");
    assert!(kvctl.status.success());
    let page = String::from_utf8_lossy(&kvctl.stdout);
    assert!(page.contains(".TH kvctl 1"), "{page}");
    for command in ["snapshot", "alarm", "completion"] {
        assert!(page.contains(command), "kvctl's page lacks {command}");
    }
}

/// The server logs to stderr, as the README says and etcd does: stdout is
/// left to what a command prints. A failed start is enough to see where
/// its log lines go (a data dir that is a file).
#[test]
fn the_server_logs_to_stderr_and_leaves_stdout_empty() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let output = Command::new(server_binary())
        .args(["--listen", "127.0.0.1:0", "--peer-listen", "127.0.0.1:0"])
        .args(["--namesrv-listen", "off", "--data-dir"])
        .arg(&not_a_dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("kv-server runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("INFO") || stderr.contains("ERROR"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// A node whose logs go to a file or a journal (not a terminal) writes
/// plain text, without the colour codes it wrote there before (the
/// harness no longer sets `NO_COLOR`).
#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    let server = integration_tests::TestServer::start().await;
    assert!(server.log_contains("serving"), "{}", server.log_tail(5));
    assert!(!server.log_contains("\u{1b}["), "{}", server.log_tail(5));
}
