//! Resolution: each setting is the builder's value, else the environment's, else the default
//! ([`layered`]), except the service name, where `OTEL_SERVICE_NAME` wins. The variables are
//! read in [`crate::config`], through the builder's [`Source`](crate::config::env::Source).

use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::ServiceTracing;
use crate::config::env::{self, EnvConfig};
use crate::config::{
    layered, signal_endpoint, BatchConfig, Compression, Propagation, Protocol, Resolved,
    TracesExporter, TracesSampler, DEFAULT_PROPAGATORS,
};
use crate::error::SetupError;
use crate::export::otlp_fast::tls::ExtraRoots;
use crate::metrics::{MetricsExporter, MetricsSettings, MAX_ATTRIBUTE_SETS};

impl ServiceTracing {
    pub(super) fn resolve(&self) -> Result<(Resolved, Propagation), SetupError> {
        let env = self.env.traces()?;
        if let Some(endpoint) = &self.endpoint {
            env::validate_endpoint("otlp_endpoint", endpoint)?;
        }
        let protocol = layered(self.protocol, env.protocol, || Protocol::HttpProtobuf);
        let endpoint = signal_endpoint(
            "traces",
            self.endpoint.as_deref(),
            env.traces_endpoint.as_deref(),
            env.endpoint.as_deref(),
            protocol,
        );
        let configured =
            self.endpoint.is_some() || env.traces_endpoint.is_some() || env.endpoint.is_some();
        let exporter = layered(self.exporter, env.exporter, || {
            if configured {
                TracesExporter::Otlp
            } else {
                TracesExporter::Console
            }
        });
        let mut resource_attributes = env.resource_attributes.clone();
        resource_attributes.extend(self.resource_attributes.iter().cloned());
        let mut headers = env.headers.clone();
        headers.extend(self.headers.iter().cloned());
        let batch = layered(self.batch, Some(env.batch), BatchConfig::default);
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(SetupError::invalid(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &batch.max_export_batch_size.to_string(),
                &format!("at most OTEL_BSP_MAX_QUEUE_SIZE ({})", batch.max_queue_size),
            ));
        }
        let resolved = Resolved {
            // The exception to the layering: operators rename deployments, not code.
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
            timeout: layered(self.timeout, env.timeout, || Duration::from_secs(10)),
            compression: layered(self.compression, env.compression, Compression::default),
            extra_roots: self.resolve_extra_roots(&env)?,
            sampler: layered(self.sampler, env.sampler, || {
                TracesSampler::ParentBasedAlwaysOn
            }),
            batch,
            disabled: env.disabled,
        };
        Ok((resolved, self.resolve_propagation(&env)?))
    }

    /// Defaults < `OTEL_PROPAGATORS` < the builder.
    fn resolve_propagation(&self, env: &EnvConfig) -> Result<Propagation, SetupError> {
        let from_builder = match &self.propagators {
            Some(names) => Some(env::propagator_names(
                "propagators",
                &names.join(","),
                names,
            )?),
            None => None,
        };
        let names = layered(from_builder, env.propagators.clone(), || {
            DEFAULT_PROPAGATORS.map(str::to_owned).to_vec()
        });
        let propagator = service_tracing_middleware::propagation::propagator_from_names(&names)
            .map_err(|e| {
                SetupError::invalid("propagators", &names.join(","), env::PROPAGATORS_ACCEPTED)
                    .with_source(e)
            })?;
        Ok(Propagation { names, propagator })
    }

    /// The CA certificates of `otlp_certificate`, else of the variable that named a file; an
    /// error names the one that was read.
    fn resolve_extra_roots(&self, env: &EnvConfig) -> Result<ExtraRoots, SetupError> {
        let file = layered(
            self.certificate
                .clone()
                .map(|path| Some(("otlp_certificate", path))),
            env.certificate
                .clone()
                .map(|(name, path)| Some((name, PathBuf::from(path)))),
            || None,
        );
        match file {
            Some((setting, path)) => ExtraRoots::load(setting, &path),
            None => Ok(ExtraRoots::default()),
        }
    }

    /// The metrics settings, or `None` when metrics are off.
    pub(super) fn resolve_metrics(
        &self,
        config: &Resolved,
    ) -> Result<Option<MetricsSettings>, SetupError> {
        let menv = self.env.metrics()?;
        let env = self.env.traces()?;
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
        let exporter = layered(self.metrics.exporter, menv.exporter, || {
            if configured {
                MetricsExporter::Otlp
            } else {
                MetricsExporter::None
            }
        });
        let wanted = exporter != MetricsExporter::None || self.metrics.prometheus_route.is_some();
        if config.disabled || !wanted {
            return Ok(None);
        }
        let push = (exporter == MetricsExporter::Otlp).then(|| {
            let mut push = config.clone();
            push.endpoint = crate::config::metrics::endpoint(
                self.endpoint.as_deref(),
                menv.endpoint.as_deref(),
                env.endpoint.as_deref(),
                config.protocol,
            );
            // No builder call of its own: the metrics variable, else the traces' timeout.
            push.timeout = menv.timeout.unwrap_or(config.timeout);
            push
        });
        Ok(Some(MetricsSettings {
            push,
            interval: layered(self.metrics.interval, menv.interval, || {
                crate::config::metrics::DEFAULT_INTERVAL
            }),
            cardinality_limit: MAX_ATTRIBUTE_SETS,
        }))
    }

    /// Which log lines are printed: `log_filter`, else `RUST_LOG`, else `info`; an invalid
    /// filter names the one that was read.
    pub(super) fn resolve_log_filter(&self) -> Result<EnvFilter, SetupError> {
        let (setting, filter) = layered(
            self.log_filter.clone().map(|f| ("log_filter", f)),
            env::rust_log().map(|f| ("RUST_LOG", f)),
            || ("log_filter", "info".to_owned()),
        );
        EnvFilter::try_new(&filter).map_err(|e| {
            SetupError::invalid(setting, &filter, "a RUST_LOG-style filter").with_source(e)
        })
    }

    /// The Redis error groups are shared through: `error_redis_url`, else
    /// `SERVICE_TRACING_ERRORS_REDIS_URL`, else none; with the name of the one that was read.
    #[cfg(feature = "redis")]
    pub(super) fn resolve_errors_redis_url(&self) -> Option<(&'static str, String)> {
        layered(
            self.error_redis_url
                .clone()
                .map(|url| Some(("error_redis_url", url))),
            self.env
                .errors_redis_url()
                .map(|url| Some((env::ERRORS_REDIS_URL, url))),
            || None,
        )
    }
}
