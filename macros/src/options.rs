//! The attribute's options, as written: `#[traced(name = "..", kind = client, args(a, %b),
//! skip(c), result(ok), category = database, slow_ms = 50)]`.
//!
//! Parsing checks the syntax of each option alone; [`Options::check`] then checks them
//! against each other and against the function's parameters, so every mistake is reported at
//! the token that made it.

use proc_macro2::Span;
use syn::ext::IdentExt as _;
use syn::parse::{Parse, ParseStream};
use syn::{parenthesized, Ident, LitInt, LitStr, Token};

/// The options the attribute takes, in the order the messages list them.
const OPTIONS: &str = "`name`, `kind`, `args`, `skip`, `result`, `category`, `slow_ms`";

/// The span kinds a function's span may have (`server` is the server layer's).
pub(crate) const KINDS: [&str; 4] = ["internal", "client", "producer", "consumer"];

/// The error categories (`service_tracing::Category`), by their lowercase names.
pub(crate) const CATEGORIES: [(&str, &str); 6] = [
    ("application", "Application"),
    ("dependency", "Dependency"),
    ("database", "Database"),
    ("timeout", "Timeout"),
    ("validation", "Validation"),
    ("security", "Security"),
];

/// How a captured value is turned into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `{:?}`: the default, and `?name`.
    Debug,
    /// `{}`: `%name`.
    Display,
}

/// One parameter named in `args(..)`.
#[derive(Clone)]
pub(crate) struct Arg {
    pub(crate) format: Format,
    pub(crate) ident: Ident,
}

/// `args(..)`: `all` and/or named parameters.
#[derive(Clone)]
pub(crate) struct Args {
    /// The `args` keyword, for messages.
    pub(crate) span: Span,
    /// `all`, if given.
    pub(crate) all: Option<Ident>,
    /// The parameters named, each with its format (with `all`, these change the format).
    pub(crate) named: Vec<Arg>,
}

/// `result` or `result(ok)` / `result(%ok)`.
#[derive(Clone)]
pub(crate) struct ResultOption {
    /// The `result` keyword: errors from the generated `match` point here.
    pub(crate) span: Span,
    /// `Some` when the `Ok` value is captured too, and how.
    pub(crate) ok: Option<Format>,
}

/// Every option, as given.
#[derive(Clone, Default)]
pub(crate) struct Options {
    pub(crate) name: Option<LitStr>,
    pub(crate) kind: Option<Ident>,
    pub(crate) args: Option<Args>,
    pub(crate) skip: Option<(Ident, Vec<Ident>)>,
    pub(crate) result: Option<ResultOption>,
    pub(crate) category: Option<Ident>,
    pub(crate) slow_ms: Option<(LitInt, u64)>,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options::default();
        while !input.is_empty() {
            let key = Ident::parse_any(input)?;
            options.parse_one(&key, input)?;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(options)
    }
}

fn twice(key: &Ident) -> syn::Error {
    syn::Error::new(key.span(), format!("`{key}` is given twice"))
}

impl Options {
    fn parse_one(&mut self, key: &Ident, input: ParseStream<'_>) -> syn::Result<()> {
        match key.to_string().as_str() {
            "name" => {
                input.parse::<Token![=]>()?;
                let name: LitStr = input.parse()?;
                if name.value().trim().is_empty() {
                    return Err(syn::Error::new(name.span(), "the span name is empty"));
                }
                replace(&mut self.name, name, key)
            }
            "kind" => {
                input.parse::<Token![=]>()?;
                let kind = Ident::parse_any(input)?;
                let text = kind.to_string();
                if text == "server" {
                    return Err(syn::Error::new(
                        kind.span(),
                        "`kind = server` is not for functions: server spans are the server \
                         layer's (`TracingLayer`); use `internal`, `client`, `producer` or \
                         `consumer`",
                    ));
                }
                if !KINDS.contains(&text.as_str()) {
                    return Err(syn::Error::new(
                        kind.span(),
                        format!(
                            "unknown span kind `{text}`; expected `internal` (the default), \
                             `client`, `producer` or `consumer`"
                        ),
                    ));
                }
                replace(&mut self.kind, kind, key)
            }
            "args" => {
                let content;
                parenthesized!(content in input);
                let args = parse_args(key.span(), &content)?;
                replace(&mut self.args, args, key)
            }
            "skip" => {
                let content;
                parenthesized!(content in input);
                let names = content.parse_terminated(Ident::parse_any, Token![,])?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        key.span(),
                        "`skip()` names no parameter: write `skip(name, ..)` or leave it out",
                    ));
                }
                replace(
                    &mut self.skip,
                    (key.clone(), names.into_iter().collect()),
                    key,
                )
            }
            "result" => {
                let mut ok = None;
                if input.peek(syn::token::Paren) {
                    let content;
                    parenthesized!(content in input);
                    ok = Some(parse_ok(&content)?);
                }
                let result = ResultOption {
                    span: key.span(),
                    ok,
                };
                replace(&mut self.result, result, key)
            }
            "category" => {
                input.parse::<Token![=]>()?;
                let category = Ident::parse_any(input)?;
                let text = category.to_string();
                if !CATEGORIES.iter().any(|(name, _)| *name == text) {
                    let names: Vec<String> =
                        CATEGORIES.iter().map(|(n, _)| format!("`{n}`")).collect();
                    return Err(syn::Error::new(
                        category.span(),
                        format!(
                            "unknown error category `{text}`; expected one of {}",
                            names.join(", ")
                        ),
                    ));
                }
                replace(&mut self.category, category, key)
            }
            "slow_ms" => {
                input.parse::<Token![=]>()?;
                let lit: LitInt = input.parse()?;
                let ms: u64 = lit.base10_parse().map_err(|_| {
                    syn::Error::new(lit.span(), "`slow_ms` takes a whole number of milliseconds")
                })?;
                if ms == 0 {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`slow_ms = 0` would call every call slow; give a threshold above 0",
                    ));
                }
                replace(&mut self.slow_ms, (lit, ms), key)
            }
            other => Err(syn::Error::new(
                key.span(),
                format!("unknown option `{other}`; expected one of {OPTIONS}"),
            )),
        }
    }

    /// Checks the options against each other and against the function's parameters
    /// (`params`: the names a parameter can be captured by, `self` included).
    pub(crate) fn check(&self, fn_name: &Ident, params: &[Ident]) -> syn::Result<()> {
        let is_param = |ident: &Ident| params.iter().any(|p| p == ident);
        let missing = |ident: &Ident, option: &str| {
            let listed = if params.is_empty() {
                format!("`{fn_name}` has no parameter that can be captured")
            } else {
                let names: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
                format!("its parameters are {}", names.join(", "))
            };
            syn::Error::new(
                ident.span(),
                format!(
                    "`{option}` names `{ident}`, which is not a parameter of `{fn_name}`; {listed}"
                ),
            )
        };
        if let Some(args) = &self.args {
            for arg in &args.named {
                if !is_param(&arg.ident) {
                    return Err(missing(&arg.ident, "args"));
                }
            }
            if args.all.is_none() && args.named.is_empty() {
                return Err(syn::Error::new(
                    args.span,
                    "`args()` names no parameter: write `args(all)` or `args(name, ..)`",
                ));
            }
        }
        if let Some((skip, names)) = &self.skip {
            let Some(args) = &self.args else {
                return Err(syn::Error::new(
                    skip.span(),
                    "`skip` without `args`: no argument is captured unless asked; write \
                     `args(all), skip(..)`",
                ));
            };
            if args.all.is_none() {
                return Err(syn::Error::new(
                    skip.span(),
                    "`skip` applies to `args(all)`; with `args(name, ..)` leave the parameter \
                     out of the list instead",
                ));
            }
            for name in names {
                if !is_param(name) {
                    return Err(missing(name, "skip"));
                }
                if let Some(arg) = args.named.iter().find(|a| a.ident == *name) {
                    return Err(syn::Error::new(
                        arg.ident.span(),
                        format!("`{name}` is both in `args` and in `skip`"),
                    ));
                }
            }
        }
        if let (Some(category), None) = (&self.category, &self.result) {
            return Err(syn::Error::new(
                category.span(),
                "`category` is the category of a recorded `Err`: add `result`",
            ));
        }
        Ok(())
    }

    /// The parameters captured, in the order of the signature, each with its format.
    pub(crate) fn captured(&self, params: &[Ident]) -> Vec<Arg> {
        let Some(args) = &self.args else {
            return Vec::new();
        };
        let skipped = |p: &Ident| {
            self.skip
                .as_ref()
                .is_some_and(|(_, names)| names.iter().any(|n| n == p))
        };
        let named = |p: &Ident| args.named.iter().find(|a| a.ident == *p);
        params
            .iter()
            .filter_map(|p| match named(p) {
                Some(arg) => Some(arg.clone()),
                // `all` leaves out `self` (usually a client or repository, seldom wanted and
                // often without `Debug`): name it to capture it.
                None if args.all.is_some() && p != "self" && !skipped(p) => Some(Arg {
                    format: Format::Debug,
                    ident: p.clone(),
                }),
                None => None,
            })
            .collect()
    }
}

fn replace<T>(slot: &mut Option<T>, value: T, key: &Ident) -> syn::Result<()> {
    if slot.is_some() {
        return Err(twice(key));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_format(input: ParseStream<'_>) -> syn::Result<Format> {
    if input.peek(Token![%]) {
        input.parse::<Token![%]>()?;
        Ok(Format::Display)
    } else if input.peek(Token![?]) {
        input.parse::<Token![?]>()?;
        Ok(Format::Debug)
    } else {
        Ok(Format::Debug)
    }
}

fn parse_args(span: Span, input: ParseStream<'_>) -> syn::Result<Args> {
    let mut args = Args {
        span,
        all: None,
        named: Vec::new(),
    };
    while !input.is_empty() {
        let format = parse_format(input)?;
        let ident = Ident::parse_any(input)?;
        if ident == "all" {
            if args.all.is_some() {
                return Err(twice(&ident));
            }
            args.all = Some(ident);
        } else if args.named.iter().any(|a| a.ident == ident) {
            return Err(twice(&ident));
        } else {
            args.named.push(Arg { format, ident });
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(args)
}

fn parse_ok(input: ParseStream<'_>) -> syn::Result<Format> {
    let format = parse_format(input)?;
    let ok = Ident::parse_any(input)?;
    if ok != "ok" || !input.is_empty() {
        return Err(syn::Error::new(
            ok.span(),
            "`result(..)` takes `ok` (the `Ok` value through `Debug`) or `%ok` (through \
             `Display`); plain `result` records only errors",
        ));
    }
    Ok(format)
}
