use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::KeyValue;
use serde_json::Value;
use tower::ServiceExt as _;

use super::PagesAccess;
use crate::{AlertRule, ServiceTracing, TracesExporter, TracingGuard, Window};

const LOOPBACK: Option<&str> = Some("127.0.0.1:5000");
const FAR: Option<&str> = Some("203.0.113.9:5000");

#[derive(Debug)]
struct OutOfStock(u32);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {} is out of stock", self.0)
    }
}

impl std::error::Error for OutOfStock {}

/// A shop whose `/orders` answer, whose `/fail` fails with a recorded error, and whose
/// `/secret` sets attributes the redaction policy must take out.
fn app() -> Router {
    Router::new()
        .route("/orders", get(|| async { "orders" }))
        .route(
            "/fail",
            get(|| async {
                crate::record_error(&OutOfStock(7));
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .route(
            "/secret",
            get(|| async {
                opentelemetry::Context::map_current(|cx| {
                    cx.span()
                        .set_attribute(KeyValue::new("db.password", "hunter2-planted"));
                    cx.span()
                        .set_attribute(KeyValue::new("note", "mail jane.doe@example.com now"));
                });
                "ok"
            }),
        )
}

fn setup(access: PagesAccess) -> (Router, TracingGuard) {
    ServiceTracing::builder("shop")
        .service_version("1.2.3")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .pages("/_tracing")
        .pages_access(access)
        .init(app())
        .expect("setup")
}

pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) headers: http::HeaderMap,
    pub(super) body: String,
}

impl Answer {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub(super) async fn send(
    app: &Router,
    request: http::request::Builder,
    peer: Option<&str>,
    body: &str,
) -> Answer {
    let mut request = request.body(Body::from(body.to_owned())).expect("request");
    if let Some(peer) = peer {
        let addr: SocketAddr = peer.parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get_page(app: &Router, path: &str, peer: Option<&str>, token: Option<&str>) -> Answer {
    let mut request = http::Request::get(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    send(app, request, peer, "").await
}

async fn html(app: &Router, path: &str) -> Answer {
    let request = http::Request::get(path).header("accept", "text/html,application/xhtml+xml");
    send(app, request, LOOPBACK, "").await
}

/// A refusal says nothing: no page names, no version.
fn says_nothing(answer: &Answer) {
    for leak in [
        "/routes",
        "/traces",
        "Bottlenecks",
        env!("CARGO_PKG_VERSION"),
        "1.2.3",
        "shop",
    ] {
        assert!(!answer.body.contains(leak), "{leak:?} in {}", answer.body);
    }
}

#[tokio::test]
async fn loopback_reads_the_pages_and_other_peers_get_403_and_nothing_else() {
    let (app, guard) = setup(PagesAccess::default());
    for peer in [LOOPBACK, Some("[::1]:5000")] {
        let answer = get_page(&app, "/_tracing.json", peer, None).await;
        assert_eq!(answer.status, 200, "{peer:?}");
        assert_eq!(answer.json()["service"], "shop");
    }
    for peer in [FAR, None] {
        for path in [
            "/_tracing",
            "/_tracing/routes.json",
            "/_tracing/nothing",
            "/_tracing/login",
        ] {
            let answer = get_page(&app, path, peer, Some("anything")).await;
            assert_eq!(
                (answer.status, answer.body.as_str()),
                (403, ""),
                "{path} from {peer:?}"
            );
        }
    }
    drop(guard);
}

#[tokio::test]
async fn a_token_opens_the_pages_from_anywhere_and_a_wrong_one_gets_401_and_nothing_else() {
    let (app, guard) = setup(PagesAccess::loopback().with_bearer_token("s3cret-token"));
    let token = Some("s3cret-token");
    assert_eq!(
        get_page(&app, "/_tracing/routes.json", FAR, token)
            .await
            .status,
        200
    );
    assert_eq!(
        get_page(&app, "/_tracing/routes.json", None, token)
            .await
            .status,
        200,
        "unknown peer, with the token"
    );
    assert_eq!(
        get_page(&app, "/_tracing/routes.json", LOOPBACK, None)
            .await
            .status,
        200
    );
    for (peer, given) in [
        (FAR, Some("s3cret-tokem")),
        (FAR, None),
        (None, None),
        (None, Some("wrong")),
    ] {
        let answer = get_page(&app, "/_tracing/routes.json", peer, given).await;
        assert_eq!(answer.status, 401, "{peer:?} {given:?}");
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
        assert_eq!(answer.body, "");
    }
    // A browser is offered the login form, and nothing more.
    let request = http::Request::get("/_tracing/routes").header("accept", "text/html");
    let answer = send(&app, request, FAR, "").await;
    assert_eq!(answer.status, 401);
    assert!(
        answer
            .body
            .contains("<form method=\"post\" action=\"/_tracing/login\""),
        "{}",
        answer.body
    );
    says_nothing(&answer);
    drop(guard);
}

#[tokio::test]
async fn networks_open_the_pages_to_their_peers_only() {
    let access = PagesAccess::networks(["10.0.0.0/8"]).expect("networks");
    let (app, guard) = setup(access);
    assert_eq!(
        get_page(&app, "/_tracing.json", Some("10.1.2.3:4000"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        get_page(&app, "/_tracing.json", LOOPBACK, None)
            .await
            .status,
        403
    );
    assert_eq!(
        get_page(&app, "/_tracing.json", Some("11.0.0.1:4000"), None)
            .await
            .status,
        403
    );
    drop(guard);
}

#[tokio::test]
async fn the_login_form_sets_a_cookie_and_answers_every_wrong_token_alike() {
    let (app, guard) = setup(
        PagesAccess::networks(["10.0.0.0/8"])
            .expect("networks")
            .with_bearer_token("s3cret-token"),
    );
    let form = |token: &str| {
        (
            http::Request::post("/_tracing/login")
                .header("content-type", "application/x-www-form-urlencoded"),
            format!("token={token}"),
        )
    };
    let (request, body) = form("s3cret-token");
    let answer = send(&app, request, FAR, &body).await;
    assert_eq!(answer.status, 303, "{}", answer.body);
    assert_eq!(answer.headers["location"], "/_tracing/");
    let cookie = answer.headers["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/_tracing"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let (request, body) = form("s3cret-token");
    let request = request.header("x-forwarded-proto", "https");
    let answer = send(&app, request, FAR, &body).await;
    let secure = answer.headers["set-cookie"].to_str().expect("ascii");
    assert!(
        secure.ends_with("; Secure"),
        "behind an HTTPS proxy: {secure}"
    );
    let value = cookie.split(';').next().expect("name=value").to_owned();
    let request =
        http::Request::get("/_tracing/routes.json").header("cookie", format!("other=1; {value}"));
    assert_eq!(
        send(&app, request, FAR, "").await.status,
        200,
        "the cookie opens the pages"
    );
    let request =
        http::Request::get("/_tracing/routes.json").header("cookie", "service_tracing_pages=00ff");
    assert_eq!(
        send(&app, request, FAR, "").await.status,
        401,
        "a forged cookie does not"
    );

    // Wrong tokens, one a letter away and one nothing like it, get the very same answer.
    let mut answers = Vec::new();
    for wrong in ["s3cret-tokem", "s3cret-token-", "x", ""] {
        let (request, body) = form(wrong);
        let answer = send(&app, request, FAR, &body).await;
        assert_eq!(answer.status, 401, "{wrong:?}");
        assert!(answer.headers.get("set-cookie").is_none());
        says_nothing(&answer);
        answers.push((answer.status, answer.headers.len(), answer.body));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    drop(guard);
}

/// Past five wrong tokens in a minute, a client's sign-ins get 429 with `Retry-After`, the
/// same answer whatever the token (the right one included, until the minute ends); other
/// clients and bearer tokens are not held back.
#[tokio::test]
async fn repeated_wrong_tokens_at_the_login_form_get_429_with_retry_after() {
    let (app, guard) = setup(PagesAccess::loopback().with_bearer_token("s3cret-token"));
    let sign_in = |token: &str, peer: &'static str| {
        let request = http::Request::post("/_tracing/login")
            .header("content-type", "application/x-www-form-urlencoded");
        let app = app.clone();
        let body = format!("token={token}");
        async move { send(&app, request, Some(peer), &body).await }
    };
    for i in 0..super::throttle::MAX_FAILURES {
        let answer = sign_in(&format!("guess-{i}"), "203.0.113.9:1000").await;
        assert_eq!(answer.status, 401, "wrong token {i}");
    }
    let mut answers = Vec::new();
    for token in ["s3cret-tokem", "nothing like it", "s3cret-token"] {
        let answer = sign_in(token, "203.0.113.9:2000").await;
        assert_eq!(answer.status, 429, "{token:?}: {}", answer.body);
        let wait: u64 = answer.headers["retry-after"]
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("seconds");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(answer.headers.get("set-cookie").is_none());
        says_nothing(&answer);
        answers.push((answer.status, answer.headers.len(), answer.body));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(
        sign_in("s3cret-token", "198.51.100.7:1000").await.status,
        303,
        "another client signs in"
    );
    assert_eq!(
        get_page(&app, "/_tracing/routes.json", FAR, Some("s3cret-token"))
            .await
            .status,
        200,
        "the bearer token still opens the pages"
    );
    drop(guard);
}

/// 3 answered orders, 2 failures, 1 request with planted secrets; then every page, as JSON and
/// as HTML.
#[tokio::test]
async fn the_pages_show_known_traffic_as_json_and_html() {
    let (app, guard) = setup(PagesAccess::default());
    for i in 0..3 {
        let request =
            http::Request::get("/orders").header("x-correlation-id", format!("order-{i}"));
        assert_eq!(send(&app, request, LOOPBACK, "").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get_page(&app, "/fail", LOOPBACK, None).await.status, 500);
    }
    assert_eq!(get_page(&app, "/secret", LOOPBACK, None).await.status, 200);
    guard.force_flush().expect("flush");

    // Overview.
    let overview = get_page(&app, "/_tracing.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(overview["store"]["traces"], 6, "{overview}");
    assert_eq!(overview["service"], "shop");
    assert_eq!(overview["service_version"], "1.2.3");

    // Traces, filtered.
    let traces = get_page(&app, "/_tracing/traces.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(
        traces["traces"].as_array().map(Vec::len),
        Some(6),
        "{traces}"
    );
    let count = |v: &Value| v["traces"].as_array().map_or(0, Vec::len);
    let failing = get_page(
        &app,
        "/_tracing/traces.json?route=GET+%2Ffail",
        LOOPBACK,
        None,
    )
    .await
    .json();
    assert_eq!(count(&failing), 2, "{failing}");
    assert!(failing["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|t| t["error"] == true && t["status_code"] == "500"));
    let errors_only = get_page(&app, "/_tracing/traces.json?status=error", LOOPBACK, None)
        .await
        .json();
    assert_eq!(count(&errors_only), 2);
    let slow = get_page(&app, "/_tracing/traces.json?min_ms=60000", LOOPBACK, None)
        .await
        .json();
    assert_eq!(count(&slow), 0);
    let by_correlation = get_page(&app, "/_tracing/traces.json?q=order-1", LOOPBACK, None)
        .await
        .json();
    assert_eq!(count(&by_correlation), 1, "{by_correlation}");
    assert_eq!(by_correlation["traces"][0]["operation"], "GET /orders");
    let trace_id = by_correlation["traces"][0]["trace_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let by_id = get_page(
        &app,
        &format!("/_tracing/traces.json?q={trace_id}"),
        LOOPBACK,
        None,
    )
    .await
    .json();
    assert_eq!(by_id["traces"][0]["trace_id"], trace_id.as_str());

    // One trace.
    let detail = get_page(
        &app,
        &format!("/_tracing/traces/{trace_id}.json"),
        LOOPBACK,
        None,
    )
    .await
    .json();
    let spans = detail["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1, "{detail}");
    assert_eq!(spans[0]["kind"], "server");
    assert_eq!(spans[0]["service"], "shop");
    assert_eq!(spans[0]["start_offset_ms"], 0.0);
    assert!(spans[0]["attributes"]
        .as_array()
        .expect("pairs")
        .iter()
        .any(|p| p[0] == "http.route" && p[1] == "/orders"));
    let failed = failing["traces"][0]["trace_id"].as_str().expect("id");
    let detail = get_page(
        &app,
        &format!("/_tracing/traces/{failed}.json"),
        LOOPBACK,
        None,
    )
    .await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["spans"][0]["status"], "error");
    assert_eq!(
        detail["spans"][0]["exception"]["message"], "item 7 is out of stock",
        "{detail}"
    );
    assert_eq!(
        get_page(
            &app,
            "/_tracing/traces/0123456789abcdef0123456789abcdef.json",
            LOOPBACK,
            None
        )
        .await
        .status,
        404
    );

    // Redacted as the exporter's spans are.
    let secret = get_page(
        &app,
        "/_tracing/traces.json?route=GET+%2Fsecret",
        LOOPBACK,
        None,
    )
    .await
    .json();
    let secret_id = secret["traces"][0]["trace_id"].as_str().expect("id");
    let detail = get_page(
        &app,
        &format!("/_tracing/traces/{secret_id}.json"),
        LOOPBACK,
        None,
    )
    .await;
    assert!(detail.body.contains("db.password"), "{}", detail.body);
    assert!(!detail.body.contains("hunter2-planted"), "{}", detail.body);
    assert!(
        !detail.body.contains("jane.doe@example.com"),
        "{}",
        detail.body
    );

    // Routes: the profiling figures.
    let routes = get_page(&app, "/_tracing/routes.json", LOOPBACK, None)
        .await
        .json();
    let route = |name: &str| {
        routes["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["operation"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {routes}"))
    };
    assert_eq!(route("GET /orders")["windows"]["1m"]["count"], 3);
    assert_eq!(route("GET /orders")["windows"]["1m"]["error_ratio"], 0.0);
    assert_eq!(route("GET /fail")["windows"]["1h"]["count"], 2);
    assert_eq!(route("GET /fail")["windows"]["1m"]["error_ratio"], 1.0);
    assert_eq!(
        route("GET /fail")["traces"],
        "/_tracing/traces?route=GET%20%2Ffail"
    );
    let by_errors = get_page(
        &app,
        "/_tracing/routes.json?sort=error_ratio",
        LOOPBACK,
        None,
    )
    .await
    .json();
    assert_eq!(by_errors["sort"], "error_ratio");
    assert_eq!(
        by_errors["routes"][0]["operation"], "GET /fail",
        "{by_errors}"
    );
    let unsorted = get_page(&app, "/_tracing/routes.json?sort=nonsense", LOOPBACK, None)
        .await
        .json();
    assert_eq!(unsorted["sort"], Value::Null);
    assert_eq!(
        unsorted["routes"][0]["operation"], "GET /orders",
        "first seen first"
    );

    // Errors: one group of two, linked to its stored traces.
    let errors = get_page(&app, "/_tracing/errors.json", LOOPBACK, None)
        .await
        .json();
    let groups = errors["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{errors}");
    assert_eq!(groups[0]["count"], 2);
    assert_eq!(groups[0]["message"], "item 7 is out of stock");
    assert_eq!(groups[0]["routes"][0], "GET /fail");
    assert_eq!(groups[0]["samples"].as_array().map(Vec::len), Some(2));
    assert_eq!(groups[0]["alert"], Value::Null, "no rule, no alert");
    assert_eq!(errors["alert_rules"], false);
    assert!(
        groups[0]["samples"][0]["link"]
            .as_str()
            .is_some_and(|l| l.starts_with("/_tracing/traces/")),
        "{errors}"
    );

    // Bottlenecks: what profiling analysed.
    let bottlenecks = get_page(&app, "/_tracing/bottlenecks.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(bottlenecks["profiling"], true);
    assert!(
        bottlenecks["routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["route"] == "GET /orders")),
        "{bottlenecks}"
    );

    // Accept: application/json without the suffix.
    let request = http::Request::get("/_tracing/errors").header("accept", "application/json");
    assert_eq!(
        send(&app, request, LOOPBACK, "").await.json()["groups"][0]["count"],
        2
    );

    // HTML: every page, the waterfall with one bar per span, the errors with their count.
    for path in [
        "/_tracing",
        "/_tracing/",
        "/_tracing/routes",
        "/_tracing/traces",
        "/_tracing/errors",
        "/_tracing/bottlenecks",
    ] {
        let page = html(&app, path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
        let csp = page.headers["content-security-policy"]
            .to_str()
            .expect("ascii");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self';"),
            "{csp}"
        );
        // One script, from its file: nothing inline, and the page is whole without it.
        assert_eq!(
            page.body.matches("<script").count(),
            1,
            "{path}: {}",
            page.body
        );
        assert!(page
            .body
            .contains("<script src=\"/_tracing/pages.js\" defer></script>"));
        assert!(page.body.contains("<label id=\"live\" hidden>"), "{path}");
    }
    let script = get_page(&app, "/_tracing/pages.js", LOOPBACK, None).await;
    assert_eq!(script.status, 200);
    assert_eq!(
        script.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(script.body.contains("live-refresh"), "{}", script.body);
    assert_eq!(
        get_page(&app, "/_tracing/pages.js", FAR, None).await.status,
        403,
        "the script is behind the same door"
    );
    let routes_page = html(&app, "/_tracing/routes").await.body;
    assert!(
        routes_page.contains("href=\"/_tracing/traces?route=GET%20%2Forders\""),
        "{routes_page}"
    );
    let page = html(&app, &format!("/_tracing/traces/{failed}")).await.body;
    assert_eq!(page.matches("data-waterfall-bar").count(), 1);
    assert!(page.contains("item 7 is out of stock"));
    let page = html(&app, "/_tracing/errors").await.body;
    assert!(page.contains("<td class=\"count\">2</td>"), "{page}");
    assert!(page.contains("OutOfStock") || page.contains("out of stock"));
    assert_eq!(html(&app, "/_tracing/nothing").await.status, 404);
    drop(guard);
}

/// A count rule fires on the second failure and its webhook takes the post: the errors page
/// shows the group's alert as firing, the rule, when, and the delivery, as JSON and HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_errors_page_shows_a_group_s_alert_and_its_webhook_delivery() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("address"));
    let posts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = posts.clone();
    let receiver = Router::new().route(
        "/hook",
        axum::routing::post(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { StatusCode::NO_CONTENT }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let (app, guard) = ServiceTracing::builder("shop")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .alert_rule(AlertRule::count(2, Window::OneMinute).named("two out of stock"))
        .alert_webhook(hook)
        .pages("/_tracing")
        .init(app())
        .expect("setup");
    let before = crate::clock::unix_ms(std::time::SystemTime::now());
    for _ in 0..2 {
        assert_eq!(get_page(&app, "/fail", LOOPBACK, None).await.status, 500);
    }
    // Waits for the alerts to be evaluated and their posts to settle.
    guard.force_flush().expect("flush");
    let after = crate::clock::unix_ms(std::time::SystemTime::now());
    assert_eq!(posts.load(std::sync::atomic::Ordering::SeqCst), 1);

    let errors = get_page(&app, "/_tracing/errors.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(errors["alert_rules"], true);
    let alert = &errors["groups"][0]["alert"];
    assert_eq!(alert["state"], "firing", "{errors}");
    assert_eq!(alert["rule"], "two out of stock");
    assert_eq!(alert["kind"], "count");
    assert_eq!(alert["alerts"], 1);
    assert_eq!(alert["delivery"], "delivered");
    let fired = alert["fired_at_unix_ms"].as_u64().expect("time");
    assert!(
        (before..=after).contains(&fired),
        "{before} {fired} {after}"
    );

    let page = html(&app, "/_tracing/errors").await.body;
    assert!(page.contains("data-alert=\"firing\""), "{page}");
    assert!(page.contains("two out of stock"), "{page}");
    assert!(
        page.contains("<span class=\"delivery\">delivered</span>"),
        "{page}"
    );
    drop(guard);
}

/// Known latencies on one route: the routes page counts them in the duration metric's
/// buckets, in the JSON twin and as the bars of the row's histogram.
#[tokio::test]
async fn the_routes_page_draws_each_route_s_latency_histogram() {
    let (app, guard) = setup(PagesAccess::default());
    let profiling = guard.profiling().expect("profiling");
    for ms in [3, 3, 3, 30, 30, 700, 20_000] {
        profiling.record_request(
            "GET",
            Some("/known"),
            std::time::Duration::from_millis(ms),
            false,
        );
    }
    // Up to 5 ms: 3; over 25 up to 50 ms: 2; over 500 up to 750 ms: 1; over 10 s: 1.
    let expected: Vec<u64> = vec![3, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    let routes = get_page(&app, "/_tracing/routes.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(routes["bucket_bounds_ms"][0], 5.0);
    assert_eq!(
        routes["bucket_bounds_ms"].as_array().map(Vec::len),
        Some(expected.len() - 1)
    );
    let known = routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["operation"] == "GET /known")
        .unwrap_or_else(|| panic!("{routes}"));
    for window in ["1m", "5m", "1h"] {
        assert_eq!(
            known["windows"][window]["buckets"],
            serde_json::json!(expected),
            "{window}"
        );
    }

    let page = html(&app, "/_tracing/routes").await.body;
    let row = page
        .split("<tr data-route=\"GET /known\" data-window=\"1m\" data-count=\"7\">")
        .nth(1)
        .unwrap_or_else(|| panic!("{page}"));
    let chart = row
        .split("<span class=\"spark hist\"")
        .nth(1)
        .and_then(|c| c.split("</span>").next())
        .unwrap_or_else(|| panic!("{row}"));
    let bars: Vec<u64> = chart
        .split("data-count=\"")
        .skip(1)
        .filter_map(|b| b.split('"').next()?.parse().ok())
        .collect();
    assert_eq!(bars, expected, "{chart}");
    assert!(chart.contains("title=\"over 10000 ms: 1\""), "{chart}");
    assert!(!chart.contains("<script"));
    drop(guard);
}

/// With a 256 KiB bound set through the builder, ten routes of traces carrying 16 KiB of
/// attributes each (1.6 MiB in all) leave the store within 256 KiB.
#[tokio::test]
async fn a_small_byte_bound_set_on_the_builder_holds() {
    const BOUND: usize = 256 * 1024;
    let mut app = Router::new();
    for i in 0..10 {
        app = app.route(
            &format!("/big{i}"),
            get(|| async {
                opentelemetry::Context::map_current(|cx| {
                    for a in 0..16 {
                        let text = format!("{a}").repeat(1024);
                        cx.span()
                            .set_attribute(KeyValue::new(format!("payload.{a}"), text));
                    }
                });
                "big"
            }),
        );
    }
    let (app, guard) = ServiceTracing::builder("shop")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .pages("/_tracing")
        .pages_store_limits(
            super::StoreLimits::new()
                .max_bytes(BOUND)
                .max_bytes_per_trace(64 * 1024),
        )
        .init(app)
        .expect("setup");
    for round in 0..10 {
        for i in 0..10 {
            let path = format!("/big{i}");
            assert_eq!(get_page(&app, &path, LOOPBACK, None).await.status, 200);
        }
        if round % 3 == 0 {
            guard.force_flush().expect("flush");
        }
    }
    guard.force_flush().expect("flush");
    let store = get_page(&app, "/_tracing.json", LOOPBACK, None)
        .await
        .json()["store"]
        .clone();
    assert_eq!(store["max_bytes"], BOUND, "{store}");
    let bytes = store["bytes"].as_u64().expect("bytes");
    assert!(bytes <= BOUND as u64, "{store}");
    assert!(bytes > BOUND as u64 / 2, "the store is used: {store}");
    assert!(store["evicted"].as_u64() > Some(0), "{store}");
    assert!(store["traces"].as_u64() < Some(100), "{store}");
    drop(guard);
}

/// A zero or absurd store bound fails set-up with an error naming it, never a panic.
#[test]
fn store_bounds_out_of_range_fail_setup_naming_the_bound() {
    use super::StoreLimits;
    let cases = [
        (StoreLimits::new().max_traces(0), "max_traces"),
        (StoreLimits::new().max_traces(usize::MAX), "max_traces"),
        (StoreLimits::new().max_bytes(0), "max_bytes"),
        (StoreLimits::new().max_bytes(usize::MAX), "max_bytes"),
        (
            StoreLimits::new().max_spans_per_trace(0),
            "max_spans_per_trace",
        ),
        (
            StoreLimits::new().max_bytes_per_trace(0),
            "max_bytes_per_trace",
        ),
        (
            StoreLimits::new()
                .max_bytes(1 << 20)
                .max_bytes_per_trace(2 << 20),
            "max_bytes_per_trace",
        ),
        (StoreLimits::new().max_routes(0), "max_routes"),
        (StoreLimits::new().max_routes(1 << 40), "max_routes"),
    ];
    for (limits, name) in cases {
        let e = ServiceTracing::builder("shop")
            .env_lookup(|_| None)
            .install_subscriber(false)
            .exporter(TracesExporter::None)
            .pages("/_tracing")
            .pages_store_limits(limits)
            .init(Router::<()>::new())
            .expect_err("refused");
        assert!(
            e.to_string()
                .contains(&format!("pages_store_limits {name}")),
            "{name}: {e}"
        );
    }
}

/// However often the pages are read, they never show up as traces, routes or requests.
#[tokio::test]
async fn the_pages_own_requests_are_never_traced_nor_counted() {
    let (app, guard) = setup(PagesAccess::default());
    assert_eq!(get_page(&app, "/orders", LOOPBACK, None).await.status, 200);
    for path in [
        "/_tracing",
        "/_tracing/traces.json",
        "/_tracing/routes",
        "/_tracing/nothing",
        "/_tracing/login",
    ] {
        for _ in 0..3 {
            let _ = get_page(&app, path, LOOPBACK, None).await;
        }
    }
    guard.force_flush().expect("flush");
    let traces = get_page(&app, "/_tracing/traces.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(traces["stored"], 1, "{traces}");
    assert_eq!(traces["routes"], serde_json::json!(["GET /orders"]));
    let routes = get_page(&app, "/_tracing/routes.json", LOOPBACK, None)
        .await
        .json();
    let names: Vec<&str> = routes["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["operation"].as_str())
        .collect();
    assert_eq!(names, ["GET /orders"], "{routes}");
    let overview = get_page(&app, "/_tracing.json", LOOPBACK, None)
        .await
        .json();
    assert_eq!(
        overview["traces"]["exported"], 0,
        "no exporter: the pages' worker is not export"
    );
    drop(guard);
}

#[test]
fn a_pages_path_that_is_no_path_fails_setup() {
    for path in ["_tracing", "/", ""] {
        let e = ServiceTracing::builder("shop")
            .env_lookup(|_| None)
            .install_subscriber(false)
            .exporter(TracesExporter::None)
            .pages(path)
            .init(Router::<()>::new())
            .expect_err("refused");
        assert!(e.to_string().contains("pages"), "{e}");
    }
}
