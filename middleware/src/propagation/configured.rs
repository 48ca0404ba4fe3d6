//! The propagator the application configured for the whole process ([`set_configured`]), which
//! clients built without a propagator of their own follow ([`PropagatorSource::Configured`]).
//!
//! Read on every outbound request, so reading costs one atomic load: a generation counter,
//! compared with the generation this thread last copied. The slot itself sits behind a mutex
//! that only [`set_configured`] and a thread's first read after a change take, never a
//! request in the steady state. Unlike a `OnceLock`, a later set-up replaces the choice, as it
//! replaces OpenTelemetry's global propagator.
//!
//! [`PropagatorSource::Configured`]: super::PropagatorSource::Configured

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use opentelemetry::propagation::TextMapPropagator;

use super::{default_ref, SharedPropagator};

/// Bumped by every [`set_configured`]; 0 means never set (the default formats).
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The configured propagator; `None` for the default formats.
static SLOT: Mutex<Option<SharedPropagator>> = Mutex::new(None);

thread_local! {
    /// This thread's copy of the slot and the generation it was copied at.
    static COPY: RefCell<(u64, Option<SharedPropagator>)> = const { RefCell::new((0, None)) };
}

/// Records the propagator this process's set-up chose (from `OTEL_PROPAGATORS` or code), for
/// the clients that follow it: `service_tracing_client::TracingMiddleware::new()` and
/// `traced_client()`. `None` restores the default, W3C Trace Context and Baggage. A later call
/// replaces an earlier one; requests already being sent are not affected.
///
/// `service-tracing`'s set-up calls this; call it yourself only when you set up OpenTelemetry
/// without it and want the clients to follow your choice.
///
/// ```
/// use service_tracing_middleware::propagation::{
///     inject_configured, propagator_from_names, set_configured,
/// };
/// use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
///
/// let sc = SpanContext::new(TraceId::from(1), SpanId::from(2), TraceFlags::SAMPLED, false, TraceState::NONE);
/// let cx = opentelemetry::Context::new().with_remote_span_context(sc);
///
/// set_configured(Some(propagator_from_names(["b3"]).unwrap().into_shared()));
/// let mut headers = http::HeaderMap::new();
/// inject_configured(&cx, &mut headers);
/// assert!(headers.contains_key("b3") && !headers.contains_key("traceparent"));
///
/// set_configured(None); // back to W3C Trace Context and Baggage
/// let mut headers = http::HeaderMap::new();
/// inject_configured(&cx, &mut headers);
/// assert!(headers.contains_key("traceparent"));
/// ```
pub fn set_configured(propagator: Option<SharedPropagator>) {
    let mut slot = SLOT.lock().unwrap_or_else(PoisonError::into_inner);
    let old = std::mem::replace(&mut *slot, propagator);
    // Inside the lock: a reader that sees the new generation and then locks reads the new value.
    GENERATION.fetch_add(1, Ordering::Release);
    drop(slot);
    drop(old);
}

/// Writes `cx` into `headers` with the configured propagator (see [`set_configured`]), leaving
/// alone every header already present.
///
/// ```
/// use service_tracing_middleware::propagation::inject_configured;
/// let mut headers = http::HeaderMap::new();
/// inject_configured(&opentelemetry::Context::new(), &mut headers);
/// assert!(headers.is_empty()); // no span, no baggage: nothing to write
/// ```
pub fn inject_configured(cx: &opentelemetry::Context, headers: &mut http::HeaderMap) {
    with_configured(|p| super::inject(p, cx, headers));
}

/// Runs `f` with the configured propagator, or the default one when none is configured.
pub(crate) fn with_configured<R>(f: impl FnOnce(&(dyn TextMapPropagator + Send + Sync)) -> R) -> R {
    let generation = GENERATION.load(Ordering::Acquire);
    if generation == 0 {
        return f(&**default_ref());
    }
    let mut f = Some(f);
    let fast = COPY.try_with(|copy| {
        if copy.borrow().0 != generation {
            // A propagator that re-enters here while the copy is borrowed, or a race with a
            // second change, just takes the slow path below.
            let Ok(mut copy) = copy.try_borrow_mut() else {
                return None;
            };
            *copy = read_slot();
        }
        let copy = copy.try_borrow().ok()?;
        let run = f.take()?;
        Some(match &copy.1 {
            Some(p) => run(&**p),
            None => run(&**default_ref()),
        })
    });
    match (fast, f) {
        (Ok(Some(out)), _) => out,
        (_, Some(run)) => match read_slot().1 {
            Some(p) => run(&*p),
            None => run(&**default_ref()),
        },
        // `f` was taken only by a call that returned its result.
        (_, None) => unreachable!("the propagator ran without returning"),
    }
}

/// The slot and its generation, read under the lock.
fn read_slot() -> (u64, Option<SharedPropagator>) {
    let slot = SLOT.lock().unwrap_or_else(PoisonError::into_inner);
    (GENERATION.load(Ordering::Acquire), slot.clone())
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;
    use crate::propagation::propagator_from_names;

    fn names_written() -> Vec<String> {
        let sc = SpanContext::new(
            TraceId::from(1),
            SpanId::from(2),
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let mut headers = http::HeaderMap::new();
        inject_configured(&cx, &mut headers);
        let mut names: Vec<String> = headers.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// The only test in this crate that sets the slot, so the others keep the default.
    #[test]
    fn a_thread_that_copied_one_choice_sees_the_next_and_the_default_again() {
        assert_eq!(names_written(), ["traceparent"]);
        let b3 = propagator_from_names(["b3"]).expect("b3").into_shared();
        set_configured(Some(b3));
        assert_eq!(names_written(), ["b3"]);
        // Another thread copies the same choice on its first read.
        let other = std::thread::spawn(names_written).join().expect("thread");
        assert_eq!(other, ["b3"]);
        // This thread holds a copy now: a change must still reach it.
        let none = propagator_from_names(["none"]).expect("none").into_shared();
        set_configured(Some(none));
        assert!(names_written().is_empty());
        set_configured(None);
        assert_eq!(names_written(), ["traceparent"]);
    }
}
