use service_tracing::Protocol;

use crate::collector::{span_named, CollectedSpan, Collector};
use crate::support::{options, start, WAIT};

async fn one_trace_over(protocol: Protocol) {
    let collector = Collector::start();
    let endpoint = match protocol {
        Protocol::Grpc => collector.grpc_endpoint(),
        _ => collector.http_endpoint(),
    };
    let services = start(
        options("frontend")
            .otlp_endpoint(endpoint)
            .otlp_protocol(protocol),
    )
    .await;
    let caller = reqwest::Client::new();

    let response = caller
        .get(format!("{}/checkout/42", services.frontend))
        .header("x-correlation-id", "e2e-corr-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-correlation-id"], "e2e-corr-1");
    let body: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        body["correlation_id"], "e2e-corr-1",
        "the backend saw another id"
    );

    let failing = caller
        .get(format!("{}/checkout/7?mode=fail", services.frontend))
        .header("x-correlation-id", "e2e-corr-2")
        .send()
        .await
        .unwrap();
    assert_eq!(failing.status(), 500);
    assert_eq!(failing.headers()["x-correlation-id"], "e2e-corr-2");

    services.guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter()
            .filter(|s| s.attr("correlation.id").is_some())
            .count()
            >= 6
    });

    for (id, status, route_status) in [
        ("e2e-corr-1", "Unset", "200"),
        ("e2e-corr-2", "Error", "500"),
    ] {
        let trace: Vec<CollectedSpan> = spans
            .iter()
            .filter(|s| s.attr("correlation.id") == Some(id))
            .cloned()
            .collect();
        let frontend = span_named(&trace, "GET /checkout/{id}");
        let client = span_named(&trace, "GET");
        let backend = span_named(&trace, "GET /orders/{id}");
        assert!(
            trace.iter().all(|s| s.trace_id == frontend.trace_id),
            "one trace: {trace:#?}"
        );
        assert_eq!(frontend.parent_id, "", "the frontend span is the root");
        assert_eq!(client.parent_id, frontend.span_id);
        assert_eq!(backend.parent_id, client.span_id);
        assert_eq!(
            (
                frontend.kind.as_str(),
                client.kind.as_str(),
                backend.kind.as_str()
            ),
            ("Server", "Client", "Server")
        );
        assert_eq!(frontend.service_name, "frontend");
        assert_eq!(client.service_name, "frontend");
        assert_eq!(backend.service_name, "backend");
        assert_eq!(frontend.attr("http.route"), Some("/checkout/{id}"));
        assert_eq!(backend.attr("http.route"), Some("/orders/{id}"));
        for span in [frontend, client, backend] {
            assert_eq!(
                span.attr("http.response.status_code"),
                Some(route_status),
                "{span:#?}"
            );
            assert_eq!(span.status_code, status, "{span:#?}");
        }
        assert_eq!(
            backend.attr("url.path").map(|p| p.starts_with("/orders/")),
            Some(true)
        );
        assert!(client
            .attr("url.full")
            .is_some_and(|u| u.contains("/orders/")));
        assert_eq!(frontend.resource_attr("service.name"), Some("frontend"));
        assert!(frontend.resource_attr("host.name").is_some());
        assert!(frontend.resource_attr("process.pid").is_some());
    }
    services.guard.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_otlp_grpc() {
    one_trace_over(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_otlp_http_protobuf() {
    one_trace_over(Protocol::HttpProtobuf).await;
}
