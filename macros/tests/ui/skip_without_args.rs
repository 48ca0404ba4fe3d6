use service_tracing_macros::traced;

#[traced(skip(password))]
fn login(user: &str, password: &str) {
    let _ = (user, password);
}

#[traced(args(user), skip(password))]
fn login_listed(user: &str, password: &str) {
    let _ = (user, password);
}

fn main() {}
