//! Request and error rates per route over sliding windows (1 min, 5 min, 1 h), from every
//! request whatever the trace sampling.
//!
//! [`RouteRates`] is fed by a [`RequestObserver`] on the server layer, which is told about
//! every traced request, sampled or not: its counts and ratios are exact. The per-group
//! figures of [`ErrorGroup::errors_in`](super::ErrorGroup::errors_in) come from the span
//! processor, which only sees sampled spans: they follow the sampling.
//!
//! # Granularity
//!
//! Each key keeps three rings of buckets: 6 × 10 s, 5 × 60 s and 12 × 300 s. A window's
//! figure is the sum of the ring's buckets from the current (partial) bucket back, so:
//!
//! - the 1-minute window covers the last 50 to 60 s,
//! - the 5-minute window the last 4 to 5 min,
//! - the 1-hour window the last 55 to 60 min,
//!
//! depending on how far into its current bucket the clock is. Bucket boundaries are counted
//! from the moment the [`RouteRates`] was created.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::operation::{server_operation, ServerKeys, OTHER_OPERATION};
use crate::per_thread::PerThread;
use crate::request_record::Ended;
use crate::window::Window;
use serde_json::{json, Value};
use service_tracing_middleware::{RequestObserver, RequestOutcome, RouteId};

/// The default bound on the number of operations (`{method} {route}`) counted apart.
pub const DEFAULT_MAX_KEYS: usize = 512;

#[cfg(test)]
pub(crate) use crate::clock::Clock;
use crate::clock::Elapsed;

/// One operation's requests and errors over one window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RouteRate {
    /// `{method} {route}`, `{method}` when no route matched, or `_OTHER` past the key bound.
    pub operation: String,
    /// The window the figures cover.
    pub window: Window,
    /// Requests that ended in the window.
    pub requests: u64,
    /// Of them, those with an `error.type` (5xx, panic, body error, inner failure).
    pub errors: u64,
    /// `errors / requests`; 0 when there were no requests.
    pub ratio: f64,
    /// `errors` divided by the window's nominal length in seconds.
    pub errors_per_second: f64,
}

impl RouteRate {
    /// The figures of `operation` over `window`, with the ratio and the rate worked out.
    pub(crate) fn new(operation: String, window: Window, requests: u64, errors: u64) -> Self {
        Self {
            operation,
            window,
            requests,
            errors,
            ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            errors_per_second: errors as f64 / window.duration().as_secs_f64(),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "operation": self.operation,
            "window": self.window.as_str(),
            "requests": self.requests,
            "errors": self.errors,
            "ratio": self.ratio,
            "errors_per_second": self.errors_per_second,
        })
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Which bucket of the ring's width (seconds since start / width) it holds.
    index: u64,
    requests: u64,
    errors: u64,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        index: 0,
        requests: 0,
        errors: 0,
    };
}

/// `N` buckets of `WIDTH` seconds.
#[derive(Clone, Copy, Debug)]
struct Ring<const N: usize, const WIDTH: u64> {
    buckets: [Bucket; N],
}

impl<const N: usize, const WIDTH: u64> Ring<N, WIDTH> {
    const fn new() -> Self {
        Self {
            buckets: [Bucket::EMPTY; N],
        }
    }

    fn add(&mut self, secs: u64, requests: u64, errors: u64) {
        let index = secs / WIDTH;
        let slot = usize::try_from(index).unwrap_or(usize::MAX) % N;
        let bucket = &mut self.buckets[slot];
        if bucket.index > index {
            // A record handed over late, older than this ring keeps: only the total counts it.
            return;
        }
        if bucket.index != index {
            *bucket = Bucket {
                index,
                requests: 0,
                errors: 0,
            };
        }
        bucket.requests = bucket.requests.saturating_add(requests);
        bucket.errors = bucket.errors.saturating_add(errors);
    }

    /// Requests and errors in the current bucket and the `N - 1` before it.
    fn sum(&self, secs: u64) -> (u64, u64) {
        let current = secs / WIDTH;
        let oldest = current.saturating_sub(N as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.index >= oldest && b.index <= current)
            .fold((0, 0), |(r, e), b| {
                (r.saturating_add(b.requests), e.saturating_add(b.errors))
            })
    }
}

/// Requests and errors over the three windows (see the module's granularity notes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Windows {
    minute: Ring<6, 10>,
    five_minutes: Ring<5, 60>,
    hour: Ring<12, 300>,
    /// Requests and errors since start (what shared storage takes deltas of).
    total: (u64, u64),
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            minute: Ring::new(),
            five_minutes: Ring::new(),
            hour: Ring::new(),
            total: (0, 0),
        }
    }
}

impl Windows {
    /// Counts `requests` and `errors` at `at` (time since the clock's start).
    pub(crate) fn add(&mut self, at: Duration, requests: u64, errors: u64) {
        let secs = at.as_secs();
        self.minute.add(secs, requests, errors);
        self.five_minutes.add(secs, requests, errors);
        self.hour.add(secs, requests, errors);
        self.total = (
            self.total.0.saturating_add(requests),
            self.total.1.saturating_add(errors),
        );
    }

    /// Requests and errors over `window`, as of `at`.
    pub(crate) fn sum(&self, window: Window, at: Duration) -> (u64, u64) {
        let secs = at.as_secs();
        match window {
            Window::OneMinute => self.minute.sum(secs),
            Window::FiveMinutes => self.five_minutes.sum(secs),
            Window::OneHour => self.hour.sum(secs),
        }
    }
}

#[derive(Debug)]
struct Entry {
    operation: String,
    windows: Windows,
}

#[derive(Debug, Default)]
struct State {
    keys: ServerKeys,
    entries: Vec<Entry>,
    other: Option<Windows>,
    overflow: u64,
}

impl State {
    fn windows(
        &mut self,
        method: &str,
        route: Option<&str>,
        id: Option<RouteId>,
        max_keys: usize,
    ) -> &mut Windows {
        let by_id = id.and_then(|id| self.keys.get_by_id(method, id));
        let index = match by_id.or_else(|| self.keys.get(method, route)) {
            Some(index) => Some(index),
            None if self.entries.len() < max_keys => {
                let index = self.entries.len();
                self.entries.push(Entry {
                    operation: server_operation(method, route),
                    windows: Windows::default(),
                });
                self.keys.insert(method, route, index);
                Some(index)
            }
            None => None,
        };
        if let (None, Some(id), Some(index)) = (by_id, id, index) {
            self.keys.remember_id(method, id, index);
        }
        match index.and_then(|i| self.entries.get_mut(i)) {
            Some(entry) => &mut entry.windows,
            None => {
                self.overflow = self.overflow.saturating_add(1);
                self.other.get_or_insert_with(Windows::default)
            }
        }
    }
}

struct Inner {
    elapsed: Elapsed,
    max_keys: usize,
    /// Each recording thread's own table; merged on read.
    shards: PerThread<State>,
}

/// Requests, errors and error ratios per operation (`{method} {route}`) over sliding windows
/// of 1 min, 5 min and 1 h, from every request whatever the trace sampling.
///
/// Fed by [`observer`](Self::observer) on a
/// [`TracingLayer`](service_tracing_middleware::TracingLayer) (the
/// [`ErrorTracking`](super::ErrorTracking) set up by [`ServiceTracing`](crate::ServiceTracing)
/// has one, read through [`ErrorSummary::route_rates`](super::ErrorSummary::route_rates)).
/// An error is a request with an `error.type`: a 5xx answer, a panic, a failed body or an
/// inner service failure.
///
/// Cost: O(1) per request: a lookup by the layer's route id and three bucket updates in the
/// recording thread's own table (no lock shared between threads; see `per_thread`), nothing
/// allocated once an operation is known. Reading merges the threads' tables. At most
/// [`max_keys`](Self::with_max_keys) operations (default 512) are counted apart; past that,
/// requests are counted under `_OTHER` and [`overflow`](Self::overflow) counts them.
///
/// # Granularity
///
/// Each operation keeps three rings of buckets: 6 × 10 s, 5 × 60 s and 12 × 300 s. A
/// window's figure is the sum of its ring's buckets from the current (partial) one back, so
/// the 1-minute window covers the last 50 to 60 s, the 5-minute one the last 4 to 5 min and
/// the 1-hour one the last 55 to 60 min, depending on how far into its current bucket the
/// clock is. Bucket boundaries are counted from when the `RouteRates` was created.
///
/// ```
/// use service_tracing::errors::RouteRates;
/// use service_tracing::Window;
/// use service_tracing_middleware::TracingLayer;
///
/// let rates = RouteRates::new();
/// let layer = TracingLayer::new().with_observer(rates.observer());
/// rates.record("GET", Some("/orders/{id}"), false);
/// rates.record("GET", Some("/orders/{id}"), true);
/// let minute = rates
///     .snapshot()
///     .into_iter()
///     .find(|r| r.window == Window::OneMinute)
///     .expect("one operation");
/// assert_eq!((minute.requests, minute.errors, minute.ratio), (2, 1, 0.5));
/// ```
#[derive(Clone)]
#[must_use]
pub struct RouteRates {
    inner: Arc<Inner>,
}

impl fmt::Debug for RouteRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteRates")
            .field("max_keys", &self.inner.max_keys)
            .finish_non_exhaustive()
    }
}

impl Default for RouteRates {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteRates {
    /// Rates on the system clock, at most 512 operations apart.
    pub fn new() -> Self {
        Self::build(Elapsed::system(), DEFAULT_MAX_KEYS)
    }

    /// Rates on an injected clock (tests).
    #[cfg(test)]
    pub(crate) fn with_clock(clock: Clock) -> Self {
        Self::build(Elapsed::on(clock), DEFAULT_MAX_KEYS)
    }

    fn build(elapsed: Elapsed, max_keys: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                elapsed,
                max_keys: max_keys.max(1),
                shards: PerThread::default(),
            }),
        }
    }

    /// At most `max` operations (at least 1) are counted apart. Call it before use: it starts
    /// from nothing.
    ///
    /// ```
    /// let rates = service_tracing::errors::RouteRates::new().with_max_keys(64);
    /// ```
    pub fn with_max_keys(self, max: usize) -> Self {
        Self::build(self.inner.elapsed.restart(), max)
    }

    /// Time since the rates started, on their clock.
    pub(crate) fn elapsed(&self) -> Duration {
        self.inner.elapsed.now()
    }

    /// Counts one request, an error or not. [`observer`](Self::observer) calls it for every
    /// request the layer traces; call it yourself for requests served some other way.
    ///
    /// ```
    /// let rates = service_tracing::errors::RouteRates::new();
    /// rates.record("POST", Some("/orders"), true);
    /// rates.record("GET", None, false);
    /// assert_eq!(rates.snapshot().len(), 6, "two operations, three windows each");
    /// ```
    pub fn record(&self, method: &str, route: Option<&str>, error: bool) {
        self.record_at(self.elapsed(), method, route, None, error);
    }

    /// Counts the request `outcome` tells of.
    pub(crate) fn record_outcome(&self, outcome: &RequestOutcome<'_>) {
        self.record_at(
            self.inner.elapsed.of(outcome.ended_at),
            outcome.method,
            outcome.route,
            outcome.route_id,
            outcome.error_type.is_some(),
        );
    }

    /// Counts a batch of ended requests, in this thread's table taken once.
    pub(crate) fn record_ended(&self, batch: &[Ended]) {
        let max_keys = self.inner.max_keys;
        let elapsed = &self.inner.elapsed;
        self.inner.shards.with_mine(|state| {
            for ended in batch {
                state
                    .windows(ended.method, ended.route(), ended.route_id(), max_keys)
                    .add(elapsed.of(ended.ended_at), 1, u64::from(ended.failed()));
            }
        });
    }

    /// [`record`](Self::record) at `at`, with the layer's id for the route when it has one.
    fn record_at(
        &self,
        at: Duration,
        method: &str,
        route: Option<&str>,
        id: Option<RouteId>,
        error: bool,
    ) {
        let max_keys = self.inner.max_keys;
        self.inner.shards.with_mine(|state| {
            state
                .windows(method, route, id, max_keys)
                .add(at, 1, u64::from(error));
        });
    }

    /// An observer for [`TracingLayer::with_observer`](service_tracing_middleware::TracingLayer::with_observer)
    /// that counts every request it is told about (see [`record`](Self::record)).
    ///
    /// ```
    /// let rates = service_tracing::errors::RouteRates::new();
    /// let layer = service_tracing_middleware::TracingLayer::new().with_observer(rates.observer());
    /// ```
    pub fn observer(&self) -> impl RequestObserver {
        let rates = self.clone();
        move |outcome: &RequestOutcome<'_>| rates.record_outcome(outcome)
    }

    /// How many requests were counted under `_OTHER` because the operation bound was reached.
    pub fn overflow(&self) -> u64 {
        crate::request_record::flush();
        let mut overflow = 0u64;
        self.inner
            .shards
            .for_each(|state| overflow = overflow.saturating_add(state.overflow));
        overflow
    }

    /// Every operation's figures over each [`Window`], operations in the order first seen
    /// (`_OTHER` last), shortest window first.
    pub fn snapshot(&self) -> Vec<RouteRate> {
        let at = self.elapsed();
        let merged = self.merged(
            |windows| Window::ALL.map(|window| windows.sum(window, at)),
            |sum, more| {
                for (s, m) in sum.iter_mut().zip(more) {
                    *s = (s.0.saturating_add(m.0), s.1.saturating_add(m.1));
                }
            },
        );
        let mut rates = Vec::with_capacity(merged.len() * Window::ALL.len());
        for (operation, sums) in merged {
            for (window, (requests, errors)) in Window::ALL.into_iter().zip(sums) {
                rates.push(RouteRate::new(operation.clone(), window, requests, errors));
            }
        }
        rates
    }

    /// Every operation's requests and errors since start (`_OTHER` last).
    #[cfg(feature = "redis")]
    pub(crate) fn totals(&self) -> Vec<(String, u64, u64)> {
        self.merged(
            |windows| windows.total,
            |sum, more| *sum = (sum.0.saturating_add(more.0), sum.1.saturating_add(more.1)),
        )
        .into_iter()
        .map(|(operation, (requests, errors))| (operation, requests, errors))
        .collect()
    }

    /// `figures` of every operation, summed over the threads' tables with `add`, in the order
    /// first met (`_OTHER` last); past [`max_keys`](Self::with_max_keys) operations, the rest
    /// are summed under `_OTHER`.
    fn merged<V: Default>(
        &self,
        figures: impl Fn(&Windows) -> V,
        add: impl Fn(&mut V, V),
    ) -> Vec<(String, V)> {
        crate::request_record::flush();
        let mut merged: Vec<(String, V)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut other: Option<V> = None;
        let max_keys = self.inner.max_keys;
        self.inner.shards.for_each(|state| {
            for entry in &state.entries {
                let value = figures(&entry.windows);
                match index.get(entry.operation.as_str()) {
                    Some(&i) => add(&mut merged[i].1, value),
                    None if merged.len() < max_keys => {
                        index.insert(entry.operation.clone(), merged.len());
                        merged.push((entry.operation.clone(), value));
                    }
                    None => add(other.get_or_insert_with(V::default), value),
                }
            }
            if let Some(windows) = &state.other {
                add(other.get_or_insert_with(V::default), figures(windows));
            }
        });
        merged.extend(other.map(|value| (OTHER_OPERATION.to_owned(), value)));
        merged
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Instant;

    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider};
    use service_tracing_middleware::TracingLayer;

    use super::*;

    /// A clock the test moves by hand (milliseconds since `base`).
    pub(crate) struct TestClock {
        millis: Arc<AtomicU64>,
    }

    impl TestClock {
        pub(crate) fn new() -> (Self, Clock) {
            let base = Instant::now();
            let millis = Arc::new(AtomicU64::new(0));
            let read = millis.clone();
            let clock: Clock =
                Arc::new(move || base + Duration::from_millis(read.load(Ordering::SeqCst)));
            (Self { millis }, clock)
        }

        pub(crate) fn set(&self, at: Duration) {
            let millis = u64::try_from(at.as_millis()).unwrap_or(u64::MAX);
            self.millis.store(millis, Ordering::SeqCst);
        }

        pub(crate) fn advance(&self, by: Duration) {
            let millis = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
            self.millis.fetch_add(millis, Ordering::SeqCst);
        }
    }

    fn rate(rates: &RouteRates, operation: &str, window: Window) -> (u64, u64, f64) {
        rates
            .snapshot()
            .into_iter()
            .find(|r| r.operation == operation && r.window == window)
            .map(|r| (r.requests, r.errors, r.ratio))
            .unwrap_or_else(|| panic!("no {operation} {window:?}"))
    }

    /// 90 requests over 30 s, every tenth an error.
    fn ninety_with_nine_errors(clock: &TestClock, rates: &RouteRates) {
        for i in 0..90u64 {
            clock.set(Duration::from_millis(i * 1_000 / 3));
            rates.record("GET", Some("/orders/{id}"), i % 10 == 0);
        }
        clock.set(Duration::from_secs(30));
    }

    #[test]
    fn a_request_handed_over_late_never_wipes_a_newer_bucket() {
        // 70 s and 10 s fall in the same slot of the 1-minute ring (6 buckets of 10 s).
        let mut windows = Windows::default();
        windows.add(Duration::from_secs(70), 1, 1);
        windows.add(Duration::from_secs(10), 1, 0);
        let at = Duration::from_secs(70);
        assert_eq!(windows.sum(Window::OneMinute, at), (1, 1));
        assert_eq!(windows.sum(Window::FiveMinutes, at), (2, 1));
        assert_eq!(windows.total, (2, 1));
    }

    #[test]
    fn requests_counted_on_many_threads_add_up_under_one_bound() {
        let (_clock, now) = TestClock::new();
        let rates = RouteRates::with_clock(now).with_max_keys(3);
        std::thread::scope(|scope| {
            for t in 0..4usize {
                let rates = &rates;
                scope.spawn(move || {
                    for i in 0..100usize {
                        let route = format!("/r{}", (t + i) % 5);
                        rates.record("GET", Some(&route), i % 10 == 0);
                    }
                });
            }
        });
        let minute: Vec<RouteRate> = rates
            .snapshot()
            .into_iter()
            .filter(|r| r.window == Window::OneMinute)
            .collect();
        assert_eq!(minute.iter().map(|r| r.requests).sum::<u64>(), 400);
        assert_eq!(minute.iter().map(|r| r.errors).sum::<u64>(), 40);
        assert_eq!(
            minute.len(),
            4,
            "three operations, then `_OTHER`: {minute:?}"
        );
        assert_eq!(minute[3].operation, OTHER_OPERATION);
        let names: std::collections::HashSet<&str> =
            minute.iter().map(|r| r.operation.as_str()).collect();
        assert_eq!(names.len(), 4, "each operation once: {minute:?}");
    }

    #[test]
    fn windows_slide_with_the_injected_clock() {
        let (clock, now) = TestClock::new();
        let rates = RouteRates::with_clock(now);
        ninety_with_nine_errors(&clock, &rates);
        let op = "GET /orders/{id}";

        // (a) all within the minute.
        for window in Window::ALL {
            assert_eq!(rate(&rates, op, window), (90, 9, 0.1), "{window:?}");
        }
        let minute = rates
            .snapshot()
            .into_iter()
            .find(|r| r.window == Window::OneMinute);
        assert_eq!(minute.map(|r| r.errors_per_second), Some(9.0 / 60.0));

        // (b) two minutes on: the minute is empty, five minutes still hold them.
        clock.advance(Duration::from_secs(120));
        assert_eq!(rate(&rates, op, Window::OneMinute), (0, 0, 0.0));
        assert_eq!(rate(&rates, op, Window::FiveMinutes), (90, 9, 0.1));
        assert_eq!(rate(&rates, op, Window::OneHour), (90, 9, 0.1));

        // Past five minutes, only the hour holds them.
        clock.set(Duration::from_secs(30 + 360));
        assert_eq!(rate(&rates, op, Window::FiveMinutes), (0, 0, 0.0));
        assert_eq!(rate(&rates, op, Window::OneHour), (90, 9, 0.1));

        // (c) past an hour: every window is empty.
        clock.set(Duration::from_secs(30 + 3_600));
        for window in Window::ALL {
            assert_eq!(rate(&rates, op, window), (0, 0, 0.0), "{window:?}");
        }

        // Old buckets are reused, not added to.
        rates.record("GET", Some("/orders/{id}"), true);
        assert_eq!(rate(&rates, op, Window::OneHour), (1, 1, 1.0));
    }

    #[test]
    fn routes_and_methods_are_kept_apart() {
        let (clock, now) = TestClock::new();
        let rates = RouteRates::with_clock(now);
        for i in 0..10u64 {
            clock.set(Duration::from_secs(i));
            rates.record("GET", Some("/a"), i < 5);
            rates.record("GET", Some("/b"), false);
            rates.record("POST", Some("/a"), true);
        }
        rates.record("GET", None, true);
        assert_eq!(rate(&rates, "GET /a", Window::OneMinute), (10, 5, 0.5));
        assert_eq!(rate(&rates, "GET /b", Window::OneMinute), (10, 0, 0.0));
        assert_eq!(rate(&rates, "POST /a", Window::OneMinute), (10, 10, 1.0));
        assert_eq!(rate(&rates, "GET", Window::OneMinute), (1, 1, 1.0));
        assert_eq!(rates.snapshot().len(), 4 * 3);
        assert_eq!(rates.overflow(), 0);
    }

    #[test]
    fn past_the_key_bound_requests_go_to_other_and_are_counted() {
        let (_clock, now) = TestClock::new();
        let rates = RouteRates::with_clock(now).with_max_keys(512);
        for i in 0..600 {
            rates.record("GET", Some(&format!("/r{i}")), i % 2 == 0);
        }
        // Known keys keep counting apart.
        rates.record("GET", Some("/r0"), false);
        let snapshot = rates.snapshot();
        assert_eq!(snapshot.len(), 513 * 3);
        assert_eq!(rates.overflow(), 88);
        assert_eq!(
            rate(&rates, OTHER_OPERATION, Window::OneMinute),
            (88, 44, 0.5)
        );
        assert_eq!(rate(&rates, "GET /r0", Window::OneMinute), (2, 1, 0.5));
        assert_eq!(
            snapshot.last().map(|r| r.operation.as_str()),
            Some(OTHER_OPERATION)
        );
    }

    #[test]
    fn group_windows_follow_what_the_processor_records_and_the_summary_has_the_rates() {
        use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};

        let (clock, now) = TestClock::new();
        let errors = crate::errors::ErrorTracking::build(
            crate::errors::DEFAULT_MAX_GROUPS,
            None,
            RouteRates::with_clock(now),
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build();
        for _ in 0..3 {
            let mut span = provider.tracer("t").start("load");
            span.record_error(&std::io::Error::other("disk full"));
            span.set_status(Status::error("disk full"));
            span.end();
        }
        errors.rates().record("GET", Some("/load"), true);
        errors.rates().record("GET", Some("/load"), false);

        let summary = errors.summary();
        let group = &summary.top_groups()[0];
        assert_eq!(group.count(), 3);
        assert_eq!(group.errors_in(Window::OneMinute), 3);
        let json = summary.to_json();
        assert_eq!(json["top_groups"][0]["recent_errors"]["1m"], 3);
        assert_eq!(json["rates"][0]["operation"], "GET /load");
        assert_eq!(json["rates"][0]["window"], "1m");
        assert_eq!(json["rates"][0]["requests"], 2);
        assert_eq!(json["rates"][0]["ratio"], 0.5);

        clock.advance(Duration::from_secs(120));
        let groups = errors.groups();
        assert_eq!(groups[0].errors_in(Window::OneMinute), 0);
        assert_eq!(groups[0].errors_in(Window::FiveMinutes), 3);
        assert_eq!(groups[0].count(), 3, "the total stays");
        assert_eq!(
            rate(errors.rates(), "GET /load", Window::OneMinute),
            (0, 0, 0.0)
        );
        assert!(provider.shutdown().is_ok());
    }

    #[tokio::test]
    async fn the_observer_counts_every_request_although_nothing_is_sampled() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .with_simple_exporter(exporter.clone())
            .build();
        let rates = RouteRates::new();
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .layer(
                TracingLayer::new()
                    .with_tracer_provider(&provider)
                    .with_observer(rates.observer()),
            );
        for i in 0..20 {
            let path = if i % 4 == 0 { "/down" } else { "/ok" };
            crate::test_support::get(&app, path).await;
        }
        let totals = rates
            .snapshot()
            .into_iter()
            .filter(|r| r.window == Window::OneMinute)
            .fold((0, 0), |(r, e), rate| (r + rate.requests, e + rate.errors));
        assert_eq!(totals, (20, 5));
        assert_eq!(rate(&rates, "GET /down", Window::OneMinute), (5, 5, 1.0));
        assert_eq!(rate(&rates, "GET /ok", Window::OneMinute), (15, 0, 0.0));
        assert_eq!(
            exporter.get_finished_spans().map(|s| s.len()).ok(),
            Some(0),
            "nothing sampled"
        );
        assert!(provider.shutdown().is_ok());
    }
}
