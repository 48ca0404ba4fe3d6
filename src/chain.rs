//! One processor in front of another: error tracking and profiling each see an ended span
//! first (profiling may add its `performance.slow` event), then hand it on, so the provider
//! holds one processor chain and the SDK does not clone each span per processor.

use std::fmt;
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

use crate::server_span::ServerRecord;

/// A span processor that also takes the layer's server spans as they are
/// ([`ServerRecord`]: the request's attributes not made into `KeyValue`s).
pub(crate) trait RecordProcessor: SpanProcessor {
    /// An ended server span.
    fn on_end_record(&self, record: Box<ServerRecord>);
}

/// What sits in front of the next processor.
pub(crate) trait SpanHook: fmt::Debug + Send + Sync + 'static {
    /// Sees an ended span before the next processor; may add to it.
    fn on_end(&self, span: &mut SpanData);
    /// Sees an ended server span before the next processor; may add to it.
    fn on_end_record(&self, record: &mut ServerRecord);
    /// Makes everything seen so far readable; called on flush and shutdown, before the next
    /// processor's.
    fn flush(&self);
}

/// `hook` in front of `next`.
#[derive(Debug)]
pub(crate) struct InFrontOf<H, P> {
    hook: H,
    next: P,
}

impl<H, P> InFrontOf<H, P> {
    pub(crate) fn new(hook: H, next: P) -> Self {
        Self { hook, next }
    }
}

impl<H: SpanHook, P: RecordProcessor> RecordProcessor for InFrontOf<H, P> {
    fn on_end_record(&self, mut record: Box<ServerRecord>) {
        self.hook.on_end_record(&mut record);
        self.next.on_end_record(record);
    }
}

impl<H: SpanHook, P: SpanProcessor> SpanProcessor for InFrontOf<H, P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.next.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        self.hook.on_end(&mut span);
        self.next.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.hook.flush();
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.hook.flush();
        self.next.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.hook.flush();
        self.next.shutdown()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource);
    }
}
