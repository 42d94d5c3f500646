//! Data-driven scoring tests: every model under `fixtures/models/` and
//! `config/` carries `[[test]]` cases (a record, `now`, the expected
//! scores, grade, tier, matrix and stage), written by hand, one file per
//! family: fit operators, event criteria, decay and caps, grading and
//! disqualifiers, tiers and stages. Each must compile and pass.

use leadscored::commands::run_cases;

use crate::{files_in, model, relative};

fn check_model_file(relative_path: &str) {
    let model = model(relative_path);
    let mut report = String::new();
    let (failed, total) = run_cases(&model, &mut report);
    assert!(total > 0, "{relative_path} has no embedded test cases");
    assert_eq!(failed, 0, "{relative_path}:{report}");
}

#[test]
fn fixture_models_pass_their_cases() {
    let files = files_in("fixtures/models", "toml");
    assert!(
        files.len() >= 6,
        "expected the fixture models, found {files:?}"
    );
    for file in files {
        check_model_file(&relative(&file));
    }
}

#[test]
fn example_configs_pass_their_cases() {
    for file in files_in("config", "toml") {
        let text = std::fs::read_to_string(&file).expect("readable");
        if text.contains("\n[crm]") {
            // A connection file: it loads, with the model it names.
            if let Err(e) = leadscored::config::Connection::load(&file) {
                panic!("{} does not load:\n{e}", file.display());
            }
        } else {
            check_model_file(&relative(&file));
        }
    }
}

#[test]
fn the_example_model_reads_only_what_it_needs() {
    let model = model("config/b2b.toml");
    let mut properties: Vec<String> = model.properties().collect();
    properties.sort();
    assert_eq!(
        properties,
        [
            "company.industry",
            "company.numemployees",
            "company.tech_stack",
            "country",
            "email",
            "firstname",
            "hs_analytics_num_visits",
            "hs_email_last_open_date",
            "jobtitle",
            "leadscored_stage",
        ]
    );
    assert!(
        model.reads_all_events(),
        "the recency rule reads events of any type"
    );
}
