//! The OTLP push: a dedicated thread with its own single-threaded tokio runtime collects from
//! the shared reader every export interval and hands the batch to our OTLP metric exporter
//! ([`super::otlp`], on the fast exporter's transport). As for spans, the thread's `tracing`
//! dispatcher is a no-op, so export traffic never becomes telemetry, and the service's runtime
//! never runs the exporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::ManualReader;

use super::duration::Durations;
use super::otlp::{Counts, OtlpMetricExporter};
use crate::config::Resolved;
use crate::error::{SetupError, SetupErrorKind};
use crate::export::ExportStats;

enum Command {
    Flush(SyncSender<OTelSdkResult>),
    Shutdown(SyncSender<OTelSdkResult>),
}

/// The handle on the push thread.
#[derive(Debug)]
pub(crate) struct Push {
    commands: Sender<Command>,
    errors: Arc<AtomicU64>,
    counts: Arc<Counts>,
    wait: Duration,
}

impl Push {
    /// Starts the thread; `config.endpoint` is the metrics endpoint. The exporter is built on
    /// the thread, inside its runtime; a build error is returned here.
    /// What becomes of the data points is counted in `counts`.
    pub(crate) fn start(
        reader: Arc<ManualReader>,
        config: Resolved,
        interval: Duration,
        counts: Arc<Counts>,
        durations: Arc<Durations>,
    ) -> Result<Self, SetupError> {
        let timeout = config.timeout;
        let exporter_counts = counts.clone();
        let mut push = Self::start_with(
            reader,
            move || OtlpMetricExporter::new(&config, exporter_counts, durations),
            interval,
            timeout,
        )?;
        push.counts = counts;
        Ok(push)
    }

    /// Starts the thread with the exporter `make_exporter` builds on it.
    fn start_with<E, F>(
        reader: Arc<ManualReader>,
        make_exporter: F,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self, SetupError>
    where
        E: PushMetricExporter,
        F: FnOnce() -> Result<E, SetupError> + Send + 'static,
    {
        let (commands, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), SetupError>>(1);
        let errors = Arc::new(AtomicU64::new(0));
        let thread_errors = errors.clone();
        crate::runtime::spawn_with_runtime("service-tracing-metrics", move |runtime| {
            let started = runtime
                .map_err(|e| {
                    SetupError::new(SetupErrorKind::Worker, "cannot start the metrics runtime")
                        .with_source(e)
                })
                .and_then(|rt| {
                    let exporter = {
                        let _entered = rt.enter();
                        make_exporter()?
                    };
                    Ok((rt, exporter))
                });
            match started {
                Ok((rt, exporter)) => {
                    let _ = ready_tx.send(Ok(()));
                    let worker = Worker {
                        reader,
                        exporter,
                        rt,
                        timeout,
                        errors: thread_errors,
                        last_report: None,
                    };
                    worker.run(&rx, interval);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| {
            SetupError::new(SetupErrorKind::Worker, "cannot spawn the metrics thread")
                .with_source(e)
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                commands,
                errors,
                counts: Arc::default(),
                wait: timeout + Duration::from_secs(1),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SetupError::new(
                SetupErrorKind::Worker,
                "the metrics thread stopped while starting",
            )),
        }
    }

    /// Export calls that failed so far.
    pub(crate) fn export_errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Export requests sent again after a throttled or transient failure so far.
    pub(crate) fn export_retries(&self) -> u64 {
        self.counts.retried.load(Ordering::Relaxed)
    }

    /// What became of the data points pushed so far (nothing is queued or dropped: each push
    /// sends the readings of that moment).
    pub(crate) fn export_stats(&self) -> ExportStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportStats {
            exported: read(&self.counts.exported),
            dropped: 0,
            rejected: read(&self.counts.rejected),
            failed: read(&self.counts.failed),
            retried: read(&self.counts.retried),
            export_errors: self.export_errors(),
            queued: 0,
        }
    }

    /// Collects and exports now, and waits for the result.
    pub(crate) fn force_flush(&self) -> OTelSdkResult {
        self.send(Command::Flush)
    }

    /// Exports a last time and stops the thread.
    pub(crate) fn shutdown(&self) -> OTelSdkResult {
        self.send(Command::Shutdown)
    }

    fn send(&self, make: impl FnOnce(SyncSender<OTelSdkResult>) -> Command) -> OTelSdkResult {
        let (tx, rx) = mpsc::sync_channel(1);
        self.commands
            .send(make(tx))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match rx.recv_timeout(self.wait) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(self.wait)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

/// How often failed exports are reported on standard error.
const REPORT_EVERY: Duration = Duration::from_secs(10);

struct Worker<E> {
    reader: Arc<ManualReader>,
    exporter: E,
    rt: tokio::runtime::Runtime,
    timeout: Duration,
    errors: Arc<AtomicU64>,
    last_report: Option<Instant>,
}

impl<E: PushMetricExporter> Worker<E> {
    fn run(mut self, commands: &Receiver<Command>, interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait) {
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.export();
                    next = Instant::now() + interval;
                }
                Ok(Command::Flush(reply)) => {
                    let _ = reply.send(self.export());
                }
                Ok(Command::Shutdown(reply)) => {
                    let result = self.export();
                    let _ = self.exporter.shutdown();
                    let _ = reply.send(result);
                    return;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.export();
                    let _ = self.exporter.shutdown();
                    return;
                }
            }
        }
    }

    fn export(&mut self) -> OTelSdkResult {
        let mut rm = ResourceMetrics::default();
        self.reader.collect(&mut rm)?;
        let result = self
            .rt
            .block_on(async { tokio::time::timeout(self.timeout, self.exporter.export(&rm)).await })
            .unwrap_or(Err(OTelSdkError::Timeout(self.timeout)));
        if let Err(e) = &result {
            let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
            if self.last_report.is_none_or(|t| t.elapsed() >= REPORT_EVERY) {
                eprintln!(
                    "service-tracing: exporting metrics failed ({errors} failures in all): {e}"
                );
                self.last_report = Some(Instant::now());
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};

    use super::*;
    use crate::export::batch::tests::{chatter, install_bridge_detector};

    /// Emits `tracing` spans where a transport would: on the push thread and on its runtime's
    /// blocking pool; counts its exports.
    struct ChattyExporter(Arc<AtomicUsize>);

    impl PushMetricExporter for ChattyExporter {
        async fn export(&self, _metrics: &ResourceMetrics) -> OTelSdkResult {
            chatter("export");
            let _ = tokio::task::spawn_blocking(|| chatter("blocking")).await;
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    #[test]
    fn metric_export_traffic_never_reaches_the_tracing_bridge() {
        let Some((bridge_provider, leaked)) = install_bridge_detector() else {
            return;
        };
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_reader(crate::metrics::SharedReader(reader.clone()))
            .build();
        provider
            .meter("app")
            .u64_counter("requests")
            .build()
            .add(1, &[]);
        let exports = Arc::new(AtomicUsize::new(0));
        let made = exports.clone();
        let push = Push::start_with(
            reader,
            move || Ok(ChattyExporter(made)),
            Duration::from_secs(3600),
            Duration::from_secs(5),
        )
        .expect("starts");
        push.force_flush().expect("flush");
        push.shutdown().expect("shutdown");
        assert_eq!(
            exports.load(Ordering::SeqCst),
            2,
            "flush and shutdown each export"
        );
        bridge_provider.force_flush().expect("flush");
        let spans = leaked.get_finished_spans().expect("spans");
        assert!(
            spans.is_empty(),
            "metric export traffic became spans: {spans:?}"
        );
    }
}
