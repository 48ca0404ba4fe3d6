//! The bounded in-memory store of error groups, and the summary read from it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::TraceId;
use serde_json::{json, Value};

use super::classify::{Category, Severity};
use super::fingerprint::truncate;
use super::rates::{RouteRate, Windows};
use super::ErrorEvent;
use crate::window::Window;

/// The longest sample message kept per group, in bytes.
pub(crate) const MAX_MESSAGE: usize = 512;
/// Distinct operations kept per group.
pub(crate) const MAX_OPERATIONS: usize = 8;
/// Distinct status codes kept per group.
pub(crate) const MAX_STATUS_CODES: usize = 8;
/// Trace and correlation ids kept per group (the most recent).
pub(crate) const MAX_SAMPLES: usize = 5;
/// Groups listed in [`ErrorSummary::top_groups`].
pub(crate) const TOP_GROUPS: usize = 10;

/// One kind of error: every error with the same fingerprint (error type, operation and
/// message with its variable parts such as ids and numbers taken out).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let tracking = service_tracing::errors::ErrorTracking::new();
/// for group in tracking.groups() {
///     println!("{:016x} {} x{} {}", group.fingerprint(), group.error_type(), group.count(), group.message());
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ErrorGroup {
    fingerprint: u64,
    error_type: String,
    message: String,
    operations: Vec<String>,
    targets: Vec<String>,
    status_codes: Vec<u16>,
    count: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    severity: Severity,
    category: Category,
    trace_ids: Vec<TraceId>,
    correlation_ids: Vec<String>,
    /// Sampled errors over the sliding windows, read as of `as_of`.
    windows: Windows,
    as_of: Duration,
}

fn push_bounded<T>(samples: &mut Vec<T>, value: T) {
    if samples.len() >= MAX_SAMPLES {
        samples.remove(0);
    }
    samples.push(value);
}

impl ErrorGroup {
    fn new(fingerprint: u64, event: ErrorEvent, classified: (Severity, Category)) -> Self {
        let now = event.time;
        let mut group = Self {
            fingerprint,
            message: truncate(&event.message, MAX_MESSAGE).to_owned(),
            operations: Vec::new(),
            targets: Vec::new(),
            status_codes: Vec::new(),
            count: 0,
            first_seen: now,
            last_seen: now,
            severity: classified.0,
            category: classified.1,
            trace_ids: Vec::new(),
            correlation_ids: Vec::new(),
            error_type: group_type(&event.error_type),
            windows: Windows::default(),
            as_of: Duration::ZERO,
        };
        group.add(event, classified);
        group
    }

    fn add(&mut self, event: ErrorEvent, (severity, category): (Severity, Category)) {
        self.count = self.count.saturating_add(1);
        self.last_seen = self.last_seen.max(event.time);
        self.first_seen = self.first_seen.min(event.time);
        // The most urgent classification seen wins.
        if severity < self.severity {
            self.severity = severity;
            self.category = category;
        }
        if self.operations.len() < MAX_OPERATIONS && !self.operations.contains(&event.operation) {
            self.operations.push(event.operation);
        }
        if let Some(target) = event.target {
            if self.targets.len() < MAX_OPERATIONS && !self.targets.contains(&target) {
                self.targets.push(target);
            }
        }
        if let Some(code) = event.status_code {
            if self.status_codes.len() < MAX_STATUS_CODES && !self.status_codes.contains(&code) {
                self.status_codes.push(code);
            }
        }
        // Samples point at traces a backend holds: an unsampled request's error counts, but
        // leaves no sample.
        if event.trace_id != TraceId::INVALID {
            push_bounded(&mut self.trace_ids, event.trace_id);
            if let Some(id) = event.correlation_id {
                push_bounded(&mut self.correlation_ids, id);
            }
        }
    }

    /// The group's stable 64-bit fingerprint (FNV-1a; the same in every process and release).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// `exception.type`, else `error.type`, else `error`.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The first message seen, as it was (not normalised), cut to 512 bytes.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The operations seen (`GET /orders/{id}`, `GET payments.internal`), at most 8.
    pub fn operations(&self) -> &[String] {
        &self.operations
    }

    /// Where the errors of requests in this group failed, when that was not the request's
    /// own code: the failed calls' targets (`GET payments.internal`, as client operations are
    /// named) or a database span's name; at most 8. The calls' spans keep their own
    /// `exception` events, but a failing request is one error, kept under its route.
    ///
    /// ```
    /// for group in service_tracing::errors::ErrorTracking::new().groups() {
    ///     println!("{} failed at {:?}", group.operations().join(", "), group.targets());
    /// }
    /// ```
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// The HTTP status codes seen, at most 8: the statuses the requests answered, or, for an
    /// error outside any request, the span's.
    pub fn status_codes(&self) -> &[u16] {
        &self.status_codes
    }

    /// How many errors fell into the group.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// When the first of them ended.
    pub fn first_seen(&self) -> SystemTime {
        self.first_seen
    }

    /// When the last of them ended.
    pub fn last_seen(&self) -> SystemTime {
        self.last_seen
    }

    /// The most urgent severity seen.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// The category that came with [`severity`](Self::severity).
    pub fn category(&self) -> Category {
        self.category
    }

    /// The trace ids of the last 5 errors, oldest first.
    pub fn trace_ids(&self) -> &[TraceId] {
        &self.trace_ids
    }

    /// The correlation ids of the last 5 errors whose span carried one, oldest first.
    pub fn correlation_ids(&self) -> &[String] {
        &self.correlation_ids
    }

    /// The group's errors over `window`, as of when the group was read. They follow trace
    /// sampling (the span processor only sees sampled spans); for exact per-route figures see
    /// [`ErrorSummary::route_rates`]. With sharing between replicas (feature `redis`) these
    /// windows stay this replica's, while [`count`](Self::count) is the fleet's.
    ///
    /// ```
    /// use service_tracing::{ErrorTracking, Window};
    /// for group in ErrorTracking::new().groups() {
    ///     println!("{} in the last minute", group.errors_in(Window::OneMinute));
    /// }
    /// ```
    pub fn errors_in(&self, window: Window) -> u64 {
        self.windows.sum(window, self.as_of).1
    }

    pub(crate) fn set_as_of(&mut self, at: Duration) {
        self.as_of = at;
    }

    pub(crate) fn to_json(&self) -> Value {
        let recent: serde_json::Map<String, Value> = Window::ALL
            .iter()
            .map(|w| (w.as_str().to_owned(), json!(self.errors_in(*w))))
            .collect();
        json!({
            "fingerprint": format!("{:016x}", self.fingerprint),
            "error_type": self.error_type,
            "message": self.message,
            "operations": self.operations,
            "targets": self.targets,
            "status_codes": self.status_codes,
            "count": self.count,
            "first_seen_unix_ms": unix_ms(self.first_seen),
            "last_seen_unix_ms": unix_ms(self.last_seen),
            "severity": self.severity.as_str(),
            "category": self.category.as_str(),
            "trace_ids": self.trace_ids.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            "correlation_ids": self.correlation_ids,
            "recent_errors": recent,
        })
    }
}

/// A group as shared storage holds it, to be turned into an [`ErrorGroup`].
#[cfg(feature = "redis")]
#[derive(Debug)]
pub(crate) struct GroupParts {
    pub(crate) fingerprint: u64,
    pub(crate) error_type: String,
    pub(crate) message: String,
    pub(crate) operations: Vec<String>,
    pub(crate) status_codes: Vec<u16>,
    pub(crate) count: u64,
    pub(crate) first_seen: SystemTime,
    pub(crate) last_seen: SystemTime,
    pub(crate) severity: Severity,
    pub(crate) category: Category,
    pub(crate) trace_ids: Vec<TraceId>,
    pub(crate) correlation_ids: Vec<String>,
}

#[cfg(feature = "redis")]
impl From<GroupParts> for ErrorGroup {
    fn from(p: GroupParts) -> Self {
        // Another replica's data is bounded like ours.
        let bound = |v: Vec<String>, keep_last: bool, max: usize| -> Vec<String> {
            let skip = if keep_last {
                v.len().saturating_sub(max)
            } else {
                0
            };
            v.iter()
                .skip(skip)
                .take(max)
                .map(|s| truncate(s, MAX_MESSAGE).to_owned())
                .collect()
        };
        let mut trace_ids = p.trace_ids;
        trace_ids.drain(..trace_ids.len().saturating_sub(MAX_SAMPLES));
        let correlation_ids = bound(p.correlation_ids, true, MAX_SAMPLES);
        let mut status_codes = p.status_codes;
        status_codes.truncate(MAX_STATUS_CODES);
        Self {
            fingerprint: p.fingerprint,
            error_type: group_type(&p.error_type),
            message: truncate(&p.message, MAX_MESSAGE).to_owned(),
            operations: bound(p.operations, false, MAX_OPERATIONS),
            targets: Vec::new(),
            status_codes,
            count: p.count,
            first_seen: p.first_seen,
            last_seen: p.last_seen,
            severity: p.severity,
            category: p.category,
            trace_ids,
            correlation_ids,
            windows: Windows::default(),
            as_of: Duration::ZERO,
        }
    }
}

#[cfg(feature = "redis")]
impl ErrorGroup {
    /// Folds this replica's view of the same group into the fleet's: `pending` errors not yet
    /// shared are added, the times widened, the most urgent severity kept, and the sliding
    /// windows are the local ones.
    pub(crate) fn merge_local(&mut self, local: &ErrorGroup, pending: u64) {
        self.count = self.count.saturating_add(pending);
        self.first_seen = self.first_seen.min(local.first_seen);
        self.last_seen = self.last_seen.max(local.last_seen);
        if local.severity < self.severity {
            self.severity = local.severity;
            self.category = local.category;
        }
        for op in &local.operations {
            if self.operations.len() < MAX_OPERATIONS && !self.operations.contains(op) {
                self.operations.push(op.clone());
            }
        }
        for target in &local.targets {
            if self.targets.len() < MAX_OPERATIONS && !self.targets.contains(target) {
                self.targets.push(target.clone());
            }
        }
        for code in &local.status_codes {
            if self.status_codes.len() < MAX_STATUS_CODES && !self.status_codes.contains(code) {
                self.status_codes.push(*code);
            }
        }
        if self.trace_ids.is_empty() {
            self.trace_ids.clone_from(&local.trace_ids);
            self.correlation_ids.clone_from(&local.correlation_ids);
        }
        self.windows = local.windows;
    }
}

fn group_type(error_type: &str) -> String {
    truncate(error_type, MAX_MESSAGE).to_owned()
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The error groups at one moment, with totals.
///
/// ```
/// let tracking = service_tracing::errors::ErrorTracking::new();
/// let summary = tracking.summary();
/// assert_eq!(summary.total(), 0);
/// println!("{}", summary.to_json());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ErrorSummary {
    total: u64,
    groups: usize,
    evictions: u64,
    by_severity: Vec<(Severity, u64)>,
    by_category: Vec<(Category, u64)>,
    by_operation: Vec<(String, u64)>,
    top_groups: Vec<ErrorGroup>,
    route_rates: Vec<RouteRate>,
}

impl ErrorSummary {
    pub(crate) fn set_rates(&mut self, at: Duration, route_rates: Vec<RouteRate>) {
        for group in &mut self.top_groups {
            group.set_as_of(at);
        }
        self.route_rates = route_rates;
    }

    /// Requests, errors and error ratios per operation over 1 min, 5 min and 1 h, counted
    /// from every request whatever the trace sampling (see [`RouteRates`](super::RouteRates)).
    /// Empty when the server layer has no rates observer.
    ///
    /// ```
    /// let summary = service_tracing::errors::ErrorTracking::new().summary();
    /// for rate in summary.route_rates() {
    ///     println!("{} {:?}: {:.1}% errors", rate.operation, rate.window, rate.ratio * 100.0);
    /// }
    /// ```
    pub fn route_rates(&self) -> &[RouteRate] {
        &self.route_rates
    }

    /// Every error recorded since start, including those of groups evicted since.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many groups are held now.
    pub fn group_count(&self) -> usize {
        self.groups
    }

    /// How many groups were evicted (least recently seen first) to stay within
    /// `max_groups`.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Errors per severity over the groups held, most urgent first; severities without errors
    /// are left out.
    pub fn by_severity(&self) -> &[(Severity, u64)] {
        &self.by_severity
    }

    /// Errors per category over the groups held, most errors first.
    pub fn by_category(&self) -> &[(Category, u64)] {
        &self.by_category
    }

    /// Errors per operation over the groups held, most errors first.
    pub fn by_operation(&self) -> &[(String, u64)] {
        &self.by_operation
    }

    /// The 10 groups with the most errors, most first.
    pub fn top_groups(&self) -> &[ErrorGroup] {
        &self.top_groups
    }

    /// The summary as JSON, for a status endpoint or a log line.
    ///
    /// ```
    /// let json = service_tracing::errors::ErrorTracking::new().summary().to_json();
    /// assert_eq!(json["total"], 0);
    /// assert!(json["top_groups"].as_array().is_some());
    /// ```
    pub fn to_json(&self) -> Value {
        let by_severity: serde_json::Map<String, Value> = self
            .by_severity
            .iter()
            .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
            .collect();
        let by_category: serde_json::Map<String, Value> = self
            .by_category
            .iter()
            .map(|(c, n)| (c.as_str().to_owned(), json!(n)))
            .collect();
        json!({
            "total": self.total,
            "groups": self.groups,
            "evictions": self.evictions,
            "by_severity": by_severity,
            "by_category": by_category,
            "by_operation": self
                .by_operation
                .iter()
                .map(|(op, n)| json!({ "operation": op, "count": n }))
                .collect::<Vec<_>>(),
            "top_groups": self.top_groups.iter().map(ErrorGroup::to_json).collect::<Vec<_>>(),
            "rates": self.route_rates.iter().map(RouteRate::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Groups by fingerprint, with a recency index for least-recently-seen eviction
/// (O(log n) per error).
#[derive(Debug)]
pub(crate) struct Store {
    max_groups: usize,
    groups: HashMap<u64, (ErrorGroup, u64)>,
    /// Recency tick → fingerprint; the first entry is the least recently seen group.
    recency: BTreeMap<u64, u64>,
    tick: u64,
    total: u64,
    evictions: u64,
}

impl Store {
    pub(crate) fn new(max_groups: usize) -> Self {
        Self {
            max_groups: max_groups.max(1),
            groups: HashMap::new(),
            recency: BTreeMap::new(),
            tick: 0,
            total: 0,
            evictions: 0,
        }
    }

    /// Adds the error to its group; `true` when the group is new.
    pub(crate) fn record(
        &mut self,
        fingerprint: u64,
        event: ErrorEvent,
        classified: (Severity, Category),
    ) -> bool {
        self.tick += 1;
        self.total = self.total.saturating_add(1);
        let tick = self.tick;
        if let Some((group, last)) = self.groups.get_mut(&fingerprint) {
            self.recency.remove(last);
            *last = tick;
            group.add(event, classified);
            self.recency.insert(tick, fingerprint);
            false
        } else {
            while self.groups.len() >= self.max_groups {
                let Some((_, oldest)) = self.recency.pop_first() else {
                    break;
                };
                self.groups.remove(&oldest);
                self.evictions += 1;
            }
            self.groups.insert(
                fingerprint,
                (ErrorGroup::new(fingerprint, event, classified), tick),
            );
            self.recency.insert(tick, fingerprint);
            true
        }
    }

    pub(crate) fn groups(&self) -> Vec<ErrorGroup> {
        let mut groups: Vec<ErrorGroup> = self.groups.values().map(|(g, _)| g.clone()).collect();
        sort_groups(&mut groups);
        groups
    }

    pub(crate) fn summary(&self) -> ErrorSummary {
        summarize(
            self.groups.values().map(|(g, _)| g),
            self.total,
            self.evictions,
        )
    }

    /// Every group held, in no order.
    #[cfg(feature = "redis")]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ErrorGroup> {
        self.groups.values().map(|(g, _)| g)
    }

    /// The group with this fingerprint, when held.
    pub(crate) fn get(&self, fingerprint: u64) -> Option<&ErrorGroup> {
        self.groups.get(&fingerprint).map(|(g, _)| g)
    }

    /// Every error recorded since start.
    #[cfg(feature = "redis")]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Groups evicted since start.
    #[cfg(feature = "redis")]
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Counts one (sampled) error of the group at `at` in its sliding windows.
    pub(crate) fn observe(&mut self, fingerprint: u64, at: Duration) {
        if let Some((group, _)) = self.groups.get_mut(&fingerprint) {
            group.windows.add(at, 1, 1);
        }
    }
}

/// The summary of `groups` (totals per severity, category and operation, the top groups).
pub(crate) fn summarize<'a>(
    groups: impl Iterator<Item = &'a ErrorGroup>,
    total: u64,
    evictions: u64,
) -> ErrorSummary {
    let mut by_severity: BTreeMap<Severity, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<Category, u64> = BTreeMap::new();
    let mut by_operation: HashMap<&str, u64> = HashMap::new();
    let mut top: Vec<&ErrorGroup> = Vec::new();
    let mut held = 0;
    for group in groups {
        *by_severity.entry(group.severity).or_default() += group.count;
        *by_category.entry(group.category).or_default() += group.count;
        for op in &group.operations {
            *by_operation.entry(op.as_str()).or_default() += group.count;
        }
        top.push(group);
        held += 1;
    }
    top.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let mut by_category: Vec<(Category, u64)> = by_category.into_iter().collect();
    by_category.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut by_operation: Vec<(String, u64)> = by_operation
        .into_iter()
        .map(|(op, n)| (op.to_owned(), n))
        .collect();
    by_operation.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ErrorSummary {
        total,
        groups: held,
        evictions,
        by_severity: by_severity.into_iter().collect(),
        by_category,
        by_operation,
        top_groups: top.into_iter().take(TOP_GROUPS).cloned().collect(),
        route_rates: Vec::new(),
    }
}

/// Most errors first; ties by fingerprint so the order is stable.
pub(crate) fn sort_groups(groups: &mut [ErrorGroup]) {
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::{ErrorEvent, ErrorOrigin};

    fn event(error_type: &str, trace: u128) -> ErrorEvent {
        let mut e = ErrorEvent::for_test(ErrorOrigin::Server, error_type, Some(500), None);
        e.trace_id = TraceId::from(trace);
        e.correlation_id = Some(format!("corr-{trace}"));
        e
    }

    const CLASS: (Severity, Category) = (Severity::High, Category::Application);

    #[test]
    fn one_hundred_thousand_error_types_keep_one_thousand_groups() {
        let mut store = Store::new(1_000);
        for i in 0..100_000u64 {
            store.record(i, event(&format!("E{i}"), u128::from(i) + 1), CLASS);
        }
        let summary = store.summary();
        assert_eq!(summary.group_count(), 1_000);
        assert_eq!(summary.evictions(), 99_000);
        assert_eq!(summary.total(), 100_000);
        assert_eq!((store.groups.len(), store.recency.len()), (1_000, 1_000));
        for g in store.groups() {
            assert!(g.trace_ids().len() <= MAX_SAMPLES);
            assert!(g.correlation_ids().len() <= MAX_SAMPLES);
        }
    }

    #[test]
    fn the_store_is_bounded_and_evicts_the_least_recently_seen() {
        let mut store = Store::new(1_000);
        // A hot group, seen throughout, must survive the flood of one-off groups.
        for i in 0..100_000u64 {
            store.record(i, event(&format!("E{i}"), u128::from(i) + 1), CLASS);
            store.record(u64::MAX, event("hot", u128::from(i) + 1), CLASS);
        }
        let summary = store.summary();
        assert_eq!(summary.group_count(), 1_000);
        assert!(store.groups.len() <= 1_000 && store.recency.len() == store.groups.len());
        // 100,000 one-off groups and the hot one: 100,001 groups, 1,000 kept.
        assert_eq!(summary.evictions(), 99_001);
        assert_eq!(summary.total(), 200_000);
        let groups = store.groups();
        assert_eq!(groups[0].error_type(), "hot");
        assert_eq!(groups[0].count(), 100_000);
        for g in &groups {
            assert!(g.trace_ids().len() <= MAX_SAMPLES);
            assert!(g.correlation_ids().len() <= MAX_SAMPLES);
            assert!(g.operations().len() <= MAX_OPERATIONS);
            assert!(g.status_codes().len() <= MAX_STATUS_CODES);
        }
        assert_eq!(groups[0].trace_ids().len(), MAX_SAMPLES);
        assert_eq!(
            groups[0].trace_ids().last(),
            Some(&TraceId::from(100_000u128)),
            "the latest samples are kept"
        );
        // The survivors are the 999 most recent one-off groups.
        assert!(store.groups.contains_key(&99_999));
        assert!(store.groups.contains_key(&99_001));
        assert!(!store.groups.contains_key(&99_000));
    }

    #[test]
    fn a_group_keeps_bounded_samples_and_its_first_message() {
        let mut store = Store::new(10);
        for i in 0..50u16 {
            let mut e = event("X", u128::from(i) + 1);
            e.message = format!("{}{i}", "é".repeat(400));
            e.operation = format!("GET /r{i}");
            e.status_code = Some(500 + i);
            store.record(1, e, CLASS);
        }
        let groups = store.groups();
        let g = &groups[0];
        assert_eq!(g.count(), 50);
        assert!(g.message().len() <= MAX_MESSAGE && g.message().starts_with('é'));
        assert_eq!(g.operations().len(), MAX_OPERATIONS);
        assert_eq!(g.status_codes().len(), MAX_STATUS_CODES);
        assert_eq!(
            g.correlation_ids().last().map(String::as_str),
            Some("corr-50")
        );
        assert!(g.first_seen() <= g.last_seen());
    }

    #[test]
    fn the_summary_adds_up() {
        let mut store = Store::new(100);
        for i in 0..12u64 {
            for _ in 0..=i {
                store.record(i, event(&format!("E{i}"), 1), CLASS);
            }
        }
        store.record(
            99,
            event("panic", 1),
            (Severity::Critical, Category::Application),
        );
        store.record(
            98,
            event("timeout", 1),
            (Severity::Medium, Category::Timeout),
        );
        let s = store.summary();
        let errors: u64 = (1..=12).sum::<u64>() + 2;
        assert_eq!(s.total(), errors);
        assert_eq!(s.group_count(), 14);
        assert_eq!(
            s.by_severity(),
            [
                (Severity::Critical, 1),
                (Severity::High, errors - 2),
                (Severity::Medium, 1)
            ]
        );
        assert_eq!(s.by_category()[0], (Category::Application, errors - 1));
        assert_eq!(s.by_category()[1], (Category::Timeout, 1));
        assert_eq!(s.by_operation(), [("GET /test".to_owned(), errors)]);
        assert_eq!(s.top_groups().len(), TOP_GROUPS);
        assert_eq!(s.top_groups()[0].count(), 12);
        assert_eq!(s.top_groups()[9].count(), 3);
        let json = s.to_json();
        assert_eq!(json["total"], errors);
        assert_eq!(json["by_severity"]["critical"], 1);
        assert_eq!(json["top_groups"][0]["error_type"], "E11");
        assert_eq!(json["top_groups"][0]["count"], 12);
        assert_eq!(json["top_groups"][0]["severity"], "high");
    }
}
