//! The server span of the set-up's own layer: a span of this crate's own type, started and
//! ended without the SDK's tracer, handed to the same processor chain as every other span.
//!
//! The SDK's `Span` is general: each attribute goes through a dynamic call and its own
//! `set_attribute`, the span holds a clone of its tracer (two reference counts), and ending it
//! rebuilds the export record from a second struct. The layer makes one server span per
//! request, with a dozen attributes known in advance, so [`ServerTracer`] does what the SDK's
//! tracer would do for it (suppression, shutdown, sampling with the provider's sampler, ids,
//! limits) and [`ServerSpan`] records straight into the fields of the `SpanData` the
//! processors receive. Everything else (client spans, `tracing` spans, spans of other
//! libraries) still goes through the SDK's provider, whose processor is the same chain
//! ([`SharedChain`]).
//!
//! What it relies on: the set-up's processors (error tracking, profiling, the export worker)
//! do nothing when a span starts, so `on_start` is not called for server spans; and the
//! provider's sampler, limits and id generator are the defaults the set-up gives it, which
//! [`ServerTracer::new`] is handed too.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceId,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    SamplingDecision, ShouldSample, Span as SdkSpan, SpanData, SpanEvents, SpanLimits, SpanLinks,
    SpanProcessor,
};
use opentelemetry_sdk::Resource;
use service_tracing_middleware::semconv::HTTP_RESPONSE_STATUS_CODE;
use service_tracing_middleware::tracer::{ContextTracer, RequestValue, ServerRequest};

use crate::chain::RecordProcessor;

/// One processor shared by the provider and the [`ServerTracer`]; shutting it down through the
/// provider stops server spans too, as the SDK's tracer stops after its provider's shutdown.
#[derive(Clone)]
pub(crate) struct SharedChain {
    inner: Arc<ChainInner>,
}

struct ChainInner {
    processor: Box<dyn RecordProcessor>,
    shut: AtomicBool,
}

impl fmt::Debug for SharedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedChain")
            .field("shut", &self.inner.shut.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SharedChain {
    /// `processor`, already given its resource (the provider cannot reach it through the
    /// shared handle).
    pub(crate) fn new<P: RecordProcessor + 'static>(mut processor: P, resource: &Resource) -> Self {
        processor.set_resource(resource);
        Self {
            inner: Arc::new(ChainInner {
                processor: Box::new(processor),
                shut: AtomicBool::new(false),
            }),
        }
    }

    /// A chain of no processor: server spans end into nothing, as with a provider that has
    /// none.
    pub(crate) fn empty() -> Self {
        Self {
            inner: Arc::new(ChainInner {
                processor: Box::new(Nothing),
                shut: AtomicBool::new(false),
            }),
        }
    }

    fn is_shut(&self) -> bool {
        self.inner.shut.load(Ordering::Relaxed)
    }
}

impl SpanProcessor for SharedChain {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        self.inner.processor.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.inner.processor.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.processor.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shut.store(true, Ordering::Relaxed);
        self.inner.processor.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shut.store(true, Ordering::Relaxed);
        self.inner.processor.shutdown()
    }

    fn set_resource(&mut self, _resource: &Resource) {
        // Given at `new`.
    }
}

/// A shared chain in front of more processors (request chains' hook goes in front of it).
impl RecordProcessor for SharedChain {
    fn on_end_record(&self, record: Box<ServerRecord>) {
        self.inner.processor.on_end_record(record);
    }
}

/// The processor of [`SharedChain::empty`].
#[derive(Debug)]
struct Nothing;

impl RecordProcessor for Nothing {
    fn on_end_record(&self, _record: Box<ServerRecord>) {}
}

impl SpanProcessor for Nothing {
    fn on_start(&self, _span: &mut SdkSpan, _cx: &Context) {}

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Starts the layer's server spans as [`ServerSpan`]s.
#[derive(Clone)]
pub(crate) struct ServerTracer {
    shared: Arc<Shared>,
}

struct Shared {
    sampler: Box<dyn ShouldSample>,
    chain: SharedChain,
    scope: InstrumentationScope,
    limits: SpanLimits,
}

impl fmt::Debug for ServerTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTracer").finish_non_exhaustive()
    }
}

impl ServerTracer {
    /// Spans sampled by `sampler` (the provider's), ended into `chain` (the provider's
    /// processor), under `scope`, with the default limits (the provider's).
    pub(crate) fn new(
        sampler: impl ShouldSample + 'static,
        chain: SharedChain,
        scope: InstrumentationScope,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                sampler: Box::new(sampler),
                chain,
                scope,
                limits: SpanLimits::default(),
            }),
        }
    }

    /// What the SDK's tracer does in `build_with_context`, for a span of this type.
    fn build(&self, builder: SpanBuilder, parent_cx: &Context) -> ServerSpan {
        let shared = &self.shared;
        if parent_cx.is_telemetry_suppressed() || shared.chain.is_shut() {
            return ServerSpan::not_recording(SpanContext::empty_context(), shared.clone());
        }
        let span_id = random_span_id();
        let parent = parent_cx.span();
        let parent_sc = parent.span_context();
        let parent_sc = parent_sc.is_valid().then_some(parent_sc);
        let trace_id = parent_sc.map_or_else(random_trace_id, SpanContext::trace_id);
        let kind = builder.span_kind.clone().unwrap_or(SpanKind::Internal);
        let no_links: &[Link] = &[];
        let result = shared.sampler.should_sample(
            Some(parent_cx),
            trace_id,
            &builder.name,
            &kind,
            builder.attributes.as_deref().unwrap_or(&[]),
            builder.links.as_deref().unwrap_or(no_links),
        );
        let flags = parent_sc.map(SpanContext::trace_flags).unwrap_or_default();
        let sampled = match result.decision {
            SamplingDecision::Drop => {
                let sc = SpanContext::new(
                    trace_id,
                    span_id,
                    Default::default(),
                    false,
                    result.trace_state,
                );
                return ServerSpan::not_recording(sc, shared.clone());
            }
            SamplingDecision::RecordOnly => false,
            SamplingDecision::RecordAndSample => true,
        };
        let sc = SpanContext::new(
            trace_id,
            span_id,
            flags.with_sampled(sampled),
            false,
            result.trace_state,
        );
        let parent = parent_sc.map(|sc| (sc.span_id(), sc.is_remote()));
        let mut record = self.record(builder, sc.clone(), parent, kind, result.attributes);
        self.limit(&mut record);
        ServerSpan {
            data: Some(record),
            span_context: sc,
            shared: shared.clone(),
        }
    }

    /// The record of a span that records: the builder's attributes (then the sampler's),
    /// links and events within the limits, under `parent` (its span id and whether remote).
    fn record(
        &self,
        builder: SpanBuilder,
        span_context: SpanContext,
        parent: Option<(SpanId, bool)>,
        span_kind: SpanKind,
        sampler_attributes: Vec<KeyValue>,
    ) -> Box<ServerRecord> {
        let limits = self.shared.limits;
        let mut attributes = builder.attributes.unwrap_or_default();
        attributes.extend(sampler_attributes);
        // Looked at before iterating: the layer's builder has an empty list of links and
        // none of events, and dropping a flattened iterator over them cost more than this.
        let mut links = SpanLinks::default();
        if let Some(given) = builder.links.filter(|given| !given.is_empty()) {
            for link in given {
                push_link(&mut links, link, &limits);
            }
        }
        let mut events = SpanEvents::default();
        if let Some(given) = builder.events.filter(|given| !given.is_empty()) {
            for event in given {
                push_event(&mut events, event, &limits);
            }
        }
        let start_time = builder.start_time.unwrap_or_else(opentelemetry::time::now);
        Box::new(ServerRecord {
            span: SpanData {
                span_context,
                parent_span_id: parent.map_or(SpanId::INVALID, |(id, _)| id),
                parent_span_is_remote: parent.is_some_and(|(_, remote)| remote),
                span_kind,
                name: builder.name,
                start_time,
                end_time: start_time,
                attributes,
                dropped_attributes_count: 0,
                events,
                links,
                status: Status::Unset,
                instrumentation_scope: self.shared.scope.clone(),
            },
            request: None,
            redacted: Vec::new(),
            status_code: None,
        })
    }

    /// Starts a span as [`build`](Self::build) does and, when it records, lets `fill` add to
    /// it before it becomes the context's span; the attribute limit applies after.
    fn start_with(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        fill: impl FnOnce(&mut ServerRecord),
    ) -> Context {
        let mut span = self.build(builder, parent);
        if let Some(record) = span.data.as_mut() {
            fill(record);
            self.limit(record);
        }
        parent.with_span(span)
    }

    /// Applies the attribute limit after `attributes` were added to the span's list directly.
    fn limit(&self, record: &mut ServerRecord) {
        let limit = self.shared.limits.max_attributes_per_span as usize;
        let span = &mut record.span;
        if span.attributes.len() > limit {
            span.dropped_attributes_count += (span.attributes.len() - limit) as u32;
            span.attributes.truncate(limit);
        }
    }
}

impl ContextTracer for ServerTracer {
    fn start_in(&self, builder: SpanBuilder, parent: &Context) -> Context {
        parent.with_span(self.build(builder, parent))
    }

    /// Lets `attributes` write into the span's own list: no call per attribute through the
    /// context's lock and the boxed span.
    fn start_recorded_in(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        attributes: &mut dyn FnMut(&mut Vec<KeyValue>),
    ) -> Context {
        self.start_with(builder, parent, |record| {
            attributes(&mut record.span.attributes)
        })
    }

    /// Keeps the request's attributes as they are: the export thread encodes them.
    fn start_server(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        request: &mut dyn FnMut() -> ServerRequest,
    ) -> Context {
        self.start_with(builder, parent, |record| {
            let mut request = request();
            // Captured headers join the span's own list, where later attributes go.
            record.span.attributes.extend(request.take_headers());
            record.request = Some(request);
        })
    }
}

/// A random, valid trace id (`fastrand`'s per-thread generator: no lock).
fn random_trace_id() -> TraceId {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return TraceId::from(id);
        }
    }
}

/// A random, valid span id.
fn random_span_id() -> SpanId {
    loop {
        let id = fastrand::u64(..);
        if id != 0 {
            return SpanId::from(id);
        }
    }
}

/// Adds `event` within the limits, as the SDK's span does.
fn push_event(events: &mut SpanEvents, mut event: Event, limits: &SpanLimits) {
    if events.events.len() < limits.max_events_per_span as usize {
        let over = event
            .attributes
            .len()
            .saturating_sub(limits.max_attributes_per_event as usize);
        event
            .attributes
            .truncate(limits.max_attributes_per_event as usize);
        event.dropped_attributes_count = over as u32;
        events.events.push(event);
    } else {
        events.dropped_count += 1;
    }
}

/// Adds `link` within the limits, as the SDK's span does.
fn push_link(links: &mut SpanLinks, mut link: Link, limits: &SpanLimits) {
    if links.links.len() < limits.max_links_per_span as usize {
        let over = link
            .attributes
            .len()
            .saturating_sub(limits.max_attributes_per_link as usize);
        link.attributes
            .truncate(limits.max_attributes_per_link as usize);
        link.dropped_attributes_count = over as u32;
        links.links.push(link);
    } else {
        links.dropped_count += 1;
    }
}

/// The layer's server span: what the processors will receive, filled in place.
pub(crate) struct ServerSpan {
    span_context: SpanContext,
    /// `None` when it does not record, or once ended. Boxed: the context boxes the span, and
    /// the processors and the export queue then move a pointer.
    data: Option<Box<ServerRecord>>,
    shared: Arc<Shared>,
}

/// An ended server span: the `SpanData` of its context, name, times, events, status and the
/// attributes set through the OpenTelemetry API (captured headers, the response's), and the
/// request's attributes as the layer read them ([`ServerRequest`]), which the export thread
/// encodes without ever making `KeyValue`s of them.
#[derive(Debug)]
pub(crate) struct ServerRecord {
    pub(crate) span: SpanData,
    pub(crate) request: Option<ServerRequest>,
    /// Request attributes the redaction policy changed: (key, new text).
    pub(crate) redacted: Vec<(&'static str, String)>,
    /// `http.response.status_code`, when set before any other attribute through the API (the
    /// common case): kept here, written right after the request's attributes, where the SDK's
    /// span would have it, and `span.attributes` needs no allocation for a plain answer.
    pub(crate) status_code: Option<i64>,
}

impl ServerRecord {
    /// The request's attributes but the captured headers, with what redaction replaced, in
    /// the layer's order; then come `span.attributes`.
    pub(crate) fn for_each_request_attribute<'a>(
        &'a self,
        mut f: impl FnMut(&'static str, RequestValue<'a>),
    ) {
        let Some(request) = &self.request else {
            return;
        };
        if self.redacted.is_empty() {
            // The common case: nothing to look up per attribute.
            request.for_each(&mut f);
            if let Some(code) = self.status_code {
                f(HTTP_RESPONSE_STATUS_CODE, RequestValue::Int(code));
            }
            return;
        }
        let mut visit =
            |key: &'static str, value| match self.redacted.iter().find(|(k, _)| *k == key) {
                Some((_, text)) => f(key, RequestValue::Text(text)),
                None => f(key, value),
            };
        request.for_each(&mut visit);
        if let Some(code) = self.status_code {
            visit(HTTP_RESPONSE_STATUS_CODE, RequestValue::Int(code));
        }
    }

    /// Whether a status code set now goes to [`status_code`](Self::status_code): a server
    /// record with nothing set through the API before it.
    fn takes_status_code(&self) -> bool {
        self.request.is_some() && self.status_code.is_none() && self.span.attributes.is_empty()
    }

    /// Whether error tracking may find an error on it: an `exception` event, or an error
    /// status.
    pub(crate) fn may_hold_an_error(&self) -> bool {
        matches!(self.span.status, Status::Error { .. }) || !self.span.events.events.is_empty()
    }

    /// The span as the SDK would have ended it: the request's attributes first, as
    /// `KeyValue`s. For the exporters and readers that take `SpanData`.
    pub(crate) fn into_span_data(self) -> SpanData {
        let mut attributes = self.request_key_values(self.span.attributes.len());
        let mut span = self.span;
        attributes.append(&mut span.attributes);
        span.attributes = attributes;
        span
    }

    /// [`into_span_data`](Self::into_span_data) of a copy.
    pub(crate) fn to_span_data(&self) -> SpanData {
        let mut attributes = self.request_key_values(self.span.attributes.len());
        attributes.extend(self.span.attributes.iter().cloned());
        SpanData {
            attributes,
            ..self.span.clone()
        }
    }

    fn request_key_values(&self, more: usize) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(12 + more);
        self.for_each_request_attribute(|key, value| {
            attributes.push(KeyValue::new(key, value.to_value()));
        });
        attributes
    }
}

impl fmt::Debug for ServerSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSpan")
            .field("span_context", &self.span_context)
            .field("recording", &self.data.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerSpan {
    fn not_recording(span_context: SpanContext, shared: Arc<Shared>) -> Self {
        Self {
            span_context,
            data: None,
            shared,
        }
    }

    fn end_at(&mut self, end_time: Option<SystemTime>) {
        let Some(mut record) = self.data.take() else {
            return;
        };
        if self.shared.chain.is_shut() {
            return;
        }
        record.span.end_time = end_time.unwrap_or_else(opentelemetry::time::now);
        self.shared.chain.inner.processor.on_end_record(record);
    }
}

impl opentelemetry::trace::Span for ServerSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        let limits = self.shared.limits;
        if let Some(record) = self.data.as_mut() {
            push_event(
                &mut record.span.events,
                Event::new(name, timestamp, attributes, 0),
                &limits,
            );
        }
    }

    fn span_context(&self) -> &SpanContext {
        &self.span_context
    }

    fn is_recording(&self) -> bool {
        self.data.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        let limit = self.shared.limits.max_attributes_per_span as usize;
        if let Some(record) = self.data.as_mut() {
            if let (Value::I64(code), true) = (&attribute.value, record.takes_status_code()) {
                if attribute.key.as_str() == HTTP_RESPONSE_STATUS_CODE {
                    record.status_code = Some(*code);
                    return;
                }
            }
            let data = &mut record.span;
            if data.attributes.len() < limit {
                data.attributes.push(attribute);
            } else {
                data.dropped_attributes_count += 1;
            }
        }
    }

    fn set_status(&mut self, status: Status) {
        if let Some(record) = self.data.as_mut() {
            if status > record.span.status {
                record.span.status = status;
            }
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(record) = self.data.as_mut() {
            record.span.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: SpanContext, attributes: Vec<KeyValue>) {
        let limits = self.shared.limits;
        if let Some(record) = self.data.as_mut() {
            push_link(
                &mut record.span.links,
                Link::new(span_context, attributes, 0),
                &limits,
            );
        }
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        self.end_at(Some(timestamp));
    }
}

impl Drop for ServerSpan {
    fn drop(&mut self) {
        self.end_at(None);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::trace::{
        Span as _, SpanContext, TraceContextExt, TraceFlags, TraceState, Tracer as _,
        TracerProvider as _,
    };
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;
    use opentelemetry_sdk::trace::Sampler;

    /// Keeps every ended span.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl RecordProcessor for Kept {
        fn on_end_record(&self, record: Box<ServerRecord>) {
            self.0
                .lock()
                .expect("not poisoned")
                .push(record.into_span_data());
        }
    }

    impl SpanProcessor for Kept {
        fn on_start(&self, _span: &mut SdkSpan, _cx: &Context) {}

        fn on_end(&self, span: SpanData) {
            self.0.lock().expect("not poisoned").push(span);
        }

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    impl Kept {
        fn take(&self) -> Vec<SpanData> {
            std::mem::take(&mut *self.0.lock().expect("not poisoned"))
        }
    }

    /// A provider and a server tracer sharing one chain, as set-up makes them.
    fn pair(sampler: fn() -> Sampler) -> (SdkTracerProvider, ServerTracer, Kept) {
        let kept = Kept::default();
        let resource = Resource::builder_empty().build();
        let chain = SharedChain::new(kept.clone(), &resource);
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler())
            .with_span_processor(chain.clone())
            .build();
        let tracer = ServerTracer::new(
            sampler(),
            chain,
            service_tracing_middleware::tracer::scope("1.0.0"),
        );
        (provider, tracer, kept)
    }

    fn server(name: &'static str) -> SpanBuilder {
        SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(vec![KeyValue::new("http.request.method", "GET")])
    }

    fn remote_parent(flags: TraceFlags) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            flags,
            true,
            TraceState::from_key_value([("vendor", "v1")]).expect("a valid state"),
        ))
    }

    #[test]
    fn a_server_span_ends_as_the_sdk_would_have_ended_it() {
        let (provider, tracer, kept) = pair(|| Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let parent = remote_parent(TraceFlags::SAMPLED);
        // The same span through the SDK's tracer, for comparison.
        let mut sdk_span = provider
            .tracer_with_scope(service_tracing_middleware::tracer::scope("1.0.0"))
            .build_with_context(server("GET /a"), &parent);
        sdk_span.set_attribute(KeyValue::new("http.response.status_code", 200));
        sdk_span.end();
        let cx = tracer.start_recorded_in(server("GET /a"), &parent, &mut |attributes| {
            attributes.push(KeyValue::new("url.path", "/a"));
        });
        let span = cx.span();
        assert!(span.is_recording());
        span.set_attribute(KeyValue::new("http.response.status_code", 200));
        span.add_event("exception", vec![KeyValue::new("exception.type", "io")]);
        span.set_status(Status::error("boom"));
        span.set_status(Status::Unset); // lower: ignored, as the SDK does
        span.end();
        span.set_attribute(KeyValue::new("after.end", true)); // ended: ignored
        drop(cx);

        let mut ended = kept.take();
        assert_eq!(ended.len(), 2, "both spans reach the shared chain once");
        let ours = ended.pop().expect("ours");
        let sdk = ended.pop().expect("the sdk's");
        assert_eq!(ours.span_context.trace_id(), sdk.span_context.trace_id());
        assert_eq!(
            ours.span_context.trace_flags(),
            sdk.span_context.trace_flags()
        );
        assert!(!ours.span_context.is_remote());
        assert_eq!(ours.span_context.trace_state().header(), "vendor=v1");
        assert_ne!(ours.span_context.span_id(), SpanId::INVALID);
        assert_eq!(ours.parent_span_id, sdk.parent_span_id);
        assert_eq!(ours.parent_span_is_remote, sdk.parent_span_is_remote);
        assert!(ours.parent_span_is_remote);
        assert_eq!(ours.span_kind, SpanKind::Server);
        assert_eq!(ours.name, "GET /a");
        assert_eq!(ours.instrumentation_scope, sdk.instrumentation_scope);
        let keys: Vec<&str> = ours.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "http.request.method",
                "url.path",
                "http.response.status_code"
            ]
        );
        assert_eq!(ours.events.len(), 1);
        assert_eq!(ours.status, Status::error("boom"));
        assert!(ours.end_time >= ours.start_time);
    }

    #[test]
    fn the_providers_sampler_decides_and_a_dropped_span_records_nothing() {
        let (_provider, tracer, kept) = pair(|| Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        let cx = tracer.start_recorded_in(
            server("GET /b"),
            &remote_parent(TraceFlags::default()),
            &mut |_| panic!("no attributes are built for a span that does not record"),
        );
        let span = cx.span();
        assert!(!span.is_recording());
        assert!(!span.span_context().is_sampled());
        assert_eq!(
            span.span_context().trace_id(),
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736)
        );
        span.end();
        drop(cx);
        assert!(kept.take().is_empty());

        let (_provider, tracer, kept) = pair(|| Sampler::AlwaysOff);
        drop(tracer.start_in(server("GET /c"), &Context::new()));
        assert!(kept.take().is_empty());
    }

    #[test]
    fn a_new_root_gets_fresh_ids_and_attributes_past_the_limit_are_counted() {
        let (_provider, tracer, kept) = pair(|| Sampler::AlwaysOn);
        let cx = tracer.start_recorded_in(server("GET /d"), &Context::new(), &mut |attributes| {
            for i in 0..200 {
                attributes.push(KeyValue::new(format!("k{i}"), i));
            }
        });
        drop(cx); // dropping the last context ends the span
        let other = tracer.start_in(server("GET /d"), &Context::new());
        let other_trace = other.span().span_context().trace_id();
        drop(other);
        let ended = kept.take();
        assert_eq!(ended.len(), 2);
        let span = &ended[0];
        assert_eq!(span.attributes.len(), 128);
        assert_eq!(span.dropped_attributes_count, 1 + 200 - 128);
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert!(!span.parent_span_is_remote);
        assert!(span.span_context.is_sampled());
        assert_ne!(span.span_context.trace_id(), TraceId::INVALID);
        assert_ne!(span.span_context.trace_id(), other_trace);
    }

    #[test]
    fn after_the_providers_shutdown_and_under_suppression_nothing_records() {
        let (provider, tracer, kept) = pair(|| Sampler::AlwaysOn);
        let cx = tracer.start_in(server("GET /e"), &Context::new());
        provider.shutdown().expect("a first shutdown");
        assert!(!tracer
            .start_in(server("GET /e"), &Context::new())
            .span()
            .is_recording());
        drop(cx); // started before, ended after the shutdown: not delivered, as with the SDK
        assert!(kept.take().is_empty());

        let (_provider, tracer, _kept) = pair(|| Sampler::AlwaysOn);
        let suppressed = Context::new().with_telemetry_suppressed();
        assert!(!tracer
            .start_in(server("GET /f"), &suppressed)
            .span()
            .is_recording());
    }

    /// Keeps every ended server record as it is.
    #[derive(Debug, Clone, Default)]
    struct Records(Arc<Mutex<Vec<ServerRecord>>>);

    impl RecordProcessor for Records {
        fn on_end_record(&self, record: Box<ServerRecord>) {
            self.0.lock().expect("not poisoned").push(*record);
        }
    }

    impl SpanProcessor for Records {
        fn on_start(&self, _span: &mut SdkSpan, _cx: &Context) {}

        fn on_end(&self, _span: SpanData) {}

        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }

        fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
            Ok(())
        }
    }

    /// A request with every attribute the layer reads but a route: an unknown method, an
    /// absolute target with a port and a query, a user agent and a peer.
    fn rich_request(agent: &str) -> ServerRequest {
        let mut req = http::Request::builder()
            .method("PURGE")
            .uri("http://shop.local:8080/cart/7?token=s3cr3t&x")
            .header("user-agent", agent)
            .body(())
            .expect("a request");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [10, 1, 2, 3],
                5555,
            ))));
        service_tracing_middleware::test_server_request(&req)
    }

    /// A server span's builder as the layer gives it with [`ServerTracer::start_server`]: its
    /// attributes all come from the request.
    fn bare_server(name: &'static str) -> SpanBuilder {
        SpanBuilder::from_name(name).with_kind(SpanKind::Server)
    }

    /// The server record `tracer` ends for `request`, with a status code set afterwards.
    fn record_of(request: ServerRequest) -> Box<ServerRecord> {
        let records = Records::default();
        let tracer = ServerTracer::new(
            Sampler::AlwaysOn,
            SharedChain::new(records.clone(), &Resource::builder_empty().build()),
            service_tracing_middleware::tracer::scope("1.0.0"),
        );
        let cx = tracer.start_server(bare_server("HTTP"), &Context::new(), &mut || {
            request.clone()
        });
        cx.span()
            .set_attribute(KeyValue::new("http.response.status_code", 200));
        drop(cx);
        let mut kept = records.0.lock().expect("not poisoned");
        assert_eq!(kept.len(), 1);
        Box::new(kept.pop().expect("one record"))
    }

    #[test]
    fn a_server_record_reads_and_encodes_as_the_sdks_span_would() {
        let request = rich_request("checkout-web/2.3.1");
        // The SDK's tracer, given the same request through the default `start_server`.
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(kept.clone())
            .build();
        let sdk_tracer = provider.tracer("t");
        let cx = ContextTracer::start_server(
            &sdk_tracer,
            bare_server("HTTP"),
            &Context::new(),
            &mut || request.clone(),
        );
        cx.span()
            .set_attribute(KeyValue::new("http.response.status_code", 200));
        drop(cx);
        let sdk = kept.take().pop().expect("the SDK's span");

        let record = record_of(request);
        let ours = record.to_span_data();
        assert_eq!(ours.attributes, sdk.attributes);
        let keys: Vec<&str> = ours.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "http.request.method",
                "url.path",
                "url.scheme",
                "correlation.id",
                "http.request.method_original",
                "url.query",
                "server.address",
                "server.port",
                "client.address",
                "network.protocol.version",
                "user_agent.original",
                "http.response.status_code",
            ]
        );
        let text = |key: &str| {
            ours.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.to_string())
        };
        assert_eq!(text("url.query").as_deref(), Some("token=REDACTED&x"));
        assert_eq!(text("client.address").as_deref(), Some("10.1.2.3"));
        assert_eq!(text("server.port").as_deref(), Some("8080"));

        // The fast exporter's bytes for the record equal those for the SDK's form of it.
        let mut encoder = crate::export::otlp_fast::encode::Encoder::default();
        let (mut as_record, mut as_span) = (Vec::new(), Vec::new());
        encoder
            .encode(
                &[crate::export::batch::Queued::Server(record)],
                &mut as_record,
            )
            .expect("encodes");
        encoder.encode(&[ours], &mut as_span).expect("encodes");
        assert_eq!(as_record, as_span);
    }

    #[test]
    fn an_encoder_reused_across_batches_of_records_writes_what_a_fresh_one_does() {
        use crate::export::batch::Queued;
        use crate::export::otlp_fast::encode::Encoder;
        // Its scratch keeps stale bytes from a larger batch (a 300-byte user agent each) when
        // it encodes a smaller one of shorter texts, and grows mid-batch from nothing.
        let long = &"agent/1 ".repeat(40)[..300];
        let batch = |agent: &str, n: usize| -> Vec<Queued> {
            (0..n)
                .map(|_| Queued::Server(record_of(rich_request(agent))))
                .collect()
        };
        let mut reused = Encoder::default();
        for (agent, n) in [(long, 40), ("curl/8", 3), (long, 1), ("x", 50)] {
            let spans = batch(agent, n);
            let (mut by_reused, mut by_fresh) = (Vec::new(), Vec::new());
            reused.encode(&spans, &mut by_reused).expect("encodes");
            Encoder::default()
                .encode(&spans, &mut by_fresh)
                .expect("encodes");
            assert_eq!(by_reused, by_fresh, "{n} records of {} bytes", agent.len());
            let sdk: Vec<SpanData> = spans.into_iter().map(Queued::into_span_data).collect();
            let mut by_sdk = Vec::new();
            Encoder::default()
                .encode(&sdk, &mut by_sdk)
                .expect("encodes");
            assert_eq!(by_reused, by_sdk);
        }
    }

    #[test]
    fn request_texts_longer_than_a_one_byte_length_encode_as_the_sdks_span_would() {
        // A 300-byte user agent: its `KeyValue`'s lengths take two bytes each.
        let record = record_of(rich_request(&"agent/1 ".repeat(40)[..300]));
        let ours = record.to_span_data();
        let mut encoder = crate::export::otlp_fast::encode::Encoder::default();
        let (mut as_record, mut as_span) = (Vec::new(), Vec::new());
        encoder
            .encode(
                &[crate::export::batch::Queued::Server(record)],
                &mut as_record,
            )
            .expect("encodes");
        encoder.encode(&[ours], &mut as_span).expect("encodes");
        assert_eq!(as_record, as_span);
    }

    #[test]
    fn redaction_reaches_a_records_request_attributes() {
        let redactor = crate::redact::Redactor::new();
        // A clean user agent, twice (the same shared text: the second look is remembered),
        // then one holding an address.
        for _ in 0..2 {
            let mut record = record_of(rich_request("checkout-web/2.3.1"));
            redactor.redact_record(&mut record);
            assert!(record.redacted.is_empty(), "{:?}", record.redacted);
        }
        let mut record = record_of(rich_request("checkout-web/2.3.1 (bob@example.com)"));
        redactor.redact_record(&mut record);
        let span = record.to_span_data();
        let agent = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "user_agent.original")
            .map(|kv| kv.value.to_string());
        assert_eq!(agent.as_deref(), Some("checkout-web/2.3.1 ([REDACTED])"));

        // A key the policy denies loses its value, whatever it is.
        let denying = crate::redact::Redactor::new().with_denied_key("client.address");
        let mut record = record_of(rich_request("curl/8"));
        denying.redact_record(&mut record);
        let mut encoder = crate::export::otlp_fast::encode::Encoder::default();
        let mut bytes = Vec::new();
        encoder
            .encode(&[crate::export::batch::Queued::Server(record)], &mut bytes)
            .expect("encodes");
        let encoded = String::from_utf8_lossy(&bytes);
        assert!(!encoded.contains("10.1.2.3"));
        assert!(encoded.contains("client.address"));
        assert!(encoded.contains(crate::redact::REDACTED));
    }

    #[test]
    fn the_status_code_keeps_its_place_among_the_attributes() {
        // Set first: kept beside the request's attributes, no list allocated.
        let record = record_of(rich_request("curl/8"));
        assert_eq!(record.status_code, Some(200));
        assert!(record.span.attributes.is_empty());
        assert_eq!(record.span.attributes.capacity(), 0);

        // Set after an attribute of the handler's: after it, as the SDK's span has it.
        let records = Records::default();
        let tracer = ServerTracer::new(
            Sampler::AlwaysOn,
            SharedChain::new(records.clone(), &Resource::builder_empty().build()),
            service_tracing_middleware::tracer::scope("1.0.0"),
        );
        let request = rich_request("curl/8");
        let cx = tracer.start_server(bare_server("HTTP"), &Context::new(), &mut || {
            request.clone()
        });
        cx.span().set_attribute(KeyValue::new("app.cart", 7));
        cx.span()
            .set_attribute(KeyValue::new("http.response.status_code", 404));
        drop(cx);
        let record = records
            .0
            .lock()
            .expect("not poisoned")
            .pop()
            .expect("a record");
        assert_eq!(record.status_code, None);
        let span = record.into_span_data();
        let tail: Vec<String> = span.attributes[span.attributes.len() - 2..]
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect();
        assert_eq!(tail, ["app.cart=7", "http.response.status_code=404"]);

        // A policy that denies the key takes the value out.
        let mut record = record_of(rich_request("curl/8"));
        crate::redact::Redactor::new()
            .with_denied_key("http.response.status_code")
            .redact_record(&mut record);
        let span = record.into_span_data();
        let code = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "http.response.status_code")
            .map(|kv| kv.value.to_string());
        assert_eq!(code.as_deref(), Some(crate::redact::REDACTED));
    }
}
