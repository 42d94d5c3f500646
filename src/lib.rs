//! leadscored: keeps a CRM's lead scores right.
//!
//! The library holds everything; `main.rs` only parses the command line and
//! maps errors to exit codes. The scoring core (`model`, `record`, `engine`,
//! `grade`) is pure: no IO, no clock, no panics on odd data. Commands in
//! `commands` do the IO around it.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod crm;
pub mod daemon;
pub mod engine;
pub mod evaluate;
pub mod fake;
pub mod grade;
pub mod model;
pub mod plan;
pub mod record;
pub mod state;
pub mod sync;
pub mod telemetry;

pub use engine::Scorecard;
pub use grade::{Grade, GradeStep};
pub use model::{ConfigError, ConfigErrors, Model};
pub use record::{Record, RecordError};
