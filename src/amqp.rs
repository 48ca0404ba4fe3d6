//! RabbitMQ through [lapin](https://docs.rs/lapin) (feature `amqp`): a `PRODUCER` span for each
//! publish and a `CONSUMER` span for each delivery processed, with the trace context, baggage
//! and correlation id carried in the message's AMQP headers.
//!
//! # What is recorded
//!
//! Spans follow the current OpenTelemetry messaging and RabbitMQ semantic conventions:
//!
//! | | publish ([`AmqpTracing::publish`]) | process ([`AmqpTracing::process`]) |
//! |---|---|---|
//! | kind | `PRODUCER` | `CONSUMER` |
//! | name | `publish {destination}` | `process {destination}` |
//! | `messaging.operation.type` | `send` | `process` |
//! | `messaging.operation.name` | `publish` | `process` |
//! | `messaging.destination.name` | `{exchange}:{routing key}`, one of them, or `amq.default` | `{exchange}:{routing key}:{queue}`, empty parts and a queue equal to the routing key left out |
//!
//! A pull ([`AmqpTracing::get`], `basic.get`) is a `CLIENT` span `receive {queue}` (operation
//! type `receive`) linked to the message's creation context; the message is then processed
//! as any other.
//!
//! On publish and process spans: `messaging.system=rabbitmq`, `messaging.rabbitmq.destination.routing_key` (when
//! not empty), `messaging.message.id` and `messaging.message.conversation_id` (the message's
//! `message_id` and `correlation_id` properties, when set), `messaging.message.body.size`,
//! `correlation.id`, and on the process span `messaging.rabbitmq.message.delivery_tag`. A
//! failed operation has `error.type`, status Error and an `exception` event.
//!
//! # How the trace continues
//!
//! The publish span's context is the message's creation context: it is written into the
//! message's headers (`traceparent`, `tracestate`, `baggage` and `x-correlation-id` with the
//! default propagators; see [`service_tracing_middleware::carrier`]), never replacing a header
//! the application set. The process span of one message is a **child** of that publish span
//! (the conventions allow it for single messages) and links to it too, so the producer's
//! request, the consumer's processing and whatever it calls are one trace. When processing
//! runs inside another span (the consumer is itself inside a request), that ambient span is
//! linked, not the parent.
//!
//! A batch ([`AmqpTracing::process_batch`]) gets one span with a **link** to each message's
//! creation context (up to 128, the SDK's link limit) and the ambient context as parent: a span
//! has one parent, and picking one message's trace would misplace all the others.
//!
//! A header that does not parse, or is longer than
//! [`carrier::MAX_VALUE_LEN`](service_tracing_middleware::carrier::MAX_VALUE_LEN), is treated as
//! absent: the process span starts a new trace, and processing goes on.
//!
//! # The correlation id
//!
//! The handler runs with the process span's context as the current OpenTelemetry context, which
//! holds the message's correlation id (read as the server layer reads it from HTTP headers, or
//! a new one): [`CorrelationId::current`] gives it, the traced client sends it on, and log
//! lines carry it, as in an HTTP handler.
//!
//! # Errors and profiling
//!
//! An error the handler returns is recorded on the process span like
//! [`record_error`](crate::errors::record_error) does: error tracking classifies it, unless the
//! handler stated a category itself with [`record_error_as`](crate::errors::record_error_as)
//! while it ran (the first `exception` of a span is its error). A failed publish, ack or nack
//! is recorded with category `dependency`. These spans are outside any HTTP request, so error
//! tracking sees them when they are sampled. Profiling lists each `publish {destination}` and
//! `process {destination}` operation with its latency percentiles.
//!
//! ```no_run
//! use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
//! use lapin::types::FieldTable;
//! use lapin::{BasicProperties, Connection, ConnectionProperties};
//! use service_tracing::amqp::AmqpTracing;
//! use service_tracing::CorrelationId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connection = Connection::connect("amqp://127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
//! let channel = connection.create_channel().await?;
//! let amqp = AmqpTracing::new();
//!
//! // Inside a request handler: the message carries the request's trace and correlation id.
//! amqp.publish(&channel, "".into(), "orders".into(), BasicPublishOptions::default(),
//!     b"order 42", BasicProperties::default()).await?;
//!
//! // The consumer: each delivery processed under a span that continues the trace.
//! let mut consumer = channel
//!     .basic_consume("orders".into(), "worker".into(), BasicConsumeOptions::default(), FieldTable::default())
//!     .await?;
//! use futures_util::StreamExt as _;
//! while let Some(delivery) = consumer.next().await {
//!     let delivery = delivery?;
//!     let outcome = amqp.process("orders", &delivery, async {
//!         let id = CorrelationId::current().expect("set for the handler");
//!         println!("order for {id}");
//!         Ok::<_, std::io::Error>(())
//!     }).await;
//!     if let Err(error) = outcome {
//!         eprintln!("{error}");
//!     }
//! }
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, PublisherConfirm};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{FutureExt as _, SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use service_tracing_middleware::carrier::CarrierPropagation;
use service_tracing_middleware::tracer::{self, SharedTracer};
use service_tracing_middleware::CorrelationId;

use crate::messaging::{self, count_attribute, handler_failed, message_links, BatchLinks};

/// Reads trace headers out of an AMQP [`FieldTable`]: long and short string values, UTF-8
/// only (anything else reads as absent). Keys are matched exactly, as AMQP compares them;
/// the propagators name them in lowercase.
///
/// ```
/// use lapin::types::{AMQPValue, FieldTable};
/// use service_tracing::amqp::AmqpHeaders;
/// use service_tracing_middleware::carrier::extract;
///
/// let mut headers = FieldTable::default();
/// headers.insert("x-correlation-id".into(), AMQPValue::LongString("c-7".into()));
/// assert_eq!(extract(&AmqpHeaders(&headers)).correlation_id().as_str(), "c-7");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AmqpHeaders<'a>(pub &'a FieldTable);

impl Extractor for AmqpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes()).ok(),
            AMQPValue::ShortString(value) => Some(value.as_str()),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(ShortString::as_str).collect()
    }
}

/// Writes trace headers into an AMQP [`FieldTable`] as long strings, leaving alone every key
/// already present (the application set it on purpose).
///
/// ```
/// use lapin::types::{AMQPValue, FieldTable};
/// use service_tracing::amqp::AmqpHeadersMut;
/// use service_tracing_middleware::carrier::CarrierPropagation;
/// use service_tracing_middleware::CorrelationId;
///
/// let cx = opentelemetry::Context::new().with_value(CorrelationId::parse("c-8").unwrap());
/// let mut headers = FieldTable::default();
/// CarrierPropagation::new().inject(&cx, &mut AmqpHeadersMut(&mut headers));
/// assert_eq!(headers.inner()["x-correlation-id"], AMQPValue::LongString("c-8".into()));
/// ```
#[derive(Debug)]
pub struct AmqpHeadersMut<'a>(pub &'a mut FieldTable);

impl Injector for AmqpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if self.0.contains_key(key) {
            return;
        }
        // A key longer than 255 bytes cannot be an AMQP short string; no propagator writes one.
        if let Ok(key) = ShortString::try_new(key) {
            self.0
                .insert(key, AMQPValue::LongString(LongString::from(value)));
        }
    }
}

/// Why [`AmqpTracing::process`] failed: [`ProcessError::Handler`](crate::messaging::ProcessError::Handler) with the handler's error (the
/// message was nacked without requeue when the helper settles messages), or
/// [`ProcessError::Broker`](crate::messaging::ProcessError::Broker) when the handler succeeded but the broker refused the ack. The
/// broker modules share the type ([`messaging::ProcessError`]).
///
/// ```
/// use service_tracing::amqp::ProcessError;
/// let error: ProcessError<std::io::Error> = ProcessError::Handler(std::io::Error::other("bad order"));
/// assert_eq!(error.to_string(), "processing the message failed: bad order");
/// ```
pub type ProcessError<E> = crate::messaging::ProcessError<E, lapin::Error>;

/// Publish and process helpers for lapin that make the messaging spans and carry the trace;
/// see the [module docs](self).
///
/// Cheap to clone: build one per service and share it.
///
/// ```
/// use service_tracing::amqp::AmqpTracing;
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let amqp = AmqpTracing::new().with_tracer_provider(&provider).with_settlement(false);
/// ```
#[derive(Clone)]
pub struct AmqpTracing {
    tracer: SharedTracer,
    propagation: CarrierPropagation,
    settle: bool,
}

impl fmt::Debug for AmqpTracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpTracing")
            .field("propagation", &self.propagation)
            .field("settle", &self.settle)
            .finish_non_exhaustive()
    }
}

impl Default for AmqpTracing {
    fn default() -> Self {
        Self::new()
    }
}

impl AmqpTracing {
    /// Spans through the global tracer provider (what [`ServiceTracing::init`] installs),
    /// the configured propagators ([`CarrierPropagation::new`]), and messages settled by
    /// [`process`](Self::process).
    ///
    /// [`ServiceTracing::init`]: crate::ServiceTracing::init
    ///
    /// ```
    /// let amqp = service_tracing::amqp::AmqpTracing::new();
    /// ```
    pub fn new() -> Self {
        Self {
            tracer: tracer::from_global(env!("CARGO_PKG_VERSION")),
            propagation: CarrierPropagation::new(),
            settle: true,
        }
    }

    /// Makes spans with this provider's tracer instead of the global one (for a
    /// [`ScopedTracing`](crate::ScopedTracing), its
    /// [`tracer_provider`](crate::ScopedTracing::tracer_provider)).
    ///
    /// ```
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let amqp = service_tracing::amqp::AmqpTracing::new().with_tracer_provider(&provider);
    /// ```
    pub fn with_tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: opentelemetry::trace::TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        self.tracer = tracer::from_provider(provider, env!("CARGO_PKG_VERSION"));
        self
    }

    /// How the context is written into and read from headers (propagator, correlation keys
    /// and charset).
    ///
    /// ```
    /// use service_tracing::amqp::AmqpTracing;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// let amqp = AmqpTracing::new()
    ///     .with_propagation(CarrierPropagation::new().with_correlation_headers(["x-request-id"]));
    /// ```
    pub fn with_propagation(mut self, propagation: CarrierPropagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// Whether [`process`](Self::process) acks a message its handler processed and nacks
    /// (without requeue) one it failed (the default), or leaves settling to the caller
    /// (`false`; needed with `no_ack` consumers).
    ///
    /// ```
    /// let amqp = service_tracing::amqp::AmqpTracing::new().with_settlement(false);
    /// ```
    pub fn with_settlement(mut self, settle: bool) -> Self {
        self.settle = settle;
        self
    }

    /// Publishes a message under a `PRODUCER` span, child of the current context, with that
    /// span's context, the baggage and the correlation id written into its headers. Returns
    /// lapin's [`PublisherConfirm`] (the span covers the publish, not the wait for a confirm).
    ///
    /// # Errors
    ///
    /// lapin's error when the channel refuses the publish; it is recorded on the span with
    /// category `dependency`.
    ///
    /// ```no_run
    /// # async fn run(channel: lapin::Channel) -> lapin::Result<()> {
    /// use lapin::{options::BasicPublishOptions, BasicProperties};
    /// let amqp = service_tracing::amqp::AmqpTracing::new();
    /// amqp.publish(&channel, "shop".into(), "orders.new".into(), BasicPublishOptions::default(),
    ///     br#"{"order":42}"#, BasicProperties::default().with_message_id("m-1".into()))
    ///     .await?
    ///     .await?; // the broker's confirm, with `confirm_select`
    /// # Ok(()) }
    /// ```
    pub async fn publish(
        &self,
        channel: &Channel,
        exchange: ShortString,
        routing_key: ShortString,
        options: BasicPublishOptions,
        payload: &[u8],
        properties: BasicProperties,
    ) -> lapin::Result<PublisherConfirm> {
        let parent = Context::current();
        let destination = producer_destination(exchange.as_str(), routing_key.as_str());
        let mut attributes = common_attributes(
            "send",
            "publish",
            &destination,
            routing_key.as_str(),
            &properties,
            payload.len(),
        );
        if let Some(id) = CorrelationId::from_context(&parent) {
            attributes.push(KeyValue::new("correlation.id", id.as_arc()));
        }
        let builder = SpanBuilder::from_name(format!("publish {destination}"))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes);
        let cx = self.tracer.start_in(builder, &parent);
        let mut headers = properties.headers().clone().unwrap_or_default();
        self.propagation
            .inject(&cx, &mut AmqpHeadersMut(&mut headers));
        let properties = properties.with_headers(headers);
        let result = channel
            .basic_publish(exchange, routing_key, options, payload, properties)
            .with_context(cx.clone())
            .await;
        if let Err(error) = &result {
            broker_failed(&cx, error);
        }
        cx.span().end();
        result
    }

    /// Pulls one message from `queue` (`basic.get`) under a `CLIENT` span `receive {queue}`
    /// (operation type `receive`), child of the current context, with a link to the message's
    /// creation context when one came. Process it then with [`process`](Self::process), whose
    /// span continues the publisher's trace.
    ///
    /// # Errors
    ///
    /// lapin's error when the broker refuses the `basic.get`, recorded on the span with
    /// category `dependency`.
    ///
    /// ```no_run
    /// # async fn run(channel: lapin::Channel) -> Result<(), Box<dyn std::error::Error>> {
    /// let amqp = service_tracing::amqp::AmqpTracing::new();
    /// if let Some(message) = amqp.get(&channel, "orders".into(), Default::default()).await? {
    ///     amqp.process("orders", &message.delivery, async { Ok::<_, std::io::Error>(()) }).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(
        &self,
        channel: &Channel,
        queue: ShortString,
        options: BasicGetOptions,
    ) -> lapin::Result<Option<BasicGetMessage>> {
        let parent = Context::current();
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.operation.type", "receive"),
            KeyValue::new("messaging.operation.name", "receive"),
            KeyValue::new("messaging.destination.name", queue.to_string()),
        ];
        if let Some(id) = CorrelationId::from_context(&parent) {
            attributes.push(KeyValue::new("correlation.id", id.as_arc()));
        }
        let builder = SpanBuilder::from_name(format!("receive {queue}"))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let cx = self.tracer.start_in(builder, &parent);
        let result = channel
            .basic_get(queue, options)
            .with_context(cx.clone())
            .await;
        let span = cx.span();
        match &result {
            Ok(Some(message)) => {
                let delivery = &message.delivery;
                let empty = FieldTable::default();
                let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
                let extracted = self.propagation.extract(&AmqpHeaders(headers));
                let creation = extracted.context().span().span_context().clone();
                if creation.is_valid() {
                    span.add_link(creation, Vec::new());
                }
                let mut more = message_attributes(
                    delivery.routing_key.as_str(),
                    &delivery.properties,
                    delivery.data.len(),
                );
                more.push(KeyValue::new(
                    "messaging.rabbitmq.message.delivery_tag",
                    i64::try_from(delivery.delivery_tag).unwrap_or(i64::MAX),
                ));
                span.set_attributes(more);
            }
            Ok(None) => {}
            Err(error) => broker_failed(&cx, error),
        }
        span.end();
        result
    }

    /// Processes one delivery from `queue` under a `CONSUMER` span, child of the message's
    /// creation context (a new trace when its headers hold none or a malformed one), running
    /// `handler` with that span's context current (so [`CorrelationId::current`] gives the
    /// message's correlation id). Then, unless told otherwise
    /// ([`with_settlement`](Self::with_settlement)), acks the message when the handler
    /// succeeded and nacks it without requeue when it failed.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Handler`](crate::messaging::ProcessError::Handler) with the handler's error, recorded on the span (error
    /// tracking classifies it, unless the handler stated a category with
    /// [`record_error_as`](crate::errors::record_error_as)); [`ProcessError::Broker`](crate::messaging::ProcessError::Broker) when the
    /// ack failed, recorded with category `dependency`.
    ///
    /// ```no_run
    /// # async fn run(delivery: lapin::message::Delivery) {
    /// let amqp = service_tracing::amqp::AmqpTracing::new();
    /// let done = amqp.process("orders", &delivery, async {
    ///     let body = std::str::from_utf8(&delivery.data)?;
    ///     println!("{body} for {:?}", service_tracing::CorrelationId::current());
    ///     Ok::<_, std::str::Utf8Error>(body.len())
    /// }).await;
    /// # }
    /// ```
    pub async fn process<F, T, E>(
        &self,
        queue: &str,
        delivery: &Delivery,
        handler: F,
    ) -> Result<T, ProcessError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: StdError,
    {
        let empty = FieldTable::default();
        let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
        let extracted = self.propagation.extract(&AmqpHeaders(headers));
        let links = message_links(&extracted);
        let destination = consumer_destination(
            delivery.exchange.as_str(),
            delivery.routing_key.as_str(),
            queue,
        );
        let mut attributes = common_attributes(
            "process",
            "process",
            &destination,
            delivery.routing_key.as_str(),
            &delivery.properties,
            delivery.data.len(),
        );
        attributes.push(KeyValue::new(
            "messaging.rabbitmq.message.delivery_tag",
            i64::try_from(delivery.delivery_tag).unwrap_or(i64::MAX),
        ));
        attributes.push(KeyValue::new(
            "correlation.id",
            extracted.correlation_id().as_arc(),
        ));
        let builder = SpanBuilder::from_name(format!("process {destination}"))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .with_links(links);
        let cx = self.tracer.start_in(builder, extracted.context());
        let outcome = handler.with_context(cx.clone()).await;
        let result = self.settle(outcome, [&delivery.acker], &cx).await;
        cx.span().end();
        result
    }

    /// Processes a batch of deliveries from `queue` under one `CONSUMER` span, child of the
    /// current context, with a link to each message's creation context (at most 128) and
    /// `messaging.batch.message_count`; see the [module docs](self) for why links. The
    /// correlation id current in `handler` is the messages' own when they all carry the same
    /// one, else the current context's, else a new one. Settles every message as
    /// [`process`](Self::process) settles one.
    ///
    /// # Errors
    ///
    /// As [`process`](Self::process); a failed ack stops at the first failing message.
    ///
    /// ```no_run
    /// # async fn run(batch: Vec<lapin::message::Delivery>) {
    /// let amqp = service_tracing::amqp::AmqpTracing::new();
    /// let total = amqp.process_batch("orders", &batch, async {
    ///     Ok::<_, std::io::Error>(batch.iter().map(|d| d.data.len()).sum::<usize>())
    /// }).await;
    /// # }
    /// ```
    pub async fn process_batch<F, T, E>(
        &self,
        queue: &str,
        deliveries: &[Delivery],
        handler: F,
    ) -> Result<T, ProcessError<E>>
    where
        F: Future<Output = Result<T, E>>,
        E: StdError,
    {
        let empty = FieldTable::default();
        let mut batch = BatchLinks::with_capacity(deliveries.len());
        for delivery in deliveries {
            let headers = delivery.properties.headers().as_ref().unwrap_or(&empty);
            batch.add(&self.propagation.extract(&AmqpHeaders(headers)));
        }
        let parent = Context::current();
        let (links, id) = batch.finish(&parent);
        let (exchange, routing_key) = match deliveries {
            [first, rest @ ..]
                if rest.iter().all(|d| {
                    d.exchange == first.exchange && d.routing_key == first.routing_key
                }) =>
            {
                (first.exchange.as_str(), first.routing_key.as_str())
            }
            _ => ("", ""),
        };
        let destination = consumer_destination(exchange, routing_key, queue);
        let body: usize = deliveries.iter().map(|d| d.data.len()).sum();
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new(
                "messaging.destination.name",
                destination.clone().into_owned(),
            ),
            count_attribute("messaging.batch.message_count", deliveries.len()),
            count_attribute("messaging.message.body.size", body),
            KeyValue::new("correlation.id", id.as_arc()),
        ];
        if !routing_key.is_empty() {
            attributes.push(KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                routing_key.to_owned(),
            ));
        }
        let builder = SpanBuilder::from_name(format!("process {destination}"))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .with_links(links);
        let cx = self.tracer.start_in(builder, &parent.with_value(id));
        let outcome = handler.with_context(cx.clone()).await;
        let result = self
            .settle(outcome, deliveries.iter().map(|d| &d.acker), &cx)
            .await;
        cx.span().end();
        result
    }

    /// The handler's `outcome` as the result, with the messages of `ackers` acked when it is
    /// `Ok` and nacked (not requeued) when it failed, unless settlement is off; the first broker
    /// error is recorded on the span of `cx` and ends the settling.
    async fn settle<'a, T, E: StdError>(
        &self,
        outcome: Result<T, E>,
        ackers: impl IntoIterator<Item = &'a lapin::Acker>,
        cx: &Context,
    ) -> Result<T, ProcessError<E>> {
        if let Err(error) = &outcome {
            handler_failed(cx, error);
        }
        if self.settle {
            for acker in ackers {
                let settled = match outcome {
                    Ok(_) => {
                        acker
                            .ack(BasicAckOptions::default())
                            .with_context(cx.clone())
                            .await
                    }
                    Err(_) => {
                        let options = BasicNackOptions {
                            multiple: false,
                            requeue: false,
                        };
                        acker.nack(options).with_context(cx.clone()).await
                    }
                };
                if let Err(broker) = settled {
                    broker_failed(cx, &broker);
                    if outcome.is_ok() {
                        return Err(ProcessError::Broker(broker));
                    }
                    break;
                }
            }
        }
        outcome.map_err(ProcessError::Handler)
    }
}

/// The attributes both spans of one message share.
fn common_attributes(
    operation_type: &'static str,
    operation_name: &'static str,
    destination: &str,
    routing_key: &str,
    properties: &BasicProperties,
    body_size: usize,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new("messaging.system", "rabbitmq"));
    attributes.push(KeyValue::new("messaging.operation.type", operation_type));
    attributes.push(KeyValue::new("messaging.operation.name", operation_name));
    attributes.push(KeyValue::new(
        "messaging.destination.name",
        destination.to_owned(),
    ));
    attributes.extend(message_attributes(routing_key, properties, body_size));
    attributes
}

/// The attributes that describe one message.
fn message_attributes(
    routing_key: &str,
    properties: &BasicProperties,
    body_size: usize,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(5);
    if !routing_key.is_empty() {
        attributes.push(KeyValue::new(
            "messaging.rabbitmq.destination.routing_key",
            routing_key.to_owned(),
        ));
    }
    if let Some(id) = properties.message_id() {
        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
    }
    if let Some(id) = properties.correlation_id() {
        attributes.push(KeyValue::new(
            "messaging.message.conversation_id",
            id.to_string(),
        ));
    }
    attributes.push(count_attribute("messaging.message.body.size", body_size));
    attributes
}

/// `messaging.destination.name` on the producer side: `{exchange}:{routing key}`, the one
/// that is not empty, or `amq.default`.
fn producer_destination<'a>(exchange: &'a str, routing_key: &'a str) -> Cow<'a, str> {
    match (exchange.is_empty(), routing_key.is_empty()) {
        (false, false) => Cow::Owned(format!("{exchange}:{routing_key}")),
        (false, true) => Cow::Borrowed(exchange),
        (true, false) => Cow::Borrowed(routing_key),
        (true, true) => Cow::Borrowed("amq.default"),
    }
}

/// `messaging.destination.name` on the consumer side: `{exchange}:{routing key}:{queue}`
/// without its empty parts, and with the queue left out when it equals the routing key.
fn consumer_destination<'a>(
    exchange: &'a str,
    routing_key: &'a str,
    queue: &'a str,
) -> Cow<'a, str> {
    let queue = if queue == routing_key { "" } else { queue };
    let parts: Vec<&str> = [exchange, routing_key, queue]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    match parts.as_slice() {
        [] => Cow::Borrowed("amq.default"),
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(parts.join(":")),
    }
}

/// A low-cardinality `error.type` for a lapin error.
fn broker_error_type(error: &lapin::Error) -> &'static str {
    use lapin::ErrorKind as K;
    match error.kind() {
        K::ChannelsLimitReached => "channels_limit_reached",
        K::InvalidProtocolVersion(_) => "invalid_protocol_version",
        K::InvalidChannel(_) => "invalid_channel",
        K::InvalidChannelState(..) => "invalid_channel_state",
        K::InvalidConnectionState(_) => "invalid_connection_state",
        K::IOError(_) => "io_error",
        K::ProtocolError(_) => "protocol_error",
        K::MissingHeartbeatError => "missing_heartbeat",
        _ => "_OTHER",
    }
}

/// Records a broker error on the span of `cx`: `error.type`, status Error and an `exception`
/// event with category `dependency`.
fn broker_failed(cx: &Context, error: &lapin::Error) {
    messaging::broker_failed(cx, error, broker_error_type(error));
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    use super::*;
    use crate::errors::{record_error_as, Category, ErrorTracking, Severity};

    fn provider(errors: &ErrorTracking, spans: &InMemorySpanExporter) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .with_simple_exporter(spans.clone())
            .build()
    }

    #[derive(Debug)]
    struct Refused(&'static str);

    impl fmt::Display for Refused {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "refused: {}", self.0)
        }
    }

    impl StdError for Refused {}

    fn delivery(traceparent: &str) -> Delivery {
        let mut delivery = Delivery::mock(3, "".into(), "orders".into(), false, b"42".to_vec());
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(traceparent.into()),
        );
        delivery.properties = BasicProperties::default().with_headers(headers);
        delivery
    }

    #[test]
    fn broker_errors_are_dependency_errors() {
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let tracer = tracer::from_provider(&provider, "test");
        let cx = tracer.start_in(
            SpanBuilder::from_name("publish orders").with_kind(SpanKind::Producer),
            &Context::new(),
        );
        broker_failed(
            &cx,
            &lapin::Error::from(lapin::ErrorKind::InvalidChannel(7)),
        );
        cx.span().end();
        provider.force_flush().expect("flush");
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0].category(), Category::Dependency);
        assert_eq!(groups[0].operations(), ["publish orders"]);
        let span = &spans.get_finished_spans().expect("spans")[0];
        assert!(span
            .attributes
            .contains(&KeyValue::new("error.type", "invalid_channel")));
    }

    /// The category a handler states wins; a handler error without one is classified by the
    /// rules. Both on the process span, which continues the message's trace.
    #[tokio::test]
    async fn processing_errors_keep_the_handlers_category() {
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let amqp = AmqpTracing::new()
            .with_tracer_provider(&provider)
            .with_settlement(false);
        let stated = delivery("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let outcome = amqp
            .process("orders", &stated, async {
                let error = Refused("no stock");
                record_error_as(&error, Category::Validation, Severity::Low);
                Err::<(), _>(error)
            })
            .await;
        assert!(matches!(
            outcome,
            Err(ProcessError::Handler(Refused("no stock")))
        ));
        let plain = delivery("garbage");
        let outcome = amqp
            .process("orders", &plain, async {
                Err::<(), _>(Refused("bad body"))
            })
            .await;
        assert!(matches!(outcome, Err(ProcessError::Handler(_))));
        provider.force_flush().expect("flush");

        let groups = errors.groups();
        let category = |message: &str| {
            groups
                .iter()
                .find(|g| g.message() == message)
                .map(|g| (g.category(), g.operations().to_vec()))
        };
        assert_eq!(
            category("refused: no stock"),
            Some((Category::Validation, vec!["process orders".to_owned()]))
        );
        assert_eq!(
            category("refused: bad body"),
            Some((Category::Application, vec!["process orders".to_owned()]))
        );
        let finished = spans.get_finished_spans().expect("spans");
        let continued = finished
            .iter()
            .find(|s| {
                s.events.iter().any(|e| {
                    e.attributes
                        .iter()
                        .any(|a| a.value.as_str() == "refused: no stock")
                })
            })
            .expect("the first process span");
        assert_eq!(continued.span_kind, SpanKind::Consumer);
        assert_eq!(
            continued.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(continued.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(continued.links.len(), 1);
        let restarted = finished
            .iter()
            .find(|s| s.span_context.span_id() != continued.span_context.span_id())
            .expect("the second process span");
        assert_eq!(
            restarted.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "a broken traceparent starts a new trace"
        );
        assert!(restarted.links.is_empty());
    }

    /// A batch: one span under the ambient context, linked to each message's creation
    /// context, with the messages' shared correlation id current in the handler.
    #[tokio::test]
    async fn a_batch_links_every_message_under_the_ambient_parent() {
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let amqp = AmqpTracing::new()
            .with_tracer_provider(&provider)
            .with_settlement(false);
        let mut batch = vec![
            delivery("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            delivery("00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01"),
            delivery("not a traceparent"),
        ];
        for message in &mut batch {
            let mut headers = message.properties.headers().clone().unwrap_or_default();
            headers.insert(
                "x-correlation-id".into(),
                AMQPValue::LongString("batch-1".into()),
            );
            message.properties = message.properties.clone().with_headers(headers);
        }
        let tracer = tracer::from_provider(&provider, "test");
        let ambient = tracer.start_in(SpanBuilder::from_name("poll"), &Context::new());
        let seen = amqp
            .process_batch("orders", &batch, async {
                Ok::<_, Refused>(CorrelationId::current().map(|id| id.to_string()))
            })
            .with_context(ambient.clone())
            .await
            .expect("processed");
        ambient.span().end();
        assert_eq!(seen.as_deref(), Some("batch-1"));
        let finished = spans.get_finished_spans().expect("spans");
        let batch_span = finished
            .iter()
            .find(|s| s.span_kind == SpanKind::Consumer)
            .expect("the batch span");
        assert_eq!(batch_span.name, "process orders");
        assert_eq!(
            batch_span.parent_span_id,
            ambient.span().span_context().span_id()
        );
        let linked: Vec<String> = batch_span
            .links
            .iter()
            .map(|l| l.span_context.span_id().to_string())
            .collect();
        assert_eq!(linked, ["b7ad6b7169203331", "c7ad6b7169203331"]);
        assert!(batch_span
            .attributes
            .contains(&KeyValue::new("messaging.batch.message_count", 3)));
        assert!(batch_span
            .attributes
            .contains(&KeyValue::new("correlation.id", "batch-1")));
    }

    #[test]
    fn destinations_follow_the_rabbitmq_conventions() {
        assert_eq!(producer_destination("shop", "orders"), "shop:orders");
        assert_eq!(producer_destination("shop", ""), "shop");
        assert_eq!(producer_destination("", "orders"), "orders");
        assert_eq!(producer_destination("", ""), "amq.default");
        assert_eq!(
            consumer_destination("shop", "new", "orders"),
            "shop:new:orders"
        );
        assert_eq!(consumer_destination("", "orders", "orders"), "orders");
        assert_eq!(
            consumer_destination("shop", "orders", "orders"),
            "shop:orders"
        );
        assert_eq!(consumer_destination("", "", "orders"), "orders");
        assert_eq!(consumer_destination("", "", ""), "amq.default");
    }

    #[test]
    fn headers_are_read_as_utf8_strings_and_never_overwritten() {
        let mut table = FieldTable::default();
        table.insert("a".into(), AMQPValue::LongString("long".into()));
        table.insert("b".into(), AMQPValue::ShortString("short".into()));
        table.insert("c".into(), AMQPValue::LongString(vec![0xff, 0xfe].into()));
        table.insert("d".into(), AMQPValue::LongInt(7));
        let read = AmqpHeaders(&table);
        assert_eq!(read.get("a"), Some("long"));
        assert_eq!(read.get("b"), Some("short"));
        assert_eq!(read.get("c"), None);
        assert_eq!(read.get("d"), None);
        assert_eq!(read.get("A"), None);
        assert_eq!(read.keys(), ["a", "b", "c", "d"]);

        let mut write = AmqpHeadersMut(&mut table);
        write.set("a", "replaced".to_owned());
        write.set("e", "new".to_owned());
        write.set(&"k".repeat(256), "too long a key".to_owned());
        assert_eq!(table.inner()["a"], AMQPValue::LongString("long".into()));
        assert_eq!(table.inner()["e"], AMQPValue::LongString("new".into()));
        assert_eq!(table.inner().len(), 5);
    }
}
