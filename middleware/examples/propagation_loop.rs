//! Runs the propagation benchmark's W3C case (`traceparent` + `tracestate` + an 8-member
//! `baggage`, extract then inject) N times: the program to run under callgrind twice (N and
//! 3N) to count the instructions of one extract + inject, a figure that holds on a busy
//! machine where wall-clock ones do not.
//!
//! ```text
//! valgrind --tool=callgrind propagation_loop both 1000   # or `extract`, `inject`
//! valgrind --tool=callgrind propagation_loop both_alternating 1000
//! ```
//!
//! `*_alternating` reads two baggage headers in turn (one member differs), so the thread's
//! memory of its last header never holds the one read: the cost of new baggage each time.
//!
//! `interleaved` extracts both headers, then injects both contexts: requests a thread
//! interleaves, where each injection follows another extraction.
//!
//! `sdk_insert` and `sdk_from_iter` build the same eight members into OpenTelemetry's
//! `Baggage` from keys and values already parsed (copied as a parser copies them), and drop
//! it: the least any extraction that hands the OpenTelemetry API a `Baggage` can cost.

use std::hint::black_box;

use http::{HeaderMap, HeaderValue};
use opentelemetry::baggage::{Baggage, BaggageMetadata};
use opentelemetry::{Key, StringValue};
use service_tracing_middleware::propagation::{default_propagator, inject, PropagatorSource};

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const BAGGAGE_8: &str = "userId=alice,serverNode=DF%2028,isProduction=false,tenant=acme,\
                         region=eu-west-1,plan=gold,feature.flag=on,correlation.id=order-42";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let variant = args.next().unwrap_or_else(|| "both".to_owned());
    let count: u32 = args.next().as_deref().unwrap_or("1000").parse()?;
    let mut headers = HeaderMap::new();
    headers.insert("traceparent", HeaderValue::from_static(TRACEPARENT));
    headers.insert("tracestate", HeaderValue::from_static(TRACESTATE));
    headers.insert("baggage", HeaderValue::from_static(BAGGAGE_8));
    let mut other = headers.clone();
    other.insert(
        "baggage",
        HeaderValue::from_static(
            "userId=bob,serverNode=DF%2028,isProduction=false,tenant=acme,\
             region=eu-west-1,plan=gold,feature.flag=on,correlation.id=order-42",
        ),
    );
    let members: Vec<(&str, &str)> = [
        ("userId", "alice"),
        ("serverNode", "DF 28"),
        ("isProduction", "false"),
        ("tenant", "acme"),
        ("region", "eu-west-1"),
        ("plan", "gold"),
        ("feature.flag", "on"),
        ("correlation.id", "order-42"),
    ]
    .into();
    let owned = |(k, v): &(&str, &str)| {
        (
            Key::from(black_box(*k).to_owned()),
            (
                StringValue::from(black_box(*v).to_owned()),
                BaggageMetadata::default(),
            ),
        )
    };
    let source = PropagatorSource::default();
    let propagator = default_propagator();
    let extracted = source.extract(&headers);
    for i in 0..count {
        let turn = if i % 2 == 0 { &headers } else { &other };
        match variant.as_str() {
            "extract" => drop(black_box(source.extract(black_box(&headers)))),
            "inject" => {
                let mut out = HeaderMap::new();
                inject(&*propagator, black_box(&extracted), &mut out);
                drop(black_box(out));
            }
            "both" => {
                let cx = source.extract(black_box(&headers));
                let mut out = HeaderMap::new();
                inject(&*propagator, &cx, &mut out);
                drop(black_box(out));
            }
            "extract_alternating" => drop(black_box(source.extract(black_box(turn)))),
            "both_alternating" => {
                let cx = source.extract(black_box(turn));
                let mut out = HeaderMap::new();
                inject(&*propagator, &cx, &mut out);
                drop(black_box(out));
            }
            "interleaved" => {
                if i % 2 == 0 {
                    let first = source.extract(black_box(&headers));
                    let second = source.extract(black_box(&other));
                    for cx in [first, second] {
                        let mut out = HeaderMap::new();
                        inject(&*propagator, &cx, &mut out);
                        drop(black_box(out));
                    }
                }
            }
            "sdk_insert" => {
                let mut baggage = Baggage::new();
                for member in &members {
                    let (key, (value, metadata)) = owned(member);
                    drop(baggage.insert_with_metadata(key, value, metadata));
                }
                drop(black_box(baggage));
            }
            "sdk_from_iter" => {
                let baggage: Baggage = members.iter().map(owned).collect();
                drop(black_box(baggage));
            }
            unknown => {
                return Err(format!(
                    "unknown variant {unknown:?}: extract, inject, both, \
                     extract_alternating, both_alternating, interleaved, sdk_insert, sdk_from_iter"
                )
                .into())
            }
        }
    }
    Ok(())
}
