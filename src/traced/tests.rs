//! `#[traced]` at run time: the spans its expansion makes. nextest runs each test in its own
//! process, so each may install the global tracer provider the work spans read.

use std::future::Future as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{global, Context, Value};
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, Sampler, SdkTracerProvider, SimpleSpanProcessor, SpanData,
};

use crate::errors::ErrorTracking;
use crate::profiling::Profiling;
use crate::traced;

struct Installed {
    exporter: InMemorySpanExporter,
    errors: ErrorTracking,
    profiling: Profiling,
}

/// A global provider exporting to memory, with profiling and error tracking in front.
fn install(sampler: Sampler) -> Installed {
    let errors = ErrorTracking::new();
    let profiling = Profiling::new();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(
            profiling.in_front_of(errors.in_front_of(SimpleSpanProcessor::new(exporter.clone()))),
        )
        .build();
    global::set_tracer_provider(provider);
    Installed {
        exporter,
        errors,
        profiling,
    }
}

impl Installed {
    fn spans(&self) -> Vec<SpanData> {
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    fn one(&self, name: &str) -> SpanData {
        let all = self.spans();
        let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} in {all:#?}");
        found[0].clone()
    }
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.as_str().into_owned())
        .unwrap_or_else(|| panic!("no {key} on {span:#?}"))
}

fn event_attributes(span: &SpanData, name: &str) -> Vec<(String, String)> {
    span.events
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} event on {span:#?}"))
        .attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

fn event_text(span: &SpanData, name: &str, key: &str) -> String {
    event_attributes(span, name)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} on the {name} event of {span:#?}"))
}

/// Runs `f` inside a sampled parent span named `parent`.
fn under_parent<T>(parent: &'static str, f: impl FnOnce() -> T) -> T {
    global::tracer("test").in_span(parent, |_cx| f())
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(future)
}

// The line of `load_order`'s name, for `code.line.number`.
const LOAD_ORDER_LINE: i64 = line!() as i64 + 2;
#[traced]
fn load_order(id: u64) -> u64 {
    id * 2
}

#[test]
fn a_traced_function_is_an_internal_child_span_with_its_code_attributes() {
    let installed = install(Sampler::AlwaysOn);
    assert_eq!(under_parent("GET /orders/{id}", || load_order(21)), 42);

    let parent = installed.one("GET /orders/{id}");
    let span = installed.one("load_order");
    assert_eq!(span.parent_span_id, parent.span_context.span_id());
    assert_eq!(span.span_context.trace_id(), parent.span_context.trace_id());
    assert_eq!(span.span_kind, SpanKind::Internal);
    assert_eq!(
        text(&span, "code.function.name"),
        "service_tracing::traced::tests::load_order"
    );
    assert_eq!(text(&span, "code.file.path"), file!());
    assert_eq!(
        attribute(&span, "code.line.number"),
        Some(&Value::I64(LOAD_ORDER_LINE))
    );
    // No argument is captured unless asked, and a normal return is no error.
    assert!(
        attribute(&span, "code.function.args.id").is_none(),
        "{span:#?}"
    );
    assert!(attribute(&span, "error.type").is_none(), "{span:#?}");
    assert_eq!(span.status, Status::Unset);
}

#[traced(name = "charge card", kind = client)]
fn charge(cents: u64) -> u64 {
    cents
}

#[traced(kind = producer)]
fn publish() {}

#[traced(kind = consumer)]
fn consume() {}

#[test]
fn name_and_kind_are_the_options_given() {
    let installed = install(Sampler::AlwaysOn);
    charge(5);
    publish();
    consume();
    let span = installed.one("charge card");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        text(&span, "code.function.name"),
        "service_tracing::traced::tests::charge"
    );
    assert_eq!(installed.one("publish").span_kind, SpanKind::Producer);
    assert_eq!(installed.one("consume").span_kind, SpanKind::Consumer);
}

#[derive(Debug)]
struct User {
    name: &'static str,
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user {}", self.name)
    }
}

#[traced(args(id, %user, ?note))]
fn named_args(id: u64, user: &User, note: &str, secret_sauce: &str) -> usize {
    let _ = (id, user, secret_sauce);
    note.len()
}

#[traced(args(all, %user), skip(password))]
fn all_args(user: &User, limit: usize, password: &str, bytes: &[u8]) -> usize {
    let _ = (user, password);
    limit + bytes.len()
}

#[test]
fn listed_arguments_are_captured_through_debug_or_display_and_no_others() {
    let installed = install(Sampler::AlwaysOn);
    named_args(7, &User { name: "ada" }, "hi", "ketchup");
    let span = installed.one("named_args");
    assert_eq!(text(&span, "code.function.args.id"), "7");
    assert_eq!(text(&span, "code.function.args.user"), "user ada");
    assert_eq!(text(&span, "code.function.args.note"), "\"hi\"");
    assert!(attribute(&span, "code.function.args.secret_sauce").is_none());
}

#[test]
fn args_all_captures_every_parameter_but_the_skipped_ones() {
    let installed = install(Sampler::AlwaysOn);
    all_args(&User { name: "bob" }, 3, "hunter2", &[1, 2]);
    let span = installed.one("all_args");
    assert_eq!(text(&span, "code.function.args.user"), "user bob");
    assert_eq!(text(&span, "code.function.args.limit"), "3");
    assert_eq!(text(&span, "code.function.args.bytes"), "[1, 2]");
    assert!(attribute(&span, "code.function.args.password").is_none());
}

#[traced(args(text))]
fn long_arg(text: &str) -> usize {
    text.len()
}

#[test]
fn a_captured_value_is_cut_to_its_cap_on_a_character_boundary() {
    let installed = install(Sampler::AlwaysOn);
    long_arg(&"é".repeat(10_000));
    let value = text(&installed.one("long_arg"), "code.function.args.text");
    assert!(value.len() <= super::MAX_VALUE_LEN, "{} bytes", value.len());
    assert!(
        value.len() > super::MAX_VALUE_LEN - 8,
        "{} bytes",
        value.len()
    );
    assert!(value.starts_with("\"éé"), "{value}");
    assert!(value.ends_with(super::CUT), "{value}");
}

#[traced(args(email, password, token_note))]
fn login(email: &str, password: &str, token_note: &str) {
    let _ = (email, password, token_note);
}

#[test]
fn captured_arguments_pass_through_the_redaction_policy() {
    let installed = install(Sampler::AlwaysOn);
    login("ada@example.com", "hunter2", "Bearer abc.def.ghi");
    let mut span = installed.one("login");
    // What the export worker does to every span before the exporter sees it.
    crate::Redactor::new().redact_span(&mut span);
    assert_eq!(text(&span, "code.function.args.email"), "\"[REDACTED]\"");
    assert_eq!(text(&span, "code.function.args.password"), "[REDACTED]");
    assert_eq!(text(&span, "code.function.args.token_note"), "[REDACTED]");
}

/// Counts how often it is formatted.
struct Counted<'a>(&'a AtomicUsize);

impl std::fmt::Debug for Counted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fetch_add(1, Ordering::Relaxed);
        f.write_str("counted")
    }
}

#[traced(args(value))]
fn counted(value: Counted<'_>) {
    let _ = value;
}

#[test]
fn an_unsampled_call_makes_no_span_and_formats_no_argument() {
    let installed = install(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    let formatted = AtomicUsize::new(0);
    under_parent("GET /unsampled", || counted(Counted(&formatted)));
    assert_eq!(formatted.load(Ordering::Relaxed), 0);
    assert!(installed.spans().is_empty(), "{:#?}", installed.spans());

    // Sampled, the same call formats its argument once.
    let installed = install(Sampler::AlwaysOn);
    counted(Counted(&formatted));
    assert_eq!(formatted.load(Ordering::Relaxed), 1);
    assert_eq!(
        text(&installed.one("counted"), "code.function.args.value"),
        "counted"
    );
}

#[derive(Debug)]
struct OutOfStock;

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of stock")
    }
}

impl std::error::Error for OutOfStock {}

#[traced(result, category = database)]
fn reserve(available: bool) -> Result<u32, OutOfStock> {
    if !available {
        return Err(OutOfStock);
    }
    Ok(3)
}

#[test]
fn an_err_is_an_exception_event_with_its_category_for_error_tracking() {
    let installed = install(Sampler::AlwaysOn);
    assert!(reserve(false).is_err());
    let span = installed.one("reserve");
    let error_type = "service_tracing::traced::tests::OutOfStock";
    assert_eq!(event_text(&span, "exception", "exception.type"), error_type);
    assert_eq!(
        event_text(&span, "exception", "exception.message"),
        "out of stock"
    );
    assert_eq!(event_text(&span, "exception", "error.category"), "database");
    assert_eq!(text(&span, "error.type"), error_type);
    assert_eq!(span.status, Status::error("out of stock"));
    // No `Ok` value was asked for.
    assert!(attribute(&span, super::RESULT_KEY).is_none());

    let summary = installed.errors.summary();
    let group = summary
        .top_groups()
        .iter()
        .find(|g| g.error_type() == error_type)
        .unwrap_or_else(|| panic!("no group for {error_type}: {summary:#?}"));
    assert_eq!(group.category(), crate::Category::Database);
}

#[test]
fn an_ok_is_a_success_and_is_not_captured_unless_asked() {
    let installed = install(Sampler::AlwaysOn);
    assert_eq!(reserve(true).ok(), Some(3));
    let span = installed.one("reserve");
    assert!(span.events.is_empty(), "{span:#?}");
    assert!(attribute(&span, "error.type").is_none(), "{span:#?}");
    assert!(attribute(&span, super::RESULT_KEY).is_none(), "{span:#?}");
    assert_eq!(span.status, Status::Unset);
}

#[traced(result(ok))]
fn quote_price(cents: u64) -> Result<Vec<u64>, std::io::Error> {
    Ok(vec![cents, cents / 2])
}

#[traced(result(%ok))]
fn greet() -> Result<User, std::io::Error> {
    Ok(User { name: "eve" })
}

#[test]
fn result_ok_captures_the_ok_value_through_debug_or_display() {
    let installed = install(Sampler::AlwaysOn);
    quote_price(10).unwrap_or_else(|e| panic!("{e}"));
    greet().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        text(&installed.one("quote_price"), super::RESULT_KEY),
        "[10, 5]"
    );
    assert_eq!(text(&installed.one("greet"), super::RESULT_KEY), "user eve");
}

/// An error type that is `Display` but not `std::error::Error`, as `anyhow::Error` is.
#[derive(Debug)]
struct Report(String);

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "report: {}", self.0)
    }
}

// Its field is read only through `Debug`, which dead-code analysis does not count.
#[allow(dead_code)]
#[derive(Debug)]
enum Code {
    Refused(u16),
}

#[traced(result)]
fn with_report() -> Result<(), Report> {
    Err(Report("disk full".into()))
}

#[traced(result)]
fn with_code() -> Result<(), Code> {
    Err(Code::Refused(7))
}

#[test]
fn errors_that_are_only_display_or_only_debug_are_recorded_too() {
    let installed = install(Sampler::AlwaysOn);
    let _ = with_report();
    let _ = with_code();
    let report = installed.one("with_report");
    assert_eq!(
        event_text(&report, "exception", "exception.type"),
        "service_tracing::traced::tests::Report"
    );
    assert_eq!(
        event_text(&report, "exception", "exception.message"),
        "report: disk full"
    );
    let code = installed.one("with_code");
    assert_eq!(
        event_text(&code, "exception", "exception.message"),
        "Refused(7)"
    );
    assert!(matches!(code.status, Status::Error { .. }), "{code:#?}");
}

#[traced(result)]
fn parse_port(text: &str) -> Result<u16, std::num::ParseIntError> {
    let port = text.trim().parse::<u16>()?;
    Ok(port)
}

#[test]
fn question_mark_in_a_traced_body_records_the_error_it_returns() {
    let installed = install(Sampler::AlwaysOn);
    assert!(parse_port("eighty").is_err());
    let span = installed.one("parse_port");
    assert_eq!(
        event_text(&span, "exception", "exception.type"),
        "core::num::error::ParseIntError"
    );
}

#[traced]
fn early_return(n: u32) -> u32 {
    if n > 1 {
        return n;
    }
    0
}

/// A `mut` parameter changed in a body that runs in the `result` closure.
#[traced(result, args(n))]
fn count_down(mut n: u32) -> Result<u32, std::io::Error> {
    let mut steps = 0;
    while n > 0 {
        n -= 1;
        steps += 1;
        if steps > 2 {
            return Ok(steps);
        }
    }
    Ok(steps)
}

#[test]
fn an_early_return_ends_the_span_without_an_error() {
    let installed = install(Sampler::AlwaysOn);
    early_return(5);
    assert_eq!(count_down(5).ok(), Some(3));
    for name in ["early_return", "count_down"] {
        let span = installed.one(name);
        assert!(attribute(&span, "error.type").is_none(), "{span:#?}");
        assert_eq!(span.status, Status::Unset);
    }
    assert_eq!(
        text(&installed.one("count_down"), "code.function.args.n"),
        "5"
    );
}

#[traced(slow_ms = 5)]
fn slow_step() {
    // The work being timed, not a synchronisation.
    std::thread::sleep(Duration::from_millis(20));
}

#[traced(slow_ms = 60_000)]
fn fast_step() {}

#[test]
fn a_call_over_slow_ms_gets_the_slow_event_and_counts_as_slow_in_profiling() {
    let installed = install(Sampler::AlwaysOn);
    slow_step();
    fast_step();
    let slow = installed.one("slow_step");
    assert_eq!(
        attribute(&slow, crate::profiling::THRESHOLD_ATTRIBUTE),
        Some(&Value::I64(5))
    );
    let duration: f64 = event_text(
        &slow,
        crate::profiling::SLOW_EVENT,
        "performance.duration_ms",
    )
    .parse()
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(duration >= 20.0, "{duration} ms");
    let fast = installed.one("fast_step");
    assert!(fast.events.is_empty(), "{fast:#?}");

    let profile = installed
        .profiling
        .operation("slow_step")
        .unwrap_or_else(|| panic!("{:#?}", installed.profiling.operations()));
    assert_eq!(profile.slow, 1);
    let fast = installed
        .profiling
        .operation("fast_step")
        .unwrap_or_else(|| panic!("{:#?}", installed.profiling.operations()));
    assert_eq!(fast.slow, 0);
}

#[traced]
fn explodes() {
    panic!("boom");
}

#[test]
fn a_panic_ends_the_span_with_error_type_panic() {
    let installed = install(Sampler::AlwaysOn);
    let outcome = std::panic::catch_unwind(explodes);
    assert!(outcome.is_err());
    let span = installed.one("explodes");
    assert_eq!(text(&span, "error.type"), "panic");
    assert!(matches!(span.status, Status::Error { .. }), "{span:#?}");
}

#[traced(args(id))]
async fn fetch_order(id: u64) -> u64 {
    tokio::task::yield_now().await;
    // A span started inside the body is a child of the traced span, in every poll.
    global::tracer("test").in_span("inner", |_| ());
    id + 1
}

#[test]
fn an_async_function_is_current_in_each_poll_and_ends_when_it_completes() {
    let installed = install(Sampler::AlwaysOn);
    let out = block_on(async {
        let parent = global::tracer("test").start("GET /orders/{id}");
        let cx = Context::current_with_span(parent);
        let out = opentelemetry::trace::FutureExt::with_context(fetch_order(1), cx.clone()).await;
        cx.span().end();
        out
    });
    assert_eq!(out, 2);
    let parent = installed.one("GET /orders/{id}");
    let span = installed.one("fetch_order");
    let inner = installed.one("inner");
    assert_eq!(span.parent_span_id, parent.span_context.span_id());
    assert_eq!(inner.parent_span_id, span.span_context.span_id());
    assert_eq!(text(&span, "code.function.args.id"), "1");
    assert_eq!(
        text(&span, "code.function.name"),
        "service_tracing::traced::tests::fetch_order"
    );
    assert!(attribute(&span, "error.type").is_none(), "{span:#?}");
}

#[traced(result, category = timeout)]
async fn call_stock(fail: bool) -> Result<u32, std::io::Error> {
    tokio::task::yield_now().await;
    if fail {
        return Err(std::io::Error::other("stock service unavailable"));
    }
    Ok(4)
}

#[test]
fn an_async_err_is_recorded_and_an_async_ok_is_a_success() {
    let installed = install(Sampler::AlwaysOn);
    block_on(async {
        assert!(call_stock(true).await.is_err());
        assert_eq!(call_stock(false).await.ok(), Some(4));
    });
    let spans: Vec<SpanData> = installed
        .spans()
        .into_iter()
        .filter(|s| s.name == "call_stock")
        .collect();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let failed = &spans[0];
    assert_eq!(
        event_text(failed, "exception", "exception.message"),
        "stock service unavailable"
    );
    assert_eq!(event_text(failed, "exception", "error.category"), "timeout");
    let succeeded = &spans[1];
    assert!(
        attribute(succeeded, "error.type").is_none(),
        "{succeeded:#?}"
    );
    assert_eq!(succeeded.status, Status::Unset);
}

#[test]
fn an_async_call_dropped_before_it_completes_ends_with_error_type_other() {
    let installed = install(Sampler::AlwaysOn);
    block_on(async {
        let mut call = Box::pin(fetch_order(3));
        // One poll starts the span; the future is then dropped, as a timeout would.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(call.as_mut().poll(&mut cx).is_pending());
    });
    let span = installed.one("fetch_order");
    assert_eq!(text(&span, "error.type"), crate::work::NO_OUTCOME);
}

struct Repo {
    prefix: String,
}

impl Repo {
    #[traced(args(self, key))]
    fn get(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    #[traced(args(all))]
    fn get_many<K: std::fmt::Debug + AsRef<str>>(&mut self, keys: &[K]) -> usize {
        self.prefix.push('!');
        keys.iter().map(|k| k.as_ref().len()).sum()
    }

    #[traced(result)]
    async fn load(&self, id: impl Into<u64>) -> Result<&str, std::io::Error> {
        let _ = id.into();
        Ok(&self.prefix)
    }
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repo({})", self.prefix)
    }
}

trait Store {
    async fn put(&self, value: u32) -> u32;
}

impl Store for Repo {
    #[traced(args(value))]
    async fn put(&self, value: u32) -> u32 {
        value + 1
    }
}

#[test]
fn methods_generics_impl_trait_arguments_and_async_trait_methods_are_traced() {
    let installed = install(Sampler::AlwaysOn);
    let mut repo = Repo {
        prefix: "k:".into(),
    };
    assert_eq!(repo.get("a"), "k:a");
    assert_eq!(repo.get_many(&["ab", "c"]), 3);
    block_on(async {
        assert_eq!(repo.load(7_u32).await.ok(), Some("k:!"));
        assert_eq!(repo.put(1).await, 2);
    });

    let get = installed.one("get");
    assert_eq!(
        text(&get, "code.function.name"),
        "service_tracing::traced::tests::Repo::get"
    );
    assert_eq!(text(&get, "code.function.args.self"), "Repo(k:)");
    assert_eq!(text(&get, "code.function.args.key"), "\"a\"");
    let many = installed.one("get_many");
    assert_eq!(
        text(&many, "code.function.name"),
        "service_tracing::traced::tests::Repo::get_many"
    );
    assert_eq!(text(&many, "code.function.args.keys"), "[\"ab\", \"c\"]");
    assert!(attribute(&many, "code.function.args.self").is_none());
    let load = installed.one("load");
    assert_eq!(
        text(&load, "code.function.name"),
        "service_tracing::traced::tests::Repo::load"
    );
    let put = installed.one("put");
    assert_eq!(
        text(&put, "code.function.name"),
        "<service_tracing::traced::tests::Repo as service_tracing::traced::tests::Store>::put"
    );
    assert_eq!(text(&put, "code.function.args.value"), "1");
}
