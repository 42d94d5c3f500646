//! `[webhooks]`: HubSpot webhook deliveries to the daemon, and the check
//! that a schedule fits the daily API budget.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{CrmKind, DaemonSettings, Limits, Schedule, SecretSource};
use crate::model::diagnostics::Diagnostics;

/// `[webhooks]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhooks {
    /// The target URL set in the HubSpot app, as HubSpot calls it.
    pub url: Spanned<String>,
    /// The app's client secret (HubSpot signs deliveries with it).
    pub secret: Spanned<super::raw::RawSecret>,
    pub queue: Option<Spanned<i64>>,
    pub gather_ms: Option<Spanned<i64>>,
    pub max_body_kb: Option<Spanned<i64>>,
}

/// Validated `[webhooks]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhooks {
    /// The public target URL HubSpot signs (behind the reverse proxy).
    pub url: String,
    pub secret: SecretSource,
    /// Record and company ids waiting at most; past that, changes are left
    /// to the next incremental pass (run at once).
    pub queue: usize,
    /// How long the first waiting change waits for others to join its pass.
    pub gather: Duration,
    /// The largest delivery body accepted (413 past it).
    pub max_body: usize,
}

/// Where the daemon takes deliveries (behind the reverse proxy).
pub const PATH: &str = "/webhooks/hubspot";

pub(crate) fn webhooks(
    d: &mut Diagnostics<'_>,
    raw: RawWebhooks,
    kind: CrmKind,
    daemon: &DaemonSettings,
) -> Option<Webhooks> {
    let url_text = raw.url.get_ref().trim();
    if kind != CrmKind::Hubspot {
        d.error(
            &raw.url.span(),
            "[webhooks]: only HubSpot sends webhooks; Account Engagement (Pardot) has none, so give [daemon] incremental a short interval instead (it is checked against the daily budget)",
        );
        return None;
    }
    if daemon.listen.is_none() {
        d.error(
            &raw.url.span(),
            "[webhooks]: deliveries come to the daemon's HTTP listener, but [daemon] listen is \"off\"",
        );
    }
    let url = match url_text.split_once("://") {
        Some(("https" | "http", rest)) if !rest.is_empty() => Some(url_text.to_owned()),
        _ => {
            d.error(
                &raw.url.span(),
                format!(
                    "[webhooks] url: expected the target URL set in the HubSpot app, e.g. \"https://leads.example.com{PATH}\", got {url_text:?}"
                ),
            );
            None
        }
    };
    let secret = super::secret(d, &raw.secret, "[webhooks] secret");
    let mut range =
        |value: &Option<Spanned<i64>>, low: i64, high: i64, name: &str, default: i64| match value {
            Some(v) if (low..=high).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => {
                d.error(
                    &v.span(),
                    format!(
                        "[webhooks] {name} must be between {low} and {high}, got {}",
                        v.get_ref()
                    ),
                );
                default
            }
            None => default,
        };
    let queue = range(&raw.queue, 1, 10_000_000, "queue", 100_000) as usize;
    let gather = Duration::from_millis(range(&raw.gather_ms, 0, 60_000, "gather_ms", 1_000) as u64);
    let max_body = range(&raw.max_body_kb, 1, 65_536, "max_body_kb", 1_024) as usize * 1024;
    Some(Webhooks {
        url: url?,
        secret: secret?,
        queue,
        gather,
        max_body,
    })
}

/// Calls one pass costs at least when nothing changed: the pull's first
/// page, and per CRM what every pass reads around the records.
pub fn idle_pass_calls(kind: CrmKind, streams: u64, companies: bool, lists: bool) -> u64 {
    match kind {
        // The search page, one call per engagement stream, the changed
        // companies' search, the lists' search.
        CrmKind::Hubspot => 1 + streams + u64::from(companies) + u64::from(lists),
        // The prospects query, and the visitor activities query when the
        // model reads engagement.
        CrmKind::Pardot => 1 + u64::from(streams > 0),
    }
}

/// Passes a schedule starts in a day (the busiest of the next week).
pub fn passes_a_day(schedule: &Schedule) -> u64 {
    match schedule {
        Schedule::Off => 0,
        Schedule::Every(every) => 86_400 / every.as_secs().max(1),
        Schedule::Cron(expr) => cron_fires_a_day(expr),
    }
}

fn cron_fires_a_day(expr: &str) -> u64 {
    let Ok(cron) = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
    else {
        return 0;
    };
    let start = chrono::Utc::now();
    let mut busiest = 0;
    for day in 0..7 {
        let from = start + chrono::Duration::days(day);
        let until = from + chrono::Duration::days(1);
        // A schedule firing every second is 86,400 a day: count no further.
        let fires = cron
            .iter_after(from)
            .take_while(|at| *at <= until)
            .take(86_401)
            .count() as u64;
        busiest = busiest.max(fires);
    }
    busiest
}

/// Refuses an incremental schedule whose idle passes alone would spend
/// more than half of the daily budget left to leadscored: the rest is for
/// the records that change, and for rescore passes.
pub(crate) fn check_budget(
    d: &mut Diagnostics<'_>,
    span: &std::ops::Range<usize>,
    daemon: &DaemonSettings,
    limits: &Limits,
    idle_calls: u64,
) {
    let passes = passes_a_day(&daemon.incremental);
    let cost = passes * idle_calls;
    let ours = (limits.daily as f64 * (1.0 - limits.daily_headroom)) as u64;
    if cost * 2 > ours {
        let fits = (ours / 2 / idle_calls.max(1)).max(1);
        let every = 86_400_u64.div_ceil(fits);
        d.error(
            span,
            format!(
                "incremental: {} starts {passes} passes a day, and each costs at least {idle_calls} calls even when nothing changed: {cost} calls, more than half of the {ours} a day left to leadscored ({} daily, {:.0}% headroom); run it at most {fits} times a day (\"every {every}s\" or longer)",
                daemon.incremental,
                limits.daily,
                limits.daily_headroom * 100.0,
            ),
        );
    }
}
