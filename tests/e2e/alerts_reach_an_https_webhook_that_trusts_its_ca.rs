//! Webhooks over `https`: an alert reaches a real receiver behind the TLS proxy when the
//! webhook trusts the proxy's CA (`alert_webhook_ca_certificate`); trusting another CA, the
//! delivery fails at once (no retry can help), counted, while requests are served as ever, even
//! when `OTEL_EXPORTER_OTLP_CERTIFICATE` names the right CA: that variable is the exporter's.

use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::{AlertRule, Window};
use service_tracing::{TracesExporter, TracingGuard};

use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::{options, serve};
use crate::tls_proxy::TlsProxy;

const REQUESTS: u64 = 5;

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

/// A service whose every error fires an alert (no cooldown) posted to `url`, trusting `ca`,
/// with `OTEL_EXPORTER_OTLP_CERTIFICATE` set to `otlp_ca` if given.
async fn service(
    url: String,
    ca: &std::path::Path,
    otlp_ca: Option<&std::path::Path>,
) -> (String, TracingGuard) {
    let otlp_ca = otlp_ca.map(|p| p.display().to_string());
    let (routes, guard) = options("svc")
        .env_lookup(move |name| {
            (name == "OTEL_EXPORTER_OTLP_CERTIFICATE")
                .then(|| otlp_ca.clone())
                .flatten()
        })
        .exporter(TracesExporter::None)
        .alert_rule(AlertRule::count(1, Window::OneMinute).cooldown(Duration::ZERO))
        .alert_webhook(url)
        .alert_webhook_ca_certificate(ca)
        .init(Router::new().route("/fail/{id}", get(fail)))
        .expect("setup");
    (serve(routes).await, guard)
}

/// Sends the failing requests; each is answered at once.
async fn fail_requests(app: &str) {
    let caller = reqwest::Client::new();
    for n in 0..REQUESTS {
        let t = Instant::now();
        let response = caller.get(format!("{app}/fail/{n}")).send().await.unwrap();
        assert_eq!(response.status(), 500);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_reaches_an_https_receiver_trusting_the_test_ca() {
    // The receiver answers 200 to every post (HTTP/1.1 or h2, whichever TLS negotiated).
    let receiver = OtlpProxy::start(None, Vec::new(), Answer::Status(200, Vec::new())).await;
    let port: u16 = receiver
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tls = TlsProxy::start(port).await;
    let (app, guard) = service(format!("{}/hook", tls.endpoint()), tls.ca_file(), None).await;

    fail_requests(&app).await;
    guard.force_flush().unwrap();

    let stats = guard.errors().unwrap().alert_stats();
    assert_eq!(stats.fired, REQUESTS, "{stats:?}");
    assert_eq!((stats.delivered, stats.failed), (REQUESTS, 0), "{stats:?}");
    let posts = receiver.seen();
    assert_eq!(posts.len() as u64, REQUESTS);
    for post in &posts {
        assert_eq!(post.headers["content-type"], "application/json");
        let alert: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
        assert_eq!(alert["rule"]["kind"], "count", "{alert}");
    }
    let negotiated = tls.negotiated();
    assert!(!negotiated.is_empty(), "the posts went through TLS");
    assert!(negotiated.iter().all(|p| p == "h2"), "{negotiated:?}");
    guard.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusting_another_ca_fails_each_delivery_once_and_requests_still_succeed() {
    let receiver = OtlpProxy::start(None, Vec::new(), Answer::Status(200, Vec::new())).await;
    let port: u16 = receiver
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let tls = TlsProxy::start(port).await;
    // Another proxy's CA: a valid CA file that did not sign the receiver's certificate.
    let other = TlsProxy::start(port).await;
    let (app, guard) = service(
        format!("{}/hook", tls.endpoint()),
        other.ca_file(),
        Some(tls.ca_file()),
    )
    .await;

    fail_requests(&app).await;
    guard.force_flush().unwrap();

    let stats = guard.errors().unwrap().alert_stats();
    assert_eq!(stats.fired, REQUESTS, "{stats:?}");
    assert_eq!(
        (stats.delivered, stats.failed, stats.dropped),
        (0, REQUESTS, 0),
        "{stats:?}"
    );
    assert_eq!(
        stats.retries, 0,
        "an untrusted certificate is not retried: {stats:?}"
    );
    assert!(receiver.seen().is_empty(), "nothing got through");
    guard.shutdown().unwrap();
}
