//! Resolution: each setting is the builder's value, else the environment's, else the default
//! ([`layered`]), except the service name, where `OTEL_SERVICE_NAME` wins. The variables are
//! read in [`crate::config`], through the builder's [`Source`](crate::config::env::Source).

use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use super::ServiceTracing;
use crate::config::env::{self, EnvConfig, LogsEnv, OtlpEnv};
use crate::config::{
    layered, signal_endpoint, BatchConfig, Compression, Propagation, Protocol, Resolved,
    TracesExporter, TracesSampler, DEFAULT_PROPAGATORS,
};
use crate::error::SetupError;
use crate::metrics::{MetricsExporter, MetricsSettings, MAX_ATTRIBUTE_SETS};
use crate::wire::tls::{PemFile, TlsConfig, TlsFiles};

/// `OTEL_EXPORTER_OTLP_TIMEOUT`'s default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl ServiceTracing {
    pub(super) fn resolve(&self) -> Result<(Resolved, Propagation), SetupError> {
        if let Some(e) = &self.file_error {
            return Err(SetupError::new(
                crate::error::SetupErrorKind::InvalidConfig,
                e.clone(),
            ));
        }
        self.check_correlation_headers()?;
        let env = self.env.traces()?;
        if let Some(endpoint) = &self.endpoint {
            env::validate_endpoint("otlp_endpoint", endpoint)?;
        }
        let protocol = layered(self.protocol, env.protocol, || Protocol::HttpProtobuf);
        let endpoint = env::with_scheme(
            signal_endpoint(
                "traces",
                self.endpoint.as_deref(),
                env.traces_endpoint.as_deref(),
                env.endpoint.as_deref(),
                protocol,
            ),
            protocol,
            env.otlp.insecure,
        )?;
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
        let mut headers = env.otlp.headers.clone();
        headers.extend(self.headers.iter().cloned());
        let batch = layered(self.batch, Some(env.batch), BatchConfig::default);
        if batch.max_export_batch_size > batch.max_queue_size {
            return Err(SetupError::invalid(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                &batch.max_export_batch_size.to_string(),
                &format!("at most OTEL_BSP_MAX_QUEUE_SIZE ({})", batch.max_queue_size),
            ));
        }
        let sampler = layered(self.sampler, env.sampler, || {
            TracesSampler::ParentBasedAlwaysOn
        });
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
            timeout: layered(self.timeout, env.otlp.timeout, || DEFAULT_TIMEOUT),
            compression: layered(self.compression, env.otlp.compression, Compression::default),
            tls: self.resolve_tls(&env.otlp, None)?,
            sampler,
            sampling: self.sampling_rules.clone().map(|rules| {
                let (base, parent_based) = sampler.root_action();
                crate::sampling::RouteSampler::with_base(rules, base, parent_based)
            }),
            batch,
            disabled: env.disabled,
        };
        Ok((resolved, self.resolve_propagation(&env)?))
    }

    /// The correlation header names are header names.
    fn check_correlation_headers(&self) -> Result<(), SetupError> {
        let layer = &self.layer;
        let reads = layer.correlation_headers.iter().flatten();
        let echo = layer.correlation_response_header.iter().flatten();
        let named = reads
            .map(|name| ("correlation_headers", name))
            .chain(echo.map(|name| ("correlation_response_header", name)));
        for (setting, name) in named {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(SetupError::invalid(setting, name, "a header name"));
            }
        }
        Ok(())
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

    /// The TLS files of a signal: `otlp_certificate`, else the variable that named a CA file;
    /// `otlp_client_certificate`, else the variables that named the client certificate and key.
    /// Each comes with the name of the setting that gave it, for errors about the file.
    fn tls_files(&self, otlp: &OtlpEnv) -> TlsFiles {
        let from_env = |v: &Option<(&'static str, String)>| {
            v.as_ref()
                .map(|(name, path)| PemFile::new(name, PathBuf::from(path)))
        };
        let ca = layered(
            self.certificate
                .clone()
                .map(|path| Some(PemFile::new("otlp_certificate", path))),
            from_env(&otlp.certificate).map(Some),
            || None,
        );
        let (client_certificate, client_key) = match &self.client_certificate {
            // The pair is one setting: the builder's replaces both variables.
            Some((cert, key)) => (
                Some(PemFile::new("otlp_client_certificate", cert.clone())),
                Some(PemFile::new("otlp_client_certificate", key.clone())),
            ),
            None => (
                from_env(&otlp.client_certificate),
                from_env(&otlp.client_key),
            ),
        };
        TlsFiles {
            ca,
            client_certificate,
            client_key,
        }
    }

    /// The TLS configuration of a signal: `shared` (the traces') when made of the same files,
    /// so one configuration serves every signal; else one loaded from its own files.
    fn resolve_tls(
        &self,
        otlp: &OtlpEnv,
        shared: Option<&TlsConfig>,
    ) -> Result<TlsConfig, SetupError> {
        let files = self.tls_files(otlp);
        match shared {
            Some(tls) if tls.files().same_paths(&files) => Ok(tls.clone()),
            _ => TlsConfig::load(files),
        }
    }

    /// The export settings of another signal than traces (metrics, log records): the traces'
    /// `config` with `protocol` and `endpoint`, and the headers, timeout, compression and TLS
    /// of the signal's variables (`otlp`), under the builder's calls, which apply to every
    /// signal.
    pub(super) fn resolve_signal(
        &self,
        config: &Resolved,
        otlp: &OtlpEnv,
        protocol: Protocol,
        endpoint: String,
    ) -> Result<Resolved, SetupError> {
        let mut headers = otlp.headers.clone();
        headers.extend(self.headers.iter().cloned());
        let endpoint = env::with_scheme(endpoint, protocol, otlp.insecure)?;
        Ok(Resolved {
            protocol,
            endpoint,
            headers,
            timeout: layered(self.timeout, otlp.timeout, || DEFAULT_TIMEOUT),
            compression: layered(self.compression, otlp.compression, Compression::default),
            tls: self.resolve_tls(otlp, Some(&config.tls))?,
            ..config.clone()
        })
    }

    /// The log records' export settings, or `None` when they are not exported (traces not over
    /// OTLP, or `OTEL_LOGS_EXPORTER` other than `otlp`).
    pub(super) fn resolve_logs(
        &self,
        config: &Resolved,
        env: &LogsEnv,
    ) -> Result<Option<Resolved>, SetupError> {
        if env.off || config.exporter != TracesExporter::Otlp {
            return Ok(None);
        }
        let protocol = self.signal_protocol(self.logs_protocol, env.otlp.protocol);
        let base_env = self.env.traces()?.endpoint;
        let endpoint = match &env.endpoint {
            // `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, a full URL, wins even over `otlp_endpoint`:
            // the records may have a collector of their own.
            Some(endpoint) => endpoint.clone(),
            // Only the traces' own endpoint (or none) is set: the records follow the spans.
            None if self.endpoint.is_none()
                && base_env.is_none()
                && protocol == config.protocol =>
            {
                crate::errors::logs::logs_endpoint(&config.endpoint, protocol)
            }
            None => signal_endpoint(
                "logs",
                self.endpoint.as_deref(),
                None,
                base_env.as_deref(),
                protocol,
            ),
        };
        self.resolve_signal(config, &env.otlp, protocol, endpoint)
            .map(Some)
    }

    /// A signal's protocol other than the traces': the builder's call for the signal, else
    /// `otlp_protocol`, else the signal's variable (which falls back on
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`), else HTTP/protobuf, the specification's default.
    fn signal_protocol(&self, own: Option<Protocol>, env: Option<Protocol>) -> Protocol {
        layered(own.or(self.protocol), env, || Protocol::HttpProtobuf)
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
        let push = match exporter {
            MetricsExporter::Otlp => {
                let protocol = self.signal_protocol(self.metrics.protocol, menv.otlp.protocol);
                let endpoint = crate::config::metrics::endpoint(
                    self.endpoint.as_deref(),
                    menv.endpoint.as_deref(),
                    env.endpoint.as_deref(),
                    protocol,
                );
                let mut push = self.resolve_signal(config, &menv.otlp, protocol, endpoint)?;
                // `OTEL_METRIC_EXPORT_TIMEOUT`, the reader's own, wins when set.
                if let Some(timeout) = menv.timeout {
                    push.timeout = timeout;
                }
                Some(push)
            }
            _ => None,
        };
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
            env::rust_log()
                .map(|f| ("RUST_LOG", f))
                .or_else(|| self.env.file_var("RUST_LOG").map(|f| ("logging.filter", f))),
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
