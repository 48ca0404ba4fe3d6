//! The client middleware, call by call, against a real loopback server and an in-memory
//! exporter.

mod support;

mod client_span_follows_http_client_semantic_conventions;
mod context_and_correlation_id_are_injected_without_overwriting;
mod each_retry_attempt_is_its_own_span;
mod failures_mark_the_span_as_error;
mod headers_are_captured_only_when_allowed;
mod per_request_extensions_rename_or_skip_propagation;
mod tracestate_survives_the_hop_through_a_traced_service;
