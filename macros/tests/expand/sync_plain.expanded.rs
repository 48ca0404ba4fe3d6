fn load_order(id: u64) -> Order {
    fn __traced_here() {}
    static __TRACED_SITE: ::service_tracing::__private::Site = ::service_tracing::__private::Site::new(
        "load_order",
        ::core::file!(),
        ::core::line!(),
        ::service_tracing::__private::SpanKind::Internal,
        || ::core::any::type_name_of_val(&__traced_here),
    );
    #[allow(unused_mut)]
    let mut __traced_span = ::service_tracing::__private::start(&__TRACED_SITE);
    let __traced_entered = __traced_span.enter();
    { Order { id } }
}
