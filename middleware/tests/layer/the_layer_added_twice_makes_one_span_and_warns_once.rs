use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::trace::SpanKind;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use crate::support::{get, send, Harness};

/// Counts the layer's warnings (level WARN, target `service_tracing::layer`) seen on the
/// thread it is the default subscriber of.
#[derive(Clone, Default)]
struct Warnings(Arc<AtomicUsize>);

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if *meta.level() == Level::WARN && meta.target() == "service_tracing::layer" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Warnings {
    fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

async fn three_requests(app: Router) {
    for i in 0..3 {
        let (response, body) = send(
            app.clone(),
            get(&format!("/users/{i}")).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(body, "ok");
    }
}

// The only test of this binary that adds the layer twice: the warning is once per process.
#[tokio::test(flavor = "current_thread")]
async fn twice_gives_one_server_span_per_request_and_one_warning() {
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(warnings.clone());
    let h = Harness::new();
    let app = Router::new()
        .route(
            "/users/{id}",
            get_route(|| async {
                // The handler still runs in the (outer) request's context.
                assert!(service_tracing_middleware::CorrelationId::current().is_some());
                "ok"
            }),
        )
        .layer(h.layer())
        .layer(h.layer());
    three_requests(app).await;

    let spans = h.spans();
    assert_eq!(spans.len(), 3, "one span per request: {spans:#?}");
    assert!(spans.iter().all(|s| s.span_kind == SpanKind::Server));
    assert!(
        spans
            .iter()
            .all(|s| s.parent_span_id == opentelemetry::trace::SpanId::INVALID),
        "no server span nested in another"
    );
    assert_eq!(warnings.count(), 1, "warned once, not per request");
}

#[tokio::test(flavor = "current_thread")]
async fn once_gives_no_warning() {
    let warnings = Warnings::default();
    let _default = tracing::subscriber::set_default(warnings.clone());
    let h = Harness::new();
    let app = Router::new()
        .route("/users/{id}", get_route(|| async { "ok" }))
        .layer(h.layer());
    three_requests(app).await;
    assert_eq!(h.spans().len(), 3);
    assert_eq!(warnings.count(), 0);
}
