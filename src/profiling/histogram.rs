//! Latency over sliding windows: rings of per-interval HDR histograms, merged on read.
//!
//! Each operation keeps three rings with the granularity of the error rates
//! ([`Window`](crate::window::Window)): 6 × 10 s (the 1-minute window), 5 × 60 s (5 minutes) and
//! 12 × 300 s (1 hour). A value is recorded into the current 10-s interval; when an interval
//! is finished, it is added to the 60-s and 300-s intervals it falls in. A window's figures
//! merge its ring's intervals from the current one back (plus the 10-s interval not added
//! yet).
//!
//! # Memory
//!
//! An interval's histogram is allocated on the first value recorded in it and reused when its
//! slot comes round again. Histograms count in `u32` with 3 significant digits, in
//! microseconds from 1 µs, growing with the largest value seen and capped at 60 s (longer
//! values are counted as 60 s in the percentiles; the exact maximum is kept beside): at most
//! 17,408 counters (68 KiB) each, 8,192 (32 KiB) while every value is under 100 ms. With 23
//! intervals an operation holds at most 1.5 MiB (736 KiB below 100 ms).

use std::time::Duration;

use hdrhistogram::Histogram;

// Latency buckets are the HTTP duration metric's: one per bound, and one above the last.
use crate::metrics::{DURATION_BOUNDARIES, DURATION_BUCKETS as BUCKETS};
use crate::window::Window;

/// Significant digits kept by every histogram.
pub(crate) const SIGNIFICANT_DIGITS: u8 = 3;

/// Values above this many microseconds (60 s) are counted as this value in the histograms.
pub(crate) const MAX_TRACKED_MICROS: u64 = 60_000_000;

/// A new, empty histogram that grows as values arrive.
fn new_histogram() -> Option<Histogram<u32>> {
    Histogram::new(SIGNIFICANT_DIGITS).ok()
}

/// One interval's figures.
#[derive(Debug, Default)]
struct Slot {
    /// Which interval of the ring's width (seconds since start / width) it holds.
    index: u64,
    count: u64,
    errors: u64,
    sum_micros: u64,
    max_micros: u64,
    histogram: Option<Histogram<u32>>,
}

impl Slot {
    fn reset(&mut self, index: u64) {
        self.index = index;
        self.count = 0;
        self.errors = 0;
        self.sum_micros = 0;
        self.max_micros = 0;
        if let Some(h) = &mut self.histogram {
            h.reset();
        }
    }

    /// Adds a finished interval's figures into this (coarser) one.
    fn absorb(&mut self, other: &Slot) {
        self.count = self.count.saturating_add(other.count);
        self.errors = self.errors.saturating_add(other.errors);
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
        if let Some(from) = &other.histogram {
            if self.histogram.is_none() {
                self.histogram = new_histogram();
            }
            if let Some(h) = &mut self.histogram {
                // Both grow on demand, so adding cannot run out of range.
                let _ = h.add(from);
            }
        }
    }

    fn record(&mut self, micros: u64, error: bool) {
        self.count = self.count.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(error));
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.max_micros = self.max_micros.max(micros);
        if self.histogram.is_none() {
            self.histogram = new_histogram();
        }
        if let Some(h) = &mut self.histogram {
            // `record` grows the histogram (`saturating_record` would not); it only fails
            // when a counter would pass `u32::MAX`, which then saturates.
            let value = micros.clamp(1, MAX_TRACKED_MICROS);
            if h.record(value).is_err() {
                h.saturating_record(value);
            }
        }
    }
}

/// `N` intervals of `WIDTH` seconds.
#[derive(Debug)]
struct Ring<const N: usize, const WIDTH: u64> {
    slots: [Slot; N],
}

impl<const N: usize, const WIDTH: u64> Ring<N, WIDTH> {
    fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }

    fn slot(&mut self, index: u64) -> &mut Slot {
        let at = usize::try_from(index % N as u64).unwrap_or(0);
        let slot = &mut self.slots[at];
        if slot.index != index {
            slot.reset(index);
        }
        slot
    }

    fn record(&mut self, secs: u64, micros: u64, error: bool) {
        self.slot(secs / WIDTH).record(micros, error);
    }

    /// The live slots, and `extra` (a finished interval starting at second `extra.0` that
    /// was not added to this ring yet) when the window covers it.
    fn live_with<'a>(&'a self, secs: u64, extra: Option<(u64, &'a Slot)>) -> Vec<&'a Slot> {
        let current = secs / WIDTH;
        let oldest = current.saturating_sub(N as u64 - 1);
        let extra = extra.filter(|(at, _)| (oldest..=current).contains(&(at / WIDTH)));
        self.live(secs).chain(extra.map(|(_, slot)| slot)).collect()
    }

    /// The slot holding interval `index`, if it still does.
    fn held(&self, index: u64) -> Option<&Slot> {
        let slot = self.slots.get(usize::try_from(index % N as u64).ok()?)?;
        (slot.index == index && slot.count > 0).then_some(slot)
    }

    /// The slots of the current interval and the `N - 1` before it.
    fn live(&self, secs: u64) -> impl Iterator<Item = &Slot> {
        let current = secs / WIDTH;
        let oldest = current.saturating_sub(N as u64 - 1);
        self.slots
            .iter()
            .filter(move |s| s.count > 0 && s.index >= oldest && s.index <= current)
    }

    /// The p99 of interval `index`, when it is still held and has at least `min_count` values.
    fn p99_of(&self, index: u64, min_count: u64) -> Option<Duration> {
        self.held(index)
            .filter(|slot| slot.count >= min_count)
            .and_then(|slot| slot.histogram.as_ref())
            .map(|h| Duration::from_micros(h.value_at_quantile(0.99)))
    }
}

/// One operation's latency over one window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LatencyStats {
    /// The window the figures cover.
    pub window: Window,
    /// Operations that ended in the window.
    pub count: u64,
    /// Of them, those that failed (an `error.type` on a request, status Error on a span).
    pub errors: u64,
    /// Exact mean.
    pub mean: Duration,
    /// Median, within 0.1 % (3 significant digits).
    pub p50: Duration,
    /// 90th percentile, within 0.1 %.
    pub p90: Duration,
    /// 95th percentile, within 0.1 %.
    pub p95: Duration,
    /// 99th percentile, within 0.1 %.
    pub p99: Duration,
    /// Exact maximum.
    pub max: Duration,
    /// How many ended in each latency bucket: the bounds are
    /// [`DURATION_BOUNDARIES`](crate::metrics::DURATION_BOUNDARIES) (the HTTP duration
    /// metric's, upper bounds included), and the last entry counts those above 10 s, so there
    /// is one entry more than bounds. Counted from the histograms, so a latency within 0.1 %
    /// of a bound may be counted in the bucket below it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use service_tracing::profiling::{Profiling, Window};
    /// let profiling = Profiling::new();
    /// profiling.record_request("GET", Some("/a"), Duration::from_millis(3), false);
    /// profiling.record_request("GET", Some("/a"), Duration::from_millis(30), false);
    /// let op = profiling.operation("GET /a").expect("recorded");
    /// let buckets = &op.window(Window::OneMinute).expect("window").buckets;
    /// assert_eq!(buckets[0], 1, "up to 5 ms");
    /// assert_eq!(buckets[3], 1, "over 25 ms, up to 50 ms");
    /// assert_eq!(buckets.len(), service_tracing::metrics::DURATION_BOUNDARIES.len() + 1);
    /// ```
    pub buckets: Vec<u64>,
}

/// How many of `histogram`'s values fall in each latency bucket (see
/// [`LatencyStats::buckets`]).
fn bucket_counts(histogram: &Histogram<u32>) -> Vec<u64> {
    let bounds_micros = DURATION_BOUNDARIES.map(|seconds| (seconds * 1e6).round() as u64);
    let mut counts = vec![0u64; BUCKETS];
    for value in histogram.iter_recorded() {
        let micros = histogram.lowest_equivalent(value.value_iterated_to());
        let bucket = bounds_micros.partition_point(|bound| *bound < micros);
        if let Some(count) = counts.get_mut(bucket) {
            *count = count.saturating_add(u64::from(value.count_at_value()));
        }
    }
    counts
}

impl LatencyStats {
    fn empty(window: Window) -> Self {
        Self {
            window,
            count: 0,
            errors: 0,
            mean: Duration::ZERO,
            p50: Duration::ZERO,
            p90: Duration::ZERO,
            p95: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
            buckets: vec![0; BUCKETS],
        }
    }

    /// The figures as JSON, durations in milliseconds.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
        serde_json::json!({
            "window": self.window.as_str(),
            "count": self.count,
            "errors": self.errors,
            "mean_ms": ms(self.mean),
            "p50_ms": ms(self.p50),
            "p90_ms": ms(self.p90),
            "p95_ms": ms(self.p95),
            "p99_ms": ms(self.p99),
            "max_ms": ms(self.max),
            "buckets": self.buckets,
        })
    }
}

/// Latency over the three windows (see the module's notes).
#[derive(Debug)]
pub(crate) struct LatencyWindows {
    /// Recorded into directly.
    minute: Ring<6, 10>,
    /// Fed with each 10-s interval once it is finished.
    five_minutes: Ring<5, 60>,
    /// Likewise.
    hour: Ring<12, 300>,
    /// The 10-s interval recorded into last, not yet added to the coarser rings.
    pending: Option<u64>,
}

impl Default for LatencyWindows {
    fn default() -> Self {
        Self {
            minute: Ring::new(),
            five_minutes: Ring::new(),
            hour: Ring::new(),
            pending: None,
        }
    }
}

impl LatencyWindows {
    /// Records one value at `at` (time since the clock's start): into the current 10-s
    /// interval only. When a value opens a new interval, the previous one is added to the
    /// 1-minute and 5-minute intervals it belongs to (once per 10 s, two histogram additions),
    /// so a request costs one histogram increment, not three.
    pub(crate) fn record(&mut self, at: Duration, value: Duration, error: bool) {
        let secs = at.as_secs();
        let interval = secs / 10;
        if let Some(finished) = self.pending.filter(|p| *p != interval) {
            self.roll_up(finished);
        }
        self.pending = Some(interval);
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.minute.record(secs, micros, error);
    }

    fn roll_up(&mut self, interval: u64) {
        // Intervals finish in order, and a slot is only reused after its interval was rolled
        // up, so the finished one is still held.
        if let Some(finished) = self.minute.held(interval) {
            let secs = interval * 10;
            self.five_minutes.slot(secs / 60).absorb(finished);
            self.hour.slot(secs / 300).absorb(finished);
        }
    }

    /// The p99 of the minute before the one `at` falls in, when it had at least `min_count`
    /// values.
    pub(crate) fn previous_minute_p99(&self, at: Duration, min_count: u64) -> Option<Duration> {
        let minute = (at.as_secs() / 60).checked_sub(1)?;
        self.five_minutes.p99_of(minute, min_count)
    }

    /// The figures over `window`, as of `at`.
    pub(crate) fn stats(&self, window: Window, at: Duration) -> LatencyStats {
        let secs = at.as_secs();
        // The pending interval is not in the coarser rings yet: add it when in the window.
        let pending = self
            .pending
            .and_then(|p| self.minute.held(p).map(|slot| (p * 10, slot)));
        let slots: Vec<&Slot> = match window {
            Window::OneMinute => self.minute.live(secs).collect(),
            Window::FiveMinutes => self.five_minutes.live_with(secs, pending),
            Window::OneHour => self.hour.live_with(secs, pending),
        };
        let mut stats = LatencyStats::empty(window);
        let mut sum: u64 = 0;
        let mut max: u64 = 0;
        let mut merged = new_histogram();
        for slot in slots {
            stats.count = stats.count.saturating_add(slot.count);
            stats.errors = stats.errors.saturating_add(slot.errors);
            sum = sum.saturating_add(slot.sum_micros);
            max = max.max(slot.max_micros);
            if let (Some(m), Some(h)) = (&mut merged, &slot.histogram) {
                // Both grow on demand, so adding cannot run out of range.
                let _ = m.add(h);
            }
        }
        if stats.count == 0 {
            return stats;
        }
        stats.mean = Duration::from_micros(sum / stats.count);
        stats.max = Duration::from_micros(max);
        if let Some(h) = merged.filter(|h| !h.is_empty()) {
            let at = |q: f64| Duration::from_micros(h.value_at_quantile(q));
            stats.p50 = at(0.50);
            stats.p90 = at(0.90);
            stats.p95 = at(0.95);
            stats.p99 = at(0.99);
            stats.buckets = bucket_counts(&h);
        }
        stats
    }

    /// Counters held by the histograms allocated so far (4 bytes each).
    #[cfg(test)]
    pub(crate) fn counters(&self) -> usize {
        let slots = self
            .minute
            .slots
            .iter()
            .chain(self.five_minutes.slots.iter())
            .chain(self.hour.slots.iter());
        slots
            .filter_map(|s| s.histogram.as_ref())
            .map(Histogram::distinct_values)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `i`-th of a spread of latencies, log-uniform between 50 µs and 5 s (five
    /// decades): the golden-ratio sequence fills [0, 1) evenly in a scrambled order.
    fn latency_micros(i: u64) -> u64 {
        let unit = (i as f64 * 0.618_033_988_749_894_9).fract();
        (50.0 * 10f64.powf(5.0 * unit)) as u64
    }

    /// The exact value at quantile `q` (nearest rank).
    fn exact(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    #[test]
    fn percentiles_match_exact_ones_over_100_000_values_within_one_percent() {
        let mut windows = LatencyWindows::default();
        let mut values = Vec::with_capacity(100_000);
        for i in 0..100_000u64 {
            let micros = latency_micros(i);
            values.push(micros);
            // Spread over 50 s, so the minute window merges five intervals.
            let at = Duration::from_micros(i * 500);
            windows.record(at, Duration::from_micros(micros), i % 10 == 0);
        }
        values.sort_unstable();
        let now = Duration::from_secs(50);
        for window in Window::ALL {
            let stats = windows.stats(window, now);
            assert_eq!(stats.count, 100_000, "{window:?}");
            assert_eq!(stats.errors, 10_000, "{window:?}");
            for (q, got) in [
                (0.50, stats.p50),
                (0.90, stats.p90),
                (0.95, stats.p95),
                (0.99, stats.p99),
            ] {
                let want = exact(&values, q) as f64;
                let got = got.as_micros() as f64;
                let error = (got - want).abs() / want;
                assert!(error < 0.01, "{window:?} p{q}: {got} vs exact {want}");
            }
            let mean = values.iter().sum::<u64>() / 100_000;
            assert_eq!(stats.mean, Duration::from_micros(mean));
            assert_eq!(stats.max, Duration::from_micros(values[99_999]));
        }
    }

    #[test]
    fn latencies_are_counted_in_the_duration_metric_s_buckets_bounds_included() {
        let mut windows = LatencyWindows::default();
        let ms = Duration::from_millis;
        let at = Duration::from_secs(5);
        for value in [ms(1), ms(5), ms(6), ms(30), ms(700), ms(10_000), ms(20_000)] {
            windows.record(at, value, false);
        }
        // Also in the coarser windows once the interval is rolled up.
        windows.record(Duration::from_secs(15), ms(3), false);
        let stats = windows.stats(Window::OneMinute, Duration::from_secs(15));
        let mut expected = vec![0u64; BUCKETS];
        for (bucket, n) in [(0, 3), (1, 1), (3, 1), (8, 1), (13, 1), (14, 1)] {
            expected[bucket] = n;
        }
        assert_eq!(stats.buckets, expected);
        assert_eq!(stats.buckets.iter().sum::<u64>(), stats.count);
        let hour = windows.stats(Window::OneHour, Duration::from_secs(15));
        assert_eq!(hour.buckets, expected);
        let empty = LatencyWindows::default().stats(Window::OneMinute, at);
        assert_eq!(empty.buckets, vec![0; BUCKETS]);
    }

    #[test]
    fn windows_slide_and_old_intervals_are_reused() {
        let mut windows = LatencyWindows::default();
        for i in 0..30u64 {
            windows.record(Duration::from_secs(i), Duration::from_millis(10), false);
        }
        let at = Duration::from_secs(30);
        assert_eq!(windows.stats(Window::OneMinute, at).count, 30);
        let later = Duration::from_secs(30 + 120);
        assert_eq!(windows.stats(Window::OneMinute, later).count, 0);
        assert_eq!(windows.stats(Window::FiveMinutes, later).count, 30);
        let hour_later = Duration::from_secs(30 + 3_600);
        assert_eq!(windows.stats(Window::OneHour, hour_later).count, 0);
        // A slot reused an hour later starts from nothing.
        windows.record(hour_later, Duration::from_millis(2), true);
        let stats = windows.stats(Window::OneHour, hour_later);
        assert_eq!((stats.count, stats.errors), (1, 1));
        assert_eq!(stats.max, Duration::from_millis(2));
        assert!((stats.p99.as_secs_f64() - 0.002).abs() < 0.000_01);
    }

    #[test]
    fn finished_intervals_reach_the_coarser_windows_and_the_pending_one_is_counted_once() {
        let mut windows = LatencyWindows::default();
        for (s, ms) in [(5, 1), (15, 2), (65, 4)] {
            windows.record(Duration::from_secs(s), Duration::from_millis(ms), false);
        }
        let count = |w: &LatencyWindows, window, s| w.stats(window, Duration::from_secs(s)).count;
        assert_eq!(count(&windows, Window::OneMinute, 65), 2, "15 s and 65 s");
        assert_eq!(count(&windows, Window::FiveMinutes, 65), 3);
        assert_eq!(count(&windows, Window::OneHour, 65), 3);
        // Nothing recorded since: the 65-s interval is still pending, and counted once.
        assert_eq!(count(&windows, Window::OneMinute, 125), 0);
        assert_eq!(count(&windows, Window::FiveMinutes, 125), 3);
        let hour = windows.stats(Window::OneHour, Duration::from_secs(125));
        assert_eq!((hour.count, hour.max), (3, Duration::from_millis(4)));
        // A value at 130 s rolls the 65-s interval up: the figures do not change.
        windows.record(Duration::from_secs(130), Duration::from_millis(8), false);
        assert_eq!(count(&windows, Window::FiveMinutes, 130), 4);
        assert_eq!(count(&windows, Window::OneHour, 130), 4);
        // Past five minutes, only the values of the last five remain.
        assert_eq!(count(&windows, Window::FiveMinutes, 370), 1, "130 s");
        assert_eq!(count(&windows, Window::OneHour, 370), 4);
    }

    #[test]
    fn memory_stays_within_the_documented_bound() {
        let mut windows = LatencyWindows::default();
        // Every interval of every ring holds values up to well past the 60 s cap.
        for s in 0..3_600u64 {
            windows.record(Duration::from_secs(s), Duration::from_secs(600), false);
            windows.record(Duration::from_secs(s), Duration::from_micros(1), false);
        }
        let counters = windows.counters();
        assert_eq!(counters, 23 * 17_408, "68 KiB per interval at most");
        let at = Duration::from_secs(3_599);
        let stats = windows.stats(Window::OneMinute, at);
        assert_eq!(stats.max, Duration::from_secs(600), "the exact max is kept");
        let p99 = stats.p99.as_secs_f64();
        assert!((p99 - 60.0).abs() < 0.1, "clamped at 60 s: {p99}");

        let mut small = LatencyWindows::default();
        for s in 0..3_600u64 {
            small.record(Duration::from_secs(s), Duration::from_millis(99), false);
        }
        assert_eq!(
            small.counters(),
            23 * 8_192,
            "32 KiB per interval under 100 ms"
        );
    }
}
