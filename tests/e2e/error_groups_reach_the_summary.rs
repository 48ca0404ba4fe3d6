//! A fault mix (a dependency down, a database error stated with `record_error_as`, a panic, a
//! plain 500), raised with varying ids, gives one group per fault: each failing request is one
//! error, in the group of its root cause, on its route, with the root cause's category; the
//! total is the number of failing requests. The failed call stays visible as the group's target
//! and as its client span's own `exception` event. Sample trace ids are those of spans the real
//! collector received.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest_middleware::ClientWithMiddleware;
use service_tracing::errors::{record_error_as, Category, ErrorGroup, Severity};
use service_tracing::Protocol;

use crate::collector::{CollectedSpan, Collector};
use crate::support::{options, serve, WAIT};

const PANICS: u32 = 7;
const FAILS: u32 = 6;
const PROXIES: u32 = 5;
const LEDGERS: u32 = 4;

async fn order(Path(id): Path<u32>) -> String {
    panic!("order {id} not found");
}

async fn fail(Path(_id): Path<u32>) -> StatusCode {
    StatusCode::INTERNAL_SERVER_ERROR
}

#[derive(Debug)]
struct RowLocked(u32);

impl std::fmt::Display for RowLocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ledger row {} is locked", self.0)
    }
}

impl std::error::Error for RowLocked {}

async fn ledger(Path(id): Path<u32>) -> StatusCode {
    record_error_as(&RowLocked(id), Category::Database, Severity::High);
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
        .route("/proxy/{id}", get(proxy))
        .route("/ledger/{id}", get(ledger));
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
    for n in 0..LEDGERS {
        hits.push((
            format!("/ledger/{}", n * 113 + 5),
            500,
            format!("corr-ledger-{n}"),
        ));
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

    // One group per fault: the 502 route's failed call and its 502 are one error.
    assert_eq!(summary.group_count(), 4, "{groups:#?}");

    // Route rates count every request through the layer (not only recorded spans): one
    // request per hit, all errors, on each route's template.
    for (operation, requests) in [
        ("GET /orders/{id}", PANICS),
        ("GET /fail/{id}", FAILS),
        ("GET /proxy/{id}", PROXIES),
        ("GET /ledger/{id}", LEDGERS),
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
    let expected_total = u64::from(PANICS + FAILS + PROXIES + LEDGERS);
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

    // The dependency is the cause: its error, on the route, its target kept.
    let dependency = group(&groups, "reqwest::Error", "GET /proxy/{id}");
    assert_eq!(dependency.count(), u64::from(PROXIES));
    assert_eq!(
        dependency.status_codes(),
        [502],
        "what the requests answered"
    );
    assert_eq!(dependency.targets(), ["GET 127.0.0.1"]);
    assert!(
        dependency.message().contains("error sending request"),
        "{dependency:#?}"
    );
    assert_eq!(
        (dependency.severity(), dependency.category()),
        (Severity::High, Category::Dependency)
    );

    // Stated where it was recorded: kept, although the defaults would say application.
    let ledger_type = std::any::type_name::<RowLocked>();
    let database = group(&groups, ledger_type, "GET /ledger/{id}");
    assert_eq!(database.count(), u64::from(LEDGERS));
    assert_eq!(database.message(), "ledger row 5 is locked");
    assert_eq!(database.status_codes(), [500]);
    assert!(database.targets().is_empty());
    assert_eq!(
        (database.severity(), database.category()),
        (Severity::High, Category::Database)
    );
    for g in [panics, failures] {
        assert!(g.targets().is_empty(), "{g:#?}");
    }

    assert_eq!(
        summary.by_severity(),
        [
            (Severity::Critical, u64::from(PANICS)),
            (Severity::High, u64::from(FAILS + PROXIES + LEDGERS)),
        ]
    );
    let by_category: BTreeMap<Category, u64> = summary.by_category().iter().copied().collect();
    assert_eq!(
        by_category,
        BTreeMap::from([
            (Category::Application, u64::from(PANICS + FAILS)),
            (Category::Dependency, u64::from(PROXIES)),
            (Category::Database, u64::from(LEDGERS)),
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
            ("GET /ledger/{id}", u64::from(LEDGERS)),
        ])
    );
    assert_eq!(summary.top_groups()[0].error_type(), "panic");
    let json = summary.to_json();
    assert_eq!(json["total"], expected_total);
    assert_eq!(json["by_severity"]["critical"], u64::from(PANICS));

    // The samples point at spans the collector really received.
    // Every failing request's server span, and each failed call's client span.
    let error_spans = |s: &[CollectedSpan]| s.iter().filter(|s| s.status_code == "Error").count();
    let spans = collector.wait_for_spans(WAIT, |s| {
        error_spans(s) >= (expected_total + u64::from(PROXIES)) as usize
    });
    for (g, span_name, kind) in [
        (panics, "GET /orders/{id}", "Server"),
        (failures, "GET /fail/{id}", "Server"),
        (dependency, "GET /proxy/{id}", "Server"),
        (database, "GET /ledger/{id}", "Server"),
    ] {
        let exported: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.name == span_name && s.kind == kind && s.status_code == "Error")
            .map(|s| s.trace_id.as_str())
            .collect();
        assert_eq!(g.trace_ids().len() as u64, g.count().min(5), "{g:#?}");
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
    // The failed calls keep their own exception events, in the traces of the samples.
    for trace_id in dependency.trace_ids() {
        let call = spans
            .iter()
            .find(|s| s.trace_id == trace_id.to_string() && s.kind == "Client")
            .unwrap_or_else(|| panic!("no client span in trace {trace_id}"));
        let exception = call.event("exception").expect("the call's exception event");
        assert_eq!(exception.attr("exception.type"), Some("reqwest::Error"));
        assert_eq!(call.attr("error.type"), Some("connect"));
    }
    // The stated classification travels on the exception event.
    let ledger_span = spans
        .iter()
        .find(|s| s.name == "GET /ledger/{id}")
        .expect("a ledger span");
    let exception = ledger_span.event("exception").expect("exception event");
    assert_eq!(exception.attr("error.category"), Some("database"));
    assert_eq!(exception.attr("error.severity"), Some("high"));
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
