//! Two replicas of a service share their error groups through a real `redis-server`: both
//! summaries show one group with the summed count. Redis killed mid-run: every request still
//! succeeds, promptly, and both report degraded. Redis restarted (empty) on the same port:
//! both reconnect by themselves and the counts raised during the outage reach the fleet, so
//! both summaries show the full total.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use opentelemetry_sdk::trace::SdkTracerProvider;
use service_tracing::errors::{
    ErrorStorageHealth, ErrorSummary, ErrorTracking, RedisSharing, Window,
};
use service_tracing_middleware::TracingLayer;

use crate::redis_server::RedisServer;
use crate::support::{serve, WAIT};

const FROM_A: u64 = 7;
const FROM_B: u64 = 5;
const OUTAGE_A: u64 = 4;
const OUTAGE_B: u64 = 3;
/// A request during the outage must not take longer than this.
const REQUEST_BOUND: Duration = Duration::from_millis(500);

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

/// One replica: its own tracker, provider and server, sharing through `redis`.
struct Replica {
    url: String,
    errors: ErrorTracking,
    _provider: SdkTracerProvider,
}

impl Replica {
    async fn start(redis: &str) -> Self {
        let errors = ErrorTracking::new().with_sharing(
            RedisSharing::new(redis)
                .unwrap()
                .prefix("e2e:checkout:errors")
                .sync_interval(Duration::from_millis(100))
                .timeout(Duration::from_millis(200)),
        );
        let provider = SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build();
        let app = Router::new()
            .route("/fail/{id}", get(fail))
            .route("/ok", get(|| async { "ok" }))
            .layer(
                TracingLayer::new()
                    .with_tracer_provider(&provider)
                    .with_observer(errors.rates_observer()),
            );
        Self {
            url: serve(app).await,
            errors,
            _provider: provider,
        }
    }

    /// Local count of the one group, once the spans of the requests sent have ended.
    async fn raise(&self, client: &reqwest::Client, n: u64) {
        for i in 0..n {
            let started = Instant::now();
            let response = client
                .get(format!("{}/fail/{}", self.url, i * 31 + 1))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 500);
            let ok = client.get(format!("{}/ok", self.url)).send().await.unwrap();
            assert_eq!(ok.status(), 200);
            assert_eq!(ok.text().await.unwrap(), "ok");
            assert!(
                started.elapsed() < REQUEST_BOUND,
                "two requests took {:?}",
                started.elapsed()
            );
        }
    }

    async fn sync(&self) -> ErrorStorageHealth {
        let errors = self.errors.clone();
        tokio::task::spawn_blocking(move || errors.sync_now())
            .await
            .unwrap()
    }
}

/// Polls `check` until it holds or `WAIT` passes.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fail_group_count(summary: &ErrorSummary) -> u64 {
    assert_eq!(summary.group_count(), 1, "{summary:#?}");
    let group = &summary.top_groups()[0];
    assert_eq!(group.error_type(), "500");
    assert_eq!(group.operations(), ["GET /fail/{id}"]);
    assert_eq!(group.status_codes(), [500]);
    group.count()
}

fn minute_requests(summary: &ErrorSummary, operation: &str) -> (u64, u64) {
    summary
        .route_rates()
        .iter()
        .find(|r| r.operation == operation && r.window == Window::OneMinute)
        .map(|r| (r.requests, r.errors))
        .unwrap_or_else(|| panic!("no {operation}: {:#?}", summary.route_rates()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_shared_through_redis() {
    let mut redis = RedisServer::start();
    let a = Replica::start(&redis.url()).await;
    let b = Replica::start(&redis.url()).await;
    assert_eq!(a.errors.storage_health(), ErrorStorageHealth::Shared);
    assert_eq!(b.errors.storage_health(), ErrorStorageHealth::Shared);
    let client = reqwest::Client::new();

    // Both raise the same fault.
    a.raise(&client, FROM_A).await;
    b.raise(&client, FROM_B).await;
    eventually("every span ended", || {
        a.errors.groups().iter().map(|g| g.count()).sum::<u64>() >= FROM_A
            && b.errors.groups().iter().map(|g| g.count()).sum::<u64>() >= FROM_B
    })
    .await;
    // a pushes, b pushes and pulls both, a pulls both.
    for replica in [&a, &b, &a] {
        assert_eq!(replica.sync().await, ErrorStorageHealth::Shared);
    }
    for (name, replica) in [("a", &a), ("b", &b)] {
        let summary = replica.errors.summary();
        assert_eq!(fail_group_count(&summary), FROM_A + FROM_B, "{name}");
        assert_eq!(summary.total(), FROM_A + FROM_B, "{name}");
        assert_eq!(
            minute_requests(&summary, "GET /fail/{id}"),
            (FROM_A + FROM_B, FROM_A + FROM_B),
            "{name}: the fleet's route rates"
        );
        assert_eq!(
            minute_requests(&summary, "GET /ok"),
            (FROM_A + FROM_B, 0),
            "{name}"
        );
        let group = &replica.errors.groups()[0];
        assert_eq!(group.trace_ids().len(), 5, "samples from the fleet");
    }

    // Redis dies: requests go on, each promptly, and both replicas report degraded.
    redis.kill();
    a.raise(&client, OUTAGE_A).await;
    b.raise(&client, OUTAGE_B).await;
    for (name, replica) in [("a", &a), ("b", &b)] {
        let health = replica.sync().await;
        assert!(health.is_degraded(), "{name}: {health:?}");
        let ErrorStorageHealth::Degraded { last_error, .. } = replica.errors.storage_health()
        else {
            panic!("{name} is not degraded");
        };
        assert!(!last_error.is_empty());
    }
    eventually("the outage's spans ended", || {
        a.errors.summary().total() == FROM_A + FROM_B + OUTAGE_A
            && b.errors.summary().total() == FROM_A + FROM_B + OUTAGE_B
    })
    .await;
    // Tracking goes on: the last fleet view plus what each counted since.
    assert_eq!(
        fail_group_count(&a.errors.summary()),
        FROM_A + FROM_B + OUTAGE_A
    );
    assert_eq!(
        fail_group_count(&b.errors.summary()),
        FROM_A + FROM_B + OUTAGE_B
    );

    // Redis is back, empty, on the same port: both reconnect by themselves.
    redis.restart();
    eventually("both replicas are shared again", || {
        a.errors.storage_health() == ErrorStorageHealth::Shared
            && b.errors.storage_health() == ErrorStorageHealth::Shared
    })
    .await;
    for replica in [&a, &b, &a] {
        assert_eq!(replica.sync().await, ErrorStorageHealth::Shared);
    }
    let everything = FROM_A + FROM_B + OUTAGE_A + OUTAGE_B;
    for (name, replica) in [("a", &a), ("b", &b)] {
        let summary = replica.errors.summary();
        assert_eq!(fail_group_count(&summary), everything, "{name}");
        assert_eq!(summary.total(), everything, "{name}");
    }
}

/// `ServiceTracing::error_redis_url`: the service's keys carry its name and all expire, and
/// the guard reports the storage's health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_tracing_shares_errors_under_the_service_name() {
    let mut redis = RedisServer::start();
    let routes = Router::new().route("/fail/{id}", get(fail));
    let (routes, guard) = crate::support::options("checkout")
        .exporter(service_tracing::TracesExporter::None)
        .error_redis_url(redis.url())
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;
    assert_eq!(
        guard.error_storage_health(),
        Some(ErrorStorageHealth::Shared)
    );
    let client = reqwest::Client::new();
    for i in 0..3 {
        let response = client.get(format!("{app}/fail/{i}")).send().await.unwrap();
        assert_eq!(response.status(), 500);
    }
    let errors = guard.errors().unwrap();
    eventually("three errors", || errors.summary().total() == 3).await;
    let synced = errors.clone();
    let health = tokio::task::spawn_blocking(move || synced.sync_now())
        .await
        .unwrap();
    assert_eq!(health, ErrorStorageHealth::Shared);

    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let prefix = "service-tracing:checkout:errors";
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap();
    for name in ["epoch", "total", "groups"] {
        assert!(keys.contains(&format!("{prefix}:{name}")), "{keys:?}");
    }
    assert!(keys.iter().any(|k| k.contains(":rates:")), "{keys:?}");
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut con).unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    let total: u64 = redis::cmd("GET")
        .arg(format!("{prefix}:total"))
        .query(&mut con)
        .unwrap();
    assert_eq!(total, 3);
    let fingerprint = format!("{:016x}", errors.groups()[0].fingerprint());
    let count: u64 = redis::cmd("ZSCORE")
        .arg(format!("{prefix}:groups"))
        .arg(&fingerprint)
        .query(&mut con)
        .unwrap();
    assert_eq!(count, 3);

    // Down: the request is answered as before and the guard reports degraded.
    redis.kill();
    let started = Instant::now();
    let response = client.get(format!("{app}/fail/9")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(started.elapsed() < REQUEST_BOUND, "{:?}", started.elapsed());
    eventually("the guard reports degraded", || {
        guard
            .error_storage_health()
            .is_some_and(|h| h.is_degraded())
    })
    .await;
    let started = Instant::now();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// Redis stalls (writes paused longer than the timeout): requests are not delayed, the
/// replica reports degraded, then recovers by itself, and the transaction whose reply timed
/// out (and that Redis runs once the pause ends) is counted once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_degrades_and_counts_once() {
    let redis = RedisServer::start();
    let a = Replica::start(&redis.url()).await;
    let client = reqwest::Client::new();
    a.raise(&client, 2).await;
    eventually("two errors", || a.errors.summary().total() == 2).await;
    assert_eq!(a.sync().await, ErrorStorageHealth::Shared);

    redis.pause_writes(Duration::from_millis(1_500));
    a.raise(&client, 3).await;
    eventually("five errors", || a.errors.summary().total() == 5).await;
    let started = Instant::now();
    let health = a.sync().await;
    assert!(health.is_degraded(), "{health:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a sync against a stalled Redis took {:?}",
        started.elapsed()
    );
    eventually("shared again", || {
        a.errors.storage_health() == ErrorStorageHealth::Shared
    })
    .await;
    assert_eq!(a.sync().await, ErrorStorageHealth::Shared);
    let summary = a.errors.summary();
    assert_eq!(summary.total(), 5);
    assert_eq!(fail_group_count(&summary), 5);
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let total: u64 = redis::cmd("GET")
        .arg("e2e:checkout:errors:total")
        .query(&mut con)
        .unwrap();
    assert_eq!(total, 5, "pushed once");
}
