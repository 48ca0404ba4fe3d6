//! One error as read from an ended span or a failed request ([`ErrorEvent`]), before it is
//! classified, fingerprinted and grouped.

use std::time::SystemTime;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;

use super::classify::{Category, Severity};
#[cfg(doc)]
use super::{record_error_as, ErrorTracking};
use crate::attributes::{attr, bounded, string_attr};
use crate::operation::operation_name;

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
    pub(super) origin: ErrorOrigin,
    pub(super) error_type: String,
    pub(super) error_class: Option<String>,
    pub(super) message: String,
    pub(super) operation: String,
    pub(super) status_code: Option<u16>,
    pub(super) trace_id: TraceId,
    pub(super) span_id: SpanId,
    pub(super) correlation_id: Option<String>,
    pub(super) db_system: Option<String>,
    pub(super) time: SystemTime,
    /// The request it happened in, when it happened in one: its operation and status.
    pub(super) request: Option<RequestPart>,
    /// The failed call's target (or where else it failed), for an error inside a request.
    pub(super) target: Option<String>,
    /// Severity and category stated where the error was recorded ([`record_error_as`]).
    pub(super) classification: Option<(Severity, Category)>,
}

/// The request an error happened in.
#[derive(Clone, Debug)]
pub(super) struct RequestPart {
    pub(super) operation: String,
    pub(super) status_code: Option<u16>,
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
    pub(super) fn from_span(span: &SpanData) -> Option<Self> {
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
    pub(super) fn from_request(
        outcome: &service_tracing_middleware::RequestOutcome<'_>,
    ) -> Option<Self> {
        let error_type = match (outcome.error_cause, outcome.error_type) {
            (None, None) => return None,
            (Some(cause), _) => cause.error_type(),
            (None, Some(error_type)) => error_type,
        };
        let operation = bounded(&crate::operation::server_operation(
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
    pub(super) fn to_cause(&self) -> service_tracing_middleware::ErrorCause {
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
    pub(super) fn into_request_key(mut self) -> Self {
        if let Some(request) = self.request.take() {
            self.operation = request.operation;
            self.status_code = request.status_code;
        }
        self
    }

    #[cfg(test)]
    pub(super) fn for_test(
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
