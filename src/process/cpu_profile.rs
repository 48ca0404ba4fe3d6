//! CPU profiles on demand (feature `cpu-profile`): sample the whole process for a while and
//! get a flame graph SVG and the pprof protobuf.
//!
//! Sampling uses `SIGPROF` timers (the `pprof` crate), so it costs nothing until a profile is
//! taken and little while one runs (about 100 stack walks per second per busy thread). Only
//! one profile can run at a time in a process; a second request gets
//! [`CpuProfileError::AlreadyRunning`] at once instead of waiting.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{http::header, response::IntoResponse, routing::get, Router};
//! use service_tracing::cpu_profile::{self, CpuProfileOptions};
//!
//! // An admin route returning a 10 s flame graph. Keep such a route away from the public.
//! async fn flamegraph() -> axum::response::Response {
//!     match cpu_profile::profile(CpuProfileOptions::new(Duration::from_secs(10))).await {
//!         Ok(profile) => ([(header::CONTENT_TYPE, "image/svg+xml")], profile.flamegraph_svg).into_response(),
//!         Err(e) => (axum::http::StatusCode::CONFLICT, e.to_string()).into_response(),
//!     }
//! }
//!
//! let admin: Router = Router::new().route("/debug/flamegraph", get(flamegraph));
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pprof::protos::Message as _;

/// The longest profile allowed: a forgotten profile must not run for ever.
pub const MAX_DURATION: Duration = Duration::from_secs(300);

/// How to take a profile.
///
/// ```
/// use std::time::Duration;
/// let options = service_tracing::cpu_profile::CpuProfileOptions::new(Duration::from_secs(5))
///     .frequency(199);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct CpuProfileOptions {
    /// How long to sample (at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// Samples per second per thread (default 99, off-beat with periodic work).
    pub frequency: i32,
}

impl CpuProfileOptions {
    /// Samples for `duration` at 99 Hz.
    pub fn new(duration: Duration) -> Self {
        Self {
            duration,
            frequency: 99,
        }
    }

    /// Samples per second per thread (1 to 1000).
    pub fn frequency(mut self, frequency: i32) -> Self {
        self.frequency = frequency;
        self
    }
}

/// A finished profile.
#[derive(Clone)]
#[non_exhaustive]
pub struct CpuProfile {
    /// The flame graph, an SVG document (interactive in a browser).
    pub flamegraph_svg: Vec<u8>,
    /// The profile in pprof's protobuf form (`go tool pprof`, Pyroscope, Grafana), not
    /// compressed.
    pub pprof: Vec<u8>,
    /// How many stack samples were taken.
    pub samples: usize,
}

impl fmt::Debug for CpuProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuProfile")
            .field("flamegraph_svg", &self.flamegraph_svg.len())
            .field("pprof", &self.pprof.len())
            .field("samples", &self.samples)
            .finish()
    }
}

/// Why no profile was taken.
#[derive(Debug)]
#[non_exhaustive]
pub enum CpuProfileError {
    /// Another profile is running in this process.
    AlreadyRunning,
    /// The options are out of range.
    InvalidOptions(String),
    /// The sampler or the report failed.
    Profiler(String),
}

impl fmt::Display for CpuProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyRunning => {
                f.write_str("a CPU profile is already running in this process; retry when it ends")
            }
            Self::InvalidOptions(why) => write!(f, "invalid CPU profile options: {why}"),
            Self::Profiler(why) => write!(f, "CPU profiling failed: {why}"),
        }
    }
}

impl std::error::Error for CpuProfileError {}

/// Set while a profile runs.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Whether a profile is running in this process now.
///
/// ```
/// assert!(!service_tracing::cpu_profile::is_running());
/// ```
pub fn is_running() -> bool {
    RUNNING.load(Ordering::Acquire)
}

/// Clears [`RUNNING`] however the profile ends.
struct Running;

impl Running {
    fn claim() -> Result<Self, CpuProfileError> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| Self)
            .map_err(|_| CpuProfileError::AlreadyRunning)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

fn check(options: &CpuProfileOptions) -> Result<(), CpuProfileError> {
    if options.duration.is_zero() || options.duration > MAX_DURATION {
        return Err(CpuProfileError::InvalidOptions(format!(
            "duration {:?} must be above zero and at most {MAX_DURATION:?}",
            options.duration
        )));
    }
    if !(1..=1000).contains(&options.frequency) {
        return Err(CpuProfileError::InvalidOptions(format!(
            "frequency {} must be 1 to 1000 samples per second",
            options.frequency
        )));
    }
    Ok(())
}

/// Samples the process for `options.duration` and returns the profile, without blocking the
/// async runtime (the report is built on a blocking thread).
///
/// ```no_run
/// # async fn f() -> Result<(), service_tracing::cpu_profile::CpuProfileError> {
/// use std::time::Duration;
/// use service_tracing::cpu_profile::{profile, CpuProfileOptions};
/// let p = profile(CpuProfileOptions::new(Duration::from_secs(5))).await?;
/// std::fs::write("flamegraph.svg", &p.flamegraph_svg).ok();
/// # Ok(()) }
/// ```
pub async fn profile(options: CpuProfileOptions) -> Result<CpuProfile, CpuProfileError> {
    check(&options)?;
    let running = Running::claim()?;
    let guard = start(&options)?;
    tokio::time::sleep(options.duration).await;
    tokio::task::spawn_blocking(move || {
        let _running = running;
        report(&guard)
    })
    .await
    .map_err(|e| CpuProfileError::Profiler(format!("the report task failed: {e}")))?
}

/// Like [`profile`], blocking the calling thread for the duration (for programs without an
/// async runtime, or a thread of their own).
///
/// ```no_run
/// use std::time::Duration;
/// use service_tracing::cpu_profile::{profile_blocking, CpuProfileOptions};
/// let p = profile_blocking(CpuProfileOptions::new(Duration::from_secs(5)));
/// ```
pub fn profile_blocking(options: CpuProfileOptions) -> Result<CpuProfile, CpuProfileError> {
    check(&options)?;
    let _running = Running::claim()?;
    let guard = start(&options)?;
    std::thread::sleep(options.duration);
    report(&guard)
}

fn start(options: &CpuProfileOptions) -> Result<pprof::ProfilerGuard<'static>, CpuProfileError> {
    pprof::ProfilerGuardBuilder::default()
        .frequency(options.frequency)
        // Frames from these libraries make unwinding unsafe or are noise.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| CpuProfileError::Profiler(e.to_string()))
}

fn report(guard: &pprof::ProfilerGuard<'static>) -> Result<CpuProfile, CpuProfileError> {
    let failed = |e: pprof::Error| CpuProfileError::Profiler(e.to_string());
    let report = guard.report().build().map_err(failed)?;
    let samples = report.data.values().map(|&n| n.max(0) as usize).sum();
    let mut flamegraph_svg = Vec::new();
    report.flamegraph(&mut flamegraph_svg).map_err(failed)?;
    let pprof = report.pprof().map_err(failed)?.encode_to_vec();
    Ok(CpuProfile {
        flamegraph_svg,
        pprof,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_out_of_range_are_refused_before_sampling() {
        for options in [
            CpuProfileOptions::new(Duration::ZERO),
            CpuProfileOptions::new(MAX_DURATION + Duration::from_secs(1)),
            CpuProfileOptions::new(Duration::from_secs(1)).frequency(0),
        ] {
            let err = profile_blocking(options).expect_err("refused");
            assert!(matches!(err, CpuProfileError::InvalidOptions(_)), "{err}");
        }
    }

    #[test]
    fn a_second_profile_is_refused_while_one_runs() {
        let first = Running::claim().expect("free");
        let err =
            profile_blocking(CpuProfileOptions::new(Duration::from_millis(10))).expect_err("busy");
        assert!(matches!(err, CpuProfileError::AlreadyRunning));
        assert!(err.to_string().contains("already running"));
        drop(first);
        assert!(Running::claim().is_ok(), "released when the profile ends");
    }
}
