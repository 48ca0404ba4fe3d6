//! Resolution: each setting is the builder's value, else the environment's, else the default
//! (except the service name, where `OTEL_SERVICE_NAME` wins).

use std::path::Path;
use std::time::Duration;

use super::ServiceTracing;
use crate::config::env::{self, EnvConfig};
use crate::config::{
    Propagation, Protocol, Resolved, Sampler, TracesExporter, DEFAULT_PROPAGATORS,
};
use crate::error::SetupError;
use crate::export::otlp_fast::tls::ExtraRoots;
use crate::metrics::{MetricsExporter, MetricsSettings, MAX_ATTRIBUTE_SETS};

impl ServiceTracing {
    pub(super) fn read_env(&self) -> Result<EnvConfig, SetupError> {
        match &self.env {
            Some(lookup) => env::read(&|name| lookup(name)),
            None => env::read(&|name| std::env::var(name).ok()),
        }
    }

    pub(super) fn resolve(&self) -> Result<(Resolved, Propagation), SetupError> {
        let env = self.read_env()?;
        if let Some(endpoint) = &self.endpoint {
            env::validate_endpoint("otlp_endpoint", endpoint)?;
        }
        let protocol = self
            .protocol
            .or(env.protocol)
            .unwrap_or(Protocol::HttpProtobuf);
        let base = self.endpoint.clone().or(
            if self.endpoint.is_none() && env.traces_endpoint.is_some() {
                None
            } else {
                env.endpoint.clone()
            },
        );
        let configured =
            self.endpoint.is_some() || env.traces_endpoint.is_some() || env.endpoint.is_some();
        let endpoint = match (&base, &env.traces_endpoint) {
            (Some(base), _) => signal_endpoint(base, protocol),
            (None, Some(traces)) => traces.clone(),
            (None, None) => match protocol {
                Protocol::Grpc => "http://localhost:4317".to_owned(),
                Protocol::HttpProtobuf => "http://localhost:4318/v1/traces".to_owned(),
            },
        };
        let exporter = self.exporter.or(env.exporter).unwrap_or(if configured {
            TracesExporter::Otlp
        } else {
            TracesExporter::Console
        });
        let mut resource_attributes = env.resource_attributes.clone();
        resource_attributes.extend(self.resource_attributes.iter().cloned());
        let mut headers = env.headers.clone();
        headers.extend(self.headers.iter().cloned());
        let batch = self.batch.unwrap_or(env.batch);
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(SetupError::invalid(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &batch.max_export_batch_size.to_string(),
                &format!("at most OTEL_BSP_MAX_QUEUE_SIZE ({})", batch.max_queue_size),
            ));
        }
        // Defaults < OTEL_PROPAGATORS < the builder.
        let names = match &self.propagators {
            Some(names) => env::propagator_names("propagators", &names.join(","), names)?,
            None => env
                .propagators
                .clone()
                .unwrap_or_else(|| DEFAULT_PROPAGATORS.map(str::to_owned).to_vec()),
        };
        let propagator = service_tracing_middleware::propagation::propagator_from_names(&names)
            .map_err(|e| {
                SetupError::invalid("propagators", &names.join(","), env::PROPAGATORS_ACCEPTED)
                    .with_source(e)
            })?;
        let propagation = Propagation { names, propagator };
        let resolved = Resolved {
            service_name: env
                .service_name
                .clone()
                .unwrap_or_else(|| self.name.clone()),
            service_version: self.version.clone(),
            environment: self.environment.clone(),
            resource_attributes,
            exporter,
            protocol,
            endpoint,
            headers,
            timeout: self
                .timeout
                .or(env.timeout)
                .unwrap_or(Duration::from_secs(10)),
            // The environment < the builder, as for the other settings.
            extra_roots: match (&self.certificate, &env.certificate) {
                (Some(path), _) => ExtraRoots::load("otlp_certificate", path)?,
                (None, Some((name, path))) => ExtraRoots::load(name, Path::new(path))?,
                (None, None) => ExtraRoots::default(),
            },
            sampler: self
                .sampler
                .or(env.sampler)
                .unwrap_or(Sampler::ParentBasedAlwaysOn),
            batch,
            disabled: env.disabled,
        };
        Ok((resolved, propagation))
    }

    /// The metrics settings, or `None` when metrics are off.
    pub(super) fn resolve_metrics(
        &self,
        config: &Resolved,
    ) -> Result<Option<MetricsSettings>, SetupError> {
        let menv = match &self.env {
            Some(lookup) => crate::metrics::read_env(&|name| lookup(name)),
            None => crate::metrics::read_env(&|name| std::env::var(name).ok()),
        }?;
        let env = self.read_env()?;
        if let Some(path) = &self.metrics.prometheus_route {
            if !path.starts_with('/') {
                return Err(SetupError::invalid(
                    "prometheus_route",
                    path,
                    "a path starting with /",
                ));
            }
        }
        let configured = self.endpoint.is_some()
            || env.endpoint.is_some()
            || menv.endpoint.is_some()
            || config.exporter == TracesExporter::Otlp;
        let exporter = self
            .metrics
            .exporter
            .or(menv.exporter)
            .unwrap_or(if configured {
                MetricsExporter::Otlp
            } else {
                MetricsExporter::None
            });
        let wanted = exporter != MetricsExporter::None || self.metrics.prometheus_route.is_some();
        if config.disabled || !wanted {
            return Ok(None);
        }
        let push = (exporter == MetricsExporter::Otlp).then(|| {
            let mut push = config.clone();
            push.endpoint = crate::metrics::endpoint(
                self.endpoint.as_deref(),
                menv.endpoint.as_deref(),
                env.endpoint.as_deref(),
                config.protocol,
            );
            push.timeout = menv.timeout.unwrap_or(config.timeout);
            push
        });
        Ok(Some(MetricsSettings {
            push,
            interval: self
                .metrics
                .interval
                .or(menv.interval)
                .unwrap_or(crate::metrics::DEFAULT_INTERVAL),
            cardinality_limit: MAX_ATTRIBUTE_SETS,
        }))
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` semantics: for HTTP the signal path is appended.
fn signal_endpoint(base: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}
