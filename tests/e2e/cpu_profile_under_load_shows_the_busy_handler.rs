use std::time::Duration;

use axum::routing::get;
use axum::Router;
use pprof::protos::Message as _;
use service_tracing::cpu_profile::{profile, CpuProfileError, CpuProfileOptions};

use crate::support::serve;

/// Burns CPU under a name the profile must show.
#[inline(never)]
fn spin_checksum_for_profile(rounds: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..rounds {
        x = std::hint::black_box(x.rotate_left(5) ^ i).wrapping_mul(0x2545_f491_4f6c_dd1d);
    }
    x
}

/// A handler spinning the CPU, driven by concurrent requests while a 2 s profile runs: the
/// flame graph is an SVG document naming the handler's function, the pprof bytes decode to a
/// profile holding it too, and a second profile started meanwhile is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flame_graph_and_pprof_name_the_handler_burning_cpu() {
    let app = Router::new().route(
        "/spin",
        get(|| async { spin_checksum_for_profile(200_000).to_string() }),
    );
    let address = serve(app).await;
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut sent = 0u32;
        loop {
            let batch: Vec<_> = (0..4)
                .map(|_| client.get(format!("{address}/spin")).send())
                .collect();
            for r in futures_util::future::join_all(batch).await {
                assert_eq!(r.unwrap().status(), 200);
                sent += 1;
            }
            if sent > 100_000 {
                break;
            }
        }
    });
    let first = tokio::spawn(profile(CpuProfileOptions::new(Duration::from_secs(2))));
    // Wait (bounded) until the first profile has claimed the profiler, then try a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !service_tracing::cpu_profile::is_running() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = profile(CpuProfileOptions::new(Duration::from_millis(10))).await;
    assert!(
        matches!(second, Err(CpuProfileError::AlreadyRunning)),
        "{second:?}"
    );
    let p = first.await.unwrap().expect("profile");
    load.abort();

    assert!(p.samples > 10, "{p:?}");
    let svg = String::from_utf8(p.flamegraph_svg.clone()).expect("utf-8");
    let start = svg.trim_start();
    assert!(
        start.starts_with("<?xml") || start.starts_with("<svg"),
        "{}",
        &svg[..200.min(svg.len())]
    );
    assert!(svg.trim_end().ends_with("</svg>"), "complete document");
    assert!(
        svg.contains("spin_checksum_for_profile"),
        "the handler's frames are in the flame graph"
    );

    let decoded = pprof::protos::Profile::decode(p.pprof.as_slice()).expect("pprof decodes");
    assert!(!decoded.sample.is_empty());
    assert!(
        decoded
            .string_table
            .iter()
            .any(|s| s.contains("spin_checksum_for_profile")),
        "the handler's function is in the pprof string table"
    );
}
