//! Property tests for the invariants: scoring never panics, whatever the
//! record; caps and floors always hold; grades stay on the ladder; the same
//! input always gives the same output.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::now;

fn model() -> &'static leadscored::Model {
    static MODEL: std::sync::OnceLock<leadscored::Model> = std::sync::OnceLock::new();
    MODEL.get_or_init(|| crate::model("config/b2b.toml"))
}

const KEYS: &[&str] = &[
    "id",
    "properties",
    "company",
    "events",
    "lists",
    "type",
    "at",
    "attributes",
    "jobtitle",
    "email",
    "numemployees",
    "industry",
    "country",
    "url",
    "asset",
    "form_id",
    "leadscored_stage",
    "hs_email_last_open_date",
];

/// Arbitrary JSON whose keys often hit the names the reader looks for.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "2026-01-01T00:00:00Z",
            "2026-13-01",
            "1700000000000",
            "",
            "Director",
            "page_view"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

const TITLES: &[&str] = &[
    "Director of Marketing",
    "Student",
    "VP Sales",
    "CEO",
    "",
    "Head of Data",
    "intern",
];
const TYPES: &[&str] = &[
    "page_view",
    "email_open",
    "email_click",
    "form_submission",
    "content_download",
    "webinar",
    "ad_click",
    "chat",
];
const URLS: &[&str] = &[
    "https://acme.example/pricing",
    "https://acme.example/careers",
    "https://acme.example/product/x",
    "/analytics",
];

/// Well-formed records with random values, sizes and event times.
fn realistic_record() -> impl Strategy<Value = Value> {
    let event = (prop::sample::select(TYPES), -800i64..30, prop::sample::select(URLS), prop::sample::select(vec!["premium-roi-calculator", "demo-request", "support-1", "x"]))
        .prop_map(|(kind, days, url, tag)| {
            let at = jiff::Timestamp::from_second(1_793_491_200 + days * 86_400).expect("in range");
            json!({"type": kind, "at": at.to_string(), "attributes": {"url": url, "asset": tag, "form_id": tag}})
        });
    (
        prop::sample::select(TITLES),
        prop_oneof![Just(json!(null)), (0u32..20_000).prop_map(|n| json!(n.to_string())), Just(json!("many"))],
        prop::sample::select(vec!["a@gmail.com", "b@rivalsoft.com", "c@firm.no", ""]),
        prop::collection::vec(event, 0..40),
        prop::sample::select(vec!["", "MQL", "SQL", "Lead", "other"]),
    )
        .prop_map(|(title, size, email, events, stage)| {
            json!({
                "id": "r",
                "properties": {"jobtitle": title, "email": email, "country": "Norway", "leadscored_stage": stage,
                               "firstname": "Kari", "hs_analytics_num_visits": "7"},
                "company": {"numemployees": size, "industry": "Software"},
                "events": events,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn reading_and_scoring_never_panic_on_arbitrary_json(value in arbitrary_json()) {
        let model = model();
        if let Ok(record) = model.parse_record(&value.to_string()) {
            let _ = model.score(&record, now("2026-11-01T00:00:00Z"));
        }
    }

    #[test]
    fn reading_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let _ = model().parse_record(&text);
    }

    #[test]
    fn caps_hold_grades_stay_on_the_ladder_and_scoring_is_deterministic(value in realistic_record()) {
        let model = model();
        let line = value.to_string();
        let record = model.parse_record(&line).expect("realistic records are valid");
        let at = now("2026-11-01T00:00:00Z");
        let card = model.score(&record, at);
        let again = model.score(&model.parse_record(&line).expect("valid"), at);
        let json = |c| leadscored::engine::CardJson { model, record_id: "r", card: c }.to_line();
        prop_assert_eq!(json(&card), json(&again));
        for result in card.results() {
            prop_assert!((0.0..=100.0).contains(&result.total()), "total {} outside floor..cap", result.total());
        }
        let contact = &card.results()[0];
        prop_assert!((-30.0..=50.0).contains(&contact.fit()), "fit {} outside its groups' bounds", contact.fit());
        // careers −5, unsubscribed −10, support form −10, recency at most −15
        prop_assert!((-40.0..=100.0).contains(&contact.engagement()), "engagement {}", contact.engagement());
        if let Some(grade) = card.grade() {
            prop_assert!(leadscored::Grade::ladder().any(|g| g == grade));
            prop_assert_eq!(leadscored::Grade::parse(grade.as_str()), Some(grade));
        }
    }
}

#[test]
fn grade_steps_clamp_at_both_ends() {
    use leadscored::Grade;
    assert_eq!(Grade::F.moved(-5), Grade::F);
    assert_eq!(Grade::A_PLUS.moved(5), Grade::A_PLUS);
    let ladder: Vec<String> = Grade::ladder().map(|g| g.to_string()).collect();
    assert_eq!(
        ladder,
        [
            "F", "D-", "D", "D+", "C-", "C", "C+", "B-", "B", "B+", "A-", "A", "A+"
        ]
    );
    assert_eq!(
        Grade::D.moved(10),
        Grade::A_PLUS,
        "five criteria at 2/3 take D to A+"
    );
}
