//! The JSON line reader for records: one pass over the bytes, straight into
//! a [`Record`], without serde's per-key visitors.
//!
//! It reads exactly what the serde reader (`serde_format`) accepts into
//! exactly the same record, and nothing else: every value it skips is
//! checked against the JSON grammar as serde_json checks it, numbers are
//! converted by the same rules, and strings are decoded the same way. What
//! it is not sure of — any syntax error, a value of the wrong type, a lone
//! surrogate, a deep nesting, a missing id — it *declines*, and the line is
//! read again by the serde reader, which either reads it the same or says
//! what is wrong, in the words it always used. So error messages have one
//! source, and a line this reader gets wrong can only cost time.

use std::borrow::Cow;

use super::{
    Capture, Event, Prop, ReadMemo, Record, RecordBuilder, Scalar, convert, event_kind, parse_time,
};
use crate::model::{Model, Scope};

/// The line is left to the serde reader.
pub(super) struct Declined;

type Read<T> = Result<T, Declined>;

/// Nesting deeper than this inside a skipped value is left to serde_json,
/// whose own limit (128 levels) then decides.
const MAX_DEPTH: u32 = 64;

/// Reads one record line into `record`, reusing its buffers. On `Err` the
/// line was not read and `record` holds spent buffers for the serde reader;
/// the memo may have learned values meanwhile, which changes no outcome.
pub(super) fn read_record(
    model: &Model,
    json: &str,
    memo: &mut ReadMemo,
    record: &mut Record,
    capture: Option<&mut Capture<'_>>,
) -> Result<(), Declined> {
    let mut builder = RecordBuilder::reuse(model, std::mem::take(record));
    let read = Reader::new(json).record(&mut builder, memo, capture);
    *record = match read {
        Ok(()) => builder.build_with(memo),
        Err(Declined) => builder.record,
    };
    read
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    // --- The record format --------------------------------------------

    fn record(
        &mut self,
        builder: &mut RecordBuilder<'_>,
        memo: &mut ReadMemo,
        mut capture: Option<&mut Capture<'_>>,
    ) -> Read<()> {
        let model = builder.model;
        let mut id: Option<Cow<'a, str>> = None;
        self.object(|r, key| {
            if let Some(capture) = capture.as_deref_mut()
                && *key == *capture.name
            {
                let start = r.pos;
                r.skip(0)?;
                let raw = &r.text[start..r.pos];
                *capture.value = Some(serde_json::from_str(raw).map_err(|_| Declined)?);
                return Ok(());
            }
            match &*key {
                "id" => id = Some(r.id()?),
                "properties" => r.properties(builder, Scope::Contact)?,
                "company" => r.properties(builder, Scope::Company)?,
                "events" => r.array(|r| {
                    if let Some(event) = r.event(model, memo)? {
                        builder.record.events.push(event);
                    }
                    Ok(())
                })?,
                "lists" => r.array(|r| {
                    let name = r.string()?;
                    builder.list(&name);
                    Ok(())
                })?,
                _ => r.skip(0)?,
            }
            Ok(())
        })?;
        self.ws();
        if self.pos != self.bytes.len() {
            return Err(Declined);
        }
        match id {
            Some(id) if !id.is_empty() => {
                builder.record.id.push_str(&id);
                Ok(())
            }
            _ => Err(Declined),
        }
    }

    /// A string id, or a non-negative integer one.
    fn id(&mut self) -> Read<Cow<'a, str>> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b'0'..=b'9') => {
                let start = self.pos;
                let (integer, _) = self.number()?;
                let digits = &self.text[start..self.pos];
                match integer {
                    Some(n) if !digits.starts_with('-') => Ok(Cow::Owned(n.to_string())),
                    _ => Err(Declined),
                }
            }
            _ => Err(Declined),
        }
    }

    fn properties(&mut self, builder: &mut RecordBuilder<'_>, scope: Scope) -> Read<()> {
        let model = builder.model;
        self.object(|r, key| {
            let Some(slot) = model.schema.prop_slot(scope, &key) else {
                return r.skip(0);
            };
            let prop = match r.peek() {
                Some(b'[') => {
                    let mut values = Vec::new();
                    r.array(|r| {
                        if let Some(scalar) = r.scalar()?
                            && let Some(value) = convert(model, slot, scalar.as_value())
                        {
                            values.push(value);
                        }
                        Ok(())
                    })?;
                    Prop::Many(values.into_boxed_slice())
                }
                _ => match r.scalar()? {
                    Some(scalar) => {
                        convert(model, slot, scalar.as_value()).map_or(Prop::Missing, Prop::One)
                    }
                    None => Prop::Missing,
                },
            };
            builder.record.props[slot as usize] = prop;
            Ok(())
        })
    }

    /// One event: None when the model reads nothing of its type.
    fn event(&mut self, model: &Model, memo: &mut ReadMemo) -> Read<Option<Event>> {
        let mut kind: Option<Option<u32>> = None;
        let mut at: Option<Cow<'a, str>> = None;
        let mut matched = 0u128;
        self.object(|r, key| {
            match &*key {
                "type" => kind = Some(event_kind(model, &r.string()?)),
                // Parsed once the type is known: unread types are skipped unparsed.
                "at" => at = Some(r.string()?),
                "attributes" => {
                    let wanted = match kind {
                        None => u64::MAX,
                        Some(None) => 0,
                        Some(Some(kind)) => model.attr_slots_wanted(kind),
                    };
                    r.attributes(model, wanted, memo, &mut matched)?;
                }
                _ => r.skip(0)?,
            }
            Ok(())
        })?;
        let (Some(kind), Some(at)) = (kind, at) else {
            return Err(Declined);
        };
        let Some(kind) = kind else {
            return Ok(None);
        };
        let at = parse_time(&at).ok_or(Declined)?;
        Ok(Some(Event::new(model, kind, at, matched)))
    }

    fn attributes(
        &mut self,
        model: &Model,
        wanted: u64,
        memo: &mut ReadMemo,
        matched: &mut u128,
    ) -> Read<()> {
        self.object(|r, key| {
            let slot = model.schema.attr_index.get(&*key).copied();
            let Some(slot) =
                slot.filter(|s| wanted & 1u64.checked_shl(u32::from(*s)).unwrap_or(u64::MAX) != 0)
            else {
                return r.skip(0);
            };
            if r.peek() == Some(b'[') {
                r.array(|r| {
                    if let Some(scalar) = r.scalar()? {
                        *matched |= memo.matches(model, slot, &scalar.text());
                    }
                    Ok(())
                })
            } else {
                if let Some(scalar) = r.scalar()? {
                    *matched |= memo.matches(model, slot, &scalar.text());
                }
                Ok(())
            }
        })
    }

    // --- JSON ---------------------------------------------------------

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> Read<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// An object, each member's value read by `member` (which must consume it).
    fn object(&mut self, mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Read<()>) -> Read<()> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Declined),
            }
        }
    }

    /// An array, each element read by `element` (which must consume it).
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.eat(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.ws();
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Declined),
            }
        }
    }

    /// A string, borrowed from the line unless it holds escapes.
    fn string(&mut self) -> Read<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = special_byte(self.bytes, start).ok_or(Declined)?;
        match self.bytes[end] {
            b'"' => {
                self.pos = end + 1;
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            b'\\' => {
                let mut out = String::from(&self.text[start..end]);
                self.pos = end;
                self.escaped(&mut out)?;
                Ok(Cow::Owned(out))
            }
            _ => Err(Declined),
        }
    }

    /// The rest of a string from its first backslash, decoded into `out`.
    fn escaped(&mut self, out: &mut String) -> Read<()> {
        loop {
            let end = special_byte(self.bytes, self.pos).ok_or(Declined)?;
            out.push_str(&self.text[self.pos..end]);
            self.pos = end + 1;
            match self.bytes[end] {
                b'"' => return Ok(()),
                b'\\' => {}
                _ => return Err(Declined),
            }
            let escape = *self.bytes.get(self.pos).ok_or(Declined)?;
            self.pos += 1;
            out.push(match escape {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\u{8}',
                b'f' => '\u{c}',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let unit = self.hex4()?;
                    let code = match unit {
                        0xD800..=0xDBFF => {
                            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                return Err(Declined);
                            }
                            self.pos += 2;
                            let low = self.hex4()?;
                            if !(0xDC00..=0xDFFF).contains(&low) {
                                return Err(Declined);
                            }
                            0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                        }
                        0xDC00..=0xDFFF => return Err(Declined),
                        _ => u32::from(unit),
                    };
                    char::from_u32(code).ok_or(Declined)?
                }
                _ => return Err(Declined),
            });
        }
    }

    fn hex4(&mut self) -> Read<u16> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or(Declined)?;
        let mut unit = 0u16;
        for &digit in digits {
            let value = (digit as char).to_digit(16).ok_or(Declined)?;
            unit = unit << 4 | value as u16;
        }
        self.pos += 4;
        Ok(unit)
    }

    /// A number by JSON's grammar, as serde_json reads it into an `f64`;
    /// with its value as an integer when it is one that fits a `u64`
    /// (negative or not: the sign is in the text).
    fn number(&mut self) -> Read<(Option<u64>, f64)> {
        let start = self.pos;
        let (digits, integer_end) = self.number_syntax()?;
        let negative = digits > start;
        if self.pos == integer_end {
            let integer = self.bytes[digits..integer_end]
                .iter()
                .try_fold(0u64, |n, d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                });
            if let Some(n) = integer {
                // serde_json: a u64, an i64, or for the rest of the negative
                // range the negated f64; each `as f64` gives this.
                let value = n as f64;
                return Ok((Some(n), if negative { -value } else { value }));
            }
        }
        let value =
            serde_json::from_str::<f64>(&self.text[start..self.pos]).map_err(|_| Declined)?;
        Ok((None, value))
    }

    /// Passes over a number, checking its syntax only; gives where its
    /// digits start and where its integer part ends.
    fn number_syntax(&mut self) -> Read<(usize, usize)> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let digits = self.pos;
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Declined),
        }
        let integer_end = self.pos;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok((digits, integer_end))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Read<()> {
        let start = self.pos;
        self.digits();
        if self.pos == start {
            return Err(Declined);
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Read<()> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// A property or attribute value that is not an array: None for null.
    fn scalar(&mut self) -> Read<Option<Scalar<'a>>> {
        Ok(Some(match self.peek() {
            Some(b'"') => Scalar::Text(self.string()?),
            Some(b'-' | b'0'..=b'9') => Scalar::Number(self.number()?.1),
            Some(b't') => {
                self.literal(b"true")?;
                Scalar::Bool(true)
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Scalar::Bool(false)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(None);
            }
            _ => return Err(Declined),
        }))
    }

    /// Any value, checked and passed over.
    fn skip(&mut self, depth: u32) -> Read<()> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') if depth < MAX_DEPTH => self.object(|r, _| r.skip(depth + 1)),
            Some(b'[') if depth < MAX_DEPTH => self.array(|r| r.skip(depth + 1)),
            Some(b'{' | b'[') => Err(Declined),
            Some(b'-' | b'0'..=b'9') => self.number_syntax().map(drop),
            _ => self.scalar().map(drop),
        }
    }
}

/// The first `"`, `\` or control byte at or after `from`: where a string
/// ends, escapes, or breaks JSON's rules. Eight bytes at a time.
fn special_byte(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
    let rest = bytes.get(from..)?;
    // Empty strings and the end of a short key are found at once.
    if rest.first().copied().is_some_and(special) {
        return Some(from);
    }
    let chunks = rest.chunks_exact(8);
    let tail = chunks.remainder();
    for (i, chunk) in chunks.enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero (the two above) or below 0x20;
        // borrows can flag bytes after a flagged one, never before it.
        let flagged = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flagged = flagged & HIGH;
        if flagged != 0 {
            return Some(from + i * 8 + (flagged.trailing_zeros() / 8) as usize);
        }
    }
    let scanned = rest.len() - tail.len();
    tail.iter()
        .position(|&b| special(b))
        .map(|i| from + scanned + i)
}
