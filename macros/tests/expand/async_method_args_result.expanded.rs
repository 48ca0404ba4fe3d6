pub async fn charge(
    &self,
    amount: u64,
    currency: &str,
    card: Card,
) -> Result<Receipt, PaymentError> {
    fn __traced_here() {}
    static __TRACED_SITE: ::service_tracing::__private::Site = ::service_tracing::__private::Site::new(
            "charge card",
            ::core::file!(),
            ::core::line!(),
            ::service_tracing::__private::SpanKind::Client,
            || ::core::any::type_name_of_val(&__traced_here),
        )
        .category(::service_tracing::__private::Category::Dependency);
    #[allow(unused_mut)]
    let mut __traced_span = ::service_tracing::__private::start(&__TRACED_SITE);
    if __traced_span.is_recording() {
        __traced_span.arg_debug("code.function.args.amount", &amount);
        __traced_span.arg_display("code.function.args.currency", &currency);
    }
    __traced_span
        .in_scope(
            async move {
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
                    let __traced_fake_return: Result<Receipt, PaymentError> = loop {};
                    return __traced_fake_return;
                }
                {
                    let receipt = self.gateway.charge(amount, currency, card).await?;
                    Ok(receipt)
                }
            },
            |__traced_ret, __traced_span| match __traced_ret {
                ::core::result::Result::Ok(__traced_ok) => {
                    __traced_span.ok_debug(__traced_ok)
                }
                ::core::result::Result::Err(__traced_err) => {
                    #[allow(unused_imports)]
                    use ::service_tracing::__private::{
                        RecordAsDebug as _, RecordAsDisplay as _, RecordAsError as _,
                    };
                    (&&&::service_tracing::__private::Failure(__traced_err))
                        .record_on(__traced_span)
                }
            },
        )
        .await
}
