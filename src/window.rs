//! The sliding windows error rates, error groups and latency percentiles are given over.

use std::time::Duration;

/// A sliding window over which rates are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Window {
    /// The last minute (50 to 60 s, in 10-second buckets).
    OneMinute,
    /// The last 5 minutes (4 to 5 min, in 1-minute buckets).
    FiveMinutes,
    /// The last hour (55 to 60 min, in 5-minute buckets).
    OneHour,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::OneMinute, Window::FiveMinutes, Window::OneHour];

    /// The window's nominal length.
    ///
    /// ```
    /// use service_tracing::Window;
    /// assert_eq!(Window::FiveMinutes.duration().as_secs(), 300);
    /// ```
    pub fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Window::OneMinute => 60,
            Window::FiveMinutes => 300,
            Window::OneHour => 3_600,
        })
    }

    /// `1m`, `5m` or `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::OneMinute => "1m",
            Window::FiveMinutes => "5m",
            Window::OneHour => "1h",
        }
    }
}
