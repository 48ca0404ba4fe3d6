//! [`SpanMatch`]: which span a test is looking for.

use std::fmt;

use opentelemetry::trace::SpanKind;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;

use super::Spans;

/// A description of a span: its name, and optionally its kind, attributes, and the span it
/// is under. A `&str` converts to a match on the name alone.
///
/// Attribute values are compared as text, so `.attribute("http.response.status_code", 200)`
/// and `.attribute("http.response.status_code", "200")` both match the integer 200.
///
/// ```
/// use service_tracing::opentelemetry::trace::SpanKind;
/// use service_tracing::testing::SpanMatch;
///
/// let query = SpanMatch::named("db.query")
///     .attribute("db.system", "postgresql")
///     .has_attribute("db.statement")
///     .under(SpanMatch::named("GET /users/{id}").kind(SpanKind::Server));
/// assert_eq!(
///     query.to_string(),
///     r#"span "db.query" with db.system = "postgresql", with db.statement, under (span "GET /users/{id}" of kind Server)"#
/// );
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SpanMatch {
    name: String,
    kind: Option<SpanKind>,
    attributes: Vec<(String, Option<String>)>,
    parent: Option<(Relation, Box<SpanMatch>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relation {
    /// The parent itself.
    Child,
    /// The parent or any span above it.
    Under,
}

impl SpanMatch {
    /// A span named `name`.
    ///
    /// ```
    /// let server = service_tracing::testing::SpanMatch::named("GET /users/{id}");
    /// ```
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind: None,
            attributes: Vec::new(),
            parent: None,
        }
    }

    /// ... of kind `kind`.
    ///
    /// ```
    /// use service_tracing::opentelemetry::trace::SpanKind;
    /// let server = service_tracing::testing::SpanMatch::named("GET /").kind(SpanKind::Server);
    /// ```
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// ... with the attribute `key` equal to `value` (compared as text).
    ///
    /// ```
    /// let ok = service_tracing::testing::SpanMatch::named("GET /")
    ///     .attribute("http.response.status_code", 200);
    /// ```
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.attributes
            .push((key.into(), Some(value.into().as_str().into_owned())));
        self
    }

    /// ... with the attribute `key`, whatever its value.
    ///
    /// ```
    /// let with_id = service_tracing::testing::SpanMatch::named("GET /").has_attribute("correlation.id");
    /// ```
    pub fn has_attribute(mut self, key: impl Into<String>) -> Self {
        self.attributes.push((key.into(), None));
        self
    }

    /// ... whose parent, or any span above it in the same trace, matches `ancestor`.
    ///
    /// ```
    /// let query = service_tracing::testing::SpanMatch::named("db.query").under("GET /users/{id}");
    /// ```
    pub fn under(mut self, ancestor: impl Into<SpanMatch>) -> Self {
        self.parent = Some((Relation::Under, Box::new(ancestor.into())));
        self
    }

    /// ... whose parent itself matches `parent`.
    ///
    /// ```
    /// let query = service_tracing::testing::SpanMatch::named("db.query").child_of("load user");
    /// ```
    pub fn child_of(mut self, parent: impl Into<SpanMatch>) -> Self {
        self.parent = Some((Relation::Child, Box::new(parent.into())));
        self
    }

    /// Whether `span`, one of `spans`, matches (the parent is looked for in `spans`).
    pub(super) fn matches(&self, span: &SpanData, spans: &Spans) -> bool {
        span.name == self.name
            && self.kind.as_ref().is_none_or(|k| *k == span.span_kind)
            && self.attributes.iter().all(|(key, want)| {
                span.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == key)
                    .is_some_and(|kv| {
                        want.as_ref()
                            .is_none_or(|want| kv.value.as_str() == want.as_str())
                    })
            })
            && match &self.parent {
                None => true,
                Some((Relation::Child, parent)) => spans
                    .parent_of(span)
                    .is_some_and(|p| parent.matches(p, spans)),
                Some((Relation::Under, ancestor)) => {
                    spans.ancestors(span).any(|a| ancestor.matches(a, spans))
                }
            }
    }
}

impl From<&str> for SpanMatch {
    fn from(name: &str) -> Self {
        Self::named(name)
    }
}

impl From<String> for SpanMatch {
    fn from(name: String) -> Self {
        Self::named(name)
    }
}

impl fmt::Display for SpanMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "span {:?}", self.name)?;
        if let Some(kind) = &self.kind {
            write!(f, " of kind {kind:?}")?;
        }
        for (i, (key, value)) in self.attributes.iter().enumerate() {
            f.write_str(if i == 0 { " with " } else { ", with " })?;
            match value {
                Some(value) => write!(f, "{key} = {value:?}")?,
                None => f.write_str(key)?,
            }
        }
        match &self.parent {
            Some((Relation::Child, parent)) => write!(f, ", child of ({parent})"),
            Some((Relation::Under, ancestor)) => write!(f, ", under ({ancestor})"),
            None => Ok(()),
        }
    }
}
