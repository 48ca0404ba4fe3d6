//! State that request threads write, each into a shard of its own, and readers merge.
//!
//! Counting every request into one table behind one mutex makes the runtime's threads take
//! turns and bounce the lock's cache line between cores. Here each thread that records gets its
//! own shard (the `thread_local` crate's `ThreadLocal`: a shard per live thread, reused by the
//! next thread that takes its id, so there are never more shards than threads at once). A
//! shard still sits behind a `Mutex`, but only its own thread and an occasional reader ever
//! take it: on the request path that is an uncontended lock of a cache line the thread already
//! holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use thread_local::ThreadLocal;

/// One `T` per thread that records; see the [module](self) notes.
pub(crate) struct PerThread<T: Send> {
    shards: ThreadLocal<Mutex<T>>,
}

impl<T: Send + Default> Default for PerThread<T> {
    fn default() -> Self {
        Self {
            shards: ThreadLocal::new(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + Default> PerThread<T> {
    /// Runs `f` on this thread's shard (made on the thread's first call).
    pub(crate) fn with_mine<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(self.shards.get_or_default()))
    }

    /// Runs `f` on every shard in turn, each locked while `f` reads it.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&mut T)) {
        for shard in self.shards.iter() {
            f(&mut lock(shard));
        }
    }
}

/// How many stripes striped counters have: threads add into different ones.
pub(crate) const STRIPES: usize = 8;

/// The stripe this thread adds into: threads take them in turn as they first count, so two
/// runtime threads never share one.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    MINE.try_with(|s| *s).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_thread_writes_its_own_shard_and_readers_see_them_all() {
        let counts: Arc<PerThread<u64>> = Arc::default();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        counts.with_mine(|n| *n += 1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        let mut shards = 0;
        let mut total = 0;
        counts.for_each(|n| {
            shards += 1;
            total += *n;
        });
        assert_eq!(total, 4_000);
        assert!(shards >= 1);
        assert!(shards <= 4, "{shards} shards for 4 threads");
    }
}
