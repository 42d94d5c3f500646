//! The Pardot connector against the built-in fake Pardot, through the sync
//! engine: custom-field setup, a first sync that crosses the page token's
//! record limit (restarting the query without missing or repeating a
//! prospect) and writes every prospect with at most five requests at once,
//! then an incremental pass that recognises its own echoes.

use leadscored::config::Connection;
use leadscored::crm::{Connector, Crm as _};
use leadscored::fake::{FakePardot, PardotConfig, spawn_pardot};
use leadscored::state::State;
use leadscored::sync::{Pass, PassKind, Stop, run_pass};

const TOKEN: &str = "fake-pardot-access-token";

/// The example Pardot connection with a token file instead of OAuth,
/// pointed at `url`.
pub fn pardot_connection(url: &str, dir: &tempfile::TempDir) -> Connection {
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let example = crate::read("config/pardot.toml");
    let (head, rest) = example.split_once("[crm.oauth]").expect("an oauth block");
    let limits = rest.find("[limits]").expect("a limits section");
    let source = format!(
        "{head}token = {{ file = {:?} }}\n\n{}",
        token.display().to_string(),
        rest[limits..].replace(
            "[limits]\n",
            "[limits]\nbackoff_base_ms = 5\nbackoff_max_secs = 0.2\nsearch_overlap_secs = 1\n"
        )
    );
    let mut connection = Connection::parse(
        "config/pardot.toml",
        &source,
        &crate::root().join("config"),
        None,
    )
    .unwrap_or_else(|e| panic!("the connection loads: {e}"));
    connection.override_base_url(url).expect("a local URL");
    connection
}

fn pass(kind: PassKind, dry_run: bool) -> Pass {
    Pass {
        kind,
        now: jiff::Timestamp::now(),
        dry_run,
        since: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_sync_against_the_fake_pardot() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 2_500,
        token_record_limit: 1_000,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = pardot_connection(&fake.url(), &dir);
    let crm = Connector::new(&connection).expect("connector");

    let specs = connection.property_specs();
    let made = crm.setup(&specs, true).await.expect("setup");
    assert_eq!(made.created.len(), 5, "{made:?}");
    let again = crm.setup(&specs, false).await.expect("check");
    assert_eq!(again.existing.len(), 5, "{again:?}");
    assert!(again.conflicts.is_empty() && again.missing.is_empty());

    let mut state =
        State::open(&dir.path().join("state.sqlite3"), &connection.identity()).expect("state");
    let mut ids = std::collections::BTreeSet::new();
    let first = run_pass(
        &crm,
        &connection,
        Some(&mut state),
        pass(PassKind::Incremental, false),
        &Stop::default(),
        |change| {
            assert!(ids.insert(change.id.clone()), "{} came twice", change.id);
        },
    )
    .await
    .expect("first sync");
    assert_eq!(first.pulled, 2_500, "{first:?}");
    assert_eq!(ids.len(), 2_500, "every prospect once");
    assert_eq!(first.written, 2_500);
    assert!(first.failed.is_empty(), "{:?}", first.failed);
    assert!(first.detail_calls >= 2_500, "activities per prospect");

    let stats: serde_json::Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert!(
        stats["max_in_flight"].as_u64().unwrap_or(99) <= 5,
        "{stats}"
    );
    assert_eq!(stats["rejected_concurrency"], 0, "{stats}");
    assert!(
        stats["cut_off_queries"].as_u64().unwrap_or(0) >= 2,
        "the token limit was crossed: {stats}"
    );

    // Pardot's times have second precision: let the writes fall behind.
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let second = run_pass(
        &crm,
        &connection,
        Some(&mut state),
        pass(PassKind::Incremental, false),
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("second sync");
    assert_eq!(
        second.unchanged, second.pulled,
        "only our own echoes: {second:?}"
    );
    assert_eq!(second.detail_calls, 0);
    assert_eq!(second.changed, 0, "{second:?}");

    let check = run_pass(
        &crm,
        &connection,
        None,
        pass(PassKind::Full, true),
        &Stop::default(),
        |_| {},
    )
    .await
    .expect("dry run");
    assert_eq!(check.pulled, 2_500);
    assert_eq!(check.changed, 0, "every prospect holds its scores");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_150000_prospects_across_the_token_limit_once_each() {
    let fake = spawn_pardot(FakePardot::new(PardotConfig {
        prospects: 150_000,
        daily: 1_000_000,
        ..PardotConfig::default()
    }))
    .await
    .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    // Fields only: this is about paging, not activities.
    let source_events = "email_click = \"off\"\nad_click = \"off\"\nemail_unsubscribe = \"off\"\nwebinar = \"off\"\n".to_owned()
        + "email_open = \"off\"\npage_view = \"off\"\ncontent_download = \"off\"\nform_submission = \"off\"\n";
    let text = crate::read("config/pardot.toml");
    let trimmed: String = text
        .lines()
        .filter(|l| {
            ![
                "email_open =",
                "page_view =",
                "content_download =",
                "form_submission =",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(trimmed.contains("[events]"));
    let connection = {
        let token = dir.path().join("token");
        std::fs::write(&token, TOKEN).expect("token file");
        let (head, rest) = trimmed.split_once("[crm.oauth]").expect("an oauth block");
        let limits = rest.find("[limits]").expect("a limits section");
        let source = format!(
            "{head}token = {{ file = {:?} }}\n\n{}",
            token.display().to_string(),
            rest[limits..].replace("[events]\n", &format!("[events]\n{source_events}"))
        );
        let mut c = Connection::parse(
            "config/pardot.toml",
            &source,
            &crate::root().join("config"),
            None,
        )
        .unwrap_or_else(|e| panic!("the connection loads: {e}"));
        c.override_base_url(&fake.url()).expect("a local URL");
        c
    };
    assert!(connection.events.is_empty());
    let crm = Connector::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    for kind in [
        leadscored::crm::PullKind::Full,
        leadscored::crm::PullKind::Since(0),
    ] {
        let spec = leadscored::crm::PullSpec {
            kind,
            fields: connection.fields(),
            event_types: Vec::new(),
            until_ms: jiff::Timestamp::now().as_millisecond(),
            known: Default::default(),
        };
        let (sink, mut pages) = tokio::sync::mpsc::channel::<Vec<leadscored::crm::CrmRecord>>(4);
        let collect = async {
            let mut seen = std::collections::HashSet::new();
            let mut repeated = 0u64;
            while let Some(page) = pages.recv().await {
                for record in page {
                    if !seen.insert(record.id) {
                        repeated += 1;
                    }
                }
            }
            (seen.len(), repeated)
        };
        let (pulled, (unique, repeated)) = tokio::join!(crm.pull(&spec, sink), collect);
        let summary = pulled.expect("pull");
        assert_eq!((unique, repeated), (150_000, 0), "{kind:?}");
        assert_eq!(summary.records, 150_000);
        assert!(summary.pages <= 152, "{kind:?}: {} pages", summary.pages);
    }
    let stats: serde_json::Value = reqwest::get(format!("{}/__fake/stats", fake.url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert!(
        stats["cut_off_queries"].as_u64().unwrap_or(0) >= 2,
        "both pulls crossed the 100,000-record token limit: {stats}"
    );
}
