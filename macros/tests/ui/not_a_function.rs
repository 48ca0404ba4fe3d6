use service_tracing_macros::traced;

#[traced]
struct Order {
    id: u64,
}

trait Store {
    #[traced]
    fn load(&self, id: u64) -> u64;
}

fn main() {}
