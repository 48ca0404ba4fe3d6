use std::collections::BTreeMap;

use super::*;

fn vars(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("collector.internal".to_owned()),
        "KEY" => Some("a,b=c d%".to_owned()),
        "BAD_URL" => Some("not a url".to_owned()),
        _ => None,
    }
}

fn toml(text: &str) -> Result<FileSettings, String> {
    parse("tracing.toml", text, Format::Toml, &vars).map_err(|e| e.to_string())
}

fn yaml(text: &str) -> Result<FileSettings, String> {
    parse("tracing.yaml", text, Format::Yaml, &vars).map_err(|e| e.to_string())
}

fn var_map(settings: &FileSettings) -> BTreeMap<&'static str, String> {
    settings.vars().into_iter().collect()
}

const EXAMPLE_TOML: &str = include_str!("../../../examples/config.toml");
const EXAMPLE_YAML: &str = include_str!("../../../examples/config.yaml");

#[test]
fn the_examples_parse_and_say_the_same() {
    let t = toml(EXAMPLE_TOML).expect("examples/config.toml");
    let y = yaml(EXAMPLE_YAML).expect("examples/config.yaml");
    assert_eq!(var_map(&t), var_map(&y));
    assert_eq!(format!("{t:?}"), format!("{y:?}"));
    // The defaults, written as the variables would be.
    let v = var_map(&t);
    assert_eq!(v["OTEL_EXPORTER_OTLP_TIMEOUT"], "10000");
    assert_eq!(v["OTEL_BSP_SCHEDULE_DELAY"], "5000");
    assert_eq!(v["OTEL_TRACES_SAMPLER"], "parentbased_always_on");
    assert_eq!(v["OTEL_PROPAGATORS"], "tracecontext,baggage");
    assert!(!v.contains_key("OTEL_TRACES_EXPORTER"));
    assert!(!v.contains_key("OTEL_EXPORTER_OTLP_ENDPOINT"));
}

/// Every key of the schema appears in both examples (set, or commented out when it has no
/// fixed default).
#[test]
fn the_examples_hold_every_key() {
    let sections: &[(&str, &[&str])] = &[
        ("", &["disabled"]),
        (
            "service",
            &["name", "version", "environment", "resource_attributes"],
        ),
        (
            "export",
            &[
                "exporter",
                "endpoint",
                "traces_endpoint",
                "metrics_endpoint",
                "logs_endpoint",
                "protocol",
                "metrics_protocol",
                "logs_protocol",
                "headers",
                "timeout",
                "compression",
                "insecure",
                "certificate",
                "client_certificate",
                "client_key",
                "logs_exporter",
                "batch",
            ],
        ),
        (
            "batch",
            &[
                "max_queue_size",
                "schedule_delay",
                "max_export_batch_size",
                "export_timeout",
            ],
        ),
        (
            "sampling",
            &[
                "sampler",
                "ratio",
                "rules",
                "otherwise",
                "keep_errors",
                "keep_slower_than",
            ],
        ),
        (
            "propagation",
            &[
                "propagators",
                "trust_incoming",
                "trust_networks",
                "trust_headers",
                "correlation_id_extra_chars",
                "correlation_headers",
                "correlation_response_header",
                "traceresponse",
            ],
        ),
        (
            "http",
            &[
                "untraced_routes",
                "capture_request_headers",
                "capture_response_headers",
            ],
        ),
        (
            "errors",
            &[
                "enabled",
                "max_groups",
                "backtraces",
                "redis_url",
                "request_chains",
                "webhook",
                "webhook_ca_certificate",
                "alerts",
            ],
        ),
        ("redaction", &["keys", "patterns"]),
        (
            "profiling",
            &[
                "enabled",
                "max_operations",
                "slow_log_interval",
                "auto_slow_threshold",
                "slow_thresholds",
                "process_sampling",
                "process_sample_interval",
            ],
        ),
        (
            "metrics",
            &["exporter", "interval", "timeout", "prometheus_route"],
        ),
        (
            "health",
            &["route", "unhealthy_after", "networks", "bearer_token"],
        ),
        (
            "pages",
            &[
                "route",
                "networks",
                "bearer_token",
                "max_traces",
                "max_bytes",
                "max_spans_per_trace",
                "max_bytes_per_trace",
                "max_routes",
            ],
        ),
        ("logging", &["install_subscriber", "filter"]),
        ("shutdown", &["timeout"]),
    ];
    for (section, keys) in sections {
        for key in *keys {
            let in_toml = EXAMPLE_TOML.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{key} =")) || l == format!("[export.{key}]")
            });
            let in_yaml = EXAMPLE_YAML.lines().any(|l| {
                l.trim_start_matches(['#', ' '])
                    .starts_with(&format!("{key}:"))
            });
            assert!(in_toml, "{section}.{key} missing from examples/config.toml");
            assert!(in_yaml, "{section}.{key} missing from examples/config.yaml");
        }
    }
}

#[test]
fn variables_are_substituted_and_written_as_the_environment_would() {
    let s = toml(
        "[export]\nendpoint = \"https://${HOST}:4318\"\nheaders = { api-key = \"${KEY}\" }\n\
         timeout = \"1m 30s\"\n[sampling]\nratio = ${RATIO:-0.25}\nsampler = \"traceidratio\"\n",
    )
    .expect("valid");
    let v = var_map(&s);
    assert_eq!(
        v["OTEL_EXPORTER_OTLP_ENDPOINT"],
        "https://collector.internal:4318"
    );
    assert_eq!(v["OTEL_EXPORTER_OTLP_TIMEOUT"], "90000");
    assert_eq!(v["OTEL_TRACES_SAMPLER_ARG"], "0.25");
    // Percent-encoded, so the header list reads back as one header with the value as given.
    let headers =
        crate::config::env::key_values("h", &v["OTEL_EXPORTER_OTLP_HEADERS"]).expect("valid");
    assert_eq!(headers, vec![("api-key".to_owned(), "a,b=c d%".to_owned())]);
}

#[test]
fn an_unknown_key_names_the_file_line_column_and_the_keys_accepted() {
    let e =
        toml("[export]\nprotocol = \"grpc\"\nendpont = \"http://x:4317\"\n").expect_err("refused");
    assert!(e.starts_with("tracing.toml:3:1: "), "{e}");
    assert!(e.contains("endpont") && e.contains("endpoint"), "{e}");
    let e = yaml("export:\n  protocol: grpc\n  endpont: http://x:4317\n").expect_err("refused");
    assert!(e.starts_with("tracing.yaml:3:3: "), "{e}");
    assert!(e.contains("endpont"), "{e}");
    let e = toml("[exporter]\n").expect_err("refused");
    assert!(e.starts_with("tracing.toml:1:"), "{e}");
}

#[test]
fn a_bad_value_names_its_place_and_the_values_accepted() {
    let e = toml("[export]\nprotocol = \"http/json\"\n").expect_err("refused");
    assert_eq!(
        e,
        "tracing.toml:2:12: unknown variant `http/json`, expected `grpc` or `http/protobuf`"
    );
    let e = yaml("sampling:\n  sampler: sometimes\n").expect_err("refused");
    assert_eq!(
        e,
        "tracing.yaml:2:12: unknown variant `sometimes`, expected one of always_on, \
         always_off, traceidratio, parentbased_always_on, parentbased_always_off, \
         parentbased_traceidratio"
    );
    let e = yaml("export:\n  timeout: [1\n").expect_err("refused");
    assert!(e.starts_with("tracing.yaml:2:12: "), "{e}");
    let e = toml("[export]\ntimeout = \"ten seconds\"\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:11: ") && e.contains("\"10s\""),
        "{e}"
    );
    let e = toml("[sampling]\nratio = 1.5\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:9: ") && e.contains("0 to 1"),
        "{e}"
    );
    let e = toml("[export.batch]\nmax_queue_size = 0\n").expect_err("refused");
    assert!(e.starts_with("tracing.toml:2:18: "), "{e}");
    let e = toml("[redaction]\npatterns = [\"(unclosed\"]\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:") && e.contains("regular expression"),
        "{e}"
    );
    let e = toml("[sampling]\nrules = [{ route = \"/a\", sample = \"often\" }]\n")
        .expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:") && e.contains("\"10/s\""),
        "{e}"
    );
    let e = toml("[health]\nroute = \"health\"\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:9: ") && e.contains("starting with /"),
        "{e}"
    );
    let e = toml("[export]\nendpoint = \"ftp://collector\"\n").expect_err("refused");
    assert!(e.starts_with("tracing.toml:2:12: "), "{e}");
    let e =
        toml("[propagation]\npropagators = [\"tracecontext\", \"zipkin\"]\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:") && e.contains("b3multi"),
        "{e}"
    );
}

#[test]
fn errors_after_a_substitution_point_into_the_file_as_written() {
    // The value came from ${BAD_URL}: the error is where `${` was written.
    let e = toml("[export]\nendpoint = \"${BAD_URL}\"\n").expect_err("refused");
    assert!(e.starts_with("tracing.toml:2:12: "), "{e}");
    // After a substitution on the same line, columns are the file's, not the expanded text's.
    let e = toml("[service]\nenvironment = \"${HOST}\"\n[export]\nprotocol = 7\n")
        .expect_err("refused");
    assert!(e.starts_with("tracing.toml:4:12: "), "{e}");
    let e = toml("[export]\nheaders = { a = \"${HOST}\" }\ntimeout = \"${HOST}\"\n")
        .expect_err("refused");
    assert!(e.starts_with("tracing.toml:3:11: "), "{e}");
    let e = toml("[export]\nendpoint = \"${MISSING}\"\n").expect_err("refused");
    assert!(
        e.starts_with("tracing.toml:2:13: ") && e.contains("MISSING"),
        "{e}"
    );
}

#[test]
fn odd_input_is_an_error_not_a_panic() {
    for text in [
        "",
        "\u{feff}",
        "[",
        "= 1",
        "[service]\nname = \"é\u{0}\"\n",
        "${",
        "$$$$${",
        "a = \"\\u{ZZZZ}\"",
        "[[service]]",
        &"[a]\n".repeat(1000),
        &format!("x = \"{}\"", "y".repeat(100_000)),
    ] {
        let _ = toml(text);
        let _ = yaml(text);
    }
    // YAML aliases cannot make a small file large.
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n";
    assert!(yaml(bomb).is_err());
}

#[test]
fn the_file_must_be_named_for_its_format_and_readable() {
    let lookup = |_: &str| None;
    let e = load(Path::new("/etc/tracing.ini"), &lookup)
        .expect_err("refused")
        .to_string();
    assert!(e.contains(".toml, .yaml or .yml"), "{e}");
    let e = load(Path::new("/nonexistent/tracing.toml"), &lookup)
        .expect_err("refused")
        .to_string();
    assert!(
        e.contains("/nonexistent/tracing.toml") && e.contains("cannot be read"),
        "{e}"
    );
}

#[test]
fn line_and_column_count_characters() {
    let text = "ab\né€x\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 3), (2, 1));
    assert_eq!(line_column(text, 3 + 2 + 3), (2, 3));
    assert_eq!(offset_of(text, 2, 3), 8);
    assert_eq!(offset_of(text, 1, 1), 0);
}
