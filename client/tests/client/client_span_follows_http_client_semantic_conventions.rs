use opentelemetry::trace::{
    FutureExt, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer, TracerProvider,
};
use std::sync::{Arc, Mutex};

use http::Extensions;
use opentelemetry::Context;
use reqwest::Method;
use reqwest_middleware::{ClientBuilder, Middleware, Next};

use crate::support::{attr, header, plain_client, Harness, Server};

#[tokio::test]
async fn client_span_is_a_child_of_the_current_span_with_semconv_attributes() {
    let h = Harness::new();
    let server = Server::start().await;
    let client = h.client();
    let parent_cx = Context::new().with_span(h.provider.tracer("test").start("parent"));
    let parent = parent_cx.span().span_context().clone();

    let url = format!(
        "http://user:secret@{}/echo/42?token=abc&page=2#fragment",
        server.addr
    );
    let request = reqwest::Request::new(Method::GET, url.parse().expect("a url"));
    let response = client
        .execute(request)
        .with_context(parent_cx.clone())
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);
    parent_cx.span().end();

    let span = h.only_client_span();
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.name, "GET");
    assert_eq!(span.status, Status::Unset);
    assert_eq!(span.span_context.trace_id(), parent.trace_id());
    assert_eq!(span.parent_span_id, parent.span_id());

    let port = server.addr.port().to_string();
    let full = format!(
        "http://{}/echo/42?token=REDACTED&page=REDACTED",
        server.addr
    );
    let expect = [
        ("http.request.method", "GET"),
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
        ("url.full", full.as_str()),
        ("http.response.status_code", "200"),
        ("network.protocol.version", "1.1"),
    ];
    for (key, value) in expect {
        assert_eq!(attr(&span, key).as_deref(), Some(value), "attribute {key}");
    }
    for absent in [
        "error.type",
        "http.request.resend_count",
        "http.request.method_original",
        "correlation.id",
    ] {
        assert_eq!(attr(&span, absent), None, "attribute {absent}");
    }

    let sent = header(response.headers(), "echo-traceparent").expect("traceparent was sent");
    assert_eq!(
        sent,
        format!(
            "00-{}-{}-01",
            parent.trace_id(),
            span.span_context.span_id()
        ),
        "the server's parent is the client span"
    );
}

#[tokio::test]
async fn unknown_methods_are_named_http_and_recorded_as_other() {
    let h = Harness::new();
    let server = Server::start().await;
    let method = Method::from_bytes(b"BREW").expect("a method");
    let response = h
        .client()
        .request(method, server.url("/pot"))
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);

    let span = h.only_client_span();
    assert_eq!(span.name, "HTTP");
    assert_eq!(
        attr(&span, "http.request.method").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attr(&span, "http.request.method_original").as_deref(),
        Some("BREW")
    );
}

#[tokio::test]
async fn a_remote_parent_and_its_tracestate_are_continued() {
    let h = Harness::new();
    let server = Server::start().await;
    let remote = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").expect("trace id"),
        SpanId::from_hex("b7ad6b7169203331").expect("span id"),
        TraceFlags::SAMPLED,
        true,
        TraceState::from_key_value([("vendor", "1")]).expect("tracestate"),
    );
    let cx = Context::new().with_remote_span_context(remote.clone());
    let response = h
        .client()
        .get(server.url("/"))
        .send()
        .with_context(cx)
        .await
        .expect("a response");

    let span = h.only_client_span();
    assert_eq!(span.parent_span_id, remote.span_id());
    assert_eq!(span.span_context.trace_id(), remote.trace_id());
    assert_eq!(
        header(response.headers(), "echo-traceparent"),
        Some(format!(
            "00-0af7651916cd43dd8448eb211c80319c-{}-01",
            span.span_context.span_id()
        ))
    );
    assert_eq!(
        header(response.headers(), "echo-tracestate").as_deref(),
        Some("vendor=1")
    );
}

#[tokio::test]
async fn without_a_current_span_the_client_span_starts_a_trace() {
    let h = Harness::new();
    let server = Server::start().await;
    let response = h
        .client()
        .get(server.url("/"))
        .send()
        .await
        .expect("a response");

    let span = h.only_client_span();
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert_eq!(
        header(response.headers(), "echo-traceparent"),
        Some(format!(
            "00-{}-{}-01",
            span.span_context.trace_id(),
            span.span_context.span_id()
        ))
    );
}

/// Records the span context current when the rest of the chain runs.
struct SeesContext(Arc<Mutex<Option<SpanContext>>>);

#[async_trait::async_trait]
impl Middleware for SeesContext {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let current = Context::map_current(|cx| cx.span().span_context().clone());
        *self.0.lock().expect("lock") = Some(current);
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn the_rest_of_the_chain_runs_inside_the_client_span() {
    let h = Harness::new();
    let server = Server::start().await;
    let seen = Arc::new(Mutex::new(None));
    let client = ClientBuilder::new(plain_client())
        .with(h.middleware())
        .with(SeesContext(seen.clone()))
        .build();
    let parent_cx = Context::new().with_span(h.provider.tracer("test").start("parent"));
    client
        .get(server.url("/"))
        .send()
        .with_context(parent_cx)
        .await
        .expect("a response");

    let span = h.only_client_span();
    let seen = seen
        .lock()
        .expect("lock")
        .clone()
        .expect("the inner middleware ran");
    assert_eq!(seen.span_id(), span.span_context.span_id());
}
