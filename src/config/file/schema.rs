//! The configuration file's keys: one section per part of the builder, every key optional.
//! Values are checked as they are read, so a bad one is reported at its line and column; each
//! enum's error lists the accepted values. `examples/config.toml` holds every key with its
//! default.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use service_tracing_middleware::CorrelationIdCharset;

use crate::errors::Severity;
use crate::sampling::SampleAction;
use crate::window::Window;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileSettings {
    /// `OTEL_SDK_DISABLED`.
    pub(crate) disabled: Option<bool>,
    pub(crate) service: Service,
    pub(crate) export: Export,
    pub(crate) sampling: Sampling,
    pub(crate) propagation: Propagation,
    pub(crate) http: Http,
    pub(crate) errors: Errors,
    pub(crate) redaction: Redaction,
    pub(crate) profiling: ProfilingSection,
    pub(crate) metrics: Metrics,
    pub(crate) health: Health,
    pub(crate) pages: Pages,
    pub(crate) logging: Logging,
    pub(crate) shutdown: Shutdown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Service {
    pub(crate) name: Option<NonEmpty>,
    pub(crate) version: Option<NonEmpty>,
    pub(crate) environment: Option<NonEmpty>,
    /// `OTEL_RESOURCE_ATTRIBUTES`.
    pub(crate) resource_attributes: BTreeMap<PairKey, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Export {
    pub(crate) exporter: Option<Exporter>,
    pub(crate) endpoint: Option<Endpoint>,
    pub(crate) traces_endpoint: Option<Endpoint>,
    pub(crate) metrics_endpoint: Option<Endpoint>,
    pub(crate) logs_endpoint: Option<Endpoint>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) metrics_protocol: Option<Protocol>,
    pub(crate) logs_protocol: Option<Protocol>,
    pub(crate) headers: BTreeMap<PairKey, String>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) compression: Option<Compression>,
    pub(crate) insecure: Option<bool>,
    pub(crate) certificate: Option<NonEmpty>,
    pub(crate) client_certificate: Option<NonEmpty>,
    pub(crate) client_key: Option<NonEmpty>,
    /// `OTEL_LOGS_EXPORTER`: the error groups' and alerts' log records.
    pub(crate) logs_exporter: Option<LogsExporter>,
    pub(crate) batch: Batch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Batch {
    pub(crate) max_queue_size: Option<Positive>,
    pub(crate) schedule_delay: Option<Dur>,
    pub(crate) max_export_batch_size: Option<Positive>,
    pub(crate) export_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Sampling {
    pub(crate) sampler: Option<Sampler>,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub(crate) ratio: Option<Ratio>,
    pub(crate) rules: Vec<Rule>,
    pub(crate) otherwise: Option<Action>,
    pub(crate) keep_errors: Option<bool>,
    pub(crate) keep_slower_than: Option<Dur>,
}

/// `{ method = "POST", route = "/checkout", sample = "always" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rule {
    pub(crate) route: NonEmpty,
    pub(crate) method: Option<NonEmpty>,
    pub(crate) sample: Action,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Propagation {
    /// `OTEL_PROPAGATORS`.
    pub(crate) propagators: Option<Vec<Propagator>>,
    pub(crate) trust_incoming: Option<Trust>,
    pub(crate) trust_networks: Vec<String>,
    pub(crate) trust_headers: Vec<NonEmpty>,
    pub(crate) correlation_id_extra_chars: Option<Charset>,
    pub(crate) correlation_headers: Option<Vec<HeaderKey>>,
    /// `""` turns the echo off.
    pub(crate) correlation_response_header: Option<OptionalHeader>,
    pub(crate) traceresponse: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Http {
    pub(crate) untraced_routes: Vec<NonEmpty>,
    pub(crate) capture_request_headers: Vec<NonEmpty>,
    pub(crate) capture_response_headers: Vec<NonEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Errors {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_groups: Option<Positive>,
    pub(crate) backtraces: Option<bool>,
    /// `SERVICE_TRACING_ERRORS_REDIS_URL`.
    pub(crate) redis_url: Option<NonEmpty>,
    /// `SERVICE_TRACING_REQUEST_CHAINS`.
    pub(crate) request_chains: Option<bool>,
    pub(crate) webhook: Option<NonEmpty>,
    pub(crate) webhook_ca_certificate: Option<NonEmpty>,
    pub(crate) alerts: Vec<Alert>,
}

/// An alert rule: `kind` and what it takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Alert {
    pub(crate) kind: AlertKind,
    /// `count`: errors in the window; `ratio`: the share of requests; `spike`: the factor.
    pub(crate) threshold: Option<f64>,
    pub(crate) window: Option<WindowKey>,
    pub(crate) min_requests: Option<u64>,
    pub(crate) min_errors: Option<u64>,
    pub(crate) baseline: Option<WindowKey>,
    pub(crate) cooldown: Option<Dur>,
    pub(crate) min_severity: Option<SeverityKey>,
    pub(crate) name: Option<NonEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Redaction {
    pub(crate) keys: Vec<NonEmpty>,
    pub(crate) patterns: Vec<Pattern>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProfilingSection {
    pub(crate) enabled: Option<bool>,
    pub(crate) max_operations: Option<Positive>,
    pub(crate) slow_log_interval: Option<Dur>,
    pub(crate) auto_slow_threshold: Option<bool>,
    pub(crate) slow_thresholds: BTreeMap<String, Dur>,
    pub(crate) process_sampling: Option<bool>,
    pub(crate) process_sample_interval: Option<Dur>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Metrics {
    pub(crate) exporter: Option<MetricsExporter>,
    pub(crate) interval: Option<Dur>,
    pub(crate) timeout: Option<Dur>,
    pub(crate) prometheus_route: Option<RoutePath>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Health {
    pub(crate) route: Option<RoutePath>,
    pub(crate) unhealthy_after: Option<Dur>,
    pub(crate) networks: Vec<String>,
    pub(crate) bearer_token: Option<String>,
}

/// The built-in pages (feature `pages`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Pages {
    pub(crate) route: Option<RoutePath>,
    pub(crate) networks: Vec<String>,
    pub(crate) bearer_token: Option<String>,
    /// The recent-trace store's bounds (`StoreLimits`), checked when applied.
    pub(crate) max_traces: Option<u64>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_spans_per_trace: Option<u64>,
    pub(crate) max_bytes_per_trace: Option<u64>,
    pub(crate) max_routes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Logging {
    pub(crate) install_subscriber: Option<bool>,
    /// `RUST_LOG`.
    pub(crate) filter: Option<NonEmpty>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Shutdown {
    pub(crate) timeout: Option<Dur>,
}

// The values' types, each checked as it is read.

/// An enum of the names a key accepts: serde reads it (an unknown name's error lists the
/// others), and `as_str` gives the name back, as the variable takes it.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Deserialize)]
        pub(crate) enum $name {
            $(#[serde(rename = $text)] $variant,)+
        }

        // Only the names that are also a variable's value are written back.
        #[allow(dead_code)]
        impl $name {
            /// The name as written.
            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }
    };
}

names! {
    Exporter {
        Otlp = "otlp",
        Console = "console",
        None = "none",
    }
}

names! {
    LogsExporter {
        Otlp = "otlp",
        None = "none",
    }
}

names! {
    MetricsExporter {
        Otlp = "otlp",
        Prometheus = "prometheus",
        None = "none",
    }
}

names! {
    /// `http/json` is not among them: the exporters encode protobuf only.
    Protocol {
        Grpc = "grpc",
        HttpProtobuf = "http/protobuf",
    }
}

names! {
    Compression {
        Gzip = "gzip",
        None = "none",
    }
}

names! {
    /// `OTEL_TRACES_SAMPLER`'s names.
    Sampler {
        AlwaysOn = "always_on",
        AlwaysOff = "always_off",
        TraceIdRatio = "traceidratio",
        ParentBasedAlwaysOn = "parentbased_always_on",
        ParentBasedAlwaysOff = "parentbased_always_off",
        ParentBasedTraceIdRatio = "parentbased_traceidratio",
    }
}

names! {
    Trust {
        Always = "always",
        Never = "never",
    }
}

names! {
    AlertKind {
        Count = "count",
        Ratio = "ratio",
        NewGroup = "new_group",
        Spike = "spike",
    }
}

names! {
    /// A window of error rates.
    WindowKey {
        OneMinute = "1m",
        FiveMinutes = "5m",
        OneHour = "1h",
    }
}

impl From<WindowKey> for Window {
    fn from(w: WindowKey) -> Self {
        match w {
            WindowKey::OneMinute => Window::OneMinute,
            WindowKey::FiveMinutes => Window::FiveMinutes,
            WindowKey::OneHour => Window::OneHour,
        }
    }
}

names! {
    SeverityKey {
        Low = "low",
        Medium = "medium",
        High = "high",
        Critical = "critical",
    }
}

impl From<SeverityKey> for Severity {
    fn from(s: SeverityKey) -> Self {
        match s {
            SeverityKey::Low => Severity::Low,
            SeverityKey::Medium => Severity::Medium,
            SeverityKey::High => Severity::High,
            SeverityKey::Critical => Severity::Critical,
        }
    }
}

/// Reads a string and checks it with `check`, whose error becomes the value's error.
fn checked<'de, D, T>(
    deserializer: D,
    check: impl FnOnce(String) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    let s = String::deserialize(deserializer)?;
    check(s).map_err(de::Error::custom)
}

/// A text that is not blank.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NonEmpty(pub(crate) String);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            if s.trim().is_empty() {
                Err("expected a non-empty text".to_owned())
            } else {
                Ok(NonEmpty(s))
            }
        })
    }
}

/// A header name.
#[derive(Debug, Clone)]
pub(crate) struct HeaderKey(pub(crate) String);

impl<'de> Deserialize<'de> for HeaderKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            http::HeaderName::from_bytes(s.as_bytes())
                .map(|_| HeaderKey(s.clone()))
                .map_err(|_| format!("invalid header name {s:?}"))
        })
    }
}

/// A header name, or `""` for none.
#[derive(Debug, Clone)]
pub(crate) struct OptionalHeader(pub(crate) Option<String>);

impl<'de> Deserialize<'de> for OptionalHeader {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            if s.is_empty() {
                return Ok(OptionalHeader(None));
            }
            http::HeaderName::from_bytes(s.as_bytes())
                .map(|_| OptionalHeader(Some(s.clone())))
                .map_err(|_| {
                    format!("invalid header name {s:?}: expected a header name, or \"\" for none")
                })
        })
    }
}

/// A key of a `key=value` list (headers, resource attributes): no `,`, `=` or blank.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PairKey(pub(crate) String);

impl<'de> Deserialize<'de> for PairKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            if s.trim().is_empty() || s.contains([',', '=']) {
                Err(format!(
                    "invalid key {s:?}: expected a non-empty key without `,` or `=`"
                ))
            } else {
                Ok(PairKey(s.trim().to_owned()))
            }
        })
    }
}

/// A collector URL, checked as `otlp_endpoint` is.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint(pub(crate) String);

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            crate::config::env::validate_endpoint("the endpoint", &s)
                .map(|()| Endpoint(s))
                .map_err(|e| e.to_string())
        })
    }
}

/// A propagator's name, as `OTEL_PROPAGATORS` lists them.
#[derive(Debug, Clone)]
pub(crate) struct Propagator(pub(crate) String);

impl<'de> Deserialize<'de> for Propagator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            crate::config::env::propagator_names("the propagator", &s, [s.as_str()])
                .map(|_| Propagator(s))
                .map_err(|e| e.to_string())
        })
    }
}

/// A duration written `250ms`, `10s`, `1m 30s`...
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dur(pub(crate) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                format!("invalid duration {s:?} ({e}): expected a duration such as \"250ms\", \"10s\" or \"1m\"")
            })
        })
    }
}

/// A count above zero.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Positive(pub(crate) u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        if n == 0 {
            return Err(de::Error::custom("expected a number above 0"));
        }
        Ok(Positive(n))
    }
}

/// A share from 0 to 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ratio(pub(crate) f64);

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = f64::deserialize(d)?;
        if !(0.0..=1.0).contains(&r) {
            return Err(de::Error::custom(format!(
                "invalid ratio {r}: expected a number from 0 to 1"
            )));
        }
        Ok(Ratio(r))
    }
}

/// A route path: starts with `/`.
#[derive(Debug, Clone)]
pub(crate) struct RoutePath(pub(crate) String);

impl<'de> Deserialize<'de> for RoutePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            if s.starts_with('/') {
                Ok(RoutePath(s))
            } else {
                Err(format!(
                    "invalid route {s:?}: expected a path starting with /"
                ))
            }
        })
    }
}

/// A regular expression, compiled as it is read.
#[derive(Debug, Clone)]
pub(crate) struct Pattern(pub(crate) crate::redact::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            crate::redact::Regex::new(&s)
                .map(Pattern)
                .map_err(|e| format!("invalid regular expression: {e}"))
        })
    }
}

/// The bytes a correlation id may hold beside the default ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Charset(pub(crate) CorrelationIdCharset);

impl<'de> Deserialize<'de> for Charset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        checked(d, |s| {
            CorrelationIdCharset::DEFAULT
                .with_extra(s.as_bytes())
                .map(Charset)
                .map_err(|e| format!("invalid correlation id characters {s:?}: {e}"))
        })
    }
}

/// A sampling rule's action: `"never"`, `"always"`, a ratio (`0.25`) or a rate (`"10/s"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Action(pub(crate) SampleAction);

const ACTIONS_ACCEPTED: &str =
    "\"never\", \"always\", a ratio from 0 to 1 (0.25), or traces per second (\"10/s\")";

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Action;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(ACTIONS_ACCEPTED)
            }
            fn visit_f64<E: de::Error>(self, r: f64) -> Result<Action, E> {
                if (0.0..=1.0).contains(&r) {
                    Ok(Action(SampleAction::Ratio(r)))
                } else {
                    Err(E::custom(format!(
                        "invalid sampling action {r}: expected {ACTIONS_ACCEPTED}"
                    )))
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Action, E> {
                self.visit_f64(n as f64)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Action, E> {
                self.visit_f64(n as f64)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Action, E> {
                let rate = s
                    .strip_suffix("/s")
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .filter(|n| n.is_finite() && *n > 0.0);
                match (s, rate) {
                    ("never", _) => Ok(Action(SampleAction::Never)),
                    ("always", _) => Ok(Action(SampleAction::Always)),
                    (_, Some(n)) => Ok(Action(SampleAction::PerSecond(n))),
                    _ => Err(E::custom(format!(
                        "invalid sampling action {s:?}: expected {ACTIONS_ACCEPTED}"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}
