//! The OpenTelemetry resource: the service, the host, the process and the SDK.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::Resource;

use crate::config::Resolved;

/// The semantic conventions' key for the instance of a service.
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

pub(super) fn resource(config: &Resolved, service: &str) -> Resource {
    let mut attributes: Vec<KeyValue> = config
        .resource_attributes
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    // Given by `OTEL_RESOURCE_ATTRIBUTES` or the builder, the id is the operator's; else one
    // is made for the process, so replicas of a service are told apart.
    if !config
        .resource_attributes
        .iter()
        .any(|(k, _)| k == SERVICE_INSTANCE_ID)
    {
        attributes.push(KeyValue::new(SERVICE_INSTANCE_ID, instance_id().to_owned()));
    }
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
    // Later values win: OTEL_RESOURCE_ATTRIBUTES < builder attributes < the service name <
    // the SDK's own `telemetry.sdk.*` (its detector knows the version linked, which a string
    // written here would not follow) < the distribution.
    Resource::builder_empty()
        .with_attributes(attributes)
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes([
            KeyValue::new("telemetry.distro.name", "service-tracing"),
            KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
        ])
        .build()
}

/// One random (UUID v4) id for the life of the process, shared by every signal and service
/// it sets up, as the semantic conventions suggest for an id the SDK makes.
fn instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| uuid::Uuid::new_v4().to_string())
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

#[cfg(test)]
mod tests {
    use opentelemetry::{Key, Value};

    use super::*;
    use crate::ServiceTracing;

    fn resolved(vars: &'static [(&'static str, &'static str)]) -> Resolved {
        ServiceTracing::builder("svc")
            .env_lookup(move |name| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            })
            .resolve()
            .expect("valid")
            .0
    }

    fn text(resource: &Resource, key: &'static str) -> Option<String> {
        resource.get(&Key::from_static_str(key)).map(|v| match v {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
    }

    #[test]
    fn the_sdk_attributes_come_from_the_sdk_detector() {
        let ours = resource(&resolved(&[]), "svc");
        let sdk = Resource::builder_empty()
            .with_detector(Box::new(TelemetryResourceDetector))
            .build();
        assert_eq!(sdk.len(), 3);
        for key in [
            "telemetry.sdk.name",
            "telemetry.sdk.language",
            "telemetry.sdk.version",
        ] {
            assert!(text(&sdk, key).is_some(), "{key}");
            assert_eq!(text(&ours, key), text(&sdk, key), "{key}");
        }
        // Not even a user's attribute may claim another SDK version.
        let claimed = resource(
            &resolved(&[("OTEL_RESOURCE_ATTRIBUTES", "telemetry.sdk.version=0.0.1")]),
            "svc",
        );
        assert_eq!(
            text(&claimed, "telemetry.sdk.version"),
            text(&sdk, "telemetry.sdk.version")
        );
    }

    #[test]
    fn an_instance_id_is_generated_once_per_process_when_not_given() {
        let first = text(&resource(&resolved(&[]), "svc"), SERVICE_INSTANCE_ID).expect("set");
        let parsed = uuid::Uuid::parse_str(&first).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4, "{first}");
        // The same for every signal and service of the process.
        let again = text(&resource(&resolved(&[]), "other"), SERVICE_INSTANCE_ID);
        assert_eq!(again.as_deref(), Some(first.as_str()));
    }

    #[test]
    fn an_instance_id_given_by_the_variable_or_the_builder_is_kept() {
        let from_env = resource(
            &resolved(&[("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-7")]),
            "svc",
        );
        assert_eq!(
            text(&from_env, SERVICE_INSTANCE_ID).as_deref(),
            Some("pod-7")
        );
        let from_builder = ServiceTracing::builder("svc")
            .env_lookup(|_| None)
            .resource_attribute(SERVICE_INSTANCE_ID, "pod-8")
            .resolve()
            .expect("valid")
            .0;
        assert_eq!(
            text(&resource(&from_builder, "svc"), SERVICE_INSTANCE_ID).as_deref(),
            Some("pod-8")
        );
    }
}
