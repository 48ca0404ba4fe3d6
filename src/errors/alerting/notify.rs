//! The alerting thread: takes signals off the bounded queue the span's thread fills, evaluates
//! the rules, calls the callbacks, and hands webhook posts and log records to the delivery
//! thread ([`super::delivery`]).
//!
//! The span's thread only does a non-blocking `try_send` of a 40-byte [`Signal`]; a full queue
//! drops the signal and counts it. The thread starts with the first signal, runs under a no-op
//! `tracing` dispatcher (its work never becomes spans), and ends when the tracker is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::delivery::Delivery;
use super::ledger::{AlertLedger, GroupAlert};
use super::logs::{LogExport, LogRecord};
use super::rules::{Alert, AlertRule, AlertStats, Evaluator, Signal};
use super::webhook::Webhook;
use crate::errors::rates::RouteRate;
use crate::errors::store::ErrorGroup;
use crate::errors::ErrorTracking;

/// Signals waiting for the alerting thread, at most.
const SIGNAL_QUEUE: usize = 4_096;

/// An alert callback.
pub(crate) type Callback = dyn Fn(&Alert) + Send + Sync;

/// Reads a group, the route rates (when asked for) and the time, on the rates' clock.
pub(crate) type Lookup =
    Box<dyn Fn(u64, bool) -> Option<(ErrorGroup, Vec<RouteRate>, Duration)> + Send>;

/// What alerting was configured with.
#[derive(Clone, Default)]
pub(crate) struct AlertConfig {
    pub(crate) rules: Vec<AlertRule>,
    pub(crate) callbacks: Vec<Arc<Callback>>,
    pub(crate) webhook: Option<Webhook>,
    pub(crate) logs: Option<LogExport>,
}

impl AlertConfig {
    /// Whether recorded errors need to reach the alerting thread at all.
    fn is_active(&self) -> bool {
        !self.rules.is_empty() || self.logs.is_some()
    }
}

/// The counters behind [`AlertStats`], and each group's last alert ([`AlertLedger`]): what
/// the alerting and delivery threads keep for readers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) ledger: AlertLedger,
    pub(crate) fired: AtomicU64,
    pub(crate) signals_dropped: AtomicU64,
    pub(crate) callback_panics: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) logs_exported: AtomicU64,
    pub(crate) logs_failed: AtomicU64,
    pub(crate) logs_dropped: AtomicU64,
    pub(crate) logs_rejected: AtomicU64,
    pub(crate) logs_retried: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> AlertStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AlertStats {
            fired: read(&self.fired),
            signals_dropped: read(&self.signals_dropped),
            callback_panics: read(&self.callback_panics),
            delivered: read(&self.delivered),
            failed: read(&self.failed),
            retries: read(&self.retries),
            dropped: read(&self.dropped),
            logs_exported: read(&self.logs_exported),
            logs_failed: read(&self.logs_failed),
            logs_dropped: read(&self.logs_dropped),
            logs_rejected: read(&self.logs_rejected),
            logs_retried: read(&self.logs_retried),
        }
    }
}

enum Msg {
    Signal(Signal),
    Flush(SyncSender<()>),
}

/// The request path's side of alerting.
pub(crate) struct Notifier {
    config: AlertConfig,
    active: bool,
    counters: Arc<Counters>,
    /// Started with the first signal; `None` inside when the thread could not be spawned.
    sender: OnceLock<Option<SyncSender<Msg>>>,
}

impl Notifier {
    pub(crate) fn new(config: AlertConfig) -> Self {
        Self {
            active: config.is_active(),
            config,
            counters: Arc::new(Counters::default()),
            sender: OnceLock::new(),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    pub(crate) fn stats(&self) -> AlertStats {
        self.counters.stats()
    }

    /// Each group's last alert, by fingerprint.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn group_alerts(&self) -> std::collections::HashMap<u64, GroupAlert> {
        self.counters.ledger.snapshot()
    }

    /// Whether any rule may fire.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn has_rules(&self) -> bool {
        !self.config.rules.is_empty()
    }

    /// Queues `signal` for the alerting thread (started on first use with `lookup`); never
    /// blocks.
    pub(crate) fn signal(&self, signal: Signal, lookup: impl FnOnce() -> Lookup) {
        let sender = self.sender.get_or_init(|| self.spawn(lookup()));
        let sent = sender
            .as_ref()
            .is_some_and(|s| s.try_send(Msg::Signal(signal)).is_ok());
        if !sent {
            Counters::add(&self.counters.signals_dropped, 1);
        }
    }

    fn spawn(&self, lookup: Lookup) -> Option<SyncSender<Msg>> {
        let (tx, rx) = mpsc::sync_channel(SIGNAL_QUEUE);
        let config = self.config.clone();
        let counters = self.counters.clone();
        crate::runtime::spawn_quiet("service-tracing-alerts", move || {
            run(&rx, &lookup, &config, &counters);
        })
        .ok()
        .map(|_| tx)
    }

    /// Waits until every signal queued so far is evaluated, its callbacks called, its webhook
    /// posts settled (delivered or given up) and its log records exported, or `timeout`
    /// passes. `true` when everything settled in time.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let Some(Some(sender)) = self.sender.get() else {
            return true;
        };
        flush_through(timeout, Msg::Flush, |msg| match sender.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(back)) => Err(Some(back)),
            Err(TrySendError::Disconnected(_)) => Err(None),
        })
    }
}

/// Sends a flush request made by `make` with `try_send` (which gives the message back while
/// the queue is full, `None` once it is closed), retrying every 2 ms, then waits for the
/// reply; `false` if either does not happen within `timeout`.
pub(crate) fn flush_through<M>(
    timeout: Duration,
    make: impl FnOnce(SyncSender<()>) -> M,
    mut try_send: impl FnMut(M) -> Result<(), Option<M>>,
) -> bool {
    let deadline = Instant::now() + timeout;
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let mut msg = make(reply_tx);
    loop {
        match try_send(msg) {
            Ok(()) => break,
            Err(None) => return false,
            Err(Some(back)) => {
                if Instant::now() >= deadline {
                    return false;
                }
                msg = back;
                thread::sleep(Duration::from_millis(2));
            }
        }
    }
    reply_rx
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .is_ok()
}

fn run(rx: &Receiver<Msg>, lookup: &Lookup, config: &AlertConfig, counters: &Arc<Counters>) {
    let mut evaluator = Evaluator::new(config.rules.clone());
    let delivery = Delivery::start(
        config.webhook.clone(),
        config.logs.clone(),
        counters.clone(),
    );
    loop {
        let msg = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Msg::Signal(signal) => {
                let Some((group, rates, now)) = lookup(signal.fingerprint, evaluator.needs_rates())
                else {
                    continue;
                };
                if signal.is_new {
                    if let Some(d) = &delivery {
                        d.log(LogRecord::new_group(&group, &signal));
                    }
                }
                for alert in evaluator.evaluate(&signal, &group, &rates, now) {
                    Counters::add(&counters.fired, 1);
                    for callback in &config.callbacks {
                        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            callback(&alert);
                        }));
                        if called.is_err() {
                            Counters::add(&counters.callback_panics, 1);
                        }
                    }
                    match &delivery {
                        Some(d) => d.alert(&alert),
                        None => {
                            let _ = counters.ledger.fired(&alert, false);
                        }
                    }
                }
            }
            Msg::Flush(reply) => {
                if let Some(d) = &delivery {
                    d.flush(Duration::from_secs(60));
                }
                let _ = reply.send(());
            }
        }
    }
    if let Some(d) = delivery {
        d.flush(Duration::from_secs(5));
    }
}

// `ErrorTracking`'s redaction and alerting options.
impl ErrorTracking {
    fn with_options(self, change: impl FnOnce(&mut crate::errors::tracking::Options)) -> Self {
        let mut options = self.tracker.options.clone();
        change(&mut options);
        Self::build_with(
            self.tracker.max_groups,
            self.tracker.classifier.clone(),
            self.tracker.rates.clone(),
            options,
        )
    }

    /// Replaces the [`Redactor`](crate::redact::Redactor) run on each error's type, message and
    /// operation before they are fingerprinted and stored (default: [`Redactor::new`], its
    /// default rules). Call it before the tracker is used: it starts from no groups.
    ///
    /// [`Redactor::new`]: crate::redact::Redactor::new
    ///
    /// ```
    /// use service_tracing::{ErrorTracking, Redactor};
    /// let errors = ErrorTracking::new()
    ///     .with_redactor(Redactor::new().with_rule(|t| Some(t.replace("acme", "[org]"))));
    /// ```
    pub fn with_redactor(self, redactor: crate::redact::Redactor) -> Self {
        self.with_options(|o| o.redactor = redactor)
    }

    /// Adds an alert rule (see [`AlertRule`]). Rules are evaluated on a background thread, fed
    /// by a bounded queue: recording an error only queues a small signal. Call it before the
    /// tracker is used: it starts from no groups.
    ///
    /// ```
    /// use service_tracing::{AlertRule, ErrorTracking, Window};
    /// let errors = ErrorTracking::new().with_alert_rule(AlertRule::count(10, Window::OneMinute));
    /// ```
    pub fn with_alert_rule(self, rule: AlertRule) -> Self {
        self.with_options(|o| o.alerts.rules.push(rule))
    }

    /// Adds a callback called with every alert, on the alerting thread (keep it quick: it
    /// delays the next evaluations, never a request). A panic in it is caught and counted.
    ///
    /// ```
    /// use service_tracing::errors::{AlertRule, ErrorTracking};
    /// let errors = ErrorTracking::new()
    ///     .with_alert_rule(AlertRule::new_group())
    ///     .with_alert_callback(|alert| eprintln!("{}: {}", alert.rule(), alert.group().message()));
    /// ```
    pub fn with_alert_callback(self, callback: impl Fn(&Alert) + Send + Sync + 'static) -> Self {
        self.with_options(|o| o.alerts.callbacks.push(Arc::new(callback)))
    }

    /// Posts every alert to `webhook` (see [`Webhook`]), from a background thread with
    /// retries. Replaces an earlier webhook.
    ///
    /// ```
    /// use service_tracing::errors::Webhook;
    /// use service_tracing::{AlertRule, ErrorTracking, Window};
    /// # fn main() -> Result<(), service_tracing::SetupError> {
    /// let errors = ErrorTracking::new()
    ///     .with_alert_rule(AlertRule::count(5, Window::OneMinute))
    ///     .with_webhook(Webhook::new("http://127.0.0.1:9000/alerts")?);
    /// # Ok(()) }
    /// ```
    pub fn with_webhook(self, webhook: Webhook) -> Self {
        self.with_options(|o| o.alerts.webhook = Some(webhook))
    }

    /// Alerts fired, webhook deliveries and log records exported, failed or dropped so far.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// let stats = errors.alert_stats();
    /// assert_eq!((stats.fired, stats.delivered, stats.failed, stats.dropped), (0, 0, 0, 0));
    /// ```
    pub fn alert_stats(&self) -> AlertStats {
        self.tracker.notifier.stats()
    }

    /// Each group's last alert and its webhook post's state, by fingerprint, as the alerting
    /// threads recorded them (the built-in pages show them).
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn group_alerts(&self) -> std::collections::HashMap<u64, GroupAlert> {
        self.tracker.notifier.group_alerts()
    }

    /// Whether an alert rule is configured.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn has_alert_rules(&self) -> bool {
        self.tracker.notifier.has_rules()
    }

    /// Waits until the errors recorded so far are evaluated, their callbacks called, their
    /// webhook posts settled (delivered, or failed after the last retry) and their log
    /// records exported, or until `timeout`. `true` when all settled in time.
    /// [`TracingGuard::force_flush`](crate::TracingGuard::force_flush) calls it.
    ///
    /// ```
    /// let errors = service_tracing::errors::ErrorTracking::new();
    /// assert!(errors.flush_alerts(std::time::Duration::from_secs(1)));
    /// ```
    pub fn flush_alerts(&self, timeout: Duration) -> bool {
        self.drain();
        self.tracker.notifier.flush(timeout)
    }

    /// Redacts what is kept of an error.
    pub(in crate::errors) fn redact(&self, event: &mut crate::errors::ErrorEvent) {
        let redactor = &self.tracker.options.redactor;
        event.message = redactor.redact(&event.message);
        event.error_type = redactor.redact(&event.error_type);
        event.operation = redactor.redact(&event.operation);
        if let Some(target) = &mut event.target {
            *target = redactor.redact(target);
        }
        if let Some(request) = &mut event.request {
            request.operation = redactor.redact(&request.operation);
        }
    }

    /// How the alerting thread reads groups and rates: through a weak handle, so the thread
    /// ends once the tracker is dropped.
    pub(in crate::errors) fn lookup(&self) -> Lookup {
        let tracker = Arc::downgrade(&self.tracker);
        Box::new(move |fingerprint, with_rates| {
            let tracker = tracker.upgrade()?;
            let tracking = Self { tracker };
            let now = tracking.tracker.rates.elapsed();
            let mut group = tracking.store().get(fingerprint).cloned()?;
            group.set_as_of(now);
            let rates = if with_rates {
                tracking.tracker.rates.snapshot()
            } else {
                Vec::new()
            };
            Some((group, rates, now))
        })
    }

    /// Records `n` server errors (500) on `operation` at the rates' current time.
    #[cfg(test)]
    pub(crate) fn record_test_errors(&self, operation: &str, n: u64) {
        for _ in 0..n {
            let mut event = crate::errors::ErrorEvent::for_test(
                crate::errors::ErrorOrigin::Server,
                "500",
                Some(500),
                None,
            );
            event.operation = operation.to_owned();
            let fingerprint = crate::errors::fingerprint::fingerprint("500", operation, "");
            let classified = crate::errors::classify::default_classification(&event);
            let at = self.tracker.rates.elapsed();
            let mut store = self.store();
            store.record(fingerprint, event, classified);
            store.observe(fingerprint, at);
        }
    }
}

/// What [`ServiceTracing`](crate::ServiceTracing) was told about alerting and redaction,
/// applied to the tracker it creates.
#[derive(Clone, Default)]
pub(crate) struct AlertOptions {
    pub(crate) rules: Vec<AlertRule>,
    pub(crate) callbacks: Vec<Arc<Callback>>,
    pub(crate) webhook: Option<String>,
    /// Extra CAs for an `https` webhook (see [`Webhook::ca_certificate`]).
    pub(crate) webhook_ca: Option<std::path::PathBuf>,
    pub(crate) redactor: Option<crate::redact::Redactor>,
}

impl AlertOptions {
    /// The tracker with these options and, when given, the OTLP log export. Fails on a bad
    /// webhook URL.
    pub(crate) fn apply(
        self,
        errors: ErrorTracking,
        logs: Option<LogExport>,
    ) -> Result<ErrorTracking, crate::SetupError> {
        let mut webhook = self.webhook.as_deref().map(Webhook::new).transpose()?;
        match (webhook.take(), &self.webhook_ca) {
            (Some(w), Some(ca)) => webhook = Some(w.ca_certificate(ca)?),
            (None, Some(ca)) => {
                return Err(crate::SetupError::invalid(
                    "alert_webhook ca_certificate",
                    &ca.display().to_string(),
                    "a CA file for a webhook given with alert_webhook",
                ))
            }
            (w, None) => webhook = w,
        }
        Ok(errors.with_options(|o| {
            o.alerts.rules.extend(self.rules);
            o.alerts.callbacks.extend(self.callbacks);
            if webhook.is_some() {
                o.alerts.webhook = webhook;
            }
            if let Some(redactor) = self.redactor {
                o.redactor = redactor;
            }
            if logs.is_some() {
                o.alerts.logs = logs;
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;

    use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use crate::errors::alerting::rules::AlertKind;
    use crate::errors::rates::tests::TestClock;
    use crate::errors::rates::RouteRates;
    use crate::errors::{Window, DEFAULT_MAX_GROUPS};

    const FLUSH: Duration = Duration::from_secs(10);

    fn provider(errors: &ErrorTracking) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_span_processor(errors.clone())
            .build()
    }

    /// A server span on `route` that panicked with `message`.
    fn fail(provider: &SdkTracerProvider, route: &str, message: &str) {
        let tracer = provider.tracer("t");
        let mut span = tracer
            .span_builder(format!("GET {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.route", route.to_owned()),
                KeyValue::new("http.response.status_code", 500),
            ])
            .start(&tracer);
        span.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "panic"),
                KeyValue::new("exception.message", message.to_owned()),
            ],
        );
        span.set_status(Status::error(""));
        span.end();
    }

    type Seen = Arc<Mutex<Vec<(AlertKind, String, String)>>>;

    fn recorder() -> (Seen, impl Fn(&Alert) + Send + Sync + 'static) {
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let callback = move |alert: &Alert| {
            if let Ok(mut seen) = sink.lock() {
                seen.push((
                    alert.kind(),
                    alert.operation().to_owned(),
                    alert.group().message().to_owned(),
                ));
            }
        };
        (seen, callback)
    }

    fn seen(seen: &Seen) -> Vec<(AlertKind, String, String)> {
        seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    #[test]
    fn rules_run_on_the_alerting_thread_on_the_injected_clock_with_a_cooldown_per_rule_and_group() {
        let (clock, now) = TestClock::new();
        let (alerts, callback) = recorder();
        let errors = ErrorTracking::build(DEFAULT_MAX_GROUPS, None, RouteRates::with_clock(now))
            .with_alert_rule(
                AlertRule::count(3, Window::OneMinute).cooldown(Duration::from_secs(120)),
            )
            .with_alert_rule(AlertRule::new_group())
            .with_alert_callback(callback);
        let provider = provider(&errors);
        for _ in 0..5 {
            fail(&provider, "/a", "a broke");
        }
        for _ in 0..3 {
            fail(&provider, "/b", "b broke");
        }
        assert!(errors.flush_alerts(FLUSH));
        let mut first = seen(&alerts);
        first.sort_by(|x, y| (x.1.as_str(), x.0.as_str()).cmp(&(y.1.as_str(), y.0.as_str())));
        let kinds: Vec<(AlertKind, &str)> = first.iter().map(|a| (a.0, a.1.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (AlertKind::Count, "GET /a"),
                (AlertKind::NewGroup, "GET /a"),
                (AlertKind::Count, "GET /b"),
                (AlertKind::NewGroup, "GET /b"),
            ]
        );

        // A minute on, three more on /a reach the count again, within the cooldown: quiet.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            fail(&provider, "/a", "a broke");
        }
        assert!(errors.flush_alerts(FLUSH));
        assert_eq!(seen(&alerts).len(), 4);

        // Past the cooldown, it fires again, for /a only.
        clock.advance(Duration::from_secs(70));
        for _ in 0..3 {
            fail(&provider, "/a", "a broke");
        }
        assert!(errors.flush_alerts(FLUSH));
        let all = seen(&alerts);
        assert_eq!(all.len(), 5, "{all:?}");
        assert_eq!((all[4].0, all[4].1.as_str()), (AlertKind::Count, "GET /a"));
        let stats = errors.alert_stats();
        assert_eq!((stats.fired, stats.signals_dropped), (5, 0));
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn a_ratio_rule_reads_the_route_rates_through_the_thread() {
        let (_clock, now) = TestClock::new();
        let (alerts, callback) = recorder();
        let errors = ErrorTracking::build(DEFAULT_MAX_GROUPS, None, RouteRates::with_clock(now))
            .with_alert_rule(AlertRule::ratio(0.5, Window::OneMinute, 4))
            .with_alert_callback(callback);
        let provider = provider(&errors);
        for error in [false, false, false, true] {
            errors.rates().record("GET", Some("/r"), error);
        }
        fail(&provider, "/r", "x");
        assert!(errors.flush_alerts(FLUSH));
        assert!(seen(&alerts).is_empty(), "1 error in 4 requests");
        for _ in 0..4 {
            errors.rates().record("GET", Some("/r"), true);
        }
        fail(&provider, "/r", "x");
        assert!(errors.flush_alerts(FLUSH));
        assert_eq!(seen(&alerts).len(), 1, "5 errors in 8 requests");
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn messages_are_redacted_before_grouping_storing_and_alerting() {
        let (alerts, callback) = recorder();
        let errors = ErrorTracking::new()
            .with_alert_rule(AlertRule::new_group())
            .with_alert_callback(callback);
        let provider = provider(&errors);
        fail(
            &provider,
            "/login",
            "bad login for bob@example.com token=abc123",
        );
        fail(
            &provider,
            "/login",
            "bad login for eve@example.org token=zzz999",
        );
        assert!(errors.flush_alerts(FLUSH));
        let groups = errors.groups();
        assert_eq!(groups.len(), 1, "one group once the secrets are out");
        let expected = "bad login for [REDACTED] token=[REDACTED]";
        assert_eq!(groups[0].message(), expected);
        assert_eq!(seen(&alerts)[0].2, expected);
        assert!(!groups[0].to_json().to_string().contains("example.com"));
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn a_panicking_callback_is_counted_and_the_next_still_runs() {
        let (alerts, callback) = recorder();
        let errors = ErrorTracking::new()
            .with_alert_rule(AlertRule::new_group())
            .with_alert_callback(|_| panic!("callback bug"))
            .with_alert_callback(callback);
        let provider = provider(&errors);
        fail(&provider, "/a", "x");
        assert!(errors.flush_alerts(FLUSH));
        assert_eq!(seen(&alerts).len(), 1);
        assert_eq!(errors.alert_stats().callback_panics, 1);
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn a_full_signal_queue_drops_and_counts_without_blocking() {
        let notifier = Notifier::new(AlertConfig {
            rules: vec![AlertRule::new_group()],
            ..AlertConfig::default()
        });
        // The alerting thread is held in its first lookup until released.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let lookups = Arc::new(AtomicUsize::new(0));
        let counted = lookups.clone();
        let release_rx = Mutex::new(release_rx);
        let lookup: Lookup = Box::new(move |_, _| {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                if let Ok(rx) = release_rx.lock() {
                    let _ = rx.recv();
                }
            }
            None
        });
        let signal = Signal {
            fingerprint: 1,
            is_new: true,
            trace_id: opentelemetry::trace::TraceId::INVALID,
            span_id: opentelemetry::trace::SpanId::INVALID,
        };
        let mut lookup = Some(lookup);
        let started = Instant::now();
        let total = SIGNAL_QUEUE as u64 + 1_000;
        for _ in 0..total {
            notifier.signal(signal, || {
                lookup.take().unwrap_or_else(|| Box::new(|_, _| None))
            });
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        let dropped = notifier.stats().signals_dropped;
        // The queue holds SIGNAL_QUEUE; the thread holds at most one more.
        assert!(
            (999..=1_000).contains(&dropped),
            "{dropped} of {total} dropped"
        );
        let _ = release_tx.send(());
        assert!(notifier.flush(FLUSH));
        assert_eq!(lookups.load(Ordering::SeqCst) as u64, total - dropped);
    }
}
