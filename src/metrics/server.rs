//! [`HttpServerMetrics`]: the request observer that records `http.server.request.duration`
//! and `http.server.active_requests`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::metrics::{AsyncInstrument, BoundHistogram, Histogram, Meter};
use opentelemetry::{KeyValue, StringValue};
use service_tracing_middleware::semconv::{self, KNOWN_METHODS};
use service_tracing_middleware::{RequestObserver, RequestOutcome, RequestStart, RouteId};

use super::duration::{self, Durations, Labels};
use super::MAX_ATTRIBUTE_SETS;
use crate::request_record::{Ended, ErrorType, Route};

/// The OpenTelemetry semantic conventions' advisory bucket boundaries for HTTP durations, in
/// seconds.
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A [`RequestObserver`] recording the stable HTTP server metrics of every request, sampled or
/// not:
///
/// - `http.server.request.duration` (histogram, `s`, the advisory buckets
///   [`DURATION_BOUNDARIES`]) with `http.request.method`, `http.route` (the route template;
///   absent when no route matched, never the raw path), `http.response.status_code` and
///   `error.type` when set;
/// - `http.server.active_requests` (observable up-down counter, `{request}`) with
///   `http.request.method` and `http.route`.
///
/// [`ServiceTracing`](crate::ServiceTracing) adds it to the layer when metrics are on; add it
/// yourself to a bare [`TracingLayer`](crate::TracingLayer):
///
/// ```
/// use opentelemetry::metrics::MeterProvider as _;
/// use opentelemetry_sdk::metrics::SdkMeterProvider;
/// use service_tracing::metrics::HttpServerMetrics;
/// use service_tracing::TracingLayer;
///
/// let provider = SdkMeterProvider::builder().build();
/// let layer = TracingLayer::new()
///     .with_observer(HttpServerMetrics::new(&provider.meter("my-service")));
/// ```
/// Make one per meter provider and clone it for every layer: each one registers its own
/// `http.server.active_requests` callback.
#[derive(Clone, Debug)]
pub struct HttpServerMetrics {
    duration: DurationRecorder,
    active: Arc<ActiveRequests>,
    /// Tells this instance's series apart in the per-thread caches of bound series.
    instance: u64,
}

/// Where request durations go: the SDK's histogram, or (in the set-up's own pipeline) the
/// per-thread one that the pipeline adds at collection.
#[derive(Clone, Debug)]
enum DurationRecorder {
    Sdk(Histogram<f64>),
    PerThread(Arc<Durations>),
}

impl HttpServerMetrics {
    /// The instruments, made with `meter`.
    pub fn new(meter: &Meter) -> Self {
        let duration = meter
            .f64_histogram(duration::NAME)
            .with_unit(duration::UNIT)
            .with_description(duration::DESCRIPTION)
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        Self::with_durations(meter, DurationRecorder::Sdk(duration))
    }

    /// The instruments, the durations counted per thread into `durations` (which the caller
    /// adds to what it collects from `meter`'s provider).
    pub(crate) fn per_thread(meter: &Meter, durations: Arc<Durations>) -> Self {
        Self::with_durations(meter, DurationRecorder::PerThread(durations))
    }

    fn with_durations(meter: &Meter, duration: DurationRecorder) -> Self {
        let active = Arc::new(ActiveRequests::default());
        let observed = active.clone();
        meter
            .i64_observable_up_down_counter("http.server.active_requests")
            .with_unit("{request}")
            .with_description("Number of active HTTP server requests.")
            .with_callback(move |observer| observed.observe(observer))
            .build();
        Self {
            duration,
            active,
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed) & INSTANCE_MASK,
        }
    }

    /// The attributes of `ended`'s duration series.
    fn attributes(ended: &Ended, method: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            method_name(method),
        ));
        if let Some(route) = ended.route() {
            attributes.push(KeyValue::new(
                semconv::HTTP_ROUTE,
                StringValue::from(route.to_owned()),
            ));
        }
        if let Some(status) = ended.status {
            attributes.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
        }
        let mut buf = [0; 5];
        if let Some(error_type) = ended.error_type(&mut buf) {
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type.to_owned()));
        }
        attributes
    }

    /// The key of `ended`'s series in the per-thread cache, when it has one: a route the
    /// layer gave an id (or no route), a known status, and no `error.type` but the status
    /// itself. Other requests (rare) record through their attributes.
    fn series_key(&self, ended: &Ended, method: usize) -> Option<u64> {
        let route = match &ended.route {
            Route::None => 0,
            Route::Id(id) => id.index() as u64 + 1,
            Route::Text(_) => return None,
        };
        let status = ended.status.map_or(0, u64::from);
        let error = match (&ended.error_type, ended.status) {
            (None, _) => 0,
            (Some(ErrorType::Status), Some(_)) => 1,
            (Some(_), _) => return None,
        };
        if status >= 1 << 10 {
            return None;
        }
        let method = method as u64;
        Some(self.instance << 26 | route << 15 | method << 11 | status << 1 | error)
    }

    /// `http.server.active_requests` told that the request `outcome` ended (its duration goes
    /// with a batch, [`record_ended`](Self::record_ended)).
    pub(crate) fn request_ended(&self, outcome: &RequestOutcome<'_>) {
        self.active
            .add(outcome.method, outcome.route, outcome.route_id, -1);
    }

    /// Records the durations of a batch of ended requests (this thread's shard taken once).
    pub(crate) fn record_ended(&self, batch: &[Ended]) {
        match &self.duration {
            DurationRecorder::PerThread(durations) => {
                durations.record_batch(batch.iter().map(|ended| {
                    let method = method_index(ended.method);
                    (
                        ended.duration.as_secs_f64(),
                        self.series_key(ended, method),
                        move || Labels::of(ended, method),
                    )
                }))
            }
            DurationRecorder::Sdk(duration) => {
                for ended in batch {
                    self.record_sdk(duration, ended);
                }
            }
        }
    }

    fn record_sdk(&self, duration: &Histogram<f64>, ended: &Ended) {
        let seconds = ended.duration.as_secs_f64();
        let method = method_index(ended.method);
        let recorded = self.series_key(ended, method).is_some_and(|key| {
            BOUND
                .try_with(|bound| {
                    let Ok(mut bound) = bound.try_borrow_mut() else {
                        return false;
                    };
                    if let Some(series) = bound.get(&key) {
                        series.record(seconds);
                        return true;
                    }
                    if bound.len() >= MAX_BOUND_PER_THREAD {
                        return false;
                    }
                    let series = duration.bind(&Self::attributes(ended, method));
                    series.record(seconds);
                    bound.insert(key, series);
                    true
                })
                .unwrap_or(false)
        });
        if !recorded {
            duration.record(seconds, &Self::attributes(ended, method));
        }
    }
}

/// Instances are told apart by 24 bits in the cache key (route 11, method 4, status 10,
/// error 1 below them).
const INSTANCE_MASK: u64 = (1 << 24) - 1;
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(0);

/// Most bound series one thread keeps; past it, requests record through the SDK's lookup.
const MAX_BOUND_PER_THREAD: usize = 4096;

/// A multiplicative hash of the packed series key (the key is already unique: a full
/// SipHash of it would only cost time).
#[derive(Default)]
pub(super) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b) ^ self.0.rotate_left(8));
        }
    }
    fn write_u64(&mut self, n: u64) {
        let wide = u128::from(n) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (wide >> 64) as u64 ^ wide as u64;
    }
}

type BoundSeries = HashMap<u64, BoundHistogram<f64>, std::hash::BuildHasherDefault<KeyHasher>>;

thread_local! {
    /// This thread's bound `http.server.request.duration` series: a request finds its series
    /// here without hashing its attributes or taking the SDK's attribute-map lock.
    static BOUND: RefCell<BoundSeries> = RefCell::new(BoundSeries::default());
}

/// A slot per known method, and the last for `_OTHER` (anything else is already `_OTHER`).
const METHODS: usize = KNOWN_METHODS.len() + 1;

fn method_index(method: &str) -> usize {
    KNOWN_METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(KNOWN_METHODS.len())
}

/// The method of a slot, as a `'static` string (no allocation).
pub(super) fn method_name(index: usize) -> &'static str {
    KNOWN_METHODS.get(index).copied().unwrap_or("_OTHER")
}

use crate::per_thread::{stripe, STRIPES};

/// One stripe of counts, alone on its cache lines so two threads adding into two stripes do
/// not contend for one line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe([AtomicI64; METHODS]);

/// Requests in flight for one route, per method. A request may start on one thread and end
/// on another: a stripe can go below zero, the sum over stripes cannot.
#[derive(Debug, Default)]
struct Counts {
    stripes: [Stripe; STRIPES],
    /// One bit per method seen: a series, once reported, keeps being reported (at 0).
    seen: AtomicU16,
}

impl Counts {
    fn add(&self, method: usize, delta: i64) {
        self.stripes[stripe()].0[method].fetch_add(delta, Ordering::Relaxed);
        if self.seen.load(Ordering::Relaxed) & (1 << method) == 0 {
            self.seen.fetch_or(1 << method, Ordering::Relaxed);
        }
    }

    fn value(&self, method: usize) -> i64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0[method].load(Ordering::Relaxed))
            .sum()
    }

    fn observe(&self, observer: &dyn AsyncInstrument<i64>, route: Option<KeyValue>) {
        let seen = self.seen.load(Ordering::Relaxed);
        for i in 0..METHODS {
            if seen & (1 << i) == 0 {
                continue;
            }
            let mut attributes = vec![KeyValue::new(semconv::HTTP_REQUEST_METHOD, method_name(i))];
            attributes.extend(route.clone());
            observer.observe(self.value(i), &attributes);
        }
    }
}

/// `http.server.active_requests`, counted in atomics and read by an observable instrument
/// at collection: two atomic additions per request instead of two passes through the SDK's
/// attribute maps (about 2,300 instructions). Routes the layer interned are found by their
/// [`RouteId`] (an array index, no lock); others by name. At most [`MAX_ATTRIBUTE_SETS`]
/// routes are counted apart; later ones share a series marked `otel.metric.overflow`.
#[derive(Debug)]
struct ActiveRequests {
    unmatched: Counts,
    /// By route id: `None` once set means the route came past the cap (overflow).
    by_id: Box<[OnceLock<Option<Box<RouteCounts>>>]>,
    routes: RwLock<HashMap<Box<str>, Counts>>,
    /// Routes counted apart, by id or by name.
    series: AtomicUsize,
    overflow: Counts,
}

#[derive(Debug)]
struct RouteCounts {
    route: Box<str>,
    counts: Counts,
}

impl Default for ActiveRequests {
    fn default() -> Self {
        Self {
            unmatched: Counts::default(),
            by_id: (0..RouteId::MAX).map(|_| OnceLock::new()).collect(),
            routes: RwLock::default(),
            series: AtomicUsize::new(0),
            overflow: Counts::default(),
        }
    }
}

impl ActiveRequests {
    /// Whether one more route may be counted apart.
    fn admit(&self) -> bool {
        self.series
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_ATTRIBUTE_SETS).then_some(n + 1)
            })
            .is_ok()
    }

    fn add(&self, method: &str, route: Option<&str>, id: Option<RouteId>, delta: i64) {
        let method = method_index(method);
        let Some(route) = route else {
            self.unmatched.add(method, delta);
            return;
        };
        if let Some(slot) = id.and_then(|id| self.by_id.get(id.index())) {
            let counted = slot.get_or_init(|| {
                self.admit().then(|| {
                    Box::new(RouteCounts {
                        route: route.into(),
                        counts: Counts::default(),
                    })
                })
            });
            match counted {
                Some(c) => c.counts.add(method, delta),
                None => self.overflow.add(method, delta),
            }
            return;
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(counts) = routes.get(route) {
            counts.add(method, delta);
            return;
        }
        drop(routes);
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(counts) = routes.get(route) {
            counts.add(method, delta);
        } else if !self.admit() {
            self.overflow.add(method, delta);
        } else {
            let counts = Counts::default();
            counts.add(method, delta);
            routes.insert(route.into(), counts);
        }
    }

    fn observe(&self, observer: &dyn AsyncInstrument<i64>) {
        self.unmatched.observe(observer, None);
        let route = |route: &str| {
            Some(KeyValue::new(
                semconv::HTTP_ROUTE,
                StringValue::from(route.to_owned()),
            ))
        };
        for counted in self.by_id.iter().filter_map(|s| s.get()).flatten() {
            counted.counts.observe(observer, route(&counted.route));
        }
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        for (name, counts) in routes.iter() {
            counts.observe(observer, route(name));
        }
        self.overflow
            .observe(observer, Some(KeyValue::new("otel.metric.overflow", true)));
    }
}

impl RequestObserver for HttpServerMetrics {
    fn on_request_start(&self, request: &RequestStart<'_>) {
        self.active
            .add(request.method, request.route, request.route_id, 1);
    }

    fn on_request_abandoned(&self, request: &RequestStart<'_>) {
        self.active
            .add(request.method, request.route, request.route_id, -1);
    }

    fn on_request_end(&self, outcome: &RequestOutcome<'_>) {
        self.request_ended(outcome);
        self.record_ended(&[Ended::of(outcome)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_ids_are_counted_by_id_once_and_share_the_cap() {
        let active = ActiveRequests::default();
        let id = RouteId::of("/active/{id}").expect("an id");
        active.add("GET", Some("/active/{id}"), Some(id), 1);
        active.add("GET", Some("/active/{id}"), Some(id), 1);
        active.add("POST", Some("/active/{id}"), Some(id), 1);
        active.add("GET", Some("/active/{id}"), Some(id), -1);
        let counted = active.by_id[id.index()]
            .get()
            .and_then(Option::as_ref)
            .expect("counted by id");
        assert_eq!(&*counted.route, "/active/{id}");
        assert_eq!(counted.counts.value(method_index("GET")), 1);
        assert_eq!(counted.counts.value(method_index("POST")), 1);
        assert!(active.routes.read().map(|r| r.is_empty()).unwrap_or(false));
        assert_eq!(active.series.load(Ordering::Relaxed), 1);

        // Past the cap, a new route with an id goes to the overflow series, for good.
        active.series.store(MAX_ATTRIBUTE_SETS, Ordering::Relaxed);
        let late = RouteId::of("/active/late").expect("an id");
        active.add("GET", Some("/active/late"), Some(late), 1);
        active.add("GET", Some("/active/late"), Some(late), 1);
        assert_eq!(active.overflow.value(method_index("GET")), 2);
        assert!(matches!(active.by_id[late.index()].get(), Some(None)));
    }

    #[test]
    fn active_requests_count_per_route_and_method_and_overflow_past_the_cap() {
        let active = ActiveRequests::default();
        active.add("GET", Some("/a"), None, 1);
        active.add("GET", Some("/a"), None, 1);
        active.add("BREW", Some("/a"), None, 1);
        active.add("GET", None, None, 1);
        active.add("GET", Some("/a"), None, -1);
        let a = active.routes.read().unwrap_or_else(|p| p.into_inner());
        let counts = a.get("/a").expect("a series for /a");
        assert_eq!(counts.value(method_index("GET")), 1);
        assert_eq!(counts.value(method_index("_OTHER")), 1);
        assert_eq!(counts.seen.load(Ordering::Relaxed).count_ones(), 2);
        drop(a);
        assert_eq!(active.unmatched.value(0), 1);
        for n in 0..MAX_ATTRIBUTE_SETS + 10 {
            active.add("POST", Some(&format!("/r{n}")), None, 1);
        }
        assert_eq!(
            active.routes.read().map(|r| r.len()).unwrap_or(0),
            MAX_ATTRIBUTE_SETS
        );
        assert_eq!(active.overflow.value(method_index("POST")), 11);
    }

    #[test]
    fn requests_started_and_ended_on_different_threads_add_up() {
        let active = ActiveRequests::default();
        let id = RouteId::of("/active/threads").expect("an id");
        let route = Some("/active/threads");
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        active.add("GET", route, Some(id), 1);
                    }
                });
            }
        });
        // Ended on other threads than they started on.
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    for _ in 0..1_500 {
                        active.add("GET", route, Some(id), -1);
                    }
                });
            }
        });
        let counted = active.by_id[id.index()]
            .get()
            .and_then(Option::as_ref)
            .expect("counted by id");
        assert_eq!(counted.counts.value(method_index("GET")), 1_000);
    }
}
