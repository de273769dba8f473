//! Reading a server's `/metrics`, so a test waits on the server's state
//! instead of sleeping and hoping it was reached.
//!
//! Above all: a long-poll is sent from a spawned task, and the test must
//! know it is registered before it writes the change that should (or
//! should not) wake it. The `kv_watch_waiters` gauge counts the watches
//! registered, `kv_long_polls` every long-poll holding a slot, so
//! [`TestServer::wait_for_waiters`] and
//! [`TestServer::wait_for_long_polls`] poll them.

use std::time::{Duration, Instant};

use crate::TestServer;

/// The gauge of long-polls registered with the server's watch registry.
const WATCH_WAITERS: &str = "kv_watch_waiters";
/// The gauge of long-polls of every kind holding a slot.
const LONG_POLLS: &str = "kv_long_polls";
/// Pause between two scrapes while waiting for a gauge.
const SCRAPE_POLL: Duration = Duration::from_millis(20);

impl TestServer {
    /// The value of the metric `name` without labels, as `/metrics` shows
    /// it now; `None` if the server does not report it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_value(&self.metrics_text().await, name)
    }

    /// The whole of `/metrics` as the server answers it now.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET /metrics of node {}: {error}", self.node_id()));
        assert_eq!(
            response.status(),
            reqwest::StatusCode::OK,
            "GET /metrics of node {}",
            self.node_id()
        );
        response.text().await.expect("the metrics are text")
    }

    /// How many long-polls wait on this server's watch registry right now.
    pub async fn waiters(&self) -> u64 {
        self.gauge(WATCH_WAITERS).await
    }

    /// Waits until exactly `expected` long-polls wait on this server's
    /// watch registry, and fails the test with the last count if that
    /// takes longer than `within`.
    pub async fn wait_for_waiters(&self, expected: u64, within: Duration) {
        self.wait_for_gauge(WATCH_WAITERS, expected, within).await;
    }

    /// Waits until exactly `expected` long-polls of any kind (watches, the
    /// change feed, the cluster and broker views) hold a slot on this
    /// server, as [`TestServer::wait_for_waiters`] does for watches.
    pub async fn wait_for_long_polls(&self, expected: u64, within: Duration) {
        self.wait_for_gauge(LONG_POLLS, expected, within).await;
    }

    /// A gauge's value now; a gauge appears with the first scrape, so
    /// absent reads as 0.
    async fn gauge(&self, name: &str) -> u64 {
        self.metric(name).await.map_or(0, |value| value as u64)
    }

    async fn wait_for_gauge(&self, name: &str, expected: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let value = self.gauge(name).await;
            if value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is {value} on node {} after {within:?}, expected {expected}",
                self.node_id()
            );
            tokio::time::sleep(SCRAPE_POLL).await;
        }
    }
}

/// The value of the label-less sample `name` in a Prometheus text page.
fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        if parts.next()? != name {
            return None;
        }
        parts.next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn a_sample_is_found_by_its_exact_name_and_labels_are_not_matched() {
        let page = "# TYPE kv_watch_waiters gauge\n\
                    kv_watch_waiters 3\n\
                    kv_watch_waiters_total 9\n\
                    kv_http_requests_total{route=\"/\"} 5\n";
        let cases = [
            ("kv_watch_waiters", Some(3.0)),
            ("kv_watch_waiters_total", Some(9.0)),
            ("kv_http_requests_total", None),
            ("kv_absent", None),
        ];
        for (name, expected) in cases {
            assert_eq!(metric_value(page, name), expected, "{name}");
        }
    }
}
