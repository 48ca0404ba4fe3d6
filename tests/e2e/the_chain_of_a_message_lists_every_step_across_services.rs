//! The flow of the RabbitMQ test (HTTP request -> handler publishes -> consumer in another
//! service -> consumer calls a third service over HTTP) with request chains on in each
//! service, sharing one real `redis-server`: a fourth service, which took part in nothing,
//! reads the chain of the correlation id and finds the five steps in order, with their kinds,
//! services, operations and statuses, and the very span ids the real collector received.

use service_tracing::request_chain::{ChainKind, ChainSource, ChainStatus, RequestChains};
use service_tracing::{Protocol, ScopedTracing};

use crate::collector::{span_named, Collector};
use crate::messages_carry_the_trace_and_correlation_id_through_rabbitmq::{
    by_correlation, next_seen, start_flow,
};
use crate::rabbitmq::RabbitMq;
use crate::redis_server::RedisServer;
use crate::support::{options, WAIT};

const ID: &str = "amqp-chain-1";

fn chained(collector: &Collector, redis: &RedisServer, name: &str) -> ScopedTracing {
    options(name)
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .error_redis_url(redis.url())
        .request_chains(RequestChains::new())
        .build_scoped()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_service_reads_the_five_steps_of_a_message_in_order() {
    let collector = Collector::start();
    let rabbit = RabbitMq::start();
    let redis = RedisServer::start();
    let frontend = chained(&collector, &redis, "frontend");
    let worker = chained(&collector, &redis, "worker");
    let third = chained(&collector, &redis, "audit");
    let reader = chained(&collector, &redis, "support");

    let (frontend_url, mut received, _connections) =
        start_flow(&rabbit, &frontend, &worker, &third).await;

    let response = reqwest::Client::new()
        .post(format!("{frontend_url}/orders/7"))
        .header("x-correlation-id", ID)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let seen = next_seen(&mut received).await;
    assert_eq!(
        seen.audit.as_deref(),
        Some(ID),
        "the third service was called"
    );

    // Each service's flush hands its spans on and its chain entries to Redis.
    for scoped in [&frontend, &worker, &third] {
        scoped.guard().force_flush().unwrap();
    }
    let chain = reader.guard().request_chain_async(ID).await.unwrap();
    assert_eq!(chain.source(), ChainSource::Shared);
    assert_eq!(chain.id(), ID);
    let steps: Vec<(&str, ChainKind, &str, ChainStatus, Option<u16>)> = chain
        .entries()
        .iter()
        .map(|e| {
            (
                e.service.as_str(),
                e.kind,
                e.operation.as_str(),
                e.status,
                e.http_status,
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            (
                "frontend",
                ChainKind::Server,
                "POST /orders/{id}",
                ChainStatus::Unset,
                Some(202)
            ),
            (
                "frontend",
                ChainKind::Producer,
                "publish orders",
                ChainStatus::Unset,
                None
            ),
            (
                "worker",
                ChainKind::Consumer,
                "process orders",
                ChainStatus::Unset,
                None
            ),
            (
                "worker",
                ChainKind::Client,
                "GET 127.0.0.1",
                ChainStatus::Unset,
                Some(200)
            ),
            (
                "audit",
                ChainKind::Server,
                "GET /audit/{id}",
                ChainStatus::Unset,
                Some(200)
            ),
        ],
        "{chain:#?}"
    );
    let instances: std::collections::HashSet<&str> = chain
        .entries()
        .iter()
        .map(|e| e.instance.as_str())
        .collect();
    assert!(instances.iter().all(|i| !i.is_empty()), "{instances:?}");

    // The same spans the collector received.
    let spans = collector.wait_for_spans(WAIT, |s| by_correlation(s, ID).len() >= 5);
    let trace = by_correlation(&spans, ID);
    let expected = [
        span_named(&trace, "POST /orders/{id}"),
        span_named(&trace, "publish orders"),
        span_named(&trace, "process orders"),
        span_named(&trace, "GET"),
        span_named(&trace, "GET /audit/{id}"),
    ];
    for (entry, span) in chain.entries().iter().zip(expected) {
        assert_eq!(entry.span_id.to_string(), span.span_id, "{entry:#?}");
        assert_eq!(entry.trace_id.to_string(), span.trace_id, "{entry:#?}");
    }
    let json: serde_json::Value = serde_json::from_str(&chain.to_json()).unwrap();
    assert_eq!(json["entries"][1]["kind"], "producer");
    assert_eq!(json["entries"][2]["kind"], "consumer");
    assert_eq!(json["entries"][4]["service"], "audit");

    for scoped in [frontend, worker, third, reader] {
        scoped.shutdown().unwrap();
    }
}
