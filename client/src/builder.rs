//! Ready-made clients and the per-request options, set as [`Extensions`] values.

use std::borrow::Cow;

use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

use crate::TracingMiddleware;

/// A default [`reqwest::Client`] with [`TracingMiddleware`], using the global tracer provider
/// as it is when this is called (install yours first, or call `service-tracing`'s set-up
/// first), and the propagators that set-up chose (`OTEL_PROPAGATORS`), read at each request;
/// W3C Trace Context and Baggage when none were chosen. `service_tracing::traced_client` is
/// this same function.
///
/// ```
/// async fn call() -> reqwest_middleware::Result<()> {
///     let client = service_tracing_client::traced_client();
///     client.get("http://orders.internal/orders/42").send().await?;
///     Ok(())
/// }
/// ```
pub fn traced_client() -> ClientWithMiddleware {
    traced_client_with(reqwest::Client::new())
}

/// `client` with [`TracingMiddleware`] and nothing else.
///
/// To add retries, or to pick the middleware's options, build the chain yourself; the retry
/// middleware goes first, so that each attempt gets its own span:
///
/// ```
/// use std::time::Duration;
/// use reqwest_middleware::ClientBuilder;
/// use reqwest_retry::{policies::ExponentialBackoff, RetryTransientMiddleware};
/// use service_tracing_client::{traced_client_with, TracingMiddleware};
///
/// let client = traced_client_with(
///     reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("a client"),
/// );
///
/// let policy = ExponentialBackoff::builder().build_with_max_retries(3);
/// let with_retries = ClientBuilder::new(reqwest::Client::new())
///     .with(RetryTransientMiddleware::new_with_policy(policy))
///     .with(TracingMiddleware::new())
///     .build();
/// ```
pub fn traced_client_with(client: reqwest::Client) -> ClientWithMiddleware {
    ClientBuilder::new(client)
        .with(TracingMiddleware::new())
        .build()
}

/// Names this request's client span, instead of the default `{METHOD}` (for example
/// `GET orders-api`). Keep it low-cardinality: never put ids or raw paths in it.
///
/// ```
/// use service_tracing_client::{traced_client, SpanName};
///
/// async fn call() -> reqwest_middleware::Result<()> {
///     traced_client()
///         .get("http://orders.internal/orders/42")
///         .with_extension(SpanName("GET orders-api".into()))
///         .send()
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanName(pub Cow<'static, str>);

/// Sends this request without `traceparent`, `tracestate`, `baggage` or the correlation id
/// header, for calls that leave your system. The client span is still recorded.
///
/// ```
/// use service_tracing_client::{traced_client, DisablePropagation};
///
/// async fn call() -> reqwest_middleware::Result<()> {
///     traced_client()
///         .get("https://api.third-party.example/v1/rates")
///         .with_extension(DisablePropagation)
///         .send()
///         .await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DisablePropagation;

/// How many times [`TracingMiddleware`] has seen this request's extensions: an outer retry
/// middleware passes the same [`Extensions`] to every attempt.
#[derive(Debug, Clone, Copy)]
struct Attempts(u32);

/// The `http.request.resend_count` of the attempt starting now: `None` for the first attempt,
/// then 1, 2, ...
pub(crate) fn next_resend_count(extensions: &mut Extensions) -> Option<u32> {
    match extensions.get_mut::<Attempts>() {
        Some(attempts) => {
            attempts.0 = attempts.0.saturating_add(1);
            Some(attempts.0)
        }
        None => {
            extensions.insert(Attempts(0));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_count_is_absent_then_counts_up() {
        let mut extensions = Extensions::new();
        assert_eq!(next_resend_count(&mut extensions), None);
        assert_eq!(next_resend_count(&mut extensions), Some(1));
        assert_eq!(next_resend_count(&mut extensions), Some(2));
        assert_eq!(next_resend_count(&mut Extensions::new()), None);
    }
}
