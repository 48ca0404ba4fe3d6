//! The library's own health figures as observable instruments under `service_tracing.`, read
//! from the export workers' counters at each collection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry::metrics::Meter;
use opentelemetry::KeyValue;

use super::otlp::Counts;
use crate::export::{ExportStats, Workers};

/// Registers the instruments:
///
/// - `service_tracing.spans.ended` (counter): sampled spans handed to export;
/// - `service_tracing.spans.exported`, `.dropped` (queue full), `.rejected` (refused by the
///   backend for good), `.failed` (given up after retries) (counters);
/// - `service_tracing.export.retries` (counter): export requests sent again;
/// - `service_tracing.spans.queued` (gauge);
/// - `service_tracing.export.errors` (counter): failed export calls;
/// - `service_tracing.exporter.up` (gauge): 1 when no span export failed since the previous
///   collection, else 0.
pub(crate) fn register(meter: &Meter, workers: &Workers) {
    let counter = |name: &'static str,
                   description: &'static str,
                   unit: &'static str,
                   read: fn(&ExportStats) -> u64| {
        let workers = workers.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(move |observer| observer.observe(read(&workers.stats()), &[]))
            .build();
    };
    counter(
        "service_tracing.spans.ended",
        "Sampled spans that ended and were handed to export.",
        "{span}",
        |s| s.exported + s.dropped + s.rejected + s.failed + s.queued,
    );
    counter(
        "service_tracing.spans.exported",
        "Spans the exporter accepted.",
        "{span}",
        |s| s.exported,
    );
    counter(
        "service_tracing.spans.dropped",
        "Spans dropped because the export queue was full.",
        "{span}",
        |s| s.dropped,
    );
    counter(
        "service_tracing.spans.rejected",
        "Spans the backend refused for good (final error statuses, partial successes).",
        "{span}",
        |s| s.rejected,
    );
    counter(
        "service_tracing.spans.failed",
        "Spans given up on after retries or the export timeout.",
        "{span}",
        |s| s.failed,
    );
    counter(
        "service_tracing.export.retries",
        "Span export requests sent again after a retryable failure.",
        "{request}",
        |s| s.retried,
    );
    counter(
        "service_tracing.export.errors",
        "Span export calls that failed.",
        "{error}",
        |s| s.export_errors,
    );
    let queued = workers.clone();
    meter
        .u64_observable_gauge("service_tracing.spans.queued")
        .with_description("Spans waiting in the export queue.")
        .with_unit("{span}")
        .with_callback(move |observer| observer.observe(queued.stats().queued, &[]))
        .build();
    let up = workers.clone();
    let seen_errors = AtomicU64::new(0);
    meter
        .u64_observable_gauge("service_tracing.exporter.up")
        .with_description("1 when no span export failed since the previous collection, else 0.")
        .with_callback(move |observer| {
            let errors = up.stats().export_errors;
            let before = seen_errors.swap(errors, Ordering::Relaxed);
            observer.observe(u64::from(errors == before), &[]);
        })
        .build();
}

/// Registers the OTLP push's own figures, in data points, read at each collection (so a push
/// reports what became of the pushes before it):
///
/// - `service_tracing.metrics.data_points.exported`, `.rejected` (refused by the backend for
///   good), `.failed` (given up on after retries or the export timeout) (counters);
/// - `service_tracing.metrics.export.retries` (counter): metric export requests sent again.
pub(crate) fn register_push(meter: &Meter, counts: &Arc<Counts>) {
    let counter = |name: &'static str,
                   description: &'static str,
                   unit: &'static str,
                   read: fn(&Counts) -> &AtomicU64| {
        let counts = counts.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(move |observer| {
                observer.observe(read(&counts).load(Ordering::Relaxed), &[]);
            })
            .build();
    };
    counter(
        "service_tracing.metrics.data_points.exported",
        "Metric data points the backend accepted.",
        "{data_point}",
        |c| &c.exported,
    );
    counter(
        "service_tracing.metrics.data_points.rejected",
        "Metric data points the backend refused for good (final error statuses, partial successes).",
        "{data_point}",
        |c| &c.rejected,
    );
    counter(
        "service_tracing.metrics.data_points.failed",
        "Metric data points given up on after retries or the export timeout.",
        "{data_point}",
        |c| &c.failed,
    );
    counter(
        "service_tracing.metrics.export.retries",
        "Metric export requests sent again after a retryable failure.",
        "{request}",
        |c| &c.retried,
    );
}

/// Registers the sampling rules' figures, read at each collection, each series with the
/// `service_tracing.sampling.rule` attribute (the rule, or `otherwise`):
///
/// - `service_tracing.sampling.decisions` (counter, `{trace}`), with
///   `service_tracing.sampling.decision` `sampled` or `dropped`: new traces each rule decided
///   since the rules were set;
/// - `service_tracing.sampling.kept` (counter, `{trace}`, by `service_tracing.sampling.kept_reason`
///   `error` or `slow`): dropped traces whose span was exported after all
///   (`SamplingRules::keep_errors`, `keep_slower_than`);
/// - `service_tracing.sampling.ratio` (gauge, `1`): the share each rule keeps now (for a rate,
///   set from the last second's traffic);
/// - `service_tracing.sampling.target` (gauge, `{trace}/s`): a rate rule's target, beside
///   which the decisions' rate is the achieved one.
pub(crate) fn register_sampling(meter: &Meter, sampling: crate::sampling::SamplingHandle) {
    use crate::sampling::{RuleStats, SampleAction};
    fn each(sampling: &crate::sampling::SamplingHandle, mut f: impl FnMut(&RuleStats)) {
        let stats = sampling.stats();
        stats.rules.iter().for_each(&mut f);
        f(&stats.otherwise);
    }
    let rule = |r: &RuleStats| KeyValue::new("service_tracing.sampling.rule", r.rule.clone());
    let decisions = sampling.clone();
    meter
        .u64_observable_counter("service_tracing.sampling.decisions")
        .with_description("New traces each sampling rule decided, kept or dropped.")
        .with_unit("{trace}")
        .with_callback(move |observer| {
            each(&decisions, |r| {
                for (decision, n) in [("sampled", r.sampled), ("dropped", r.dropped)] {
                    let attributes = [
                        rule(r),
                        KeyValue::new("service_tracing.sampling.decision", decision),
                    ];
                    observer.observe(n, &attributes);
                }
            });
        })
        .build();
    let kept = sampling.clone();
    meter
        .u64_observable_counter("service_tracing.sampling.kept")
        .with_description(
            "Dropped traces whose span was exported after all because it failed or was slow.",
        )
        .with_unit("{trace}")
        .with_callback(move |observer| {
            let stats = kept.stats();
            for (reason, n) in [("error", stats.kept_errors), ("slow", stats.kept_slow)] {
                observer.observe(
                    n,
                    &[KeyValue::new(
                        "service_tracing.sampling.kept_reason",
                        reason,
                    )],
                );
            }
        })
        .build();
    let ratio = sampling.clone();
    meter
        .f64_observable_gauge("service_tracing.sampling.ratio")
        .with_description("The share of new traces each sampling rule keeps now.")
        .with_unit("1")
        .with_callback(move |observer| {
            each(&ratio, |r| observer.observe(r.effective_ratio, &[rule(r)]));
        })
        .build();
    meter
        .f64_observable_gauge("service_tracing.sampling.target")
        .with_description("The target of each sampling rule that keeps a rate per second.")
        .with_unit("{trace}/s")
        .with_callback(move |observer| {
            each(&sampling, |r| {
                if let SampleAction::PerSecond(target) = r.action {
                    observer.observe(target, &[rule(r)]);
                }
            });
        })
        .build();
}
