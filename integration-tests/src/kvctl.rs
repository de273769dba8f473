//! Running the `kvctl` binary as a child process, with a time limit.
//!
//! The binary is `$KVCTL_BIN` if set, else `kvctl` in the target directory
//! the tests were built in; `cargo build -p kv-client --bins` puts it there.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a kvctl run may take before it is killed and the test fails.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one kvctl run did.
#[derive(Debug)]
pub struct KvctlRun {
    /// The command line, for failure messages.
    pub args: Vec<String>,
    /// The exit code.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: String,
    /// Everything written to stderr.
    pub stderr: String,
}

impl KvctlRun {
    /// Checks the run exited with `code`, showing its output if not.
    pub fn expect_code(self, code: i32) -> KvctlRun {
        assert_eq!(
            self.code, code,
            "kvctl {:?} exited with {} instead of {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args, self.code, self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "kvctl {:?} panicked:\n{}",
            self.args,
            self.stderr
        );
        self
    }

    /// Checks the run succeeded.
    pub fn success(self) -> KvctlRun {
        self.expect_code(0)
    }

    /// How many lines of stdout contain `text`.
    pub fn lines_with(&self, text: &str) -> usize {
        self.stdout
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }

    /// stdout as one JSON document.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|error| {
            panic!(
                "kvctl {:?} printed no JSON ({error}):\n{}",
                self.args, self.stdout
            )
        })
    }

    /// stdout as one JSON document per line.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
            })
            .collect()
    }
}

/// Runs `kvctl --endpoints <endpoints> <args…>` and waits for it (60 s at
/// most), with stdin closed and no `RUST_LOG` or `KVCTL_ENDPOINTS` from
/// the environment.
pub async fn kvctl(endpoints: &str, args: &[&str]) -> KvctlRun {
    let mut full: Vec<String> = vec!["--endpoints".into(), endpoints.into()];
    full.extend(args.iter().map(|arg| arg.to_string()));
    tokio::task::spawn_blocking(move || run_blocking(full))
        .await
        .expect("the kvctl runner does not panic")
}

fn run_blocking(args: Vec<String>) -> KvctlRun {
    let mut child = Command::new(kvctl_binary())
        .args(&args)
        .env_remove("RUST_LOG")
        .env_remove("KVCTL_ENDPOINTS")
        .env_remove("KVCTL_CACERT")
        .env_remove("KVCTL_CERT")
        .env_remove("KVCTL_KEY")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot spawn {}: {error}", kvctl_binary().display()));
    let stdout = reader(child.stdout.take().expect("stdout is piped"));
    let stderr = reader(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be polled") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvctl {args:?} ran longer than {RUN_TIMEOUT:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    KvctlRun {
        args,
        code: status.code().unwrap_or(-1),
        stdout: stdout.join().expect("the stdout reader does not panic"),
        stderr: stderr.join().expect("the stderr reader does not panic"),
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The `kvctl` binary: `$KVCTL_BIN`, else beside the test executable's
/// profile directory (`<target>/<profile>/kvctl`).
pub fn kvctl_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| crate::server::workspace_binary("kvctl", "KVCTL_BIN", "kv-client"))
}
