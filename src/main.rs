//! The `leadscored` binary: parses the command line, starts logging, runs a
//! command from the library and maps its error to an exit code.

#![forbid(unsafe_code)]

use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc: the pipeline allocates many small strings per record across
/// threads, where glibc's malloc spends a fifth of the CPU. Built with
/// `no_thp`: with transparent huge pages mimalloc's arenas are backed in
/// 2 MiB pages, which doubled `score`'s resident memory for no speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use leadscored::commands::{self, CommandError, exit};

/// Keeps a CRM's lead scores right: scores contacts with a model revops
/// write in TOML, explains every point, and writes back only what changed.
#[derive(Parser)]
#[command(name = "leadscored", version, about, long_about = None)]
struct Cli {
    /// Log format (standard error): auto picks human on a terminal and
    /// journald-friendly lines under systemd.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "auto",
        env = "LEADSCORED_LOG_FORMAT"
    )]
    log_format: leadscored::telemetry::LogFormat,
    /// Read credential NAME from PATH instead of $CREDENTIALS_DIRECTORY
    /// (run `setup` or `sync` by hand for an installed service:
    /// `--credential hubspot-token=/etc/leadscored/credentials/hubspot-token`).
    #[arg(long = "credential", global = true, value_name = "NAME=PATH")]
    credentials: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

/// Where local state lives: systemd's `StateDirectory`, else the user's
/// state directory.
#[derive(clap::Args)]
struct StateDir {
    /// Directory for the local state (one SQLite file per connection);
    /// default: $STATE_DIRECTORY (systemd), else ~/.local/state/leadscored.
    #[arg(long, env = "LEADSCORED_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl StateDir {
    fn resolve(&self) -> PathBuf {
        if let Some(dir) = &self.state_dir {
            return dir.clone();
        }
        if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
            let dirs = dirs.to_string_lossy().into_owned();
            if let Some(first) = dirs.split(':').next().filter(|d| !d.is_empty()) {
                return PathBuf::from(first);
            }
        }
        if let Some(base) = std::env::var_os("XDG_STATE_HOME").filter(|b| !b.is_empty()) {
            return PathBuf::from(base).join("leadscored");
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".local/state/leadscored"),
            None => PathBuf::from(".leadscored"),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// The whole job against a built-in fake HubSpot on 127.0.0.1: setup, a
    /// full sync, edits, an incremental sync, the results explained (no
    /// account, no network).
    Demo {
        /// How many contacts the fake portal has.
        #[arg(long, default_value_t = 3000)]
        contacts: u64,
        /// Only score the bundled sample contacts (no fake CRM).
        #[arg(long)]
        offline: bool,
        /// Which fake CRM to run against.
        #[arg(long, value_enum, default_value = "hubspot")]
        crm: commands::FakeKind,
    },
    /// Validate a model file, run its embedded test cases and summarise it.
    CheckConfig {
        /// A model file.
        #[arg(
            long,
            env = "LEADSCORED_CONFIG",
            required_unless_present = "connection"
        )]
        config: Option<PathBuf>,
        /// A connection file: checks it and the model it names (no CRM call,
        /// no secret read; systemd runs this before start and reload).
        #[arg(long, conflicts_with = "config")]
        connection: Option<PathBuf>,
        /// With --connection: also ask the CRM at this URL (with the
        /// connection's credentials) which of the model's inputs it does not
        /// have, and warn about each.
        #[arg(long, requires = "connection")]
        crm_url: Option<String>,
        /// Warnings are fatal (exit 78).
        #[arg(long)]
        strict: bool,
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
        /// Each line is a company with its people (`"company"`,
        /// `"people"`): one line per company, its company scores and then
        /// its people's scorecards.
        #[arg(long)]
        companies: bool,
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
        /// No rate or daily limits (benchmarks); Pardot keeps its 5
        /// concurrent requests.
        #[arg(long)]
        unlimited: bool,
        /// Inject faults at these rates per request, to rehearse them:
        /// `429=0.1,5xx=0.05,reset=0.02,malformed=0.02,slow=0.05`
        /// (also `record=RATE` for refused written records, `slow_ms=MS`).
        #[arg(long)]
        faults: Option<String>,
        /// Error answers quote the request's Authorization header, as a
        /// careless proxy does (to check that leadscored redacts it).
        #[arg(long)]
        echo_auth: bool,
        /// The HubSpot portal id (Pardot: account id) to answer as;
        /// default: derived from --seed.
        #[arg(long)]
        portal_id: Option<u64>,
        /// Spread the people over this many companies (default: about
        /// eight people each).
        #[arg(long)]
        companies: Option<u64>,
        /// Write a ready connection file for this fake to FILE (the
        /// example model and the secrets the fake accepts go beside it).
        #[arg(long, value_name = "FILE")]
        write_connection: Option<PathBuf>,
        /// Send HubSpot webhooks for every contact change to URL (loopback
        /// only, e.g. http://127.0.0.1:9187/webhooks/hubspot), signed with
        /// the fake's app secret; --write-connection adds [webhooks].
        #[arg(long, value_name = "URL")]
        webhooks: Option<String>,
        /// Serve this many HubSpot portals behind the one address, each
        /// with its own token, people (seeds from --seed on), limits and
        /// writes; --write-connection then names a directory that gets one
        /// connection file per portal (for `run --connections`).
        #[arg(long, default_value_t = 1, value_name = "N")]
        portals: usize,
    },
    /// How well a model separates converters, on records with known outcomes.
    Backtest {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        /// Also write the report as one self-contained HTML page (charts
        /// as SVG, no script, no network).
        #[arg(long)]
        html: Option<PathBuf>,
        #[command(flatten)]
        records: Outcomes,
    },
    /// Compare two models on the same records: tier and grade moves, biggest movers, metrics.
    Diff {
        /// The old model, then the new one: `--config OLD --config NEW`.
        #[arg(long = "config", action = clap::ArgAction::Append, required = true)]
        configs: Vec<PathBuf>,
        /// Also write the comparison as one self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
        #[command(flatten)]
        records: Outcomes,
    },
    /// Learn point values from outcomes and propose a model file.
    Calibrate {
        #[arg(long, env = "LEADSCORED_CONFIG")]
        config: PathBuf,
        /// Which score to fit (default: the first).
        #[arg(long)]
        score: Option<String>,
        /// Write the proposed model here (the original with new points).
        #[arg(long)]
        write: Option<PathBuf>,
        /// Propose points whose sign differs from the hand-set ones (they
        /// are listed either way; without this they keep the hand-set points).
        #[arg(long)]
        allow_sign_change: bool,
        #[command(flatten)]
        records: Outcomes,
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
        /// Run one pass and exit (the scheduled daemon is `run`).
        #[arg(long, required = true)]
        once: bool,
        /// Pull every record afresh (default: what changed since the last
        /// pass; everything on the first).
        #[arg(long, conflicts_with_all = ["rescore", "since"])]
        full: bool,
        /// After the incremental pull, rescore every stored record (decay).
        #[arg(long)]
        rescore: bool,
        /// Pull records changed since this moment (RFC 3339) instead of since
        /// the watermark; the watermark stays.
        #[arg(long)]
        since: Option<String>,
        /// Write nothing (neither CRM nor state); print each planned change
        /// and a summary.
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
        #[command(flatten)]
        state: StateDir,
    },
    /// The daemon: scheduled passes, /healthz and /metrics, systemd
    /// notifications; SIGHUP reloads, SIGTERM stops.
    Run {
        /// The connection file (it names the model).
        #[arg(
            long,
            visible_alias = "config",
            env = "LEADSCORED_CONNECTION",
            required_unless_present = "connections",
            conflicts_with = "connections"
        )]
        connection: Option<PathBuf>,
        /// Serve every connection file (`*.toml`) in this directory from one
        /// process; SIGHUP re-reads it.
        #[arg(long, value_name = "DIR")]
        connections: Option<PathBuf>,
        /// With --connections: passes of different connections that run at
        /// the same time, at most.
        #[arg(long, default_value_t = 8, value_name = "N")]
        parallel: usize,
        #[arg(long)]
        crm_url: Option<String>,
        /// Serve /healthz and /metrics here instead of `[daemon] listen`
        /// (with --connections: default 127.0.0.1:9187).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        state: StateDir,
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
        /// The model file, with --input.
        #[arg(
            long,
            env = "LEADSCORED_CONFIG",
            required_unless_present = "connection"
        )]
        config: Option<PathBuf>,
        /// JSON-lines records to find the record in.
        #[arg(long, required_unless_present = "connection")]
        input: Option<String>,
        /// Or a connection file: the CRM record is read from its local
        /// state as last pulled (no CRM call), and each output's value in
        /// the CRM is shown with what the next pass would write.
        #[arg(long)]
        connection: Option<PathBuf>,
        /// The CRM URL the state was made with (as given to `sync`).
        #[arg(long, requires = "connection")]
        crm_url: Option<String>,
        #[command(flatten)]
        state: StateDir,
        #[arg(long)]
        id: String,
        #[arg(long)]
        now: Option<String>,
        /// Also list rules that matched but are worth 0 now.
        #[arg(long)]
        verbose: bool,
        /// The input's lines are companies with their people (as for
        /// `score --companies`): explain the company, its people and its
        /// roll-ups.
        #[arg(long, conflicts_with = "connection")]
        companies: bool,
    },
}

/// Records with known outcomes, as `backtest`, `diff` and `calibrate` read them.
#[derive(clap::Args, Debug)]
struct Outcomes {
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
    /// Each line is a company with its people (as for `score
    /// --companies`), judged on its company scores.
    #[arg(long)]
    companies: bool,
    /// Print JSON instead of the readable report.
    #[arg(long)]
    json: bool,
}

impl Outcomes {
    fn lines(&self) -> commands::Lines {
        if self.companies {
            commands::Lines::Companies
        } else {
            commands::Lines::Contacts
        }
    }

    fn spec(&self) -> Result<commands::OutcomeSpec, CommandError> {
        commands::OutcomeSpec::parse(&self.outcome).map_err(CommandError::Data)
    }

    fn now(&self) -> Result<jiff::Timestamp, CommandError> {
        commands::resolve_now(self.now.as_deref())
    }

    /// Standard input copied to a temporary file, for commands that read
    /// the records twice; `None` when the input is a file.
    fn spill(&self) -> Result<Option<tempfile::NamedTempFile>, CommandError> {
        if self.input != "-" {
            return Ok(None);
        }
        let mut file = tempfile::NamedTempFile::new()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
        Ok(Some(file))
    }

    /// The input from its start: the spilled copy, or the file again.
    fn reopen(
        &self,
        spilled: Option<&tempfile::NamedTempFile>,
    ) -> Result<Box<dyn std::io::BufRead>, CommandError> {
        match spilled {
            Some(file) => Ok(Box::new(open(&file.path().display().to_string())?)),
            None => self.input(),
        }
    }

    fn input(&self) -> Result<Box<dyn std::io::BufRead>, CommandError> {
        Ok(if self.input == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(open(&self.input)?)
        })
    }

    /// Prints the result as JSON or text, after the skipped-records note.
    fn emit(
        &self,
        value: &impl serde::Serialize,
        text: String,
        skipped: &commands::Skipped,
    ) -> Result<(), CommandError> {
        eprint!("{}", skipped.text());
        if self.json {
            print(&to_json(value)?)
        } else {
            print(&text)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon tells what it does; one-off commands only warn.
    let level = match cli.command {
        Command::Run { .. } => "info,tokio_cron_scheduler=warn",
        _ => "warn",
    };
    leadscored::telemetry::init(cli.log_format, level);
    for given in &cli.credentials {
        let Some((name, path)) = given
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        else {
            eprintln!("error: --credential {given:?}: expected NAME=PATH");
            return ExitCode::from(exit::CONFIG);
        };
        leadscored::crm::auth::give_credential(name, std::path::Path::new(path));
    }
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        // `leadscored score … | head -1`: the reader has what it wanted.
        Err(CommandError::Io(error)) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(error) => {
            // Errors can quote a CRM's answer: never let a secret through.
            eprintln!(
                "error: {}",
                leadscored::crm::redact::text(&error.to_string())
            );
            ExitCode::from(error.exit_code())
        }
    }
}

fn run(command: Command) -> Result<u8, CommandError> {
    match command {
        Command::Demo {
            contacts,
            offline,
            crm,
        } => {
            if offline {
                print(&commands::demo_offline()?)?;
            } else {
                let kind = match crm {
                    commands::FakeKind::Hubspot => leadscored::config::CrmKind::Hubspot,
                    commands::FakeKind::Pardot => leadscored::config::CrmKind::Pardot,
                };
                print(&commands::demo_live(contacts.clamp(10, 1_000_000), kind)?)?;
            }
            Ok(exit::OK)
        }
        Command::CheckConfig {
            config,
            connection,
            crm_url,
            strict,
        } => {
            let (model_path, summary, connection, more) = match (config, connection) {
                (_, Some(path)) => {
                    let connection = load_connection(&path, crm_url.as_deref())?;
                    let summary = commands::connection_summary(&path, &connection);
                    let more = match crm_url {
                        Some(_) => commands::input_warnings(&connection)?,
                        None => Vec::new(),
                    };
                    (
                        connection.model_path.clone(),
                        summary,
                        Some(connection),
                        more,
                    )
                }
                (Some(config), None) => (config, String::new(), None, Vec::new()),
                (None, None) => {
                    return Err(CommandError::Data(
                        "give --config MODEL or --connection FILE".to_owned(),
                    ));
                }
            };
            match commands::check_config(&model_path, connection.as_ref(), more)?
                .into_result(strict)
            {
                Ok(report) => {
                    print(&format!("{summary}{report}"))?;
                    Ok(exit::OK)
                }
                Err((report, error)) => {
                    print(&format!("{summary}{report}"))?;
                    Err(error)
                }
            }
        }
        Command::Score {
            config,
            input,
            now,
            threads,
            companies,
        } => {
            let model = commands::load_model(&config)?;
            let now = commands::resolve_now(now.as_deref())?;
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let stdout = std::io::stdout();
            let output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let what = if companies {
                commands::Lines::Companies
            } else {
                commands::Lines::Contacts
            };
            let stats = if input == "-" {
                commands::score_stream(&model, now, std::io::stdin().lock(), output, threads, what)?
            } else {
                commands::score_stream(&model, now, open(&input)?, output, threads, what)?
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
            unlimited,
            faults,
            echo_auth,
            portal_id,
            companies,
            write_connection,
            webhooks,
            portals,
        } => {
            let options = commands::FakeOptions {
                write_connection,
                webhooks,
                portals,
                records: contacts,
                seed,
                state,
                unlimited,
                faults,
                echo_auth,
                portal_id,
                companies: companies.unwrap_or(0),
            };
            commands::fake_crm(kind, listen, &options)?;
            Ok(exit::OK)
        }
        Command::Backtest {
            config,
            html,
            records,
        } => {
            let model = commands::load_model(&config)?;
            let (report, skipped) = commands::backtest(
                &model,
                records.now()?,
                &records.spec()?,
                (records.input()?, records.lines()),
                threads(),
            )?;
            records.emit(&report, report.text(), &skipped)?;
            if let Some(path) = html {
                write_page(&path, &leadscored::evaluate::html::backtest_page(&report))?;
            }
            Ok(exit::OK)
        }
        Command::Diff {
            configs,
            html,
            records,
        } => {
            let [old_path, new_path] = configs.as_slice() else {
                return Err(CommandError::Data(
                    "diff needs exactly two models: --config OLD --config NEW".to_owned(),
                ));
            };
            let old = commands::load_model(old_path)?;
            let new = commands::load_model(new_path)?;
            let (diff, skipped) = commands::diff(
                &old,
                &new,
                records.now()?,
                &records.spec()?,
                (records.input()?, records.lines()),
                threads(),
            )?;
            records.emit(&diff, diff.text(), &skipped)?;
            if let Some(path) = html {
                let (a, b) = (
                    old_path.display().to_string(),
                    new_path.display().to_string(),
                );
                write_page(&path, &diff.html([&a, &b]))?;
            }
            Ok(exit::OK)
        }
        Command::Calibrate {
            config,
            score,
            write,
            allow_sign_change,
            records,
        } => {
            let model = commands::load_model(&config)?;
            let source = std::fs::read_to_string(&config).map_err(|source| {
                CommandError::ConfigUnreadable {
                    path: config.display().to_string(),
                    source,
                }
            })?;
            // The records are read twice (fit, then judge the written
            // proposal): standard input is kept in a temporary file.
            let spilled = records.spill()?;
            let mut open = || records.reopen(spilled.as_ref());
            let (result, proposal, skipped) = commands::calibrate(
                &model,
                &source,
                score.as_deref(),
                records.now()?,
                &records.spec()?,
                &mut open,
                (threads(), records.lines()),
                allow_sign_change,
            )?;
            records.emit(&result, result.text(), &skipped)?;
            if let (Some(path), Some(text)) = (write, proposal) {
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
        Command::Run {
            connection,
            connections,
            parallel,
            crm_url,
            listen,
            state,
        } => {
            let source = match (connection, connections) {
                (_, Some(dir)) => leadscored::daemon::Source::Directory(dir),
                (Some(file), None) => leadscored::daemon::Source::Connection(file),
                (None, None) => {
                    return Err(CommandError::Data(
                        "run: give --connection FILE or --connections DIR".to_owned(),
                    ));
                }
            };
            leadscored::daemon::run(leadscored::daemon::Options {
                source,
                parallel,
                crm_url,
                state_dir: state.resolve(),
                listen,
            })?;
            Ok(exit::OK)
        }
        Command::Sync {
            connection: path,
            once: _,
            full,
            rescore,
            since,
            dry_run,
            json,
            crm_url,
            now,
            state,
        } => {
            let connection = load_connection(&path, crm_url.as_deref())?;
            let now = commands::resolve_now(now.as_deref())?;
            let since = match since {
                None => None,
                Some(text) => Some(commands::resolve_now(Some(&text))?.as_millisecond()),
            };
            let kind = match (full, rescore) {
                (true, _) => leadscored::sync::PassKind::Full,
                (false, true) => leadscored::sync::PassKind::Rescore,
                (false, false) => leadscored::sync::PassKind::Incremental,
            };
            let pass = leadscored::sync::Pass {
                kind,
                now,
                dry_run,
                since,
            };
            let state_path = leadscored::state::default_path(&state.resolve(), &path);
            let stdout = std::io::stdout();
            let output = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let report = commands::sync_once(&connection, &state_path, pass, json, output)?;
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
            let connection = load_connection(&connection, crm_url.as_deref())?;
            let (text, report) = commands::setup(&connection, !check)?;
            print(&text)?;
            if report.conflicts.is_empty()
                && report.missing.is_empty()
                && report.missing_inputs.is_empty()
            {
                Ok(exit::OK)
            } else {
                Ok(exit::CONFIG)
            }
        }
        Command::Explain {
            config,
            input,
            connection,
            crm_url,
            state,
            id,
            now,
            verbose,
            companies,
        } => {
            let now = commands::resolve_now(now.as_deref())?;
            let text = match (connection, config, input) {
                (Some(path), _, _) => {
                    let connection = load_connection(&path, crm_url.as_deref())?;
                    let state_path = leadscored::state::default_path(&state.resolve(), &path);
                    commands::explain_stored(&connection, &state_path, &id, now, verbose)?
                }
                (None, Some(config), Some(input)) => {
                    let model = commands::load_model(&config)?;
                    let what = if companies {
                        commands::Lines::Companies
                    } else {
                        commands::Lines::Contacts
                    };
                    commands::explain(&model, now, open(&input)?, &id, verbose, what)?
                }
                _ => {
                    return Err(CommandError::Data(
                        "explain needs --config and --input, or --connection".to_owned(),
                    ));
                }
            };
            print(&text)?;
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

/// Reads a connection file, pointed at `--crm-url` when given.
fn load_connection(
    path: &std::path::Path,
    crm_url: Option<&str>,
) -> Result<leadscored::config::Connection, CommandError> {
    let mut connection = leadscored::config::Connection::load(path)?;
    if let Some(url) = crm_url {
        connection
            .override_base_url(url)
            .map_err(CommandError::Data)?;
    }
    Ok(connection)
}

/// Writes an HTML report and says where.
fn write_page(path: &std::path::Path, html: &str) -> Result<(), CommandError> {
    std::fs::write(path, html).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
    })?;
    eprintln!("report written to {}", path.display());
    Ok(())
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
