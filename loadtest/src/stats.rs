//! Latency recording and summaries.
//!
//! Durations are recorded in microseconds in HDR histograms (1 µs to 1 h, 3 significant digits),
//! so percentiles stay exact to 0.1 % whatever the count. Many tasks record into a
//! [`ShardedHistogram`] so that they rarely wait for each other.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value tracked: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// An empty histogram of microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

/// Records `duration` in `histogram` (clamped to 1 µs .. 1 h).
pub fn record(histogram: &mut Histogram<u64>, duration: Duration) {
    record_micros(histogram, u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
}

/// Records a value in microseconds (clamped to 1 µs .. 1 h).
pub fn record_micros(histogram: &mut Histogram<u64>, micros: u64) {
    histogram.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// Percentiles of a distribution, in milliseconds. All zero when `count` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Smallest value.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

impl Summary {
    /// Summarises a histogram of microseconds.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Summary {
                count: 0,
                min_ms: 0.0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Summary {
            count: histogram.len(),
            min_ms: ms(histogram.min()),
            mean_ms: histogram.mean() / 1000.0,
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Histograms shared by many tasks: each task records into the shard its index picks.
#[derive(Debug)]
pub struct ShardedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl ShardedHistogram {
    /// `shards` empty histograms (at least one).
    pub fn new(shards: usize) -> Self {
        ShardedHistogram { shards: (0..shards.max(1)).map(|_| Mutex::new(histogram())).collect() }
    }

    /// Records `micros` in the shard of task `index`.
    pub fn record_micros(&self, index: usize, micros: u64) {
        let shard = &self.shards[index % self.shards.len()];
        // A panic elsewhere cannot leave a histogram half-updated in a way that matters here.
        let mut histogram = shard.lock().unwrap_or_else(PoisonError::into_inner);
        record_micros(&mut histogram, micros);
    }

    /// All shards merged into one histogram.
    pub fn merged(&self) -> Histogram<u64> {
        let mut total = histogram();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            // Same bounds on both sides, so adding cannot fail.
            total.add(&*shard).expect("histograms with the same bounds");
        }
        total
    }
}

/// `count / seconds`, or 0 when no time passed.
pub fn per_second(count: u64, seconds: f64) -> f64 {
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
    fn percentiles_of_one_to_a_thousand_ms() {
        let mut values = histogram();
        for ms in 1..=1000 {
            record(&mut values, Duration::from_millis(ms));
        }
        let summary = Summary::of(&values);
        assert_eq!(summary.count, 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(close(summary.min_ms, 1.0), "{summary:?}");
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p90_ms, 900.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
        assert!(close(summary.mean_ms, 500.5), "{summary:?}");
    }

    #[test]
    fn empty_and_out_of_range() {
        assert_eq!(Summary::of(&histogram()).count, 0);
        let mut values = histogram();
        record(&mut values, Duration::ZERO);
        record(&mut values, Duration::from_secs(10 * 3600));
        let summary = Summary::of(&values);
        assert_eq!(summary.count, 2);
        assert!(summary.min_ms <= 0.001);
        assert!(summary.max_ms >= 3_599_000.0);
    }

    #[test]
    fn shards_merge() {
        let shared = ShardedHistogram::new(4);
        for index in 0..100 {
            shared.record_micros(index, 1000);
        }
        let merged = shared.merged();
        assert_eq!(merged.len(), 100);
        assert_eq!(Summary::of(&merged).p99_ms, 1.0);
    }

    #[test]
    fn rates() {
        assert_eq!(per_second(100, 2.0), 50.0);
        assert_eq!(per_second(100, 0.0), 0.0);
    }
}
