use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Timestamp};

use service_tracing_middleware::carrier::MAX_KEYS;

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
fn consumer(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> BaseConsumer {
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
