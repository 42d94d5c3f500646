//! The subcommands: the IO around the pure core. Each reads files or
//! standard input, calls the model and the engine, and writes results.
//!
//! Errors leave here typed by what the caller does with them: `main` maps
//! them to exit codes (78 for a bad config, 65 for bad input records).

mod check;
mod demo;
mod evaluate;
mod explain;
mod fake;
mod lines;
mod progress;
mod score;
mod setup;
mod sync;

use std::path::Path;

pub use check::{CheckOutcome, check_config, connection_summary, run_cases};
pub use demo::{demo_live, demo_offline};
pub use evaluate::{Diff, OutcomeSpec, Skipped, backtest, calibrate, diff, generate};
pub use explain::{explain, explain_stored};
pub use fake::{FakeKind, FakeOptions, fake_crm};
pub use score::{Lines, ScoreStats, score_stream};
pub use setup::{input_warnings, setup};
pub use sync::sync_once;

use crate::model::{ConfigErrors, Model};

/// sysexits.h codes that admins and systemd can tell apart.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILURE: u8 = 1;
    /// Some input records were malformed.
    pub const DATA_ERR: u8 = 65;
    /// An input file could not be opened.
    pub const NO_INPUT: u8 = 66;
    /// The local state cannot be created or written.
    pub const CANT_CREATE: u8 = 73;
    /// The CRM could not be reached, or its budget is spent: try later.
    pub const TEMP_FAIL: u8 = 75;
    /// The CRM answered in a way it does not document.
    pub const PROTOCOL: u8 = 76;
    /// The CRM refused the credentials or a scope is missing.
    pub const NO_PERM: u8 = 77;
    /// The configuration is invalid.
    pub const CONFIG: u8 = 78;
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A config file that could not be read at all.
    #[error("cannot read config {path}: {source}")]
    ConfigUnreadable {
        path: String,
        source: std::io::Error,
    },
    /// Embedded test cases that do not come out as expected.
    #[error("{failed} of {total} embedded test cases failed")]
    CasesFailed { failed: usize, total: usize },
    /// Warnings under `check-config --strict`.
    #[error("{0} warning{s} (fatal under --strict)", s = if *.0 == 1 { "" } else { "s" })]
    StrictWarnings(usize),
    #[error("cannot read {path}: {source}")]
    NoInput {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Crm(#[from] crate::crm::CrmError),
    #[error("{0}")]
    Connection(#[from] crate::config::LoadError),
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Stopped(String),
}

impl From<crate::sync::PassError> for CommandError {
    fn from(error: crate::sync::PassError) -> Self {
        use crate::sync::PassError as P;
        match error {
            P::Crm(e) => CommandError::Crm(e),
            P::State(e) => CommandError::State(e),
            P::Stopped => CommandError::Stopped(P::Stopped.to_string()),
        }
    }
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Config(_)
            | CommandError::ConfigUnreadable { .. }
            | CommandError::CasesFailed { .. }
            | CommandError::StrictWarnings(_) => exit::CONFIG,
            CommandError::NoInput { .. } => exit::NO_INPUT,
            CommandError::Data(_) => exit::DATA_ERR,
            CommandError::Io(_) => exit::FAILURE,
            CommandError::Connection(_) => exit::CONFIG,
            CommandError::State(error) => {
                use crate::state::StateError as S;
                match error {
                    S::Locked { .. } => exit::TEMP_FAIL,
                    S::Db { source, .. } if source.lost() => exit::TEMP_FAIL,
                    S::Foreign { .. } | S::TooNew { .. } => exit::CONFIG,
                    S::Open { .. } | S::Db { .. } => exit::CANT_CREATE,
                }
            }
            CommandError::Stopped(_) => exit::TEMP_FAIL,
            CommandError::Crm(error) => {
                use crate::crm::CrmError as E;
                match error {
                    E::Credentials(_) | E::Auth(_) | E::MissingScope(_) => exit::NO_PERM,
                    E::BudgetExhausted { .. } | E::Unavailable { .. } => exit::TEMP_FAIL,
                    E::Rejected { .. } | E::Protocol { .. } => exit::PROTOCOL,
                    E::Stopped => exit::FAILURE,
                    E::Unsupported(_) => exit::CONFIG,
                }
            }
        }
    }
}

/// Reads and compiles a model file.
pub fn load_model(path: &Path) -> Result<Model, CommandError> {
    let shown = path.display().to_string();
    let source =
        std::fs::read_to_string(path).map_err(|source| CommandError::ConfigUnreadable {
            path: shown.clone(),
            source,
        })?;
    Ok(Model::compile(&shown, &source)?)
}

/// Parses `--now`, or takes the wall clock when absent.
pub fn resolve_now(now: Option<&str>) -> Result<jiff::Timestamp, CommandError> {
    match now {
        None => Ok(jiff::Timestamp::now()),
        Some(text) => text.parse().map_err(|e| {
            CommandError::Data(format!("--now {text:?} is not an RFC 3339 timestamp: {e}"))
        }),
    }
}
