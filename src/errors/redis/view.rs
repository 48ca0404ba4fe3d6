//! The fleet view pulled from Redis, merged with what this replica counted since.

use std::collections::HashMap;

use super::super::rates::RouteRate;
use super::super::store::{sort_groups, ErrorGroup};
use crate::window::Window;

/// Per operation, (requests, errors) over each window in [`Window::ALL`] order.
pub(super) type FleetRates = Vec<(String, [(u64, u64); 3])>;

/// What the fleet had at the last successful pull, and what this replica had pushed by then
/// (so the counts since are known).
#[derive(Debug, Default)]
pub(super) struct FleetView {
    pub(super) total: u64,
    pub(super) groups: Vec<ErrorGroup>,
    pub(super) rates: FleetRates,
    pub(super) pushed_counts: HashMap<u64, u64>,
    pub(super) pushed_total: u64,
    pub(super) pushed_rates: HashMap<String, (u64, u64)>,
}

impl FleetView {
    /// The fleet's groups with this replica's folded in (see [`ErrorGroup::merge_local`]);
    /// local groups the view lacks are shown as they are. Most errors first.
    pub(super) fn merge_groups<'a>(
        &self,
        local: impl Iterator<Item = &'a ErrorGroup>,
    ) -> Vec<ErrorGroup> {
        let mut merged = self.groups.clone();
        let index: HashMap<u64, usize> = merged
            .iter()
            .enumerate()
            .map(|(i, g)| (g.fingerprint(), i))
            .collect();
        for group in local {
            match index.get(&group.fingerprint()) {
                Some(&i) => {
                    let pushed = self
                        .pushed_counts
                        .get(&group.fingerprint())
                        .copied()
                        .unwrap_or(0);
                    merged[i].merge_local(group, group.count().saturating_sub(pushed));
                }
                None => merged.push(group.clone()),
            }
        }
        sort_groups(&mut merged);
        merged
    }

    /// The fleet's rates plus this replica's requests since the pull; operations the fleet
    /// lacks keep their local figures. `local` is `RouteRates::snapshot` (three windows per
    /// operation) and `totals` `RouteRates::totals`, in the same order.
    pub(super) fn merge_rates(
        &self,
        local: &[RouteRate],
        totals: &[(String, u64, u64)],
    ) -> Vec<RouteRate> {
        let fleet: HashMap<&str, &[(u64, u64); 3]> =
            self.rates.iter().map(|(op, w)| (op.as_str(), w)).collect();
        let mut merged = Vec::with_capacity(local.len() + self.rates.len() * 3);
        for ((operation, requests, errors), local) in
            totals.iter().zip(local.chunks(Window::ALL.len()))
        {
            let Some(windows) = fleet.get(operation.as_str()) else {
                merged.extend_from_slice(local);
                continue;
            };
            let (pushed_requests, pushed_errors) =
                self.pushed_rates.get(operation).copied().unwrap_or((0, 0));
            let pending = (
                requests.saturating_sub(pushed_requests),
                errors.saturating_sub(pushed_errors),
            );
            for (window, (r, e)) in Window::ALL.into_iter().zip(windows.iter()) {
                merged.push(RouteRate::new(
                    operation.clone(),
                    window,
                    r.saturating_add(pending.0),
                    e.saturating_add(pending.1),
                ));
            }
        }
        for (operation, windows) in &self.rates {
            if totals.iter().any(|(op, _, _)| op == operation) {
                continue;
            }
            for (window, (r, e)) in Window::ALL.into_iter().zip(windows.iter()) {
                merged.push(RouteRate::new(operation.clone(), window, *r, *e));
            }
        }
        merged
    }
}
