//! End-to-end: real servers on loopback, the real traced client, and a real OpenTelemetry
//! collector (`rotel-agent`) whose debug output is read back.
//!
//! Most tests install process-wide state (tracer provider, propagator, subscriber) with `init`,
//! as a service does, so the suite runs under cargo-nextest, which gives every test its own
//! process (see `.config/nextest.toml`). `build_scoped` installs none
//! (`two_scoped_setups_export_to_their_own_collectors_without_globals`).
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

/// Counts live heap bytes for the memory test of a refusing backend (two atomic adds per
/// allocation: nothing the latency checks of other tests notice).
#[global_allocator]
static ALLOCATOR: &stats_alloc::StatsAlloc<std::alloc::System> = &stats_alloc::INSTRUMENTED_SYSTEM;

#[cfg(feature = "pages")]
#[path = "../support/browser.rs"]
mod browser;
#[path = "../support/collector.rs"]
mod collector;
#[cfg(feature = "kafka")]
#[path = "../support/kafka.rs"]
mod kafka;
#[path = "../support/otlp_proxy.rs"]
mod otlp_proxy;
#[cfg(feature = "amqp")]
#[path = "../support/rabbitmq.rs"]
mod rabbitmq;
#[cfg(feature = "redis")]
#[path = "../support/redis.rs"]
mod redis_server;
mod support;
#[cfg(feature = "tls")]
#[path = "../support/tls_proxy.rs"]
mod tls_proxy;

mod a_backend_refusing_every_export_costs_counted_spans_not_memory;
#[cfg(feature = "tls")]
mod a_bare_grpc_endpoint_uses_tls_unless_insecure;
mod a_dead_webhook_never_delays_requests;
mod a_distant_collector_gets_every_span_of_a_steady_stream;
mod alerts_reach_a_real_webhook_once_per_cooldown;
#[cfg(feature = "tls")]
mod alerts_reach_an_https_webhook_that_trusts_its_ca;
mod application_errors_reach_the_groups;
mod bottleneck_report_names_the_slow_child_span;
mod collector_down_never_affects_requests;
mod correlation_ids_follow_the_configured_charset;
#[cfg(feature = "cpu-profile")]
mod cpu_profile_under_load_shows_the_busy_handler;
mod each_signal_reaches_the_collector_over_its_own_protocol;
mod error_groups_and_alerts_reach_the_collector_as_log_records;
mod error_groups_reach_the_summary;
#[cfg(feature = "redis")]
mod errors_are_shared_through_redis;
mod export_traffic_never_becomes_spans;
mod failing_and_slow_requests_of_dropped_traces_are_kept;
mod gzip_spans_reach_the_collector_over_both_protocols;
mod http_metrics_reach_prometheus_and_the_collector;
mod log_lines_carry_trace_and_correlation_ids;
#[cfg(feature = "kafka")]
mod messages_carry_the_trace_and_correlation_id_through_kafka;
#[cfg(feature = "amqp")]
mod messages_carry_the_trace_and_correlation_id_through_rabbitmq;
mod metric_and_log_exports_are_retried_like_spans;
#[cfg(feature = "tls")]
mod metrics_and_log_records_reach_an_https_collector_over_both_protocols;
#[cfg(feature = "tls")]
mod mtls_collectors_take_spans_and_metrics_only_from_a_certified_client;
mod one_trace_crosses_frontend_client_and_backend;
mod planted_secrets_never_reach_the_collector;
mod profiling_counts_every_request_although_nothing_is_sampled;
mod quickstart_prints_trees_of_both_services;
mod refused_and_failed_metrics_and_log_records_are_counted_apart;
#[cfg(feature = "redis")]
mod request_chains_outlive_a_redis_outage;
mod resources_reach_the_summary_prometheus_and_the_collector;
mod route_rules_choose_what_reaches_the_collector;
mod routes_added_after_setup_are_untraced_unless_the_layer_goes_last;
mod setup_errors_name_the_setting;
mod sigterm_ends_the_production_example_and_every_span_reaches_the_collector;
#[cfg(feature = "tls")]
mod spans_reach_an_https_collector_over_both_protocols;
mod the_agent_example_answers_and_its_work_spans_reach_the_collector;
#[cfg(all(feature = "amqp", feature = "redis"))]
mod the_chain_of_a_message_lists_every_step_across_services;
mod the_health_route_reports_export_at_a_real_collector;
#[cfg(feature = "pages")]
mod the_pages_store_stays_within_its_byte_bound;
#[cfg(feature = "pages")]
mod the_pages_work_in_a_real_browser;
#[cfg(all(feature = "pages", feature = "redis"))]
mod the_trace_page_shows_the_spans_other_services_left_in_the_chain_store;
#[cfg(feature = "tls")]
mod the_traced_client_calls_https_with_the_trace_context;
mod throttled_exports_are_retried_and_every_span_arrives_once;
mod traced_clients_speak_the_propagators_set_up_chose;
#[cfg(feature = "macros")]
mod traced_functions_reach_the_collector_under_their_request;
mod two_scoped_setups_export_to_their_own_collectors_without_globals;
mod untrusted_callers_start_new_linked_traces;
mod work_inside_a_request_reaches_the_collector_as_one_trace;
