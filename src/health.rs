//! The health route: how export, error storage and sampling are doing, as JSON, for a probe or
//! an operator.
//!
//! [`ServiceTracing::health_route`](crate::ServiceTracing::health_route) serves it on the
//! router `init` returns (outside the tracing layer: probes are neither traced nor measured).
//! It answers `200` while export works and `503` once span export has failed for longer than
//! [`health_unhealthy_after`](crate::ServiceTracing::health_unhealthy_after) (60 s by default):
//!
//! ```json
//! {
//!   "status": "ok",
//!   "service": "shop", "version": "0.1.0", "uptime_seconds": 3600,
//!   "traces": { "exported": 1200, "dropped": 0, "rejected": 0, "failed": 0, "retried": 0,
//!               "export_errors": 0, "queued": 3, "last_success_unix_ms": 1733400000000,
//!               "consecutive_failures": 0, "failing_for_seconds": null },
//!   "metrics": { "exported": 310, "rejected": 0, "failed": 0, "retried": 0, "export_errors": 0 },
//!   "logs": { "exported": 2, "rejected": 0, "failed": 0, "dropped": 0, "retried": 0 },
//!   "error_storage": "local",
//!   "sampling": null
//! }
//! ```
//!
//! # Who may read it
//!
//! It is closed by default to anything but loopback ([`HealthAccess::loopback`]): the peer's
//! address comes from axum's `ConnectInfo` (serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`), and a request whose peer is unknown
//! is refused. Open it explicitly to client networks ([`HealthAccess::networks`]) or to a
//! bearer token ([`HealthAccess::bearer_token`], compared in constant time). A refused request
//! gets `403` (wrong network) or `401` (no or wrong token) and an empty body.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use service_tracing_middleware::TrustIncoming;
use subtle::ConstantTimeEq as _;

use crate::clock::unix_ms;
use crate::errors::{ErrorStorageHealth, ErrorTracking};
use crate::export::Workers;
use crate::metrics::Metrics;
use crate::sampling::SamplingHandle;

/// How long span export may fail before the health route answers `503`, by default.
pub const DEFAULT_UNHEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Who may read the health route.
///
/// ```
/// use service_tracing::health::HealthAccess;
/// let inside = HealthAccess::networks(["10.0.0.0/8", "fd00::/8"]).expect("valid networks");
/// let with_token = HealthAccess::bearer_token("s3cret");
/// # drop((inside, with_token));
/// ```
#[derive(Clone)]
pub struct HealthAccess(Access);

#[derive(Clone)]
enum Access {
    Networks(TrustIncoming),
    Token(Arc<[u8]>),
}

impl fmt::Debug for HealthAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Access::Networks(networks) => f.debug_tuple("Networks").field(networks).finish(),
            Access::Token(_) => f.write_str("Token(..)"),
        }
    }
}

impl Default for HealthAccess {
    fn default() -> Self {
        Self::loopback()
    }
}

impl HealthAccess {
    /// Loopback peers only (`127.0.0.0/8`, `::1`): the default.
    pub fn loopback() -> Self {
        Self::networks(["127.0.0.0/8", "::1/128"]).unwrap_or_else(|_| Self::closed())
    }

    /// Peers in these networks (CIDR, or single addresses).
    ///
    /// ```
    /// use service_tracing::health::HealthAccess;
    /// assert!(HealthAccess::networks(["not a network"]).is_err());
    /// ```
    pub fn networks<I, S>(networks: I) -> Result<Self, crate::SetupError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        TrustIncoming::from_networks(networks)
            .map(|trust| Self(Access::Networks(trust)))
            .map_err(|e| crate::SetupError::invalid("health_access", &e.0, "a network (CIDR)"))
    }

    /// Requests with `Authorization: Bearer <token>`, from anywhere. An empty token lets no
    /// one in.
    pub fn bearer_token(token: impl Into<String>) -> Self {
        Self(Access::Token(token.into().into_bytes().into()))
    }

    fn closed() -> Self {
        Self(Access::Token(Arc::from(Vec::new())))
    }

    /// `None` when `req` may read the route, else the status that refuses it.
    fn refuses(&self, req: &Request) -> Option<StatusCode> {
        match &self.0 {
            Access::Networks(networks) => {
                // `TrustIncoming` reads the same `ConnectInfo`; no peer, no entry.
                let known = req.extensions().get::<ConnectInfo<SocketAddr>>().is_some()
                    || req.extensions().get::<SocketAddr>().is_some();
                (!known || !networks.is_trusted(req)).then_some(StatusCode::FORBIDDEN)
            }
            Access::Token(token) => {
                let given = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
                let ok = match given {
                    Some(given) if !token.is_empty() => bool::from(given.ct_eq(token)),
                    _ => false,
                };
                (!ok).then_some(StatusCode::UNAUTHORIZED)
            }
        }
    }
}

/// What the route reads, cloned from the guard's state at set-up.
#[derive(Clone)]
pub(crate) struct HealthState {
    pub(crate) service: String,
    pub(crate) started: Instant,
    pub(crate) workers: Workers,
    pub(crate) metrics: Option<Metrics>,
    pub(crate) errors: Option<ErrorTracking>,
    pub(crate) sampling: Option<SamplingHandle>,
    pub(crate) access: HealthAccess,
    pub(crate) unhealthy_after: Duration,
}

impl HealthState {
    /// The answer to `req`.
    fn answer(&self, req: &Request) -> Response {
        if let Some(status) = self.access.refuses(req) {
            return status.into_response();
        }
        let (healthy, body) = self.report(SystemTime::now());
        let status = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }

    /// Whether export is healthy at `now`, and the report.
    pub(crate) fn report(&self, now: SystemTime) -> (bool, Value) {
        let stats = self.workers.stats();
        let health = self.workers.health();
        let failing_for = health
            .failing_since
            .map(|since| now.duration_since(since).unwrap_or_default());
        let healthy = failing_for.is_none_or(|d| d <= self.unhealthy_after);
        let metrics = self.metrics.as_ref().map(|m| {
            let s = m.export_stats();
            json!({
                "exported": s.exported, "rejected": s.rejected, "failed": s.failed,
                "retried": s.retried, "export_errors": s.export_errors,
            })
        });
        let logs = self.errors.as_ref().map(|e| {
            let s = e.alert_stats();
            json!({
                "exported": s.logs_exported, "rejected": s.logs_rejected,
                "failed": s.logs_failed, "dropped": s.logs_dropped, "retried": s.logs_retried,
            })
        });
        let error_storage = self.errors.as_ref().map(|e| match e.storage_health() {
            ErrorStorageHealth::Local => json!("local"),
            ErrorStorageHealth::Shared => json!("shared"),
            ErrorStorageHealth::Degraded { since, last_error } => json!({
                "degraded": { "since_unix_ms": unix_ms(since), "last_error": last_error }
            }),
        });
        let sampling = self.sampling.as_ref().map(|s| {
            let stats = s.stats();
            let rule = |r: &crate::sampling::RuleStats| {
                let target = match r.action {
                    crate::sampling::SampleAction::PerSecond(target) => Some(target),
                    _ => None,
                };
                json!({
                    "rule": r.rule, "sampled": r.sampled, "dropped": r.dropped,
                    "effective_ratio": r.effective_ratio, "target_per_second": target,
                })
            };
            json!({
                "rules": stats.rules.iter().map(rule).collect::<Vec<_>>(),
                "otherwise": rule(&stats.otherwise),
                "followed_parent": stats.followed_parent,
                "kept_errors": stats.kept_errors,
                "kept_slow": stats.kept_slow,
            })
        });
        let body = json!({
            "status": if healthy { "ok" } else { "unhealthy" },
            "service": self.service,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "traces": {
                "exported": stats.exported, "dropped": stats.dropped,
                "rejected": stats.rejected, "failed": stats.failed,
                "retried": stats.retried, "export_errors": stats.export_errors,
                "queued": stats.queued,
                "last_success_unix_ms": health.last_success.map(unix_ms),
                "consecutive_failures": health.consecutive_failures,
                "failing_for_seconds": failing_for.map(|d| d.as_secs()),
            },
            "metrics": metrics,
            "logs": logs,
            "error_storage": error_storage,
            "sampling": sampling,
        });
        (healthy, body)
    }
}

/// Serves `state`'s report at `path` on `app` (and, with the `cpu-profile` feature, CPU
/// profiles at `{path}/profile`).
pub(crate) fn with_health_route<S>(
    app: axum::Router<S>,
    path: &str,
    state: HealthState,
) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    #[cfg(feature = "cpu-profile")]
    let app = {
        let state = state.clone();
        app.route(
            &format!("{}/profile", path.trim_end_matches('/')),
            axum::routing::get(move |req: Request| {
                let state = state.clone();
                async move { profile::answer(&state.access, req).await }
            }),
        )
    };
    app.route(
        path,
        axum::routing::get(move |req: Request| {
            let state = state.clone();
            async move { state.answer(&req) }
        }),
    )
}

/// `GET {health route}/profile?seconds=N&format=svg|pprof`: a CPU profile of the whole process
/// (feature `cpu-profile`), behind the health route's access. `seconds` defaults to 10 and is
/// at most [`MAX_PROFILE_SECONDS`]; `format` defaults to `svg` (a flame graph), `pprof` gives
/// the protobuf `go tool pprof` reads. One profile at a time: another request meanwhile gets
/// `409`; bad parameters get `400`.
#[cfg(feature = "cpu-profile")]
pub const MAX_PROFILE_SECONDS: u64 = 60;

#[cfg(feature = "cpu-profile")]
mod profile {
    use std::time::Duration;

    use axum::extract::Request;
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};

    use super::{HealthAccess, MAX_PROFILE_SECONDS};
    use crate::process::cpu_profile::{self, CpuProfileError, CpuProfileOptions};

    enum Format {
        Svg,
        Pprof,
    }

    /// `seconds` and `format` from the query, or why not.
    fn parameters(query: Option<&str>) -> Result<(u64, Format), String> {
        let (mut seconds, mut format) = (10, Format::Svg);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                ("seconds", n) => {
                    seconds = n
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PROFILE_SECONDS).contains(n))
                        .ok_or(format!("seconds: 1 to {MAX_PROFILE_SECONDS}"))?;
                }
                ("format", "svg") => format = Format::Svg,
                ("format", "pprof") => format = Format::Pprof,
                ("format", _) => return Err("format: svg or pprof".to_owned()),
                _ => {}
            }
        }
        Ok((seconds, format))
    }

    pub(super) async fn answer(access: &HealthAccess, req: Request) -> Response {
        if let Some(status) = access.refuses(&req) {
            return status.into_response();
        }
        let asked = parameters(req.uri().query());
        drop(req);
        let (seconds, format) = match asked {
            Ok(p) => p,
            Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
        };
        let options = CpuProfileOptions::new(Duration::from_secs(seconds));
        match cpu_profile::profile(options).await {
            Ok(profile) => match format {
                Format::Svg => (
                    [(header::CONTENT_TYPE, "image/svg+xml")],
                    profile.flamegraph_svg,
                )
                    .into_response(),
                Format::Pprof => (
                    [(header::CONTENT_TYPE, "application/octet-stream")],
                    profile.pprof,
                )
                    .into_response(),
            },
            Err(CpuProfileError::AlreadyRunning) => (
                StatusCode::CONFLICT,
                CpuProfileError::AlreadyRunning.to_string(),
            )
                .into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

#[cfg(test)]
mod tests;
