use std::future::Future;

use service_tracing_macros::traced;

#[traced]
fn fetch() -> impl Future<Output = u64> {
    async { 7 }
}

#[traced]
const fn answer() -> u64 {
    42
}

fn main() {}
