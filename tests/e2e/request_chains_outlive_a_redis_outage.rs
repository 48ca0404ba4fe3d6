//! Request chains through a real `redis-server`: a frontend calling a backend (two services,
//! one process) leaves three entries per correlation id in Redis. Redis killed while requests
//! run: every request still succeeds promptly (`checkouts` asserts each answer is a 200), and
//! the chains stay readable from the local store. Redis restarted (empty) on the same port: the chains of the outage reach it, and new
//! ones follow. Bounds: a chain keeps its newest entries, its key has the TTL, and a hostile
//! correlation id never becomes a key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use service_tracing::request_chain::{ChainKind, ChainSource, RequestChain, RequestChains};
use service_tracing::{TracesExporter, TracingGuard};

use crate::redis_server::RedisServer;
use crate::support::{checkouts, options, start, WAIT};

const PREFIX: &str = "e2e:chains";
/// A request during the outage must not take longer than this (Redis's timeouts are 500 ms: a
/// request waiting on Redis would take at least that).
const REQUEST_BOUND: Duration = Duration::from_millis(300);

fn chained(redis: &RedisServer, chains: RequestChains) -> service_tracing::ServiceTracing {
    options("frontend")
        .exporter(TracesExporter::None)
        .error_redis_url(redis.url())
        .request_chains(chains.prefix(PREFIX))
}

fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// The entries Redis holds for `id`, as the services wrote them.
fn in_redis(con: &mut redis::Connection, id: &str) -> Vec<serde_json::Value> {
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg(format!("{PREFIX}:{id}"))
        .arg(0)
        .arg(-1)
        .query(con)
        .unwrap();
    list.iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

/// Waits until Redis holds `n` entries for every id of `ids`, flushing the chains meanwhile.
fn wait_in_redis(guard: &TracingGuard, con: &mut redis::Connection, ids: &[String], n: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        guard.force_flush().unwrap();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| in_redis(con, id).len() != n)
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not in Redis within {WAIT:?}: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The frontend's server span, its call, the backend's server span: in that order.
fn assert_three_steps(chain: &RequestChain) {
    let steps: Vec<(&str, ChainKind, &str)> = chain
        .entries()
        .iter()
        .map(|e| (e.service.as_str(), e.kind, e.operation.as_str()))
        .collect();
    assert_eq!(steps.len(), 3, "{chain:#?}");
    assert_eq!(
        (steps[0].0, steps[0].1, steps[0].2),
        ("frontend", ChainKind::Server, "GET /checkout/{id}")
    );
    assert_eq!((steps[1].0, steps[1].1), ("frontend", ChainKind::Client));
    assert_eq!(
        (steps[2].0, steps[2].1, steps[2].2),
        ("backend", ChainKind::Server, "GET /orders/{id}")
    );
    assert!(chain
        .entries()
        .iter()
        .all(|e| e.trace_id == chain.entries()[0].trace_id));
}

fn ids(tag: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_stay_readable_through_a_redis_outage_and_reach_it_once_it_returns() {
    let mut redis = RedisServer::start();
    let services = start(chained(
        &redis,
        RequestChains::new().flush_interval(Duration::from_millis(50)),
    ))
    .await;
    let guard = &services.guard;
    let caller = reqwest::Client::new();
    let mut con = connection(&redis);

    checkouts(&caller, &services.frontend, "before", 20).await;
    wait_in_redis(guard, &mut con, &ids("before", 20), 3);
    let chain = guard.request_chain_async("before-7").await.unwrap();
    assert_eq!(chain.source(), ChainSource::Shared);
    assert_three_steps(&chain);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{PREFIX}:before-7"))
        .query(&mut con)
        .unwrap();
    assert!((3_500_000..=3_600_000).contains(&ttl), "PTTL {ttl}");

    // Killed while requests run: once a few of them have ended. The load goes on until
    // `AFTER_KILL` requests have started after the kill, however fast the machine is.
    const AFTER_KILL: u32 = 25;
    let killed = Arc::new(AtomicBool::new(false));
    let load = {
        let (frontend, killed) = (services.frontend.clone(), killed.clone());
        tokio::spawn(async move {
            let caller = reqwest::Client::new();
            let (mut times, mut after, mut i) = (Vec::new(), 0, 0u32);
            while after < AFTER_KILL {
                after += u32::from(killed.load(Ordering::Acquire));
                let started = Instant::now();
                let r = caller
                    .get(format!("{frontend}/checkout/{i}"))
                    .header("x-correlation-id", format!("during-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                times.push(started.elapsed());
                i += 1;
            }
            times.sort();
            (times, i)
        })
    };
    let deadline = Instant::now() + WAIT;
    while guard.request_chain_stats().unwrap().recorded < 60 + 3 * 5 {
        assert!(Instant::now() < deadline, "no request ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill();
    let killed_at = std::time::SystemTime::now();
    killed.store(true, Ordering::Release);
    let (times, during) = load.await.unwrap();
    let slowest = times.last().copied().unwrap_or_default();
    assert!(
        slowest < REQUEST_BOUND,
        "a request took {slowest:?} while Redis was down: {times:?}"
    );
    // Readable from this process's store, without waiting on Redis.
    let last = format!("during-{}", during - 1);
    let asked = Instant::now();
    let chain = guard.request_chain_async(&last).await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(chain.source(), ChainSource::Local);
    assert_three_steps(&chain);
    assert!(!guard.request_chain_stats().unwrap().shared);

    redis.restart();
    let mut con = connection(&redis);
    checkouts(&caller, &services.frontend, "after", 10).await;
    // What Redis had before it was killed is gone with it; every request that started after
    // the kill reaches the new one.
    let mut everything = Vec::new();
    for id in ids("during", during) {
        let chain = guard.request_chain_async(&id).await.unwrap();
        assert_three_steps(&chain);
        if chain.entries()[0].start > killed_at {
            everything.push(id);
        }
    }
    assert!(
        everything.len() >= AFTER_KILL as usize,
        "{} started after the kill",
        everything.len()
    );
    everything.extend(ids("after", 10));
    wait_in_redis(guard, &mut con, &everything, 3);
    let chain = guard.request_chain_async(&last).await.unwrap();
    assert_eq!(chain.source(), ChainSource::Shared);
    assert_three_steps(&chain);
    let stats = guard.request_chain_stats().unwrap();
    assert_eq!((stats.dropped, stats.evicted_unsent), (0, 0), "{stats:?}");
    assert!(stats.shared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_keeps_its_newest_entries_and_hostile_ids_never_become_keys() {
    let redis = RedisServer::start();
    // Rounds only when flushed: each request's three entries go to Redis in a transaction of
    // their own, so it is Redis's `LTRIM` (not the local store's bound) that keeps five.
    let services = start(chained(
        &redis,
        RequestChains::new()
            .max_entries(5)
            .ttl(Duration::from_secs(120))
            .flush_interval(Duration::from_secs(10)),
    ))
    .await;
    let guard = &services.guard;
    let caller = reqwest::Client::new();
    let mut con = connection(&redis);

    // Four requests under one id: twelve steps, five kept, the newest.
    for i in 0..4u64 {
        let r = caller
            .get(format!("{}/checkout/{i}", services.frontend))
            .header("x-correlation-id", "same")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let deadline = Instant::now() + WAIT;
        while guard.request_chain_stats().unwrap().recorded < 3 * (i + 1) {
            assert!(Instant::now() < deadline, "the request's spans did not end");
            guard.force_flush().unwrap();
        }
        guard.force_flush().unwrap();
        assert_eq!(
            guard.request_chain_stats().unwrap().sent,
            3 * (i + 1),
            "one transaction per request"
        );
    }
    wait_in_redis(guard, &mut con, &["same".to_owned()], 5);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{PREFIX}:same"))
        .query(&mut con)
        .unwrap();
    assert!((100_000..=120_000).contains(&ttl), "PTTL {ttl}");
    let chain = guard.request_chain("same").unwrap();
    assert_eq!(chain.len(), 5, "{chain:#?}");
    let last = in_redis(&mut con, "same");
    let newest_start = last.iter().map(|e| e["t"].as_u64().unwrap()).max();
    assert_eq!(
        chain.entries().last().map(|e| e
            .start
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64),
        newest_start
    );
    let first_request_trace = {
        // The first request's three steps were trimmed away: every kept entry is of the last
        // two requests.
        let traces: std::collections::HashSet<_> =
            chain.entries().iter().map(|e| e.trace_id).collect();
        traces.len()
    };
    assert_eq!(first_request_trace, 2);

    // Hostile ids: the layer refuses them and generates one; no key holds their text.
    let huge = "h".repeat(10_000);
    for hostile in [huge.as_str(), "evil%0D%0Aid", "a b", "x;y=z"] {
        let r = caller
            .get(format!("{}/checkout/1", services.frontend))
            .header("x-correlation-id", hostile)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let given = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
        assert_ne!(given, hostile);
        wait_in_redis(guard, &mut con, &[given], 3);
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}:*"))
        .query(&mut con)
        .unwrap();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.len() <= PREFIX.len() + 1 + 128
            && !k.contains('%')
            && !k.contains(' ')
            && !k.contains(';')),
        "{keys:?}"
    );
}

/// Redis commands per request of a frontend calling a backend: counted by Redis itself
/// (`INFO commandstats`) and by the chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appending_costs_about_three_redis_commands_per_correlation_id() {
    let redis = RedisServer::start();
    let services = start(chained(&redis, RequestChains::new())).await;
    let guard = &services.guard;
    let caller = reqwest::Client::new();
    let mut con = connection(&redis);
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut con)
        .unwrap();
    const N: u32 = 300;
    let started = Instant::now();
    checkouts(&caller, &services.frontend, "count", N).await;
    let elapsed = started.elapsed();
    wait_in_redis(guard, &mut con, &ids("count", N), 3);
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut con)
        .unwrap();
    let calls = |command: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let written: u64 = ["rpush", "ltrim", "pexpire", "multi", "exec"]
        .iter()
        .map(|c| calls(c))
        .sum();
    let per_request = written as f64 / f64::from(N);
    let stats = guard.request_chain_stats().unwrap();
    eprintln!(
        "{N} requests in {elapsed:?}: {written} Redis write commands ({per_request:.2} per \
         request, {:.0}/s per 1,000 requests/s; rpush {}, multi {}); chains counted {}",
        per_request * 1_000.0,
        calls("rpush"),
        calls("multi"),
        stats.redis_commands
    );
    // Three per id when a request's entries share a round, up to nine when they straddle
    // three; plus MULTI and EXEC per round.
    assert!(per_request >= 3.0, "{per_request}");
    assert!(per_request < 6.0, "{per_request}");
}
