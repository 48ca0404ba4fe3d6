//! Alerting on error groups, off the request path: the rules and the alerts they raise
//! ([`rules`]), the alerting thread that evaluates them and calls the callbacks ([`notify`]),
//! and the delivery thread ([`delivery`]) that posts to the [`webhook`] and exports new groups
//! and alerts as OTLP log records ([`logs`]).

mod delivery;
mod ledger;
pub(crate) mod logs;
mod notify;
mod rules;
mod webhook;

pub use rules::{Alert, AlertKind, AlertRule, AlertStats, DEFAULT_COOLDOWN};
pub use webhook::Webhook;

pub(crate) use notify::AlertOptions;
pub(super) use notify::{AlertConfig, Notifier};
pub(super) use rules::Signal;
