//! The cleaner as a background thread with a stop handle.
//!
//! The thread owns nothing but an `Arc` of the topic and its status; it runs
//! a pass every `interval` until the handle is stopped or dropped. A failing
//! pass is logged and counted, and the next interval tries again: a broken
//! cleaner shows in [`CleanerStatus`], it does not die silently. Damaged
//! data a pass met stays in the status after later passes.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, info};

use crate::cleaner::{now_ms, CleanReport};
use crate::topic::{lock, Topic};

/// How the background cleaner has fared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanerStatus {
    /// Passes attempted.
    pub runs: u64,
    /// Passes that failed.
    pub failures: u64,
    /// When the last pass succeeded, ms since the epoch.
    pub last_success_ms: Option<u64>,
    /// The last failure's message, cleared by the next success.
    pub last_error: Option<String>,
    /// The first damaged data a pass met ([`crate::Error::is_damage`]),
    /// kept: damage does not mend itself, and a later pass may not read
    /// that segment again.
    pub damage: Option<String>,
    /// The last successful pass that cleaned something.
    pub last_report: Option<CleanReport>,
}

/// A running background cleaner. Stopping (or dropping) it waits for the
/// pass in progress to finish.
pub struct CleanerHandle {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<CleanerStatus>>,
}

impl CleanerHandle {
    /// Starts a thread that, every `interval`, rolls the active segment if
    /// it is `segment_ms` old ([`Topic::roll_if_old`]: an idle topic's last
    /// writes become cleanable too) and runs [`Topic::clean_once`].
    pub fn spawn(topic: Arc<Topic>, interval: Duration) -> std::io::Result<CleanerHandle> {
        let (stop, stopped) = mpsc::channel::<()>();
        let status = Arc::new(Mutex::new(CleanerStatus::default()));
        let thread_status = Arc::clone(&status);
        let thread = std::thread::Builder::new()
            .name("topic-cleaner".to_string())
            .spawn(move || {
                info!(dir = %topic.dir().display(), ?interval, "cleaner started");
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let outcome = topic
                        .roll_if_old(now_ms())
                        .and_then(|_| topic.clean_once());
                    let mut status = lock(&thread_status);
                    status.runs += 1;
                    match outcome {
                        Ok(report) => {
                            status.last_success_ms = Some(now_ms());
                            status.last_error = None;
                            if report.cleaned {
                                status.last_report = Some(report);
                            }
                        }
                        Err(failure) => {
                            error!(dir = %topic.dir().display(), error = %failure, "cleaner pass failed");
                            status.failures += 1;
                            if failure.is_damage() && status.damage.is_none() {
                                status.damage = Some(failure.to_string());
                            }
                            status.last_error = Some(failure.to_string());
                        }
                    }
                }
                info!(dir = %topic.dir().display(), "cleaner stopped");
            })?;
        Ok(CleanerHandle {
            stop: Some(stop),
            thread: Some(thread),
            status,
        })
    }

    /// A copy of the cleaner's status.
    pub fn status(&self) -> CleanerStatus {
        lock(&self.status).clone()
    }

    /// Stops the thread after the pass in progress.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CleanerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
