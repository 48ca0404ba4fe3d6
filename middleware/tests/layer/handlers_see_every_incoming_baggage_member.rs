use std::collections::BTreeSet;

use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use opentelemetry::baggage::BaggageExt;

use crate::support::{get, outbound_headers, send, Harness};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The handler answers with what OpenTelemetry's API shows it of the current context's
/// baggage, one `key=value;metadata` line per member in key order, then a blank line and the
/// `baggage` header an outbound call made now would carry.
fn app(h: &Harness) -> Router {
    Router::new()
        .route(
            "/",
            get_route(|| async {
                let cx = opentelemetry::Context::current();
                let mut seen: Vec<String> = cx
                    .baggage()
                    .iter()
                    .map(|(k, (v, m))| format!("{k}={};{}", v.as_str(), m.as_str()))
                    .collect();
                seen.sort();
                let outbound = outbound_headers()
                    .get("baggage")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                format!("{}\n\n{outbound}", seen.join("\n"))
            }),
        )
        .layer(h.layer())
}

fn request(baggage: &str) -> http::Request<Body> {
    get("/")
        .header("traceparent", TRACEPARENT)
        .header("baggage", baggage)
        .body(Body::empty())
        .unwrap()
}

/// The handler's view: members (`key=value;metadata`) and the outbound header's members.
async fn seen(app: Router, baggage: &str) -> (Vec<String>, BTreeSet<String>) {
    let (response, body) = send(app, request(baggage)).await;
    assert_eq!(response.status(), 200);
    let (members, outbound) = body.split_once("\n\n").unwrap();
    let members = members.lines().map(str::to_owned).collect();
    let outbound = outbound
        .split(',')
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    (members, outbound)
}

#[tokio::test]
async fn a_handler_reads_every_member_decoded_with_its_properties() {
    let h = Harness::new();
    let header = "userId=alice,serverNode=DF%2028,isProduction=false;p=1;flag, tenant = acme ,\
                  region=eu-west-1,plan=J%C3%B6rg,bad member,feature.flag=on,k=%zz";
    let (members, outbound) = seen(app(&h), header).await;
    assert_eq!(
        members,
        [
            "feature.flag=on;",
            "isProduction=false;p=1;flag",
            "k=%zz;",
            "plan=Jörg;",
            "region=eu-west-1;",
            "serverNode=DF 28;",
            "tenant=acme;",
            "userId=alice;",
        ]
    );
    // Sent on re-encoded, with the request's correlation id added.
    let correlation = outbound
        .iter()
        .find(|m| m.starts_with("correlation.id="))
        .cloned()
        .expect("the correlation id travels in baggage");
    let expected: BTreeSet<String> = [
        "userId=alice",
        "serverNode=DF%2028",
        "isProduction=false;p=1;flag",
        "tenant=acme",
        "region=eu-west-1",
        "plan=J%C3%B6rg",
        "feature.flag=on",
        "k=%25zz",
        correlation.as_str(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(outbound, expected);
}

#[tokio::test]
async fn each_request_sees_its_own_baggage_whatever_came_before() {
    let h = Harness::new();
    let app = app(&h);
    // One thread, requests in turn: the same header twice, then others, then the first again.
    let headers = [
        "a=1,b=2,correlation.id=first",
        "a=1,b=2,correlation.id=first",
        "a=1,b=3,correlation.id=first",
        "c=%41",
        "a=1,b=2,correlation.id=first",
    ];
    for header in headers {
        let (members, outbound) = seen(app.clone(), header).await;
        let expected: Vec<String> = {
            let mut m: Vec<String> = header
                .split(',')
                .map(|m| {
                    let (k, v) = m.split_once('=').unwrap();
                    let v = if v == "%41" { "A" } else { v };
                    format!("{k}={v};")
                })
                .collect();
            m.sort();
            m
        };
        assert_eq!(members, expected, "{header}");
        let sent: BTreeSet<String> = header.split(',').map(str::to_owned).collect();
        if header.contains("correlation.id=first") {
            // The caller's correlation id is the request's: the header goes on as received.
            assert_eq!(outbound, sent, "{header}");
        } else {
            assert!(outbound.contains("c=A"), "{header}: {outbound:?}");
            assert_eq!(outbound.len(), 2, "{header}: {outbound:?}");
        }
    }
}

#[tokio::test]
async fn a_handler_sees_the_first_64_members_and_no_more() {
    let h = Harness::new();
    let header: Vec<String> = (0..70).map(|i| format!("k{i:02}=v{i}")).collect();
    let (members, outbound) = seen(app(&h), &header.join(",")).await;
    let expected: Vec<String> = (0..64).map(|i| format!("k{i:02}=v{i};")).collect();
    assert_eq!(members, expected);
    // 64 members at most go on, and the request's correlation id is one of them: a received
    // member makes room for it.
    let kept: BTreeSet<String> = (0..64).map(|i| format!("k{i:02}=v{i}")).collect();
    assert_eq!(outbound.len(), 64, "{outbound:?}");
    let (ours, received): (Vec<&String>, Vec<&String>) = outbound
        .iter()
        .partition(|m| m.starts_with("correlation.id="));
    assert_eq!(ours.len(), 1, "{outbound:?}");
    assert_eq!(received.len(), 63);
    assert!(received.iter().all(|m| kept.contains(*m)), "{outbound:?}");
}
