//! Does the model separate converters? Backtest metrics over scored
//! records with known outcomes: ROC AUC (ties counted half), conversion by
//! tier and by grade with Wilson 95 % intervals, lift and capture in the
//! top 10 % and 20 %, whether tiers are ordered by conversion, and which
//! criteria fire more among converters. Also the comparison of two models
//! on the same records (`diff`) and a fitted logistic model (`calibrate`).
//!
//! Pure: scorecards and outcomes in, numbers out. Commands do the reading.

pub mod calibrate;
pub mod html;
mod ranking;

use serde::Serialize;

use crate::Scorecard;
use crate::grade::Grade;
use crate::model::{Model, Object};
use ranking::{Outcomes, Ranking, Totals};

/// ROC AUC of `scores` against outcomes: the chance that a random converter
/// scores above a random non-converter, ties counting one half. `None`
/// without both classes. Sorts `scored`, highest first.
pub fn auc(scored: &mut [(f64, bool)]) -> Option<f64> {
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ranking::of_sorted(scored).auc()
}

/// Wilson score interval (95 %) for `hits` out of `n`.
pub fn wilson(hits: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let total = n as f64;
    let p = hits as f64 / total;
    let denominator = 1.0 + z * z / total;
    let centre = p + z * z / (2.0 * total);
    let margin = z * ((p * (1.0 - p) + z * z / (4.0 * total)) / total).sqrt();
    let low = if hits == 0 {
        0.0
    } else {
        ((centre - margin) / denominator).max(0.0)
    };
    let high = if p >= 1.0 {
        1.0
    } else {
        ((centre + margin) / denominator).min(1.0)
    };
    (low, high)
}

/// Converters among the top `fraction` of records by score, against the
/// base rate. `sorted` must be by score, highest first.
pub fn top_share(sorted: &[(f64, bool)], fraction: f64) -> TopShare {
    Ranking::of_sorted(sorted).top_share(fraction)
}

/// The ROC curve of records sorted by score, highest first: (false
/// positive rate, true positive rate) at each distinct score, thinned to at
/// most `points` + 2 points, from (0, 0) to (1, 1).
pub fn roc_curve(sorted: &[(f64, bool)], points: usize) -> Vec<[f64; 2]> {
    Ranking::of_sorted(sorted).roc_curve(points)
}

/// Records in tenths by score, highest first: each tenth's conversion and
/// lift, and the share of all converters in it and the tenths above it.
pub fn deciles(sorted: &[(f64, bool)]) -> Vec<Decile> {
    Ranking::of_sorted(sorted).deciles()
}

/// One tenth of the records by score (1 = the highest-scored).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decile {
    pub decile: u8,
    pub records: u64,
    pub converted: u64,
    pub rate: f64,
    pub lift: f64,
    /// Share of all converters in this tenth and those above it.
    pub capture: f64,
}

/// "B converts no better than C" for each bucket that converts no better
/// than the one it should beat. `buckets` are worst first; unlabelled
/// buckets (in parentheses) and empty ones are skipped.
fn inversions(buckets: &[&Bucket]) -> Vec<String> {
    let ranked: Vec<&&Bucket> = buckets
        .iter()
        .filter(|b| b.records > 0 && !b.label.starts_with('('))
        .collect();
    ranked
        .windows(2)
        .filter(|w| w[1].rate <= w[0].rate)
        .map(|w| {
            // Overlapping 95 % intervals: the order may be noise.
            let noise = if w[1].high >= w[0].low {
                " (within noise)"
            } else {
                ""
            };
            format!(
                "{} converts no better than {}{noise}",
                w[1].label, w[0].label
            )
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopShare {
    pub fraction: f64,
    pub records: u64,
    pub conversion_rate: f64,
    /// The top's conversion rate over the base rate.
    pub lift: f64,
    /// Share of all converters that are in the top.
    pub capture: f64,
}

/// Conversion in one bucket (a tier, a grade, a stage).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bucket {
    pub label: String,
    pub records: u64,
    pub converted: u64,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Bucket {
    fn new(label: String, records: u64, converted: u64) -> Bucket {
        let (low, high) = wilson(converted, records);
        Bucket {
            label,
            records,
            converted,
            rate: if records == 0 {
                0.0
            } else {
                converted as f64 / records as f64
            },
            low,
            high,
        }
    }
}

/// How often one criterion fires among converters and the others.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Criterion {
    pub score: String,
    pub rule: String,
    pub points: f64,
    pub among_converters: f64,
    pub among_others: f64,
    /// among_converters / among_others (∞ written as null).
    pub ratio: Option<f64>,
    /// A penalty that fires more often among converters, or a reward that
    /// fires less often: the points may point the wrong way.
    pub flag: Option<String>,
}

/// Flags a criterion whose points disagree with who it fires for, when the
/// difference is more than a fifth and beyond noise (a two-proportion
/// z-test at 95 %).
fn criterion_flag(points: f64, fired: (u64, u64), converted: u64, others: u64) -> Option<String> {
    if converted == 0 || others == 0 || points == 0.0 {
        return None;
    }
    let (a, b) = (
        fired.0 as f64 / converted as f64,
        fired.1 as f64 / others as f64,
    );
    let pooled = (fired.0 + fired.1) as f64 / (converted + others) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / converted as f64 + 1.0 / others as f64)).sqrt();
    if se == 0.0 || ((a - b) / se).abs() < 1.96 {
        return None;
    }
    if points < 0.0 && a > 1.2 * b {
        Some(if b > 0.0 {
            format!("penalty fires {:.1}× as often among converters", a / b)
        } else {
            "penalty fires only among converters".to_owned()
        })
    } else if points > 0.0 && b > 1.2 * a {
        Some(if a > 0.0 {
            format!("reward fires {:.1}× as often among the others", b / a)
        } else {
            "reward never fires among converters".to_owned()
        })
    } else {
        None
    }
}

/// One score's metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScoreMetrics {
    pub score: String,
    pub auc: Option<f64>,
    pub top: Vec<TopShare>,
    pub tiers: Vec<Bucket>,
    /// Tiers whose conversion rate is not above the tier below them.
    pub tier_inversions: Vec<String>,
    pub stages: Vec<Bucket>,
    /// Ladder stages whose conversion rate is not above the stage below.
    pub stage_inversions: Vec<String>,
    /// Tenths by score, highest first.
    pub deciles: Vec<Decile>,
    /// The ROC curve, thinned (for charts).
    pub roc: Vec<[f64; 2]>,
}

/// A backtest's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub model: String,
    pub records: u64,
    pub converted: u64,
    pub base_rate: f64,
    pub scores: Vec<ScoreMetrics>,
    pub grades: Vec<Bucket>,
    /// Grades that convert no better than the grade below them.
    pub grade_inversions: Vec<String>,
    pub criteria: Vec<Criterion>,
}

/// Accumulates scorecards and outcomes; memory is one bit per record (its
/// outcome) and 4 bytes per record and score (its total, for the ranking
/// measures), plus fixed counters.
#[derive(Debug)]
pub struct Collector<'m> {
    model: &'m Model,
    outcomes: Outcomes,
    /// Per score: totals in record order.
    totals: Vec<Totals>,
    /// Per score, per tier (last: no tier): records, converted.
    tiers: Vec<Vec<(u64, u64)>>,
    stages: Vec<Vec<(u64, u64)>>,
    grades: [(u64, u64); 14],
    /// Per score, per rule: fired among converters, among others.
    fired: Vec<Vec<(u64, u64)>>,
    /// Whose cards these are: contacts (their contact scores) or
    /// companies (their company scores), from the first card.
    object: Object,
}

impl<'m> Collector<'m> {
    pub fn new(model: &'m Model) -> Collector<'m> {
        let stage_count = model.lifecycle.as_ref().map_or(0, |l| l.stages.len());
        Collector {
            model,
            outcomes: Outcomes::default(),
            totals: vec![Totals::new(model.precision); model.scores.len()],
            tiers: model
                .scores
                .iter()
                .map(|s| vec![(0, 0); s.tiers.len() + 1])
                .collect(),
            stages: model
                .scores
                .iter()
                .map(|_| vec![(0, 0); stage_count + 1])
                .collect(),
            grades: [(0, 0); 14],
            fired: model
                .scores
                .iter()
                .map(|s| vec![(0, 0); s.rules.len()])
                .collect(),
            object: Object::Contact,
        }
    }

    pub fn add(&mut self, card: &Scorecard, converted: bool) {
        self.object = card.object;
        self.outcomes.push(converted);
        let count = |cell: &mut (u64, u64)| {
            cell.0 += 1;
            cell.1 += u64::from(converted);
        };
        for (i, result) in card.scores.iter().enumerate().take(self.totals.len()) {
            if self.model.scores[i].object != card.object {
                continue;
            }
            self.totals[i].push(result.total);
            let tiers = &mut self.tiers[i];
            let last = tiers.len() - 1;
            count(&mut tiers[result.tier.map_or(last, usize::from).min(last)]);
            let stages = &mut self.stages[i];
            let last = stages.len() - 1;
            count(&mut stages[result.stage.map_or(last, usize::from).min(last)]);
            for hit in &result.hits {
                if let Some(cell) = self.fired[i].get_mut(usize::from(hit.rule)) {
                    if converted {
                        cell.0 += 1;
                    } else {
                        cell.1 += 1;
                    }
                }
            }
        }
        count(&mut self.grades[card.grade.map_or(13, |g| usize::from(g.rank()))]);
    }

    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outcomes.len() == 0
    }

    pub fn report(&self) -> Report {
        let model = self.model;
        let records = self.outcomes.len() as u64;
        let converted = self.outcomes.positives();
        let others = records - converted;
        let mut scores = Vec::new();
        let mut criteria = Vec::new();
        for (i, spec) in model.scores.iter().enumerate() {
            if spec.object != self.object {
                continue;
            }
            // Highest first; among equal totals, file order.
            let ranking = Ranking::of_kept(&self.totals[i], &self.outcomes);
            let auc = ranking.auc();
            let top = [0.1, 0.2].iter().map(|f| ranking.top_share(*f)).collect();
            let mut tiers: Vec<Bucket> = spec
                .tiers
                .iter()
                .zip(&self.tiers[i])
                .map(|(tier, (n, c))| Bucket::new(tier.label.clone(), *n, *c))
                .collect();
            let tier_inversions = inversions(&tiers.iter().collect::<Vec<_>>());
            if let Some((n, c)) = self.tiers[i]
                .last()
                .filter(|(n, _)| *n > 0 && !spec.tiers.is_empty())
            {
                tiers.insert(0, Bucket::new("(no tier)".to_owned(), *n, *c));
            }
            let stage_names = model
                .lifecycle
                .as_ref()
                .map(|l| l.stages.clone())
                .unwrap_or_default();
            let stages = if spec.stages.is_empty() {
                Vec::new()
            } else {
                let mut list: Vec<Bucket> = stage_names
                    .iter()
                    .zip(&self.stages[i])
                    .map(|(name, (n, c))| Bucket::new(name.clone(), *n, *c))
                    .collect();
                if let Some((n, c)) = self.stages[i].last().filter(|(n, _)| *n > 0) {
                    list.insert(0, Bucket::new("(no stage)".to_owned(), *n, *c));
                }
                list
            };
            // The ladder only (one condition per rung): a disqualified
            // stage of its own is not a rung.
            let ladder = spec.stages.len();
            let stage_inversions = inversions(
                &stages
                    .iter()
                    .filter(|b| stage_names.iter().take(ladder).any(|n| *n == b.label))
                    .collect::<Vec<_>>(),
            );
            for (rule, (pos, neg)) in spec.rules.iter().zip(&self.fired[i]) {
                let among_converters = if converted == 0 {
                    0.0
                } else {
                    *pos as f64 / converted as f64
                };
                let among_others = if others == 0 {
                    0.0
                } else {
                    *neg as f64 / others as f64
                };
                criteria.push(Criterion {
                    score: spec.name.clone(),
                    rule: rule.name.clone(),
                    points: rule.points,
                    among_converters,
                    among_others,
                    ratio: (among_others > 0.0).then(|| among_converters / among_others),
                    flag: criterion_flag(rule.points, (*pos, *neg), converted, others),
                });
            }
            scores.push(ScoreMetrics {
                score: spec.name.clone(),
                auc,
                top,
                tiers,
                tier_inversions,
                stages,
                stage_inversions,
                deciles: ranking.deciles(),
                roc: ranking.roc_curve(200),
            });
        }
        criteria.sort_by(|a, b| {
            let key = |c: &Criterion| c.among_converters - c.among_others;
            key(b).total_cmp(&key(a))
        });
        let grades = if model.profiles.is_empty() || self.object == Object::Company {
            Vec::new()
        } else {
            Grade::ladder()
                .map(|g| (g.as_str().to_owned(), self.grades[usize::from(g.rank())]))
                .chain(std::iter::once(("(none)".to_owned(), self.grades[13])))
                .filter(|(_, (n, _))| *n > 0)
                .map(|(label, (n, c))| Bucket::new(label, n, c))
                .collect()
        };
        // Grades come worst first, as the ladder goes.
        let grade_inversions = inversions(&grades.iter().collect::<Vec<_>>());
        Report {
            grade_inversions,
            model: model.name.clone(),
            records,
            converted,
            base_rate: if records == 0 {
                0.0
            } else {
                converted as f64 / records as f64
            },
            scores,
            grades,
            criteria,
        }
    }
}

fn percent(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn bucket_lines(out: &mut String, title: &str, buckets: &[Bucket]) {
    use std::fmt::Write as _;
    if buckets.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}");
    for b in buckets {
        let _ = writeln!(
            out,
            "    {:<14} {:>9} records {:>8} converted  {:>7}  (95 % CI {} – {})",
            b.label,
            b.records,
            b.converted,
            percent(b.rate),
            percent(b.low),
            percent(b.high)
        );
    }
}

impl Report {
    /// The report as revops read it in a terminal.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "model \"{}\": {} records, {} converted (base rate {})",
            self.model,
            self.records,
            self.converted,
            percent(self.base_rate)
        );
        for score in &self.scores {
            let _ = writeln!(out, "\nscore \"{}\"", score.score);
            match score.auc {
                Some(auc) => {
                    let verdict = if auc >= 0.8 {
                        "strong separation"
                    } else if auc >= 0.7 {
                        "useful separation"
                    } else if auc > 0.55 {
                        "weak separation"
                    } else {
                        "no better than chance"
                    };
                    let _ = writeln!(out, "  ROC AUC {auc:.3} ({verdict})");
                }
                None => {
                    let _ = writeln!(out, "  ROC AUC: needs both converters and non-converters");
                }
            }
            for top in &score.top {
                let _ = writeln!(
                    out,
                    "  top {:>2.0} %: {} records, conversion {}, lift {:.2}×, captures {} of converters",
                    top.fraction * 100.0,
                    top.records,
                    percent(top.conversion_rate),
                    top.lift,
                    percent(top.capture)
                );
            }
            bucket_lines(&mut out, "by tier", &score.tiers);
            for inversion in &score.tier_inversions {
                let _ = writeln!(out, "  ! {inversion}");
            }
            bucket_lines(&mut out, "by stage", &score.stages);
            for inversion in &score.stage_inversions {
                let _ = writeln!(out, "  ! {inversion}");
            }
        }
        if !self.grades.is_empty() {
            out.push('\n');
            bucket_lines(&mut out, "by grade", &self.grades);
            for inversion in &self.grade_inversions {
                let _ = writeln!(out, "  ! {inversion}");
            }
        }
        if !self.criteria.is_empty() {
            let _ = writeln!(
                out,
                "\ncriteria, most telling first (fired among converters vs others)"
            );
            for c in self.criteria.iter().take(12) {
                let _ = writeln!(
                    out,
                    "  {:<40} {:>7} vs {:>7}  ({} points)",
                    format!("{} / {}", c.score, c.rule),
                    percent(c.among_converters),
                    percent(c.among_others),
                    c.points
                );
            }
            let idle: Vec<&str> = self
                .criteria
                .iter()
                .filter(|c| c.among_converters == 0.0 && c.among_others == 0.0)
                .map(|c| c.rule.as_str())
                .collect();
            if !idle.is_empty() {
                let _ = writeln!(out, "  never fired: {}", idle.join(", "));
            }
            for c in self.criteria.iter().filter(|c| c.flag.is_some()) {
                let _ = writeln!(
                    out,
                    "  ! {} / {} ({} points): {} ({} vs {})",
                    c.score,
                    c.rule,
                    c.points,
                    c.flag.as_deref().unwrap_or_default(),
                    percent(c.among_converters),
                    percent(c.among_others)
                );
            }
        }
        out
    }
}
