//! `#[traced]`: a span for a function, after the OpenTelemetry semantic conventions.
//!
//! Use it through the facade, `service_tracing::traced` (feature `macros`), whose
//! documentation has the examples; the expansion calls the facade's run-time support and
//! builds with no other crate named.

use proc_macro::TokenStream;

mod expand;
mod options;

/// Traces a function or method: each call is a child span of the current context.
///
/// See `service_tracing::traced` for the options and examples.
#[proc_macro_attribute]
pub fn traced(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::traced(attr.into(), item.into()).into()
}
