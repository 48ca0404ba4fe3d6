use service_tracing::{Protocol, TrustIncoming};

use crate::collector::{span_named, Collector};
use crate::support::{options, start, WAIT};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// At a public edge (`trust_incoming(never)`), a caller's traceparent does not choose the trace:
/// the collector receives a new trace whose server span links to the caller's context. (That the
/// caller's baggage is dropped is checked at the layer, in the middleware's tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_caller_gets_a_new_trace_linked_to_its_own() {
    let collector = Collector::start();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .trust_incoming(TrustIncoming::never()),
    )
    .await;
    let r = reqwest::Client::new()
        .get(format!("{}/checkout/1", services.frontend))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("baggage", "planted=evil")
        .header("x-correlation-id", "edge-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    services.guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /orders/{id}"));
    let edge = span_named(&spans, "GET /checkout/{id}");
    assert_ne!(edge.trace_id, TRACE);
    assert_eq!(edge.parent_id, "");
    let link = edge.links.first().expect("a link to the caller's context");
    assert_eq!(
        (link.trace_id.as_str(), link.span_id.as_str()),
        (TRACE, PARENT)
    );
    // The backend layer (same options) trusts nobody either, but its parent came from our own
    // client... which it cannot tell apart: so it starts a new trace too, linked to ours.
    let backend = span_named(&spans, "GET /orders/{id}");
    assert!(backend.links.iter().any(|l| l.trace_id == edge.trace_id));
    assert_eq!(edge.attr("correlation.id"), Some("edge-1"));
}
