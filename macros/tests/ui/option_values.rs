use service_tracing_macros::traced;

#[traced(kind = server)]
fn a() {}

#[traced(kind = background)]
fn b() {}

#[traced(result, category = network)]
fn c() -> Result<(), std::io::Error> {
    Ok(())
}

#[traced(category = database)]
fn d() {}

#[traced(slow_ms = 0)]
fn e() {}

#[traced(name = "one", name = "two")]
fn f() {}

#[traced(result(err))]
fn g() -> Result<(), std::io::Error> {
    Ok(())
}

#[traced(args(x, x))]
fn h(x: u8) {
    let _ = x;
}

fn main() {}
