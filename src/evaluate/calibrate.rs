//! Learning point values from outcomes: an L2-regularised logistic
//! regression of "converted" on each of a score's criteria in the unit its
//! points are given in (once for a property rule, per occurrence — after
//! decay — for an event rule, per unit for a `points_per_unit` rule),
//! fitted by Newton's method (IRLS) on the distinct patterns (so a million
//! records cost no more than the patterns they show), turned into points on
//! the model's own scale, written into the model file, and judged by
//! scoring held-out records with that *written* model exactly as `score`
//! does (caps, floors, rounding) against the hand-set one.

use std::collections::HashMap;

use serde::Serialize;

use super::auc;
use crate::Scorecard;
use crate::model::{Model, RuleKind};

/// Features are kept to hundredths so patterns repeat.
const RESOLUTION: f64 = 100.0;

/// Each criterion of one score in its own unit on a record: the points it
/// gave divided by its points (1 for a property rule that held; decayed
/// occurrences for an event rule; units for a per-unit rule), in hundredths.
fn pattern(model: &Model, card: &Scorecard, score: usize, rules: usize) -> Vec<i64> {
    let mut units = vec![0i64; rules];
    let Some(spec) = model.scores.get(score) else {
        return units;
    };
    if let Some(result) = card.scores.get(score) {
        for hit in &result.hits {
            let Some(rule) = spec.rules.get(usize::from(hit.rule)) else {
                continue;
            };
            let x = if rule.points == 0.0 {
                f64::from(hit.count)
            } else {
                hit.points / rule.points
            };
            if let Some(slot) = units.get_mut(usize::from(hit.rule)) {
                *slot = (x * RESOLUTION).round() as i64;
            }
        }
    }
    units
}

/// Training patterns for one score; held-out records are judged later, by
/// scoring them with the written proposal.
#[derive(Debug)]
pub struct Calibration<'m> {
    model: &'m Model,
    score: usize,
    rules: usize,
    /// Pattern → index into `counts`.
    index: HashMap<Vec<i64>, usize>,
    patterns: Vec<Vec<i64>>,
    /// Per pattern: (converted, not converted) among training records.
    counts: Vec<(u64, u64)>,
}

/// The fitted weights and what became of them as points.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fit {
    pub score: String,
    pub training_records: u64,
    pub distinct_patterns: usize,
    pub intercept: f64,
    pub rules: Vec<Proposal>,
    /// Log-odds per point of the hand-set scale → proposed points.
    pub scale: f64,
}

/// What calibration found: the fit, and the written proposal against the
/// hand-set model on held-out records.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub fit: Fit,
    pub holdout_records: u64,
    pub hand_auc: Option<f64>,
    /// The written proposal, scored as `score` scores it.
    pub written_auc: Option<f64>,
    /// The fitted log-odds before points, caps and rounding: what the
    /// regression itself reaches, for reference only.
    pub fit_auc: Option<f64>,
    /// (written − hand) / standard error, DeLong's paired method.
    pub z: Option<f64>,
    /// True only when the written model beats the hand-set one on held-out
    /// records beyond noise (one-sided, 95 %).
    pub written_is_better: bool,
    /// Held-out records whose tier the proposal changes.
    pub tier_changes: u64,
    /// What `check-config` would warn about in the proposal (caps it
    /// cannot reach now, …); caps are never changed by calibration.
    pub proposal_warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proposal {
    pub rule: String,
    /// What one unit is: "once", "occurrence", "unit of employees".
    pub unit: String,
    pub current_points: f64,
    /// Log-odds per unit.
    pub coefficient: f64,
    pub proposed_points: f64,
    /// The data point the other way from the hand-set points.
    pub sign_change: bool,
    /// A sign change left as the hand-set points (no `--allow-sign-change`).
    pub kept: bool,
}

/// A stable split: about 30 % of ids are held out.
pub fn held_out(id: &str) -> bool {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 10 < 3
}

/// The standard error of the difference between two AUCs measured on the
/// same records (DeLong's paired method). `a` and `b` are the two scores,
/// `outcome` whether each record converted.
pub fn paired_auc_se(a: &[f64], b: &[f64], outcome: &[bool]) -> Option<f64> {
    // Each positive's share of negatives it outranks (ties half), and each
    // negative's share of positives that outrank it, per score.
    fn components(scores: &[f64], outcome: &[bool]) -> (Vec<f64>, Vec<f64>) {
        let mut positives: Vec<f64> = scores
            .iter()
            .zip(outcome)
            .filter(|(_, o)| **o)
            .map(|(s, _)| *s)
            .collect();
        let mut negatives: Vec<f64> = scores
            .iter()
            .zip(outcome)
            .filter(|(_, o)| !**o)
            .map(|(s, _)| *s)
            .collect();
        positives.sort_by(f64::total_cmp);
        negatives.sort_by(f64::total_cmp);
        let below = |sorted: &[f64], x: f64| {
            let less = sorted.partition_point(|v| *v < x);
            let not_more = sorted.partition_point(|v| *v <= x);
            less as f64 + (not_more - less) as f64 / 2.0
        };
        let m = negatives.len() as f64;
        let n = positives.len() as f64;
        let v10 = scores
            .iter()
            .zip(outcome)
            .filter(|(_, o)| **o)
            .map(|(s, _)| below(&negatives, *s) / m)
            .collect();
        let v01 = scores
            .iter()
            .zip(outcome)
            .filter(|(_, o)| !**o)
            .map(|(s, _)| 1.0 - below(&positives, *s) / n)
            .collect();
        (v10, v01)
    }
    fn covariance(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        if n < 2.0 {
            return 0.0;
        }
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        x.iter()
            .zip(y)
            .map(|(a, b)| (a - mx) * (b - my))
            .sum::<f64>()
            / (n - 1.0)
    }
    let positives = outcome.iter().filter(|o| **o).count();
    let negatives = outcome.len() - positives;
    if positives < 2 || negatives < 2 {
        return None;
    }
    let (a10, a01) = components(a, outcome);
    let (b10, b01) = components(b, outcome);
    let variance = (covariance(&a10, &a10) + covariance(&b10, &b10) - 2.0 * covariance(&a10, &b10))
        / positives as f64
        + (covariance(&a01, &a01) + covariance(&b01, &b01) - 2.0 * covariance(&a01, &b01))
            / negatives as f64;
    Some(variance.max(0.0).sqrt())
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Solves `a x = b` for a symmetric positive definite `a` (Cholesky).
fn solve(mut a: Vec<Vec<f64>>, b: &[f64]) -> Option<Vec<f64>> {
    let n = b.len();
    for j in 0..n {
        let diagonal = a[j][j] - a[j][..j].iter().map(|v| v * v).sum::<f64>();
        if diagonal <= 0.0 {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j][j] = diagonal;
        for i in j + 1..n {
            let dot: f64 = a[i][..j].iter().zip(&a[j][..j]).map(|(x, y)| x * y).sum();
            a[i][j] = (a[i][j] - dot) / diagonal;
        }
    }
    let mut y = vec![0.0; n];
    for i in 0..n {
        let dot: f64 = a[i][..i].iter().zip(&y[..i]).map(|(x, y)| x * y).sum();
        y[i] = (b[i] - dot) / a[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let dot: f64 = (i + 1..n).map(|k| a[k][i] * x[k]).sum();
        x[i] = (y[i] - dot) / a[i][i];
    }
    Some(x)
}

/// Fits weights (last: intercept) to feature vectors with outcome counts,
/// L2 penalty
/// `lambda` on the weights (not the intercept).
pub fn fit(patterns: &[Vec<f64>], counts: &[(u64, u64)], lambda: f64) -> Vec<f64> {
    let d = patterns.first().map_or(0, Vec::len);
    let mut w = vec![0.0; d + 1];
    for _ in 0..50 {
        let mut gradient = vec![0.0; d + 1];
        let mut hessian = vec![vec![0.0; d + 1]; d + 1];
        for (x, (pos, neg)) in patterns.iter().zip(counts) {
            let n = (pos + neg) as f64;
            if n == 0.0 {
                continue;
            }
            let z = w[d] + x.iter().zip(&w).map(|(xi, wi)| xi * wi).sum::<f64>();
            let p = sigmoid(z);
            let residual = *pos as f64 - n * p;
            let weight = n * p * (1.0 - p);
            // Features with the intercept's constant 1 last; zeros skipped.
            let active: Vec<(usize, f64)> = x
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, v)| *v != 0.0)
                .chain(std::iter::once((d, 1.0)))
                .collect();
            for &(i, xi) in &active {
                gradient[i] += residual * xi;
                for &(j, xj) in &active {
                    hessian[i][j] += weight * xi * xj;
                }
            }
        }
        for i in 0..d {
            gradient[i] -= lambda * w[i];
            hessian[i][i] += lambda;
        }
        hessian[d][d] += 1e-9;
        let Some(step) = solve(hessian, &gradient) else {
            break;
        };
        let size = step.iter().map(|s| s.abs()).fold(0.0, f64::max);
        for (wi, si) in w.iter_mut().zip(&step) {
            *wi += si;
        }
        if size < 1e-8 {
            break;
        }
    }
    w
}

impl<'m> Calibration<'m> {
    pub fn new(model: &'m Model, score: usize) -> Calibration<'m> {
        let rules = model.scores.get(score).map_or(0, |s| s.rules.len());
        Calibration {
            model,
            score,
            rules,
            index: HashMap::new(),
            patterns: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Adds a training record; held-out ids are left for [`Judge`].
    pub fn add(&mut self, id: &str, card: &Scorecard, converted: bool) {
        if held_out(id) {
            return;
        }
        let units = pattern(self.model, card, self.score, self.rules);
        let next = self.patterns.len();
        let index = *self.index.entry(units.clone()).or_insert(next);
        if index == next {
            self.patterns.push(units);
            self.counts.push((0, 0));
        }
        if converted {
            self.counts[index].0 += 1;
        } else {
            self.counts[index].1 += 1;
        }
    }

    /// Fits with L2 penalty `lambda`. A rule whose fitted sign opposes its
    /// hand-set points is held at 0 in the fit and keeps its hand-set
    /// points, unless `allow_sign_change`; either way it is listed.
    pub fn finish(&self, lambda: f64, allow_sign_change: bool) -> Fit {
        let spec = &self.model.scores[self.score];
        let features: Vec<Vec<f64>> = self
            .patterns
            .iter()
            .map(|units| units.iter().map(|u| *u as f64 / RESOLUTION).collect())
            .collect();
        let unconstrained = fit(&features, &self.counts, lambda);
        let against = |w: &[f64], r: usize| spec.rules[r].points * w[r] < 0.0;
        let sign_change: Vec<bool> = (0..self.rules)
            .map(|r| against(&unconstrained, r))
            .collect();
        // Active set: drop the rules pointing the wrong way, refit, until
        // none is left pointing the wrong way.
        let mut held = vec![false; self.rules];
        let mut w = unconstrained.clone();
        if !allow_sign_change {
            for _ in 0..self.rules.max(1) {
                let wrong: Vec<usize> = (0..self.rules)
                    .filter(|&r| !held[r] && against(&w, r))
                    .collect();
                if wrong.is_empty() {
                    break;
                }
                for r in wrong {
                    held[r] = true;
                }
                let masked: Vec<Vec<f64>> = features
                    .iter()
                    .map(|x| {
                        x.iter()
                            .enumerate()
                            .map(|(r, v)| if held[r] { 0.0 } else { *v })
                            .collect()
                    })
                    .collect();
                w = fit(&masked, &self.counts, lambda);
            }
        }
        // Points on the model's own scale: the average contribution of the
        // fitted rules, in points, equals the hand-set rules'.
        let training: u64 = self.counts.iter().map(|(p, n)| p + n).sum();
        let mut mean = vec![0.0; self.rules];
        for (x, (p, n)) in features.iter().zip(&self.counts) {
            for (m, v) in mean.iter_mut().zip(x) {
                *m += v * (p + n) as f64;
            }
        }
        for m in &mut mean {
            *m /= training.max(1) as f64;
        }
        let hand: f64 = (0..self.rules)
            .filter(|&r| !held[r])
            .map(|r| spec.rules[r].points.abs() * mean[r])
            .sum();
        let fitted: f64 = (0..self.rules)
            .filter(|&r| !held[r])
            .map(|r| w[r].abs() * mean[r])
            .sum();
        let scale = if fitted > 0.0 && hand > 0.0 {
            hand / fitted
        } else {
            10.0
        };
        let rules = spec
            .rules
            .iter()
            .enumerate()
            .map(|(r, rule)| {
                let unit = match &rule.kind {
                    RuleKind::Condition(_) => "once".to_owned(),
                    RuleKind::PerUnit { slot, .. } => format!(
                        "unit of {}",
                        self.model.schema.props[*slot as usize].display_name()
                    ),
                    RuleKind::Events { mode, .. } => match mode {
                        crate::model::EventMode::Each => "occurrence".to_owned(),
                        _ => "once".to_owned(),
                    },
                };
                let proposed = if held[r] {
                    rule.points
                } else {
                    round_points(w[r] * scale)
                };
                Proposal {
                    rule: rule.name.clone(),
                    unit,
                    current_points: rule.points,
                    coefficient: if held[r] { unconstrained[r] } else { w[r] },
                    proposed_points: proposed,
                    sign_change: sign_change[r],
                    kept: held[r],
                }
            })
            .collect();
        Fit {
            score: spec.name.clone(),
            training_records: training,
            distinct_patterns: self.patterns.len(),
            intercept: w.last().copied().unwrap_or(0.0),
            rules,
            scale,
        }
    }
}

/// Points as a person would write them: whole numbers from 5 up, two
/// significant digits below (a per-unit rule may be worth 0.02 a unit).
fn round_points(x: f64) -> f64 {
    if x.abs() >= 5.0 || x == 0.0 {
        return x.round();
    }
    let magnitude = 10f64.powf(x.abs().log10().floor() - 1.0);
    (x / magnitude).round() * magnitude
}

/// The held-out comparison: each held-out record scored by the hand-set
/// model and by the written proposal, both as `score` scores them.
#[derive(Debug)]
pub struct Judge<'m> {
    model: &'m Model,
    score: usize,
    weights: Vec<f64>,
    intercept: f64,
    hand: Vec<f64>,
    written: Vec<f64>,
    linear: Vec<f64>,
    outcomes: Vec<bool>,
    tier_changes: u64,
}

impl<'m> Judge<'m> {
    pub fn new(model: &'m Model, score: usize, fit: &Fit) -> Judge<'m> {
        Judge {
            model,
            score,
            weights: fit
                .rules
                .iter()
                .map(|r| if r.kept { 0.0 } else { r.coefficient })
                .collect(),
            intercept: fit.intercept,
            hand: Vec::new(),
            written: Vec::new(),
            linear: Vec::new(),
            outcomes: Vec::new(),
            tier_changes: 0,
        }
    }

    /// `hand` is the record's card under the hand-set model, `written`
    /// under the proposal; training records are ignored.
    pub fn add(&mut self, id: &str, hand: &Scorecard, written: &Scorecard, converted: bool) {
        if !held_out(id) {
            return;
        }
        let (Some(h), Some(w)) = (hand.scores.get(self.score), written.scores.get(self.score))
        else {
            return;
        };
        let units = pattern(self.model, hand, self.score, self.weights.len());
        let linear = units
            .iter()
            .zip(&self.weights)
            .map(|(u, w)| *u as f64 / RESOLUTION * w)
            .sum::<f64>()
            + self.intercept;
        self.hand.push(h.total);
        self.written.push(w.total);
        self.linear.push(linear);
        self.outcomes.push(converted);
        if h.tier != w.tier {
            self.tier_changes += 1;
        }
    }

    pub fn finish(self, fit: Fit, proposal_warnings: Vec<String>) -> Outcome {
        let paired = |scores: &[f64]| -> Vec<(f64, bool)> {
            scores
                .iter()
                .copied()
                .zip(self.outcomes.iter().copied())
                .collect()
        };
        let hand_auc = auc(&mut paired(&self.hand));
        let written_auc = auc(&mut paired(&self.written));
        let fit_auc = auc(&mut paired(&self.linear));
        let se = paired_auc_se(&self.written, &self.hand, &self.outcomes);
        let z = match (hand_auc, written_auc, se) {
            (Some(h), Some(w), Some(se)) if se > 0.0 => Some((w - h) / se),
            _ => None,
        };
        let written_is_better = z.is_some_and(|z| z > 1.645);
        Outcome {
            fit,
            holdout_records: self.outcomes.len() as u64,
            hand_auc,
            written_auc,
            fit_auc,
            z,
            written_is_better,
            tier_changes: self.tier_changes,
            proposal_warnings,
        }
    }
}

impl Outcome {
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let fit = &self.fit;
        let auc = |a: Option<f64>| a.map_or("n/a".to_owned(), |a| format!("{a:.4}"));
        let _ = writeln!(
            out,
            "score \"{}\": fitted on {} records ({} distinct criteria patterns), judged on {} held out",
            fit.score, fit.training_records, fit.distinct_patterns, self.holdout_records
        );
        let _ = writeln!(
            out,
            "  held-out ROC AUC, scored as `score` scores them: hand-set {} · proposal {}{}",
            auc(self.hand_auc),
            auc(self.written_auc),
            self.z
                .map_or(String::new(), |z| format!(" (DeLong z = {z:+.2})"))
        );
        let _ = writeln!(
            out,
            "  (the fitted log-odds before points, caps and rounding: {})",
            auc(self.fit_auc)
        );
        let _ = writeln!(
            out,
            "  {}",
            if self.written_is_better {
                "the proposal separates converters better than the hand-set model, beyond noise (one-sided 95 %)"
            } else {
                "no clear win for the proposal: keep the hand-set model, or gather more outcomes"
            }
        );
        if self.holdout_records > 0 {
            let _ = writeln!(
                out,
                "  the proposal moves {} of {} held-out records ({:.1} %) to another tier",
                self.tier_changes,
                self.holdout_records,
                100.0 * self.tier_changes as f64 / self.holdout_records as f64
            );
        }
        let _ = writeln!(
            out,
            "  {:<36} {:<22} {:>8} {:>9} {:>9}",
            "rule", "per", "points", "log-odds", "proposed"
        );
        for rule in &fit.rules {
            let flag = match (rule.sign_change, rule.kept) {
                (true, true) => {
                    "  ! the data point the other way; kept as set (--allow-sign-change to propose it)"
                }
                (true, false) => "  ! sign changed",
                _ => "",
            };
            let _ = writeln!(
                out,
                "  {:<36} {:<22} {:>8} {:>9.3} {:>9}{flag}",
                rule.rule,
                rule.unit,
                points_text(rule.current_points),
                rule.coefficient,
                points_text(rule.proposed_points)
            );
        }
        for warning in &self.proposal_warnings {
            let _ = writeln!(out, "  warning in the proposal: {warning}");
        }
        out
    }
}

/// Points as they are written in the model file.
fn points_text(points: f64) -> String {
    if points == points.trunc() && points.abs() < 1e15 {
        format!("{}", points as i64)
    } else {
        let text = format!("{points:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The model file with each rule's `points` (or `points_per_unit`) of
/// `score` replaced by the proposal; comments, layout and caps kept. `None`
/// if the file's rules cannot be matched to the model's.
pub fn rewrite_points(source: &str, score: usize, proposals: &[Proposal]) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(source).ok()?;
    let scores = match root.get_ref().get("score")?.get_ref() {
        DeValue::Array(items) => items,
        _ => return None,
    };
    let DeValue::Table(table) = scores.get(score)?.get_ref() else {
        return None;
    };
    let mut spans = Vec::new();
    if let Some(groups) = table.get("group")
        && let DeValue::Array(groups) = groups.get_ref()
    {
        for group in groups {
            let DeValue::Table(group) = group.get_ref() else {
                return None;
            };
            if let Some(rules) = group.get("rule")
                && let DeValue::Array(rules) = rules.get_ref()
            {
                for rule in rules {
                    let DeValue::Table(rule) = rule.get_ref() else {
                        return None;
                    };
                    spans.push(
                        rule.get("points")
                            .or_else(|| rule.get("points_per_unit"))
                            .map(toml::Spanned::span),
                    );
                }
            }
        }
    }
    if spans.len() != proposals.len() {
        return None;
    }
    let mut edits: Vec<(std::ops::Range<usize>, String)> = spans
        .into_iter()
        .zip(proposals)
        .filter(|(_, p)| p.proposed_points != p.current_points)
        .filter_map(|(span, p)| span.map(|s| (s, points_text(p.proposed_points))))
        .collect();
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut text = source.to_owned();
    for (span, value) in edits {
        if span.end <= text.len() {
            text.replace_range(span, &value);
        }
    }
    Some(text)
}
