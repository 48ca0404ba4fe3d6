//! The table of operations: one entry per operation name up to the bound, then `_OTHER`; each
//! entry's latency windows and slow-operation state.

use std::collections::HashMap;
use std::time::Duration;

use service_tracing_middleware::RouteId;

use super::histogram::LatencyWindows;
use super::slow::{self, SlowLog, SlowState};
use super::{
    OperationKind, OperationProfile, ResourceSampler, Window, DEFAULT_MAX_OPERATIONS,
    DEFAULT_SLOW_LOG_INTERVAL,
};
use crate::operation::{server_operation, ServerKeys, OTHER_OPERATION};

#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) max_operations: usize,
    pub(super) thresholds: HashMap<String, Duration>,
    pub(super) log_interval: Duration,
    pub(super) auto: bool,
    pub(super) resources: Option<ResourceSampler>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_operations: DEFAULT_MAX_OPERATIONS,
            thresholds: HashMap::new(),
            log_interval: DEFAULT_SLOW_LOG_INTERVAL,
            auto: false,
            resources: None,
        }
    }
}

#[derive(Debug)]
pub(super) struct Operation {
    pub(super) name: String,
    pub(super) kind: OperationKind,
    pub(super) latency: LatencyWindows,
    pub(super) slow: SlowState,
}

impl Operation {
    pub(super) fn new(name: String, kind: OperationKind, config: &Config) -> Self {
        let slow = SlowState::configured(config.thresholds.get(&name).copied());
        Self {
            name,
            kind,
            latency: LatencyWindows::default(),
            slow,
        }
    }

    pub(super) fn threshold(
        &mut self,
        at: Duration,
        from_span: Option<Duration>,
        config: &Config,
    ) -> Option<Duration> {
        if config.auto {
            let latency = &self.latency;
            self.slow
                .refresh_baseline(at, || latency.previous_minute_p99(at, slow::AUTO_MIN_COUNT));
        }
        self.slow.threshold(from_span, config.auto)
    }

    /// Records one value; returns the threshold it exceeded and the log line due, if any.
    pub(super) fn record(
        &mut self,
        at: Duration,
        duration: Duration,
        error: bool,
        from_span: Option<Duration>,
        config: &Config,
    ) -> (Option<Duration>, Option<SlowLog>) {
        self.latency.record(at, duration, error);
        self.check(at, duration, from_span, config)
    }

    /// Counts and rate-limits a slow operation without recording its latency.
    pub(super) fn check(
        &mut self,
        at: Duration,
        duration: Duration,
        from_span: Option<Duration>,
        config: &Config,
    ) -> (Option<Duration>, Option<SlowLog>) {
        match self.threshold(at, from_span, config) {
            Some(threshold) if duration > threshold => {
                let log = self
                    .slow
                    .slow(at, config.log_interval, &self.name, duration, threshold);
                (Some(threshold), log)
            }
            _ => (None, None),
        }
    }

    pub(super) fn profile(&self, at: Duration, config: &Config) -> OperationProfile {
        OperationProfile {
            operation: self.name.clone(),
            kind: self.kind,
            windows: Window::ALL
                .iter()
                .map(|w| self.latency.stats(*w, at))
                .collect(),
            threshold: self
                .slow
                .configured
                .or(self.slow.baseline.filter(|_| config.auto)),
            slow: self.slow.slow,
            suppressed_logs: self.slow.suppressed,
        }
    }
}

/// The operations, looked up without allocating once known.
#[derive(Debug, Default)]
pub(super) struct Operations {
    pub(super) server: ServerKeys,
    pub(super) client: HashMap<String, usize>,
    pub(super) internal: HashMap<String, usize>,
    pub(super) entries: Vec<Operation>,
    pub(super) other: Option<Operation>,
    pub(super) overflow: u64,
}

impl Operations {
    pub(super) fn push(
        &mut self,
        name: String,
        kind: OperationKind,
        config: &Config,
    ) -> Option<usize> {
        (self.entries.len() < config.max_operations).then(|| {
            self.entries.push(Operation::new(name, kind, config));
            self.entries.len() - 1
        })
    }

    pub(super) fn entry(&mut self, index: Option<usize>, config: &Config) -> &mut Operation {
        match index.filter(|i| *i < self.entries.len()) {
            Some(i) => &mut self.entries[i],
            None => {
                self.overflow = self.overflow.saturating_add(1);
                self.other.get_or_insert_with(|| {
                    Operation::new(OTHER_OPERATION.to_owned(), OperationKind::Other, config)
                })
            }
        }
    }

    pub(super) fn server(
        &mut self,
        method: &str,
        route: Option<&str>,
        id: Option<RouteId>,
        config: &Config,
    ) -> &mut Operation {
        let by_id = id.and_then(|id| self.server.get_by_id(method, id));
        let index = by_id
            .or_else(|| self.server.get(method, route))
            .or_else(|| {
                let name = server_operation(method, route);
                let index = self.push(name, OperationKind::Server, config)?;
                self.server.insert(method, route, index);
                Some(index)
            });
        if let (None, Some(id), Some(index)) = (by_id, id, index) {
            self.server.remember_id(method, id, index);
        }
        self.entry(index, config)
    }

    pub(super) fn named(
        &mut self,
        kind: OperationKind,
        name: &str,
        config: &Config,
    ) -> &mut Operation {
        let map = match kind {
            OperationKind::Client => &self.client,
            _ => &self.internal,
        };
        let index = map.get(name).copied().or_else(|| {
            let index = self.push(name.to_owned(), kind, config)?;
            let map = match kind {
                OperationKind::Client => &mut self.client,
                _ => &mut self.internal,
            };
            map.insert(name.to_owned(), index);
            Some(index)
        });
        self.entry(index, config)
    }
}
