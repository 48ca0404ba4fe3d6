use super::*;
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A `Write` into a shared buffer, so tests can read what was printed.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// Returns and clears what has been written so far.
    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *lock(&self.0));
        String::from_utf8(bytes).expect("console output is UTF-8")
    }
}

/// Always fails, to check that write errors are swallowed.
struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("broken pipe"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("broken pipe"))
    }
}

const T1: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const T2: u128 = 0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c;

fn at(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(micros)
}

/// A finished span; `parent` 0 means no parent.
fn span(
    trace: u128,
    id: u64,
    parent: u64,
    kind: SpanKind,
    name: &'static str,
    start_us: u64,
    dur_us: u64,
) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(trace),
            SpanId::from(id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(parent),
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: at(start_us),
        end_time: at(start_us + dur_us),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: InstrumentationScope::builder("test").build(),
    }
}

fn with_attr(mut span: SpanData, kv: KeyValue) -> SpanData {
    span.attributes.push(kv);
    span
}

fn with_status(mut span: SpanData, status: Status) -> SpanData {
    span.status = status;
    span
}

fn remote_parent(mut span: SpanData) -> SpanData {
    span.parent_span_is_remote = true;
    span
}

fn with_exception(mut span: SpanData, ty: Option<&'static str>, msg: &'static str) -> SpanData {
    let mut attributes = vec![KeyValue::new(EXCEPTION_MESSAGE, msg)];
    if let Some(ty) = ty {
        attributes.insert(0, KeyValue::new(EXCEPTION_TYPE, ty));
    }
    span.events
        .events
        .push(Event::new(EXCEPTION_EVENT, span.end_time, attributes, 0));
    span.events
        .events
        .push(Event::new("not shown", span.end_time, Vec::new(), 0));
    span
}

fn exporter(service: Option<&'static str>) -> (ConsoleExporter, Buffer) {
    let buffer = Buffer::default();
    // These tests date spans near the epoch: a grace longer than that keeps remote-rooted
    // traces waiting for their in-process parent, as they would for two seconds in real use.
    let mut exporter = ConsoleExporter::with_writer(buffer.clone())
        .with_remote_root_grace(Duration::from_secs(100 * 365 * 24 * 3600));
    if let Some(service) = service {
        exporter.set_resource(&Resource::builder_empty().with_service_name(service).build());
    }
    (exporter, buffer)
}

fn export(exporter: &ConsoleExporter, batch: Vec<SpanData>) {
    let result = block_on(exporter.export(batch));
    result.expect("export succeeds");
}

/// The futures returned by `export` are always ready.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("export future should be ready immediately"),
    }
}

#[test]
fn three_level_tree_in_one_trace() {
    let (exporter, out) = exporter(Some("shop"));
    let root = with_attr(
        with_status(
            span(T1, 1, 0, SpanKind::Server, "GET /checkout", 0, 12_340),
            Status::Ok,
        ),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, 200_i64),
    );
    let load = span(T1, 2, 1, SpanKind::Internal, "load cart", 100, 5_000);
    let query = span(T1, 3, 2, SpanKind::Client, "SELECT carts", 200, 4_000);
    let cache = span(T1, 4, 2, SpanKind::Internal, "cache get", 150, 40);
    let render = span(T1, 5, 1, SpanKind::Internal, "render", 11_000, 400);

    // Child-first, siblings out of start order, split across batches.
    export(&exporter, vec![query]);
    export(&exporter, vec![render, cache]);
    assert_eq!(out.take(), "", "nothing is printed before the root ends");
    export(&exporter, vec![load, root]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /checkout  [shop]  server  12.3 ms  200  Ok
   ├─ load cart  [shop]  internal  5.0 ms
   │  ├─ cache get  [shop]  internal  40 µs
   │  └─ SELECT carts  [shop]  client  4.0 ms
   └─ render  [shop]  internal  0.4 ms
"
    );
    exporter.force_flush().expect("flush");
    assert_eq!(out.take(), "", "the printed trace is no longer pending");
}

/// Frontend and backend in one process: the backend server span has a
/// remote parent (the frontend's client span) and ends first.
fn two_service_trace(trace: u128) -> [SpanData; 4] {
    let service = |name: &'static str| KeyValue::new(SERVICE_NAME, name);
    let root = with_status(
        span(trace, 0x10, 0, SpanKind::Server, "GET /checkout", 0, 12_300),
        Status::Ok,
    );
    let client = with_attr(
        with_status(
            span(trace, 0x11, 0x10, SpanKind::Client, "GET", 1_000, 8_100),
            Status::error("500 Internal Server Error"),
        ),
        KeyValue::new(HTTP_RESPONSE_STATUS_CODE, 500_i64),
    );
    let backend = remote_parent(with_exception(
        with_attr(
            with_status(
                span(
                    trace,
                    0x12,
                    0x11,
                    SpanKind::Server,
                    "GET /orders/{id}",
                    1_200,
                    7_200,
                ),
                Status::error(""),
            ),
            service("backend"),
        ),
        None,
        "panicked: boom",
    ));
    let render = with_attr(
        span(trace, 0x13, 0x10, SpanKind::Internal, "render", 11_000, 400),
        service("frontend"),
    );
    [root, client, backend, render]
}

const TWO_SERVICE_TREE: &str = "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /checkout  [frontend]  server  12.3 ms  Ok
   ├─ GET  [frontend]  client  8.1 ms  500  Error: 500 Internal Server Error
   │  └─ GET /orders/{id}  [backend]  server  7.2 ms  Error
   │     • exception: panicked: boom
   └─ render  [frontend]  internal  0.4 ms
";

#[test]
fn remote_parented_child_nests_under_in_process_client_span() {
    // Resource says "frontend"; the backend span overrides it per span.
    let (exporter, out) = exporter(Some("frontend"));
    let [root, client, backend, render] = two_service_trace(T1);
    export(&exporter, vec![backend]);
    assert_eq!(
        out.take(),
        "",
        "a remote-parented span with unknown parent waits"
    );
    export(&exporter, vec![client]);
    assert_eq!(out.take(), "");
    export(&exporter, vec![render, root]);
    assert_eq!(out.take(), TWO_SERVICE_TREE);
}

#[test]
fn a_remote_rooted_trace_prints_once_its_grace_has_passed() {
    let (exporter, buffer) = exporter(Some("backend"));
    let exporter = exporter.with_remote_root_grace(Duration::from_secs(1));
    let trace = 0xabc_u128;
    let ended_long_ago = SystemTime::now() - Duration::from_secs(5);
    let mut old_root = remote_parent(span(
        trace,
        1,
        99,
        SpanKind::Server,
        "GET /orders/{id}",
        0,
        900,
    ));
    old_root.end_time = ended_long_ago;
    old_root.start_time = ended_long_ago - Duration::from_millis(1);
    let fresh_root = remote_parent(span(
        trace + 1,
        2,
        98,
        SpanKind::Server,
        "GET /fresh",
        0,
        900,
    ));
    // `span` sets times near the epoch; make the fresh one end now.
    let mut fresh_root = fresh_root;
    fresh_root.end_time = SystemTime::now();
    fresh_root.start_time = fresh_root.end_time - Duration::from_millis(1);
    export(&exporter, vec![old_root, fresh_root]);
    let printed = buffer.take();
    assert!(printed.contains("GET /orders/{id}"), "{printed}");
    assert!(
        !printed.contains("GET /fresh"),
        "still within its grace: {printed}"
    );
    // An empty export (the worker's tick) prints nothing new while the grace runs.
    export(&exporter, Vec::new());
    assert_eq!(buffer.take(), "");
}

#[test]
fn remote_parented_span_after_its_parent_waits_for_the_root() {
    let (exporter, out) = exporter(Some("frontend"));
    let [root, client, backend, render] = two_service_trace(T1);
    export(&exporter, vec![client]);
    export(&exporter, vec![backend, render]);
    assert_eq!(out.take(), "");
    export(&exporter, vec![root]);
    assert_eq!(out.take(), TWO_SERVICE_TREE);
}

#[test]
fn two_interleaved_traces_print_separately() {
    let (exporter, out) = exporter(Some("svc"));
    let a_root = span(T1, 1, 0, SpanKind::Server, "GET /a", 0, 3_000);
    let a_child = span(T1, 2, 1, SpanKind::Internal, "a work", 500, 1_000);
    let b_root = span(T2, 1, 0, SpanKind::Server, "GET /b", 100, 2_000);
    let b_child = span(T2, 2, 1, SpanKind::Internal, "b work", 600, 1_000);
    let b_grandchild = span(T2, 3, 2, SpanKind::Client, "b call", 700, 500);

    // Same span ids in both traces: nesting must not cross traces.
    export(&exporter, vec![a_child, b_grandchild]);
    export(&exporter, vec![b_child, b_root]);
    assert_eq!(
        out.take(),
        "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /b  [svc]  server  2.0 ms
   └─ b work  [svc]  internal  1.0 ms
      └─ b call  [svc]  client  0.5 ms
"
    );
    export(&exporter, vec![a_root]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /a  [svc]  server  3.0 ms
   └─ a work  [svc]  internal  1.0 ms
"
    );
}

#[test]
fn orphans_are_printed_at_the_top_level() {
    let (exporter, out) = exporter(None);
    let root = span(T1, 1, 0, SpanKind::Server, "GET /", 1_000, 2_000);
    let child = span(T1, 2, 1, SpanKind::Internal, "child", 1_500, 100);
    // Its parent 0x99 was never exported (e.g. dropped by a sampler).
    // Arrives before the root but starts after it: top-level spans are
    // ordered by start time, not arrival.
    let orphan = span(T1, 3, 0x99, SpanKind::Internal, "orphan", 2_500, 200);
    let orphan_kid = span(T1, 4, 3, SpanKind::Internal, "orphan kid", 2_600, 50);
    export(&exporter, vec![orphan_kid, orphan, child]);
    export(&exporter, vec![root]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
├─ GET /  server  2.0 ms
│  └─ child  internal  0.1 ms
└─ orphan  internal  0.2 ms
   └─ orphan kid  internal  50 µs
"
    );
}

#[test]
fn cap_prints_the_oldest_pending_trace_as_incomplete() {
    let (exporter, out) = exporter(Some("svc"));
    let exporter = exporter.with_max_pending_spans(2);
    export(
        &exporter,
        vec![
            span(T1, 3, 2, SpanKind::Internal, "a leaf", 300, 100),
            span(T1, 2, 1, SpanKind::Internal, "a mid", 200, 500),
        ],
    );
    assert_eq!(out.take(), "", "two pending spans are within the cap");
    export(
        &exporter,
        vec![span(T2, 2, 1, SpanKind::Internal, "b mid", 100, 1_000)],
    );
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ a mid  [svc]  internal  0.5 ms
   └─ a leaf  [svc]  internal  0.1 ms
"
    );
    // The newer trace was kept and completes normally.
    export(
        &exporter,
        vec![span(T2, 1, 0, SpanKind::Server, "GET /b", 0, 2_000)],
    );
    assert_eq!(
        out.take(),
        "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /b  [svc]  server  2.0 ms
   └─ b mid  [svc]  internal  1.0 ms
"
    );
}

#[test]
fn force_flush_prints_pending_traces_oldest_first() {
    let (exporter, out) = exporter(Some("backend"));
    // A backend-only trace: its local root has a remote parent that is
    // not in this process, so it waits for a flush.
    let server = remote_parent(span(
        T2,
        0x20,
        0x77,
        SpanKind::Server,
        "GET /orders",
        0,
        900,
    ));
    let db = span(T2, 0x21, 0x20, SpanKind::Client, "SELECT", 100, 500);
    // An unfinished trace: the local parent 0x30 has not ended yet.
    let work = span(T1, 0x31, 0x30, SpanKind::Internal, "work", 50, 10);
    export(&exporter, vec![db]);
    export(&exporter, vec![work, server]);
    assert_eq!(out.take(), "");
    exporter.force_flush().expect("flush");
    assert_eq!(
        out.take(),
        "\
trace 0af7651916cd43dd8448eb211c80319c
└─ GET /orders  [backend]  server  0.9 ms
   └─ SELECT  [backend]  client  0.5 ms
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ work  [backend]  internal  10 µs
"
    );
    exporter.force_flush().expect("flush");
    assert_eq!(out.take(), "", "flushed traces are not printed twice");
}

#[test]
fn late_span_whose_parent_was_printed_is_printed_as_a_continuation() {
    let (exporter, out) = exporter(Some("svc"));
    export(
        &exporter,
        vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 1_000)],
    );
    out.take();
    // A background task outlives the request; its child ends first.
    export(
        &exporter,
        vec![span(T1, 3, 2, SpanKind::Internal, "step", 600, 100)],
    );
    assert_eq!(out.take(), "");
    export(
        &exporter,
        vec![span(T1, 2, 1, SpanKind::Internal, "background", 500, 3_000)],
    );
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (continued)
└─ background  [svc]  internal  3.0 ms
   └─ step  [svc]  internal  0.1 ms
"
    );
}

#[test]
fn shutdown_flushes_then_rejects_exports() {
    let (exporter, out) = exporter(None);
    export(
        &exporter,
        vec![span(T1, 2, 1, SpanKind::Internal, "work", 0, 1_000)],
    );
    exporter.shutdown().expect("shutdown");
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736 (incomplete)
└─ work  internal  1.0 ms
"
    );
    let result = block_on(exporter.export(vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 1)]));
    assert!(matches!(result, Err(OTelSdkError::AlreadyShutdown)));
    assert_eq!(out.take(), "");
}

#[test]
fn exception_type_and_multiline_message_and_control_characters() {
    let (exporter, out) = exporter(None);
    let root = with_exception(
        span(T1, 1, 0, SpanKind::Server, "GET\n/x", 0, 100),
        Some("io::Error"),
        "first line\nsecond line",
    );
    let child = span(T1, 2, 1, SpanKind::Producer, "", 10, 0);
    export(&exporter, vec![child, root]);
    assert_eq!(
        out.take(),
        "\
trace 4bf92f3577b34da6a3ce929d0e0e4736
└─ GET /x  server  0.1 ms
   • exception: io::Error: first line
     second line
   └─ <unnamed>  producer  0 µs
"
    );
}

#[test]
fn write_errors_do_not_panic_or_fail_export() {
    let exporter = ConsoleExporter::with_writer(Broken);
    export(
        &exporter,
        vec![span(T1, 1, 0, SpanKind::Server, "GET /", 0, 10)],
    );
    assert_eq!(exporter.write_errors.load(Ordering::Relaxed), 1);
    assert!(format!("{exporter:?}").contains("write_errors: 1"));
}
