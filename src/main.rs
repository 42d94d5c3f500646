//! The `leadscored` binary: parses the command line, starts logging, runs a
//! command from the library and maps its error to an exit code.

#![forbid(unsafe_code)]

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use leadscored::commands::{self, CommandError, exit};

/// Keeps a CRM's lead scores right: scores contacts with a model revops
/// write in TOML, explains every point, and writes back only what changed.
#[derive(Parser)]
#[command(name = "leadscored", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score the bundled sample contacts with the example model (no account, no files needed).
    Demo,
    /// Validate a model file, run its embedded test cases and summarise it.
    CheckConfig {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
    },
    /// Score JSON-lines records: one scorecard per input line on standard output.
    Score {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        /// Input file, or "-" for standard input.
        #[arg(long, default_value = "-")]
        input: String,
        /// Score as of this moment (RFC 3339); default: now.
        #[arg(long)]
        now: Option<String>,
        /// Worker threads; default: the number of cores.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Serve a built-in fake CRM on a local address (for trying a model without an account).
    FakeCrm {
        #[arg(long, value_enum, default_value = "hubspot")]
        kind: commands::FakeKind,
        #[arg(long, default_value = "127.0.0.1:8089")]
        listen: std::net::SocketAddr,
        /// How many contacts to generate.
        #[arg(long, default_value_t = 1000)]
        contacts: u64,
        /// Seed for the generated people; the same seed gives the same people.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Keep what clients write in this file across restarts (saved every
        /// second while it changes, and at shutdown).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// How well a model separates converters, on records with known outcomes.
    Backtest {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        /// JSON lines (the `score` format) with outcomes; `-` for stdin.
        #[arg(long)]
        input: String,
        /// Where the outcome is: a field (default `outcome`),
        /// `property:NAME=VALUE` or `event:TYPE`.
        #[arg(long, default_value = "outcome")]
        outcome: String,
        /// Score as of this moment (the snapshot time).
        #[arg(long)]
        now: Option<String>,
        /// Print JSON instead of the readable report.
        #[arg(long)]
        json: bool,
    },
    /// Compare two models on the same records: tier and grade moves, biggest movers, metrics.
    Diff {
        /// The old model, then the new one: `--config OLD --config NEW`.
        #[arg(long = "config", action = clap::ArgAction::Append, required = true)]
        configs: Vec<PathBuf>,
        #[arg(long)]
        input: String,
        #[arg(long, default_value = "outcome")]
        outcome: String,
        #[arg(long)]
        now: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Learn point values from outcomes and propose a model file.
    Calibrate {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        input: String,
        #[arg(long, default_value = "outcome")]
        outcome: String,
        /// Which score to fit (default: the first).
        #[arg(long)]
        score: Option<String>,
        #[arg(long)]
        now: Option<String>,
        /// Write the proposed model here (the original with new points).
        #[arg(long)]
        write: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write generated people (the fake CRM's) as records with outcomes.
    Generate {
        #[arg(long, default_value_t = 1000)]
        records: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The moment the generated history ends at.
        #[arg(long, default_value = "2026-11-01T00:00:00Z")]
        now: String,
    },
    /// One sync pass: pull, score, write back what changed (or, with
    /// --dry-run, print what would change).
    Sync {
        #[arg(long, env = "LEADSCORED_CONNECTION")]
        connection: PathBuf,
        /// Run one pass and exit (the scheduled daemon is `run`, planned).
        #[arg(long, required = true)]
        once: bool,
        /// Records changed since this moment (RFC 3339); default: all records.
        #[arg(long)]
        since: Option<String>,
        /// Write nothing; print each planned change and a summary.
        #[arg(long)]
        dry_run: bool,
        /// JSON lines: one per changed record, then {"summary": ...}.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        crm_url: Option<String>,
        /// Score as of this moment (default: now).
        #[arg(long)]
        now: Option<String>,
    },
    /// Create the output properties a connection writes, in the CRM.
    Setup {
        /// The connection file (it names the model).
        #[arg(long, env = "LEADSCORED_CONNECTION")]
        connection: PathBuf,
        /// Use this CRM base URL instead of the configured one (tests, staging).
        #[arg(long)]
        crm_url: Option<String>,
        /// Only report what is missing or wrong; change nothing.
        #[arg(long)]
        check: bool,
    },
    /// Explain one record's score, grade, tier and stage for a person.
    Explain {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        input: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        now: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEADSCORED_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(command: Command) -> Result<u8, CommandError> {
    match command {
        Command::Demo => {
            print(&commands::demo()?)?;
            Ok(exit::OK)
        }
        Command::CheckConfig { config } => match commands::check_config(&config)?.into_result() {
            Ok(report) => {
                print(&report)?;
                Ok(exit::OK)
            }
            Err((report, error)) => {
                print(&report)?;
                Err(error)
            }
        },
        Command::Score {
            config,
            input,
            now,
            threads,
        } => {
            let model = commands::load_model(&config)?;
            let now = commands::resolve_now(now.as_deref())?;
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let stdout = std::io::stdout();
            let output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let stats = if input == "-" {
                commands::score_stream(&model, now, std::io::stdin().lock(), output, threads)?
            } else {
                commands::score_stream(&model, now, open(&input)?, output, threads)?
            };
            tracing::info!(
                scored = stats.scored,
                failed = stats.failed,
                "scoring finished"
            );
            if stats.failed > 0 {
                eprintln!(
                    "{} of {} lines could not be scored",
                    stats.failed,
                    stats.failed + stats.scored
                );
                return Ok(exit::DATA_ERR);
            }
            Ok(exit::OK)
        }
        Command::FakeCrm {
            kind,
            listen,
            contacts,
            seed,
            state,
        } => {
            commands::fake_crm(kind, listen, contacts, seed, state.as_deref())?;
            Ok(exit::OK)
        }
        Command::Backtest {
            config,
            input,
            outcome,
            now,
            json,
        } => {
            let model = commands::load_model(&config)?;
            let now = commands::resolve_now(now.as_deref())?;
            let outcome = commands::OutcomeSpec::parse(&outcome).map_err(CommandError::Data)?;
            let (report, skipped) = if input == "-" {
                commands::backtest(&model, now, &outcome, std::io::stdin().lock(), threads())?
            } else {
                commands::backtest(&model, now, &outcome, open(&input)?, threads())?
            };
            eprint!("{}", skipped.text());
            if json {
                print(&to_json(&report)?)?;
            } else {
                print(&report.text())?;
            }
            Ok(exit::OK)
        }
        Command::Diff {
            configs,
            input,
            outcome,
            now,
            json,
        } => {
            let [old, new] = configs.as_slice() else {
                return Err(CommandError::Data(
                    "diff needs exactly two models: --config OLD --config NEW".to_owned(),
                ));
            };
            let old = commands::load_model(old)?;
            let new = commands::load_model(new)?;
            let now = commands::resolve_now(now.as_deref())?;
            let outcome = commands::OutcomeSpec::parse(&outcome).map_err(CommandError::Data)?;
            let (diff, skipped) =
                commands::diff(&old, &new, now, &outcome, open(&input)?, threads())?;
            eprint!("{}", skipped.text());
            if json {
                print(&to_json(&diff)?)?;
            } else {
                print(&diff.text())?;
            }
            Ok(exit::OK)
        }
        Command::Calibrate {
            config,
            input,
            outcome,
            score,
            now,
            write,
            json,
        } => {
            let model = commands::load_model(&config)?;
            let source = std::fs::read_to_string(&config).map_err(|source| {
                CommandError::ConfigUnreadable {
                    path: config.display().to_string(),
                    source,
                }
            })?;
            let now = commands::resolve_now(now.as_deref())?;
            let outcome = commands::OutcomeSpec::parse(&outcome).map_err(CommandError::Data)?;
            let (result, proposal, skipped) = commands::calibrate(
                &model,
                &source,
                score.as_deref(),
                now,
                &outcome,
                open(&input)?,
                threads(),
            )?;
            eprint!("{}", skipped.text());
            if json {
                print(&to_json(&result)?)?;
            } else {
                print(&result.text())?;
            }
            if let Some(path) = write {
                let Some(text) = proposal else {
                    return Err(CommandError::Data(
                        "could not match the model file's rules to write a proposal".to_owned(),
                    ));
                };
                std::fs::write(&path, text)?;
                eprintln!("proposed model written to {}", path.display());
            }
            Ok(exit::OK)
        }
        Command::Generate { records, seed, now } => {
            let now = commands::resolve_now(Some(&now))?;
            let stdout = std::io::stdout();
            let output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            commands::generate(records, seed, now, output)?;
            Ok(exit::OK)
        }
        Command::Sync {
            connection,
            once: _,
            since,
            dry_run,
            json,
            crm_url,
            now,
        } => {
            let mut connection =
                leadscored::config::Connection::load(&connection).map_err(CommandError::from)?;
            if let Some(url) = crm_url {
                connection
                    .override_base_url(&url)
                    .map_err(CommandError::Data)?;
            }
            let now = commands::resolve_now(now.as_deref())?;
            let kind = match since {
                None => leadscored::crm::PullKind::Full,
                Some(text) => {
                    let at = commands::resolve_now(Some(&text))?;
                    leadscored::crm::PullKind::Since(at.as_millisecond())
                }
            };
            let pass = leadscored::sync::Pass { kind, now, dry_run };
            let stdout = std::io::stdout();
            let output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let report = commands::sync_once(&connection, pass, json, output)?;
            if report.failed.is_empty() {
                Ok(exit::OK)
            } else {
                Ok(exit::DATA_ERR)
            }
        }
        Command::Setup {
            connection,
            crm_url,
            check,
        } => {
            let mut connection =
                leadscored::config::Connection::load(&connection).map_err(CommandError::from)?;
            if let Some(url) = crm_url {
                connection
                    .override_base_url(&url)
                    .map_err(CommandError::Data)?;
            }
            let (text, report) = commands::setup(&connection, !check)?;
            print(&text)?;
            if report.conflicts.is_empty() && report.missing.is_empty() {
                Ok(exit::OK)
            } else {
                Ok(exit::CONFIG)
            }
        }
        Command::Explain {
            config,
            input,
            id,
            now,
        } => {
            let model = commands::load_model(&config)?;
            let now = commands::resolve_now(now.as_deref())?;
            print(&commands::explain(&model, now, open(&input)?, &id)?)?;
            Ok(exit::OK)
        }
    }
}

fn open(path: &str) -> Result<BufReader<std::fs::File>, CommandError> {
    std::fs::File::open(path)
        .map(|f| BufReader::with_capacity(1 << 16, f))
        .map_err(|source| CommandError::NoInput {
            path: path.to_owned(),
            source,
        })
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn to_json(value: &impl serde::Serialize) -> Result<String, CommandError> {
    serde_json::to_string_pretty(value).map_err(|e| CommandError::Data(e.to_string()))
}

fn print(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(())
}
