use std::collections::BTreeMap;
use std::time::Duration;

use service_tracing::metrics::MetricsExporter;
use service_tracing::{BatchConfig, Protocol};

use crate::collector::Collector;
use crate::otlp_proxy::{Answer, OtlpProxy, Seen};
use crate::support::{checkouts, options, start, WAIT};

/// A backend that answers the first export 429 with `Retry-After: 1` and the second 503,
/// then forwards to the real collector: the batch is sent again until the collector has it,
/// each span arrives exactly once, the wait honoured `Retry-After`, and requests served while
/// the exporter backs off answer as fast as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_then_unavailable_then_every_span_arrives_once() {
    let seen = every_span_arrives_once_after(
        Protocol::HttpProtobuf,
        vec![
            Answer::Status(429, vec![("retry-after", "1")]),
            Answer::Status(503, Vec::new()),
        ],
    )
    .await;
    let statuses: Vec<u16> = seen.iter().map(|r| r.status).collect();
    assert_eq!(statuses[..3], [429, 503, 200], "{statuses:?}");
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "Retry-After: 1 was honoured: {:?}",
        seen[1].at - seen[0].at
    );
}

/// The same over gRPC: `UNAVAILABLE` (trailers-only, as tonic answers errors), then
/// `RESOURCE_EXHAUSTED` with a `RetryInfo` of 1 s (in trailers), then the real collector over
/// h2c. `RESOURCE_EXHAUSTED` is retried only because of its `RetryInfo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_then_resource_exhausted_with_retry_info_then_every_span_arrives_once() {
    let seen = every_span_arrives_once_after(
        Protocol::Grpc,
        vec![
            Answer::Grpc {
                code: 14,
                retry_delay: None,
                trailers_only: true,
            },
            Answer::Grpc {
                code: 8,
                retry_delay: Some(Duration::from_secs(1)),
                trailers_only: false,
            },
        ],
    )
    .await;
    let answers: Vec<(u16, Option<u32>)> = seen.iter().map(|r| (r.status, r.grpc_status)).collect();
    assert_eq!(
        answers[..3],
        [(200, Some(14)), (200, Some(8)), (200, None)],
        "{answers:?}"
    );
    assert!(
        seen.iter()
            .all(|r| r.headers["content-type"] == "application/grpc"),
        "every attempt was a gRPC call"
    );
    // At least the RetryInfo's delay (the backoff alone, 1 to 2 s at this point, would be too).
    assert!(
        seen[2].at - seen[1].at >= Duration::from_secs(1),
        "{:?}",
        seen[2].at - seen[1].at
    );
}

/// Exports through a proxy that answers the first exports with `script` and forwards the rest
/// to the real collector; checks that requests served during the retries are not slowed, that
/// the flush ends with every span delivered once and the retries counted; returns what the
/// proxy saw.
async fn every_span_arrives_once_after(protocol: Protocol, script: Vec<Answer>) -> Vec<Seen> {
    let collector = Collector::start();
    let upstream = match protocol {
        Protocol::Grpc => collector.grpc_port(),
        _ => collector.http_port(),
    };
    let proxy = OtlpProxy::start(Some(upstream), script, Answer::Forward).await;
    let services = start(
        options("frontend")
            .otlp_endpoint(proxy.endpoint())
            .otlp_protocol(protocol)
            .metrics_exporter(MetricsExporter::None)
            // Nothing is exported before the flush below starts the first export.
            .batch(BatchConfig::new().with_scheduled_delay(Duration::from_secs(60))),
    )
    .await;
    let caller = reqwest::Client::new();
    checkouts(&caller, &services.frontend, "before", 10).await;

    // The flush exports the queued spans: 429, backoff, 503, backoff, then forwarded.
    let guard = std::sync::Arc::new(services.guard);
    let flushing = {
        let guard = guard.clone();
        tokio::task::spawn_blocking(move || guard.force_flush())
    };
    proxy.wait_for_requests(1, WAIT).await;

    // Requests served while the exporter backs off are not slowed down.
    let times = checkouts(&caller, &services.frontend, "during", 50).await;
    assert!(
        proxy.seen().len() < 3,
        "the exporter was still backing off during the requests"
    );
    // A request that waited on the exporter would wait out its backoff: at least 1 s here
    // (`Retry-After: 1`, `RetryInfo` of 1 s; the shortest backoff alone is 0.5 s), so every
    // bound below is far under what waiting on export costs. Nothing on the request path
    // touches the export thread: a lock-free push into the bounded queue and an unpark. On
    // this shared 2-core machine, with other builds running (load average 6 to 7), a debug
    // build's checkouts took a median of 1.7-4 ms and at most 11.4 ms over eight runs; a
    // 55 ms outlier was once seen, the scheduler's (no lock or wait of ours can take 55 ms
    // without the export's 1 s). Hence: the median under 10 ms, all but the slowest under
    // 50 ms (p98 of 50), and the slowest under 100 ms, for one descheduling.
    let [median, p98, slowest] = [times[25], times[48], times[49]];
    assert!(
        median < Duration::from_millis(10),
        "median {median:?}: {times:?}"
    );
    assert!(p98 < Duration::from_millis(50), "p98 {p98:?}: {times:?}");
    assert!(
        slowest < Duration::from_millis(100),
        "slowest {slowest:?}: {times:?}"
    );

    flushing
        .await
        .unwrap()
        .expect("the flush ends once the collector has the batch");
    guard.force_flush().unwrap();

    let seen = proxy.seen();
    // Each retry resends the batch's bytes as they were first encoded.
    assert!(
        seen[1].body == seen[0].body && seen[2].body == seen[0].body,
        "the retries sent other bytes"
    );
    let stats = guard.export_stats();
    assert!(stats.retried >= 2, "{stats:?}");
    assert_eq!(
        (stats.failed, stats.rejected, stats.dropped),
        (0, 0, 0),
        "{stats:?}"
    );

    let tags = |s: &crate::collector::CollectedSpan, tag: &str, n: u32| {
        (0..n).any(|i| s.attr("correlation.id") == Some(format!("{tag}-{i}").as_str()))
    };
    let spans = collector.wait_for_spans(WAIT, |spans| {
        (0..10).all(|i| {
            let id = format!("before-{i}");
            spans
                .iter()
                .any(|s| s.attr("correlation.id") == Some(id.as_str()))
        }) && (0..50).all(|i| {
            let id = format!("during-{i}");
            spans
                .iter()
                .any(|s| s.attr("correlation.id") == Some(id.as_str()))
        })
    });
    // Every span the collector received, counted by id: no duplicate from the retries.
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for span in &spans {
        *by_id.entry(span.span_id.as_str()).or_default() += 1;
    }
    let duplicated: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "{duplicated:?}");
    let tagged = spans
        .iter()
        .filter(|s| tags(s, "before", 10) || tags(s, "during", 50))
        .count();
    // Three spans per checkout carry the correlation id: the frontend's server and client
    // spans and the backend's server span.
    assert_eq!(tagged, 3 * 60, "one copy of each request's tagged spans");
    assert_eq!(by_id.len() as u64, stats.exported, "{stats:?}");
    let guard = std::sync::Arc::into_inner(guard).unwrap();
    guard.shutdown().unwrap();
    seen
}
