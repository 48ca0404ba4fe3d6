use service_tracing_macros::traced;

#[traced(args(id, user))]
fn load(id: u64, (a, b): (u8, u8)) -> u8 {
    let _ = id;
    a + b
}

#[traced(args(all), skip(password))]
fn login(user: &str) {
    let _ = user;
}

fn main() {}
