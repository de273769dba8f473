//! Running a fuzz target: how many cases, from which seed, and what is
//! reported.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};

use crate::alloc::installed;

/// Cases per target when `FUZZ_CASES` is not set: enough to catch a
/// regression in `make test`, quick enough to run there.
const DEFAULT_CASES: u32 = 2_000;

thread_local! {
    /// How many cases of the running target came to each outcome.
    static OUTCOMES: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts one case as having come to `outcome` (a decoded value, or the
/// kind of error): the summary shows how deep the cases reached.
pub fn outcome(outcome: &str) {
    OUTCOMES.with(|outcomes| {
        *outcomes
            .borrow_mut()
            .entry(outcome.to_string())
            .or_default() += 1;
    });
}

/// An error message as an outcome: its first words before any `:`,
/// without the numbers, names and quoted values that differ from case to
/// case.
pub fn outcome_of(message: &str) -> String {
    let head = message.split(':').next().unwrap_or_default();
    head.split_whitespace()
        .filter(|word| {
            word.starts_with(|first: char| first.is_ascii_alphabetic())
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "'-(),".contains(c))
        })
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The outcomes counted so far, most frequent first, as percentages.
fn outcome_summary() -> String {
    OUTCOMES.with(|outcomes| {
        let outcomes = outcomes.borrow();
        let total: u64 = outcomes.values().sum();
        let mut counted: Vec<(&String, &u64)> = outcomes.iter().collect();
        counted.sort_by(|a, b| b.1.cmp(a.1));
        counted
            .iter()
            .map(|(outcome, count)| {
                format!(
                    "{:.1}% {outcome}",
                    **count as f64 * 100.0 / total.max(1) as f64
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Cases per target: `FUZZ_CASES`, or 2,000.
pub fn cases() -> u32 {
    match std::env::var("FUZZ_CASES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("FUZZ_CASES must be a number of cases, got {text:?}")),
        Err(_) => DEFAULT_CASES,
    }
}

/// The seed: `FUZZ_SEED`, or one taken from the clock.
fn seed() -> u64 {
    match std::env::var("FUZZ_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("FUZZ_SEED must be a u64, got {text:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    }
}

/// Runs `check` on [`cases`] values of `strategy`. A check that fails or
/// panics is shrunk to a small input and reported with the seed that
/// replays it; a summary line (cases, time, the share of each
/// [`outcome`]) goes to stderr either way.
pub fn fuzz<S: Strategy>(
    target: &str,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<(), String>,
) {
    assert!(
        installed(),
        "fuzzkit::PeakAlloc must be the test binary's #[global_allocator]"
    );
    let cases = cases();
    let seed = seed();
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 4_096,
        ..Config::default()
    };
    OUTCOMES.with(|outcomes| outcomes.borrow_mut().clear());
    let started = Instant::now();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&strategy, |value| {
        check(&value).map_err(TestCaseError::fail)
    });
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {target}: {cases} cases in {seconds:.1} s (FUZZ_SEED={seed}); outcomes: {}",
        outcome_summary()
    );
    if let Err(error) = outcome {
        panic!("fuzz target {target} failed (replay with FUZZ_SEED={seed}): {error}");
    }
}
