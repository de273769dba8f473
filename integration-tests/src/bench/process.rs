//! What the benchmark reads of a server's process from `/proc`: its CPU
//! time (user + system, from `/proc/<pid>/stat`) and its resident memory
//! (`VmRSS`, from `/proc/<pid>/status`).

use std::time::Duration;

use crate::bench::BenchError;

/// The CPU time (user + system) process `pid` has used.
pub fn cpu_time(pid: u32) -> Result<Duration, BenchError> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .map_err(|error| BenchError::Setup(format!("cannot read {path}: {error}")))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // the fields after it start after the last ')'.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| BenchError::Setup(format!("{path} has no command name")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after it.
    let ticks = |at: usize| -> Result<u64, BenchError> {
        fields
            .get(at)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| BenchError::Setup(format!("{path} has no CPU time at field {}", at + 3)))
    };
    let total = ticks(11)? + ticks(12)?;
    // Linux counts in USER_HZ: 100 a second on x86 and ARM, where this
    // tool runs.
    Ok(Duration::from_millis(total * 10))
}

/// The CPU time the processes `pids` have used, together: the members of
/// a cluster.
pub fn total_cpu_time(pids: &[u32]) -> Result<Duration, BenchError> {
    pids.iter().map(|pid| cpu_time(*pid)).sum()
}

/// Resident memory of process `pid`, from `/proc/<pid>/status`.
pub fn rss_bytes(pid: u32) -> Result<u64, BenchError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .map_err(|error| BenchError::Setup(format!("cannot read {path}: {error}")))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| BenchError::Setup(format!("{path} has no VmRSS line")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn this_process_has_used_some_cpu_time() {
        let pid = std::process::id();
        // Spin until the kernel has counted a tick of ours: on a loaded
        // machine a fixed spin of wall time may get no CPU at all.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut used = cpu_time(pid).unwrap();
        while used == Duration::ZERO && Instant::now() < deadline {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_millis(5) {
                std::hint::black_box(0);
            }
            used = cpu_time(pid).unwrap();
        }
        assert!(used > Duration::ZERO, "no CPU time counted after 10 s");
        // CPU time only grows: each of the two reads is at least `used`.
        assert!(total_cpu_time(&[pid, pid]).unwrap() >= 2 * used);
        assert_eq!(total_cpu_time(&[]).unwrap(), Duration::ZERO);
    }

    #[test]
    fn a_process_that_is_not_there_is_named() {
        let error = cpu_time(u32::MAX).unwrap_err().to_string();
        assert!(
            error.contains(&format!("/proc/{}/stat", u32::MAX)),
            "{error}"
        );
    }
}
