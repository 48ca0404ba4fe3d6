//! The last alert of each error group and what became of its webhook post: what the built-in
//! pages show beside a group. The alerting thread writes an entry when a rule fires, the
//! delivery thread when the post settles; the pages read a copy. Never touched on the request
//! path, and bounded: past [`MAX_GROUPS`] groups, the one whose alert is oldest goes.
#![cfg_attr(not(feature = "pages"), allow(dead_code))]

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::rules::{Alert, AlertKind};

/// Groups whose last alert is kept, at most.
const MAX_GROUPS: usize = 4_096;

/// What became of an alert's webhook post.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryState {
    /// No webhook is configured (callbacks and log records only).
    NoWebhook,
    /// Queued or being posted (retries included).
    Pending,
    /// Answered with a 2xx.
    Delivered,
    /// Given up after the last attempt.
    Failed,
    /// Not posted: the delivery queue was full.
    Dropped,
}

impl DeliveryState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::NoWebhook => "no_webhook",
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

/// A group's last alert.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GroupAlert {
    /// The rule that fired last.
    pub(crate) rule: String,
    pub(crate) kind: AlertKind,
    pub(crate) fired_at: SystemTime,
    /// The rule's cooldown: within it after `fired_at`, the rule is still firing for the
    /// group (it will not fire again before it ends).
    pub(crate) cooldown: Duration,
    /// Alerts raised for the group since start, by every rule.
    pub(crate) alerts: u64,
    pub(crate) delivery: DeliveryState,
    /// Which alert of the group this is, so a late settlement of an older post does not
    /// overwrite the state of a newer one.
    seq: u64,
}

impl GroupAlert {
    /// Whether the rule is still within its cooldown at `now`.
    pub(crate) fn is_firing(&self, now: SystemTime) -> bool {
        now.duration_since(self.fired_at)
            .map_or(true, |since| since < self.cooldown)
    }
}

/// Which post a settlement is about: the group and its alert's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PostTicket {
    pub(crate) fingerprint: u64,
    seq: u64,
}

/// What the ledger keeps of an alert.
struct Last<'a> {
    rule: &'a str,
    kind: AlertKind,
    fired_at: SystemTime,
    cooldown: Duration,
}

/// The groups' last alerts.
#[derive(Debug, Default)]
pub(crate) struct AlertLedger {
    groups: Mutex<HashMap<u64, GroupAlert>>,
}

impl AlertLedger {
    /// Notes that `alert` fired; `webhook` says whether a post will follow. Returns the ticket
    /// its post settles with.
    pub(crate) fn fired(&self, alert: &Alert, webhook: bool) -> PostTicket {
        let last = Last {
            rule: alert.rule(),
            kind: alert.kind(),
            fired_at: alert.fired_at(),
            cooldown: alert.cooldown(),
        };
        self.record(alert.group().fingerprint(), &last, webhook)
    }

    fn record(&self, fingerprint: u64, last: &Last<'_>, webhook: bool) -> PostTicket {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if groups.len() >= MAX_GROUPS && !groups.contains_key(&fingerprint) {
            let oldest = groups
                .iter()
                .min_by_key(|(_, g)| g.fired_at)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                groups.remove(&oldest);
            }
        }
        let (alerts, seq) = groups
            .get(&fingerprint)
            .map_or((0, 0), |g| (g.alerts, g.seq));
        let entry = GroupAlert {
            rule: last.rule.to_owned(),
            kind: last.kind,
            fired_at: last.fired_at,
            cooldown: last.cooldown,
            alerts: alerts.saturating_add(1),
            delivery: if webhook {
                DeliveryState::Pending
            } else {
                DeliveryState::NoWebhook
            },
            seq: seq.wrapping_add(1),
        };
        let ticket = PostTicket {
            fingerprint,
            seq: entry.seq,
        };
        groups.insert(fingerprint, entry);
        ticket
    }

    /// Notes what became of the post `ticket` stands for, unless a newer alert of the group
    /// replaced it.
    pub(crate) fn settled(&self, ticket: PostTicket, state: DeliveryState) {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = groups
            .get_mut(&ticket.fingerprint)
            .filter(|g| g.seq == ticket.seq)
        {
            g.delivery = state;
        }
    }

    /// A copy of every group's last alert, by fingerprint.
    pub(crate) fn snapshot(&self) -> HashMap<u64, GroupAlert> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fire(ledger: &AlertLedger, fingerprint: u64, cooldown: Duration) -> PostTicket {
        let last = Last {
            rule: "errors >= 3 in 1m",
            kind: AlertKind::Count,
            fired_at: SystemTime::now(),
            cooldown,
        };
        ledger.record(fingerprint, &last, true)
    }

    #[test]
    fn the_last_alert_of_a_group_and_its_latest_post_are_kept() {
        let ledger = AlertLedger::default();
        let first = fire(&ledger, 7, Duration::from_secs(60));
        let second = fire(&ledger, 7, Duration::from_secs(60));
        ledger.settled(second, DeliveryState::Delivered);
        ledger.settled(first, DeliveryState::Failed);
        let g = &ledger.snapshot()[&7];
        assert_eq!((g.alerts, g.delivery), (2, DeliveryState::Delivered));
        assert!(g.is_firing(g.fired_at + Duration::from_secs(59)));
        assert!(!g.is_firing(g.fired_at + Duration::from_secs(60)));
    }

    #[test]
    fn the_ledger_is_bounded_and_drops_the_oldest_alert() {
        let ledger = AlertLedger::default();
        for fingerprint in 0..(MAX_GROUPS as u64 + 10) {
            fire(&ledger, fingerprint, Duration::ZERO);
        }
        let groups = ledger.snapshot();
        assert_eq!(groups.len(), MAX_GROUPS);
        assert!(groups.contains_key(&(MAX_GROUPS as u64 + 9)));
    }
}
