//! Traced outbound HTTP calls: a [`reqwest_middleware`] middleware that opens an
//! OpenTelemetry client span for each request and sends the trace context and correlation id
//! along, so the service you call continues your trace.
//!
//! It is the client half of `service-tracing`: it speaks the same headers and attributes as
//! the server layer in `service-tracing-middleware`, whose span (or any span made current
//! through `tracing-opentelemetry`) becomes the parent of the client span.
//!
//! ```
//! use service_tracing_client::{traced_client, SpanName};
//!
//! async fn load_order(id: u64) -> reqwest_middleware::Result<String> {
//!     let client = traced_client(); // build once and reuse
//!     let response = client
//!         .get(format!("http://orders.internal/orders/{id}"))
//!         .with_extension(SpanName("GET orders-api".into()))
//!         .send()
//!         .await?;
//!     Ok(response.text().await?)
//! }
//! ```
//!
//! For each request:
//!
//! 1. **Start.** A `SpanKind::Client` span named `{METHOD}` (or the request's [`SpanName`]),
//!    child of the current OpenTelemetry context, with `http.request.method`,
//!    `server.address`, `server.port`, `url.full` (user info removed, query values
//!    `REDACTED`, no fragment) and `correlation.id`.
//! 2. **Inject.** `traceparent` (whose parent id is the client span), `tracestate`, `baggage`
//!    and `x-correlation-id`, never replacing a header you set; none of them with
//!    [`DisablePropagation`].
//! 3. **Send.** The rest of the chain runs with the client span's context current.
//! 4. **Finish.** `http.response.status_code`; status Error and `error.type` on 4xx, 5xx
//!    (the status code) and failures (`timeout`, `connect`, `request`, `body`, `redirect`,
//!    `decode` or `_OTHER`, with an `exception` event).
//! 5. **Measure.** The attempt's duration goes into the `http.client.request.duration`
//!    histogram (seconds, the semantic conventions' advisory buckets) with
//!    `http.request.method`, `server.address`, `server.port`, `http.response.status_code` and
//!    `error.type`, through the global meter provider as it is when the middleware is built (a
//!    no-op until one is installed; `service-tracing` installs one when metrics are on).
//!
//! With retries, put the retry middleware first: see [`TracingMiddleware`].
//!
//! `https` needs the default feature `tls` (reqwest's rustls, trusting the system's roots). For
//! a private CA, build the client yourself and pass it to [`traced_client_with`]:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ca = reqwest::Certificate::from_pem(&std::fs::read("/etc/ssl/private-ca.pem")?)?;
//! let client = service_tracing_client::traced_client_with(
//!     reqwest::Client::builder().add_root_certificate(ca).build()?,
//! );
//! # Ok(()) }
//! ```

mod builder;
mod metrics;
mod middleware;
mod span;

pub use builder::{traced_client, traced_client_with, DisablePropagation, SpanName};
pub use middleware::TracingMiddleware;
