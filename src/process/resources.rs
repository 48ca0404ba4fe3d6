//! Process resources: CPU, memory, open file descriptors, threads and the tokio runtime's
//! figures, sampled by a background thread.
//!
//! A [`ProcessSampler`] reads, on Linux, `/proc/self/stat` (CPU time, threads, virtual and
//! resident memory) and counts the entries of `/proc/self/fd`; with a tokio runtime handle it
//! also reads the runtime's stable metrics (workers, alive tasks, global queue depth, busy
//! time per worker). A sample costs two small reads and one directory listing, no matter how
//! busy the service is; at the default interval (10 s) that is nothing next to the requests.
//! It keeps the latest sample and the [`RECENT_SAMPLES`] before it.
//!
//! [`ServiceTracing`](crate::ServiceTracing) starts one at set-up, inside the application's
//! runtime (see [`process_sample_interval`](crate::ServiceTracing::process_sample_interval) and
//! [`process_sampling`](crate::ServiceTracing::process_sampling)); read it back with
//! [`Profiling::resources`](crate::Profiling::resources). Its figures are in the profiling
//! summary under `resources` and, with metrics on, are the `process.*` instruments.
//!
//! Every figure is an `Option`: `None` when it cannot be read (not Linux, `/proc` missing or
//! not as expected, no tokio runtime, or the first sample, which has no interval to compute a
//! rate over). Reading never panics.
//!
//! ```
//! use service_tracing::process::ProcessSampler;
//!
//! let sampler = ProcessSampler::new(); // no tokio runtime here: tokio figures are `None`
//! sampler.sample_now();
//! let sample = sampler.sample_now();
//! if cfg!(target_os = "linux") {
//!     assert!(sample.memory_rss_bytes.unwrap_or(0) > 0);
//!     assert!(sample.cpu_utilization.is_some());
//! }
//! assert_eq!(sample.tokio_workers, None);
//! assert_eq!(sampler.recent().len(), 2);
//! println!("{}", sampler.summary().to_json());
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::runtime::Handle;

/// The default time between two samples.
pub const DEFAULT_SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest interval accepted; shorter ones are raised to it.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How many samples are kept (the latest included).
pub const RECENT_SAMPLES: usize = 60;

/// `/proc/self/fd` is counted up to this many entries; beyond, the count says this.
pub const OPEN_FDS_CAP: u64 = 1_000_000;

/// One reading of the process's resources; see [`ProcessSampler`]. Rates (CPU, tokio
/// busy ratio) are over the time since the previous sample.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProcessSample {
    /// When it was taken.
    pub at: SystemTime,
    /// User plus system CPU time of the whole process since it started.
    pub cpu_time: Option<Duration>,
    /// CPU time over wall-clock time since the previous sample, in cores: 1.0 is one core
    /// fully busy, 2.0 two.
    pub cpu_cores_busy: Option<f64>,
    /// [`cpu_cores_busy`](Self::cpu_cores_busy) divided by the CPUs available to the process
    /// ([`cpus`](Self::cpus)): 0 to 1, as `process.cpu.utilization`.
    pub cpu_utilization: Option<f64>,
    /// CPUs available to the process (`std::thread::available_parallelism`).
    pub cpus: Option<usize>,
    /// Resident memory, in bytes (`process.memory.usage`).
    pub memory_rss_bytes: Option<u64>,
    /// Virtual memory, in bytes (`process.memory.virtual`).
    pub memory_virtual_bytes: Option<u64>,
    /// Open file descriptors, counted up to [`OPEN_FDS_CAP`].
    pub open_fds: Option<u64>,
    /// Threads of the process.
    pub threads: Option<u64>,
    /// Worker threads of the tokio runtime.
    pub tokio_workers: Option<usize>,
    /// Tasks alive in the tokio runtime.
    pub tokio_alive_tasks: Option<usize>,
    /// Tasks waiting in the runtime's global (injection) queue.
    pub tokio_global_queue_depth: Option<usize>,
    /// The share of the interval the runtime's workers spent busy, summed over workers and
    /// divided by their number: 0 to 1 (tokio updates the busy time in steps, so short
    /// intervals are approximate).
    pub tokio_busy_ratio: Option<f64>,
}

impl ProcessSample {
    /// Workers busy on average over the interval (busy ratio × workers).
    ///
    /// ```
    /// let sample = service_tracing::process::ProcessSampler::new().sample_now();
    /// assert_eq!(sample.tokio_busy_workers(), None); // no runtime here
    /// ```
    pub fn tokio_busy_workers(&self) -> Option<f64> {
        Some(self.tokio_busy_ratio? * self.tokio_workers? as f64)
    }

    /// The sample as JSON, with units in the keys.
    ///
    /// ```
    /// let json = service_tracing::process::ProcessSampler::new().sample_now().to_json();
    /// assert!(json["at_unix_ms"].as_u64().is_some());
    /// ```
    pub fn to_json(&self) -> Value {
        let at_unix_ms = self
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        json!({
            "at_unix_ms": at_unix_ms,
            "cpu_time_s": self.cpu_time.map(|t| t.as_secs_f64()),
            "cpu_cores_busy": self.cpu_cores_busy,
            "cpu_utilization": self.cpu_utilization,
            "cpus": self.cpus,
            "memory_rss_bytes": self.memory_rss_bytes,
            "memory_virtual_bytes": self.memory_virtual_bytes,
            "open_fds": self.open_fds,
            "threads": self.threads,
            "tokio_workers": self.tokio_workers,
            "tokio_alive_tasks": self.tokio_alive_tasks,
            "tokio_global_queue_depth": self.tokio_global_queue_depth,
            "tokio_busy_ratio": self.tokio_busy_ratio,
        })
    }
}

/// The latest sample and those before it, from [`ProcessSampler::summary`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ProcessSummary {
    /// The time between two background samples.
    pub interval: Duration,
    /// The most recent sample, if any was taken.
    pub latest: Option<ProcessSample>,
    /// At most [`RECENT_SAMPLES`] samples, oldest first (the latest last).
    pub recent: Vec<ProcessSample>,
}

impl ProcessSummary {
    /// The summary as JSON: `interval_ms`, `latest` (or `null`) and `recent`.
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// sampler.sample_now();
    /// let json = sampler.summary().to_json();
    /// assert_eq!(json["interval_ms"], 10_000);
    /// assert_eq!(json["recent"].as_array().map(Vec::len), Some(1));
    /// ```
    pub fn to_json(&self) -> Value {
        json!({
            "interval_ms": u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            "latest": self.latest.as_ref().map(ProcessSample::to_json),
            "recent": self.recent.iter().map(ProcessSample::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Samples the process's resources on demand ([`sample_now`](Self::sample_now)) and, once
/// [started](Self::start), every interval on a background thread. Clones share the samples.
///
/// On Linux it reads `/proc/self/stat` (CPU time, threads, virtual and resident memory) and
/// counts the entries of `/proc/self/fd` (up to [`OPEN_FDS_CAP`]); with a tokio runtime it
/// reads the runtime's stable metrics. Every figure is an `Option`: `None` when it cannot be
/// read (not Linux, `/proc` not as expected, no runtime, or a rate in the first sample).
/// Reading never panics. It keeps the latest [`RECENT_SAMPLES`] samples.
///
/// The thread holds only a weak reference: it ends when the last clone is dropped, or at
/// [`stop`](Self::stop) (which [`TracingGuard`](crate::TracingGuard)'s shutdown calls). Its
/// `tracing` dispatcher is a no-op.
///
/// ```no_run
/// use std::time::Duration;
/// use service_tracing::process::ProcessSampler;
///
/// #[tokio::main]
/// async fn main() {
///     // Inside the runtime, so its figures are sampled too.
///     let sampler = ProcessSampler::new().with_interval(Duration::from_secs(5));
///     sampler.start();
///     // ... later:
///     if let Some(latest) = sampler.latest() {
///         println!("{:?} workers busy", latest.tokio_busy_workers());
///     }
/// }
/// ```
#[derive(Clone)]
#[must_use]
pub struct ProcessSampler {
    inner: Arc<Inner>,
}

struct Inner {
    interval: Duration,
    runtime: Option<Handle>,
    state: Mutex<State>,
    stopped: AtomicBool,
    worker: OnceLock<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    previous: Option<Baseline>,
    recent: VecDeque<ProcessSample>,
}

/// What the next sample's rates are computed from.
#[derive(Clone, Copy)]
struct Baseline {
    at: Instant,
    cpu_time: Option<Duration>,
    busy: Option<Duration>,
}

impl fmt::Debug for ProcessSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSampler")
            .field("interval", &self.inner.interval)
            .field("tokio", &self.inner.runtime.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ProcessSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl ProcessSampler {
    /// A sampler at the default interval (10 s), reading the tokio runtime it is created in
    /// (`Handle::try_current`), if any. Nothing runs until [`start`](Self::start).
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// assert!(sampler.latest().is_none());
    /// ```
    pub fn new() -> Self {
        Self::build(DEFAULT_SAMPLE_INTERVAL, Handle::try_current().ok())
    }

    fn build(interval: Duration, runtime: Option<Handle>) -> Self {
        Self {
            inner: Arc::new(Inner {
                interval: interval.max(MIN_SAMPLE_INTERVAL),
                runtime,
                state: Mutex::new(State::default()),
                stopped: AtomicBool::new(false),
                worker: OnceLock::new(),
            }),
        }
    }

    /// The time between two background samples (at least [`MIN_SAMPLE_INTERVAL`]).
    /// Configure before [`start`](Self::start): it returns a new sampler.
    ///
    /// ```
    /// use std::time::Duration;
    /// let sampler = service_tracing::process::ProcessSampler::new()
    ///     .with_interval(Duration::from_secs(30));
    /// assert_eq!(sampler.interval(), Duration::from_secs(30));
    /// ```
    pub fn with_interval(self, interval: Duration) -> Self {
        Self::build(interval, self.inner.runtime.clone())
    }

    /// The tokio runtime to read, instead of the one `new` was called in (`None`: no tokio
    /// figures). Returns a new sampler.
    ///
    /// ```
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// let sampler = service_tracing::process::ProcessSampler::new()
    ///     .with_runtime(Some(runtime.handle().clone()));
    /// assert_eq!(sampler.sample_now().tokio_workers, Some(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_runtime(self, runtime: Option<Handle>) -> Self {
        Self::build(self.inner.interval, runtime)
    }

    /// The time between two background samples.
    ///
    /// ```
    /// use service_tracing::process::{ProcessSampler, DEFAULT_SAMPLE_INTERVAL};
    /// assert_eq!(ProcessSampler::new().interval(), DEFAULT_SAMPLE_INTERVAL);
    /// ```
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// Starts the background thread (once): it samples at once, then every interval.
    ///
    /// ```no_run
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// sampler.start();
    /// std::thread::sleep(std::time::Duration::from_millis(50));
    /// assert!(sampler.latest().is_some());
    /// sampler.stop();
    /// ```
    pub fn start(&self) {
        self.inner.worker.get_or_init(|| {
            // Samples at once, then every interval, until stopped or every clone is gone.
            crate::runtime::spawn_while_alive(
                "service-tracing-resources",
                self.inner.interval,
                Arc::downgrade(&self.inner),
                |inner| {
                    if inner.stopped.load(Ordering::Acquire) {
                        return false;
                    }
                    ProcessSampler { inner }.sample_now();
                    true
                },
            )
        });
    }

    /// Stops the background thread (at once, or after the sample it is taking); the samples
    /// stay readable and [`sample_now`](Self::sample_now) still works.
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// sampler.start();
    /// sampler.stop();
    /// sampler.sample_now();
    /// ```
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        if let Some(Some(worker)) = self.inner.worker.get() {
            worker.thread().unpark();
        }
    }

    /// Takes a sample now, keeps it, and returns it. Rates are over the time since the
    /// previous sample (`None` for the first).
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// let first = sampler.sample_now();
    /// assert_eq!(first.cpu_cores_busy, None);
    /// assert_eq!(sampler.latest(), Some(first));
    /// ```
    pub fn sample_now(&self) -> ProcessSample {
        let mut state = lock(&self.inner.state);
        let now = Instant::now();
        let process = read_process();
        let runtime = self.inner.runtime.as_ref().map(read_runtime);
        let busy = runtime.as_ref().and_then(|r| r.busy);
        let cpus = std::thread::available_parallelism().ok().map(usize::from);
        let previous = state.previous.replace(Baseline {
            at: now,
            cpu_time: process.cpu_time,
            busy,
        });
        let elapsed = previous
            .map(|p| now.saturating_duration_since(p.at).as_secs_f64())
            .filter(|e| *e > 0.0);
        let cpu_cores_busy = match (previous.and_then(|p| p.cpu_time), process.cpu_time) {
            (Some(before), Some(after)) => {
                elapsed.map(|e| after.saturating_sub(before).as_secs_f64() / e)
            }
            _ => None,
        };
        let workers = runtime.as_ref().map(|r| r.workers);
        let tokio_busy_ratio = match (previous.and_then(|p| p.busy), busy, workers, elapsed) {
            (Some(before), Some(after), Some(w), Some(e)) if w > 0 => {
                Some((after.saturating_sub(before).as_secs_f64() / (e * w as f64)).clamp(0.0, 1.0))
            }
            _ => None,
        };
        let sample = ProcessSample {
            at: SystemTime::now(),
            cpu_time: process.cpu_time,
            cpu_cores_busy,
            cpu_utilization: cpu_cores_busy
                .zip(cpus.filter(|c| *c > 0))
                .map(|(busy, cpus)| (busy / cpus as f64).clamp(0.0, 1.0)),
            cpus,
            memory_rss_bytes: process.rss_bytes,
            memory_virtual_bytes: process.virtual_bytes,
            open_fds: process.open_fds,
            threads: process.threads,
            tokio_workers: workers,
            tokio_alive_tasks: runtime.as_ref().map(|r| r.alive_tasks),
            tokio_global_queue_depth: runtime.as_ref().map(|r| r.global_queue_depth),
            tokio_busy_ratio,
        };
        if state.recent.len() >= RECENT_SAMPLES {
            state.recent.pop_front();
        }
        state.recent.push_back(sample.clone());
        sample
    }

    /// The most recent sample, if any was taken.
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// assert!(sampler.latest().is_none());
    /// sampler.sample_now();
    /// assert!(sampler.latest().is_some());
    /// ```
    pub fn latest(&self) -> Option<ProcessSample> {
        lock(&self.inner.state).recent.back().cloned()
    }

    /// At most [`RECENT_SAMPLES`] samples, oldest first.
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// sampler.sample_now();
    /// sampler.sample_now();
    /// assert_eq!(sampler.recent().len(), 2);
    /// ```
    pub fn recent(&self) -> Vec<ProcessSample> {
        lock(&self.inner.state).recent.iter().cloned().collect()
    }

    /// The interval, the latest sample and the recent ones.
    ///
    /// ```
    /// let sampler = service_tracing::process::ProcessSampler::new();
    /// sampler.sample_now();
    /// assert_eq!(sampler.summary().recent.len(), 1);
    /// ```
    pub fn summary(&self) -> ProcessSummary {
        let state = lock(&self.inner.state);
        ProcessSummary {
            interval: self.inner.interval,
            latest: state.recent.back().cloned(),
            recent: state.recent.iter().cloned().collect(),
        }
    }

    /// A handle that does not keep the sampler (or its thread) alive.
    pub(crate) fn downgrade(&self) -> WeakProcessSampler {
        WeakProcessSampler(Arc::downgrade(&self.inner))
    }
}

/// A [`ProcessSampler`] that does not keep it alive (for metric callbacks).
#[derive(Clone)]
pub(crate) struct WeakProcessSampler(Weak<Inner>);

impl WeakProcessSampler {
    /// The latest sample, while the sampler lives.
    pub(crate) fn latest(&self) -> Option<ProcessSample> {
        let inner = self.0.upgrade()?;
        ProcessSampler { inner }.latest()
    }
}

/// The process figures read from `/proc`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ProcessFigures {
    cpu_time: Option<Duration>,
    rss_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    threads: Option<u64>,
    open_fds: Option<u64>,
}

#[cfg(target_os = "linux")]
fn read_process() -> ProcessFigures {
    let units = linux_units();
    let mut figures = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat, units))
        .unwrap_or_default();
    // Less the descriptor the listing itself holds open.
    figures.open_fds = count_entries("/proc/self/fd".as_ref(), OPEN_FDS_CAP.saturating_add(1))
        .map(|n| n.saturating_sub(1));
    figures
}

#[cfg(not(target_os = "linux"))]
fn read_process() -> ProcessFigures {
    ProcessFigures::default()
}

/// Clock ticks per second and page size, as the kernel gives them to the process.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Units {
    ticks_per_second: u64,
    page_size: u64,
}

/// The Linux defaults on every current architecture, when the auxiliary vector is unreadable.
const DEFAULT_UNITS: Units = Units {
    ticks_per_second: 100,
    page_size: 4096,
};

/// Read once from `/proc/self/auxv` (`AT_CLKTCK`, `AT_PAGESZ`): the values `sysconf` returns,
/// without `unsafe`.
#[cfg(target_os = "linux")]
fn linux_units() -> Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    *UNITS.get_or_init(|| {
        std::fs::read("/proc/self/auxv")
            .map(|auxv| parse_auxv(&auxv))
            .unwrap_or(DEFAULT_UNITS)
    })
}

/// Reads `AT_PAGESZ` (6) and `AT_CLKTCK` (17) from an auxiliary vector of native-endian
/// `usize` pairs; the defaults for anything missing or zero.
fn parse_auxv(auxv: &[u8]) -> Units {
    const AT_PAGESZ: u64 = 6;
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> Option<u64> {
        let array: [u8; WORD] = bytes.try_into().ok()?;
        u64::try_from(usize::from_ne_bytes(array)).ok()
    };
    let mut units = DEFAULT_UNITS;
    for pair in auxv.chunks_exact(2 * WORD) {
        let (Some(key), Some(value)) = (word(&pair[..WORD]), word(&pair[WORD..])) else {
            break;
        };
        match key {
            0 => break, // AT_NULL
            AT_PAGESZ if value > 0 => units.page_size = value,
            AT_CLKTCK if value > 0 => units.ticks_per_second = value,
            _ => {}
        }
    }
    units
}

/// Parses `/proc/self/stat`: `utime` + `stime` (fields 14, 15, in ticks), `num_threads` (20),
/// `vsize` (23, bytes) and `rss` (24, pages). The command name (field 2) may hold spaces and
/// parentheses, so the fields are counted from the last `)`. `None` when the line is not of
/// that shape; a single unparsable field is `None` on its own.
fn parse_stat(stat: &str, units: Units) -> Option<ProcessFigures> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state).
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    if fields.len() < 22 {
        return None;
    }
    let ticks = field(14)
        .zip(field(15))
        .and_then(|(user, system)| user.checked_add(system));
    Some(ProcessFigures {
        cpu_time: ticks.map(|t| {
            let per_second = units.ticks_per_second.max(1);
            Duration::from_secs(t / per_second)
                + Duration::from_nanos((t % per_second) * 1_000_000_000 / per_second)
        }),
        threads: field(20),
        virtual_bytes: field(23),
        rss_bytes: field(24).and_then(|pages| pages.checked_mul(units.page_size)),
        open_fds: None,
    })
}

/// Counts a directory's entries, stopping at `cap`. `None` when it cannot be listed.
#[cfg(target_os = "linux")]
fn count_entries(dir: &std::path::Path, cap: u64) -> Option<u64> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let listed = std::fs::read_dir(dir).ok()?.take(cap).count();
    Some(u64::try_from(listed).unwrap_or(u64::MAX))
}

/// The tokio runtime's stable metrics.
struct RuntimeFigures {
    workers: usize,
    alive_tasks: usize,
    global_queue_depth: usize,
    /// Busy time summed over workers (64-bit atomics only).
    busy: Option<Duration>,
}

fn read_runtime(handle: &Handle) -> RuntimeFigures {
    let metrics = handle.metrics();
    let workers = metrics.num_workers();
    #[cfg(target_has_atomic = "64")]
    let busy = Some(
        (0..workers)
            .map(|w| metrics.worker_total_busy_duration(w))
            .fold(Duration::ZERO, Duration::saturating_add),
    );
    #[cfg(not(target_has_atomic = "64"))]
    let busy = None;
    RuntimeFigures {
        workers,
        alive_tasks: metrics.num_alive_tasks(),
        global_queue_depth: metrics.global_queue_depth(),
        busy,
    }
}

/// The sampler's state stays usable after a panic elsewhere: every field is whole between
/// two statements.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
