//! The server layer, request by request, against an in-memory exporter.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod support;

mod b3_and_jaeger_round_trip_and_mix;
mod continues_valid_traceparent_and_restarts_on_malformed;
mod correlation_id_is_read_validated_and_echoed;
mod fuzz_corpus_replays_cleanly;
mod headers_are_captured_only_when_allowed;
mod hostile_headers_are_capped_and_still_served;
mod observers_see_every_request_whatever_the_sampler;
mod panics_become_500_with_exception_event;
mod sampler_hint_skips_only_what_the_sampler_ignores;
mod server_span_follows_http_semantic_conventions;
mod trust_boundary_decides_whose_context_is_continued;
mod w3c_trace_context_spec_cases;
