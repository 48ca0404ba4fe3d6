//! Error tracking inside the service: errors recognised on ended spans, grouped by a stable
//! fingerprint, with a severity and a category (think Sentry's grouping, in process).
//!
//! [`ErrorTracking`] is a [`SpanProcessor`]. [`ServiceTracing`](crate::ServiceTracing) adds
//! one, shared by every service's provider, unless told
//! [`error_tracking(false)`](crate::ServiceTracing::error_tracking); read it back with
//! [`TracingGuard::errors`](crate::TracingGuard::errors).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
//! // ... serve requests ...
//! if let Some(errors) = guard.errors() {
//!     for group in errors.summary().top_groups() {
//!         println!("{} x{}: {}", group.error_type(), group.count(), group.message());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # What counts as an error
//!
//! - a server span with status Error (a 5xx answer, a panic);
//! - a client span with status Error (a transport error, a dependency's 4xx or 5xx);
//! - any span with an `exception` event.
//!
//! An internal span with status Error but no `exception` event is not counted: it usually
//! repeats the error of the request it belongs to.
//!
//! # Sampling
//!
//! A span processor only sees recorded spans, so with a ratio sampler the counts are counts of
//! *sampled* errors, and so are the per-group windows of [`ErrorGroup::errors_in`]. The
//! per-route requests, errors and ratios of [`ErrorSummary::route_rates`] ([`RouteRates`]) come
//! from an observer on the server layer and count every request, sampled or not.

mod classify;
mod fingerprint;
mod rates;
mod store;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanKind, Status, TraceId};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

pub use classify::{Category, Severity};
pub use rates::{RouteRate, RouteRates, Window, DEFAULT_MAX_KEYS, OTHER_OPERATION};
pub use store::{ErrorGroup, ErrorSummary};

use store::Store;

/// The default bound on the number of groups held.
pub const DEFAULT_MAX_GROUPS: usize = 1_000;

/// Longest error type, message, operation or correlation id taken from a span, in bytes.
const MAX_FIELD: usize = 512;

/// Which kind of span an error was found on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorOrigin {
    /// A server span: a request this service answered.
    Server,
    /// A client span: a call to a dependency.
    Client,
    /// Any other span (with an `exception` event).
    Internal,
}

/// One error, as read from an ended span, handed to a
/// [classifier](ErrorTracking::with_classifier).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ErrorEvent {
    origin: ErrorOrigin,
    error_type: String,
    error_class: Option<String>,
    message: String,
    operation: String,
    status_code: Option<u16>,
    trace_id: TraceId,
    correlation_id: Option<String>,
    db_system: Option<String>,
    time: SystemTime,
}

impl ErrorEvent {
    /// Server, client or other.
    pub fn origin(&self) -> ErrorOrigin {
        self.origin
    }

    /// `exception.type`, else `error.type`, else `error`.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The span's `error.type` attribute (`timeout`, `connect`, `500`, `panic`...), which
    /// [`error_type`](Self::error_type) hides when an `exception.type` is present.
    pub fn error_class(&self) -> Option<&str> {
        self.error_class.as_deref()
    }

    /// `exception.message`, else the status description, else empty (cut to 512 bytes).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `{METHOD} {http.route}` for a server span, `{METHOD} {server.address}` for a client
    /// span, else the span name.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// `http.response.status_code`, when the span has one.
    pub fn status_code(&self) -> Option<u16> {
        self.status_code
    }

    /// The trace the span belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span's `correlation.id` attribute (child spans often have none).
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// The span's `db.system` (or `db.system.name`) attribute: a database call.
    pub fn db_system(&self) -> Option<&str> {
        self.db_system.as_deref()
    }

    /// Reads the error off an ended span; `None` when the span is not an error.
    fn from_span(span: &SpanData) -> Option<Self> {
        let exception = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .map(|e| e.attributes.as_slice());
        let origin = match span.span_kind {
            SpanKind::Server => ErrorOrigin::Server,
            SpanKind::Client => ErrorOrigin::Client,
            _ => ErrorOrigin::Internal,
        };
        let status_error = match &span.status {
            Status::Error { description } => Some(description.as_ref()),
            _ => None,
        };
        let is_error =
            exception.is_some() || (status_error.is_some() && origin != ErrorOrigin::Internal);
        if !is_error {
            return None;
        }
        let attrs = span.attributes.as_slice();
        let error_class = string_attr(attrs, "error.type");
        let error_type = exception
            .and_then(|a| string_attr(a, "exception.type"))
            .or_else(|| error_class.clone())
            .unwrap_or_else(|| "error".to_owned());
        let message = exception
            .and_then(|a| string_attr(a, "exception.message"))
            .or_else(|| status_error.filter(|d| !d.is_empty()).map(bounded))
            .unwrap_or_default();
        let operation = operation_name(span);
        Some(Self {
            origin,
            error_type,
            error_class,
            message,
            operation,
            status_code: attr(attrs, "http.response.status_code").and_then(|v| match v {
                Value::I64(code) => u16::try_from(*code).ok(),
                Value::String(s) => s.as_str().parse().ok(),
                _ => None,
            }),
            trace_id: span.span_context.trace_id(),
            correlation_id: string_attr(attrs, "correlation.id"),
            db_system: string_attr(attrs, "db.system")
                .or_else(|| string_attr(attrs, "db.system.name")),
            time: span.end_time,
        })
    }

    #[cfg(test)]
    fn for_test(
        origin: ErrorOrigin,
        error_type: &str,
        status_code: Option<u16>,
        db_system: Option<&str>,
    ) -> Self {
        Self {
            origin,
            error_type: error_type.to_owned(),
            error_class: Some(error_type.to_owned()),
            message: String::new(),
            operation: "GET /test".to_owned(),
            status_code,
            trace_id: TraceId::INVALID,
            correlation_id: None,
            db_system: db_system.map(str::to_owned),
            time: SystemTime::now(),
        }
    }
}

/// `{METHOD} {http.route}` for a server span, `{METHOD} {server.address}` for a client span,
/// else the span name (each part cut to 512 bytes). Profiling keys its operations the same way.
pub(crate) fn operation_name(span: &SpanData) -> String {
    let attrs = span.attributes.as_slice();
    let method = string_attr(attrs, "http.request.method");
    match span.span_kind {
        SpanKind::Server => string_attr(attrs, "http.route").map(|route| {
            let method = method
                .unwrap_or_else(|| span.name.split(' ').next().map(bounded).unwrap_or_default());
            format!("{method} {route}")
        }),
        SpanKind::Client => string_attr(attrs, "server.address").map(|address| {
            let method = method.unwrap_or_else(|| bounded(&span.name));
            format!("{method} {address}")
        }),
        _ => None,
    }
    .unwrap_or_else(|| bounded(&span.name))
}

fn attr<'a>(attrs: &'a [KeyValue], key: &'static str) -> Option<&'a Value> {
    let key = Key::from_static_str(key);
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

pub(crate) fn string_attr(attrs: &[KeyValue], key: &'static str) -> Option<String> {
    attr(attrs, key).map(|v| match v {
        Value::String(s) => bounded(s.as_str()),
        other => bounded(&other.as_str()),
    })
}

fn bounded(s: &str) -> String {
    fingerprint::truncate(s, MAX_FIELD).to_owned()
}

type Classifier = dyn Fn(&ErrorEvent) -> Option<(Severity, Category)> + Send + Sync;

struct Shared {
    store: Mutex<Store>,
    classifier: Option<Arc<Classifier>>,
    max_groups: usize,
    rates: RouteRates,
}

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
pub struct ErrorTracking {
    shared: Arc<Shared>,
}

impl fmt::Debug for ErrorTracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorTracking")
            .field("max_groups", &self.shared.max_groups)
            .field("classifier", &self.shared.classifier.is_some())
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

    fn build(max_groups: usize, classifier: Option<Arc<Classifier>>, rates: RouteRates) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(max_groups)),
                classifier,
                max_groups: max_groups.max(1),
                rates,
            }),
        }
    }

    /// At most `max` groups (at least 1) are held. Call it before the tracker is used: it
    /// starts from no groups.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new().with_max_groups(50);
    /// ```
    pub fn with_max_groups(self, max: usize) -> Self {
        Self::build(
            max,
            self.shared.classifier.clone(),
            self.shared.rates.clone(),
        )
    }

    /// Overrides the classification: `classify` returns `Some((severity, category))` to decide,
    /// or `None` to keep the default. Call it before the tracker is used: it starts from no
    /// groups. It runs on the thread that ends the span, so keep it quick.
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
        Self::build(
            self.shared.max_groups,
            Some(Arc::new(classify)),
            self.shared.rates.clone(),
        )
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        match self.shared.store.lock() {
            Ok(store) => store,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Totals, per severity, category and operation, the top 10 groups, and the per-route
    /// rates ([`ErrorSummary::route_rates`]).
    pub fn summary(&self) -> ErrorSummary {
        let at = self.shared.rates.elapsed();
        let mut summary = self.store().summary();
        summary.set_rates(at, self.shared.rates.snapshot());
        summary
    }

    /// Every group held, most errors first.
    pub fn groups(&self) -> Vec<ErrorGroup> {
        let at = self.shared.rates.elapsed();
        let mut groups = self.store().groups();
        for group in &mut groups {
            group.set_as_of(at);
        }
        groups
    }

    /// The per-route request and error rates, fed by [`rates_observer`](Self::rates_observer).
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// assert!(errors.rates().snapshot().is_empty());
    /// ```
    pub fn rates(&self) -> &RouteRates {
        &self.shared.rates
    }

    /// An observer for the server layer that counts every request, sampled or not, into
    /// [`rates`](Self::rates); [`ServiceTracing`](crate::ServiceTracing) adds it.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// let layer =
    ///     service_tracing_middleware::TracingLayer::new().with_observer(errors.rates_observer());
    /// ```
    pub fn rates_observer(&self) -> impl service_tracing_middleware::RequestObserver {
        self.shared.rates.observer()
    }

    /// Records the span if it is an error.
    pub(crate) fn record(&self, span: &SpanData) {
        let Some(event) = ErrorEvent::from_span(span) else {
            return;
        };
        // The user's classifier must not take the span's thread down.
        let custom = self.shared.classifier.as_ref().and_then(|classify| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classify(&event)))
                .ok()
                .flatten()
        });
        let classified = custom.unwrap_or_else(|| classify::default_classification(&event));
        let fingerprint =
            fingerprint::fingerprint(&event.error_type, &event.operation, &event.message);
        let at = self.shared.rates.elapsed();
        let mut store = self.store();
        store.record(fingerprint, event, classified);
        store.observe(fingerprint, at);
    }

    /// A processor that records errors, then hands every span on to `next` (one processor
    /// in the provider, so the SDK does not clone each span for a second one).
    pub(crate) fn in_front_of<P: SpanProcessor>(&self, next: P) -> InFrontOf<P> {
        InFrontOf {
            errors: self.clone(),
            next,
        }
    }
}

impl SpanProcessor for ErrorTracking {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.record(&span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// [`ErrorTracking`] in front of another processor (see [`ErrorTracking::in_front_of`]).
#[derive(Debug)]
pub(crate) struct InFrontOf<P> {
    errors: ErrorTracking,
    next: P,
}

impl<P: SpanProcessor> SpanProcessor for InFrontOf<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.next.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.errors.record(&span);
        self.next.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.next.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.next.shutdown()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

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
