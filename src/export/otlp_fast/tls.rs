//! Trust for `https` endpoints (feature `tls`): the roots a TLS connection to the collector is
//! checked against, and the connector that dials it.
//!
//! Roots: the system's trust store (`rustls-native-certs`: what the operating system and `curl`
//! trust, including CAs an operator installed), or the Mozilla roots compiled into
//! `webpki-roots` when the system has none (scratch and distroless images); plus the CA
//! certificates of `OTEL_EXPORTER_OTLP_CERTIFICATE`, if given. The system store is read once
//! per process.

use std::path::Path;
#[cfg(feature = "tls")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "tls")]
use hyper_rustls::HttpsConnector;
#[cfg(feature = "tls")]
use hyper_util::client::legacy::connect::HttpConnector;
#[cfg(feature = "tls")]
use rustls::pki_types::{pem::PemObject, CertificateDer};

use crate::error::{SetupError, SetupErrorKind};

/// Extra CA certificates, added to the roots for `https` endpoints. Empty by default.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExtraRoots {
    #[cfg(feature = "tls")]
    certs: Arc<Vec<CertificateDer<'static>>>,
}

impl ExtraRoots {
    /// Reads a PEM file of CA certificates. An unreadable file, or one without a certificate,
    /// is an error naming `setting`. Without the `tls` feature the file is not read: no
    /// connection would use it, and an `https` endpoint fails set-up on its own.
    pub(crate) fn load(setting: &str, path: &Path) -> Result<Self, SetupError> {
        #[cfg(feature = "tls")]
        {
            let bad = |why: String| {
                SetupError::new(
                    SetupErrorKind::InvalidConfig,
                    format!(
                        "invalid {setting}={}: {why}; expected a PEM file of CA certificates",
                        path.display()
                    ),
                )
            };
            let pem = std::fs::read(path)
                .map_err(|e| bad(format!("cannot read the file ({e})")).with_source(e))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("not valid PEM ({e})")))?;
            if certs.is_empty() {
                return Err(bad("the file holds no CERTIFICATE block".to_owned()));
            }
            // Each must be usable as a trust anchor, now rather than at the first export.
            let mut store = rustls::RootCertStore::empty();
            for cert in certs.iter().cloned() {
                store
                    .add(cert)
                    .map_err(|e| bad(format!("a certificate is not a valid CA ({e})")))?;
            }
            Ok(Self {
                certs: Arc::new(certs),
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = (setting, path, SetupErrorKind::InvalidConfig);
            Ok(Self::default())
        }
    }

    /// How many extra certificates there are.
    #[cfg(all(test, feature = "tls"))]
    pub(crate) fn len(&self) -> usize {
        self.certs.len()
    }
}

/// The system's roots, or webpki-roots when the system has none; read once.
#[cfg(feature = "tls")]
fn base_roots() -> &'static rustls::RootCertStore {
    static ROOTS: OnceLock<rustls::RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = rustls::RootCertStore::empty();
        // Unparsable entries of the system store are skipped, as curl skips them.
        let native = rustls_native_certs::load_native_certs();
        let _ = store.add_parsable_certificates(native.certs);
        if store.is_empty() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        store
    })
}

/// The TLS connector for one transport: ALPN `h2` only for gRPC, `h2` and `http/1.1` for
/// OTLP/HTTP (the server picks). Uses the `ring` provider explicitly, so another crate enabling
/// a second rustls provider in the same binary cannot make this fail.
#[cfg(feature = "tls")]
pub(crate) fn connector(
    http2_only: bool,
    extra: &ExtraRoots,
    http: HttpConnector,
) -> Result<HttpsConnector<HttpConnector>, SetupError> {
    let mut roots = base_roots().clone();
    for cert in extra.certs.iter() {
        // Checked in `load`.
        let _ = roots.add(cert.clone());
    }
    #[allow(
        deprecated,
        reason = "ring lacks post-quantum key exchange; chosen for its lighter build (Cargo.toml)"
    )]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            SetupError::new(SetupErrorKind::Exporter, "cannot configure TLS").with_source(e)
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    Ok(if http2_only {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.enable_all_versions().wrap_connector(http)
    })
}
