use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::TraceId;
use redis::Value;

use super::super::health::ErrorStorageHealth;
use super::super::store::{ErrorGroup, GroupParts};
use super::super::{Category, Severity};
use super::sharing::Sharing;
use super::sync::{after, read_group, Batch, Syncer};
use super::view::FleetView;
use super::*;
use crate::errors::ErrorTracking;
use crate::window::Window;

/// A URL nothing answers at (a port just freed).
fn closed_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    format!("redis://127.0.0.1:{port}")
}

fn syncer() -> Syncer {
    let config = RedisSharing::new(&closed_url()).unwrap_or_else(|e| panic!("{e}"));
    Sharing::new(config).1.syncer
}

/// Ends a server span of `GET /fail/{id}` answered 500, with a correlation id.
fn fail(provider: &SdkTracerProvider, correlation: &str) {
    let tracer = provider.tracer("t");
    let mut span = tracer
        .span_builder("GET /fail/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/fail/{id}"),
            KeyValue::new("http.response.status_code", 500),
            KeyValue::new("error.type", "500"),
            KeyValue::new("correlation.id", correlation.to_owned()),
        ])
        .start(&tracer);
    span.set_status(Status::error(""));
    span.end();
}

/// What the next push would carry, once the errors waiting for grouping are grouped.
fn collect(syncer: &mut Syncer, errors: &ErrorTracking) -> Batch {
    errors.drain();
    syncer.collect(&errors.tracker)
}

fn tracked() -> (ErrorTracking, SdkTracerProvider) {
    let errors = ErrorTracking::new();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(errors.clone())
        .build();
    (errors, provider)
}

fn parts(fingerprint: u64, count: u64) -> GroupParts {
    GroupParts {
        fingerprint,
        error_type: "500".to_owned(),
        message: String::new(),
        operations: vec!["GET /fail/{id}".to_owned()],
        status_codes: vec![500],
        count,
        first_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        last_seen: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
        severity: Severity::High,
        category: Category::Application,
        trace_ids: vec![TraceId::from(7u128)],
        correlation_ids: vec!["from-b".to_owned()],
    }
}

#[test]
fn samples_after_the_last_pushed_are_the_new_ones() {
    assert_eq!(after(&[1, 2, 3, 4], Some(&2)), [3, 4]);
    assert_eq!(after(&[1, 2, 3], Some(&3)), Vec::<i32>::new());
    assert_eq!(after(&[1, 2, 3], Some(&9)), [1, 2, 3], "rolled out: all");
    assert_eq!(after(&[1, 2, 3], None), [1, 2, 3]);
    assert_eq!(
        after(&[1, 2, 1], Some(&1)),
        Vec::<i32>::new(),
        "the latest one"
    );
}

#[test]
fn deltas_are_what_changed_since_the_last_push() {
    let (errors, provider) = tracked();
    let mut syncer = syncer();
    syncer.adopt_epoch("e1".to_owned());
    for n in 0..3 {
        fail(&provider, &format!("c-{n}"));
    }
    errors.rates().record("GET", Some("/fail/{id}"), true);

    let batch = collect(&mut syncer, &errors);
    assert_eq!(batch.groups.len(), 1);
    let delta = &batch.groups[0];
    assert_eq!((delta.added, delta.pushed.count), (3, 3));
    assert_eq!(delta.correlation_ids, ["c-0", "c-1", "c-2"]);
    assert_eq!(delta.trace_ids.len(), 3);
    assert_eq!(delta.operations, ["GET /fail/{id}"]);
    assert_eq!(delta.status_codes, [500]);
    assert_eq!(batch.total, (3, 3));
    assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 1, 1, 1)]);
    syncer.commit(batch);

    assert!(collect(&mut syncer, &errors).is_empty(), "nothing new");

    fail(&provider, "c-3");
    fail(&provider, "c-4");
    errors.rates().record("GET", Some("/fail/{id}"), false);
    let batch = collect(&mut syncer, &errors);
    let delta = &batch.groups[0];
    assert_eq!((delta.added, delta.pushed.count), (2, 5));
    assert_eq!(
        delta.correlation_ids,
        ["c-3", "c-4"],
        "only the new samples"
    );
    assert_eq!(delta.trace_ids.len(), 2);
    assert_eq!(batch.total, (2, 5));
    assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 0, 2, 1)]);
    // Not committed (the push failed): the same deltas come again.
    let again = collect(&mut syncer, &errors);
    assert_eq!((again.groups[0].added, again.total), (2, (2, 5)));
    syncer.commit(again);

    // Redis lost its data: the groups and total are pushed whole, the rates' history not.
    fail(&provider, "c-5");
    syncer.adopt_epoch("e2".to_owned());
    let batch = collect(&mut syncer, &errors);
    assert_eq!(batch.groups[0].added, 6);
    assert_eq!(
        batch.groups[0].correlation_ids.len(),
        crate::errors::store::MAX_SAMPLES
    );
    assert_eq!(batch.total, (6, 6));
    assert!(batch.rates.is_empty());
    syncer.commit(batch);
    errors.rates().record("GET", Some("/fail/{id}"), true);
    let batch = collect(&mut syncer, &errors);
    assert_eq!(batch.rates, [("GET /fail/{id}".to_owned(), 1, 1, 3, 2)]);
    assert!(provider.shutdown().is_ok());
}

#[test]
fn the_transaction_is_atomic_and_every_key_it_writes_expires() {
    let (errors, provider) = tracked();
    fail(&provider, "c-1");
    errors.rates().record("GET", Some("/fail/{id}"), true);
    let mut syncer = syncer();
    let batch = collect(&mut syncer, &errors);
    let pipe = syncer.transaction(&batch, 1);
    let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
    assert!(
        packed.contains("MULTI") && packed.contains("EXEC"),
        "{packed}"
    );
    let mut written = std::collections::BTreeSet::new();
    let mut expiring = std::collections::BTreeSet::new();
    for cmd in pipe.cmd_iter() {
        let args: Vec<String> = cmd
            .args_iter()
            .filter_map(|a| match a {
                redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect();
        assert!(args[1].starts_with("service-tracing:errors:"), "{args:?}");
        if args[0] == "EXPIRE" {
            assert!(args[2].parse::<u64>().unwrap_or(0) >= 60, "{args:?}");
            expiring.insert(args[1].clone());
        } else if args[0] == "SET" {
            assert_eq!(args[3], "EX", "{args:?}");
            expiring.insert(args[1].clone());
        } else {
            written.insert(args[1].clone());
        }
    }
    assert!(written.len() >= 8, "{written:?}");
    let missing: Vec<&String> = written.difference(&expiring).collect();
    assert!(missing.is_empty(), "keys without a TTL: {missing:?}");
    syncer.commit(batch);
    assert!(provider.shutdown().is_ok());
}

#[test]
fn the_fleet_view_and_the_local_counts_merge() {
    let (errors, provider) = tracked();
    for n in 0..5 {
        fail(&provider, &format!("c-{n}"));
    }
    let local = errors.groups();
    let fingerprint = local[0].fingerprint();
    // The fleet has 10 of this group, 3 of them pushed by this replica, and another
    // replica's group.
    let view = FleetView {
        total: 14,
        groups: vec![
            ErrorGroup::from(parts(fingerprint, 10)),
            ErrorGroup::from(GroupParts {
                error_type: "timeout".to_owned(),
                ..parts(42, 4)
            }),
        ],
        rates: vec![("GET /fail/{id}".to_owned(), [(20, 10), (30, 12), (40, 13)])],
        pushed_counts: HashMap::from([(fingerprint, 3)]),
        pushed_total: 3,
        pushed_rates: HashMap::from([("GET /fail/{id}".to_owned(), (1, 1))]),
    };
    let store = lock(&errors.tracker.store);
    let merged = view.merge_groups(store.iter());
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].fingerprint(), fingerprint);
    assert_eq!(merged[0].count(), 10 + 5 - 3, "fleet + not yet pushed");
    assert_eq!(
        merged[0].correlation_ids(),
        ["from-b"],
        "the fleet's samples"
    );
    assert_eq!(
        merged[0].errors_in(Window::OneHour),
        5,
        "the sliding windows are this replica's"
    );
    assert_eq!((merged[1].error_type(), merged[1].count()), ("timeout", 4));
    drop(store);

    errors.rates().record("GET", Some("/fail/{id}"), true);
    errors.rates().record("GET", Some("/fail/{id}"), false);
    errors.rates().record("GET", Some("/local"), false);
    let rates = view.merge_rates(&errors.rates().snapshot(), &errors.rates().totals());
    let figures = |op: &str, w: Window| {
        rates
            .iter()
            .find(|r| r.operation == op && r.window == w)
            .map(|r| (r.requests, r.errors))
    };
    // 2 requests (1 error) counted locally, 1 (1 error) of them already pushed.
    assert_eq!(figures("GET /fail/{id}", Window::OneMinute), Some((21, 10)));
    assert_eq!(figures("GET /fail/{id}", Window::OneHour), Some((41, 13)));
    assert_eq!(figures("GET /local", Window::OneMinute), Some((1, 0)));
    assert_eq!(rates.len(), 6);
    assert!(provider.shutdown().is_ok());
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| bulk(s)).collect())
}

#[test]
fn a_group_is_read_back_from_its_keys() {
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let hash = array(&[
        "error_type",
        "500",
        "message",
        "boom",
        "severity:high",
        "application",
        "severity:critical",
        "application",
        "operation:GET /b",
        "1",
        "operation:GET /a",
        "1",
        "status_code:503",
        "1",
        "status_code:500",
        "1",
    ]);
    let seen = array(&["first", "1000", "last", "1763899000123"]);
    let group = read_group(
        9,
        12,
        hash,
        seen,
        array(&[trace, "not hex"]),
        array(&["c-1"]),
    )
    .map(ErrorGroup::from)
    .unwrap_or_else(|| panic!("a group"));
    assert_eq!((group.fingerprint(), group.count()), (9, 12));
    assert_eq!((group.error_type(), group.message()), ("500", "boom"));
    assert_eq!(group.severity(), Severity::Critical, "the most urgent wins");
    assert_eq!(group.operations(), ["GET /a", "GET /b"]);
    assert_eq!(group.status_codes(), [500, 503]);
    assert_eq!(
        group.first_seen(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1)
    );
    assert_eq!(
        group.last_seen(),
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_763_899_000_123)
    );
    assert_eq!(group.trace_ids().len(), 1);
    assert_eq!(group.trace_ids()[0].to_string(), trace);
    assert_eq!(group.correlation_ids(), ["c-1"]);

    // Another version's data, or keys expired in between: skipped, not a panic.
    let gone = read_group(
        9,
        1,
        Value::Array(vec![]),
        array(&[]),
        array(&[]),
        array(&[]),
    );
    assert!(gone.is_none());
    let bad = read_group(9, 1, bulk("x"), array(&[]), array(&[]), array(&[]));
    assert!(bad.is_none());
}

#[test]
fn a_bad_url_is_an_error_naming_the_setting_without_the_password() {
    for url in ["localhost:6379", "http://user:secret@example.invalid", ""] {
        let error = RedisSharing::parse("error_redis_url", url)
            .err()
            .unwrap_or_else(|| panic!("{url:?} accepted"));
        let message = error.to_string();
        assert_eq!(error.kind(), crate::SetupErrorKind::InvalidConfig);
        assert!(message.contains("error_redis_url"), "{message}");
        assert!(message.contains("redis://"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
    assert_eq!(
        without_password("redis://u:p@h:1/0"),
        "redis://***@h:1/0".to_owned()
    );
    let sharing = RedisSharing::new("redis://:hunter2@127.0.0.1:6379/0");
    let debug = format!("{sharing:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn an_unreachable_redis_starts_degraded_and_tracking_goes_on_locally() {
    let started = Instant::now();
    let errors = ErrorTracking::new().with_sharing(
        RedisSharing::new(&closed_url())
            .unwrap_or_else(|e| panic!("{e}"))
            .timeout(Duration::from_millis(100)),
    );
    let health = errors.storage_health();
    let ErrorStorageHealth::Degraded { last_error, since } = &health else {
        panic!("{health:?}");
    };
    assert!(!last_error.is_empty() && *since <= SystemTime::now());
    assert_eq!(health.to_json()["status"], "degraded");
    let provider = SdkTracerProvider::builder()
        .with_span_processor(errors.clone())
        .build();
    fail(&provider, "c-1");
    fail(&provider, "c-2");
    assert_eq!(errors.summary().total(), 2);
    assert_eq!(errors.groups()[0].count(), 2);
    assert!(errors.sync_now().is_degraded());
    // The builders keep the sharing (with a new store).
    let rebuilt = errors.clone().with_max_groups(10);
    assert!(rebuilt.storage_health().is_degraded());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(provider.shutdown().is_ok());
}

#[test]
fn service_tracing_rejects_a_bad_redis_url_naming_the_setting() {
    let from_builder = crate::ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .error_redis_url("not a url")
        .init_layer()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(from_builder.contains("error_redis_url"), "{from_builder}");
    let from_env = crate::ServiceTracing::builder("svc")
        .env_lookup(|name| {
            (name == "SERVICE_TRACING_ERRORS_REDIS_URL").then(|| "tcp://x".to_owned())
        })
        .install_subscriber(false)
        .init_layer()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        from_env.contains("SERVICE_TRACING_ERRORS_REDIS_URL"),
        "{from_env}"
    );
}
