use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt as _;
use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use serde_json::json;
use tower::ServiceExt as _;

use super::super::store::{RecentTraces, SpanStatus, StoreLimits, StoredSpan};
use super::super::tests::{send, Answer};
use super::{correlation_id, merge, view, Read, Step};
use crate::{ServiceTracing, TracesExporter, TracingGuard};

/// `path` asked from loopback, as HTML or as JSON.
async fn ask(app: &Router, path: &str, html: bool) -> Answer {
    let accept = if html {
        "text/html,application/xhtml+xml"
    } else {
        "application/json"
    };
    let request = http::Request::get(path).header("accept", accept);
    send(app, request, Some("127.0.0.1:5000"), "").await
}

/// A request to `app` carrying the correlation id `id`, its body read to the end (the server
/// span ends with it).
async fn call(app: &Router, path: &str, id: &str) {
    let request = http::Request::get(path)
        .header("x-correlation-id", id)
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200, "{path}");
    response.into_body().collect().await.expect("body");
}

fn shop(chains: bool) -> (Router, TracingGuard) {
    let options = ServiceTracing::builder("shop")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .pages("/_tracing");
    #[cfg(feature = "redis")]
    let options = if chains {
        options.request_chains(crate::request_chain::RequestChains::new())
    } else {
        options
    };
    #[cfg(not(feature = "redis"))]
    let _ = chains;
    options
        .init(Router::new().route("/orders", get(|| async { "orders" })))
        .expect("setup")
}

/// The shop's `/orders`, then a second service of the same process (`stock`) asked with the
/// same correlation id: the local chain (no Redis) has both, in order, and both traces are in
/// the pages' store, so each step links to its trace, in JSON and in HTML.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_chain_page_lists_the_steps_in_order_with_links_to_their_traces() {
    let (app, guard) = shop(true);
    let stock = Router::new()
        .route("/stock", get(|| async { "12" }))
        .layer(guard.service_layer("stock").expect("layer"));
    call(&app, "/orders", "order-7").await;
    call(&stock, "/stock", "order-7").await;
    guard.force_flush().expect("flush");

    let answer = ask(&app, "/_tracing/chains/order-7.json", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let chain = answer.json();
    assert_eq!(chain["correlation_id"], "order-7");
    assert_eq!(chain["request_chains"], true);
    assert_eq!(chain["source"], "local", "no Redis here");
    assert_eq!(chain["services"], json!(["shop", "stock"]));
    let steps: Vec<(&str, &str, &str, &str)> = chain["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or(""),
                s["kind"].as_str().unwrap_or(""),
                s["operation"].as_str().unwrap_or(""),
                s["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("shop", "server", "GET /orders", "unset"),
            ("stock", "server", "GET /stock", "unset")
        ],
        "{chain}"
    );
    assert_eq!(chain["steps"][0]["start_offset_ms"], 0.0);
    assert!(chain["steps"][1]["start_offset_ms"].as_f64() >= Some(0.0));
    let mut links = Vec::new();
    for step in chain["steps"].as_array().into_iter().flatten() {
        let trace = step["trace_id"].as_str().expect("trace id");
        let link = format!("/_tracing/traces/{trace}");
        assert_eq!(step["trace"], link.as_str(), "{step}");
        assert_eq!(ask(&app, &format!("{link}.json"), false).await.status, 200);
        links.push(link);
    }
    assert_ne!(links[0], links[1], "two requests, two traces");

    // The same as HTML: the rows in order, each linking to its trace.
    let page = ask(&app, "/_tracing/chains/order-7", true).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("data-step").count(), 2, "{}", page.body);
    let orders = page.body.find("GET /orders").expect("first step");
    let stock_at = page.body.find("GET /stock").expect("second step");
    assert!(orders < stock_at, "in order");
    for link in &links {
        assert!(page.body.contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert!(
        page.body.contains("shop</b> &rarr; <b>stock"),
        "{}",
        page.body
    );

    // The look-up form asks the same thing with `?id=`.
    let form = ask(&app, "/_tracing/chains?id=order-7", false).await.json();
    assert_eq!(form["steps"], chain["steps"]);
    let empty_form = ask(&app, "/_tracing/chains", true).await;
    assert_eq!(empty_form.status, 200);
    assert!(empty_form.body.contains("name=\"id\""));

    // An id nothing carried: a 404 that says so.
    let unknown = ask(&app, "/_tracing/chains/order-8.json", false).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["steps"], json!([]));
    assert!(unknown.json()["note"]
        .as_str()
        .is_some_and(|n| n.contains("No step carried")));

    // A trace's page links its correlation id to the chain; no span is another service's
    // (the store has both services' spans already), and the note says Redis was not read.
    let trace = ask(&app, &format!("{}.json", links[0]), false).await.json();
    assert_eq!(trace["correlation_id"], "order-7");
    assert_eq!(trace["chain"], "/_tracing/chains/order-7");
    assert_eq!(trace["other_services"]["request_chains"], true);
    assert_eq!(trace["other_services"]["source"], "local");
    assert_eq!(trace["other_services"]["spans"], 0);
    assert!(trace["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|s| s["from_chain"] == false));
    let trace_page = ask(&app, &links[0], true).await;
    assert!(
        trace_page
            .body
            .contains("<a href=\"/_tracing/chains/order-7\">order-7</a>"),
        "{}",
        trace_page.body
    );
    guard.shutdown().expect("shutdown");
}

/// Huge ids, CRLF, bytes that are no UTF-8, `../`, empty segments and the bytes no charset
/// allows: a 400 that says what an id is and does not repeat the one given.
#[tokio::test]
async fn hostile_chain_ids_get_a_clear_400_that_does_not_repeat_them() {
    let (app, guard) = shop(true);
    let huge = "a".repeat(60_000);
    let hostile = [
        huge.as_str(),
        &huge[..129],
        "abc%0D%0ASet-Cookie:x",
        "%FF%FE",
        "caf%C3%A9",
        "..",
        ".",
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc",
        "a%2F%2Fb",
        "50%25",
        "a%3Db",
        "%00",
        "with%20space",
        "%",
    ];
    for raw in hostile {
        for html in [false, true] {
            let path = format!("/_tracing/chains/{raw}");
            let answer = ask(&app, &path, html).await;
            assert_eq!(answer.status, 400, "{raw}: {}", answer.body);
            assert!(answer.body.contains("Not a correlation id"), "{raw}");
            if raw.len() > 3 {
                assert!(!answer.body.contains(raw), "{raw} repeated");
            }
            if !html {
                assert!(answer.json()["error"].is_string());
                assert_eq!(answer.json()["steps"], json!([]));
            }
        }
    }
    // From the form too.
    let answer = ask(&app, "/_tracing/chains?id=a+b", false).await;
    assert_eq!(answer.status, 400);
    // At the bound, an id is one.
    let at_bound = ask(
        &app,
        &format!("/_tracing/chains/{}.json", &huge[..128]),
        false,
    )
    .await;
    #[cfg(feature = "redis")]
    assert_eq!(at_bound.status, 404, "valid, carried by nothing");
    #[cfg(not(feature = "redis"))]
    assert_eq!(at_bound.status, 200, "valid; chains are not built");
    guard.shutdown().expect("shutdown");
}

/// Without request chains the chain page says so plainly (a 200, JSON and HTML alike), and a
/// trace's page is as it was.
#[tokio::test]
async fn without_request_chains_the_chain_page_says_they_are_off() {
    let (app, guard) = shop(false);
    call(&app, "/orders", "order-1").await;
    guard.force_flush().expect("flush");
    let answer = ask(&app, "/_tracing/chains/order-1.json", false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["request_chains"], false);
    assert_eq!(v["steps"], json!([]));
    let note = v["note"].as_str().expect("a note").to_owned();
    assert!(
        note.starts_with("Request chains are off")
            || note.starts_with("Request chains are not in this build"),
        "{note}"
    );
    let page = ask(&app, "/_tracing/chains/order-1", true).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&note), "{}", page.body);

    let traces = ask(&app, "/_tracing/traces.json", false).await.json();
    let link = traces["traces"][0]["link"].as_str().expect("a trace");
    let trace = ask(&app, &format!("{link}.json"), false).await;
    assert_eq!(trace.status, 200);
    let trace = trace.json();
    assert_eq!(trace["other_services"]["request_chains"], false);
    assert!(trace["other_services"]["note"].is_null());
    assert_eq!(trace["spans"].as_array().map(Vec::len), Some(1));
    guard.shutdown().expect("shutdown");
}

#[test]
fn an_id_is_checked_once_decoded_and_bounded_before() {
    assert_eq!(correlation_id("order-7").as_deref(), Ok("order-7"));
    assert_eq!(correlation_id("tenant%2F42").as_deref(), Ok("tenant/42"));
    assert_eq!(correlation_id("a:b_c.d").as_deref(), Ok("a:b_c.d"));
    for bad in [
        "",
        "%0A",
        "a%2F",
        "%2Fa",
        "a%2F..",
        "%E2%82%AC",
        "a,b",
        "a;b",
    ] {
        assert!(correlation_id(bad).is_err(), "{bad}");
    }
    assert!(
        correlation_id(&"%41".repeat(129)).is_err(),
        "too long, decoded or not"
    );
    assert!(correlation_id(&"%41".repeat(128)).is_ok());
    // The link to a chain reads back as its id.
    for id in ["order-7", "a:b_c.d~e", "tenant/42", "x+y@z"] {
        let link = super::chain_link("/p", id);
        let segment = link.strip_prefix("/p/chains/").expect("under the base");
        assert!(!segment.contains('/'), "{link}");
        assert_eq!(correlation_id(segment).as_deref(), Ok(id), "{link}");
    }
    assert_eq!(super::chain_link("/p", "order-7"), "/p/chains/order-7");
}

const MS: Duration = Duration::from_millis(1);

fn own(id: u64, parent: u64, start: SystemTime, ms: u64) -> (TraceId, StoredSpan) {
    (
        TraceId::from(0xabc_u128),
        StoredSpan {
            span_id: SpanId::from(id),
            parent_id: SpanId::from(parent),
            parent_is_remote: false,
            name: format!("own-{id}").into(),
            kind: if parent == 0 {
                SpanKind::Server
            } else {
                SpanKind::Client
            },
            status: SpanStatus::Unset,
            start,
            end: start + MS * u32::try_from(ms).unwrap_or(0),
            service: "shop".into(),
            attributes: vec![("correlation.id".into(), "c-1".into())],
            events: Vec::new(),
            links: Vec::new(),
        },
    )
}

fn step(id: u64, parent: Option<u64>, service: &str, start: SystemTime, ms: u64) -> Step {
    Step {
        service: service.to_owned(),
        instance: format!("{service}-1"),
        operation: format!("op-{id}"),
        kind: "server",
        status: "unset",
        http_status: Some(200),
        start,
        duration: MS * u32::try_from(ms).unwrap_or(0),
        trace_id: TraceId::from(0xabc_u128),
        span_id: SpanId::from(id),
        parent_id: parent.map(SpanId::from),
    }
}

fn hex(id: u64) -> String {
    SpanId::from(id).to_string()
}

/// The shop's server span (10 ms) and its call (2 to 8 ms); from the chain store: the called
/// service's span under the call, its own call under it, a third service's span under that
/// whose clock runs 8 ms behind (it starts before the trace), and a span whose parent is not
/// shown, ending after the trace: all on one axis, widened to hold them, nested.
#[test]
fn other_services_spans_are_nested_under_their_parents_on_one_time_axis() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let store = RecentTraces::new(StoreLimits::default());
    store.add([own(1, 0, t0, 10), own(2, 1, t0 + 2 * MS, 6)]);
    let trace = store.trace(TraceId::from(0xabc_u128)).expect("stored");
    let mut value = json!({
        "trace_id": TraceId::from(0xabc_u128).to_string(),
        "start_unix_ms": 1_700_000_000_000_u64,
        "duration_ms": 10.0,
        "spans": [
            { "span_id": hex(1), "parent_span_id": null, "depth": 0, "start_offset_ms": 0.0,
              "duration_ms": 10.0, "events": [{ "name": "e", "offset_ms": 1.0 }] },
            { "span_id": hex(2), "parent_span_id": hex(1), "depth": 1, "start_offset_ms": 2.0,
              "duration_ms": 6.0, "events": [] },
        ],
    });
    let others = [
        step(0x0b, Some(2), "stock", t0 + 3 * MS, 4),
        step(0x0c, Some(0x0b), "stock", t0 + 4 * MS, 2),
        step(0x0d, Some(0x0c), "prices", t0 - 5 * MS, 1),
        step(0x0e, Some(0x99), "audit", t0 + 20 * MS, 20),
    ];
    merge(&mut value, &trace, &others);
    let spans = value["spans"].as_array().expect("spans");
    let shown: Vec<(String, u64, f64, bool)> = spans
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap_or("").to_owned(),
                s["depth"].as_u64().unwrap_or(99),
                s["start_offset_ms"].as_f64().unwrap_or(-1.0),
                s["from_chain"] == true,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (hex(1), 0, 5.0, false),
            (hex(2), 1, 7.0, false),
            (hex(0x0b), 2, 8.0, true),
            (hex(0x0c), 3, 9.0, true),
            (hex(0x0d), 4, 0.0, true),
            (hex(0x0e), 0, 25.0, true),
        ],
        "{value:#}"
    );
    assert_eq!(
        spans[0]["events"][0]["offset_ms"], 6.0,
        "events move with their span"
    );
    assert_eq!(value["start_unix_ms"], 1_699_999_999_995_u64);
    assert_eq!(value["duration_ms"], 45.0);
    let stock = &spans[2];
    assert_eq!(stock["service"], "stock");
    assert_eq!(stock["instance"], "stock-1");
    assert_eq!(stock["name"], "op-11");
    assert_eq!(stock["parent_span_id"], hex(2).as_str());
    assert_eq!(
        stock["attributes"],
        json!([["http.response.status_code", "200"]])
    );

    // And as HTML: one bar per span, the chain's marked, with their service.
    let page = super::super::html::trace("/_tracing", &value);
    let body = futures_body(page);
    assert_eq!(body.matches("data-waterfall-bar").count(), 6);
    assert_eq!(body.matches(" from-chain\"").count(), 4, "{body}");
    assert!(body.contains("op-11 <small>stock</small>"), "{body}");
}

fn futures_body(response: axum::response::Response) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let bytes = runtime
        .block_on(response.into_body().collect())
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A cycle of parents (no honest trace has one) is shown, not lost.
#[test]
fn a_cycle_of_parents_loses_no_span() {
    let spans = vec![
        json!({ "span_id": "a", "parent_span_id": "b", "start_offset_ms": 1.0 }),
        json!({ "span_id": "b", "parent_span_id": "a", "start_offset_ms": 0.0 }),
        json!({ "span_id": "c", "parent_span_id": null, "start_offset_ms": 2.0 }),
    ];
    let order = super::tree_order(&spans);
    let mut seen: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(seen[0], 2, "the root first");
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
}

/// A step whose trace this service's store does not hold has no link; the chain's start and
/// duration span its steps.
#[test]
fn a_step_links_to_its_trace_only_when_the_store_has_it() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let store = RecentTraces::new(StoreLimits::default());
    store.add([own(1, 0, t0, 10)]);
    let mut elsewhere = step(0x0b, Some(7), "stock", t0 + 3 * MS, 12);
    elsewhere.trace_id = TraceId::from(0xdef_u128);
    let read = Read::Chain {
        steps: vec![step(1, None, "shop", t0, 10), elsewhere],
        shared: true,
    };
    let (status, v) = view("/_tracing", &store, "c-1", read);
    assert_eq!(status, 200);
    assert_eq!(
        v["steps"][0]["trace"],
        format!("/_tracing/traces/{}", TraceId::from(0xabc_u128)).as_str()
    );
    assert!(v["steps"][1]["trace"].is_null(), "{v}");
    assert_eq!(v["steps"][1]["start_offset_ms"], 3.0);
    assert_eq!(v["duration_ms"], 15.0);
    assert_eq!(v["source"], "shared");
    assert!(v["note"].is_null());
    let (late, v) = view(
        "/_tracing",
        &store,
        "c-1",
        Read::Late(Duration::from_secs(2)),
    );
    assert_eq!(late, 503);
    assert!(v["note"].as_str().is_some_and(|n| n.contains("2000 ms")));
}

/// A step's name comes from its span before export redacted it: the chain page scrubs it with
/// the service's redaction policy, as the store's copy of the same span was scrubbed.
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_chain_page_shows_step_names_through_the_redaction_policy() {
    let (app, guard) = ServiceTracing::builder("shop")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .pages("/_tracing")
        .redact_pattern(regex::Regex::new("secret-[0-9]+").expect("pattern"))
        .request_chains(crate::request_chain::RequestChains::new())
        .init(Router::new().route("/secret-42", get(|| async { "ok" })))
        .expect("setup");
    call(&app, "/secret-42", "order-9").await;
    guard.force_flush().expect("flush");

    let chain = ask(&app, "/_tracing/chains/order-9.json", false).await;
    assert_eq!(chain.status, 200, "{}", chain.body);
    assert!(!chain.body.contains("secret-42"), "{}", chain.body);
    let chain = chain.json();
    let step = &chain["steps"][0];
    let operation = step["operation"].as_str().expect("operation");
    let trace = ask(
        &app,
        &format!("{}.json", step["trace"].as_str().expect("kept")),
        false,
    )
    .await;
    assert_eq!(
        trace.json()["spans"][0]["name"].as_str(),
        Some(operation),
        "the step is named as the stored, redacted span"
    );
    let page = ask(&app, "/_tracing/chains/order-9", true).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("secret-42"), "{}", page.body);
}
