//! What [`Profiling`](super::Profiling) reports: one operation's figures and the whole summary,
//! each with its JSON form.

use std::time::Duration;

use serde_json::{json, Value};

use super::{AnalysisStats, Bottleneck, LatencyStats, ResourceSummary, RouteProfile, Window};
#[cfg(doc)]
use super::{Profiling, OTHER_OPERATION};

/// Where an operation's figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperationKind {
    /// Requests this service answered (`{METHOD} {route}`), from the request observer.
    Server,
    /// Calls to dependencies (`{METHOD} {server.address}`), from client spans.
    Client,
    /// Any other span, by name.
    Internal,
    /// [`OTHER_OPERATION`]: everything past the operation bound.
    Other,
}

impl OperationKind {
    /// `server`, `client`, `internal` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
            Self::Internal => "internal",
            Self::Other => "other",
        }
    }
}

/// One operation's figures over each window, read from [`Profiling::operations`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct OperationProfile {
    /// The operation key (see the module's notes).
    pub operation: String,
    /// Server, client, internal, or `_OTHER`.
    pub kind: OperationKind,
    /// The figures over each window, shortest first.
    pub windows: Vec<LatencyStats>,
    /// The configured slow threshold, else the automatic baseline when on.
    pub threshold: Option<Duration>,
    /// Slow operations seen since start.
    pub slow: u64,
    /// Slow-operation log lines held back by the rate limit since start.
    pub suppressed_logs: u64,
}

impl OperationProfile {
    /// The figures over `window`.
    ///
    /// ```
    /// use service_tracing::profiling::{Profiling, Window};
    /// let profiling = Profiling::new();
    /// profiling.record_request("GET", Some("/a"), std::time::Duration::from_millis(3), false);
    /// let op = profiling.operation("GET /a").expect("recorded");
    /// assert_eq!(op.window(Window::OneHour).map(|w| w.count), Some(1));
    /// ```
    pub fn window(&self, window: Window) -> Option<&LatencyStats> {
        self.windows.iter().find(|w| w.window == window)
    }

    /// The figures as JSON (durations in milliseconds).
    pub fn to_json(&self) -> Value {
        let windows: serde_json::Map<String, Value> = self
            .windows
            .iter()
            .map(|w| (w.window.as_str().to_owned(), w.to_json()))
            .collect();
        json!({
            "operation": self.operation,
            "kind": self.kind.as_str(),
            "threshold_ms": self.threshold.map(|t| t.as_secs_f64() * 1_000.0),
            "slow": self.slow,
            "suppressed_logs": self.suppressed_logs,
            "windows": windows,
        })
    }
}

/// Everything [`Profiling`] knows, ready to serve ([`to_json`](Self::to_json)).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProfilingSummary {
    /// Every operation, in the order first seen (`_OTHER` last).
    pub operations: Vec<OperationProfile>,
    /// Operations counted under `_OTHER` because the bound was reached.
    pub overflow: u64,
    /// Where each route's time goes.
    pub routes: Vec<RouteProfile>,
    /// The most recent bottlenecks, oldest first.
    pub recent_bottlenecks: Vec<Bottleneck>,
    /// What the analysis dropped.
    pub analysis: AnalysisStats,
    /// The process's resources, when sampled ([`Profiling::with_resources`]).
    pub resources: Option<ResourceSummary>,
}

impl ProfilingSummary {
    /// The summary as a JSON value, durations in milliseconds.
    ///
    /// ```
    /// let profiling = service_tracing::profiling::Profiling::new();
    /// profiling.record_request("GET", Some("/a"), std::time::Duration::from_millis(3), false);
    /// let json = profiling.summary().to_json();
    /// assert_eq!(json["operations"][0]["operation"], "GET /a");
    /// assert_eq!(json["operations"][0]["windows"]["1m"]["count"], 1);
    /// ```
    pub fn to_json(&self) -> Value {
        json!({
            "operations": self.operations.iter().map(OperationProfile::to_json).collect::<Vec<_>>(),
            "overflow": self.overflow,
            "routes": self.routes.iter().map(RouteProfile::to_json).collect::<Vec<_>>(),
            "recent_bottlenecks": self
                .recent_bottlenecks
                .iter()
                .map(Bottleneck::to_json)
                .collect::<Vec<_>>(),
            "analysis": {
                "traces": self.analysis.traces,
                "dropped_spans": self.analysis.dropped_spans,
                "truncated_spans": self.analysis.truncated_spans,
                "evicted_traces": self.analysis.evicted_traces,
                "overflow_routes": self.analysis.overflow_routes,
                "skipped_traces": self.analysis.skipped_traces,
            },
            "resources": self.resources.as_ref().map(ResourceSummary::to_json),
        })
    }
}
