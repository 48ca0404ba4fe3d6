//! The delivery thread: a current-thread tokio runtime of its own that posts alerts to the
//! webhook (several at a time, each retried with backoff) and exports log records over OTLP in
//! batches. Fed by the alerting thread through a bounded queue; everything it does runs under
//! a no-op `tracing` dispatcher, so its HTTP traffic never becomes spans.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::Semaphore;

use super::alerts::Alert;
use super::logs::{LogExport, LogRecord, LogSender};
use super::notify::{flush_through, Counters};
use super::webhook::Webhook;

/// Webhook posts in flight at once, at most.
const MAX_IN_FLIGHT: u32 = 8;
/// Log records buffered for export, at most (more are dropped and counted).
const MAX_LOGS: usize = 512;
/// Log records per export request, at most.
const LOG_BATCH: usize = 128;
/// How long a log record waits for its batch, at most.
const LOG_DELAY: Duration = Duration::from_millis(500);

enum Job {
    Post(Bytes),
    Log(Box<LogRecord>),
    Flush(SyncSender<()>),
}

/// The alerting thread's handle on the delivery thread.
pub(crate) struct Delivery {
    tx: Sender<Job>,
    webhook: bool,
    logs: bool,
    counters: Arc<Counters>,
}

impl Delivery {
    /// Starts the thread when there is somewhere to deliver to.
    pub(crate) fn start(
        webhook: Option<Webhook>,
        logs: Option<LogExport>,
        counters: Arc<Counters>,
    ) -> Option<Self> {
        if webhook.is_none() && logs.is_none() {
            return None;
        }
        let capacity = webhook.as_ref().map_or(0, Webhook::queue_len) + MAX_LOGS + 1;
        let (tx, rx) = mpsc::channel(capacity);
        let handle = Self {
            tx,
            webhook: webhook.is_some(),
            logs: logs.is_some(),
            counters: counters.clone(),
        };
        let spawned = thread::Builder::new()
            .name("service-tracing-alert-delivery".to_owned())
            .spawn(move || {
                let _quiet =
                    tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_start(crate::export::batch::silence_thread)
                    .build()
                else {
                    return;
                };
                let logs = logs.and_then(|l| {
                    let _entered = runtime.enter();
                    match LogSender::new(l) {
                        Ok(sender) => Some(sender),
                        Err(e) => {
                            eprintln!("service-tracing: error log records are not exported: {e}");
                            None
                        }
                    }
                });
                runtime.block_on(run(rx, webhook, logs, counters));
            });
        spawned.is_ok().then_some(handle)
    }

    /// Queues a webhook post of `alert` and its log record; never blocks.
    pub(crate) fn alert(&self, alert: &Alert) {
        if self.webhook {
            let body = Bytes::from(alert.to_json().to_string());
            if self.tx.try_send(Job::Post(body)).is_err() {
                Counters::add(&self.counters.dropped, 1);
            }
        }
        self.log(LogRecord::alert(alert));
    }

    /// Queues a log record; never blocks.
    pub(crate) fn log(&self, record: LogRecord) {
        if !self.logs {
            return;
        }
        if let Err(TrySendError::Full(_) | TrySendError::Closed(_)) =
            self.tx.try_send(Job::Log(Box::new(record)))
        {
            Counters::add(&self.counters.logs_dropped, 1);
        }
    }

    /// Waits until everything queued so far is delivered or given up, or `timeout` passes.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        flush_through(timeout, Job::Flush, |job| match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(back)) => Err(Some(back)),
            Err(TrySendError::Closed(_)) => Err(None),
        })
    }
}

async fn run(
    mut rx: Receiver<Job>,
    webhook: Option<Webhook>,
    logs: Option<LogSender>,
    counters: Arc<Counters>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize));
    let webhook = webhook.map(|w| Arc::new((w.client(), w)));
    let mut buffer: Vec<LogRecord> = Vec::new();
    let mut oldest: Option<Instant> = None;
    loop {
        let wait = oldest.map_or(Duration::from_secs(3600), |t| {
            (t + LOG_DELAY).saturating_duration_since(Instant::now())
        });
        let job = match tokio::time::timeout(wait, rx.recv()).await {
            Ok(Some(job)) => Some(job),
            Ok(None) => break,
            Err(_) => None,
        };
        match job {
            Some(Job::Post(body)) => {
                let Some(webhook) = webhook.clone() else {
                    continue;
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    continue;
                };
                let counters = counters.clone();
                tokio::spawn(async move {
                    let (client, webhook) = &*webhook;
                    webhook.deliver(client, body, &counters).await;
                    drop(permit);
                });
            }
            Some(Job::Log(record)) => {
                if buffer.len() < MAX_LOGS {
                    buffer.push(*record);
                    oldest.get_or_insert_with(Instant::now);
                } else {
                    Counters::add(&counters.logs_dropped, 1);
                }
                if buffer.len() >= LOG_BATCH {
                    export(&logs, &mut buffer, &counters).await;
                    oldest = None;
                }
            }
            Some(Job::Flush(reply)) => {
                // Every permit back means every post in flight has settled.
                let all = permits.acquire_many(MAX_IN_FLIGHT).await;
                drop(all);
                export(&logs, &mut buffer, &counters).await;
                oldest = None;
                let _ = reply.send(());
            }
            None => {
                export(&logs, &mut buffer, &counters).await;
                oldest = None;
            }
        }
    }
    let _ = permits.acquire_many(MAX_IN_FLIGHT).await;
    export(&logs, &mut buffer, &counters).await;
}

async fn export(logs: &Option<LogSender>, buffer: &mut Vec<LogRecord>, counters: &Counters) {
    if buffer.is_empty() {
        return;
    }
    let Some(sender) = logs else {
        Counters::add(&counters.logs_failed, buffer.len() as u64);
        buffer.clear();
        return;
    };
    while !buffer.is_empty() {
        let batch: Vec<LogRecord> = buffer.drain(..buffer.len().min(LOG_BATCH)).collect();
        let n = batch.len() as u64;
        match sender.export(&batch).await {
            Ok(()) => Counters::add(&counters.logs_exported, n),
            Err(_) => Counters::add(&counters.logs_failed, n),
        }
    }
}
