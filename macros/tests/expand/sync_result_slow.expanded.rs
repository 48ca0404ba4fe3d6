fn read_config<P: AsRef<Path> + Debug>(
    path: P,
    mut cache: impl Cache,
) -> io::Result<String> {
    fn __traced_here() {}
    static __TRACED_SITE: ::service_tracing::__private::Site = ::service_tracing::__private::Site::new(
            "read_config",
            ::core::file!(),
            ::core::line!(),
            ::service_tracing::__private::SpanKind::Internal,
            || ::core::any::type_name_of_val(&__traced_here),
        )
        .slow_ms(50);
    #[allow(unused_mut)]
    let mut __traced_span = ::service_tracing::__private::start(&__TRACED_SITE);
    if __traced_span.is_recording() {
        __traced_span.arg_debug("code.function.args.path", &path);
    }
    let __traced_ret = {
        let __traced_entered = __traced_span.enter();
        #[allow(clippy::redundant_closure_call)]
        (move || {
            #[allow(
                unknown_lints,
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return,
                clippy::unreachable
            )]
            if false {
                let __traced_fake_return: io::Result<String> = loop {};
                return __traced_fake_return;
            }
            {
                if let Some(text) = cache.get(path.as_ref()) {
                    return Ok(text);
                }
                std::fs::read_to_string(path)
            }
        })()
    };
    match &__traced_ret {
        ::core::result::Result::Ok(_) => __traced_span.succeed(),
        ::core::result::Result::Err(__traced_err) => {
            #[allow(unused_imports)]
            use ::service_tracing::__private::{
                RecordAsDebug as _, RecordAsDisplay as _, RecordAsError as _,
            };
            (&&&::service_tracing::__private::Failure(__traced_err))
                .record_on(&mut __traced_span)
        }
    }
    __traced_ret
}
