//! Records ranked by one score, highest first, ties in input order: the
//! ranking measures of a backtest (ROC AUC and curve, top shares, deciles)
//! computed from groups of equal totals instead of a sorted copy of every
//! record.
//!
//! A backtest keeps, per record, one total per score and one outcome bit.
//! Totals are rounded by the model to `precision` decimals, so each is a
//! whole number of steps (10^-precision) and is kept as that number: in 2
//! bytes while every step fits, else in 4; a total that is not a whole
//! step in 4 bytes turns that score's list into plain `f64`s. Equal totals form one group; only a
//! group that straddles a cut (a decile's end, the top 10 %) is looked up
//! again in input order, to count its converters among the records the
//! cut takes. The figures are the same as sorting every record, stable,
//! by total.

use std::collections::HashMap;

/// One score's totals in input order, as narrow as they allow.
#[derive(Clone, Debug)]
pub(crate) enum Totals {
    /// Whole numbers of `1 / scale` that fit in 2 bytes.
    Narrow { scale: f64, steps: Vec<i16> },
    /// Whole numbers of `1 / scale` that fit in 4 bytes.
    Wide { scale: f64, steps: Vec<i32> },
    /// Totals that are not whole steps, or beyond 4-byte steps.
    Exact(Vec<f64>),
}

impl Totals {
    /// Totals rounded to `precision` decimals.
    pub(crate) fn new(precision: u32) -> Totals {
        Totals::Narrow {
            scale: 10f64.powi(i32::try_from(precision.min(6)).unwrap_or(6)),
            steps: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, total: f64) {
        match self {
            Totals::Narrow { scale, steps } => match step_of(total, *scale) {
                Some(step) => match i16::try_from(step) {
                    Ok(narrow) => steps.push(narrow),
                    Err(_) => {
                        let mut wide: Vec<i32> = steps.iter().map(|s| i32::from(*s)).collect();
                        wide.push(step);
                        *self = Totals::Wide {
                            scale: *scale,
                            steps: wide,
                        };
                    }
                },
                None => {
                    let exact = steps.iter().map(|s| f64::from(*s) / *scale);
                    *self = Totals::Exact(exact.chain([total]).collect());
                }
            },
            Totals::Wide { scale, steps } => match step_of(total, *scale) {
                Some(step) => steps.push(step),
                None => {
                    let exact = steps.iter().map(|s| f64::from(*s) / *scale);
                    *self = Totals::Exact(exact.chain([total]).collect());
                }
            },
            Totals::Exact(list) => list.push(total),
        }
    }

    /// The key equal totals share: their step, or their bits.
    fn key_of(&self, total: f64) -> Option<u64> {
        match self {
            Totals::Narrow { scale, .. } | Totals::Wide { scale, .. } => {
                step_of(total, *scale).map(|step| i64::from(step) as u64)
            }
            Totals::Exact(_) => Some(total.to_bits()),
        }
    }

    fn total_of(&self, key: u64) -> f64 {
        match self {
            Totals::Narrow { scale, .. } | Totals::Wide { scale, .. } => key as i64 as f64 / *scale,
            Totals::Exact(_) => f64::from_bits(key),
        }
    }

    /// Calls `visit` with each record's index and key, in input order,
    /// until it returns true.
    fn scan(&self, mut visit: impl FnMut(usize, u64) -> bool) {
        match self {
            Totals::Narrow { steps, .. } => {
                for (i, step) in steps.iter().enumerate() {
                    if visit(i, i64::from(*step) as u64) {
                        return;
                    }
                }
            }
            Totals::Wide { steps, .. } => {
                for (i, step) in steps.iter().enumerate() {
                    if visit(i, i64::from(*step) as u64) {
                        return;
                    }
                }
            }
            Totals::Exact(list) => {
                for (i, total) in list.iter().enumerate() {
                    if visit(i, total.to_bits()) {
                        return;
                    }
                }
            }
        }
    }

    /// Records and converters per distinct total, highest total first.
    fn groups(&self, outcomes: &Outcomes) -> Vec<Group> {
        let mut counts: HashMap<u64, (u64, u64)> = HashMap::new();
        self.scan(|i, key| {
            let cell = counts.entry(key).or_default();
            cell.0 += 1;
            cell.1 += u64::from(outcomes.get(i));
            false
        });
        let mut groups: Vec<Group> = counts
            .into_iter()
            .map(|(key, (records, positives))| Group {
                total: self.total_of(key),
                records,
                positives,
            })
            .collect();
        groups.sort_by(|a, b| b.total.total_cmp(&a.total));
        groups
    }

    /// Converters among the first `take` records (input order) whose total
    /// is `total`.
    fn positives_among_first(&self, outcomes: &Outcomes, total: f64, take: u64) -> u64 {
        let Some(wanted) = self.key_of(total) else {
            return 0;
        };
        let (mut seen, mut positives) = (0, 0);
        self.scan(|i, key| {
            if key != wanted {
                return false;
            }
            seen += 1;
            positives += u64::from(outcomes.get(i));
            seen == take
        });
        positives
    }
}

/// `total` as a whole number of `1 / scale` steps, when it is exactly one.
fn step_of(total: f64, scale: f64) -> Option<i32> {
    let steps = (total * scale).round();
    if !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&steps) {
        return None;
    }
    let step = steps as i32;
    (f64::from(step) / scale)
        .to_bits()
        .eq(&total.to_bits())
        .then_some(step)
}

/// Outcomes in input order, one bit each.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outcomes {
    bits: Vec<u64>,
    len: usize,
    positives: u64,
}

impl Outcomes {
    pub(crate) fn push(&mut self, converted: bool) {
        if self.len.is_multiple_of(64) {
            self.bits.push(0);
        }
        if converted {
            if let Some(word) = self.bits.last_mut() {
                *word |= 1 << (self.len % 64);
            }
            self.positives += 1;
        }
        self.len += 1;
    }

    pub(crate) fn get(&self, index: usize) -> bool {
        self.bits
            .get(index / 64)
            .is_some_and(|word| word >> (index % 64) & 1 == 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn positives(&self) -> u64 {
        self.positives
    }
}

/// Records with equal totals: how many, and how many converted.
#[derive(Clone, Copy, Debug)]
struct Group {
    total: f64,
    records: u64,
    positives: u64,
}

/// Records ranked by total, highest first, as groups of equal totals, and
/// how to count converters inside a group cut short.
pub(crate) struct Ranking<'a> {
    groups: Vec<Group>,
    records: u64,
    positives: u64,
    within: Within<'a>,
}

/// Where a cut group's records are, in input order.
enum Within<'a> {
    /// The records sorted by total (highest first, stable).
    Sorted(&'a [(f64, bool)]),
    Kept(&'a Totals, &'a Outcomes),
}

impl<'a> Ranking<'a> {
    /// A ranking of records already sorted by total, highest first.
    pub(crate) fn of_sorted(sorted: &'a [(f64, bool)]) -> Ranking<'a> {
        let mut groups: Vec<Group> = Vec::new();
        for (total, converted) in sorted {
            match groups.last_mut() {
                Some(group) if group.total == *total => {
                    group.records += 1;
                    group.positives += u64::from(*converted);
                }
                _ => groups.push(Group {
                    total: *total,
                    records: 1,
                    positives: u64::from(*converted),
                }),
            }
        }
        Ranking {
            records: sorted.len() as u64,
            positives: groups.iter().map(|g| g.positives).sum(),
            groups,
            within: Within::Sorted(sorted),
        }
    }

    /// A ranking of kept totals and outcomes (input order).
    pub(crate) fn of_kept(totals: &'a Totals, outcomes: &'a Outcomes) -> Ranking<'a> {
        let groups = totals.groups(outcomes);
        Ranking {
            records: groups.iter().map(|g| g.records).sum(),
            positives: groups.iter().map(|g| g.positives).sum(),
            groups,
            within: Within::Kept(totals, outcomes),
        }
    }

    /// Converters among the `take` highest-ranked records.
    fn positives_in_top(&self, take: u64) -> u64 {
        let (mut before, mut positives) = (0u64, 0u64);
        for group in &self.groups {
            if before + group.records <= take {
                before += group.records;
                positives += group.positives;
                continue;
            }
            let cut = take - before;
            if cut > 0 {
                positives += match self.within {
                    Within::Sorted(sorted) => {
                        let start = usize::try_from(before).unwrap_or(usize::MAX);
                        let end = usize::try_from(take).unwrap_or(usize::MAX);
                        sorted
                            .get(start..end)
                            .map_or(0, |slice| slice.iter().filter(|s| s.1).count() as u64)
                    }
                    Within::Kept(totals, outcomes) => {
                        totals.positives_among_first(outcomes, group.total, cut)
                    }
                };
            }
            break;
        }
        positives
    }

    /// ROC AUC (Mann–Whitney, ties counting one half); `None` without both
    /// classes.
    pub(crate) fn auc(&self) -> Option<f64> {
        let positives = self.positives as f64;
        let negatives = (self.records - self.positives) as f64;
        if positives == 0.0 || negatives == 0.0 {
            return None;
        }
        // The positives' ranks, lowest total first, ties given their mean rank.
        let mut rank_sum = 0.0;
        let mut i = 0u64;
        for group in self.groups.iter().rev() {
            let j = i + group.records;
            let mean_rank = (i + 1 + j) as f64 / 2.0;
            rank_sum += mean_rank * group.positives as f64;
            i = j;
        }
        Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
    }

    /// Converters among the top `fraction` of records, against the base
    /// rate.
    pub(crate) fn top_share(&self, fraction: f64) -> super::TopShare {
        let total_positive = self.positives as f64;
        let take = ((self.records as f64 * fraction).ceil() as u64).min(self.records);
        let positive = self.positives_in_top(take) as f64;
        let base = if self.records == 0 {
            0.0
        } else {
            total_positive / self.records as f64
        };
        let rate = if take == 0 {
            0.0
        } else {
            positive / take as f64
        };
        super::TopShare {
            fraction,
            records: take,
            conversion_rate: rate,
            lift: if base > 0.0 { rate / base } else { 0.0 },
            capture: if total_positive > 0.0 {
                positive / total_positive
            } else {
                0.0
            },
        }
    }

    /// The ROC curve, highest total first: (false positive rate, true
    /// positive rate) at each distinct total, thinned to at most `points`
    /// + 2 points, from (0, 0) to (1, 1).
    pub(crate) fn roc_curve(&self, points: usize) -> Vec<[f64; 2]> {
        let positives = self.positives as f64;
        let negatives = (self.records - self.positives) as f64;
        if positives == 0.0 || negatives == 0.0 {
            return Vec::new();
        }
        let mut curve = vec![[0.0, 0.0]];
        let (mut tp, mut fp) = (0u64, 0u64);
        let step = (self.records / points.max(1) as u64).max(1);
        let mut since = 0;
        for (k, group) in self.groups.iter().enumerate() {
            tp += group.positives;
            fp += group.records - group.positives;
            since += group.records;
            if since >= step || k + 1 == self.groups.len() {
                curve.push([fp as f64 / negatives, tp as f64 / positives]);
                since = 0;
            }
        }
        curve
    }

    /// The records in tenths, highest totals first.
    pub(crate) fn deciles(&self) -> Vec<super::Decile> {
        let total = self.records;
        let converters = self.positives;
        if total == 0 {
            return Vec::new();
        }
        let base = converters as f64 / total as f64;
        let mut above = 0;
        let mut before = 0;
        (0..10u64)
            .map(|k| {
                let (start, end) = (k * total / 10, (k + 1) * total / 10);
                let through = self.positives_in_top(end);
                let converted = through - before;
                before = through;
                above += converted;
                let records = end - start;
                let rate = if records == 0 {
                    0.0
                } else {
                    converted as f64 / records as f64
                };
                super::Decile {
                    decile: k as u8 + 1,
                    records,
                    converted,
                    rate,
                    lift: if base > 0.0 { rate / base } else { 0.0 },
                    capture: if converters > 0 {
                        above as f64 / converters as f64
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }
}
