//! A real RabbitMQ node between two services: an HTTP request whose handler publishes, a
//! consumer in another service that processes the message and calls a third service over
//! HTTP, all one trace at the real collector, with the same correlation id on every span.
//! Hostile trace headers in a message start a new trace without stopping the consumer, and a
//! processing error reaches error tracking with the category the handler gave it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::amqp::{AmqpTracing, ProcessError};
use service_tracing::errors::{record_error_as, Category, Severity};
use service_tracing::{CorrelationId, Protocol, ScopedTracing, TracingMiddleware};
use tokio::sync::mpsc;

use crate::collector::{span_named, CollectedSpan, Collector};
use crate::rabbitmq::RabbitMq;
use crate::support::{options, serve, WAIT};

pub(crate) const QUEUE: &str = "orders";

/// What the consumer's handler saw for one message.
#[derive(Debug)]
pub(crate) struct Seen {
    pub(crate) body: String,
    pub(crate) correlation_id: Option<String>,
    /// The third service's answer (the correlation id it was sent), when called.
    pub(crate) audit: Option<String>,
    pub(crate) failed: bool,
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

pub(crate) async fn channel(rabbit: &RabbitMq) -> (Connection, Channel) {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, channel)
}

/// The flow of the tests: `third` serves `/audit/{id}`, `worker` processes `orders` and calls
/// it, `frontend` serves `POST /orders/{id}`, whose handler publishes. Returns the frontend's
/// URL, what the worker saw and the connections to keep open.
pub(crate) async fn start_flow(
    rabbit: &RabbitMq,
    frontend: &ScopedTracing,
    worker: &ScopedTracing,
    third: &ScopedTracing,
) -> (
    String,
    mpsc::UnboundedReceiver<Seen>,
    (Connection, Connection),
) {
    let audit_url = serve(
        Router::new()
            .route("/audit/{id}", get(audit))
            .layer(third.layer()),
    )
    .await;
    let (received, consumer_connection) = start_worker(worker, rabbit, Some(audit_url)).await;
    let (connection, publish_channel) = channel(rabbit).await;
    let front = Front {
        amqp: AmqpTracing::new().with_tracer_provider(frontend.tracer_provider().unwrap()),
        channel: publish_channel,
    };
    let frontend_url = serve(
        Router::new()
            .route("/orders/{id}", post(place_order))
            .with_state(front)
            .layer(frontend.layer()),
    )
    .await;
    (frontend_url, received, (consumer_connection, connection))
}

/// The consumer service: processes every delivery of `orders` under `worker`'s spans; a body
/// starting with `fail` is refused with category `validation`, any other is sent to `audit`
/// (when there is one) through `worker`'s traced client.
pub(crate) async fn start_worker(
    worker: &ScopedTracing,
    rabbit: &RabbitMq,
    audit: Option<String>,
) -> (mpsc::UnboundedReceiver<Seen>, Connection) {
    let provider = worker.tracer_provider().unwrap();
    let amqp = AmqpTracing::new().with_tracer_provider(provider);
    let client: ClientWithMiddleware =
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(TracingMiddleware::new().with_tracer_provider(provider))
            .build();
    let (connection, channel) = channel(rabbit).await;
    let mut consumer = channel
        .basic_consume(
            QUEUE.into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (seen, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(delivery) = consumer.next().await {
            // The broker stops at the end of the test.
            let Ok(delivery) = delivery else { break };
            let body = String::from_utf8_lossy(&delivery.data).into_owned();
            let outcome = amqp
                .process(QUEUE, &delivery, async {
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
                Err(e) => panic!("the broker refused the ack: {e}"),
            };
            if seen.send(seen_now).is_err() {
                break;
            }
        }
    });
    (received, connection)
}

pub(crate) async fn next_seen(received: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(WAIT, received.recv())
        .await
        .expect("the consumer processed a message in time")
        .expect("the consumer is running")
}

#[derive(Clone)]
pub(crate) struct Front {
    pub(crate) amqp: AmqpTracing,
    pub(crate) channel: Channel,
}

pub(crate) async fn place_order(State(front): State<Front>, Path(id): Path<u32>) -> StatusCode {
    let published = front
        .amqp
        .publish(
            &front.channel,
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            id.to_string().as_bytes(),
            BasicProperties::default().with_message_id(format!("m-{id}").into()),
        )
        .await;
    match published {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

pub(crate) async fn audit(Path(_id): Path<String>, id: CorrelationId) -> String {
    id.to_string()
}

pub(crate) fn by_correlation(spans: &[CollectedSpan], id: &str) -> Vec<CollectedSpan> {
    spans
        .iter()
        .filter(|s| s.attr("correlation.id") == Some(id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_crosses_http_rabbitmq_and_a_third_service() {
    let collector = Collector::start();
    let rabbit = RabbitMq::start();
    let frontend = scoped(&collector, "frontend");
    let worker = scoped(&collector, "worker");
    let third = scoped(&collector, "audit");

    let (frontend_url, mut received, _connections) =
        start_flow(&rabbit, &frontend, &worker, &third).await;

    let response = reqwest::Client::new()
        .post(format!("{frontend_url}/orders/7"))
        .header("x-correlation-id", "amqp-corr-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let seen = next_seen(&mut received).await;
    assert_eq!(seen.body, "7");
    assert!(!seen.failed);
    assert_eq!(
        seen.correlation_id.as_deref(),
        Some("amqp-corr-1"),
        "the handler's current correlation id"
    );
    assert_eq!(
        seen.audit.as_deref(),
        Some("amqp-corr-1"),
        "the third service's extractor"
    );

    for scoped in [&frontend, &worker, &third] {
        scoped.guard().force_flush().unwrap();
    }
    let spans = collector.wait_for_spans(WAIT, |s| by_correlation(s, "amqp-corr-1").len() >= 5);
    let trace = by_correlation(&spans, "amqp-corr-1");
    assert_eq!(trace.len(), 5, "{trace:#?}");
    let server = span_named(&trace, "POST /orders/{id}");
    let publish = span_named(&trace, "publish orders");
    let process = span_named(&trace, "process orders");
    let call = span_named(&trace, "GET");
    let audited = span_named(&trace, "GET /audit/{id}");
    assert!(
        trace.iter().all(|s| s.trace_id == server.trace_id),
        "one trace: {trace:#?}"
    );
    assert!(server.is_root());
    assert_eq!(publish.parent_id, server.span_id);
    assert_eq!(process.parent_id, publish.span_id);
    assert_eq!(call.parent_id, process.span_id);
    assert_eq!(audited.parent_id, call.span_id);
    assert_eq!(
        [&server, &publish, &process, &call, &audited].map(|s| s.kind.as_str()),
        ["Server", "Producer", "Consumer", "Client", "Server"]
    );
    assert_eq!(
        [&server, &publish, &process, &call, &audited].map(|s| s.service_name.as_str()),
        ["frontend", "frontend", "worker", "worker", "audit"]
    );
    assert_eq!(process.links.len(), 1, "a link to the creation context");
    assert_eq!(process.links[0].span_id, publish.span_id);

    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation.type", "send"),
        ("messaging.operation.name", "publish"),
        ("messaging.destination.name", "orders"),
        ("messaging.rabbitmq.destination.routing_key", "orders"),
        ("messaging.message.id", "m-7"),
        ("messaging.message.body.size", "1"),
    ] {
        assert_eq!(publish.attr(key), Some(value), "{key} on {publish:#?}");
    }
    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation.type", "process"),
        ("messaging.operation.name", "process"),
        ("messaging.destination.name", "orders"),
        ("messaging.rabbitmq.destination.routing_key", "orders"),
        ("messaging.message.id", "m-7"),
        ("messaging.message.body.size", "1"),
        ("messaging.rabbitmq.message.delivery_tag", "1"),
    ] {
        assert_eq!(process.attr(key), Some(value), "{key} on {process:#?}");
    }
    assert_eq!(process.status_code, "Unset");

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

/// Publishes `body` to `orders` with `headers` straight through lapin, as a foreign or hostile
/// producer.
async fn publish_raw(channel: &Channel, body: &str, headers: &[(&str, AMQPValue)]) {
    publish_raw_to(channel, QUEUE, body, headers).await;
}

async fn publish_raw_to(channel: &Channel, queue: &str, body: &str, headers: &[(&str, AMQPValue)]) {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert((*key).into(), value.clone());
    }
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_headers(table),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_start_new_traces_and_processing_errors_reach_error_tracking() {
    const PARENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const PARENT_SPAN: &str = "b7ad6b7169203331";
    let valid = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-01");
    let oversized = format!("{valid}{}", " ".repeat(9_000));

    let collector = Collector::start();
    let rabbit = RabbitMq::start();
    let worker = scoped(&collector, "worker");
    let (mut received, _consumer_connection) = start_worker(&worker, &rabbit, None).await;
    let (_connection, channel) = channel(&rabbit).await;

    let hostile: Vec<(&str, AMQPValue)> = vec![
        ("malformed", text("00-not-a-trace-context")),
        ("oversized", text(&oversized)),
        (
            "not-utf8",
            AMQPValue::LongString(LongString::from(b"00-\xff\xfe".to_vec())),
        ),
        ("not-a-string", AMQPValue::LongLongInt(42)),
    ];
    for (name, traceparent) in &hostile {
        publish_raw(
            &channel,
            name,
            &[
                ("traceparent", traceparent.clone()),
                ("x-correlation-id", text(&format!("hostile-{name}"))),
            ],
        )
        .await;
    }
    publish_raw(
        &channel,
        "fail-4",
        &[
            ("traceparent", text(&valid)),
            ("x-correlation-id", text("failing-4")),
        ],
    )
    .await;
    publish_raw(
        &channel,
        "after",
        &[
            ("traceparent", text(&valid)),
            ("x-correlation-id", text("after-1")),
        ],
    )
    .await;

    // Every message is processed, in order: the hostile ones did not stop the consumer.
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

    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 6);
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
    // Settled: nothing is left in the queue for another consumer.
    let left = channel
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(left.message_count(), 0);

    // A pull: a `receive` span linked to the publisher, and the process span its child.
    let puller = AmqpTracing::new().with_tracer_provider(worker.tracer_provider().unwrap());
    channel
        .queue_declare(
            "pulled".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish_raw_to(
        &channel,
        "pulled",
        "p-1",
        &[
            ("traceparent", text(&valid)),
            ("x-correlation-id", text("pulled-1")),
        ],
    )
    .await;
    let message = puller
        .get(&channel, "pulled".into(), Default::default())
        .await
        .unwrap()
        .expect("the message published on the same channel");
    let seen = puller
        .process("pulled", &message.delivery, async {
            Ok::<_, std::io::Error>(CorrelationId::current().map(|id| id.to_string()))
        })
        .await
        .unwrap();
    assert_eq!(seen.as_deref(), Some("pulled-1"));
    worker.guard().force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter().any(|s| s.name == "receive pulled") && s.iter().any(|s| s.name == "process pulled")
    });
    let receive = span_named(&spans, "receive pulled");
    assert_eq!(receive.kind, "Client");
    assert!(receive.is_root(), "the pull has no ambient span here");
    assert_eq!(receive.attr("messaging.operation.type"), Some("receive"));
    assert_eq!(receive.attr("messaging.destination.name"), Some("pulled"));
    assert_eq!(receive.links.len(), 1);
    assert_eq!(
        (
            receive.links[0].trace_id.as_str(),
            receive.links[0].span_id.as_str()
        ),
        (PARENT_TRACE, PARENT_SPAN)
    );
    let processed = span_named(&spans, "process pulled");
    assert_eq!(
        (processed.trace_id.as_str(), processed.parent_id.as_str()),
        (PARENT_TRACE, PARENT_SPAN)
    );
    assert_eq!(processed.attr("correlation.id"), Some("pulled-1"));
    worker.shutdown().unwrap();
}

/// `cargo run --example messaging` against a private node: both orders are processed, the
/// consumer sees each request's correlation id, the refused order lands in an error group, and
/// the printed trees hold each publish span with its process span below it.
#[test]
fn the_messaging_example_publishes_and_processes_through_a_real_broker() {
    let rabbit = RabbitMq::start();
    // `--all-features`: the features the test suite is built with, so nothing is rebuilt.
    let stdout = crate::support::run_example(
        "messaging",
        &["--all-features"],
        &[("AMQP_URL", Some(rabbit.url().as_str()))],
    );
    for expected in [
        "POST /orders/42 -> 202 Accepted",
        "processed order 42 for correlation id Some(CorrelationId(\"example-order-42\"))",
        "order 0: processing the message failed: order 0 has no items",
        "error group: order 0 has no items (application) on [\"process orders\"]",
        "publish orders  [orders]  producer",
        "process orders  [orders]  consumer",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
}
