//! Embedded test cases: `[[test]]`, read against the compiled model.

use super::*;

pub(super) fn test_case(
    d: &mut Diagnostics<'_>,
    model: &Model,
    value: Value<'_>,
) -> Option<TestCase> {
    let span = value.span();
    let (rest, record_value) = match value.into_inner() {
        DeValue::Table(mut table) => {
            let record = table.remove("record");
            (Spanned::new(span.clone(), DeValue::Table(table)), record)
        }
        other => (Spanned::new(span.clone(), other), None),
    };
    let raw = match RawTest::deserialize(ValueDeserializer::from(rest)) {
        Ok(raw) => Some(raw),
        Err(e) => {
            d.toml(&e, &span);
            None
        }
    };
    let mut people = Vec::new();
    let mut has_people = false;
    let record = match record_value {
        None => {
            d.error(
                &span,
                "test has no `record` table: add [test.record] with id, properties and events",
            );
            None
        }
        Some(v) => {
            let rspan = v.span();
            has_people = v.get_ref().get("people").is_some();
            match (RecordSeed {
                model,
                memo: &mut crate::record::ReadMemo::default(),
                reuse: Default::default(),
                people: Some(&mut people),
                capture: None,
            })
            .deserialize(ValueDeserializer::from(v))
            {
                Ok(r) => Some(r),
                Err(e) => {
                    d.toml(&e, &rspan);
                    None
                }
            }
        }
    };
    let raw = raw?;
    let record = record.map(|company| {
        let mut account = crate::record::Account { company, people };
        model.inherit_company(&mut account);
        account
    });
    // A company case lists `people`, even none.
    let company_case = has_people;
    let now_text = match raw.now.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(dt) => dt.to_string(),
        _ => String::new(),
    };
    let now = match now_text.parse::<jiff::Timestamp>() {
        Ok(now) => Some(now),
        Err(_) => {
            d.error(
                &raw.now.span(),
                "test `now` must be an RFC 3339 timestamp, e.g. \"2026-06-01T00:00:00Z\"",
            );
            None
        }
    };
    let mut expectations = Vec::new();
    if raw.expect.is_empty() {
        d.error(&span, format!("test \"{}\" expects nothing: add [test.expect.<score>] with total, grade, tier or stage", raw.name.get_ref()));
    }
    for (score, expect) in raw.expect {
        let espan = expect.span();
        let expect: RawExpect = expect.into_inner();
        let Some(known) = model
            .scores
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(&score))
        else {
            d.error(
                &espan,
                format!(
                    "test expects unknown score \"{score}\": known scores are {}",
                    names(model.score_names())
                ),
            );
            continue;
        };
        let person = expect
            .person
            .as_ref()
            .map(|p| p.get_ref().trim().to_owned());
        match (known.object, company_case, &person) {
            (Object::Company, false, _) => {
                d.error(&espan, format!(
                    "score \"{}\" is a company score: its test's record is a company with `people = [...]`",
                    known.name
                ));
                continue;
            }
            (Object::Company, true, Some(_)) => {
                d.error(&espan, "`person` picks whose contact score is checked: a company score is the company's");
                continue;
            }
            (Object::Contact, true, None) => {
                d.error(&espan, format!(
                    "in a company case, say whose \"{}\" score is checked with `person = \"<id>\"`",
                    known.name
                ));
                continue;
            }
            (Object::Contact, false, Some(_)) => {
                d.error(
                    &espan,
                    "`person` applies to company cases, whose record lists `people`",
                );
                continue;
            }
            (Object::Contact, true, Some(id)) => {
                let found = record
                    .as_ref()
                    .is_some_and(|a| a.people.iter().any(|p| p.id() == id));
                if !found {
                    d.error(&espan, format!("the case has no person \"{id}\""));
                    continue;
                }
            }
            _ => {}
        }
        let grade = match &expect.grade {
            None => None,
            Some(g) => match Grade::parse(g.get_ref()) {
                Some(g) => Some(g),
                None => {
                    d.error(&g.span(), format!("unknown grade \"{}\"", g.get_ref()));
                    continue;
                }
            },
        };
        expectations.push(Expectation {
            score: known.name.clone(),
            person,
            fit: expect.fit,
            engagement: expect.engagement,
            total: expect.total,
            grade,
            tier: expect.tier,
            matrix: expect.matrix,
            stage: expect.stage,
            disqualified: expect.disqualified,
        });
    }
    let account = record?;
    Some(TestCase {
        name: raw.name.into_inner(),
        now: now?,
        record: account.company,
        company: company_case,
        people: account.people,
        expectations,
    })
}
