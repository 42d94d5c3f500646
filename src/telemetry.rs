//! Logging: `tracing` to standard error in the format the place wants —
//! human and coloured on a terminal, plain lines without timestamps under
//! systemd (journald stamps and stores them), JSON when asked (log
//! shippers). `LEADSCORED_LOG` filters (`info`, `leadscored=debug`, ...).
//!
//! What is logged never holds a secret (they live in `secrecy` types) nor
//! personal data: records are named by CRM id, never by email or name.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Terminal: human; under systemd: journald; elsewhere: plain.
    Auto,
    Human,
    Journald,
    Json,
}

/// Installs the global subscriber; `default_level` applies when
/// `LEADSCORED_LOG` is unset.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("LEADSCORED_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let terminal = std::io::stderr().is_terminal();
    let format = match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto if terminal => LogFormat::Human,
        LogFormat::Auto => LogFormat::Journald,
        other => other,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Journald => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        LogFormat::Human | LogFormat::Auto => builder.with_ansi(terminal).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}
