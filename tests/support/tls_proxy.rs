//! A TLS-terminating proxy for tests: `rotel-agent` receives plain OTLP only, so TLS export is
//! tested through this proxy in front of it. A CA and a server certificate (for `localhost` and
//! `127.0.0.1`) are made by `rcgen` when the proxy starts; the CA is written to a PEM file for
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`. The proxy offers ALPN `h2` and `http/1.1`, records what each
//! connection negotiated, and forwards the decrypted bytes to a plain TCP port.
//!
//! For mTLS ([`TlsProxy::start_requiring_client_certificates`]) it also requires a client
//! certificate signed by the test CA (rustls' `WebPkiClientVerifier`), and writes one with its
//! key for `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` / `_CLIENT_KEY`; a client without one never
//! completes the handshake, and nothing is forwarded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A running proxy; stops when dropped.
pub struct TlsProxy {
    port: u16,
    ca_file: PathBuf,
    /// With mTLS: the client certificate and its key, signed by the test CA.
    client_files: Option<(PathBuf, PathBuf)>,
    alpn: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Starts a proxy on a free loopback port forwarding to `127.0.0.1:upstream_port`. Must be
    /// called inside a tokio runtime.
    pub async fn start(upstream_port: u16) -> TlsProxy {
        Self::start_with(upstream_port, false).await
    }

    /// Like [`TlsProxy::start`], refusing any client without a certificate signed by the test
    /// CA; one is written, with its key, to [`TlsProxy::client_certificate_file`] and
    /// [`TlsProxy::client_key_file`].
    pub async fn start_requiring_client_certificates(upstream_port: u16) -> TlsProxy {
        Self::start_with(upstream_port, true).await
    }

    async fn start_with(upstream_port: u16, require_client_certificates: bool) -> TlsProxy {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "service-tracing test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

        #[allow(deprecated, reason = "the exporter's provider (see Cargo.toml)")]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let mut client_pems = None;
        let builder = if require_client_certificates {
            let mut roots = RootCertStore::empty();
            roots.add(ca_cert.der().clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            let client_key = KeyPair::generate().unwrap();
            let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            client_params
                .distinguished_name
                .push(DnType::CommonName, "service-tracing test client");
            client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
            client_pems = Some((client_cert.pem(), client_key.serialize_pem()));
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ca_file = std::env::temp_dir().join(format!(
            "service-tracing-test-ca-{}-{port}.pem",
            std::process::id()
        ));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let client_files = client_pems.map(|(cert, key)| {
            let [cert_file, key_file] = ["client", "client-key"].map(|what| {
                std::env::temp_dir().join(format!(
                    "service-tracing-test-{what}-{}-{port}.pem",
                    std::process::id()
                ))
            });
            std::fs::write(&cert_file, cert).unwrap();
            std::fs::write(&key_file, key).unwrap();
            (cert_file, key_file)
        });

        let alpn = Arc::new(Mutex::new(Vec::new()));
        let seen = alpn.clone();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // A client that distrusts our CA aborts the handshake: nothing to forward.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let protocol = tls
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(protocol);
                    let Ok(mut plain) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            port,
            ca_file,
            client_files,
            alpn,
            task,
        }
    }

    /// `https://localhost:<port>`.
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// The PEM file holding the test CA's certificate.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    /// The PEM file of the client certificate the proxy accepts (with mTLS only).
    pub fn client_certificate_file(&self) -> &std::path::Path {
        &self
            .client_files
            .as_ref()
            .expect("started requiring client certificates")
            .0
    }

    /// The PEM file of that certificate's private key (with mTLS only).
    pub fn client_key_file(&self) -> &std::path::Path {
        &self
            .client_files
            .as_ref()
            .expect("started requiring client certificates")
            .1
    }

    /// The ALPN protocol each completed handshake chose (`""` for none), in order.
    pub fn negotiated(&self) -> Vec<String> {
        self.alpn.lock().unwrap().clone()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.ca_file);
        if let Some((cert, key)) = &self.client_files {
            let _ = std::fs::remove_file(cert);
            let _ = std::fs::remove_file(key);
        }
    }
}
