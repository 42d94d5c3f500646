//! From a pulled [`CrmRecord`] (and its company) to the model's
//! [`Record`]: each mapped field's text converted by its declared type,
//! read from the contact or from its company as the input says, inputs
//! computed from events (a count, the newest time), events and lists
//! handed over by name. Pure; the same for every CRM.

use std::collections::BTreeMap;

use crate::config::{DERIVED_PREFIX, DeriveHow, FieldType, Input, Origin};
use crate::crm::CrmRecord;
use crate::model::Model;
use crate::record::{PropertyValue, Record};

/// A company's property values, as pulled.
pub type CompanyValues = BTreeMap<String, String>;

/// Builds the model's record from a pulled one. `company` holds the values
/// of the record's primary company, when it has one that could be read;
/// company-origin inputs of a record without one do not match, and the
/// scorecard says so once.
pub fn to_record(
    model: &Model,
    inputs: &[Input],
    pulled: &CrmRecord,
    company: Option<&CompanyValues>,
) -> Record {
    let mut builder = model.record_builder(pulled.id.clone());
    let mut without_company = false;
    for input in inputs {
        if let Some(derived) = &input.derived {
            let times = pulled
                .events
                .iter()
                .filter(|e| e.kind == derived.event_type)
                .map(|e| e.at_ms);
            match derived.how {
                DeriveHow::Count => {
                    let n = times.count() as f64;
                    builder.property(input.scope, &input.name, PropertyValue::Number(n));
                }
                DeriveHow::Latest => {
                    let newest = times
                        .max()
                        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok());
                    if let Some(at) = newest {
                        let text = at.to_string();
                        builder.property(input.scope, &input.name, PropertyValue::Text(&text));
                    }
                }
            }
            continue;
        }
        let source = match input.origin {
            Origin::Contact => Some(&pulled.values),
            Origin::Company => company,
        };
        let Some(source) = source else {
            without_company = true;
            continue;
        };
        let Some(text) = source.get(&input.field) else {
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match input.kind {
            FieldType::Text | FieldType::Time => {
                builder.property(input.scope, &input.name, PropertyValue::Text(text));
            }
            FieldType::Number => {
                let value = match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => PropertyValue::Number(n),
                    // Kept as text: the model reports it as mistyped.
                    _ => PropertyValue::Text(text),
                };
                builder.property(input.scope, &input.name, value);
            }
            FieldType::Bool => {
                let value = match text.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => PropertyValue::Bool(true),
                    "false" | "0" | "no" | "off" => PropertyValue::Bool(false),
                    _ => PropertyValue::Text(text),
                };
                builder.property(input.scope, &input.name, value);
            }
            FieldType::Multi => {
                let values: Vec<PropertyValue<'_>> = text
                    .split(';')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(PropertyValue::Text)
                    .collect();
                builder.property_values(input.scope, &input.name, &values);
            }
        }
    }
    for event in &pulled.events {
        if event.kind.starts_with(DERIVED_PREFIX) {
            continue;
        }
        let Ok(at) = jiff::Timestamp::from_millisecond(event.at_ms) else {
            continue;
        };
        let attributes: Vec<(&str, &str)> = event
            .attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        builder.event(&event.kind, at, &attributes);
    }
    for list in &pulled.lists {
        builder.list(list);
    }
    if without_company {
        builder.no_company();
    }
    builder.build()
}
