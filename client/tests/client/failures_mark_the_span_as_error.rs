use std::time::Duration;

use opentelemetry::trace::Status;
use opentelemetry_sdk::trace::SpanData;

use crate::support::{attr, closed_port, Harness, Server};

fn exception_event(span: &SpanData) -> (String, String) {
    let event = span
        .events
        .iter()
        .find(|e| e.name == "exception")
        .unwrap_or_else(|| panic!("an exception event on {span:#?}"));
    let get = |key: &str| {
        event
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
            .unwrap_or_else(|| panic!("{key} on the exception event"))
    };
    (get("exception.type"), get("exception.message"))
}

#[tokio::test]
async fn server_and_client_error_statuses_are_errors_typed_by_status_code() {
    for (path, code) in [("/fail", "500"), ("/missing", "404")] {
        let h = Harness::new();
        let server = Server::start().await;
        let response = h
            .client()
            .get(server.url(path))
            .send()
            .await
            .expect("a response, even an error one");
        assert_eq!(response.status().as_str(), code);

        let span = h.only_client_span();
        assert!(
            matches!(span.status, Status::Error { .. }),
            "{path}: {:?}",
            span.status
        );
        assert_eq!(attr(&span, "error.type").as_deref(), Some(code), "{path}");
        assert_eq!(
            attr(&span, "http.response.status_code").as_deref(),
            Some(code),
            "{path}"
        );
        assert!(
            span.events.is_empty(),
            "{path}: a status is not an exception"
        );
    }
}

#[tokio::test]
async fn refused_connection_is_a_connect_error_with_a_redacted_exception_event() {
    let h = Harness::new();
    let addr = closed_port().await;
    let error = h
        .client()
        .get(format!("http://{addr}/orders?token=secret"))
        .send()
        .await
        .expect_err("nothing listens there");
    assert!(error.is_connect(), "{error:?}");

    let span = h.only_client_span();
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(attr(&span, "error.type").as_deref(), Some("connect"));
    assert_eq!(attr(&span, "http.response.status_code"), None);
    let (kind, message) = exception_event(&span);
    assert_eq!(kind, "reqwest::Error");
    assert!(!message.contains("secret"), "{message}");
    assert!(message.contains("token=REDACTED"), "{message}");
    if let Status::Error { description } = &span.status {
        assert!(!description.contains("secret"), "{description}");
    }
}

#[tokio::test]
async fn timeout_is_a_timeout_error() {
    let h = Harness::new();
    let server = Server::start().await;
    let error = h
        .client()
        .get(server.url("/slow"))
        .timeout(Duration::from_millis(50))
        .send()
        .await
        .expect_err("the server is slower than the timeout");
    assert!(error.is_timeout(), "{error:?}");

    let span = h.only_client_span();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr(&span, "error.type").as_deref(), Some("timeout"));
    assert_eq!(exception_event(&span).0, "reqwest::Error");
}
