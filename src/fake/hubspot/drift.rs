//! Time passing at the fake portal (`POST /__fake/advance`): each day a
//! share of the people does something, as in a real portal between two
//! passes — most engage (a visit, an email opened or clicked, a form), some
//! change role (a promotion, which edits `jobtitle` and moves the
//! contact's modified time), and a few change company (their primary
//! association moves, so two companies' people change). Deterministic from
//! the seed and the day, so tests and benches can say what they expect.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{COMPANY_ID, DAY_MS, FakeHubspot, Inner, bad_request, decode};
use crate::fake::people::{GenEvent, Rng};

/// `POST /__fake/advance` body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    /// Days that pass (1–365).
    days: u32,
    /// People who do something each day, as a share of all (default 2 %).
    share: Option<f64>,
}

/// What one day did, for the caller to check against.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Drifted {
    /// Contacts that engaged (events added, their modified time stays).
    engaged: Vec<u64>,
    /// Contacts whose job title changed: (id, old, new).
    promoted: Vec<(u64, String, String)>,
    /// Contacts that moved company: (id, old, new).
    moved: Vec<(u64, String, String)>,
}

/// The next step up from a job title, when there is one.
fn promotion(title: &str) -> Option<String> {
    const ICS: &[&str] = &[
        "Specialist",
        "Analyst",
        "Coordinator",
        "Consultant",
        "Engineer",
    ];
    if let Some(rest) = title.strip_prefix("Director of ") {
        return Some(format!("VP {rest}"));
    }
    for lead in ["Head of ", "Manager "] {
        if let Some(rest) = title.strip_prefix(lead) {
            return Some(format!("Director of {rest}"));
        }
    }
    if let Some((department, role)) = title.rsplit_once(' ')
        && ICS.contains(&role)
    {
        return Some(format!("Head of {department}"));
    }
    match title {
        "Student" | "Intern" | "Trainee" => Some("Marketing Analyst".to_owned()),
        _ => None,
    }
}

/// One random engagement event at `at`.
fn engagement(rng: &mut Rng, at: i64) -> GenEvent {
    let (kind, attribute) = match rng.below(10) {
        0..=3 => ("page_view", Some(("url", "/pricing"))),
        4..=5 => ("page_view", Some(("url", "/product/tour"))),
        6..=7 => ("email_open", Some(("campaign", "2026-11-newsletter"))),
        8 => ("email_click", Some(("campaign", "2026-11-newsletter"))),
        _ => ("form_submission", Some(("form_id", "demo-request"))),
    };
    GenEvent {
        kind,
        at,
        attribute: attribute.map(|(n, v)| (n, v.to_owned())),
    }
}

impl Inner {
    /// One day passes: the day's share of people engage, change role or
    /// move company. Events fall on the day, never after `now`.
    fn drift_day(&mut self, share: f64, now: i64, out: &mut Drifted) {
        self.drift_days += 1;
        let day = self.drift_days;
        let contacts = self.config.contacts;
        let mut rng = Rng::new(self.config.seed ^ 0xD21F_7000, u64::from(day));
        let day_start = (self.config.epoch_ms + i64::from(day - 1) * DAY_MS).min(now - DAY_MS);
        let active = ((contacts as f64) * share).ceil() as u64;
        let companies = self.people.companies_for(contacts);
        for _ in 0..active {
            let id = 1 + rng.below(contacts);
            let roll = rng.below(100);
            if !self.exists(id) {
                continue;
            }
            let (properties, _, _) = self.properties_of(id);
            match roll {
                // A promotion.
                0..=14 => {
                    let old = properties.get("jobtitle").cloned().unwrap_or_default();
                    if let Some(new) = promotion(&old) {
                        let edit = BTreeMap::from([("jobtitle".to_owned(), new.clone())]);
                        self.write_from(id, edit, "CRM_UI");
                        out.promoted.push((id, old, new));
                    }
                }
                // A move to another company.
                15..=17 => {
                    let old = properties.get(COMPANY_ID).cloned().unwrap_or_default();
                    let new = (1 + rng.below(companies)).to_string();
                    if new != old {
                        let edit = BTreeMap::from([(COMPANY_ID.to_owned(), new.clone())]);
                        self.write_from(id, edit, "CRM_UI");
                        out.moved.push((id, old, new));
                    }
                }
                _ => {
                    for _ in 0..=rng.below(3) {
                        let at = (day_start + rng.below(DAY_MS as u64) as i64).min(now - 1000);
                        let event = engagement(&mut rng, at);
                        self.add_event(id, event);
                    }
                    out.engaged.push(id);
                }
            }
        }
        self.sort_engagement();
    }
}

impl FakeHubspot {
    /// Lets `days` days pass (see the module docs); what changed.
    pub(super) fn advance(&self, days: u32, share: f64) -> Drifted {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut out = Drifted::default();
        {
            let mut inner = self.lock();
            for _ in 0..days {
                inner.drift_day(share, now, &mut out);
            }
        }
        self.wake_sender();
        out.engaged.sort_unstable();
        out.engaged.dedup();
        out
    }
}

/// `POST /__fake/advance`: `{"days": 7, "share": 0.02}`.
pub(super) async fn advance(State(fake): State<FakeHubspot>, body: axum::body::Bytes) -> Response {
    let advance = match decode::<Advance>(&body) {
        Ok(a) => a,
        Err(message) => return bad_request(&message),
    };
    let share = advance.share.unwrap_or(0.02);
    if !(1..=365).contains(&advance.days) || !(0.0..=1.0).contains(&share) {
        return bad_request("days must be 1 to 365 and share 0.0 to 1.0");
    }
    let drifted = fake.advance(advance.days, share);
    Json(json!(drifted)).into_response()
}
