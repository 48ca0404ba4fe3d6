use std::time::Duration;

use super::ServiceTracing;
use crate::config::{Compression, Protocol, TracesExporter};
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
    assert_eq!(config.tls.extra_roots(), 1);
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
    assert!(options.env.logs().expect("valid").off);
    let options = with_vars(&[("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", " http://logs:4318/x ")]);
    let logs = options.env.logs().expect("valid");
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

/// Certificate and key PEM files made by rcgen: a CA, and a client certificate it signed with
/// its key; removed on drop.
#[cfg(feature = "tls")]
struct Pki {
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    other_key: std::path::PathBuf,
}

#[cfg(feature = "tls")]
impl Pki {
    fn new(tag: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("client certificate");
        let other_key = rcgen::KeyPair::generate().expect("key");
        let file = |what: &str, pem: String| {
            let path = std::env::temp_dir()
                .join(format!("st-pki-{tag}-{what}-{}.pem", std::process::id()));
            std::fs::write(&path, pem).expect("write");
            path
        };
        Self {
            ca: file("ca", ca.pem()),
            cert: file("cert", cert.pem()),
            key: file("key", key.serialize_pem()),
            other_key: file("other-key", other_key.serialize_pem()),
        }
    }

    fn var(path: &std::path::Path) -> String {
        path.display().to_string()
    }
}

#[cfg(feature = "tls")]
impl Drop for Pki {
    fn drop(&mut self) {
        for path in [&self.ca, &self.cert, &self.key, &self.other_key] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Options reading `vars` (owned values) as the environment.
#[cfg(feature = "tls")]
fn with_owned_vars(vars: Vec<(&'static str, String)>) -> ServiceTracing {
    ServiceTracing::builder("svc")
        .otlp_endpoint("https://collector:4318")
        .env_lookup(move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
}

#[cfg(feature = "tls")]
#[test]
fn a_missing_or_bad_client_key_fails_setup_naming_the_variable() {
    let pki = Pki::new("bad-key");
    let missing = std::env::temp_dir().join(format!("st-no-key-{}.pem", std::process::id()));
    let cases = [
        // A missing key file: traces, and the metrics' own variable.
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            Pki::var(&missing),
            "cannot read the file",
        ),
        (
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
            Pki::var(&missing),
            "cannot read the file",
        ),
        // A file without a key (a certificate), and a key of another certificate.
        (
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
            Pki::var(&pki.cert),
            "no PRIVATE KEY block",
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            Pki::var(&pki.other_key),
            "",
        ),
    ];
    for (key_var, cert_var, key, why) in cases {
        let options = with_owned_vars(vec![(cert_var, Pki::var(&pki.cert)), (key_var, key)]);
        let err = match options.resolve() {
            Err(e) => e,
            Ok((config, _)) => match options.resolve_metrics(&config) {
                Err(e) => e,
                Ok(_) => options
                    .resolve_logs(&config, &options.env.logs().expect("valid"))
                    .expect_err(key_var),
            },
        };
        assert_eq!(err.kind(), SetupErrorKind::InvalidConfig);
        let text = err.to_string();
        assert!(text.contains(key_var) && text.contains(why), "{text}");
    }
    // A certificate without a key (and the reverse) names the one set and the one missing.
    let err = with_owned_vars(vec![(
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        Pki::var(&pki.cert),
    )])
    .resolve()
    .expect_err("no key");
    let text = err.to_string();
    assert!(
        text.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
            && text.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        "{text}"
    );
    let err = with_owned_vars(vec![("OTEL_EXPORTER_OTLP_CLIENT_KEY", Pki::var(&pki.key))])
        .resolve()
        .expect_err("no certificate");
    assert!(
        err.to_string()
            .contains("without a client certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)"),
        "{err}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn every_signal_shares_one_tls_configuration_unless_its_files_differ() {
    let pki = Pki::new("share");
    let shared = vec![
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", Pki::var(&pki.ca)),
        ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", Pki::var(&pki.cert)),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", Pki::var(&pki.key)),
    ];
    let options = with_owned_vars(shared.clone());
    let (config, _) = options.resolve().expect("valid");
    assert!(config.tls.has_client_certificate());
    assert_eq!(config.tls.extra_roots(), 1);
    let metrics = options
        .resolve_metrics(&config)
        .expect("valid")
        .and_then(|m| m.push)
        .expect("pushed");
    let logs = options
        .resolve_logs(&config, &options.env.logs().expect("valid"))
        .expect("valid")
        .expect("exported");
    assert!(metrics.tls.shares(&config.tls));
    assert!(logs.tls.shares(&config.tls));

    // The metrics' own CA: a configuration of their own, still with the shared client pair.
    let mut own = shared;
    own.push((
        "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
        Pki::var(&pki.cert),
    ));
    let options = with_owned_vars(own);
    let (config, _) = options.resolve().expect("valid");
    let metrics = options
        .resolve_metrics(&config)
        .expect("valid")
        .and_then(|m| m.push)
        .expect("pushed");
    assert!(!metrics.tls.shares(&config.tls));
    assert!(metrics.tls.has_client_certificate());
    assert_eq!(
        metrics.tls.files().ca.as_ref().map(|f| f.setting),
        Some("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE")
    );
}

#[cfg(feature = "tls")]
#[test]
fn the_client_certificate_builder_call_beats_the_variables() {
    let pki = Pki::new("builder");
    let (config, _) = with_owned_vars(vec![
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            "/nonexistent-cert.pem".to_owned(),
        ),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            "/nonexistent-key.pem".to_owned(),
        ),
    ])
    .otlp_client_certificate(&pki.cert, &pki.key)
    .resolve()
    .expect("the builder's files are read, not the variables'");
    assert!(config.tls.has_client_certificate());
    let err = with_owned_vars(Vec::new())
        .otlp_client_certificate(&pki.cert, "/nonexistent-key.pem")
        .resolve()
        .expect_err("missing key");
    assert!(err.to_string().contains("otlp_client_certificate"), "{err}");
}

#[test]
fn metrics_and_logs_take_their_own_headers_compression_and_timeout() {
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=shared,x=shared"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x=traces"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x=metrics"),
        ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x=logs"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "4000"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "5000"),
    ]);
    let (config, _) = options.resolve().expect("valid");
    let metrics = options
        .resolve_metrics(&config)
        .expect("valid")
        .and_then(|m| m.push)
        .expect("pushed");
    let logs = options
        .resolve_logs(&config, &options.env.logs().expect("valid"))
        .expect("valid")
        .expect("exported");
    let header = |c: &crate::config::Resolved| {
        c.headers
            .iter()
            .rev()
            .find(|(k, _)| k == "x")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header(&config).as_deref(), Some("traces"));
    assert_eq!(header(&metrics).as_deref(), Some("metrics"));
    assert_eq!(header(&logs).as_deref(), Some("logs"));
    assert!(metrics
        .headers
        .contains(&("api-key".to_owned(), "shared".to_owned())));
    assert_eq!(
        (config.compression, metrics.compression, logs.compression),
        (Compression::Gzip, Compression::None, Compression::Gzip)
    );
    assert_eq!(
        (config.timeout, logs.timeout, metrics.timeout),
        (
            Duration::from_secs(3),
            Duration::from_secs(4),
            Duration::from_secs(5)
        )
    );
    // The builder's calls apply to every signal and beat the variables.
    let options = options
        .otlp_compression(Compression::Gzip)
        .otlp_timeout(Duration::from_secs(7));
    let (config, _) = options.resolve().expect("valid");
    let metrics = options
        .resolve_metrics(&config)
        .expect("valid")
        .and_then(|m| m.push)
        .expect("pushed");
    assert_eq!(metrics.compression, Compression::Gzip);
    assert_eq!(metrics.timeout, Duration::from_secs(7));
    // A bad value of a signal's own variable names it.
    let err = resolved_metrics(&with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zstd"),
    ]))
    .expect_err("invalid");
    assert!(
        err.to_string()
            .contains("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION"),
        "{err}"
    );
}

/// Each signal's protocol, and the endpoint path that goes with it: the base endpoint gets
/// `/v1/{signal}` only for the signals sent over HTTP/protobuf.
/// The traces', metrics' and log records' export settings `options` resolve to.
fn every_signal(options: &ServiceTracing) -> [crate::config::Resolved; 3] {
    let (config, _) = options.resolve().expect("valid");
    let metrics = options
        .resolve_metrics(&config)
        .expect("valid")
        .and_then(|m| m.push)
        .expect("pushed");
    let logs = options
        .resolve_logs(&config, &options.env.logs().expect("valid"))
        .expect("valid")
        .expect("exported");
    [config, metrics, logs]
}

#[test]
fn each_signal_takes_its_own_protocol_and_the_endpoint_that_goes_with_it() {
    let resolve_all =
        |options: &ServiceTracing| every_signal(options).map(|c| (c.protocol, c.endpoint));
    let (grpc, http) = (Protocol::Grpc, Protocol::HttpProtobuf);
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
    ]);
    assert_eq!(
        resolve_all(&options),
        [
            (grpc, "http://c:4317".to_owned()),
            (http, "http://c:4317/v1/metrics".to_owned()),
            (grpc, "http://c:4317".to_owned()),
        ]
    );
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
    ]);
    assert_eq!(
        resolve_all(&options),
        [
            (http, "http://c:4318/v1/traces".to_owned()),
            (grpc, "http://c:4318/".to_owned()),
            (grpc, "http://c:4318/".to_owned()),
        ]
    );
    // Signal endpoints are taken as they are, whatever the protocol.
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:4318/custom"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/m"),
    ]);
    assert_eq!(
        resolve_all(&options),
        [
            (grpc, "http://t:4317".to_owned()),
            (http, "http://m:9/m".to_owned()),
            (http, "http://l:4318/custom".to_owned()),
        ]
    );
    // Only a traces endpoint: the records follow the spans when they share the protocol, else
    // go to their protocol's default.
    let follow = with_vars(&[(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://t:4318/v1/traces",
    )]);
    assert_eq!(resolve_all(&follow)[2].1, "http://t:4318/v1/logs");
    let apart = with_vars(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://t:4318/v1/traces",
        ),
        ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
    ]);
    assert_eq!(
        resolve_all(&apart)[2],
        (grpc, "http://localhost:4317".to_owned())
    );
    // With the base endpoint set too, the records take it, as metrics do.
    let base = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://t:4318/v1/traces",
        ),
    ]);
    assert_eq!(
        resolve_all(&base).map(|(_, endpoint)| endpoint),
        [
            "http://t:4318/v1/traces",
            "http://c:4318/v1/metrics",
            "http://c:4318/v1/logs"
        ]
        .map(str::to_owned)
    );
    // The builder: the signal's call beats `otlp_protocol`, which beats every variable.
    let options = with_vars(&[("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")])
        .otlp_endpoint("http://b:4317")
        .otlp_protocol(grpc)
        .otlp_logs_protocol(http);
    assert_eq!(
        resolve_all(&options),
        [
            (grpc, "http://b:4317".to_owned()),
            (grpc, "http://b:4317".to_owned()),
            (http, "http://b:4317/v1/logs".to_owned()),
        ]
    );
    let options = ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .otlp_endpoint("http://b:4318")
        .otlp_metrics_protocol(grpc);
    assert_eq!(resolve_all(&options)[1], (grpc, "http://b:4318".to_owned()));
}

/// Settings only `ErrorTracking` and `Profiling` have (here their bounds) reach set-up through
/// `error_tracker` and `profiler`.
#[test]
fn a_tracker_and_a_profiler_given_to_the_builder_keep_their_settings() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};

    let scoped = ServiceTracing::builder("svc")
        .env_lookup(|name| (name == "OTEL_TRACES_EXPORTER").then(|| "none".to_owned()))
        .error_tracker(crate::ErrorTracking::new().with_max_groups(1))
        .profiler(crate::Profiling::new().with_max_operations(1))
        .build_scoped()
        .expect("set-up");
    let tracer = scoped.tracer_provider().expect("provider").tracer("test");
    tracer.in_span("first", |_| {
        crate::record_error(&std::io::Error::other("disk full"));
    });
    tracer.in_span("second", |_| {
        crate::record_error(&std::fmt::Error);
    });
    scoped.guard().force_flush().expect("flush");

    let errors = scoped.guard().errors().expect("error tracking");
    assert_eq!(errors.summary().top_groups().len(), 1, "one group kept");
    let profiling = scoped.guard().profiling().expect("profiling");
    assert!(profiling.operation("first").is_some());
    assert!(profiling.operation("second").is_none(), "past the bound");
}

/// A collector that accepts connections and never answers.
fn black_hole() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Holds every connection open, unanswered, until the test process ends.
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    (address, holder)
}

/// A set-up exporting to `address`, whose exports would wait 30 s for an answer.
fn to_black_hole(address: std::net::SocketAddr, shutdown: Duration) -> super::ScopedTracing {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    let scoped = ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .log_filter("off")
        .process_sampling(false)
        .metrics_exporter(MetricsExporter::None)
        .otlp_endpoint(format!("http://{address}"))
        .otlp_timeout(Duration::from_secs(30))
        .shutdown_timeout(shutdown)
        .build_scoped()
        .expect("set-up");
    if let Some(provider) = scoped.tracer_provider() {
        provider.tracer("t").in_span("job", |_cx| {});
    }
    scoped
}

#[test]
fn shutdown_returns_within_its_deadline_when_the_collector_never_answers() {
    let (address, _holder) = black_hole();
    let scoped = to_black_hole(address, Duration::from_millis(800));
    let started = std::time::Instant::now();
    let err = scoped
        .shutdown()
        .expect_err("the span could not be exported");
    let took = started.elapsed();
    assert_eq!(err.kind(), SetupErrorKind::Shutdown, "{err}");
    assert!(err.to_string().contains("shutdown_timeout"), "{err}");
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn the_shutdown_timeout_defaults_to_five_seconds() {
    assert_eq!(
        ServiceTracing::builder("svc").shutdown_timeout,
        Duration::from_secs(5)
    );
    // Not the export's own timeout: the specification gives `OTEL_BSP_EXPORT_TIMEOUT` to each
    // export.
    let with_bsp = ServiceTracing::builder("svc")
        .env_lookup(|name| (name == "OTEL_BSP_EXPORT_TIMEOUT").then(|| "100".to_owned()));
    assert_eq!(with_bsp.shutdown_timeout, Duration::from_secs(5));
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_async_keeps_the_deadline_without_blocking_the_runtime_thread() {
    let (address, _holder) = black_hole();
    let scoped = to_black_hole(address, Duration::from_millis(800));
    let guard_shutdown = scoped.shutdown_async();
    // On this one-thread runtime, the ticker runs only while shutdown is not blocking it.
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let started = std::time::Instant::now();
    let err = guard_shutdown
        .await
        .expect_err("the span could not be exported");
    let took = started.elapsed();
    ticker.abort();
    assert_eq!(err.kind(), SetupErrorKind::Shutdown, "{err}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let ticks = ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        ticks >= 20,
        "the runtime's thread was blocked: {ticks} ticks in {took:?}"
    );
}

#[test]
fn a_bare_grpc_endpoint_takes_tls_unless_the_signal_is_insecure() {
    let resolve_all = |options: &ServiceTracing| every_signal(options).map(|c| c.endpoint);
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_METRICS_INSECURE", "true"),
        ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "logs:4317"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "TRUE"),
        ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
    ]);
    assert_eq!(
        resolve_all(&options),
        [
            "https://collector:4317",
            "http://collector:4317",
            "http://logs:4317",
        ]
        .map(str::to_owned)
    );
    // Over OTLP/HTTP a bare host:port is no endpoint.
    let options = with_vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
    let error = options.resolve().expect_err("not for http/protobuf");
    assert!(
        error.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{error}"
    );
    assert!(error.to_string().contains("gRPC"), "{error}");
    // An explicit scheme is kept, insecure or not.
    let options = with_vars(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
    ]);
    assert_eq!(resolve_all(&options)[0], "https://collector:4317");
}
