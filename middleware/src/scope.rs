//! [`RequestScope`]: the one value the layer adds to each request's OpenTelemetry
//! [`Context`].
//!
//! A request's context carries three things of the layer's own: the correlation id, the place
//! for the request's root cause ([`cause`](crate::cause)) and, for a trace whose id is random,
//! the W3C Level 2 marker ([`RandomTraceId`](crate::propagation::RandomTraceId)). Each
//! `Context::with_value` copies the context's map and allocates, so they travel as one value:
//! one copy per request instead of three.
//!
//! Readers go through [`CorrelationId::from_context`], [`cause::record_cause`] and the W3C
//! injector, which also accept the values set on their own (a `Context` built by hand or by
//! code that predates this value).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cause::{record_cause, Attribution, ErrorCause};
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
