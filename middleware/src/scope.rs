//! [`RequestScope`]: the one value the layer adds to each request's OpenTelemetry
//! [`Context`].
//!
//! A request's context carries three things of the layer's own: the correlation id, the place
//! for the request's root cause ([`cause`](crate::cause)) and, for a trace whose id is random,
//! the W3C Level 2 marker ([`RandomTraceId`](crate::propagation::RandomTraceId)). Each
//! `Context::with_value` copies the context's map and allocates, so they travel as one value:
//! one copy per request instead of three.
//!
//! How each of them is found in a context is this module's business: the lookups
//! ([`CorrelationId::from_context`], `RequestErrors::of`, which [`cause::record_cause`] uses,
//! and [`RequestScope::of`], which the W3C injector uses) are defined here, so the types'
//! own modules know nothing of the context value that carries them. [`CorrelationId`] is also
//! found when set on a context on its own (by hand, or by code that predates this value).
//!
//! [`cause::record_cause`]: crate::cause::record_cause

use opentelemetry::trace::TraceId;
use opentelemetry::Context;

use crate::cause::RequestErrors;
use crate::correlation::CorrelationId;

/// The layer's value in a request's context.
pub(crate) struct RequestScope {
    /// The request's correlation id (`None` only in test contexts).
    pub(crate) id: Option<CorrelationId>,
    /// The place for the request's root cause, when an observer reads causes.
    pub(crate) errors: Option<RequestErrors>,
    /// The request's trace id, when it is random (a new root, or a parent with the flag).
    pub(crate) random_trace_id: Option<TraceId>,
}

impl RequestScope {
    /// The scope `cx` carries, if any.
    pub(crate) fn of(cx: &Context) -> Option<&Self> {
        cx.get::<Self>()
    }
}

impl RequestErrors {
    /// The place of the request `cx` belongs to, if it has one.
    pub(crate) fn of(cx: &Context) -> Option<&Self> {
        RequestScope::of(cx).and_then(|s| s.errors.as_ref())
    }
}

impl CorrelationId {
    /// The id of the request being served, from the current OpenTelemetry context.
    ///
    /// ```
    /// use service_tracing_middleware::CorrelationId;
    /// assert!(CorrelationId::current().is_none());
    /// let id = CorrelationId::parse("abc").unwrap();
    /// let _guard = opentelemetry::Context::current_with_value(id.clone()).attach();
    /// assert_eq!(CorrelationId::current(), Some(id));
    /// ```
    pub fn current() -> Option<Self> {
        opentelemetry::Context::map_current(Self::from_context)
    }

    /// The id carried by a given context: the request's, in a context the layer made, else a
    /// `CorrelationId` value set on the context.
    ///
    /// ```
    /// use opentelemetry::Context;
    /// use service_tracing_middleware::CorrelationId;
    /// let id = CorrelationId::parse("abc").unwrap();
    /// assert_eq!(CorrelationId::from_context(&Context::new().with_value(id.clone())), Some(id));
    /// ```
    pub fn from_context(cx: &opentelemetry::Context) -> Option<Self> {
        match RequestScope::of(cx).and_then(|s| s.id.as_ref()) {
            Some(id) => Some(id.clone()),
            None => cx.get::<Self>().cloned(),
        }
    }
}

/// A context inside a request that counts its errors, for benchmarks and tests of code that
/// records causes outside the layer.
#[doc(hidden)]
pub fn test_request_context() -> Context {
    Context::current().with_value(RequestScope {
        id: None,
        errors: Some(RequestErrors::default()),
        random_trace_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::{in_open_request, record_cause, Attribution, ErrorCause};

    /// Closes the request place of `cx` as the layer does at the end, returning its cause.
    fn test_close(cx: &Context) -> Option<ErrorCause> {
        RequestErrors::of(cx).and_then(|e| e.close().cloned())
    }

    #[test]
    fn the_first_cause_wins_and_a_closed_request_takes_none() {
        let cx = test_request_context();
        assert!(in_open_request(&cx));
        let first = record_cause(&cx, || {
            ErrorCause::call("GET db", "reqwest::Error", "refused")
        });
        assert_eq!(first, Attribution::RootCause);
        let second = record_cause(&cx, || unreachable!("not built when a cause exists"));
        assert_eq!(second, Attribution::SameRequest);
        let cause = test_close(&cx).expect("a cause");
        assert_eq!(cause.target(), Some("GET db"));
        assert_eq!(
            record_cause(&cx, || ErrorCause::new("late", "")),
            Attribution::NoRequest,
            "the request was counted: a later error counts on its own"
        );

        let quiet = test_request_context();
        assert_eq!(test_close(&quiet), None);
        assert!(!in_open_request(&quiet));
        assert_eq!(
            record_cause(&quiet, || ErrorCause::new("late", "")),
            Attribution::NoRequest
        );
    }

    use crate::propagation::{inject, W3cTraceContext};
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};

    #[test]
    fn one_value_answers_for_the_id_the_cause_and_the_random_flag() {
        let trace_id = TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128);
        let sc = SpanContext::new(
            trace_id,
            SpanId::from(1),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let id = CorrelationId::parse("order-42").expect("valid");
        let cx = Context::new()
            .with_remote_span_context(sc)
            .with_value(RequestScope {
                id: Some(id.clone()),
                errors: Some(RequestErrors::default()),
                random_trace_id: Some(trace_id),
            });
        assert_eq!(CorrelationId::from_context(&cx), Some(id));
        assert_eq!(
            record_cause(&cx, || ErrorCause::new("io", "down")),
            Attribution::RootCause
        );
        let mut headers = http::HeaderMap::new();
        inject(&W3cTraceContext::new(), &cx, &mut headers);
        assert_eq!(
            headers["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-0000000000000001-03",
            "the random flag comes from the scope"
        );
    }
}
