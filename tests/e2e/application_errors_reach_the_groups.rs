//! Errors the application reports itself, with `record_error` and with `tracing::error!`
//! inside a handler, become `exception` events on the request's server span (seen by the real
//! collector) and land in their own groups under the route.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use service_tracing::errors::ErrorGroup;
use service_tracing::Protocol;

use crate::collector::Collector;
use crate::support::{options, serve, WAIT};

const DECLINES: u32 = 4;
const SYNCS: u32 = 3;

#[derive(Debug)]
struct PaymentDeclined {
    order: u32,
    cause: std::io::Error,
}

impl std::fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payment for order {} declined", self.order)
    }
}

impl std::error::Error for PaymentDeclined {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

async fn charge(Path(order): Path<u32>) -> StatusCode {
    let error = PaymentDeclined {
        order,
        cause: std::io::Error::other("card expired"),
    };
    service_tracing::record_error(&error);
    StatusCode::UNPROCESSABLE_ENTITY
}

async fn sync(Path(id): Path<u32>) -> &'static str {
    tracing::error!(target: "inventory::sync", error = %std::io::Error::other("peer reset"), "sync of item {id} failed");
    "queued for retry"
}

fn group<'a>(groups: &'a [ErrorGroup], operation: &str) -> &'a ErrorGroup {
    let found: Vec<&ErrorGroup> = groups
        .iter()
        .filter(|g| g.operations() == [operation])
        .collect();
    assert_eq!(found.len(), 1, "one group on {operation}: {groups:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_errors_reach_the_groups() {
    let collector = Collector::start();
    let routes = Router::new()
        .route("/charge/{order}", get(charge))
        .route("/sync/{id}", get(sync));
    let (routes, guard) = options("svc")
        .otlp_endpoint(collector.grpc_endpoint())
        .otlp_protocol(Protocol::Grpc)
        .init(routes)
        .expect("setup");
    let app = serve(routes).await;

    let caller = reqwest::Client::new();
    for n in 0..DECLINES {
        let response = caller
            .get(format!("{app}/charge/{}", 100 + n * 7))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422);
    }
    for n in 0..SYNCS {
        let response = caller
            .get(format!("{app}/sync/{}", 9000 + n))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    guard.force_flush().unwrap();

    let groups = guard.errors().expect("error tracking").groups();
    assert_eq!(groups.len(), 2, "{groups:#?}");
    let declined = group(&groups, "GET /charge/{order}");
    assert_eq!(declined.count(), u64::from(DECLINES));
    assert!(
        declined.error_type().ends_with("PaymentDeclined"),
        "{declined:#?}"
    );
    assert_eq!(declined.message(), "payment for order 100 declined");
    assert_eq!(declined.status_codes(), [422]);
    let synced = group(&groups, "GET /sync/{id}");
    assert_eq!(synced.count(), u64::from(SYNCS));
    assert_eq!(synced.error_type(), "inventory::sync");
    assert_eq!(synced.message(), "sync of item 9000 failed: peer reset");

    let spans = collector.wait_for_spans(WAIT, |spans| {
        spans
            .iter()
            .filter(|s| s.event("exception").is_some())
            .count()
            >= (DECLINES + SYNCS) as usize
    });
    let charge = spans
        .iter()
        .find(|s| s.name == "GET /charge/{order}")
        .expect("a charge span");
    let exception = charge.event("exception").expect("exception event");
    assert!(exception
        .attr("exception.type")
        .is_some_and(|t| t.ends_with("PaymentDeclined")));
    assert!(exception
        .attr("exception.stacktrace")
        .is_some_and(|t| t.contains("0: card expired")));
    assert_eq!(charge.status_code, "Error");
    let sync = spans
        .iter()
        .find(|s| s.name == "GET /sync/{id}")
        .expect("a sync span");
    let message = sync
        .event("exception")
        .and_then(|e| e.attr("exception.message"))
        .expect("exception.message on the sync span");
    assert!(
        message.starts_with("sync of item 900") && message.ends_with(" failed: peer reset"),
        "{message}"
    );
    guard.shutdown().unwrap();
}
