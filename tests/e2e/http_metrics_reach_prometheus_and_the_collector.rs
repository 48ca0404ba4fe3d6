use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use service_tracing::{traced_client, Protocol, ServiceTracing, TracesSampler, TracingGuard};

use crate::collector::{parse_metrics, CollectedMetricPoint, Collector};
use crate::support::{options, serve, WAIT};

const REQUESTS: u64 = 7;

fn labels(sample: &prometheus_parse::Sample) -> HashMap<String, String> {
    sample
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct Services {
    frontend: String,
    guard: TracingGuard,
}

/// A `frontend` whose `/checkout` calls a `backend` through the traced client. (Route templates
/// without braces: prometheus-parse 0.2 cannot read label values holding `}`; the braces are
/// checked on the exposition in the unit tests.)
async fn start(options: ServiceTracing) -> Services {
    let (routes, guard) = options
        .init(Router::new().route("/checkout", get(checkout)))
        .expect("setup");
    let backend = Router::new()
        .route("/orders", get(|| async { "order" }))
        .layer(guard.service_layer("backend").expect("backend layer"));
    let backend = serve(backend).await;
    let client = traced_client();
    let frontend = serve(routes.layer(axum::Extension((backend, client)))).await;
    Services { frontend, guard }
}

async fn checkout(
    axum::Extension((backend, client)): axum::Extension<(
        String,
        reqwest_middleware::ClientWithMiddleware,
    )>,
) -> String {
    let r = client
        .get(format!("{backend}/orders"))
        .send()
        .await
        .unwrap();
    r.text().await.unwrap()
}

/// `GET base + path` with a plain client.
async fn fetch(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
}

/// Requests through a real server, with the sampler recording no trace at all: `/metrics`
/// (parsed by an independent Prometheus parser) and the collector (OTLP over gRPC) both count
/// every one, under the semantic-convention names and attributes, and never the raw path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_counts_match_on_the_prometheus_route_and_at_the_collector() {
    let collector = Collector::start_with_metrics();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.grpc_endpoint())
            .otlp_protocol(Protocol::Grpc)
            .sampler(TracesSampler::AlwaysOff)
            .metric_export_interval(Duration::from_secs(3600))
            .prometheus_route("/metrics"),
    )
    .await;
    let base = services.frontend.as_str();
    for i in 0..REQUESTS {
        assert_eq!(fetch(base, &format!("/checkout?n={i}")).await.status(), 200);
    }
    assert_eq!(fetch(base, "/no/such/path-4711").await.status(), 404);

    // Prometheus text, parsed independently.
    let response = fetch(base, "/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    assert!(!text.contains("path-4711"), "a raw path leaked:\n{text}");
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses");
    let checkout_count = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "http_server_request_duration_seconds_count"
                && labels(s).get("http_route").map(String::as_str) == Some("/checkout")
        })
        .unwrap_or_else(|| panic!("no checkout histogram in:\n{text}"));
    let l = labels(checkout_count);
    assert_eq!(l["http_request_method"], "GET");
    assert_eq!(l["http_response_status_code"], "200");
    assert!(
        matches!(checkout_count.value, prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v) if v == REQUESTS as f64),
        "{:?}",
        checkout_count.value
    );
    let histogram = scrape
        .samples
        .iter()
        .find_map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets)
                if s.metric == "http_server_request_duration_seconds"
                    && labels(s).get("http_route").map(String::as_str) == Some("/checkout") =>
            {
                Some(buckets.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no histogram family in:\n{text}"));
    let bounds: Vec<f64> = histogram.iter().map(|b| b.less_than).collect();
    assert_eq!(
        &bounds[..14],
        &service_tracing::metrics::DURATION_BOUNDARIES
    );
    assert_eq!(
        histogram.last().unwrap().count,
        REQUESTS as f64,
        "+Inf bucket"
    );
    assert!(
        histogram.windows(2).all(|w| w[0].count <= w[1].count),
        "cumulative"
    );
    // The unmatched request is counted without any route.
    let unrouted = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "http_server_request_duration_seconds_count"
                && labels(s)
                    .get("http_response_status_code")
                    .map(String::as_str)
                    == Some("404")
        })
        .expect("the 404 is counted");
    assert!(!labels(unrouted).contains_key("http_route"));
    // Client side: the frontend's calls to the backend, through `traced_client`.
    assert!(
        text.contains("http_client_request_duration_seconds_count{"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE service_tracing_spans_exported_total counter"),
        "{text}"
    );

    // OTLP: flush, then read the collector's output back.
    services.guard.force_flush().expect("flush");
    let deadline = Instant::now() + WAIT;
    let points = loop {
        let points = parse_metrics(&collector.raw_output());
        let done = points.iter().any(|p: &CollectedMetricPoint| {
            p.name == "http.server.request.duration" && p.attr("http.route") == Some("/checkout")
        });
        if done || Instant::now() > deadline {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let server = points
        .iter()
        .find(|p| {
            p.name == "http.server.request.duration" && p.attr("http.route") == Some("/checkout")
        })
        .unwrap_or_else(|| {
            panic!(
                "no server histogram at the collector:\n{}",
                collector.raw_output()
            )
        });
    assert_eq!(server.service_name, "frontend");
    assert_eq!(server.unit, "s");
    assert_eq!(server.count, Some(REQUESTS));
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert!(
        points
            .iter()
            .any(|p| p.name == "http.server.active_requests"),
        "active requests exported"
    );
    let client = points
        .iter()
        .find(|p| p.name == "http.client.request.duration")
        .expect("client histogram at the collector");
    assert_eq!(client.count, Some(REQUESTS));
    assert_eq!(client.attr("server.address"), Some("127.0.0.1"));
    assert!(client.attr("server.port").is_some());
    assert!(points
        .iter()
        .any(|p| p.name == "service_tracing.spans.exported"));
    assert!(
        !collector.raw_output().contains("path-4711"),
        "a raw path reached the collector"
    );
    services.guard.shutdown().expect("shutdown");
}

/// `OTEL_METRICS_EXPORTER=none`: spans still reach the collector, metrics never do, and the
/// Prometheus route still serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exporter_none_stops_the_push_but_not_the_route() {
    let collector = Collector::start_with_metrics();
    let services = start(
        ServiceTracing::builder("frontend")
            .env_lookup(|name| (name == "OTEL_METRICS_EXPORTER").then(|| "none".to_owned()))
            .otlp_endpoint(collector.http_endpoint())
            .otlp_protocol(Protocol::HttpProtobuf)
            .prometheus_route("/metrics"),
    )
    .await;
    assert_eq!(fetch(&services.frontend, "/checkout").await.status(), 200);
    services.guard.force_flush().expect("flush");
    collector.wait_for_spans(WAIT, |spans| {
        spans.iter().any(|s| s.name == "GET /checkout")
    });
    let text = fetch(&services.frontend, "/metrics")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("http_server_request_duration_seconds_count{"),
        "{text}"
    );
    services.guard.shutdown().expect("shutdown");
    assert!(
        parse_metrics(&collector.raw_output()).is_empty(),
        "metrics were pushed:\n{}",
        collector.raw_output()
    );
}

/// Over OTLP/HTTP, with an export interval far away: shutting down pushes the last figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_pushes_the_last_metrics_over_http() {
    let collector = Collector::start_with_metrics();
    let services = start(
        options("frontend")
            .otlp_endpoint(collector.http_endpoint())
            .otlp_protocol(Protocol::HttpProtobuf)
            .metric_export_interval(Duration::from_secs(3600)),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(fetch(&services.frontend, "/checkout").await.status(), 200);
    }
    services.guard.shutdown().expect("shutdown");
    let deadline = Instant::now() + WAIT;
    loop {
        let points = parse_metrics(&collector.raw_output());
        let server = points.iter().find(|p| {
            p.name == "http.server.request.duration" && p.attr("http.route") == Some("/checkout")
        });
        if let Some(server) = server {
            assert_eq!(server.count, Some(3));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nothing pushed at shutdown:\n{}",
            collector.raw_output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Prometheus route the application already serves is a set-up error naming the setting,
/// not a panic.
#[tokio::test]
async fn a_prometheus_route_the_app_already_has_is_a_setup_error() {
    let app: Router = Router::new().route("/metrics", get(|| async { "mine" }));
    let err = options("svc")
        .install_subscriber(false)
        .prometheus_route("/metrics")
        .init(app)
        .expect_err("overlap");
    assert!(err.to_string().contains("prometheus_route"), "{err}");
}
