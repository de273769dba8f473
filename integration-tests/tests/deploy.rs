//! The files an operator installs are valid where they go: the systemd
//! unit passes `systemd-analyze verify` with the real binary in place.

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
