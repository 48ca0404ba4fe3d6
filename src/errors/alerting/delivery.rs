//! The delivery thread: a current-thread tokio runtime of its own that posts alerts to the
//! webhook (several at a time, each retried with backoff) and exports log records over OTLP in
//! batches. Fed by the alerting thread through a bounded queue; everything it does runs under
//! a no-op `tracing` dispatcher, so its HTTP traffic never becomes spans.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::Semaphore;

use super::ledger::{DeliveryState, PostTicket};
use super::logs::{LogExport, LogRecord, LogSender};
use super::notify::{flush_through, Counters};
use super::rules::Alert;
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
    Post(Bytes, PostTicket),
    Log(Box<LogRecord>),
    Flush(SyncSender<()>),
}

/// The alerting thread's handle on the delivery thread.
pub(crate) struct Delivery {
    tx: Sender<Job>,
    /// Posts waiting in the queue, and their bound.
    posts_queued: Arc<AtomicUsize>,
    max_posts: usize,
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
        let posts_queued = Arc::new(AtomicUsize::new(0));
        let handle = Self {
            tx,
            posts_queued: posts_queued.clone(),
            max_posts: webhook.as_ref().map_or(0, Webhook::queue_len),
            webhook: webhook.is_some(),
            logs: logs.is_some(),
            counters: counters.clone(),
        };
        let spawned =
            crate::runtime::spawn_with_runtime("service-tracing-alert-delivery", move |runtime| {
                let Ok(runtime) = runtime else {
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
                runtime.block_on(run(rx, webhook, logs, counters, posts_queued));
            });
        spawned.is_ok().then_some(handle)
    }

    /// Records `alert` in the ledger as fired, and queues its webhook post (settled in the
    /// ledger when it is answered) and its log record; never blocks.
    pub(crate) fn alert(&self, alert: &Alert) {
        let ticket = self.counters.ledger.fired(alert, self.webhook);
        if self.webhook {
            let queued = self.posts_queued.fetch_add(1, Ordering::AcqRel);
            let body = Bytes::from(alert.to_json().to_string());
            if queued >= self.max_posts || self.tx.try_send(Job::Post(body, ticket)).is_err() {
                self.posts_queued.fetch_sub(1, Ordering::AcqRel);
                Counters::add(&self.counters.dropped, 1);
                self.counters.ledger.settled(ticket, DeliveryState::Dropped);
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
    posts_queued: Arc<AtomicUsize>,
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
            Some(Job::Post(body, ticket)) => {
                posts_queued.fetch_sub(1, Ordering::AcqRel);
                let Some(webhook) = webhook.clone() else {
                    continue;
                };
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    continue;
                };
                let counters = counters.clone();
                tokio::spawn(async move {
                    let (client, webhook) = &*webhook;
                    let state = match webhook.deliver(client, body, &counters).await {
                        true => DeliveryState::Delivered,
                        false => DeliveryState::Failed,
                    };
                    counters.ledger.settled(ticket, state);
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
        sender.export(&batch, counters).await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use opentelemetry::trace::{SpanId, TraceId};

    use super::*;
    use crate::errors::alerting::rules::{AlertRule, Evaluator, Signal};
    use crate::errors::rates::RouteRates;
    use crate::errors::{AlertStats, ErrorTracking};

    /// A webhook server on loopback, on its own runtime thread, answering 503 to the first
    /// `fail_first` posts and 200 after, or never answering when `hang`.
    struct Server {
        address: SocketAddr,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    #[derive(Clone)]
    struct Behaviour {
        fail_first: u64,
        hang: bool,
        seen: Arc<AtomicU64>,
        bodies: Arc<Mutex<Vec<String>>>,
    }

    async fn hook(State(b): State<Behaviour>, body: String) -> StatusCode {
        let n = b.seen.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut bodies) = b.bodies.lock() {
            bodies.push(body);
        }
        if b.hang {
            std::future::pending::<()>().await;
        }
        if n < b.fail_first {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }

    fn server(fail_first: u64, hang: bool) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let state = Behaviour {
            fail_first,
            hang,
            seen: Arc::default(),
            bodies: bodies.clone(),
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(async move {
                let _ = listener.set_nonblocking(true);
                let listener =
                    tokio::net::TcpListener::from_std(listener).unwrap_or_else(|e| panic!("{e}"));
                let app = Router::new().route("/hook", post(hook)).with_state(state);
                let _ = axum::serve(listener, app).await;
            });
        });
        Server { address, bodies }
    }

    fn alert() -> Alert {
        let tracking = ErrorTracking::build(10, None, RouteRates::new());
        tracking.record_test_errors("GET /r", 1);
        let group = tracking.groups().remove(0);
        let signal = Signal {
            fingerprint: group.fingerprint(),
            is_new: true,
            trace_id: TraceId::from(1u128),
            span_id: SpanId::from(1u64),
        };
        Evaluator::new(vec![AlertRule::new_group()])
            .evaluate(&signal, &group, &[], Duration::ZERO)
            .remove(0)
    }

    fn webhook(url: &str) -> Webhook {
        Webhook::new(url)
            .unwrap_or_else(|e| panic!("{e}"))
            .backoff(Duration::from_millis(10), Duration::from_millis(40))
    }

    /// The counts, how long queueing took, and the ledger's state for the last alert.
    fn deliver(webhook: Webhook, alerts: usize) -> (AlertStats, Duration, DeliveryState) {
        let counters = Arc::new(Counters::default());
        let delivery = Delivery::start(Some(webhook), None, counters.clone())
            .unwrap_or_else(|| panic!("no thread"));
        let alert = alert();
        let started = Instant::now();
        for _ in 0..alerts {
            delivery.alert(&alert);
        }
        let queued_in = started.elapsed();
        assert!(delivery.flush(Duration::from_secs(30)), "settles");
        let last = counters.ledger.snapshot()[&alert.group().fingerprint()].delivery;
        (counters.stats(), queued_in, last)
    }

    #[test]
    fn a_refused_post_is_retried_with_backoff_until_accepted() {
        let server = server(2, false);
        let url = format!("http://{}/hook", server.address);
        let (stats, _, last) = deliver(webhook(&url).max_attempts(4), 1);
        assert_eq!((stats.delivered, stats.failed, stats.retries), (1, 0, 2));
        assert_eq!(last, DeliveryState::Delivered);
        let bodies = server.bodies.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(bodies.len(), 3);
        let json: serde_json::Value =
            serde_json::from_str(&bodies[2]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json["rule"]["kind"], "new_group");
        assert_eq!(json["group"]["operations"][0], "GET /r");
        assert!(
            bodies.iter().all(|b| *b == bodies[0]),
            "the same body each time"
        );
    }

    #[test]
    fn a_closed_port_fails_after_the_last_attempt_and_never_blocks_the_caller() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        let (stats, queued_in, last) =
            deliver(webhook(&format!("http://{closed}/hook")).max_attempts(3), 2);
        assert_eq!((stats.delivered, stats.failed, stats.retries), (0, 2, 4));
        assert_eq!(last, DeliveryState::Failed);
        assert!(queued_in < Duration::from_millis(100), "{queued_in:?}");
    }

    #[test]
    fn a_full_delivery_queue_drops_and_counts() {
        let server = server(0, true);
        let url = format!("http://{}/hook", server.address);
        let hook = webhook(&url)
            .max_attempts(1)
            .timeout(Duration::from_millis(300))
            .queue_size(2);
        let (stats, queued_in, last) = deliver(hook, 40);
        assert_eq!(
            last,
            DeliveryState::Dropped,
            "the last of 40 finds the queue full"
        );
        // At most 8 in flight, 1 waiting for a permit and 2 queued.
        assert!(stats.dropped >= 40 - 11, "{stats:?}");
        assert_eq!(stats.failed + stats.dropped, 40, "{stats:?}");
        assert_eq!(stats.delivered, 0);
        assert!(queued_in < Duration::from_millis(100), "{queued_in:?}");
    }
}
