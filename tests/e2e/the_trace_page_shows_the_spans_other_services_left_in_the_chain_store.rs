//! Two services sharing one real `redis-server` as their request chain store: `shop` (pages
//! on) calls `stock`, set up apart (its own set-up and store, as another process would have)
//! through the traced client. Shop's page of the trace shows stock's server span, with stock's
//! name, under shop's call, as one more bar of the waterfall; the chain page lists the three
//! steps in order. Hostile ids are a 400 and never become a key. Redis stalled, then killed:
//! the trace page still answers 200 promptly, with its own spans and a note.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::Value;
use service_tracing::request_chain::RequestChains;
use service_tracing::{traced_client, TracesExporter};

use crate::redis_server::RedisServer;
use crate::support::{options, serve};

const PREFIX: &str = "e2e:pages-chains";
const ID: &str = "chain-page-1";
/// Redis's own timeouts are 500 ms: a page waiting on Redis would take at least that.
const PAGE_BOUND: Duration = Duration::from_millis(500);

#[derive(Clone)]
struct Shop {
    stock: String,
    client: ClientWithMiddleware,
}

async fn checkout(State(shop): State<Shop>, Path(id): Path<u32>) -> (StatusCode, String) {
    match shop
        .client
        .get(format!("{}/stock/{id}", shop.stock))
        .send()
        .await
    {
        Ok(r) => (
            StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
            r.text().await.unwrap_or_default(),
        ),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

struct Page {
    status: u16,
    body: String,
    took: Duration,
}

impl Page {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn bars(&self) -> usize {
        self.body.matches("data-waterfall-bar").count()
    }
}

async fn page(http: &reqwest::Client, url: &str) -> Page {
    let started = Instant::now();
    let r = http
        .get(url)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    Page {
        status,
        body,
        took: started.elapsed(),
    }
}

async fn checkout_with(http: &reqwest::Client, shop: &str, n: u32, id: &str) {
    let r = http
        .get(format!("{shop}/checkout/{n}"))
        .header("x-correlation-id", id)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_page_shows_the_spans_other_services_left_in_the_chain_store() {
    let mut redis = RedisServer::start();
    let chains = || RequestChains::new().prefix(PREFIX);
    let stock = options("stock")
        .exporter(TracesExporter::None)
        .error_redis_url(redis.url())
        .request_chains(chains())
        .build_scoped()
        .unwrap();
    let stock_url = serve(
        Router::new()
            .route("/stock/{id}", get(|| async { "12" }))
            .layer(stock.layer()),
    )
    .await;
    let routes = Router::new().route("/checkout/{id}", get(checkout));
    let (routes, guard) = options("shop")
        .exporter(TracesExporter::None)
        .error_redis_url(redis.url())
        .request_chains(chains())
        .pages("/_tracing")
        .init(routes)
        .unwrap();
    let routes = routes.with_state(Shop {
        stock: stock_url,
        client: traced_client(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    let http = reqwest::Client::new();
    let pages = format!("{shop}/_tracing");

    checkout_with(&http, &shop, 1, ID).await;
    // Each service hands its spans on and its chain entries to Redis.
    stock.guard().force_flush().unwrap();
    guard.force_flush().unwrap();

    let traces = page(&http, &format!("{pages}/traces.json?q={ID}"))
        .await
        .json();
    let listed = &traces["traces"][0];
    let own = listed["spans"].as_u64().unwrap() as usize;
    assert_eq!(own, 2, "shop's server span and its call: {traces}");
    let trace = listed["link"].as_str().unwrap().to_owned();

    // The JSON twin: stock's server span from the chain store, under shop's call.
    let detail = page(&http, &format!("{shop}{trace}.json")).await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["other_services"]["source"], "shared", "{detail:#}");
    assert_eq!(detail["other_services"]["spans"], 1);
    let spans = detail["spans"].as_array().unwrap();
    assert_eq!(spans.len(), own + 1, "{detail:#}");
    let call = spans
        .iter()
        .find(|s| s["kind"] == "client" && s["from_chain"] == false)
        .unwrap();
    let theirs: Vec<&Value> = spans.iter().filter(|s| s["from_chain"] == true).collect();
    assert_eq!(theirs.len(), 1, "{detail:#}");
    assert_eq!(theirs[0]["service"], "stock");
    assert_eq!(theirs[0]["kind"], "server");
    assert_eq!(theirs[0]["name"], "GET /stock/{id}");
    assert_eq!(theirs[0]["parent_span_id"], call["span_id"]);
    assert_eq!(
        theirs[0]["depth"].as_u64(),
        call["depth"].as_u64().map(|d| d + 1)
    );
    let start = |s: &Value| s["start_offset_ms"].as_f64().unwrap();
    assert!(start(theirs[0]) >= start(call) - 5.0, "one time axis");

    // The page: one more bar, marked, with stock's name.
    let html = page(&http, &format!("{shop}{trace}")).await;
    assert_eq!(html.status, 200);
    assert_eq!(html.bars(), own + 1, "{}", html.body);
    assert!(
        html.body.contains("GET /stock/{id} <small>stock</small>"),
        "{}",
        html.body
    );
    assert_eq!(html.body.matches(" from-chain\"").count(), 1);

    // The chain page: three steps, two services, in order.
    let chain = page(&http, &format!("{pages}/chains/{ID}.json")).await;
    assert_eq!(chain.status, 200);
    let chain = chain.json();
    assert_eq!(chain["source"], "shared");
    assert_eq!(chain["services"], serde_json::json!(["shop", "stock"]));
    let steps: Vec<(&str, &str)> = chain["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["service"].as_str().unwrap(), s["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [("shop", "server"), ("shop", "client"), ("stock", "server")]
    );
    assert_eq!(chain["steps"][0]["trace"], trace.as_str());

    // Hostile ids: a 400 each, and no key is made of them.
    let huge = "a".repeat(5_000);
    for raw in [
        "abc%0D%0ASet-Cookie:%20x",
        "%FF%FE",
        "..%2F..%2Fetc",
        "50%25",
        huge.as_str(),
    ] {
        let answer = page(&http, &format!("{pages}/chains/{raw}")).await;
        assert_eq!(answer.status, 400, "{raw}");
    }
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}:*"))
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, [format!("{PREFIX}:{ID}")]);

    // Redis stalls writes: the entries of a new request wait to be sent (the flush tried and
    // timed out), so each read first waits on Redis again (500 ms a command). The page does
    // not wait for it.
    redis.pause_writes(Duration::from_secs(5));
    checkout_with(&http, &shop, 2, "chain-page-2").await;
    guard.force_flush().unwrap();
    let stalled = page(&http, &format!("{shop}{trace}")).await;
    assert_eq!(stalled.status, 200);
    assert!(stalled.took < PAGE_BOUND, "took {:?}", stalled.took);
    assert!(
        stalled.body.contains("did not answer within 150 ms"),
        "{}",
        stalled.body
    );
    assert_eq!(stalled.bars(), own, "its own spans");

    // Redis gone: this process's part of the chain, said so, at once.
    redis.kill();
    // The chains' thread has given up on the stalled exchange once this answers.
    let local = guard.request_chain_async(ID).await.unwrap();
    assert_eq!(local.len(), 2, "shop's own steps: {local:#?}");
    let down = page(&http, &format!("{shop}{trace}")).await;
    assert_eq!(down.status, 200);
    assert!(down.took < PAGE_BOUND, "took {:?}", down.took);
    assert!(
        down.body.contains("From this process only"),
        "{}",
        down.body
    );
    assert_eq!(down.bars(), own);
    let down_chain = page(&http, &format!("{pages}/chains/{ID}.json")).await;
    assert_eq!(down_chain.status, 200);
    assert_eq!(down_chain.json()["source"], "local");

    guard.shutdown_async().await.unwrap();
    stock.shutdown_async().await.unwrap();
}
