//! What a run measured and how it is printed: latency histograms, errors by
//! kind, and the one-line `summary` that scripts read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency the histograms hold, in microseconds (one hour); longer
/// samples are clamped to it.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by the histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in microseconds, in an HDR histogram (3 significant digits).
#[derive(Clone)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
            .expect("1 µs..1 h with 3 significant digits are valid histogram bounds");
        Latency { histogram }
    }

    /// Records one sample; below 1 µs counts as 1 µs, above an hour as an hour.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(MAX_LATENCY_US);
        self.histogram
            .saturating_record(micros.clamp(1, MAX_LATENCY_US));
    }

    /// Adds the samples of `other`.
    pub fn merge(&mut self, other: &Latency) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with the same bounds can be added");
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0..=1) in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The largest sample in milliseconds; 0 when empty.
    pub fn max_ms(&self) -> f64 {
        if self.histogram.is_empty() {
            return 0.0;
        }
        self.histogram.max() as f64 / 1000.0
    }

    /// `p50 1.23 ms  p90 …  max …` for people.
    pub fn describe(&self) -> String {
        format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.max_ms()
        )
    }

    /// The percentiles as summary fields (`p50_ms` … `max_ms`).
    pub fn add_fields(&self, summary: &mut Summary) {
        summary.add("p50_ms", format!("{:.3}", self.quantile_ms(0.5)));
        summary.add("p90_ms", format!("{:.3}", self.quantile_ms(0.9)));
        summary.add("p99_ms", format!("{:.3}", self.quantile_ms(0.99)));
        summary.add("p999_ms", format!("{:.3}", self.quantile_ms(0.999)));
        summary.add("max_ms", format!("{:.3}", self.max_ms()));
    }
}

/// Failed operations counted by kind (`http 503 unavailable`, `timeout`, …).
#[derive(Clone, Debug, Default)]
pub struct Errors {
    by_kind: BTreeMap<String, u64>,
}

impl Errors {
    /// Counts one failure of `kind`.
    pub fn add(&mut self, kind: String) {
        *self.by_kind.entry(kind).or_insert(0) += 1;
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Errors) {
        for (kind, count) in &other.by_kind {
            *self.by_kind.entry(kind.clone()).or_insert(0) += count;
        }
    }

    /// All failures.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// `none`, or `12 × http 503 unavailable, 1 × timeout`.
    pub fn describe(&self) -> String {
        if self.by_kind.is_empty() {
            return "none".to_string();
        }
        let mut text = String::new();
        for (kind, count) in &self.by_kind {
            if !text.is_empty() {
                text.push_str(", ");
            }
            let _ = write!(text, "{} × {kind}", count_text(*count));
        }
        text
    }
}

/// The last line a run prints with `--summary`: `summary key=value …`, with
/// no spaces inside a value, so a shell script can pick fields out of it.
#[derive(Debug, Default)]
pub struct Summary {
    fields: Vec<(&'static str, String)>,
}

impl Summary {
    /// Adds `name=value`; spaces in `value` become `_`.
    pub fn add(&mut self, name: &'static str, value: impl ToString) {
        let value = value.to_string().replace(char::is_whitespace, "_");
        self.fields.push((name, value));
    }

    /// The line, starting with `summary`.
    pub fn line(&self) -> String {
        let mut line = String::from("summary");
        for (name, value) in &self.fields {
            let _ = write!(line, " {name}={value}");
        }
        line
    }
}

/// `1234567` as `1,234,567`.
pub fn count_text(count: u64) -> String {
    let digits = count.to_string();
    let mut text = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// A rate per second over `elapsed`; 0 for an empty interval.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1_000), "1,000");
        assert_eq!(count_text(1_234_567), "1,234,567");
    }

    #[test]
    fn summary_values_carry_no_spaces() {
        let mut summary = Summary::default();
        summary.add("workload", "put");
        summary.add("errors_by_kind", "2 × http 503");
        assert_eq!(
            summary.line(),
            "summary workload=put errors_by_kind=2_×_http_503"
        );
    }

    #[test]
    fn percentiles_come_from_the_recorded_samples() {
        let mut latency = Latency::new();
        for millis in 1..=100 {
            latency.record(Duration::from_millis(millis));
        }
        assert_eq!(latency.count(), 100);
        assert!((latency.quantile_ms(0.5) - 50.0).abs() < 0.1);
        assert!((latency.quantile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((latency.max_ms() - 100.0).abs() < 0.1);
    }
}
