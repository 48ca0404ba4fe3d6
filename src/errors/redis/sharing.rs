//! The handle the tracker keeps, and the sync thread it asks for syncs.

use std::fmt;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use super::super::health::ErrorStorageHealth;
use super::super::store::{summarize, ErrorGroup, ErrorSummary};
use super::super::tracking::Tracker;
use super::sync::Syncer;
use super::view::FleetView;
use super::{lock, RedisSharing};

/// Pending `sync_now` requests at most.
const MAX_REQUESTS: usize = 16;

#[derive(Debug)]
pub(super) struct State {
    pub(super) health: Mutex<ErrorStorageHealth>,
    pub(super) view: Mutex<Option<FleetView>>,
}

/// The handle [`ErrorTracking`](super::ErrorTracking) keeps: the sync thread's state, and the
/// way to ask it for a sync.
pub(in crate::errors) struct Sharing {
    config: RedisSharing,
    state: Arc<State>,
    requests: SyncSender<SyncSender<ErrorStorageHealth>>,
}

impl fmt::Debug for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sharing")
            .field("config", &self.config)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

/// The sync thread, before it is started.
pub(in crate::errors) struct Worker {
    pub(super) syncer: Syncer,
    requests: Receiver<SyncSender<ErrorStorageHealth>>,
}

impl Sharing {
    /// The handle and its thread; start the thread with [`Worker::spawn`] once the tracking's
    /// state exists.
    pub(in crate::errors) fn new(config: RedisSharing) -> (Self, Worker) {
        let state = Arc::new(State {
            health: Mutex::new(ErrorStorageHealth::Degraded {
                since: SystemTime::now(),
                last_error: "not connected yet".to_owned(),
            }),
            view: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(MAX_REQUESTS);
        let worker = Worker {
            syncer: Syncer::new(config.clone(), state.clone()),
            requests: rx,
        };
        (
            Self {
                config,
                state,
                requests: tx,
            },
            worker,
        )
    }

    pub(in crate::errors) fn config(&self) -> &RedisSharing {
        &self.config
    }

    pub(in crate::errors) fn health(&self) -> ErrorStorageHealth {
        lock(&self.state.health).clone()
    }

    /// Asks the thread for a sync now and waits for it (at most 10 timeouts).
    pub(in crate::errors) fn sync_now(&self) -> ErrorStorageHealth {
        let (tx, rx) = mpsc::sync_channel(1);
        match self.requests.try_send(tx) {
            Ok(()) => {
                // A reply or not within the bound, the health is read afterwards.
                let _ = rx.recv_timeout(self.config.sync_bound());
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {}
        }
        self.health()
    }

    /// The fleet's summary with this replica's counts since the last pull; `None` before the
    /// first successful pull.
    pub(in crate::errors) fn summary(
        &self,
        tracker: &Tracker,
        at: Duration,
    ) -> Option<ErrorSummary> {
        let view = lock(&self.state.view);
        let view = view.as_ref()?;
        let mut summary = {
            let store = lock(&tracker.store);
            let groups = view.merge_groups(store.iter());
            let total = view
                .total
                .saturating_add(store.total().saturating_sub(view.pushed_total));
            summarize(groups.iter(), total, store.evictions())
        };
        let rates = view.merge_rates(&tracker.rates.snapshot(), &tracker.rates.totals());
        summary.set_rates(at, rates);
        Some(summary)
    }

    /// The fleet's groups with this replica's folded in; `None` before the first pull.
    pub(in crate::errors) fn groups(&self, tracker: &Tracker) -> Option<Vec<ErrorGroup>> {
        let view = lock(&self.state.view);
        let view = view.as_ref()?;
        let store = lock(&tracker.store);
        Some(view.merge_groups(store.iter()))
    }
}

impl Worker {
    /// Starts the sync thread. It holds `shared` weakly and ends when the tracking is dropped.
    pub(in crate::errors) fn spawn(self, tracker: Weak<Tracker>) {
        let state = self.syncer.state.clone();
        // Quiet: Redis traffic must never feed the tracing bridge.
        let started =
            crate::runtime::spawn_quiet("service-tracing-errors-sync", move || self.run(&tracker));
        if let Err(e) = started {
            *lock(&state.health) = ErrorStorageHealth::Degraded {
                since: SystemTime::now(),
                last_error: format!("cannot start the sync thread: {e}"),
            };
        }
    }

    fn run(mut self, tracker: &Weak<Tracker>) {
        loop {
            let reply = match self.requests.recv_timeout(self.syncer.config.interval) {
                Ok(reply) => Some(reply),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let Some(tracking) = tracker.upgrade() else {
                return;
            };
            let health = self.syncer.sync(&tracking, reply.is_some());
            drop(tracking);
            if let Some(reply) = reply {
                let _ = reply.try_send(health);
            }
        }
    }
}
