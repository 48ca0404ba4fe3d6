//! Kafka between two services: an HTTP request whose handler sends a record, a consumer in
//! another service that processes it and calls a third service over HTTP, all one trace at the
//! real collector, with the same correlation id on every span. Hostile trace headers in a
//! record start a new trace without stopping the consumer; a processing error reaches error
//! tracking with the category the handler gave it, and broker errors (a refused send, a
//! refused subscription) as `dependency`.
//!
//! The brokers are librdkafka's built-in mock cluster (`tests/support/kafka.rs`): no Kafka
//! broker can be installed here from Debian's packages, PyPI or npm. The producer and consumer
//! are the real rdkafka clients speaking the Kafka protocol over loopback TCP.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaApiKey;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message as _, Offset};
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::errors::{record_error_as, Category, Severity};
use service_tracing::kafka::{KafkaTracing, ProcessError};
use service_tracing::{CorrelationId, Protocol, ScopedTracing, TracingMiddleware};
use tokio::sync::mpsc;

use crate::collector::{span_named, CollectedSpan, Collector};
use crate::kafka::Kafka;
use crate::support::{options, serve, WAIT};

const TOPIC: &str = "orders";
const GROUP: &str = "workers";
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the consumer's handler saw for one record.
#[derive(Debug)]
struct Seen {
    body: String,
    correlation_id: Option<String>,
    /// The third service's answer (the correlation id it was sent), when called.
    audit: Option<String>,
    failed: bool,
}

#[derive(Debug)]
struct InvalidOrder(String);

impl std::fmt::Display for InvalidOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "order {} is invalid", self.0)
    }
}

impl std::error::Error for InvalidOrder {}

fn scoped(collector: &Collector, name: &str) -> ScopedTracing {
    options(name)
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .build_scoped()
        .unwrap()
}

/// The consumer service: polls and processes every record of `orders` under `worker`'s
/// spans, storing each offset; a body starting with `fail` is refused with category
/// `validation`, any other is sent to `audit` (when there is one) through `worker`'s traced
/// client.
fn start_worker(
    worker: &ScopedTracing,
    kafka: &Kafka,
    audit: Option<String>,
) -> (mpsc::UnboundedReceiver<Seen>, Arc<StreamConsumer>) {
    let provider = worker.tracer_provider().unwrap();
    let tracing = KafkaTracing::new()
        .with_tracer_provider(provider)
        .with_consumer_group(GROUP)
        .with_settlement(true);
    let client: ClientWithMiddleware =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().with_tracer_provider(provider))
            .build();
    let consumer = Arc::new(kafka.consumer(GROUP, &[TOPIC]));
    let (seen, received) = mpsc::unbounded_channel();
    let polling = Arc::clone(&consumer);
    tokio::spawn(async move {
        loop {
            let message = match tracing.recv(&*polling).await {
                Ok(message) => message,
                // The mock broker's own hiccups are recorded as poll errors; keep polling.
                Err(_) => continue,
            };
            let body = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            let outcome = tracing
                .process(&*polling, &message, async {
                    let correlation_id = CorrelationId::current().map(|id| id.to_string());
                    if body.starts_with("fail") {
                        let error = InvalidOrder(body.clone());
                        record_error_as(&error, Category::Validation, Severity::Low);
                        return Err(error);
                    }
                    let audit = match &audit {
                        Some(audit) => Some(
                            client
                                .get(format!("{audit}/audit/{body}"))
                                .send()
                                .await
                                .unwrap()
                                .text()
                                .await
                                .unwrap(),
                        ),
                        None => None,
                    };
                    Ok((correlation_id, audit))
                })
                .await;
            let seen_now = match outcome {
                Ok((correlation_id, audit)) => Seen {
                    body,
                    correlation_id,
                    audit,
                    failed: false,
                },
                Err(ProcessError::Handler(_)) => Seen {
                    body,
                    correlation_id: None,
                    audit: None,
                    failed: true,
                },
                Err(e) => panic!("the offset store was refused: {e}"),
            };
            if seen.send(seen_now).is_err() {
                break;
            }
        }
    });
    (received, consumer)
}

/// The flow of the tests: `third` serves `/audit/{id}`, `worker` processes `orders` and calls
/// it, `frontend` serves `POST /orders/{id}`, whose handler sends a record. Returns the
/// frontend's URL, what the worker saw and its consumer.
async fn start_flow(
    kafka: &Kafka,
    frontend: &ScopedTracing,
    worker: &ScopedTracing,
    third: &ScopedTracing,
) -> (String, mpsc::UnboundedReceiver<Seen>, Arc<StreamConsumer>) {
    let audit_url = serve(
        Router::new()
            .route("/audit/{id}", get(audit))
            .layer(third.layer()),
    )
    .await;
    let (received, consumer) = start_worker(worker, kafka, Some(audit_url));
    let front = Front {
        kafka: KafkaTracing::new().with_tracer_provider(frontend.tracer_provider().unwrap()),
        producer: kafka.producer(),
    };
    let frontend_url = serve(
        Router::new()
            .route("/orders/{id}", post(place_order))
            .with_state(front)
            .layer(frontend.layer()),
    )
    .await;
    (frontend_url, received, consumer)
}

async fn next_seen(received: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("the consumer processed a record in time")
        .expect("the consumer is running")
}

#[derive(Clone)]
struct Front {
    kafka: KafkaTracing,
    producer: FutureProducer,
}

async fn place_order(State(front): State<Front>, Path(id): Path<u32>) -> StatusCode {
    let key = format!("order-{id}");
    let body = id.to_string();
    let sent = front
        .kafka
        .send(
            &front.producer,
            FutureRecord::to(TOPIC).key(&key).payload(&body),
            SEND_TIMEOUT,
        )
        .await;
    match sent {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

async fn audit(Path(_id): Path<String>, id: CorrelationId) -> String {
    id.to_string()
}

fn by_correlation(spans: &[CollectedSpan], id: &str) -> Vec<CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.attr("correlation.id") == Some(id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_http_kafka_and_a_third_service() {
    let collector = Collector::start();
    let kafka = Kafka::start(&[TOPIC]);
    let frontend = scoped(&collector, "frontend");
    let worker = scoped(&collector, "worker");
    let third = scoped(&collector, "audit");

    let (frontend_url, mut received, consumer) =
        start_flow(&kafka, &frontend, &worker, &third).await;

    let response = reqwest::Client::new()
        .post(format!("{frontend_url}/orders/7"))
        .header("x-correlation-id", "kafka-corr-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let seen = next_seen(&mut received).await;
    assert_eq!(seen.body, "7");
    assert!(!seen.failed);
    assert_eq!(
        seen.correlation_id.as_deref(),
        Some("kafka-corr-1"),
        "the handler's current correlation id"
    );
    assert_eq!(
        seen.audit.as_deref(),
        Some("kafka-corr-1"),
        "the third service's extractor"
    );

    // Settled: the processed record's offset was stored, so the group commits past it.
    let committing = Arc::clone(&consumer);
    let committed = tokio::task::spawn_blocking(move || {
        committing.commit_consumer_state(CommitMode::Sync)?;
        committing.committed(Duration::from_secs(10))
    })
    .await
    .unwrap()
    .expect("the stored offset commits");
    assert_eq!(
        committed.find_partition(TOPIC, 0).map(|p| p.offset()),
        Some(Offset::Offset(1))
    );

    for scoped in [&frontend, &worker, &third] {
        scoped.guard().force_flush().unwrap();
    }
    let spans = collector.wait_for_spans(WAIT, |s| {
        by_correlation(s, "kafka-corr-1").len() >= 5 && s.iter().any(|s| s.name == "poll orders")
    });
    let trace = by_correlation(&spans, "kafka-corr-1");
    assert_eq!(trace.len(), 5, "{trace:#?}");
    let server = span_named(&trace, "POST /orders/{id}");
    let send = span_named(&trace, "send orders");
    let process = span_named(&trace, "process orders");
    let call = span_named(&trace, "GET");
    let audited = span_named(&trace, "GET /audit/{id}");
    assert!(
        trace.iter().all(|s| s.trace_id == server.trace_id),
        "one trace: {trace:#?}"
    );
    assert!(server.is_root());
    assert_eq!(send.parent_id, server.span_id);
    assert_eq!(process.parent_id, send.span_id);
    assert_eq!(call.parent_id, process.span_id);
    assert_eq!(audited.parent_id, call.span_id);
    assert_eq!(
        [&server, &send, &process, &call, &audited].map(|s| s.kind.as_str()),
        ["Server", "Producer", "Consumer", "Client", "Server"]
    );
    assert_eq!(
        [&server, &send, &process, &call, &audited].map(|s| s.service_name.as_str()),
        ["frontend", "frontend", "worker", "worker", "audit"]
    );
    assert_eq!(process.links.len(), 1, "a link to the creation context");
    assert_eq!(process.links[0].span_id, send.span_id);

    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "send"),
        ("messaging.operation.name", "send"),
        ("messaging.destination.name", "orders"),
        ("messaging.destination.partition.id", "0"),
        ("messaging.kafka.offset", "0"),
        ("messaging.kafka.message.key", "order-7"),
        ("messaging.message.body.size", "1"),
    ] {
        assert_eq!(send.attr(key), Some(value), "{key} on {send:#?}");
    }
    for (key, value) in [
        ("messaging.system", "kafka"),
        ("messaging.operation.type", "process"),
        ("messaging.operation.name", "process"),
        ("messaging.destination.name", "orders"),
        ("messaging.destination.partition.id", "0"),
        ("messaging.kafka.offset", "0"),
        ("messaging.kafka.message.key", "order-7"),
        ("messaging.consumer.group.name", "workers"),
        ("messaging.message.body.size", "1"),
    ] {
        assert_eq!(process.attr(key), Some(value), "{key} on {process:#?}");
    }
    assert_eq!(process.status_code, "Unset");

    // The poll that returned the record: a `CLIENT` span of the worker linked to the send.
    let poll = span_named(&spans, "poll orders");
    assert_eq!(
        (poll.kind.as_str(), poll.service_name.as_str()),
        ("Client", "worker")
    );
    assert_eq!(poll.attr("messaging.operation.type"), Some("receive"));
    assert_eq!(poll.attr("messaging.operation.name"), Some("poll"));
    assert_eq!(poll.attr("messaging.kafka.offset"), Some("0"));
    assert_eq!(poll.links.len(), 1);
    assert_eq!(
        (
            poll.links[0].trace_id.as_str(),
            poll.links[0].span_id.as_str()
        ),
        (send.trace_id.as_str(), send.span_id.as_str())
    );

    let profiling = worker.guard().profiling().expect("profiling");
    let processed = profiling
        .operation("process orders")
        .expect("a `process orders` operation");
    assert_eq!(
        processed
            .window(service_tracing::Window::OneMinute)
            .map(|w| w.count),
        Some(1)
    );

    frontend.shutdown().unwrap();
    worker.shutdown().unwrap();
    third.shutdown().unwrap();
}

/// Request chains over Kafka, as over RabbitMQ: the three services share one real
/// `redis-server`, and a fourth, which took part in nothing, reads the chain of the
/// correlation id: the five steps in order (request served, record sent, record processed,
/// call out, call served), with the span ids the real collector received.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chain_of_a_record_lists_every_step_across_services() {
    use service_tracing::request_chain::{ChainKind, ChainSource, RequestChains};

    const ID: &str = "kafka-chain-1";
    let collector = Collector::start();
    let kafka = Kafka::start(&[TOPIC]);
    let redis = crate::redis_server::RedisServer::start();
    let chained = |name: &str| {
        options(name)
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .error_redis_url(redis.url())
            .request_chains(RequestChains::new())
            .build_scoped()
            .unwrap()
    };
    let (frontend, worker, third, reader) = (
        chained("frontend"),
        chained("worker"),
        chained("audit"),
        chained("support"),
    );
    let (frontend_url, mut received, _consumer) =
        start_flow(&kafka, &frontend, &worker, &third).await;
    let response = reqwest::Client::new()
        .post(format!("{frontend_url}/orders/9"))
        .header("x-correlation-id", ID)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(next_seen(&mut received).await.audit.as_deref(), Some(ID));

    for scoped in [&frontend, &worker, &third] {
        scoped.guard().force_flush().unwrap();
    }
    let chain = reader.guard().request_chain_async(ID).await.unwrap();
    assert_eq!(chain.source(), ChainSource::Shared);
    let steps: Vec<(&str, ChainKind, &str)> = chain
        .entries()
        .iter()
        .map(|e| (e.service.as_str(), e.kind, e.operation.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("frontend", ChainKind::Server, "POST /orders/{id}"),
            ("frontend", ChainKind::Producer, "send orders"),
            ("worker", ChainKind::Consumer, "process orders"),
            ("worker", ChainKind::Client, "GET 127.0.0.1"),
            ("audit", ChainKind::Server, "GET /audit/{id}"),
        ],
        "{chain:#?}"
    );
    let spans = collector.wait_for_spans(WAIT, |s| by_correlation(s, ID).len() >= 5);
    let trace = by_correlation(&spans, ID);
    let expected = [
        "POST /orders/{id}",
        "send orders",
        "process orders",
        "GET",
        "GET /audit/{id}",
    ]
    .map(|name| span_named(&trace, name));
    for (entry, span) in chain.entries().iter().zip(expected) {
        assert_eq!(entry.span_id.to_string(), span.span_id, "{entry:#?}");
        assert_eq!(entry.trace_id.to_string(), span.trace_id, "{entry:#?}");
    }
    for scoped in [frontend, worker, third, reader] {
        scoped.shutdown().unwrap();
    }
}

/// Sends `body` to `orders` with `headers` straight through rdkafka, as a foreign or hostile
/// producer; waits for the broker's acknowledgement.
async fn send_raw(producer: &FutureProducer, body: &str, headers: &[(&str, Option<&[u8]>)]) {
    let mut owned = OwnedHeaders::new();
    for &(key, value) in headers {
        owned = owned.insert(Header { key, value });
    }
    producer
        .send(
            FutureRecord::<(), _>::to(TOPIC)
                .payload(body)
                .headers(owned),
            SEND_TIMEOUT,
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_start_new_traces_and_errors_reach_error_tracking() {
    const PARENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT_SPAN: &str = "b7ad6b7169203331";
    let valid = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let oversized = format!("{valid}{}", " ".repeat(9_000));

    let collector = Collector::start();
    let kafka = Kafka::start(&[TOPIC]);
    let worker = scoped(&collector, "worker");
    let (mut received, _consumer) = start_worker(&worker, &kafka, None);
    let producer = kafka.producer();

    let hostile: Vec<(&str, Option<&[u8]>)> = vec![
        ("malformed", Some(&b"00-not-a-trace-context"[..])),
        ("oversized", Some(oversized.as_bytes())),
        ("not-utf8", Some(&b"00-\xff\xfe"[..])),
        ("null", None),
    ];
    for (name, traceparent) in &hostile {
        let id = format!("hostile-{name}");
        send_raw(
            &producer,
            name,
            &[
                ("traceparent", *traceparent),
                ("x-correlation-id", Some(id.as_bytes())),
            ],
        )
        .await;
    }
    send_raw(
        &producer,
        "fail-4",
        &[
            ("traceparent", Some(valid.as_bytes())),
            ("x-correlation-id", Some(&b"failing-4"[..])),
        ],
    )
    .await;
    send_raw(
        &producer,
        "after",
        &[
            ("traceparent", Some(valid.as_bytes())),
            ("x-correlation-id", Some(&b"after-1"[..])),
        ],
    )
    .await;

    // Every record is processed, in order: the hostile ones did not stop the consumer.
    for (name, _) in &hostile {
        let seen = next_seen(&mut received).await;
        assert_eq!(&seen.body, name);
        assert!(!seen.failed);
        let expected = format!("hostile-{name}");
        assert_eq!(seen.correlation_id.as_deref(), Some(expected.as_str()));
    }
    let failing = next_seen(&mut received).await;
    assert_eq!((failing.body.as_str(), failing.failed), ("fail-4", true));
    let after = next_seen(&mut received).await;
    assert_eq!(after.body, "after");
    assert_eq!(after.correlation_id.as_deref(), Some("after-1"));

    worker.guard().force_flush().unwrap();
    let groups = worker.guard().errors().expect("error tracking").groups();
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let group = &groups[0];
    assert!(group.error_type().ends_with("InvalidOrder"), "{group:#?}");
    assert_eq!(group.message(), "order fail-4 is invalid");
    assert_eq!(
        group.category(),
        Category::Validation,
        "the handler's category"
    );
    assert_eq!(group.severity(), Severity::Low);
    assert_eq!(group.operations(), ["process orders"]);
    assert_eq!(group.count(), 1);

    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter().filter(|s| s.name == "process orders").count() >= 6
    });
    for (name, _) in &hostile {
        let trace = by_correlation(&spans, &format!("hostile-{name}"));
        let process = span_named(&trace, "process orders");
        assert!(process.is_root(), "{name}: a new trace, {process:#?}");
        assert_ne!(process.trace_id, PARENT_TRACE);
        assert!(process.links.is_empty(), "{name}: nothing to link");
    }
    let failed = span_named(&by_correlation(&spans, "failing-4"), "process orders").clone();
    assert_eq!(failed.status_code, "Error");
    let exception = failed.event("exception").expect("an exception event");
    assert_eq!(exception.attr("error.category"), Some("validation"));
    assert_eq!(
        failed
            .attr("error.type")
            .map(|t| t.ends_with("InvalidOrder")),
        Some(true)
    );
    let continued = span_named(&by_correlation(&spans, "after-1"), "process orders").clone();
    assert_eq!(
        (continued.trace_id.as_str(), continued.parent_id.as_str()),
        (PARENT_TRACE, PARENT_SPAN)
    );

    // A broker error on the consumer's side: the broker refuses the subscription to a topic
    // (as it answers an unauthorised client); the poll fails with a `dependency` error.
    kafka
        .cluster()
        .topic_error(
            "audit-log",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let refused = kafka.consumer("auditors", &["audit-log"]);
    let tracing = KafkaTracing::new().with_tracer_provider(worker.tracer_provider().unwrap());
    let error = tokio::time::timeout(WAIT, tracing.recv(&refused))
        .await
        .expect("the consumer hears of the refusal in time")
        .expect_err("the broker refused the topic");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed)
    );

    // And on the producer's side: the broker refuses the record.
    kafka.cluster().request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let sent = tracing
        .send(
            &producer,
            FutureRecord::<(), _>::to(TOPIC).payload("refused"),
            SEND_TIMEOUT,
        )
        .await;
    assert!(sent.is_err(), "the broker refused the record");

    worker.guard().force_flush().unwrap();
    let groups = worker.guard().errors().expect("error tracking").groups();
    let mut dependency: Vec<_> = groups
        .iter()
        .filter(|g| g.category() == Category::Dependency)
        .map(|g| (g.operations().to_vec(), g.count()))
        .collect();
    dependency.sort();
    assert_eq!(
        dependency,
        [
            (vec!["poll".to_owned()], 1),
            (vec!["send orders".to_owned()], 1)
        ],
        "{groups:#?}"
    );
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter()
            .any(|s| s.name == "poll" && s.status_code == "Error")
            && s.iter()
                .any(|s| s.name == "send orders" && s.status_code == "Error")
    });
    let poll = spans
        .iter()
        .find(|s| s.name == "poll" && s.status_code == "Error")
        .unwrap();
    assert_eq!(poll.attr("error.type"), Some("TOPIC_AUTHORIZATION_FAILED"));
    assert_eq!(
        poll.event("exception")
            .and_then(|e| e.attr("error.category")),
        Some("dependency")
    );
    let send = spans
        .iter()
        .find(|s| s.name == "send orders" && s.status_code == "Error")
        .unwrap();
    assert_eq!(send.attr("error.type"), Some("TOPIC_AUTHORIZATION_FAILED"));
    assert_eq!(send.kind, "Producer");
    worker.shutdown().unwrap();
}

/// `cargo run --example messaging_kafka` on its own mock cluster: both orders are processed,
/// the consumer sees each request's correlation id, the refused order lands in an error
/// group, and the printed traces of both send spans are continued by the process spans.
#[test]
fn the_kafka_messaging_example_sends_and_processes_through_the_mock_cluster() {
    // `--all-features`: the features the test suite is built with, so nothing is rebuilt.
    let stdout = crate::support::run_example(
        "messaging_kafka",
        &["--all-features"],
        &[("KAFKA_BROKERS", None)],
    );
    for expected in [
        "POST /orders/42 -> 202 Accepted",
        "processed order 42 for correlation id Some(CorrelationId(\"example-order-42\"))",
        "order 0: processing the message failed: order 0 has no items",
        "error group: order 0 has no items (application) on [\"process orders\"]",
        "send orders  [orders]  producer",
        "process orders  [orders]  consumer",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // The console prints a trace per export batch: `trace {id}`, then `trace {id} (continued)`.
    let mut trace = "";
    let (mut sent, mut processed) = (Vec::new(), Vec::new());
    for line in stdout.lines() {
        if let Some(header) = line.strip_prefix("trace ") {
            trace = header.trim_end_matches(" (continued)");
        } else if line.contains("send orders  [orders]  producer") {
            sent.push(trace);
        } else if line.contains("process orders  [orders]  consumer") {
            processed.push(trace);
        }
    }
    sent.sort_unstable();
    processed.sort_unstable();
    assert_eq!(sent.len(), 2, "{stdout}");
    assert_eq!(
        sent, processed,
        "each process span continues a send's trace\n{stdout}"
    );
}
