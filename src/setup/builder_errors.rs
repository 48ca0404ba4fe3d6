//! The builder's error tracking, alerting and redaction settings: the part of
//! [`ServiceTracing`] a service configures when it tunes what it does with errors and secrets.

use std::path::PathBuf;
use std::sync::Arc;

use crate::errors::{AlertRule, ErrorTracking};
use crate::redact::{Redactor, Regex};

use super::ServiceTracing;

impl ServiceTracing {
    /// Whether to group the errors found on ended spans (default yes); read them with
    /// [`TracingGuard::errors`](crate::TracingGuard::errors). See [`crate::errors`].
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").error_tracking(false);
    /// ```
    pub fn error_tracking(mut self, enabled: bool) -> Self {
        self.error_tracking = enabled;
        self
    }

    /// Uses `tracker`, with every setting made on it (the bound on groups, a webhook with its
    /// own timeouts and retries, Redis sharing, rules, callbacks), as the error tracking set-up
    /// wires in, and turns error tracking on. The builder's error settings still apply on top:
    /// its alert rules and callbacks are added, its webhook, classifier and Redis URL replace
    /// the tracker's when given, and its redaction policy ([`redactor`](Self::redactor))
    /// replaces the tracker's, so every exit shares one policy. Read the groups from
    /// [`TracingGuard::errors`](crate::TracingGuard::errors): the tracker set-up runs is made
    /// from this one's settings.
    ///
    /// ```
    /// use service_tracing::{ErrorTracking, ServiceTracing};
    /// let options =
    ///     ServiceTracing::builder("svc").error_tracker(ErrorTracking::new().with_max_groups(200));
    /// ```
    pub fn error_tracker(mut self, tracker: ErrorTracking) -> Self {
        self.error_tracking = true;
        self.error_tracker = Some(tracker);
        self
    }

    /// Classifies errors with `classify` instead of the default rules: it returns
    /// `Some((severity, category))` to decide, or `None` to fall back to the defaults (see
    /// [`ErrorTracking::with_classifier`](crate::ErrorTracking::with_classifier), which this sets on the tracker set-up creates).
    /// Severities and categories stated where an error is recorded
    /// ([`record_error_as`](crate::errors::record_error_as)) still win.
    ///
    /// ```
    /// use service_tracing::errors::{Category, ErrorOrigin, Severity};
    /// let options = service_tracing::ServiceTracing::builder("svc").error_classifier(|event| {
    ///     (event.origin() == ErrorOrigin::Client && event.operation().contains("payments"))
    ///         .then_some((Severity::Critical, Category::Dependency))
    /// });
    /// ```
    pub fn error_classifier(
        mut self,
        classify: impl Fn(
                &crate::errors::ErrorEvent,
            ) -> Option<(crate::errors::Severity, crate::errors::Category)>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.error_classifier = Some(Arc::new(classify));
        self
    }

    /// Whether `record_error` adds a backtrace to the `exception` event (default no, even with
    /// `RUST_BACKTRACE=1`: symbolising it on the request's thread costs about 100 ms for the
    /// first error of a process and about 0.15 ms for each later one). See
    /// [`set_backtrace_capture`](crate::errors::set_backtrace_capture); the setting is
    /// process-wide.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").error_backtraces(true);
    /// ```
    pub fn error_backtraces(mut self, enabled: bool) -> Self {
        self.error_backtraces = enabled;
        self
    }

    /// Adds an alert rule to error tracking (see [`crate::errors::AlertRule`]).
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_rule(AlertRule::count(10, Window::OneMinute))
    ///     .alert_rule(AlertRule::new_group());
    /// ```
    pub fn alert_rule(mut self, rule: AlertRule) -> Self {
        self.alerts.rules.push(rule);
        self
    }

    /// Posts alerts to this `http://` or `https://` URL as JSON, with the defaults of
    /// [`Webhook`](crate::errors::Webhook) (for other settings, build the
    /// [`ErrorTracking`](crate::ErrorTracking) yourself). A bad URL fails [`init`](Self::init), naming
    /// `alert_webhook`.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_webhook("http://alerts.internal:8080/hooks/errors");
    /// ```
    pub fn alert_webhook(mut self, url: impl Into<String>) -> Self {
        self.alerts.webhook = Some(url.into());
        self
    }

    /// Also trusts the CA certificates in this PEM file for an `https`
    /// [`alert_webhook`](Self::alert_webhook), beside the system's roots (see
    /// [`Webhook::ca_certificate`](crate::errors::Webhook::ca_certificate)).
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE` is the exporter's and does not apply to webhooks. An
    /// unreadable or invalid file, or a CA without a webhook, fails [`init`](Self::init), naming
    /// `alert_webhook ca_certificate`.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_webhook("https://alerts.internal/hooks/errors")
    ///     .alert_webhook_ca_certificate("/etc/ssl/alerts-ca.pem");
    /// ```
    pub fn alert_webhook_ca_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.alerts.webhook_ca = Some(path.into());
        self
    }

    /// Calls `callback` with every alert, on the alerting thread (panics caught).
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .alert_callback(|alert| eprintln!("{}: {}", alert.rule(), alert.group().message()));
    /// ```
    pub fn alert_callback(
        mut self,
        callback: impl Fn(&crate::errors::Alert) + Send + Sync + 'static,
    ) -> Self {
        self.alerts.callbacks.push(Arc::new(callback));
        self
    }

    /// The redaction policy applied wherever data leaves the process: to every exported span
    /// (attributes, events, links, name, status; console output included), to error groups
    /// and so to webhook bodies and log records (default: [`Redactor::new`]). See
    /// [`crate::redact`]. [`redact_key`](Self::redact_key) and
    /// [`redact_pattern`](Self::redact_pattern) add to the policy set here, so call this first.
    ///
    /// ```
    /// use service_tracing::redact::Redactor;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .redactor(Redactor::new().with_rule(|t| Some(t.replace("acme", "[org]"))));
    /// ```
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Denies one more attribute-key term (any case, at word boundaries): values under such
    /// keys, and in `key=value` pairs of free text, are replaced. The defaults
    /// ([`DEFAULT_DENIED_KEYS`](crate::redact::DEFAULT_DENIED_KEYS)) stay.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc").redact_key("ssn");
    /// ```
    pub fn redact_key(mut self, term: impl Into<String>) -> Self {
        self.redactor = self.redactor.with_denied_key(term);
        self
    }

    /// Replaces every match of `pattern` in exported free text with `[REDACTED]`, after the
    /// default patterns. Runs on every string, so keep such patterns few.
    ///
    /// ```
    /// use service_tracing::redact::Regex;
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .redact_pattern(Regex::new(r"\bEMP-[0-9]{6}\b").expect("valid"));
    /// ```
    pub fn redact_pattern(mut self, pattern: Regex) -> Self {
        self.redactor = self.redactor.with_pattern(pattern);
        self
    }

    /// Records these request headers on server spans as `http.request.header.<name>` (string
    /// arrays, lowercase names, as the HTTP semantic conventions say). Off by default.
    /// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`-style
    /// headers and names the redaction policy denies are never captured, even if listed.
    ///
    /// ```
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .capture_request_headers(["x-tenant", "accept-language"]);
    /// ```
    pub fn capture_request_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.layer
            .request_headers
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Records these response headers on server spans as `http.response.header.<name>`, as
    /// [`capture_request_headers`](Self::capture_request_headers) does for requests.
    ///
    /// ```
    /// let options =
    ///     service_tracing::ServiceTracing::builder("svc").capture_response_headers(["x-cache"]);
    /// ```
    pub fn capture_response_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        self.layer
            .response_headers
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Shares error groups, counts and rates between the service's replicas through the Redis
    /// at `url` (feature `redis`), under the prefix `service-tracing:{service}:errors`; see
    /// [`crate::errors::RedisSharing`]. Default: the `SERVICE_TRACING_ERRORS_REDIS_URL`
    /// environment variable, else no sharing. An invalid URL fails [`init`](Self::init) with
    /// an error naming the setting; an unreachable Redis does not (the tracking starts
    /// degraded, see [`TracingGuard::error_storage_health`](crate::TracingGuard::error_storage_health)).
    ///
    /// ```no_run
    /// let options = service_tracing::ServiceTracing::builder("svc")
    ///     .error_redis_url("redis://127.0.0.1:6379");
    /// ```
    #[cfg(feature = "redis")]
    pub fn error_redis_url(mut self, url: impl Into<String>) -> Self {
        self.error_redis_url = Some(url.into());
        self
    }
}
