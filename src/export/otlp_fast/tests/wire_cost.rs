//! The export cost per span over `https` beside plain `http`, with and without gzip: bytes on
//! the wire (everything the client sent on the TCP connection: TLS records, HTTP/1.1 or h2
//! framing, headers, bodies) and the export thread's CPU. A measurement, not a check.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{measurement_runtimes, script, serve, server_spans, test_pki, thread_cpu, Log, Reply};
use super::{FastOtlpExporter, Transport, Wire, RESOURCE};
use crate::config::Compression;
use crate::wire::tls::{PemFile, TlsConfig, TlsFiles};

/// A stream that counts the bytes read from it: on the collector's side, what the exporter
/// sent on the wire.
struct Counted<S> {
    inner: S,
    read: Arc<AtomicU64>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        self.read.fetch_add(read, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A collector on a free local port, behind TLS when `tls` is given, counting the bytes it
/// reads off its connections (TLS records included).
async fn counting_collector(
    reply: Reply,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> (std::net::SocketAddr, Log, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    let log = Log::default();
    let read = Arc::new(AtomicU64::new(0));
    let (server_log, counter) = (log.clone(), read.clone());
    let replies = script(vec![reply]);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let stream = Counted {
                inner: stream,
                read: counter.clone(),
            };
            let (log, replies, acceptor) = (server_log.clone(), replies.clone(), acceptor.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, replies, log).await;
                        }
                    }
                    None => serve(stream, replies, log).await,
                }
            });
        }
    });
    (addr, log, read)
}

/// Measures, for both wires, plain `http` and `https` (TLS 1.3, ring), each without
/// compression and with gzip (level 1, the one used): bytes on the wire and the export
/// thread's CPU per span, in interleaved rounds after a warm-up round (so handshakes are not
/// counted: connections are pooled). Batches of 512 spans shaped like the server layer's.
/// Run in release: `cargo nextest run --release -p service-tracing --all-features
/// --run-ignored only -E 'test(export_cost_per_span_over_https_and_http)' --no-capture`.
#[test]
#[ignore = "a measurement, not a check; run in release (see the doc comment)"]
fn export_cost_per_span_over_https_and_http_with_and_without_gzip() {
    const BATCH: usize = 512;
    const BATCHES: usize = 100;
    // 10 rounds: 512,000 spans per variant, so one 10 ms tick is 20 ns per span.
    const ROUNDS: usize = 10;
    let (servers, client) = measurement_runtimes();
    let (ca, config) = test_pki(&[b"h2", b"http/1.1"]);
    let ca_file = std::env::temp_dir().join(format!("st-wire-cost-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, &ca).expect("write CA");
    let roots = TlsConfig::load(TlsFiles {
        ca: Some(PemFile::new("test", &ca_file)),
        ..TlsFiles::default()
    })
    .expect("CA file");
    std::fs::remove_file(&ca_file).expect("remove CA");

    let mut variants = Vec::new();
    for wire in [Wire::Http, Wire::Grpc] {
        for tls in [false, true] {
            for compression in [Compression::None, Compression::Gzip] {
                let reply = match wire {
                    Wire::Grpc => Reply::GrpcTrailers("0", ""),
                    Wire::Http => Reply::Http(200),
                };
                let (addr, log, read) =
                    servers.block_on(counting_collector(reply, tls.then(|| config.clone())));
                let endpoint = match (wire, tls) {
                    (Wire::Http, false) => format!("http://{addr}/v1/traces"),
                    (Wire::Http, true) => format!("https://localhost:{}/v1/traces", addr.port()),
                    (Wire::Grpc, false) => format!("http://{addr}"),
                    (Wire::Grpc, true) => format!("https://localhost:{}", addr.port()),
                };
                let _enter = client.enter();
                let mut exporter = FastOtlpExporter::new(
                    Transport::new(wire, &endpoint, &[], Duration::from_secs(5), &roots)
                        .expect("transport")
                        .with_compression(compression),
                );
                exporter.set_resource(&RESOURCE);
                let name = format!(
                    "{wire:?} {} {}",
                    if tls { "https" } else { "http" },
                    if compression == Compression::Gzip {
                        "gzip"
                    } else {
                        "none"
                    }
                );
                variants.push((name, exporter, log, read));
            }
        }
    }
    let batches: Vec<Vec<SpanData>> = (0..BATCHES as u64)
        .map(|seed| server_spans(seed, BATCH))
        .collect();
    let mut cpu = vec![Duration::ZERO; variants.len()];
    let mut wire_bytes = vec![0_u64; variants.len()];
    let mut body_bytes = vec![0_usize; variants.len()];
    for round in 0..=ROUNDS {
        for (i, (_, exporter, log, read)) in variants.iter().enumerate() {
            let work = batches.clone();
            let read_before = read.load(Ordering::Relaxed);
            let start = thread_cpu();
            client.block_on(async {
                for batch in work {
                    exporter.export(batch).await.expect("export");
                }
            });
            let spent = thread_cpu() - start;
            // Every request is answered before `export` returns, so its bytes were read.
            let sent = read.load(Ordering::Relaxed) - read_before;
            let mut log = log.lock().expect("log lock");
            // Round 0 warms up (connections, handshakes, buffers).
            if round > 0 {
                cpu[i] += spent;
                wire_bytes[i] += sent;
                body_bytes[i] += log.iter().map(|r| r.body.len()).sum::<usize>();
            }
            log.clear();
        }
    }
    let spans = (ROUNDS * BATCHES * BATCH) as f64;
    for (i, (name, _, _, _)) in variants.iter().enumerate() {
        println!(
            "{name}: {:.1} bytes on the wire ({:.1} of bodies) and {:.0} ns of export-thread \
             CPU per span",
            wire_bytes[i] as f64 / spans,
            body_bytes[i] as f64 / spans,
            cpu[i].as_nanos() as f64 / spans,
        );
    }
}
