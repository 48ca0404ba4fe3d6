//! How the library starts its background threads (error grouping, alerting, alert delivery,
//! Redis sync, bottleneck analysis, resource sampling, the metrics push): one named thread
//! whose `tracing` dispatcher is a no-op, so nothing it does (its own HTTP, Redis or OTLP
//! traffic included) reaches the OpenTelemetry bridge and becomes telemetry; where the thread
//! drives async I/O, with a current-thread tokio runtime of its own, whose blocking pool is
//! quiet too. The periodic ones work on state they hold weakly, so they end when its owner is
//! dropped.

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Runtime;
use tracing::subscriber::{DefaultGuard, NoSubscriber};

/// Spawns the thread `name` running `work` under a no-op `tracing` dispatcher.
pub(crate) fn spawn_quiet<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _quiet = tracing::subscriber::set_default(NoSubscriber::default());
            work()
        })
}

/// [`spawn_quiet`] with a current-thread tokio runtime (I/O and timers on) built on the new
/// thread and handed to `work`, or the error that prevented it, for `work` to report.
pub(crate) fn spawn_with_runtime<T: Send + 'static>(
    name: &str,
    work: impl FnOnce(io::Result<Runtime>) -> T + Send + 'static,
) -> io::Result<JoinHandle<T>> {
    spawn_quiet(name, move || {
        work(
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(silence_thread)
                .build(),
        )
    })
}

thread_local! {
    static QUIET: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// Gives the calling thread a no-op `tracing` dispatcher for the rest of its life: for threads
/// a runtime starts (its blocking pool, for DNS and file I/O), which run no closure of ours.
fn silence_thread() {
    QUIET.with(|q| {
        *q.borrow_mut() = Some(tracing::subscriber::set_default(NoSubscriber::default()))
    });
}

/// Spawns the thread `name`, which calls `work` with the state at once, then every `interval`
/// (or sooner when unparked), until the state is dropped or `work` returns `false`. Its
/// `tracing` dispatcher is a no-op, so nothing it does reaches the OpenTelemetry bridge.
/// `None` when the thread cannot be spawned.
pub(crate) fn spawn_while_alive<T: Send + Sync + 'static>(
    name: &str,
    interval: Duration,
    state: Weak<T>,
    work: impl Fn(Arc<T>) -> bool + Send + 'static,
) -> Option<JoinHandle<()>> {
    spawn_quiet(name, move || {
        while let Some(state) = state.upgrade() {
            if !work(state) {
                return;
            }
            std::thread::park_timeout(interval);
        }
    })
    .ok()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn works_at_once_and_ends_when_the_state_is_dropped_or_work_says_so() {
        let state = Arc::new(AtomicU64::new(0));
        let handle =
            spawn_while_alive("t", Duration::from_millis(1), Arc::downgrade(&state), |n| {
                n.fetch_add(1, Ordering::Relaxed) < 2
            })
            .expect("spawned");
        handle.join().expect("ends after the third call");
        assert_eq!(state.load(Ordering::Relaxed), 3);

        let dropped = Arc::new(());
        let handle = spawn_while_alive(
            "t",
            Duration::from_millis(1),
            Arc::downgrade(&dropped),
            |_| true,
        )
        .expect("spawned");
        drop(dropped);
        handle.join().expect("ends once the state is gone");
    }

    /// Under nextest each unit test runs in its own process, so a global subscriber is fine.
    #[test]
    fn the_thread_and_its_runtimes_blocking_pool_never_reach_the_tracing_bridge() {
        use crate::export::batch::tests::{chatter, install_bridge_detector};
        let Some((bridge_provider, leaked)) = install_bridge_detector() else {
            return;
        };
        let name = spawn_quiet("quiet-test", || {
            chatter("thread");
            std::thread::current().name().map(str::to_owned)
        })
        .expect("spawned")
        .join()
        .expect("ran");
        assert_eq!(name.as_deref(), Some("quiet-test"));
        spawn_with_runtime("quiet-runtime-test", |runtime| {
            runtime.expect("a runtime").block_on(async {
                chatter("runtime");
                tokio::task::spawn_blocking(|| chatter("blocking"))
                    .await
                    .expect("ran");
            });
        })
        .expect("spawned")
        .join()
        .expect("ran");
        bridge_provider.force_flush().expect("flush");
        let spans = leaked.get_finished_spans().expect("spans");
        assert!(spans.is_empty(), "background work became spans: {spans:?}");
    }
}
