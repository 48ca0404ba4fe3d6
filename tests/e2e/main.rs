//! End-to-end: real servers on loopback, the real traced client, and a real OpenTelemetry
//! collector (`rotel-agent`) whose debug output is read back.
//!
//! Each test installs process-wide state (tracer provider, propagator, subscriber), so the
//! suite runs under cargo-nextest, which gives every test its own process (see
//! `.config/nextest.toml`).
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

#[path = "../support/collector.rs"]
mod collector;
mod support;

mod collector_down_never_affects_requests;
#[cfg(feature = "cpu-profile")]
mod cpu_profile_under_load_shows_the_busy_handler;
mod error_groups_reach_the_summary;
mod export_traffic_never_becomes_spans;
mod http_metrics_reach_prometheus_and_the_collector;
mod log_lines_carry_trace_and_correlation_ids;
mod one_trace_crosses_frontend_client_and_backend;
mod quickstart_prints_trees_of_both_services;
mod setup_errors_name_the_setting;
mod untrusted_callers_start_new_linked_traces;
