use axum::body::Body;
use axum::routing::get as get_route;
use axum::Router;
use http::{HeaderValue, StatusCode};
use service_tracing_middleware::CorrelationId;

use crate::support::{attr, get, send, Harness};

async fn echo(id: CorrelationId) -> String {
    id.as_str().to_owned()
}

fn app(h: &Harness) -> Router {
    Router::new().route("/", get_route(echo)).layer(h.layer())
}

fn is_uuid_v7(s: &str) -> bool {
    s.len() == 36 && s.as_bytes()[14] == b'7' && s.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn given_id_is_extracted_tagged_and_echoed() {
    let h = Harness::new();
    let request = get("/")
        .header("x-correlation-id", "order-7f3a")
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(app(&h), request).await;
    assert_eq!(body, "order-7f3a");
    assert_eq!(response.headers()["x-correlation-id"], "order-7f3a");
    assert_eq!(
        attr(&h.only_span(), "correlation.id").as_deref(),
        Some("order-7f3a")
    );
}

#[tokio::test]
async fn request_id_header_and_baggage_are_fallbacks_in_that_order() {
    let h = Harness::new();
    let request = get("/")
        .header("x-request-id", "req-1")
        .header("baggage", "correlation.id=bag-1")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(app(&h), request).await;
    assert_eq!(body, "req-1");

    let request = get("/")
        .header("baggage", "correlation.id=bag-1")
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(app(&h), request).await;
    assert_eq!(body, "bag-1");
    assert_eq!(response.headers()["x-correlation-id"], "bag-1");
}

#[tokio::test]
async fn missing_id_is_generated_as_uuid_v7() {
    let h = Harness::new();
    let (response, body) = send(app(&h), get("/").body(Body::empty()).unwrap()).await;
    assert!(is_uuid_v7(&body), "{body}");
    assert_eq!(response.headers()["x-correlation-id"], body.as_str());
}

#[tokio::test]
async fn invalid_ids_are_replaced_and_never_echoed() {
    let over_long = "a".repeat(129);
    let cases: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&over_long).unwrap(),
        HeaderValue::from_bytes(b"evil\tid").unwrap(),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe\xfd").unwrap(),
        HeaderValue::from_static("two words"),
    ];
    for value in cases {
        let h = Harness::new();
        let request = get("/")
            .header("x-correlation-id", value.clone())
            .body(Body::empty())
            .unwrap();
        let (response, body) = send(app(&h), request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(is_uuid_v7(&body), "{value:?} gave {body}");
        let echoed = &response.headers()["x-correlation-id"];
        assert_ne!(echoed, &value);
        assert_eq!(echoed, body.as_str());
        assert_eq!(
            attr(&h.only_span(), "correlation.id").as_deref(),
            Some(body.as_str())
        );
    }
}

#[tokio::test]
async fn extractor_without_the_layer_is_a_500_naming_the_layer() {
    let app: Router = Router::new().route("/", get_route(echo));
    let (response, body) = send(app, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("TracingLayer"), "{body}");

    let optional: Router = Router::new().route(
        "/",
        get_route(|id: Option<CorrelationId>| async move { format!("{}", id.is_some()) }),
    );
    let (response, body) = send(optional, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (response.status(), body.as_str()),
        (StatusCode::OK, "false")
    );
}

#[tokio::test]
async fn outbound_baggage_carries_the_resolved_id_over_any_incoming_value() {
    let h = Harness::new();
    let app = Router::new()
        .route(
            "/",
            get_route(|| async {
                let outbound = crate::support::outbound_headers();
                outbound["baggage"].to_str().unwrap().to_owned()
            }),
        )
        .layer(h.layer());
    let request = get("/")
        .header("x-correlation-id", "from-header")
        .header("baggage", "tenant=acme,correlation.id=stale")
        .body(Body::empty())
        .unwrap();
    let (_, baggage) = send(app, request).await;
    assert_eq!(baggage, "tenant=acme,correlation.id=from-header");
}

/// What a handler's outbound call would carry as baggage, and the id it sees.
fn outbound_app(layer: service_tracing_middleware::TracingLayer) -> Router {
    Router::new()
        .route(
            "/",
            get_route(|id: CorrelationId| async move {
                let outbound = crate::support::outbound_headers();
                format!("{} {}", id.as_str(), outbound["baggage"].to_str().unwrap())
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn percent_encoded_and_reserved_bytes_in_either_header_are_replaced() {
    // A hop that percent-decodes any of these would get a CR/LF (a forged header or log line),
    // a NUL, or a `%` to decode again.
    let values = [
        "abc%0D%0AX-Forged:%201",
        "abc%0d%0Aforged",
        "abc%00",
        "%",
        "50%",
        "order%2d42",
        "a,b",
        "a;b",
        "a=b",
        "a/b",
    ];
    for header in ["x-correlation-id", "x-request-id"] {
        for value in values {
            let h = Harness::new();
            let request = get("/").header(header, value).body(Body::empty()).unwrap();
            let (response, body) = send(outbound_app(h.layer()), request).await;
            let (id, baggage) = body.split_once(' ').unwrap();
            let why = format!("{header}: {value}");
            assert!(is_uuid_v7(id), "{why} gave {id}");
            assert_eq!(response.headers()["x-correlation-id"], id, "{why}");
            assert_eq!(baggage, format!("correlation.id={id}"), "{why}");
            assert_eq!(
                attr(&h.only_span(), "correlation.id").as_deref(),
                Some(id),
                "{why}"
            );
        }
    }
}

#[tokio::test]
async fn baggage_ids_are_percent_decoded_then_checked() {
    // (incoming baggage, the id kept; `None` for a fresh one)
    let cases = [
        ("correlation.id=abc%0D%0AX-Forged:%201", None),
        ("correlation.id=abc%0d%0aforged", None),
        ("correlation.id=abc%00", None),
        ("correlation.id=%25", None),
        ("correlation.id=abc%250D%250A", None),
        ("correlation.id=order%2d42%3A7", Some("order-42:7")),
    ];
    for (incoming, kept) in cases {
        let h = Harness::new();
        let request = get("/")
            .header("baggage", incoming)
            .body(Body::empty())
            .unwrap();
        let (response, body) = send(outbound_app(h.layer()), request).await;
        let (id, baggage) = body.split_once(' ').unwrap();
        match kept {
            Some(kept) => assert_eq!(id, kept, "{incoming}"),
            None => assert!(is_uuid_v7(id), "{incoming} gave {id}"),
        }
        assert_eq!(response.headers()["x-correlation-id"], id, "{incoming}");
        assert_eq!(baggage, format!("correlation.id={id}"), "{incoming}");
    }
}

#[tokio::test]
async fn a_configured_charset_is_read_echoed_and_encoded_in_baggage() {
    use service_tracing_middleware::CorrelationIdCharset;
    let charset = CorrelationIdCharset::DEFAULT
        .with_extra(b"/\"\\")
        .expect("visible ASCII");
    let h = Harness::new();
    let layer = h.layer().with_correlation_charset(charset);
    let request = get("/")
        .header("x-request-id", r#"t/4"2\x"#)
        .body(Body::empty())
        .unwrap();
    let (response, body) = send(outbound_app(layer.clone()), request).await;
    // `"` and `\` are outside the baggage value's safe set: percent-encoded.
    assert_eq!(body, r#"t/4"2\x correlation.id=t/4%222%5Cx"#);
    assert_eq!(response.headers()["x-correlation-id"], r#"t/4"2\x"#);

    // Decoded from baggage, then checked against the same charset.
    let request = get("/")
        .header("baggage", "correlation.id=t/4%222%5Cx")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(outbound_app(layer.clone()), request).await;
    assert_eq!(body, r#"t/4"2\x correlation.id=t/4%222%5Cx"#);

    // Still never `%`, whatever the charset.
    let request = get("/")
        .header("x-correlation-id", "t/4%0A")
        .body(Body::empty())
        .unwrap();
    let (_, body) = send(outbound_app(layer), request).await;
    assert!(is_uuid_v7(body.split(' ').next().unwrap()), "{body}");
}
