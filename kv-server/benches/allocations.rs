//! Allocations per request (`make bench-alloc`): a counting global
//! allocator, and a one-node kv-server opened in this process on a data
//! directory of its own whose client router is called directly (tower's
//! `oneshot`), one request at a time. For puts, stale gets and linearizable
//! gets it prints the median, over many requests, of the allocations and
//! of the bytes allocated from the router's entry to its answer: the
//! handlers, the layers, Raft, the raft log, the topic, the view. hyper's
//! parsing and writing of the bytes on the wire are not in it.
//!
//! With `ALLOC_SITES=N` it also records where each allocation of N more
//! puts comes from (a backtrace per allocation, slow) and prints the
//! sites by count per put.
//!
//! Environment: `ALLOC_REQUESTS` measured requests per kind (default
//! 2,000, after 200 not measured), `ALLOC_SITES` (default 0).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use clap::Parser as _;
use kv_server::config::Cli;
use kv_server::server::InProcessNode;
use tower::ServiceExt as _;

/// Requests not measured first, so every cache and pool is warm.
const WARM_UP: usize = 200;
/// Keys the requests are spread over, as `kv-bench`'s default.
const KEYS: usize = 10_000;
/// Longest wait for the node to elect itself.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most backtraces kept in `ALLOC_SITES` mode.
const MAX_SITES_RECORDED: usize = 200_000;

/// Counts every allocation of the process; with [`RECORDING`] set, also
/// keeps a backtrace of each.
struct Counting;

/// Allocations made (reallocations count as one).
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes asked for by those allocations.
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Whether allocations are being attributed to their sites now.
static RECORDING: AtomicBool = AtomicBool::new(false);
/// The backtraces recorded, rendered.
static SITES: parking_lot::Mutex<Vec<String>> = parking_lot::Mutex::new(Vec::new());

thread_local! {
    /// Set while this thread records a site: the recording's own
    /// allocations are not recorded again.
    static IN_RECORD: Cell<bool> = const { Cell::new(false) };
}

impl Counting {
    fn count(size: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
        if RECORDING.load(Ordering::Relaxed) {
            record_site();
        }
    }
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counting beside it does not touch the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Counting::count(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Counting::count(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Keeps a backtrace of the allocation being made, unless this thread is
/// already recording one (the backtrace allocates too).
fn record_site() {
    let reentered = IN_RECORD.with(|flag| flag.replace(true));
    if reentered {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let mut sites = SITES.lock();
    if sites.len() < MAX_SITES_RECORDED {
        sites.push(trace);
    }
    drop(sites);
    IN_RECORD.with(|flag| flag.set(false));
}

/// Allocations and bytes since the process started.
fn counters() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// One kind of request the bench measures.
#[derive(Clone, Copy)]
enum Kind {
    /// `PUT /v1/kv/{key}` of a 256-byte JSON string.
    Put,
    /// `GET /v1/kv/{key}?consistency=stale`.
    GetStale,
    /// `GET /v1/kv/{key}` (linearizable).
    GetLinearizable,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Put => "put",
            Kind::GetStale => "get stale",
            Kind::GetLinearizable => "get linearizable",
        }
    }

    /// The request on key number `n`, built before the counting starts.
    fn request(self, n: usize) -> Request<Body> {
        let path = format!("/v1/kv/bench/k{:07}", n % KEYS);
        let builder = Request::builder().header("content-type", "application/json");
        let request = match self {
            Kind::Put => builder
                .method(Method::PUT)
                .uri(path)
                .body(Body::from(value())),
            Kind::GetStale => builder
                .method(Method::GET)
                .uri(format!("{path}?consistency=stale"))
                .body(Body::empty()),
            Kind::GetLinearizable => builder.method(Method::GET).uri(path).body(Body::empty()),
        };
        request.expect("a request of a fixed, valid shape")
    }
}

/// The value of every put: a JSON string 256 bytes long, as kv-bench's.
fn value() -> &'static [u8] {
    static VALUE: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| format!("\"{}\"", "v".repeat(254)).into_bytes());
    VALUE.as_slice()
}

/// Sends `request` to `router` and gives the allocations and bytes from
/// the call to the answer, which must be a success.
async fn measure(router: &axum::Router, request: Request<Body>) -> (u64, u64) {
    let (allocations, bytes) = counters();
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router's error type is Infallible");
    let (after_allocations, after_bytes) = counters();
    let status = response.status();
    if !status.is_success() {
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        panic!("the request failed with {status}: {body:?}");
    }
    (after_allocations - allocations, after_bytes - bytes)
}

/// The median of `values`.
fn median(values: &mut [u64]) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// Measures `count` requests of `kind` after the warm-up and prints the
/// medians (and the means, which also hold the background work that fell
/// in the windows).
async fn run_kind(router: &axum::Router, kind: Kind, count: usize) {
    for n in 0..WARM_UP {
        measure(router, kind.request(n)).await;
    }
    let mut allocations = Vec::with_capacity(count);
    let mut bytes = Vec::with_capacity(count);
    for n in 0..count {
        let request = kind.request(WARM_UP + n);
        let (request_allocations, request_bytes) = measure(router, request).await;
        allocations.push(request_allocations);
        bytes.push(request_bytes);
    }
    let mean = |values: &[u64]| values.iter().sum::<u64>() as f64 / values.len() as f64;
    let (mean_allocations, mean_bytes) = (mean(&allocations), mean(&bytes));
    println!(
        "{:<17} {:>7} allocations {:>9} bytes per request (median of {count}; mean {mean_allocations:.0} and {mean_bytes:.0})",
        kind.name(),
        median(&mut allocations),
        median(&mut bytes),
    );
}

/// Whether a frame's symbol is the allocator's, the bench's or the
/// standard library's plumbing rather than the code that asked.
fn is_plumbing(symbol: &str) -> bool {
    const PLUMBING: &[&str] = &[
        "alloc::",
        "<alloc::",
        "core::",
        "<core::",
        "std::",
        "<std::",
        "__rust",
        "__rdl",
        "hashbrown::",
        "<hashbrown::",
        "bytes::bytes_mut::",
        "<bytes::bytes_mut::",
        "smallvec::",
        "<smallvec::",
    ];
    symbol.contains("allocations::record_site")
        || symbol.contains("allocations::Counting")
        || PLUMBING.iter().any(|prefix| symbol.starts_with(prefix))
}

/// The site of one rendered backtrace: the first frame that is not
/// plumbing, and the first of kv-server's own frames under it.
fn site_of(trace: &str) -> String {
    let symbols: Vec<&str> = trace
        .lines()
        .filter_map(|line| {
            let (number, symbol) = line.trim_start().split_once(": ")?;
            number.parse::<usize>().ok().map(|_| symbol.trim())
        })
        .collect();
    let first = symbols
        .iter()
        .position(|symbol| !is_plumbing(symbol))
        .unwrap_or(0);
    let asker = symbols.get(first).copied().unwrap_or("?");
    let ours = symbols[first..]
        .iter()
        .find(|symbol| symbol.contains("kv_server::") || symbol.contains("<kv_server::"))
        .copied();
    match ours {
        Some(ours) if ours != asker => format!("{asker}\n      under {ours}"),
        _ => asker.to_string(),
    }
}

/// Records the sites of the allocations of `count` puts and prints them
/// by count per put.
async fn print_sites(router: &axum::Router, count: usize) {
    SITES.lock().clear();
    for n in 0..count {
        let request = Kind::Put.request(n);
        RECORDING.store(true, Ordering::Relaxed);
        let response = router.clone().oneshot(request).await;
        RECORDING.store(false, Ordering::Relaxed);
        let status = response.map_or(StatusCode::INTERNAL_SERVER_ERROR, |r| r.status());
        assert!(status.is_success(), "a put failed with {status}");
    }
    let traces = std::mem::take(&mut *SITES.lock());
    let mut by_site: HashMap<String, u64> = HashMap::new();
    for trace in &traces {
        *by_site.entry(site_of(trace)).or_default() += 1;
    }
    let mut sites: Vec<(String, u64)> = by_site.into_iter().collect();
    sites.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!(
        "\nallocation sites of {count} puts ({} allocations, {:.1} per put), by count per put:",
        traces.len(),
        traces.len() as f64 / count as f64
    );
    for (site, allocations) in sites {
        println!("{:>7.2}  {site}", allocations as f64 / count as f64);
    }
}

/// Polls `/readyz` until the node leads itself.
async fn wait_for_leader(router: &axum::Router) {
    let deadline = Instant::now() + LEADER_TIMEOUT;
    loop {
        let request = Request::get("/readyz")
            .body(Body::empty())
            .expect("a valid request");
        let response = router.clone().oneshot(request).await;
        if response.is_ok_and(|response| response.status().is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the node had no leader after {LEADER_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a count")),
        Err(_) => default,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this bench takes no arguments.
    let requests = env_count("ALLOC_REQUESTS", 2_000).max(1);
    let site_puts = env_count("ALLOC_SITES", 0);
    let data_dir = tempfile::Builder::new()
        .prefix("kv-bench-alloc-")
        .tempdir()
        .expect("a temporary directory can be created");
    let data_dir_text = data_dir.path().to_str().expect("a UTF-8 temporary path");
    let config = Cli::parse_from([
        "kv-server",
        "--data-dir",
        data_dir_text,
        "--listen",
        "127.0.0.1:1",
        "--namesrv-listen",
        "off",
    ])
    .config;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let node = InProcessNode::start(config)
            .await
            .expect("the node opens in a fresh directory");
        let router = node.client_router();
        wait_for_leader(&router).await;
        println!(
            "kv-server in-process, one node, 256-byte values on {KEYS} keys; one request at a time"
        );
        for kind in [Kind::Put, Kind::GetStale, Kind::GetLinearizable] {
            run_kind(&router, kind, requests).await;
        }
        if site_puts > 0 {
            print_sites(&router, site_puts).await;
        }
        drop(router);
        node.stop().await.expect("the node stops cleanly");
    });
}
