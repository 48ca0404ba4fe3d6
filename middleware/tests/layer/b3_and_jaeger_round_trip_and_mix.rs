use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::TraceContextExt;
use service_tracing_middleware::correlation::{self, CorrelationSource};
use service_tracing_middleware::propagation::{
    extract, inject, propagator_from_names, FirstMatchPropagator,
};
use service_tracing_middleware::CorrelationId;

use crate::support::{get, send, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const W3C_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const W3C_SPAN: &str = "b7ad6b7169203331";

/// An app whose handler injects the current context with `propagator` and answers with the
/// outbound headers, one `name: value` per line.
fn app(h: &Harness, propagator: FirstMatchPropagator) -> Router {
    let outbound = propagator.clone();
    Router::new()
        .route(
            "/",
            get_route(move || {
                let propagator = outbound.clone();
                async move {
                    let mut headers = http::HeaderMap::new();
                    inject(
                        &propagator,
                        &opentelemetry::Context::current(),
                        &mut headers,
                    );
                    let mut lines: Vec<String> = headers
                        .iter()
                        .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
                        .collect();
                    lines.sort();
                    lines.join("\n")
                }
            }),
        )
        .layer(h.layer().with_propagator(propagator))
}

fn header<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

fn names(list: &[&str]) -> FirstMatchPropagator {
    propagator_from_names(list).unwrap()
}

#[tokio::test]
async fn b3_only_request_is_continued_and_outbound_carries_traceparent_and_b3() {
    let h = Harness::new();
    let request = get("/")
        .header("b3", format!("{TRACE}-{SPAN}-1"))
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(app(&h, names(&["tracecontext", "baggage", "b3"])), request).await;
    let span = h.only_span();
    assert_eq!(span.span_context.trace_id().to_string(), TRACE);
    assert_eq!(span.parent_span_id.to_string(), SPAN);
    assert!(span.span_context.is_sampled());
    let server = span.span_context.span_id().to_string();
    assert_eq!(
        header(&body, "traceparent"),
        Some(format!("00-{TRACE}-{server}-01").as_str()),
        "{body}"
    );
    assert_eq!(
        header(&body, "b3"),
        Some(format!("{TRACE}-{server}-1").as_str()),
        "{body}"
    );
}

#[tokio::test]
async fn b3_multi_64_bit_debug_is_padded_sampled_and_kept_on_the_way_out() {
    let h = Harness::new();
    let request = get("/")
        .header("X-B3-TraceId", &TRACE[16..])
        .header("X-B3-SpanId", SPAN)
        .header("X-B3-Flags", "1")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(app(&h, names(&["b3multi"])), request).await;
    let span = h.only_span();
    let padded = format!("0000000000000000{}", &TRACE[16..]);
    assert_eq!(span.span_context.trace_id().to_string(), padded);
    assert_eq!(span.parent_span_id.to_string(), SPAN);
    assert!(span.span_context.is_sampled());
    let server = span.span_context.span_id().to_string();
    assert_eq!(header(&body, "x-b3-traceid"), Some(padded.as_str()));
    assert_eq!(header(&body, "x-b3-spanid"), Some(server.as_str()));
    assert_eq!(header(&body, "x-b3-flags"), Some("1"));
    assert_eq!(header(&body, "x-b3-sampled"), None);
    assert_eq!(header(&body, "traceparent"), None);
}

#[tokio::test]
async fn jaeger_request_is_continued_and_written_back() {
    let h = Harness::new();
    let request = get("/")
        .header("uber-trace-id", format!("{}:{SPAN}:0:3", &TRACE[14..]))
        .header("uberctx-tenant", "acme+corp")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(app(&h, names(&["jaeger", "tracecontext"])), request).await;
    let span = h.only_span();
    let padded = format!("00000000000000{}", &TRACE[14..]);
    assert_eq!(span.span_context.trace_id().to_string(), padded);
    assert_eq!(span.parent_span_id.to_string(), SPAN);
    let server = span.span_context.span_id().to_string();
    assert_eq!(
        header(&body, "uber-trace-id"),
        Some(format!("{padded}:{server}:0:3").as_str()),
        "{body}"
    );
    assert_eq!(header(&body, "uberctx-tenant"), Some("acme%20corp"));
    assert_eq!(
        header(&body, "traceparent"),
        Some(format!("00-{padded}-{server}-01").as_str())
    );
}

#[tokio::test]
async fn first_configured_format_wins_when_both_are_present() {
    for (order, trace, parent) in [
        (&["b3", "tracecontext"][..], TRACE, SPAN),
        (&["tracecontext", "b3"][..], W3C_TRACE, W3C_SPAN),
    ] {
        let h = Harness::new();
        let request = get("/")
            .header("traceparent", format!("00-{W3C_TRACE}-{W3C_SPAN}-01"))
            .header("b3", format!("{TRACE}-{SPAN}-1"))
            .body(Body::empty())
            .unwrap();
        let (_, body) = send(app(&h, names(order)), request).await;
        let span = h.only_span();
        assert_eq!(span.span_context.trace_id().to_string(), trace, "{order:?}");
        assert_eq!(span.parent_span_id.to_string(), parent, "{order:?}");
        let server = span.span_context.span_id().to_string();
        assert_eq!(
            header(&body, "b3"),
            Some(format!("{trace}-{server}-1").as_str())
        );
    }
}

#[tokio::test]
async fn invalid_b3_and_jaeger_start_a_new_trace() {
    let cases = [
        ("b3", format!("{}-{SPAN}-1", TRACE.to_uppercase())),
        ("b3", format!("{TRACE}-{SPAN}-x")),
        ("b3", format!("{}-{SPAN}-1", &TRACE[1..])),
        ("uber-trace-id", format!("{TRACE}:{SPAN}:0")),
        (
            "uber-trace-id",
            format!("{}:{SPAN}:0:1", TRACE.to_uppercase()),
        ),
    ];
    for (name, value) in cases {
        let h = Harness::new();
        let request = get("/")
            .header(name, value.as_str())
            .body(Body::empty())
            .unwrap();
        send(app(&h, names(&["b3", "jaeger"])), request).await;
        let span = h.only_span();
        assert_ne!(span.span_context.trace_id().to_string(), TRACE, "{value}");
        assert_eq!(
            span.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "{value}"
        );
    }
}

/// What the layer does once `service.rs` reads baggage through `correlation::from_baggage`.
#[tokio::test]
async fn jaeger_uberctx_correlation_id_resolves_to_the_correlation_id() {
    let mut headers = http::HeaderMap::new();
    headers.insert("uberctx-correlation-id", "abc".parse().unwrap());
    let cx = extract(&names(&["tracecontext", "baggage", "jaeger"]), &headers);
    assert_eq!(correlation::from_baggage(cx.baggage()), Some("abc"));
    let (id, source) = correlation::resolve(
        &headers,
        &[correlation::CORRELATION_ID_HEADER],
        correlation::from_baggage(cx.baggage()),
    );
    assert_eq!((id.as_str(), source), ("abc", CorrelationSource::Baggage));
    assert!(!cx.span().span_context().is_valid());
}

#[tokio::test]
async fn jaeger_uberctx_correlation_id_is_the_layers_correlation_id() {
    let h = Harness::new();
    let app = Router::new()
        .route(
            "/",
            get_route(|id: CorrelationId| async move { id.as_str().to_owned() }),
        )
        .layer(
            h.layer()
                .with_propagator(names(&["tracecontext", "baggage", "jaeger"])),
        );
    let request = get("/")
        .header("uber-trace-id", format!("{TRACE}:{SPAN}:0:1"))
        .header("uberctx-correlation-id", "abc")
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(app, request).await;
    assert_eq!(body, "abc");
    assert_eq!(response.headers()["x-correlation-id"], "abc");
}
