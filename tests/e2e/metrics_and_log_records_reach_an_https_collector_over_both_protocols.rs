//! Metrics and error log records go over `https` as spans do, on both protocols: through a
//! TLS-terminating proxy, then a recording proxy, to the real collector, which prints them.
//! With gzip configured for metrics, every metrics request says so in its header.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, Window};
use service_tracing::{Compression, Protocol, ServiceTracing};

use crate::collector::{parse_metrics, CollectedMetricPoint, Collector};
use crate::otlp_proxy::{Answer, OtlpProxy, Seen};
use crate::support::{options, serve, WAIT};
use crate::tls_proxy::TlsProxy;

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

/// Waits until the collector printed a server histogram of `route` for `service`.
async fn wait_for_metric(collector: &Collector, route: &str) -> Vec<CollectedMetricPoint> {
    let deadline = Instant::now() + WAIT;
    loop {
        let points = parse_metrics(&collector.raw_output());
        let found = points.iter().any(|p| {
            p.name == "http.server.request.duration"
                && p.service_name == "svc"
                && p.attr("http.route") == Some(route)
        });
        if found {
            return points;
        }
        assert!(
            Instant::now() < deadline,
            "no metric for {route} at the collector:\n{}",
            collector.raw_output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests on the wire to one of `paths`.
fn to(seen: &[Seen], paths: [&str; 2]) -> Vec<Seen> {
    seen.iter()
        .filter(|r| paths.contains(&r.path.as_str()))
        .cloned()
        .collect()
}

/// Three panics (a new error group and a count alert, so two log records) and a few good
/// requests, exported over `https` by `setup`; checks what the collector and the proxies saw.
/// `metrics_gzip` and `others_gzip` say which requests must be compressed.
async fn metrics_and_logs_over_https(
    protocol: Protocol,
    setup: impl FnOnce(ServiceTracing, &TlsProxy) -> ServiceTracing,
    metrics_gzip: bool,
    others_gzip: bool,
) {
    let collector = Collector::start_with_metrics();
    let upstream = match protocol {
        Protocol::Grpc => collector.grpc_port(),
        _ => collector.http_port(),
    };
    let recorder = OtlpProxy::start(Some(upstream), Vec::new(), Answer::Forward).await;
    let tls = TlsProxy::start(recorder.port()).await;
    let options = options("svc")
        .otlp_endpoint(tls.endpoint())
        .otlp_protocol(protocol)
        .metric_export_interval(Duration::from_secs(3600))
        .alert_rule(AlertRule::count(2, Window::OneMinute));
    let (routes, guard) = setup(options, &tls)
        .init(
            Router::new()
                .route("/orders/{id}", get(order))
                .route("/ok", get(|| async { "ok" })),
        )
        .expect("setup");
    let app = serve(routes).await;
    let caller = reqwest::Client::new();
    for n in 1..=3 {
        let response = caller
            .get(format!("{app}/orders/{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let response = caller.get(format!("{app}/ok")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    guard.force_flush().expect("flush");

    let logs = collector.wait_for_logs(WAIT, |l| l.len() >= 2);
    assert!(
        logs.iter()
            .any(|l| l.body == "new error group: panic: order 1 not found"),
        "{logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l.event_name == "error.alert"),
        "{logs:#?}"
    );
    let points = wait_for_metric(&collector, "/ok").await;
    let ok = points
        .iter()
        .find(|p| p.name == "http.server.request.duration" && p.attr("http.route") == Some("/ok"))
        .unwrap();
    assert_eq!(ok.count, Some(3));

    let alerts = guard.errors().unwrap().alert_stats();
    assert_eq!((alerts.logs_exported, alerts.logs_failed), (2, 0));
    let metrics = guard.metrics().unwrap();
    assert_eq!(metrics.export_errors(), 0);
    guard.shutdown().unwrap();

    // What crossed the wire: decrypted by the TLS proxy, seen by the recorder.
    let seen = recorder.seen();
    let (metrics_paths, logs_paths) = (
        [
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            "/v1/metrics",
        ],
        [
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            "/v1/logs",
        ],
    );
    let header = match protocol {
        Protocol::Grpc => "grpc-encoding",
        _ => "content-encoding",
    };
    let encoding = |r: &Seen| {
        r.headers
            .get(header)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let metric_requests = to(&seen, metrics_paths);
    let log_requests = to(&seen, logs_paths);
    assert!(!metric_requests.is_empty(), "{seen:#?}");
    assert!(!log_requests.is_empty(), "{seen:#?}");
    for request in &seen {
        assert_eq!(request.status, 200, "the collector took it: {request:?}");
        let gzip = if metrics_paths.contains(&request.path.as_str()) {
            metrics_gzip
        } else {
            others_gzip
        };
        assert_eq!(
            encoding(request),
            gzip.then(|| "gzip".to_owned()),
            "{request:?}"
        );
    }
    let negotiated = tls.negotiated();
    assert!(!negotiated.is_empty());
    assert!(negotiated.iter().all(|p| p == "h2"), "{negotiated:?}");
}

/// gRPC over TLS, the CA and gzip from the builder, which apply to every signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_metrics_and_log_records_over_tls_with_gzip_from_the_builder() {
    metrics_and_logs_over_https(
        Protocol::Grpc,
        |o, tls| {
            o.otlp_certificate(tls.ca_file())
                .otlp_compression(Compression::Gzip)
        },
        true,
        true,
    )
    .await;
}

/// OTLP/HTTP over TLS, the CA from `OTEL_EXPORTER_OTLP_CERTIFICATE` and gzip for metrics only,
/// from `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_metrics_over_tls_with_the_metrics_own_gzip_variable() {
    metrics_and_logs_over_https(
        Protocol::HttpProtobuf,
        |o, tls| {
            let ca = tls.ca_file().display().to_string();
            o.env_lookup(move |name| match name {
                "OTEL_EXPORTER_OTLP_CERTIFICATE" => Some(ca.clone()),
                "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION" => Some("gzip".to_owned()),
                _ => None,
            })
        },
        true,
        false,
    )
    .await;
}
