//! The Prometheus text exposition format (version 0.0.4) of collected metrics, with the
//! OpenTelemetry-to-Prometheus name translation: dots and other invalid characters become
//! underscores, the unit becomes a suffix (`s` -> `_seconds`), counters end in `_total`,
//! histograms become `_bucket{le=...}` (cumulative), `_sum` and `_count`, and the resource
//! becomes the `target_info` series.

use std::fmt::Write as _;

use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, Histogram, Metric, MetricData, ResourceMetrics,
};

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric of `rm`.
pub(crate) fn render(rm: &ResourceMetrics) -> String {
    let mut out = String::with_capacity(4096);
    let resource: Vec<KeyValue> = rm
        .resource()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    if !resource.is_empty() {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        sample(&mut out, "target_info", "", &resource, None, "1");
    }
    for scope in rm.scope_metrics() {
        for metric in scope.metrics() {
            match metric.data() {
                AggregatedMetrics::F64(data) => family(&mut out, metric, data),
                AggregatedMetrics::U64(data) => family(&mut out, metric, data),
                AggregatedMetrics::I64(data) => family(&mut out, metric, data),
            }
        }
    }
    out
}

/// A value the text format can print.
trait Number: Copy {
    fn text(self) -> String;
}

impl Number for f64 {
    fn text(self) -> String {
        float(self)
    }
}

impl Number for u64 {
    fn text(self) -> String {
        self.to_string()
    }
}

impl Number for i64 {
    fn text(self) -> String {
        self.to_string()
    }
}

fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

fn family<T: Number>(out: &mut String, metric: &Metric, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(gauge) => {
            let name = metric_name(metric.name(), metric.unit(), false);
            header(out, &name, metric.description(), "gauge");
            for point in gauge.data_points() {
                let attributes: Vec<KeyValue> = point.attributes().cloned().collect();
                sample(out, &name, "", &attributes, None, &point.value().text());
            }
        }
        MetricData::Sum(sum) => {
            // Non-monotonic sums (up-down counters) are gauges in Prometheus.
            let counter = sum.is_monotonic();
            let name = metric_name(metric.name(), metric.unit(), counter);
            header(
                out,
                &name,
                metric.description(),
                if counter { "counter" } else { "gauge" },
            );
            for point in sum.data_points() {
                let attributes: Vec<KeyValue> = point.attributes().cloned().collect();
                sample(out, &name, "", &attributes, None, &point.value().text());
            }
        }
        MetricData::Histogram(histogram) => histogram_family(out, metric, histogram),
        // Not produced by the instruments set up here (no exponential histogram view).
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn histogram_family<T: Number>(out: &mut String, metric: &Metric, histogram: &Histogram<T>) {
    let name = metric_name(metric.name(), metric.unit(), false);
    header(out, &name, metric.description(), "histogram");
    for point in histogram.data_points() {
        let attributes: Vec<KeyValue> = point.attributes().cloned().collect();
        let counts: Vec<u64> = point.bucket_counts().collect();
        let bounds: Vec<f64> = point.bounds().collect();
        histogram_point(
            out,
            &name,
            &attributes,
            &bounds,
            &counts,
            point.count(),
            &point.sum().text(),
        );
    }
}

/// A histogram family from points counted outside the SDK: `(attributes, bucket counts,
/// count, sum)` each, with `bounds`.
pub(crate) fn histogram_of_points(
    out: &mut String,
    (name, unit, description): (&str, &str, &str),
    bounds: &[f64],
    points: impl Iterator<Item = (Vec<KeyValue>, Vec<u64>, u64, f64)>,
) {
    let mut points = points.peekable();
    if points.peek().is_none() {
        return;
    }
    let name = metric_name(name, unit, false);
    header(out, &name, description, "histogram");
    for (attributes, counts, count, sum) in points {
        histogram_point(out, &name, &attributes, bounds, &counts, count, &sum.text());
    }
}

/// One series of a histogram: cumulative `_bucket`s, then `_sum` and `_count`.
fn histogram_point(
    out: &mut String,
    name: &str,
    attributes: &[KeyValue],
    bounds: &[f64],
    counts: &[u64],
    count: u64,
    sum: &str,
) {
    let mut cumulative = 0u64;
    for (i, bound) in bounds.iter().enumerate() {
        cumulative += counts.get(i).copied().unwrap_or(0);
        sample(
            out,
            name,
            "_bucket",
            attributes,
            Some(&float(*bound)),
            &cumulative.to_string(),
        );
    }
    let count = count.to_string();
    sample(out, name, "_bucket", attributes, Some("+Inf"), &count);
    sample(out, name, "_sum", attributes, None, sum);
    sample(out, name, "_count", attributes, None, &count);
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = write!(out, "# HELP {name} ");
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = writeln!(out, "\n# TYPE {name} {kind}");
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    attributes: &[KeyValue],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    out.push_str(suffix);
    // Sorted by name, so a series always prints the same whatever order it was recorded in.
    let mut attributes: Vec<&KeyValue> = attributes.iter().collect();
    attributes.sort_by(|a, b| a.key.as_str().cmp(b.key.as_str()));
    if !attributes.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for kv in attributes {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&label_name(kv.key.as_str()));
            out.push_str("=\"");
            label_value(out, &kv.value);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            let _ = write!(out, "le=\"{le}\"");
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

fn label_value(out: &mut String, value: &Value) {
    for c in value.as_str().chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Characters outside `[a-zA-Z0-9_]` become `_` (and `:` too, reserved for recording rules);
/// a leading digit gets a `_` in front.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

fn label_name(key: &str) -> String {
    sanitize(key)
}

/// The Prometheus name of an OpenTelemetry metric.
pub(crate) fn metric_name(name: &str, unit: &str, counter: bool) -> String {
    let mut out = sanitize(name);
    let suffix = unit_suffix(unit);
    if !suffix.is_empty() && !out.ends_with(&format!("_{suffix}")) {
        out.push('_');
        out.push_str(&suffix);
    }
    if counter && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

/// The unit's Prometheus suffix; annotations in braces (`{request}`) and `1` give none.
fn unit_suffix(unit: &str) -> String {
    let word = |u: &str| -> Option<&'static str> {
        Some(match u {
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "min" => "minutes",
            "h" => "hours",
            "d" => "days",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "KBy" => "kilobytes",
            "MBy" => "megabytes",
            "%" => "percent",
            _ => return None,
        })
    };
    let unit = unit.trim();
    if unit.is_empty() || unit == "1" || (unit.starts_with('{') && unit.ends_with('}')) {
        return String::new();
    }
    match unit.split_once('/') {
        Some((a, b)) => {
            let a = word(a).map_or_else(|| sanitize(a), str::to_owned);
            let b = word(b).map_or_else(|| sanitize(b), str::to_owned);
            format!("{a}_per_{b}")
        }
        None => word(unit).map_or_else(|| sanitize(unit), str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_translation() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", false),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("http.server.active_requests", "{request}", false),
            "http_server_active_requests"
        );
        assert_eq!(
            metric_name("service_tracing.spans.exported", "{span}", true),
            "service_tracing_spans_exported_total"
        );
        assert_eq!(
            metric_name("net.io", "By/s", true),
            "net_io_bytes_per_seconds_total"
        );
        assert_eq!(metric_name("9lives", "", false), "_9lives");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(
            &mut out,
            "m",
            "",
            &[KeyValue::new("a.b", "x\"y\\z\nw")],
            None,
            "1",
        );
        assert_eq!(out, "m{a_b=\"x\\\"y\\\\z\\nw\"} 1\n");
    }
}
