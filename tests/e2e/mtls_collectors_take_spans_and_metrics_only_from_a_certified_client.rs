//! A collector behind a TLS proxy that requires a client certificate signed by its CA (mTLS):
//! spans, metrics and error log records arrive when the client certificate and key are configured, by the
//! standard variables or the builder; without them every export is refused at the handshake,
//! counted as failed, and requests answer as fast as ever.

use std::time::{Duration, Instant};

use service_tracing::{BatchConfig, Protocol, ServiceTracing};

use crate::collector::{parse_metrics, CollectedSpan, Collector};
use crate::support::{checkouts, options, start, WAIT};
use crate::tls_proxy::TlsProxy;

fn has_all(spans: &[CollectedSpan], tag: &str, n: u32) -> bool {
    (0..n).all(|i| {
        let id = format!("{tag}-{i}");
        spans
            .iter()
            .any(|s| s.name == "GET /checkout/{id}" && s.attr("correlation.id") == Some(&id))
    })
}

/// Checkouts over mTLS set up by `setup`: the spans, the frontend's metrics and the log record
/// of the backend's new error group arrive.
async fn spans_and_metrics_arrive(
    protocol: Protocol,
    tag: &str,
    setup: impl FnOnce(ServiceTracing, &TlsProxy) -> ServiceTracing,
) {
    let collector = Collector::start_with_metrics();
    let upstream = match protocol {
        Protocol::Grpc => collector.grpc_port(),
        _ => collector.http_port(),
    };
    let proxy = TlsProxy::start_requiring_client_certificates(upstream).await;
    let options = options("frontend")
        .otlp_endpoint(proxy.endpoint())
        .otlp_protocol(protocol)
        .metric_export_interval(Duration::from_secs(3600));
    let services = start(setup(options, &proxy)).await;
    let caller = reqwest::Client::new();
    checkouts(&caller, &services.frontend, tag, 5).await;
    // The backend answers 500, and so does the frontend: new error groups, each a log record.
    let failed = caller
        .get(format!("{}/checkout/99?mode=fail", services.frontend))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    services.guard.force_flush().expect("flush");
    collector.wait_for_spans(WAIT, |s| has_all(s, tag, 5));
    let alerts = services.guard.errors().unwrap().alert_stats();
    assert!(alerts.logs_exported > 0, "{alerts:?}");
    assert_eq!(alerts.logs_failed, 0, "{alerts:?}");
    let logs = collector.wait_for_logs(WAIT, |l| l.len() as u64 == alerts.logs_exported);
    assert!(
        logs.iter().all(|l| l.event_name == "error.group.new"),
        "{logs:#?}"
    );
    let deadline = Instant::now() + WAIT;
    while !parse_metrics(&collector.raw_output())
        .iter()
        .any(|p| p.name == "http.server.request.duration" && p.service_name == "frontend")
    {
        assert!(
            Instant::now() < deadline,
            "no metrics:\n{}",
            collector.raw_output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = services.guard.export_stats();
    assert_eq!((stats.failed, stats.export_errors), (0, 0), "{stats:?}");
    assert_eq!(services.guard.metrics().unwrap().export_errors(), 0);
    services.guard.shutdown().unwrap();
    assert!(!proxy.negotiated().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_the_client_certificate_from_the_variables() {
    spans_and_metrics_arrive(Protocol::Grpc, "mtls-grpc", |o, proxy| {
        let files = [
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", proxy.ca_file()),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                proxy.client_certificate_file(),
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", proxy.client_key_file()),
        ]
        .map(|(name, path)| (name, path.display().to_string()));
        o.env_lookup(move |name| {
            files
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_with_the_client_certificate_from_the_builder() {
    spans_and_metrics_arrive(Protocol::HttpProtobuf, "mtls-http", |o, proxy| {
        o.otlp_certificate(proxy.ca_file())
            .otlp_client_certificate(proxy.client_certificate_file(), proxy.client_key_file())
    })
    .await;
}

/// The CA is trusted but no client certificate is given: the proxy refuses every handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_exports_fail_and_requests_stay_fast() {
    let collector = Collector::start_with_metrics();
    let proxy = TlsProxy::start_requiring_client_certificates(collector.grpc_port()).await;
    let services = start(
        options("frontend")
            .otlp_endpoint(proxy.endpoint())
            .otlp_protocol(Protocol::Grpc)
            .otlp_certificate(proxy.ca_file())
            .otlp_timeout(Duration::from_secs(2))
            .metric_export_interval(Duration::from_secs(3600))
            .batch(BatchConfig::new().with_scheduled_delay(Duration::from_millis(50))),
    )
    .await;
    let mut slowest = Duration::ZERO;
    for round in 0..4 {
        let times = checkouts(
            &reqwest::Client::new(),
            &services.frontend,
            &format!("anonymous{round}"),
            25,
        )
        .await;
        slowest = slowest.max(times.last().copied().unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + WAIT;
    let stats = loop {
        let stats = services.guard.export_stats();
        if stats.export_errors > 0 && stats.queued == 0 || Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats.exported, 0, "{stats:?}");
    assert!(stats.export_errors > 0, "{stats:?}");
    assert!(stats.failed > 0, "{stats:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "slowest request {slowest:?}"
    );
    // The metrics push is refused too (shutting down pushes a last time).
    let metrics = services.guard.metrics().unwrap();
    let _ = services.guard.shutdown();
    assert!(metrics.export_errors() > 0);
    // No handshake completed: nothing reached the collector.
    assert!(proxy.negotiated().is_empty(), "{:?}", proxy.negotiated());
    assert!(collector.spans().is_empty());
    assert!(parse_metrics(&collector.raw_output()).is_empty());
}
