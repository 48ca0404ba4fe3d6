//! Kafka through [rdkafka](https://docs.rs/rdkafka) (feature `kafka`): a `PRODUCER` span for
//! each record sent, a `CLIENT` span for each poll that returns one, and a `CONSUMER` span for
//! each record (or batch) processed, with the trace context, baggage and correlation id carried
//! in the record's headers. It follows the scheme of the RabbitMQ module (see
//! [`messaging`]): the same builder, span kinds, parents and links, errors
//! and profiling.
//!
//! # What is recorded
//!
//! Spans follow the current OpenTelemetry messaging and Kafka semantic conventions:
//!
//! | | send ([`KafkaTracing::send`]) | poll ([`KafkaTracing::recv`]) | process ([`KafkaTracing::process`]) |
//! |---|---|---|---|
//! | kind | `PRODUCER` | `CLIENT` | `CONSUMER` |
//! | name | `send {topic}` | `poll {topic}` | `process {topic}` |
//! | `messaging.operation.type` | `send` | `receive` | `process` |
//! | `messaging.operation.name` | `send` | `poll` | `process` |
//!
//! On every span: `messaging.system=kafka`, `messaging.destination.name` (the topic),
//! `messaging.destination.partition.id` (once known: the record's, or the one the broker
//! acknowledged), `messaging.kafka.offset` (likewise), `messaging.kafka.message.key` (when the
//! key is UTF-8 and at most 256 bytes: the conventions want no key that has no plain string
//! form), `messaging.message.body.size`, `messaging.kafka.message.tombstone=true` for a record
//! without a value, and `correlation.id`; on poll and process spans
//! `messaging.consumer.group.name` when given ([`KafkaTracing::with_consumer_group`]). A failed
//! operation has `error.type` (librdkafka's error code, such as `UNKNOWN_TOPIC_OR_PARTITION`,
//! or the handler's error type), status Error and an `exception` event.
//!
//! # How the trace continues
//!
//! As in the RabbitMQ module: the send span's context is the record's creation context,
//! written into its headers (`traceparent`, `tracestate`, `baggage` and `x-correlation-id` with
//! the default propagators), never replacing a header the application set. The process span of
//! one record is a **child** of that send span, linked to it too, with an ambient span linked
//! (not the parent); a batch ([`KafkaTracing::process_batch`]) gets one span under the ambient
//! context with a **link** to each record's creation context (up to 128). The poll span is a
//! child of the current context, linked to the record's creation context, and starts when the
//! poll started: like the conventions' `poll` span, it measures the wait for a record too.
//!
//! Header values are bytes: a value that is not UTF-8 reads as absent, as a header that is not
//! visible ASCII does over HTTP, and the carrier's caps apply
//! ([`carrier::MAX_VALUE_LEN`](service_tracing_middleware::carrier::MAX_VALUE_LEN)). Kafka allows
//! a key to repeat; the last value of a key is read (as Kafka's own `lastHeader`). A record
//! whose trace headers do not parse is processed under a new trace.
//!
//! # The correlation id
//!
//! The handler runs with the process span's context current, which holds the record's
//! correlation id (read as the server layer reads it from HTTP headers, or a new one):
//! [`CorrelationId::current`] gives it, the traced client sends it on, and log lines carry it.
//!
//! # Offsets, errors and profiling
//!
//! Unless told otherwise, [`process`](KafkaTracing::process) leaves offsets to the consumer's
//! configuration (librdkafka stores each record's offset when it hands it out, by default).
//! With [`with_settlement(true)`](KafkaTracing::with_settlement) and
//! `enable.auto.offset.store=false` it stores the offset of each record it processed, failed or
//! not, as the RabbitMQ helper acks or nacks without requeue; the consumer's auto-commit then
//! commits them: at-least-once processing.
//!
//! An error the handler returns is recorded on the process span like
//! [`record_error`](crate::errors::record_error), so error tracking classifies it unless the
//! handler stated a category with [`record_error_as`](crate::errors::record_error_as). A failed
//! send, poll or offset store is recorded with category `dependency`. Profiling lists each
//! `send {topic}`, `poll {topic}` and `process {topic}` operation with its latency percentiles.
//!
//! ```no_run
//! use rdkafka::consumer::{Consumer, StreamConsumer};
//! use rdkafka::producer::{FutureProducer, FutureRecord};
//! use rdkafka::ClientConfig;
//! use service_tracing::kafka::KafkaTracing;
//! use service_tracing::CorrelationId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let kafka = KafkaTracing::new().with_consumer_group("workers");
//! let producer: FutureProducer = ClientConfig::new()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .create()?;
//!
//! // Inside a request handler: the record carries the request's trace and correlation id.
//! kafka.send(&producer, FutureRecord::to("orders").key("42").payload("order 42"),
//!     std::time::Duration::from_secs(5)).await.map_err(|(error, _)| error)?;
//!
//! // The consumer: each record processed under a span that continues the trace.
//! let consumer: StreamConsumer = ClientConfig::new()
//!     .set("bootstrap.servers", "127.0.0.1:9092")
//!     .set("group.id", "workers")
//!     .create()?;
//! consumer.subscribe(&["orders"])?;
//! loop {
//!     let message = kafka.recv(&consumer).await?;
//!     let outcome = kafka.process(&consumer, &message, async {
//!         let id = CorrelationId::current().expect("set for the handler");
//!         println!("order for {id}");
//!         Ok::<_, std::io::Error>(())
//!     }).await;
//!     if let Err(error) = outcome {
//!         eprintln!("{error}");
//!     }
//! }
//! # }
//! ```

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{FutureExt as _, SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::{AsyncRuntime, Timeout};
use rdkafka::ClientContext;
use service_tracing_middleware::carrier::{CarrierPropagation, Extracted};
use service_tracing_middleware::tracer::{self, SharedTracer};
use service_tracing_middleware::CorrelationId;

use crate::messaging::{self, count_attribute, handler_failed, message_links, BatchLinks};

mod headers;

use headers::NoHeaders;
pub use headers::{KafkaHeaders, KafkaHeadersMut};

/// The longest record key recorded as `messaging.kafka.message.key`, in bytes.
const MAX_KEY_ATTRIBUTE: usize = 256;

/// Why [`KafkaTracing::process`] failed:
/// [`ProcessError::Handler`](crate::messaging::ProcessError::Handler) with the handler's error,
/// or [`ProcessError::Broker`](crate::messaging::ProcessError::Broker) when the handler
/// succeeded but storing the record's offset failed. The broker modules share the type
/// ([`messaging::ProcessError`]).
///
/// ```
/// use service_tracing::kafka::ProcessError;
/// let error: ProcessError<std::io::Error> = ProcessError::Handler(std::io::Error::other("bad order"));
/// assert_eq!(error.to_string(), "processing the message failed: bad order");
/// ```
pub type ProcessError<E> = crate::messaging::ProcessError<E, KafkaError>;

/// Send, poll and process helpers for rdkafka that make the messaging spans and carry the
/// trace; see the [module docs](self).
///
/// Cheap to clone: build one per service and share it.
///
/// ```
/// use service_tracing::kafka::KafkaTracing;
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let kafka = KafkaTracing::new()
///     .with_tracer_provider(&provider)
///     .with_consumer_group("billing")
///     .with_settlement(true);
/// ```
#[derive(Clone)]
pub struct KafkaTracing {
    tracer: SharedTracer,
    propagation: CarrierPropagation,
    settle: bool,
    group: Option<Arc<str>>,
}

impl fmt::Debug for KafkaTracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTracing")
            .field("propagation", &self.propagation)
            .field("settle", &self.settle)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Default for KafkaTracing {
    fn default() -> Self {
        Self::new()
    }
}

impl KafkaTracing {
    /// Spans through the global tracer provider (what [`ServiceTracing::init`] installs),
    /// the configured propagators ([`CarrierPropagation::new`]), offsets left to the
    /// consumer's configuration and no consumer group name.
    ///
    /// [`ServiceTracing::init`]: crate::ServiceTracing::init
    ///
    /// ```
    /// let kafka = service_tracing::kafka::KafkaTracing::new();
    /// ```
    pub fn new() -> Self {
        Self {
            tracer: tracer::from_global(env!("CARGO_PKG_VERSION")),
            propagation: CarrierPropagation::new(),
            settle: false,
            group: None,
        }
    }

    /// Makes spans with this provider's tracer instead of the global one (for a
    /// [`ScopedTracing`](crate::ScopedTracing), its
    /// [`tracer_provider`](crate::ScopedTracing::tracer_provider)).
    ///
    /// ```
    /// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    /// let kafka = service_tracing::kafka::KafkaTracing::new().with_tracer_provider(&provider);
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
    /// use service_tracing::kafka::KafkaTracing;
    /// use service_tracing_middleware::carrier::CarrierPropagation;
    /// let kafka = KafkaTracing::new()
    ///     .with_propagation(CarrierPropagation::new().with_correlation_headers(["x-request-id"]));
    /// ```
    pub fn with_propagation(mut self, propagation: CarrierPropagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// The consumer group (`group.id`) recorded as `messaging.consumer.group.name` on poll and
    /// process spans. rdkafka does not tell a consumer's group back, so it is given here.
    ///
    /// ```
    /// let kafka = service_tracing::kafka::KafkaTracing::new().with_consumer_group("billing");
    /// ```
    pub fn with_consumer_group(mut self, group: impl Into<Arc<str>>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Whether [`process`](Self::process) stores the offset of each record it processed,
    /// failed or not, for the consumer's next commit (`true`: at-least-once, with
    /// `enable.auto.offset.store=false` in the consumer's configuration), or leaves offsets to
    /// the configuration (`false`, the default, since librdkafka stores them itself unless
    /// told not to, and refuses a store while it does).
    ///
    /// The RabbitMQ helper settles by default because a broker redelivers what is never
    /// acked; a Kafka consumer's default configuration already moves on.
    ///
    /// ```
    /// let kafka = service_tracing::kafka::KafkaTracing::new().with_settlement(true);
    /// ```
    pub fn with_settlement(mut self, settle: bool) -> Self {
        self.settle = settle;
        self
    }

    /// Reads a record's headers into a context and a correlation id (the configured
    /// propagation), as [`process`](Self::process) does.
    ///
    /// ```
    /// use rdkafka::message::OwnedMessage;
    /// use rdkafka::Timestamp;
    /// let record = OwnedMessage::new(None, None, "orders".into(), Timestamp::NotAvailable, 0, 7, None);
    /// let extracted = service_tracing::kafka::KafkaTracing::new().extract(&record);
    /// assert!(!extracted.is_continued());
    /// ```
    pub fn extract<M: Message>(&self, message: &M) -> Extracted {
        match message.headers() {
            Some(headers) => self.propagation.extract(&KafkaHeaders(headers)),
            None => self.propagation.extract(&NoHeaders),
        }
    }

    /// Sends a record with rdkafka's [`FutureProducer::send`] under a `PRODUCER` span
    /// `send {topic}`, child of the current context, with that span's context, the baggage
    /// and the correlation id written into the record's headers (after its own). The span
    /// lasts until the broker acknowledged the record, and records the partition and offset it
    /// was given.
    ///
    /// # Errors
    ///
    /// rdkafka's error and the record when the send failed (queue full past
    /// `queue_timeout`, the broker refused it, the delivery timed out); it is recorded on the
    /// span with category `dependency`.
    ///
    /// ```no_run
    /// # async fn run(producer: rdkafka::producer::FutureProducer) {
    /// use rdkafka::producer::FutureRecord;
    /// let kafka = service_tracing::kafka::KafkaTracing::new();
    /// let sent = kafka
    ///     .send(&producer, FutureRecord::to("orders").key("42").payload(r#"{"order":42}"#),
    ///         std::time::Duration::from_secs(5))
    ///     .await;
    /// match sent {
    ///     Ok(delivery) => println!("offset {}", delivery.offset),
    ///     Err((error, _record)) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    pub async fn send<K, P, C, R, T>(
        &self,
        producer: &FutureProducer<C, R>,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        C: ClientContext + 'static,
        R: AsyncRuntime,
        T: Into<Timeout>,
    {
        let parent = Context::current();
        let mut attributes = record_attributes(
            "send",
            "send",
            record.topic,
            record.key.map(ToBytes::to_bytes),
            record.payload.map(ToBytes::to_bytes),
        );
        if let Some(partition) = record.partition {
            attributes.push(partition_attribute(partition));
        }
        if let Some(id) = CorrelationId::from_context(&parent) {
            attributes.push(KeyValue::new("correlation.id", id.as_arc()));
        }
        let builder = SpanBuilder::from_name(format!("send {}", record.topic))
            .with_kind(SpanKind::Producer)
            .with_attributes(attributes);
        let cx = self.tracer.start_in(builder, &parent);
        let mut headers = KafkaHeadersMut::new(record.headers.take());
        self.propagation.inject(&cx, &mut headers);
        record.headers = headers.into_headers();
        let result = producer
            .send(record, queue_timeout)
            .with_context(cx.clone())
            .await;
        match &result {
            Ok(delivery) => {
                let span = cx.span();
                if delivery.partition >= 0 {
                    span.set_attribute(partition_attribute(delivery.partition));
                }
                if delivery.offset >= 0 {
                    span.set_attribute(KeyValue::new("messaging.kafka.offset", delivery.offset));
                }
            }
            Err((error, _)) => broker_failed(&cx, error),
        }
        cx.span().end();
        result
    }

    /// Waits for the next record of a [`StreamConsumer`] ([`StreamConsumer::recv`]) and makes
    /// a `CLIENT` span `poll {topic}` (operation type `receive`) for it, child of the current
    /// context, starting when the wait started, with a link to the record's creation context
    /// when one came. Process the record then with [`process`](Self::process), whose span
    /// continues the producer's trace.
    ///
    /// # Errors
    ///
    /// rdkafka's error when the poll returned one (the broker refused the subscription, the
    /// consumer fell out of its group...), recorded on a `poll` span with category
    /// `dependency`. A partition end (`enable.partition.eof`) is returned without a span: it
    /// is news, not a failure.
    ///
    /// ```no_run
    /// # async fn run(consumer: rdkafka::consumer::StreamConsumer) -> Result<(), Box<dyn std::error::Error>> {
    /// let kafka = service_tracing::kafka::KafkaTracing::new();
    /// let message = kafka.recv(&consumer).await?;
    /// kafka.process(&consumer, &message, async { Ok::<_, std::io::Error>(()) }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn recv<'c, C, R>(
        &self,
        consumer: &'c StreamConsumer<C, R>,
    ) -> KafkaResult<BorrowedMessage<'c>>
    where
        C: ConsumerContext + 'static,
    {
        let parent = Context::current();
        let started = SystemTime::now();
        let result = consumer.recv().await;
        let mut attributes = self.consumer_attributes("receive", "poll");
        if let Some(id) = CorrelationId::from_context(&parent) {
            attributes.push(KeyValue::new("correlation.id", id.as_arc()));
        }
        match &result {
            Ok(message) => {
                attributes.extend(record_attributes_of(message));
                let creation = self
                    .extract(message)
                    .context()
                    .span()
                    .span_context()
                    .clone();
                let mut builder = SpanBuilder::from_name(format!("poll {}", message.topic()))
                    .with_kind(SpanKind::Client)
                    .with_start_time(started)
                    .with_attributes(attributes);
                if creation.is_valid() {
                    builder = builder
                        .with_links(vec![opentelemetry::trace::Link::with_context(creation)]);
                }
                self.tracer.start_in(builder, &parent).span().end();
            }
            Err(KafkaError::PartitionEOF(_)) => {}
            Err(error) => {
                let builder = SpanBuilder::from_name("poll")
                    .with_kind(SpanKind::Client)
                    .with_start_time(started)
                    .with_attributes(attributes);
                let cx = self.tracer.start_in(builder, &parent);
                broker_failed(&cx, error);
                cx.span().end();
            }
        }
        result
    }

    /// Processes one record under a `CONSUMER` span `process {topic}`, child of the record's
    /// creation context (a new trace when its headers hold none or a malformed one), running
    /// `handler` with that span's context current (so [`CorrelationId::current`] gives the
    /// record's correlation id). Then, when told to
    /// ([`with_settlement`](Self::with_settlement)), stores the record's offset in `consumer`,
    /// whether the handler succeeded or not.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Handler`](crate::messaging::ProcessError::Handler) with the handler's
    /// error, recorded on the span (error tracking classifies it, unless the handler stated a
    /// category with [`record_error_as`](crate::errors::record_error_as));
    /// [`ProcessError::Broker`](crate::messaging::ProcessError::Broker) when storing the offset
    /// failed, recorded with category `dependency`.
    ///
    /// ```no_run
    /// # async fn run(consumer: rdkafka::consumer::StreamConsumer) -> Result<(), Box<dyn std::error::Error>> {
    /// use rdkafka::Message as _;
    /// let kafka = service_tracing::kafka::KafkaTracing::new();
    /// let message = consumer.recv().await?;
    /// let done = kafka.process(&consumer, &message, async {
    ///     let body = std::str::from_utf8(message.payload().unwrap_or_default())?;
    ///     println!("{body} for {:?}", service_tracing::CorrelationId::current());
    ///     Ok::<_, std::str::Utf8Error>(body.len())
    /// }).await;
    /// # Ok(()) }
    /// ```
    pub async fn process<X, CC, M, F, T, E>(
        &self,
        consumer: &X,
        message: &M,
        handler: F,
    ) -> Result<T, ProcessError<E>>
    where
        X: Consumer<CC>,
        CC: ConsumerContext,
        M: Message,
        F: Future<Output = Result<T, E>>,
        E: StdError,
    {
        let extracted = self.extract(message);
        let links = message_links(&extracted);
        let mut attributes = self.consumer_attributes("process", "process");
        attributes.extend(record_attributes_of(message));
        attributes.push(KeyValue::new(
            "correlation.id",
            extracted.correlation_id().as_arc(),
        ));
        let builder = SpanBuilder::from_name(format!("process {}", message.topic()))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .with_links(links);
        let cx = self.tracer.start_in(builder, extracted.context());
        let outcome = handler.with_context(cx.clone()).await;
        let result = self.settle(consumer, outcome, std::slice::from_ref(message), &cx);
        cx.span().end();
        result
    }

    /// Processes a batch of records under one `CONSUMER` span, child of the current context,
    /// with a link to each record's creation context (at most 128) and
    /// `messaging.batch.message_count`; see the [module docs](self) for why links. The span is
    /// named `process {topic}` when every record comes from one topic, else `process`. The
    /// correlation id current in `handler` is the records' own when they all carry the same
    /// one, else the current context's, else a new one. Stores offsets as
    /// [`process`](Self::process) does.
    ///
    /// # Errors
    ///
    /// As [`process`](Self::process); a failed offset store stops at the first failing record.
    ///
    /// ```no_run
    /// # async fn run(consumer: rdkafka::consumer::StreamConsumer, batch: Vec<rdkafka::message::OwnedMessage>) {
    /// use rdkafka::Message as _;
    /// let kafka = service_tracing::kafka::KafkaTracing::new();
    /// let total = kafka.process_batch(&consumer, &batch, async {
    ///     Ok::<_, std::io::Error>(batch.iter().map(|m| m.payload().map_or(0, <[u8]>::len)).sum::<usize>())
    /// }).await;
    /// # }
    /// ```
    pub async fn process_batch<X, CC, M, F, T, E>(
        &self,
        consumer: &X,
        messages: &[M],
        handler: F,
    ) -> Result<T, ProcessError<E>>
    where
        X: Consumer<CC>,
        CC: ConsumerContext,
        M: Message,
        F: Future<Output = Result<T, E>>,
        E: StdError,
    {
        let mut batch = BatchLinks::with_capacity(messages.len());
        for message in messages {
            batch.add(&self.extract(message));
        }
        let parent = Context::current();
        let (links, id) = batch.finish(&parent);
        let topic = common(messages, M::topic);
        let partition = common(messages, M::partition);
        let body: usize = messages.iter().map(payload_len).sum();
        let mut attributes = self.consumer_attributes("process", "process");
        attributes.extend([
            count_attribute("messaging.batch.message_count", messages.len()),
            count_attribute("messaging.message.body.size", body),
            KeyValue::new("correlation.id", id.as_arc()),
        ]);
        if let Some(topic) = topic {
            attributes.push(KeyValue::new(
                "messaging.destination.name",
                topic.to_owned(),
            ));
        }
        if let Some(partition) = partition {
            attributes.push(partition_attribute(partition));
        }
        let name = match topic {
            Some(topic) => format!("process {topic}"),
            None => "process".to_owned(),
        };
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .with_links(links);
        let cx = self.tracer.start_in(builder, &parent.with_value(id));
        let outcome = handler.with_context(cx.clone()).await;
        let result = self.settle(consumer, outcome, messages, &cx);
        cx.span().end();
        result
    }

    /// The handler's `outcome` as the result, with the offsets of `messages` stored when
    /// settlement is on; the first store error is recorded on the span of `cx` and ends the
    /// storing.
    fn settle<X, CC, M, T, E>(
        &self,
        consumer: &X,
        outcome: Result<T, E>,
        messages: &[M],
        cx: &Context,
    ) -> Result<T, ProcessError<E>>
    where
        X: Consumer<CC>,
        CC: ConsumerContext,
        M: Message,
        E: StdError,
    {
        if let Err(error) = &outcome {
            handler_failed(cx, error);
        }
        if self.settle {
            for message in messages {
                let stored =
                    consumer.store_offset(message.topic(), message.partition(), message.offset());
                if let Err(broker) = stored {
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

    /// What every consumer-side span starts with: the system, the operation's type and name,
    /// and the consumer group when one was given.
    fn consumer_attributes(
        &self,
        operation_type: &'static str,
        operation_name: &'static str,
    ) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(12);
        attributes.push(KeyValue::new("messaging.system", "kafka"));
        attributes.push(KeyValue::new("messaging.operation.type", operation_type));
        attributes.push(KeyValue::new("messaging.operation.name", operation_name));
        if let Some(group) = &self.group {
            attributes.push(KeyValue::new(
                "messaging.consumer.group.name",
                Arc::clone(group),
            ));
        }
        attributes
    }
}

/// The value every message has in common, if any (`None` for no message).
fn common<'m, M, V: PartialEq>(messages: &'m [M], value: impl Fn(&'m M) -> V) -> Option<V> {
    let (first, rest) = messages.split_first()?;
    let first = value(first);
    rest.iter().all(|m| value(m) == first).then_some(first)
}

fn payload_len<M: Message>(message: &M) -> usize {
    message.payload().map_or(0, <[u8]>::len)
}

/// The attributes of a consumed record (poll and process spans).
fn record_attributes_of<M: Message>(message: &M) -> Vec<KeyValue> {
    let mut attributes = record_attributes_parts(message.topic(), message.key(), message.payload());
    attributes.push(partition_attribute(message.partition()));
    attributes.push(KeyValue::new("messaging.kafka.offset", message.offset()));
    attributes
}

/// The attributes of a record about to be sent.
fn record_attributes(
    operation_type: &'static str,
    operation_name: &'static str,
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(10);
    attributes.push(KeyValue::new("messaging.system", "kafka"));
    attributes.push(KeyValue::new("messaging.operation.type", operation_type));
    attributes.push(KeyValue::new("messaging.operation.name", operation_name));
    attributes.extend(record_attributes_parts(topic, key, payload));
    attributes
}

/// Destination, key, body size and tombstone.
fn record_attributes_parts(
    topic: &str,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(6);
    attributes.push(KeyValue::new(
        "messaging.destination.name",
        topic.to_owned(),
    ));
    if let Some(key) = key
        .filter(|key| key.len() <= MAX_KEY_ATTRIBUTE)
        .and_then(|key| std::str::from_utf8(key).ok())
    {
        attributes.push(KeyValue::new("messaging.kafka.message.key", key.to_owned()));
    }
    match payload {
        Some(payload) => attributes.push(count_attribute(
            "messaging.message.body.size",
            payload.len(),
        )),
        None => attributes.push(KeyValue::new("messaging.kafka.message.tombstone", true)),
    }
    attributes
}

/// `messaging.destination.partition.id`: a string in the conventions.
fn partition_attribute(partition: i32) -> KeyValue {
    KeyValue::new("messaging.destination.partition.id", partition.to_string())
}

/// A low-cardinality `error.type` for an rdkafka error: librdkafka's error code in Kafka's own
/// spelling (`UNKNOWN_TOPIC_OR_PARTITION`), or `_OTHER` when the error has none.
fn kafka_error_type(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => upper_snake(&format!("{code:?}")),
        None => "_OTHER".to_owned(),
    }
}

/// `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`, `PartitionEOF` ->
/// `PARTITION_EOF`.
fn upper_snake(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let previous = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if previous.is_ascii_lowercase()
                || previous.is_ascii_digit()
                || (previous.is_ascii_uppercase() && next_lower)
            {
                out.push('_');
            }
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Records an rdkafka error on the span of `cx`: `error.type`, status Error and an
/// `exception` event with category `dependency`.
fn broker_failed(cx: &Context, error: &KafkaError) {
    messaging::broker_failed(cx, error, kafka_error_type(error));
}

#[cfg(test)]
mod tests;
