//! From a pulled [`CrmRecord`] to the model's [`Record`]: each mapped
//! field's text converted by its declared type, inputs computed from
//! events (a count, the newest time), events and lists handed over by
//! name. Pure; the same for every CRM.

use crate::config::{DERIVED_PREFIX, DeriveHow, FieldType, Input};
use crate::crm::CrmRecord;
use crate::model::Model;
use crate::record::{PropertyValue, Record};

/// Builds the model's record from a pulled one.
pub fn to_record(model: &Model, inputs: &[Input], pulled: &CrmRecord) -> Record {
    let mut builder = model.record_builder(pulled.id.clone());
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
        let Some(text) = pulled.values.get(&input.field) else {
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
    builder.build()
}
