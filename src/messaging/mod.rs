//! What the message-broker modules share (`amqp` for RabbitMQ, `kafka` for Kafka): the error a
//! process helper returns, and, inside the crate, how a consumer span continues a message's
//! trace, how a batch is linked, and how handler and broker errors reach error tracking.
//!
//! Every broker module follows the same scheme, so a service with both brokers reads one way:
//!
//! - a `PRODUCER` span per message sent, whose context (the message's creation context) goes
//!   into the message's headers through [`service_tracing_middleware::carrier`];
//! - a `CONSUMER` span `process {destination}` per message processed, **child** of that
//!   creation context and linked to it, with an ambient span (the consumer is itself inside
//!   another span) linked rather than made the parent; a header that does not parse starts a
//!   new trace;
//! - one `CONSUMER` span per batch, under the ambient context, **linked** to each message's
//!   creation context (at most 128): a span has one parent, and picking one message's trace
//!   would misplace all the others;
//! - the handler runs with the process span's context current, so
//!   [`CorrelationId::current`] gives the message's correlation id;
//! - a handler's error is recorded like [`record_error`] (its own category when it stated
//!   one), a broker's error with category `dependency`.

use std::error::Error as StdError;
use std::fmt;

use opentelemetry::trace::{Link, Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use service_tracing_middleware::carrier::Extracted;
use service_tracing_middleware::correlation::CorrelationSource;
use service_tracing_middleware::CorrelationId;

use crate::errors::{record_error, record_error_as, Category, Severity};

/// The most span links a batch's process span gets (the SDK's default limit per span).
pub(crate) const MAX_LINKS: usize = 128;

/// Why a broker module's `process` (or `process_batch`) failed: the handler's error `E`, or
/// the broker client's error `B` when settling the message afterwards failed.
///
/// Each broker module names it with its client's error: `amqp::ProcessError<E>` (lapin's)
/// and `kafka::ProcessError<E>` (rdkafka's).
///
/// ```
/// use service_tracing::messaging::ProcessError;
/// let error: ProcessError<std::io::Error, std::fmt::Error> =
///     ProcessError::Handler(std::io::Error::other("bad order"));
/// assert_eq!(error.to_string(), "processing the message failed: bad order");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ProcessError<E, B> {
    /// The handler returned this error (the message was settled as failed when the helper
    /// settles messages).
    Handler(E),
    /// The handler succeeded but settling the message (an ack, an offset store) failed.
    Broker(B),
}

impl<E: fmt::Display, B: fmt::Display> fmt::Display for ProcessError<E, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Handler(e) => write!(f, "processing the message failed: {e}"),
            Self::Broker(e) => write!(f, "settling the message with the broker failed: {e}"),
        }
    }
}

impl<E: StdError + 'static, B: StdError + 'static> StdError for ProcessError<E, B> {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Handler(e) => Some(e),
            Self::Broker(e) => Some(e),
        }
    }
}

/// The links of one message's process span: its creation context (which is also the span's
/// parent) and the ambient span, when either is valid.
pub(crate) fn message_links(extracted: &Extracted) -> Vec<Link> {
    let mut links = Vec::with_capacity(2);
    let creation = extracted.context().span().span_context().clone();
    if creation.is_valid() {
        links.push(Link::with_context(creation));
    }
    Context::map_current(|ambient| {
        let ambient = ambient.span().span_context().clone();
        if ambient.is_valid() {
            links.push(Link::with_context(ambient));
        }
    });
    links
}

/// Gathers a batch's links (one per message creation context, at most [`MAX_LINKS`]) and its
/// correlation id: the messages' own when they all carry the same one, else the ambient
/// context's, else a new one.
#[derive(Debug, Default)]
pub(crate) struct BatchLinks {
    links: Vec<Link>,
    /// `None` before the first message; then the id every message so far agreed on, if any.
    shared_id: Option<Option<CorrelationId>>,
}

impl BatchLinks {
    pub(crate) fn with_capacity(messages: usize) -> Self {
        Self {
            links: Vec::with_capacity(messages.min(MAX_LINKS)),
            shared_id: None,
        }
    }

    /// Adds one message, read from its headers.
    pub(crate) fn add(&mut self, extracted: &Extracted) {
        let sc = extracted.context().span().span_context().clone();
        if sc.is_valid() && self.links.len() < MAX_LINKS {
            self.links.push(Link::with_context(sc));
        }
        let id = (extracted.correlation_source() != CorrelationSource::Generated)
            .then(|| extracted.correlation_id().clone());
        self.shared_id = match self.shared_id.take() {
            None => Some(id),
            Some(seen) if seen == id => Some(seen),
            Some(_) => Some(None),
        };
    }

    /// The links and the batch's correlation id, with `parent` as the ambient context.
    pub(crate) fn finish(self, parent: &Context) -> (Vec<Link>, CorrelationId) {
        let id = self
            .shared_id
            .flatten()
            .or_else(|| CorrelationId::from_context(parent))
            .unwrap_or_else(CorrelationId::generate);
        (self.links, id)
    }
}

/// A size or count as an `i64` attribute (saturating).
pub(crate) fn count_attribute(key: &'static str, count: usize) -> KeyValue {
    KeyValue::new(key, i64::try_from(count).unwrap_or(i64::MAX))
}

/// Records a broker error on the span of `cx`: `error.type` (a low-cardinality name of the
/// failure), status Error and an `exception` event with category `dependency`.
pub(crate) fn broker_failed<B: StdError + ?Sized>(
    cx: &Context,
    error: &B,
    error_type: impl Into<opentelemetry::Value>,
) {
    let _attached = cx.clone().attach();
    cx.span()
        .set_attribute(KeyValue::new("error.type", error_type.into()));
    record_error_as(error, Category::Dependency, Severity::High);
    cx.span().set_status(Status::error(error.to_string()));
}

/// Records the handler's error on the span of `cx`: `error.type` (its Rust type) and an
/// `exception` event, classified by error tracking unless the handler stated a category.
pub(crate) fn handler_failed<E: StdError + ?Sized>(cx: &Context, error: &E) {
    let _attached = cx.clone().attach();
    cx.span()
        .set_attribute(KeyValue::new("error.type", std::any::type_name::<E>()));
    record_error(error);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use service_tracing_middleware::carrier::CarrierPropagation;
    use service_tracing_middleware::propagation::default_propagator;

    use super::*;

    fn extracted(headers: &[(&str, &str)]) -> Extracted {
        let carrier: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CarrierPropagation::new()
            .with_propagator(default_propagator())
            .extract(&carrier)
    }

    #[test]
    fn a_batch_keeps_the_correlation_id_only_when_every_message_agrees() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut agreeing = BatchLinks::with_capacity(2);
        agreeing.add(&extracted(&[
            ("traceparent", tp),
            ("x-correlation-id", "c-1"),
        ]));
        agreeing.add(&extracted(&[("x-correlation-id", "c-1")]));
        let (links, id) = agreeing.finish(&Context::new());
        assert_eq!(id.as_str(), "c-1");
        assert_eq!(links.len(), 1, "only the valid creation context");

        let mut mixed = BatchLinks::with_capacity(2);
        mixed.add(&extracted(&[("x-correlation-id", "c-1")]));
        mixed.add(&extracted(&[("x-correlation-id", "c-2")]));
        let ambient = Context::new().with_value(CorrelationId::parse("ambient").expect("valid"));
        assert_eq!(mixed.finish(&ambient).1.as_str(), "ambient");
    }

    #[test]
    fn a_batch_links_at_most_the_sdk_limit() {
        let mut batch = BatchLinks::with_capacity(MAX_LINKS + 10);
        for i in 0..MAX_LINKS + 10 {
            let tp = format!("00-0af7651916cd43dd8448eb211c80319c-{:016x}-01", i + 1);
            batch.add(&extracted(&[("traceparent", &tp)]));
        }
        assert_eq!(batch.finish(&Context::new()).0.len(), MAX_LINKS);
    }
}
