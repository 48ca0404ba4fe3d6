//! Performance profiling inside the service: latency percentiles per operation over sliding
//! windows, slow-operation detection, and where each route's time goes.
//!
//! [`Profiling`] is a [`SpanProcessor`] and hands out a
//! [`RequestObserver`] for the server layer.
//! [`ServiceTracing`](crate::ServiceTracing) adds both, shared by every service's provider,
//! unless told [`profiling(false)`](crate::ServiceTracing::profiling); read it back with
//! [`TracingGuard::profiling`](crate::TracingGuard::profiling).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use service_tracing::errors::Window;
//!
//! let (app, guard) = service_tracing::ServiceTracing::builder("orders")
//!     .slow_threshold("GET /orders/{id}", Duration::from_millis(200))
//!     .init(axum::Router::<()>::new())?;
//! // ... serve requests ...
//! if let Some(profiling) = guard.profiling() {
//!     for op in profiling.operations() {
//!         if let Some(minute) = op.window(Window::OneMinute) {
//!             println!("{}: p99 {:?} over {} calls", op.operation, minute.p99, minute.count);
//!         }
//!     }
//!     for route in profiling.routes() {
//!         if let Some(line) = route.describe() {
//!             println!("{line}"); // "82% of `GET /orders/{id}` is in `SELECT orders`"
//!         }
//!     }
//!     println!("{}", profiling.summary().to_json());
//! }
//! # Ok(()) }
//! ```
//!
//! # Operations
//!
//! - **Server**: `{METHOD} {route template}` (`{METHOD}` alone when no route matched, as in the
//!   error rates), from the layer's request observer: every request counts, whatever the
//!   sampler decided.
//! - **Client**: `{METHOD} {server.address}` of client spans.
//! - **Internal**: the span name of every other span (`tracing` spans through the bridge
//!   included).
//!
//! Client and internal figures come from the span processor, which only sees recorded spans:
//! **they follow the sampling** (with a ratio of 0.1 they describe about a tenth of the calls;
//! the percentiles stay representative, the counts do not). Raw paths, ids and query strings
//! never become keys; at most [`with_max_operations`](Profiling::with_max_operations)
//! operations (default [`DEFAULT_MAX_OPERATIONS`]) are kept apart, the rest are counted under
//! [`OTHER_OPERATION`] and in [`Profiling::overflow`].
//!
//! # Latency
//!
//! Each operation has an HDR histogram (3 significant digits) per interval of three rings:
//! 6 × 10 s, 5 × 60 s and 12 × 300 s, merged on read into the 1-minute, 5-minute and 1-hour
//! [`Window`]s (with the granularity the error rates document). Count, errors, mean and max
//! are exact; p50, p90, p95 and p99 are within 0.1 %.
//!
//! **Memory.** An interval's histogram is allocated on its first value and reused when the
//! ring comes round; it grows with the largest value seen, capped at 60 s (longer values
//! count as 60 s in the percentiles; the exact max is kept). One histogram holds at most
//! 17,408 `u32` counters (68 KiB), 8,192 (32 KiB) while values stay under 100 ms; one
//! operation at most 23 of them: 1.5 MiB (736 KiB under 100 ms). With the default bound of
//! 100 operations plus `_OTHER`, the histograms never exceed 155 MiB, and 73 MiB when every
//! operation is busy in every interval of the hour with latencies under 100 ms; an operation
//! holds only the intervals it was busy in. Lower the bound with
//! [`with_max_operations`](Profiling::with_max_operations) where that is too much.
//!
//! **Cost.** Recording one request takes a mutex, a map lookup by route (no allocation once
//! the operation is known) and one histogram increment: finished 10-s intervals are added to
//! the coarser rings once per 10 s. `benches/profiling.rs` measures it.
//!
//! # Slow operations
//!
//! An operation slower than its threshold (see [`slow_threshold_attribute`],
//! [`set_slow_threshold`], [`Profiling::with_slow_threshold`],
//! [`Profiling::with_auto_slow_threshold`]) gets a `performance.slow` event on its span
//! (attributes `performance.threshold_ms` and `performance.duration_ms`), added before the
//! span is handed to the exporter, and a `WARN` log line (target
//! `service_tracing::profiling`) at most once per operation per
//! [log interval](Profiling::with_slow_log_interval) (default 60 s); the lines held back are
//! counted ([`OperationProfile::suppressed_logs`]) and the next line says how many.
//!
//! For server operations the count and the log come from the request observer (every
//! request); the event needs a recorded span. A threshold set on a server span itself (not
//! in the configuration) is only seen by the processor, which then counts and logs too.
//!
//! ```
//! use std::time::Duration;
//! use service_tracing::profiling::{set_slow_threshold, slow_threshold_attribute};
//!
//! // A `tracing` span: as a field, or afterwards with the helper.
//! let span = tracing::info_span!("SELECT orders", performance.threshold_ms = 25);
//! let other = tracing::info_span!("render");
//! set_slow_threshold(&other, Duration::from_millis(10));
//! // An OpenTelemetry span: the attribute.
//! let attribute = slow_threshold_attribute(Duration::from_millis(10));
//! ```
//!
//! # Bottlenecks
//!
//! For recorded traces, the processor hands each ended span (a small record) to a background
//! thread over a bounded queue; the thread buffers them per trace and, when the local root
//! server span ends, computes each span's time on the critical path. Per route, the shares
//! are summed: [`Profiling::routes`] gives the breakdown and the bottleneck with a severity,
//! [`Profiling::recent_bottlenecks`] the last 100 traces where one operation took at least
//! half the time. The buffers are bounded (1,024 traces in flight, 512 spans per trace, a
//! 16,384-record queue), and what they drop is counted in [`AnalysisStats`]. The request path
//! only pushes the record; [`TracingGuard::force_flush`](crate::TracingGuard::force_flush)
//! also brings the analysis up to date.
//!
//! # Resources
//!
//! A [`ProcessSampler`](crate::process::ProcessSampler) ([`Profiling::resources`]) samples the
//! process's CPU, memory, open file descriptors and threads, and the tokio runtime's workers,
//! queue and busy time, on a background thread every 10 s by default; the summary carries
//! them under `resources`. See [`crate::process`] and
//! [`ServiceTracing::process_sample_interval`](crate::ServiceTracing::process_sample_interval).
//!
//! ```
//! use service_tracing::process::ProcessSampler;
//! use service_tracing::profiling::Profiling;
//!
//! let profiling = Profiling::new().with_resources(ProcessSampler::new());
//! let sampler = profiling.resources().expect("added");
//! sampler.sample_now();
//! let sample = sampler.sample_now(); // rates are over the time since the previous one
//! if cfg!(target_os = "linux") {
//!     assert!(sample.memory_rss_bytes.unwrap_or(0) > 0);
//!     assert!(sample.cpu_utilization.is_some());
//! }
//! assert_eq!(sample.tokio_workers, None); // made outside any tokio runtime
//! let json = profiling.summary().to_json();
//! assert_eq!(json["resources"]["recent"].as_array().map(Vec::len), Some(2));
//! ```

mod bottleneck;
mod histogram;
mod operations;
mod profile;
mod served;
mod slow;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::chain::InFrontOf;
use crossbeam_queue::ArrayQueue;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use service_tracing_middleware::{RequestObserver, RequestOutcome};

use crate::attributes::bounded;
use crate::per_thread::PerThread;
use crate::server_span::ServerRecord;
use service_tracing_middleware::tracer::ServerRequest;
use service_tracing_middleware::RouteId;

#[doc(hidden)] // At home at the crate root.
pub use crate::window::Window;
pub use bottleneck::{AnalysisStats, Bottleneck, BottleneckSeverity, RouteProfile, TimeShare};
pub use histogram::LatencyStats;
// The process sampler's former names and paths (it lives in `crate::process` now), kept so
// existing code builds.
#[doc(hidden)]
pub use crate::process::{
    ProcessSample as ResourceSample, ProcessSampler as ResourceSampler,
    ProcessSummary as ResourceSummary, DEFAULT_SAMPLE_INTERVAL as DEFAULT_RESOURCE_INTERVAL,
    MIN_SAMPLE_INTERVAL as MIN_RESOURCE_INTERVAL, OPEN_FDS_CAP, RECENT_SAMPLES,
};
pub use slow::{
    set_slow_threshold, slow_threshold_attribute, DURATION_ATTRIBUTE, SLOW_EVENT,
    THRESHOLD_ATTRIBUTE,
};

use crate::trace_share::{keeps, Budget};
use bottleneck::{Analyser, SpanRecord, ANALYSED_PER_SECOND, QUEUE_CAPACITY};
use operations::{Config, Operations};
pub use profile::{OperationKind, OperationProfile, ProfilingSummary};
use served::Served;

/// The default bound on the number of operations kept apart.
pub const DEFAULT_MAX_OPERATIONS: usize = 100;

/// The operation everything past the bound is counted under (the same as error rates').
pub use crate::operation::OTHER_OPERATION;

/// The default interval between two slow-operation log lines of one operation.
pub const DEFAULT_SLOW_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[cfg(test)]
use crate::clock::Clock;
use crate::clock::Elapsed;

struct Shared {
    config: Config,
    elapsed: Elapsed,
    operations: Mutex<Operations>,
    queue: ArrayQueue<SpanRecord>,
    dropped: AtomicU64,
    /// The share of traces analysed: all up to [`ANALYSED_PER_SECOND`] new traces a second,
    /// then a share chosen by trace id.
    budget: Budget,
    /// New traces left out of the analysis by the budget.
    skipped: AtomicU64,
    analyser: Mutex<Analyser>,
    worker: OnceLock<Option<std::thread::Thread>>,
    /// Requests the observer recorded, per thread, not yet in `operations` ([`served`]).
    served: PerThread<Vec<Served>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// Records a thread's batch of served requests into the table and empties it.
    fn record_served(&self, batch: &mut Vec<Served>) {
        if batch.is_empty() {
            return;
        }
        let mut operations = lock(&self.operations);
        for served in batch.drain(..) {
            served.record(&mut operations, &self.config);
        }
    }

    /// Analyses every record queued so far.
    fn drain(&self) {
        let mut analyser = lock(&self.analyser);
        while let Some(record) = self.queue.pop() {
            analyser.add(record);
        }
    }
}

/// Latency per operation, slow operations and bottlenecks; see the [module](self) notes.
///
/// Clones share the same figures. Configure it before use: each `with_*` method starts from
/// nothing.
///
/// ```
/// use std::time::Duration;
/// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
/// use service_tracing::profiling::{Profiling, Window};
///
/// let profiling = Profiling::new().with_slow_threshold("load", Duration::from_millis(1));
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_span_processor(profiling.clone())
///     .build();
/// provider.tracer("app").in_span("load", |_| std::thread::sleep(Duration::from_millis(2)));
///
/// let load = profiling.operation("load").expect("recorded");
/// assert_eq!(load.window(Window::OneMinute).map(|w| w.count), Some(1));
/// assert_eq!(load.slow, 1);
/// ```
#[derive(Clone)]
#[must_use]
pub struct Profiling {
    shared: Arc<Shared>,
}

impl fmt::Debug for Profiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profiling")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Default for Profiling {
    fn default() -> Self {
        Self::new()
    }
}

impl Profiling {
    /// Profiling on the system clock with the defaults: 100 operations, no slow thresholds,
    /// one slow log line per operation per minute.
    pub fn new() -> Self {
        Self::build(Config::default(), Elapsed::system())
    }

    fn build(config: Config, elapsed: Elapsed) -> Self {
        let max_routes = config.max_operations;
        Self {
            shared: Arc::new(Shared {
                config,
                elapsed,
                operations: Mutex::new(Operations::default()),
                queue: ArrayQueue::new(QUEUE_CAPACITY),
                dropped: AtomicU64::new(0),
                budget: Budget::new(ANALYSED_PER_SECOND, 0),
                skipped: AtomicU64::new(0),
                analyser: Mutex::new(Analyser::new(max_routes)),
                worker: OnceLock::new(),
                served: PerThread::default(),
            }),
        }
    }

    fn reconfigure(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self::build(config, self.shared.elapsed.restart())
    }

    /// At most `max` operations (at least 1) are kept apart, and as many routes analysed;
    /// the rest go to `_OTHER`.
    ///
    /// ```
    /// let profiling = service_tracing::profiling::Profiling::new().with_max_operations(20);
    /// ```
    pub fn with_max_operations(self, max: usize) -> Self {
        self.reconfigure(|c| c.max_operations = max.max(1))
    }

    /// A slow threshold for one operation key (`GET /orders/{id}`, `GET payments.internal`,
    /// `SELECT orders`). A threshold on the span itself takes precedence.
    ///
    /// ```
    /// use std::time::Duration;
    /// let profiling = service_tracing::profiling::Profiling::new()
    ///     .with_slow_threshold("GET /orders/{id}", Duration::from_millis(250));
    /// ```
    pub fn with_slow_threshold(self, operation: impl Into<String>, threshold: Duration) -> Self {
        let operation = operation.into();
        self.reconfigure(|c| {
            c.thresholds.insert(operation, threshold);
        })
    }

    /// The shortest time between two slow-operation log lines of one operation (default
    /// 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let profiling = service_tracing::profiling::Profiling::new()
    ///     .with_slow_log_interval(Duration::from_secs(300));
    /// ```
    pub fn with_slow_log_interval(self, interval: Duration) -> Self {
        self.reconfigure(|c| c.log_interval = interval)
    }

    /// When on (default off), an operation with no configured threshold is slow above its own
    /// baseline: the p99 of its previous minute, taken once a minute when that minute had at
    /// least 100 values.
    ///
    /// ```
    /// let profiling = service_tracing::profiling::Profiling::new().with_auto_slow_threshold(true);
    /// ```
    pub fn with_auto_slow_threshold(self, enabled: bool) -> Self {
        self.reconfigure(|c| c.auto = enabled)
    }

    /// Carries a resource sampler, whose figures [`resources`](Self::resources) and the
    /// [`summary`](Self::summary) give. The sampler is not started here.
    ///
    /// ```
    /// use service_tracing::{process::ProcessSampler, Profiling};
    /// let profiling = Profiling::new().with_resources(ProcessSampler::new());
    /// assert!(profiling.resources().is_some());
    /// ```
    pub fn with_resources(self, sampler: ResourceSampler) -> Self {
        self.reconfigure(|c| c.resources = Some(sampler))
    }

    /// The resource sampler (see [`ResourceSampler`]), when there is one:
    /// [`ServiceTracing`](crate::ServiceTracing) adds and starts one unless told
    /// [`process_sampling(false)`](crate::ServiceTracing::process_sampling).
    ///
    /// ```no_run
    /// # fn f(profiling: &service_tracing::profiling::Profiling) {
    /// if let Some(latest) = profiling.resources().and_then(|r| r.latest()) {
    ///     println!("{:?} bytes resident", latest.memory_rss_bytes);
    /// }
    /// # }
    /// ```
    pub fn resources(&self) -> Option<ResourceSampler> {
        self.shared.config.resources.clone()
    }

    #[cfg(test)]
    fn with_clock(self, clock: Clock) -> Self {
        Self::build(self.shared.config.clone(), Elapsed::on(clock))
    }

    fn elapsed(&self) -> Duration {
        self.shared.elapsed.now()
    }

    fn operations_lock(&self) -> MutexGuard<'_, Operations> {
        lock(&self.shared.operations)
    }

    /// Records one served request. The [`observer`](Self::observer) calls it for every request
    /// the layer traces; call it for requests served some other way.
    ///
    /// ```
    /// use std::time::Duration;
    /// let profiling = service_tracing::profiling::Profiling::new();
    /// profiling.record_request("GET", Some("/orders/{id}"), Duration::from_millis(12), false);
    /// assert!(profiling.operation("GET /orders/{id}").is_some());
    /// ```
    pub fn record_request(
        &self,
        method: &str,
        route: Option<&str>,
        duration: Duration,
        error: bool,
    ) {
        self.record_request_at(self.elapsed(), method, route, None, duration, error);
    }

    /// [`record_request`](Self::record_request) at `at`, with the layer's id for the route.
    fn record_request_at(
        &self,
        at: Duration,
        method: &str,
        route: Option<&str>,
        id: Option<RouteId>,
        duration: Duration,
        error: bool,
    ) {
        let config = &self.shared.config;
        let (_, log) = self
            .operations_lock()
            .server(method, route, id, config)
            .record(at, duration, error, None, config);
        if let Some(log) = log {
            log.emit();
        }
    }

    /// An observer for the server layer that records every request, sampled or not;
    /// [`ServiceTracing`](crate::ServiceTracing) adds it.
    ///
    /// ```
    /// let profiling = service_tracing::profiling::Profiling::new();
    /// let layer =
    ///     service_tracing_middleware::TracingLayer::new().with_observer(profiling.observer());
    /// ```
    pub fn observer(&self) -> impl RequestObserver {
        let profiling = self.clone();
        move |outcome: &RequestOutcome<'_>| {
            let at = profiling.shared.elapsed.of(outcome.ended_at);
            if profiling.server_requests_may_be_slow() {
                // A slow request is logged when it ends.
                profiling.record_request_at(
                    at,
                    outcome.method,
                    outcome.route,
                    outcome.route_id,
                    outcome.duration,
                    outcome.error_type.is_some(),
                );
                return;
            }
            let served = Served::of(outcome, at);
            let shared = &profiling.shared;
            shared.served.with_mine(|batch| {
                batch.push(served);
                if batch.len() >= served::BATCH {
                    shared.record_served(batch);
                }
            });
        }
    }

    /// Records, when a slow threshold could apply to a server request, `ended` at once (a
    /// slow request is logged when it ends); [`record_ended`](Self::record_ended) then skips it.
    pub(crate) fn record_if_may_be_slow(&self, ended: &crate::request_record::Ended) {
        if self.server_requests_may_be_slow() {
            self.record_request_at(
                self.shared.elapsed.of(ended.ended_at),
                ended.method,
                ended.route(),
                ended.route_id(),
                ended.duration,
                ended.failed(),
            );
        }
    }

    /// Records a batch of ended requests into the table, its lock taken once (unless
    /// [`record_if_may_be_slow`](Self::record_if_may_be_slow) recorded each already).
    pub(crate) fn record_ended(&self, batch: &[crate::request_record::Ended]) {
        if self.server_requests_may_be_slow() {
            return;
        }
        let shared = &self.shared;
        let mut operations = self.operations_lock();
        for ended in batch {
            Served::of_ended(ended, shared.elapsed.of(ended.ended_at))
                .record(&mut operations, &shared.config);
        }
    }

    /// Records an ended span: latency (client and internal spans), the slow check and its
    /// event, and the record for the bottleneck analysis.
    fn process(&self, span: &mut SpanData) {
        self.process_with(span, None);
    }

    /// Profiles an ended span; a server span of the layer's own type comes with its
    /// request's attributes apart (`request`), which name its operation.
    fn process_with(&self, span: &mut SpanData, request: Option<&ServerRequest>) {
        let from_span = slow::span_threshold(&span.attributes);
        let config = &self.shared.config;
        let operation = match request {
            Some(r) => crate::operation::server_operation_of(&span.name, r.method(), r.route()),
            None => crate::operation::operation_name_of(span),
        };
        // Nothing can make a server span slow: skip the lookups and the lock.
        let nothing_to_check = span.span_kind == SpanKind::Server
            && from_span.is_none()
            && !config.auto
            && config.thresholds.is_empty();
        // The span's duration is read only when something may be checked against it.
        let (threshold, log, duration) = if nothing_to_check {
            (None, None, Duration::ZERO)
        } else {
            let duration = span
                .end_time
                .duration_since(span.start_time)
                .unwrap_or_default();
            let at = self.elapsed();
            let mut operations = self.operations_lock();
            let (threshold, log) = match span.span_kind {
                SpanKind::Server => {
                    let (method, route) = server_key(span, request, &operation);
                    let entry = operations.server(&method, route.as_deref(), None, config);
                    // The observer counted and logged this request; only a threshold it
                    // cannot see (on the span) is counted here.
                    match entry.threshold(at, from_span, config) {
                        Some(t) if duration > t && from_span.is_some() => {
                            entry.check(at, duration, from_span, config)
                        }
                        Some(t) if duration > t => (Some(t), None),
                        _ => (None, None),
                    }
                }
                SpanKind::Client => operations
                    .named(OperationKind::Client, &operation, config)
                    .record(at, duration, is_error(span), from_span, config),
                _ => operations
                    .named(OperationKind::Internal, &operation, config)
                    .record(at, duration, is_error(span), from_span, config),
            };
            (threshold, log, duration)
        };
        if let Some(threshold) = threshold {
            span.events
                .events
                .push(slow::slow_event(span.end_time, duration, threshold));
        }
        if let Some(log) = log {
            log.emit();
        }
        let local_root = SpanRecord::is_local_root(
            &span.span_kind,
            span.parent_span_id,
            span.parent_span_is_remote,
        );
        if !self.within_budget(span, local_root) {
            return;
        }
        self.enqueue(SpanRecord {
            trace_id: span.span_context.trace_id(),
            span_id: span.span_context.span_id(),
            parent_span_id: span.parent_span_id,
            local_root,
            operation,
            start: span.start_time,
            end: span.end_time,
        });
    }

    /// Whether `span` goes to the analysis: past the budget, only a share of traces, chosen by
    /// trace id so that a trace's spans are kept or left together (but at a change of share).
    fn within_budget(&self, span: &SpanData, local_root: bool) -> bool {
        let shared = &self.shared;
        if local_root {
            let second = span
                .end_time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            shared.budget.count(second);
        }
        let kept = keeps(shared.budget.ratio(), span.span_context.trace_id());
        if !kept && local_root {
            shared.skipped.fetch_add(1, Ordering::Relaxed);
        }
        kept
    }

    fn enqueue(&self, record: SpanRecord) {
        let root = record.local_root;
        if self.shared.queue.push(record).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        // The analysis thread looks every 500 ms and readers analyse what waits, so a wake-up
        // (a futex call) is paid only when the queue is half full, not once per request.
        if self.shared.queue.len() >= QUEUE_CAPACITY / 2 {
            self.wake();
        } else if root {
            self.start_worker();
        }
    }

    /// Starts the analysis thread on first use.
    fn start_worker(&self) {
        let _ = self.worker();
    }

    fn worker(&self) -> &Option<std::thread::Thread> {
        self.shared.worker.get_or_init(|| {
            // Drains whenever woken, else every 500 ms.
            crate::runtime::spawn_while_alive(
                "service-tracing-profiling",
                Duration::from_millis(500),
                Arc::downgrade(&self.shared),
                |shared| {
                    shared.drain();
                    true
                },
            )
            .map(|handle| handle.thread().clone())
        })
    }

    /// Wakes the analysis thread, starting it on first use.
    fn wake(&self) {
        if let Some(thread) = self.worker() {
            thread.unpark();
        }
    }

    /// Brings the bottleneck analysis up to date with every span ended so far.
    fn drain(&self) {
        self.shared.drain();
    }

    /// Every operation's figures, in the order first seen (`_OTHER` last).
    pub fn operations(&self) -> Vec<OperationProfile> {
        self.profiles(|_| true)
    }

    /// One operation's figures, by key.
    ///
    /// ```
    /// let profiling = service_tracing::profiling::Profiling::new();
    /// assert!(profiling.operation("GET /nothing").is_none());
    /// ```
    pub fn operation(&self, operation: &str) -> Option<OperationProfile> {
        self.profiles(|name| name == operation).into_iter().next()
    }

    /// Whether a configured threshold or the automatic baseline could find a server request
    /// slow: the observer then records each request at once instead of batching it.
    fn server_requests_may_be_slow(&self) -> bool {
        let config = &self.shared.config;
        config.auto || !config.thresholds.is_empty()
    }

    /// Moves every thread's batch of served requests into the table ([`served`]).
    fn move_served(&self) {
        crate::request_record::flush();
        self.shared
            .served
            .for_each(|batch| self.shared.record_served(batch));
    }

    fn profiles(&self, keep: impl Fn(&str) -> bool) -> Vec<OperationProfile> {
        self.move_served();
        let at = self.elapsed();
        let config = &self.shared.config;
        let operations = self.operations_lock();
        operations
            .entries
            .iter()
            .chain(operations.other.as_ref())
            .filter(|op| keep(&op.name))
            .map(|op| op.profile(at, config))
            .collect()
    }

    /// How many values were counted under `_OTHER` because the operation bound was reached.
    pub fn overflow(&self) -> u64 {
        self.move_served();
        self.operations_lock().overflow
    }

    /// Where each analysed route's time goes, routes in the order first seen.
    pub fn routes(&self) -> Vec<RouteProfile> {
        self.drain();
        lock(&self.shared.analyser).routes()
    }

    /// The most recent traces where one operation took at least half the time, oldest first.
    pub fn recent_bottlenecks(&self) -> Vec<Bottleneck> {
        self.drain();
        lock(&self.shared.analyser).recent()
    }

    /// What the bottleneck analysis analysed and dropped.
    pub fn analysis_stats(&self) -> AnalysisStats {
        self.drain();
        let mut stats = lock(&self.shared.analyser).stats;
        stats.dropped_spans = self.shared.dropped.load(Ordering::Relaxed);
        stats.skipped_traces = self.shared.skipped.load(Ordering::Relaxed);
        stats
    }

    /// Everything, for a page or an API ([`ProfilingSummary::to_json`]).
    pub fn summary(&self) -> ProfilingSummary {
        ProfilingSummary {
            operations: self.operations(),
            overflow: self.overflow(),
            routes: self.routes(),
            recent_bottlenecks: self.recent_bottlenecks(),
            analysis: self.analysis_stats(),
            resources: self
                .shared
                .config
                .resources
                .as_ref()
                .map(ResourceSampler::summary),
        }
    }

    /// A processor that profiles each span, adds the `performance.slow` event when due, then
    /// hands it on to `next` (one processor in the provider, so the SDK does not clone each
    /// span, and the exporter sees the event).
    pub(crate) fn in_front_of<P: SpanProcessor>(&self, next: P) -> InFrontOf<Self, P> {
        InFrontOf::new(self.clone(), next)
    }
}

/// The method and route a server span is profiled under: the layer's request attributes when
/// it has them, else the span's attributes (the method from `operation` when it has none).
fn server_key(
    span: &SpanData,
    request: Option<&ServerRequest>,
    operation: &str,
) -> (String, Option<String>) {
    if let Some(r) = request {
        return (r.method().to_owned(), r.route().map(bounded));
    }
    let attrs = span.attributes.as_slice();
    let method = crate::attributes::string_attr(attrs, "http.request.method")
        .unwrap_or_else(|| operation.split(' ').next().unwrap_or("").to_owned());
    (method, crate::attributes::string_attr(attrs, "http.route"))
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

impl crate::chain::RecordProcessor for Profiling {
    fn on_end_record(&self, mut record: Box<ServerRecord>) {
        self.process_with(&mut record.span, record.request.as_ref());
    }
}

impl SpanProcessor for Profiling {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, mut span: SpanData) {
        self.process(&mut span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.drain();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.drain();
        Ok(())
    }
}

impl crate::chain::SpanHook for Profiling {
    fn on_end(&self, span: &mut SpanData) {
        self.process(span);
    }

    fn on_end_record(&self, record: &mut ServerRecord) {
        self.process_with(&mut record.span, record.request.as_ref());
    }

    fn flush(&self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests;
