//! Learning point values from outcomes: an L2-regularised logistic
//! regression of "converted" on how often each of a score's criteria
//! counted (once for a property rule, per occurrence for an event rule, as
//! the model's points are given), fitted by
//! Newton's method (IRLS) on the distinct firing patterns (so a million
//! records cost no more than the patterns they show), compared with the
//! hand-set model on held-out records, and turned into points on the
//! model's own scale.

use std::collections::HashMap;

use serde::Serialize;

use super::auc;
use crate::Scorecard;
use crate::model::Model;

/// How often each criterion of one score counted on a record (1 for a
/// property rule that held; the occurrences that scored for an event rule).
/// The fitted weight is then per occurrence, as the model's points are.
fn pattern(card: &Scorecard, score: usize, rules: usize) -> Vec<u16> {
    let mut counts = vec![0u16; rules];
    if let Some(result) = card.scores.get(score) {
        for hit in &result.hits {
            if let Some(count) = counts.get_mut(usize::from(hit.rule)) {
                *count = u16::try_from(hit.count.max(1)).unwrap_or(u16::MAX);
            }
        }
    }
    counts
}

/// Training patterns and held-out records for one score.
#[derive(Debug)]
pub struct Calibration<'m> {
    model: &'m Model,
    score: usize,
    rules: usize,
    /// Pattern → index into `counts`.
    index: HashMap<Vec<u16>, usize>,
    patterns: Vec<Vec<u16>>,
    /// Per pattern: (converted, not converted) among training records.
    counts: Vec<(u64, u64)>,
    /// Held-out records: pattern index, hand-set total, outcome.
    holdout: Vec<(usize, f64, bool)>,
}

/// What calibration found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub score: String,
    pub training_records: u64,
    pub holdout_records: u64,
    pub distinct_patterns: usize,
    pub hand_auc: Option<f64>,
    pub fitted_auc: Option<f64>,
    /// True only when the fitted model beats the hand-set one on held-out
    /// data by more than the noise (DeLong's paired test, 95 %).
    pub fitted_is_better: bool,
    pub intercept: f64,
    pub rules: Vec<Proposal>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proposal {
    pub rule: String,
    pub current_points: f64,
    /// Log-odds per firing.
    pub coefficient: f64,
    pub proposed_points: f64,
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
            holdout: Vec::new(),
        }
    }

    pub fn add(&mut self, id: &str, card: &Scorecard, converted: bool) {
        let counts = pattern(card, self.score, self.rules);
        let next = self.patterns.len();
        let index = *self.index.entry(counts.clone()).or_insert(next);
        if index == next {
            self.patterns.push(counts);
            self.counts.push((0, 0));
        }
        if held_out(id) {
            let total = card.scores.get(self.score).map_or(0.0, |r| r.total);
            self.holdout.push((index, total, converted));
        } else if converted {
            self.counts[index].0 += 1;
        } else {
            self.counts[index].1 += 1;
        }
    }

    pub fn finish(&self, lambda: f64) -> Outcome {
        let features: Vec<Vec<f64>> = self
            .patterns
            .iter()
            .map(|counts| counts.iter().map(|c| f64::from(*c)).collect())
            .collect();
        let w = fit(&features, &self.counts, lambda);
        let predict = |index: usize| -> f64 {
            features[index]
                .iter()
                .zip(&w)
                .map(|(xi, wi)| xi * wi)
                .sum::<f64>()
                + w.last().copied().unwrap_or(0.0)
        };
        let mut hand: Vec<(f64, bool)> = self.holdout.iter().map(|(_, t, o)| (*t, *o)).collect();
        let mut fitted: Vec<(f64, bool)> = self
            .holdout
            .iter()
            .map(|(i, _, o)| (predict(*i), *o))
            .collect();
        let hand_auc = auc(&mut hand);
        let fitted_auc = auc(&mut fitted);
        let outcomes: Vec<bool> = self.holdout.iter().map(|h| h.2).collect();
        let hand_scores: Vec<f64> = self.holdout.iter().map(|h| h.1).collect();
        let fitted_scores: Vec<f64> = self.holdout.iter().map(|h| predict(h.0)).collect();
        let se = paired_auc_se(&fitted_scores, &hand_scores, &outcomes);
        let fitted_is_better = match (hand_auc, fitted_auc, se) {
            (Some(h), Some(f), Some(se)) => f - h > 1.96 * se && f > 0.55,
            _ => false,
        };
        let spec = &self.model.scores[self.score];
        // Points on the model's own scale: the same total absolute points as
        // the hand-set rules, shared out by the fitted log-odds.
        let hand_scale: f64 = spec.rules.iter().map(|r| r.points.abs()).sum();
        let fitted_scale: f64 = w[..self.rules].iter().map(|c| c.abs()).sum();
        let factor = if fitted_scale > 0.0 {
            hand_scale / fitted_scale
        } else {
            0.0
        };
        let rules = spec
            .rules
            .iter()
            .zip(&w)
            .map(|(rule, coefficient)| Proposal {
                rule: rule.name.clone(),
                current_points: rule.points,
                coefficient: *coefficient,
                proposed_points: (coefficient * factor).round(),
            })
            .collect();
        let training: u64 = self.counts.iter().map(|(p, n)| p + n).sum();
        Outcome {
            score: spec.name.clone(),
            training_records: training,
            holdout_records: self.holdout.len() as u64,
            distinct_patterns: self.patterns.len(),
            hand_auc,
            fitted_auc,
            fitted_is_better,
            intercept: w.last().copied().unwrap_or(0.0),
            rules,
        }
    }
}

impl Outcome {
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let auc = |a: Option<f64>| a.map_or("n/a".to_owned(), |a| format!("{a:.3}"));
        let _ = writeln!(
            out,
            "score \"{}\": fitted on {} records ({} distinct criteria patterns), checked on {} held out",
            self.score, self.training_records, self.distinct_patterns, self.holdout_records
        );
        let _ = writeln!(
            out,
            "  held-out ROC AUC: hand-set {} · fitted {}",
            auc(self.hand_auc),
            auc(self.fitted_auc)
        );
        let _ = writeln!(
            out,
            "  {}",
            if self.fitted_is_better {
                "the fitted points separate converters better than the hand-set ones"
            } else {
                "no clear win for the fitted points: keep the hand-set model, or gather more outcomes"
            }
        );
        let _ = writeln!(
            out,
            "  {:<40} {:>8} {:>9} {:>9}",
            "rule", "points", "log-odds", "proposed"
        );
        for rule in &self.rules {
            let _ = writeln!(
                out,
                "  {:<40} {:>8} {:>9.3} {:>9}",
                rule.rule, rule.current_points, rule.coefficient, rule.proposed_points
            );
        }
        out
    }
}

/// The model file with each rule's `points` of `score` replaced by the
/// proposal (comments and layout kept); `None` if the file's rules cannot
/// be matched to the model's.
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
                    spans.push(rule.get("points").map(toml::Spanned::span));
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
        .filter_map(|(span, p)| span.map(|s| (s, format!("{}", p.proposed_points as i64))))
        .collect();
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut text = source.to_owned();
    for (span, value) in edits {
        if span.end <= text.len() {
            text.replace_range(span, &value);
        }
    }
    Some(lower_unreachable_caps(text))
}

/// New points can leave a group's or score's cap out of reach, which the
/// model compiler rejects: lower each such cap (or raise such a floor) to
/// what the rules can reach, so the proposal is a valid model.
fn lower_unreachable_caps(mut text: String) -> String {
    for _ in 0..8 {
        let Err(errors) = Model::compile("proposal.toml", &text) else {
            break;
        };
        let mut edits = Vec::new();
        for error in errors.iter() {
            let message = &error.message;
            if !message.contains("can never be reached") {
                continue;
            }
            let Some(reachable) = message
                .rsplit("at most ")
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
            else {
                continue;
            };
            let reachable = if message.contains("take away") {
                -reachable.abs()
            } else {
                reachable
            };
            // The error points at the value: line and column, 1-based.
            let offset = text
                .split_inclusive('\n')
                .take(error.line.saturating_sub(1))
                .map(str::len)
                .sum::<usize>()
                + error.column.saturating_sub(1);
            let end = text[offset..]
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                .map_or(text.len(), |n| offset + n);
            if end > offset {
                edits.push((offset..end, format!("{reachable}")));
            }
        }
        if edits.is_empty() {
            break;
        }
        edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
        edits.dedup_by_key(|(span, _)| span.start);
        for (span, value) in edits {
            text.replace_range(span, &value);
        }
    }
    text
}
