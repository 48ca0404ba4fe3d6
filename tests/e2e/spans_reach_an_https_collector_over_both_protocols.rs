use std::time::{Duration, Instant};

use service_tracing::metrics::MetricsExporter;
use service_tracing::{BatchConfig, Protocol, ServiceTracing};

use crate::collector::Collector;
use crate::support::{checkouts, options, start, WAIT};
use crate::tls_proxy::TlsProxy;

/// Options for an https endpoint. Metrics stay off: these tests are about spans (metrics over
/// `https` are tested in `metrics_and_log_records_reach_an_https_collector_over_both_protocols`).
fn tls_options(endpoint: String, protocol: Protocol) -> ServiceTracing {
    options("frontend")
        .otlp_endpoint(endpoint)
        .otlp_protocol(protocol)
        .metrics_exporter(MetricsExporter::None)
}

/// Sends `n` checkouts and returns the slowest answer's time.
async fn slowest_checkout(frontend: &str, tag: &str, n: u32) -> Duration {
    let times = checkouts(&reqwest::Client::new(), frontend, tag, n).await;
    times.last().copied().unwrap_or_default()
}

fn has_all(spans: &[crate::collector::CollectedSpan], tag: &str, n: u32) -> bool {
    (0..n).all(|i| {
        let id = format!("{tag}-{i}");
        spans
            .iter()
            .any(|s| s.name == "GET /checkout/{id}" && s.attr("correlation.id") == Some(&id))
    })
}

/// gRPC over TLS (ALPN `h2`), trusting the test CA through the `otlp_certificate` builder call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_trusting_the_ca_from_the_builder() {
    let collector = Collector::start();
    let proxy = TlsProxy::start(collector.grpc_port()).await;
    let services =
        start(tls_options(proxy.endpoint(), Protocol::Grpc).otlp_certificate(proxy.ca_file()))
            .await;
    slowest_checkout(&services.frontend, "tls-grpc", 5).await;
    collector.wait_for_spans(WAIT, |s| has_all(s, "tls-grpc", 5));
    services.guard.shutdown().unwrap();
    let negotiated = proxy.negotiated();
    assert!(!negotiated.is_empty());
    assert!(negotiated.iter().all(|p| p == "h2"), "{negotiated:?}");
}

/// OTLP/HTTP over TLS, trusting the test CA through `OTEL_EXPORTER_OTLP_CERTIFICATE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_over_tls_trusting_the_ca_from_the_variable() {
    let collector = Collector::start();
    let proxy = TlsProxy::start(collector.http_port()).await;
    let ca = proxy.ca_file().display().to_string();
    let services = start(
        tls_options(proxy.endpoint(), Protocol::HttpProtobuf)
            .env_lookup(move |name| (name == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| ca.clone())),
    )
    .await;
    slowest_checkout(&services.frontend, "tls-http", 5).await;
    collector.wait_for_spans(WAIT, |s| has_all(s, "tls-http", 5));
    services.guard.shutdown().unwrap();
    // Offered both, the proxy picks h2; the collector's HTTP receiver takes it.
    let negotiated = proxy.negotiated();
    assert!(!negotiated.is_empty());
    assert!(negotiated.iter().all(|p| p == "h2"), "{negotiated:?}");
}

/// Without the test CA the collector is not trusted: nothing is exported, every failed export
/// is counted, and requests answer as fast as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_collector_gets_nothing_and_requests_stay_fast() {
    let collector = Collector::start();
    let proxy = TlsProxy::start(collector.grpc_port()).await;
    let services = start(
        tls_options(proxy.endpoint(), Protocol::Grpc)
            .otlp_timeout(Duration::from_secs(2))
            .batch(BatchConfig::new().with_scheduled_delay(Duration::from_millis(50))),
    )
    .await;
    let mut slowest = Duration::ZERO;
    for round in 0..4 {
        slowest = slowest
            .max(slowest_checkout(&services.frontend, &format!("untrusted{round}"), 25).await);
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
    // The handshakes were refused: nothing reached the collector.
    assert!(proxy.negotiated().is_empty(), "{:?}", proxy.negotiated());
    assert!(collector.spans().is_empty());
    let _ = services.guard.shutdown();
}
