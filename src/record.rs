//! The neutral record: one contact or prospect with its properties, its
//! company's properties, its events and its lists, independent of any CRM.
//!
//! Records are built *for a model*: only the properties, event types and
//! attributes the model reads are kept, and each value is converted once
//! (case-folded, parsed as a number or a date) so scoring never parses.
//! Two ways in, one code path: `Model::parse_record` reads the JSON line
//! format documented in the README (also used by embedded test cases), and
//! `RecordBuilder` is what CRM connectors use.
//!
//! No IO here. Bad input is an error naming the field, never a panic.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::engine::{Warning, check_property};
use crate::model::{Model, Scope};

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
    /// Lowercased text, when some criterion ignores case.
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
fn match_attr(model: &Model, slot: u16, value: &str, scratch: &mut String, matched: &mut u128) {
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
    fn reuse(model: &'m Model, mut record: Record) -> Self {
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
    fn build_with(mut self, memo: &mut ReadMemo) -> Record {
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
fn event_kind(model: &Model, event_type: &str) -> Option<u32> {
    match model.schema.type_index.get(event_type) {
        Some(kind) => Some(*kind),
        None if model.reads_all_events() => Some(OTHER_TYPE),
        None => None,
    }
}

fn convert(model: &Model, slot: u32, value: PropertyValue<'_>) -> Option<Value> {
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
    let folded = spec
        .needs_folded
        .then(|| text.to_lowercase().into_boxed_str());
    Some(Value {
        text,
        folded,
        number,
        time,
    })
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// Parses the date forms CRMs send: RFC 3339, a plain date (midnight UTC),
/// a date-time without offset (UTC) or epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    // The common form first, before any trimming or scanning.
    if let Some(ms) = utc_fast_path(text.as_bytes()) {
        return Some(ms);
    }
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    if let Some(ms) = utc_fast_path(text.as_bytes()) {
        return Some(ms);
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return jiff::tz::TimeZone::UTC
            .to_timestamp(dt)
            .ok()
            .map(|t| t.as_millisecond());
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` from 1970 on, the form nearly every event
/// time has, read without the general parser; anything else (offsets,
/// leap seconds, impossible days) is left to it. Same result as jiff's
/// `Timestamp::as_millisecond` (fractions truncated).
fn utc_fast_path(b: &[u8]) -> Option<i64> {
    let (head, rest) = b.split_first_chunk::<19>()?;
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        i0,
        i1,
        b':',
        s0,
        s1,
    ] = *head
    else {
        return None;
    };
    // Each digit's value, all at once; a non-digit shows as a value over 9.
    let digits =
        [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, i0, i1, s0, s1].map(|d| d.wrapping_sub(b'0'));
    if digits.iter().any(|d| *d > 9) {
        return None;
    }
    let n = |i: usize| i64::from(digits[i]);
    let year = n(0) * 1000 + n(1) * 100 + n(2) * 10 + n(3);
    let (month, day) = (n(4) * 10 + n(5), n(6) * 10 + n(7));
    let (hour, minute, second) = (n(8) * 10 + n(9), n(10) * 10 + n(11), n(12) * 10 + n(13));
    let millis = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            if !fraction.iter().all(u8::is_ascii_digit) {
                return None;
            }
            fraction
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
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
        let mut deserializer = serde_json::Deserializer::from_str(json);
        let reuse = std::mem::take(record);
        *record = RecordSeed {
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
            .map_err(|e| RecordError::new(describe_json_error(&e)))
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

fn describe_json_error(error: &serde_json::Error) -> String {
    let text = match error.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            format!("invalid JSON: {error}")
        }
        _ => error.to_string(),
    };
    // serde_json appends " at line L column C"; for one-line records the column is what helps.
    match text.rfind(" at line ") {
        Some(i) if error.line() <= 1 && error.column() == 0 => text[..i].to_owned(),
        Some(i) if error.line() <= 1 => format!("{} (column {})", &text[..i], error.column()),
        _ => text,
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

/// Deserializes a `Record` for a model from any serde format.
pub(crate) struct RecordSeed<'m, 's> {
    pub model: &'m Model,
    pub memo: &'s mut ReadMemo,
    /// A spent record whose buffers are filled again.
    pub reuse: Record,
    /// Where a company record's `people` go (None: `people` is ignored).
    pub people: Option<&'s mut Vec<Record>>,
    /// A top-level field to keep besides the record.
    pub capture: Option<Capture<'s>>,
}

/// A top-level field that is not part of the record format (see
/// [`Model::parse_record_capturing`]); the last one wins, if repeated.
pub(crate) struct Capture<'s> {
    pub name: &'s str,
    pub value: &'s mut Option<serde_json::Value>,
}

impl Capture<'_> {
    /// The record format's own top-level keys, which cannot be captured.
    pub const RECORD_KEYS: [&'static str; 6] =
        ["id", "properties", "company", "events", "lists", "people"];
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Record, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = Record;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a record object with \"id\", \"properties\", \"company\", \"events\" and \"lists\"",
        )
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Record, A::Error> {
        let mut builder = RecordBuilder::reuse(self.model, std::mem::take(&mut self.reuse));
        let mut id = None;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            if let Some(capture) = self.capture.as_mut()
                && *key == *capture.name
            {
                *capture.value = Some(map.next_value()?);
                continue;
            }
            match &*key {
                "id" => id = Some(map.next_value::<IdValue>()?.0),
                "properties" => map.next_value_seed(PropsSeed {
                    builder: &mut builder,
                    scope: Scope::Contact,
                })?,
                "company" => map.next_value_seed(PropsSeed {
                    builder: &mut builder,
                    scope: Scope::Company,
                })?,
                "events" => map.next_value_seed(EventsSeed {
                    builder: &mut builder,
                    memo: &mut *self.memo,
                })?,
                "lists" => map.next_value_seed(ListsSeed {
                    builder: &mut builder,
                })?,
                "people" if self.people.is_some() => {
                    if let Some(people) = self.people.as_deref_mut() {
                        map.next_value_seed(PeopleSeed {
                            model: self.model,
                            memo: &mut *self.memo,
                            people,
                        })?;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(id) = id else {
            return Err(de::Error::custom("record has no \"id\""));
        };
        if id.is_empty() {
            return Err(de::Error::custom("record \"id\" is empty"));
        }
        builder.record.id.push_str(&id);
        Ok(builder.build_with(self.memo))
    }
}

/// A company's `people`: contact records, their buffers reused.
struct PeopleSeed<'m, 's> {
    model: &'m Model,
    memo: &'s mut ReadMemo,
    people: &'s mut Vec<Record>,
}

impl<'de> DeserializeSeed<'de> for PeopleSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PeopleSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of person records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut count = 0;
        loop {
            let reuse = self
                .people
                .get_mut(count)
                .map(std::mem::take)
                .unwrap_or_default();
            let seed = RecordSeed {
                model: self.model,
                memo: &mut *self.memo,
                reuse,
                people: None,
                capture: None,
            };
            let Some(person) = seq
                .next_element_seed(seed)
                .map_err(|e| de::Error::custom(format!("people[{count}]: {e}")))?
            else {
                break;
            };
            match self.people.get_mut(count) {
                Some(slot) => *slot = person,
                None => self.people.push(person),
            }
            count += 1;
        }
        self.people.truncate(count);
        Ok(())
    }
}

/// A record id: a string, or an integer as some exports write it.
struct IdValue<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for IdValue<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = IdValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"id\" as a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<IdValue<'de>, E> {
                Ok(IdValue(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdValue<'de>, E> {
                Ok(IdValue(v.to_owned().into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdValue<'de>, E> {
                Ok(IdValue(v.to_string().into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdValue<'de>, E> {
                Ok(IdValue(v.to_string().into()))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

struct PropsSeed<'b, 'm> {
    builder: &'b mut RecordBuilder<'m>,
    scope: Scope,
}

impl<'de> DeserializeSeed<'de> for PropsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PropsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of property names to values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let model = self.builder.model;
        let section = match self.scope {
            Scope::Contact => "properties",
            Scope::Company => "company",
        };
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let Some(slot) = model.schema.prop_slot(self.scope, &key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let raw = map
                .next_value::<RawProp>()
                .map_err(|e| de::Error::custom(format!("{section}.{key}: {e}")))?;
            let prop = match raw {
                RawProp::Null => Prop::Missing,
                RawProp::One(v) => {
                    convert(model, slot, v.as_value()).map_or(Prop::Missing, Prop::One)
                }
                RawProp::Many(values) => Prop::Many(
                    values
                        .iter()
                        .filter_map(|v| convert(model, slot, v.as_value()))
                        .collect(),
                ),
            };
            self.builder.record.props[slot as usize] = prop;
        }
        Ok(())
    }
}

/// A property value as JSON or TOML carries it.
enum RawProp<'de> {
    Null,
    One(OwnedScalar<'de>),
    Many(Vec<OwnedScalar<'de>>),
}

enum OwnedScalar<'de> {
    Text(std::borrow::Cow<'de, str>),
    Number(f64),
    Bool(bool),
}

impl OwnedScalar<'_> {
    fn as_value(&self) -> PropertyValue<'_> {
        match self {
            OwnedScalar::Text(t) => PropertyValue::Text(t),
            OwnedScalar::Number(n) => PropertyValue::Number(*n),
            OwnedScalar::Bool(b) => PropertyValue::Bool(*b),
        }
    }
}

impl<'de> de::Deserialize<'de> for RawProp<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PropVisitor;
        impl<'de> Visitor<'de> for PropVisitor {
            type Value = RawProp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean, null or an array of those")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawProp::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawProp::Null)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Text(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Text(v.to_owned().into())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Text(v.into())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Number(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Number(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawProp::One(OwnedScalar::Number(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<RawProp<'de>>()? {
                    match item {
                        RawProp::Null => {}
                        RawProp::One(scalar) => items.push(scalar),
                        RawProp::Many(_) => {
                            return Err(de::Error::custom("nested arrays are not property values"));
                        }
                    }
                }
                Ok(RawProp::Many(items))
            }
        }
        deserializer.deserialize_any(PropVisitor)
    }
}

struct EventsSeed<'b, 'm> {
    builder: &'b mut RecordBuilder<'m>,
    memo: &'b mut ReadMemo,
}

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        loop {
            let seed = EventSeed {
                model: self.builder.model,
                index,
                memo: &mut *self.memo,
            };
            match seq.next_element_seed(seed)? {
                None => return Ok(()),
                Some(Some(event)) => self.builder.record.events.push(event),
                Some(None) => {}
            }
            index += 1;
        }
    }
}

struct EventSeed<'m, 's> {
    model: &'m Model,
    index: usize,
    memo: &'s mut ReadMemo,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_> {
    type Value = Option<Event>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Event>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_, '_> {
    type Value = Option<Event>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "events[{}] as an object with \"type\", \"at\" and \"attributes\"",
            self.index
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Event>, A::Error> {
        let index = self.index;
        let mut kind: Option<Option<u32>> = None;
        let mut at: Option<CowStr<'de>> = None;
        let mut matched = 0u128;
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            match &*key {
                "type" => {
                    let name = map
                        .next_value::<CowStr<'de>>()
                        .map_err(|e| de::Error::custom(format!("events[{index}].type: {e}")))?;
                    kind = Some(event_kind(self.model, &name));
                }
                "at" => {
                    // Parsed once the type is known: unread event types are skipped unparsed.
                    at = Some(
                        map.next_value::<CowStr<'de>>()
                            .map_err(|e| de::Error::custom(format!("events[{index}].at: {e}")))?,
                    );
                }
                "attributes" => {
                    let wanted = match kind {
                        None => u64::MAX,
                        Some(None) => 0,
                        Some(Some(kind)) => self.model.attr_slots_wanted(kind),
                    };
                    map.next_value_seed(AttrsSeed {
                        model: self.model,
                        index,
                        wanted,
                        matched: &mut matched,
                        memo: &mut *self.memo,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(kind) = kind else {
            return Err(de::Error::custom(format!(
                "events[{index}] has no \"type\""
            )));
        };
        let Some(at) = at else {
            return Err(de::Error::custom(format!("events[{index}] has no \"at\"")));
        };
        let Some(kind) = kind else {
            return Ok(None);
        };
        let at = parse_time(&at).ok_or_else(|| {
            de::Error::custom(format!(
                "events[{index}].at: {at:?} is not an RFC 3339 timestamp"
            ))
        })?;
        Ok(Some(Event::new(self.model, kind, at, matched)))
    }
}

struct AttrsSeed<'a, 'm> {
    model: &'m Model,
    index: usize,
    /// Attribute slots worth matching for this event's type (bit per slot);
    /// all of them while the type is not known yet.
    wanted: u64,
    matched: &'a mut u128,
    memo: &'a mut ReadMemo,
}

impl<'de> DeserializeSeed<'de> for AttrsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AttrsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "events[{}].attributes as an object", self.index)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            let slot = self.model.schema.attr_index.get(&*key).copied();
            let Some(slot) = slot
                .filter(|s| self.wanted & 1u64.checked_shl(u32::from(*s)).unwrap_or(u64::MAX) != 0)
            else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<RawProp>().map_err(|e| {
                de::Error::custom(format!("events[{}].attributes.{key}: {e}", self.index))
            })?;
            match value {
                RawProp::Null => {}
                RawProp::One(scalar) => {
                    *self.matched |= self.memo.matches(self.model, slot, &scalar_text(&scalar));
                }
                RawProp::Many(items) => {
                    for item in &items {
                        *self.matched |= self.memo.matches(self.model, slot, &scalar_text(item));
                    }
                }
            }
        }
        Ok(())
    }
}

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

    fn matches(&mut self, model: &Model, slot: u16, value: &str) -> u128 {
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

    fn outcomes(&mut self, slot: usize, value: &Value) -> Option<u64> {
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

    fn remember(&mut self, slot: usize, value: &Value, bits: u64) {
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

fn set_outcomes(static_bits: &mut [u64], checks: &[u32], outcomes: u64) {
    for (i, &check) in checks.iter().enumerate() {
        if outcomes & (1 << i) != 0 {
            static_bits[check as usize / 64] |= 1 << (check % 64);
        }
    }
}

fn get_outcomes(static_bits: &[u64], checks: &[u32]) -> u64 {
    checks.iter().enumerate().fold(0, |bits, (i, &check)| {
        let set = static_bits[check as usize / 64] & (1 << (check % 64)) != 0;
        bits | u64::from(set) << i
    })
}

fn scalar_text<'a>(scalar: &'a OwnedScalar<'_>) -> std::borrow::Cow<'a, str> {
    match scalar {
        OwnedScalar::Text(t) => std::borrow::Cow::Borrowed(t),
        OwnedScalar::Number(n) => std::borrow::Cow::Owned(format_number(*n)),
        OwnedScalar::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
    }
}

struct ListsSeed<'b, 'm> {
    builder: &'b mut RecordBuilder<'m>,
}

impl<'de> DeserializeSeed<'de> for ListsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"lists\" as an array of list names")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(name) = seq.next_element::<CowStr<'de>>()? {
            self.builder.list(&name);
        }
        Ok(())
    }
}

/// A string that borrows from the input when it can (serde's own `Cow`
/// impl always copies), so reading a record allocates only for what it keeps.
pub(crate) struct CowStr<'de>(std::borrow::Cow<'de, str>);

impl std::ops::Deref for CowStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CowStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CowStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(StrVisitor)
    }
}
