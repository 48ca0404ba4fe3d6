async fn publish(&mut self, event: Event) -> impl Display {
    fn __traced_here() {}
    static __TRACED_SITE: ::service_tracing::__private::Site = ::service_tracing::__private::Site::new(
        "publish",
        ::core::file!(),
        ::core::line!(),
        ::service_tracing::__private::SpanKind::Producer,
        || ::core::any::type_name_of_val(&__traced_here),
    );
    #[allow(unused_mut)]
    let mut __traced_span = ::service_tracing::__private::start(&__TRACED_SITE);
    __traced_span
        .in_scope(
            async move {
                self.queue.push(event);
                self.queue.len()
            },
            |_, __traced_span| __traced_span.succeed(),
        )
        .await
}
