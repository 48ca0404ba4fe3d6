//! [`ServiceTracing::from_file`] and `SERVICE_TRACING_CONFIG`: a configuration file's settings
//! as the builder's starting point. Precedence, highest first: the builder's calls, the
//! `OTEL_*` / `SERVICE_TRACING_*` variables (and `RUST_LOG`), the file, the defaults. See
//! `crate::config::file` for how each layer is kept.

use std::path::Path;

use crate::config::env;
use crate::config::file::schema;
use crate::config::file::{self, FileSettings};
use crate::error::{SetupError, SetupErrorKind};
use crate::errors::AlertRule;
use crate::sampling::{RouteRule, SamplingRules};

use super::ServiceTracing;

impl ServiceTracing {
    /// Starts the options from a configuration file, TOML (`.toml`) or YAML (`.yaml`, `.yml`):
    /// every builder setting has a key (see `examples/config.toml` and `examples/config.yaml`,
    /// which list each with its default). `${VAR}` and `${VAR:-default}` in the file are
    /// replaced by the process environment's variables (`$$` is a `$`); full-line comments are
    /// left alone.
    ///
    /// Precedence, highest first: the builder's calls made after this one (a list such as
    /// [`untraced_route`](Self::untraced_route) adds to the file's), the `OTEL_*` and
    /// `SERVICE_TRACING_*` variables (and `RUST_LOG`: a variable that is set replaces the
    /// file's whole setting, such as every header of `export.headers`), the file, the
    /// defaults. `OTEL_SERVICE_NAME` still wins over `service.name`; without either the name is
    /// `unknown_service`, as OpenTelemetry names it.
    ///
    /// An unreadable file, an unknown key or a bad value is a set-up error naming the file,
    /// the line and the column, and the values accepted. Without this call, set-up reads the
    /// file `SERVICE_TRACING_CONFIG` names, if set (see [`builder`](Self::builder)).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join(format!("st-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("tracing.toml");
    /// std::fs::write(&path, r#"
    /// [service]
    /// name = "checkout"
    /// environment = "${DEPLOY_ENV:-staging}"
    ///
    /// [export]
    /// exporter = "none"
    ///
    /// [http]
    /// untraced_routes = ["/health"]
    /// "#)?;
    /// let (app, guard) = service_tracing::ServiceTracing::from_file(&path)?
    ///     .install_subscriber(false) // a builder call wins over the file
    ///     .init(axum::Router::<()>::new())?;
    ///
    /// std::fs::write(&path, "[export]\nexporter = \"jaeger\"\n")?;
    /// let err = service_tracing::ServiceTracing::from_file(&path).unwrap_err();
    /// assert!(err.to_string().contains("tracing.toml:2:12"), "{err}");
    /// # drop((app, guard)); Ok(()) }
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SetupError> {
        let settings = file::load(path.as_ref(), &env::process_var)?;
        let name = settings
            .service
            .name
            .as_ref()
            .map_or_else(unknown_service, |n| n.0.clone());
        Self::bare(name).with_file(settings)
    }

    /// The builder of [`builder`](Self::builder): `SERVICE_TRACING_CONFIG`'s file, when `path`
    /// (its value) is set, as the starting point; an error in it is kept for `init` to return.
    pub(super) fn with_config_var(self, path: Option<String>) -> Self {
        let Some(path) = path.filter(|p| !p.trim().is_empty()) else {
            return self;
        };
        let name = self.name.clone();
        let loaded = file::load(Path::new(&path), &env::process_var)
            .and_then(|settings| Self::bare(name).with_file(settings));
        match loaded {
            Ok(options) => options,
            Err(e) => Self {
                file_error: Some(format!("{}: {e}", super::builder::CONFIG_VAR)),
                ..self
            },
        }
    }

    /// The file's settings over the defaults: those with a variable as its fallback, the
    /// others as the builder's starting values, one section at a time.
    fn with_file(mut self, f: FileSettings) -> Result<Self, SetupError> {
        self.env.set_file(f.vars());
        if let Some(version) = f.service.version {
            self.version = Some(version.0);
        }
        if let Some(environment) = f.service.environment {
            self.environment = Some(environment.0);
        }
        self.sampling_rules = sampling_rules(f.sampling);
        let options = self
            .with_propagation(f.propagation)?
            .with_http(f.http)
            .with_errors(f.errors)?
            .with_profiling(f.profiling)
            .with_health(f.health)?
            .with_pages(f.pages)?;
        let mut options = match f.metrics.prometheus_route {
            Some(route) => options.prometheus_route(route.0),
            None => options,
        };
        for key in f.redaction.keys {
            options = options.redact_key(key.0);
        }
        for pattern in f.redaction.patterns {
            options = options.redact_pattern(pattern.0);
        }
        if let Some(on) = f.logging.install_subscriber {
            options.install_subscriber = on;
        }
        if let Some(timeout) = f.shutdown.timeout {
            options.shutdown_timeout = timeout.0;
        }
        Ok(options)
    }

    fn with_propagation(mut self, p: schema::Propagation) -> Result<Self, SetupError> {
        self.layer.trust = trust(p.trust_incoming, p.trust_networks, p.trust_headers)?;
        if let Some(charset) = p.correlation_id_extra_chars {
            self.layer.correlation_charset = charset.0;
        }
        if let Some(names) = p.correlation_headers {
            self = self.correlation_headers(names.into_iter().map(|n| n.0));
        }
        if let Some(name) = p.correlation_response_header {
            self = self.correlation_response_header(name.0.as_deref());
        }
        if let Some(on) = p.traceresponse {
            self.layer.traceresponse = on;
        }
        Ok(self)
    }

    fn with_http(mut self, h: schema::Http) -> Self {
        for route in h.untraced_routes {
            self = self.untraced_route(route.0);
        }
        self.capture_request_headers(h.capture_request_headers.into_iter().map(|h| h.0))
            .capture_response_headers(h.capture_response_headers.into_iter().map(|h| h.0))
    }

    fn with_errors(mut self, e: schema::Errors) -> Result<Self, SetupError> {
        if let Some(max) = e.max_groups {
            // Not `error_tracker`, which would turn tracking on whatever `enabled` says.
            self.error_tracker = Some(crate::ErrorTracking::new().with_max_groups(count(max.0)));
        }
        if let Some(on) = e.enabled {
            self.error_tracking = on;
        }
        if let Some(on) = e.backtraces {
            self.error_backtraces = on;
        }
        if let Some(url) = e.webhook {
            self = self.alert_webhook(url.0);
        }
        if let Some(path) = e.webhook_ca_certificate {
            self = self.alert_webhook_ca_certificate(path.0);
        }
        for (i, alert) in e.alerts.into_iter().enumerate() {
            self = self.alert_rule(alert_rule(i, alert)?);
        }
        Ok(self)
    }

    fn with_profiling(mut self, pr: schema::ProfilingSection) -> Self {
        if pr.max_operations.is_some()
            || pr.slow_log_interval.is_some()
            || pr.auto_slow_threshold.is_some()
        {
            let mut profiler = crate::Profiling::new();
            if let Some(max) = pr.max_operations {
                profiler = profiler.with_max_operations(count(max.0));
            }
            if let Some(interval) = pr.slow_log_interval {
                profiler = profiler.with_slow_log_interval(interval.0);
            }
            if let Some(on) = pr.auto_slow_threshold {
                profiler = profiler.with_auto_slow_threshold(on);
            }
            // Not `profiler`, which would turn profiling on whatever `enabled` says.
            self.profiler = Some(profiler);
        }
        if let Some(on) = pr.enabled {
            self.profiling = on;
        }
        for (operation, threshold) in pr.slow_thresholds {
            self = self.slow_threshold(operation, threshold.0);
        }
        if let Some(on) = pr.process_sampling {
            self = self.process_sampling(on);
        }
        match pr.process_sample_interval {
            Some(interval) => self.process_sample_interval(interval.0),
            None => self,
        }
    }

    fn with_health(mut self, h: schema::Health) -> Result<Self, SetupError> {
        if let Some(route) = h.route {
            self = self.health_route(route.0);
        }
        if let Some(after) = h.unhealthy_after {
            self = self.health_unhealthy_after(after.0);
        }
        self.health.access = match (h.networks.is_empty(), h.bearer_token) {
            (true, None) => self.health.access,
            (false, None) => crate::health::HealthAccess::networks(&h.networks)
                .map_err(|e| key_error("health.networks", e))?,
            (true, Some(token)) => crate::health::HealthAccess::bearer_token(token),
            (false, Some(_)) => {
                return Err(invalid(
                    "health: give `networks` or `bearer_token`, not both".to_owned(),
                ))
            }
        };
        Ok(self)
    }
}

impl ServiceTracing {
    /// `[pages]`: the path, the networks and token that may read the pages (both may be
    /// given: the networks, and the token from anywhere else), and the store's bounds.
    #[cfg(feature = "pages")]
    fn with_pages(mut self, p: schema::Pages) -> Result<Self, SetupError> {
        if let Some(route) = p.route {
            self = self.pages(route.0);
        }
        let access = match p.networks.is_empty() {
            true => self.pages.access.clone(),
            false => crate::pages::PagesAccess::networks(&p.networks)
                .map_err(|e| key_error("pages.networks", e))?,
        };
        self.pages.access = match p.bearer_token {
            Some(token) => access.with_bearer_token(token),
            None => access,
        };
        let mut limits = self.pages.limits;
        if let Some(n) = p.max_traces {
            limits = limits.max_traces(count(n));
        }
        if let Some(n) = p.max_bytes {
            limits = limits.max_bytes(count(n));
        }
        if let Some(n) = p.max_spans_per_trace {
            limits = limits.max_spans_per_trace(count(n));
        }
        if let Some(n) = p.max_bytes_per_trace {
            limits = limits.max_bytes_per_trace(count(n));
        }
        if let Some(n) = p.max_routes {
            limits = limits.max_routes(count(n));
        }
        limits.check("pages", '.')?;
        self.pages.limits = limits;
        Ok(self)
    }

    /// Without the feature, a `[pages]` section that asks for anything is an error.
    #[cfg(not(feature = "pages"))]
    fn with_pages(self, p: schema::Pages) -> Result<Self, SetupError> {
        let limits = [
            p.max_traces,
            p.max_bytes,
            p.max_spans_per_trace,
            p.max_bytes_per_trace,
            p.max_routes,
        ];
        if p.route.is_some()
            || !p.networks.is_empty()
            || p.bearer_token.is_some()
            || limits.iter().any(Option::is_some)
        {
            return Err(invalid(
                "pages: this build has no `pages` feature".to_owned(),
            ));
        }
        Ok(self)
    }
}

/// The file's sampling rules, or `None` when it gives none (the builder's or no rules).
fn sampling_rules(s: schema::Sampling) -> Option<SamplingRules> {
    let keep_errors = s.keep_errors == Some(true);
    if s.rules.is_empty() && s.otherwise.is_none() && !keep_errors && s.keep_slower_than.is_none() {
        return None;
    }
    let mut rules = SamplingRules::new();
    if keep_errors {
        rules = rules.keep_errors();
    }
    if let Some(threshold) = s.keep_slower_than {
        rules = rules.keep_slower_than(threshold.0);
    }
    for rule in s.rules {
        let mut r = RouteRule::new(rule.route.0, rule.sample.0);
        if let Some(method) = rule.method {
            r = r.method(method.0);
        }
        rules = rules.rule(r);
    }
    if let Some(otherwise) = s.otherwise {
        rules = rules.otherwise(otherwise.0);
    }
    Some(rules)
}

/// OpenTelemetry's name for a service that gave none: `unknown_service:` and the executable.
fn unknown_service() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    match exe {
        Some(exe) => format!("unknown_service:{exe}"),
        None => "unknown_service".to_owned(),
    }
}

fn trust(
    mode: Option<file::schema::Trust>,
    networks: Vec<String>,
    headers: Vec<file::schema::NonEmpty>,
) -> Result<service_tracing_middleware::TrustIncoming, SetupError> {
    use file::schema::Trust;
    use service_tracing_middleware::TrustIncoming;
    let scoped = !networks.is_empty() || !headers.is_empty();
    match mode {
        Some(_) if scoped => Err(invalid(
            "propagation: give `trust_incoming` or `trust_networks`/`trust_headers`, not both"
                .to_owned(),
        )),
        Some(Trust::Always) | None if !scoped => Ok(TrustIncoming::always()),
        Some(Trust::Never) => Ok(TrustIncoming::never()),
        _ => {
            let mut headers = headers.into_iter().map(|h| h.0);
            let mut trust = if networks.is_empty() {
                // `headers` is not empty here.
                TrustIncoming::when_header(headers.next().unwrap_or_default())
            } else {
                TrustIncoming::from_networks(&networks).map_err(|e| {
                    invalid(format!(
                        "propagation.trust_networks: invalid network {:?}: expected a CIDR \
                         network or an address",
                        e.0
                    ))
                })?
            };
            for header in headers {
                trust = trust.or_header(header);
            }
            Ok(trust)
        }
    }
}

/// The `i`-th `[[errors.alerts]]` as a rule.
fn alert_rule(i: usize, a: file::schema::Alert) -> Result<AlertRule, SetupError> {
    use file::schema::AlertKind;
    let at = format!("errors.alerts[{i}]");
    let window = a.window.map_or(crate::Window::OneMinute, Into::into);
    let threshold = |what: &str, ok: &dyn Fn(f64) -> bool| {
        a.threshold
            .filter(|t| t.is_finite() && ok(*t))
            .ok_or_else(|| invalid(format!("{at}: `threshold` must be {what}")))
    };
    let mut rule = match a.kind {
        AlertKind::Count => AlertRule::count(
            threshold("a count of at least 1", &|t| t >= 1.0 && t.fract() == 0.0)? as u64,
            window,
        ),
        AlertKind::Ratio => AlertRule::ratio(
            threshold("a share from 0 to 1", &|t| (0.0..=1.0).contains(&t))?,
            window,
            a.min_requests.unwrap_or(1),
        ),
        AlertKind::NewGroup => AlertRule::new_group(),
        AlertKind::Spike => {
            AlertRule::spike(threshold("a factor of at least 1", &|t| t >= 1.0)?, window)
        }
    };
    if let Some(baseline) = a.baseline {
        rule = rule.baseline(baseline.into());
    }
    if let Some(min) = a.min_errors {
        rule = rule.min_errors(min);
    }
    if let Some(cooldown) = a.cooldown {
        rule = rule.cooldown(cooldown.0);
    }
    if let Some(severity) = a.min_severity {
        rule = rule.min_severity(severity.into());
    }
    if let Some(name) = a.name {
        rule = rule.named(name.0);
    }
    Ok(rule)
}

/// A count from the file as the bound a builder takes (saturating on 32-bit targets).
fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn invalid(message: String) -> SetupError {
    SetupError::new(SetupErrorKind::InvalidConfig, message)
}

fn key_error(key: &str, e: SetupError) -> SetupError {
    invalid(format!("{key}: {e}"))
}

#[cfg(test)]
mod tests;
