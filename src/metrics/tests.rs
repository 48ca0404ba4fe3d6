use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::*;
use crate::config::metrics::DEFAULT_INTERVAL;

fn metrics(limit: usize) -> Metrics {
    let settings = MetricsSettings {
        push: None,
        interval: DEFAULT_INTERVAL,
        cardinality_limit: limit,
    };
    Metrics::start(
        &settings,
        Resource::builder_empty().build(),
        &Workers::default(),
    )
    .expect("starts")
}

async fn get_path(app: &Router, path: &str) -> u16 {
    let response = app
        .clone()
        .oneshot(
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}

fn value_of(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn templates_with_braces_are_labels_and_raw_paths_never_are() {
    let m = metrics(MAX_ATTRIBUTE_SETS);
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(crate::TracingLayer::new().with_observer(m.http_server()));
    for id in 0..3 {
        assert_eq!(get_path(&app, &format!("/users/{id}")).await, 200);
    }
    assert_eq!(get_path(&app, "/secret/raw-path-123").await, 404);
    let text = m.prometheus_text();
    assert!(!text.contains("raw-path-123"), "{text}");
    assert!(!text.contains("/users/0"), "{text}");
    assert_eq!(
        value_of(
            &text,
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value_of(
            &text,
            "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/users/{id}\",le=\"+Inf\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        value_of(
            &text,
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"404\"}"
        ),
        Some(1.0),
        "the unmatched request is counted without a route:\n{text}"
    );
}

#[tokio::test]
async fn attribute_sets_beyond_the_cap_are_counted_in_the_overflow_series() {
    const LIMIT: usize = 4;
    let m = metrics(LIMIT);
    let mut app = Router::new();
    for i in 0..10 {
        app = app.route(&format!("/r{i}"), get(|| async { "ok" }));
    }
    let app = app.layer(crate::TracingLayer::new().with_observer(m.http_server()));
    for i in 0..10 {
        assert_eq!(get_path(&app, &format!("/r{i}")).await, 200);
    }
    let text = m.prometheus_text();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .collect();
    assert!(series.len() <= LIMIT + 1, "{series:?}");
    let total: f64 = series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 10.0, "every request is counted: {series:?}");
    assert!(
        series
            .iter()
            .any(|l| l.contains("otel_metric_overflow=\"true\"")),
        "{series:?}"
    );
}

#[tokio::test]
async fn active_requests_rise_while_running_and_fall_when_abandoned() {
    let m = metrics(MAX_ATTRIBUTE_SETS);
    let app = Router::new()
        .route("/slow", get(std::future::pending::<&'static str>))
        .layer(crate::TracingLayer::new().with_observer(m.http_server()));
    let active = "http_server_active_requests{http_request_method=\"GET\",http_route=\"/slow\"}";
    {
        let mut call = pin!(app.oneshot(
            http::Request::get("/slow")
                .body(axum::body::Body::empty())
                .expect("request"),
        ));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert_eq!(value_of(&m.prometheus_text(), active), Some(1.0));
    }
    // The caller went away: the future was dropped before any response.
    assert_eq!(value_of(&m.prometheus_text(), active), Some(0.0));
}

#[test]
fn health_figures_are_exposed_under_the_library_prefix() {
    let text = metrics(MAX_ATTRIBUTE_SETS).prometheus_text();
    for name in [
        "service_tracing_spans_ended_total 0",
        "service_tracing_spans_exported_total 0",
        "service_tracing_spans_dropped_total 0",
        "service_tracing_spans_rejected_total 0",
        "service_tracing_export_retries_total 0",
        "service_tracing_export_errors_total 0",
        "service_tracing_spans_queued 0",
        "service_tracing_exporter_up 1",
    ] {
        assert!(text.lines().any(|l| l == name), "{name} missing:\n{text}");
    }
}

#[tokio::test]
async fn every_request_lands_in_its_own_series_and_instance_bound_or_not() {
    // Two instances on one thread: the per-thread cache of bound series keeps them apart.
    let (a, b) = (metrics(MAX_ATTRIBUTE_SETS), metrics(MAX_ATTRIBUTE_SETS));
    let router = || {
        Router::new()
            .route("/ok/{id}", axum::routing::any(|| async { "ok" }))
            .route(
                "/fail",
                get(|| async { http::StatusCode::SERVICE_UNAVAILABLE }),
            )
            .route(
                "/panic",
                get(|| async {
                    panic!("boom");
                    #[allow(unreachable_code)]
                    ""
                }),
            )
    };
    let app_a = router().layer(crate::TracingLayer::new().with_observer(a.http_server()));
    let app_b = router().layer(crate::TracingLayer::new().with_observer(b.http_server()));
    let send = |app: Router, method: &'static str, path: &'static str| async move {
        let response = app
            .oneshot(
                http::Request::builder()
                    .method(method)
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let _ = response.into_body().collect().await;
    };
    for _ in 0..3 {
        send(app_a.clone(), "GET", "/ok/1").await;
        send(app_a.clone(), "BREW", "/ok/2").await;
        send(app_a.clone(), "GET", "/fail").await;
        send(app_a.clone(), "GET", "/panic").await;
        send(app_a.clone(), "GET", "/nowhere").await;
    }
    send(app_b.clone(), "GET", "/ok/1").await;
    let text = a.prometheus_text();
    let count = |labels: &str| {
        value_of(
            &text,
            &format!("http_server_request_duration_seconds_count{{{labels}}}"),
        )
    };
    let ok =
        "http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/ok/{id}\"";
    assert_eq!(count(ok), Some(3.0), "{text}");
    assert_eq!(
        count("http_request_method=\"_OTHER\",http_response_status_code=\"200\",http_route=\"/ok/{id}\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count("error_type=\"503\",http_request_method=\"GET\",http_response_status_code=\"503\",http_route=\"/fail\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count("error_type=\"panic\",http_request_method=\"GET\",http_response_status_code=\"500\",http_route=\"/panic\""),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        count("http_request_method=\"GET\",http_response_status_code=\"404\""),
        Some(3.0),
        "{text}"
    );
    let other = b.prometheus_text();
    assert_eq!(
        value_of(
            &other,
            &format!("http_server_request_duration_seconds_count{{{ok}}}")
        ),
        Some(1.0),
        "the second instance counts its own request only:\n{other}"
    );
}

#[tokio::test]
async fn per_thread_durations_show_the_series_and_counts_the_sdks_histogram_shows() {
    use opentelemetry_sdk::metrics::ManualReader;
    // The set-up's pipeline (per-thread durations) beside the SDK's histogram that a user's
    // own provider gets, told of the same requests.
    let ours = metrics(MAX_ATTRIBUTE_SETS);
    let reader = Arc::new(ManualReader::builder().build());
    let provider = SdkMeterProvider::builder()
        .with_reader(SharedReader(reader.clone()))
        .build();
    let sdk = HttpServerMetrics::new(&provider.meter("sdk"));
    let router = || {
        Router::new()
            .route("/ok/{id}", axum::routing::any(|| async { "ok" }))
            .route(
                "/fail",
                get(|| async { http::StatusCode::SERVICE_UNAVAILABLE }),
            )
    };
    let apps = [
        router().layer(crate::TracingLayer::new().with_observer(ours.http_server())),
        router().layer(crate::TracingLayer::new().with_observer(sdk)),
    ];
    for app in &apps {
        for path in ["/ok/1", "/ok/2", "/fail", "/nowhere", "/ok/3"] {
            get_path(app, path).await;
        }
    }
    let counts = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let mut rm = ResourceMetrics::default();
    reader.collect(&mut rm).expect("collects");
    let theirs = counts(&prometheus::render(&rm));
    assert_eq!(theirs.len(), 3, "{theirs:?}");
    assert_eq!(counts(&ours.prometheus_text()), theirs);
    let text = ours.prometheus_text();
    assert_eq!(
        text.matches("# TYPE http_server_request_duration_seconds histogram")
            .count(),
        1,
        "one family:\n{text}"
    );
    assert!(
        text.contains("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/ok/{id}\",le=\"10\"} 3"),
        "{text}"
    );
}
