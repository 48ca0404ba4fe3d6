use service_tracing_macros::traced;

#[traced(level = "info")]
fn load() {}

fn main() {}
