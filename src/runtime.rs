//! The library's periodic background threads (error grouping, bottleneck analysis, resource
//! sampling): each works on state it holds weakly, so it ends when its owner is dropped.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

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
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _quiet =
                tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
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
}
