//! `#[traced]` functions called by a handler reach the real collector as children of the
//! request's server span, with exactly the attributes the attribute documents: the code
//! attributes, the captured arguments (redacted where the policy says), the slow threshold
//! and its `performance.slow` event, and a recorded `Err` with its category, which error
//! tracking also counts as the request's error.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::{traced, Protocol};

use crate::collector::{span_named, Collector};
use crate::support::{options, serve, WAIT};

// The line of `lookup`'s name, for `code.line.number`.
const LOOKUP_LINE: u32 = line!() + 2;
#[traced(args(all), skip(region))]
fn lookup(id: u32, email: &str, password: &str, region: &str) -> u32 {
    let _ = (email, password, region);
    id * 10
}

#[traced(name = "load stock", kind = client, args(%sku), result(ok), slow_ms = 1)]
async fn load_stock(sku: &str) -> Result<u32, std::io::Error> {
    // The work being timed (over `slow_ms`), not a synchronisation.
    tokio::time::sleep(Duration::from_millis(15)).await;
    Ok(sku.len() as u32)
}

#[traced(result, category = database)]
async fn reserve(id: u32) -> Result<(), std::io::Error> {
    Err(std::io::Error::other(format!("no row for order {id}")))
}

async fn order(Path(id): Path<u32>) -> (StatusCode, String) {
    let value = lookup(id, "ada@example.com", "hunter2", "eu");
    let stock = load_stock("A-1").await.unwrap_or(0);
    match reserve(id).await {
        Ok(()) => (StatusCode::OK, format!("{value} {stock}")),
        Err(e) => (StatusCode::CONFLICT, e.to_string()),
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traced_functions_reach_the_collector_under_their_request() {
    let collector = Collector::start();
    let (routes, guard) = options("shop")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .init(Router::new().route("/orders/{id}", get(order)))
        .expect("setup");
    let app = serve(routes).await;
    let response = reqwest::get(format!("{app}/orders/7")).await.unwrap();
    assert_eq!(response.status(), 409);
    guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| {
        ["GET /orders/{id}", "lookup", "load stock", "reserve"]
            .iter()
            .all(|name| s.iter().any(|span| span.name == *name))
    });

    let server = span_named(&spans, "GET /orders/{id}");
    let file = file!();
    let here = "e2e::traced_functions_reach_the_collector_under_their_request";

    let lookup = span_named(&spans, "lookup");
    assert_eq!(lookup.trace_id, server.trace_id);
    assert_eq!(lookup.parent_id, server.span_id);
    assert_eq!(lookup.kind, "Internal");
    assert_eq!(lookup.status_code, "Unset");
    assert_eq!(
        lookup.attributes,
        map(&[
            ("code.function.name", &format!("{here}::lookup")),
            ("code.file.path", file),
            ("code.line.number", &LOOKUP_LINE.to_string()),
            ("code.function.args.id", "7"),
            // Redacted on the way out: an e-mail address in the value, a denied key.
            ("code.function.args.email", "\"[REDACTED]\""),
            ("code.function.args.password", "[REDACTED]"),
        ]),
        "{lookup:#?}"
    );

    let stock = span_named(&spans, "load stock");
    assert_eq!(stock.parent_id, server.span_id);
    assert_eq!(stock.kind, "Client");
    assert_eq!(stock.status_code, "Unset");
    assert_eq!(
        stock.attributes,
        map(&[
            ("code.function.name", &format!("{here}::load_stock")),
            ("code.file.path", file),
            ("code.line.number", &(LOOKUP_LINE + 6).to_string()),
            ("code.function.args.sku", "A-1"),
            ("code.function.result", "3"),
            ("performance.threshold_ms", "1"),
        ]),
        "{stock:#?}"
    );
    let slow = stock.event("performance.slow").expect("slow event");
    let took: f64 = slow
        .attr("performance.duration_ms")
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!(took >= 15.0, "{slow:#?}");

    let reserve = span_named(&spans, "reserve");
    assert_eq!(reserve.parent_id, server.span_id);
    assert_eq!(reserve.status_code, "Error");
    assert_eq!(reserve.status_message, "no row for order 7");
    assert_eq!(reserve.attr("error.type"), Some("std::io::error::Error"));
    let exception = reserve.event("exception").expect("exception event");
    assert_eq!(
        exception.attr("exception.type"),
        Some("std::io::error::Error")
    );
    assert_eq!(
        exception.attr("exception.message"),
        Some("no row for order 7")
    );
    assert_eq!(exception.attr("error.category"), Some("database"));

    // Error tracking counts the request once, with the traced function's error and category.
    let errors = guard.errors().expect("error tracking");
    let summary = errors.summary();
    let group = summary
        .top_groups()
        .iter()
        .find(|g| g.error_type() == "std::io::error::Error")
        .unwrap_or_else(|| panic!("{summary:#?}"));
    assert_eq!(group.category(), service_tracing::Category::Database);
    assert_eq!(group.count(), 1);
    // Profiling keys each traced function by its span name (one operation per function).
    let profiling = guard.profiling().expect("profiling");
    let load = profiling
        .operation("load stock")
        .expect("load stock profiled");
    assert_eq!(load.slow, 1);
    guard.shutdown().unwrap();
}
