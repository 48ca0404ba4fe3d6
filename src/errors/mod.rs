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
//! **One failing request is one error.** A request that answers 5xx, panics, or has an error
//! recorded inside it counts once, in the group of its *root cause*, under its route template
//! (`GET /orders/{id}`):
//!
//! - a failed dependency call (the [client middleware](service_tracing_middleware) saw a
//!   transport error or a 4xx/5xx answer): the group is the call's error (`reqwest::Error`
//!   and its message) with category `dependency` (`timeout` when it timed out), and the call's
//!   target (`GET payments.internal`) is kept as [`ErrorGroup::targets`]. The call's client
//!   span keeps its own `exception` event, but does not make a second error;
//! - an error stated with [`record_error`] or [`record_error_as`] (which gives the category
//!   and severity), or a `tracing::error!` event ([`ErrorEvents`]);
//! - an error on a span of another instrumentation inside the request (a database span with
//!   `db.system` makes it `database`);
//! - the request's panic (`panic`, critical), or, with nothing recorded, its own 5xx
//!   (`application`).
//!
//! The first error recorded in the request is its root cause; later ones are part of the same
//! failure. The status codes of the group are those the requests answered.
//!
//! Outside any request (background jobs), each error counts on its own, as before:
//!
//! - a server span with status Error (a 5xx answer, a panic) from a layer without error
//!   tracking's observer;
//! - a client span with status Error (a transport error, a dependency's 4xx or 5xx);
//! - any span with an `exception` event.
//!
//! An internal span with status Error but no `exception` event is not counted: it usually
//! repeats the error of the request it belongs to.
//!
//! ## How a child's error reaches its request
//!
//! Spans end separately, children before the server span, and an unsampled request has no
//! spans at all, so the request's one error is not assembled from spans. Instead, the server
//! layer puts a small place for the request's root cause into the request's OpenTelemetry
//! `Context` (when an observer asks for it, as [`rates_observer`](ErrorTracking::rates_observer)
//! does; see [`service_tracing_middleware::cause`]). Whatever sees an error inside the request
//! reaches that place through `Context::current()` and states it there, first one wins: the
//! client middleware when a call fails, [`record_error`], [`ErrorEvents`], the layer when the
//! handler panics, sampled or not. When the request ends, the layer hands the cause to the
//! observer with the request's outcome, and the observer queues one error: the cause as it was
//! seen (classified as such), kept under the request's route. The span processor, for its
//! part, leaves the errors of spans ending inside such a request to it (a third-party span's
//! error becomes the root cause when it is the first), and skips the server span whose request
//! the observer has just counted (the layer ends it right after, on the same thread). On the
//! request path this costs one context value per request (a few allocations, measured in
//! BENCHMARKS.md) and, for a failing request, the cause's texts; no lock is shared between
//! requests and nothing is kept across requests.
//!
//! # Classification
//!
//! Each group has a [`Severity`] and a [`Category`]: stated where the error was recorded
//! ([`record_error_as`]), else from the [classifier](ErrorTracking::with_classifier) given at
//! set-up ([`ServiceTracing::error_classifier`](crate::ServiceTracing::error_classifier)),
//! else from the default rules, which recognise panics, security and validation statuses,
//! database spans, timeouts (`std::io::ErrorKind::TimedOut`, `tokio::time::error::Elapsed`,
//! types and messages that say timeout), database and SQL errors, refused connections and
//! failed calls. An error inside a request is classified as its root cause was seen.
//!
//! # Sampling
//!
//! A span processor only sees recorded spans. The server layer's observer
//! ([`ErrorTracking::rates_observer`], added by set-up) sees every request: it counts the
//! per-route requests, errors and ratios of [`ErrorSummary::route_rates`] ([`RouteRates`]), and
//! each failing request's one error, as above, sampled or not. An unsampled request's error
//! has no trace sample (no backend holds the trace). So errors inside requests are counted
//! whatever the sampler; errors outside requests are seen on recorded spans only and follow
//! sampling.
//!
//! # Backtraces
//!
//! [`record_error`] adds no backtrace unless [`set_backtrace_capture`] (or
//! [`ServiceTracing::error_backtraces`](crate::ServiceTracing::error_backtraces)) asks for
//! one, whatever `RUST_BACKTRACE` says: formatting a backtrace symbolises it on the request's
//! thread, which costs about 100 ms for the first error of a process and about 0.15 ms for each
//! later one.
//!
//! # Alerts, log records and redaction
//!
//! [`AlertRule`]s fire [`Alert`]s: on a count of a group's errors over a window, on a route's
//! error ratio, on a new group, or on a spike against the route's baseline, at most once per
//! cooldown for a group. Alerts go to [callbacks](ErrorTracking::with_alert_callback) and to a
//! [`Webhook`] (JSON POST, retried with backoff), and, with an OTLP exporter, new groups and
//! alerts are exported as OpenTelemetry log records to the traces' collector
//! (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` overrides the endpoint, `OTEL_LOGS_EXPORTER=none` turns
//! them off). All of it runs on background threads fed by bounded queues: recording an error
//! only queues a small signal; [`ErrorTracking::alert_stats`] counts what was delivered, failed
//! or dropped. Before anything is stored or sent, error types, messages and operations go
//! through the [`Redactor`] (e-mail addresses, credentials, secret `key=value` pairs, JWTs and
//! card-like numbers become `[REDACTED]`).
//!
//! ```no_run
//! use std::time::Duration;
//! use service_tracing::errors::{AlertRule, Window};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (app, guard) = service_tracing::ServiceTracing::builder("checkout")
//!     .otlp_endpoint("http://collector:4317")
//!     .alert_rule(AlertRule::count(20, Window::OneMinute).cooldown(Duration::from_secs(900)))
//!     .alert_rule(AlertRule::ratio(0.05, Window::FiveMinutes, 200))
//!     .alert_rule(AlertRule::new_group())
//!     .alert_webhook("http://alert-relay.internal:8080/hooks/errors")
//!     .alert_callback(|alert| eprintln!("alert {}: {}", alert.rule(), alert.group().message()))
//!     .init(axum::Router::<()>::new())?;
//! // ... serve requests ...
//! guard.shutdown()?; // waits for pending deliveries
//! # Ok(()) }
//! ```
//!
//! # Storage
//!
//! In memory and bounded: at most [`with_max_groups`](ErrorTracking::with_max_groups) groups
//! (default 1,000), the least recently seen evicted and counted
//! ([`ErrorSummary::evictions`]).
//!
//! # Sharing between replicas
//!
//! With the `redis` feature and a Redis URL
//! (`ErrorTracking::with_redis`, `ErrorTracking::with_sharing`,
//! `ServiceTracing::error_redis_url` or `SERVICE_TRACING_ERRORS_REDIS_URL`), replicas share
//! their groups, counts and route rates, so every replica's summary shows the fleet. The
//! request path still never leaves memory: a background thread pushes this replica's counts
//! and pulls the fleet's every second. Redis down or slow: requests are unaffected, tracking
//! goes on locally, [`ErrorTracking::storage_health`] says
//! [`Degraded`](ErrorStorageHealth::Degraded), and the thread reconnects by itself and then
//! pushes what it could not. How, and the keys it uses: the `shared` module (feature `redis`).
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let errors =
//!     service_tracing::errors::ErrorTracking::new().with_redis("redis://127.0.0.1:6379")?;
//! println!("{:?}: {} errors in the fleet", errors.storage_health(), errors.summary().total());
//! # Ok(()) }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```

mod alerts;
mod capture;
mod classify;
mod delivery;
mod fingerprint;
mod health;
pub(crate) mod logs;
mod notify;
mod rates;
#[cfg(feature = "redis")]
pub mod shared;
mod store;
mod webhook;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, SystemTime};

use crate::chain::InFrontOf;
use crossbeam_queue::ArrayQueue;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Context, Key, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

pub use alerts::{Alert, AlertKind, AlertRule, AlertStats, DEFAULT_COOLDOWN};
pub use capture::{record_error, record_error_as, set_backtrace_capture, ErrorEvents};
pub use classify::{Category, Severity};
pub use health::ErrorStorageHealth;
pub use rates::{RouteRate, RouteRates, Window, DEFAULT_MAX_KEYS, OTHER_OPERATION};
// The policy lives in `crate::redact`, shared by every exit; re-exported here as before.
pub use crate::redact::{Redactor, REDACTED};
#[cfg(feature = "redis")]
pub use shared::{RedisSharing, DEFAULT_PREFIX};
pub use store::{ErrorGroup, ErrorSummary};
pub use webhook::Webhook;

use store::Store;

use alerts::Signal;
pub(crate) use notify::AlertOptions;
use notify::{AlertConfig, Notifier};

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
    span_id: SpanId,
    correlation_id: Option<String>,
    db_system: Option<String>,
    time: SystemTime,
    /// The request it happened in, when it happened in one: its operation and status.
    request: Option<RequestPart>,
    /// The failed call's target (or where else it failed), for an error inside a request.
    target: Option<String>,
    /// Severity and category stated where the error was recorded ([`record_error_as`]).
    classification: Option<(Severity, Category)>,
}

/// The request an error happened in.
#[derive(Clone, Debug)]
struct RequestPart {
    operation: String,
    status_code: Option<u16>,
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

    /// For an error inside a request: the request's operation (`{METHOD} {route}`), under
    /// which its group is kept. The error itself is described by the other fields as it was
    /// seen: a failed call has origin [`Client`](ErrorOrigin::Client), its target as
    /// [`operation`](Self::operation) and the dependency's status as
    /// [`status_code`](Self::status_code). `None` for an error outside any request.
    ///
    /// ```
    /// use service_tracing::errors::{Category, ErrorOrigin, ErrorTracking, Severity};
    /// // Calls to payments that fail inside checkout requests are critical.
    /// let errors = ErrorTracking::new().with_classifier(|event| {
    ///     (event.origin() == ErrorOrigin::Client
    ///         && event.operation().contains("payments")
    ///         && event.request_operation() == Some("POST /checkout"))
    ///         .then_some((Severity::Critical, Category::Dependency))
    /// });
    /// ```
    pub fn request_operation(&self) -> Option<&str> {
        self.request.as_ref().map(|r| r.operation.as_str())
    }

    /// For an error inside a request: the status the request answered, when it answered.
    ///
    /// ```
    /// use service_tracing::errors::{Category, ErrorTracking, Severity};
    /// // A dependency's 404 that made the request answer 5xx is not a routine 404.
    /// let errors = ErrorTracking::new().with_classifier(|event| {
    ///     (event.status_code() == Some(404) && event.request_status_code() >= Some(500))
    ///         .then_some((Severity::High, Category::Dependency))
    /// });
    /// ```
    pub fn request_status_code(&self) -> Option<u16> {
        self.request.as_ref().and_then(|r| r.status_code)
    }

    /// Severity and category stated where the error was recorded
    /// ([`record_error_as`]); they win over any classifier.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new().with_classifier(|event| {
    ///     // Never reached for stated errors, which keep what was stated.
    ///     assert!(event.stated_classification().is_none());
    ///     None
    /// });
    /// ```
    pub fn stated_classification(&self) -> Option<(Severity, Category)> {
        self.classification
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
        let error_class = exception
            .and_then(|a| string_attr(a, "error.type"))
            .or_else(|| string_attr(attrs, "error.type"));
        let classification = exception.and_then(|a| {
            let severity = Severity::from_name(&string_attr(a, "error.severity")?)?;
            let category = Category::from_name(&string_attr(a, "error.category")?)?;
            Some((severity, category))
        });
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
            span_id: span.span_context.span_id(),
            correlation_id: string_attr(attrs, "correlation.id"),
            db_system: string_attr(attrs, "db.system")
                .or_else(|| string_attr(attrs, "db.system.name")),
            time: span.end_time,
            request: None,
            target: None,
            classification,
        })
    }

    /// The error of a request that failed or had an error recorded inside it, sampled or
    /// not: the root cause as it was seen (or the request's own `5xx`, `panic`... when nothing
    /// was recorded), kept under the request's operation.
    fn from_request(outcome: &service_tracing_middleware::RequestOutcome<'_>) -> Option<Self> {
        let error_type = match (outcome.error_cause, outcome.error_type) {
            (None, None) => return None,
            (Some(cause), _) => cause.error_type(),
            (None, Some(error_type)) => error_type,
        };
        let operation = bounded(&crate::operations::server_operation(
            outcome.method,
            outcome.route,
        ));
        // Samples point at traces a backend holds.
        let (trace_id, span_id) = if outcome.sampled {
            (outcome.trace_id, outcome.span_id)
        } else {
            (TraceId::INVALID, SpanId::INVALID)
        };
        let mut event = Self {
            origin: ErrorOrigin::Server,
            error_type: bounded(error_type),
            error_class: outcome.error_type.map(bounded),
            message: String::new(),
            operation: operation.clone(),
            status_code: outcome.status,
            trace_id,
            span_id,
            correlation_id: Some(bounded(outcome.correlation_id.as_str())),
            db_system: None,
            time: SystemTime::now(),
            request: Some(RequestPart {
                operation,
                status_code: outcome.status,
            }),
            target: None,
            classification: None,
        };
        if let Some(cause) = outcome.error_cause {
            event.origin = if cause.is_call() {
                ErrorOrigin::Client
            } else if cause.error_class() == Some("panic") {
                ErrorOrigin::Server
            } else {
                ErrorOrigin::Internal
            };
            event.error_class = cause.error_class().map(bounded);
            event.message = bounded(cause.message());
            event.target = cause.target().map(bounded);
            if let Some(target) = &event.target {
                event.operation.clone_from(target);
            }
            if cause.is_call() {
                event.status_code = cause.status_code();
            }
            event.db_system = cause.db_system().map(bounded);
            event.classification = cause.classification();
        }
        Some(event)
    }

    /// The error as the root cause of the request it happened in.
    fn to_cause(&self) -> service_tracing_middleware::ErrorCause {
        use service_tracing_middleware::ErrorCause;
        let error_type = self.error_type.clone();
        let mut cause = match self.origin {
            ErrorOrigin::Client => {
                ErrorCause::call(self.operation.clone(), error_type, self.message.clone())
            }
            _ => ErrorCause::new(error_type, self.message.clone())
                .with_target(self.operation.clone()),
        };
        if let Some(class) = &self.error_class {
            cause = cause.with_class(class.clone());
        }
        if let Some(status) = self.status_code {
            cause = cause.with_status_code(status);
        }
        if let Some(system) = &self.db_system {
            cause = cause.with_db_system(system.clone());
        }
        if let Some((severity, category)) = self.classification {
            cause = cause.with_classification(severity, category);
        }
        cause
    }

    /// Keys the error by the request it happened in: its operation and status become the
    /// group's, and where it failed becomes the group's target. Done after classification,
    /// which sees the error as it was.
    fn into_request_key(mut self) -> Self {
        if let Some(request) = self.request.take() {
            self.operation = request.operation;
            self.status_code = request.status_code;
        }
        self
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
            span_id: SpanId::INVALID,
            correlation_id: None,
            db_system: db_system.map(str::to_owned),
            time: SystemTime::now(),
            request: None,
            target: None,
            classification: None,
        }
    }
}

/// `{METHOD} {http.route}` for a server span, `{METHOD} {server.address}` for a client span,
/// else the span name (each part cut to 512 bytes). Profiling keys its operations the same way.
/// [`operation_name`] without building it when the span's name already is it: a server span
/// the layer named `{method} {route}` (its name is interned, so cloning it costs nothing).
pub(crate) fn operation_name_of(span: &SpanData) -> std::borrow::Cow<'static, str> {
    if span.span_kind == SpanKind::Server {
        let attrs = span.attributes.as_slice();
        let text = |key| match attr(attrs, key) {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        if let (Some(method), Some(route)) = (text("http.request.method"), text("http.route")) {
            let name: &str = &span.name;
            let named_so = name.len() == method.len() + 1 + route.len()
                && name.starts_with(method)
                && name.as_bytes()[method.len()] == b' '
                && name.ends_with(route);
            if named_so && method.len() <= MAX_FIELD && route.len() <= MAX_FIELD {
                return span.name.clone();
            }
        }
    }
    std::borrow::Cow::Owned(operation_name(span))
}

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

pub(crate) type Classifier = dyn Fn(&ErrorEvent) -> Option<(Severity, Category)> + Send + Sync;

struct Shared {
    store: Mutex<Store>,
    classifier: Option<Arc<Classifier>>,
    max_groups: usize,
    rates: RouteRates,
    /// Errors read off ended spans, waiting to be classified, fingerprinted and stored.
    pending: ArrayQueue<ErrorEvent>,
    /// Starts the thread that drains `pending`, on the first error.
    drainer: Once,
    /// Held while draining, so a reader waits for errors another drain has taken but not yet
    /// stored, and errors are stored in the order they ended.
    draining: Mutex<()>,
    options: Options,
    notifier: Notifier,
    /// Sharing through Redis, when configured ([`ErrorTracking::with_sharing`]).
    #[cfg(feature = "redis")]
    sharing: Option<shared::Sharing>,
}

/// Redaction and alerting settings, kept across rebuilds by the other builder methods.
#[derive(Clone, Default)]
struct Options {
    redactor: Redactor,
    alerts: AlertConfig,
}

/// How many errors may wait for the background thread; beyond that the thread that ends the
/// span stores its error itself (slower, nothing lost).
const PENDING: usize = 2_048;
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
        Self::build_with(max_groups, classifier, rates, Options::default())
    }

    fn build_with(
        max_groups: usize,
        classifier: Option<Arc<Classifier>>,
        rates: RouteRates,
        options: Options,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
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
        if let Some(sharing) = &self.shared.sharing {
            return rebuilt.with_sharing(sharing.config().clone());
        }
        let _ = self;
        rebuilt
    }

    /// Shares groups, counts and rates with every replica using the same Redis and prefix
    /// (feature `redis`); see [`RedisSharing`] for the options and [`shared`] for how.
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
            self.shared.max_groups,
            self.shared.classifier.clone(),
            self.shared.rates.clone(),
        );
        let (handle, worker) = shared::Sharing::new(sharing);
        if let Some(state) = Arc::get_mut(&mut rebuilt.shared) {
            state.sharing = Some(handle);
            worker.spawn(Arc::downgrade(&rebuilt.shared));
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
        match &self.shared.sharing {
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
        if let Some(sharing) = &self.shared.sharing {
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
            self.shared.classifier.clone(),
            self.shared.rates.clone(),
            self.shared.options.clone(),
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
            self.shared.max_groups,
            Some(Arc::new(classify)),
            self.shared.rates.clone(),
            self.shared.options.clone(),
        );
        self.keep_sharing(rebuilt)
    }

    /// [`with_classifier`](Self::with_classifier) with a classifier set-up holds.
    pub(crate) fn with_shared_classifier(self, classify: Arc<Classifier>) -> Self {
        let rebuilt = Self::build_with(
            self.shared.max_groups,
            Some(classify),
            self.shared.rates.clone(),
            self.shared.options.clone(),
        );
        self.keep_sharing(rebuilt)
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
        self.drain();
        let at = self.shared.rates.elapsed();
        #[cfg(feature = "redis")]
        if let Some(summary) = self
            .shared
            .sharing
            .as_ref()
            .and_then(|s| s.summary(&self.shared, at))
        {
            return summary;
        }
        let mut summary = self.store().summary();
        summary.set_rates(at, self.shared.rates.snapshot());
        summary
    }

    /// Every group held, most errors first.
    pub fn groups(&self) -> Vec<ErrorGroup> {
        self.drain();
        let at = self.shared.rates.elapsed();
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
        if let Some(sharing) = &self.shared.sharing {
            return sharing.groups(&self.shared);
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
        &self.shared.rates
    }

    /// An observer for the server layer that counts every request, sampled or not, into
    /// [`rates`](Self::rates), and counts each failing request once, under its root cause
    /// (see [What counts as an error](self#what-counts-as-an-error));
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
    fn record_request(&self, outcome: &service_tracing_middleware::RequestOutcome<'_>) {
        let Some(event) = ErrorEvent::from_request(outcome) else {
            return;
        };
        if outcome.sampled {
            // The server span ends right after this, on this thread: its error is this one.
            COUNTED_SERVER_SPAN.set(Some((outcome.trace_id, outcome.span_id)));
        }
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

    /// Hands the error to the background thread, or stores it at once when the queue is full.
    fn enqueue(&self, event: ErrorEvent) {
        self.start_drainer();
        if let Err(event) = self.shared.pending.push(event) {
            self.ingest(event);
        }
    }

    fn start_drainer(&self) {
        self.shared.drainer.call_once(|| {
            // Without the thread, errors wait until a reader drains them: still counted.
            let _ = crate::background::spawn_while_alive(
                "service-tracing-errors",
                DRAIN_EVERY,
                Arc::downgrade(&self.shared),
                |shared| {
                    ErrorTracking { shared }.drain();
                    true
                },
            );
        });
    }

    /// Stores every error waiting in the queue.
    fn drain(&self) {
        let _draining = match self.shared.draining.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        while let Some(event) = self.shared.pending.pop() {
            self.ingest(event);
        }
    }

    /// Redacts, classifies, fingerprints and stores one error, and tells the alerting thread.
    fn ingest(&self, mut event: ErrorEvent) {
        self.redact(&mut event);
        // Stated where it was recorded, else the user's classifier, else the defaults. The
        // user's classifier must not take the thread down.
        let classified = event.classification.unwrap_or_else(|| {
            let custom = self.shared.classifier.as_ref().and_then(|classify| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| classify(&event)))
                    .ok()
                    .flatten()
            });
            custom.unwrap_or_else(|| classify::default_classification(&event))
        });
        let event = event.into_request_key();
        let fingerprint =
            fingerprint::fingerprint(&event.error_type, &event.operation, &event.message);
        let at = self.shared.rates.elapsed();
        let (trace_id, span_id) = (event.trace_id, event.span_id);
        let mut store = self.store();
        let is_new = store.record(fingerprint, event, classified);
        store.observe(fingerprint, at);
        drop(store);
        if self.shared.notifier.is_active() {
            let signal = Signal {
                fingerprint,
                is_new,
                trace_id,
                span_id,
            };
            self.shared.notifier.signal(signal, || self.lookup());
        }
    }

    /// A processor that records errors, then hands every span on to `next` (one processor
    /// in the provider, so the SDK does not clone each span for a second one).
    pub(crate) fn in_front_of<P: SpanProcessor>(&self, next: P) -> InFrontOf<Self, P> {
        InFrontOf::new(self.clone(), next)
    }
}

thread_local! {
    /// The sampled server span whose request [`RequestErrorsObserver`] has just counted; the
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
        self.errors.shared.rates.record_outcome(outcome);
        self.errors.record_request(outcome);
    }

    fn wants_error_cause(&self) -> bool {
        true
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

    #[test]
    fn the_interned_operation_name_is_the_built_one_and_only_used_when_it_is() {
        let span =
            |kind: SpanKind, name: &str, attrs: Vec<KeyValue>| opentelemetry_sdk::trace::SpanData {
                span_context: opentelemetry::trace::SpanContext::empty_context(),
                parent_span_id: opentelemetry::trace::SpanId::INVALID,
                parent_span_is_remote: false,
                span_kind: kind,
                name: std::borrow::Cow::Owned(name.to_owned()),
                start_time: std::time::SystemTime::UNIX_EPOCH,
                end_time: std::time::SystemTime::UNIX_EPOCH,
                attributes: attrs,
                dropped_attributes_count: 0,
                events: Default::default(),
                links: Default::default(),
                status: Status::Unset,
                instrumentation_scope: Default::default(),
            };
        let route = |r: &str| {
            vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", r.to_owned()),
                KeyValue::new("server.address", "db"),
            ]
        };
        let long = format!("/{}", "r".repeat(MAX_FIELD + 10));
        for data in [
            span(SpanKind::Server, "GET /orders/{id}", route("/orders/{id}")),
            span(SpanKind::Server, "renamed", route("/orders/{id}")),
            span(SpanKind::Server, "GET /orders/{idx}", route("/orders/{id}")),
            span(SpanKind::Server, &format!("GET {long}"), route(&long)),
            span(SpanKind::Server, "GET", vec![]),
            span(SpanKind::Client, "GET", route("/x")),
            span(SpanKind::Internal, "work", vec![]),
        ] {
            assert_eq!(
                operation_name_of(&data),
                operation_name(&data),
                "{}",
                data.name
            );
        }
    }

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
        assert!(errors.shared.pending.is_empty());
        // More errors than the queue holds: none is lost.
        let flood = PENDING * 2 + 5;
        for _ in 0..flood {
            server_span(&provider, 503, None);
        }
        assert!(errors.shared.pending.len() <= PENDING);
        assert_eq!(errors.summary().total(), 1 + flood as u64);
        assert!(errors.shared.pending.is_empty(), "readers drain first");
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

        let (layer, guard) = crate::ServiceTracing::builder("svc")
            .env_lookup(|_| None)
            .install_subscriber(false)
            .exporter(crate::TracesExporter::None)
            .error_classifier(|event| {
                (event.request_operation() == Some("GET /fail"))
                    .then_some((Severity::Low, Category::Security))
            })
            .init_layer()
            .unwrap_or_else(|e| panic!("{e}"));
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
        let errors = guard
            .errors()
            .unwrap_or_else(|| panic!("error tracking is on"));
        let groups = errors.groups();
        let of = |operation: &str| classification_on(&groups, operation);
        assert_eq!(of("GET /fail"), (Severity::Low, Category::Security));
        assert_eq!(of("GET /other"), (Severity::High, Category::Application));
        assert_eq!(of("GET /stated"), (Severity::Medium, Category::Database));
        let _ = guard.shutdown();
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
