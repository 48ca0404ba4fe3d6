//! [`Redactor`]: the one redaction policy applied wherever data leaves the process.
//!
//! # Where it runs
//!
//! Once per exit, never on the request path:
//!
//! - **Spans** (OTLP and the console exporter): the export worker runs
//!   [`Redactor::redact_span`] on its own thread, on each span of a batch just before the
//!   exporter sees it: the name, every attribute, every event (so `exception.message` and
//!   `exception.stacktrace`), every link's attributes and the status description.
//! - **Error groups** and what is made from them (the summary, alert callbacks, webhook bodies,
//!   OTLP log records): error tracking runs [`Redactor::redact`] on each error's type, message
//!   and operation before it is fingerprinted and stored, so nothing downstream ever held the
//!   secret. Log records and webhook bodies carry only those redacted texts plus fixed
//!   vocabulary (rule names, severities, counts, ids).
//! - **Metric labels** never see free text: they are the normalised method, the route
//!   template (never the raw path), the status code, an error class from a fixed list and, on
//!   the client, the server's host name.
//! - **Headers**: `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and
//!   `X-Api-Key`-style headers are never captured (see the middleware's
//!   `semconv::is_sensitive_header`); others only when allow-listed.
//!
//! # What it replaces
//!
//! - An attribute whose **key** holds a denied term at a word boundary (`password`, `passwd`,
//!   `pwd`, `secret`, `token`, `api_key`, `apikey`, `api-key`, `authorization`, `private_key`,
//!   `credential`, `cookie`, and any added with [`Redactor::with_denied_key`]) has its value
//!   replaced with `[REDACTED]` whatever it is (booleans excepted). `db.password`,
//!   `access_token`, `x-api-key` and `accessToken` are denied; `input_tokens` and `tokenizer`
//!   are not.
//! - In free text (string values, event and span names, the status description), by the
//!   default value patterns, in this order: `Bearer <token>` and `Basic <credentials>` (the
//!   scheme kept; prose such as "basic auth is disabled" or "the bearer of" is left alone),
//!   `key=value` / `key: value` pairs whose key is denied (the value, unless it is already a
//!   marker: `[REDACTED]…`, or exactly the `REDACTED` the tracing layer writes for every query
//!   value, as in `url.query` = `api_key=REDACTED`), JWTs, cloud keys (AWS
//!   `AKIA…`/`ASIA…`, Google `AIza…`, GitHub `ghp_…`/`github_pat_…`, GitLab `glpat-…`,
//!   Slack `xox?-…`, Stripe `sk_live_…`), e-mail addresses, and card numbers (12 to 19
//!   digits, optionally grouped by single spaces or dashes, that pass the Luhn check).
//!
//! # Cost
//!
//! Every string first goes through one branch-free byte scan (a class table, one load and one
//! `or` per byte) that looks for what any default pattern needs: an `@`, 12 digits, an `=` or
//! `:` next to a denied term, or the first two letters of a literal (`eyJ`, `AKIA`, `ghp_`,
//! `xox`, `sk_live_`, `AIza`, `Bearer`, `Basic` and the like, through a 64 Ki-bit table of
//! byte pairs). Most strings stop there; the closer looks (digits, dashes of a UUID, `b`s, `=`
//! and `:`) read eight bytes at a time. A string that cannot hold any of them is not handed to
//! a regular expression, and nothing is allocated. Extra patterns and rules run on every
//! string. See BENCHMARKS.md ("Redaction's cost").

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use opentelemetry::trace::Status;
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;
use service_tracing_middleware::tracer::RequestValue;

use crate::server_span::ServerRecord;

// One file per job: the byte scan that lets most strings through untouched, the key tables it
// reads, the per-thread memory of key verdicts, and the patterns with their hand-written checks.
mod keys;
mod patterns;
mod scan;
mod verdicts;

use keys::{Keys, Needs};
use patterns::{
    is_basic_credential, kept_value, looks_like_token, patterns, redact_cards, replace,
};
use verdicts::KEY_VERDICTS;
#[cfg(test)]
use {patterns::luhn, scan::classify, scan::is_uuid};

/// The pattern type [`Redactor::with_pattern`] takes (the `regex` crate's).
pub use regex::Regex;

/// What a redacted part is replaced with.
///
/// ```
/// use service_tracing::redact::{Redactor, REDACTED};
/// assert_eq!(Redactor::new().redact("a@b.io"), REDACTED);
/// ```
pub const REDACTED: &str = "[REDACTED]";

/// What the tracing layer writes for each query value (`url.query`, `url.full`): a value that
/// is exactly this holds nothing left to hide, whatever its key.
const QUERY_VALUE_REDACTED: &str = service_tracing_middleware::semconv::REDACTED;

/// The default bound on text redacted with [`Redactor::redact`], in bytes.
pub(crate) const DEFAULT_MAX_LEN: usize = 512;

/// The attribute-key terms denied by default.
pub const DEFAULT_DENIED_KEYS: [&str; 12] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "private_key",
    "credential",
    "cookie",
];

type Rule = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The redaction policy: takes secrets and personal data out of everything the process
/// exports. See the [module docs](self) for where it runs and what it replaces.
///
/// [`ServiceTracing::redactor`](crate::ServiceTracing::redactor) sets the one used for spans,
/// error groups, webhook bodies and log records (default: [`Redactor::new`]).
///
/// ```
/// use service_tracing::redact::Redactor;
///
/// let redactor = Redactor::new()
///     .with_denied_key("ssn")
///     .with_rule(|text| text.contains("acme-internal").then(|| "[host withheld]".to_owned()));
/// assert_eq!(
///     redactor.redact("login failed for bob@example.com with password=hunter2"),
///     "login failed for [REDACTED] with password=[REDACTED]"
/// );
/// assert_eq!(redactor.redact("customer ssn: 123-45-6789"), "customer ssn: [REDACTED]");
/// assert_eq!(redactor.redact("acme-internal down"), "[host withheld]");
/// // Prose is left alone.
/// assert_eq!(redactor.redact("basic auth is disabled"), "basic auth is disabled");
/// ```
#[derive(Clone)]
#[must_use]
pub struct Redactor {
    defaults: bool,
    denied: Vec<String>,
    keys: Arc<Keys>,
    patterns: Vec<Regex>,
    rules: Vec<Arc<Rule>>,
    max_len: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("defaults", &self.defaults)
            .field("denied_keys", &self.denied)
            .field("extra_patterns", &self.patterns.len())
            .field("custom_rules", &self.rules.len())
            .field("max_len", &self.max_len)
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new()
    }
}

impl Redactor {
    /// The default value patterns and denied keys; [`redact`](Self::redact) cuts its output to
    /// 512 bytes.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert_eq!(redactor.redact("pwd=x"), "pwd=[REDACTED]");
    /// ```
    pub fn new() -> Self {
        let denied: Vec<String> = DEFAULT_DENIED_KEYS.map(str::to_owned).to_vec();
        Self {
            defaults: true,
            keys: Arc::new(Keys::new(&denied, true)),
            denied,
            patterns: Vec::new(),
            rules: Vec::new(),
            max_len: DEFAULT_MAX_LEN,
        }
    }

    /// Neither the default value patterns nor the default denied keys: only what is added and
    /// the length bound.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::without_defaults();
    /// assert_eq!(redactor.redact("bob@example.com password=x"), "bob@example.com password=x");
    /// ```
    pub fn without_defaults() -> Self {
        Self {
            defaults: false,
            keys: Arc::new(Keys::new(&[], false)),
            denied: Vec::new(),
            ..Self::new()
        }
    }

    /// Denies one more attribute-key term (any case, at least two bytes; matched at word
    /// boundaries as the defaults are). Its values are replaced, in attributes and in
    /// `key=value` pairs of free text.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// let redactor = service_tracing::redact::Redactor::new().with_denied_key("ssn");
    /// assert_eq!(redactor.redact("ssn=123-45-6789"), "ssn=[REDACTED]");
    /// let mut attributes = vec![KeyValue::new("customer.ssn", "123-45-6789")];
    /// redactor.redact_attributes(&mut attributes);
    /// assert_eq!(attributes[0].value.as_str(), "[REDACTED]");
    /// ```
    pub fn with_denied_key(mut self, term: impl Into<String>) -> Self {
        self.denied.push(term.into());
        self.keys = Arc::new(Keys::new(&self.denied, self.defaults));
        self
    }

    /// Adds a pattern whose every match is replaced with `[REDACTED]`, after the default ones.
    /// Extra patterns run on every string (no byte scan skips them), so keep them few.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new()
    ///     .with_pattern(service_tracing::redact::Regex::new(r"\bEMP-[0-9]{6}\b").expect("valid"));
    /// assert_eq!(redactor.redact("employee EMP-123456 left"), "employee [REDACTED] left");
    /// ```
    pub fn with_pattern(mut self, pattern: Regex) -> Self {
        self.patterns.push(pattern);
        self
    }

    /// Adds a rule run after the patterns: it gets the text redacted so far and returns
    /// `Some(replacement)` to replace it, or `None` to keep it. A rule that panics replaces the
    /// whole text with `[REDACTED]`. Rules run on every string.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new()
    ///     .with_rule(|text| Some(text.replace("acme-internal", "[host]")));
    /// assert_eq!(redactor.redact("acme-internal down"), "[host] down");
    /// ```
    pub fn with_rule(
        mut self,
        rule: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Arc::new(rule));
        self
    }

    /// Cuts what [`redact`](Self::redact) returns to at most `max` bytes (at least 16). Spans
    /// are not cut.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new().with_max_len(16);
    /// assert_eq!(redactor.redact("a rather long message indeed"), "a rather long me");
    /// ```
    pub fn with_max_len(mut self, max: usize) -> Self {
        self.max_len = max.max(16);
        self
    }

    /// Whether values under this attribute key are replaced whole.
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert!(redactor.denies_key("db.password"));
    /// assert!(redactor.denies_key("http.request.header.x-api-key"));
    /// assert!(!redactor.denies_key("gen_ai.usage.input_tokens"));
    /// ```
    pub fn denies_key(&self, key: &str) -> bool {
        self.keys.denies(key.as_bytes())
    }

    /// The text with the policy applied, cut to the length bound (what error tracking stores).
    ///
    /// ```
    /// let redactor = service_tracing::redact::Redactor::new();
    /// assert_eq!(
    ///     redactor.redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"),
    ///     "Authorization: Bearer [REDACTED]"
    /// );
    /// ```
    pub fn redact(&self, text: &str) -> String {
        let text = truncate(text, self.max_len.saturating_mul(4));
        match self.scrub(text) {
            Some(redacted) => truncate(&redacted, self.max_len).to_owned(),
            None => truncate(text, self.max_len).to_owned(),
        }
    }

    /// The policy applied to one span in place: its name, attributes, events (with
    /// `exception.message` and `exception.stacktrace`), links' attributes and status
    /// description. The export worker calls it on its own thread; call it yourself in an
    /// exporter of your own.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status};
    /// use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
    /// use std::time::SystemTime;
    ///
    /// let mut events = SpanEvents::default();
    /// events.events.push(Event::new(
    ///     "exception",
    ///     SystemTime::now(),
    ///     vec![KeyValue::new("exception.message", "bad card 4111 1111 1111 1111")],
    ///     0,
    /// ));
    /// let mut span = SpanData {
    ///     span_context: SpanContext::empty_context(),
    ///     parent_span_id: SpanId::INVALID,
    ///     parent_span_is_remote: false,
    ///     span_kind: SpanKind::Server,
    ///     name: "POST /pay".into(),
    ///     start_time: SystemTime::now(),
    ///     end_time: SystemTime::now(),
    ///     attributes: vec![KeyValue::new("user.password", "hunter2")],
    ///     dropped_attributes_count: 0,
    ///     events,
    ///     links: SpanLinks::default(),
    ///     status: Status::error("login of bob@example.com failed"),
    ///     instrumentation_scope: Default::default(),
    /// };
    /// service_tracing::redact::Redactor::new().redact_span(&mut span);
    /// assert_eq!(span.attributes[0].value.as_str(), "[REDACTED]");
    /// assert_eq!(span.events[0].attributes[0].value.as_str(), "bad card [REDACTED]");
    /// assert_eq!(span.status, Status::error("login of [REDACTED] failed"));
    /// ```
    pub fn redact_span(&self, span: &mut SpanData) {
        if let Some(name) = self.scrub(&span.name) {
            span.name = Cow::Owned(name);
        }
        self.redact_attributes(&mut span.attributes);
        for event in span.events.events.iter_mut() {
            if let Some(name) = self.scrub(&event.name) {
                event.name = Cow::Owned(name);
            }
            self.redact_attributes(&mut event.attributes);
        }
        for link in span.links.links.iter_mut() {
            self.redact_attributes(&mut link.attributes);
        }
        if let Status::Error { description } = &mut span.status {
            if let Some(redacted) = self.scrub(description) {
                *description = Cow::Owned(redacted);
            }
        }
    }

    /// [`redact_span`](Self::redact_span) for a server span of the layer's own type: its span,
    /// then its request's attributes, which stay as the layer read them; what the policy
    /// replaces is noted beside them (`record.redacted`) and written instead.
    pub(crate) fn redact_record(&self, record: &mut ServerRecord) {
        self.redact_span(&mut record.span);
        if record.request.is_none() {
            return;
        }
        // Under the default policy, texts from the process's own code (the method and scheme
        // vocabulary, interned route templates) hold nothing to take out, and a text shared
        // between requests (a caller's user agent, the host it calls) needs one look per
        // thread, not one per span.
        let plain = self.patterns.is_empty() && self.rules.is_empty();
        let mut changed: Vec<(&'static str, String)> = Vec::new();
        KEY_VERDICTS.with(|cell| {
            let mut memory = cell.try_borrow_mut().ok();
            let mut memory = memory.as_deref_mut().map(|m| m.of(&self.keys));
            // The request's attributes and the status code kept beside them; nothing is
            // noted as redacted yet, so each comes as the layer read it.
            // With the default keys none of the request's is denied: no look per key.
            let keys_to_check = self.keys.denies_a_request_key;
            record.for_each_request_attribute(|key, value| {
                let denied = keys_to_check
                    && match memory.as_deref_mut() {
                        Some(m) => m.denies(&self.keys, &Key::from_static_str(key)),
                        None => self.keys.denies(key.as_bytes()),
                    };
                if denied {
                    changed.push((key, REDACTED.to_owned()));
                    return;
                }
                let text = match value {
                    RequestValue::Static(_) if plain => return,
                    RequestValue::Static(s) | RequestValue::Text(s) => s,
                    RequestValue::Shared(s) => {
                        if plain {
                            if let Some(m) = memory.as_deref_mut() {
                                if m.clean_shared(s, |t| self.scrub(t).is_none()) {
                                    return;
                                }
                            }
                        }
                        &**s
                    }
                    // Numbers and addresses are no free text.
                    _ => return,
                };
                if let Some(redacted) = self.scrub(text) {
                    changed.push((key, redacted));
                }
            });
        });
        record.redacted = changed;
    }

    /// The policy applied to attributes in place: denied keys' values replaced whole (booleans
    /// kept), string and string-array values run through the value patterns.
    ///
    /// ```
    /// use opentelemetry::KeyValue;
    /// let mut attributes = vec![
    ///     KeyValue::new("db.password", "hunter2"),
    ///     KeyValue::new("note", "mail bob@example.com"),
    ///     KeyValue::new("input_tokens", 42),
    /// ];
    /// service_tracing::redact::Redactor::new().redact_attributes(&mut attributes);
    /// assert_eq!(attributes[0].value.as_str(), "[REDACTED]");
    /// assert_eq!(attributes[1].value.as_str(), "mail [REDACTED]");
    /// assert_eq!(attributes[2].value.as_str(), "42");
    /// ```
    pub fn redact_attributes(&self, attributes: &mut [KeyValue]) {
        // A custom rule that redacts attributes itself finds the memory borrowed and goes
        // without it.
        KEY_VERDICTS.with(|cell| match cell.try_borrow_mut() {
            Ok(mut verdicts) => {
                let verdicts = verdicts.of(&self.keys);
                for kv in attributes.iter_mut() {
                    let denied = verdicts.denies(&self.keys, &kv.key);
                    self.redact_attribute(kv, denied);
                }
            }
            Err(_) => {
                for kv in attributes.iter_mut() {
                    let denied = self.keys.denies(kv.key.as_str().as_bytes());
                    self.redact_attribute(kv, denied);
                }
            }
        });
    }

    /// A string the scan clears is settled here, inline in the loop over attributes; anything
    /// else goes to [`redact_attribute_further`](Self::redact_attribute_further).
    #[inline(always)]
    fn redact_attribute(&self, kv: &mut KeyValue, denied: bool) {
        match &mut kv.value {
            Value::String(s) if !denied => {
                let needs = self.keys.scan(s.as_str());
                if needs.any() || !self.patterns.is_empty() || !self.rules.is_empty() {
                    if let Some(redacted) = self.scrub_further(s.as_str(), needs) {
                        *s = StringValue::from(redacted);
                    }
                }
            }
            Value::Bool(_) | Value::I64(_) | Value::F64(_) if !denied => {}
            _ => self.redact_attribute_further(kv, denied),
        }
    }

    #[cold]
    #[inline(never)]
    fn redact_attribute_further(&self, kv: &mut KeyValue, denied: bool) {
        if denied {
            if !matches!(kv.value, Value::Bool(_) | Value::Array(Array::Bool(_))) {
                kv.value = Value::String(StringValue::from(REDACTED));
            }
            return;
        }
        match &mut kv.value {
            Value::String(s) => {
                if let Some(redacted) = self.scrub(s.as_str()) {
                    *s = StringValue::from(redacted);
                }
            }
            Value::Array(Array::String(values)) => {
                for s in values.iter_mut() {
                    if let Some(redacted) = self.scrub(s.as_str()) {
                        *s = StringValue::from(redacted);
                    }
                }
            }
            _ => {}
        }
    }

    /// The text with the patterns and rules applied, or `None` when nothing changed. Not cut.
    #[inline(always)]
    pub(crate) fn scrub(&self, text: &str) -> Option<String> {
        let needs = self.keys.scan(text);
        if !needs.any() && self.patterns.is_empty() && self.rules.is_empty() {
            return None;
        }
        self.scrub_further(text, needs)
    }

    #[cold]
    #[inline(never)]
    fn scrub_further(&self, text: &str, needs: Needs) -> Option<String> {
        let mut out: Cow<'_, str> = Cow::Borrowed(text);
        if needs.any() {
            self.apply_defaults(&mut out, needs);
        }
        for pattern in &self.patterns {
            replace(&mut out, pattern, |_| Cow::Borrowed(REDACTED));
        }
        for rule in &self.rules {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rule(&out)));
            match outcome {
                Ok(Some(replaced)) => out = Cow::Owned(replaced),
                Ok(None) => {}
                Err(_) => out = Cow::Borrowed(REDACTED),
            }
        }
        (out != text).then(|| out.into_owned())
    }

    #[cold]
    #[inline(never)]
    fn apply_defaults(&self, out: &mut Cow<'_, str>, needs: Needs) {
        let p = patterns();
        if needs.literal && self.defaults {
            replace(out, &p.bearer, |c| {
                if looks_like_token(&c[3]) {
                    Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                } else {
                    Cow::Owned(c[0].to_owned())
                }
            });
            replace(out, &p.basic, |c| {
                if is_basic_credential(&c[3]) {
                    Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                } else {
                    Cow::Owned(c[0].to_owned())
                }
            });
        }
        if needs.pair {
            if let Some(kv) = &self.keys.kv {
                replace(out, kv, |c| {
                    let value = &c[3];
                    let kept = value.eq_ignore_ascii_case("bearer")
                        || value.eq_ignore_ascii_case("basic")
                        || kept_value(value)
                        || !self.keys.denies(c[1].as_bytes());
                    if kept {
                        Cow::Owned(c[0].to_owned())
                    } else {
                        Cow::Owned(format!("{}{}{REDACTED}", &c[1], &c[2]))
                    }
                });
            }
        }
        if !self.defaults {
            return;
        }
        if needs.literal {
            replace(out, &p.jwt, |_| Cow::Borrowed(REDACTED));
            replace(out, &p.cloud, |_| Cow::Borrowed(REDACTED));
        }
        if needs.email {
            replace(out, &p.email, |_| Cow::Borrowed(REDACTED));
        }
        if needs.card {
            if let Some(redacted) = redact_cards(out) {
                *out = Cow::Owned(redacted);
            }
        }
    }
}

/// `s` cut to at most `max` bytes on a character boundary (error tracking cuts its texts with it
/// too): the server layer's own cut, so every text is cut one way.
pub(crate) use service_tracing_middleware::semconv::truncate_str as truncate;

#[cfg(test)]
mod tests;
