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

// ---------------------------------------------------------------------------
// The line reader and the serde reader: the same record or the same error.
// ---------------------------------------------------------------------------

/// Reads `line` both ways: `parse_record` (the line reader, which leaves
/// what it declines to serde) and the serde reader alone.
#[track_caller]
fn check_both_readers(model: &leadscored::Model, line: &str) {
    let read = model.parse_record(line);
    let by_serde = model.parse_record_by_serde(line);
    assert_eq!(read, by_serde, "the two readers differ on {line:?}");
}

/// Reads `line` for two models in one pass, as `diff` does: each model's
/// record or error is what the serde reader gives that model alone.
#[track_caller]
fn check_pair(a: &leadscored::Model, b: &leadscored::Model, line: &str) {
    let [read_a, read_b] = leadscored::Model::parse_record_pair([a, b], line);
    assert_eq!(
        read_a,
        a.parse_record_by_serde(line),
        "first model of a pair, on {line:?}"
    );
    assert_eq!(
        read_b,
        b.parse_record_by_serde(line),
        "second model of a pair, on {line:?}"
    );
}

#[test]
fn the_line_reader_reads_what_serde_reads_and_declines_the_rest() {
    let model = model("config/b2b.toml");
    let event = |body: &str| {
        format!(
            r#"{{"id":"1","events":[{{"type":"page_view","at":"2026-10-01T00:00:00Z",{body}}}]}}"#
        )
    };
    let prop = |value: &str| {
        format!(
            r#"{{"id":"1","properties":{{"jobtitle":{value},"hs_analytics_num_visits":{value}}},"company":{{"numemployees":{value}}}}}"#
        )
    };
    let mut lines: Vec<String> = [
        // Ids.
        r#"{"id":"1"}"#,
        r#"{"id":7}"#,
        r#"{"id":0}"#,
        r#"{"id":-7}"#,
        r#"{"id":18446744073709551615}"#,
        r#"{"id":18446744073709551616}"#,
        r#"{"id":1.5}"#,
        r#"{"id":01}"#,
        r#"{"id":"a\"b\\c\/d\u00e9\ud83d\ude00"}"#,
        r#"{"id":"x","id":"y"}"#,
        r#"{"id":"x","id":""}"#,
        r#"{"\u0069d":"escaped key"}"#,
        r#"{"id":null}"#,
        r#"{}"#,
        r#"  {"id":"1"}  "#,
        "\t{\"id\":\"1\"}\r\n",
        r#"{"id":"1"} x"#,
        r#"{"id":"1"}{"id":"2"}"#,
        r#"{"id":"1",}"#,
        r#"{"id":"1" "x":1}"#,
        r#"{"id" "1"}"#,
        r#"{,"id":"1"}"#,
        r#"{"id":"1""#,
        r#"{"id":"1"#,
        r#"["id"]"#,
        "\u{feff}{\"id\":\"1\"}",
        "{\"id\":\"a\u{1}b\"}",
        "{\"id\":\"a\u{7f}b\u{80}\"}",
        r#"{"id":"\ud800"}"#,
        r#"{"id":"\udc00"}"#,
        r#"{"id":"\ud800\u0041"}"#,
        r#"{"id":"\x41"}"#,
        r#"{"id":"\u12"}"#,
        r#"{"id":"\uDBFF\uDFFF"}"#,
        // Unread fields of every shape, valid and not.
        r#"{"id":"1","junk":{"a":[1,2.5e3,-0,true,false,null,"s",{"b":[]}]}}"#,
        r#"{"id":"1","junk":[1,,2]}"#,
        r#"{"id":"1","junk":[1 2]}"#,
        r#"{"id":"1","junk":01}"#,
        r#"{"id":"1","junk":1.}"#,
        r#"{"id":"1","junk":.5}"#,
        r#"{"id":"1","junk":-}"#,
        r#"{"id":"1","junk":1e}"#,
        r#"{"id":"1","junk":1e400}"#,
        r#"{"id":"1","junk":tru}"#,
        r#"{"id":"1","junk":nul}"#,
        r#"{"id":"1","junk":NaN}"#,
        r#"{"id":"1","junk":"\q"}"#,
        r#"{"id":"1","junk":{"a" 1}}"#,
        r#"{"id":"1","junk":{1:2}}"#,
        r#"{"id":"1","people":[{"id":"2"}]}"#,
        r#"{"id":"1","outcome":true}"#,
        // Lists.
        r#"{"id":"1","lists":["Analytics webinar 2026","ANALYTICS WEBINAR 2026","other"]}"#,
        r#"{"id":"1","lists":[]}"#,
        r#"{"id":"1","lists":[1]}"#,
        r#"{"id":"1","lists":null}"#,
        r#"{"id":"1","lists":"Analytics webinar 2026"}"#,
        // Sections of the wrong type.
        r#"{"id":"1","properties":null}"#,
        r#"{"id":"1","properties":[]}"#,
        r#"{"id":"1","company":"x"}"#,
        r#"{"id":"1","events":{}}"#,
        r#"{"id":"1","events":[null]}"#,
        r#"{"id":"1","events":[[]]}"#,
        // Events.
        r#"{"id":"1","events":[{"type":"page_view","at":"2026-10-01T00:00:00Z","attributes":{"url":"https://x.example/pricing"}}]}"#,
        r#"{"id":"1","events":[{"attributes":{"url":"https://x.example/PRICING"},"at":"2026-10-01T00:00:00.123456Z","type":"page_view"}]}"#,
        r#"{"id":"1","events":[{"type":"never_read","at":"not a time"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","at":"not a time"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","at":"2026-10-01"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","at":"2026-10-01T02:00:00+02:00"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","at":"1700000000000"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","at":1700000000000}]}"#,
        r#"{"id":"1","events":[{"type":1,"at":"2026-10-01T00:00:00Z"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view"}]}"#,
        r#"{"id":"1","events":[{"at":"2026-10-01T00:00:00Z"}]}"#,
        r#"{"id":"1","events":[{"type":"page_view","type":"email_open","at":"2026-10-01T00:00:00Z","attributes":{"campaign":"x"}}]}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for attributes in [
        r#""attributes":{"url":"https://x.example/pricing","url":"https://x.example/careers"}"#,
        r#""attributes":{"url":["https://x.example/pricing",null,3,true]}"#,
        r#""attributes":{"url":[["nested"]]}"#,
        r#""attributes":{"url":{"o":1}}"#,
        r#""attributes":{"url":null,"other":{"deep":[1,{"x":null}]}}"#,
        r#""attributes":null"#,
        r#""attributes":[]"#,
        r#""attributes":{"url":"\/pricing\u0020page"}"#,
        r#""attributes":{"url":12.50}"#,
        r#""attributes":{}","extra":[1,2]"#,
    ] {
        lines.push(event(attributes));
    }
    for value in [
        r#""Head of Sales""#,
        r#""  42  ""#,
        r#""4.2e1""#,
        r#""inf""#,
        r#""NaN""#,
        "0",
        "-0",
        "-0.0",
        "576",
        "1.5",
        "1E2",
        "-2.5e-3",
        "0.1",
        "1.7976931348623157e308",
        "1e400",
        "5e-324",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "9007199254740993",
        "true",
        "false",
        "null",
        "[]",
        r#"["a",null,2,false]"#,
        "[[1]]",
        r#"[{"a":1}]"#,
        r#"{"a":1}"#,
        r#""CEO""#,
        r#""caf\u00e9 ÉCOLE""#,
    ] {
        lines.push(prop(value));
    }
    // Nesting: within the reader's depth, past it, and past serde_json's.
    for depth in [10, 70, 200] {
        let junk = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        lines.push(format!(r#"{{"id":"1","junk":{junk}}}"#));
    }
    let events = crate::model("fixtures/models/events.toml");
    let minimal = crate::model("config/minimal.toml");
    for line in &lines {
        check_both_readers(&model, line);
        check_pair(&model, &events, line);
        check_pair(&minimal, &model, line);
    }
}

#[test]
fn the_line_reader_reads_generated_people_as_serde_does() {
    let model = model("config/b2b.toml");
    let mut out = Vec::new();
    leadscored::commands::generate(300, 5, now("2026-11-01T00:00:00Z"), &mut out)
        .expect("generate");
    let text = String::from_utf8(out).expect("utf-8");
    let mut memo = leadscored::record::ReadMemo::default();
    let mut record = leadscored::Record::default();
    for line in text.lines() {
        check_both_readers(&model, line);
        // With a memo and reused buffers, as `score` reads.
        model
            .parse_record_into(line, &mut memo, &mut record)
            .expect("generated people are valid");
        assert_eq!(Ok(&record), model.parse_record_by_serde(line).as_ref());
    }
}

mod both_readers {
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "",
            "a",
            "Software",
            "software",
            "Norway",
            "CEO",
            "head of sales",
            "student",
            "https://www.acme.example/pricing",
            r"https:\/\/www.acme.example\/Pricing",
            r"caf\u00e9",
            r"\ud83d\ude00",
            r"\ud800",
            r"\udc00x",
            r"tab\there",
            "\u{1}",
            r"\x",
            "2026-10-30T17:53:49Z",
            "2026-10-30",
            "1700000000000",
            " 42 ",
            r#"\"q\""#,
            "Analytics webinar 2026",
            "page_view",
            "email_open",
            "form_submit",
            "é",
            "@gmail.com",
        ])
        .prop_map(|s| format!("\"{s}\""))
    }

    fn number() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "0",
            "-0",
            "1",
            "-1",
            "1.5",
            "1e3",
            "1E+2",
            "-2.5e-3",
            "01",
            "1.",
            ".5",
            "-",
            "1e400",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775809",
            "576",
            "250",
        ])
        .prop_map(str::to_owned)
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => text(),
            2 => number(),
            1 => prop::sample::select(vec!["true", "false", "null", "tru", "nul"]).prop_map(str::to_owned),
        ]
    }

    fn any_value() -> impl Strategy<Value = String> {
        scalar().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((text(), inner), 0..4).prop_map(|m| {
                    let members: Vec<String> =
                        m.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    fn object(
        members: impl Strategy<Value = (String, String)>,
        max: usize,
    ) -> impl Strategy<Value = String> {
        prop::collection::vec(members, 0..max).prop_map(|m| {
            let members: Vec<String> = m
                .into_iter()
                .map(|(k, v)| format!("\"{k}\" : {v}"))
                .collect();
            format!("{{ {} }}", members.join(",\n"))
        })
    }

    fn named(
        names: Vec<&'static str>,
        value: impl Strategy<Value = String>,
    ) -> impl Strategy<Value = (String, String)> {
        (prop::sample::select(names).prop_map(str::to_owned), value)
    }

    fn properties() -> impl Strategy<Value = String> {
        let value = prop_oneof![4 => scalar(), 1 => any_value()];
        object(
            named(
                vec![
                    "jobtitle",
                    "email",
                    "country",
                    "hs_analytics_num_visits",
                    "numemployees",
                    "industry",
                    "tech_stack",
                    "other",
                ],
                value,
            ),
            6,
        )
    }

    fn event() -> impl Strategy<Value = String> {
        let attributes = object(
            named(
                vec!["url", "campaign", "asset", "form", "other"],
                prop_oneof![4 => scalar(), 1 => any_value()],
            ),
            3,
        );
        let member = prop_oneof![
            3 => named(vec!["type"], prop_oneof![4 => prop::sample::select(vec!["\"page_view\"", "\"email_open\"", "\"email_click\"", "\"form_submit\"", "\"form_submission\"", "\"trial_started\"", "\"webinar\"", "\"unknown\""]).prop_map(str::to_owned), 1 => scalar()]),
            3 => named(vec!["at"], prop_oneof![4 => prop::sample::select(vec!["\"2026-10-30T17:53:49Z\"", "\"2026-09-01\"", "\"2026-10-30T17:53:49.5+02:00\"", "\"soon\""]).prop_map(str::to_owned), 1 => scalar()]),
            3 => named(vec!["attributes"], prop_oneof![5 => attributes, 1 => any_value()]),
            1 => named(vec!["extra"], any_value()),
        ];
        object(member, 5)
    }

    fn record() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            3 => named(vec!["id"], prop_oneof![4 => text(), 1 => number(), 1 => any_value()]),
            3 => named(vec!["properties"], prop_oneof![6 => properties(), 1 => any_value()]),
            2 => named(vec!["company"], prop_oneof![6 => properties(), 1 => any_value()]),
            3 => named(vec!["events"], prop_oneof![
                6 => prop::collection::vec(event(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
                1 => any_value(),
            ]),
            1 => named(vec!["lists"], prop::collection::vec(prop_oneof![5 => text(), 1 => scalar()], 0..3).prop_map(|v| format!("[{}]", v.join(",")))),
            1 => named(vec!["outcome", "people", "i\\u0064"], any_value()),
        ];
        object(member, 7)
    }

    /// A line, sometimes broken: cut short, or one character put in or taken out.
    fn line() -> impl Strategy<Value = String> {
        (
            record(),
            0..4u8,
            any::<prop::sample::Index>(),
            prop::sample::select(vec!['{', '}', '[', ']', ',', ':', '"', '\\', ' ', 'x', '1']),
        )
            .prop_map(|(line, how, at, c)| {
                let cuts: Vec<usize> = line
                    .char_indices()
                    .map(|(i, _)| i)
                    .chain([line.len()])
                    .collect();
                let at = cuts[at.index(cuts.len())];
                match how {
                    1 => line[..at].to_owned(),
                    2 => format!("{}{c}{}", &line[..at], &line[at..]),
                    3 if at < line.len() => {
                        let next = line[at..].chars().next().map_or(0, char::len_utf8);
                        format!("{}{}", &line[..at], &line[at + next..])
                    }
                    _ => line,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

        #[test]
        fn the_line_reader_and_serde_agree_on_any_line(line in line()) {
            static MODELS: std::sync::LazyLock<[leadscored::Model; 3]> =
                std::sync::LazyLock::new(|| {
                    ["config/b2b.toml", "fixtures/models/events.toml", "config/minimal.toml"]
                        .map(crate::model)
                });
            let [b2b, events, minimal] = &*MODELS;
            super::check_both_readers(b2b, &line);
            super::check_pair(b2b, events, &line);
            super::check_pair(minimal, b2b, &line);
        }
    }
}
