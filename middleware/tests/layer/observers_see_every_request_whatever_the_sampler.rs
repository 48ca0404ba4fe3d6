use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry_sdk::trace::Sampler;
use service_tracing_middleware::RequestOutcome;

use crate::support::{get, send, Harness};

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    route: Option<String>,
    status: Option<u16>,
    error_type: Option<String>,
    sampled: bool,
    correlation_id: String,
}

fn recording(h: &Harness) -> (Router, Arc<Mutex<Vec<Seen>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app =
        Router::new()
            .route("/users/{id}", get_route(|| async { "ok" }))
            .route("/fail", get_route(|| async { StatusCode::BAD_GATEWAY }))
            .route(
                "/panic",
                get_route(|| async {
                    panic!("boom");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route("/health", get_route(|| async { "ok" }))
            .layer(h.layer().untraced_route("/health").with_observer(
                move |o: &RequestOutcome<'_>| {
                    assert!(!o.duration.is_zero());
                    sink.lock().unwrap().push(Seen {
                        method: o.method.to_owned(),
                        route: o.route.map(str::to_owned),
                        status: o.status,
                        error_type: o.error_type.map(str::to_owned),
                        sampled: o.sampled,
                        correlation_id: o.correlation_id.to_string(),
                    });
                },
            ));
    (app, seen)
}

#[tokio::test]
async fn with_sampling_off_every_request_is_still_observed_once() {
    let h = Harness::with_sampler(Sampler::AlwaysOff);
    let (app, seen) = recording(&h);
    for i in 0..1000 {
        let (response, _) = send(
            app.clone(),
            get(&format!("/users/{i}")).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(h.spans().is_empty(), "nothing sampled");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1000);
    assert!(seen
        .iter()
        .all(|s| !s.sampled && s.status == Some(200) && s.error_type.is_none()));
    assert!(
        seen.iter()
            .all(|s| s.route.as_deref() == Some("/users/{id}")),
        "raw paths become one route"
    );
}

#[tokio::test]
async fn failures_panics_and_untraced_routes() {
    let h = Harness::new();
    let (app, seen) = recording(&h);
    let (r, _) = send(
        app.clone(),
        get("/fail")
            .header("x-correlation-id", "c-1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let (r, _) = send(app.clone(), get("/panic").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let (r, _) = send(app.clone(), get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, _) = send(app, get("/nowhere").body(Body::empty()).unwrap()).await;

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.len(),
        3,
        "the untraced /health is not observed: {seen:#?}"
    );
    assert_eq!(
        (
            seen[0].route.as_deref(),
            seen[0].status,
            seen[0].error_type.as_deref(),
            seen[0].correlation_id.as_str()
        ),
        (Some("/fail"), Some(502), Some("502"), "c-1")
    );
    assert!(seen[0].sampled);
    assert_eq!(
        (
            seen[1].route.as_deref(),
            seen[1].status,
            seen[1].error_type.as_deref()
        ),
        (Some("/panic"), Some(500), Some("panic"))
    );
    assert_eq!(
        (
            seen[2].method.as_str(),
            seen[2].route.as_deref(),
            seen[2].status
        ),
        ("GET", None, Some(404))
    );
}

/// (route, `error_type: message` of the cause) per request.
type SeenCauses = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

/// Observes only `error_cause`: the first error recorded inside each request.
struct Causes(SeenCauses);

impl service_tracing_middleware::RequestObserver for Causes {
    fn on_request_end(&self, o: &RequestOutcome<'_>) {
        self.0.lock().unwrap().push((
            o.route.map(str::to_owned),
            o.error_cause
                .map(|c| format!("{}: {}", c.error_type(), c.message())),
        ));
    }

    fn wants_error_cause(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn the_first_error_recorded_inside_a_request_reaches_observers_sampled_or_not() {
    use opentelemetry::Context;
    use service_tracing_middleware::cause::{record_cause, Attribution};
    use service_tracing_middleware::ErrorCause;

    for sampler in [Sampler::AlwaysOn, Sampler::AlwaysOff] {
        let h = Harness::with_sampler(sampler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/call",
                get_route(|| async {
                    let first = record_cause(&Context::current(), || {
                        ErrorCause::call("GET stock", "reqwest::Error", "connection refused")
                    });
                    let second = record_cause(&Context::current(), || {
                        ErrorCause::new("io::Error", "later")
                    });
                    assert_eq!(
                        (first, second),
                        (Attribution::RootCause, Attribution::SameRequest)
                    );
                    StatusCode::BAD_GATEWAY
                }),
            )
            .route(
                "/panic",
                get_route(|| async {
                    panic!("order 7 not found");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
            .route("/ok", get_route(|| async { "ok" }))
            .layer(h.layer().with_observer(Causes(seen.clone())));
        for path in ["/call", "/panic", "/ok"] {
            send(app.clone(), get(path).body(Body::empty()).unwrap()).await;
        }
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (
                    Some("/call".to_owned()),
                    Some("reqwest::Error: connection refused".to_owned())
                ),
                (
                    Some("/panic".to_owned()),
                    Some("panic: order 7 not found".to_owned())
                ),
                (Some("/ok".to_owned()), None),
            ]
        );
    }
}

#[tokio::test]
async fn without_an_observer_asking_for_causes_nothing_is_attributed_to_the_request() {
    use opentelemetry::Context;
    use service_tracing_middleware::cause::{record_cause, Attribution};
    use service_tracing_middleware::ErrorCause;

    let h = Harness::new();
    let (app, seen) = {
        let seen = Arc::new(Mutex::new(Vec::<Attribution>::new()));
        let sink = seen.clone();
        let app = Router::new()
            .route(
                "/call",
                get_route(move || {
                    let sink = sink.clone();
                    async move {
                        let seen = record_cause(&Context::current(), || {
                            ErrorCause::new("io::Error", "refused")
                        });
                        sink.lock().unwrap().push(seen);
                        StatusCode::BAD_GATEWAY
                    }
                }),
            )
            .layer(h.layer().with_observer(|_: &RequestOutcome<'_>| {}));
        (app, seen)
    };
    send(app, get("/call").body(Body::empty()).unwrap()).await;
    assert_eq!(*seen.lock().unwrap(), [Attribution::NoRequest]);
}

#[tokio::test]
async fn each_route_template_has_one_id_whatever_the_method() {
    let h = Harness::new();
    let ids = Arc::new(Mutex::new(Vec::new()));
    let sink = ids.clone();
    let app = Router::new()
        .route("/ids/{id}", axum::routing::any(|| async { "ok" }))
        .route("/ids/other", get_route(|| async { "ok" }))
        .layer(h.layer().with_observer(move |o: &RequestOutcome<'_>| {
            sink.lock().unwrap().push((
                o.method.to_owned(),
                o.route.map(str::to_owned),
                o.route_id,
            ));
        }));
    for (method, uri) in [
        ("GET", "/ids/1"),
        ("POST", "/ids/2"),
        ("BREW", "/ids/3"),
        ("GET", "/ids/other"),
        ("GET", "/nowhere"),
    ] {
        send(
            app.clone(),
            get(uri).method(method).body(Body::empty()).unwrap(),
        )
        .await;
    }
    let seen = ids.lock().unwrap().clone();
    let template = service_tracing_middleware::RouteId::of("/ids/{id}");
    assert!(template.is_some());
    assert_eq!(seen[0].2, template, "{seen:?}");
    assert_eq!(seen[1].2, template, "{seen:?}");
    assert_eq!(seen[2].0, "_OTHER");
    assert_eq!(
        seen[2].2, template,
        "an unknown method shares the route's id"
    );
    assert_eq!(
        seen[3].2,
        service_tracing_middleware::RouteId::of("/ids/other")
    );
    assert_ne!(seen[3].2, template);
    assert_eq!((seen[4].1.as_deref(), seen[4].2), (None, None));
}

#[tokio::test]
async fn a_span_lasts_what_the_observers_measured_and_a_new_id_is_of_its_start() {
    // One clock reading at the request's start and one at its end serve the observers, the
    // span's timestamps and a generated correlation id.
    let h = Harness::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let app = Router::new()
        .route("/users/{id}", get_route(|| async { "ok" }))
        .layer(h.layer().with_observer(move |o: &RequestOutcome<'_>| {
            sink.lock()
                .unwrap()
                .push((o.duration, o.correlation_id.to_string()));
        }));
    let before = std::time::SystemTime::now();
    let (response, _) = send(app, get("/users/7").body(Body::empty()).unwrap()).await;
    let after = std::time::SystemTime::now();
    assert_eq!(response.status(), StatusCode::OK);

    let span = h.only_span();
    let (duration, id) = seen.lock().unwrap().pop().expect("observed");
    assert_eq!(
        span.end_time
            .duration_since(span.start_time)
            .expect("ends after it starts"),
        duration,
        "the span's duration is the observers'"
    );
    assert!(before <= span.start_time && span.end_time <= after);

    // The generated id is a UUIDv7 of the span's start, to the millisecond.
    let uuid = uuid::Uuid::parse_str(&id).expect("a generated UUID");
    assert_eq!(uuid.get_version_num(), 7);
    let (secs, nanos) = uuid.get_timestamp().expect("v7").to_unix();
    let start_ms = span
        .start_time
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    assert_eq!(
        u128::from(secs) * 1000 + u128::from(nanos / 1_000_000),
        start_ms
    );
}
