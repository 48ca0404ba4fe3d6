//! [`Workers`]: every export worker of a set-up, read as one. What the rest of the crate (the
//! health instruments, the health route, the guard) knows of the workers.

use std::sync::{Arc, Mutex};

use super::batch::{ExportHealth, ExportWorker};
use super::ExportStats;

/// The export workers whose figures are reported (the main service's and those of
/// [`TracingGuard::service_layer`](crate::TracingGuard::service_layer)).
#[derive(Clone, Debug, Default)]
pub(crate) struct Workers(Arc<Mutex<Vec<ExportWorker>>>);

impl Workers {
    /// Adds a worker, unless it is one already reported (services sharing the console worker).
    pub(crate) fn add(&self, worker: &ExportWorker) {
        let mut workers = match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        if !workers.iter().any(|w| w.same_worker(worker)) {
            workers.push(worker.clone());
        }
    }

    /// The figures of every worker added, summed.
    pub(crate) fn stats(&self) -> ExportStats {
        let workers = match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut total = ExportStats::default();
        for worker in workers.iter() {
            total.accumulate(worker.stats());
        }
        total
    }
}

impl Workers {
    /// Every worker's export health, as one.
    pub(crate) fn health(&self) -> ExportHealth {
        let workers = match self.0.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        workers.iter().fold(Default::default(), |total, worker| {
            total.merge(worker.health())
        })
    }
}
