//! The configuration file (`ServiceTracing::from_file`, `SERVICE_TRACING_CONFIG`): TOML or YAML
//! by its extension, `${VAR}` substituted ([`substitute`]), read into [`FileSettings`]
//! ([`schema`]), every error reported with the file's path, line and column.
//!
//! The file sits under the environment: a setting with an `OTEL_*` (or `SERVICE_TRACING_*`,
//! `RUST_LOG`) variable is given to set-up as that variable's fallback ([`FileSettings::vars`]),
//! so a variable that is set replaces the file's whole setting and everything downstream
//! (parsing, precedence between a signal's variables) is the variables' own code. The other
//! settings are the builder's starting values, which its calls replace (or, for lists, add to).

pub(crate) mod schema;
mod substitute;
mod vars;

use std::path::Path;

pub(crate) use schema::FileSettings;

use crate::error::{SetupError, SetupErrorKind};

/// The largest file read: a configuration, not a data set.
const MAX_FILE_LEN: u64 = 1 << 20;

/// A problem at a byte offset of the file's text.
#[derive(Debug)]
pub(super) struct FileError {
    offset: usize,
    message: String,
}

impl FileError {
    fn at(offset: usize, message: String) -> Self {
        Self { offset, message }
    }
}

/// The file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Yaml,
}

/// Reads the file at `path`, substituting variables through `lookup`.
pub(crate) fn load(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<FileSettings, SetupError> {
    let shown = path.display();
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("toml") => Format::Toml,
        Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => Format::Yaml,
        _ => {
            return Err(invalid(format!(
                "configuration file {shown}: expected a name ending in .toml, .yaml or .yml"
            )))
        }
    };
    let read = || -> std::io::Result<String> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)?;
        Ok(text)
    };
    let text = read().map_err(|e| {
        invalid(format!("configuration file {shown}: cannot be read: {e}")).with_source(e)
    })?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(invalid(format!(
            "configuration file {shown}: larger than {MAX_FILE_LEN} bytes"
        )));
    }
    parse(&shown.to_string(), &text, format, lookup)
}

/// Parses `text`, the file `shown`.
fn parse(
    shown: &str,
    text: &str,
    format: Format,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<FileSettings, SetupError> {
    let located = |e: FileError| {
        let (line, column) = line_column(text, e.offset);
        invalid(format!("{shown}:{line}:{column}: {}", e.message))
    };
    let substituted = substitute::substitute(text, lookup).map_err(located)?;
    let parsed = match format {
        Format::Toml => toml::from_str::<FileSettings>(&substituted.text).map_err(|e| {
            let offset = e.span().map_or(0, |span| span.start);
            FileError::at(offset, e.message().trim().to_owned())
        }),
        Format::Yaml => serde_saphyr::from_str::<FileSettings>(&substituted.text).map_err(|e| {
            let offset = e.location().map_or(0, |l| {
                offset_of(&substituted.text, l.line() as usize, l.column() as usize)
            });
            FileError::at(offset, yaml_message(&e))
        }),
    };
    parsed.map_err(|e| {
        located(FileError::at(
            substituted.original_offset(e.offset),
            e.message,
        ))
    })
}

/// A YAML error's message without the location and the snippet the parser adds (the file's
/// line and column are given in front, from the original text): its first line is
/// `error: line 2 column 12: unknown variant ...`.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or(&full).trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line ") && head.contains(" column "))
        .map_or(first, |(_, rest)| rest)
        .to_owned()
}

fn invalid(message: String) -> SetupError {
    SetupError::new(SetupErrorKind::InvalidConfig, message)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The byte offset of a 1-based line and column (in characters).
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[start.min(text.len())..];
    start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests;
