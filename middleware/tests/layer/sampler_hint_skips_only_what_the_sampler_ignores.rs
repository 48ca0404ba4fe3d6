//! [`SamplerHint`]: the layer skips the tracer for unsampled parents and sets attributes once
//! a span records, and what leaves the process is what the SDK alone would have produced.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry_sdk::trace::Sampler;
use service_tracing_middleware::{RequestOutcome, SamplerHint};

use crate::support::{attr, get, outbound_headers, send, Harness};

const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
const UNSAMPLED_RANDOM: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-02";

/// What the handler's outbound call carries, and what the observer heard.
async fn outbound_and_sampled(
    h: &Harness,
    hint: SamplerHint,
    traceparent: Option<&str>,
) -> (http::HeaderMap, bool) {
    let sampled = Arc::new(Mutex::new(None));
    let sink = sampled.clone();
    let app = Router::new()
        .route(
            "/users/{id}",
            get_route(|| async {
                let headers = outbound_headers();
                format!(
                    "{}|{}",
                    headers["traceparent"].to_str().unwrap(),
                    headers
                        .get("tracestate")
                        .map(|v| v.to_str().unwrap())
                        .unwrap_or("")
                )
            }),
        )
        .layer(
            h.layer()
                .sampler_hint(hint)
                .with_observer(move |o: &RequestOutcome<'_>| {
                    *sink.lock().unwrap() = Some(o.sampled);
                }),
        );
    let mut request = get("/users/42").header("tracestate", "vendor=opaque,other=1");
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let (_, body) = send(app, request.body(Body::empty()).unwrap()).await;
    let (traceparent, tracestate) = body.split_once('|').unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("traceparent", traceparent.parse().unwrap());
    if !tracestate.is_empty() {
        headers.insert("tracestate", tracestate.parse().unwrap());
    }
    let sampled = sampled.lock().unwrap().expect("observed");
    (headers, sampled)
}

#[tokio::test]
async fn an_unsampled_parent_skips_the_tracer_and_propagates_as_the_sdk_would() {
    for incoming in [UNSAMPLED, UNSAMPLED_RANDOM] {
        let with_hint = Harness::new();
        let (hinted, hinted_sampled) =
            outbound_and_sampled(&with_hint, SamplerHint::ParentBased, Some(incoming)).await;
        let without = Harness::new();
        let (plain, plain_sampled) =
            outbound_and_sampled(&without, SamplerHint::Unknown, Some(incoming)).await;

        assert!(with_hint.spans().is_empty() && without.spans().is_empty());
        assert!(!hinted_sampled && !plain_sampled);
        let parts = |h: &http::HeaderMap| {
            let tp = h["traceparent"].to_str().unwrap().to_owned();
            let fields: Vec<String> = tp.split('-').map(str::to_owned).collect();
            fields
        };
        let (a, b) = (parts(&hinted), parts(&plain));
        assert_eq!(
            a[1], "0af7651916cd43dd8448eb211c80319c",
            "the parent's trace"
        );
        assert_eq!(
            (a[0].as_str(), a[3].as_str()),
            (b[0].as_str(), b[3].as_str())
        );
        assert_eq!(a[3], &incoming[53..], "flags, random bit included");
        assert_ne!(
            a[2], "b7ad6b7169203331",
            "a span id of its own, not the parent's"
        );
        assert_ne!(a[2], "0000000000000000");
        assert_eq!(hinted.get("tracestate"), plain.get("tracestate"));
        assert_eq!(hinted["tracestate"], "vendor=opaque,other=1");
    }
}

#[tokio::test]
async fn span_ids_of_skipped_requests_differ() {
    let h = Harness::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..200 {
        let (headers, _) =
            outbound_and_sampled(&h, SamplerHint::ParentBased, Some(UNSAMPLED)).await;
        let tp = headers["traceparent"].to_str().unwrap().to_owned();
        assert!(ids.insert(tp[36..52].to_owned()), "span id repeated: {tp}");
    }
}

#[tokio::test]
async fn without_the_parent_based_hint_an_unsampled_parent_still_asks_the_sampler() {
    // AlwaysOn ignores the parent: the hint that only says "attributes unused" must not drop.
    let h = Harness::with_sampler(Sampler::AlwaysOn);
    let (headers, sampled) =
        outbound_and_sampled(&h, SamplerHint::IgnoresAttributes, Some(UNSAMPLED)).await;
    assert!(sampled);
    assert!(headers["traceparent"].to_str().unwrap().ends_with("-01"));
    assert_eq!(h.spans().len(), 1);
}

#[tokio::test]
async fn a_recorded_span_has_every_attribute_whichever_the_hint() {
    let mut recorded = Vec::new();
    for hint in [
        SamplerHint::Unknown,
        SamplerHint::IgnoresAttributes,
        SamplerHint::ParentBased,
    ] {
        let h = Harness::new();
        let app = Router::new()
            .route("/users/{id}", get_route(|| async { "ok" }))
            .layer(h.layer().sampler_hint(hint));
        send(
            app,
            get("http://example.com:8080/users/42?page=2")
                .header("user-agent", "probe")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        let span = h.only_span();
        let mut keys: Vec<(String, Option<String>)> = span
            .attributes
            .iter()
            .map(|kv| kv.key.as_str().to_owned())
            .filter(|k| k != "correlation.id")
            .map(|k| {
                let v = attr(&span, &k);
                (k, v)
            })
            .collect();
        keys.sort();
        assert_eq!(
            attr(&span, "http.route").as_deref(),
            Some("/users/{id}"),
            "{hint:?}"
        );
        assert_eq!(attr(&span, "url.path").as_deref(), Some("/users/42"));
        assert_eq!(attr(&span, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(attr(&span, "url.scheme").as_deref(), Some("http"));
        assert_eq!(
            attr(&span, "http.response.status_code").as_deref(),
            Some("200")
        );
        recorded.push(keys);
    }
    assert_eq!(recorded[0], recorded[1], "the same attributes");
    assert_eq!(recorded[0], recorded[2], "the same attributes");
}

/// The parent-based sampler, counting the decisions it is asked for and the attributes it saw.
#[derive(Clone, Debug, Default)]
struct Counting {
    asked: Arc<Mutex<Vec<usize>>>,
}

impl opentelemetry_sdk::trace::ShouldSample for Counting {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[opentelemetry::KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        self.asked.lock().unwrap().push(attributes.len());
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)).should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        )
    }
}

#[tokio::test]
async fn the_sampler_is_asked_only_when_its_answer_is_not_known() {
    for (hint, traceparent, asked, attributes_seen) in [
        (SamplerHint::Unknown, Some(UNSAMPLED), 1, true),
        (SamplerHint::ParentBased, Some(UNSAMPLED), 0, false),
        (SamplerHint::ParentBased, None, 1, false),
        (SamplerHint::IgnoresAttributes, Some(UNSAMPLED), 1, false),
    ] {
        let counting = Counting::default();
        let h = Harness::with_sampler(Sampler::AlwaysOn);
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(h.exporter.clone())
            .with_sampler(counting.clone())
            .build();
        let app = Router::new()
            .route("/users/{id}", get_route(|| async { "ok" }))
            .layer(
                service_tracing_middleware::TracingLayer::new()
                    .with_tracer_provider(&provider)
                    .sampler_hint(hint),
            );
        let mut request = get("/users/42");
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        send(app, request.body(Body::empty()).unwrap()).await;
        let seen = counting.asked.lock().unwrap().clone();
        assert_eq!(seen.len(), asked, "{hint:?} {traceparent:?}");
        assert_eq!(
            seen.iter().any(|n| *n > 0),
            attributes_seen,
            "{hint:?}: attributes handed to the sampler"
        );
    }
}
