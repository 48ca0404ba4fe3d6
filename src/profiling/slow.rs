//! Slow operations: thresholds, the `performance.slow` span event and the rate-limited log.
//!
//! A threshold comes, first match wins, from:
//!
//! 1. the span itself: a `performance.threshold_ms` attribute (an integer number of
//!    milliseconds), set with [`slow_threshold_attribute`] on an OpenTelemetry span, with
//!    [`set_slow_threshold`] on a `tracing` span, or as a `tracing` field
//!    (`info_span!("load", performance.threshold_ms = 50)`);
//! 2. the configuration: [`Profiling::with_slow_threshold`](super::Profiling::with_slow_threshold)
//!    (or [`ServiceTracing::slow_threshold`](crate::ServiceTracing::slow_threshold)) per
//!    operation key;
//! 3. when turned on ([`Profiling::with_auto_slow_threshold`](super::Profiling::with_auto_slow_threshold)),
//!    the operation's own baseline: the p99 of its previous minute, once that minute had at
//!    least 100 values.

use std::time::{Duration, SystemTime};

use opentelemetry::trace::Event;
use opentelemetry::{Key, KeyValue, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The span attribute giving an operation's slow threshold in milliseconds.
pub const THRESHOLD_ATTRIBUTE: &str = "performance.threshold_ms";

/// The name of the event added to a span that took longer than its threshold.
pub const SLOW_EVENT: &str = "performance.slow";

/// The event attribute giving the span's duration in milliseconds.
pub const DURATION_ATTRIBUTE: &str = "performance.duration_ms";

/// Values an operation needs in a minute before that minute's p99 becomes its baseline.
pub(crate) const AUTO_MIN_COUNT: u64 = 100;

/// The `performance.threshold_ms` attribute for an OpenTelemetry span.
///
/// ```
/// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
/// use std::time::Duration;
///
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
/// let tracer = provider.tracer("app");
/// let span = tracer
///     .span_builder("render invoice")
///     .with_attributes([service_tracing::profiling::slow_threshold_attribute(
///         Duration::from_millis(20),
///     )])
///     .start(&tracer);
/// ```
pub fn slow_threshold_attribute(threshold: Duration) -> KeyValue {
    KeyValue::new(THRESHOLD_ATTRIBUTE, millis(threshold))
}

/// Gives a `tracing` span a slow threshold: its OpenTelemetry span gets the
/// `performance.threshold_ms` attribute. Without the `tracing` bridge it does nothing.
///
/// ```
/// use std::time::Duration;
///
/// let span = tracing::info_span!("SELECT orders");
/// service_tracing::profiling::set_slow_threshold(&span, Duration::from_millis(25));
/// let _entered = span.enter();
/// ```
pub fn set_slow_threshold(span: &tracing::Span, threshold: Duration) {
    span.set_attribute(THRESHOLD_ATTRIBUTE, millis(threshold));
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The threshold a span carries, if any (a non-negative integer or a number in a string).
pub(crate) fn span_threshold(attributes: &[KeyValue]) -> Option<Duration> {
    let key = Key::from_static_str(THRESHOLD_ATTRIBUTE);
    let value = &attributes.iter().find(|kv| kv.key == key)?.value;
    let ms = match value {
        Value::I64(ms) => u64::try_from(*ms).ok()?,
        Value::F64(ms) if ms.is_finite() && *ms >= 0.0 => *ms as u64,
        Value::String(s) => s.as_str().trim().parse().ok()?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The `performance.slow` event for a span that took `duration` against `threshold`.
pub(crate) fn slow_event(at: SystemTime, duration: Duration, threshold: Duration) -> Event {
    Event::new(
        SLOW_EVENT,
        at,
        vec![
            KeyValue::new(THRESHOLD_ATTRIBUTE, millis(threshold)),
            KeyValue::new(DURATION_ATTRIBUTE, duration.as_secs_f64() * 1_000.0),
        ],
        0,
    )
}

/// One operation's slow-operation state: its thresholds, its count and its log rate limit.
#[derive(Debug, Default)]
pub(crate) struct SlowState {
    /// From the configuration, fixed when the operation is first seen.
    pub(crate) configured: Option<Duration>,
    /// The automatic baseline, when turned on and known.
    pub(crate) baseline: Option<Duration>,
    /// The minute the baseline was last taken for.
    baseline_minute: Option<u64>,
    /// Slow operations seen.
    pub(crate) slow: u64,
    /// Slow operations whose log line was suppressed by the rate limit.
    pub(crate) suppressed: u64,
    last_logged: Option<Duration>,
    /// Suppressed since the last line (reported in the next one).
    pending: u64,
}

/// What to log for one slow operation, decided under the lock and logged after it.
#[derive(Debug)]
pub(crate) struct SlowLog {
    pub(crate) operation: String,
    pub(crate) duration: Duration,
    pub(crate) threshold: Duration,
    pub(crate) suppressed: u64,
}

impl SlowLog {
    /// Logs the line (`WARN`, target `service_tracing::profiling`).
    pub(crate) fn emit(&self) {
        tracing::warn!(
            target: "service_tracing::profiling",
            operation = %self.operation,
            duration_ms = self.duration.as_millis() as u64,
            threshold_ms = self.threshold.as_millis() as u64,
            suppressed = self.suppressed,
            "slow operation: {} took {} ms (threshold {} ms)",
            self.operation,
            self.duration.as_millis(),
            self.threshold.as_millis(),
        );
    }
}

impl SlowState {
    /// No slow operation seen yet, with the configured threshold if any.
    pub(crate) fn configured(threshold: Option<Duration>) -> Self {
        Self {
            configured: threshold,
            ..Self::default()
        }
    }

    /// Takes the previous minute's p99 as the baseline, once per minute.
    pub(crate) fn refresh_baseline(
        &mut self,
        at: Duration,
        p99_of_previous_minute: impl FnOnce() -> Option<Duration>,
    ) {
        let minute = at.as_secs() / 60;
        if self.baseline_minute != Some(minute) {
            self.baseline_minute = Some(minute);
            if let Some(p99) = p99_of_previous_minute() {
                self.baseline = Some(p99);
            }
        }
    }

    /// The threshold in force: the span's, else the configured one, else the baseline.
    pub(crate) fn threshold(&self, from_span: Option<Duration>, auto: bool) -> Option<Duration> {
        from_span
            .or(self.configured)
            .or(self.baseline.filter(|_| auto))
    }

    /// Counts a slow operation and decides whether to log it: the first in each
    /// `interval` is logged (with the count suppressed since the last line), the others only
    /// counted.
    pub(crate) fn slow(
        &mut self,
        at: Duration,
        interval: Duration,
        operation: &str,
        duration: Duration,
        threshold: Duration,
    ) -> Option<SlowLog> {
        self.slow = self.slow.saturating_add(1);
        let due = self
            .last_logged
            .is_none_or(|last| at.saturating_sub(last) >= interval);
        if !due {
            self.suppressed = self.suppressed.saturating_add(1);
            self.pending = self.pending.saturating_add(1);
            return None;
        }
        self.last_logged = Some(at);
        let suppressed = std::mem::take(&mut self.pending);
        Some(SlowLog {
            operation: operation.to_owned(),
            duration,
            threshold,
            suppressed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_rate_limit_window_and_the_rest_counted() {
        let mut state = SlowState::default();
        let interval = Duration::from_secs(60);
        let threshold = Duration::from_millis(100);
        let slow = Duration::from_millis(150);
        let mut logged = Vec::new();
        // A slow operation every second for three minutes.
        for s in 0..180u64 {
            if let Some(line) =
                state.slow(Duration::from_secs(s), interval, "GET /a", slow, threshold)
            {
                logged.push((s, line.suppressed));
            }
        }
        assert_eq!(logged, [(0, 0), (60, 59), (120, 59)]);
        assert_eq!(state.slow, 180);
        assert_eq!(state.suppressed, 177);
    }

    #[test]
    fn span_threshold_wins_then_configuration_then_baseline() {
        let mut state = SlowState::configured(Some(Duration::from_millis(200)));
        let span = Some(Duration::from_millis(5));
        assert_eq!(state.threshold(span, true), span);
        assert_eq!(
            state.threshold(None, true),
            Some(Duration::from_millis(200))
        );
        state.configured = None;
        state.refresh_baseline(Duration::from_secs(61), || Some(Duration::from_millis(40)));
        assert_eq!(state.threshold(None, false), None, "auto is off");
        assert_eq!(state.threshold(None, true), Some(Duration::from_millis(40)));
        // Once per minute only.
        state.refresh_baseline(Duration::from_secs(62), || Some(Duration::from_millis(1)));
        assert_eq!(state.baseline, Some(Duration::from_millis(40)));
    }

    #[test]
    fn thresholds_are_read_from_integers_floats_and_strings_and_bad_ones_ignored() {
        let read = |v: Value| span_threshold(&[KeyValue::new(THRESHOLD_ATTRIBUTE, v)]);
        assert_eq!(read(Value::I64(50)), Some(Duration::from_millis(50)));
        assert_eq!(read(Value::F64(7.9)), Some(Duration::from_millis(7)));
        assert_eq!(read(Value::from("12")), Some(Duration::from_millis(12)));
        assert_eq!(read(Value::I64(-1)), None);
        assert_eq!(read(Value::F64(f64::NAN)), None);
        assert_eq!(read(Value::from("soon")), None);
        assert_eq!(read(Value::Bool(true)), None);
        assert_eq!(
            span_threshold(&[slow_threshold_attribute(Duration::from_millis(3))]),
            Some(Duration::from_millis(3))
        );
    }
}
