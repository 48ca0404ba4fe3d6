//! [`ErrorTracking`]: the span processor and request observer that read errors, and the
//! background thread that classifies, fingerprints and groups them.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use crate::server_span::ServerRecord;

use super::alerting::{AlertConfig, Notifier, Signal};
use super::classify::{self, Category, Severity};
use super::event::{ErrorEvent, ErrorOrigin};
use super::fingerprint;
use super::health::ErrorStorageHealth;
use super::rates::RouteRates;
use super::store::{ErrorGroup, ErrorSummary, Store};
#[cfg(feature = "redis")]
use super::RedisSharing;
use super::DEFAULT_MAX_GROUPS;
#[cfg(doc)]
use super::{record_error, record_error_as};
use crate::chain::InFrontOf;
use crate::redact::Redactor;

pub(crate) type Classifier = dyn Fn(&ErrorEvent) -> Option<(Severity, Category)> + Send + Sync;

pub(super) struct Tracker {
    pub(super) store: Mutex<Store>,
    pub(super) classifier: Option<Arc<Classifier>>,
    pub(super) max_groups: usize,
    pub(super) rates: RouteRates,
    /// Errors read off ended spans, waiting to be classified, fingerprinted and stored.
    pub(super) pending: ArrayQueue<ErrorEvent>,
    /// Starts the thread that drains `pending`, on the first error.
    pub(super) drainer: Once,
    /// Held while draining, so a reader waits for errors another drain has taken but not yet
    /// stored, and errors are stored in the order they ended.
    pub(super) draining: Mutex<()>,
    pub(super) options: Options,
    pub(super) notifier: Notifier,
    /// Sharing through Redis, when configured ([`ErrorTracking::with_sharing`]).
    #[cfg(feature = "redis")]
    pub(super) sharing: Option<super::redis::Sharing>,
}

/// Redaction and alerting settings, kept across rebuilds by the other builder methods.
#[derive(Clone, Default)]
pub(super) struct Options {
    pub(super) redactor: Redactor,
    pub(super) alerts: AlertConfig,
}

/// How many errors may wait for the background thread; beyond that the thread that ends the
/// span stores its error itself (slower, nothing lost).
pub(super) const PENDING: usize = 2_048;
/// How often the background thread stores what waits.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Recognises errors on ended spans and keeps them in bounded, fingerprinted groups.
///
/// A [`SpanProcessor`]: its `on_end` reads the span, and when it is an error, classifies and
/// fingerprints it and updates its group under a short lock (no I/O, no waiting on anything
/// else). Clones share the same groups. At most [`max_groups`](Self::with_max_groups) groups
/// are held (default 1,000); when a new one arrives, the least recently seen is evicted and
/// counted.
///
/// ```
/// use opentelemetry::trace::{Span as _, Status, Tracer as _, TracerProvider as _};
/// use service_tracing::errors::{ErrorTracking, Severity};
///
/// let errors = ErrorTracking::new().with_max_groups(100);
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_span_processor(errors.clone())
///     .build();
/// let mut span = provider.tracer("demo").start("load");
/// span.record_error(&std::io::Error::other("disk 3 is full"));
/// span.set_status(Status::error("disk full"));
/// span.end();
///
/// let summary = errors.summary();
/// assert_eq!(summary.total(), 1);
/// assert_eq!(summary.top_groups()[0].severity(), Severity::Medium);
/// ```
#[derive(Clone)]
#[must_use]
pub struct ErrorTracking {
    pub(super) tracker: Arc<Tracker>,
}

impl fmt::Debug for ErrorTracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorTracking")
            .field("max_groups", &self.tracker.max_groups)
            .field("classifier", &self.tracker.classifier.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ErrorTracking {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorTracking {
    /// Error tracking with the default classification and at most 1,000 groups.
    pub fn new() -> Self {
        Self::build(DEFAULT_MAX_GROUPS, None, RouteRates::new())
    }

    pub(super) fn build(
        max_groups: usize,
        classifier: Option<Arc<Classifier>>,
        rates: RouteRates,
    ) -> Self {
        Self::build_with(max_groups, classifier, rates, Options::default())
    }

    pub(super) fn build_with(
        max_groups: usize,
        classifier: Option<Arc<Classifier>>,
        rates: RouteRates,
        options: Options,
    ) -> Self {
        Self {
            tracker: Arc::new(Tracker {
                store: Mutex::new(Store::new(max_groups)),
                classifier,
                max_groups: max_groups.max(1),
                rates,
                pending: ArrayQueue::new(PENDING),
                drainer: Once::new(),
                draining: Mutex::new(()),
                notifier: Notifier::new(options.alerts.clone()),
                options,
                #[cfg(feature = "redis")]
                sharing: None,
            }),
        }
    }

    /// `self`'s sharing, if any, carried over to `rebuilt` (a new store needs its own sync
    /// thread; the old one ends with the old store).
    fn keep_sharing(self, rebuilt: Self) -> Self {
        #[cfg(feature = "redis")]
        if let Some(sharing) = &self.tracker.sharing {
            return rebuilt.with_sharing(sharing.config().clone());
        }
        let _ = self;
        rebuilt
    }

    /// Shares groups, counts and rates with every replica using the same Redis and prefix
    /// (feature `redis`); see [`RedisSharing`] for the options and [`redis`](super::redis) for how.
    /// Starts a background sync thread and waits for its first sync (bounded by the
    /// timeouts): an unreachable Redis starts [`Degraded`](ErrorStorageHealth::Degraded), it
    /// does not fail. Call it last: [`with_max_groups`](Self::with_max_groups) and
    /// [`with_classifier`](Self::with_classifier) start from a new store (and sync thread).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// use service_tracing::errors::{ErrorTracking, RedisSharing};
    /// let errors = ErrorTracking::new()
    ///     .with_sharing(RedisSharing::new("redis://127.0.0.1:6379")?.prefix("shop:errors"));
    /// println!("{:?}", errors.storage_health());
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn with_sharing(self, sharing: RedisSharing) -> Self {
        let mut rebuilt = Self::build(
            self.tracker.max_groups,
            self.tracker.classifier.clone(),
            self.tracker.rates.clone(),
        );
        let (handle, worker) = super::redis::Sharing::new(sharing);
        if let Some(state) = Arc::get_mut(&mut rebuilt.tracker) {
            state.sharing = Some(handle);
            worker.spawn(Arc::downgrade(&rebuilt.tracker));
            rebuilt.sync_now();
        }
        rebuilt
    }

    /// [`with_sharing`](Self::with_sharing) with the default options; an invalid URL is an
    /// error naming the setting.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let errors =
    ///     service_tracing::errors::ErrorTracking::new().with_redis("redis://127.0.0.1:6379")?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn with_redis(self, url: &str) -> Result<Self, crate::SetupError> {
        Ok(self.with_sharing(RedisSharing::new(url)?))
    }

    /// Pushes this replica's counts to Redis and pulls the fleet view now, waiting for it
    /// (at most ten [timeouts](RedisSharing::timeout)); for tests and shutdown. Returns the
    /// health after it; [`Local`](ErrorStorageHealth::Local) without sharing.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let errors = service_tracing::errors::ErrorTracking::new().with_redis("redis://127.0.0.1")?;
    /// assert!(!errors.sync_now().is_degraded(), "Redis is up");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn sync_now(&self) -> ErrorStorageHealth {
        self.drain();
        match &self.tracker.sharing {
            Some(sharing) => sharing.sync_now(),
            None => ErrorStorageHealth::Local,
        }
    }

    /// Where the groups are kept and whether that works: [`Local`](ErrorStorageHealth::Local)
    /// without sharing, [`Shared`](ErrorStorageHealth::Shared) or
    /// [`Degraded`](ErrorStorageHealth::Degraded) with it. Reads a field: no I/O.
    ///
    /// ```
    /// use service_tracing::errors::{ErrorStorageHealth, ErrorTracking};
    /// assert_eq!(ErrorTracking::new().storage_health(), ErrorStorageHealth::Local);
    /// ```
    pub fn storage_health(&self) -> ErrorStorageHealth {
        #[cfg(feature = "redis")]
        if let Some(sharing) = &self.tracker.sharing {
            return sharing.health();
        }
        ErrorStorageHealth::Local
    }

    /// At most `max` groups (at least 1) are held. Call it before the tracker is used: it
    /// starts from no groups.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new().with_max_groups(50);
    /// ```
    pub fn with_max_groups(self, max: usize) -> Self {
        let rebuilt = Self::build_with(
            max,
            self.tracker.classifier.clone(),
            self.tracker.rates.clone(),
            self.tracker.options.clone(),
        );
        self.keep_sharing(rebuilt)
    }

    /// Replaces the default classification: `classify` returns `Some((severity, category))`
    /// to decide, or `None` to fall back to the defaults. Severities and categories stated
    /// where the error was recorded ([`record_error_as`]) win over it. Call it before the
    /// tracker is used: it starts from no groups. It runs on error tracking's background
    /// thread (or, when its queue is full, on the thread that ends the span), so keep it
    /// quick; a panic in it falls back to the defaults.
    /// [`ServiceTracing::error_classifier`](crate::ServiceTracing::error_classifier) sets it
    /// on the tracker set-up creates.
    ///
    /// ```
    /// use service_tracing::errors::{Category, ErrorTracking, Severity};
    /// let errors = ErrorTracking::new().with_classifier(|event| {
    ///     event
    ///         .operation()
    ///         .contains("payments")
    ///         .then_some((Severity::Critical, Category::Dependency))
    /// });
    /// ```
    pub fn with_classifier(
        self,
        classify: impl Fn(&ErrorEvent) -> Option<(Severity, Category)> + Send + Sync + 'static,
    ) -> Self {
        let rebuilt = Self::build_with(
            self.tracker.max_groups,
            Some(Arc::new(classify)),
            self.tracker.rates.clone(),
            self.tracker.options.clone(),
        );
        self.keep_sharing(rebuilt)
    }

    /// [`with_classifier`](Self::with_classifier) with a classifier set-up holds.
    pub(crate) fn with_shared_classifier(self, classify: Arc<Classifier>) -> Self {
        let rebuilt = Self::build_with(
            self.tracker.max_groups,
            Some(classify),
            self.tracker.rates.clone(),
            self.tracker.options.clone(),
        );
        self.keep_sharing(rebuilt)
    }

    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        match self.tracker.store.lock() {
            Ok(store) => store,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Totals, per severity, category and operation, the top 10 groups, and the per-route
    /// rates ([`ErrorSummary::route_rates`]).
    pub fn summary(&self) -> ErrorSummary {
        self.drain();
        let at = self.tracker.rates.elapsed();
        #[cfg(feature = "redis")]
        if let Some(summary) = self
            .tracker
            .sharing
            .as_ref()
            .and_then(|s| s.summary(&self.tracker, at))
        {
            return summary;
        }
        let mut summary = self.store().summary();
        summary.set_rates(at, self.tracker.rates.snapshot());
        summary
    }

    /// Every group held, most errors first.
    pub fn groups(&self) -> Vec<ErrorGroup> {
        self.drain();
        let at = self.tracker.rates.elapsed();
        let mut groups = self
            .shared_groups()
            .unwrap_or_else(|| self.store().groups());
        for group in &mut groups {
            group.set_as_of(at);
        }
        groups
    }

    /// The fleet's groups when shared and a fleet view was pulled.
    fn shared_groups(&self) -> Option<Vec<ErrorGroup>> {
        #[cfg(feature = "redis")]
        if let Some(sharing) = &self.tracker.sharing {
            return sharing.groups(&self.tracker);
        }
        None
    }

    /// The per-route request and error rates, fed by [`rates_observer`](Self::rates_observer).
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// assert!(errors.rates().snapshot().is_empty());
    /// ```
    pub fn rates(&self) -> &RouteRates {
        &self.tracker.rates
    }

    /// An observer for the server layer that counts every request, sampled or not, into
    /// [`rates`](Self::rates), and counts each failing request once, under its root cause
    /// (see [What counts as an error](super#what-counts-as-an-error));
    /// [`ServiceTracing`](crate::ServiceTracing) adds it.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// let layer =
    ///     service_tracing_middleware::TracingLayer::new().with_observer(errors.rates_observer());
    /// ```
    pub fn rates_observer(&self) -> impl service_tracing_middleware::RequestObserver {
        RequestErrorsObserver {
            errors: self.clone(),
        }
    }

    /// Queues the one error of a request that failed or had an error recorded inside it.
    pub(crate) fn record_request_error(
        &self,
        outcome: &service_tracing_middleware::RequestOutcome<'_>,
    ) {
        let Some(event) = ErrorEvent::from_request(outcome) else {
            return;
        };
        // The server span, when it records (sampled, or recorded to be kept if it fails: see
        // `SamplingRules::keep_errors`), ends right after this, on this thread: its error is
        // this one.
        COUNTED_SERVER_SPAN.set(Some((outcome.trace_id, outcome.span_id)));
        self.enqueue(event);
    }

    /// Records the span if it is an error: reads the error off it and leaves the rest
    /// (classification, fingerprint, groups) to a background thread, so the thread that ends
    /// the span pays only for the read. Readers ([`summary`](Self::summary),
    /// [`groups`](Self::groups), `force_flush`) store what waits first, so they see every
    /// error that ended before them.
    pub(crate) fn record(&self, span: &SpanData) {
        let Some(event) = ErrorEvent::from_span(span) else {
            return;
        };
        if event.origin == ErrorOrigin::Server {
            let id = (event.trace_id, event.span_id);
            if COUNTED_SERVER_SPAN.take() == Some(id) {
                return;
            }
        } else {
            // Inside a request whose observer counts it: part of that request's one error
            // (its root cause when it is the first), not an error of its own.
            let seen = Context::map_current(|cx| {
                service_tracing_middleware::cause::record_cause(cx, || event.to_cause())
            });
            if seen.in_request() {
                return;
            }
        }
        self.enqueue(event);
    }

    /// [`record`](Self::record) for a server span of the layer's own type; only one that may
    /// hold an error is made into `SpanData` to be read.
    fn record_server(&self, record: &ServerRecord) {
        if record.may_hold_an_error() {
            self.record(&record.to_span_data());
        }
    }

    /// Hands the error to the background thread, or stores it at once when the queue is full.
    fn enqueue(&self, event: ErrorEvent) {
        self.start_drainer();
        if let Err(event) = self.tracker.pending.push(event) {
            self.ingest(event);
        }
    }

    fn start_drainer(&self) {
        self.tracker.drainer.call_once(|| {
            // Without the thread, errors wait until a reader drains them: still counted.
            let _ = crate::runtime::spawn_while_alive(
                "service-tracing-errors",
                DRAIN_EVERY,
                Arc::downgrade(&self.tracker),
                |tracker| {
                    ErrorTracking { tracker }.drain();
                    true
                },
            );
        });
    }

    /// Stores every error waiting in the queue.
    pub(super) fn drain(&self) {
        let _draining = match self.tracker.draining.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        while let Some(event) = self.tracker.pending.pop() {
            self.ingest(event);
        }
    }

    /// Redacts, classifies, fingerprints and stores one error, and tells the alerting thread.
    fn ingest(&self, mut event: ErrorEvent) {
        self.redact(&mut event);
        // Stated where it was recorded, else the user's classifier, else the defaults. The
        // user's classifier must not take the thread down.
        let classified = event.classification.unwrap_or_else(|| {
            let custom = self.tracker.classifier.as_ref().and_then(|classify| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classify(&event)))
                    .ok()
                    .flatten()
            });
            custom.unwrap_or_else(|| classify::default_classification(&event))
        });
        let event = event.into_request_key();
        let fingerprint =
            fingerprint::fingerprint(&event.error_type, &event.operation, &event.message);
        let at = self.tracker.rates.elapsed();
        let (trace_id, span_id) = (event.trace_id, event.span_id);
        let mut store = self.store();
        let is_new = store.record(fingerprint, event, classified);
        store.observe(fingerprint, at);
        drop(store);
        if self.tracker.notifier.is_active() {
            let signal = Signal {
                fingerprint,
                is_new,
                trace_id,
                span_id,
            };
            self.tracker.notifier.signal(signal, || self.lookup());
        }
    }

    /// A processor that records errors, then hands every span on to `next` (one processor
    /// in the provider, so the SDK does not clone each span for a second one).
    pub(crate) fn in_front_of<P: SpanProcessor>(&self, next: P) -> InFrontOf<Self, P> {
        InFrontOf::new(self.clone(), next)
    }
}

thread_local! {
    /// The server span whose request [`RequestErrorsObserver`] has just counted; the
    /// layer ends that span right after, on the same thread, and the processor skips its
    /// error. Written only for failing requests.
    static COUNTED_SERVER_SPAN: std::cell::Cell<Option<(TraceId, SpanId)>> =
        const { std::cell::Cell::new(None) };
}

/// [`ErrorTracking::rates_observer`]: route rates, and one error per failing request.
struct RequestErrorsObserver {
    errors: ErrorTracking,
}

impl service_tracing_middleware::RequestObserver for RequestErrorsObserver {
    fn on_request_end(&self, outcome: &service_tracing_middleware::RequestOutcome<'_>) {
        self.errors.tracker.rates.record_outcome(outcome);
        self.errors.record_request_error(outcome);
    }

    fn wants_error_cause(&self) -> bool {
        true
    }
}

impl crate::chain::RecordProcessor for ErrorTracking {
    fn on_end_record(&self, record: Box<ServerRecord>) {
        self.record_server(&record);
    }
}

impl SpanProcessor for ErrorTracking {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.record(&span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.drain();
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl crate::chain::SpanHook for ErrorTracking {
    fn on_end(&self, span: &mut SpanData) {
        self.record(span);
    }

    fn on_end_record(&self, record: &mut ServerRecord) {
        self.record_server(record);
    }

    fn flush(&self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::errors::{record_error, record_error_as, ErrorGroup};

    fn provider(errors: &ErrorTracking) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build()
    }

    fn server_span(provider: &SdkTracerProvider, status: i64, panic: Option<&str>) {
        let tracer = provider.tracer("t");
        let mut span = tracer
            .span_builder("GET /orders/{id}")
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", "/orders/{id}"),
                KeyValue::new("http.response.status_code", status),
                KeyValue::new("correlation.id", "c-1"),
            ])
            .start(&tracer);
        if let Some(message) = panic {
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", "panic"),
                    KeyValue::new("exception.message", message.to_owned()),
                ],
            );
            span.set_attribute(KeyValue::new("error.type", "panic"));
            span.set_status(Status::error(format!("panic: {message}")));
        } else if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
        span.end();
    }

    fn client_span(provider: &SdkTracerProvider, error_type: &str, status: Option<i64>) {
        let tracer = provider.tracer("t");
        let mut attributes = vec![
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("server.address", "payments.internal"),
            KeyValue::new("error.type", error_type.to_owned()),
        ];
        if let Some(status) = status {
            attributes.push(KeyValue::new("http.response.status_code", status));
        }
        let mut span = tracer
            .span_builder("POST")
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start(&tracer);
        if status.is_none() {
            let message = format!("error sending request: {error_type} failed");
            span.add_event(
                "exception",
                vec![
                    KeyValue::new("exception.type", "reqwest::Error"),
                    KeyValue::new("exception.message", message.clone()),
                ],
            );
            span.set_status(Status::error(message));
        } else {
            span.set_status(Status::error(""));
        }
        span.end();
    }

    fn group<'a>(groups: &'a [ErrorGroup], error_type: &str) -> &'a ErrorGroup {
        groups
            .iter()
            .find(|g| g.error_type() == error_type)
            .unwrap_or_else(|| panic!("no {error_type} group in {groups:#?}"))
    }

    #[test]
    fn errors_on_spans_are_recognised_grouped_and_classified() {
        let errors = ErrorTracking::new();
        let provider = provider(&errors);
        for n in [42, 7, 1234] {
            server_span(&provider, 500, Some(&format!("order {n} not found")));
        }
        server_span(&provider, 500, Some("user 42 not found"));
        server_span(&provider, 503, None);
        server_span(&provider, 200, None);
        server_span(&provider, 404, None);
        client_span(&provider, "connect", None);
        client_span(&provider, "timeout", None);
        client_span(&provider, "404", Some(404));
        client_span(&provider, "502", Some(502));
        {
            let tracer = provider.tracer("t");
            let mut ok_internal = tracer.start("internal");
            ok_internal.set_status(Status::error("repeats the parent's"));
            ok_internal.end();
        }

        let groups = errors.groups();
        assert_eq!(groups.len(), 7, "{groups:#?}");
        assert!(!groups.iter().any(|g| g.status_codes().contains(&200)));
        let panics: Vec<&ErrorGroup> = groups
            .iter()
            .filter(|g| g.error_type() == "panic")
            .collect();
        assert_eq!(panics.len(), 2);
        assert_eq!(panics[0].count(), 3);
        assert_eq!(panics[0].message(), "order 42 not found");
        assert_eq!(panics[0].operations(), ["GET /orders/{id}"]);
        assert_eq!(panics[0].status_codes(), [500]);
        assert_eq!(panics[0].correlation_ids(), ["c-1", "c-1", "c-1"]);
        assert_eq!(panics[0].trace_ids().len(), 3);
        assert_eq!(
            (panics[0].severity(), panics[0].category()),
            (Severity::Critical, Category::Application)
        );
        let server = group(&groups, "503");
        assert_eq!(
            (server.severity(), server.category()),
            (Severity::High, Category::Application)
        );
        assert_eq!(server.message(), "");
        let transport: Vec<&ErrorGroup> = groups
            .iter()
            .filter(|g| g.error_type() == "reqwest::Error")
            .collect();
        assert_eq!(transport.len(), 2, "timeout and connect differ in message");
        for g in transport {
            let expected = if g.message().contains("timeout") {
                (Severity::Medium, Category::Timeout)
            } else {
                (Severity::High, Category::Dependency)
            };
            assert_eq!((g.severity(), g.category()), expected, "{g:#?}");
            assert_eq!(g.operations(), ["POST payments.internal"]);
        }
        let dependency_404 = group(&groups, "404");
        assert_eq!(dependency_404.operations(), ["POST payments.internal"]);
        assert_eq!(
            (dependency_404.severity(), dependency_404.category()),
            (Severity::Low, Category::Dependency)
        );
        let dependency_502 = group(&groups, "502");
        assert_eq!(
            (dependency_502.severity(), dependency_502.category()),
            (Severity::High, Category::Dependency)
        );
        let summary = errors.summary();
        assert_eq!(summary.total(), 9);
        assert_eq!(
            summary.by_operation()[0],
            ("GET /orders/{id}".to_owned(), 5)
        );
    }

    #[test]
    fn a_classifier_overrides_the_defaults_and_none_keeps_them() {
        let errors = ErrorTracking::new()
            .with_max_groups(10)
            .with_classifier(|event| {
                (event.origin() == ErrorOrigin::Client)
                    .then_some((Severity::Critical, Category::Security))
            });
        let provider = provider(&errors);
        client_span(&provider, "404", Some(404));
        server_span(&provider, 500, None);
        let groups = errors.groups();
        let client = group(&groups, "404");
        assert_eq!(
            (client.severity(), client.category()),
            (Severity::Critical, Category::Security)
        );
        let server = group(&groups, "500");
        assert_eq!(
            (server.severity(), server.category()),
            (Severity::High, Category::Application)
        );
    }

    #[test]
    fn a_panicking_classifier_falls_back_to_the_defaults() {
        let errors = ErrorTracking::new().with_classifier(|_| panic!("classifier bug"));
        let provider = provider(&errors);
        server_span(&provider, 500, None);
        assert_eq!(errors.groups()[0].severity(), Severity::High);
    }

    #[test]
    fn errors_wait_for_the_background_thread_and_a_full_queue_stores_inline() {
        let errors = ErrorTracking::new();
        let provider = provider(&errors);
        server_span(&provider, 500, None);
        // The background thread stores it without any reader asking.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while errors.store().summary().total() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the background thread never stored the error"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(errors.tracker.pending.is_empty());
        // More errors than the queue holds: none is lost.
        let flood = PENDING * 2 + 5;
        for _ in 0..flood {
            server_span(&provider, 503, None);
        }
        assert!(errors.tracker.pending.len() <= PENDING);
        assert_eq!(errors.summary().total(), 1 + flood as u64);
        assert!(errors.tracker.pending.is_empty(), "readers drain first");
    }

    /// Severity and category of the one group on `operation`.
    fn classification_on(groups: &[ErrorGroup], operation: &str) -> (Severity, Category) {
        let g = groups
            .iter()
            .find(|g| g.operations() == [operation])
            .unwrap_or_else(|| panic!("{operation}: {groups:#?}"));
        (g.severity(), g.category())
    }

    /// A provider sampling half the traces, error tracking in front of an in-memory exporter.
    fn half_sampled(
        errors: &ErrorTracking,
    ) -> (
        SdkTracerProvider,
        opentelemetry_sdk::trace::InMemorySpanExporter,
    ) {
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(0.5))
            .with_span_processor(errors.in_front_of(
                opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone()),
            ))
            .build();
        (provider, exporter)
    }

    #[tokio::test]
    async fn errors_of_unsampled_requests_are_counted_once_without_samples() {
        use axum::routing::get;

        let errors = ErrorTracking::new();
        let (provider, exporter) = half_sampled(&errors);
        let app = axum::Router::new()
            .route(
                "/fail/{id}",
                get(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .layer(
                service_tracing_middleware::TracingLayer::new()
                    .with_tracer_provider(&provider)
                    .with_observer(errors.rates_observer()),
            );
        const REQUESTS: u64 = 200;
        for i in 0..REQUESTS {
            crate::test_support::get(&app, &format!("/fail/{i}")).await;
        }
        let exported = exporter.get_finished_spans().unwrap_or_default();
        assert!(
            !exported.is_empty() && (exported.len() as u64) < REQUESTS,
            "some sampled, some not: {}",
            exported.len()
        );
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(
            groups[0].count(),
            REQUESTS,
            "each request once, sampled or not"
        );
        assert_eq!(groups[0].operations(), ["GET /fail/{id}"]);
        let exported_ids: Vec<TraceId> =
            exported.iter().map(|s| s.span_context.trace_id()).collect();
        assert!(!groups[0].trace_ids().is_empty());
        for id in groups[0].trace_ids() {
            assert!(exported_ids.contains(id), "{id} was never exported");
        }
        assert_eq!(
            groups[0].trace_ids().len(),
            groups[0].correlation_ids().len()
        );
    }

    #[derive(Debug)]
    struct RowLocked(u32);

    impl fmt::Display for RowLocked {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "ledger row {} is locked", self.0)
        }
    }

    impl std::error::Error for RowLocked {}

    /// A fault mix through the real layer and client, half the traces sampled: one group per
    /// fault, one error per failing request, under its root cause, on its route.
    #[tokio::test]
    async fn a_failing_request_is_one_error_under_its_root_cause_sampled_or_not() {
        use axum::extract::{Path, State};
        use axum::http::StatusCode;
        use axum::routing::get;

        let errors = ErrorTracking::new();
        let (provider, exporter) = half_sampled(&errors);
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(service_tracing_client::TracingMiddleware::new().with_tracer_provider(&provider))
            .build();
        // A port nothing listens on.
        let closed = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            format!(
                "http://{}",
                listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
            )
        };
        async fn proxy(
            State((client, closed)): State<(reqwest_middleware::ClientWithMiddleware, String)>,
            Path(id): Path<u32>,
        ) -> StatusCode {
            match client.get(format!("{closed}/items/{id}")).send().await {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::BAD_GATEWAY,
            }
        }
        let app = axum::Router::new()
            .route("/proxy/{id}", get(proxy))
            .route(
                "/ledger/{id}",
                get(|Path(id): Path<u32>| async move {
                    record_error_as(&RowLocked(id), Category::Database, Severity::High);
                    StatusCode::INTERNAL_SERVER_ERROR
                }),
            )
            .route(
                "/slow/{id}",
                get(|Path(id): Path<u32>| async move {
                    let e =
                        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("stock {id}"));
                    record_error(&e);
                    StatusCode::GATEWAY_TIMEOUT
                }),
            )
            .route(
                "/panic/{id}",
                get(|Path(id): Path<u32>| async move {
                    if id > 0 {
                        panic!("order {id} not found");
                    }
                    StatusCode::OK
                }),
            )
            .route(
                "/fail/{id}",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/ok/{id}", get(|| async { "fine" }))
            .with_state((client, closed))
            .layer(
                service_tracing_middleware::TracingLayer::new()
                    .with_tracer_provider(&provider)
                    .with_observer(errors.rates_observer()),
            );
        const REQUESTS: u64 = 40;
        for i in 1..=REQUESTS {
            for route in ["proxy", "ledger", "slow", "panic", "fail", "ok"] {
                crate::test_support::get(&app, &format!("/{route}/{}", i * 7919)).await;
            }
        }

        let exported = exporter.get_finished_spans().unwrap_or_default();
        let sampled_calls = exported
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .count() as u64;
        assert!(
            sampled_calls > 0 && sampled_calls < REQUESTS,
            "some sampled, some not: {sampled_calls}"
        );
        let groups = errors.groups();
        assert_eq!(groups.len(), 5, "one group per fault: {groups:#?}");
        let on = |operation: &str| -> &ErrorGroup {
            let found: Vec<&ErrorGroup> = groups
                .iter()
                .filter(|g| g.operations() == [operation])
                .collect();
            assert_eq!(found.len(), 1, "{operation}: {groups:#?}");
            found[0]
        };
        let cases = [
            (
                "GET /proxy/{id}",
                "reqwest::Error",
                502,
                Severity::High,
                Category::Dependency,
            ),
            (
                "GET /ledger/{id}",
                std::any::type_name::<RowLocked>(),
                500,
                Severity::High,
                Category::Database,
            ),
            (
                "GET /slow/{id}",
                "std::io::error::Error",
                504,
                Severity::Medium,
                Category::Timeout,
            ),
            (
                "GET /panic/{id}",
                "panic",
                500,
                Severity::Critical,
                Category::Application,
            ),
            (
                "GET /fail/{id}",
                "500",
                500,
                Severity::High,
                Category::Application,
            ),
        ];
        for (operation, error_type, status, severity, category) in cases {
            let g = on(operation);
            assert_eq!(g.count(), REQUESTS, "{g:#?}");
            assert_eq!(g.error_type(), error_type, "{g:#?}");
            assert_eq!(g.status_codes(), [status], "{g:#?}");
            assert_eq!((g.severity(), g.category()), (severity, category), "{g:#?}");
            // Samples only from sampled requests, and some were.
            assert!(!g.trace_ids().is_empty(), "{g:#?}");
            let exported_ids: Vec<TraceId> =
                exported.iter().map(|s| s.span_context.trace_id()).collect();
            for id in g.trace_ids() {
                assert!(exported_ids.contains(id), "{id} was never exported");
            }
        }
        assert_eq!(on("GET /proxy/{id}").targets(), ["GET 127.0.0.1"]);
        assert_eq!(
            on("GET /panic/{id}").message(),
            "order 7919 not found",
            "the panic's message, sampled or not"
        );
        let summary = errors.summary();
        assert_eq!(summary.total(), 5 * REQUESTS, "failing requests, each once");
        // The failed calls that were sampled keep their own exception events.
        assert!(exported
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .all(|s| s.events.iter().any(|e| e.name == "exception")));
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading stock failed")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    #[derive(Debug)]
    struct Failed(&'static str);
    impl fmt::Display for Failed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Failed {}

    /// The default rules read timeouts, database and connection errors off the error itself,
    /// here on spans outside any request. (Error types are named by their full path, so the
    /// helper types live at module level, not inside this test, whose name says timeout.)
    #[tokio::test]
    async fn timeouts_database_and_refused_connections_are_recognised_by_default() {
        let errors = ErrorTracking::new();
        let provider = provider(&errors);
        let tracer = provider.tracer("t");
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .expect_err("a zero timeout elapses");
        let record = |name: &str, record: &dyn Fn()| {
            tracer.in_span(name.to_owned(), |_cx| record());
        };
        record("io", &|| {
            record_error(&std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "stock 7",
            ))
        });
        record("elapsed", &|| record_error(&elapsed));
        record("source", &|| {
            record_error(&Wrapped(std::io::Error::from(std::io::ErrorKind::TimedOut)))
        });
        record("message", &|| {
            record_error(&Failed("call took too long: timeout after 2s"))
        });
        record("sql", &|| {
            record_error(&Failed("SQL syntax error near 'FROM'"))
        });
        record("database", &|| record_error(&Failed("database is locked")));
        record("refused", &|| {
            record_error(&Failed("Connection refused (os error 111)"))
        });
        record("plain", &|| record_error(&Failed("order 7 not found")));
        let groups = errors.groups();
        let of = |operation: &str| classification_on(&groups, operation);
        use Category::*;
        use Severity::*;
        assert_eq!(of("io"), (Medium, Timeout), "io::ErrorKind::TimedOut");
        assert_eq!(of("elapsed"), (Medium, Timeout), "tokio's Elapsed");
        assert_eq!(
            of("source"),
            (Medium, Timeout),
            "TimedOut among the sources"
        );
        assert_eq!(of("message"), (Medium, Timeout));
        assert_eq!(of("sql"), (High, Database));
        assert_eq!(of("database"), (High, Database));
        assert_eq!(of("refused"), (High, Dependency));
        assert_eq!(of("plain"), (Medium, Application));
    }

    /// A classifier given to `ServiceTracing` replaces the defaults (`None` falls back to them);
    /// a classification stated with `record_error_as` still wins.
    #[tokio::test]
    async fn a_classifier_set_through_service_tracing_replaces_the_defaults() {
        use axum::http::StatusCode;
        use axum::routing::get;

        // Scoped: no process globals, so it runs beside any other test.
        let scoped = crate::ServiceTracing::builder("svc")
            .env_lookup(|_| None)
            .exporter(crate::TracesExporter::None)
            .error_classifier(|event| {
                (event.request_operation() == Some("GET /fail"))
                    .then_some((Severity::Low, Category::Security))
            })
            .build_scoped()
            .unwrap_or_else(|e| panic!("{e}"));
        let layer = scoped.layer();
        let app = axum::Router::new()
            .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
            .route(
                "/other",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/stated",
                get(|| async {
                    record_error_as(
                        &std::io::Error::other("row locked"),
                        Category::Database,
                        Severity::Medium,
                    );
                    StatusCode::INTERNAL_SERVER_ERROR
                }),
            )
            .layer(layer);
        for path in ["/fail", "/other", "/stated"] {
            crate::test_support::get(&app, path).await;
        }
        let errors = scoped
            .guard()
            .errors()
            .unwrap_or_else(|| panic!("error tracking is on"));
        let groups = errors.groups();
        let of = |operation: &str| classification_on(&groups, operation);
        assert_eq!(of("GET /fail"), (Severity::Low, Category::Security));
        assert_eq!(of("GET /other"), (Severity::High, Category::Application));
        assert_eq!(of("GET /stated"), (Severity::Medium, Category::Database));
        let _ = scoped.shutdown();
    }

    #[test]
    fn in_front_of_records_and_hands_every_span_on() {
        let errors = ErrorTracking::new();
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let next = opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter.clone());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(errors.in_front_of(next))
            .build();
        server_span(&provider, 500, None);
        server_span(&provider, 200, None);
        assert_eq!(errors.summary().total(), 1);
        assert_eq!(exporter.get_finished_spans().map(|s| s.len()).ok(), Some(2));
        assert!(provider.shutdown().is_ok());
    }
}
