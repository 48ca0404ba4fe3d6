//! The root cause of a failing request: the first error recorded inside it.
//!
//! One failing request is one error. When a request's dependency call fails and the handler
//! answers `502`, the failed call and the `502` are the same failure, and the failed call is
//! its cause. So whatever sees an error inside a request (the client middleware when a call
//! fails, `record_error` in the facade, the layer when the handler panics) states it here with
//! [`record_cause`], on the request's context, sampled or not; the layer hands the first one
//! to its [observers](crate::RequestObserver) as [`RequestOutcome::error_cause`] when the
//! request ends, and error tracking counts the request once, under that cause.
//!
//! The place for the cause is a small value in the request's OpenTelemetry [`Context`],
//! added only when an observer asks for it
//! ([`RequestObserver::wants_error_cause`](crate::RequestObserver::wants_error_cause)):
//! everything that runs inside the request (on its task, or on tasks given its context)
//! reaches it through [`Context::current`], with no lock shared between requests. The first
//! cause recorded wins; once the request has ended its place is closed and
//! [`record_cause`] says [`Attribution::NoRequest`], so the caller counts the error on its
//! own (a task that outlives the request, a background job).
//!
//! This is framework-free vocabulary, shared by the server layer, the client middleware and the
//! facade's error tracking; [`Severity`] and [`Category`] live here for that reason (the facade
//! re-exports them as `service_tracing::errors::{Severity, Category}`).
//!
//! [`RequestOutcome::error_cause`]: crate::RequestOutcome::error_cause

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use opentelemetry::Context;

use crate::semconv::truncate;

/// Longest message kept, in bytes.
const MAX_MESSAGE: usize = 4096;
/// Longest type, class, target or database system kept, in bytes.
const MAX_FIELD: usize = 512;

/// How urgent an error group is, most urgent first.
///
/// ```
/// use service_tracing_middleware::cause::Severity;
/// assert!(Severity::Critical < Severity::Low);
/// assert_eq!(Severity::High.as_str(), "high");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Severity {
    /// The service itself broke (a panic).
    Critical,
    /// A request failed on the server's side (5xx) or a dependency is down.
    High,
    /// Degraded: a timeout, a security refusal, an error without an HTTP status.
    Medium,
    /// Expected now and then: a dependency's 4xx, a validation error.
    Low,
}

impl Severity {
    /// Every severity, most urgent first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// The lowercase name (`critical`, `high`, `medium`, `low`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    /// The severity named `name` ([`as_str`](Self::as_str)'s names), if any.
    ///
    /// ```
    /// use service_tracing_middleware::cause::Severity;
    /// assert_eq!(Severity::from_name("medium"), Some(Severity::Medium));
    /// assert_eq!(Severity::from_name("urgent"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error comes from.
///
/// ```
/// use service_tracing_middleware::cause::Category;
/// assert_eq!(Category::Dependency.to_string(), "dependency");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// The service's own code (panics, its own 5xx).
    Application,
    /// A service this one calls failed or refused (transport errors, 4xx/5xx answers).
    Dependency,
    /// A database call (a span with `db.system` or `db.system.name`).
    Database,
    /// Something took too long (including a timeout talking to a dependency).
    Timeout,
    /// A request was refused as malformed (400, 422).
    Validation,
    /// A request was refused for its credentials (401, 403).
    Security,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 6] = [
        Category::Application,
        Category::Dependency,
        Category::Database,
        Category::Timeout,
        Category::Validation,
        Category::Security,
    ];

    /// The lowercase name (`application`, `dependency`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Application => "application",
            Category::Dependency => "dependency",
            Category::Database => "database",
            Category::Timeout => "timeout",
            Category::Validation => "validation",
            Category::Security => "security",
        }
    }

    /// The category named `name` ([`as_str`](Self::as_str)'s names), if any.
    ///
    /// ```
    /// use service_tracing_middleware::cause::Category;
    /// assert_eq!(Category::from_name("database"), Some(Category::Database));
    /// ```
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error, as the code that saw it describes it: what failed, not yet how bad it is.
///
/// Texts are cut (the message to 4 KiB, the rest to 512 bytes).
///
/// ```
/// use service_tracing_middleware::cause::{Category, ErrorCause, Severity};
///
/// let call = ErrorCause::call("GET payments.internal", "reqwest::Error", "connection refused")
///     .with_class("connect");
/// assert!(call.is_call());
/// assert_eq!(call.target(), Some("GET payments.internal"));
///
/// let stated = ErrorCause::new("sqlx::Error", "pool timed out")
///     .with_classification(Severity::High, Category::Database);
/// assert_eq!(stated.classification(), Some((Severity::High, Category::Database)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub struct ErrorCause {
    error_type: Cow<'static, str>,
    message: String,
    error_class: Option<Cow<'static, str>>,
    target: Option<String>,
    call: bool,
    status_code: Option<u16>,
    db_system: Option<String>,
    classification: Option<(Severity, Category)>,
}

fn bounded(text: Cow<'static, str>, max: usize) -> Cow<'static, str> {
    match text {
        Cow::Borrowed(s) if s.len() <= max => Cow::Borrowed(s),
        other => Cow::Owned(truncate(other.into_owned(), max)),
    }
}

impl ErrorCause {
    /// An error of type `error_type` (`exception.type`: a Rust type name, `panic`, ...) with
    /// `message`.
    pub fn new(error_type: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            error_type: bounded(error_type.into(), MAX_FIELD),
            message: truncate(message.into(), MAX_MESSAGE),
            error_class: None,
            target: None,
            call: false,
            status_code: None,
            db_system: None,
            classification: None,
        }
    }

    /// A failed call to a dependency: `target` names it as error tracking keys client
    /// operations (`{METHOD} {server.address}`).
    pub fn call(
        target: impl Into<String>,
        error_type: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        let mut cause = Self::new(error_type, message);
        cause.target = Some(truncate(target.into(), MAX_FIELD));
        cause.call = true;
        cause
    }

    /// The low-cardinality class (`error.type`: `timeout`, `connect`, `503`, `panic`, ...).
    pub fn with_class(mut self, class: impl Into<Cow<'static, str>>) -> Self {
        self.error_class = Some(bounded(class.into(), MAX_FIELD));
        self
    }

    /// Where it failed, when that is not a call: a database span's name, for example.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(truncate(target.into(), MAX_FIELD));
        self
    }

    /// The dependency's HTTP status, for a call it answered with an error.
    pub fn with_status_code(mut self, status: u16) -> Self {
        self.status_code = Some(status);
        self
    }

    /// A database call: its `db.system` (`postgresql`, `redis`, ...).
    pub fn with_db_system(mut self, system: impl Into<String>) -> Self {
        self.db_system = Some(truncate(system.into(), MAX_FIELD));
        self
    }

    /// Severity and category as the code that saw the error states them; error tracking
    /// keeps them rather than classifying.
    pub fn with_classification(mut self, severity: Severity, category: Category) -> Self {
        self.classification = Some((severity, category));
        self
    }

    /// `exception.type`.
    ///
    /// ```
    /// let cause = service_tracing_middleware::ErrorCause::new("panic", "order 7 not found");
    /// assert_eq!((cause.error_type(), cause.message()), ("panic", "order 7 not found"));
    /// ```
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// `exception.message`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// `error.type`, when known.
    ///
    /// ```
    /// let cause = service_tracing_middleware::ErrorCause::new("io", "slow").with_class("timeout");
    /// assert_eq!(cause.error_class(), Some("timeout"));
    /// ```
    pub fn error_class(&self) -> Option<&str> {
        self.error_class.as_deref()
    }

    /// The failed call's target, or where else it failed.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Whether it is a failed call to a dependency ([`call`](Self::call)).
    pub fn is_call(&self) -> bool {
        self.call
    }

    /// The dependency's HTTP status.
    ///
    /// ```
    /// use service_tracing_middleware::ErrorCause;
    /// let cause = ErrorCause::call("GET stock", "503", "").with_status_code(503);
    /// assert_eq!(cause.status_code(), Some(503));
    /// ```
    pub fn status_code(&self) -> Option<u16> {
        self.status_code
    }

    /// The database system, for a database call.
    ///
    /// ```
    /// use service_tracing_middleware::ErrorCause;
    /// let cause = ErrorCause::new("sqlx::Error", "deadlock")
    ///     .with_db_system("postgresql")
    ///     .with_target("UPDATE orders");
    /// assert_eq!((cause.db_system(), cause.target()), (Some("postgresql"), Some("UPDATE orders")));
    /// ```
    pub fn db_system(&self) -> Option<&str> {
        self.db_system.as_deref()
    }

    /// The stated severity and category.
    pub fn classification(&self) -> Option<(Severity, Category)> {
        self.classification
    }
}

/// What [`record_cause`] did with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribution {
    /// It is the request's root cause: the request's one error is counted under it.
    RootCause,
    /// The request already has a root cause; this error is part of the same failure.
    SameRequest,
    /// Not inside a request that counts its errors (or the request has ended): count it on
    /// its own.
    NoRequest,
}

impl Attribution {
    /// Whether the request it happened in counts it (the caller must not count it again).
    ///
    /// ```
    /// use service_tracing_middleware::cause::Attribution;
    /// assert!(Attribution::SameRequest.in_request());
    /// assert!(!Attribution::NoRequest.in_request());
    /// ```
    pub fn in_request(self) -> bool {
        self != Attribution::NoRequest
    }
}

/// [`RequestErrors::state`]: a cause was claimed (it is set, or about to be).
const CAUSE: u8 = 1;
/// [`RequestErrors::state`]: the request ended; nothing more is taken.
const CLOSED: u8 = 2;

/// The place for one request's root cause, a value of its [`Context`].
///
/// Every request closes its place when it ends, and most have no cause: closing is one atomic
/// operation on `state` (a `OnceLock` set to "closed" went through its slow, once-only path:
/// about 130 instructions a request). The first error claims the place in `state` and then
/// sets `cause`, so a cause is never set after the close said there was none.
#[derive(Default)]
pub(crate) struct RequestErrors {
    /// [`CAUSE`] and [`CLOSED`] bits.
    state: AtomicU8,
    cause: OnceLock<ErrorCause>,
}

impl RequestErrors {
    /// Closes the place; returns the cause recorded before, if any.
    pub(crate) fn close(&self) -> Option<&ErrorCause> {
        if self.state.fetch_or(CLOSED, Ordering::AcqRel) & CAUSE == 0 {
            return None;
        }
        // Claimed: its recorder made the cause first and sets it right after claiming.
        loop {
            if let Some(cause) = self.cause.get() {
                return Some(cause);
            }
            std::thread::yield_now();
        }
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }
}

/// States an error seen inside the request `cx` belongs to. `make` runs only when the request
/// has no cause yet, so a second error costs no allocation.
///
/// ```
/// use opentelemetry::Context;
/// use service_tracing_middleware::cause::{record_cause, Attribution, ErrorCause};
///
/// // Outside a request: the caller counts the error itself.
/// let seen = record_cause(&Context::current(), || ErrorCause::new("io::Error", "disk full"));
/// assert_eq!(seen, Attribution::NoRequest);
/// ```
pub fn record_cause(cx: &Context, make: impl FnOnce() -> ErrorCause) -> Attribution {
    let Some(errors) = RequestErrors::of(cx) else {
        return Attribution::NoRequest;
    };
    match errors.state.load(Ordering::Acquire) {
        s if s & CLOSED != 0 => return Attribution::NoRequest,
        s if s & CAUSE != 0 => return Attribution::SameRequest,
        _ => {}
    }
    // Made before claiming, so that a claimed place is set at once (a close waits for it);
    // only a race with another error or the end drops it unused.
    let cause = make();
    match errors
        .state
        .compare_exchange(0, CAUSE, Ordering::AcqRel, Ordering::Acquire)
    {
        Ok(_) => {
            let _ = errors.cause.set(cause);
            Attribution::RootCause
        }
        Err(s) if s & CLOSED != 0 => Attribution::NoRequest,
        Err(_) => Attribution::SameRequest,
    }
}

/// Whether `cx` is inside a request that counts its errors and has not ended.
///
/// ```
/// let cx = opentelemetry::Context::current();
/// assert!(!service_tracing_middleware::cause::in_open_request(&cx));
/// ```
pub fn in_open_request(cx: &Context) -> bool {
    RequestErrors::of(cx).is_some_and(|e| !e.is_closed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_racing_the_end_is_either_the_cause_or_counted_on_its_own() {
        for _ in 0..2_000 {
            let cx = crate::scope::test_request_context();
            let recorder = {
                let cx = cx.clone();
                std::thread::spawn(move || record_cause(&cx, || ErrorCause::new("io", "late")))
            };
            let closed = RequestErrors::of(&cx)
                .and_then(RequestErrors::close)
                .map(|c| c.message().to_owned());
            let seen = recorder.join().expect("no panic");
            match seen {
                Attribution::RootCause => assert_eq!(closed.as_deref(), Some("late")),
                Attribution::NoRequest => assert_eq!(closed, None),
                Attribution::SameRequest => panic!("the only error cannot find another"),
            }
            // Closing again answers the same.
            let again = RequestErrors::of(&cx)
                .and_then(RequestErrors::close)
                .map(|c| c.message().to_owned());
            assert_eq!(again, closed);
        }
    }

    #[test]
    fn long_texts_are_cut() {
        let cause = ErrorCause::new("t".repeat(2_000), "m".repeat(10_000));
        assert_eq!(cause.error_type().len(), MAX_FIELD);
        assert_eq!(cause.message().len(), MAX_MESSAGE);
    }
}
