//! `init` wraps the routes the router has when it runs (axum's `layer` wraps only existing
//! routes), so a route added afterwards is served untraced, as the README and `init`'s docs
//! say; `init_layer`, added last by the application, traces every route.

use axum::routing::get;
use axum::Router;

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};

async fn get_ok(base: &str, path: &str) {
    let response = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_after_init_is_served_untraced() {
    let collector = Collector::start();
    let (app, guard) = options("svc")
        .otlp_endpoint(collector.http_endpoint())
        .init(Router::new().route("/early", get(|| async { "early" })))
        .expect("setup");
    let app = app.route("/late", get(|| async { "late" }));
    let base = serve(app).await;
    get_ok(&base, "/late").await;
    get_ok(&base, "/early").await;
    guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| s.iter().any(|s| s.name == "GET /early"));
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["GET /early"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_from_init_layer_added_last_traces_every_route() {
    let collector = Collector::start();
    let (layer, guard) = options("svc")
        .otlp_endpoint(collector.http_endpoint())
        .init_layer()
        .expect("setup");
    let app = Router::new()
        .route("/early", get(|| async { "early" }))
        .route("/late", get(|| async { "late" }))
        .layer(layer);
    let base = serve(app).await;
    get_ok(&base, "/late").await;
    get_ok(&base, "/early").await;
    guard.force_flush().unwrap();
    let spans = collector.wait_for_spans(WAIT, |s| s.len() >= 2);
    let mut names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["GET /early", "GET /late"]);
}
