//! The request counter and duration histogram of each route, method and
//! status, registered once and kept: building the labels and looking the
//! metric up in the registry on every request cost several allocations.
//!
//! The table is process-wide, as the metrics recorder is. Lookups take the
//! read lock; the first request of a (route, method, status) takes the
//! write lock once to register it. Routes are axum's patterns, so the
//! table stays as small as the API (times the methods and statuses seen).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use axum::http::Method;
use metrics::{Counter, Histogram};
use parking_lot::RwLock;

/// The handles of one route and method.
struct MethodMetrics {
    /// `kv_http_request_duration_seconds{route, method}`.
    seconds: Histogram,
    /// `kv_http_requests_total{route, method, status}` by status.
    requests: HashMap<u16, Counter>,
}

/// Route pattern → method → its handles.
type Table = HashMap<String, HashMap<Method, MethodMetrics>>;

/// The handles registered so far.
static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(|| {
    // Handles made before the recorder is installed would count nowhere.
    crate::metrics::handle();
    RwLock::new(HashMap::new())
});

/// The label of every method HTTP does not define: any token is a
/// method, so a label per method seen would let a client grow the table
/// and `/metrics` without bound (the metrics are kept before `--auth`).
static OTHER_METHOD: LazyLock<Method> =
    LazyLock::new(|| Method::from_bytes(b"OTHER").expect("a method token"));

/// `method` as a label: itself if HTTP defines it, else `OTHER`.
fn method_label(method: &Method) -> &Method {
    const DEFINED: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    if DEFINED.contains(method) {
        method
    } else {
        &OTHER_METHOD
    }
}

/// Counts one answered request of `method` on `route` with `status`,
/// which took `elapsed`.
pub fn record(route: &str, method: &Method, status: u16, elapsed: Duration) {
    let method = method_label(method);
    let seconds = elapsed.as_secs_f64();
    {
        let table = TABLE.read();
        let known = table.get(route).and_then(|methods| methods.get(method));
        if let Some(known) = known {
            if let Some(requests) = known.requests.get(&status) {
                requests.increment(1);
                known.seconds.record(seconds);
                return;
            }
        }
    }
    let mut table = TABLE.write();
    let known = table
        .entry(route.to_string())
        .or_default()
        .entry(method.clone())
        .or_insert_with(|| MethodMetrics {
            seconds: metrics::histogram!(crate::metrics::REQUEST_SECONDS,
                "route" => route.to_string(), "method" => method.to_string()),
            requests: HashMap::new(),
        });
    known
        .requests
        .entry(status)
        .or_insert_with(|| {
            metrics::counter!(crate::metrics::REQUESTS,
                "route" => route.to_string(), "method" => method.to_string(),
                "status" => status.to_string())
        })
        .increment(1);
    known.seconds.record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of `metric` in the exposition whose labels hold `labels`.
    fn line_of(exposition: &str, metric: &str, labels: &[&str]) -> Option<String> {
        exposition
            .lines()
            .find(|line| line.starts_with(metric) && labels.iter().all(|l| line.contains(l)))
            .map(str::to_string)
    }

    #[test]
    fn each_route_method_and_status_is_counted_under_its_own_labels() {
        let route = "/test/request-metrics/{id}";
        for _ in 0..3 {
            record(route, &Method::PUT, 204, Duration::from_millis(2));
        }
        record(route, &Method::PUT, 404, Duration::from_millis(1));
        record(route, &Method::GET, 204, Duration::from_millis(1));
        let exposition = crate::metrics::handle().render();
        let route_label = format!("route=\"{route}\"");
        let count = |method: &str, status: &str| {
            let method = format!("method=\"{method}\"");
            let status = format!("status=\"{status}\"");
            let labels = [route_label.as_str(), method.as_str(), status.as_str()];
            line_of(&exposition, "kv_http_requests_total{", &labels)
                .and_then(|line| line.rsplit(' ').next().map(str::to_string))
                .unwrap_or_else(|| panic!("no counter for {labels:?} in:\n{exposition}"))
        };
        assert_eq!(count("PUT", "204"), "3");
        assert_eq!(count("PUT", "404"), "1");
        assert_eq!(count("GET", "204"), "1");
        let put_seconds = [route_label.as_str(), "method=\"PUT\""];
        let samples = line_of(
            &exposition,
            "kv_http_request_duration_seconds_count{",
            &put_seconds,
        )
        .or_else(|| {
            line_of(
                &exposition,
                "kv_http_request_duration_seconds{",
                &put_seconds,
            )
        });
        assert!(samples.is_some(), "no duration for PUT in:\n{exposition}");
    }

    #[test]
    fn methods_http_does_not_define_share_one_label() {
        let route = "/test/request-metrics/made-up-methods";
        for made_up in ["XYZZY", "PLUGH", "A1B2C3"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            record(route, &method, 405, Duration::from_millis(1));
        }
        let exposition = crate::metrics::handle().render();
        let route_label = format!("route=\"{route}\"");
        let lines: Vec<&str> = exposition
            .lines()
            .filter(|line| {
                line.starts_with("kv_http_requests_total{") && line.contains(&route_label)
            })
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("method=\"OTHER\""), "{lines:?}");
        assert!(lines[0].ends_with(" 3"), "{lines:?}");
    }
}
