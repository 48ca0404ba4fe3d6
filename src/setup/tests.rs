use std::time::Duration;

use super::ServiceTracing;
use crate::config::{Compression, TracesExporter};
use crate::error::{SetupError, SetupErrorKind};
use crate::metrics::{MetricsExporter, MetricsSettings};

fn with_env(value: Option<&'static str>) -> ServiceTracing {
    ServiceTracing::builder("svc").env_lookup(move |name| {
        value
            .filter(|_| name == "OTEL_PROPAGATORS")
            .map(str::to_owned)
    })
}

#[test]
fn propagators_layer_defaults_then_env_then_builder() {
    let (_, p) = with_env(None).resolve().expect("valid");
    assert!(p.is_default());
    assert_eq!(p.propagator.names(), ["tracecontext", "baggage"]);

    let (_, p) = with_env(Some("b3,tracecontext")).resolve().expect("valid");
    assert!(!p.is_default());
    assert_eq!(p.names, ["b3", "tracecontext"]);

    let (_, p) = with_env(Some("b3"))
        .propagators(["Jaeger", "baggage"])
        .resolve()
        .expect("valid");
    assert_eq!(p.propagator.names(), ["jaeger", "baggage"]);

    let err = with_env(None)
        .propagators(["xray"])
        .resolve()
        .expect_err("unsupported");
    assert!(err.to_string().contains("propagators"), "{err}");
    assert!(with_env(Some("none,b3")).resolve().is_err());
}

#[cfg(feature = "tls")]
#[test]
fn a_bad_certificate_file_fails_setup_naming_the_variable() {
    let dir = std::env::temp_dir();
    let empty = dir.join(format!("st-no-cert-{}.pem", std::process::id()));
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let missing = dir.join(format!("st-missing-{}.pem", std::process::id()));
    for (variable, path) in [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &empty),
    ] {
        let path = path.display().to_string();
        let err = ServiceTracing::builder("svc")
            .env_lookup(move |name| (name == variable).then(|| path.clone()))
            .resolve()
            .expect_err("bad file");
        assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
        assert!(err.to_string().contains(variable), "{err}");
    }
    let err = with_env(None)
        .otlp_certificate(&empty)
        .resolve()
        .expect_err("bad file");
    assert!(err.to_string().contains("otlp_certificate"), "{err}");
    assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
    std::fs::remove_file(&empty).expect("remove");
}

#[cfg(feature = "tls")]
#[test]
fn the_certificate_builder_call_beats_the_variable() {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let good = std::env::temp_dir().join(format!("st-ca-{}.pem", std::process::id()));
    std::fs::write(&good, cert.pem()).expect("write");
    let (config, _) = ServiceTracing::builder("svc")
        .env_lookup(|name| {
            (name == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| "/nonexistent.pem".to_owned())
        })
        .otlp_certificate(&good)
        .resolve()
        .expect("the builder's file is read, not the variable's");
    assert_eq!(config.extra_roots.len(), 1);
    std::fs::remove_file(&good).expect("remove");
}

#[test]
fn a_bad_alert_webhook_fails_setup_naming_the_setting() {
    let err = with_env(None)
        .install_subscriber(false)
        .exporter(TracesExporter::None)
        .alert_webhook("ftp://hooks.example.com/x")
        .init_layer()
        .expect_err("not an http or https URL");
    assert!(err.to_string().contains("alert_webhook"), "{err}");
}

fn metrics_with(vars: &'static [(&'static str, &'static str)]) -> ServiceTracing {
    with_vars(vars)
}

#[test]
fn compression_defaults_to_none_and_the_builder_beats_the_variable() {
    let compression = |options: ServiceTracing| options.resolve().expect("valid").0.compression;
    assert_eq!(compression(metrics_with(&[])), Compression::None);
    let gzip_env = &[("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")];
    assert_eq!(compression(metrics_with(gzip_env)), Compression::Gzip);
    assert_eq!(
        compression(metrics_with(gzip_env).otlp_compression(Compression::None)),
        Compression::None
    );
}

fn resolved_metrics(options: &ServiceTracing) -> Result<Option<MetricsSettings>, SetupError> {
    let (config, _) = options.resolve()?;
    options.resolve_metrics(&config)
}

#[test]
fn metrics_follow_otlp_unless_told_otherwise() {
    // Console traces and no route: no metrics at all.
    assert!(resolved_metrics(&metrics_with(&[]))
        .expect("valid")
        .is_none());
    // An endpoint: pushed to its /v1/metrics, every OTEL_METRIC_EXPORT_INTERVAL.
    let on = resolved_metrics(&metrics_with(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
    ]))
    .expect("valid")
    .expect("on");
    assert_eq!(on.interval, Duration::from_secs(5));
    assert_eq!(
        on.push.expect("pushed").endpoint,
        "http://c:4318/v1/metrics"
    );
    // `none` stops the push; a Prometheus route keeps the metrics.
    let none: &'static [(&str, &str)] = &[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_METRICS_EXPORTER", "none"),
    ];
    assert!(resolved_metrics(&metrics_with(none))
        .expect("valid")
        .is_none());
    let pulled = resolved_metrics(&metrics_with(none).prometheus_route("/metrics"))
        .expect("valid")
        .expect("on");
    assert!(pulled.push.is_none());
    // The builder beats the environment.
    let builder = resolved_metrics(
        &metrics_with(none)
            .metrics_exporter(MetricsExporter::Otlp)
            .metric_export_interval(Duration::from_secs(1)),
    )
    .expect("valid")
    .expect("on");
    assert!(builder.push.is_some());
    assert_eq!(builder.interval, Duration::from_secs(1));
    // Bad values name the setting.
    let err = resolved_metrics(&metrics_with(&[("OTEL_METRICS_EXPORTER", "statsd")]))
        .expect_err("invalid");
    assert!(err.to_string().contains("OTEL_METRICS_EXPORTER"), "{err}");
    let err =
        resolved_metrics(&metrics_with(&[]).prometheus_route("metrics")).expect_err("invalid");
    assert!(err.to_string().contains("prometheus_route"), "{err}");
}

fn with_vars(vars: &'static [(&'static str, &'static str)]) -> ServiceTracing {
    ServiceTracing::builder("svc").env_lookup(move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

#[test]
fn the_traces_endpoint_is_the_builders_base_else_the_traces_variable_else_the_base_one() {
    let endpoint = |options: ServiceTracing| options.resolve().expect("valid").0.endpoint;
    let both: &'static [(&str, &str)] = &[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318/"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom",
        ),
    ];
    assert_eq!(
        endpoint(with_vars(both).otlp_endpoint("http://b:4318")),
        "http://b:4318/v1/traces"
    );
    assert_eq!(endpoint(with_vars(both)), "http://traces:4318/custom");
    assert_eq!(
        endpoint(with_vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://base:4318/"
        )])),
        "http://base:4318/v1/traces"
    );
    assert_eq!(
        endpoint(with_vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])),
        "http://base:4317"
    );
    assert_eq!(endpoint(with_vars(&[])), "http://localhost:4318/v1/traces");
    assert_eq!(
        endpoint(with_vars(&[]).otlp_protocol(crate::Protocol::Grpc)),
        "http://localhost:4317"
    );
}

#[test]
fn an_invalid_log_filter_fails_setup_naming_the_setting() {
    let err = with_vars(&[])
        .log_filter("info,[")
        .resolve_log_filter()
        .expect_err("invalid");
    assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
    assert!(err.to_string().contains("log_filter"), "{err}");
    assert!(with_vars(&[])
        .log_filter("warn,my_app=debug")
        .resolve_log_filter()
        .is_ok());
}

#[test]
fn the_log_records_follow_the_lookup_not_the_process_environment() {
    let options = with_vars(&[("OTEL_LOGS_EXPORTER", "none")]);
    assert!(options.env.logs().off);
    let options = with_vars(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", " http://logs:4318/x ")]);
    let logs = options.env.logs();
    assert!(!logs.off);
    assert_eq!(logs.endpoint.as_deref(), Some("http://logs:4318/x"));
}

#[cfg(feature = "redis")]
#[test]
fn the_redis_url_is_the_builders_else_the_variable() {
    let env: &'static [(&str, &str)] =
        &[("SERVICE_TRACING_ERRORS_REDIS_URL", " redis://env:6379 ")];
    assert_eq!(
        with_vars(env).resolve_errors_redis_url(),
        Some((
            "SERVICE_TRACING_ERRORS_REDIS_URL",
            "redis://env:6379".to_owned()
        ))
    );
    assert_eq!(
        with_vars(env)
            .error_redis_url("redis://builder:6379")
            .resolve_errors_redis_url(),
        Some(("error_redis_url", "redis://builder:6379".to_owned()))
    );
    assert_eq!(
        with_vars(&[("SERVICE_TRACING_ERRORS_REDIS_URL", "  ")]).resolve_errors_redis_url(),
        None
    );
}
