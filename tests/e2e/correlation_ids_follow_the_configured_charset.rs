//! The correlation id charset set on the `ServiceTracing` builder reaches the server layer: ids
//! it allows are kept and echoed, others (and `%`, which no charset allows) are replaced.

use service_tracing::{CorrelationId, CorrelationIdCharset, ServiceTracing};

#[tokio::test]
async fn the_builder_charset_decides_which_incoming_ids_are_kept() {
    let charset = CorrelationIdCharset::DEFAULT
        .with_extra(b"/")
        .expect("visible ASCII");
    let (app, _guard) = ServiceTracing::builder("svc")
        .env_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".to_owned()))
        .install_subscriber(false)
        .correlation_id_charset(charset)
        .init(axum::Router::new().route(
            "/",
            axum::routing::get(|id: CorrelationId| async move { id.to_string() }),
        ))
        .expect("setup");
    let base = crate::support::serve(app).await;
    let client = reqwest::Client::new();
    // (sent, kept)
    for (sent, kept) in [
        ("tenant/42", true),
        ("order-42:a_b.c", true),
        ("tenant%2F42", false),
        ("abc%0D%0AX-Forged:%201", false),
        ("a+b", false),
    ] {
        let r = client
            .get(&base)
            .header("x-correlation-id", sent)
            .send()
            .await
            .unwrap();
        let echoed = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        assert_eq!(echoed, body, "{sent}");
        assert_eq!(body == sent, kept, "{sent} gave {body}");
        if !kept {
            // A fresh UUIDv7.
            assert!(
                body.len() == 36 && body.as_bytes()[14] == b'7',
                "{sent} gave {body}"
            );
        }
    }
}

/// The headers set on the builder: the id is read from them, in order, and echoed under the
/// response header given (or not at all).
#[tokio::test]
async fn the_builder_headers_decide_where_the_id_is_read_and_echoed() {
    let serve = |echo: Option<&'static str>| async move {
        let (app, guard) = ServiceTracing::builder("svc")
            .env_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".to_owned()))
            .install_subscriber(false)
            .correlation_headers(["x-amzn-id", "x-b3-id"])
            .correlation_response_header(echo)
            .init(axum::Router::new().route(
                "/",
                axum::routing::get(|id: CorrelationId| async move { id.to_string() }),
            ))
            .expect("setup");
        (crate::support::serve(app).await, guard)
    };
    let client = reqwest::Client::new();
    let (base, _guard) = serve(Some("x-echo")).await;
    let r = client
        .get(&base)
        .header("x-b3-id", "second")
        .header("x-amzn-id", "first")
        .header("x-correlation-id", "default-header")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-echo"], "first");
    assert!(r.headers().get("x-correlation-id").is_none());
    assert_eq!(r.text().await.unwrap(), "first");
    // Not one of the configured headers: a fresh id.
    let r = client
        .get(&base)
        .header("x-correlation-id", "default-header")
        .send()
        .await
        .unwrap();
    assert_ne!(r.text().await.unwrap(), "default-header");

    let (base, _guard) = serve(None).await;
    let r = client
        .get(&base)
        .header("x-amzn-id", "first")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("x-correlation-id").is_none(), "no echo");
    assert_eq!(r.text().await.unwrap(), "first");
}
