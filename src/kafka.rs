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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{FutureExt as _, SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::{AsyncRuntime, Timeout};
use rdkafka::ClientContext;
use service_tracing_middleware::carrier::{CarrierPropagation, Extracted, MAX_KEYS};
use service_tracing_middleware::tracer::{self, SharedTracer};
use service_tracing_middleware::CorrelationId;

use crate::messaging::{self, count_attribute, handler_failed, message_links, BatchLinks};

/// The longest record key recorded as `messaging.kafka.message.key`, in bytes.
const MAX_KEY_ATTRIBUTE: usize = 256;

/// Reads trace headers out of Kafka record headers ([`BorrowedHeaders`] of a consumed record,
/// or [`OwnedHeaders`]): a value that is UTF-8 is read, anything else (bytes that are not
/// UTF-8, a null value) reads as absent. Keys are matched exactly, as Kafka compares them; the
/// propagators name them in lowercase. When a key repeats, its last value is read.
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders};
/// use service_tracing::kafka::KafkaHeaders;
/// use service_tracing_middleware::carrier::extract;
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "x-correlation-id", value: Some("c-7") });
/// assert_eq!(extract(&KafkaHeaders(&headers)).correlation_id().as_str(), "c-7");
/// ```
pub struct KafkaHeaders<'a, H: ?Sized = BorrowedHeaders>(pub &'a H);

impl<H: ?Sized> Clone for KafkaHeaders<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: ?Sized> Copy for KafkaHeaders<'_, H> {}

impl<H: Headers + ?Sized> fmt::Debug for KafkaHeaders<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaHeaders")
            .field("count", &self.0.count())
            .finish()
    }
}

impl<H: Headers + ?Sized> Extractor for KafkaHeaders<'_, H> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = last_value(self.0, key)?;
        std::str::from_utf8(value).ok()
    }

    fn keys(&self) -> Vec<&str> {
        (0..self.0.count())
            .filter_map(|index| header_at(self.0, index))
            .map(|header| header.key)
            .take(MAX_KEYS)
            .collect()
    }
}

/// Writes trace headers into Kafka record headers, leaving alone every key already present
/// (the application set it on purpose). rdkafka's [`OwnedHeaders`] grows by value, so this
/// holds the headers and gives them back with [`into_headers`](Self::into_headers).
///
/// ```
/// use opentelemetry::propagation::Extractor as _;
/// use service_tracing::kafka::{KafkaHeaders, KafkaHeadersMut};
/// use service_tracing_middleware::carrier::CarrierPropagation;
/// use service_tracing_middleware::CorrelationId;
///
/// let cx = opentelemetry::Context::new().with_value(CorrelationId::parse("c-8").unwrap());
/// let mut headers = KafkaHeadersMut::new(None);
/// CarrierPropagation::new().inject(&cx, &mut headers);
/// let headers = headers.into_headers().expect("written");
/// assert_eq!(KafkaHeaders(&headers).get("x-correlation-id"), Some("c-8"));
/// ```
#[derive(Debug, Default)]
pub struct KafkaHeadersMut {
    headers: Option<OwnedHeaders>,
}

impl KafkaHeadersMut {
    /// Writes after `headers` (a record's own, if any).
    ///
    /// ```
    /// let headers = service_tracing::kafka::KafkaHeadersMut::new(Some(rdkafka::message::OwnedHeaders::new()));
    /// ```
    pub fn new(headers: Option<OwnedHeaders>) -> Self {
        Self { headers }
    }

    /// The headers, `None` when none were given and nothing was written.
    ///
    /// ```
    /// assert!(service_tracing::kafka::KafkaHeadersMut::new(None).into_headers().is_none());
    /// ```
    pub fn into_headers(self) -> Option<OwnedHeaders> {
        self.headers
    }
}

impl Injector for KafkaHeadersMut {
    fn set(&mut self, key: &str, value: String) {
        let headers = match self.headers.take() {
            Some(headers) if last_value_or_null(&headers, key) => headers,
            Some(headers) => headers.insert(Header {
                key,
                value: Some(&value),
            }),
            None => OwnedHeaders::new_with_capacity(4).insert(Header {
                key,
                value: Some(&value),
            }),
        };
        self.headers = Some(headers);
    }
}

/// The header at `index`, or `None`, also when rdkafka cannot give it: its `try_get` panics
/// on a header key that is not UTF-8 (Kafka does not check keys, so a foreign producer can
/// send one), and a record from the wire must never stop the consumer. The panic is caught
/// here and the header read as absent (the process's panic hook still reports it).
fn header_at<H: Headers + ?Sized>(headers: &H, index: usize) -> Option<Header<'_, &[u8]>> {
    catch_unwind(AssertUnwindSafe(|| headers.try_get(index)))
        .ok()
        .flatten()
}

/// The last value of `key`, when present and not null.
fn last_value<'h, H: Headers + ?Sized>(headers: &'h H, key: &str) -> Option<&'h [u8]> {
    (0..headers.count())
        .rev()
        .filter_map(|index| header_at(headers, index))
        .find(|header| header.key == key)
        .and_then(|header| header.value)
}

/// Whether `key` is present at all (with a value or null).
fn last_value_or_null<H: Headers + ?Sized>(headers: &H, key: &str) -> bool {
    (0..headers.count())
        .filter_map(|index| header_at(headers, index))
        .any(|header| header.key == key)
}

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
        let mut attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "receive"),
            KeyValue::new("messaging.operation.name", "poll"),
        ];
        if let Some(group) = &self.group {
            attributes.push(KeyValue::new(
                "messaging.consumer.group.name",
                Arc::clone(group),
            ));
        }
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
        let mut attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
        ];
        if let Some(group) = &self.group {
            attributes.push(KeyValue::new(
                "messaging.consumer.group.name",
                Arc::clone(group),
            ));
        }
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
        let mut attributes = vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            count_attribute("messaging.batch.message_count", messages.len()),
            count_attribute("messaging.message.body.size", body),
            KeyValue::new("correlation.id", id.as_arc()),
        ];
        if let Some(topic) = topic {
            attributes.push(KeyValue::new(
                "messaging.destination.name",
                topic.to_owned(),
            ));
        }
        if let Some(partition) = partition {
            attributes.push(partition_attribute(partition));
        }
        if let Some(group) = &self.group {
            attributes.push(KeyValue::new(
                "messaging.consumer.group.name",
                Arc::clone(group),
            ));
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
}

/// A record without headers.
struct NoHeaders;

impl Extractor for NoHeaders {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
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
mod tests {
    use opentelemetry::trace::SpanId;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::error::RDKafkaErrorCode;
    use rdkafka::message::OwnedMessage;
    use rdkafka::mocking::MockCluster;
    use rdkafka::{ClientConfig, Timestamp};

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

    fn record(headers: &[(&str, &str)], offset: i64) -> OwnedMessage {
        let mut owned = OwnedHeaders::new();
        for &(key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(value),
            });
        }
        OwnedMessage::new(
            Some(b"42".to_vec()),
            Some(b"order-42".to_vec()),
            "orders".to_owned(),
            Timestamp::NotAvailable,
            3,
            offset,
            Some(owned),
        )
    }

    /// A consumer of an in-process mock cluster, never assigned anything: storing an offset
    /// fails in librdkafka itself.
    fn consumer(
        cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>,
    ) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "unit")
            .set("enable.auto.offset.store", "false")
            .create()
            .expect("consumer")
    }

    #[test]
    fn headers_are_read_as_utf8_last_values_and_never_overwritten() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "a",
                value: Some("first"),
            })
            .insert(Header {
                key: "a",
                value: Some("last"),
            })
            .insert(Header {
                key: "b",
                value: Some(&[0xff_u8, 0xfe][..]),
            })
            .insert(Header::<&str> {
                key: "c",
                value: None,
            });
        let read = KafkaHeaders(&headers);
        assert_eq!(read.get("a"), Some("last"));
        assert_eq!(read.get("b"), None, "not UTF-8");
        assert_eq!(read.get("c"), None, "a null value");
        assert_eq!(read.get("A"), None);
        assert_eq!(read.keys(), ["a", "a", "b", "c"]);
        let borrowed = KafkaHeaders(headers.as_borrowed());
        assert_eq!(borrowed.get("a"), Some("last"));

        let mut write = KafkaHeadersMut::new(Some(headers));
        write.set("a", "replaced".to_owned());
        write.set("c", "replaced".to_owned());
        write.set("d", "new".to_owned());
        let written = write.into_headers().expect("headers");
        let read = KafkaHeaders(&written);
        assert_eq!(read.get("a"), Some("last"));
        assert_eq!(
            read.get("c"),
            None,
            "a null value is still the application's"
        );
        assert_eq!(read.get("d"), Some("new"));
        assert_eq!(written.count(), 5);
    }

    #[test]
    fn many_headers_list_at_most_the_carrier_cap_of_keys() {
        let mut headers = OwnedHeaders::new();
        for i in 0..MAX_KEYS + 50 {
            headers = headers.insert(Header {
                key: &format!("k{i}"),
                value: Some("v"),
            });
        }
        assert_eq!(KafkaHeaders(&headers).keys().len(), MAX_KEYS);
    }

    /// Headers whose second key rdkafka cannot give: its `try_get` panics on a key that is not
    /// UTF-8, which a foreign producer can send.
    struct UnreadableKey;

    impl Headers for UnreadableKey {
        fn count(&self) -> usize {
            3
        }

        fn try_get(&self, idx: usize) -> Option<Header<'_, &[u8]>> {
            match idx {
                0 => Some(Header {
                    key: "x-correlation-id",
                    value: Some(&b"c-1"[..]),
                }),
                1 => {
                    let key: &[u8] = std::hint::black_box(&[0xff]);
                    Some(Header {
                        key: std::str::from_utf8(key)
                            .expect("the key's UTF-8 conversion, unwrapped as rdkafka does"),
                        value: None,
                    })
                }
                2 => Some(Header {
                    key: "traceparent",
                    value: Some(&b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"[..]),
                }),
                _ => None,
            }
        }
    }

    #[test]
    fn a_header_key_rdkafka_cannot_read_is_skipped_without_a_panic() {
        let read = KafkaHeaders(&UnreadableKey);
        assert_eq!(read.keys(), ["x-correlation-id", "traceparent"]);
        let extracted = CarrierPropagation::new()
            .with_propagator(service_tracing_middleware::propagation::default_propagator())
            .extract(&read);
        assert!(extracted.is_continued());
        assert_eq!(extracted.correlation_id().as_str(), "c-1");
    }

    #[test]
    fn error_types_use_kafkas_own_spelling() {
        for (camel, snake) in [
            ("UnknownTopicOrPartition", "UNKNOWN_TOPIC_OR_PARTITION"),
            ("PartitionEOF", "PARTITION_EOF"),
            ("MessageSizeTooLarge", "MESSAGE_SIZE_TOO_LARGE"),
            ("Fail", "FAIL"),
        ] {
            assert_eq!(upper_snake(camel), snake);
        }
        assert_eq!(
            kafka_error_type(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::TopicAuthorizationFailed
            )),
            "TOPIC_AUTHORIZATION_FAILED"
        );
        assert_eq!(kafka_error_type(&KafkaError::Canceled), "_OTHER");
    }

    /// The category a handler states wins; a handler error without one is classified by the
    /// rules. Both on the process span, which continues the record's trace (or starts one for
    /// a broken `traceparent`).
    #[tokio::test]
    async fn processing_errors_keep_the_handlers_category() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let consumer = consumer(&cluster);
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let kafka = KafkaTracing::new()
            .with_tracer_provider(&provider)
            .with_consumer_group("unit");
        let stated = record(
            &[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            7,
        );
        let outcome = kafka
            .process(&consumer, &stated, async {
                let error = Refused("no stock");
                record_error_as(&error, Category::Validation, Severity::Low);
                Err::<(), _>(error)
            })
            .await;
        assert!(matches!(
            outcome,
            Err(ProcessError::Handler(Refused("no stock")))
        ));
        let plain = record(&[("traceparent", "garbage")], 8);
        let outcome = kafka
            .process(&consumer, &plain, async {
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
                s.attributes
                    .contains(&KeyValue::new("messaging.kafka.offset", 7))
            })
            .expect("the first process span");
        assert_eq!(continued.span_kind, SpanKind::Consumer);
        assert_eq!(
            continued.span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(continued.parent_span_id.to_string(), "b7ad6b7169203331");
        assert_eq!(continued.links.len(), 1);
        for expected in [
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.operation.name", "process"),
            KeyValue::new("messaging.destination.name", "orders"),
            KeyValue::new("messaging.destination.partition.id", "3"),
            KeyValue::new("messaging.kafka.message.key", "order-42"),
            KeyValue::new("messaging.consumer.group.name", "unit"),
            KeyValue::new("messaging.message.body.size", 2),
        ] {
            assert!(continued.attributes.contains(&expected), "{expected:?}");
        }
        let restarted = finished
            .iter()
            .find(|s| {
                s.attributes
                    .contains(&KeyValue::new("messaging.kafka.offset", 8))
            })
            .expect("the second process span");
        assert_eq!(
            restarted.parent_span_id,
            SpanId::INVALID,
            "a broken traceparent starts a new trace"
        );
        assert!(restarted.links.is_empty());
    }

    /// With settlement on, a store librdkafka refuses (here: the partition is not assigned to
    /// this consumer) is a `dependency` error on the process span, and the handler's success
    /// becomes `ProcessError::Broker`; with it off, the consumer is not touched.
    #[tokio::test]
    async fn a_refused_offset_store_is_a_dependency_error() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let consumer = consumer(&cluster);
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let kafka = KafkaTracing::new().with_tracer_provider(&provider);
        let message = record(&[], 9);
        let untouched = kafka
            .process(&consumer, &message, async { Ok::<_, Refused>(1) })
            .await;
        assert!(matches!(untouched, Ok(1)));

        let settling = kafka.clone().with_settlement(true);
        let refused = settling
            .process(&consumer, &message, async { Ok::<_, Refused>(2) })
            .await;
        let Err(ProcessError::Broker(error)) = refused else {
            panic!("the store is refused: {refused:?}");
        };
        provider.force_flush().expect("flush");
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "{groups:#?}");
        assert_eq!(groups[0].category(), Category::Dependency);
        assert_eq!(groups[0].operations(), ["process orders"]);
        assert_eq!(groups[0].message(), error.to_string());
        let finished = spans.get_finished_spans().expect("spans");
        let failed = finished.last().expect("the settling span");
        let error_type = failed
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "error.type")
            .map(|kv| kv.value.as_str().into_owned());
        assert_eq!(
            error_type,
            error
                .rdkafka_error_code()
                .map(|c| upper_snake(&format!("{c:?}")))
        );
    }

    /// A batch: one span under the ambient context, linked to each record's creation context,
    /// with the records' shared correlation id current in the handler.
    #[tokio::test]
    async fn a_batch_links_every_record_under_the_ambient_parent() {
        let cluster = MockCluster::new(1).expect("mock cluster");
        let consumer = consumer(&cluster);
        let errors = ErrorTracking::new();
        let spans = InMemorySpanExporter::default();
        let provider = provider(&errors, &spans);
        let kafka = KafkaTracing::new().with_tracer_provider(&provider);
        let batch = [
            record(
                &[
                    (
                        "traceparent",
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                    ),
                    ("x-correlation-id", "batch-1"),
                ],
                1,
            ),
            record(
                &[
                    (
                        "traceparent",
                        "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01",
                    ),
                    ("x-correlation-id", "batch-1"),
                ],
                2,
            ),
            record(
                &[
                    ("traceparent", "not a traceparent"),
                    ("x-correlation-id", "batch-1"),
                ],
                3,
            ),
        ];
        let tracer = tracer::from_provider(&provider, "test");
        let ambient = tracer.start_in(SpanBuilder::from_name("poll"), &Context::new());
        let seen = kafka
            .process_batch(&consumer, &batch, async {
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
        for expected in [
            KeyValue::new("messaging.batch.message_count", 3),
            KeyValue::new("messaging.message.body.size", 6),
            KeyValue::new("messaging.destination.partition.id", "3"),
            KeyValue::new("correlation.id", "batch-1"),
        ] {
            assert!(batch_span.attributes.contains(&expected), "{expected:?}");
        }
    }
}
