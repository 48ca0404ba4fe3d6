//! Error tracking inside the service: errors recognised on ended spans, grouped by a stable
//! fingerprint, with a severity and a category (think Sentry's grouping, in process).
//!
//! [`ErrorTracking`] is a [`SpanProcessor`](opentelemetry_sdk::trace::SpanProcessor).
//! [`ServiceTracing`](crate::ServiceTracing) adds one, shared by every service's provider, unless
//! told
//! [`error_tracking(false)`](crate::ServiceTracing::error_tracking); read it back with
//! [`TracingGuard::errors`](crate::TracingGuard::errors).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (app, guard) = service_tracing::setup_service_tracing(axum::Router::<()>::new(), "svc")?;
//! // ... serve requests ...
//! if let Some(errors) = guard.errors() {
//!     for group in errors.summary().top_groups() {
//!         println!("{} x{}: {}", group.error_type(), group.count(), group.message());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # What counts as an error
//!
//! **One failing request is one error.** A request that answers 5xx, panics, or has an error
//! recorded inside it counts once, in the group of its *root cause*, under its route template
//! (`GET /orders/{id}`):
//!
//! - a failed dependency call (the [client middleware](service_tracing_middleware) saw a
//!   transport error or a 4xx/5xx answer): the group is the call's error (`reqwest::Error`
//!   and its message) with category `dependency` (`timeout` when it timed out), and the call's
//!   target (`GET payments.internal`) is kept as [`ErrorGroup::targets`]. The call's client
//!   span keeps its own `exception` event, but does not make a second error;
//! - an error stated with [`record_error`] or [`record_error_as`] (which gives the category
//!   and severity), or a `tracing::error!` event ([`ErrorEventLayer`]);
//! - an error on a span of another instrumentation inside the request (a database span with
//!   `db.system` makes it `database`);
//! - the request's panic (`panic`, critical), or, with nothing recorded, its own 5xx
//!   (`application`).
//!
//! The first error recorded in the request is its root cause; later ones are part of the same
//! failure. The status codes of the group are those the requests answered.
//!
//! Outside any request (background jobs), each error counts on its own, as before:
//!
//! - a server span with status Error (a 5xx answer, a panic) from a layer without error
//!   tracking's observer;
//! - a client span with status Error (a transport error, a dependency's 4xx or 5xx);
//! - any span with an `exception` event.
//!
//! An internal span with status Error but no `exception` event is not counted: it usually
//! repeats the error of the request it belongs to.
//!
//! ## How a child's error reaches its request
//!
//! Spans end separately, children before the server span, and an unsampled request has no
//! spans at all, so the request's one error is not assembled from spans. Instead, the server
//! layer puts a small place for the request's root cause into the request's OpenTelemetry
//! `Context` (when an observer asks for it, as [`rates_observer`](ErrorTracking::rates_observer)
//! does; see [`service_tracing_middleware::cause`]). Whatever sees an error inside the request
//! reaches that place through `Context::current()` and states it there, first one wins: the
//! client middleware when a call fails, [`record_error`], [`ErrorEventLayer`], the layer when the
//! handler panics, sampled or not. When the request ends, the layer hands the cause to the
//! observer with the request's outcome, and the observer queues one error: the cause as it was
//! seen (classified as such), kept under the request's route. The span processor, for its
//! part, leaves the errors of spans ending inside such a request to it (a third-party span's
//! error becomes the root cause when it is the first), and skips the server span whose request
//! the observer has just counted (the layer ends it right after, on the same thread). On the
//! request path this costs one context value per request (a few allocations, measured in
//! BENCHMARKS.md) and, for a failing request, the cause's texts; no lock is shared between
//! requests and nothing is kept across requests.
//!
//! # Classification
//!
//! Each group has a [`Severity`] and a [`Category`]: stated where the error was recorded
//! ([`record_error_as`]), else from the [classifier](ErrorTracking::with_classifier) given at
//! set-up ([`ServiceTracing::error_classifier`](crate::ServiceTracing::error_classifier)),
//! else from the default rules, which recognise panics, security and validation statuses,
//! database spans, timeouts (`std::io::ErrorKind::TimedOut`, `tokio::time::error::Elapsed`,
//! types and messages that say timeout), database and SQL errors, refused connections and
//! failed calls. An error inside a request is classified as its root cause was seen.
//!
//! # Sampling
//!
//! A span processor only sees recorded spans. The server layer's observer
//! ([`ErrorTracking::rates_observer`], added by set-up) sees every request: it counts the
//! per-route requests, errors and ratios of [`ErrorSummary::route_rates`] ([`RouteRates`]), and
//! each failing request's one error, as above, sampled or not. An unsampled request's error
//! has no trace sample (no backend holds the trace). So errors inside requests are counted
//! whatever the sampler; errors outside requests are seen on recorded spans only and follow
//! sampling.
//!
//! # Backtraces
//!
//! [`record_error`] adds no backtrace unless [`set_backtrace_capture`] (or
//! [`ServiceTracing::error_backtraces`](crate::ServiceTracing::error_backtraces)) asks for
//! one, whatever `RUST_BACKTRACE` says: formatting a backtrace symbolises it on the request's
//! thread, which costs about 100 ms for the first error of a process and about 0.15 ms for each
//! later one.
//!
//! # Alerts, log records and redaction
//!
//! [`AlertRule`]s fire [`Alert`]s: on a count of a group's errors over a window, on a route's
//! error ratio, on a new group, or on a spike against the route's baseline, at most once per
//! cooldown for a group. Alerts go to [callbacks](ErrorTracking::with_alert_callback) and to a
//! [`Webhook`] (JSON POST, retried with backoff), and, with an OTLP exporter, new groups and
//! alerts are exported as OpenTelemetry log records to the traces' collector
//! (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` overrides the endpoint, `OTEL_LOGS_EXPORTER=none` turns
//! them off). All of it runs on background threads fed by bounded queues: recording an error
//! only queues a small signal; [`ErrorTracking::alert_stats`] counts what was delivered, failed
//! or dropped. Before anything is stored or sent, error types, messages and operations go
//! through the [`Redactor`] (e-mail addresses, credentials, secret `key=value` pairs, JWTs and
//! card-like numbers become `[REDACTED]`).
//!
//! ```no_run
//! use std::time::Duration;
//! use service_tracing::{AlertRule, Window};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (app, guard) = service_tracing::ServiceTracing::builder("checkout")
//!     .otlp_endpoint("http://collector:4317")
//!     .alert_rule(AlertRule::count(20, Window::OneMinute).cooldown(Duration::from_secs(900)))
//!     .alert_rule(AlertRule::ratio(0.05, Window::FiveMinutes, 200))
//!     .alert_rule(AlertRule::new_group())
//!     .alert_webhook("http://alert-relay.internal:8080/hooks/errors")
//!     .alert_callback(|alert| eprintln!("alert {}: {}", alert.rule(), alert.group().message()))
//!     .init(axum::Router::<()>::new())?;
//! // ... serve requests ...
//! guard.shutdown()?; // waits for pending deliveries
//! # Ok(()) }
//! ```
//!
//! # Storage
//!
//! In memory and bounded: at most [`with_max_groups`](ErrorTracking::with_max_groups) groups
//! (default 1,000), the least recently seen evicted and counted
//! ([`ErrorSummary::evictions`]).
//!
//! # Sharing between replicas
//!
//! With the `redis` feature and a Redis URL
//! (`ErrorTracking::with_redis`, `ErrorTracking::with_sharing`,
//! `ServiceTracing::error_redis_url` or `SERVICE_TRACING_ERRORS_REDIS_URL`), replicas share
//! their groups, counts and route rates, so every replica's summary shows the fleet. The
//! request path still never leaves memory: a background thread pushes this replica's counts
//! and pulls the fleet's every second. Redis down or slow: requests are unaffected, tracking
//! goes on locally, [`ErrorTracking::storage_health`] says
//! [`Degraded`](ErrorStorageHealth::Degraded), and the thread reconnects by itself and then
//! pushes what it could not. How, and the keys it uses: the `redis` module (feature `redis`).
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let errors =
//!     service_tracing::errors::ErrorTracking::new().with_redis("redis://127.0.0.1:6379")?;
//! println!("{:?}: {} errors in the fleet", errors.storage_health(), errors.summary().total());
//! # Ok(()) }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```

mod alerting;
mod capture;
mod classify;
mod event;
mod fingerprint;
mod health;
mod rates;
#[cfg(feature = "redis")]
pub mod redis;
mod store;
mod tracking;

pub use alerting::{Alert, AlertKind, AlertRule, AlertStats, Webhook, DEFAULT_COOLDOWN};
#[allow(deprecated)]
pub use capture::ErrorEvents;
pub use capture::{record_error, record_error_as, set_backtrace_capture, ErrorEventLayer};
pub use classify::{Category, Severity};
pub use event::{ErrorEvent, ErrorOrigin};
pub use health::ErrorStorageHealth;
pub use rates::{RouteRate, RouteRates, DEFAULT_MAX_KEYS};
pub use tracking::ErrorTracking;
// Former paths of items whose home is elsewhere (`crate::redact`, `crate::profiling`, the
// crate root), kept so
// existing code builds; documented once, at home.
/// The former name of [`redis`](self::redis), kept so existing paths still resolve.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use self::redis as shared;
#[cfg(feature = "redis")]
pub(crate) use self::redis::MAX_BACKOFF as MAX_REDIS_BACKOFF;
#[cfg(feature = "redis")]
pub use self::redis::{RedisSharing, DEFAULT_PREFIX};
#[doc(hidden)]
pub use crate::operation::OTHER_OPERATION;
#[doc(hidden)]
pub use crate::redact::{Redactor, REDACTED};
#[doc(hidden)]
pub use crate::window::Window;
pub use store::{ErrorGroup, ErrorSummary};

pub(crate) use alerting::{logs, AlertOptions};
pub(crate) use capture::Exception;
pub(crate) use tracking::Classifier;

/// The default bound on the number of groups held.
pub const DEFAULT_MAX_GROUPS: usize = 1_000;
