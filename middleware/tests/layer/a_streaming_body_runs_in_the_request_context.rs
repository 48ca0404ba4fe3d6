//! A response body that makes its frames as it is polled (a stream) runs application code
//! there: the request's context must be current while it does, as in the handler.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body;
use axum::body::Bytes;
use axum::routing::get as get_route;
use axum::Router;
use http_body::{Body as HttpBody, Frame};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;

use crate::support::{get, send, Harness};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Two frames, each the trace id current when it was made, then the end.
struct CurrentTraceIds {
    left: u8,
}

impl HttpBody for CurrentTraceIds {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        let trace_id = Context::current().span().span_context().trace_id();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(format!("{trace_id};"))))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

#[tokio::test]
async fn each_frame_is_made_in_the_request_context() {
    let harness = Harness::new();
    for flags in ["01", "00"] {
        let app = Router::new()
            .route(
                "/stream",
                get_route(|| async { Body::new(CurrentTraceIds { left: 2 }) }),
            )
            .layer(harness.layer());
        let request = get("/stream")
            .header(
                "traceparent",
                format!("00-{TRACE}-00f067aa0ba902b7-{flags}"),
            )
            .body(Body::empty())
            .unwrap();
        let (_, body) = send(app, request).await;
        assert_eq!(body, format!("{TRACE};{TRACE};"), "flags {flags}");
    }
}
