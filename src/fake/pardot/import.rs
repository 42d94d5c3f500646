//! The fake Pardot's Import API (v5): an import is created from a JSON
//! `input` part (`operation` `Upsert`, `object` `Prospect`) with an optional
//! first CSV batch (`importFile`), takes up to ten batches of at most
//! 10 MB with the same header, starts on `PATCH {"status":"Ready"}`, and is
//! processed once `import_delay` has passed (on the next read of its
//! status). Rows match prospects by `matchId`; a row that matches none,
//! names a field that cannot be written or holds a wrong value fails alone
//! and is listed by `GET /imports/{id}/errors` as CSV with an `error`
//! column. Blank cells clear their field.

use std::time::Instant;

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{FakePardot, Inner, not_found, pardot_error, pardot_time};

/// Batches one import takes.
const MAX_BATCHES: usize = 10;
/// Bytes one batch file may have.
const MAX_BATCH_BYTES: usize = 10 * 1024 * 1024;
/// Columns that match a row to a prospect.
const MATCH_COLUMNS: [&str; 3] = ["matchId", "matchEmail", "matchSalesforceId"];

/// One import job.
#[derive(Debug)]
pub(super) struct Import {
    status: &'static str,
    columns: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
    batches: usize,
    ready_at: Option<Instant>,
    created_ms: i64,
    updated_ms: i64,
    updated_count: u64,
    error_count: u64,
    /// Failed rows and why.
    errors: Vec<(Vec<String>, String)>,
}

impl Import {
    fn json(&self, id: u64) -> Value {
        json!({
            "id": id,
            "status": self.status,
            "operation": "Upsert",
            "object": "Prospect",
            "batchesRef": self.batches,
            "createdCount": 0,
            "updatedCount": self.updated_count,
            "errorCount": self.error_count,
            "isExpired": false,
            "createdAt": pardot_time(self.created_ms),
            "updatedAt": pardot_time(self.updated_ms),
        })
    }
}

/// The parts of a multipart request: the `input` JSON and the file.
async fn parts(mut form: Multipart) -> Result<(Option<Value>, Option<Vec<u8>>), String> {
    let (mut input, mut file) = (None, None);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(format!("the multipart body is broken: {e}")),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| format!("the part {name} is broken: {e}"))?;
        match name.as_str() {
            "input" => {
                input = Some(
                    serde_json::from_slice(&bytes)
                        .map_err(|e| format!("input is not JSON: {e}"))?,
                );
            }
            "importFile" => file = Some(bytes.to_vec()),
            other => return Err(format!("unknown part {other}")),
        }
    }
    Ok((input, file))
}

fn invalid(message: &str) -> Response {
    pardot_error(StatusCode::BAD_REQUEST, 5, message)
}

/// Adds one CSV batch to a waiting import.
fn add_batch(inner: &Inner, import: &mut Import, file: &[u8]) -> Result<(), String> {
    if import.batches >= MAX_BATCHES {
        return Err("an import takes at most 10 batches".to_owned());
    }
    if file.len() > MAX_BATCH_BYTES {
        return Err("a batch file may have at most 10 MB".to_owned());
    }
    let mut reader = csv::ReaderBuilder::new().from_reader(file);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the CSV header is broken: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    if let Some(columns) = &import.columns
        && *columns != header
    {
        return Err(
            "every batch of an import must have the same columns in the same order".to_owned(),
        );
    }
    let matches = header
        .iter()
        .filter(|c| MATCH_COLUMNS.contains(&c.as_str()))
        .count();
    if matches == 0 {
        return Err("the CSV has no match column (matchId, matchEmail, ...)".to_owned());
    }
    for column in header
        .iter()
        .filter(|c| !MATCH_COLUMNS.contains(&c.as_str()))
    {
        if column != "score" && inner.custom_field(column).is_none() && !inner.known_field(column) {
            return Err(format!("unknown column {column}"));
        }
    }
    let mut rows = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| format!("the CSV is broken: {e}"))?;
        rows.push(row.iter().map(str::to_owned).collect());
    }
    import.columns = Some(header);
    import.rows.extend(rows);
    import.batches += 1;
    Ok(())
}

/// Writes every row of a started import whose time has come.
fn process(inner: &mut Inner, id: u64) {
    let delay = inner.config.import_delay;
    let Some(import) = inner.imports.get_mut(&id) else {
        return;
    };
    if import.status != "Ready" || import.ready_at.is_none_or(|at| at.elapsed() < delay) {
        return;
    }
    let rows = std::mem::take(&mut import.rows);
    let columns = import.columns.clone().unwrap_or_default();
    let (mut updated, mut errors) = (0, Vec::new());
    for row in rows {
        match process_row(inner, &columns, &row) {
            Ok(()) => updated += 1,
            Err(why) => errors.push((row, why)),
        }
    }
    let now = jiff::Timestamp::now().as_millisecond();
    if let Some(import) = inner.imports.get_mut(&id) {
        import.status = "Complete";
        import.updated_count = updated;
        import.error_count = errors.len() as u64;
        import.errors = errors;
        import.updated_ms = now;
    }
}

fn process_row(inner: &mut Inner, columns: &[String], row: &[String]) -> Result<(), String> {
    let cell = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| row.get(i))
            .filter(|v| !v.is_empty())
    };
    let prospect = match (cell("matchId"), cell("matchEmail")) {
        (Some(id), None) => super::parse_prospect_id(id, inner),
        (None, Some(email)) => (1..=inner.config.prospects).find(|&id| {
            !inner.deleted(id) && inner.people.person(id).email.eq_ignore_ascii_case(email)
        }),
        _ => return Err("exactly one match value per row".to_owned()),
    };
    let Some(prospect) = prospect else {
        return Err("no prospect matched; createOnNoMatch is off".to_owned());
    };
    let injected = inner.config.faults.rate_record_error;
    if injected > 0.0 && inner.rng.unit() < injected {
        return Err("fault: the prospect could not be saved".to_owned());
    }
    let values = columns
        .iter()
        .zip(row)
        .filter(|(c, _)| !MATCH_COLUMNS.contains(&c.as_str()))
        .map(|(c, v)| {
            let value = if v.is_empty() {
                Value::Null
            } else {
                Value::String(v.clone())
            };
            (c.as_str(), value)
        });
    let accepted = inner.accept(values)?;
    inner.write(prospect, accepted);
    *inner
        .stats
        .entry("prospects imported".to_owned())
        .or_default() += 1;
    Ok(())
}

pub(super) async fn create_import(State(fake): State<FakePardot>, form: Multipart) -> Response {
    let (input, file) = match parts(form).await {
        Ok(parts) => parts,
        Err(message) => return invalid(&message),
    };
    let Some(input) = input else {
        return invalid("the input part is required");
    };
    if input["operation"] != "Upsert" || input["object"] != "Prospect" {
        return invalid("operation must be Upsert and object Prospect");
    }
    if input["createOnNoMatch"] != false {
        // The fake only updates: leadscored never creates prospects.
        return invalid("this fake takes createOnNoMatch false only");
    }
    let mut inner = fake.lock();
    let now = jiff::Timestamp::now().as_millisecond();
    let mut import = Import {
        status: "Waiting",
        columns: None,
        rows: Vec::new(),
        batches: 0,
        ready_at: None,
        created_ms: now,
        updated_ms: now,
        updated_count: 0,
        error_count: 0,
        errors: Vec::new(),
    };
    if let Some(file) = file
        && let Err(message) = add_batch(&inner, &mut import, &file)
    {
        return invalid(&message);
    }
    if input["status"] == "Ready" {
        if import.batches == 0 {
            return invalid("an import needs a batch before it is Ready");
        }
        import.status = "Ready";
        import.ready_at = Some(Instant::now());
    }
    inner.next_import += 1;
    let id = inner.next_import;
    let body = import.json(id);
    inner.imports.insert(id, import);
    (StatusCode::CREATED, Json(body)).into_response()
}

pub(super) async fn add_import_batch(
    State(fake): State<FakePardot>,
    Path(id): Path<u64>,
    form: Multipart,
) -> Response {
    let file = match parts(form).await {
        Ok((_, Some(file))) => file,
        Ok((_, None)) => return invalid("the importFile part is required"),
        Err(message) => return invalid(&message),
    };
    let mut inner = fake.lock();
    let Some(mut import) = inner.imports.remove(&id) else {
        return not_found();
    };
    let added = if import.status == "Waiting" {
        add_batch(&inner, &mut import, &file)
    } else {
        Err("batches can only be added while the import is Waiting".to_owned())
    };
    let body = import.json(id);
    inner.imports.insert(id, import);
    match added {
        Ok(()) => (StatusCode::CREATED, Json(body)).into_response(),
        Err(message) => invalid(&message),
    }
}

pub(super) async fn update_import(
    State(fake): State<FakePardot>,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Response {
    let input: Value = match serde_json::from_slice(&body) {
        Ok(input) => input,
        Err(e) => return invalid(&format!("the body is not JSON: {e}")),
    };
    let mut inner = fake.lock();
    let Some(import) = inner.imports.get_mut(&id) else {
        return not_found();
    };
    match (input["status"].as_str(), import.status) {
        (Some("Ready"), "Waiting") if import.batches > 0 => {
            import.status = "Ready";
            import.ready_at = Some(Instant::now());
            import.updated_ms = jiff::Timestamp::now().as_millisecond();
        }
        // Asked again after a lost answer: already under way.
        (Some("Ready"), "Ready" | "Complete") => {}
        (Some("Ready"), _) => return invalid("an import needs a batch before it is Ready"),
        _ => return invalid("only status Ready can be set"),
    }
    Json(import.json(id)).into_response()
}

pub(super) async fn read_import(State(fake): State<FakePardot>, Path(id): Path<u64>) -> Response {
    let mut inner = fake.lock();
    process(&mut inner, id);
    match inner.imports.get(&id) {
        Some(import) => Json(import.json(id)).into_response(),
        None => not_found(),
    }
}

pub(super) async fn import_errors(State(fake): State<FakePardot>, Path(id): Path<u64>) -> Response {
    let inner = fake.lock();
    let Some(import) = inner.imports.get(&id) else {
        return not_found();
    };
    if import.status != "Complete" {
        return invalid("errors are listed once the import is Complete");
    }
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = import.columns.clone().unwrap_or_default();
    header.push("error".to_owned());
    let mut written = writer.write_record(&header).is_ok();
    for (row, why) in &import.errors {
        let mut record = row.clone();
        record.push(why.clone());
        written &= writer.write_record(&record).is_ok();
    }
    match (written, writer.into_inner()) {
        (true, Ok(bytes)) => ([("content-type", "text/csv")], bytes).into_response(),
        _ => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
