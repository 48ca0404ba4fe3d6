//! The traced client over `https` (the client crate's `tls` feature): a loopback server behind
//! the TLS proxy (test CA) receives `traceparent` for the client span, which reaches the real
//! collector with an `https` `url.full`.

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use service_tracing::metrics::MetricsExporter;
use service_tracing::{traced_client, traced_client_with};

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};
use crate::tls_proxy::TlsProxy;

async fn traceparent(headers: HeaderMap) -> String {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_server_trusting_the_test_ca_receives_the_client_spans_context() {
    let collector = Collector::start();
    let (_routes, guard) = options("caller")
        .otlp_endpoint(collector.http_endpoint())
        .metrics_exporter(MetricsExporter::None)
        .init(Router::<()>::new())
        .expect("setup");
    let plain = serve(Router::new().route("/echo", get(traceparent))).await;
    let port: u16 = plain.rsplit(':').next().unwrap().parse().unwrap();
    let proxy = TlsProxy::start(port).await;
    let url = format!("{}/echo", proxy.endpoint());

    let ca = reqwest::Certificate::from_pem(&std::fs::read(proxy.ca_file()).unwrap()).unwrap();
    let client = traced_client_with(
        reqwest::Client::builder()
            .add_root_certificate(ca)
            .build()
            .unwrap(),
    );
    let response = client.get(&url).send().await.expect("an https answer");
    assert_eq!(response.status(), 200);
    let received = response.text().await.unwrap();
    assert_eq!(
        proxy.negotiated(),
        ["http/1.1"],
        "the call went through TLS"
    );

    // Without the test CA the same call is refused: the trust above is real.
    let untrusted = traced_client().get(&url).send().await;
    assert!(untrusted.is_err(), "{untrusted:?}");

    guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter()
            .filter(|s| s.kind == "Client" && s.status_code == "Unset")
            .count()
            >= 1
    });
    let span = spans
        .iter()
        .find(|s| s.kind == "Client" && s.status_code == "Unset")
        .unwrap();
    assert_eq!(span.attr("url.full"), Some(url.as_str()));
    assert_eq!(span.attr("server.address"), Some("localhost"));
    assert_eq!(
        received,
        format!("00-{}-{}-01", span.trace_id, span.span_id),
        "the server received the client span's context"
    );
    guard.shutdown().unwrap();
}
