//! Opt-in header capture on the client span: allow-listed request and response headers become
//! string arrays; credential headers never do, even when listed; none by default.

use opentelemetry::{Array, Value};
use reqwest_middleware::ClientBuilder;

use crate::support::{plain_client, Harness, Server};

fn captured(span: &opentelemetry_sdk::trace::SpanData) -> Vec<(String, Value)> {
    span.attributes
        .iter()
        .filter(|kv| kv.key.as_str().contains(".header."))
        .map(|kv| (kv.key.as_str().to_owned(), kv.value.clone()))
        .collect()
}

async fn call(h: &Harness, middleware: service_tracing_client::TracingMiddleware) {
    let server = Server::start().await;
    let client = ClientBuilder::new(plain_client()).with(middleware).build();
    let response = client
        .get(format!("http://{}/echo", server.addr))
        .header("X-Tenant", "acme")
        .header("authorization", "Bearer planted-client-bearer")
        .header("cookie", "sid=planted-client-cookie")
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200);
    let _ = h;
}

#[tokio::test]
async fn allow_listed_headers_are_recorded_and_credentials_never() {
    let h = Harness::new();
    let middleware = h
        .middleware()
        .capture_request_headers(["x-tenant", "Authorization", "cookie"])
        .capture_response_headers(["echo-traceparent", "set-cookie"]);
    call(&h, middleware).await;
    let span = h.only_client_span();
    let attributes = captured(&span);
    assert_eq!(attributes.len(), 2, "{attributes:?}");
    assert_eq!(
        attributes[0],
        (
            "http.request.header.x-tenant".to_owned(),
            Value::Array(Array::String(vec!["acme".into()]))
        )
    );
    assert_eq!(attributes[1].0, "http.response.header.echo-traceparent");
    let everything = format!("{span:?}");
    assert!(!everything.contains("planted-client"), "{everything}");
}

#[tokio::test]
async fn nothing_is_captured_by_default() {
    let h = Harness::new();
    call(&h, h.middleware()).await;
    assert!(captured(&h.only_client_span()).is_empty());
}
