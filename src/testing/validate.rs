//! [`validate_trace`]: what a tracing backend would show as a broken trace.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use service_tracing_middleware::semconv;

/// The attributes the HTTP semantic conventions require on a server span.
const SERVER_REQUIRED: [&str; 3] = [
    semconv::HTTP_REQUEST_METHOD,
    semconv::URL_PATH,
    semconv::URL_SCHEME,
];
/// ... and on a client span.
const CLIENT_REQUIRED: [&str; 4] = [
    semconv::HTTP_REQUEST_METHOD,
    semconv::URL_FULL,
    semconv::SERVER_ADDRESS,
    semconv::SERVER_PORT,
];

/// ... and on a generative AI client span (besides `gen_ai.operation.name`, which makes it one).
const GEN_AI_CLIENT_REQUIRED: [&str; 1] = ["gen_ai.provider.name"];

/// What a client span must carry, by the domain it declares: a database (`db.system.name`, or
/// the older `db.system`), RPC (`rpc.system`, `rpc.system.name`) or messaging
/// (`messaging.system`) call already has its conventions' required attribute; a generative AI
/// call (`gen_ai.operation.name`) needs its provider; any other client span is an HTTP call.
fn client_required(span: &SpanData) -> &'static [&'static str] {
    let has = |key: &str| span.attributes.iter().any(|kv| kv.key.as_str() == key);
    let declares = |keys: &[&str]| keys.iter().any(|key| has(key));
    if declares(&[
        "db.system.name",
        "db.system",
        "rpc.system",
        "rpc.system.name",
        "messaging.system",
    ]) {
        &[]
    } else if has("gen_ai.operation.name") {
        &GEN_AI_CLIENT_REQUIRED
    } else {
        &CLIENT_REQUIRED
    }
}

/// One problem [`validate_trace`] found; its `Display` is one line naming the span.
///
/// ```
/// use service_tracing::testing::{Finding, TestTracing};
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let tracing = TestTracing::new("jobs")?;
/// tracing::dispatcher::with_default(tracing.dispatch(), || {
///     tracing::info_span!("nightly").in_scope(|| tracing::info_span!("load").in_scope(|| {}));
/// });
/// let only_the_child: Vec<_> = tracing.spans().iter().filter(|s| s.name == "load").cloned().collect();
/// for finding in service_tracing::testing::validate_trace(&only_the_child).findings() {
///     match finding {
///         Finding::OrphanSpan { name, .. } => assert_eq!(name, "load"),
///         other => panic!("unexpected {other}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finding {
    /// The span names as parent a span of another trace, or itself: a backend draws it
    /// under the wrong tree or under none.
    #[non_exhaustive]
    BrokenParentLink {
        /// The span's name.
        name: String,
        /// The span's id.
        span_id: SpanId,
        /// The parent id it names.
        parent_id: SpanId,
    },
    /// The span's parent is in-process (not a remote caller) but was not collected: it was
    /// never ended, was not sampled while its child was, or was lost.
    #[non_exhaustive]
    OrphanSpan {
        /// The span's name.
        name: String,
        /// The span's id.
        span_id: SpanId,
        /// The missing parent's id.
        parent_id: SpanId,
    },
    /// A server or client span without an attribute the HTTP semantic conventions require
    /// (server: `http.request.method`, `url.path`, `url.scheme`; client:
    /// `http.request.method`, `url.full`, `server.address`, `server.port`). A client span
    /// that declares another domain is held to that one's instead: nothing more for a
    /// database, RPC or messaging call (`db.system.name`, `rpc.system`, `messaging.system`),
    /// `gen_ai.provider.name` for a generative AI call (`gen_ai.operation.name`).
    #[non_exhaustive]
    MissingAttribute {
        /// The span's name.
        name: String,
        /// The span's id.
        span_id: SpanId,
        /// The span's kind (Server or Client).
        kind: SpanKind,
        /// The attribute missing.
        attribute: &'static str,
    },
    /// The span starts before its parent starts or after its parent ended: the clocks that
    /// timed them disagree (a child that ends after its parent, such as work left running
    /// after the response, is not a finding).
    #[non_exhaustive]
    ClockSkew {
        /// The span's name.
        name: String,
        /// The span's id.
        span_id: SpanId,
        /// The parent's name.
        parent: String,
        /// How far outside the parent's time the span starts.
        by: Duration,
    },
    /// The span has no end time, or one before its start; or, in
    /// [`Spans::validate`](super::Spans::validate), it started and was never ended.
    #[non_exhaustive]
    UnendedSpan {
        /// The span's name.
        name: String,
        /// The span's id.
        span_id: SpanId,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::BrokenParentLink {
                name,
                span_id,
                parent_id,
            } => write!(
                f,
                "broken parent link: {name:?} ({span_id}) names parent {parent_id}, a span of another trace or itself"
            ),
            Finding::OrphanSpan {
                name,
                span_id,
                parent_id,
            } => write!(
                f,
                "orphan span: {name:?} ({span_id}) has parent {parent_id}, which was not collected"
            ),
            Finding::MissingAttribute {
                name,
                span_id,
                kind,
                attribute,
            } => write!(
                f,
                "missing attribute: {kind:?} span {name:?} ({span_id}) has no `{attribute}`"
            ),
            Finding::ClockSkew {
                name,
                span_id,
                parent,
                by,
            } => write!(
                f,
                "clock skew: {name:?} ({span_id}) starts {by:?} outside its parent {parent:?}"
            ),
            Finding::UnendedSpan { name, span_id } => {
                write!(f, "unended span: {name:?} ({span_id}) has no valid end time")
            }
        }
    }
}

/// What [`validate_trace`] found; empty when the spans form sound traces.
///
/// ```
/// let report = service_tracing::testing::validate_trace(&[]);
/// assert!(report.is_ok());
/// report.assert_ok();
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceReport {
    findings: Vec<Finding>,
}

impl TraceReport {
    /// With an [`UnendedSpan`](Finding::UnendedSpan) finding for each of `unended`.
    pub(super) fn with_unended(mut self, unended: &[SpanData]) -> Self {
        self.findings
            .extend(unended.iter().map(|span| Finding::UnendedSpan {
                name: span.name.to_string(),
                span_id: span.span_context.span_id(),
            }));
        self
    }

    /// Every finding, span by span in the order given.
    ///
    /// ```
    /// let report = service_tracing::testing::validate_trace(&[]);
    /// assert!(report.findings().is_empty());
    /// ```
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Whether nothing was found.
    ///
    /// ```
    /// assert!(service_tracing::testing::validate_trace(&[]).is_ok());
    /// ```
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// Panics, listing the findings, unless there are none.
    ///
    /// ```
    /// service_tracing::testing::validate_trace(&[]).assert_ok();
    /// ```
    #[track_caller]
    pub fn assert_ok(&self) {
        if !self.is_ok() {
            panic!("the trace is not valid:\n{self}");
        }
    }
}

impl fmt::Display for TraceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.findings.is_empty() {
            return f.write_str("no findings\n");
        }
        for finding in &self.findings {
            writeln!(f, "- {finding}")?;
        }
        Ok(())
    }
}

/// Checks spans (one trace or several) for what a backend would show as broken: broken parent
/// links, orphan spans, server and client spans missing the HTTP attributes the semantic
/// conventions require, children starting outside their parent's time, unended spans. See
/// [`Finding`].
///
/// A span whose parent is remote (a caller in another process) may lack it: it is not an
/// orphan; when the caller's span is among them (both services traced in one test), the link
/// and the clocks are checked as for any parent, which is where clock skew between
/// processes shows. Every server and client span is checked as an HTTP span (the kinds this
/// library makes).
///
/// ```
/// use service_tracing::testing::{validate_trace, Finding, TestTracing};
/// # fn main() -> Result<(), service_tracing::SetupError> {
/// let tracing = TestTracing::new("jobs")?;
/// tracing::dispatcher::with_default(tracing.dispatch(), || {
///     tracing::info_span!("nightly").in_scope(|| tracing::info_span!("load").in_scope(|| {}));
/// });
/// let mut spans: Vec<_> = tracing.spans().to_vec();
/// assert!(validate_trace(&spans).is_ok());
///
/// spans.retain(|s| s.name != "nightly"); // as if the parent had never ended
/// let report = validate_trace(&spans);
/// assert!(matches!(report.findings(), [Finding::OrphanSpan { name, .. }] if name == "load"));
/// # Ok(()) }
/// ```
pub fn validate_trace(spans: &[SpanData]) -> TraceReport {
    let by_id: HashMap<SpanId, Vec<&SpanData>> =
        spans.iter().fold(HashMap::new(), |mut map, span| {
            map.entry(span.span_context.span_id())
                .or_default()
                .push(span);
            map
        });
    let mut findings = Vec::new();
    for span in spans {
        check_span(span, &mut findings);
        check_parent(span, &by_id, &mut findings);
    }
    TraceReport { findings }
}

/// What one span shows on its own: not ended, or without the attributes its kind needs.
fn check_span(span: &SpanData, findings: &mut Vec<Finding>) {
    let name = || span.name.to_string();
    let span_id = span.span_context.span_id();
    if span.end_time == SystemTime::UNIX_EPOCH || span.end_time < span.start_time {
        findings.push(Finding::UnendedSpan {
            name: name(),
            span_id,
        });
    }
    let required: &[&'static str] = match span.span_kind {
        SpanKind::Server => &SERVER_REQUIRED,
        SpanKind::Client => client_required(span),
        _ => &[],
    };
    for attribute in required {
        if !span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == *attribute)
        {
            findings.push(Finding::MissingAttribute {
                name: name(),
                span_id,
                kind: span.span_kind.clone(),
                attribute,
            });
        }
    }
}

/// What a span's link to its parent shows: broken, orphaned, or skewed in time.
fn check_parent(
    span: &SpanData,
    by_id: &HashMap<SpanId, Vec<&SpanData>>,
    findings: &mut Vec<Finding>,
) {
    let name = || span.name.to_string();
    let span_id = span.span_context.span_id();
    let parent_id = span.parent_span_id;
    if parent_id == SpanId::INVALID {
        return;
    }
    let trace_id: TraceId = span.span_context.trace_id();
    let candidates = by_id.get(&parent_id).map(Vec::as_slice).unwrap_or_default();
    let parent = candidates
        .iter()
        .find(|p| p.span_context.trace_id() == trace_id);
    match parent {
        _ if parent_id == span_id => findings.push(Finding::BrokenParentLink {
            name: name(),
            span_id,
            parent_id,
        }),
        Some(parent) => {
            let by = parent
                .start_time
                .duration_since(span.start_time)
                .ok()
                .filter(|d| !d.is_zero())
                .or_else(|| {
                    span.start_time
                        .duration_since(parent.end_time)
                        .ok()
                        .filter(|d| !d.is_zero())
                });
            if let Some(by) = by {
                findings.push(Finding::ClockSkew {
                    name: name(),
                    span_id,
                    parent: parent.name.to_string(),
                    by,
                });
            }
        }
        None if !candidates.is_empty() => findings.push(Finding::BrokenParentLink {
            name: name(),
            span_id,
            parent_id,
        }),
        // A caller in another process, not among these spans.
        None if span.parent_span_is_remote => {}
        None => findings.push(Finding::OrphanSpan {
            name: name(),
            span_id,
            parent_id,
        }),
    }
}
