use std::collections::BTreeSet;

use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, start, WAIT};

/// With every log level on, N requests give exactly the 3N spans those requests made: nothing
/// from the exporter's own gRPC traffic, even after further exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_holds_exactly_the_spans_of_the_requests() {
    let collector = Collector::start();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .log_filter("trace"),
    )
    .await;
    let caller = reqwest::Client::new();
    const N: usize = 20;
    let mut ids = BTreeSet::new();
    for i in 0..N {
        let id = format!("exact-{i}");
        let r = caller
            .get(format!("{}/checkout/{i}", services.frontend))
            .header("x-correlation-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.insert(id);
    }
    // The first export happens here; anything its traffic produced would be queued and sent by
    // the next flushes, before the marker request's spans.
    services.guard.force_flush().unwrap();
    services.guard.force_flush().unwrap();
    let marker = caller
        .get(format!("{}/checkout/999", services.frontend))
        .header("x-correlation-id", "marker")
        .send()
        .await
        .unwrap();
    assert_eq!(marker.status(), 200);
    services.guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        s.iter()
            .filter(|s| s.attr("correlation.id") == Some("marker"))
            .count()
            >= 3
    });

    // Handler spans from #[instrument] carry no correlation.id attribute; count them by trace.
    let server_traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.attr("correlation.id").is_some())
        .map(|s| s.trace_id.as_str())
        .collect();
    assert_eq!(server_traces.len(), N + 1, "one trace per request");
    let stray: Vec<_> = spans
        .iter()
        .filter(|s| !server_traces.contains(s.trace_id.as_str()))
        .collect();
    assert!(
        stray.is_empty(),
        "spans from outside the requests: {stray:#?}"
    );
    // Per request: frontend server, client, backend server, and the backend's `order` span.
    assert_eq!(
        spans.len(),
        4 * (N + 1),
        "{:#?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let stats = services.guard.export_stats();
    assert_eq!((stats.dropped, stats.failed), (0, 0));
    services.guard.shutdown().unwrap();
}
