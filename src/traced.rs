//! The run-time side of `#[traced]` (`service_tracing_macros`): what its expansion calls,
//! re-exported as the hidden `service_tracing::__private`. Built on the work spans' guard
//! ([`WorkSpan`]): a `#[traced]` span is a work span whose name, kind and code attributes come
//! from the function, so it ends, records panics and errors, reaches error tracking and
//! profiling, and costs one look at the current context when unsampled, exactly as the
//! helpers' spans do.
//!
//! Nothing here is API: the names may change with the macro, which is released with this
//! crate at the same version.

use std::borrow::Cow;
use std::error::Error;
use std::fmt::{self, Debug, Display, Write as _};
use std::future::Future;

use opentelemetry::{ContextGuard, KeyValue};

pub use opentelemetry::trace::SpanKind;
pub use service_tracing_middleware::cause::Category;

use crate::errors::Severity;
use crate::profiling::THRESHOLD_ATTRIBUTE;
use crate::work::{InScope, WorkSpan};

/// Longest captured argument or `Ok` value, in bytes: a longer text is cut on a character
/// boundary and ends with [`CUT`].
pub const MAX_VALUE_LEN: usize = 256;

/// What ends a captured value that was cut.
pub const CUT: &str = "…";

/// The attribute key of a captured `Ok` value.
pub const RESULT_KEY: &str = "code.function.result";

/// One `#[traced]` function: what its spans share, built once, in a `static`.
#[derive(Debug)]
pub struct Site {
    name: &'static str,
    file: &'static str,
    line: u32,
    kind: SpanKind,
    /// The type name of an item nested in the function: `path::to::f::__traced_here`.
    here: fn() -> &'static str,
    slow_ms: Option<u64>,
    errors_as: Option<(Severity, Category)>,
}

impl Site {
    /// The function's site: its span's name, where it is written, its span kind, and the type
    /// name of an item nested in it (its path, for `code.function.name`).
    pub const fn new(
        name: &'static str,
        file: &'static str,
        line: u32,
        kind: SpanKind,
        here: fn() -> &'static str,
    ) -> Self {
        Self {
            name,
            file,
            line,
            kind,
            here,
            slow_ms: None,
            errors_as: None,
        }
    }

    /// `slow_ms = N`: the span's slow threshold, for profiling.
    pub const fn slow_ms(mut self, ms: u64) -> Self {
        self.slow_ms = Some(ms);
        self
    }

    /// `category = ..`: the category of a recorded `Err` (with the severity error tracking's
    /// default rules give that category).
    pub const fn category(mut self, category: Category) -> Self {
        self.errors_as = Some((default_severity(category), category));
        self
    }

    /// `code.function.name`: the function's path as Rust prints it in a backtrace
    /// (`shop::orders::OrderStore::load`, `<shop::Db as shop::Store>::get`).
    pub fn function_name(&self) -> &'static str {
        function_name((self.here)())
    }

    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("code.function.name", self.function_name()));
        attributes.push(KeyValue::new("code.file.path", self.file));
        attributes.push(KeyValue::new("code.line.number", i64::from(self.line)));
        if let Some(ms) = self.slow_ms {
            let ms = i64::try_from(ms).unwrap_or(i64::MAX);
            attributes.push(KeyValue::new(THRESHOLD_ATTRIBUTE, ms));
        }
        attributes
    }
}

/// The severity the default rules give an error of `category` (`src/errors/classify.rs`).
const fn default_severity(category: Category) -> Severity {
    match category {
        Category::Dependency | Category::Database => Severity::High,
        Category::Validation => Severity::Low,
        _ => Severity::Medium,
    }
}

/// `path::to::f::__traced_here` -> `path::to::f`, and `path::to::f::{{closure}}::__traced_here`
/// (an `async fn`) -> `path::to::f`.
fn function_name(here: &'static str) -> &'static str {
    let mut path = here.strip_suffix("::__traced_here").unwrap_or(here);
    while let Some(outer) = path.strip_suffix("::{{closure}}") {
        path = outer;
    }
    path
}

/// Starts the span of a call to the function at `site`, as a child of the current context
/// (nothing but that look when the current span is not sampled).
pub fn start(site: &'static Site) -> Traced {
    let kind = site.kind.clone();
    let mut span = WorkSpan::start_with(kind, || (Cow::Borrowed(site.name), site.attributes()));
    if let Some((severity, category)) = site.errors_as {
        span = span.errors_as(severity, category);
    }
    Traced {
        span,
        settle_on_drop: true,
    }
}

/// The guard of one call: its work span, and whether leaving the function without a panic is
/// a success (sync functions, which cannot be cancelled).
#[derive(Debug)]
#[must_use = "the span ends when the guard is dropped"]
pub struct Traced {
    span: WorkSpan,
    settle_on_drop: bool,
}

impl Traced {
    /// Whether the span records: arguments are formatted only then.
    pub fn is_recording(&self) -> bool {
        self.span.is_recording()
    }

    /// Captures an argument through `Debug`, cut to [`MAX_VALUE_LEN`].
    pub fn arg_debug<T: Debug + ?Sized>(&self, key: &'static str, value: &T) {
        self.capture(key, format_args!("{value:?}"));
    }

    /// Captures an argument through `Display`, cut to [`MAX_VALUE_LEN`].
    pub fn arg_display<T: Display + ?Sized>(&self, key: &'static str, value: &T) {
        self.capture(key, format_args!("{value}"));
    }

    /// Captures the `Ok` value through `Debug` (`result(ok)`), and states success.
    pub fn ok_debug<T: Debug + ?Sized>(&mut self, value: &T) {
        self.capture(RESULT_KEY, format_args!("{value:?}"));
        self.span.succeed();
    }

    /// Captures the `Ok` value through `Display` (`result(%ok)`), and states success.
    pub fn ok_display<T: Display + ?Sized>(&mut self, value: &T) {
        self.capture(RESULT_KEY, format_args!("{value}"));
        self.span.succeed();
    }

    /// States success without capturing anything.
    pub fn succeed(&mut self) {
        self.span.succeed();
    }

    fn capture(&self, key: &'static str, value: fmt::Arguments<'_>) {
        if self.span.is_recording() {
            self.span.set_attribute(KeyValue::new(key, bounded(value)));
        }
    }

    /// Makes the span current until the returned guard is dropped (sync functions).
    pub fn enter(&self) -> Option<ContextGuard> {
        self.span.enter()
    }

    /// Runs the body of an `async fn` with the span current in each poll; when it completes,
    /// `on_output` states its outcome. Dropped before it completes (cancelled), the span ends
    /// with `error.type` = `_OTHER`, as a work span does.
    pub fn in_scope<F, C>(mut self, future: F, on_output: C) -> InScope<Traced, F, C>
    where
        F: Future,
        C: FnOnce(&F::Output, &mut Traced),
    {
        self.settle_on_drop = false;
        InScope::new(self, future, on_output)
    }
}

impl AsRef<WorkSpan> for Traced {
    fn as_ref(&self) -> &WorkSpan {
        &self.span
    }
}

impl AsMut<WorkSpan> for Traced {
    fn as_mut(&mut self) -> &mut WorkSpan {
        &mut self.span
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        // A sync function that returns (by its end, `return` or `?`) has finished; one that
        // unwinds leaves the outcome unstated, so the work span records the panic.
        if self.settle_on_drop && !std::thread::panicking() {
            self.span.succeed();
        }
    }
}

/// `value` formatted into at most [`MAX_VALUE_LEN`] bytes: formatting stops once the cap is
/// reached, so a huge `Debug` output is never built whole.
fn bounded(value: fmt::Arguments<'_>) -> String {
    struct Capped(String);
    impl fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = MAX_VALUE_LEN + 1 - self.0.len();
            if s.len() < room {
                self.0.push_str(s);
                return Ok(());
            }
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.0.push_str(&s[..end]);
            Err(fmt::Error) // stop the formatting: the value is cut anyway
        }
    }
    let mut out = Capped(String::new());
    // An `Err` here is the cut (or a `Debug` impl that failed): what was written stays.
    let _ = out.write_fmt(value);
    let mut text = out.0;
    if text.len() > MAX_VALUE_LEN {
        let mut end = MAX_VALUE_LEN - CUT.len();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(CUT);
    }
    text
}

/// An `Err` value, to record through the best trait it has: `Error` (type, message, source
/// chain), else `Display`, else `Debug`. Chosen at the call site by method resolution
/// (`(&&&Failure(e)).record_on(span)`), so it works for `anyhow::Error`, which is not an
/// `Error`, and for plain `Debug` error types.
#[derive(Debug)]
pub struct Failure<'a, E: ?Sized>(pub &'a E);

/// Records an `Err` that is an `Error` ([`WorkSpan::record_error`]).
pub trait RecordAsError {
    /// Records the error on `span`.
    fn record_on(&self, span: &mut Traced);
}

/// Records an `Err` that is only `Display`: its type name and message.
pub trait RecordAsDisplay {
    /// Records the error on `span`.
    fn record_on(&self, span: &mut Traced);
}

/// Records an `Err` that is only `Debug`: its type name and `Debug` text.
pub trait RecordAsDebug {
    /// Records the error on `span`.
    fn record_on(&self, span: &mut Traced);
}

impl<E: Error + ?Sized> RecordAsError for &&Failure<'_, E> {
    fn record_on(&self, span: &mut Traced) {
        span.span.record_error(self.0);
    }
}

impl<E: Display + ?Sized> RecordAsDisplay for &Failure<'_, E> {
    fn record_on(&self, span: &mut Traced) {
        // `record_failure` cuts the message to 4 KiB, as `record_error` does.
        span.span
            .record_failure(std::any::type_name::<E>(), self.0.to_string());
    }
}

impl<E: Debug + ?Sized> RecordAsDebug for Failure<'_, E> {
    fn record_on(&self, span: &mut Traced) {
        let message = bounded(format_args!("{:?}", self.0));
        span.span
            .record_failure(std::any::type_name::<E>(), message);
    }
}

#[cfg(all(test, feature = "macros"))]
mod tests;
