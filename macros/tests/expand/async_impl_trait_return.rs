#[traced(kind = producer)]
async fn publish(&mut self, event: Event) -> impl Display {
    self.queue.push(event);
    self.queue.len()
}
