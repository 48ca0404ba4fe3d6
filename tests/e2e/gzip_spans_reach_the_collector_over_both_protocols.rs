use std::collections::BTreeSet;

use service_tracing::metrics::MetricsExporter;
use service_tracing::{Compression, Protocol, ServiceTracing};

use crate::collector::{CollectedSpan, Collector};
use crate::otlp_proxy::{Answer, OtlpProxy};
use crate::support::{checkouts, options, start, WAIT};

const N: u32 = 10;

/// The ids of the spans of the checkouts tagged `tag` (their traces, all services).
fn span_ids(spans: &[CollectedSpan], tag: &str) -> BTreeSet<String> {
    let traces: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.attr("correlation.id").is_some_and(|c| c.starts_with(tag)))
        .map(|s| s.trace_id.as_str())
        .collect();
    spans
        .iter()
        .filter(|s| traces.contains(s.trace_id.as_str()))
        .map(|s| s.span_id.clone())
        .collect()
}

/// Runs the same checkouts with and without gzip through a recording proxy in front of the
/// real collector: the collector decodes the same spans (names, attributes, count), the proxy
/// saw the compression header on every compressed request and none on the others, and the
/// compressed requests were smaller.
async fn same_spans_with_and_without_gzip(
    protocol: Protocol,
    gzip: fn(ServiceTracing) -> ServiceTracing,
) {
    let collector = Collector::start();
    let upstream = match protocol {
        Protocol::Grpc => collector.grpc_port(),
        _ => collector.http_port(),
    };
    let mut sizes = Vec::new();
    for (tag, compressed) in [("plain", false), ("gzip", true)] {
        let proxy = OtlpProxy::start(Some(upstream), Vec::new(), Answer::Forward).await;
        // Two set-ups in one process: the global subscriber can be installed only once, so
        // neither installs it (the same spans either way: no `tracing` spans).
        let mut setup = options("frontend")
            .otlp_endpoint(proxy.endpoint())
            .otlp_protocol(protocol)
            .metrics_exporter(MetricsExporter::None)
            .install_subscriber(false);
        if compressed {
            setup = gzip(setup);
        }
        let services = start(setup).await;
        checkouts(&reqwest::Client::new(), &services.frontend, tag, N).await;
        services.guard.force_flush().unwrap();
        let stats = services.guard.export_stats();
        services.guard.shutdown().unwrap();
        assert_eq!(
            (stats.failed, stats.rejected, stats.dropped),
            (0, 0, 0),
            "{stats:?}"
        );

        let seen = proxy.seen();
        assert!(!seen.is_empty());
        let header = match protocol {
            Protocol::Grpc => "grpc-encoding",
            _ => "content-encoding",
        };
        for request in &seen {
            assert_eq!(request.status, 200, "the collector took it: {request:?}");
            if compressed && protocol == Protocol::HttpProtobuf {
                assert_eq!(request.headers["x-api-key"], "k3y,w1th space");
            }
            let encoding = request.headers.get(header).map(|v| v.to_str().unwrap());
            assert_eq!(encoding, compressed.then_some("gzip"), "{request:?}");
        }
        sizes.push(seen.iter().map(|r| r.body_len).sum::<usize>());
    }

    let spans = collector.wait_for_spans(WAIT, |s| {
        (0..N).all(|i| {
            ["plain", "gzip"].iter().all(|tag| {
                let id = format!("{tag}-{i}");
                s.iter()
                    .any(|s| s.attr("correlation.id") == Some(id.as_str()))
            })
        })
    });
    // The same spans arrive either way: as many, with the same names and attributes.
    let shape = |tag: &str| {
        let ids = span_ids(&spans, tag);
        let mut shapes: Vec<String> = spans
            .iter()
            .filter(|s| ids.contains(&s.span_id))
            .map(|s| {
                let mut attributes = s.attributes.clone();
                for volatile in [
                    "correlation.id",
                    "server.port",
                    "url.full",
                    "client.address",
                ] {
                    attributes.remove(volatile);
                }
                attributes.retain(|k, _| !k.starts_with("network.peer"));
                format!("{} {} {:?}", s.service_name, s.name, attributes)
            })
            .collect();
        shapes.sort();
        (ids.len(), shapes)
    };
    let (plain_count, plain) = shape("plain");
    let (gzip_count, gzipped) = shape("gzip");
    assert!(plain_count >= 3 * N as usize, "{plain_count}");
    assert_eq!(plain_count, gzip_count);
    assert_eq!(plain, gzipped);
    assert!(
        sizes[1] * 2 < sizes[0],
        "gzip bodies {} bytes against {} plain",
        sizes[1],
        sizes[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_with_gzip_from_the_builder() {
    same_spans_with_and_without_gzip(Protocol::Grpc, |o| o.otlp_compression(Compression::Gzip))
        .await;
}

/// With the variables a hosted backend needs: compression and an API-key header, whose
/// percent-encoded value reaches the wire decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_with_gzip_and_an_api_key_from_the_variables() {
    same_spans_with_and_without_gzip(Protocol::HttpProtobuf, |o| {
        o.env_lookup(|name| match name {
            "OTEL_EXPORTER_OTLP_COMPRESSION" => Some("gzip".to_owned()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-api-key=k3y%2Cw1th%20space".to_owned()),
            _ => None,
        })
    })
    .await;
}
