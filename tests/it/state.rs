//! The state suite, run on both backends: a SQLite file, and a schema in
//! PostgreSQL (the server in `LEADSCORED_TEST_POSTGRES`, which `.ci/run`
//! always starts; without it the PostgreSQL runs say so and skip). Every
//! method is held to the same answers on both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use leadscored::config::{SecretSource, StateStore};
use leadscored::crm::{CrmCompany, CrmEvent, CrmRecord, StreamEvent};
use leadscored::state::{RunLog, State, StateError, StreamsMark, WriteOutcome, open_store};
use rustc_hash::FxHashSet;

const IDENTITY: &str = "hubspot https://api.hubapi.com";

/// A backend to run the suite on.
pub(crate) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres { url: String },
}

impl Backend {
    pub(crate) fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// The test server, or `None` (said on stderr) when none is given.
    pub(crate) fn postgres(test: &str) -> Option<Backend> {
        match std::env::var("LEADSCORED_TEST_POSTGRES") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres { url }),
            _ => {
                assert!(
                    std::env::var_os("LEADSCORED_TEST_POSTGRES_REQUIRED").is_none(),
                    "{test}: LEADSCORED_TEST_POSTGRES_REQUIRED is set but no server is given"
                );
                eprintln!(
                    "SKIPPED {test}: no PostgreSQL given (eval \"$(.ci/postgres)\" starts one; CI always does)"
                );
                None
            }
        }
    }

    /// Where `[state]` says the state lives.
    pub(crate) fn store(&self) -> StateStore {
        match self {
            Backend::Sqlite(_) => StateStore::File,
            Backend::Postgres { url } => StateStore::Postgres {
                url: url.clone(),
                password: Some(SecretSource::Env(
                    "LEADSCORED_TEST_POSTGRES_PASSWORD".to_owned(),
                )),
            },
        }
    }

    /// The state path of a connection named `name` unique to this run (the
    /// PostgreSQL schema is found by the stem).
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!(
            "{name}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            jiff::Timestamp::now().as_millisecond()
        );
        match self {
            Backend::Sqlite(dir) => dir.path().join(format!("{unique}.sqlite3")),
            Backend::Postgres { .. } => std::env::temp_dir().join(format!("{unique}.sqlite3")),
        }
    }

    pub(crate) fn open(&self, path: &Path) -> Result<State, StateError> {
        open_store(&self.store(), path, IDENTITY)
    }
}

fn record(id: &str, modified_ms: i64, values: &[(&str, &str)]) -> CrmRecord {
    CrmRecord {
        id: id.to_owned(),
        modified_ms,
        values: values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        events: vec![CrmEvent {
            id: format!("{id}-e1"),
            kind: "page_view".to_owned(),
            at_ms: modified_ms - 10,
            attributes: vec![("url".to_owned(), "https://x.example/pricing".to_owned())],
        }],
        lists: Vec::new(),
        detail_skipped: false,
    }
}

fn event(key: &str, id: &str, at_ms: i64) -> StreamEvent {
    StreamEvent {
        key: key.to_owned(),
        event: CrmEvent {
            id: id.to_owned(),
            kind: "email_open".to_owned(),
            at_ms,
            attributes: vec![("campaign".to_owned(), "launch".to_owned())],
        },
    }
}

/// Every method, with the answers both backends must give.
fn suite(backend: &Backend) {
    let path = backend.path("suite");
    let mut state = backend.open(&path).expect("opens");

    // Identity and the CRM account.
    assert_eq!(state.portal().expect("portal"), None);
    state.claim_portal("1234").expect("claims");
    state.claim_portal("1234").expect("same account again");
    assert!(matches!(
        state.claim_portal("9999"),
        Err(StateError::Foreign { .. })
    ));
    // One holder at a time.
    assert!(matches!(
        backend.open(&path),
        Err(StateError::Locked { .. })
    ));

    // The daily budget: never less than recorded; old days forgotten.
    state.save_calls("2026-11-01", 10).expect("calls");
    state.save_calls("2026-11-01", 7).expect("calls");
    assert_eq!(state.calls_on("2026-11-01").expect("calls"), 10);
    state.save_calls("2026-11-20", 3).expect("calls");
    assert_eq!(state.calls_on("2026-11-01").expect("calls"), 0);
    assert_eq!(state.calls_on("2026-11-20").expect("calls"), 3);

    // Pulled records, in byte order of their ids (as SQLite sorts).
    let ids = ["9", "10", "B", "a", "b"];
    let records: Vec<CrmRecord> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let company = if i % 2 == 0 { "c1" } else { "c2" };
            let industry = if i < 3 { "Software" } else { "" };
            record(
                id,
                1_000 + i as i64,
                &[
                    ("associatedcompanyid", company),
                    ("email", &format!("Person{id}@X.example")),
                    ("industry", industry),
                ],
            )
        })
        .collect();
    assert!(state.save_pulled(&records).expect("saves").is_empty());
    assert_eq!(state.count().expect("count"), 5);
    let paged: Vec<String> = state
        .records_after("", 2)
        .expect("page")
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(paged, ["10", "9"]);
    let rest: Vec<String> = state
        .records_after("9", 10)
        .expect("page")
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(rest, ["B", "a", "b"]);
    let (stored, written) = state.record("a").expect("reads").expect("stored");
    assert_eq!(stored.modified_ms, 1_003);
    assert_eq!(stored.events.len(), 1);
    assert_eq!(
        stored.events[0].attributes[0].1,
        "https://x.example/pricing"
    );
    assert!(written.is_empty());
    assert_eq!(state.record("nobody").expect("reads"), None);
    let seen = state.seen_since(1_003).expect("seen");
    assert_eq!(seen.len(), 2);
    assert_eq!(seen.get("b"), Some(&1_004));

    // A record moving to another company reports the one it left.
    let moved = record("9", 2_000, &[("associatedcompanyid", "c3")]);
    assert_eq!(state.save_pulled(&[moved]).expect("saves"), ["c1"]);
    assert_eq!(
        state.record_companies().expect("companies"),
        ["c1", "c2", "c3"]
    );
    let mut of_c2 = state
        .records_of_companies(&["c2".to_owned()])
        .expect("records");
    of_c2.sort();
    assert_eq!(of_c2, ["10", "a"]);

    // Companies.
    let company = CrmCompany {
        id: "c1".to_owned(),
        modified_ms: 500,
        values: BTreeMap::from([("numemployees".to_owned(), "250".to_owned())]),
    };
    state.save_companies(&[company]).expect("companies");
    let values = state.company("c1").expect("reads").expect("stored");
    assert!(format!("{values:?}").contains("250"), "{values:?}");
    assert!(state.company("c9").expect("reads").is_none());
    assert_eq!(
        state.company_ids().expect("ids"),
        FxHashSet::from_iter(["c1".to_owned()])
    );
    let b = state.record("B").expect("reads").expect("stored").0;
    assert!(state.company_of(&b).expect("reads").is_some());
    let outputs = BTreeMap::from([("leadscored_account".to_owned(), "81".to_owned())]);
    state
        .save_company_written(&[("c1".to_owned(), outputs.clone())])
        .expect("saves");
    assert_eq!(state.company_written("c1").expect("reads"), outputs);
    assert!(state.company_written("c2").expect("reads").is_empty());

    // Writes, failures, retries.
    let ours = BTreeMap::from([("leadscored_score".to_owned(), "42".to_owned())]);
    state
        .save_writes(
            &[WriteOutcome {
                id: "a",
                written: &ours,
                stamp: Some(5_000),
            }],
            &[("b".to_owned(), "HubSpot said 400".to_owned())],
            &[],
            7_000,
        )
        .expect("writes");
    let (a, written) = state.record("a").expect("reads").expect("stored");
    assert_eq!(written, ours);
    assert_eq!(
        a.values.get("leadscored_score").map(String::as_str),
        Some("42")
    );
    assert_eq!(
        state.seen_since(5_000).expect("seen").get("a"),
        Some(&5_000)
    );
    state
        .save_writes(&[], &[("b".to_owned(), "again".to_owned())], &[], 8_000)
        .expect("writes");
    assert_eq!(
        state.failed().expect("failed"),
        [("b".to_owned(), "again".to_owned(), 2)]
    );
    assert_eq!(state.failed_ids(3).expect("failed"), ["b"]);
    assert!(state.failed_ids(2).expect("failed").is_empty());
    state
        .save_writes(&[], &[], &["b".to_owned()], 9_000)
        .expect("settles");
    assert!(state.failed().expect("failed").is_empty());

    // Lists, and a record's context (its lists, events, company).
    let members = FxHashSet::from_iter(["a".to_owned(), "B".to_owned()]);
    state
        .save_list("customers", "17", "k1", &members)
        .expect("list");
    assert_eq!(
        state.list("customers").expect("list"),
        Some(("17".to_owned(), "k1".to_owned()))
    );
    assert_eq!(state.list_members("customers").expect("members"), members);
    let smaller = FxHashSet::from_iter(["a".to_owned()]);
    state
        .save_list("customers", "17", "k2", &smaller)
        .expect("list");
    assert_eq!(state.list_members("customers").expect("members"), smaller);

    // Events from streams: each occurrence once, by id or email address.
    let fresh = state
        .save_events(&[
            event("a", "o1", 3_000),
            event("email:persona@x.example", "o2", 3_100),
            event("a", "o1", 3_000),
        ])
        .expect("events");
    assert_eq!(fresh, ["a", "email:persona@x.example"]);
    assert!(
        state
            .save_events(&[event("a", "o1", 3_000)])
            .expect("events")
            .is_empty()
    );
    let mut a = state.record("a").expect("reads").expect("stored").0;
    let company = state.context(&mut a).expect("context");
    assert!(company.is_none(), "a's company c2 is not stored");
    assert_eq!(a.lists, ["customers"]);
    let kinds: Vec<&str> = a.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(
        state
            .records_of_keys(&["email:persona@x.example".to_owned(), "b".to_owned()])
            .expect("keys"),
        ["a", "b"]
    );
    assert_eq!(
        state.event_counts().expect("counts"),
        BTreeMap::from([("email_open".to_owned(), 2)])
    );
    assert_eq!(state.events_between(3_000, 3_050).expect("between"), 1);

    // Distribution of values as the CRM holds them.
    let counts = state
        .distribution(&["industry", "leadscored_score"])
        .expect("counts");
    assert_eq!(counts["industry"].get("Software"), Some(&2));
    assert_eq!(counts["industry"].get("(empty)"), Some(&3));
    assert_eq!(counts["leadscored_score"].get("42"), Some(&1));

    // Marks.
    assert_eq!(state.watermark().expect("mark"), None);
    state
        .finish_pull(12_345, "inputs-1", "model-1")
        .expect("finishes");
    assert_eq!(state.watermark().expect("mark"), Some(12_345));
    assert_eq!(
        state.fingerprint().expect("fp").as_deref(),
        Some("inputs-1")
    );
    assert_eq!(
        state.model_fingerprint().expect("fp").as_deref(),
        Some("model-1")
    );
    let mark = StreamsMark {
        until_ms: 99,
        reach: BTreeMap::from([("email_open".to_owned(), i64::MIN)]),
    };
    state.set_streams_mark(&mark).expect("mark");
    assert_eq!(state.streams_mark().expect("mark"), Some(mark));

    // The run log.
    let row = state.begin_run("r1", "incremental", 100).expect("run");
    let row2 = state.begin_run("r2", "rescore", 200).expect("run");
    assert!(row2 > row);
    state
        .end_run(
            row,
            &RunLog {
                run_id: "r1".to_owned(),
                kind: "incremental".to_owned(),
                started_ms: 100,
                ended_ms: Some(150),
                outcome: Some("ok".to_owned()),
                pulled: 5,
                changed: 2,
                written: 2,
                failed: 0,
                calls: 4,
                watermark_ms: Some(12_345),
                message: None,
            },
        )
        .expect("ends");
    assert_eq!(state.close_abandoned_runs(300).expect("closes"), 1);
    let runs = state.runs(10).expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].run_id, "r2");
    assert_eq!(runs[0].outcome.as_deref(), Some("abandoned"));
    assert_eq!(runs[1].pulled, 5);
    assert_eq!(runs[1].watermark_ms, Some(12_345));

    // Deleted records go with their failures, events and memberships.
    state
        .save_writes(&[], &[("a".to_owned(), "x".to_owned())], &[], 1)
        .expect("fails");
    assert_eq!(state.forget(&["a".to_owned()]).expect("forgets"), ["c2"]);
    assert!(state.record("a").expect("reads").is_none());
    assert!(state.failed().expect("failed").is_empty());
    assert!(state.list_members("customers").expect("members").is_empty());
    assert_eq!(state.count().expect("count"), 4);

    // New inputs: watermark, companies, lists, events go; records stay.
    state.restart_inputs("inputs-2").expect("restarts");
    assert_eq!(state.watermark().expect("mark"), None);
    assert_eq!(
        state.fingerprint().expect("fp").as_deref(),
        Some("inputs-2")
    );
    assert!(state.company_ids().expect("ids").is_empty());
    assert!(state.event_counts().expect("counts").is_empty());
    assert!(state.seen_since(0).expect("seen").is_empty());
    assert_eq!(state.count().expect("count"), 4);

    // Released: another opener takes it, and sees what was saved; a
    // reader needs no lock.
    drop(state);
    let reader = leadscored::state::open_store_read_only(&backend.store(), &path, IDENTITY)
        .expect("reads")
        .expect("exists");
    assert!(reader.read_only());
    assert_eq!(reader.count().expect("count"), 4);
    let again = backend.open(&path).expect("reopens");
    assert_eq!(again.portal().expect("portal").as_deref(), Some("1234"));
    assert!(matches!(
        open_store(
            &backend.store(),
            &path,
            "hubspot https://api-eu1.hubapi.com"
        ),
        Err(StateError::Foreign { .. } | StateError::Locked { .. })
    ));
    drop(again);
    assert!(matches!(
        open_store(
            &backend.store(),
            &path,
            "hubspot https://api-eu1.hubapi.com"
        ),
        Err(StateError::Foreign { .. })
    ));
    let missing = backend.path("never-made");
    assert!(
        leadscored::state::open_store_read_only(&backend.store(), &missing, IDENTITY)
            .expect("reads")
            .is_none()
    );
}

#[test]
fn state_suite_on_sqlite() {
    suite(&Backend::sqlite());
}

#[test]
fn state_suite_on_postgres() {
    if let Some(backend) = Backend::postgres("state_suite_on_postgres") {
        suite(&backend);
    }
}

/// A raw session to the test server, as an admin or another instance.
pub(crate) fn raw_client(url: &str) -> postgres::Client {
    let mut config: postgres::Config = url.parse().expect("url");
    let password = std::env::var("LEADSCORED_TEST_POSTGRES_PASSWORD").unwrap_or_default();
    config.password(password);
    config.connect(postgres::NoTls).expect("connects")
}

#[test]
fn postgres_fencing_refuses_a_stale_owner_and_frees_the_lock_with_the_session() {
    let Some(backend) = Backend::postgres("postgres_fencing") else {
        return;
    };
    let Backend::Postgres { url } = &backend else {
        return;
    };
    let path = backend.path("fence");
    let name = path
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let first = backend.open(&path).expect("opens");
    first.save_calls("2026-11-20", 1).expect("the owner writes");

    // Another instance cannot open it while the first's session lives.
    assert!(matches!(
        backend.open(&path),
        Err(StateError::Locked { .. })
    ));

    // Another owner's claim (the token raised behind the first's back, as
    // a claim after a lost session does) fences the first one off.
    let mut admin = raw_client(url);
    admin
        .execute(
            "UPDATE leadscored.connections SET token = token + 1 WHERE name = $1",
            &[&name],
        )
        .expect("raises the token");
    let refused = first
        .save_calls("2026-11-20", 5)
        .expect_err("stale owner refused");
    assert!(refused.lost(), "{refused}");
    assert!(refused.to_string().contains("fencing token"), "{refused}");
    // Its session closed with the refusal: it works no more, not even to
    // read, and its lock is free.
    assert!(first.calls_on("2026-11-20").expect_err("closed").lost());
    assert_eq!(
        eventually_open(&backend, &path)
            .calls_on("2026-11-20")
            .expect("reads"),
        1
    );

    // The lock goes with the session (as with a kill -9): a new owner
    // opens at once, with a higher token, and writes.
    drop(first);
    let second = eventually_open(&backend, &path);
    second
        .save_calls("2026-11-20", 7)
        .expect("new owner writes");
    let row = admin
        .query_one(
            "SELECT token, owner FROM leadscored.connections WHERE name = $1",
            &[&name],
        )
        .expect("row");
    assert!(row.get::<_, i64>(0) >= 3);
    assert!(row.get::<_, String>(1).contains(':'));

    // A password in the URL is refused without echoing it.
    let with_password = url.replacen("leadscored@", "leadscored:hunter2@", 1);
    let error = open_store(
        &StateStore::Postgres {
            url: with_password,
            password: None,
        },
        &backend.path("pw"),
        IDENTITY,
    )
    .expect_err("refused");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

/// Opens `path`, waiting a moment for the server to end a closed session.
pub(crate) fn eventually_open(backend: &Backend, path: &Path) -> State {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match backend.open(path) {
            Ok(state) => return state,
            Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot reopen: {e}"),
        }
    }
}
