//! The one integration test binary. Hermetic: no network, no clock (every
//! case fixes `now`), fixtures read from `fixtures/` and `config/`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod accounts;
mod cli;
mod companies_lists;
mod config_errors;
mod connection_errors;
mod daemon;
mod evaluate;
mod explain;
mod fake_hubspot;
mod fake_hubspot_spec;
mod fake_pardot;
mod fleet;
mod hubspot_flows;
mod hubspot_wiremock;
mod models;
mod pardot_accounts;
mod pardot_flows;
mod pardot_wiremock;
mod plan;
mod properties;
mod readme;
mod records;
mod reliability;
mod same_scorecards;
mod score_output;
mod state;
mod streams;
mod sync_pass;
mod webhooks;

use std::path::{Path, PathBuf};

/// The repository root, where `fixtures/` and `config/` live.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn model(relative: &str) -> leadscored::Model {
    let source = read(relative);
    leadscored::Model::compile(relative, &source)
        .unwrap_or_else(|e| panic!("{relative} does not compile:\n{e}"))
}

pub fn now(text: &str) -> jiff::Timestamp {
    text.parse().expect("test timestamps are valid")
}

pub fn files_in(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("fixture directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

pub fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}
