//! The request's parent context: what the propagators extract, kept when the trust boundary
//! trusts the sender, else replaced by a new trace linked to it.

use http::Request;
use opentelemetry::trace::{Link, TraceContextExt};
use opentelemetry::Context;

use super::headers::Present;
use crate::config::Config;

/// The context the server span starts from, and its links (one, to an incoming trace that is
/// not continued).
pub(crate) fn parent<B>(
    config: &Config,
    req: &Request<B>,
    present: &Present,
) -> (Context, Vec<Link>) {
    let extracted = config
        .propagator
        .extract_present(req.headers(), present.w3c);
    if config.trust.is_always() || config.trust.is_trusted(req) {
        return (extracted, Vec::new());
    }
    // Untrusted: a new trace linked to the incoming one, and none of its baggage.
    let incoming = extracted.span().span_context().clone();
    let links = if incoming.is_valid() {
        vec![Link::with_context(incoming)]
    } else {
        Vec::new()
    };
    (Context::new(), links)
}
