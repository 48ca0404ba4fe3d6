//! Expansion snapshots: each `tests/expand/NAME.rs` holds one function with its
//! `#[traced(..)]`; its expansion, pretty-printed with prettyplease, must equal
//! `tests/expand/NAME.expanded.rs`. `UPDATE_EXPAND=1` rewrites the snapshots (review the diff).

use std::fs;
use std::path::{Path, PathBuf};

use quote::ToTokens as _;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with(".expanded.rs")
        })
        .collect();
    cases.sort();
    cases
}

/// The expansion of the one traced function in `source`, pretty-printed.
fn expand_source(source: &str) -> String {
    let mut file = syn::parse_file(source).unwrap_or_else(|e| panic!("{e}"));
    let mut items = Vec::new();
    for item in std::mem::take(&mut file.items) {
        let syn::Item::Fn(mut function) = item else {
            items.push(item);
            continue;
        };
        let position = function
            .attrs
            .iter()
            .position(|a| a.path().is_ident("traced"))
            .unwrap_or_else(|| panic!("no #[traced] on `{}`", function.sig.ident));
        let attr = function.attrs.remove(position);
        let args = match attr.meta {
            syn::Meta::Path(_) => proc_macro2::TokenStream::new(),
            syn::Meta::List(list) => list.tokens,
            syn::Meta::NameValue(_) => panic!("#[traced = ..] is not a form the macro takes"),
        };
        let expanded = super::traced(args, function.into_token_stream());
        let expanded: syn::File = syn::parse2(expanded).unwrap_or_else(|e| panic!("{e}"));
        items.extend(expanded.items);
    }
    file.items = items;
    prettyplease::unparse(&file)
}

#[test]
fn expansions_match_their_snapshots() {
    let update = std::env::var_os("UPDATE_EXPAND").is_some();
    let cases = cases();
    assert!(!cases.is_empty(), "no expansion case found");
    let mut failures = Vec::new();
    for case in cases {
        let source = fs::read_to_string(&case).unwrap_or_else(|e| panic!("{e}"));
        let actual = expand_source(&source);
        let snapshot = case.with_extension("expanded.rs");
        if update {
            fs::write(&snapshot, &actual).unwrap_or_else(|e| panic!("{e}"));
            continue;
        }
        let expected = fs::read_to_string(&snapshot).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{} differs from its snapshot (UPDATE_EXPAND=1 rewrites it):\n{actual}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
