//! Alert rules over error groups and route rates, the alerts they raise, and their evaluation.
//!
//! Rules are evaluated off the request path, on the alerting thread (see
//! [`super::notify`]), each time an error of a group is recorded: the span's thread only
//! pushes a small signal onto a bounded queue.
//!
//! | rule | fires for a group when |
//! |---|---|
//! | [`count(n, window)`](AlertRule::count) | the group's (sampled) errors over `window` reach `n` |
//! | [`ratio(r, window, min_requests)`](AlertRule::ratio) | one of the group's operations has at least `min_requests` requests over `window` and an error ratio of at least `r` ([`RouteRates`](crate::errors::RouteRates), every request counted) |
//! | [`new_group()`](AlertRule::new_group) | the group is first seen |
//! | [`spike(factor, window)`](AlertRule::spike) | the errors over `window` reach `factor` times what the baseline (the rest of the last hour) predicts for such a window, and at least [`min_errors`](AlertRule::min_errors) |
//!
//! A rule fires at most once per [cooldown](AlertRule::cooldown) (default 5 minutes) for a
//! given group.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use serde_json::{json, Value};

use crate::errors::classify::Severity;
use crate::errors::rates::RouteRate;
use crate::errors::store::ErrorGroup;
use crate::window::Window;

/// The default time a rule stays quiet for a group after firing.
///
/// ```
/// assert_eq!(service_tracing::errors::DEFAULT_COOLDOWN.as_secs(), 300);
/// ```
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);

/// Most (rule, group) cooldowns remembered; past it, expired ones are forgotten first.
const MAX_COOLDOWNS: usize = 16_384;

/// Which condition an [`AlertRule`] checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertKind {
    /// Errors of a group over a window reached a count.
    Count,
    /// A route's error ratio over a window reached a threshold.
    Ratio,
    /// A group was first seen.
    NewGroup,
    /// Errors over a window spiked against the baseline.
    Spike,
}

impl AlertKind {
    /// `count`, `ratio`, `new_group` or `spike`.
    ///
    /// ```
    /// assert_eq!(service_tracing::errors::AlertKind::NewGroup.as_str(), "new_group");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Count => "count",
            AlertKind::Ratio => "ratio",
            AlertKind::NewGroup => "new_group",
            AlertKind::Spike => "spike",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Condition {
    Count {
        n: u64,
        window: Window,
    },
    Ratio {
        ratio: f64,
        window: Window,
        min_requests: u64,
    },
    NewGroup,
    Spike {
        factor: f64,
        window: Window,
        baseline: Window,
        min_errors: u64,
    },
}

/// One alert rule: a condition, a cooldown per group, and optionally a minimum severity.
///
/// ```
/// use std::time::Duration;
/// use service_tracing::{AlertRule, ErrorTracking, Severity, Window};
///
/// let errors = ErrorTracking::new()
///     .with_alert_rule(AlertRule::count(10, Window::OneMinute).cooldown(Duration::from_secs(600)))
///     .with_alert_rule(AlertRule::ratio(0.05, Window::FiveMinutes, 100).named("5% errors"))
///     .with_alert_rule(AlertRule::new_group().min_severity(Severity::High))
///     .with_alert_rule(AlertRule::spike(3.0, Window::OneMinute).min_errors(10));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
#[must_use]
pub struct AlertRule {
    name: String,
    condition: Condition,
    cooldown: Duration,
    min_severity: Option<Severity>,
}

impl AlertRule {
    fn with(condition: Condition, name: String) -> Self {
        Self {
            name,
            condition,
            cooldown: DEFAULT_COOLDOWN,
            min_severity: None,
        }
    }

    /// Fires when a group's errors over `window` reach `n` (at least 1). The group's counts
    /// follow trace sampling ([`ErrorGroup::errors_in`]).
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let rule = AlertRule::count(5, Window::OneMinute);
    /// assert_eq!(rule.name(), "count >= 5 in 1m");
    /// ```
    pub fn count(n: u64, window: Window) -> Self {
        let n = n.max(1);
        Self::with(
            Condition::Count { n, window },
            format!("count >= {n} in {}", window.as_str()),
        )
    }

    /// Fires when one of a group's operations had at least `min_requests` requests over
    /// `window` and `errors / requests >= ratio`, from the per-route rates (every request,
    /// sampled or not). Groups whose operations are not server routes (client calls) never
    /// fire it.
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let rule = AlertRule::ratio(0.1, Window::FiveMinutes, 50);
    /// assert_eq!(rule.name(), "ratio >= 0.1 in 5m");
    /// ```
    pub fn ratio(ratio: f64, window: Window, min_requests: u64) -> Self {
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Self::with(
            Condition::Ratio {
                ratio,
                window,
                min_requests: min_requests.max(1),
            },
            format!("ratio >= {ratio} in {}", window.as_str()),
        )
    }

    /// Fires when a group is first seen (again, if it was evicted since).
    ///
    /// ```
    /// let rule = service_tracing::errors::AlertRule::new_group();
    /// assert_eq!(rule.name(), "new group");
    /// ```
    pub fn new_group() -> Self {
        Self::with(Condition::NewGroup, "new group".to_owned())
    }

    /// Fires when the errors over `window` reach `factor` times the baseline's prediction and at
    /// least [`min_errors`](Self::min_errors) (default 5). The baseline is the
    /// [`baseline`](Self::baseline) window (default one hour) minus `window`, scaled to
    /// `window`'s length: for a server route, from the route's rates; for other groups, from
    /// the group's own (sampled) counts.
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let rule = AlertRule::spike(4.0, Window::OneMinute).baseline(Window::OneHour);
    /// assert_eq!(rule.name(), "spike x4 in 1m vs 1h");
    /// ```
    pub fn spike(factor: f64, window: Window) -> Self {
        let factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        let mut rule = Self::with(
            Condition::Spike {
                factor,
                window,
                baseline: Window::OneHour,
                min_errors: 5,
            },
            String::new(),
        );
        rule.name = rule.default_spike_name();
        rule
    }

    fn default_spike_name(&self) -> String {
        match self.condition {
            Condition::Spike {
                factor,
                window,
                baseline,
                ..
            } => format!(
                "spike x{factor} in {} vs {}",
                window.as_str(),
                baseline.as_str()
            ),
            _ => self.name.clone(),
        }
    }

    /// For a [`spike`](Self::spike) rule: the window the baseline is taken from (default one
    /// hour); ignored by other rules, and by a spike rule when not longer than its window.
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let rule = AlertRule::spike(3.0, Window::OneMinute).baseline(Window::FiveMinutes);
    /// ```
    pub fn baseline(mut self, window: Window) -> Self {
        let renamed = self.name == self.default_spike_name();
        if let Condition::Spike { baseline, .. } = &mut self.condition {
            *baseline = window;
        }
        if renamed {
            self.name = self.default_spike_name();
        }
        self
    }

    /// For a [`spike`](Self::spike) rule: the fewest errors over the window that may fire
    /// (default 5); ignored by other rules.
    ///
    /// ```
    /// use service_tracing::{AlertRule, Window};
    /// let rule = AlertRule::spike(3.0, Window::OneMinute).min_errors(20);
    /// ```
    pub fn min_errors(mut self, min: u64) -> Self {
        if let Condition::Spike { min_errors, .. } = &mut self.condition {
            *min_errors = min.max(1);
        }
        self
    }

    /// How long the rule stays quiet for a group after firing for it (default 5 minutes).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rule = service_tracing::errors::AlertRule::new_group().cooldown(Duration::from_secs(60));
    /// ```
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Only groups at least this urgent fire the rule.
    ///
    /// ```
    /// use service_tracing::errors::{AlertRule, Severity};
    /// let rule = AlertRule::new_group().min_severity(Severity::Critical);
    /// ```
    pub fn min_severity(mut self, severity: Severity) -> Self {
        self.min_severity = Some(severity);
        self
    }

    /// Names the rule (in alerts, the webhook body and log records).
    ///
    /// ```
    /// let rule = service_tracing::errors::AlertRule::new_group().named("new error");
    /// assert_eq!(rule.name(), "new error");
    /// ```
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The rule's name (a description of its condition unless [named](Self::named)).
    ///
    /// ```
    /// let rule = service_tracing::errors::AlertRule::new_group();
    /// assert_eq!(rule.name(), "new group");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which condition the rule checks.
    ///
    /// ```
    /// use service_tracing::errors::AlertKind;
    /// use service_tracing::{AlertRule, Window};
    /// assert_eq!(AlertRule::count(3, Window::OneMinute).kind(), AlertKind::Count);
    /// ```
    pub fn kind(&self) -> AlertKind {
        match self.condition {
            Condition::Count { .. } => AlertKind::Count,
            Condition::Ratio { .. } => AlertKind::Ratio,
            Condition::NewGroup => AlertKind::NewGroup,
            Condition::Spike { .. } => AlertKind::Spike,
        }
    }

    /// Whether evaluating the rule needs the per-route rates.
    pub(crate) fn needs_rates(&self) -> bool {
        matches!(
            self.condition,
            Condition::Ratio { .. } | Condition::Spike { .. }
        )
    }

    /// The figures if the rule's condition holds for `group` (read as of `now`).
    fn check(&self, group: &ErrorGroup, is_new: bool, rates: &[RouteRate]) -> Option<Figures> {
        if self.min_severity.is_some_and(|min| group.severity() > min) {
            return None;
        }
        match self.condition {
            Condition::NewGroup => is_new.then(|| Figures {
                operation: first_operation(group),
                observed: group.count() as f64,
                threshold: 1.0,
                window: None,
                requests: None,
                errors: group.count(),
            }),
            Condition::Count { n, window } => {
                let errors = group.errors_in(window);
                (errors >= n).then(|| Figures {
                    operation: first_operation(group),
                    observed: errors as f64,
                    threshold: n as f64,
                    window: Some(window),
                    requests: None,
                    errors,
                })
            }
            Condition::Ratio {
                ratio,
                window,
                min_requests,
            } => check_ratio(group, rates, ratio, window, min_requests),
            Condition::Spike {
                factor,
                window,
                baseline,
                min_errors,
            } => check_spike(group, rates, factor, (window, baseline), min_errors),
        }
    }
}

/// A ratio rule: the first of the group's routes whose error ratio over `window` reaches
/// `ratio` with at least `min_requests` requests.
fn check_ratio(
    group: &ErrorGroup,
    rates: &[RouteRate],
    ratio: f64,
    window: Window,
    min_requests: u64,
) -> Option<Figures> {
    group.operations().iter().find_map(|op| {
        let rate = rate_of(rates, op, window)?;
        (rate.requests >= min_requests && rate.ratio >= ratio).then(|| Figures {
            operation: op.clone(),
            observed: rate.ratio,
            threshold: ratio,
            window: Some(window),
            requests: Some(rate.requests),
            errors: rate.errors,
        })
    })
}

/// A spike rule: the errors of `window` against the rest of `baseline` scaled to the window's
/// length, from the route's rates when the group has a route, else from the group's counts.
fn check_spike(
    group: &ErrorGroup,
    rates: &[RouteRate],
    factor: f64,
    (window, baseline): (Window, Window),
    min_errors: u64,
) -> Option<Figures> {
    if baseline.duration() <= window.duration() {
        return None;
    }
    let scale =
        window.duration().as_secs_f64() / (baseline.duration() - window.duration()).as_secs_f64();
    let judge = |operation: String, current: u64, base: u64| {
        let expected = base.saturating_sub(current) as f64 * scale;
        let threshold = (factor * expected).max(min_errors as f64);
        (current as f64 >= threshold).then_some(Figures {
            operation,
            observed: current as f64,
            threshold,
            window: Some(window),
            requests: None,
            errors: current,
        })
    };
    let mut any_route = false;
    for op in group.operations() {
        if let (Some(now), Some(base)) = (rate_of(rates, op, window), rate_of(rates, op, baseline))
        {
            any_route = true;
            if let Some(figures) = judge(op.clone(), now.errors, base.errors) {
                return Some(figures);
            }
        }
    }
    if any_route {
        return None;
    }
    judge(
        first_operation(group),
        group.errors_in(window),
        group.errors_in(baseline),
    )
}

fn first_operation(group: &ErrorGroup) -> String {
    group.operations().first().cloned().unwrap_or_default()
}

fn rate_of<'a>(rates: &'a [RouteRate], operation: &str, window: Window) -> Option<&'a RouteRate> {
    rates
        .iter()
        .find(|r| r.window == window && r.operation == operation)
}

/// The figures that made a rule fire.
#[derive(Clone, Debug, PartialEq)]
struct Figures {
    operation: String,
    observed: f64,
    threshold: f64,
    window: Option<Window>,
    requests: Option<u64>,
    errors: u64,
}

/// An alert: a rule fired for an error group. Handed to the
/// [callbacks](crate::errors::ErrorTracking::with_alert_callback), posted to the
/// [webhook](crate::errors::ErrorTracking::with_webhook) as [`to_json`](Self::to_json), and exported
/// as an OTLP log record. Every text in it went through the [`Redactor`](crate::redact::Redactor).
///
/// ```
/// use service_tracing::errors::{AlertRule, ErrorTracking};
/// let errors = ErrorTracking::new()
///     .with_alert_rule(AlertRule::new_group())
///     .with_alert_callback(|alert| {
///         eprintln!(
///             "[{}] {} on {}: {} (x{})",
///             alert.rule(),
///             alert.group().error_type(),
///             alert.operation(),
///             alert.group().message(),
///             alert.group().count()
///         );
///     });
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Alert {
    rule: String,
    kind: AlertKind,
    group: ErrorGroup,
    figures: Figures,
    trace_id: TraceId,
    span_id: SpanId,
    fired_at: SystemTime,
    /// The rule's cooldown, for the pages' "still firing".
    cooldown: Duration,
}

impl Alert {
    /// The name of the rule that fired.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let rule: &str = alert.rule();
    /// # }
    /// ```
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// The kind of rule that fired.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let kind = alert.kind();
    /// # }
    /// ```
    pub fn kind(&self) -> AlertKind {
        self.kind
    }

    /// The group, as it was when the rule fired.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// println!("{}", alert.group().count());
    /// # }
    /// ```
    pub fn group(&self) -> &ErrorGroup {
        &self.group
    }

    /// The operation the figures are about (for a ratio or spike rule, the route).
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let route: &str = alert.operation();
    /// # }
    /// ```
    pub fn operation(&self) -> &str {
        &self.figures.operation
    }

    /// The value that crossed the threshold: errors (count, spike, new group) or the error
    /// ratio (ratio).
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let value: f64 = alert.observed();
    /// # }
    /// ```
    pub fn observed(&self) -> f64 {
        self.figures.observed
    }

    /// The threshold it reached.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let threshold: f64 = alert.threshold();
    /// # }
    /// ```
    pub fn threshold(&self) -> f64 {
        self.figures.threshold
    }

    /// The window the figures cover (none for a new group).
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let window = alert.window();
    /// # }
    /// ```
    pub fn window(&self) -> Option<Window> {
        self.figures.window
    }

    /// The route's requests over the window (ratio rules).
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let requests = alert.requests();
    /// # }
    /// ```
    pub fn requests(&self) -> Option<u64> {
        self.figures.requests
    }

    /// Errors over the window (the group's count for a new group).
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let errors: u64 = alert.errors();
    /// # }
    /// ```
    pub fn errors(&self) -> u64 {
        self.figures.errors
    }

    /// The trace of the error that made the rule fire.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// println!("{}", alert.trace_id());
    /// # }
    /// ```
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span of the error that made the rule fire.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// println!("{}", alert.span_id());
    /// # }
    /// ```
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// When the rule fired.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let when = alert.fired_at();
    /// # }
    /// ```
    pub fn fired_at(&self) -> SystemTime {
        self.fired_at
    }

    /// The cooldown of the rule that fired: it does not fire again for the group before it
    /// ends.
    pub(crate) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// The webhook's body: the rule, the figures, the group and its sample trace ids.
    ///
    /// ```no_run
    /// # fn show(alert: &service_tracing::errors::Alert) {
    /// let body = alert.to_json();
    /// println!("{} {}", body["rule"]["name"], body["group"]["fingerprint"]);
    /// # }
    /// ```
    pub fn to_json(&self) -> Value {
        let f = &self.figures;
        json!({
            "rule": { "name": self.rule, "kind": self.kind.as_str() },
            "figures": {
                "operation": f.operation,
                "observed": f.observed,
                "threshold": f.threshold,
                "window": f.window.map(Window::as_str),
                "requests": f.requests,
                "errors": f.errors,
            },
            "group": self.group.to_json(),
            "trace_ids": self.group.trace_ids().iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "trace_id": self.trace_id.to_string(),
            "span_id": self.span_id.to_string(),
            "fired_at_unix_ms": crate::errors::store::unix_ms(self.fired_at),
        })
    }
}

/// What the recorded error was: its group, whether the group is new, and the span it came from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Signal {
    pub(crate) fingerprint: u64,
    pub(crate) is_new: bool,
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
}

/// Evaluates the rules with a cooldown per (rule, group). Lives on the alerting thread.
#[derive(Debug)]
pub(crate) struct Evaluator {
    rules: Vec<AlertRule>,
    /// (rule index, fingerprint) → when it last fired.
    fired: HashMap<(usize, u64), Duration>,
}

impl Evaluator {
    pub(crate) fn new(rules: Vec<AlertRule>) -> Self {
        Self {
            rules,
            fired: HashMap::new(),
        }
    }

    pub(crate) fn needs_rates(&self) -> bool {
        self.rules.iter().any(AlertRule::needs_rates)
    }

    /// The alerts `signal` raises, `group` and `rates` read as of `now` (on the rates' clock).
    pub(crate) fn evaluate(
        &mut self,
        signal: &Signal,
        group: &ErrorGroup,
        rates: &[RouteRate],
        now: Duration,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            let key = (index, signal.fingerprint);
            if let Some(last) = self.fired.get(&key) {
                if now.saturating_sub(*last) < rule.cooldown {
                    continue;
                }
            }
            let Some(figures) = rule.check(group, signal.is_new, rates) else {
                continue;
            };
            if self.fired.len() >= MAX_COOLDOWNS {
                let rules = &self.rules;
                self.fired.retain(|(i, _), at| {
                    rules
                        .get(*i)
                        .is_some_and(|r| now.saturating_sub(*at) < r.cooldown)
                });
                if self.fired.len() >= MAX_COOLDOWNS {
                    self.fired.clear();
                }
            }
            self.fired.insert(key, now);
            alerts.push(Alert {
                rule: rule.name.clone(),
                kind: rule.kind(),
                group: group.clone(),
                figures,
                trace_id: signal.trace_id,
                span_id: signal.span_id,
                fired_at: SystemTime::now(),
                cooldown: rule.cooldown,
            });
        }
        alerts
    }
}

/// What happened to alerts, their deliveries and the OTLP log records, for health checks and
/// tests ([`ErrorTracking::alert_stats`](crate::errors::ErrorTracking::alert_stats)).
///
/// Each log record handed to export is, once its export is over, in exactly one of
/// `logs_exported`, `logs_dropped`, `logs_rejected` and `logs_failed`, as spans are in
/// [`ExportStats`](crate::ExportStats); `logs_retried` counts requests, not records.
///
/// ```
/// let stats = service_tracing::errors::ErrorTracking::new().alert_stats();
/// assert_eq!(stats.fired, 0);
/// println!(
///     "log records: {} exported, {} dropped, {} rejected, {} failed after {} retries",
///     stats.logs_exported, stats.logs_dropped, stats.logs_rejected, stats.logs_failed,
///     stats.logs_retried
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertStats {
    /// Alerts raised by the rules.
    pub fired: u64,
    /// Errors whose evaluation was skipped because the alerting queue was full.
    pub signals_dropped: u64,
    /// Alert callbacks that panicked (the panic is caught).
    pub callback_panics: u64,
    /// Webhook deliveries answered with a 2xx.
    pub delivered: u64,
    /// Webhook deliveries given up after their last attempt.
    pub failed: u64,
    /// Webhook attempts retried after a failure.
    pub retries: u64,
    /// Alerts not posted because the delivery queue was full.
    pub dropped: u64,
    /// Log records the collector accepted.
    pub logs_exported: u64,
    /// Log records given up on: still failing (no connection, throttled, unavailable) when
    /// retries ran out of the export timeout, or not exportable at all.
    pub logs_failed: u64,
    /// Log records dropped because their buffer was full.
    pub logs_dropped: u64,
    /// Log records the backend refused for good, never sent again: requests answered with a
    /// non-retryable status (HTTP 400, gRPC `INVALID_ARGUMENT`...) and the
    /// `rejected_log_records` of partial-success answers.
    pub logs_rejected: u64,
    /// Log record export requests sent again after a retryable failure (each retry counts
    /// once).
    pub logs_retried: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::rates::RouteRates;
    use crate::errors::ErrorTracking;

    fn signal(fingerprint: u64, is_new: bool) -> Signal {
        Signal {
            fingerprint,
            is_new,
            trace_id: TraceId::from(7u128),
            span_id: SpanId::from(9u64),
        }
    }

    fn rate(operation: &str, window: Window, requests: u64, errors: u64) -> RouteRate {
        RouteRate::new(operation.to_owned(), window, requests, errors)
    }

    /// A group on `GET /r` with `errors` errors recorded at time zero.
    fn group(errors: u64) -> ErrorGroup {
        let tracking = ErrorTracking::build(10, None, RouteRates::new());
        tracking.record_test_errors("GET /r", errors);
        tracking.groups().remove(0)
    }

    #[test]
    fn a_count_rule_fires_at_the_threshold_once_per_cooldown_per_group() {
        let rule = AlertRule::count(3, Window::OneMinute).cooldown(Duration::from_secs(60));
        let mut eval = Evaluator::new(vec![rule]);
        assert!(eval
            .evaluate(&signal(1, true), &group(2), &[], Duration::ZERO)
            .is_empty());
        let alerts = eval.evaluate(&signal(1, false), &group(3), &[], Duration::from_secs(1));
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(
            (alert.kind(), alert.observed(), alert.threshold()),
            (AlertKind::Count, 3.0, 3.0)
        );
        assert_eq!(alert.window(), Some(Window::OneMinute));
        assert_eq!(alert.trace_id(), TraceId::from(7u128));
        // Within the cooldown: quiet for this group, not for another.
        assert!(eval
            .evaluate(&signal(1, false), &group(9), &[], Duration::from_secs(60))
            .is_empty());
        assert_eq!(
            eval.evaluate(&signal(2, false), &group(9), &[], Duration::from_secs(60))
                .len(),
            1,
            "the cooldown is per group"
        );
        // Past it, the rule fires again.
        assert_eq!(
            eval.evaluate(&signal(1, false), &group(9), &[], Duration::from_secs(61))
                .len(),
            1
        );
    }

    #[test]
    fn the_cooldown_is_per_rule() {
        let mut eval = Evaluator::new(vec![
            AlertRule::count(1, Window::OneMinute),
            AlertRule::new_group(),
        ]);
        let first = eval.evaluate(&signal(1, true), &group(1), &[], Duration::ZERO);
        assert_eq!(
            first.iter().map(Alert::kind).collect::<Vec<_>>(),
            [AlertKind::Count, AlertKind::NewGroup]
        );
        assert!(eval
            .evaluate(&signal(1, true), &group(2), &[], Duration::from_secs(1))
            .is_empty());
    }

    #[test]
    fn a_new_group_rule_fires_only_for_new_groups_and_heeds_the_severity() {
        let mut eval = Evaluator::new(vec![AlertRule::new_group()]);
        assert!(eval
            .evaluate(&signal(1, false), &group(1), &[], Duration::ZERO)
            .is_empty());
        assert_eq!(
            eval.evaluate(&signal(1, true), &group(1), &[], Duration::ZERO)
                .len(),
            1
        );
        // The test groups are High: a Critical-only rule ignores them.
        let mut critical =
            Evaluator::new(vec![AlertRule::new_group().min_severity(Severity::Critical)]);
        assert!(critical
            .evaluate(&signal(1, true), &group(1), &[], Duration::ZERO)
            .is_empty());
        let mut high = Evaluator::new(vec![AlertRule::new_group().min_severity(Severity::High)]);
        assert_eq!(
            high.evaluate(&signal(1, true), &group(1), &[], Duration::ZERO)
                .len(),
            1
        );
    }

    #[test]
    fn a_ratio_rule_reads_the_routes_rates_and_needs_enough_requests() {
        let rule = AlertRule::ratio(0.5, Window::FiveMinutes, 10);
        let mut eval = Evaluator::new(vec![rule]);
        assert!(eval.needs_rates());
        let g = group(1);
        let too_few = [rate("GET /r", Window::FiveMinutes, 9, 9)];
        assert!(eval
            .evaluate(&signal(1, false), &g, &too_few, Duration::ZERO)
            .is_empty());
        let below = [rate("GET /r", Window::FiveMinutes, 100, 49)];
        assert!(eval
            .evaluate(&signal(1, false), &g, &below, Duration::ZERO)
            .is_empty());
        let other_route = [rate("GET /other", Window::FiveMinutes, 100, 100)];
        assert!(eval
            .evaluate(&signal(1, false), &g, &other_route, Duration::ZERO)
            .is_empty());
        let other_window = [rate("GET /r", Window::OneMinute, 100, 100)];
        assert!(eval
            .evaluate(&signal(1, false), &g, &other_window, Duration::ZERO)
            .is_empty());
        let above = [rate("GET /r", Window::FiveMinutes, 100, 50)];
        let alerts = eval.evaluate(&signal(1, false), &g, &above, Duration::ZERO);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].requests(), Some(100));
        assert_eq!(alerts[0].errors(), 50);
        assert_eq!(alerts[0].observed(), 0.5);
        assert_eq!(alerts[0].operation(), "GET /r");
        let json = alerts[0].to_json();
        assert_eq!(json["figures"]["requests"], 100);
        assert_eq!(json["rule"]["kind"], "ratio");
        assert_eq!(json["group"]["operations"][0], "GET /r");
    }

    #[test]
    fn a_spike_rule_compares_the_window_with_the_rest_of_the_baseline() {
        // 3x the baseline, at least 5 errors. Baseline: 590 errors over the other 59 minutes
        // = 10 a minute, so 30 in the last minute are needed.
        let mut eval = Evaluator::new(vec![AlertRule::spike(3.0, Window::OneMinute)]);
        let g = group(1);
        let rates = |now: u64| {
            [
                rate("GET /r", Window::OneMinute, 1_000, now),
                rate("GET /r", Window::OneHour, 10_000, 590 + now),
            ]
        };
        assert!(eval
            .evaluate(&signal(1, false), &g, &rates(29), Duration::ZERO)
            .is_empty());
        let alerts = eval.evaluate(&signal(1, false), &g, &rates(30), Duration::ZERO);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind(), AlertKind::Spike);
        assert!((alerts[0].threshold() - 30.0).abs() < 1e-9);

        // No baseline: min_errors decides.
        let mut quiet =
            Evaluator::new(vec![AlertRule::spike(3.0, Window::OneMinute).min_errors(8)]);
        let fresh = |now: u64| {
            [
                rate("GET /r", Window::OneMinute, 10, now),
                rate("GET /r", Window::OneHour, 10, now),
            ]
        };
        assert!(quiet
            .evaluate(&signal(1, false), &g, &fresh(7), Duration::ZERO)
            .is_empty());
        assert_eq!(
            quiet
                .evaluate(&signal(1, false), &g, &fresh(8), Duration::ZERO)
                .len(),
            1
        );
    }

    #[test]
    fn a_spike_rule_falls_back_to_the_groups_counts_off_the_routes() {
        let mut eval = Evaluator::new(vec![AlertRule::spike(2.0, Window::OneMinute).min_errors(3)]);
        assert!(eval
            .evaluate(&signal(1, false), &group(2), &[], Duration::ZERO)
            .is_empty());
        assert_eq!(
            eval.evaluate(&signal(1, false), &group(3), &[], Duration::ZERO)
                .len(),
            1
        );
    }

    #[test]
    fn the_cooldown_map_is_bounded() {
        let mut eval = Evaluator::new(vec![AlertRule::count(1, Window::OneMinute)]);
        let g = group(1);
        for fingerprint in 0..(MAX_COOLDOWNS as u64 + 10) {
            let alerts = eval.evaluate(&signal(fingerprint, true), &g, &[], Duration::ZERO);
            assert_eq!(alerts.len(), 1);
        }
        assert!(eval.fired.len() <= MAX_COOLDOWNS);
    }

    #[test]
    fn rule_names_and_bounds() {
        assert_eq!(
            AlertRule::count(0, Window::OneHour).name(),
            "count >= 1 in 1h"
        );
        assert_eq!(
            AlertRule::ratio(f64::NAN, Window::OneMinute, 0).name(),
            "ratio >= 1 in 1m"
        );
        assert_eq!(
            AlertRule::spike(2.0, Window::OneMinute)
                .baseline(Window::FiveMinutes)
                .name(),
            "spike x2 in 1m vs 5m"
        );
        assert_eq!(
            AlertRule::spike(2.0, Window::OneMinute)
                .named("mine")
                .baseline(Window::FiveMinutes)
                .name(),
            "mine"
        );
    }
}
