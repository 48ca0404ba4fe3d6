//! [`SpanHook`]: called with each recording server span, at the request and at the response
//! head, after the layer's own attributes; never for an unsampled request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::trace::SpanRef;
use opentelemetry::KeyValue;
use service_tracing_middleware::{RequestHead, ResponseHead, SpanHook};

use crate::support::{attr, get, send, Harness};

#[derive(Clone, Default)]
struct Tenant {
    calls: Arc<AtomicUsize>,
}

impl SpanHook for Tenant {
    fn on_request(&self, request: &RequestHead<'_>, span: &SpanRef<'_>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if let Some(tenant) = request
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
        {
            span.set_attribute(KeyValue::new("app.tenant", tenant.to_owned()));
        }
        // The layer's attributes are set before: the hook can override one.
        span.set_attribute(KeyValue::new("url.scheme", "https"));
        span.update_name(format!("{} (tenant)", request.method));
    }

    fn on_response(&self, response: &ResponseHead<'_>, span: &SpanRef<'_>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let hit = response.headers.get("x-cache").is_some_and(|v| v == "hit");
        span.set_attribute(KeyValue::new("app.cache_hit", hit));
        span.set_attribute(KeyValue::new(
            "app.status",
            i64::from(response.status.as_u16()),
        ));
    }
}

fn app(h: &Harness, hook: Tenant) -> Router {
    Router::new()
        .route(
            "/users/{id}",
            get_route(|| async { ([("x-cache", "hit")], "ok") }),
        )
        .layer(h.layer().with_span_hook(hook).with_span_hook(
            |_: &RequestHead<'_>, span: &SpanRef<'_>| {
                span.add_event("second hook", vec![]);
            },
        ))
}

#[tokio::test]
async fn hooks_see_the_request_and_the_response_of_a_sampled_span() {
    let h = Harness::new();
    let hook = Tenant::default();
    send(
        app(&h, hook.clone()),
        get("/users/42")
            .header("x-tenant", "acme")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let span = h.only_span();
    assert_eq!(span.name, "GET (tenant)");
    assert_eq!(attr(&span, "app.tenant").as_deref(), Some("acme"));
    assert_eq!(attr(&span, "app.cache_hit").as_deref(), Some("true"));
    assert_eq!(attr(&span, "app.status").as_deref(), Some("200"));
    assert_eq!(attr(&span, "http.route").as_deref(), Some("/users/{id}"));
    let schemes: Vec<_> = span
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str() == "url.scheme")
        .map(|kv| kv.value.as_str().into_owned())
        .collect();
    assert_eq!(
        schemes.last().map(String::as_str),
        Some("https"),
        "set after the layer's"
    );
    assert!(span.events.iter().any(|e| e.name == "second hook"));
    assert_eq!(hook.calls.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn hooks_are_not_called_for_unsampled_requests() {
    let h = Harness::new();
    let hook = Tenant::default();
    send(
        app(&h, hook.clone()),
        get("/users/42")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(h.spans().is_empty());
    assert_eq!(hook.calls.load(Ordering::Relaxed), 0);
}
