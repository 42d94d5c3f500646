//! The neutral record: one contact or prospect with its properties, its
//! company's properties, its events and its lists, independent of any CRM.
//!
//! Records are built *for a model*: only the properties, event types and
//! attributes the model reads are kept, and each value is converted once
//! (case-folded, parsed as a number or a date) so scoring never parses.
//! Every way in fills a `RecordBuilder`: `Model::parse_record` reads the
//! JSON line format documented in the README (our own line reader, `json`,
//! with the serde reader, `serde_format`, for what it declines and for
//! TOML test cases), and CRM connectors use the builder directly.
//!
//! No IO here. Bad input is an error naming the field, never a panic.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed};

use crate::engine::{Warning, check_property};
use crate::model::{Model, Scope};

mod json;
mod memo;
mod serde_format;
mod time;

pub use memo::ReadMemo;
use memo::{get_outcomes, set_outcomes};
use serde_format::describe_json_error;
pub(crate) use serde_format::{Capture, CowStr, RecordSeed};
pub use time::parse_time;

/// A record prepared for one model. Build it with [`Model::parse_record`]
/// or [`Model::record_builder`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Record {
    pub(crate) id: String,
    /// Indexed by the model's property slots.
    pub(crate) props: Vec<Prop>,
    /// Newest first.
    pub(crate) events: Vec<Event>,
    /// The model's list slots this record is a member of, sorted.
    pub(crate) lists: Vec<u32>,
    /// Outcomes of the model's `now`-independent property checks, one bit each.
    pub(crate) static_bits: Vec<u64>,
    /// Mistyped values met while evaluating those checks.
    pub(crate) warnings: Vec<Warning>,
}

impl Record {
    pub(crate) fn static_bit(&self, index: u32) -> bool {
        let index = index as usize;
        self.static_bits
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// How many events were kept (those the model reads).
    pub fn event_count(&self) -> usize {
        self.events.len()
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) enum Prop {
    #[default]
    Missing,
    One(Value),
    Many(Box<[Value]>),
}

/// One property value as the CRM sent it, with the forms the model needs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Value {
    pub text: Box<str>,
    /// Lowercased text, when some criterion ignores case and it differs
    /// from `text`.
    pub folded: Option<Box<str>>,
    pub number: Option<f64>,
    /// Epoch milliseconds.
    pub time: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// The model's event type slot, or `OTHER_TYPE`.
    pub kind: u32,
    /// Epoch milliseconds.
    pub at: i64,
    /// Which entries of the model's matcher list for this event's type
    /// (`Model::hot_by_type`) accept it, time windows aside: one bit per
    /// entry. Computed once while the record is read from the attribute
    /// patterns the event matches, so scoring visits only the matchers that
    /// want this event, and the record keeps no attribute text at all.
    pub hits: u64,
}

impl Event {
    fn new(model: &Model, kind: u32, at: i64, matched: u128) -> Event {
        let list = if kind == OTHER_TYPE {
            model.hot_by_type.len().saturating_sub(1)
        } else {
            kind as usize
        };
        let hits = model.hot_by_type.get(list).map_or(0, |list| {
            list.iter()
                .take(64)
                .enumerate()
                .filter(|(_, hot)| matched & hot.required == hot.required)
                .fold(0u64, |bits, (i, _)| bits | 1 << i)
        });
        Event { kind, at, hits }
    }
}

/// Tests one attribute value against the model's patterns for its slot and
/// sets their bits in `matched`. `scratch` holds the case-folded value.
pub(crate) fn match_attr(
    model: &Model,
    slot: u16,
    value: &str,
    scratch: &mut String,
    matched: &mut u128,
) {
    let Some(patterns) = model.patterns_by_slot.get(usize::from(slot)) else {
        return;
    };
    if patterns.is_empty() {
        return;
    }
    scratch.clear();
    if value.is_ascii() {
        scratch.push_str(value);
        scratch.make_ascii_lowercase();
    } else {
        scratch.push_str(&value.to_lowercase());
    }
    for &index in patterns {
        if model.patterns[index as usize].pattern.matches(scratch) {
            *matched |= 1u128 << index;
        }
    }
}

/// Event type slot for types the model names nowhere (kept only when a rule
/// reads events of any type).
pub(crate) const OTHER_TYPE: u32 = u32::MAX;

/// A property value as a connector hands it over.
#[derive(Clone, Copy, Debug)]
pub enum PropertyValue<'a> {
    Null,
    Text(&'a str),
    Number(f64),
    Bool(bool),
}

/// A property or attribute value that is not a list, as JSON or TOML
/// carries it, before it is converted for the model.
pub(crate) enum Scalar<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Bool(bool),
}

impl Scalar<'_> {
    pub(crate) fn as_value(&self) -> PropertyValue<'_> {
        match self {
            Scalar::Text(text) => PropertyValue::Text(text),
            Scalar::Number(n) => PropertyValue::Number(*n),
            Scalar::Bool(b) => PropertyValue::Bool(*b),
        }
    }

    /// The text an attribute pattern is matched against.
    pub(crate) fn text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Text(text) => Cow::Borrowed(text),
            Scalar::Number(n) => Cow::Owned(format_number(*n)),
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    message: String,
}

impl RecordError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl de::Error for RecordError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RecordError::new(msg.to_string())
    }
}

/// Builds a [`Record`] for a model from a connector's data.
#[derive(Debug)]
pub struct RecordBuilder<'m> {
    model: &'m Model,
    record: Record,
}

impl<'m> RecordBuilder<'m> {
    pub(crate) fn new(model: &'m Model, id: String) -> Self {
        let mut builder = Self::reuse(model, Record::default());
        builder.record.id = id;
        builder
    }

    /// A builder that fills `record`'s buffers again instead of new ones.
    pub(crate) fn reuse(model: &'m Model, mut record: Record) -> Self {
        record.id.clear();
        record.props.clear();
        record.props.resize(model.schema.props.len(), Prop::Missing);
        record.events.clear();
        record.lists.clear();
        record.static_bits.clear();
        record.warnings.clear();
        Self { model, record }
    }

    /// Sets a property; names the model does not read are ignored.
    pub fn property(&mut self, scope: Scope, name: &str, value: PropertyValue<'_>) {
        if let Some(slot) = self.model.schema.prop_slot(scope, name) {
            self.record.props[slot as usize] = match convert(self.model, slot, value) {
                Some(v) => Prop::One(v),
                None => Prop::Missing,
            };
        }
    }

    /// Sets a multi-valued property (a multi-select, a list of domains).
    pub fn property_values(&mut self, scope: Scope, name: &str, values: &[PropertyValue<'_>]) {
        if let Some(slot) = self.model.schema.prop_slot(scope, name) {
            let converted: Vec<Value> = values
                .iter()
                .filter_map(|v| convert(self.model, slot, *v))
                .collect();
            self.record.props[slot as usize] = Prop::Many(converted.into_boxed_slice());
        }
    }

    /// Adds an event; types and attributes the model does not read are dropped.
    pub fn event(&mut self, event_type: &str, at: jiff::Timestamp, attributes: &[(&str, &str)]) {
        let Some(kind) = event_kind(self.model, event_type) else {
            return;
        };
        let mut matched = 0;
        let mut scratch = String::new();
        for (name, value) in attributes {
            if let Some(slot) = self.model.schema.attr_index.get(*name) {
                match_attr(self.model, *slot, value, &mut scratch, &mut matched);
            }
        }
        self.record
            .events
            .push(Event::new(self.model, kind, at.as_millisecond(), matched));
    }

    /// Notes that the record has no company to read `company.*` values
    /// from: one warning on the scorecard, however many rules read them.
    pub fn no_company(&mut self) {
        let warning = crate::engine::Warning {
            slot: u32::MAX,
            problem: crate::engine::Problem::NoCompany,
        };
        if !self.record.warnings.contains(&warning) {
            self.record.warnings.push(warning);
        }
    }

    /// Marks the record as a member of a list.
    pub fn list(&mut self, name: &str) {
        if let Some(slot) = self
            .model
            .schema
            .list_index
            .get(name.to_lowercase().as_str())
        {
            self.record.lists.push(*slot);
        }
    }

    pub fn build(mut self) -> Record {
        finish(self.model, &mut self.record, None);
        self.record
    }

    /// [`RecordBuilder::build`] with the property outcomes `memo` remembers.
    pub(crate) fn build_with(mut self, memo: &mut ReadMemo) -> Record {
        finish(self.model, &mut self.record, Some(memo));
        self.record
    }
}

/// Evaluates the model's `now`-independent property checks into the
/// record's bits and puts its events newest first. With a memo, a slot
/// holding one value seen before takes that value's outcomes without
/// running its checks; the warnings come out in the same order either way
/// (only outcomes that raised no warning are remembered).
fn finish(model: &Model, record: &mut Record, mut memo: Option<&mut ReadMemo>) {
    record.static_bits.clear();
    record
        .static_bits
        .resize(model.static_checks.len().div_ceil(64), 0);
    let mut known = 0u64;
    if let Some(memo) = memo.as_deref_mut() {
        for (slot, checks, value) in rememberable(model, &record.props) {
            if let Some(outcomes) = memo.outcomes(slot, value) {
                known |= 1 << slot;
                set_outcomes(&mut record.static_bits, checks, outcomes);
            }
        }
    }
    for (index, (slot, check)) in model.static_checks.iter().enumerate() {
        if *slot < 64 && known & (1 << slot) != 0 {
            continue;
        }
        if check_property(&record.props, *slot, check, 0, &mut record.warnings) {
            record.static_bits[index / 64] |= 1 << (index % 64);
        }
    }
    if let Some(memo) = memo {
        for (slot, checks, value) in rememberable(model, &record.props) {
            if known & (1 << slot) == 0 && !record.warnings.iter().any(|w| w.slot as usize == slot)
            {
                memo.remember(slot, value, get_outcomes(&record.static_bits, checks));
            }
        }
    }
    record.events.sort_by_key(|e| std::cmp::Reverse(e.at));
    record.lists.sort_unstable();
    record.lists.dedup();
}

/// The property slots whose check outcomes a [`ReadMemo`] can hold for this
/// record: among the first 64 slots, with 1 to 64 checks, holding one value.
fn rememberable<'a>(
    model: &'a Model,
    props: &'a [Prop],
) -> impl Iterator<Item = (usize, &'a [u32], &'a Value)> + 'a {
    model
        .static_by_slot
        .iter()
        .enumerate()
        .take(64)
        .filter(|(_, checks)| (1..=64).contains(&checks.len()))
        .filter_map(|(slot, checks)| match props.get(slot) {
            Some(Prop::One(value)) => Some((slot, checks.as_slice(), value)),
            _ => None,
        })
}

/// The event type slot for a type name, `OTHER_TYPE` when only "any" rules
/// want it, None when nothing reads it.
pub(crate) fn event_kind(model: &Model, event_type: &str) -> Option<u32> {
    match model.schema.type_index.get(event_type) {
        Some(kind) => Some(*kind),
        None if model.reads_all_events() => Some(OTHER_TYPE),
        None => None,
    }
}

pub(crate) fn convert(model: &Model, slot: u32, value: PropertyValue<'_>) -> Option<Value> {
    let spec = &model.schema.props[slot as usize];
    let (text, number, time): (Box<str>, Option<f64>, Option<i64>) = match value {
        PropertyValue::Null => return None,
        PropertyValue::Text(text) => {
            let trimmed = text.trim();
            let number = if spec.needs_number {
                trimmed.parse::<f64>().ok()
            } else {
                None
            };
            let time = if spec.needs_time {
                parse_time(trimmed)
            } else {
                None
            };
            (text.into(), number.filter(|n| n.is_finite()), time)
        }
        PropertyValue::Number(n) => {
            let time = if spec.needs_time && n.fract() == 0.0 {
                Some(n as i64)
            } else {
                None
            };
            (
                format_number(n).into(),
                Some(n).filter(|n| n.is_finite()),
                time,
            )
        }
        PropertyValue::Bool(b) => ((if b { "true" } else { "false" }).into(), None, None),
    };
    let folded = if spec.needs_folded { fold(&text) } else { None };
    Some(Value {
        text,
        folded,
        number,
        time,
    })
}

/// The lowercased text, or None when it is lowercase already (readers take
/// the text itself then).
fn fold(text: &str) -> Option<Box<str>> {
    if text.is_ascii() {
        text.bytes()
            .any(|b| b.is_ascii_uppercase())
            .then(|| text.to_ascii_lowercase().into_boxed_str())
    } else {
        let folded = text.to_lowercase();
        (folded != text).then(|| folded.into_boxed_str())
    }
}

pub(crate) fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

// ---------------------------------------------------------------------------
// The JSON (and TOML) record format, read straight into a `Record`.
// ---------------------------------------------------------------------------

impl Model {
    /// Reads one record in the documented JSON format.
    pub fn parse_record(&self, json: &str) -> Result<Record, RecordError> {
        self.parse_record_with(json, &mut ReadMemo::default())
    }

    /// [`Model::parse_record`] for many records: `memo` remembers what
    /// event attribute values matched, for the next records. Use one per
    /// thread and model.
    pub fn parse_record_with(
        &self,
        json: &str,
        memo: &mut ReadMemo,
    ) -> Result<Record, RecordError> {
        let mut record = Record::default();
        self.parse_record_into(json, memo, &mut record)?;
        Ok(record)
    }

    /// [`Model::parse_record_with`] into a record read before, whose buffers
    /// are reused. On an error the record is left empty.
    pub fn parse_record_into(
        &self,
        json: &str,
        memo: &mut ReadMemo,
        record: &mut Record,
    ) -> Result<(), RecordError> {
        self.parse_record_capturing(json, memo, record, None)
    }

    /// [`Model::parse_record_into`] that also keeps one top-level field
    /// that is not part of the record format (a backtest's outcome), as
    /// JSON, in the same pass over the line.
    pub(crate) fn parse_record_capturing(
        &self,
        json: &str,
        memo: &mut ReadMemo,
        record: &mut Record,
        capture: Option<Capture<'_>>,
    ) -> Result<(), RecordError> {
        let [read] = Model::parse_records_capturing([self], json, [memo], [record], capture);
        read
    }

    /// [`Model::parse_record_capturing`] for several models in one pass
    /// over the line (`diff` reads each line for two): each model's record
    /// and outcome, as if each had read the line alone. The capture goes
    /// with the first model.
    pub(crate) fn parse_records_capturing<const N: usize>(
        models: [&Model; N],
        json: &str,
        memos: [&mut ReadMemo; N],
        records: [&mut Record; N],
        mut capture: Option<Capture<'_>>,
    ) -> [Result<(), RecordError>; N] {
        let (mut memos, mut records) = (memos, records);
        let read = json::read_records(
            models,
            json,
            memos.each_mut().map(|memo| &mut **memo),
            records.each_mut().map(|record| &mut **record),
            capture.as_mut(),
        );
        if read.is_ok() {
            return std::array::from_fn(|_| Ok(()));
        }
        // Declined: the serde reader reads the line again for each model,
        // and says why when it cannot.
        if let Some(capture) = capture.as_mut() {
            *capture.value = None;
        }
        let mut t = 0;
        memos.map(|memo| {
            let (model, record) = (models[t], &mut *records[t]);
            let capture = if t == 0 { capture.take() } else { None };
            t += 1;
            let reuse = std::mem::take(record);
            *record = model.read_by_serde(json, memo, reuse, capture)?;
            Ok(())
        })
    }

    /// [`Model::parse_record`] by the serde reader alone, which the line
    /// reader leaves every line it declines to: for tests that hold the two
    /// readers to the same records and the same errors.
    #[doc(hidden)]
    pub fn parse_record_by_serde(&self, json: &str) -> Result<Record, RecordError> {
        self.read_by_serde(json, &mut ReadMemo::default(), Record::default(), None)
    }

    /// Two models' records read from one line in one pass, as `diff`
    /// reads them: for tests that hold each to the serde reader alone.
    #[doc(hidden)]
    pub fn parse_record_pair(models: [&Model; 2], json: &str) -> [Result<Record, RecordError>; 2] {
        let mut records = [Record::default(), Record::default()];
        let mut memos = [ReadMemo::default(), ReadMemo::default()];
        let reads = Model::parse_records_capturing(
            models,
            json,
            memos.each_mut(),
            records.each_mut(),
            None,
        );
        let mut records = records.into_iter();
        reads.map(|read| {
            let record = records.next().unwrap_or_default();
            read.map(|()| record)
        })
    }

    fn read_by_serde(
        &self,
        json: &str,
        memo: &mut ReadMemo,
        reuse: Record,
        capture: Option<Capture<'_>>,
    ) -> Result<Record, RecordError> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let record = RecordSeed {
            model: self,
            memo,
            reuse,
            people: None,
            capture,
        }
        .deserialize(&mut deserializer)
        .map_err(|e| RecordError::new(describe_json_error(&e)))?;
        deserializer
            .end()
            .map_err(|e| RecordError::new(describe_json_error(&e)))?;
        Ok(record)
    }

    /// Reads one company line: `{"id", "company": {...}, "people": [...]}`,
    /// each person a record in the usual format. People take the company's
    /// values for every `company.*` property they do not carry themselves.
    pub fn parse_account(&self, json: &str) -> Result<Account, RecordError> {
        let mut account = Account::default();
        self.parse_account_into(json, &mut ReadMemo::default(), &mut account)?;
        Ok(account)
    }

    /// [`Model::parse_account`] into an account read before, whose buffers
    /// are reused.
    pub fn parse_account_into(
        &self,
        json: &str,
        memo: &mut ReadMemo,
        account: &mut Account,
    ) -> Result<(), RecordError> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let reuse = std::mem::take(&mut account.company);
        account.company = RecordSeed {
            model: self,
            memo,
            reuse,
            people: Some(&mut account.people),
            capture: None,
        }
        .deserialize(&mut deserializer)
        .map_err(|e| RecordError::new(describe_json_error(&e)))?;
        deserializer
            .end()
            .map_err(|e| RecordError::new(describe_json_error(&e)))?;
        self.inherit_company(account);
        Ok(())
    }

    /// Gives every person the company's values for the `company.*`
    /// properties they lack, and evaluates their checks again.
    pub(crate) fn inherit_company(&self, account: &mut Account) {
        for person in &mut account.people {
            for (slot, spec) in self.schema.props.iter().enumerate() {
                if spec.scope == Scope::Company
                    && matches!(person.props.get(slot), Some(Prop::Missing))
                    && let Some(value) = account.company.props.get(slot)
                {
                    person.props[slot] = value.clone();
                }
            }
            person.warnings.clear();
            finish(self, person, None);
        }
    }

    /// Starts a record for connectors that do not speak the JSON format.
    pub fn record_builder(&self, id: impl Into<String>) -> RecordBuilder<'_> {
        RecordBuilder::new(self, id.into())
    }
}

/// A company and its people: a company line of `score --companies` and a
/// company test case. The company record holds the company's properties
/// (its `company.*` slots); each person is a contact record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    pub company: Record,
    pub people: Vec<Record>,
}
