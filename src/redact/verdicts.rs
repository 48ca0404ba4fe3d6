//! Per-thread memory of verdicts on attribute keys and of shared texts found clean, so a key
//! seen on every span is checked once per thread.

use std::cell::RefCell;
use std::sync::Arc;

use opentelemetry::Key;

use super::keys::Keys;

thread_local! {
    /// Verdicts on attribute keys seen on this thread (the export worker's, error tracking's).
    pub(super) static KEY_VERDICTS: RefCell<KeyVerdicts> = RefCell::new(KeyVerdicts::default());
}

/// How many keys are remembered per thread (a direct-mapped table: a key whose slot is taken
/// replaces the one there).
pub(super) const KEY_SLOTS: usize = 1024;

/// How many clean shared texts are remembered per thread (direct-mapped, like the keys).
pub(super) const CLEAN_SLOTS: usize = 64;

/// Whether a key is denied, remembered by the key's address and length.
///
/// Sound because a slot keeps its key alive: only keys whose clone shares their bytes are
/// remembered (`&'static str` keys, which every semantic-convention and `tracing` field key
/// is, and `Arc<str>` keys), so while the slot holds one no other string can sit at that
/// address. Keys made from a `String` are checked every time. The key list the verdicts were
/// made with is kept too, and a redactor with another list starts the memory over.
#[derive(Default)]
pub(super) struct KeyVerdicts {
    keys: Option<Arc<Keys>>,
    slots: Vec<Option<(usize, usize, Key, bool)>>,
    /// Shared texts the default policy found clean, by address (each kept alive here, so an
    /// address is never reused for another text while remembered).
    clean: Vec<Option<Arc<str>>>,
}

impl KeyVerdicts {
    /// The memory for `keys`, started over if it was made with another list.
    #[inline]
    pub(super) fn of(&mut self, keys: &Arc<Keys>) -> &mut Self {
        if !self.keys.as_ref().is_some_and(|k| Arc::ptr_eq(k, keys)) {
            self.keys = Some(keys.clone());
            self.slots.clear();
            self.slots.resize_with(KEY_SLOTS, || None);
            self.clean.clear();
            self.clean.resize_with(CLEAN_SLOTS, || None);
        }
        self
    }

    /// Whether the shared text `text` is clean under the default policy with these keys:
    /// remembered, or found so by `check` now. Only a text shared beyond the span (its
    /// reference count above one: the request thread's cache of repeated texts holds it) is
    /// remembered; a text of one span would only push out the others.
    #[inline]
    pub(super) fn clean_shared(
        &mut self,
        text: &Arc<str>,
        check: impl FnOnce(&str) -> bool,
    ) -> bool {
        let address = text.as_ptr() as usize;
        let slot = (address >> 4) % CLEAN_SLOTS;
        if let Some(Some(kept)) = self.clean.get(slot) {
            if Arc::ptr_eq(kept, text) {
                return true;
            }
        }
        let clean = check(text);
        if clean && Arc::strong_count(text) > 1 {
            if let Some(entry) = self.clean.get_mut(slot) {
                *entry = Some(text.clone());
            }
        }
        clean
    }

    /// Whether `key` is denied by `keys`, the list [`of`](Self::of) was last called with.
    #[inline]
    pub(super) fn denies(&mut self, keys: &Keys, key: &Key) -> bool {
        let text = key.as_str();
        let (address, len) = (text.as_ptr() as usize, text.len());
        // Two neighbouring slots per key, so two keys that hash alike do not evict each other.
        let hash =
            ((address as u64) ^ (len as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let first = ((hash >> 40) as usize % KEY_SLOTS) & !1;
        for slot in [first, first + 1] {
            if let Some(Some((a, l, _, denied))) = self.slots.get(slot) {
                if *a == address && *l == len {
                    return *denied;
                }
            }
        }
        self.remember(keys, key, first)
    }

    #[cold]
    pub(super) fn remember(&mut self, keys: &Keys, key: &Key, first: usize) -> bool {
        let text = key.as_str();
        let denied = keys.denies(text.as_bytes());
        let kept = key.clone();
        if kept.as_str().as_ptr() == text.as_ptr() {
            let slot = match self.slots.get(first) {
                Some(Some(_)) => first + 1,
                _ => first,
            };
            if let Some(entry) = self.slots.get_mut(slot) {
                *entry = Some((text.as_ptr() as usize, text.len(), kept, denied));
            }
        }
        denied
    }
}
