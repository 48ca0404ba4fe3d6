//! Time since a start, on the system clock or on one a test moves by hand: what the error rates
//! and profiling count their time windows on.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clock a test injects.
pub(crate) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Time since the moment it was made.
#[derive(Clone)]
pub(crate) struct Elapsed {
    /// `None`: `Instant::now`.
    injected: Option<Clock>,
    start: Instant,
}

impl Elapsed {
    /// From now, on the system clock.
    pub(crate) fn system() -> Self {
        Self {
            injected: None,
            start: Instant::now(),
        }
    }

    /// From now, on `clock`.
    pub(crate) fn on(clock: Clock) -> Self {
        let start = clock();
        Self {
            injected: Some(clock),
            start,
        }
    }

    /// From now, on the same clock.
    pub(crate) fn restart(&self) -> Self {
        match &self.injected {
            Some(clock) => Self::on(clock.clone()),
            None => Self::system(),
        }
    }

    /// Time since the start.
    pub(crate) fn now(&self) -> Duration {
        let now = match &self.injected {
            Some(clock) => clock(),
            None => Instant::now(),
        };
        now.saturating_duration_since(self.start)
    }

    /// `ended_at`, read on the system clock (a request's end, as the layer read it), as time
    /// since the start, without reading the clock again; on an injected clock, its present.
    pub(crate) fn of(&self, ended_at: Instant) -> Duration {
        match self.injected {
            None => ended_at.saturating_duration_since(self.start),
            Some(_) => self.now(),
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it, `u64::MAX` past what fits).
pub(crate) fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn an_injected_clock_is_read_and_a_system_one_takes_the_given_instant() {
        let base = Instant::now();
        let millis = Arc::new(AtomicU64::new(0));
        let read = millis.clone();
        let elapsed = Elapsed::on(Arc::new(move || {
            base + Duration::from_millis(read.load(Ordering::SeqCst))
        }));
        millis.store(1_500, Ordering::SeqCst);
        assert_eq!(elapsed.now(), Duration::from_millis(1_500));
        assert_eq!(
            elapsed.of(base),
            Duration::from_millis(1_500),
            "its own present"
        );
        assert_eq!(elapsed.restart().now(), Duration::ZERO);

        let system = Elapsed::system();
        let later = Instant::now() + Duration::from_secs(3);
        assert!(system.of(later) >= Duration::from_secs(3));
    }
}
