//! `score`'s output stays byte for byte what it was, whatever the reader
//! and the writer do to be fast, and the block reader keeps every line's
//! number whatever the input looks like.

use leadscored::Model;
use leadscored::commands::{Lines, generate, score_stream};

use crate::read;

const NOW: &str = "2026-11-01T00:00:00Z";

/// FNV-1a, 64 bits: a stable fingerprint of an output.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn score(model: &Model, input: &[u8], threads: usize) -> Vec<u8> {
    let mut out = Vec::new();
    score_stream(
        model,
        NOW.parse().expect("valid"),
        input,
        &mut out,
        threads,
        Lines::Contacts,
    )
    .expect("scores");
    out
}

/// The fingerprints and sizes were taken from the output of the serde-derived
/// writer and the line-batch reader this code replaced (`generate --records
/// 3000 --seed 7`, then `score --now 2026-11-01T00:00:00Z` per model).
#[test]
fn score_output_is_byte_identical_to_the_earlier_writer() {
    let mut input = Vec::new();
    generate(3000, 7, NOW.parse().expect("valid"), &mut input).expect("generates");
    let expected: [(&str, u64, usize); 9] = [
        ("config/b2b", 0xd730_2049_5104_444e, 3_820_414),
        ("config/minimal", 0x8aaf_9095_497c_6f8a, 1_055_499),
        (
            "fixtures/models/decay_caps",
            0x3d00_718b_449c_1c2d,
            1_874_873,
        ),
        (
            "fixtures/models/disqualified",
            0x1b83_5243_54b5_9889,
            529_824,
        ),
        ("fixtures/models/downgrade", 0x3b3b_9e40_ef13_eea1, 634_169),
        ("fixtures/models/events", 0x9221_584b_3466_389a, 1_242_104),
        ("fixtures/models/fit", 0x56fa_69e0_3a20_68cd, 946_157),
        ("fixtures/models/grading", 0x7ce1_459f_52e7_ecd7, 487_758),
        ("fixtures/models/stages", 0x0a8b_d4aa_fbac_88d9, 1_360_612),
    ];
    for (name, hash, size) in expected {
        let path = format!("{name}.toml");
        let model = Model::compile(&path, &read(&path)).expect("compiles");
        for threads in [1, 2] {
            let out = score(&model, &input, threads);
            assert_eq!(
                (fingerprint(&out), out.len()),
                (hash, size),
                "{name} with {threads} threads: the output changed"
            );
        }
    }
}

#[test]
fn blocks_keep_line_numbers_through_odd_input() {
    let model = Model::compile("config/minimal.toml", &read("config/minimal.toml")).expect("ok");
    // A record longer than a block (3 MiB of an unread property), CRLF line
    // ends, blank lines, a line that is not UTF-8, and no final line end.
    let long = format!(
        "{{\"id\":\"long\",\"properties\":{{\"notes\":\"{}\"}}}}",
        "x".repeat(3 << 20)
    );
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"id\":\"a\"}\r\n\r\n");
    input.extend_from_slice(long.as_bytes());
    input.extend_from_slice(b"\n\xff\xfe\n\n{\"id\":\"b\"}\n");
    for i in 0..3000 {
        input.extend_from_slice(format!("{{\"id\":\"n{i}\"}}\n").as_bytes());
    }
    input.extend_from_slice(b"{\"id\":\"last\"}");
    let one = score(&model, &input, 1);
    assert_eq!(one, score(&model, &input, 2));
    let lines: Vec<serde_json::Value> = String::from_utf8(one)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3005);
    assert_eq!(lines[0]["id"], "a");
    assert_eq!(lines[1]["id"], "long");
    assert_eq!(lines[2]["line"], 4);
    assert!(
        lines[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not UTF-8"))
    );
    assert_eq!(lines[3]["id"], "b");
    assert_eq!(lines[3004]["id"], "last");
}

#[test]
fn a_line_longer_than_the_limit_is_an_error_line_not_a_memory_spike() {
    let model = Model::compile("config/minimal.toml", &read("config/minimal.toml")).expect("ok");
    let mut input = b"{\"id\":\"a\"}\n".to_vec();
    input.extend(std::iter::repeat_n(b' ', 65 << 20));
    input.extend_from_slice(b"{\"id\":\"huge\"}\n{\"id\":\"b\"}\n");
    for threads in [1, 2] {
        let out = String::from_utf8(score(&model, &input, threads)).expect("utf-8");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[1]["line"], 2);
        assert_eq!(lines[1]["error"], "line is longer than 64 MiB; skipped");
        assert_eq!(lines[2]["id"], "b");
    }
}

/// The fast reading of `…Z` times agrees with the general parser.
#[test]
fn event_times_read_fast_agree_with_jiff() {
    use proptest::prelude::*;
    let general = |text: &str| {
        text.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond())
            .or_else(|| {
                text.parse::<jiff::civil::DateTime>()
                    .ok()
                    .and_then(|dt| jiff::tz::TimeZone::UTC.to_timestamp(dt).ok())
                    .map(|t| t.as_millisecond())
            })
    };
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 4000,
        ..Default::default()
    });
    let strategy = (
        1960i32..2200,
        0u32..14,
        0u32..33,
        0u32..25,
        0u32..61,
        0u32..61,
        prop::option::of("[0-9]{1,9}"),
    );
    runner
        .run(&strategy, |(y, mo, d, h, mi, s, fraction)| {
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}Z");
            prop_assert_eq!(
                leadscored::record::parse_time(&text),
                general(&text),
                "{}",
                text
            );
            Ok(())
        })
        .expect("agrees");
    for text in [
        "2024-02-29T23:59:59Z",
        "2023-02-29T00:00:00Z",
        "2026-10-30T17:53:49.1234567891Z",
        "1970-01-01T00:00:00Z",
        "2000-02-29T12:00:00Z",
        "2100-02-29T12:00:00Z",
        "2100-03-01T00:00:00Z",
        "9999-12-31T23:59:59.999Z",
        "2026-1a-01T00:00:00Z",
        "2026-10-01 00:00:00Z",
    ] {
        assert_eq!(
            leadscored::record::parse_time(text),
            general(text),
            "{text}"
        );
    }
}

/// Reading many records remembers each property value's check outcomes;
/// every line must still score as it does read alone (a fresh memory):
/// the same outcomes, the same warnings in the same order, whether a
/// value repeats, arrives once as text and once as a number, or belongs
/// to a slot whose values never repeat (emails: no longer remembered).
#[test]
fn remembered_property_outcomes_score_as_each_record_alone() {
    let model = crate::model("fixtures/models/fit.toml");
    let titles = [
        "Director",
        "VP Sales",
        "Head of Marketing",
        "CEO",
        "  head of ops ",
        "",
    ];
    let employees = [
        r#""10""#,
        r#""lots""#,
        "3",
        r#""3""#,
        "250",
        r#"" 42 ""#,
        "null",
        "-7",
        r#""NaN""#,
    ];
    let dates = [
        r#""2026-05-20""#,
        r#""2024-12-31T23:59:59Z""#,
        r#""yesterday""#,
        "1779235200000",
        r#""1779235200000""#,
    ];
    let hints = ["42", r#""42""#, r#""forty-two""#, "true", r#""true""#];
    let mut input = String::new();
    for i in 0..6000usize {
        let pick = |list: &[&'static str], step: usize| list[(i * step + i / 7) % list.len()];
        input.push_str(&format!(
            concat!(
                r#"{{"id":"r{}","properties":{{"jobtitle":"{}","email":"p{}@acme.{}","#,
                r#""createdate":{},"lastvisit":{},"score_hint":{},"opted_in":{},"#,
                r#""country":"{}","interests":["sales","{}"]}},"company":{{"numemployees":{}}}}}"#,
                "\n"
            ),
            i,
            pick(&titles, 1).trim_matches('"'),
            i,
            if i % 3 == 0 { "com" } else { "io" },
            pick(&dates, 3),
            pick(&dates, 2),
            pick(&hints, 5),
            pick(&hints, 2),
            if i % 2 == 0 { "norway" } else { "Denmark" },
            pick(&titles, 4).trim(),
            pick(&employees, 1),
        ));
    }
    let together = score(&model, input.as_bytes(), 1);
    let mut alone = Vec::new();
    for line in input.lines() {
        alone.extend(score(&model, format!("{line}\n").as_bytes(), 1));
    }
    let together = String::from_utf8(together).expect("utf-8");
    let alone = String::from_utf8(alone).expect("utf-8");
    assert!(together.contains("warnings"), "some values are mistyped");
    for (number, (a, b)) in together.lines().zip(alone.lines()).enumerate() {
        assert_eq!(a, b, "line {}", number + 1);
    }
    assert_eq!(together.lines().count(), 6000);
    assert_eq!(together, alone);
}
