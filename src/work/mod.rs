//! Spans for the work inside a request: database queries ([`db`]), calls to other services
//! that are not HTTP ([`external`]), an agent's tool calls ([`tool`]) and LLM calls ([`llm`]),
//! all on one guard, [`WorkSpan`], which `#[traced]` code uses too.
//!
//! # What every helper does
//!
//! - **A child span of the current context**, of the kind the conventions give its domain
//!   (database, external and LLM calls are `Client`, tool calls `Internal`), named after the
//!   operation's *template* (`SELECT orders`, `chat gpt-4o`, `execute_tool get_weather`), never
//!   after a raw value, so profiling keeps one operation per template (see below).
//! - **Nothing when the request is not sampled** beyond one look at the current context: no
//!   span builder, no attribute, no allocation ([`WorkSpan::wanted`]; `benches/work.rs`
//!   measures it). With no current span at all, the span is a root under the tracer
//!   provider's sampler, as `tracing::instrument` does.
//! - **Ended when the guard is dropped.** A guard dropped during a panic gets
//!   `error.type` = `panic`, one dropped with no outcome stated (a cancelled future, an early
//!   return) `error.type` = `_OTHER`, and both an error status. State the outcome with
//!   [`WorkSpan::succeed`] or [`WorkSpan::record_error`], or let
//!   [`in_scope`](WorkSpan::in_scope) take it from the future's `Result`.
//! - **Errors reach error tracking with their category**: the span gets `error.type`, an
//!   `exception` event (as [`record_error`](crate::record_error) writes it) and an error status;
//!   inside a request, sampled or not, the error is the request's root cause unless one came
//!   first. The helpers state the category: `database` for queries, `dependency` for external
//!   and LLM calls, and `timeout` for a timeout in any of them (an `io::ErrorKind::TimedOut`
//!   or tokio's `Elapsed`, the error or a source); tool calls are classified by the default
//!   rules. The group's operation is the span's.
//! - **Profiling** keys a span's latency by its operation: the span name, or for a `Client`
//!   span with `server.address`, `{span name} {server.address}`
//!   (`SELECT orders db.internal`).
//!
//! # Conventions followed
//!
//! The OpenTelemetry semantic conventions as of v1.41.0:
//! - database client spans (stable): `db.system.name`, `db.operation.name`,
//!   `db.collection.name`, `db.namespace`, `db.query.text` (sanitised), `server.address`,
//!   `server.port`, and the span name rules;
//! - generative AI spans and metrics (development): inference client spans named
//!   `{gen_ai.operation.name} {gen_ai.request.model}` with `gen_ai.provider.name`,
//!   `execute_tool {gen_ai.tool.name}` internal spans, `gen_ai.client.token.usage` and
//!   `gen_ai.client.operation.duration` with their advisory buckets;
//! - RPC client spans: the v1.37 attributes (`rpc.system`, `rpc.service`, `rpc.method`), as
//!   the RPC release candidate's transition plan asks until it is stable (see [`external`]);
//!   `service.peer.name`, written with the deprecated `peer.service` it replaced.
//!
//! Captured content (tool arguments and results, prompts and completions) is off by default,
//! opt-in per call, passed through the redaction policy and capped.
//!
//! # The guard for code of your own
//!
//! ```
//! use opentelemetry::trace::SpanKind;
//! use opentelemetry::KeyValue;
//! use service_tracing::work::WorkSpan;
//!
//! async fn resize(image: &[u8]) -> Result<Vec<u8>, std::io::Error> {
//!     Ok(image.to_vec())
//! }
//!
//! # async fn run() -> Result<(), std::io::Error> {
//! let image = vec![0u8; 64];
//! // The attributes are built only when the span is wanted.
//! let span = WorkSpan::start_with(SpanKind::Internal, || {
//!     ("resize image".into(), vec![KeyValue::new("image.bytes", image.len() as i64)])
//! });
//! let resized = span.in_scope(resize(&image)).await?;
//! # assert_eq!(resized.len(), 64);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run()).unwrap();
//! ```

pub mod db;
pub mod external;
pub mod llm;
pub mod tool;

mod capture;
mod scope;
mod sql;

use std::borrow::Cow;
use std::error::Error;

use opentelemetry::trace::{
    SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, ContextGuard, InstrumentationScope, KeyValue};
use service_tracing_middleware::cause::{self, ErrorCause};

use crate::errors::{Category, Exception, Severity};

pub use scope::{InScope, Outcome};

/// The tracer provider of a set-up, carried by its `tracing` subscriber (a layer that does
/// nothing else), so work spans find the set-up current on their thread: scoped set-ups and
/// the test kit have no global provider.
#[derive(Debug, Clone)]
pub(crate) struct WorkProvider(pub(crate) opentelemetry_sdk::trace::SdkTracerProvider);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WorkProvider {}

/// `error.type` of a span whose guard was dropped with no outcome stated (the conventions'
/// fallback value).
pub const NO_OUTCOME: &str = "_OTHER";
/// `error.type` of a span whose guard was dropped during a panic.
pub const PANIC: &str = "panic";

/// The instrumentation scope of the work spans.
const SCOPE_NAME: &str = "service-tracing";

/// One span for one piece of work: started as a child of the current context, ended when
/// dropped. See the [module docs](self) for what it records.
///
/// A guard that was not [wanted](Self::wanted) holds nothing and every method on it is a
/// no-op, except that an error recorded on it still becomes the current request's root cause
/// (error tracking counts unsampled requests too).
///
/// ```
/// use opentelemetry::trace::SpanKind;
/// use service_tracing::work::WorkSpan;
///
/// fn checksum(data: &[u8]) -> Result<u32, std::io::Error> {
///     let mut span = WorkSpan::start(SpanKind::Internal, "checksum", Vec::new());
///     let _current = span.enter(); // spans started inside are its children
///     let sum = data.iter().map(|b| u32::from(*b)).sum();
///     span.succeed();
///     Ok(sum)
/// }
/// assert_eq!(checksum(&[1, 2, 3]).unwrap(), 6);
/// ```
#[must_use = "the span ends when the guard is dropped"]
#[derive(Debug)]
pub struct WorkSpan {
    /// The started span, when it was wanted.
    open: Option<Box<Open>>,
    /// How its errors are classified, when stated.
    stated: Option<(Severity, Category)>,
    /// Whether an outcome was stated.
    done: bool,
    /// The `error.type` of the failure recorded, if any.
    failure: Option<Cow<'static, str>>,
}

#[derive(Debug)]
struct Open {
    /// The parent context with the span.
    cx: Context,
    /// The operation error tracking and profiling key the span by.
    operation: String,
    /// `db.system.name`, for a database span.
    db_system: Option<String>,
    kind: SpanKind,
}

impl WorkSpan {
    /// Whether a span started now would be kept: the current span is sampled, or there is no
    /// current span (a root span, left to the sampler). One look at the current context, no
    /// allocation.
    ///
    /// ```
    /// // No span is current here: a span would be a root, left to the sampler.
    /// assert!(service_tracing::work::WorkSpan::wanted());
    /// ```
    pub fn wanted() -> bool {
        Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            !context.is_valid() || context.is_sampled()
        })
    }

    /// A guard with no span: what [`start`](Self::start) gives when the span is not wanted.
    ///
    /// ```
    /// let span = service_tracing::work::WorkSpan::none();
    /// assert!(!span.is_recording());
    /// ```
    pub fn none() -> Self {
        Self {
            open: None,
            stated: None,
            done: false,
            failure: None,
        }
    }

    /// Starts a span of `kind` named `name` with `attributes` as a child of the current
    /// context, when [wanted](Self::wanted). `name` must be a template (`resize image`, not
    /// `resize cat.png`): it is the span's operation. When the caller would build the name or
    /// the attributes, [`start_with`](Self::start_with) builds them only when wanted.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// let span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "plan route", Vec::new());
    /// drop(span); // ended (with `error.type` = `_OTHER`: no outcome was stated)
    /// ```
    pub fn start(
        kind: SpanKind,
        name: impl Into<Cow<'static, str>>,
        attributes: Vec<KeyValue>,
    ) -> Self {
        if !Self::wanted() {
            return Self::none();
        }
        Self::open(kind, name.into(), attributes)
    }

    /// [`start`](Self::start), calling `make` for the name and attributes only when the span
    /// is wanted.
    ///
    /// ```
    /// use opentelemetry::{trace::SpanKind, KeyValue};
    /// let user = 42;
    /// let span = service_tracing::work::WorkSpan::start_with(SpanKind::Internal, || {
    ///     ("load profile".into(), vec![KeyValue::new("user.id", user.to_string())])
    /// });
    /// # drop(span);
    /// ```
    pub fn start_with(
        kind: SpanKind,
        make: impl FnOnce() -> (Cow<'static, str>, Vec<KeyValue>),
    ) -> Self {
        if !Self::wanted() {
            return Self::none();
        }
        let (name, attributes) = make();
        Self::open(kind, name, attributes)
    }

    /// Starts the span: the current context is its parent.
    fn open(kind: SpanKind, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Self {
        let operation = operation_of(&kind, &name, &attributes);
        let scope = InstrumentationScope::builder(SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let parent = Context::current();
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind.clone())
            .with_attributes(attributes);
        // The provider of the set-up whose subscriber is current on this thread (a scoped
        // set-up's or `TestTracing`'s under `set_default`, else the installed one), read per
        // span (only for spans that are wanted): a tracer kept from the first call would miss
        // a set-up made after it. Without a set-up's subscriber, the global provider.
        let provider = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<WorkProvider>().map(|w| w.0.clone())
        });
        let cx = match provider {
            Some(provider) => parent.with_span(
                provider
                    .tracer_with_scope(scope)
                    .build_with_context(builder, &parent),
            ),
            None => parent.with_span(
                opentelemetry::global::tracer_provider()
                    .tracer_with_scope(scope)
                    .build_with_context(builder, &parent),
            ),
        };
        Self {
            open: Some(Box::new(Open {
                cx,
                operation,
                db_system: None,
                kind,
            })),
            stated: None,
            done: false,
            failure: None,
        }
    }

    /// States how this span's errors are classified by error tracking (as
    /// [`record_error_as`](crate::errors::record_error_as) does), except timeouts, which are
    /// always Medium / [`Category::Timeout`]. Unstated, the default rules classify them.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// use service_tracing::errors::{Category, Severity};
    /// use service_tracing::work::WorkSpan;
    ///
    /// let mut span = WorkSpan::start(SpanKind::Client, "GetStock", Vec::new())
    ///     .errors_as(Severity::High, Category::Dependency);
    /// span.record_error(&std::io::Error::other("unavailable"));
    /// ```
    pub fn errors_as(mut self, severity: Severity, category: Category) -> Self {
        self.stated = Some((severity, category));
        self
    }

    /// The `error.type` the span ends with: the failure recorded, `panic` during a panic,
    /// `_OTHER` with no outcome stated, `None` for a success.
    pub(crate) fn error_type(&self) -> Option<&str> {
        match &self.failure {
            Some(class) => Some(class),
            None if std::thread::panicking() => Some(PANIC),
            None if !self.done => Some(NO_OUTCOME),
            None => None,
        }
    }

    /// Marks a database span: its errors carry the `db.system.name` to error tracking.
    pub(crate) fn database(mut self, system: &str) -> Self {
        if let Some(open) = &mut self.open {
            open.db_system = Some(system.to_owned());
        }
        self
    }

    /// Whether the span records (it was wanted and the sampler kept it).
    ///
    /// ```
    /// assert!(!service_tracing::work::WorkSpan::none().is_recording());
    /// ```
    pub fn is_recording(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|open| open.cx.span().is_recording())
    }

    /// The context holding the span, to pass to work it does elsewhere (another task, a
    /// thread): `None` when the span was not wanted.
    ///
    /// ```
    /// let span = service_tracing::work::WorkSpan::none();
    /// assert!(span.context().is_none());
    /// ```
    pub fn context(&self) -> Option<&Context> {
        self.open.as_ref().map(|open| &open.cx)
    }

    /// Makes the span current until the returned guard is dropped (sync code; for a future,
    /// [`in_scope`](Self::in_scope)). `None`, and nothing done, when the span was not wanted.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// let mut span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "parse", Vec::new());
    /// {
    ///     let _current = span.enter();
    ///     // work here is inside the span
    /// }
    /// span.succeed();
    /// ```
    pub fn enter(&self) -> Option<ContextGuard> {
        self.open.as_ref().map(|open| open.cx.clone().attach())
    }

    /// Sets one attribute (nothing when the span does not record).
    ///
    /// ```
    /// use opentelemetry::{trace::SpanKind, KeyValue};
    /// let span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "render", Vec::new());
    /// span.set_attribute(KeyValue::new("template.name", "invoice"));
    /// # drop(span);
    /// ```
    pub fn set_attribute(&self, attribute: KeyValue) {
        if let Some(open) = &self.open {
            open.cx.span().set_attribute(attribute);
        }
    }

    /// Adds an event (nothing when the span does not record).
    ///
    /// ```
    /// use opentelemetry::{trace::SpanKind, KeyValue};
    /// let span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "retry loop", Vec::new());
    /// span.add_event("retry", vec![KeyValue::new("attempt", 2)]);
    /// # drop(span);
    /// ```
    pub fn add_event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        if let Some(open) = &self.open {
            open.cx.span().add_event(name, attributes);
        }
    }

    /// States that the work succeeded: the span ends without an error when dropped.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// let mut span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "warm cache", Vec::new());
    /// span.succeed();
    /// ```
    pub fn succeed(&mut self) {
        self.done = true;
    }

    /// States that the work failed with `error`: `error.type` (`timeout` for a timeout, else
    /// the error's type), an `exception` event with the classification when stated
    /// ([`errors_as`](Self::errors_as)), an error status, and, inside a request, the
    /// request's root cause unless one came first (sampled or not; sampled, the group's
    /// `targets` name the span's operation).
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// let mut span = service_tracing::work::WorkSpan::start(SpanKind::Internal, "parse", Vec::new());
    /// let parsed: Result<u32, _> = "x".parse::<u32>();
    /// if let Err(e) = &parsed {
    ///     span.record_error(e);
    /// }
    /// ```
    pub fn record_error<E: Error + ?Sized>(&mut self, error: &E) {
        self.done = true;
        let exception = Exception::of(error);
        let class: Cow<'static, str> = if exception.timeout {
            Cow::Borrowed("timeout")
        } else {
            Cow::Borrowed(exception.error_type)
        };
        self.fail(
            class,
            exception.error_type,
            exception.message,
            exception.timeout,
            exception.attributes,
        );
    }

    /// [`record_error`](Self::record_error) for a failure that is not a Rust error (a status
    /// the other side answered, say): `error_type` is a low-cardinality class (`429`,
    /// `rate_limited`, `timeout`), written as `error.type` and `exception.type`.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// let mut span = service_tracing::work::WorkSpan::start(SpanKind::Client, "chat gpt-4o", Vec::new());
    /// span.record_failure("429", "rate limited, retry in 20 s");
    /// ```
    pub fn record_failure(
        &mut self,
        error_type: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) {
        self.done = true;
        let error_type: Cow<'static, str> = error_type.into();
        let message = service_tracing_middleware::semconv::truncate(message.into(), 4096);
        let timeout = error_type.eq_ignore_ascii_case("timeout");
        let attributes = vec![
            KeyValue::new("exception.type", error_type.clone()),
            KeyValue::new("exception.message", message.clone()),
        ];
        self.fail(error_type.clone(), error_type, message, timeout, attributes);
    }

    fn fail(
        &mut self,
        class: Cow<'static, str>,
        error_type: impl Into<Cow<'static, str>>,
        message: String,
        timeout: bool,
        mut attributes: Vec<KeyValue>,
    ) {
        let stated = match self.stated {
            Some(_) if timeout => Some((Severity::Medium, Category::Timeout)),
            stated => stated,
        };
        let error_type = error_type.into();
        self.failure = Some(class.clone());
        let current;
        let cx = match &self.open {
            Some(open) => &open.cx,
            None => {
                current = Context::current();
                &current
            }
        };
        if cause::in_open_request(cx) {
            cause::record_cause(cx, || {
                let mut cause = match &self.open {
                    Some(open) if open.kind == SpanKind::Client => {
                        ErrorCause::call(open.operation.clone(), error_type.clone(), &*message)
                    }
                    Some(open) => ErrorCause::new(error_type.clone(), &*message)
                        .with_target(open.operation.clone()),
                    None => ErrorCause::new(error_type.clone(), &*message),
                };
                if timeout {
                    cause = cause.with_class("timeout");
                }
                if let Some(system) = self.open.as_ref().and_then(|o| o.db_system.as_deref()) {
                    cause = cause.with_db_system(system);
                }
                if let Some((severity, category)) = stated {
                    cause = cause.with_classification(severity, category);
                }
                cause
            });
        }
        let Some(open) = &self.open else {
            return;
        };
        let span = open.cx.span();
        if !span.is_recording() {
            return;
        }
        if let Some((severity, category)) = stated {
            attributes.push(KeyValue::new("error.category", category.as_str()));
            attributes.push(KeyValue::new("error.severity", severity.as_str()));
        }
        span.set_attribute(KeyValue::new("error.type", class));
        span.add_event("exception", attributes);
        span.set_status(Status::error(message));
    }

    /// Runs `work` with the span current, then ends the span with the outcome `work`
    /// returned ([`Outcome`]: an `Err` is recorded with [`record_error`](Self::record_error)):
    /// the sync form of [`in_scope`](Self::in_scope).
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// use service_tracing::work::WorkSpan;
    ///
    /// let parsed: Result<u16, std::num::ParseIntError> =
    ///     WorkSpan::start(SpanKind::Internal, "parse port", Vec::new()).run(|| "8080".parse());
    /// assert_eq!(parsed.unwrap(), 8080);
    /// ```
    pub fn run<R: Outcome>(mut self, work: impl FnOnce() -> R) -> R {
        let output = {
            let _current = self.enter();
            work()
        };
        output.record_on(&mut self);
        output
    }

    /// Runs `future` with the span current in each poll; the span ends when the future
    /// completes, with the outcome its output states ([`Outcome`]: an `Err` is recorded with
    /// [`record_error`](Self::record_error)), or when the future is dropped first (then with
    /// `error.type` = `_OTHER`). Not wanted, the future runs as it is.
    ///
    /// ```
    /// use opentelemetry::trace::SpanKind;
    /// use service_tracing::work::WorkSpan;
    ///
    /// # async fn run() {
    /// let span = WorkSpan::start(SpanKind::Internal, "fetch config", Vec::new());
    /// let config: Result<u32, std::io::Error> = span.in_scope(async { Ok(3) }).await;
    /// assert_eq!(config.unwrap(), 3);
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run());
    /// ```
    pub fn in_scope<F>(self, future: F) -> InScope<Self, F>
    where
        F: std::future::Future,
        F::Output: Outcome,
    {
        InScope::new(self, future, |output, span: &mut Self| {
            output.record_on(span)
        })
    }

    /// [`in_scope`](Self::in_scope) for any output: `on_output` states the outcome (or sets
    /// attributes read from the output) before the span ends.
    ///
    /// ```
    /// use opentelemetry::{trace::SpanKind, KeyValue};
    /// use service_tracing::work::WorkSpan;
    ///
    /// # async fn run() {
    /// let span = WorkSpan::start(SpanKind::Internal, "count rows", Vec::new());
    /// let rows = span
    ///     .in_scope_with(async { 12_i64 }, |rows, span| {
    ///         span.set_attribute(KeyValue::new("rows", *rows));
    ///         span.succeed();
    ///     })
    ///     .await;
    /// assert_eq!(rows, 12);
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(run());
    /// ```
    pub fn in_scope_with<F, C>(self, future: F, on_output: C) -> InScope<Self, F, C>
    where
        F: std::future::Future,
        C: FnOnce(&F::Output, &mut Self),
    {
        InScope::new(self, future, on_output)
    }
}

impl AsRef<WorkSpan> for WorkSpan {
    fn as_ref(&self) -> &WorkSpan {
        self
    }
}

impl AsMut<WorkSpan> for WorkSpan {
    fn as_mut(&mut self) -> &mut WorkSpan {
        self
    }
}

impl Drop for WorkSpan {
    fn drop(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let span = open.cx.span();
        if span.is_recording() {
            let unfinished = if std::thread::panicking() {
                Some((PANIC, "panicked"))
            } else if !self.done {
                Some((NO_OUTCOME, "ended without an outcome"))
            } else {
                None
            };
            if let Some((class, description)) = unfinished {
                span.set_attribute(KeyValue::new("error.type", class));
                span.set_status(Status::error(description));
            }
        }
        span.end();
    }
}

/// The operation a span of `kind` named `name` is kept under, as error tracking and profiling
/// read it off the ended span (`crate::operation::operation_name`): `{name} {server.address}`
/// for a client span with an address, else the name.
fn operation_of(kind: &SpanKind, name: &str, attributes: &[KeyValue]) -> String {
    let address = match kind {
        SpanKind::Client => crate::attributes::string_attr(attributes, "server.address"),
        _ => None,
    };
    let name = crate::attributes::bounded(name);
    match address {
        Some(address) => format!("{name} {address}"),
        None => name,
    }
}

#[cfg(test)]
mod tests;
