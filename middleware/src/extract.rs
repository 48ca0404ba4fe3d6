//! axum extractors (feature `axum`): [`CorrelationId`] and its rejection.

use std::convert::Infallible;
use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;

use crate::correlation::CorrelationId;

/// Reads the request's correlation id from the context [`TracingLayer`](crate::TracingLayer)
/// makes current while the handler runs ([`CorrelationId::current`]), or from the request's
/// extensions when something put one there.
///
/// Without the layer it rejects with [`MissingCorrelationId`] (a `500` naming the missing
/// layer). `Option<CorrelationId>` never rejects.
///
/// ```
/// use axum::{routing::get, Router};
/// use service_tracing_middleware::{CorrelationId, TracingLayer};
///
/// async fn handler(id: CorrelationId) -> String {
///     format!("your correlation id is {id}")
/// }
///
/// let app: Router = Router::new().route("/", get(handler)).layer(TracingLayer::new());
/// ```
impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = MissingCorrelationId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match of_request(parts) {
            Some(id) => Ok(id),
            None => {
                tracing::trace!(
                    target: "service_tracing::rejection",
                    rejection_type = "MissingCorrelationId",
                    "rejecting request"
                );
                Err(MissingCorrelationId { _private: () })
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(of_request(parts))
    }
}

/// The id in the request's extensions, else the current context's. The layer puts none in the
/// extensions (an insertion there costs an allocation and a map per request): the handler runs
/// inside the request's context.
fn of_request(parts: &Parts) -> Option<CorrelationId> {
    parts
        .extensions
        .get::<CorrelationId>()
        .cloned()
        .or_else(CorrelationId::current)
}

/// Rejection of the [`CorrelationId`] extractor: the request did not pass through
/// [`TracingLayer`](crate::TracingLayer). Answers `500 Internal Server Error`, since this is a
/// mistake in the service's set-up, not in the request.
///
/// ```
/// use axum::response::IntoResponse;
/// use service_tracing_middleware::MissingCorrelationId;
/// fn status(r: MissingCorrelationId) -> http::StatusCode { r.into_response().status() }
/// ```
pub struct MissingCorrelationId {
    _private: (),
}

impl MissingCorrelationId {
    /// The response text.
    pub fn body_text(&self) -> &'static str {
        "Missing correlation id: the `CorrelationId` extractor needs \
         `service_tracing_middleware::TracingLayer` on this route. Add it with \
         `Router::layer(TracingLayer::new())` (or use `setup_service_tracing`), and make sure \
         the route is not listed in `untraced_route`."
    }

    /// The response status: `500`.
    pub fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl fmt::Debug for MissingCorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MissingCorrelationId")
    }
}

impl fmt::Display for MissingCorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.body_text())
    }
}

impl std::error::Error for MissingCorrelationId {}

impl IntoResponse for MissingCorrelationId {
    fn into_response(self) -> Response {
        (self.status(), self.body_text()).into_response()
    }
}
