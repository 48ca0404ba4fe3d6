//! Request observers: told about every traced request when its response ends, whatever the
//! sampler decided.
//!
//! Span processors only see recorded spans, so statistics built on them (error rates, latency
//! percentiles) would be biased by trace sampling. An observer sees every request: method,
//! route template, status, `error.type`, duration, and the trace it belongs to.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry::Context;

use crate::cause::{ErrorCause, RequestErrors};
use crate::correlation::CorrelationId;
use crate::route_names::RouteId;

/// Told about each traced request when its response ends (or the request fails).
///
/// Called on the request's task, so it must be quick: record into a bounded structure and hand
/// anything heavier to a background task. Closures implement it.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use service_tracing_middleware::{RequestOutcome, TracingLayer};
///
/// let requests = Arc::new(AtomicU64::new(0));
/// let counter = requests.clone();
/// let layer = TracingLayer::new().with_observer(move |outcome: &RequestOutcome<'_>| {
///     counter.fetch_add(1, Ordering::Relaxed);
///     let _ = (outcome.route, outcome.status, outcome.duration);
/// });
/// ```
pub trait RequestObserver: Send + Sync + 'static {
    /// One request ended.
    fn on_request_end(&self, outcome: &RequestOutcome<'_>);

    /// One request entered the layer, before the handler runs (for in-flight counts). Each
    /// start is followed by exactly one [`on_request_end`](Self::on_request_end) or, when the
    /// response future is dropped before it produced a response (the caller went away),
    /// [`on_request_abandoned`](Self::on_request_abandoned). Does nothing by default.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicI64, Ordering};
    /// use service_tracing_middleware::{RequestObserver, RequestOutcome, RequestStart};
    ///
    /// #[derive(Default)]
    /// struct InFlight(AtomicI64);
    ///
    /// impl RequestObserver for InFlight {
    ///     fn on_request_start(&self, _: &RequestStart<'_>) {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///     }
    ///     fn on_request_end(&self, _: &RequestOutcome<'_>) {
    ///         self.0.fetch_sub(1, Ordering::Relaxed);
    ///     }
    ///     fn on_request_abandoned(&self, _: &RequestStart<'_>) {
    ///         self.0.fetch_sub(1, Ordering::Relaxed);
    ///     }
    /// }
    /// ```
    fn on_request_start(&self, request: &RequestStart<'_>) {
        let _ = request;
    }

    /// A started request whose response future was dropped before it produced a response; no
    /// [`on_request_end`](Self::on_request_end) follows. Does nothing by default.
    fn on_request_abandoned(&self, request: &RequestStart<'_>) {
        let _ = request;
    }

    /// Whether this observer reads [`RequestOutcome::error_cause`]. When one of a layer's
    /// observers does, each request gets a place for its root cause in its context (one small
    /// allocation per request), which the client middleware, the facade's `record_error` and
    /// the layer itself fill ([`cause`](crate::cause)). `false` by default.
    ///
    /// ```
    /// use service_tracing_middleware::{RequestObserver, RequestOutcome};
    ///
    /// struct Causes;
    ///
    /// impl RequestObserver for Causes {
    ///     fn on_request_end(&self, outcome: &RequestOutcome<'_>) {
    ///         if let Some(cause) = outcome.error_cause {
    ///             eprintln!("{:?} failed: {}", outcome.route, cause.message());
    ///         }
    ///     }
    ///     fn wants_error_cause(&self) -> bool {
    ///         true
    ///     }
    /// }
    /// ```
    fn wants_error_cause(&self) -> bool {
        false
    }
}

/// What an observer learns when a request starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestStart<'a> {
    /// `http.request.method`: a known method or `_OTHER`.
    pub method: &'static str,
    /// The route template, when the router matched one.
    pub route: Option<&'a str>,
    /// The route template's id in the process ([`RouteId`]), when it has one: a key for
    /// per-route tables that needs no hashing.
    pub route_id: Option<RouteId>,
}

impl<F> RequestObserver for F
where
    F: Fn(&RequestOutcome<'_>) + Send + Sync + 'static,
{
    fn on_request_end(&self, outcome: &RequestOutcome<'_>) {
        self(outcome)
    }
}

/// What an observer learns about one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestOutcome<'a> {
    /// `http.request.method`: a known method or `_OTHER`.
    pub method: &'static str,
    /// The route template, when the router matched one.
    pub route: Option<&'a str>,
    /// The route template's id in the process ([`RouteId`]), when it has one.
    pub route_id: Option<RouteId>,
    /// The response status; `None` when the inner service failed without a response.
    pub status: Option<u16>,
    /// `error.type`: a 5xx status code, `panic`, `response_body`, `_OTHER`, or `None`.
    pub error_type: Option<&'a str>,
    /// From the request entering the layer to the end of the response body.
    pub duration: Duration,
    /// When the response body ended (the end of [`duration`](Self::duration)): observers that
    /// keep time windows place the request with it instead of reading the clock again.
    pub ended_at: Instant,
    /// The request's trace.
    pub trace_id: TraceId,
    /// The request's server span.
    pub span_id: SpanId,
    /// Whether the trace is sampled (the span was recorded and exported).
    pub sampled: bool,
    /// The request's correlation id.
    pub correlation_id: &'a CorrelationId,
    /// The first error recorded inside the request ([`cause`](crate::cause)), when an observer
    /// [wants it](RequestObserver::wants_error_cause); `None` when nothing was recorded.
    pub error_cause: Option<&'a ErrorCause>,
}

/// The observers a layer reports to.
pub(crate) type Observers = Arc<[Arc<dyn RequestObserver>]>;

/// One request's figures, carried from the call to the end of the body. The observers are
/// the layer's (read from its settings, which the request's state holds): finishing reports
/// the end to them, and a request whose state goes without finishing is reported abandoned
/// ([`abandon`](Self::abandon)).
pub(crate) struct Observation {
    start: Instant,
    method: &'static str,
    route: Option<Cow<'static, str>>,
    route_id: Option<RouteId>,
    pub(crate) status: Option<u16>,
    pub(crate) error_type: Option<Cow<'static, str>>,
}

impl fmt::Debug for Observation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observation")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl Observation {
    pub(crate) fn start(
        observers: &[Arc<dyn RequestObserver>],
        start: Instant,
        method: &'static str,
        route: Option<Cow<'static, str>>,
        route_id: Option<RouteId>,
    ) -> Self {
        let this = Self {
            start,
            method,
            route,
            route_id,
            status: None,
            error_type: None,
        };
        let request = this.request_start();
        for observer in observers {
            observer.on_request_start(&request);
        }
        this
    }

    fn request_start(&self) -> RequestStart<'_> {
        RequestStart {
            method: self.method,
            route: self.route.as_deref(),
            route_id: self.route_id,
        }
    }

    /// Reports the request, which ended at `ended_at`, to every observer; gives its duration.
    pub(crate) fn finish(
        self,
        observers: &[Arc<dyn RequestObserver>],
        ended_at: Instant,
        cx: &Context,
        id: &CorrelationId,
    ) -> Duration {
        let span = cx.span();
        let sc = span.span_context();
        // Closed first: an error recorded after the end is counted on its own.
        let error_cause = RequestErrors::of(cx).and_then(RequestErrors::close);
        let outcome = RequestOutcome {
            method: self.method,
            route: self.route.as_deref(),
            route_id: self.route_id,
            status: self.status,
            error_type: self.error_type.as_deref(),
            duration: ended_at.saturating_duration_since(self.start),
            ended_at,
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
            correlation_id: id,
            error_cause,
        };
        for observer in observers {
            observer.on_request_end(&outcome);
        }
        outcome.duration
    }

    /// Reports a request that ended without a response (its future was dropped).
    pub(crate) fn abandon(self, observers: &[Arc<dyn RequestObserver>]) {
        let request = self.request_start();
        for observer in observers {
            observer.on_request_abandoned(&request);
        }
    }
}
