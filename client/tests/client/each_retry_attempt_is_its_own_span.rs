use std::time::Duration;

use opentelemetry::trace::{FutureExt, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::Context;
use reqwest_middleware::ClientBuilder;
use reqwest_retry::policies::ExponentialBackoff;
use reqwest_retry::RetryTransientMiddleware;

use crate::support::{attr, header, plain_client, Harness, Server};

fn retry() -> RetryTransientMiddleware<ExponentialBackoff> {
    let policy = ExponentialBackoff::builder()
        .retry_bounds(Duration::from_millis(1), Duration::from_millis(5))
        .build_with_max_retries(3);
    RetryTransientMiddleware::new_with_policy(policy)
}

#[tokio::test]
async fn retry_outside_gives_one_span_per_attempt_with_resend_count() {
    let h = Harness::new();
    let server = Server::start().await;
    let client = ClientBuilder::new(plain_client())
        .with(retry())
        .with(h.middleware())
        .build();
    let parent_cx = Context::new().with_span(h.provider.tracer("test").start("parent"));
    let parent = parent_cx.span().span_context().clone();

    let response = client
        .get(server.url("/flaky"))
        .send()
        .with_context(parent_cx)
        .await
        .expect("the third attempt succeeds");
    assert_eq!(response.status(), 200);

    let spans = h.client_spans();
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let resend: Vec<Option<String>> = spans
        .iter()
        .map(|s| attr(s, "http.request.resend_count"))
        .collect();
    assert_eq!(resend, [None, Some("1".to_owned()), Some("2".to_owned())]);
    let codes: Vec<Option<String>> = spans
        .iter()
        .map(|s| attr(s, "http.response.status_code"))
        .collect();
    assert_eq!(
        codes,
        [
            Some("503".to_owned()),
            Some("503".to_owned()),
            Some("200".to_owned())
        ]
    );
    for span in &spans[..2] {
        assert!(matches!(span.status, Status::Error { .. }));
        assert_eq!(attr(span, "error.type").as_deref(), Some("503"));
    }
    assert_eq!(spans[2].status, Status::Unset);
    assert_eq!(attr(&spans[2], "error.type"), None);

    let received = server.received();
    assert_eq!(received.len(), 3);
    for (span, headers) in spans.iter().zip(&received) {
        assert_eq!(span.name, "GET");
        assert_eq!(span.parent_span_id, parent.span_id());
        assert_eq!(span.span_context.trace_id(), parent.trace_id());
        assert_eq!(
            header(headers, "traceparent"),
            Some(format!(
                "00-{}-{}-01",
                parent.trace_id(),
                span.span_context.span_id()
            )),
            "each attempt sends its own span as parent"
        );
    }
}

#[tokio::test]
async fn retry_inside_shares_one_span_across_attempts() {
    let h = Harness::new();
    let server = Server::start().await;
    let client = ClientBuilder::new(plain_client())
        .with(h.middleware())
        .with(retry())
        .build();
    let response = client
        .get(server.url("/flaky"))
        .send()
        .await
        .expect("the third attempt succeeds");
    assert_eq!(response.status(), 200);

    let span = h.only_client_span();
    assert_eq!(attr(&span, "http.request.resend_count"), None);
    assert_eq!(
        attr(&span, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.received().len(), 3);
}
