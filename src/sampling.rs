//! Sampling you can steer: per-route rules, a rate per second, and a handle that changes them
//! while the service serves.
//!
//! [`SamplingRules`] lists [`RouteRule`]s (a route template, optionally a method, and a
//! [`SampleAction`]) and what to do otherwise. The first rule that matches a new trace's
//! server span decides; a span with a parent follows its parent when the configured
//! [`TracesSampler`](crate::TracesSampler) is parent-based (the default), as OpenTelemetry's
//! parent-based samplers do. Give the rules to
//! [`ServiceTracing::sampling_rules`](crate::ServiceTracing::sampling_rules), then change them
//! with the [`SamplingHandle`] that [`TracingGuard::sampling`](crate::TracingGuard::sampling)
//! returns.
//!
//! ```
//! use service_tracing::sampling::{RouteRule, SampleAction, SamplingRules};
//!
//! let rules = SamplingRules::new()
//!     .rule(RouteRule::new("/health", SampleAction::Never))
//!     .rule(RouteRule::new("/checkout", SampleAction::Always).method("POST"))
//!     .rule(RouteRule::new("/search", SampleAction::PerSecond(5.0)))
//!     .otherwise(SampleAction::Ratio(0.1));
//! let app: axum::Router = axum::Router::new();
//! let (app, guard) = service_tracing::ServiceTracing::builder("shop")
//!     .exporter(service_tracing::TracesExporter::None)
//!     .sampling_rules(rules)
//!     .init(app)?;
//! let sampling = guard.sampling().expect("rules were given");
//! sampling.replace(SamplingRules::new().otherwise(SampleAction::Always));
//! # Ok::<(), service_tracing::SetupError>(())
//! ```
//!
//! # How a rule matches
//!
//! Rules read the span's name, never its attributes: a server span is named
//! `{method} {route template}` (`GET /users/{id}`), so a rule names the template as the router
//! has it. A request no route matched, or with a method outside the HTTP vocabulary (its span
//! is named `HTTP`), and every span that is not a server span (a job's root span, a client call
//! without a parent) take the `otherwise` action.
//!
//! # Rates
//!
//! [`SampleAction::PerSecond`] keeps at most that many new traces each second: each second the
//! share of traces kept is set from the previous second's traffic, so the traces kept spread
//! over the second, and a count stops the second at the target when traffic jumps. Over any
//! minute the traces kept never exceed the target (rounded up per second).
//!
//! # Keeping errors and slow requests
//!
//! The decision is made when the request starts (head sampling), before anyone knows whether
//! it will fail. [`SamplingRules::keep_errors`] and [`SamplingRules::keep_slower_than`] change
//! that where the decision is still this service's to change: a new trace the rules drop is
//! recorded without being sampled (`RecordOnly`), and its span is exported after all when it
//! ends in error or slow ([`SamplingStats::kept_errors`], [`SamplingStats::kept_slow`]).
//!
//! The limits, which are head sampling's:
//! - only the span whose trace this service started is kept: the trace context it sent on
//!   said "not sampled", so the services it called recorded nothing, and its own child spans
//!   (client calls, `tracing` spans) followed that decision; the kept span is a trace of one
//!   span, with its attributes, status, events and exception;
//! - a request whose caller chose "not sampled" (a parent, under a parent-based sampler) is
//!   the caller's decision and is not kept;
//! - recording costs a dropped request what a sampled one costs on the request thread (the
//!   span's attributes, the context), though not the export: keep the cost in mind on routes
//!   sampled at a low ratio for their volume.
//!
//! Error tracking, profiling and the HTTP metrics count every request whatever the decision.
//! Statistics ([`SamplingHandle::stats`]) count from the moment the rules they describe were
//! set.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use crate::trace_share::{keeps, Budget, Counter};

mod keep;

/// What a rule does with the new traces it matches.
///
/// ```
/// use service_tracing::sampling::SampleAction;
/// assert_eq!(SampleAction::Ratio(1.0).ratio(), Some(1.0));
/// assert_eq!(SampleAction::PerSecond(10.0).ratio(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum SampleAction {
    /// Keep none.
    Never,
    /// Keep all.
    Always,
    /// Keep this share (0 to 1), decided by trace id as OpenTelemetry's `traceidratio` does,
    /// so that services sharing a ratio keep the same traces.
    Ratio(f64),
    /// Keep at most this many each second (see the [module](self) notes).
    PerSecond(f64),
}

impl SampleAction {
    /// The share of traces kept, when it is fixed (`Never` 0, `Always` 1, a ratio clamped to
    /// 0..=1); `None` for a rate, whose share follows the traffic.
    pub fn ratio(self) -> Option<f64> {
        match self {
            SampleAction::Never => Some(0.0),
            SampleAction::Always => Some(1.0),
            SampleAction::Ratio(r) => Some(if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }),
            SampleAction::PerSecond(_) => None,
        }
    }
}

/// One rule: the route template it matches, optionally only for one method, and its action.
///
/// ```
/// use service_tracing::sampling::{RouteRule, SampleAction};
/// let rule = RouteRule::new("/orders/{id}", SampleAction::Always).method("DELETE");
/// assert_eq!(rule.to_string(), "DELETE /orders/{id}");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRule {
    method: Option<String>,
    route: String,
    action: SampleAction,
}

impl RouteRule {
    /// A rule for `route` (a template, as given to the router), any method.
    pub fn new(route: impl Into<String>, action: SampleAction) -> Self {
        Self {
            method: None,
            route: route.into(),
            action,
        }
    }

    /// Only for requests with this method (`GET`, `POST`, ...; compared as the span name
    /// gives it, upper case).
    #[must_use]
    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into().to_ascii_uppercase());
        self
    }

    fn matches(&self, method: &str, route: &str) -> bool {
        self.route == route && self.method.as_deref().is_none_or(|m| m == method)
    }
}

impl fmt::Display for RouteRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(method) => write!(f, "{method} {}", self.route),
            None => write!(f, "{}", self.route),
        }
    }
}

/// The rules, in order (the first match decides), and the action for every other new trace.
///
/// ```
/// use service_tracing::sampling::{RouteRule, SampleAction, SamplingRules};
/// let rules = SamplingRules::new()
///     .rule(RouteRule::new("/health", SampleAction::Never))
///     .otherwise(SampleAction::PerSecond(20.0));
/// assert_eq!(rules.rules().len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingRules {
    rules: Vec<RouteRule>,
    otherwise: Option<SampleAction>,
    keep_errors: bool,
    keep_slower_than: Option<Duration>,
}

impl SamplingRules {
    /// No rule; otherwise what the configured sampler does for a new trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule after those already given.
    #[must_use]
    pub fn rule(mut self, rule: RouteRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// The action for new traces no rule matches (default: the configured sampler's, e.g. a
    /// ratio from `OTEL_TRACES_SAMPLER_ARG`).
    #[must_use]
    pub fn otherwise(mut self, action: SampleAction) -> Self {
        self.otherwise = Some(action);
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Keeps the new traces the rules drop when their span ends in error (a server span's
    /// `5xx` or panic, any span with status `Error`): such spans are recorded without being
    /// sampled, and exported when they fail. Recording costs an unsampled request what a
    /// sampled one costs on the request thread (not the export); see the
    /// [module](self#keeping-errors-and-slow-requests) notes for what is kept.
    ///
    /// ```
    /// use service_tracing::sampling::{SampleAction, SamplingRules};
    /// let rules = SamplingRules::new().otherwise(SampleAction::Ratio(0.01)).keep_errors();
    /// # let _ = rules;
    /// ```
    #[must_use]
    pub fn keep_errors(mut self) -> Self {
        self.keep_errors = true;
        self
    }

    /// Keeps the new traces the rules drop when their span lasts longer than `threshold`, or
    /// profiling marks it slow (`performance.slow`, see [`crate::profiling`]); recorded as
    /// with [`keep_errors`](Self::keep_errors).
    ///
    /// ```
    /// use std::time::Duration;
    /// use service_tracing::sampling::{SampleAction, SamplingRules};
    /// let rules = SamplingRules::new()
    ///     .otherwise(SampleAction::PerSecond(10.0))
    ///     .keep_errors()
    ///     .keep_slower_than(Duration::from_secs(2));
    /// # let _ = rules;
    /// ```
    #[must_use]
    pub fn keep_slower_than(mut self, threshold: Duration) -> Self {
        self.keep_slower_than = Some(threshold);
        self
    }

    /// Whether dropped new traces are recorded, to be kept if they fail or turn slow.
    fn keeps_some(&self) -> bool {
        self.keep_errors || self.keep_slower_than.is_some()
    }
}

/// How one rule (or `otherwise`) has decided since it was set.
///
/// ```
/// # fn f(handle: &service_tracing::sampling::SamplingHandle) {
/// for rule in handle.stats().rules {
///     println!("{}: {} kept, {} dropped", rule.rule, rule.sampled, rule.dropped);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RuleStats {
    /// The rule (`POST /checkout`), or `otherwise`.
    pub rule: String,
    /// Its action.
    pub action: SampleAction,
    /// New traces it kept.
    pub sampled: u64,
    /// New traces it dropped.
    pub dropped: u64,
    /// The share it keeps now: the action's ratio, or for a rate, the share set from the last
    /// second's traffic.
    pub effective_ratio: f64,
}

/// Every rule's figures, in order, then `otherwise`'s.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct SamplingStats {
    /// The route rules', in order.
    pub rules: Vec<RuleStats>,
    /// The `otherwise` action's.
    pub otherwise: RuleStats,
    /// Spans that followed their parent's decision.
    pub followed_parent: u64,
    /// Dropped traces whose span was kept because it failed
    /// ([`SamplingRules::keep_errors`]).
    pub kept_errors: u64,
    /// Dropped traces whose span was kept because it was slow
    /// ([`SamplingRules::keep_slower_than`]).
    pub kept_slow: u64,
}

/// Changes the rules while the service serves, and reads their figures. Cheap to clone.
///
/// ```
/// use service_tracing::sampling::{RouteSampler, SampleAction, SamplingRules};
/// let sampler = RouteSampler::new(SamplingRules::new());
/// let handle = sampler.handle();
/// handle.replace(SamplingRules::new().otherwise(SampleAction::Ratio(0.25)));
/// assert_eq!(handle.stats().otherwise.effective_ratio, 0.25);
/// ```
#[derive(Clone)]
pub struct SamplingHandle {
    state: Arc<State>,
}

impl fmt::Debug for SamplingHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplingHandle").finish_non_exhaustive()
    }
}

impl SamplingHandle {
    /// Puts `rules` in place for the next decisions (in-flight requests keep theirs); their
    /// figures start from zero.
    pub fn replace(&self, rules: SamplingRules) {
        let base = self.state.plan.load().base;
        self.state
            .plan
            .store(Arc::new(Plan::new(rules, base, self.state.seconds())));
    }

    /// The rules in place.
    pub fn rules(&self) -> SamplingRules {
        self.state.plan.load().given.clone()
    }

    /// Each rule's figures since the rules were put in place.
    pub fn stats(&self) -> SamplingStats {
        let plan = self.state.plan.load();
        SamplingStats {
            rules: plan
                .rules
                .iter()
                .map(|rule| rule.stats(rule.rule.to_string()))
                .collect(),
            otherwise: plan.otherwise.stats("otherwise".to_owned()),
            followed_parent: self.state.followed_parent.sum(),
            kept_errors: self.state.kept_errors.sum(),
            kept_slow: self.state.kept_slow.sum(),
        }
    }
}

/// An OpenTelemetry sampler that applies [`SamplingRules`]; what
/// [`ServiceTracing::sampling_rules`](crate::ServiceTracing::sampling_rules) installs. Use it
/// on a tracer provider of your own with a bare layer.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use service_tracing::sampling::{RouteRule, RouteSampler, SampleAction, SamplingRules};
///
/// let sampler = RouteSampler::new(
///     SamplingRules::new().rule(RouteRule::new("/health", SampleAction::Never)),
/// )
/// .parent_based(true);
/// let handle = sampler.handle();
/// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
/// # drop((provider, handle));
/// ```
#[derive(Clone, Debug)]
pub struct RouteSampler {
    state: Arc<State>,
    parent_based: bool,
}

impl RouteSampler {
    /// Applies `rules`, `otherwise` keeping every trace unless they say otherwise; not
    /// parent-based until told.
    pub fn new(rules: SamplingRules) -> Self {
        Self::with_base(rules, SampleAction::Always, false)
    }

    pub(crate) fn with_base(rules: SamplingRules, base: SampleAction, parent_based: bool) -> Self {
        let start = Instant::now();
        Self {
            state: Arc::new(State {
                plan: ArcSwap::from_pointee(Plan::new(rules, base, 0)),
                start,
                followed_parent: Counter::default(),
                kept_errors: Counter::default(),
                kept_slow: Counter::default(),
            }),
            parent_based,
        }
    }

    /// Whether a span with a valid parent follows the parent's decision (as OpenTelemetry's
    /// `parentbased_*` samplers do) rather than the rules.
    #[must_use]
    pub fn parent_based(mut self, parent_based: bool) -> Self {
        self.parent_based = parent_based;
        self
    }

    /// The handle that changes this sampler's rules.
    pub fn handle(&self) -> SamplingHandle {
        SamplingHandle {
            state: self.state.clone(),
        }
    }

    /// The decision for a new trace: the first rule whose route and method match the span's
    /// name (server spans only), else `otherwise`.
    /// Dropped, it is recorded all the same when the rules keep failing or slow spans
    /// ([`keep`]).
    fn decide_root(&self, trace_id: TraceId, name: &str, kind: &SpanKind) -> SamplingDecision {
        let plan = self.state.plan.load();
        let rule = match (kind, name.split_once(' ')) {
            (SpanKind::Server, Some((method, route))) => plan
                .rules
                .iter()
                .find(|rule| rule.rule.matches(method, route))
                .unwrap_or(&plan.otherwise),
            _ => &plan.otherwise,
        };
        if rule.decide(trace_id, || self.state.seconds()) {
            SamplingDecision::RecordAndSample
        } else if plan.given.keeps_some() {
            SamplingDecision::RecordOnly
        } else {
            SamplingDecision::Drop
        }
    }
}

impl ShouldSample for RouteSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.filter(|cx| cx.has_active_span());
        let span = parent.map(|cx| cx.span());
        let parent = span
            .as_ref()
            .map(|span| span.span_context())
            .filter(|sc| sc.is_valid());
        let (decision, trace_state) = match parent {
            Some(sc) if self.parent_based => {
                self.state.followed_parent.add(1);
                let decision = if sc.is_sampled() {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                };
                (decision, sc.trace_state().clone())
            }
            Some(sc) => (
                self.decide_root(trace_id, name, span_kind),
                sc.trace_state().clone(),
            ),
            None => (
                self.decide_root(trace_id, name, span_kind),
                TraceState::default(),
            ),
        };
        SamplingResult {
            decision,
            attributes: Vec::new(),
            trace_state,
        }
    }
}

/// The sampler set-up installs: the SDK's for the configured [`TracesSampler`], or the route
/// rules' when there are rules.
///
/// [`TracesSampler`]: crate::TracesSampler
#[derive(Clone, Debug)]
pub(crate) enum Installed {
    Sdk(opentelemetry_sdk::trace::Sampler),
    Rules(RouteSampler),
}

impl Installed {
    /// What exports the failing and slow spans of dropped traces when the rules keep them,
    /// for the processor chain, right before the export worker.
    pub(crate) fn keep(&self) -> keep::Keep {
        keep::Keep::new(match self {
            Installed::Sdk(_) => None,
            Installed::Rules(rules) => Some(rules.state.clone()),
        })
    }
}

impl Installed {
    pub(crate) fn of(config: &crate::config::Resolved) -> Self {
        match &config.sampling {
            Some(rules) => Installed::Rules(rules.clone()),
            None => Installed::Sdk(config.sampler.to_sdk()),
        }
    }
}

impl ShouldSample for Installed {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        match self {
            Installed::Sdk(sampler) => {
                sampler.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
            }
            Installed::Rules(sampler) => {
                sampler.should_sample(parent_context, trace_id, name, span_kind, attributes, links)
            }
        }
    }
}

struct State {
    plan: ArcSwap<Plan>,
    start: Instant,
    followed_parent: Counter,
    kept_errors: Counter,
    kept_slow: Counter,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("rules", &self.plan.load().given)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Whole seconds since the sampler was made.
    fn seconds(&self) -> u64 {
        self.start.elapsed().as_secs()
    }
}

/// The rules in place, each with its counts.
struct Plan {
    given: SamplingRules,
    /// What `otherwise` does when the rules do not say: the configured sampler's action.
    base: SampleAction,
    rules: Vec<Decider>,
    otherwise: Decider,
}

impl Plan {
    fn new(given: SamplingRules, base: SampleAction, now: u64) -> Self {
        let rules = given
            .rules
            .iter()
            .map(|rule| Decider::new(rule.clone(), now))
            .collect();
        let otherwise = RouteRule::new("", given.otherwise.unwrap_or(base));
        Self {
            rules,
            otherwise: Decider::new(otherwise, now),
            base,
            given,
        }
    }
}

/// One rule with its counts and, for a rate, its limiter.
struct Decider {
    rule: RouteRule,
    sampled: Counter,
    dropped: Counter,
    rate: Option<Rate>,
}

impl Decider {
    fn new(rule: RouteRule, now: u64) -> Self {
        let rate = match rule.action {
            SampleAction::PerSecond(target) => Some(Rate::new(target, now)),
            _ => None,
        };
        Self {
            rule,
            sampled: Counter::default(),
            dropped: Counter::default(),
            rate,
        }
    }

    fn decide(&self, trace_id: TraceId, seconds: impl FnOnce() -> u64) -> bool {
        let keep = match (&self.rate, self.rule.action.ratio()) {
            (Some(rate), _) => rate.admit(seconds(), trace_id),
            (None, Some(ratio)) => keeps(ratio, trace_id),
            (None, None) => true,
        };
        if keep {
            self.sampled.add(1);
        } else {
            self.dropped.add(1);
        }
        keep
    }

    fn stats(&self, rule: String) -> RuleStats {
        RuleStats {
            rule,
            action: self.rule.action,
            sampled: self.sampled.sum(),
            dropped: self.dropped.sum(),
            effective_ratio: match &self.rate {
                Some(rate) => rate.ratio(),
                None => self.rule.action.ratio().unwrap_or(1.0),
            },
        }
    }
}

/// At most `target` new traces a second: the share kept follows the traffic
/// ([`Budget`]), and a count closes the second at the target.
struct Rate {
    budget: Budget,
    /// The most kept in one second: the target, rounded up.
    cap: u64,
    /// Kept in the current second. Written only when a trace passes the share, so at a low
    /// target this shared count is rarely touched.
    kept: AtomicU64,
}

impl Rate {
    fn new(target: f64, now: u64) -> Self {
        let budget = Budget::new(target, now);
        Self {
            cap: budget.per_second().ceil() as u64,
            budget,
            kept: AtomicU64::new(0),
        }
    }

    fn ratio(&self) -> f64 {
        self.budget.ratio()
    }

    fn admit(&self, now: u64, trace_id: TraceId) -> bool {
        if self.budget.count(now) {
            self.kept.store(0, Ordering::Relaxed);
        }
        if !keeps(self.ratio(), trace_id) {
            return false;
        }
        self.kept.fetch_add(1, Ordering::Relaxed) < self.cap
    }
}

#[cfg(test)]
mod tests;
