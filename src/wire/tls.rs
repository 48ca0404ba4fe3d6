//! TLS for `https` endpoints (feature `tls`): the roots a connection to the collector is checked
//! against, the client certificate it presents (mTLS), and the connector that dials it.
//!
//! Roots: the system's trust store (`rustls-native-certs`: what the operating system and `curl`
//! trust, including CAs an operator installed), or the Mozilla roots compiled into
//! `webpki-roots` when the system has none (scratch and distroless images); plus the CA
//! certificates of `OTEL_EXPORTER_OTLP_CERTIFICATE`, if given. The system store is read once
//! per process.
//!
//! Client authentication: the certificate chain and private key of
//! `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY` (PEM), presented
//! to a collector that asks for one.
//!
//! The files are read, checked and turned into a rustls `ClientConfig` once, at set-up
//! ([`TlsConfig::load`]); spans, metrics and log records share it when their files are the same
//! (the usual case), through one `Arc`. Without files, every transport shares one default
//! configuration, built at the first `https` connection of the process.

use std::path::PathBuf;
#[cfg(feature = "tls")]
use std::sync::{Arc, OnceLock};

#[cfg(feature = "tls")]
use hyper_rustls::HttpsConnector;
#[cfg(feature = "tls")]
use hyper_util::client::legacy::connect::HttpConnector;
#[cfg(feature = "tls")]
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
#[cfg(feature = "tls")]
use rustls::ClientConfig;

use crate::error::{SetupError, SetupErrorKind};

/// A PEM file and the setting that named it (a builder call or a variable), which an error
/// about the file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PemFile {
    pub(crate) setting: &'static str,
    pub(crate) path: PathBuf,
}

impl PemFile {
    pub(crate) fn new(setting: &'static str, path: impl Into<PathBuf>) -> Self {
        Self {
            setting,
            path: path.into(),
        }
    }
}

/// The files one signal's TLS is made of, after layering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// Extra CA certificates (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub(crate) ca: Option<PemFile>,
    /// The client's certificate chain (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`).
    pub(crate) client_certificate: Option<PemFile>,
    /// The client's private key (`OTEL_EXPORTER_OTLP_CLIENT_KEY`).
    pub(crate) client_key: Option<PemFile>,
}

impl TlsFiles {
    /// Whether `other` names the same files, whatever settings named them.
    pub(crate) fn same_paths(&self, other: &Self) -> bool {
        let path = |f: &Option<PemFile>| f.as_ref().map(|f| f.path.clone());
        path(&self.ca) == path(&other.ca)
            && path(&self.client_certificate) == path(&other.client_certificate)
            && path(&self.client_key) == path(&other.client_key)
    }
}

/// The TLS configuration of a transport: cheap to clone, shared by every transport made from
/// the same files.
#[derive(Clone, Default)]
pub(crate) struct TlsConfig {
    files: TlsFiles,
    /// `None`: the process-wide default (system roots, no client certificate).
    #[cfg(feature = "tls")]
    built: Option<Arc<Built>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// One configuration per wire, differing only in ALPN: `h2` for gRPC; `h2` and `http/1.1` for
/// OTLP/HTTP (the server picks).
#[cfg(feature = "tls")]
struct Built {
    grpc: Arc<ClientConfig>,
    http: Arc<ClientConfig>,
    #[cfg(test)]
    extra_roots: usize,
}

impl TlsConfig {
    /// Reads and checks the files, and builds the configuration. An unreadable file, one
    /// without the expected PEM block, a certificate that is not a valid CA, a key that does
    /// not match its certificate, or a client certificate without a key (or the reverse) is an
    /// error naming the setting. Without the `tls` feature the files are not read: no
    /// connection would use them, and an `https` endpoint fails set-up on its own.
    pub(crate) fn load(files: TlsFiles) -> Result<Self, SetupError> {
        #[cfg(feature = "tls")]
        {
            if files == TlsFiles::default() {
                return Ok(Self::default());
            }
            let built = Built::from_files(&files)?;
            Ok(Self {
                files,
                built: Some(Arc::new(built)),
            })
        }
        #[cfg(not(feature = "tls"))]
        {
            let _ = SetupErrorKind::InvalidConfig;
            Ok(Self { files })
        }
    }

    /// The files this configuration was made of: a signal whose files are the same shares it.
    pub(crate) fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Whether `other` is this very configuration (not a copy made from the same files).
    #[cfg(all(test, feature = "tls"))]
    pub(crate) fn shares(&self, other: &Self) -> bool {
        match (&self.built, &other.built) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// How many extra CA certificates there are.
    #[cfg(all(test, feature = "tls"))]
    pub(crate) fn extra_roots(&self) -> usize {
        self.built.as_ref().map_or(0, |b| b.extra_roots)
    }

    /// Whether a client certificate is presented.
    #[cfg(all(test, feature = "tls"))]
    pub(crate) fn has_client_certificate(&self) -> bool {
        self.built
            .as_ref()
            .is_some_and(|b| b.http.client_auth_cert_resolver.has_certs())
    }
}

#[cfg(feature = "tls")]
impl Built {
    fn from_files(files: &TlsFiles) -> Result<Self, SetupError> {
        let mut roots = base_roots().clone();
        let mut extra = 0;
        if let Some(ca) = &files.ca {
            for cert in read_certificates(ca, "CA certificates")? {
                roots.add(cert).map_err(|e| {
                    invalid(
                        ca,
                        &format!("a certificate is not a valid CA ({e})"),
                        "CA certificates",
                    )
                })?;
                extra += 1;
            }
        }
        let builder = builder()?.with_root_certificates(roots);
        let http = match (&files.client_certificate, &files.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certificates(cert, "a certificate chain")?;
                let key_der = read_key(key)?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    SetupError::new(
                        SetupErrorKind::InvalidConfig,
                        format!(
                            "invalid {}={} with {}={}: {e}; expected the client's certificate \
                             chain and its private key",
                            cert.setting,
                            cert.path.display(),
                            key.setting,
                            key.path.display()
                        ),
                    )
                    .with_source(e)
                })?
            }
            (Some(one), None) | (None, Some(one)) => {
                let missing = if files.client_key.is_none() {
                    "a client key (OTEL_EXPORTER_OTLP_CLIENT_KEY)"
                } else {
                    "a client certificate (OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)"
                };
                return Err(SetupError::new(
                    SetupErrorKind::InvalidConfig,
                    format!(
                        "{}={} is set without {missing}: mTLS needs both",
                        one.setting,
                        one.path.display()
                    ),
                ));
            }
        };
        Ok(Self::with_alpn(http, extra))
    }

    /// The two wires' configurations from one built without ALPN.
    fn with_alpn(mut http: ClientConfig, #[allow(unused)] extra_roots: usize) -> Self {
        let mut grpc = http.clone();
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            grpc: Arc::new(grpc),
            http: Arc::new(http),
            #[cfg(test)]
            extra_roots,
        }
    }

    /// The configuration of transports without files, built once per process.
    fn default_shared() -> Result<Arc<Self>, SetupError> {
        static DEFAULT: OnceLock<Arc<Built>> = OnceLock::new();
        if let Some(built) = DEFAULT.get() {
            return Ok(built.clone());
        }
        let http = builder()?
            .with_root_certificates(base_roots().clone())
            .with_no_client_auth();
        Ok(DEFAULT
            .get_or_init(|| Arc::new(Self::with_alpn(http, 0)))
            .clone())
    }
}

/// A configuration builder with the `ring` provider, chosen explicitly so that another crate
/// enabling a second rustls provider in the same binary cannot make this fail.
#[cfg(feature = "tls")]
fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, SetupError> {
    #[allow(
        deprecated,
        reason = "ring lacks post-quantum key exchange; chosen for its lighter build (Cargo.toml)"
    )]
    let provider = rustls::crypto::ring::default_provider();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            SetupError::new(SetupErrorKind::Exporter, "cannot configure TLS").with_source(e)
        })
}

#[cfg(feature = "tls")]
fn invalid(file: &PemFile, why: &str, expected: &str) -> SetupError {
    SetupError::new(
        SetupErrorKind::InvalidConfig,
        format!(
            "invalid {}={}: {why}; expected a PEM file of {expected}",
            file.setting,
            file.path.display()
        ),
    )
}

#[cfg(feature = "tls")]
fn read(file: &PemFile, expected: &str) -> Result<Vec<u8>, SetupError> {
    std::fs::read(&file.path)
        .map_err(|e| invalid(file, &format!("cannot read the file ({e})"), expected).with_source(e))
}

/// The certificates of a PEM file; at least one.
#[cfg(feature = "tls")]
fn read_certificates(
    file: &PemFile,
    expected: &str,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let pem = read(file, expected)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(file, &format!("not valid PEM ({e})"), expected))?;
    if certs.is_empty() {
        return Err(invalid(
            file,
            "the file holds no CERTIFICATE block",
            expected,
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
#[cfg(feature = "tls")]
fn read_key(file: &PemFile) -> Result<PrivateKeyDer<'static>, SetupError> {
    const EXPECTED: &str = "a private key";
    let pem = read(file, EXPECTED)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            invalid(file, "the file holds no PRIVATE KEY block", EXPECTED)
        }
        e => invalid(file, &format!("not valid PEM ({e})"), EXPECTED),
    })
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

/// The TLS connector for one transport, on the shared configuration of its wire: ALPN `h2`
/// only for gRPC, `h2` and `http/1.1` for OTLP/HTTP.
#[cfg(feature = "tls")]
pub(crate) fn connector(
    http2_only: bool,
    tls: &TlsConfig,
    http: HttpConnector,
) -> Result<HttpsConnector<HttpConnector>, SetupError> {
    let built = match &tls.built {
        Some(built) => built.clone(),
        None => Built::default_shared()?,
    };
    let config = if http2_only {
        built.grpc.clone()
    } else {
        built.http.clone()
    };
    // The transport gives this connector `https` URIs only (see `Transport::for_method`).
    Ok(HttpsConnector::from((http, config)))
}
