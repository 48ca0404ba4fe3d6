//! [`Spans`]: the spans a test collected, as trees, with the assertions a test makes on them.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;

use opentelemetry::trace::{SpanId, Status, TraceId};
use opentelemetry_sdk::trace::SpanData;
use regex::Regex;
use service_tracing_middleware::semconv::{EXCEPTION_EVENT, EXCEPTION_MESSAGE};

use super::{validate_trace, SpanMatch, TraceReport};

/// Spans collected by a test ([`TestTracing::spans`](super::TestTracing::spans)), in export
/// order. It dereferences to `[SpanData]`; its `Display` draws them as trees.
///
/// The `assert_*` methods panic with the expectation and every collected tree, as `assert!`
/// does; `find` and friends answer without panicking.
///
/// ```
/// use service_tracing::testing::{SpanMatch, TestTracing};
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let tracing = TestTracing::new("jobs")?;
/// tracing::dispatcher::with_default(tracing.dispatch(), || {
///     tracing::info_span!("nightly").in_scope(|| {
///         tracing::info_span!("load", rows = 3).in_scope(|| {});
///     });
/// });
/// let spans = tracing.spans();
/// let load = spans.assert_span(SpanMatch::named("load").attribute("rows", 3).child_of("nightly"));
/// assert_eq!(spans.parent_of(load).map(|p| p.name.as_ref()), Some("nightly"));
/// assert!(spans.find("missing").is_none());
/// println!("{spans}"); // the tree
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Spans {
    spans: Vec<SpanData>,
    /// Spans started and not ended when these were collected.
    unended: Vec<SpanData>,
}

impl From<Vec<SpanData>> for Spans {
    fn from(spans: Vec<SpanData>) -> Self {
        Self {
            spans,
            unended: Vec::new(),
        }
    }
}

impl Deref for Spans {
    type Target = [SpanData];

    fn deref(&self) -> &[SpanData] {
        &self.spans
    }
}

impl IntoIterator for Spans {
    type Item = SpanData;
    type IntoIter = std::vec::IntoIter<SpanData>;

    fn into_iter(self) -> Self::IntoIter {
        self.spans.into_iter()
    }
}

impl<'a> IntoIterator for &'a Spans {
    type Item = &'a SpanData;
    type IntoIter = std::slice::Iter<'a, SpanData>;

    fn into_iter(self) -> Self::IntoIter {
        self.spans.iter()
    }
}

impl Spans {
    /// With the spans started and not ended yet.
    pub(super) fn with_unended(mut self, unended: Vec<SpanData>) -> Self {
        self.unended = unended;
        self
    }

    /// The spans that had started and not ended when these were collected (as they were at
    /// their start), as far as [`TestTracing`](super::TestTracing) can tell: spans made
    /// through the tracer provider or `tracing`, not the layer's server spans (whose children
    /// then show up as orphans). Empty for spans given with `From`.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// let span = tracing::dispatcher::with_default(tracing.dispatch(), || {
    ///     let span = tracing::info_span!("open");
    ///     span.in_scope(|| {}); // entered once, not closed
    ///     span
    /// });
    /// assert_eq!(tracing.spans().unended()[0].name, "open");
    /// drop(span);
    /// assert!(tracing.spans().unended().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn unended(&self) -> &[SpanData] {
        &self.unended
    }

    /// The first span matching `what`.
    ///
    /// ```
    /// let spans = service_tracing::testing::Spans::default();
    /// assert!(spans.find("GET /").is_none());
    /// ```
    pub fn find(&self, what: impl Into<SpanMatch>) -> Option<&SpanData> {
        let what = what.into();
        self.spans.iter().find(|s| what.matches(s, self))
    }

    /// Every span matching `what`.
    ///
    /// ```
    /// let spans = service_tracing::testing::Spans::default();
    /// assert_eq!(spans.find_all("GET /").len(), 0);
    /// ```
    pub fn find_all(&self, what: impl Into<SpanMatch>) -> Vec<&SpanData> {
        let what = what.into();
        self.spans
            .iter()
            .filter(|s| what.matches(s, self))
            .collect()
    }

    /// The span's parent, when it was collected (same trace, the parent's span id).
    ///
    /// ```
    /// # let spans = service_tracing::testing::Spans::default();
    /// for span in &spans {
    ///     let _parent = spans.parent_of(span);
    /// }
    /// ```
    pub fn parent_of(&self, span: &SpanData) -> Option<&SpanData> {
        if span.parent_span_id == SpanId::INVALID {
            return None;
        }
        self.spans.iter().find(|p| {
            p.span_context.span_id() == span.parent_span_id
                && p.span_context.trace_id() == span.span_context.trace_id()
        })
    }

    /// The spans whose parent is `span`, in export order.
    ///
    /// ```
    /// # let spans = service_tracing::testing::Spans::default();
    /// for span in &spans {
    ///     let _children = spans.children_of(span);
    /// }
    /// ```
    pub fn children_of(&self, span: &SpanData) -> Vec<&SpanData> {
        self.spans.iter().filter(|c| is_child(c, span)).collect()
    }

    /// The parent, its parent, and so on, as far as they were collected (a loop of parent
    /// links is followed once).
    pub(super) fn ancestors<'a>(
        &'a self,
        span: &'a SpanData,
    ) -> impl Iterator<Item = &'a SpanData> {
        let mut seen = HashSet::new();
        let mut current = span;
        std::iter::from_fn(move || {
            let parent = self.parent_of(current)?;
            if !seen.insert(parent.span_context.span_id()) {
                return None;
            }
            current = parent;
            Some(parent)
        })
    }

    /// Asserts that a span matches `what` and returns the first one.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || tracing::info_span!("job").in_scope(|| {}));
    /// let job = tracing.spans().assert_span("job").clone();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn assert_span(&self, what: impl Into<SpanMatch>) -> &SpanData {
        let what = what.into();
        match self.spans.iter().find(|s| what.matches(s, self)) {
            Some(span) => span,
            None => panic!("expected a {what}; collected:\n{self}"),
        }
    }

    /// Asserts that no span matches `what`.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing.spans().assert_no_span("GET /health");
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn assert_no_span(&self, what: impl Into<SpanMatch>) {
        let what = what.into();
        if self.spans.iter().any(|s| what.matches(s, self)) {
            panic!("expected no {what}; collected:\n{self}");
        }
    }

    /// Asserts that there are spans and they all belong to one trace, and returns its id.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || {
    ///     tracing::info_span!("job").in_scope(|| tracing::info_span!("step").in_scope(|| {}));
    /// });
    /// let _trace_id = tracing.spans().assert_one_trace();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn assert_one_trace(&self) -> TraceId {
        let mut traces = self.trace_ids();
        match traces.len() {
            1 => traces.remove(0),
            0 => panic!("expected one trace; no span was collected"),
            n => panic!("expected one trace, found {n}:\n{self}"),
        }
    }

    /// Asserts that no span has the status Error.
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing.spans().assert_no_error_status();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn assert_no_error_status(&self) {
        let failed: Vec<String> = self
            .spans
            .iter()
            .filter_map(|s| match &s.status {
                Status::Error { description } => Some(format!("{:?}: {description:?}", s.name)),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            panic!(
                "expected no span with status Error, found {}: {}; collected:\n{self}",
                failed.len(),
                failed.join(", ")
            );
        }
    }

    /// Asserts that a span holds an `exception` event whose `exception.message` matches
    /// `message`, and returns that span.
    ///
    /// ```
    /// use service_tracing::Regex;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing::dispatcher::with_default(tracing.dispatch(), || {
    ///     tracing::info_span!("job").in_scope(|| {
    ///         let error = std::io::Error::other("disk 3 is full");
    ///         service_tracing::record_error(&error);
    ///     });
    /// });
    /// let job = tracing.spans().assert_exception(&Regex::new(r"disk \d+ is full")?).clone();
    /// assert_eq!(job.name, "job");
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn assert_exception(&self, message: &Regex) -> &SpanData {
        let found = self.spans.iter().find(|s| {
            s.events.iter().any(|e| {
                e.name == EXCEPTION_EVENT
                    && e.attributes.iter().any(|kv| {
                        kv.key.as_str() == EXCEPTION_MESSAGE && message.is_match(&kv.value.as_str())
                    })
            })
        });
        match found {
            Some(span) => span,
            None => panic!(
                "expected an exception event with a message matching /{message}/; collected:\n{self}"
            ),
        }
    }

    /// [`validate_trace`] on these spans, plus an [`UnendedSpan`](super::Finding::UnendedSpan)
    /// finding for each of [`unended`](Self::unended).
    ///
    /// ```
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let tracing = service_tracing::testing::TestTracing::new("svc")?;
    /// tracing.spans().validate().assert_ok();
    /// # Ok(()) }
    /// ```
    pub fn validate(&self) -> TraceReport {
        validate_trace(&self.spans).with_unended(&self.unended)
    }

    /// The trace ids, in order of first appearance.
    fn trace_ids(&self) -> Vec<TraceId> {
        let mut ids: Vec<TraceId> = Vec::new();
        for span in &self.spans {
            let id = span.span_context.trace_id();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Writes `span` and the spans under it, each once.
    fn write_tree(
        &self,
        f: &mut fmt::Formatter<'_>,
        span: &SpanData,
        depth: usize,
        written: &mut HashSet<SpanId>,
    ) -> fmt::Result {
        if !written.insert(span.span_context.span_id()) {
            return Ok(());
        }
        write!(
            f,
            "{:indent$}- {} [{:?}",
            "",
            span.name,
            span.span_kind,
            indent = depth * 2
        )?;
        if let Status::Error { description } = &span.status {
            write!(f, ", Error {description:?}")?;
        }
        f.write_str("]")?;
        for kv in &span.attributes {
            write!(f, " {}={}", kv.key, kv.value)?;
        }
        f.write_str("\n")?;
        for event in span.events.iter() {
            write!(f, "{:indent$}  • {}", "", event.name, indent = depth * 2)?;
            for kv in &event.attributes {
                write!(f, " {}={}", kv.key, kv.value)?;
            }
            f.write_str("\n")?;
        }
        for child in self.children_of(span) {
            self.write_tree(f, child, depth + 1, written)?;
        }
        Ok(())
    }
}

fn is_child(child: &SpanData, parent: &SpanData) -> bool {
    child.parent_span_id == parent.span_context.span_id()
        && child.span_context.trace_id() == parent.span_context.trace_id()
        && child.span_context.span_id() != parent.span_context.span_id()
}

/// Every trace as a tree: the spans without a collected parent first, each followed by its
/// children, indented.
impl fmt::Display for Spans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.spans.is_empty() {
            return f.write_str("(no spans)\n");
        }
        let mut written = HashSet::new();
        for trace in self.trace_ids() {
            writeln!(f, "trace {trace}")?;
            for span in self
                .spans
                .iter()
                .filter(|s| s.span_context.trace_id() == trace && self.parent_of(s).is_none())
            {
                self.write_tree(f, span, 1, &mut written)?;
            }
        }
        // Spans in a loop of parent links have no root; show them too.
        for span in &self.spans {
            if !written.contains(&span.span_context.span_id()) {
                self.write_tree(f, span, 1, &mut written)?;
            }
        }
        Ok(())
    }
}
