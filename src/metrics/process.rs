//! The process instruments of the OpenTelemetry semantic conventions, read from the latest
//! [`ProcessSample`](crate::process::ProcessSample) at each collection (a collection
//! reads no `/proc` file itself).

use opentelemetry::metrics::{Meter, MeterProvider as _};

use super::{scope, Metrics};
use crate::process::{ProcessSample, ProcessSampler, WeakProcessSampler};

impl Metrics {
    /// Registers the instruments reading `sampler`'s latest sample:
    ///
    /// - `process.cpu.utilization` (gauge, `1`): CPU time over wall-clock time and available
    ///   CPUs, over the sample's interval;
    /// - `process.memory.usage`, `process.memory.virtual` (up-down counters, `By`): resident
    ///   and virtual memory;
    /// - `process.thread.count` (up-down counter, `{thread}`);
    /// - `process.unix.file_descriptor.count` (up-down counter, `{file_descriptor}`), the
    ///   current name of `process.open_file_descriptor.count`.
    ///
    /// A figure the sample lacks is not reported. The callbacks hold the sampler weakly.
    pub(crate) fn observe_resources(&self, sampler: &ProcessSampler) {
        register(
            &self.inner.provider.meter_with_scope(scope()),
            &sampler.downgrade(),
        );
    }
}

fn register(meter: &Meter, sampler: &WeakProcessSampler) {
    let cpu = sampler.clone();
    meter
        .f64_observable_gauge("process.cpu.utilization")
        .with_description(
            "Difference in process CPU time since the last measurement, divided by the elapsed \
             time and the number of CPUs available to the process.",
        )
        .with_unit("1")
        .with_callback(move |observer| {
            if let Some(value) = cpu.latest().and_then(|s| s.cpu_utilization) {
                observer.observe(value, &[]);
            }
        })
        .build();
    let up_down = |name: &'static str,
                   description: &'static str,
                   unit: &'static str,
                   read: fn(&ProcessSample) -> Option<u64>| {
        let sampler = sampler.clone();
        meter
            .i64_observable_up_down_counter(name)
            .with_description(description)
            .with_unit(unit)
            .with_callback(move |observer| {
                let value = sampler.latest().as_ref().and_then(read);
                if let Some(value) = value.and_then(|v| i64::try_from(v).ok()) {
                    observer.observe(value, &[]);
                }
            })
            .build();
    };
    up_down(
        "process.memory.usage",
        "The amount of physical memory in use.",
        "By",
        |s| s.memory_rss_bytes,
    );
    up_down(
        "process.memory.virtual",
        "The amount of committed virtual memory.",
        "By",
        |s| s.memory_virtual_bytes,
    );
    up_down(
        "process.thread.count",
        "Process threads count.",
        "{thread}",
        |s| s.threads,
    );
    up_down(
        "process.unix.file_descriptor.count",
        "Number of unix file descriptors in use by the process.",
        "{file_descriptor}",
        |s| s.open_fds,
    );
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::Resource;

    use super::super::MetricsSettings;
    use super::*;
    use crate::config::metrics::DEFAULT_INTERVAL;
    use crate::export::Workers;

    fn value_of(text: &str, name: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn process_instruments_report_the_latest_sample() {
        let settings = MetricsSettings {
            push: None,
            interval: DEFAULT_INTERVAL,
            cardinality_limit: 10,
        };
        let metrics = Metrics::start(
            &settings,
            Resource::builder_empty().build(),
            &Workers::default(),
        )
        .expect("starts");
        let sampler = ProcessSampler::new();
        metrics.observe_resources(&sampler);
        // No sample yet: nothing is reported.
        assert!(!metrics.prometheus_text().contains("# TYPE process_"));

        sampler.sample_now();
        let latest = sampler.sample_now();
        let text = metrics.prometheus_text();
        let check = |name: &str, expected: Option<u64>| {
            if let Some(expected) = expected {
                assert_eq!(
                    value_of(&text, name),
                    Some(expected as f64),
                    "{name}\n{text}"
                );
            }
        };
        check("process_memory_usage_bytes", latest.memory_rss_bytes);
        check("process_memory_virtual_bytes", latest.memory_virtual_bytes);
        check("process_thread_count", latest.threads);
        check("process_unix_file_descriptor_count", latest.open_fds);
        if let Some(utilization) = latest.cpu_utilization {
            let reported = value_of(&text, "process_cpu_utilization").expect("cpu");
            assert!((reported - utilization).abs() < 1e-9, "{text}");
        }
        if cfg!(target_os = "linux") {
            assert!(
                text.contains("# TYPE process_memory_usage_bytes gauge"),
                "{text}"
            );
            assert!(value_of(&text, "process_memory_usage_bytes").unwrap_or(0.0) > 0.0);
        }

        // The callbacks hold the sampler weakly: once it is gone, nothing is reported.
        drop(sampler);
        assert!(!metrics
            .prometheus_text()
            .contains("process_memory_usage_bytes "));
    }
}
