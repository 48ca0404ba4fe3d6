//! [`SetupError`]: the one error type of set-up. The request path never returns an error of
//! ours.

use std::error::Error as StdError;
use std::fmt;

/// Why set-up failed. Its message names the setting and the accepted values.
///
/// ```
/// use service_tracing::{SetupError, SetupErrorKind};
/// fn explain(e: &SetupError) -> String {
///     match e.kind() {
///         SetupErrorKind::InvalidConfig => format!("fix the configuration: {e}"),
///         _ => e.to_string(),
///     }
/// }
/// ```
pub struct SetupError {
    kind: SetupErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of set-up error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupErrorKind {
    /// A setting (environment variable or builder value) is invalid.
    InvalidConfig,
    /// The exporter could not be built (for example an endpoint URL that does not parse).
    Exporter,
    /// A global `tracing` subscriber was already installed.
    SubscriberAlreadySet,
    /// Flushing or shutting down failed or timed out.
    Shutdown,
    /// The export worker thread could not be started.
    Worker,
}

impl SetupError {
    pub(crate) fn new(kind: SetupErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// An invalid value for a setting, with the values it accepts.
    pub(crate) fn invalid(setting: &str, value: &str, accepted: &str) -> Self {
        Self::new(
            SetupErrorKind::InvalidConfig,
            format!("invalid value {value:?} for {setting}: expected {accepted}"),
        )
    }

    /// The kind of error.
    pub fn kind(&self) -> SetupErrorKind {
        self.kind
    }
}

impl fmt::Debug for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetupError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl StdError for SetupError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}
