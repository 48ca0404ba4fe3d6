//! Keeping a share of traces, decided by trace id as OpenTelemetry's `traceidratio` sampler
//! decides: the sampling rules' ratios and rates, and profiling's analysis budget, keep the
//! same traces for the same share, in this process and in every other service using the ratio.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::TraceId;

use crate::per_thread::{stripe, STRIPES};

/// Whether a trace is among the `ratio` (0 to 1) kept: its id's low 63 bits against the ratio.
pub(crate) fn keeps(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = u64::from_be_bytes(trace_id.to_bytes()[8..].try_into().unwrap_or([0xff; 8]));
    (low >> 1) < bound
}

/// A count each thread adds to in a stripe of its own, summed when read.
#[derive(Default)]
pub(crate) struct Counter([Padded; STRIPES]);

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// A share of traces that follows the traffic: each second it is set so that the previous
/// second's traffic would have kept `per_second` traces.
pub(crate) struct Budget {
    per_second: f64,
    second: AtomicU64,
    seen: Counter,
    seen_before: AtomicU64,
    ratio_bits: AtomicU64,
}

impl Budget {
    /// About `per_second` traces a second (all of them the first second).
    pub(crate) fn new(per_second: f64, now: u64) -> Self {
        Self {
            per_second: if per_second.is_nan() {
                0.0
            } else {
                per_second.max(0.0)
            },
            second: AtomicU64::new(now),
            seen: Counter::default(),
            seen_before: AtomicU64::new(0),
            ratio_bits: AtomicU64::new(1.0_f64.to_bits()),
        }
    }

    /// The share kept now.
    pub(crate) fn ratio(&self) -> f64 {
        f64::from_bits(self.ratio_bits.load(Ordering::Relaxed))
    }

    /// The per-second target.
    pub(crate) fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Counts one trace seen at second `now` (whole seconds on any clock that does not go
    /// back much), starting a new second first when `now` is past the current one; `true`
    /// for the one call that started it.
    pub(crate) fn count(&self, now: u64) -> bool {
        let second = self.second.load(Ordering::Acquire);
        let started = now > second && self.roll(second, now);
        self.seen.add(1);
        started
    }

    /// Starts second `now`: one thread sets the share from the traffic since the last start.
    fn roll(&self, second: u64, now: u64) -> bool {
        if self
            .second
            .compare_exchange(second, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        let seen = self.seen.sum();
        let before = self.seen_before.swap(seen, Ordering::Relaxed);
        let per_second = seen.saturating_sub(before) as f64 / (now - second) as f64;
        let ratio = if per_second <= self.per_second {
            1.0
        } else {
            self.per_second / per_second
        };
        self.ratio_bits.store(ratio.to_bits(), Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_follows_the_last_seconds_traffic() {
        let budget = Budget::new(100.0, 0);
        for _ in 0..1_000 {
            budget.count(0);
        }
        assert_eq!(budget.ratio(), 1.0, "the first second keeps all");
        budget.count(1);
        assert!((budget.ratio() - 0.1).abs() < 1e-9, "{}", budget.ratio());
        for _ in 0..49 {
            budget.count(1);
        }
        budget.count(3);
        assert_eq!(budget.ratio(), 1.0, "25 a second over the two seconds");
        budget.count(2);
        assert_eq!(budget.ratio(), 1.0, "a late count starts no second");
    }

    #[test]
    fn a_share_keeps_that_share_of_trace_ids() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u128;
        let kept = (0..10_000)
            .filter(|_| {
                seed = seed
                    .wrapping_mul(0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645)
                    .wrapping_add(1);
                keeps(0.25, TraceId::from(seed))
            })
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!(keeps(1.0, TraceId::from(u128::MAX)));
        assert!(!keeps(0.0, TraceId::from(0)));
    }
}
