//! The expansion: the function as written, with a span started before its body and ended
//! after it.
//!
//! Everything at run time goes through `::service_tracing::__private` (the facade's hidden
//! support module), so the expansion depends on no crate the caller has to name.
//!
//! ```text
//! fn f(a: A) -> R {
//!     fn __traced_here() {}                        // its type name: `path::to::f::__traced_here`
//!     static __TRACED_SITE: Site = Site::new(..);    // name, kind, file, line: built once
//!     let mut __traced_span = __private::start(&__TRACED_SITE);
//!     if __traced_span.is_recording() { /* args */ }
//!     sync:  let __traced_entered = __traced_span.enter(); body
//!     async: __traced_span.in_scope(async move { body }, |output, span| /* outcome */).await
//! }
//! ```
//!
//! A sync function's guard states success when dropped outside a panic; with `result`, its
//! body runs in a closure, so that a `return` inside it still passes through the recording of
//! its value. An async function's outcome is stated when its body completes, so a cancelled
//! call is told from a finished one.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens as _};
use syn::spanned::Spanned as _;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Type};

use crate::options::{Format, Options, CATEGORIES};

/// The whole expansion, or the compile error that replaces it.
pub(crate) fn traced(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        // The item is kept as it was, so the only error the user sees is ours.
        Err(error) => {
            let mut tokens = error.to_compile_error();
            tokens.extend(item);
            tokens
        }
    }
}

fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let function = parse_function(item)?;
    let options: Options = syn::parse2(attr)?;
    check_signature(&function)?;
    let params = parameter_names(&function);
    options.check(&function.sig.ident, &params)?;
    Ok(generate(&options, &function, &params))
}

fn parse_function(item: TokenStream) -> syn::Result<ItemFn> {
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Fn(function)) => Ok(function),
        // A trait method without a body parses as verbatim tokens.
        Ok(syn::Item::Verbatim(tokens))
            if syn::parse2::<syn::TraitItemFn>(tokens.clone()).is_ok() =>
        {
            Err(syn::Error::new_spanned(
                item,
                "`#[traced]` needs a function body: put it on the trait's default method or \
                 on each implementation",
            ))
        }
        _ => Err(syn::Error::new(
            Span::call_site(),
            "`#[traced]` applies to functions and methods only",
        )),
    }
}

fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if let Some(constness) = &sig.constness {
        return Err(syn::Error::new(
            constness.span(),
            "`#[traced]` cannot trace a `const fn`: a span needs the clock and the current \
             context, which constant evaluation has not",
        ));
    }
    if sig.asyncness.is_none() {
        if let ReturnType::Type(_, ty) = &sig.output {
            if returns_impl_future(ty) {
                return Err(syn::Error::new_spanned(
                    ty,
                    "`#[traced]` on a function returning `impl Future` would time only the \
                     future's creation; write it as an `async fn`",
                ));
            }
        }
    }
    Ok(())
}

/// `impl Future<..>` (or `impl Future + Send`, `impl core::future::Future`).
fn returns_impl_future(ty: &Type) -> bool {
    let Type::ImplTrait(impl_trait) = ty else {
        return false;
    };
    impl_trait.bounds.iter().any(|bound| match bound {
        syn::TypeParamBound::Trait(t) => t
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Future" || s.ident == "IntoFuture"),
        _ => false,
    })
}

/// The parameters that have a name (`self`, and those bound to a plain identifier).
fn parameter_names(function: &ItemFn) -> Vec<Ident> {
    function
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Receiver(receiver) => Some(Ident::new("self", receiver.self_token.span)),
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => Some(pat.ident.clone()),
                _ => None,
            },
        })
        .collect()
}

/// Whether `ty` mentions `impl Trait` anywhere (it cannot be written in a `let`).
fn mentions_impl_trait(ty: &Type) -> bool {
    ty.to_token_stream()
        .to_string()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|word| word == "impl")
}

fn generate(options: &Options, function: &ItemFn, params: &[Ident]) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = function;
    // Inner attributes (`#![allow(..)]` at the top of the body) stay at the top of the body.
    let (inner, outer): (Vec<_>, Vec<_>) = attrs
        .iter()
        .partition(|a| matches!(a.style, syn::AttrStyle::Inner(_)));
    let private = quote!(::service_tracing::__private);
    let fn_ident = &sig.ident;

    let name = match &options.name {
        Some(name) => name.to_token_stream(),
        None => fn_ident
            .to_string()
            .trim_start_matches("r#")
            .to_token_stream(),
    };
    let kind = options
        .kind
        .as_ref()
        .map_or("Internal".to_owned(), |k| capitalised(&k.to_string()));
    let kind = Ident::new(&kind, Span::call_site());
    // `line!()` with the span of the function's name: the line of its signature.
    let line = quote_spanned!(fn_ident.span()=> ::core::line!());
    let mut site = quote! {
        #private::Site::new(
            #name,
            ::core::file!(),
            #line,
            #private::SpanKind::#kind,
            || ::core::any::type_name_of_val(&__traced_here),
        )
    };
    if let Some((lit, _)) = &options.slow_ms {
        site.extend(quote!(.slow_ms(#lit)));
    }
    if let Some(category) = &options.category {
        let text = category.to_string();
        let variant = CATEGORIES
            .iter()
            .find(|(name, _)| *name == text)
            .map_or("Application", |(_, variant)| variant);
        let variant = Ident::new(variant, category.span());
        site.extend(quote!(.category(#private::Category::#variant)));
    }

    let captures = options.captured(params).into_iter().map(|arg| {
        let ident = &arg.ident;
        let key = format!("code.function.args.{ident}");
        let method = match arg.format {
            Format::Debug => quote_spanned!(ident.span()=> arg_debug),
            Format::Display => quote_spanned!(ident.span()=> arg_display),
        };
        quote_spanned!(ident.span()=> __traced_span.#method(#key, &#ident);)
    });
    let captures: Vec<TokenStream> = captures.collect();
    let capture = if captures.is_empty() {
        TokenStream::new()
    } else {
        quote! {
            if __traced_span.is_recording() {
                #(#captures)*
            }
        }
    };

    let prelude = quote! {
        fn __traced_here() {}
        static __TRACED_SITE: #private::Site = #site;
        #[allow(unused_mut)]
        let mut __traced_span = #private::start(&__TRACED_SITE);
        #capture
    };

    let asyncness = sig.asyncness.is_some();
    let body = match (&options.result, asyncness) {
        (None, false) => quote! {
            let __traced_entered = __traced_span.enter();
            #block
        },
        (None, true) => quote! {
            __traced_span
                .in_scope(async move #block, |_, __traced_span| __traced_span.succeed())
                .await
        },
        (Some(result), _) => {
            let fake_return = fake_return(&sig.output);
            let (ok_pattern, ok) = match result.ok {
                None => (quote!(_), quote!(__traced_span.succeed())),
                Some(Format::Debug) => (
                    quote!(__traced_ok),
                    quote!(__traced_span.ok_debug(__traced_ok)),
                ),
                Some(Format::Display) => (
                    quote!(__traced_ok),
                    quote!(__traced_span.ok_display(__traced_ok)),
                ),
            };
            let (scrutinee, span) = if asyncness {
                (quote!(__traced_ret), quote!(__traced_span))
            } else {
                (quote!(&__traced_ret), quote!(&mut __traced_span))
            };
            // Spanned at `result`: a function that returns no `Result` is told so there.
            let record = quote_spanned! {result.span=>
                match #scrutinee {
                    ::core::result::Result::Ok(#ok_pattern) => #ok,
                    ::core::result::Result::Err(__traced_err) => {
                        #[allow(unused_imports)]
                        use #private::{RecordAsDebug as _, RecordAsDisplay as _, RecordAsError as _};
                        (&&&#private::Failure(__traced_err)).record_on(#span)
                    }
                }
            };
            if asyncness {
                quote! {
                    __traced_span
                        .in_scope(
                            async move { #fake_return #block },
                            |__traced_ret, __traced_span| #record,
                        )
                        .await
                }
            } else {
                quote! {
                    let __traced_ret = {
                        let __traced_entered = __traced_span.enter();
                        #[allow(clippy::redundant_closure_call)]
                        (move || { #fake_return #block })()
                    };
                    #record
                    __traced_ret
                }
            }
        }
    };

    quote! {
        #(#outer)*
        #vis #sig {
            #(#inner)*
            #prelude
            #body
        }
    }
}

/// A `return` the compiler never takes but type-checks: it tells the closure or async block
/// its return type, so `?` and `.into()` inside infer as they would in the function.
fn fake_return(output: &ReturnType) -> TokenStream {
    let ty = match output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) if mentions_impl_trait(ty) => return TokenStream::new(),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    quote! {
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
            let __traced_fake_return: #ty = loop {};
            return __traced_fake_return;
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect::<String>()
    })
}

#[cfg(test)]
mod tests;
