//! The scoring engine: a record, the model and `now` in, a scorecard out.
//!
//! Architecture invariant: this module is pure. It reads no clock (time is
//! the `now` argument), does no IO, allocates nothing per criterion, and
//! never panics on odd data: a missing or mistyped property is a non-match
//! plus a warning on the scorecard.
//!
//! Order of work for one record: one pass over its events (newest first)
//! feeds every event matcher of the model; then disqualifiers, the grade,
//! each score's rules, groups, caps, tier and matrix; lifecycle stages last,
//! because their conditions may read any score, the grade and tiers.

mod card_line;
mod explain;
mod outputs;

use jiff::Timestamp;

pub use card_line::{CardJson, CardWriter};
pub use explain::{brief, explain_account, explain_text, explain_with, summary_line};
pub use outputs::{OutputKind, OutputValue};

use crate::grade::{Grade, GradeStep};
use crate::model::{
    Agg, Cond, EventMode, Model, Object, Part, PropCheck, PropTest, RuleKind, TextOp,
};
use crate::record::{OTHER_TYPE, Prop, Record, Value};

/// Everything the model concluded about one record. Reuse one across
/// records with [`Model::score_into`] to avoid allocating.
#[derive(Clone, Debug, Default)]
pub struct Scorecard {
    /// Whose card this is: a contact's (its contact scores, and its
    /// company's scores when known) or a company's (its company scores).
    pub(crate) object: Object,
    pub(crate) grade: Option<Grade>,
    pub(crate) profile: Option<u16>,
    /// Each grading criterion that moved the grade, with the step and
    /// whether it matched (a step on a miss comes from `on_miss`).
    pub(crate) grade_steps: Vec<GradeMove>,
    pub(crate) disqualified_by: Option<u16>,
    pub(crate) scores: Vec<ScoreResult>,
    pub(crate) warnings: Vec<Warning>,
    accs: Vec<Acc>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GradeMove {
    pub criterion: u16,
    pub step: GradeStep,
    pub matched: bool,
}

/// One score's outcome.
#[derive(Clone, Debug, Default)]
pub struct ScoreResult {
    pub(crate) fit: f64,
    pub(crate) engagement: f64,
    pub(crate) total: f64,
    pub(crate) tier: Option<u16>,
    /// Fit row (0 = A) and engagement column (0 = 1).
    pub(crate) matrix: Option<[u8; 2]>,
    pub(crate) stage: Option<u16>,
    /// The stage is the record's current one, kept because rules never downgrade.
    pub(crate) stage_kept: bool,
    /// Bit n: the conditions of lifecycle stage n held.
    pub(crate) stages_held: u32,
    pub(crate) hits: Vec<Hit>,
    pub(crate) adjustments: Vec<Adjustment>,
    group_points: Vec<f64>,
}

/// A rule that fired: its points after decay and occurrence caps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Hit {
    pub rule: u16,
    pub points: f64,
    /// Occurrences that counted (1 for property rules).
    pub count: u32,
}

/// Points added or taken by a cap, a floor or a disqualifier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Adjustment {
    GroupMax { group: u16, points: f64 },
    GroupMin { group: u16, points: f64 },
    ScoreCap { points: f64 },
    ScoreFloor { points: f64 },
    Disqualified { points: f64 },
}

/// Something odd in the record that made a criterion not match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Warning {
    pub slot: u32,
    pub problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    NotANumber,
    NotADate,
    /// The record has no company (or its company could not be read), so
    /// no `company.*` criterion matched. Said once per record, not per
    /// rule.
    NoCompany,
}

/// Per-matcher tallies from the pass over events.
#[derive(Clone, Copy, Debug, Default)]
struct Acc {
    count: u32,
    /// Decayed points of the counted occurrences (per-occurrence rules).
    sum: f64,
    newest: i64,
    /// Time of the matcher's `nth` newest occurrence.
    nth_at: i64,
}

impl Scorecard {
    pub fn grade(&self) -> Option<Grade> {
        self.grade
    }

    pub fn is_disqualified(&self) -> bool {
        self.disqualified_by.is_some()
    }

    pub fn results(&self) -> &[ScoreResult] {
        &self.scores
    }

    pub fn object(&self) -> Object {
        self.object
    }
}

/// A company's people as its roll-ups read them: each person's record and
/// scorecard, in the same order.
#[derive(Clone, Copy, Debug)]
pub struct People<'a> {
    pub records: &'a [Record],
    pub cards: &'a [Scorecard],
}

impl People<'_> {
    fn len(&self) -> usize {
        self.records.len().min(self.cards.len())
    }
}

/// The scorecards of a company and its people (see [`Model::score_account_into`]).
#[derive(Clone, Debug, Default)]
pub struct AccountCard {
    pub company: Scorecard,
    pub people: Vec<Scorecard>,
}

impl ScoreResult {
    pub fn fit(&self) -> f64 {
        self.fit
    }

    pub fn engagement(&self) -> f64 {
        self.engagement
    }

    pub fn total(&self) -> f64 {
        self.total
    }
}

impl Model {
    /// Scores one record as of `now`.
    pub fn score(&self, record: &Record, now: Timestamp) -> Scorecard {
        let mut card = Scorecard::default();
        self.score_into(record, now, &mut card);
        card
    }

    /// Scores one record into `card`, reusing its buffers. Company scores
    /// are left empty: see [`Model::score_with_company`].
    pub fn score_into(&self, record: &Record, now: Timestamp, card: &mut Scorecard) {
        self.score_with_company(record, None, now, card);
    }

    /// Scores a company and its people, in the model's fixed order: every
    /// person by the contact scores (their company's score unknown), then
    /// the company from its record and those scorecards, then — when a
    /// contact rule or stage reads `company_score` — every person again
    /// with the company's score known. Each person's card ends up holding
    /// the company's results in the company scores' places.
    pub fn score_account_into(
        &self,
        company: &Record,
        people: &[Record],
        now: Timestamp,
        out: &mut AccountCard,
    ) {
        out.people.resize_with(people.len(), Scorecard::default);
        for (record, card) in people.iter().zip(out.people.iter_mut()) {
            self.score_with_company(record, None, now, card);
        }
        let view = People {
            records: people,
            cards: &out.people,
        };
        self.score_company_into(company, view, now, &mut out.company);
        for (record, card) in people.iter().zip(out.people.iter_mut()) {
            if self.reads_company_score {
                self.score_with_company(record, Some(&out.company), now, card);
            } else {
                self.copy_company_results(&out.company, card);
            }
        }
    }

    /// Scores a company into `card` from its record (the company's
    /// properties) and its people, already scored by the contact scores.
    /// Only company scores are computed; there is no grade and no stage.
    pub fn score_company_into(
        &self,
        company: &Record,
        people: People<'_>,
        now: Timestamp,
        card: &mut Scorecard,
    ) {
        let now_ms = now.as_millisecond();
        self.start_card(company, Object::Company, now_ms, card);
        let mut cx = Cx {
            record: company,
            now_ms,
            accs: &card.accs,
            warnings: &mut card.warnings,
            people: Some(people),
            company: None,
        };
        for (index, result) in card.scores.iter_mut().enumerate() {
            if self.scores[index].object == Object::Company {
                self.score_one(index, &mut cx, result, false);
            } else {
                *result = ScoreResult::default();
            }
        }
    }

    /// Puts a company's results into a person's card, in the company
    /// scores' places.
    fn copy_company_results(&self, company: &Scorecard, card: &mut Scorecard) {
        for (index, result) in card.scores.iter_mut().enumerate() {
            if self.scores[index].object == Object::Company
                && let Some(from) = company.scores.get(index)
            {
                result.clone_from(from);
            }
        }
    }

    /// Scores one contact into `card`, with its company's scorecard when
    /// it is known (`company_score` conditions read it, and the card keeps
    /// its results in the company scores' places); without it, company
    /// scores are left empty and `company_score` conditions do not hold.
    pub fn score_with_company(
        &self,
        record: &Record,
        company: Option<&Scorecard>,
        now: Timestamp,
        card: &mut Scorecard,
    ) {
        let now_ms = now.as_millisecond();
        self.start_card(record, Object::Contact, now_ms, card);

        let company = company.filter(|c| c.object == Object::Company);
        let mut cx = Cx {
            record,
            now_ms,
            accs: &card.accs,
            warnings: &mut card.warnings,
            people: None,
            company: company.map(|c| c.scores.as_slice()),
        };
        let disqualifier = self
            .disqualifiers
            .iter()
            .position(|d| cx.eval(&d.cond, None));
        card.disqualified_by = disqualifier.map(|d| d as u16);

        self.grade(
            &mut cx,
            &mut card.grade_steps,
            &mut card.profile,
            &mut card.grade,
        );
        if let Some(d) = disqualifier
            && self.disqualifiers[d].grade_f
            && card.grade.is_some()
        {
            card.grade = Some(Grade::F);
        }
        let zero = disqualifier.is_some_and(|d| self.disqualifiers[d].zero_score);
        for (index, result) in card.scores.iter_mut().enumerate() {
            if self.scores[index].object == Object::Contact {
                self.score_one(index, &mut cx, result, zero);
            } else {
                match company.and_then(|c| c.scores.get(index)) {
                    Some(from) => result.clone_from(from),
                    None => *result = ScoreResult::default(),
                }
            }
        }
        self.stages(
            &mut cx,
            &mut card.scores,
            card.grade,
            disqualifier.is_some(),
        );
    }

    /// Empties `card` for `record` (keeping its buffers) and tallies the
    /// record's events.
    fn start_card(&self, record: &Record, object: Object, now_ms: i64, card: &mut Scorecard) {
        card.object = object;
        card.grade = None;
        card.profile = None;
        card.grade_steps.clear();
        card.disqualified_by = None;
        card.warnings.clear();
        card.warnings.extend_from_slice(&record.warnings);
        card.scores
            .resize_with(self.scores.len(), ScoreResult::default);
        self.tally_events(record, now_ms, &mut card.accs);
    }

    fn tally_events(&self, record: &Record, now_ms: i64, accs: &mut Vec<Acc>) {
        accs.clear();
        accs.resize(self.matchers.len(), Acc::default());
        if self.matchers.is_empty() {
            return;
        }
        let other = self.hot_by_type.len().saturating_sub(1);
        // Per decay: the last whole number of periods met and its factor.
        let (mut last_step, mut last_factor) = ([i64::MIN; 8], [0.0f64; 8]);
        for event in &record.events {
            if event.at > now_ms {
                continue;
            }
            let age = now_ms - event.at;
            let list = if event.kind == OTHER_TYPE {
                other
            } else {
                event.kind as usize
            };
            let Some(list) = self.hot_by_type.get(list) else {
                continue;
            };
            // Decay factors for this event's age, computed once per distinct decay.
            let mut factors = [0.0f64; 8];
            let mut known = 0u8;
            let mut hits = event.hits;
            while hits != 0 {
                let entry = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                let Some(hot) = list.get(entry) else { break };
                if age > hot.window_ms {
                    continue;
                }
                let Some(acc) = accs.get_mut(hot.index as usize) else {
                    continue;
                };
                acc.count += 1;
                if acc.count == 1 {
                    acc.newest = event.at;
                }
                if acc.count == hot.nth {
                    acc.nth_at = event.at;
                }
                if hot.points != 0.0 && acc.count <= hot.take {
                    let factor = match hot.decay {
                        u32::MAX => 1.0,
                        d if d < 8 => {
                            let d = d as usize;
                            if known & (1 << d) == 0 {
                                let decay = self.decays[d];
                                factors[d] = match decay.steps(age) {
                                    // Events come newest first: runs share their step.
                                    Some(step) if last_step[d] == step => last_factor[d],
                                    Some(step) => {
                                        last_step[d] = step;
                                        last_factor[d] = decay.stepped_factor(step);
                                        last_factor[d]
                                    }
                                    None => decay.factor(age),
                                };
                                known |= 1 << d;
                            }
                            factors[d]
                        }
                        d => self
                            .decays
                            .get(d as usize)
                            .map_or(1.0, |decay| decay.factor(age)),
                    };
                    acc.sum += hot.points * factor;
                }
            }
        }
    }

    fn grade(
        &self,
        cx: &mut Cx<'_>,
        steps: &mut Vec<GradeMove>,
        profile_out: &mut Option<u16>,
        grade_out: &mut Option<Grade>,
    ) {
        let Some(index) = self
            .profiles
            .iter()
            .position(|p| p.when.as_ref().is_none_or(|w| cx.eval(w, None)))
        else {
            return;
        };
        let profile = &self.profiles[index];
        let mut thirds = 0;
        for (i, criterion) in profile.criteria.iter().enumerate() {
            let matched = cx.eval(&criterion.cond, None);
            let step = if matched {
                criterion.on_match
            } else {
                criterion.on_miss
            };
            if let Some(step) = step {
                thirds += step.thirds();
                steps.push(GradeMove {
                    criterion: i as u16,
                    step,
                    matched,
                });
            }
        }
        *profile_out = Some(index as u16);
        *grade_out = Some(profile.start.moved(thirds));
    }

    fn score_one(&self, index: usize, cx: &mut Cx<'_>, out: &mut ScoreResult, zero: bool) {
        let score = &self.scores[index];
        out.hits.clear();
        out.adjustments.clear();
        out.group_points.clear();
        out.group_points.resize(score.groups.len(), 0.0);
        out.stage = None;
        out.stage_kept = false;
        for (r, rule) in score.rules.iter().enumerate() {
            if let Some((points, count)) = self.rule_points(rule, cx) {
                out.hits.push(Hit {
                    rule: r as u16,
                    points,
                    count,
                });
                out.group_points[usize::from(rule.group)] += points;
            }
        }
        let (mut fit, mut engagement) = (0.0, 0.0);
        for (g, group) in score.groups.iter().enumerate() {
            let mut points = out.group_points[g];
            if let Some(max) = group.max
                && points > max
            {
                out.adjustments.push(Adjustment::GroupMax {
                    group: g as u16,
                    points: max - points,
                });
                points = max;
            }
            if let Some(min) = group.min
                && points < min
            {
                out.adjustments.push(Adjustment::GroupMin {
                    group: g as u16,
                    points: min - points,
                });
                points = min;
            }
            match group.part {
                Part::Fit => fit += points,
                _ => engagement += points,
            }
        }
        let (fit, engagement) = (self.round(fit), self.round(engagement));
        let mut total = fit + engagement;
        if total > score.cap {
            out.adjustments.push(Adjustment::ScoreCap {
                points: score.cap - total,
            });
            total = score.cap;
        }
        if let Some(floor) = score.floor
            && total < floor
        {
            out.adjustments.push(Adjustment::ScoreFloor {
                points: floor - total,
            });
            total = floor;
        }
        (out.fit, out.engagement, out.total) = (fit, engagement, self.round(total));
        if zero {
            out.adjustments
                .push(Adjustment::Disqualified { points: -out.total });
            (out.fit, out.engagement, out.total) = (0.0, 0.0, 0.0);
        }
        let tier_value = match score.tier_on {
            Part::Fit => out.fit,
            Part::Engagement => out.engagement,
            Part::Total => out.total,
        };
        out.tier = score
            .tiers
            .iter()
            .rposition(|t| tier_value >= t.min)
            .map(|t| t as u16);
        out.matrix = score.matrix.as_ref().map(|m| {
            let row = m.fit.iter().position(|b| out.fit >= *b).unwrap_or(2) as u8;
            let column = m
                .engagement
                .iter()
                .position(|b| out.engagement >= *b)
                .unwrap_or(2) as u8;
            [row, column]
        });
    }

    fn rule_points(&self, rule: &crate::model::Rule, cx: &mut Cx<'_>) -> Option<(f64, u32)> {
        match &rule.kind {
            RuleKind::Condition(cond) => cx.eval(cond, None).then_some((rule.points, 1)),
            RuleKind::PerUnit {
                slot,
                per_unit,
                max_points,
            } => {
                let value = cx.number(*slot)?;
                if value == 0.0 {
                    return None;
                }
                let mut points = value * per_unit;
                if let Some(max) = max_points {
                    points = if *max >= 0.0 {
                        points.min(*max)
                    } else {
                        points.max(*max)
                    };
                }
                Some((points, 1))
            }
            RuleKind::Events { matcher, mode } => {
                let acc = cx.accs.get(*matcher as usize)?;
                let spec = &self.matchers[*matcher as usize];
                let decayed =
                    |at: i64| rule.points * spec.decay.map_or(1.0, |d| d.factor(cx.now_ms - at));
                match *mode {
                    EventMode::Each => (acc.count > 0).then(|| (acc.sum, acc.count.min(spec.take))),
                    EventMode::Once => (acc.count > 0).then(|| (decayed(acc.newest), 1)),
                    EventMode::Threshold { min, max } => (acc.count >= min && acc.count <= max)
                        .then(|| (decayed(acc.nth_at), acc.count)),
                    EventMode::Absent => (acc.count == 0).then_some((rule.points, 0)),
                }
            }
        }
    }

    fn stages(
        &self,
        cx: &mut Cx<'_>,
        results: &mut [ScoreResult],
        grade: Option<Grade>,
        disqualified: bool,
    ) {
        let Some(lifecycle) = &self.lifecycle else {
            return;
        };
        let current =
            lifecycle
                .current_slot
                .and_then(|slot| match cx.record.props.get(slot as usize) {
                    Some(Prop::One(v)) => {
                        let text = v.text.trim();
                        lifecycle
                            .stages
                            .iter()
                            .position(|s| s.eq_ignore_ascii_case(text))
                    }
                    _ => None,
                });
        let mut memo = [false; 32];
        for index in 0..results.len() {
            let conditions = &self.scores[index].stages;
            if conditions.is_empty() {
                continue;
            }
            let mut reached = None;
            results[index].stages_held = 0;
            for (stage, cond) in conditions.iter().enumerate() {
                let view = StageView {
                    results,
                    grade,
                    disqualified,
                    memo: &memo[..stage.min(32)],
                };
                let ok = cond.as_ref().is_none_or(|c| cx.eval(c, Some(&view)));
                if stage < memo.len() {
                    memo[stage] = ok;
                }
                if ok {
                    results[index].stages_held |= 1 << stage;
                }
                if ok {
                    reached = Some(stage);
                }
            }
            let result = &mut results[index];
            if disqualified {
                // Never held at MQL or SQL: a disqualified record gets the
                // model's stage for it, whatever it held before.
                result.stage = Some(lifecycle.disqualified_stage);
                result.stage_kept = false;
                continue;
            }
            match (current, reached) {
                // Held where it is, but never at the disqualified stage off
                // the ladder once the record is qualified again.
                (Some(c), r)
                    if !lifecycle.allow_downgrade
                        && c < conditions.len()
                        && r.is_none_or(|r| c > r) =>
                {
                    result.stage = Some(c as u16);
                    result.stage_kept = true;
                }
                (_, r) => result.stage = r.map(|r| r as u16),
            }
        }
    }

    fn round(&self, value: f64) -> f64 {
        const SCALES: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
        let scale = SCALES.get(self.precision as usize).copied().unwrap_or(1.0);
        let rounded = (value * scale).round() / scale;
        if rounded == 0.0 { 0.0 } else { rounded }
    }
}

impl Model {
    /// For explanations: the first stage above the one `score` reached by
    /// its rules, with each of that stage's top-level conditions and whether
    /// it held. None when there is no higher stage.
    pub(crate) fn next_stage_checklist<'m>(
        &'m self,
        record: &Record,
        card: &Scorecard,
        now: Timestamp,
        score: usize,
    ) -> Option<(usize, Vec<(&'m Cond, bool)>)> {
        let result = card.scores.get(score)?;
        let conditions = &self.scores.get(score)?.stages;
        let reached = (0..conditions.len())
            .rev()
            .find(|s| result.stages_held & (1 << s) != 0);
        let next = reached.map_or(0, |r| r + 1);
        let cond = conditions.get(next)?.as_ref()?;
        let mut memo = [false; 32];
        for (stage, held) in memo.iter_mut().enumerate().take(conditions.len()) {
            *held = result.stages_held & (1 << stage) != 0;
        }
        let mut items = Vec::new();
        flatten_all(cond, &mut items);
        let now_ms = now.as_millisecond();
        Some((
            next,
            items
                .into_iter()
                .map(|c| (c, holds_on_card(record, card, now_ms, &memo[..next], c)))
                .collect(),
        ))
    }
}

/// The top-level conjuncts of a condition: `all` lists (also nested ones)
/// are opened, anything else is one item.
fn flatten_all<'c>(cond: &'c Cond, out: &mut Vec<&'c Cond>) {
    match cond {
        Cond::All(items) => items.iter().for_each(|c| flatten_all(c, out)),
        other => out.push(other),
    }
}

/// What stage conditions may read besides the record.
struct StageView<'a> {
    results: &'a [ScoreResult],
    grade: Option<Grade>,
    disqualified: bool,
    /// Whether each earlier stage's conditions held.
    memo: &'a [bool],
}

/// Evaluation context for conditions.
struct Cx<'a> {
    record: &'a Record,
    now_ms: i64,
    accs: &'a [Acc],
    warnings: &'a mut Vec<Warning>,
    /// A company's people, when a company score is scored.
    people: Option<People<'a>>,
    /// A contact's company's results, once the company is scored.
    company: Option<&'a [ScoreResult]>,
}

/// One part of a score's result.
fn part_of(result: &ScoreResult, part: Part) -> f64 {
    match part {
        Part::Fit => result.fit,
        Part::Engagement => result.engagement,
        Part::Total => result.total,
    }
}

/// Whether a person condition holds for person `index` of `people`: read
/// from the person's record and scorecard as a stage condition would be.
pub(crate) fn person_holds(people: People<'_>, index: usize, now_ms: i64, cond: &Cond) -> bool {
    let (Some(record), Some(card)) = (people.records.get(index), people.cards.get(index)) else {
        return false;
    };
    holds_on_card(record, card, now_ms, &[], cond)
}

/// Whether `cond` holds for a scored record, read as a stage condition
/// reads it (its scores, grade and tiers; `memo`: which earlier stages held).
fn holds_on_card(
    record: &Record,
    card: &Scorecard,
    now_ms: i64,
    memo: &[bool],
    cond: &Cond,
) -> bool {
    let mut warnings = Vec::new();
    let mut cx = Cx {
        record,
        now_ms,
        accs: &card.accs,
        warnings: &mut warnings,
        people: None,
        company: None,
    };
    let view = StageView {
        results: &card.scores,
        grade: card.grade,
        disqualified: card.disqualified_by.is_some(),
        memo,
    };
    cx.eval(cond, Some(&view))
}

/// A roll-up's value over the people: None when there is nobody to take
/// the highest or the average of.
pub(crate) fn rollup_value(people: People<'_>, agg: Agg, score: u16, part: Part) -> Option<f64> {
    let values = people.cards[..people.len()]
        .iter()
        .filter_map(|c| c.scores.get(usize::from(score)))
        .map(|r| part_of(r, part));
    match agg {
        Agg::Sum => Some(values.sum()),
        Agg::Max => values.reduce(f64::max),
        Agg::Avg => {
            let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
            (n > 0).then(|| sum / n as f64)
        }
    }
}

/// For each role in turn, a distinct person who covers it (the roles'
/// order), or None when distinct people cannot cover every role. A person
/// covers one role at most; a role's candidates are cut to as many as there
/// are roles, which never changes whether all roles can be covered.
pub(crate) fn cover_roles(people: People<'_>, now_ms: i64, roles: &[Cond]) -> Option<Vec<usize>> {
    let candidates: Vec<Vec<usize>> = roles
        .iter()
        .map(|role| {
            (0..people.len())
                .filter(|&p| person_holds(people, p, now_ms, role))
                .take(roles.len())
                .collect()
        })
        .collect();
    // Kuhn's augmenting paths over at most roles² candidates; `owner`
    // holds (person, role) seats.
    fn assign(
        role: usize,
        candidates: &[Vec<usize>],
        owner: &mut Vec<(usize, usize)>,
        seen: &mut Vec<usize>,
    ) -> bool {
        for &person in &candidates[role] {
            if seen.contains(&person) {
                continue;
            }
            seen.push(person);
            match owner.iter().position(|(p, _)| *p == person) {
                None => {
                    owner.push((person, role));
                    return true;
                }
                Some(seat) => {
                    let other = owner[seat].1;
                    // Deeper calls only touch the seats of people they
                    // mark seen, so this seat is still `person`'s.
                    if assign(other, candidates, owner, seen) {
                        owner[seat].1 = role;
                        return true;
                    }
                }
            }
        }
        false
    }
    let mut owner: Vec<(usize, usize)> = Vec::new();
    for role in 0..roles.len() {
        let mut seen = Vec::new();
        if !assign(role, &candidates, &mut owner, &mut seen) {
            return None;
        }
    }
    let mut by_role = vec![0; roles.len()];
    for (person, role) in owner {
        by_role[role] = person;
    }
    Some(by_role)
}

impl Cx<'_> {
    fn eval(&mut self, cond: &Cond, stage: Option<&StageView<'_>>) -> bool {
        match cond {
            Cond::Prop { slot, check } => self.prop(*slot, check),
            Cond::Static(bit) => self.record.static_bit(*bit),
            Cond::Events { matcher, min, max } => self
                .accs
                .get(*matcher as usize)
                .is_some_and(|a| a.count >= *min && a.count <= *max),
            Cond::List(list) => self.record.lists.binary_search(list).is_ok(),
            Cond::All(items) => items.iter().all(|c| self.eval(c, stage)),
            Cond::Any(items) => items.iter().any(|c| self.eval(c, stage)),
            Cond::Not(inner) => !self.eval(inner, stage),
            Cond::Score { score, part, range } => stage
                .and_then(|s| s.results.get(usize::from(*score)))
                .is_some_and(|r| range.contains(part_of(r, *part))),
            Cond::Grade { min, max } => stage
                .and_then(|s| s.grade)
                .is_some_and(|g| min.is_none_or(|m| g >= m) && max.is_none_or(|m| g <= m)),
            Cond::Tier { score, tiers } => stage
                .and_then(|s| s.results.get(usize::from(*score)))
                .and_then(|r| r.tier)
                .is_some_and(|t| tiers.contains(&t)),
            Cond::Fired { score, rule } => stage
                .and_then(|s| s.results.get(usize::from(*score)))
                .is_some_and(|r| r.hits.iter().any(|h| h.rule == *rule)),
            Cond::Stage(index) => {
                stage.is_some_and(|s| s.memo.get(usize::from(*index)).copied().unwrap_or(false))
            }
            Cond::Disqualified(wanted) => stage.is_some_and(|s| s.disqualified == *wanted),
            Cond::PersonStage(index) => {
                stage.is_some_and(|s| s.results.iter().any(|r| r.stage == Some(*index)))
            }
            Cond::CompanyScore { score, part, range } => self
                .company
                .and_then(|c| c.get(usize::from(*score)))
                .is_some_and(|r| range.contains(part_of(r, *part))),
            Cond::Rollup {
                agg,
                score,
                part,
                range,
            } => self
                .people
                .and_then(|p| rollup_value(p, *agg, *score, *part))
                .is_some_and(|v| range.contains(v)),
            Cond::PeopleCount { cond, range } => self.people.is_some_and(|people| {
                let count = (0..people.len())
                    .filter(|&p| person_holds(people, p, self.now_ms, cond))
                    .count();
                range.contains(count as f64)
            }),
            Cond::Roles(roles) => self
                .people
                .is_some_and(|people| cover_roles(people, self.now_ms, roles).is_some()),
        }
    }

    fn prop(&mut self, slot: u32, check: &PropCheck) -> bool {
        check_property(&self.record.props, slot, check, self.now_ms, self.warnings)
    }

    fn number(&mut self, slot: u32) -> Option<f64> {
        match self.record.props.get(slot as usize)? {
            Prop::One(v) => value_number(slot, v, self.warnings),
            _ => None,
        }
    }
}

/// Evaluates one property check. Shared by scoring and by record
/// preparation, which evaluates the checks that do not depend on `now`.
pub(crate) fn check_property(
    props: &[Prop],
    slot: u32,
    check: &PropCheck,
    now_ms: i64,
    warnings: &mut Vec<Warning>,
) -> bool {
    let prop = props.get(slot as usize).unwrap_or(&Prop::Missing);
    match (check, prop) {
        (PropCheck::IsSet(wanted), Prop::Missing) => !wanted,
        (PropCheck::IsSet(wanted), Prop::One(v)) => *wanted != v.text.trim().is_empty(),
        (PropCheck::IsSet(wanted), Prop::Many(vs)) => *wanted != vs.is_empty(),
        (PropCheck::Value(_), Prop::Missing) => false,
        (PropCheck::Value(tests), Prop::One(v)) => value_passes(slot, v, tests, now_ms, warnings),
        (PropCheck::Value(tests), Prop::Many(vs)) => vs
            .iter()
            .any(|v| value_passes(slot, v, tests, now_ms, warnings)),
    }
}

fn value_passes(
    slot: u32,
    value: &Value,
    tests: &[PropTest],
    now: i64,
    warnings: &mut Vec<Warning>,
) -> bool {
    tests.iter().all(|test| match test {
        PropTest::Text {
            op,
            needles,
            folded,
        } => {
            let hay: &str = if *folded {
                value.folded.as_deref().unwrap_or(&value.text)
            } else {
                &value.text
            };
            needles.iter().any(|n| match op {
                TextOp::Equals => hay.trim() == &**n,
                TextOp::Contains => hay.contains(&**n),
                TextOp::StartsWith => hay.trim_start().starts_with(&**n),
                TextOp::EndsWith => hay.trim_end().ends_with(&**n),
            })
        }
        PropTest::Regex(regex) => regex.is_match(&value.text),
        PropTest::Number(range) => {
            value_number(slot, value, warnings).is_some_and(|n| range.contains(n))
        }
        PropTest::NumberEquals(x) => value_number(slot, value, warnings).is_some_and(|n| n == *x),
        PropTest::Bool(b) => {
            value
                .text
                .trim()
                .eq_ignore_ascii_case(if *b { "true" } else { "false" })
        }
        PropTest::DateAbsolute { after, before } => value_time(slot, value, warnings)
            .is_some_and(|t| after.is_none_or(|a| t >= a) && before.is_none_or(|b| t < b)),
        PropTest::DateWithin(ms) => {
            value_time(slot, value, warnings).is_some_and(|t| t <= now && now - t <= *ms)
        }
        PropTest::DateOlderThan(ms) => {
            value_time(slot, value, warnings).is_some_and(|t| now - t > *ms)
        }
    })
}

fn value_number(slot: u32, value: &Value, warnings: &mut Vec<Warning>) -> Option<f64> {
    if value.number.is_none() && !value.text.trim().is_empty() {
        warn(warnings, slot, Problem::NotANumber);
    }
    value.number
}

fn value_time(slot: u32, value: &Value, warnings: &mut Vec<Warning>) -> Option<i64> {
    if value.time.is_none() && !value.text.trim().is_empty() {
        warn(warnings, slot, Problem::NotADate);
    }
    value.time
}

fn warn(warnings: &mut Vec<Warning>, slot: u32, problem: Problem) {
    let warning = Warning { slot, problem };
    if !warnings.contains(&warning) {
        warnings.push(warning);
    }
}
