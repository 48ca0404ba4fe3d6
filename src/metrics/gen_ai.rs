//! The generative AI client metrics the LLM helper ([`crate::work::llm`]) records:
//! `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`, with the semantic
//! conventions' advisory buckets (semantic conventions v1.41.0).
//!
//! Recorded through the global meter provider, which set-up installs when metrics are on (a
//! no-op before), for every LLM call whatever the trace sampler decided.

use std::time::Duration;

use opentelemetry::{global, InstrumentationScope, KeyValue};

/// The conventions' advisory buckets for `gen_ai.client.token.usage`, in tokens.
///
/// ```
/// assert_eq!(service_tracing::metrics::GEN_AI_TOKEN_USAGE_BOUNDARIES[0], 1.0);
/// ```
pub const GEN_AI_TOKEN_USAGE_BOUNDARIES: [f64; 14] = [
    1.0,
    4.0,
    16.0,
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// The conventions' advisory buckets for `gen_ai.client.operation.duration`, in seconds.
///
/// ```
/// assert_eq!(service_tracing::metrics::GEN_AI_DURATION_BOUNDARIES[13], 81.92);
/// ```
pub const GEN_AI_DURATION_BOUNDARIES: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// One finished LLM call, as the metrics take it.
pub(crate) struct GenAiCall<'a> {
    /// `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, and when known
    /// `gen_ai.response.model`, `server.address`, `server.port`.
    pub(crate) attributes: Vec<KeyValue>,
    /// `error.type`, when the call failed.
    pub(crate) error_type: Option<&'a str>,
    pub(crate) elapsed: Duration,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
}

/// Records `call` into both instruments of the global meter provider as it is now. The
/// provider is read per call (one uncontended read lock and the SDK's instrument lookup, a
/// few microseconds against an LLM call's hundreds of milliseconds), so a provider set up
/// after the first call is still the one recorded into.
pub(crate) fn record(call: GenAiCall<'_>) {
    let scope = InstrumentationScope::builder("service-tracing")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let meter = global::meter_provider().meter_with_scope(scope);
    let mut attributes = call.attributes;
    if call.input_tokens.is_some() || call.output_tokens.is_some() {
        let usage = meter
            .u64_histogram("gen_ai.client.token.usage")
            .with_unit("{token}")
            .with_description("Number of input and output tokens used.")
            .with_boundaries(GEN_AI_TOKEN_USAGE_BOUNDARIES.to_vec())
            .build();
        for (kind, count) in [("input", call.input_tokens), ("output", call.output_tokens)] {
            if let Some(count) = count {
                attributes.push(KeyValue::new("gen_ai.token.type", kind));
                usage.record(count, &attributes);
                attributes.pop();
            }
        }
    }
    if let Some(error_type) = call.error_type {
        attributes.push(KeyValue::new("error.type", error_type.to_owned()));
    }
    meter
        .f64_histogram("gen_ai.client.operation.duration")
        .with_unit("s")
        .with_description("GenAI operation duration.")
        .with_boundaries(GEN_AI_DURATION_BOUNDARIES.to_vec())
        .build()
        .record(call.elapsed.as_secs_f64(), &attributes);
}
