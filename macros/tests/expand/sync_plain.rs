#[traced]
fn load_order(id: u64) -> Order {
    Order { id }
}
