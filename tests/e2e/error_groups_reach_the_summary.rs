//! Errors of three faulty routes end up in the right groups, with the right counts,
//! operations, severities and categories, and their sample trace ids are those of spans the
//! real collector received.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::errors::{Category, ErrorGroup, Severity};
use service_tracing::Protocol;

use crate::collector::{CollectedSpan, Collector};
use crate::support::{options, serve, WAIT};

const PANICS: u32 = 7;
const FAILS: u32 = 6;
const PROXIES: u32 = 5;

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

#[derive(Clone)]
struct Proxy {
    closed: String,
    client: ClientWithMiddleware,
}

async fn proxy(State(p): State<Proxy>, Path(id): Path<u32>) -> (StatusCode, String) {
    match p
        .client
        .get(format!("{}/items/{id}", p.closed))
        .send()
        .await
    {
        Ok(r) => (StatusCode::OK, r.text().await.unwrap_or_default()),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

fn group<'a>(groups: &'a [ErrorGroup], error_type: &str, operation: &str) -> &'a ErrorGroup {
    let found: Vec<&ErrorGroup> = groups
        .iter()
        .filter(|g| g.error_type() == error_type && g.operations() == [operation])
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {error_type} group on {operation}: {groups:#?}"
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_groups_reach_the_summary() {
    let collector = Collector::start();
    // A port nothing listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let routes = Router::new()
        .route("/orders/{id}", get(order))
        .route("/fail/{id}", get(fail))
        .route("/proxy/{id}", get(proxy));
    let (routes, guard) = options("svc")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .init(routes)
        .expect("setup");
    let app = serve(routes.with_state(Proxy {
        closed,
        client: service_tracing::traced_client(),
    }))
    .await;

    let caller = reqwest::Client::new();
    let mut hits: Vec<(String, u16, String)> = Vec::new();
    for n in 0..PANICS {
        hits.push((
            format!("/orders/{}", n * 37 + 1),
            500,
            format!("corr-order-{n}"),
        ));
    }
    for n in 0..FAILS {
        hits.push((format!("/fail/{}", n * 1009), 500, format!("corr-fail-{n}")));
    }
    for n in 0..PROXIES {
        hits.push((format!("/proxy/{}", n + 10), 502, format!("corr-proxy-{n}")));
    }
    for (path, status, correlation) in &hits {
        let response = caller
            .get(format!("{app}{path}"))
            .header("x-correlation-id", correlation)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), *status, "{path}");
    }

    guard.force_flush().unwrap();
    let errors = guard.errors().expect("error tracking is on by default");
    let summary = errors.summary();
    let groups = errors.groups();

    // Four groups: the 502 route yields two errors per request, the client span's connect
    // error (the dependency) and the server span's 502 (this service answered 5xx).
    assert_eq!(summary.group_count(), 4, "{groups:#?}");

    // Route rates count every request through the layer (not only recorded spans): one
    // request per hit, all errors, on each route's template.
    for (operation, requests) in [
        ("GET /orders/{id}", PANICS),
        ("GET /fail/{id}", FAILS),
        ("GET /proxy/{id}", PROXIES),
    ] {
        let rate = summary
            .route_rates()
            .iter()
            .find(|r| {
                r.operation == operation && r.window == service_tracing::errors::Window::OneMinute
            })
            .unwrap_or_else(|| {
                panic!(
                    "no 1-minute rate for {operation}: {:#?}",
                    summary.route_rates()
                )
            });
        assert_eq!(
            (rate.requests, rate.errors),
            (u64::from(requests), u64::from(requests)),
            "{operation}"
        );
        assert!(
            (rate.ratio - 1.0).abs() < f64::EPSILON,
            "{operation}: {}",
            rate.ratio
        );
    }
    let expected_total = u64::from(PANICS + FAILS + 2 * PROXIES);
    assert_eq!(summary.total(), expected_total);
    assert_eq!(summary.evictions(), 0);

    let panics = group(&groups, "panic", "GET /orders/{id}");
    assert_eq!(panics.count(), u64::from(PANICS));
    assert_eq!(
        panics.message(),
        "order 1 not found",
        "the first message, raw"
    );
    assert_eq!(panics.status_codes(), [500]);
    assert_eq!(
        (panics.severity(), panics.category()),
        (Severity::Critical, Category::Application)
    );

    let failures = group(&groups, "500", "GET /fail/{id}");
    assert_eq!(failures.count(), u64::from(FAILS));
    assert_eq!(failures.status_codes(), [500]);
    assert_eq!(
        (failures.severity(), failures.category()),
        (Severity::High, Category::Application)
    );

    let bad_gateway = group(&groups, "502", "GET /proxy/{id}");
    assert_eq!(bad_gateway.count(), u64::from(PROXIES));
    assert_eq!(bad_gateway.status_codes(), [502]);
    assert_eq!(
        (bad_gateway.severity(), bad_gateway.category()),
        (Severity::High, Category::Application)
    );

    let connect = group(&groups, "reqwest::Error", "GET 127.0.0.1");
    assert_eq!(connect.count(), u64::from(PROXIES));
    assert!(connect.status_codes().is_empty());
    assert!(!connect.message().is_empty());
    assert_eq!(
        (connect.severity(), connect.category()),
        (Severity::High, Category::Dependency)
    );

    assert_eq!(
        summary.by_severity(),
        [
            (Severity::Critical, u64::from(PANICS)),
            (Severity::High, u64::from(FAILS + 2 * PROXIES)),
        ]
    );
    let by_category: BTreeMap<Category, u64> = summary.by_category().iter().copied().collect();
    assert_eq!(
        by_category,
        BTreeMap::from([
            (Category::Application, u64::from(PANICS + FAILS + PROXIES)),
            (Category::Dependency, u64::from(PROXIES)),
        ])
    );
    let by_operation: BTreeMap<&str, u64> = summary
        .by_operation()
        .iter()
        .map(|(op, n)| (op.as_str(), *n))
        .collect();
    assert_eq!(
        by_operation,
        BTreeMap::from([
            ("GET /orders/{id}", u64::from(PANICS)),
            ("GET /fail/{id}", u64::from(FAILS)),
            ("GET /proxy/{id}", u64::from(PROXIES)),
            ("GET 127.0.0.1", u64::from(PROXIES)),
        ])
    );
    assert_eq!(summary.top_groups()[0].error_type(), "panic");
    let json = summary.to_json();
    assert_eq!(json["total"], expected_total);
    assert_eq!(json["by_severity"]["critical"], u64::from(PANICS));

    // The samples point at spans the collector really received.
    let error_spans = |s: &[CollectedSpan]| s.iter().filter(|s| s.status_code == "Error").count();
    let spans = collector.wait_for_spans(WAIT, |s| error_spans(s) >= expected_total as usize);
    for (g, span_name, kind) in [
        (panics, "GET /orders/{id}", "Server"),
        (failures, "GET /fail/{id}", "Server"),
        (bad_gateway, "GET /proxy/{id}", "Server"),
        (connect, "GET", "Client"),
    ] {
        let exported: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.name == span_name && s.kind == kind && s.status_code == "Error")
            .map(|s| s.trace_id.as_str())
            .collect();
        assert_eq!(g.trace_ids().len(), 5, "{g:#?}");
        for trace_id in g.trace_ids() {
            assert!(
                exported.contains(trace_id.to_string().as_str()),
                "{trace_id} of {g:#?} is not among the exported {span_name} spans {exported:?}"
            );
        }
        // The correlation ids sampled are those the collector saw on the same traces.
        for (trace_id, correlation) in g.trace_ids().iter().zip(g.correlation_ids()) {
            let span = spans
                .iter()
                .find(|s| s.trace_id == trace_id.to_string() && s.name == span_name)
                .unwrap();
            assert_eq!(span.attr("correlation.id"), Some(correlation.as_str()));
        }
    }
    assert_eq!(
        panics.correlation_ids(),
        [
            "corr-order-2",
            "corr-order-3",
            "corr-order-4",
            "corr-order-5",
            "corr-order-6"
        ],
        "the last five, oldest first"
    );
    guard.shutdown().unwrap();
}
