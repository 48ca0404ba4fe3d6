//! The request's parent context: what the propagators extract, kept when the trust boundary
//! trusts the sender, else replaced by a new trace linked to it.

use http::Request;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::{Link, SpanContext, TraceContextExt};
use opentelemetry::Context;

use super::headers::Present;
use crate::config::Config;

/// The context the server span starts from, in two parts: an unsampled request puts its own
/// span beside the rest and builds one context, where joining them first would build two.
pub(crate) struct Parent {
    /// The remote span context, when a valid one was extracted and is continued.
    remote: Option<SpanContext>,
    /// Everything else extracted (baggage, ...); holds the remote span too when `joined`.
    rest: Context,
    joined: bool,
    /// Links for the server span: one, to an incoming trace that is not continued.
    pub(crate) links: Vec<Link>,
}

impl Parent {
    /// The parent's span context (invalid when there is none).
    pub(crate) fn span_context(&self) -> &SpanContext {
        self.remote.as_ref().unwrap_or(&INVALID)
    }

    /// The incoming baggage.
    pub(crate) fn baggage(&self) -> &Baggage {
        self.rest.baggage()
    }

    /// The parent as one context, for the tracer.
    pub(crate) fn context(&self) -> Context {
        match &self.remote {
            Some(sc) if !self.joined => self.rest.with_remote_span_context(sc.clone()),
            _ => self.rest.clone(),
        }
    }

    /// The parent's values with `sc` as the current span.
    pub(crate) fn with_span_context(&self, sc: SpanContext) -> Context {
        self.rest.with_remote_span_context(sc)
    }
}

static INVALID: SpanContext = SpanContext::NONE;

/// The parent the server span starts from, with its links.
pub(crate) fn parent<B>(config: &Config, req: &Request<B>, present: &Present<'_>) -> Parent {
    let (remote, rest, joined) = config.propagator.extract_split(req.headers(), present.w3c);
    if config.trust.is_always() || config.trust.is_trusted(req) {
        return Parent {
            remote,
            rest,
            joined,
            links: Vec::new(),
        };
    }
    // Untrusted: a new trace linked to the incoming one, and none of its baggage.
    Parent {
        remote: None,
        rest: Context::new(),
        joined: false,
        links: remote.map(Link::with_context).into_iter().collect(),
    }
}
