use std::path::PathBuf;
use std::time::Duration;

use super::ServiceTracing;
use crate::config::{Compression, Protocol, TracesExporter, TracesSampler};

/// Writes `text` to a fresh file named `name` and returns its path.
fn file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "service-tracing-file-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4()
    ));
    std::fs::create_dir_all(&dir).expect("valid");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("valid");
    path
}

const SETTINGS: &str = r#"
[service]
name = "from-file"
version = "2.0.0"

[export]
endpoint = "http://file-collector:4318"
protocol = "grpc"
compression = "gzip"
timeout = "3s"

[sampling]
sampler = "traceidratio"
ratio = 0.5
rules = [{ route = "/health", sample = "never" }, { method = "POST", route = "/pay", sample = "always" }]

[http]
untraced_routes = ["/favicon.ico"]

[profiling]
enabled = false
max_operations = 7
slow_thresholds = { "GET /orders/{id}" = "200ms" }

[errors]
max_groups = 3
alerts = [{ kind = "count", threshold = 3, window = "5m" }, { kind = "new_group" }]

[health]
route = "/_tracing/health"
bearer_token = "s3cret"

[shutdown]
timeout = "2s"
"#;

/// Builder > variables > file > defaults, setting by setting.
#[test]
fn the_builder_beats_the_variables_which_beat_the_file_which_beats_the_defaults() {
    let path = file("tracing.toml", SETTINGS);
    let options = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|name| match name {
            "OTEL_TRACES_SAMPLER" => Some("always_off".to_owned()),
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("none".to_owned()),
            _ => None,
        })
        .otlp_protocol(Protocol::HttpProtobuf)
        .profiling(true)
        .untraced_route("/metrics");
    let (config, _) = options.resolve().expect("valid");
    // The file.
    assert_eq!(config.service_name, "from-file");
    assert_eq!(config.service_version.as_deref(), Some("2.0.0"));
    assert_eq!(config.endpoint, "http://file-collector:4318/v1/traces");
    assert_eq!(config.exporter, TracesExporter::Otlp);
    assert_eq!(config.timeout, Duration::from_secs(3));
    assert_eq!(options.shutdown_timeout, Duration::from_secs(2));
    assert_eq!(options.slow_thresholds.len(), 1);
    assert_eq!(options.alerts.rules.len(), 2);
    assert!(options.error_tracker.is_some(), "max_groups");
    assert!(options.profiler.is_some(), "max_operations");
    assert_eq!(options.alerts.rules[0].name(), "count >= 3 in 5m");
    assert_eq!(options.health.route.as_deref(), Some("/_tracing/health"));
    assert_eq!(
        format!("{:?}", options.health.access),
        "Token(..)",
        "the bearer token"
    );
    let rules = options.sampling_rules.as_ref().expect("valid");
    assert_eq!(rules.rules().len(), 2);
    assert_eq!(rules.rules()[1].to_string(), "POST /pay");
    // The variables beat the file.
    assert_eq!(config.sampler, TracesSampler::AlwaysOff);
    assert_eq!(config.compression, Compression::None);
    // The builder beats both; lists add up.
    assert_eq!(config.protocol, Protocol::HttpProtobuf);
    assert!(options.profiling);
    assert_eq!(options.layer.untraced, ["/favicon.ico", "/metrics"]);
    // The defaults where nobody said anything.
    assert_eq!(config.batch, crate::BatchConfig::default());
}

#[test]
fn without_the_variables_the_file_decides() {
    let path = file("tracing.yaml", "export:\n  protocol: grpc\nsampling:\n  sampler: parentbased_traceidratio\n  ratio: 0.25\n");
    let (config, _) = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|_| None)
        .resolve()
        .expect("valid");
    assert_eq!(config.protocol, Protocol::Grpc);
    assert_eq!(config.sampler, TracesSampler::ParentBasedTraceIdRatio(0.25));
    // No name in the file: OpenTelemetry's `unknown_service:<executable>`.
    assert!(
        config.service_name.starts_with("unknown_service:"),
        "{}",
        config.service_name
    );
    // No endpoint anywhere: spans print to the console, as without a file.
    assert_eq!(config.exporter, TracesExporter::Console);
}

#[test]
fn otel_service_name_beats_the_files_name() {
    let path = file("tracing.toml", "[service]\nname = \"from-file\"\n");
    let (config, _) = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|name| (name == "OTEL_SERVICE_NAME").then(|| "from-env".to_owned()))
        .resolve()
        .expect("valid");
    assert_eq!(config.service_name, "from-env");
}

/// What `builder` does with `SERVICE_TRACING_CONFIG`'s value.
#[test]
fn the_config_variable_gives_the_starting_point_and_its_errors_fail_init() {
    let path = file(
        "tracing.toml",
        "[service]\nname = \"ignored\"\nversion = \"3\"\n",
    );
    let options = ServiceTracing::bare("svc".to_owned())
        .with_config_var(Some(path.display().to_string()))
        .env_lookup(|_| None);
    let (config, _) = options.resolve().expect("valid");
    // The builder's name beats the file's.
    assert_eq!(config.service_name, "svc");
    assert_eq!(config.service_version.as_deref(), Some("3"));

    let bad = file("tracing.toml", "[service]\nversion = \"3\"\nnmae = \"x\"\n");
    let err = ServiceTracing::bare("svc".to_owned())
        .with_config_var(Some(bad.display().to_string()))
        .install_subscriber(false)
        .init(axum::Router::<()>::new())
        .expect_err("refused");
    let message = err.to_string();
    assert!(message.starts_with("SERVICE_TRACING_CONFIG: "), "{message}");
    assert!(message.contains("tracing.toml:3:1: "), "{message}");
    assert_eq!(err.kind(), crate::SetupErrorKind::InvalidConfig);

    let missing = ServiceTracing::bare("svc".to_owned())
        .with_config_var(Some("/nonexistent/tracing.toml".to_owned()))
        .resolve()
        .expect_err("refused");
    assert!(missing.to_string().contains("cannot be read"), "{missing}");
    // Unset or blank: nothing read.
    let none = ServiceTracing::bare("svc".to_owned()).with_config_var(Some(" ".to_owned()));
    assert!(none.file_error.is_none());
}

#[test]
fn settings_that_contradict_each_other_are_refused() {
    for (text, says) in [
        (
            "[health]\nnetworks = [\"10.0.0.0/8\"]\nbearer_token = \"t\"\n",
            "not both",
        ),
        (
            "[propagation]\ntrust_incoming = \"never\"\ntrust_networks = [\"10.0.0.0/8\"]\n",
            "not both",
        ),
        ("[health]\nnetworks = [\"nowhere\"]\n", "health.networks"),
        (
            "[propagation]\ntrust_networks = [\"nowhere\"]\n",
            "trust_networks",
        ),
        (
            "[errors]\nalerts = [{ kind = \"count\" }]\n",
            "errors.alerts[0]",
        ),
        (
            "[errors]\nalerts = [{ kind = \"ratio\", threshold = 2.0 }]\n",
            "a share from 0 to 1",
        ),
    ] {
        let err = ServiceTracing::from_file(file("tracing.toml", text)).expect_err("refused");
        assert!(err.to_string().contains(says), "{text}: {err}");
    }
}

#[test]
fn correlation_headers_are_checked_and_reach_the_options() {
    let path = file(
        "tracing.toml",
        "[propagation]\ncorrelation_headers = [\"x-amzn-id\"]\ncorrelation_response_header = \"\"\n",
    );
    let options = ServiceTracing::from_file(&path).expect("valid");
    assert_eq!(
        options.layer.correlation_headers.as_deref(),
        Some(&["x-amzn-id".to_owned()][..])
    );
    assert_eq!(options.layer.correlation_response_header, Some(None));
    let bad = file(
        "tracing.toml",
        "[propagation]\ncorrelation_headers = [\"bad header\"]\n",
    );
    let err = ServiceTracing::from_file(&bad)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("tracing.toml:2:") && err.contains("bad header"),
        "{err}"
    );
    // Through the builder: refused by init, naming the setting.
    let err = ServiceTracing::builder("svc")
        .env_lookup(|_| None)
        .correlation_response_header(Some("no spaces allowed"))
        .resolve()
        .expect_err("refused")
        .to_string();
    assert!(err.contains("correlation_response_header"), "{err}");
}

#[test]
fn trust_follows_networks_and_headers() {
    let path = file(
        "tracing.toml",
        "[propagation]\ntrust_networks = [\"10.0.0.0/8\"]\ntrust_headers = [\"x-internal\"]\n",
    );
    let options = ServiceTracing::from_file(&path).expect("valid");
    let request = |header: bool| {
        let mut r = http::Request::builder();
        if header {
            r = r.header("x-internal", "1");
        }
        r.body(()).expect("valid")
    };
    // No peer address known and no header: not trusted; the header: trusted.
    assert!(!options.layer.trust.is_trusted(&request(false)));
    assert!(options.layer.trust.is_trusted(&request(true)));
}

/// The bounds the file gives reach error tracking and profiling.
#[test]
fn the_files_bounds_reach_error_tracking_and_profiling() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};

    let path = file(
        "tracing.toml",
        "[export]\nexporter = \"none\"\n[errors]\nmax_groups = 1\n[profiling]\nmax_operations = 1\n",
    );
    let scoped = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|_| None)
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

#[cfg(feature = "pages")]
#[tokio::test]
async fn the_files_pages_section_serves_the_pages_to_its_networks_and_token() {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use tower::ServiceExt as _;

    let path = file(
        "tracing.toml",
        "[export]\nexporter = \"none\"\n[pages]\nroute = \"/_ops\"\nnetworks = [\"10.0.0.0/8\"]\nbearer_token = \"t0ken-from-file\"\n",
    );
    let (app, guard) = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .init(axum::Router::new())
        .expect("set-up");
    let status = |peer: &str, token: Option<&str>| {
        let mut request = http::Request::get("/_ops/routes.json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).expect("request");
        let peer: std::net::SocketAddr = peer.parse().expect("address");
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            app.oneshot(request)
                .await
                .expect("infallible")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("10.9.9.9:1", None).await, 200, "the file's network");
    assert_eq!(
        status("127.0.0.1:1", None).await,
        401,
        "not loopback any more"
    );
    assert_eq!(
        status("127.0.0.1:1", Some("t0ken-from-file")).await,
        200,
        "the file's token"
    );
    drop(guard);

    let bad = file("tracing.toml", "[pages]\nnetworks = [\"nowhere\"]\n");
    let e = ServiceTracing::from_file(&bad).expect_err("refused");
    assert!(e.to_string().contains("pages.networks"), "{e}");
}

#[cfg(feature = "pages")]
#[tokio::test]
async fn the_files_pages_section_bounds_the_store_and_refuses_a_zero_bound() {
    use axum::body::Body;
    use tower::ServiceExt as _;

    let path = file(
        "tracing.toml",
        "[export]\nexporter = \"none\"\n[pages]\nroute = \"/_ops\"\nmax_traces = 50\nmax_bytes = 1048576\n",
    );
    let (app, guard) = ServiceTracing::from_file(&path)
        .expect("valid")
        .env_lookup(|_| None)
        .install_subscriber(false)
        .init(axum::Router::new())
        .expect("set-up");
    let mut request = http::Request::get("/_ops.json")
        .body(Body::empty())
        .expect("request");
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().expect("address");
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = app.oneshot(request).await.expect("infallible");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    let overview: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(overview["store"]["max_traces"], 50, "{overview}");
    assert_eq!(overview["store"]["max_bytes"], 1_048_576);
    drop(guard);

    for (key, value) in [
        ("max_bytes", "0"),
        ("max_traces", "0"),
        ("max_routes", "100000000"),
    ] {
        let bad = file("tracing.toml", &format!("[pages]\n{key} = {value}\n"));
        let e = ServiceTracing::from_file(&bad).expect_err("refused");
        assert!(e.to_string().contains(&format!("pages.{key}")), "{e}");
    }
}
