//! The OpenTelemetry resource: the service, the host, the process and the SDK.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

use crate::config::Resolved;

pub(super) fn resource(config: &Resolved, service: &str) -> Resource {
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    attributes.push(KeyValue::new("service.name", service.to_owned()));
    if let Some(v) = &config.service_version {
        attributes.push(KeyValue::new("service.version", v.clone()));
    }
    if let Some(e) = &config.environment {
        attributes.push(KeyValue::new("deployment.environment.name", e.clone()));
    }
    if let Some(host) = host_name() {
        attributes.push(KeyValue::new("host.name", host));
    }
    attributes.push(KeyValue::new("host.arch", host_arch()));
    attributes.push(KeyValue::new("os.type", std::env::consts::OS));
    attributes.push(KeyValue::new("process.pid", i64::from(std::process::id())));
    if let Some(exe) = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
    {
        attributes.push(KeyValue::new("process.executable.name", exe));
    }
    attributes.push(KeyValue::new("process.runtime.name", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.name", "opentelemetry"));
    attributes.push(KeyValue::new("telemetry.sdk.language", "rust"));
    attributes.push(KeyValue::new("telemetry.sdk.version", "0.33.1"));
    attributes.push(KeyValue::new("telemetry.distro.name", "service-tracing"));
    attributes.push(KeyValue::new(
        "telemetry.distro.version",
        env!("CARGO_PKG_VERSION"),
    ));
    // Later values win: OTEL_RESOURCE_ATTRIBUTES < builder attributes < the service name.
    Resource::builder_empty()
        .with_attributes(attributes)
        .build()
}

fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| crate::config::env::process_var("HOSTNAME"))
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}
