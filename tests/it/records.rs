//! Reading records: the JSON line format, typed values, and a clear error
//! naming the field for every kind of bad input.

use crate::{model, now};

#[track_caller]
fn check_error(line: &str, expected: &str) {
    let model = model("config/b2b.toml");
    match model.parse_record(line) {
        Ok(record) => panic!("expected an error for {line}, got record {}", record.id()),
        Err(e) => assert_eq!(e.to_string(), expected),
    }
}

#[test]
fn malformed_records_name_what_and_where() {
    check_error("not json", "invalid JSON: expected ident (column 2)");
    check_error(
        "{\"id\": \"1\"",
        "invalid JSON: EOF while parsing an object (column 10)",
    );
    check_error(
        "[1, 2]",
        "invalid type: sequence, expected a record object with \"id\", \"properties\", \"company\", \"events\" and \"lists\"",
    );
    check_error("{\"properties\": {}}", "record has no \"id\" (column 18)");
    check_error("{\"id\": \"\"}", "record \"id\" is empty (column 10)");
    check_error(
        "{\"id\": true}",
        "invalid type: boolean `true`, expected \"id\" as a string or an integer (column 11)",
    );
    check_error(
        "{\"id\": \"1\", \"properties\": {\"jobtitle\": {\"x\": 1}}}",
        "properties.jobtitle: invalid type: map, expected a string, number, boolean, null or an array of those (column 40)",
    );
    check_error(
        "{\"id\": \"1\", \"company\": {\"numemployees\": [[1]]}}",
        "company.numemployees: nested arrays are not property values (column 45)",
    );
    check_error(
        "{\"id\": \"1\", \"events\": [{\"type\": \"page_view\", \"at\": \"soon\"}]}",
        "events[0].at: \"soon\" is not an RFC 3339 timestamp (column 58)",
    );
    check_error(
        "{\"id\": \"1\", \"events\": [{\"at\": \"2026-01-01T00:00:00Z\"}]}",
        "events[0] has no \"type\" (column 53)",
    );
    check_error(
        "{\"id\": \"1\", \"events\": [{\"type\": \"page_view\"}]}",
        "events[0] has no \"at\" (column 44)",
    );
    check_error(
        "{\"id\": \"1\", \"events\": {}}",
        "invalid type: map, expected an array of events (column 22)",
    );
    check_error(
        "{\"id\": \"1\", \"lists\": [1]}",
        "invalid type: integer `1`, expected a string (column 23)",
    );
}

#[test]
fn ids_may_be_numbers_and_unknown_fields_are_ignored() {
    let model = model("config/b2b.toml");
    let record = model.parse_record(
        "{\"id\": 51, \"outcome\": {\"won\": true}, \"properties\": {\"unused\": {\"deep\": 1}}}",
    );
    assert_eq!(record.map(|r| r.id().to_owned()), Ok("51".to_owned()));
}

#[test]
fn events_the_model_does_not_read_are_not_kept_unless_it_reads_any_type() {
    let minimal = model("config/minimal.toml");
    let line = r#"{"id":"1","events":[{"type":"page_view","at":"2026-01-01T00:00:00Z"},{"type":"chat","at":"not even a date"}]}"#;
    let record = minimal
        .parse_record(line)
        .expect("unread event types are skipped unparsed");
    assert_eq!(record.event_count(), 1);
    let b2b = model("config/b2b.toml");
    let line = r#"{"id":"1","events":[{"type":"page_view","at":"2026-01-01T00:00:00Z"},{"type":"chat","at":"2026-01-02T00:00:00Z"}]}"#;
    assert_eq!(
        b2b.parse_record(line).map(|r| r.event_count()),
        Ok(2),
        "the b2b model has an `any` rule"
    );
}

#[test]
fn the_builder_and_the_json_reader_make_the_same_record() {
    use leadscored::model::Scope;
    use leadscored::record::PropertyValue;
    let model = model("config/b2b.toml");
    let json = r#"{"id":"7","properties":{"jobtitle":"Head of Sales","country":"Norway","hs_analytics_num_visits":12},
        "company":{"numemployees":"250","tech_stack":["Looker","dbt"]},
        "events":[{"type":"page_view","at":"2026-10-01T00:00:00Z","attributes":{"url":"https://x/Pricing"}}],
        "lists":["Analytics webinar 2026"]}"#;
    let from_json = model
        .parse_record(&json.replace('\n', ""))
        .expect("valid record");
    let mut builder = model.record_builder("7");
    builder.property(
        Scope::Contact,
        "jobtitle",
        PropertyValue::Text("Head of Sales"),
    );
    builder.property(Scope::Contact, "country", PropertyValue::Text("Norway"));
    builder.property(
        Scope::Contact,
        "hs_analytics_num_visits",
        PropertyValue::Number(12.0),
    );
    builder.property(Scope::Company, "numemployees", PropertyValue::Text("250"));
    builder.property_values(
        Scope::Company,
        "tech_stack",
        &[PropertyValue::Text("Looker"), PropertyValue::Text("dbt")],
    );
    builder.event(
        "page_view",
        now("2026-10-01T00:00:00Z"),
        &[("url", "https://x/Pricing")],
    );
    builder.list("analytics WEBINAR 2026");
    assert_eq!(builder.build(), from_json);
}
