//! One end-of-request record for error rates, profiling and `http.server.request.duration`.
//!
//! Each of the three used to be a request observer of its own: three calls per request, each
//! finding its thread's shard (a per-thread lookup and an uncontended lock), each working out
//! the request's key again. [`RequestRecord`] is the one observer the set-up adds for them: a
//! request appends one small [`Ended`] record to its thread's batch (one lookup, one lock),
//! and every [`BATCH`] records the batch goes to each part in one go, which takes its own
//! shard once per batch. The route is the layer's interned [`RouteId`] (its template comes
//! with it): nothing is hashed or copied per request.
//!
//! Readers are never behind: every reader of these figures ([`RouteRates`]' snapshot,
//! profiling's tables, the duration histogram's collection) first hands every thread's batch
//! of every live record over ([`flush`]). What must happen at the end of the request itself
//! still does: a failing request's error is queued at once, `http.server.active_requests`
//! is counted at once, and with slow thresholds profiling records (and logs) each request as
//! it ends.
//!
//! [`RouteRates`]: crate::errors::RouteRates

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use service_tracing_middleware::{RequestObserver, RequestOutcome, RequestStart, RouteId};

use crate::errors::ErrorTracking;
use crate::metrics::HttpServerMetrics;
use crate::per_thread::PerThread;
use crate::profiling::Profiling;

/// Records a thread's batch holds before it is handed over.
pub(crate) const BATCH: usize = 64;

/// How an ended request names its route.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// The layer's id for the template, which carries the text.
    Id(RouteId),
    /// A template past the layer's interning cap (copied: rare).
    Text(Box<str>),
    /// No route matched.
    None,
}

/// What the three parts need of one ended request.
#[derive(Debug, Clone)]
pub(crate) struct Ended {
    pub(crate) ended_at: Instant,
    pub(crate) duration: Duration,
    pub(crate) method: &'static str,
    pub(crate) route: Route,
    pub(crate) status: Option<u16>,
    /// `error.type`: `None`, the status code itself, or a word of the layer's.
    pub(crate) error_type: Option<ErrorType>,
}

/// A request's `error.type`.
#[derive(Debug, Clone)]
pub(crate) enum ErrorType {
    /// The 5xx status code, as text.
    Status,
    /// `panic`, `response_body`, `_OTHER`.
    Word(&'static str),
    /// Anything else (copied).
    Text(Box<str>),
}

const WORDS: [&str; 3] = ["panic", "response_body", "_OTHER"];

impl Ended {
    /// The record of `outcome`.
    pub(crate) fn of(outcome: &RequestOutcome<'_>) -> Self {
        let route = match (outcome.route_id, outcome.route) {
            (Some(id), _) => Route::Id(id),
            (None, Some(text)) => Route::Text(text.into()),
            (None, None) => Route::None,
        };
        let error_type = outcome.error_type.map(|e| {
            if let Some(word) = WORDS.iter().find(|w| **w == e) {
                ErrorType::Word(word)
            } else if outcome.status.is_some_and(|s| status_is(s, e)) {
                ErrorType::Status
            } else {
                ErrorType::Text(e.into())
            }
        });
        Self {
            ended_at: outcome.ended_at,
            duration: outcome.duration,
            method: outcome.method,
            route,
            status: outcome.status,
            error_type,
        }
    }

    /// The route template, if one matched.
    pub(crate) fn route(&self) -> Option<&str> {
        match &self.route {
            Route::Id(id) => id.template(),
            Route::Text(text) => Some(text),
            Route::None => None,
        }
    }

    /// The layer's id for the route, if it has one.
    pub(crate) fn route_id(&self) -> Option<RouteId> {
        match self.route {
            Route::Id(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the request failed (it has an `error.type`).
    pub(crate) fn failed(&self) -> bool {
        self.error_type.is_some()
    }

    /// `error.type` as text; `buf` holds a status code's digits.
    pub(crate) fn error_type<'a>(&'a self, buf: &'a mut [u8; 5]) -> Option<&'a str> {
        match self.error_type.as_ref()? {
            ErrorType::Word(word) => Some(word),
            ErrorType::Text(text) => Some(text),
            ErrorType::Status => {
                let status = self.status?;
                let mut n = status;
                let mut len = 0;
                let mut digits = [0u8; 5];
                loop {
                    digits[len] = b'0' + (n % 10) as u8;
                    len += 1;
                    n /= 10;
                    if n == 0 {
                        break;
                    }
                }
                for (i, d) in digits[..len].iter().rev().enumerate() {
                    buf[i] = *d;
                }
                std::str::from_utf8(&buf[..len]).ok()
            }
        }
    }
}

/// Whether `text` is `status` in decimal.
fn status_is(status: u16, text: &str) -> bool {
    text.parse::<u16>().ok() == Some(status)
}

/// The parts one record feeds.
struct Parts {
    errors: Option<ErrorTracking>,
    profiling: Option<Profiling>,
    metrics: Option<HttpServerMetrics>,
    /// Each thread's records not handed over yet.
    pending: PerThread<Vec<Ended>>,
}

impl Parts {
    /// Hands `batch` to every part and empties it.
    fn hand_over(&self, batch: &mut Vec<Ended>) {
        if batch.is_empty() {
            return;
        }
        if let Some(errors) = &self.errors {
            errors.rates().record_ended(batch);
        }
        if let Some(profiling) = &self.profiling {
            profiling.record_ended(batch);
        }
        if let Some(metrics) = &self.metrics {
            metrics.record_ended(batch);
        }
        batch.clear();
    }
}

/// Every live record's parts, for [`flush`].
fn registry() -> &'static Mutex<Vec<Weak<Parts>>> {
    static LIVE: Mutex<Vec<Weak<Parts>>> = Mutex::new(Vec::new());
    &LIVE
}

/// Hands every thread's pending records of every live [`RequestRecord`] to their parts:
/// readers call it first, so their figures include every request that ended before.
pub(crate) fn flush() {
    let live: Vec<Arc<Parts>> = {
        let registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
        registry.iter().filter_map(Weak::upgrade).collect()
    };
    for parts in live {
        parts.pending.for_each(|batch| parts.hand_over(batch));
    }
}

/// The set-up's one request observer for error tracking, profiling and HTTP metrics; see the
/// [module](self) notes.
#[derive(Clone)]
pub(crate) struct RequestRecord {
    parts: Arc<Parts>,
}

impl RequestRecord {
    /// One observer for the parts given.
    pub(crate) fn new(
        errors: Option<ErrorTracking>,
        profiling: Option<Profiling>,
        metrics: Option<HttpServerMetrics>,
    ) -> Self {
        let parts = Arc::new(Parts {
            errors,
            profiling,
            metrics,
            pending: PerThread::default(),
        });
        let mut registry = registry().lock().unwrap_or_else(PoisonError::into_inner);
        registry.retain(|p| p.strong_count() > 0);
        registry.push(Arc::downgrade(&parts));
        Self { parts }
    }
}

impl RequestObserver for RequestRecord {
    fn on_request_start(&self, request: &RequestStart<'_>) {
        if let Some(metrics) = &self.parts.metrics {
            metrics.on_request_start(request);
        }
    }

    fn on_request_abandoned(&self, request: &RequestStart<'_>) {
        if let Some(metrics) = &self.parts.metrics {
            metrics.on_request_abandoned(request);
        }
    }

    fn on_request_end(&self, outcome: &RequestOutcome<'_>) {
        let parts = &*self.parts;
        if let Some(errors) = &parts.errors {
            errors.record_request_error(outcome);
        }
        if let Some(metrics) = &parts.metrics {
            metrics.request_ended(outcome);
        }
        let ended = Ended::of(outcome);
        if let Some(profiling) = &parts.profiling {
            // With slow thresholds, a slow request is logged when it ends.
            profiling.record_if_may_be_slow(&ended);
        }
        parts.pending.with_mine(|batch| {
            batch.push(ended);
            if batch.len() >= BATCH {
                parts.hand_over(batch);
            }
        });
    }

    fn wants_error_cause(&self) -> bool {
        self.parts.errors.is_some()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;
    use crate::export::Workers;
    use crate::metrics::{Metrics, MetricsSettings};
    use crate::window::Window;

    async fn send(app: &Router, path: &str) {
        let response = app
            .clone()
            .oneshot(
                http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .expect("request"),
            )
            .await
            .expect("infallible");
        let _ = response.into_body().collect().await;
    }

    #[tokio::test]
    async fn every_part_counts_requests_still_waiting_in_a_thread_batch() {
        let errors = ErrorTracking::new();
        let profiling = Profiling::new();
        let metrics = Metrics::start(
            &MetricsSettings {
                push: None,
                interval: crate::config::metrics::DEFAULT_INTERVAL,
                cardinality_limit: 100,
            },
            opentelemetry_sdk::Resource::builder_empty().build(),
            &Workers::default(),
        )
        .expect("metrics");
        let record = RequestRecord::new(
            Some(errors.clone()),
            Some(profiling.clone()),
            Some(metrics.http_server()),
        );
        let app = Router::new()
            .route("/records/{id}", get(|| async { "ok" }))
            .route("/records-fail", get(|| async { StatusCode::BAD_GATEWAY }))
            .layer(service_tracing_middleware::TracingLayer::new().with_observer(record));
        for id in 0..3 {
            send(&app, &format!("/records/{id}")).await;
        }
        send(&app, "/records-fail").await;
        // Four requests: far from a full batch, so only the readers' flush hands them over.

        let minute = |operation: &str| {
            errors
                .rates()
                .snapshot()
                .into_iter()
                .find(|r| r.operation == operation && r.window == Window::OneMinute)
                .map(|r| (r.requests, r.errors))
        };
        assert_eq!(minute("GET /records/{id}"), Some((3, 0)));
        assert_eq!(minute("GET /records-fail"), Some((1, 1)));

        let profile = profiling.operation("GET /records/{id}").expect("profiled");
        assert_eq!(profile.window(Window::OneMinute).map(|w| w.count), Some(3));

        let text = metrics.prometheus_text();
        for series in [
            "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/records/{id}\"} 3",
            "http_server_request_duration_seconds_count{error_type=\"502\",http_request_method=\"GET\",http_response_status_code=\"502\",http_route=\"/records-fail\"} 1",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }

    #[test]
    fn error_types_keep_their_text() {
        let ended = |status: u16, error_type: Option<ErrorType>| Ended {
            ended_at: Instant::now(),
            duration: Duration::ZERO,
            method: "GET",
            route: Route::None,
            status: Some(status),
            error_type,
        };
        let mut buf = [0; 5];
        assert_eq!(
            ended(503, Some(ErrorType::Status)).error_type(&mut buf),
            Some("503")
        );
        assert_eq!(
            ended(500, Some(ErrorType::Word("panic"))).error_type(&mut buf),
            Some("panic")
        );
        assert_eq!(ended(200, None).error_type(&mut buf), None);
    }
}
