use service_tracing::{ServiceTracing, SetupErrorKind};

#[tokio::test]
async fn invalid_environment_value_fails_setup_naming_variable_and_choices() {
    let err = ServiceTracing::builder("svc")
        .env_lookup(|name| (name == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "http/xml".to_owned()))
        .init(axum::Router::<()>::new())
        .expect_err("invalid protocol");
    assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
    let text = err.to_string();
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && text.contains("http/xml"),
        "{text}"
    );
    assert!(
        text.contains("grpc") && text.contains("http/protobuf"),
        "{text}"
    );
}

#[tokio::test]
async fn an_existing_subscriber_is_a_clear_error_that_says_what_to_do() {
    tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default()).unwrap();
    let err = ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .init(axum::Router::<()>::new())
        .expect_err("subscriber already set");
    assert_eq!(err.kind(), SetupErrorKind::SubscriberAlreadySet);
    let text = err.to_string();
    assert!(
        text.contains("install_subscriber(false)") && text.contains("bridge_layer()"),
        "{text}"
    );
}

#[tokio::test]
async fn sdk_disabled_still_serves_and_correlates() {
    let (app, guard) = ServiceTracing::builder("svc")
        .env_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".to_owned()))
        .install_subscriber(false)
        .init(axum::Router::new().route(
            "/",
            axum::routing::get(|id: service_tracing::CorrelationId| async move { id.to_string() }),
        ))
        .expect("setup");
    let base = crate::support::serve(app).await;
    let r = reqwest::Client::new()
        .get(&base)
        .header("x-correlation-id", "still-here")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-correlation-id"], "still-here");
    assert_eq!(r.text().await.unwrap(), "still-here");
    assert_eq!(
        guard.export_stats(),
        service_tracing::ExportStats::default()
    );
}
