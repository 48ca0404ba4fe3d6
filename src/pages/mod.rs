//! Built-in pages (feature `pages`): the service's own recent traces, routes, errors and
//! bottlenecks, served by the service itself, to a browser or as JSON. No backend, no
//! collector needed, as Go's `x/net/trace` and the OpenTelemetry zPages did.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use service_tracing::pages::PagesAccess;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let app = Router::new().route("/orders", get(|| async { "orders" }));
//!     let (app, guard) = service_tracing::ServiceTracing::builder("shop")
//!         .pages("/_tracing")
//!         .pages_access(PagesAccess::loopback().with_bearer_token("s3cret"))
//!         .init(app)?;
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     // The peer's address decides who may read the pages without the token.
//!     axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!         .await?;
//!     guard.shutdown_async().await?;
//!     Ok(())
//! }
//! ```
//!
//! # The pages
//! Under the path given to [`ServiceTracing::pages`](crate::ServiceTracing::pages):
//!
//! | Path | Shows |
//! |---|---|
//! | `/` | service, uptime, spans exported, dropped, rejected, queued; error storage; sampling; the store; process resources |
//! | `/routes` | per operation over 1 min, 5 min, 1 h: rate, error ratio, p50/p95/p99, a latency histogram; links to its traces and bottleneck |
//! | `/traces` | recent traces; `?route=`, `?status=error`, `?min_ms=`, `?q=` (a trace id or a correlation id) |
//! | `/traces/{trace id}` | the waterfall, and every span's attributes, events and exception stack; with request chains, the spans of other services in the trace |
//! | `/errors` | error groups: count, first and last seen, severity, category, routes, sample traces, alert state |
//! | `/bottlenecks` | per route, the share of each operation on the critical path |
//! | `/chains/{correlation id}` | with request chains (feature `redis`), the steps of the id across services, in order |
//!
//! Each answers JSON with `Accept: application/json`, or with `.json` after the path
//! (`/_tracing/routes.json`, `/_tracing.json` for the overview); otherwise HTML, rendered on
//! the server, with the stylesheet in the binary, usable on a phone and with JavaScript off.
//! The one script (`/pages.js`, in the binary too) only adds live refresh: a "Live" box that,
//! once ticked, fetches the page every 2 s and replaces its content without a reload.
//!
//! # What they cost
//! The pages are mounted outside the tracing layer, so their own requests are neither traced
//! nor counted. Traces reach the store from the export worker's thread (see the
//! `store` module's notes): the request path does nothing it did not do for export. A trace
//! shows up once its spans were handed to the exporter (within the batch delay,
//! `OTEL_BSP_SCHEDULE_DELAY`, 5 s by default; at once after
//! [`TracingGuard::force_flush`](crate::TracingGuard::force_flush)). With no exporter
//! (`OTEL_TRACES_EXPORTER=none`), a worker is started for the pages alone. The store holds at
//! most 2,000 traces and 16 MiB (its bytes counted as it stores them), 10 traces per latency
//! bucket and route, errors and slow traces longer than fast ones; [`StoreLimits`] changes the
//! bounds.
//!
//! # Request chains
//! With request chains on (`ServiceTracing::request_chains`, feature `redis`),
//! `/chains/{correlation id}` lists the steps of the id in order (service, kind, operation,
//! status, start offset, duration), each linked to its trace when the store still has it; a
//! trace's page links its correlation id there, and adds to its waterfall the spans other
//! services recorded in the trace (read from the chain of its correlation id, marked
//! `from_chain`, under their parent). A trace's page waits at most 150 ms for the chain, then
//! shows its own spans with a note; the chain page waits 2 s, then answers 503. An id that
//! no correlation charset allows is a 400. With chains off, the chain page says so.
//!
//! # Who may read them
//! See [`PagesAccess`]: loopback only by default; networks, and a bearer token or the login
//! form's cookie, from elsewhere. After five wrong tokens at the login form in a minute, a
//! client's sign-ins get `429 Too Many Requests` with `Retry-After` until the minute ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry::trace::TraceId;
use serde_json::Value;

mod access;
mod chain;
mod html;
mod limits;
pub(crate) mod store;
mod throttle;
mod views;

pub use access::PagesAccess;
pub use limits::StoreLimits;

use crate::errors::ErrorTracking;
use crate::health::HealthState;
use crate::profiling::Profiling;
use store::RecentTraces;
use throttle::{Client, LoginThrottle};

/// What the pages read, taken from the guard at set-up.
#[derive(Clone)]
pub(crate) struct PagesState {
    /// The path the pages are under, without a trailing `/`.
    pub(crate) base: Arc<str>,
    pub(crate) access: PagesAccess,
    /// `service.version`, when set.
    pub(crate) service_version: Option<String>,
    pub(crate) store: RecentTraces,
    pub(crate) health: HealthState,
    pub(crate) errors: Option<ErrorTracking>,
    pub(crate) profiling: Option<Profiling>,
    /// Request chains, when on: the chain page and other services' spans in a trace.
    #[cfg(feature = "redis")]
    pub(crate) chains: Option<crate::request_chain::Chains>,
    /// The redaction policy, for what the pages read from elsewhere than the store (which
    /// holds redacted spans): other services' steps in a chain.
    #[cfg(feature = "redis")]
    pub(crate) redactor: crate::redact::Redactor,
}

/// Serves the pages under `path` on `app`.
pub(crate) fn with_pages<S>(app: axum::Router<S>, path: &str, state: PagesState) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let base = path.trim_end_matches('/');
    let state = Arc::new(state);
    let throttle = Arc::new(LoginThrottle::default());
    let handler = move |req: Request| {
        let state = state.clone();
        let throttle = throttle.clone();
        async move { answer(&state, &throttle, req).await }
    };
    let routes = axum::routing::get(handler.clone()).post(handler.clone());
    let app = app
        .route(&format!("{base}/{{*rest}}"), routes.clone())
        .route(&format!("{base}.json"), routes.clone());
    if base.is_empty() {
        app.route("/", routes)
    } else {
        app.route(base, routes.clone())
            .route(&format!("{base}/"), routes)
    }
}

/// The answer to any request under the pages' path.
async fn answer(state: &PagesState, throttle: &LoginThrottle, req: Request) -> Response {
    let base = &*state.base;
    let path = req.uri().path();
    let rest = if path == format!("{base}.json") {
        "/.json"
    } else {
        path.strip_prefix(base).unwrap_or("")
    };
    if rest == "/login" {
        return login(state, throttle, req).await;
    }
    if let Some(refusal) = state.access.refuses(&req, base) {
        return refusal;
    }
    if req.method() != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if rest == "/pages.js" {
        return html::script();
    }
    let (rest, suffix) = match rest.strip_suffix(".json") {
        Some(rest) => (rest, true),
        None => (rest, false),
    };
    let json = suffix || prefers_json(&req);
    let rest = rest.trim_end_matches('/');
    let query = req.uri().query();
    let (status, page): (StatusCode, Option<(Value, Render)>) =
        match chain::page(state, rest, query).await {
            Some((status, value)) => (status, Some((value, chain::render as Render))),
            None => (StatusCode::OK, other_page(state, rest, query).await),
        };
    let response = match (page, json) {
        (Some((value, _)), true) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        (Some((value, render)), false) => {
            let mut response = render(base, &value);
            *response.status_mut() = status;
            response
        }
        (None, true) => StatusCode::NOT_FOUND.into_response(),
        (None, false) => html::not_found(base),
    };
    secured(response)
}

/// The value and renderer of the page at `rest`, other than a chain's; `None` when there is
/// no page there.
async fn other_page(
    state: &PagesState,
    rest: &str,
    query: Option<&str>,
) -> Option<(Value, Render)> {
    match rest {
        "" => Some((views::overview(state), html::overview)),
        "/routes" => Some((views::routes(state, query), html::routes)),
        "/traces" => {
            let filter = views::TraceFilter::parse(query);
            Some((views::traces(state, &filter), html::traces))
        }
        "/errors" => Some((views::errors(state), html::errors)),
        "/bottlenecks" => Some((views::bottlenecks(state), html::bottlenecks)),
        other => match other
            .strip_prefix("/traces/")
            .and_then(|id| TraceId::from_hex(id).ok())
            .and_then(|id| state.store.trace(id))
        {
            Some(t) => {
                let mut value = views::trace(state, &t);
                // Other services' spans, from the request chain of its correlation id.
                chain::add_other_services(state, &t, &mut value).await;
                Some((value, html::trace as Render))
            }
            None => None,
        },
    }
}

/// `response` with the headers every page carries: never cached, never sniffed.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// How a page's JSON value becomes HTML (`html.rs`).
type Render = fn(&str, &Value) -> Response;

/// Whether the client asks for JSON and not HTML.
fn prefers_json(req: &Request) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    accept.contains("application/json") && !accept.contains("text/html")
}

/// Longest login form body read.
const MAX_LOGIN_BODY: usize = 4096;

/// `GET {pages}/login`: the form; `POST`: checks the token and sets the cookie. Without a
/// token to check against, the pages' refusal. Every wrong token gets the same answer; a
/// client past its wrong tokens for the minute gets `429` (see the `throttle` module).
async fn login(state: &PagesState, throttle: &LoginThrottle, req: Request) -> Response {
    let base = &*state.base;
    if !state.access.takes_tokens() {
        return StatusCode::FORBIDDEN.into_response();
    }
    if req.method() == Method::GET {
        return html::login(base, false);
    }
    if req.method() != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let client = Client::of(&req);
    if let Some(wait) = throttle.refuses(client, Instant::now()) {
        return too_many_attempts(wait);
    }
    // Over HTTPS (or behind a proxy that says so), the cookie is never sent over plain HTTP.
    let https = req.uri().scheme_str() == Some("https")
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let body = match axum::body::to_bytes(req.into_body(), MAX_LOGIN_BODY).await {
        Ok(body) => body,
        Err(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    };
    let token = form_value(&body, "token").unwrap_or_default();
    if !state.access.is_token(&token) {
        throttle.failed(client, Instant::now());
        let mut response = html::login(base, true);
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        return response;
    }
    throttle.succeeded(client);
    let cookie = format!(
        "{}={}; Path={}; HttpOnly; SameSite=Strict{}",
        access::COOKIE,
        access::cookie_value(&token),
        if base.is_empty() { "/" } else { base },
        if https { "; Secure" } else { "" },
    );
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/")) {
        headers.insert(header::LOCATION, location);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `429` with `Retry-After` (whole seconds, rounded up), the same whatever the token.
fn too_many_attempts(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts; try again later.\n",
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of `key` in a form body (`application/x-www-form-urlencoded`), as bytes.
fn form_value(body: &[u8], key: &str) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        (k == key.as_bytes()).then(|| {
            let v: Vec<u8> = v
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            percent_encoding::percent_decode(&v).collect()
        })
    })
}

/// The exporter of the worker started for the pages alone when nothing is exported: the
/// spans reach the store through the worker's tap and go no further.
#[derive(Debug)]
pub(crate) struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send {
        std::future::ready(Ok(()))
    }
}

impl crate::export::batch::QueueExporter for Discard {
    fn export_queued(
        &self,
        _batch: Vec<crate::export::batch::Queued>,
    ) -> impl std::future::Future<Output = crate::export::batch::Sent> + Send {
        std::future::ready(crate::export::batch::Sent {
            result: Ok(()),
            rejected: None,
        })
    }
}

#[cfg(test)]
mod tests;
