//! Helpers shared by the crate's unit tests.

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use tower::ServiceExt as _;

/// One `GET path` through `app` (no network), body read to the end.
pub(crate) async fn get(app: &Router, path: &str) {
    let request = Request::get(path)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| match e {});
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
}
