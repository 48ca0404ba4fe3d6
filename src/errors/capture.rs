//! Errors the application reports itself: [`record_error`] for any `std::error::Error`, and
//! `tracing` events at level `ERROR` inside a traced request ([`ErrorEventLayer`]).
//!
//! Both become an `exception` event on the current span, per the OpenTelemetry semantic
//! conventions for exceptions, which [`ErrorTracking`](super::ErrorTracking) then groups like
//! any other error.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::error::Error;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use service_tracing_middleware::cause::{self, ErrorCause};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::Layer;

use super::classify::{Category, Severity};

/// Longest `exception.message` or `exception.stacktrace` written, in bytes.
const MAX_TEXT: usize = 4096;
/// Deepest `source()` chain followed.
const MAX_SOURCES: usize = 16;

/// Records `error` on the current span as an `exception` event and marks the span failed.
///
/// The event follows the semantic conventions: `exception.type` is the error's Rust type,
/// `exception.message` its `Display`, and `exception.stacktrace` keeps its
/// [`source()`](Error::source) chain (`Caused by:` lines, as `anyhow` prints them), followed by
/// a backtrace only when [`set_backtrace_capture`] turned that on. Texts are cut to 4 KiB. The
/// span's status becomes Error with the message. A `std::io::ErrorKind::TimedOut` or a
/// `tokio::time::error::Elapsed` (the error or one of its sources) also sets the event's
/// `error.type` to `timeout`, which the default classification reads.
///
/// Inside a traced request the current span is the request's server span (or the `tracing`
/// span the handler is in); outside any span it does nothing. Inside a request, sampled or not,
/// the error is also the request's root cause unless one was recorded before it: error
/// tracking counts the request once, under this error, on the request's route
/// ([`ErrorTracking`](super::ErrorTracking)). To state the category and severity yourself, use
/// [`record_error_as`].
///
/// ```
/// # #[derive(Debug)] struct NotFound(u64);
/// # impl std::fmt::Display for NotFound {
/// #     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
/// #         write!(f, "order {} not found", self.0)
/// #     }
/// # }
/// # impl std::error::Error for NotFound {}
/// async fn get_order(id: u64) -> Result<String, axum::http::StatusCode> {
///     let lookup: Result<String, NotFound> = Err(NotFound(id));
///     lookup.map_err(|e| {
///         service_tracing::errors::record_error(&e);
///         axum::http::StatusCode::NOT_FOUND
///     })
/// }
/// ```
pub fn record_error<E: Error + ?Sized>(error: &E) {
    record(error, None);
}

/// [`record_error`], stating the error's category and severity: error tracking keeps them
/// rather than classifying (they win over the default rules and over a classifier given with
/// [`ErrorTracking::with_classifier`](super::ErrorTracking::with_classifier)). The `exception`
/// event carries them as `error.category` and `error.severity`.
///
/// ```
/// use service_tracing::errors::{record_error_as, Category, Severity};
///
/// async fn load_order(id: u64) -> Result<String, axum::http::StatusCode> {
///     let query: Result<String, std::io::Error> = Err(std::io::Error::other("relation missing"));
///     query.map_err(|e| {
///         record_error_as(&e, Category::Database, Severity::High);
///         axum::http::StatusCode::INTERNAL_SERVER_ERROR
///     })
/// }
/// ```
pub fn record_error_as<E: Error + ?Sized>(error: &E, category: Category, severity: Severity) {
    record(error, Some((severity, category)));
}

/// Whether [`record_error`] adds a backtrace to `exception.stacktrace`. Off by default, even
/// with `RUST_BACKTRACE=1` (common in containers): formatting a backtrace symbolises it on the
/// request's thread, which costs about 100 ms the first time in a process and about 0.15 ms
/// each time after. [`ServiceTracing::error_backtraces`](crate::ServiceTracing::error_backtraces)
/// sets it.
///
/// ```
/// service_tracing::errors::set_backtrace_capture(false);
/// ```
pub fn set_backtrace_capture(enabled: bool) {
    BACKTRACES.store(enabled, Ordering::Relaxed);
}

static BACKTRACES: AtomicBool = AtomicBool::new(false);

/// Calls `f` with the current context when an error seen now has somewhere to go: the current
/// span records (`recording`), or the context is inside an open request (`in_request`).
fn with_error_destination(f: impl FnOnce(&Context, bool, bool)) {
    Context::map_current(|cx| {
        let recording = cx.span().is_recording();
        let in_request = cause::in_open_request(cx);
        if recording || in_request {
            f(cx, recording, in_request);
        }
    });
}

fn record<E: Error + ?Sized>(error: &E, stated: Option<(Severity, Category)>) {
    with_error_destination(|cx, recording, in_request| {
        let error_type = std::any::type_name::<E>();
        let message = bounded(error.to_string());
        let timeout = is_timeout(error, error_type);
        if in_request {
            cause::record_cause(cx, || {
                let mut cause = ErrorCause::new(error_type, message.clone());
                if timeout {
                    cause = cause.with_class("timeout");
                }
                if let Some((severity, category)) = stated {
                    cause = cause.with_classification(severity, category);
                }
                cause
            });
        }
        if !recording {
            return;
        }
        let mut attributes = exception_attributes(error, error_type, &message, timeout);
        if let Some((severity, category)) = stated {
            attributes.push(KeyValue::new("error.category", category.as_str()));
            attributes.push(KeyValue::new("error.severity", severity.as_str()));
        }
        let span = cx.span();
        span.add_event("exception", attributes);
        span.set_status(Status::error(message));
    });
}

/// One error as an `exception` event states it: [`exception_attributes`] and what they were
/// made from, for the work spans (`crate::work`), which record on their own span rather than
/// the current one.
pub(crate) struct Exception {
    /// `exception.type`: the error's Rust type.
    pub(crate) error_type: &'static str,
    /// `exception.message`, cut to 4 KiB.
    pub(crate) message: String,
    /// Whether it is a timeout ([`is_timeout`]).
    pub(crate) timeout: bool,
    /// The event's attributes.
    pub(crate) attributes: Vec<KeyValue>,
}

impl Exception {
    /// `error` described, as [`record_error`] would.
    pub(crate) fn of<E: Error + ?Sized>(error: &E) -> Self {
        let error_type = std::any::type_name::<E>();
        let message = bounded(error.to_string());
        let timeout = is_timeout(error, error_type);
        let attributes = exception_attributes(error, error_type, &message, timeout);
        Self {
            error_type,
            message,
            timeout,
            attributes,
        }
    }
}

/// `exception.type`, `exception.message`, `exception.stacktrace` (the source chain, then a
/// backtrace when [`set_backtrace_capture`] turned that on) and, for a timeout, `error.type`.
fn exception_attributes<E: Error + ?Sized>(
    error: &E,
    error_type: &'static str,
    message: &str,
    timeout: bool,
) -> Vec<KeyValue> {
    let mut stacktrace = String::new();
    let mut source = error.source();
    let mut depth = 0;
    while let Some(cause) = source {
        if depth == 0 {
            stacktrace.push_str("Caused by:");
        }
        if depth == MAX_SOURCES || stacktrace.len() >= MAX_TEXT {
            stacktrace.push_str("\n    ...");
            break;
        }
        let _ = write!(stacktrace, "\n    {depth}: {cause}");
        source = cause.source();
        depth += 1;
    }
    if BACKTRACES.load(Ordering::Relaxed) {
        let backtrace = Backtrace::force_capture();
        if backtrace.status() == BacktraceStatus::Captured {
            if !stacktrace.is_empty() {
                stacktrace.push_str("\n\n");
            }
            let _ = write!(stacktrace, "Stack backtrace:\n{backtrace}");
        }
    }
    let mut attributes = vec![
        KeyValue::new("exception.type", error_type),
        KeyValue::new("exception.message", message.to_owned()),
    ];
    if !stacktrace.is_empty() {
        attributes.push(KeyValue::new("exception.stacktrace", bounded(stacktrace)));
    }
    if timeout {
        attributes.push(KeyValue::new("error.type", "timeout"));
    }
    attributes
}

/// Whether the error is a timeout by its type: a `std::io::ErrorKind::TimedOut` or a
/// `tokio::time::error::Elapsed`, itself or among its first sources. (The error itself cannot
/// be downcast without a `'static` bound `record_error` does not ask for, so it is recognised
/// by its type name, and an `io::Error`'s kind by its `Debug` form; sources are downcast.)
fn is_timeout<E: Error + ?Sized>(error: &E, type_name: &str) -> bool {
    if type_name == std::any::type_name::<tokio::time::error::Elapsed>() {
        return true;
    }
    if type_name == std::any::type_name::<std::io::Error>() {
        let mut debug = String::new();
        let _ = write!(Bounded(&mut debug), "{error:?}");
        if debug.contains("TimedOut") {
            return true;
        }
    }
    let mut source = error.source();
    for _ in 0..MAX_SOURCES {
        let Some(cause) = source else {
            break;
        };
        if cause.is::<tokio::time::error::Elapsed>()
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn bounded(text: String) -> String {
    service_tracing_middleware::semconv::truncate(text, MAX_TEXT)
}

/// A `tracing` layer that turns each event at level `ERROR` inside a traced request into an
/// `exception` event on the current OpenTelemetry span, so `tracing::error!` lines reach
/// [error tracking](super::ErrorTracking).
///
/// `exception.message` is the event's message (with its `error` field appended when it has
/// one), `exception.type` the event's target (its module path unless set). Inside a request,
/// sampled or not, the event is also the request's root cause unless one was recorded before
/// it ([`record_error`]). Events outside any recording span and any request are left alone. It is part of the bridge layer that
/// [`ServiceTracing`](crate::ServiceTracing) installs and that
/// [`TracingGuard::bridge_layer`](crate::TracingGuard::bridge_layer) hands out; add it by
/// hand only when building a subscriber without those.
///
/// ```
/// use tracing_subscriber::prelude::*;
/// let subscriber =
///     tracing_subscriber::registry().with(service_tracing::errors::ErrorEventLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     tracing::error!(order = 42, "payment declined"); // no span current: nothing recorded
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
#[must_use]
pub struct ErrorEventLayer;

impl ErrorEventLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S: Subscriber> Layer<S> for ErrorEventLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        if *event.metadata().level() != Level::ERROR {
            return;
        }
        with_error_destination(|cx, recording, in_request| {
            let mut fields = MessageFields::default();
            event.record(&mut fields);
            let mut message = fields.message;
            if let Some(error) = fields.error {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&error);
            }
            let message = bounded(message);
            let target = event.metadata().target();
            if in_request {
                cause::record_cause(cx, || ErrorCause::new(target.to_owned(), message.clone()));
            }
            if recording {
                cx.span().add_event(
                    "exception",
                    vec![
                        KeyValue::new("exception.type", target.to_owned()),
                        KeyValue::new("exception.message", message),
                    ],
                );
            }
        });
    }
}

/// The former name of [`ErrorEventLayer`], too close to [`ErrorEvent`](super::ErrorEvent).
#[deprecated(note = "renamed `ErrorEventLayer`")]
#[doc(hidden)]
pub type ErrorEvents = ErrorEventLayer;

/// The former unit value `ErrorEvents`, so `.with(ErrorEvents)` still builds (a type alias
/// alone would not be a value).
#[deprecated(note = "renamed `ErrorEventLayer`")]
#[doc(hidden)]
#[allow(non_upper_case_globals)]
pub const ErrorEvents: ErrorEventLayer = ErrorEventLayer;

/// The `message` and `error` fields of an event, each bounded.
#[derive(Default)]
struct MessageFields {
    message: String,
    error: Option<String>,
}

impl MessageFields {
    fn write(target: &mut String, value: &dyn fmt::Debug) {
        let _ = write!(Bounded(target), "{value:?}");
    }
}

impl Visit for MessageFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => Self::write(&mut self.message, value),
            "error" => Self::write(self.error.get_or_insert_with(String::new), value),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// A writer that stops taking text at [`MAX_TEXT`] bytes, so a huge field costs no more.
struct Bounded<'a>(&'a mut String);

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_TEXT.saturating_sub(self.0.len());
        self.0.push_str(super::fingerprint::truncate(s, room));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SpanData;
    use tracing_subscriber::prelude::*;

    use crate::testing::TestTracing;

    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("loading order 42 failed")
        }
    }

    impl Error for Outer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    /// The span `run` ran in, as the set-up's exporter receives it (error tracking and
    /// redaction included).
    fn in_span(run: impl FnOnce()) -> SpanData {
        let tracing = TestTracing::new("orders").expect("set-up");
        let provider = tracing.tracer_provider().expect("tracing is on");
        provider
            .tracer("t")
            .in_span("GET /orders/{id}", |_cx| run());
        let mut spans = tracing.spans().to_vec();
        assert_eq!(spans.len(), 1);
        spans.remove(0)
    }

    fn exception(span: &SpanData) -> Vec<(String, String)> {
        let event = span
            .events
            .iter()
            .find(|e| e.name == "exception")
            .unwrap_or_else(|| panic!("no exception event on {span:#?}"));
        event
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    fn value<'a>(attributes: &'a [(String, String)], key: &str) -> &'a str {
        attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {key} in {attributes:?}"))
    }

    #[test]
    fn record_error_writes_type_message_and_the_source_chain() {
        let span = in_span(|| {
            record_error(&Outer(std::io::Error::other("disk 3 is full")));
        });
        let attributes = exception(&span);
        assert!(value(&attributes, "exception.type").ends_with("Outer"));
        assert_eq!(
            value(&attributes, "exception.message"),
            "loading order 42 failed"
        );
        assert!(value(&attributes, "exception.stacktrace")
            .starts_with("Caused by:\n    0: disk 3 is full"));
        assert_eq!(
            span.status,
            Status::error("loading order 42 failed"),
            "the span is marked failed"
        );
    }

    #[test]
    fn backtraces_are_off_unless_turned_on_even_with_rust_backtrace() {
        // Containers often set it; formatting a backtrace on the request's thread costs about
        // 100 ms for the first error of a process. (nextest runs each test in its own process.)
        std::env::set_var("RUST_BACKTRACE", "1");
        let stacktrace = |span: &SpanData| {
            exception(span)
                .into_iter()
                .find(|(k, _)| k == "exception.stacktrace")
                .map(|(_, v)| v)
                .unwrap_or_default()
        };
        let error = || Outer(std::io::Error::other("disk 3 is full"));
        let quiet = in_span(|| record_error(&error()));
        assert!(
            !stacktrace(&quiet).contains("Stack backtrace"),
            "{}",
            stacktrace(&quiet)
        );
        assert!(stacktrace(&quiet).starts_with("Caused by:"));
        set_backtrace_capture(true);
        let asked = in_span(|| record_error(&error()));
        set_backtrace_capture(false);
        assert!(stacktrace(&asked).contains("Stack backtrace:"));
    }

    #[test]
    fn record_error_as_states_category_and_severity_on_the_event() {
        let span = in_span(|| {
            record_error_as(
                &std::io::Error::other("row locked"),
                Category::Database,
                Severity::High,
            );
        });
        let attributes = exception(&span);
        assert_eq!(value(&attributes, "error.category"), "database");
        assert_eq!(value(&attributes, "error.severity"), "high");
        let timeout = in_span(|| {
            record_error(&std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "stock service slow",
            ));
        });
        assert_eq!(value(&exception(&timeout), "error.type"), "timeout");
    }

    #[test]
    fn record_error_outside_a_span_does_nothing_and_huge_messages_are_cut() {
        record_error(&std::io::Error::other("nobody listens"));
        let huge = "x".repeat(100_000);
        let span = in_span(|| record_error(&std::io::Error::other(huge)));
        let attributes = exception(&span);
        assert_eq!(value(&attributes, "exception.message").len(), MAX_TEXT);
    }

    #[test]
    fn error_events_become_exception_events_and_other_levels_do_not() {
        let subscriber = tracing_subscriber::registry().with(ErrorEventLayer::new());
        let span = tracing::subscriber::with_default(subscriber, || {
            in_span(|| {
                tracing::warn!("slow disk");
                tracing::error!(
                    target: "orders::db",
                    error = %std::io::Error::other("connection reset"),
                    "query failed"
                );
            })
        });
        let exceptions: Vec<_> = span
            .events
            .iter()
            .filter(|e| e.name == "exception")
            .collect();
        assert_eq!(exceptions.len(), 1, "only the ERROR event: {span:#?}");
        let attributes = exception(&span);
        assert_eq!(value(&attributes, "exception.type"), "orders::db");
        assert_eq!(
            value(&attributes, "exception.message"),
            "query failed: connection reset"
        );
    }
}
