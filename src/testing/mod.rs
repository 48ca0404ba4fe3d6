//! A test kit for an application's own tests (feature `testing`): spans kept in memory, and
//! assertions on the trees they form.
//!
//! [`TestTracing`] is the scoped set-up ([`ServiceTracing::build_scoped`]) with an in-memory
//! exporter instead of OTLP or the console: it installs nothing process-wide, so every test
//! has its own and `cargo test` runs them in parallel in one process, each seeing only its own
//! spans. The spans are exactly what an exporter would receive (redacted, with the server
//! span's attributes), as [`SpanData`](opentelemetry_sdk::trace::SpanData).
//!
//! - [`TestTracing::spans`] flushes and returns a [`Spans`]: find spans with a [`SpanMatch`]
//!   ("a span named X with attribute Y under span Z"), or assert with
//!   [`assert_span`](Spans::assert_span), [`assert_one_trace`](Spans::assert_one_trace),
//!   [`assert_no_error_status`](Spans::assert_no_error_status) and
//!   [`assert_exception`](Spans::assert_exception); a failed assertion prints the trees.
//! - [`validate_trace`] reports what a backend would show as a broken trace: broken parent
//!   links, orphan spans, server and client spans without their required HTTP attributes,
//!   children outside their parent's time, unended spans ([`Spans::validate`] adds the spans
//!   [`TestTracing`] saw start and never end).
//!
//! The in-memory exporter belongs to this module only: it is not an `OTEL_TRACES_EXPORTER`
//! value, so no deployment can select it by accident.
//!
//! ```
//! use axum::{routing::get, Router};
//! use service_tracing::testing::{SpanMatch, TestTracing};
//! use tower::ServiceExt;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let tracing = TestTracing::new("users")?;
//!     let app = Router::new()
//!         .route("/users/{id}", get(|| async {
//!             tracing::info_span!("db.query", db.system = "postgresql").in_scope(|| "ada")
//!         }))
//!         .layer(tracing.layer());
//!     let _default = tracing.set_default(); // `tracing` spans of this thread go to this set-up
//!
//!     let request = http::Request::get("/users/7").body(axum::body::Body::empty())?;
//!     assert_eq!(app.oneshot(request).await?.status(), 200);
//!
//!     let spans = tracing.spans();
//!     spans.assert_one_trace();
//!     spans.assert_no_error_status();
//!     spans.assert_span(
//!         SpanMatch::named("db.query")
//!             .attribute("db.system", "postgresql")
//!             .under("GET /users/{id}"),
//!     );
//!     spans.validate().assert_ok();
//!     Ok(())
//! }
//! ```

mod capture;
mod matcher;
mod spans;
mod validate;

pub(crate) use capture::Capture;
pub use matcher::SpanMatch;
pub use spans::Spans;
pub use validate::{validate_trace, Finding, TraceReport};

use std::fmt;

use opentelemetry_sdk::trace::SdkTracerProvider;
use service_tracing_middleware::TracingLayer;
use tracing::dispatcher::DefaultGuard;
use tracing::Dispatch;

use crate::{ScopedTracing, ServiceTracing, SetupError, TracingGuard};

/// One test's tracing: the scoped set-up ([`ScopedTracing`]) exporting into memory.
///
/// Everything the service would do runs (sampling, propagation, correlation ids, error
/// tracking, redaction); only the export differs. Dropping it shuts it down.
///
/// ```
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let tracing = service_tracing::testing::TestTracing::new("jobs")?;
/// tracing::dispatcher::with_default(tracing.dispatch(), || {
///     tracing::info_span!("nightly").in_scope(|| {});
/// });
/// tracing.spans().assert_span("nightly");
/// # Ok(()) }
/// ```
#[must_use = "keep it alive while the test runs; dropping it shuts it down"]
pub struct TestTracing {
    scoped: ScopedTracing,
    capture: Capture,
}

impl fmt::Debug for TestTracing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestTracing")
            .field("capture", &self.capture)
            .finish_non_exhaustive()
    }
}

impl TestTracing {
    /// The set-up of service `name` with the defaults, whatever the process environment says
    /// (no `OTEL_*` variable is read, so a developer's shell cannot change a test), no log
    /// lines printed, and no process sampler thread.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("checkout")?;
    /// assert!(tracing.spans().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn new(name: &str) -> Result<Self, SetupError> {
        Self::with_options(
            ServiceTracing::builder(name)
                .env_lookup(|_| None)
                .log_filter("off")
                .process_sampling(false),
        )
    }

    /// The set-up `options` describe (sampler, propagators, redaction, untraced routes, hooks,
    /// even `env_lookup`), with spans kept in memory instead of going to the exporter they
    /// name. Note that `options` read the process environment unless given
    /// [`env_lookup`](ServiceTracing::env_lookup).
    ///
    /// ```
    /// use service_tracing::{ServiceTracing, TracesSampler};
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::with_options(
    ///     ServiceTracing::builder("checkout")
    ///         .env_lookup(|_| None)
    ///         .sampler(TracesSampler::AlwaysOff),
    /// )?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || {
    ///     tracing::info_span!("not sampled").in_scope(|| {});
    /// });
    /// assert!(tracing.spans().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn with_options(options: ServiceTracing) -> Result<Self, SetupError> {
        let capture = Capture::default();
        let scoped = options.capturing(capture.clone()).build_scoped()?;
        Ok(Self { scoped, capture })
    }

    /// The server layer: add it to the router under test (last, so it wraps every route).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// let app: axum::Router = axum::Router::new()
    ///     .route("/", axum::routing::get(|| async { "ok" }))
    ///     .layer(tracing.layer());
    /// # Ok(()) }
    /// ```
    pub fn layer(&self) -> TracingLayer {
        self.scoped.layer()
    }

    /// The `tracing` dispatcher bridging `tracing` spans to this set-up
    /// ([`ScopedTracing::dispatch`]).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || {
    ///     tracing::info_span!("job").in_scope(|| {});
    /// });
    /// assert_eq!(tracing.spans().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn dispatch(&self) -> &Dispatch {
        self.scoped.dispatch()
    }

    /// Makes [`dispatch`](Self::dispatch) the current thread's default until the returned
    /// guard is dropped: enough in a `#[tokio::test]`, whose runtime runs on the test's
    /// thread. On a multi-thread runtime, give spawned futures the dispatcher with
    /// `tracing::instrument::WithSubscriber::with_subscriber`.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// let default = tracing.set_default();
    /// tracing::info_span!("job").in_scope(|| {});
    /// drop(default);
    /// tracing.spans().assert_span("job");
    /// # Ok(()) }
    /// ```
    pub fn set_default(&self) -> DefaultGuard {
        self.scoped.set_default()
    }

    /// The tracer provider, for OpenTelemetry spans made directly and for a
    /// [`TracingMiddleware`](crate::TracingMiddleware) on the client under test.
    ///
    /// ```
    /// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// if let Some(provider) = tracing.tracer_provider() {
    ///     provider.tracer("jobs").in_span("nightly", |_cx| {});
    /// }
    /// tracing.spans().assert_span("nightly");
    /// # Ok(()) }
    /// ```
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.scoped.tracer_provider()
    }

    /// The guard: error groups, profiling, [`service_layer`](TracingGuard::service_layer)
    /// for a second service whose spans land here too.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("frontend")?;
    /// let backend: axum::Router = axum::Router::new().layer(tracing.guard().service_layer("backend")?);
    /// # Ok(()) }
    /// ```
    pub fn guard(&self) -> &TracingGuard {
        self.scoped.guard()
    }

    /// Every span ended so far, after a flush (so spans ended before the call are there),
    /// in the order they were exported. They stay kept: a later call returns them again,
    /// with any new ones.
    ///
    /// A server span ends with its response body: read the body, or drop the response,
    /// before asking (else the handler's spans appear without their parent, which
    /// [`validate_trace`] reports as orphans).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || tracing::info_span!("a").in_scope(|| {}));
    /// assert_eq!(tracing.spans().len(), 1);
    /// assert_eq!(tracing.spans().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn spans(&self) -> Spans {
        self.flush();
        Spans::from(self.capture.snapshot()).with_unended(self.capture.open())
    }

    /// Like [`spans`](Self::spans), and forgets them: the next call returns only spans ended
    /// after this one (one test step at a time).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || tracing::info_span!("a").in_scope(|| {}));
    /// assert_eq!(tracing.take_spans().len(), 1);
    /// assert!(tracing.take_spans().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn take_spans(&self) -> Spans {
        self.flush();
        Spans::from(self.capture.take()).with_unended(self.capture.open())
    }

    fn flush(&self) {
        // The in-memory exporter cannot fail; a flush after shutdown has nothing to add.
        let _ = self.scoped.guard().force_flush();
    }
}

#[cfg(test)]
mod tests;
