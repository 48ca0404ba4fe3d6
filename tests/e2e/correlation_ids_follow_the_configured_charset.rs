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
