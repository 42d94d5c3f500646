//! Company (account) scores in a pass. Every company a pass touched (one
//! of its people was pulled or rescored) is scored from its stored values
//! and its stored people, in the model's fixed order: people, then the
//! company, then — when contact rules or stages read `company_score` —
//! its people again with the company's score known. Company outputs go to
//! the company in whole batches, only where they differ from what
//! leadscored last wrote there (kept in the state, saved after the CRM
//! took the write: a pass cut short writes it again, never loses it).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ChangeJson, PassError, RecordChange, Stop, Worker};
use crate::crm::{Crm, CrmRecord, Update, mapping, redact};
use crate::engine::{AccountCard, Scorecard};
use crate::model::{Model, Object};
use crate::state::Written;

/// A company's scorecard, and its stored people with what was written to each.
type Scored = (Arc<Scorecard>, Vec<(CrmRecord, Written)>);

/// Companies scored and written per step (HubSpot's batch update maximum).
const COMPANY_STEP: usize = 100;
/// Company scorecards kept at hand for scoring their people.
const CARDS_CACHED: usize = 20_000;

impl<C: Crm> Worker<'_, C> {
    /// A company's stored people, with their lists and stored engagement,
    /// and what leadscored wrote to each.
    fn people_of(&self, company: &str) -> Result<Vec<(CrmRecord, Written)>, PassError> {
        let Some(state) = self.state.as_deref() else {
            return Ok(Vec::new());
        };
        let mut people = Vec::new();
        for id in state.records_of_companies(&[company.to_owned()])? {
            if let Some((mut record, written)) = state.record(&id)? {
                self.attach_events(&mut record)?;
                people.push((record, written));
            }
        }
        Ok(people)
    }

    /// Scores a company from the state: its scorecard, and its people.
    pub(super) fn score_account(&mut self, company: &str) -> Result<Scored, PassError> {
        let connection = self.connection;
        let model = &connection.model;
        let mut people = self.people_of(company)?;
        for (person, _) in &mut people {
            self.apply_lists(person);
        }
        let values = self.company_by_id(company);
        let (company_record, records) = account_records(
            connection,
            company,
            values.as_deref(),
            people.iter().map(|(person, _)| person),
        );
        let mut cards = AccountCard::default();
        model.score_account_into(&company_record, &records, self.pass.now, &mut cards);
        self.report.accounts_scored += 1;
        Ok((Arc::new(cards.company), people))
    }

    /// The company's scorecard for scoring its people: scored once per
    /// pass from the state, then kept.
    pub(super) fn company_card(&mut self, company: &str) -> Result<Arc<Scorecard>, PassError> {
        if let Some(card) = self.company_cards.get(company) {
            return Ok(card.clone());
        }
        let (card, _) = self.score_account(company)?;
        self.keep_card(company, card.clone());
        Ok(card)
    }

    fn keep_card(&mut self, company: &str, card: Arc<Scorecard>) {
        if self.company_cards.len() >= CARDS_CACHED {
            self.company_cards.clear();
        }
        self.company_cards.insert(company.to_owned(), card);
    }

    /// Writes company updates and records what the CRM took.
    async fn write_companies(
        &mut self,
        batch: Vec<(Update, BTreeMap<String, String>)>,
    ) -> Result<(), PassError> {
        let (updates, written): (Vec<Update>, Vec<BTreeMap<String, String>>) =
            batch.into_iter().unzip();
        let ids: Vec<String> = updates.iter().map(|u| u.id.clone()).collect();
        let report = self.crm.write_companies(updates).await?;
        metrics::counter!("leadscored_companies_written_total")
            .increment(report.written.len() as u64);
        self.report.accounts_written += report.written.len() as u64;
        self.report.write_calls += report.calls;
        self.report.failed.extend(
            report
                .failed
                .into_iter()
                .map(|(id, why)| (format!("company {id}"), redact::string(why))),
        );
        let taken: Vec<(String, BTreeMap<String, String>)> = ids
            .into_iter()
            .zip(written)
            .filter(|(id, _)| report.written.contains(id))
            .collect();
        if let Some(state) = self.state.as_deref_mut() {
            state.save_company_written(&taken)?;
        }
        self.save_calls()?;
        Ok(())
    }
}

/// Scores a stored record's company from the state alone (no CRM call),
/// as a pass would: the company's scorecard and the record's own, scored
/// with it. `None` when the model scores no companies or the record has
/// no company.
pub fn account_from_state(
    connection: &crate::config::Connection,
    state: &crate::state::State,
    record: &CrmRecord,
    now: jiff::Timestamp,
) -> Result<Option<(Scorecard, Scorecard)>, crate::state::StateError> {
    let Some(company) = record
        .company_id()
        .filter(|_| connection.model.has_company_scores())
    else {
        return Ok(None);
    };
    let mut people = Vec::new();
    for id in state.records_of_companies(&[company.to_owned()])? {
        if let Some((mut person, _)) = state.record(&id)? {
            state.context(&mut person)?;
            people.push(person);
        }
    }
    let values = state.company(company)?;
    let (company_record, records) =
        account_records(connection, company, values.as_ref(), people.iter());
    let mut cards = AccountCard::default();
    connection
        .model
        .score_account_into(&company_record, &records, now, &mut cards);
    let Some(at) = people.iter().position(|p| p.id == record.id) else {
        return Ok(None);
    };
    let person = cards.people.swap_remove(at);
    Ok(Some((cards.company, person)))
}

/// A company's record and its people's, as `score_account_into` takes
/// them: the company from its stored values, the people (with their lists
/// and engagement on them) each with their company's values.
pub(crate) fn account_records<'a>(
    connection: &crate::config::Connection,
    company: &str,
    values: Option<&mapping::CompanyValues>,
    people: impl Iterator<Item = &'a CrmRecord> + Clone,
) -> (crate::Record, Vec<crate::Record>) {
    let model = &connection.model;
    let records = people
        .clone()
        .map(|person| mapping::to_record(model, &connection.inputs, person, values))
        .collect();
    let shell = CrmRecord {
        id: company.to_owned(),
        values: facts_from_people(connection, people),
        ..CrmRecord::default()
    };
    let company_record = mapping::to_record(model, &connection.inputs, &shell, values);
    (company_record, records)
}

/// Where the CRM keeps company facts on each person (Account Engagement's
/// prospects), an account's facts are its people's: each field as the
/// most recently modified person who has it holds it.
fn facts_from_people<'a>(
    connection: &crate::config::Connection,
    people: impl Iterator<Item = &'a CrmRecord> + Clone,
) -> BTreeMap<String, String> {
    let mut facts = BTreeMap::new();
    for (field, input) in connection.input_fields(crate::config::Origin::Contact) {
        if !input.starts_with("company.") {
            continue;
        }
        let newest = people
            .clone()
            .filter_map(|person| {
                let value = person.values.get(&field).filter(|v| !v.trim().is_empty())?;
                Some(((person.modified_ms, &person.id), value))
            })
            .max_by(|a, b| a.0.cmp(&b.0));
        if let Some((_, value)) = newest {
            facts.insert(field, value.clone());
        }
    }
    facts
}

/// Whether two company scorecards agree on every company score's result
/// (what `company_score` conditions and outputs read).
fn same_results(model: &Model, a: &Scorecard, b: &Scorecard) -> bool {
    model
        .score_names()
        .enumerate()
        .filter(|(i, _)| model.score_object(*i) == Object::Company)
        .all(|(i, _)| match (a.results().get(i), b.results().get(i)) {
            (Some(x), Some(y)) => {
                x.total() == y.total()
                    && x.fit() == y.fit()
                    && x.engagement() == y.engagement()
                    && x.tier == y.tier
            }
            _ => false,
        })
}

/// Scores every company the pass touched, rescoring its people when their
/// rules read a company score that moved, and writes company outputs
/// that changed.
pub(super) async fn score_companies<C: Crm>(
    worker: &mut Worker<'_, C>,
    stop: &Stop,
    on_change: &mut impl FnMut(&RecordChange),
) -> Result<(), PassError> {
    if !worker.accounts {
        return Ok(());
    }
    let connection = worker.connection;
    let model = &connection.model;
    // From here people are planned as they are scored.
    let deferred = std::mem::replace(&mut worker.defer_people, false);
    let mut ids: Vec<String> = std::mem::take(&mut worker.touched_companies)
        .into_iter()
        .collect();
    ids.sort();
    // Company writes wait for a whole batch across steps.
    let mut updates = Vec::new();
    for chunk in ids.chunks(COMPANY_STEP) {
        if stop.is_stopped() {
            return Err(PassError::Stopped);
        }
        for id in chunk {
            let (card, people) = worker.score_account(id)?;
            if worker.people_need_company {
                // People waited for their company (or, in a dry run, were
                // scored with it as the pass found it, and again when it
                // has moved since).
                let moved = deferred
                    || worker
                        .company_cards
                        .get(id)
                        .is_none_or(|used| !same_results(model, used, &card));
                worker.keep_card(id, card.clone());
                if moved && !people.is_empty() {
                    worker.rescore(people, on_change).await?;
                }
            }
            if connection.company_outputs.is_empty() {
                continue;
            }
            let held = match worker.state.as_deref() {
                Some(state) => state.company_written(id)?,
                None => BTreeMap::new(),
            };
            let changes = crate::plan::changes(model, &connection.company_outputs, &held, &card);
            if changes.is_empty() {
                continue;
            }
            worker.report.accounts_changed += 1;
            let mut written = held;
            let mut values = BTreeMap::new();
            for change in &changes {
                values.insert(change.property.clone(), change.new.clone());
                written.insert(change.property.clone(), change.new.clone());
            }
            on_change(&RecordChange {
                id: format!("company {id}"),
                changes: changes.into_iter().map(ChangeJson::from).collect(),
            });
            if !worker.pass.dry_run {
                updates.push((
                    Update {
                        id: id.clone(),
                        values,
                    },
                    written,
                ));
            }
        }
        if updates.len() >= COMPANY_STEP {
            let rest = updates.split_off(COMPANY_STEP);
            worker
                .write_companies(std::mem::replace(&mut updates, rest))
                .await?;
        }
    }
    worker.flush().await?;
    if !updates.is_empty() {
        worker.write_companies(updates).await?;
    }
    Ok(())
}
