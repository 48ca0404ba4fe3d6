use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceId, TraceState};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SpanData;
use regex::Regex;
use tower::ServiceExt;

use super::{validate_trace, Finding, SpanMatch, Spans, TestTracing};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `GET /users/7` through the layer: the server span, `load user` under it, `db.query`
/// under that.
fn user_request(tracing: &TestTracing, headers: &[(&str, &str)]) -> Spans {
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                tracing::info_span!("load user").in_scope(|| {
                    tracing::info_span!("db.query", db.system = "postgresql").in_scope(|| "ada")
                })
            }),
        )
        .layer(tracing.layer());
    let mut request = http::Request::get("/users/7");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Body::empty()).expect("request");
    let _default = tracing.set_default();
    let response = runtime()
        .block_on(app.oneshot(request))
        .expect("infallible");
    assert_eq!(response.status(), 200);
    // The server span ends with the response body.
    drop(response);
    tracing.spans()
}

fn panics(f: impl FnOnce()) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

#[test]
fn parallel_set_ups_in_one_process_each_see_only_their_own_spans() {
    const THREADS: usize = 8;
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let tracing = TestTracing::new(&format!("svc-{i}")).expect("set-up");
                let app = Router::new()
                    .route(
                        "/work",
                        get(move || async move {
                            tracing::info_span!("step", thread = i as i64).in_scope(|| "done")
                        }),
                    )
                    .layer(tracing.layer());
                let _default = tracing.set_default();
                // Every thread's requests run at the same time as the others'.
                barrier.wait();
                runtime().block_on(async {
                    for _ in 0..3 {
                        let request = http::Request::get("/work")
                            .body(Body::empty())
                            .expect("request");
                        let response = app.clone().oneshot(request).await.expect("infallible");
                        assert_eq!(response.status(), 200);
                    }
                });
                let spans = tracing.spans();
                assert_eq!(spans.len(), 6, "{spans}");
                assert_eq!(spans.find_all("GET /work").len(), 3, "{spans}");
                assert_eq!(
                    spans
                        .find_all(
                            SpanMatch::named("step")
                                .attribute("thread", i as i64)
                                .child_of("GET /work")
                        )
                        .len(),
                    3,
                    "{spans}"
                );
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("each thread saw only its own spans");
    }
}

#[test]
fn assert_span_finds_name_kind_attribute_parent_and_ancestor_and_panics_otherwise() {
    let tracing = TestTracing::new("users").expect("set-up");
    let spans = user_request(&tracing, &[]);
    let query = spans.assert_span(
        SpanMatch::named("db.query")
            .attribute("db.system", "postgresql")
            .has_attribute("db.system")
            .kind(SpanKind::Internal)
            .child_of("load user")
            .under(SpanMatch::named("GET /users/{id}").kind(SpanKind::Server)),
    );
    assert_eq!(query.name, "db.query");
    spans.assert_span(
        SpanMatch::named("GET /users/{id}").attribute("http.response.status_code", 200),
    );
    spans.assert_no_span("GET /health");

    for wrong in [
        SpanMatch::named("db.querie"),
        SpanMatch::named("db.query").kind(SpanKind::Server),
        SpanMatch::named("db.query").attribute("db.system", "mysql"),
        SpanMatch::named("db.query").has_attribute("db.statement"),
        SpanMatch::named("db.query").under("other"),
        // The grandparent is above it, not its parent.
        SpanMatch::named("db.query").child_of("GET /users/{id}"),
        SpanMatch::named("GET /users/{id}").attribute("http.response.status_code", 404),
    ] {
        let shown = wrong.to_string();
        assert!(spans.find(wrong.clone()).is_none(), "{shown}");
        assert!(
            panics(|| {
                spans.assert_span(wrong);
            }),
            "{shown}"
        );
    }
    assert!(panics(|| spans.assert_no_span("db.query")));
}

#[test]
fn assert_one_trace_panics_on_two_traces_and_on_none() {
    let tracing = TestTracing::new("users").expect("set-up");
    assert!(panics(|| {
        tracing.spans().assert_one_trace();
    }));
    let one = user_request(&tracing, &[]);
    let id = one.assert_one_trace();
    assert!(one.iter().all(|s| s.span_context.trace_id() == id));
    let two = user_request(&tracing, &[]);
    assert_eq!(two.len(), 6);
    assert!(panics(|| {
        two.assert_one_trace();
    }));
}

#[test]
fn assert_no_error_status_panics_on_a_failed_span() {
    let tracing = TestTracing::new("users").expect("set-up");
    let fine = user_request(&tracing, &[]);
    fine.assert_no_error_status();
    tracing::dispatcher::with_default(tracing.dispatch(), || {
        tracing::info_span!("job").in_scope(|| {
            crate::record_error(&std::io::Error::other("disk 3 is full"));
        });
    });
    let failed = tracing.spans();
    assert!(panics(|| failed.assert_no_error_status()));
}

#[test]
fn assert_exception_matches_the_message_and_panics_otherwise() {
    let tracing = TestTracing::new("users").expect("set-up");
    tracing::dispatcher::with_default(tracing.dispatch(), || {
        tracing::info_span!("job").in_scope(|| {
            crate::record_error(&std::io::Error::other("disk 3 is full"));
        });
        tracing::info_span!("quiet").in_scope(|| tracing::info!("no error here"));
    });
    let spans = tracing.spans();
    let job = spans.assert_exception(&Regex::new(r"^disk \d+ is full$").expect("regex"));
    assert_eq!(job.name, "job");
    assert!(panics(|| {
        spans.assert_exception(&Regex::new("disk 4").expect("regex"));
    }));
}

#[test]
fn a_real_request_has_no_findings_even_with_a_remote_parent() {
    let tracing = TestTracing::new("users").expect("set-up");
    let spans = user_request(&tracing, &[]);
    assert_eq!(spans.len(), 3, "{spans}");
    spans.validate().assert_ok();
    assert_eq!(tracing.take_spans().len(), 3);
    // Continuing a caller's trace: the server span's parent is remote, not an orphan.
    let continued = user_request(
        &tracing,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    );
    let server = continued.assert_span("GET /users/{id}");
    assert!(server.parent_span_is_remote, "{server:#?}\n{continued}");
    continued.validate().assert_ok();
}

/// The three spans of one request, to break one way or another.
fn request_spans() -> Vec<SpanData> {
    let tracing = TestTracing::new("users").expect("set-up");
    user_request(&tracing, &[]).to_vec()
}

fn index(spans: &[SpanData], name: &str) -> usize {
    spans.iter().position(|s| s.name == name).expect(name)
}

#[test]
fn a_parent_in_another_trace_or_itself_is_a_broken_parent_link() {
    let mut spans = request_spans();
    let load = index(&spans, "load user");
    let context = spans[load].span_context.clone();
    spans[load].span_context = SpanContext::new(
        TraceId::from_bytes([7; 16]),
        context.span_id(),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let report = validate_trace(&spans);
    // Both links cross traces now: up from `load user`, and down to `db.query`.
    assert!(
        matches!(
            report.findings(),
            [Finding::BrokenParentLink { name: a, .. }, Finding::BrokenParentLink { name: b, .. }]
                if [a.as_str(), b.as_str()] == ["db.query", "load user"]
                    || [a.as_str(), b.as_str()] == ["load user", "db.query"]
        ),
        "{report}"
    );
    assert!(panics(|| report.assert_ok()));

    let mut spans = request_spans();
    let query = index(&spans, "db.query");
    spans[query].parent_span_id = spans[query].span_context.span_id();
    assert!(matches!(
        validate_trace(&spans).findings(),
        [Finding::BrokenParentLink { name, .. }] if name == "db.query"
    ));
}

#[test]
fn a_local_parent_not_collected_makes_an_orphan() {
    let mut spans = request_spans();
    spans.remove(index(&spans, "load user"));
    let report = validate_trace(&spans);
    assert!(
        matches!(report.findings(), [Finding::OrphanSpan { name, .. }] if name == "db.query"),
        "{report}"
    );
}

#[test]
fn server_and_client_spans_without_their_required_attributes_are_reported() {
    let mut spans = request_spans();
    let server = index(&spans, "GET /users/{id}");
    spans[server]
        .attributes
        .retain(|kv| kv.key.as_str() != "url.path");
    let report = validate_trace(&spans);
    assert!(
        matches!(
            report.findings(),
            [Finding::MissingAttribute { name, kind: SpanKind::Server, attribute: "url.path", .. }]
                if name == "GET /users/{id}"
        ),
        "{report}"
    );

    // A client span with only its method.
    let mut client = spans[index(&spans, "db.query")].clone();
    client.span_kind = SpanKind::Client;
    client.attributes = vec![KeyValue::new("http.request.method", "GET")];
    client.parent_span_id = opentelemetry::trace::SpanId::INVALID;
    let missing: Vec<&str> = validate_trace(&[client])
        .findings()
        .iter()
        .filter_map(|f| match f {
            Finding::MissingAttribute { attribute, .. } => Some(*attribute),
            _ => None,
        })
        .collect();
    assert_eq!(missing, ["url.full", "server.address", "server.port"]);
}

#[test]
fn a_child_starting_outside_its_parents_time_is_clock_skew() {
    let mut spans = request_spans();
    let load = index(&spans, "load user");
    let query = index(&spans, "db.query");
    spans[query].start_time = spans[load].start_time - Duration::from_millis(3);
    let report = validate_trace(&spans);
    assert!(
        matches!(
            report.findings(),
            [Finding::ClockSkew { name, parent, by, .. }]
                if name == "db.query" && parent == "load user" && *by == Duration::from_millis(3)
        ),
        "{report}"
    );

    let mut spans = request_spans();
    let query = index(&spans, "db.query");
    spans[query].start_time = spans[index(&spans, "load user")].end_time + Duration::from_secs(1);
    spans[query].end_time = spans[query].start_time + Duration::from_millis(1);
    assert!(matches!(
        validate_trace(&spans).findings(),
        [Finding::ClockSkew { by, .. }] if *by == Duration::from_secs(1)
    ));

    // Ending after the parent (work left running after the response) is allowed.
    let mut spans = request_spans();
    let query = index(&spans, "db.query");
    spans[query].end_time = spans[index(&spans, "load user")].end_time + Duration::from_secs(1);
    validate_trace(&spans).assert_ok();
}

#[test]
fn a_span_without_a_valid_end_is_unended() {
    let mut spans = request_spans();
    let query = index(&spans, "db.query");
    spans[query].end_time = SystemTime::UNIX_EPOCH;
    let report = validate_trace(&spans);
    assert!(
        matches!(report.findings(), [Finding::UnendedSpan { name, .. }] if name == "db.query"),
        "{report}"
    );
    let mut spans = request_spans();
    let query = index(&spans, "db.query");
    spans[query].end_time = spans[query].start_time - Duration::from_nanos(1);
    assert!(matches!(
        validate_trace(&spans).findings(),
        [Finding::UnendedSpan { name, .. }] if name == "db.query"
    ));
}

#[test]
fn spans_can_be_taken_one_step_at_a_time() {
    let tracing = TestTracing::new("users").expect("set-up");
    assert_eq!(user_request(&tracing, &[]).len(), 3);
    assert_eq!(tracing.take_spans().len(), 3);
    assert!(tracing.take_spans().is_empty());
    assert_eq!(user_request(&tracing, &[]).len(), 3);
}

#[test]
fn a_span_started_and_never_ended_is_reported_by_the_set_ups_validation() {
    let tracing = TestTracing::new("jobs").expect("set-up");
    let open = tracing::dispatcher::with_default(tracing.dispatch(), || {
        let open = tracing::info_span!("still open");
        open.in_scope(|| tracing::info_span!("done").in_scope(|| {}));
        open
    });
    let spans = tracing.spans();
    assert_eq!(spans.len(), 1, "{spans}");
    let report = spans.validate();
    let mut names: Vec<&str> = report
        .findings()
        .iter()
        .map(|f| match f {
            Finding::UnendedSpan { name, .. } | Finding::OrphanSpan { name, .. } => name.as_str(),
            _ => "other",
        })
        .collect();
    names.sort_unstable();
    // `done` has lost its parent, which never ended.
    assert_eq!(names, ["done", "still open"], "{report}");
    drop(open);
    tracing.spans().validate().assert_ok();
}

#[test]
fn a_client_call_to_a_second_service_makes_one_valid_trace() {
    use opentelemetry::trace::SpanKind::{Client, Server};

    let tracing = TestTracing::new("frontend").expect("set-up");
    let provider = tracing.tracer_provider().expect("tracing is on").clone();
    let backend_layer = tracing.guard().service_layer("backend").expect("backend");
    let _default = tracing.set_default();
    runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let backend = Router::new()
            .route("/stock/{id}", get(|| async { "3" }))
            .layer(backend_layer);
        tokio::spawn(async move { axum::serve(listener, backend).await });
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(crate::TracingMiddleware::new().with_tracer_provider(&provider))
            .build();
        let frontend = Router::new()
            .route(
                "/orders/{id}",
                get(move || async move {
                    let url = format!("http://{address}/stock/7");
                    let response = client.get(url).send().await.expect("backend answers");
                    response.text().await.expect("body")
                }),
            )
            .layer(tracing.layer());
        let request = http::Request::get("/orders/7")
            .body(Body::empty())
            .expect("request");
        let response = frontend.oneshot(request).await.expect("infallible");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await;
        assert_eq!(body.expect("body"), "3");
    });
    let spans = tracing.spans();
    assert_eq!(spans.len(), 3, "{spans}");
    spans.assert_one_trace();
    spans.assert_no_error_status();
    let backend = spans.assert_span(
        SpanMatch::named("GET /stock/{id}").kind(Server).child_of(
            SpanMatch::named("GET")
                .kind(Client)
                .child_of("GET /orders/{id}"),
        ),
    );
    assert!(backend.parent_span_is_remote);
    spans.validate().assert_ok();

    // The backend's clock an hour behind: its span starts before the client's.
    let mut skewed = spans.to_vec();
    let backend = index(&skewed, "GET /stock/{id}");
    skewed[backend].start_time -= Duration::from_secs(3600);
    skewed[backend].end_time -= Duration::from_secs(3600);
    assert!(matches!(
        validate_trace(&skewed).findings(),
        [Finding::ClockSkew { name, parent, .. }] if name == "GET /stock/{id}" && parent == "GET"
    ));
}

/// Database, RPC and generative AI client spans (the `work` helpers', or a driver's) are held
/// to their own conventions, not HTTP's: they carry no `url.full` and need none.
#[test]
fn client_spans_of_other_domains_are_not_held_to_the_http_attributes() {
    let as_client = |domain: Vec<KeyValue>| {
        let mut spans = request_spans();
        let query = index(&spans, "db.query");
        spans[query].span_kind = SpanKind::Client;
        spans[query].attributes = domain;
        validate_trace(&spans)
    };
    as_client(vec![KeyValue::new("db.system.name", "sqlite")]).assert_ok();
    as_client(vec![KeyValue::new("db.system", "postgresql")]).assert_ok();
    as_client(vec![KeyValue::new("rpc.system", "grpc")]).assert_ok();
    as_client(vec![
        KeyValue::new("gen_ai.operation.name", "chat"),
        KeyValue::new("gen_ai.provider.name", "openai"),
    ])
    .assert_ok();
    let no_provider = as_client(vec![KeyValue::new("gen_ai.operation.name", "chat")]);
    assert!(
        matches!(
            no_provider.findings(),
            [Finding::MissingAttribute {
                attribute: "gen_ai.provider.name",
                ..
            }]
        ),
        "{no_provider}"
    );
    // A client span of no declared domain is still an HTTP call missing its attributes.
    assert_eq!(as_client(Vec::new()).findings().len(), 4);
}
