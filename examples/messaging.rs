//! An HTTP endpoint that publishes to RabbitMQ, and a consumer that processes the messages: one
//! trace from the request to the processing, with the request's correlation id in the consumer.
//!
//! `POST /orders/{id}` publishes `{id}` to the `orders` queue and answers 202; the consumer
//! processes each message under a `process orders` span, child of the handler's
//! `publish orders` span, and refuses order 0 (an error that error tracking groups). The example
//! sends two orders itself, waits until both are processed, prints the traces and exits.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example messaging --features amqp
//! ```

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use service_tracing::amqp::AmqpTracing;
use service_tracing::{CorrelationId, ServiceTracing};
use tokio::sync::mpsc;

const QUEUE: &str = "orders";

#[derive(Clone)]
struct Orders {
    amqp: AmqpTracing,
    channel: Channel,
}

/// Publishes the order: the message carries this request's trace and correlation id.
async fn place_order(State(orders): State<Orders>, Path(id): Path<u32>) -> StatusCode {
    let published = orders
        .amqp
        .publish(
            &orders.channel,
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            id.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await;
    match published {
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
    let url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let routes = Router::new().route("/orders/{id}", post(place_order));
    let (routes, guard) = ServiceTracing::builder("orders")
        .environment("messaging-example")
        .init(routes)?;

    let connection = Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;

    // The consumer: each message processed under a span that continues the publisher's trace.
    let amqp = AmqpTracing::new();
    let mut consumer = channel
        .basic_consume(
            QUEUE.into(),
            "example-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let (done, mut processed) = mpsc::unbounded_channel();
    let worker = amqp.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let body = String::from_utf8_lossy(&delivery.data).into_owned();
            let outcome = worker
                .process(QUEUE, &delivery, async {
                    // The publishing request's correlation id, as the HTTP extractor gives it.
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
    let app = routes.with_state(Orders { amqp, channel });
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
        match tokio::time::timeout(Duration::from_secs(10), processed.recv()).await {
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
    connection.close(200, "done".into()).await?;
    guard.shutdown_async().await?;
    Ok(())
}
