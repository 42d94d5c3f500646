//! What reading records learns about values, for the next records: the
//! attribute patterns an event attribute value matches, and a property
//! slot's check outcomes for a value.

use super::{Value, match_attr};
use crate::model::Model;

/// What reading records learned about values, for the next records: which
/// attribute patterns an event attribute value matches, per attribute slot
/// (event attributes repeat: the same pages, campaigns and forms), and the
/// outcomes of a property slot's checks for a value (industries, countries
/// and titles repeat). A lookup costs less than case-folding and running
/// every pattern or check. Bounded: a slot's memory is dropped when it
/// holds [`ReadMemo::LIMIT`] values, and a property slot whose values
/// rarely repeat is not remembered at all.
#[derive(Debug, Default)]
pub struct ReadMemo {
    slots: Vec<rustc_hash::FxHashMap<Box<str>, u128>>,
    scratch: String,
    /// Property check outcomes by property slot.
    props: Vec<PropMemo>,
}

impl ReadMemo {
    const LIMIT: usize = 4096;

    pub(super) fn matches(&mut self, model: &Model, slot: u16, value: &str) -> u128 {
        let index = usize::from(slot);
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Default::default);
        }
        if let Some(bits) = self.slots[index].get(value) {
            return *bits;
        }
        let mut bits = 0;
        match_attr(model, slot, value, &mut self.scratch, &mut bits);
        let seen = &mut self.slots[index];
        if seen.len() >= Self::LIMIT {
            seen.clear();
        }
        seen.insert(value.into(), bits);
        bits
    }
}

/// Remembered outcomes of one property slot's checks, by value.
#[derive(Debug, Default)]
struct PropMemo {
    seen: rustc_hash::FxHashMap<Box<str>, Outcomes>,
    lookups: u32,
    hits: u32,
    /// Values of this slot rarely repeat (emails, ids): not worth a lookup.
    off: bool,
}

/// One value's check outcomes, one bit per check of its slot, with the
/// number and time it was read as (a number and a text can share a text).
#[derive(Clone, Copy, Debug)]
struct Outcomes {
    number: Option<u64>,
    time: Option<i64>,
    bits: u64,
}

impl ReadMemo {
    /// After this many lookups, a slot that hit less than a quarter of the
    /// time stops being remembered.
    const TRIAL: u32 = 2048;

    pub(super) fn outcomes(&mut self, slot: usize, value: &Value) -> Option<u64> {
        let memo = self.props.get_mut(slot)?;
        if memo.off {
            return None;
        }
        memo.lookups = memo.lookups.saturating_add(1);
        let found = memo
            .seen
            .get(&value.text)
            .filter(|o| o.number == value.number.map(f64::to_bits) && o.time == value.time)?;
        memo.hits = memo.hits.saturating_add(1);
        Some(found.bits)
    }

    pub(super) fn remember(&mut self, slot: usize, value: &Value, bits: u64) {
        if self.props.len() <= slot {
            self.props.resize_with(slot + 1, PropMemo::default);
        }
        let memo = &mut self.props[slot];
        if memo.off {
            return;
        }
        if memo.lookups >= Self::TRIAL && memo.hits < memo.lookups / 4 {
            memo.off = true;
            memo.seen = Default::default();
            return;
        }
        if memo.seen.len() >= Self::LIMIT {
            memo.seen.clear();
        }
        let outcomes = Outcomes {
            number: value.number.map(f64::to_bits),
            time: value.time,
            bits,
        };
        memo.seen.insert(value.text.clone(), outcomes);
    }
}

pub(super) fn set_outcomes(static_bits: &mut [u64], checks: &[u32], outcomes: u64) {
    for (i, &check) in checks.iter().enumerate() {
        if outcomes & (1 << i) != 0 {
            static_bits[check as usize / 64] |= 1 << (check % 64);
        }
    }
}

pub(super) fn get_outcomes(static_bits: &[u64], checks: &[u32]) -> u64 {
    checks.iter().enumerate().fold(0, |bits, (i, &check)| {
        let set = static_bits[check as usize / 64] & (1 << (check % 64)) != 0;
        bits | u64::from(set) << i
    })
}
