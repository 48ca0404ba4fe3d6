//! `http.server.request.duration` of the set-up's own meter provider, counted per thread.
//!
//! The SDK's histogram keeps each series behind a mutex that every thread serving the same
//! route takes: a lock shared by the request threads. Here each thread counts into its own
//! shard (its own uncontended lock, which only a collection takes besides it), and the shards
//! are added up when the metrics are collected, for the Prometheus page and the OTLP push
//! alike. The figures are those the SDK's histogram gives: cumulative, the advisory buckets,
//! sum, count, min and max, and at most the cardinality limit of series, the last of them the
//! overflow series (`otel.metric.overflow="true"`).
//!
//! A user who builds [`HttpServerMetrics`](super::HttpServerMetrics) on a meter provider of
//! their own keeps the SDK's histogram: the shards exist only in the set-up's pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use opentelemetry::KeyValue;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, InstrumentationScope, KeyValue as ProtoKeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, AggregationTemporality, Histogram, HistogramDataPoint, Metric, ScopeMetrics,
};
use service_tracing_middleware::semconv;

use super::server::{method_name, KeyHasher, DURATION_BOUNDARIES};
use crate::per_thread::PerThread;
use crate::request_record::Ended;

/// The instrument's name, unit and description, as the SDK's instrument had them.
pub(crate) const NAME: &str = "http.server.request.duration";
pub(crate) const UNIT: &str = "s";
pub(crate) const DESCRIPTION: &str = "Duration of HTTP server requests.";

/// Most series one thread finds by key; past it, a request looks its series up by its labels.
const MAX_KEYED_PER_THREAD: usize = 4096;

/// Buckets of `http.server.request.duration`: one per bound, and one above the last.
pub(crate) const BUCKETS: usize = DURATION_BOUNDARIES.len() + 1;

/// One series' figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Series {
    pub(crate) buckets: [u64; BUCKETS],
    pub(crate) count: u64,
    pub(crate) sum: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

impl Default for Series {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Series {
    fn record(&mut self, seconds: f64) {
        // Explicit buckets are `(previous bound, bound]`.
        let bucket = DURATION_BOUNDARIES.partition_point(|bound| *bound < seconds);
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum += seconds;
        self.min = self.min.min(seconds);
        self.max = self.max.max(seconds);
    }

    fn add(&mut self, other: &Series) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// A series' attributes.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Labels {
    method: &'static str,
    route: Option<Box<str>>,
    status: Option<u16>,
    error_type: Option<Box<str>>,
    overflow: bool,
}

impl Labels {
    const OVERFLOW: Labels = Labels {
        method: "",
        route: None,
        status: None,
        error_type: None,
        overflow: true,
    };

    pub(crate) fn of(ended: &Ended, method: usize) -> Self {
        let mut buf = [0; 5];
        Self {
            method: method_name(method),
            route: ended.route().map(Into::into),
            status: ended.status,
            error_type: ended.error_type(&mut buf).map(Into::into),
            overflow: false,
        }
    }

    /// The attributes, as the SDK's histogram had them.
    pub(crate) fn attributes(&self) -> Vec<KeyValue> {
        if self.overflow {
            return vec![KeyValue::new("otel.metric.overflow", true)];
        }
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, self.method));
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_string()));
        }
        if let Some(status) = self.status {
            attributes.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status),
            ));
        }
        if let Some(error_type) = &self.error_type {
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type.to_string()));
        }
        attributes
    }
}

/// One thread's series: by the observer's packed key (no hashing of the labels), else by
/// their labels.
#[derive(Default)]
struct Shard {
    keyed: HashMap<u64, (Labels, Series), std::hash::BuildHasherDefault<KeyHasher>>,
    labelled: HashMap<Labels, Series>,
}

/// The per-thread duration histogram of one metrics pipeline.
pub(crate) struct Durations {
    shards: PerThread<Shard>,
    /// The label sets counted apart, at most `limit - 1` (the last series is the overflow's).
    /// Taken only when a thread meets a series for the first time.
    admitted: Mutex<HashSet<Labels>>,
    limit: usize,
    start: SystemTime,
}

impl std::fmt::Debug for Durations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durations")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Durations {
    /// Counts at most `limit` series (the overflow series included).
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            shards: PerThread::default(),
            admitted: Mutex::default(),
            limit: limit.max(1),
            start: SystemTime::now(),
        }
    }

    /// Counts requests of `seconds` each in the series `key` packs when it has one, else (and
    /// the first time this thread meets the key) in the series `labels` makes: a batch, in
    /// this thread's shard taken once.
    pub(crate) fn record_batch<L: FnOnce() -> Labels>(
        &self,
        batch: impl Iterator<Item = (f64, Option<u64>, L)>,
    ) {
        self.shards.with_mine(|shard| {
            for (seconds, key, labels) in batch {
                self.record_in(shard, seconds, key, labels);
            }
        });
    }

    /// Counts one request (tests).
    #[cfg(test)]
    pub(crate) fn record(&self, seconds: f64, key: Option<u64>, labels: impl Fn() -> Labels) {
        self.shards
            .with_mine(|shard| self.record_in(shard, seconds, key, labels));
    }

    fn record_in(
        &self,
        shard: &mut Shard,
        seconds: f64,
        key: Option<u64>,
        labels: impl FnOnce() -> Labels,
    ) {
        if let Some(key) = key {
            if let Some((_, series)) = shard.keyed.get_mut(&key) {
                series.record(seconds);
                return;
            }
            if shard.keyed.len() < MAX_KEYED_PER_THREAD {
                let labels = self.admit(labels());
                let mut series = Series::default();
                series.record(seconds);
                shard.keyed.insert(key, (labels, series));
                return;
            }
        }
        let labels = labels();
        if let Some(series) = shard.labelled.get_mut(&labels) {
            series.record(seconds);
            return;
        }
        let labels = self.admit(labels);
        shard.labelled.entry(labels).or_default().record(seconds);
    }

    /// `labels` if they are (or may now be) counted apart, else the overflow series' labels.
    fn admit(&self, labels: Labels) -> Labels {
        let mut admitted = self.admitted.lock().unwrap_or_else(PoisonError::into_inner);
        if admitted.contains(&labels) {
            return labels;
        }
        if admitted.len() + 1 < self.limit {
            admitted.insert(labels.clone());
            return labels;
        }
        Labels::OVERFLOW
    }

    /// Every series, the threads' shards added up, in no particular order.
    pub(crate) fn collect(&self) -> Vec<(Labels, Series)> {
        crate::request_record::flush();
        let mut total: HashMap<Labels, Series> = HashMap::new();
        self.shards.for_each(|shard| {
            let keyed = shard
                .keyed
                .values()
                .map(|(labels, series)| (labels, series));
            for (labels, series) in keyed.chain(shard.labelled.iter()) {
                match total.get_mut(labels) {
                    Some(sum) => sum.add(series),
                    None => {
                        total.insert(labels.clone(), *series);
                    }
                }
            }
        });
        total.into_iter().collect()
    }

    /// Adds the histogram to `request` (collected from the same pipeline), in the scope
    /// `scope` names, made if the request has none.
    pub(crate) fn append_to(&self, request: &mut ExportMetricsServiceRequest, scope: &str) {
        let series = self.collect();
        if series.is_empty() {
            return;
        }
        let Some(resource) = request.resource_metrics.first_mut() else {
            return;
        };
        let index = match resource
            .scope_metrics
            .iter()
            .position(|s| s.scope.as_ref().is_some_and(|s| s.name == scope))
        {
            Some(index) => index,
            None => {
                resource.scope_metrics.push(ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: scope.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                resource.scope_metrics.len() - 1
            }
        };
        let start = nanos(self.start);
        let now = nanos(SystemTime::now());
        let data_points = series
            .iter()
            .map(|(labels, series)| HistogramDataPoint {
                attributes: labels.attributes().iter().map(proto_key_value).collect(),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: series.count,
                sum: Some(series.sum),
                bucket_counts: series.buckets.to_vec(),
                explicit_bounds: DURATION_BOUNDARIES.to_vec(),
                min: Some(series.min),
                max: Some(series.max),
                ..Default::default()
            })
            .collect();
        resource.scope_metrics[index].metrics.push(Metric {
            name: NAME.to_owned(),
            description: DESCRIPTION.to_owned(),
            unit: UNIT.to_owned(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        });
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The label values here are texts, integers and the overflow flag.
fn proto_key_value(kv: &KeyValue) -> ProtoKeyValue {
    let value = match &kv.value {
        opentelemetry::Value::I64(i) => any_value::Value::IntValue(*i),
        opentelemetry::Value::Bool(b) => any_value::Value::BoolValue(*b),
        other => any_value::Value::StringValue(other.as_str().into_owned()),
    };
    ProtoKeyValue {
        key: kv.key.as_str().to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_bucket_whose_upper_bound_they_do_not_pass() {
        let mut series = Series::default();
        for seconds in [0.0, 0.005, 0.0051, 10.0, 11.0] {
            series.record(seconds);
        }
        assert_eq!(series.buckets[0], 2, "0 and the bound itself");
        assert_eq!(series.buckets[1], 1);
        assert_eq!(series.buckets[BUCKETS - 2], 1, "10.0 is the last bound");
        assert_eq!(series.buckets[BUCKETS - 1], 1, "past the last bound");
        assert_eq!(series.count, 5);
        assert_eq!((series.min, series.max), (0.0, 11.0));
        assert!((series.sum - 21.0101).abs() < 1e-9);
    }

    #[test]
    fn threads_count_apart_and_a_collection_adds_them_up() {
        let durations = Durations::new(100);
        let labels = || Labels {
            method: "GET",
            route: Some("/a".into()),
            status: Some(200),
            error_type: None,
            overflow: false,
        };
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let durations = &durations;
                scope.spawn(move || {
                    let seconds = f64::from(thread) / 1000.0;
                    for _ in 0..1_000 {
                        durations.record(seconds, Some(7), labels);
                    }
                    // The same series found by its labels (no key) joins it at collection.
                    durations.record(seconds, None, labels);
                });
            }
        });
        let series = durations.collect();
        assert_eq!(series.len(), 1, "{series:?}");
        assert_eq!(series[0].1.count, 4_004);
        assert_eq!(series[0].1.max, 0.003);
        assert_eq!(series[0].0, labels());
    }

    #[test]
    fn series_past_the_limit_go_to_the_overflow_series() {
        let durations = Durations::new(3);
        for (key, route) in ["/a", "/b", "/c", "/d"].into_iter().enumerate() {
            let labels = || Labels {
                method: "GET",
                route: Some(route.into()),
                status: Some(200),
                error_type: None,
                overflow: false,
            };
            durations.record(0.1, Some(key as u64), labels);
            durations.record(0.1, None, labels);
        }
        let mut series = durations.collect();
        series.sort_by_key(|(labels, _)| labels.route.clone());
        let routes: Vec<_> = series
            .iter()
            .map(|(l, s)| (l.route.as_deref(), l.overflow, s.count))
            .collect();
        assert_eq!(
            routes,
            [
                (None, true, 4),
                (Some("/a"), false, 2),
                (Some("/b"), false, 2)
            ]
        );
    }
}
