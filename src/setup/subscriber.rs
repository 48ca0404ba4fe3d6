//! The `tracing` subscriber set-up installs: log lines with their ids, and the bridge from
//! `tracing` spans to OpenTelemetry.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{SetupError, SetupErrorKind};
use crate::logging::{bridge_filter, TraceIdFormat};
use crate::redact::Redactor;

pub(super) fn already_set() -> SetupError {
    SetupError::new(
        SetupErrorKind::SubscriberAlreadySet,
        "a global `tracing` subscriber is already installed, so service-tracing cannot install \
         its own. Either set tracing up first with \
         `ServiceTracing::builder(name).install_subscriber(false).init(app)` and add \
         `guard.bridge_layer()` to your subscriber (e.g. `registry().with(your_fmt_layer)\
         .with(guard.bridge_layer())`), or remove your subscriber and let service-tracing \
         install one",
    )
}

/// Whether a global `tracing` subscriber is installed. `tracing::dispatcher::has_been_set`
/// also counts thread defaults (`set_default`, as a scoped set-up is used), so this asks a
/// thread that has none which dispatcher it falls back to. Set-up runs once; the thread costs
/// well under a millisecond.
pub(super) fn global_subscriber_is_set() -> bool {
    std::thread::spawn(|| {
        tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>())
    })
    .join()
    .unwrap_or(true)
}

pub(super) fn install_subscriber(
    provider: Option<&SdkTracerProvider>,
    filter: EnvFilter,
    redactor: &Redactor,
) -> Result<(), SetupError> {
    subscriber(provider, filter, redactor)
        .try_init()
        .map_err(|_| already_set())
}

/// The subscriber `init` installs, as a [`Dispatch`] to use with
/// [`tracing::dispatcher::set_default`] (the scoped set-up).
pub(super) fn dispatch(
    provider: Option<&SdkTracerProvider>,
    filter: EnvFilter,
    redactor: &Redactor,
) -> Dispatch {
    Dispatch::new(subscriber(provider, filter, redactor))
}

/// Log lines (filtered by `filter`) with their ids, and the bridge to `provider`'s tracer.
fn subscriber(
    provider: Option<&SdkTracerProvider>,
    filter: EnvFilter,
    redactor: &Redactor,
) -> impl tracing::Subscriber + Send + Sync + Into<Dispatch> {
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(TraceIdFormat::new().with_redactor(redactor.clone()))
        .with_filter(filter);
    let bridge = provider.map(|p| bridge_layer(p.tracer("service-tracing")));
    // Found by the work spans (`crate::work`) through the current dispatcher. Filtered to
    // nothing: a layer with no filter of its own would make every callsite the other layers
    // disabled ("never", free) one the dispatcher asks about on each event ("sometimes").
    let work = provider.map(|p| {
        crate::work::WorkProvider(p.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::OFF)
    });
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(bridge)
        .with(work)
}

/// The bridge layer's type, named so it can be handed out.
///
/// The OpenTelemetry layer of `tracing-opentelemetry`, followed by
/// [`ErrorEventLayer`](crate::errors::ErrorEventLayer) so `ERROR` events reach error tracking.
pub type BridgeLayer<S> = tracing_subscriber::filter::Filtered<
    tracing_subscriber::layer::Layered<
        crate::errors::ErrorEventLayer,
        tracing_opentelemetry::OpenTelemetryLayer<S, Tracer>,
        S,
    >,
    tracing_subscriber::filter::Targets,
    S,
>;

pub(super) fn bridge_layer<S>(tracer: Tracer) -> BridgeLayer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .and_then(crate::errors::ErrorEventLayer::new())
        .with_filter(bridge_filter())
}
