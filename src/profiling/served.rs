//! Served requests batched per thread on their way into the operations table.
//!
//! The observer is told of every request; recording each into the shared table would take
//! the table's lock once per request, from every runtime thread. When no slow threshold can
//! apply to a server request (none configured, no automatic baseline: the default), nothing
//! about a request needs the table at once, so the observer appends a small record to its
//! thread's batch (`per_thread`) and the thread moves the batch into the table once it holds
//! [`BATCH`] requests: the shared lock is taken once per [`BATCH`] requests per thread.
//! Readers move every thread's batch in before they read, so figures are never behind. With
//! thresholds, the observer records directly, so a slow request is logged when it ends.

use std::time::Duration;

use service_tracing_middleware::{RequestOutcome, RouteId};

use super::{Config, Operations};

/// Requests a thread's batch holds before it is moved into the table.
pub(super) const BATCH: usize = 64;

/// How a batched request names its route.
#[derive(Debug)]
enum Route {
    /// The layer's id for the template (no copy of the text).
    Id(RouteId),
    /// A template past the layer's interning cap.
    Text(Box<str>),
    /// No route matched.
    None,
}

/// One served request, as the table needs it.
#[derive(Debug)]
pub(super) struct Served {
    at: Duration,
    duration: Duration,
    error: bool,
    method: &'static str,
    route: Route,
}

impl Served {
    /// The request `outcome` tells of, ended at `at` on the profiling clock.
    pub(super) fn of(outcome: &RequestOutcome<'_>, at: Duration) -> Self {
        let route = match (outcome.route_id, outcome.route) {
            (Some(id), _) => Route::Id(id),
            (None, Some(text)) => Route::Text(text.into()),
            (None, None) => Route::None,
        };
        Self {
            at,
            duration: outcome.duration,
            error: outcome.error_type.is_some(),
            method: outcome.method,
            route,
        }
    }

    /// The request `ended` tells of, ended at `at` on the profiling clock.
    pub(super) fn of_ended(ended: &crate::request_record::Ended, at: Duration) -> Self {
        use crate::request_record::Route as R;
        let route = match &ended.route {
            R::Id(id) => Route::Id(*id),
            R::Text(text) => Route::Text(text.clone()),
            R::None => Route::None,
        };
        Self {
            at,
            duration: ended.duration,
            error: ended.failed(),
            method: ended.method,
            route,
        }
    }

    /// Records the request into `operations`, as the observer would have when it ended.
    pub(super) fn record(self, operations: &mut Operations, config: &Config) {
        let operation = match &self.route {
            Route::Id(id) => match operations.server.get_by_id(self.method, *id) {
                Some(index) => operations.entry(Some(index), config),
                // The template's text is only needed the first time the table meets the id.
                None => operations.server(self.method, id.template(), Some(*id), config),
            },
            Route::Text(text) => operations.server(self.method, Some(text), None, config),
            Route::None => operations.server(self.method, None, None, config),
        };
        let (_, log) = operation.record(self.at, self.duration, self.error, None, config);
        if let Some(log) = log {
            log.emit();
        }
    }
}
