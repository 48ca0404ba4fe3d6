//! An HTTP endpoint that sends to Kafka, and a consumer that processes the records: one trace
//! from the request to the processing, with the request's correlation id in the consumer. The
//! Kafka sibling of `examples/messaging.rs` (RabbitMQ).
//!
//! `POST /orders/{id}` sends `{id}` to the `orders` topic and answers 202; the consumer polls
//! each record (a `poll orders` span) and processes it under a `process orders` span, child of
//! the handler's `send orders` span, storing its offset, and refuses order 0 (an error that
//! error tracking groups). The example sends two orders itself, waits until both are
//! processed, prints the traces and exits.
//!
//! With `KAFKA_BROKERS` unset it runs against librdkafka's in-process mock cluster, so it needs
//! no broker:
//!
//! ```text
//! cargo run --example messaging_kafka --features kafka
//! KAFKA_BROKERS=127.0.0.1:9092 cargo run --example messaging_kafka --features kafka
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use service_tracing::kafka::KafkaTracing;
use service_tracing::{CorrelationId, ServiceTracing};
use tokio::sync::mpsc;

const TOPIC: &str = "orders";

#[derive(Clone)]
struct Orders {
    kafka: KafkaTracing,
    producer: FutureProducer,
}

/// Sends the order: the record carries this request's trace and correlation id.
async fn place_order(State(orders): State<Orders>, Path(id): Path<u32>) -> StatusCode {
    let key = format!("order-{id}");
    let body = id.to_string();
    let sent = orders
        .kafka
        .send(
            &orders.producer,
            FutureRecord::to(TOPIC).key(&key).payload(&body),
            Duration::from_secs(5),
        )
        .await;
    match sent {
        Ok(_) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

#[derive(Debug)]
struct EmptyOrder;

impl std::fmt::Display for EmptyOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("order 0 has no items")
    }
}

impl std::error::Error for EmptyOrder {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The mock cluster lives as long as `main`; a real one is named by `KAFKA_BROKERS`.
    let mock = match std::env::var("KAFKA_BROKERS") {
        Ok(_) => None,
        Err(_) => {
            let cluster = MockCluster::new(1)?;
            cluster.create_topic(TOPIC, 1, 1)?;
            Some(cluster)
        }
    };
    let brokers = match &mock {
        Some(cluster) => cluster.bootstrap_servers(),
        None => std::env::var("KAFKA_BROKERS")?,
    };
    let routes = Router::new().route("/orders/{id}", post(place_order));
    let (routes, guard) = ServiceTracing::builder("orders")
        .environment("messaging-example")
        .init(routes)?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    // At-least-once: the helper stores each processed record's offset, auto-commit commits it.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "example-workers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.offset.store", "false")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let consumer = Arc::new(consumer);

    // The consumer: each record processed under a span that continues the producer's trace.
    let kafka = KafkaTracing::new();
    let worker = kafka
        .clone()
        .with_consumer_group("example-workers")
        .with_settlement(true);
    let (done, mut processed) = mpsc::unbounded_channel();
    let polling = Arc::clone(&consumer);
    let polls = tokio::spawn(async move {
        while let Ok(message) = worker.recv(&*polling).await {
            let body = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
            let outcome = worker
                .process(&*polling, &message, async {
                    // The sending request's correlation id, as the HTTP extractor gives it.
                    let id = CorrelationId::current();
                    tracing::info!("processing order {body}");
                    if body == "0" {
                        return Err(EmptyOrder);
                    }
                    Ok(id)
                })
                .await;
            let line = match outcome {
                Ok(id) => format!("processed order {body} for correlation id {id:?}"),
                Err(error) => format!("order {body}: {error}"),
            };
            if done.send(line).is_err() {
                break;
            }
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let app = routes.with_state(Orders { kafka, producer });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let caller = reqwest::Client::new();
    for (id, correlation) in [(42, "example-order-42"), (0, "example-order-0")] {
        let response = caller
            .post(format!("{address}/orders/{id}"))
            .header("x-correlation-id", correlation)
            .send()
            .await?;
        println!("POST /orders/{id} -> {}", response.status());
    }
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(20), processed.recv()).await {
            Ok(Some(line)) => println!("{line}"),
            _ => return Err("the consumer did not process the orders in time".into()),
        }
    }
    if let Some(errors) = guard.errors() {
        guard.force_flush()?;
        for group in errors.groups() {
            println!(
                "error group: {} ({}) on {:?}",
                group.message(),
                group.category().as_str(),
                group.operations()
            );
        }
    }
    guard.shutdown_async().await?;
    // The consumer leaves its group before the (mock) brokers go away.
    polls.abort();
    let _ = polls.await;
    drop(consumer);
    drop(mock);
    Ok(())
}
