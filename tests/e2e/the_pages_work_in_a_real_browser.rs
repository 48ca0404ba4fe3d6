//! A real headless Chromium reads the built-in pages of a running service after real traffic
//! (exported to the real collector meanwhile): every page loads; from Routes, a click on the
//! checkout route lists its traces, a click on one shows its waterfall, with one bar per span
//! of the trace; the errors page lists the group with its count; with live refresh ticked, new
//! traffic shows on the routes page without a navigation. Screenshots of every page go
//! to `target/pages-screenshots/` (the README shows two of them).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use fantoccini::Locator;
use service_tracing::Protocol;

use crate::browser::Browser;
use crate::collector::Collector;
use crate::support::{options, WAIT};

#[derive(Debug)]
struct PaymentDeclined;

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("payment declined by the bank")
    }
}

impl std::error::Error for PaymentDeclined {}

#[tracing::instrument]
async fn reserve(id: u32) -> u32 {
    id
}

async fn stock(Path(id): Path<u32>) -> String {
    format!("{} reserved", reserve(id).await)
}

async fn checkout(State(app): State<String>, Path(id): Path<u32>) -> (StatusCode, String) {
    let client = service_tracing::traced_client();
    match client.get(format!("{app}/stock/{id}")).send().await {
        Ok(r) => (StatusCode::OK, r.text().await.unwrap_or_default()),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn pay(Path(_id): Path<u32>) -> StatusCode {
    service_tracing::record_error(&PaymentDeclined);
    StatusCode::INTERNAL_SERVER_ERROR
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("pages-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_work_in_a_real_browser() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let collector = Collector::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let routes = Router::new()
        .route("/checkout/{id}", get(checkout))
        .route("/stock/{id}", get(stock))
        .route("/pay/{id}", get(pay))
        .with_state(app_url.clone());
    let (routes, guard) = options("shop")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .pages("/_tracing")
        .init(routes)
        .unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::new();
    for id in 0..3 {
        let r = http
            .get(format!("{app_url}/checkout/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for id in 0..2 {
        let r = http
            .get(format!("{app_url}/pay/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
    }
    guard.force_flush().unwrap();
    // Each checkout: its server span, the client call, the stock server span, `reserve`.
    collector.wait_for_spans(WAIT, |s| {
        s.iter().filter(|s| s.name == "reserve").count() == 3
    });

    let shots = screenshots();
    let client = &browser.client;
    let pages = format!("{app_url}/_tracing");
    for (path, title, shot) in [
        ("", "Overview", "overview"),
        ("/traces", "Traces", "traces"),
        ("/bottlenecks", "Bottlenecks", "bottlenecks"),
    ] {
        client.goto(&format!("{pages}{path}")).await.unwrap();
        let h1 = client
            .find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(h1, title, "{path}");
        std::fs::write(
            shots.join(format!("{shot}.png")),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
    }

    // Routes -> the checkout route's traces -> one trace's waterfall.
    client.goto(&format!("{pages}/routes")).await.unwrap();
    std::fs::write(shots.join("routes.png"), client.screenshot().await.unwrap()).unwrap();
    client
        .find(Locator::LinkText("GET /checkout/{id}"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let listed = client
        .find_all(Locator::Css("#traces tbody tr"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3, "the three checkouts");
    client
        .find(Locator::Css("#traces tbody tr td:last-child a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = client.current_url().await.unwrap();
    assert!(url.path().starts_with("/_tracing/traces/"), "{url}");
    let twin: serde_json::Value = http
        .get(format!("{url}.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spans = twin["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 4, "{twin}");
    let bars = client
        .find_all(Locator::Css("[data-waterfall-bar]"))
        .await
        .unwrap();
    assert_eq!(bars.len(), spans.len(), "one bar per span");
    std::fs::write(
        shots.join("waterfall.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // The errors page lists the group with its count.
    client.goto(&format!("{pages}/errors")).await.unwrap();
    let groups = client
        .find_all(Locator::Css("#errors tr.group"))
        .await
        .unwrap();
    assert_eq!(groups.len(), 1);
    let row = groups[0].text().await.unwrap();
    assert!(row.contains("payment declined by the bank"), "{row}");
    let count = client
        .find(Locator::Css("#errors tr.group td.count"))
        .await
        .unwrap();
    assert_eq!(count.text().await.unwrap(), "2");
    std::fs::write(shots.join("errors.png"), client.screenshot().await.unwrap()).unwrap();

    // Live refresh: with the box ticked, new checkouts show on the routes page, without a
    // navigation (a mark left on the page's window survives).
    client.goto(&format!("{pages}/routes")).await.unwrap();
    let row = |count: u32| {
        format!(r#"tr[data-route="GET /checkout/{{id}}"][data-window="1h"][data-count="{count}"]"#)
    };
    client.find(Locator::Css(&row(3))).await.unwrap();
    client
        .find(Locator::Id("live-refresh"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .execute("window.samePage = 'yes'; return true;", vec![])
        .await
        .unwrap();
    for id in 10..14 {
        let r = http
            .get(format!("{app_url}/checkout/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&row(7)))
        .await
        .unwrap();
    let mark = client
        .execute("return window.samePage || null;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, serde_json::json!("yes"), "refreshed in place");
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/_tracing/routes"
    );
    std::fs::write(
        shots.join("routes-live.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // The pages' own requests were never traced.
    guard.force_flush().unwrap();
    assert!(collector
        .spans()
        .iter()
        .all(|s| !s.name.contains("_tracing")));
    browser.close().await;
    println!("screenshots in {}", shots.display());
}
