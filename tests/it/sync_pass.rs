//! One sync pass against the fake HubSpot: a dry run writes nothing and
//! reports every change; a real pass writes them; the next pass has
//! nothing left to write.

use leadscored::crm::hubspot::Hubspot;
use leadscored::crm::{Crm as _, PullKind};
use leadscored::fake::{FakeHubspot, spawn_hubspot};
use leadscored::sync::{Pass, run_pass};

use super::hubspot_flows::{connection, fake_config, stats};

const FAST: &str = "per_ten_seconds = 10000\nsearch_per_second = 1000\nconcurrency = 4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_then_sync_then_nothing_left() {
    let fake = spawn_hubspot(FakeHubspot::new(fake_config(1_500)))
        .await
        .expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let connection = connection(&fake.url(), FAST, &dir);
    let crm = Hubspot::new(&connection).expect("connector");
    crm.setup(&connection.property_specs(), true)
        .await
        .expect("setup");
    let now = jiff::Timestamp::now();
    let pass = |dry_run| Pass {
        kind: PullKind::Full,
        now,
        dry_run,
    };

    let mut planned = Vec::new();
    let dry = run_pass(&crm, &connection, pass(true), |c| planned.push(c.clone()))
        .await
        .expect("dry run");
    assert_eq!(dry.pulled, 1_500);
    assert_eq!(dry.changed, 1_500, "every contact gets its first scores");
    assert_eq!(planned.len(), 1_500);
    assert_eq!(dry.write_cost, 15);
    assert_eq!((dry.written, dry.write_calls), (0, 0));
    let written = |s: &serde_json::Value| s["requests"]["contacts written"].as_u64().unwrap_or(0);
    assert_eq!(written(&stats(&fake).await), 0, "a dry run writes nothing");
    let tiers = &dry.after["leadscored_tier"];
    assert_eq!(tiers.values().sum::<u64>(), 1_500);
    assert_eq!(dry.before["leadscored_tier"]["(empty)"], 1_500);

    let real = run_pass(&crm, &connection, pass(false), |_| {})
        .await
        .expect("sync");
    assert_eq!(real.written, 1_500);
    assert!(real.failed.is_empty(), "{:?}", real.failed);
    assert_eq!(real.write_calls, 15, "full batches of 100");
    assert_eq!(written(&stats(&fake).await), 1_500);

    let again = run_pass(&crm, &connection, pass(false), |_| {})
        .await
        .expect("second sync");
    assert_eq!(again.changed, 0, "nothing moved, nothing written");
    assert_eq!(again.write_calls, 0);
    assert_eq!(again.before, again.after);
}
