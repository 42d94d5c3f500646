//! What a sync writes: for one record, the output properties whose new
//! value differs from what the CRM holds and that the ownership policy lets
//! leadscored change. Pure: CRM values and a scorecard in, changes out.

use std::collections::BTreeMap;

use crate::Scorecard;
use crate::config::{Output, Overwrite};
use crate::model::Model;

/// One property's move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub property: String,
    pub old: Option<String>,
    /// Empty clears the property.
    pub new: String,
}

/// Whether two CRM texts mean the same value (`72` and `72.0` do).
fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() < 1e-9,
        _ => false,
    }
}

/// The changes one record needs, given what the CRM holds now.
pub fn changes(
    model: &Model,
    outputs: &[Output],
    current: &BTreeMap<String, String>,
    card: &Scorecard,
) -> Vec<Change> {
    let mut out = Vec::new();
    for output in outputs {
        let new = output.render(model, card).unwrap_or_default();
        let old = current
            .get(&output.property)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty());
        match old {
            None if new.is_empty() => continue,
            Some(old) if same(old, &new) => continue,
            _ => {}
        }
        let allowed = match (output.overwrite, old) {
            (Overwrite::Always, _) | (_, None) => true,
            (Overwrite::IfEmpty, Some(_)) => false,
            (Overwrite::IfOurs, Some(old)) => output.options(model).iter().any(|o| o == old),
        };
        if allowed {
            out.push(Change {
                property: output.property.clone(),
                old: old.map(str::to_owned),
                new,
            });
        }
    }
    out
}
