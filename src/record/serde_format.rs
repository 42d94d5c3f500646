//! The record format read through serde: TOML test cases, company lines,
//! and every JSON line the fast reader (`json`) leaves to it, so each error
//! message comes from one place.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{
    Event, Prop, ReadMemo, Record, RecordBuilder, Scalar, convert, event_kind, parse_time,
};
use crate::model::{Model, Scope};

pub(super) fn describe_json_error(error: &serde_json::Error) -> String {
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
    One(Scalar<'de>),
    Many(Vec<Scalar<'de>>),
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
                Ok(RawProp::One(Scalar::Text(v.into())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Text(v.to_owned().into())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Text(v.into())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Bool(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Number(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Number(v as f64)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawProp::One(Scalar::Number(v)))
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
                    *self.matched |= self.memo.matches(self.model, slot, &scalar.text());
                }
                RawProp::Many(items) => {
                    for item in &items {
                        *self.matched |= self.memo.matches(self.model, slot, &item.text());
                    }
                }
            }
        }
        Ok(())
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
