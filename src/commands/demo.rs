//! `demo`: the whole job on embedded defaults, with no account, no files
//! and no network. The live demo starts the built-in fake HubSpot on
//! 127.0.0.1 with generated contacts and runs the product against it:
//! setup, a first full sync, some contacts edited in the CRM, an
//! incremental sync, then the tier and grade distribution and three
//! contacts explained. `demo --offline` scores a bundled sample instead.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::CommandError;
use crate::engine::{Scorecard, explain_text, summary_line};
use crate::model::Model;

/// The example model shipped in `config/b2b.toml`.
pub const EXAMPLE_MODEL: &str = include_str!("../../config/b2b.toml");
/// Sample contacts shipped in `fixtures/records/sample.jsonl`.
pub const SAMPLE_RECORDS: &str = include_str!("../../fixtures/records/sample.jsonl");
/// The moment the sample is scored at, so the demo prints the same every time.
pub const SAMPLE_NOW: &str = "2026-11-01T00:00:00Z";

/// Scores the bundled sample and returns a table plus the top record's explanation.
pub fn demo_offline() -> Result<String, CommandError> {
    let model = Model::compile("config/b2b.toml (embedded)", EXAMPLE_MODEL)?;
    let now: Timestamp = SAMPLE_NOW
        .parse()
        .map_err(|e| CommandError::Data(format!("{e}")))?;
    let mut rows = Vec::new();
    for (index, line) in SAMPLE_RECORDS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record = model
            .parse_record(line)
            .map_err(|e| CommandError::Data(format!("embedded sample line {}: {e}", index + 1)))?;
        let card = model.score(&record, now);
        rows.push((record, card));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "leadscored demo: model \"{}\", {} sample contacts, scored as of {now}\n",
        model.name(),
        rows.len()
    );
    let _ = writeln!(
        out,
        "{:<8} {:>5} {:>5} {:>5}  {:<5} {:<7} {:<12} summary",
        "id", "fit", "eng", "total", "grade", "tier", "stage"
    );
    let top = rows
        .iter()
        .enumerate()
        .max_by(|a, b| total(&a.1.1).total_cmp(&total(&b.1.1)).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i);
    for (record, card) in &rows {
        let json = crate::engine::CardJson {
            model: &model,
            record_id: record.id(),
            card,
        }
        .to_value();
        let score = &json["scores"]["contact"];
        let _ = writeln!(
            out,
            "{:<8} {:>5} {:>5} {:>5}  {:<5} {:<7} {:<12} {}",
            record.id(),
            score["fit"].to_string(),
            score["engagement"].to_string(),
            score["total"].to_string(),
            score["grade"].as_str().unwrap_or("-"),
            score["tier"].as_str().unwrap_or("-"),
            score["stage"].as_str().unwrap_or("-"),
            summary_line(&model, card, 0)
        );
    }
    if let Some(top) = top {
        let (record, card) = &rows[top];
        let _ = write!(
            out,
            "\nWhy the top contact scores what it does:\n\n{}",
            explain_text(&model, record, card, now)
        );
    }
    Ok(out)
}

fn total(card: &Scorecard) -> f64 {
    card.results().first().map_or(0.0, |r| r.total())
}

/// The example connections shipped in `config/`.
pub const EXAMPLE_CONNECTION: &str = include_str!("../../config/hubspot.toml");
pub const EXAMPLE_PARDOT_CONNECTION: &str = include_str!("../../config/pardot.toml");

/// The fake CRM a live demo runs against.
enum DemoFake {
    Hubspot(crate::fake::RunningFake),
    Pardot(crate::fake::RunningFake),
}

impl DemoFake {
    fn running(&self) -> &crate::fake::RunningFake {
        match self {
            DemoFake::Hubspot(f) | DemoFake::Pardot(f) => f,
        }
    }

    /// Gives some records a new job title, as sales would.
    async fn edit(&self, token: &str, ids: &[(u64, &str)]) -> Result<(), CommandError> {
        let client = reqwest::Client::new();
        let url = self.running().url();
        let refused =
            |e: String| CommandError::Data(format!("the fake CRM refused the edits: {e}"));
        match self {
            DemoFake::Hubspot(_) => {
                let inputs: Vec<serde_json::Value> = ids
                    .iter()
                    .map(|(id, title)| serde_json::json!({ "id": id.to_string(), "properties": { "jobtitle": title } }))
                    .collect();
                let answer = client
                    .post(format!("{url}/crm/v3/objects/contacts/batch/update"))
                    .bearer_auth(token)
                    .json(&serde_json::json!({ "inputs": inputs }))
                    .send()
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                if !answer.status().is_success() {
                    return Err(refused(answer.status().to_string()));
                }
            }
            DemoFake::Pardot(_) => {
                let unit = crate::fake::PardotConfig::default().business_unit_id;
                for (id, title) in ids {
                    let answer = client
                        .patch(format!("{url}/api/v5/objects/prospects/{id}"))
                        .bearer_auth(token)
                        .header("Pardot-Business-Unit-Id", &unit)
                        .json(&serde_json::json!({ "jobTitle": title }))
                        .send()
                        .await
                        .map_err(|e| refused(e.to_string()))?;
                    if !answer.status().is_success() {
                        return Err(refused(answer.status().to_string()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A temporary directory for the demo's token file and state, removed on
/// drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!(
            "leadscored-demo-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bar of `width` cells for `count` of `max`.
fn bar(count: u64, max: u64, width: usize) -> String {
    let cells = if max == 0 {
        0
    } else {
        ((count as f64 / max as f64) * width as f64).round() as usize
    };
    "█".repeat(cells.max(usize::from(count > 0)))
}

/// Prints a histogram with the values in ladder order, best first (the
/// output's own order: tier labels, the grade ladder), then any others.
fn histogram(
    out: &mut String,
    title: &str,
    values: &std::collections::BTreeMap<String, u64>,
    ladder: &[String],
) {
    let max = values.values().copied().max().unwrap_or(0);
    let _ = writeln!(out, "{title}");
    let ordered = ladder
        .iter()
        .rev()
        .chain(values.keys().filter(|v| !ladder.contains(v)));
    for value in ordered {
        let count = values.get(value).copied().unwrap_or(0);
        let _ = writeln!(out, "  {value:<8} {count:>6}  {}", bar(count, max, 40));
    }
}

/// Step 5 of the HubSpot demo: a small company grows and a contact joins
/// the model's list in the CRM; the next incremental pass finds the
/// company with one search and the list change with one list search, and
/// rescores exactly those contacts from the local state.
async fn company_and_list_step(
    out: &mut String,
    fake: &crate::fake::RunningFake,
    crm: &crate::crm::Connector,
    connection: &crate::config::Connection,
    state: &mut crate::state::State,
) -> Result<(), CommandError> {
    // The first small company (ten people or fewer) with three contacts.
    let mut chosen: Option<(String, String, Vec<String>)> = None;
    let mut outside: Option<String> = None;
    let mut after = String::new();
    'search: loop {
        let batch = state.records_after(&after, 500)?;
        let Some((last, _)) = batch.last() else { break };
        after = last.id.clone();
        for (record, _) in &batch {
            if outside.is_none() && record.lists.is_empty() {
                let mut probe = record.clone();
                state.context(&mut probe)?;
                if probe.lists.is_empty() {
                    outside = Some(record.id.clone());
                }
            }
            let Some(company) = record.company_id() else {
                continue;
            };
            let Some(values) = state.company(company)? else {
                continue;
            };
            let small = values
                .get("numberofemployees")
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|n| n <= 10.0);
            let members = state.records_of_companies(&[company.to_owned()])?;
            if small && members.len() >= 3 && chosen.is_none() {
                chosen = Some((company.to_owned(), format!("company {company}"), members));
            }
            if chosen.is_some() && outside.is_some() {
                break 'search;
            }
        }
    }
    let (Some((company, name, members)), Some(joiner)) = (chosen, outside) else {
        return Ok(());
    };
    let client = reqwest::Client::new();
    let refused = |e: String| CommandError::Data(format!("the fake CRM refused the edit: {e}"));
    for (path, body) in [
        (
            format!("/__fake/companies/{company}"),
            serde_json::json!({ "numberofemployees": "250" }),
        ),
        (
            "/__fake/lists/11/members".to_owned(),
            serde_json::json!({ "add": [joiner.parse::<u64>().unwrap_or(1)] }),
        ),
    ] {
        let answer = client
            .post(format!("{}{path}", fake.url()))
            .json(&body)
            .send()
            .await
            .map_err(|e| refused(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(refused(answer.status().to_string()));
        }
    }
    let _ = writeln!(
        out,
        "5. in the CRM, {name} grows from a handful of people to 250 (its {} contacts are not\n   touched), and contact {joiner} joins the list \"Analytics webinar 2026\"",
        members.len()
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let calls = || {
        crm.http()
            .stats
            .calls
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = calls();
    let mut moves: Vec<(u64, String)> = Vec::new();
    let pass = crate::sync::Pass {
        kind: crate::sync::PassKind::Incremental,
        now: jiff::Timestamp::now(),
        dry_run: false,
        since: None,
    };
    let report = crate::sync::run_logged(
        crm,
        connection,
        state,
        pass,
        &crate::sync::Stop::default(),
        |change| {
            if !members.contains(&change.id) && change.id != joiner {
                return;
            }
            let shown: Vec<String> = change
                .changes
                .iter()
                .filter(|c| !c.property.contains("reasons"))
                .map(|c| {
                    format!(
                        "{} {} → {}",
                        c.property.trim_start_matches("leadscored_"),
                        c.old.as_deref().unwrap_or("(empty)"),
                        c.new
                    )
                })
                .collect();
            let id: u64 = change.id.parse().unwrap_or(0);
            moves.push((
                id,
                format!("   contact {}: {}", change.id, shown.join(", ")),
            ));
        },
    )
    .await?;
    let _ = writeln!(
        out,
        "6. incremental sync: {} company changed (one company search), {} list re-read (one list search,\n   one page of members); {} stored contacts rescored from local state without reading them\n   again ({} others re-read by search inside the index-lag overlap, recognised as our own\n   writes); {} written; {} calls",
        report.companies_changed,
        report.lists_read,
        report.moved,
        report.pulled,
        report.written,
        calls() - before
    );
    moves.sort();
    for (_, line) in moves {
        let _ = writeln!(out, "{line}");
    }
    Ok(())
}

/// Runs the live demo against an in-process fake HubSpot (or Pardot) with
/// `contacts` generated people; progress goes to standard error on a
/// terminal.
pub fn demo_live(contacts: u64, kind: crate::config::CrmKind) -> Result<String, CommandError> {
    use crate::crm::{Connector, Crm as _};
    use crate::sync::{Pass, PassKind, Stop, run_logged};

    let scratch = Scratch::new()?;
    let pardot = kind == crate::config::CrmKind::Pardot;
    let token = "demo-local-token";
    let token_file = scratch.0.join("token");
    std::fs::write(&token_file, token)?;
    let model = Model::compile("config/b2b.toml (embedded)", EXAMPLE_MODEL)?;
    let token_line = format!(
        "token = {{ file = {:?} }}",
        token_file.display().to_string()
    );
    let (file, source) = if pardot {
        // The example authenticates with OAuth; the demo with a token file.
        let (head, rest) = EXAMPLE_PARDOT_CONNECTION
            .split_once("[crm.oauth]")
            .unwrap_or((EXAMPLE_PARDOT_CONNECTION, ""));
        let rest = rest.find("[limits]").map_or("", |at| &rest[at..]);
        (
            "config/pardot.toml (embedded)",
            format!("{head}{token_line}\n\n{rest}"),
        )
    } else {
        (
            "config/hubspot.toml (embedded)",
            EXAMPLE_CONNECTION
                .replace("token = { credential = \"hubspot-token\" }", &token_line)
                // Runs seconds apart, not minutes: a one-second index-lag
                // overlap keeps each pass to what changed since the last.
                .replace(
                    "[limits]\n",
                    "[limits]\nper_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 8\nsearch_overlap_secs = 1\n",
                ),
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let fake = if pardot {
            DemoFake::Pardot(
                crate::fake::spawn_pardot(crate::fake::FakePardot::new(
                    crate::fake::PardotConfig {
                        prospects: contacts,
                        seed: 7,
                        token: token.to_owned(),
                        daily: 10_000_000,
                        ..crate::fake::PardotConfig::default()
                    },
                ))
                .await?,
            )
        } else {
            DemoFake::Hubspot(
                crate::fake::spawn_hubspot(crate::fake::FakeHubspot::new(
                    crate::fake::HubspotConfig {
                        contacts,
                        seed: 7,
                        token: token.to_owned(),
                        per_ten_seconds: 100_000,
                        search_per_second: 100_000,
                        ..crate::fake::HubspotConfig::default()
                    },
                ))
                .await?,
            )
        };
        let (crm_name, records) = if pardot {
            ("Pardot", "prospects")
        } else {
            ("HubSpot", "contacts")
        };
        let mut connection = crate::config::Connection::parse(
            file,
            &source,
            std::path::Path::new("config"),
            Some((std::path::PathBuf::from("config/b2b.toml"), model)),
        )?;
        connection
            .override_base_url(&fake.running().url())
            .map_err(CommandError::Data)?;
        // The outputs named after what they hold, whatever the CRM calls them.
        let property = |prefix: &str| {
            connection
                .outputs
                .iter()
                .find(|o| o.property.starts_with(prefix))
                .map(|o| o.property.clone())
                .unwrap_or_default()
        };
        let (score_property, tier_property, grade_property) = (
            property("leadscored_score"),
            property("leadscored_tier"),
            property("leadscored_grade"),
        );
        let crm = Connector::new(&connection)?;
        let mut state = crate::state::State::open(
            &scratch.0.join("demo.sqlite3"),
            &connection.identity(),
        )?;
        let stop = Stop::default();
        let calls = || crm.http().stats.calls.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "leadscored demo: a fake {crm_name} account on {} with {contacts} generated {records}\n(no account, no network), the example model \"{}\".\n",
            fake.running().addr,
            connection.model.name()
        );

        let setup = crm.setup(&connection.property_specs(), true).await?;
        let _ = writeln!(
            out,
            "1. setup: {} properties created, {} already there ({} calls)",
            setup.created.len(),
            setup.existing.len(),
            calls()
        );

        let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            let bar = indicatif::ProgressBar::new(contacts);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "   {msg:<14} [{bar:40}] {pos}/{len} contacts scored and written",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message("first sync");
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut scores: Vec<(String, f64)> = Vec::new();
        let before = calls();
        let started = std::time::Instant::now();
        let pass = |kind| Pass {
            kind,
            now: jiff::Timestamp::now(),
            dry_run: false,
            since: None,
        };
        let first = run_logged(
            &crm,
            &connection,
            &mut state,
            pass(PassKind::Incremental),
            &stop,
            |change| {
                progress.inc(1);
                if let Some(score) = change
                    .changes
                    .iter()
                    .find(|c| c.property == score_property)
                    .and_then(|c| c.new.parse::<f64>().ok())
                {
                    scores.push((change.id.clone(), score));
                }
            },
        )
        .await?;
        progress.finish_and_clear();
        let _ = writeln!(
            out,
            "2. first sync (everything): pulled {} {records} in {} pages; {};\n   wrote {} {records} in {} write calls; {} calls, {:.1} s",
            first.pulled,
            first.pull_pages,
            engagement(&first),
            first.written,
            first.write_calls,
            calls() - before,
            started.elapsed().as_secs_f64()
        );

        // Sales edits some records in the CRM, a moment later (Pardot's
        // times have whole seconds: an edit in the second of our own write
        // would look like its echo).
        if pardot {
            tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        }
        let edited: Vec<(u64, &str)> = (0..contacts.min(60))
            .map(|i| {
                let id = 1 + i * (contacts / 60).max(1);
                let title = if i % 2 == 0 { "Chief Executive Officer" } else { "Student" };
                (id, title)
            })
            .collect();
        fake.edit(token, &edited).await?;
        let _ = writeln!(
            out,
            "3. in the CRM, {} {records} get a new job title (half become CEOs, half students)",
            edited.len()
        );
        // Let the edits (and our own writes) settle behind the new run's
        // start (Pardot's times have whole seconds).
        let settle = if pardot { 1_100 } else { 300 };
        tokio::time::sleep(std::time::Duration::from_millis(settle)).await;

        let before = calls();
        let started = std::time::Instant::now();
        let mut tier_moves: Vec<(String, String, String)> = Vec::new();
        let second = run_logged(
            &crm,
            &connection,
            &mut state,
            pass(PassKind::Incremental),
            &stop,
            |change| {
                if let Some(tier) = change.changes.iter().find(|c| c.property == tier_property) {
                    tier_moves.push((
                        change.id.clone(),
                        tier.old.clone().unwrap_or_else(|| "(empty)".to_owned()),
                        tier.new.clone(),
                    ));
                }
            },
        )
        .await?;
        let _ = writeln!(
            out,
            "4. incremental sync: pulled {} {records} changed since the first sync ({} of them only by\n   our own writes: recognised, no detail fetched, nothing written); {};\n   {} needed new values, written in {} write call(s); {} calls, {:.1} s",
            second.pulled,
            second.unchanged,
            engagement(&second),
            second.written,
            second.write_calls,
            calls() - before,
            started.elapsed().as_secs_f64()
        );

        for (title, wanted) in [
            ("Chief Executive Officer", "new CEOs"),
            ("Student", "new students"),
        ] {
            let ids: Vec<String> = edited
                .iter()
                .filter(|(_, t)| *t == title)
                .map(|(id, _)| id.to_string())
                .collect();
            let mut moves: std::collections::BTreeMap<(String, String), u64> =
                std::collections::BTreeMap::new();
            for (id, old, new) in &tier_moves {
                if ids.contains(id) {
                    *moves.entry((old.clone(), new.clone())).or_default() += 1;
                }
            }
            let moved: u64 = moves.values().sum();
            let detail: Vec<String> = moves
                .iter()
                .map(|((old, new), n)| format!("{n} {old} → {new}"))
                .collect();
            let _ = writeln!(
                out,
                "   what moved: {moved} of the {} {wanted} changed tier{}{}",
                ids.len(),
                if detail.is_empty() { "" } else { ": " },
                detail.join(", ")
            );
        }

        if let DemoFake::Hubspot(running) = &fake {
            company_and_list_step(
                &mut out,
                running,
                &crm,
                &connection,
                &mut state,
            )
            .await?;
        }

        let _ = writeln!(out);
        let ladder = |property: &str| {
            connection
                .outputs
                .iter()
                .find(|o| o.property == property)
                .map(|o| o.options(&connection.model))
                .unwrap_or_default()
        };
        if let Some(tiers) = first.after.get(&tier_property) {
            histogram(&mut out, "Tiers after the first sync", tiers, &ladder(&tier_property));
        }
        if let Some(grades) = first.after.get(&grade_property) {
            histogram(&mut out, "Grades", grades, &ladder(&grade_property));
        }

        // The same three people on every run: ranked by their score as of
        // the moment the fake's generated history ends (today's scores
        // drift as the history ages), explained as written today.
        let now = jiff::Timestamp::now();
        let history_end =
            jiff::Timestamp::from_millisecond(crate::fake::HubspotConfig::default().epoch_ms)
                .unwrap_or(now);
        for (id, score) in scores.iter_mut() {
            if let Some((mut stored, _)) = state.record(id)? {
                let company = state.context(&mut stored)?;
                let record = crate::crm::mapping::to_record(
                    &connection.model,
                    &connection.inputs,
                    &stored,
                    company.as_ref(),
                );
                *score = total(&connection.model.score(&record, history_end));
            }
        }
        scores.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(a.0.len().cmp(&b.0.len()))
                .then(a.0.cmp(&b.0))
        });
        let picks: Vec<&(String, f64)> = [0, scores.len() / 2, scores.len().saturating_sub(1)]
            .iter()
            .filter_map(|&i| scores.get(i))
            .collect();
        for (label, (id, _)) in ["The top contact", "A middling contact", "The lowest contact"]
            .iter()
            .zip(picks)
        {
            if let Some((mut stored, _)) = state.record(id)? {
                let company = state.context(&mut stored)?;
                let record = crate::crm::mapping::to_record(
                    &connection.model,
                    &connection.inputs,
                    &stored,
                    company.as_ref(),
                );
                let card = connection.model.score(&record, now);
                let _ = write!(
                    out,
                    "\n{label} ({crm_name} id {id}), explained:\n\n{}",
                    explain_text(&connection.model, &record, &card, now)
                );
            }
        }
        let kind_flag = if pardot { " --kind pardot" } else { "" };
        let _ = writeln!(
            out,
            "\nNext, the same against a fake CRM that keeps running (paste these):\n\n  leadscored fake-crm{kind_flag} --write-connection /tmp/leadscored-fake.toml &\n  leadscored setup --connection /tmp/leadscored-fake.toml\n  leadscored sync --once --dry-run --connection /tmp/leadscored-fake.toml\n\nand against your portal: leadscored sync --once --dry-run --connection /etc/leadscored/connection.toml"
        );
        Ok(out)
    })
}

/// How a pass read engagement, for the demo's lines.
fn engagement(report: &crate::sync::PassReport) -> String {
    if report.events == "streams" {
        format!(
            "engagement read as streams: {} events in {} calls{}",
            report.stream_events,
            report.stream_calls,
            report
                .detail_estimate
                .map(|d| format!(" (per-contact detail: {d} calls)"))
                .unwrap_or_default()
        )
    } else {
        format!("{} event-detail calls", report.detail_calls)
    }
}
