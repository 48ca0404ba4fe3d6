use std::io::Write;
use std::sync::{Arc, Mutex};

use service_tracing::{Protocol, TraceIdFormat};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::collector::{span_named, Collector};
use crate::support::{options, start, WAIT};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The application installs its own subscriber with our format and bridge layer: a log line in
/// an `#[instrument]`ed handler carries the ids of the span it is in, and that span is a child
/// of the server span at the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_line_in_handler_span_carries_its_ids() {
    let collector = Collector::start();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .install_subscriber(false),
    )
    .await;
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(TraceIdFormat::new())
                .with_writer(move || writer.clone())
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .with(services.guard.bridge_layer())
        .init();

    let r = reqwest::Client::new()
        .get(format!("{}/orders/5", services.backend))
        .header("x-correlation-id", "log-corr")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    services.guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 2);
    let server = span_named(&spans, "GET /orders/{id}");
    let handler = span_named(&spans, "order");
    assert_eq!(
        handler.parent_id, server.span_id,
        "the #[instrument] span is a child"
    );
    assert_eq!(handler.trace_id, server.trace_id);

    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("backend looks order 5 up"))
        .unwrap_or_else(|| panic!("no log line in {text}"));
    assert!(
        line.contains(&format!("trace_id={}", server.trace_id)),
        "{line}"
    );
    assert!(
        line.contains(&format!("span_id={}", handler.span_id)),
        "{line}"
    );
    assert!(line.contains("correlation_id=log-corr"), "{line}");
}

/// `RUST_LOG=warn` (here the builder's log filter) hides info lines but drops no span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warn_log_filter_drops_no_spans() {
    let collector = Collector::start();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .log_filter("warn"),
    )
    .await;
    let r = reqwest::Client::new()
        .get(format!("{}/checkout/3", services.frontend))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    services.guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 4);
    span_named(&spans, "GET /checkout/{id}");
    span_named(&spans, "GET /orders/{id}");
    let handler = span_named(&spans, "order");
    assert_eq!(
        handler.parent_id,
        span_named(&spans, "GET /orders/{id}").span_id
    );
}
