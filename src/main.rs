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

fn print(text: &str) -> Result<(), CommandError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    Ok(())
}
