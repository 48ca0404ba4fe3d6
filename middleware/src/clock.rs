//! The request path's clock: one monotonic reading when a request starts and one when it
//! ends; the wall-clock times a request needs (its span's start and end, a generated
//! correlation id's milliseconds) are worked out from those two readings.
//!
//! A clock reading is not cheap: on the build machine (`tsc` clock source, a virtual machine)
//! `SystemTime::now` and `Instant::now` take 30-40 ns each (`cargo bench --bench primitives`),
//! a sixth of an unsampled request's whole budget. Each thread keeps an anchor, an `Instant` and the `SystemTime`
//! read just after it, and turns an `Instant` into wall time by adding the monotonic time
//! since the anchor. Linux slews both clocks alike (NTP frequency corrections apply to
//! `CLOCK_MONOTONIC` too); only a step of the system clock separates them, and the anchor is
//! read again once it is [`REANCHOR`] old, so a step shows within that time.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

/// How long a thread's anchor serves before the system clock is read again.
const REANCHOR: Duration = Duration::from_secs(1);

thread_local! {
    static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
}

/// A request's start: the instant read when it began, and its wall time once asked for (a
/// generated correlation id and the span's start ask for the same one).
pub(crate) struct Start {
    at: Instant,
    wall: Cell<Option<SystemTime>>,
}

impl Start {
    /// Reads the clock.
    pub(crate) fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: Cell::new(None),
        }
    }

    /// The instant.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// The wall-clock time ([`wall`]), worked out once.
    pub(crate) fn wall(&self) -> SystemTime {
        if let Some(wall) = self.wall.get() {
            return wall;
        }
        let wall = wall(self.at);
        self.wall.set(Some(wall));
        wall
    }
}

/// Reads both clocks: the monotonic one first, so the wall time paired with it is never
/// earlier than the true wall time at that instant.
fn read_anchor() -> (Instant, SystemTime) {
    let instant = Instant::now();
    (instant, SystemTime::now())
}

/// The wall-clock time of `at`, an instant read on this machine.
pub(crate) fn wall(at: Instant) -> SystemTime {
    ANCHOR
        .try_with(|cell| {
            // The common case, `at` within the anchor's time after it: one subtraction and
            // one addition.
            if let Some((instant, wall)) = cell.get() {
                if let Some(after) = at.checked_duration_since(instant) {
                    if after < REANCHOR {
                        return wall.checked_add(after).unwrap_or(wall);
                    }
                }
            }
            let anchor = read_anchor();
            cell.set(Some(anchor));
            from(anchor, at)
        })
        // The thread is ending: read both clocks for this one call.
        .unwrap_or_else(|_| from(read_anchor(), at))
}

/// `at` as wall time, from `anchor`.
fn from((instant, wall): (Instant, SystemTime), at: Instant) -> SystemTime {
    let shifted = match at.checked_duration_since(instant) {
        Some(after) => wall.checked_add(after),
        None => wall.checked_sub(instant.saturating_duration_since(at)),
    };
    shifted.unwrap_or(wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(a: SystemTime, b: SystemTime, tolerance: Duration) -> bool {
        let gap = a
            .duration_since(b)
            .or_else(|_| b.duration_since(a))
            .unwrap_or_default();
        gap <= tolerance
    }

    #[test]
    fn an_instant_s_wall_time_is_the_system_clock_s_at_that_instant() {
        for _ in 0..3 {
            let before = SystemTime::now();
            let at = Instant::now();
            let after = SystemTime::now();
            let derived = wall(at);
            // The anchor pairs the two clocks within one reading of each.
            assert!(
                within(derived, before, Duration::from_millis(5))
                    && within(derived, after, Duration::from_millis(5)),
                "{derived:?} vs {before:?}..{after:?}"
            );
        }
    }

    #[test]
    fn later_instants_are_later_by_the_same_monotonic_time_earlier_ones_earlier() {
        let now = Instant::now();
        let base = wall(now);
        let later = now + Duration::from_millis(250);
        assert_eq!(wall(later), base + Duration::from_millis(250));
        // An instant from before the anchor (a request that started earlier on this thread)
        // takes a new anchor: the same within the two clocks' reading.
        if let Some(earlier) = now.checked_sub(Duration::from_millis(40)) {
            assert!(within(
                wall(earlier),
                base - Duration::from_millis(40),
                Duration::from_millis(1)
            ));
        }
    }

    #[test]
    fn a_start_s_wall_time_is_worked_out_once() {
        let _anchored = wall(Instant::now());
        let start = Start::now();
        let first = start.wall();
        assert_eq!(first, wall(start.at()));
        // Even past the anchor's time, the start keeps the time it gave.
        ANCHOR.with(|cell| cell.set(None));
        assert_eq!(start.wall(), first);
    }

    #[test]
    fn an_anchor_past_its_time_is_read_again() {
        let first = wall(Instant::now());
        let anchored = ANCHOR.with(Cell::get).expect("anchored").0;
        // An instant past the anchor's time takes a new one, and still gives its wall time.
        let far = anchored + REANCHOR + Duration::from_millis(1);
        let at_far = wall(far);
        let renewed = ANCHOR.with(Cell::get).expect("anchored").0;
        assert!(renewed > anchored);
        assert!(at_far > first);
        // The new anchor was read before `far` (a moment still to come): `far` lies ahead of it.
        assert!(within(
            at_far,
            SystemTime::now() + far.saturating_duration_since(Instant::now()),
            Duration::from_millis(5)
        ));
    }
}
