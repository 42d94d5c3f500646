//! Located configuration errors: every problem in a model or connection
//! file is reported with the file, line and column it comes from, and all
//! of them at once.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// One problem in a model file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong and what was expected, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in a model file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> impl Iterator<Item = &ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        let count = self.0.len();
        write!(
            f,
            "\n{count} problem{} found",
            if count == 1 { "" } else { "s" }
        )
    }
}

/// Collects errors against one source text, turning byte spans into
/// line/column positions.
pub(crate) struct Diagnostics<'a> {
    file: &'a str,
    source: &'a str,
    errors: Vec<(usize, ConfigError)>,
    warnings: Vec<(usize, ConfigError)>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(file: &'a str, source: &'a str) -> Self {
        Self {
            file,
            source,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Where `span` starts, as a located message.
    pub(crate) fn locate(
        &self,
        span: &Range<usize>,
        message: impl Into<String>,
    ) -> (usize, ConfigError) {
        let offset = span.start.min(self.source.len());
        let (line, column) = line_column(self.source, offset);
        (
            offset,
            ConfigError {
                file: self.file.to_owned(),
                line,
                column,
                message: message.into(),
            },
        )
    }

    /// Records a problem at the start of `span`.
    pub(crate) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let located = self.locate(span, message);
        self.errors.push(located);
    }

    /// Records something that is allowed but probably not meant (a cap no
    /// rule can reach, a pattern without a wildcard): reported by
    /// `check-config`, fatal only under `--strict`.
    pub(crate) fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let located = self.locate(span, message);
        self.warnings.push(located);
    }

    /// Records a parse or decode error from the TOML layer.
    pub(crate) fn toml(&mut self, error: &toml::de::Error, fallback: &Range<usize>) {
        let span = error.span().unwrap_or_else(|| fallback.clone());
        let message = error
            .message()
            .trim()
            .trim_end_matches('.')
            .replace('\n', " ");
        self.error(&span, polish(&message));
    }

    /// Decodes one table. Unknown keys are all reported (serde would stop at
    /// the first) and dropped so the other values' types are still checked;
    /// a table with unknown keys then yields nothing, because what it means
    /// is uncertain and checking it further would only add noise.
    pub(crate) fn decode<T: DeserializeOwned>(&mut self, value: Spanned<DeValue<'_>>) -> Option<T> {
        let span = value.span();
        let (span, value) = (span.clone(), value.into_inner());
        let mut had_unknown = false;
        let value = match (value, struct_fields::<T>()) {
            (DeValue::Table(mut table), Some(fields)) => {
                let unknown: Vec<(String, Range<usize>)> = table
                    .iter()
                    .filter(|(key, _)| !fields.contains(&key.get_ref().as_ref()))
                    .map(|(key, _)| (key.get_ref().to_string(), key.span()))
                    .collect();
                for (key, at) in &unknown {
                    self.error(at, unknown_key(key, fields));
                    table.remove(key.as_str());
                }
                had_unknown = !unknown.is_empty();
                DeValue::Table(table)
            }
            (other, _) => other,
        };
        match T::deserialize(ValueDeserializer::from(Spanned::new(span.clone(), value))) {
            Ok(v) => Some(v).filter(|_| !had_unknown),
            Err(e) => {
                self.toml(&e, &span);
                None
            }
        }
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The warnings in file order when there is no error; else every error.
    pub(crate) fn finish(mut self) -> Result<Vec<ConfigError>, ConfigErrors> {
        if self.errors.is_empty() {
            self.warnings.sort_by_key(|(offset, _)| *offset);
            self.warnings.dedup_by(|a, b| a.1 == b.1);
            return Ok(self.warnings.into_iter().map(|(_, w)| w).collect());
        }
        self.errors.sort_by_key(|(offset, _)| *offset);
        self.errors.dedup_by(|a, b| a.1 == b.1);
        Err(ConfigErrors(
            self.errors.into_iter().map(|(_, e)| e).collect(),
        ))
    }
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset;
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Rewrites serde's wording into the model's: key names with a suggestion
/// instead of a list of fifty, "a number" instead of "f64".
fn polish(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `")
        && let Some((key, expected)) = rest.split_once('`')
    {
        let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        return unknown_key(key, &candidates);
    }
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some((key, _)) = rest.split_once('`')
    {
        return format!("missing key `{key}`");
    }
    message
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
}

/// "unknown key `pionts`: did you mean `points`?", or the list of keys when
/// it is short, or a pointer to the reference when it is long.
pub(crate) fn unknown_key(key: &str, candidates: &[&str]) -> String {
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(key, c), *c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 4))
        .min();
    match best {
        Some((_, suggestion)) => format!("unknown key `{key}`: did you mean `{suggestion}`?"),
        None if candidates.len() <= 8 => format!(
            "unknown key `{key}`, expected one of {}",
            candidates.join(", ")
        ),
        None => format!("unknown key `{key}`: see the model reference in the README"),
    }
}

/// The field names of a derived `Deserialize` struct, read by asking it to
/// deserialize from a deserializer that only records what it is asked for.
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::value::Error;
    use serde::de::{Deserializer, Error as _, Visitor};

    struct Capture<'a>(&'a mut Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for Capture<'_> {
        type Error = Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            *self.0 = Some(fields);
            Err(Error::custom("field names captured"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields = None;
    let _ = T::deserialize(Capture(&mut fields));
    fields
}
