//! The JSON line reader for records: one pass over the bytes, straight into
//! a [`Record`] (or into one record per model, when `diff` reads a line for
//! two models), without serde's per-key visitors.
//!
//! It reads exactly what the serde reader (`serde_format`) accepts into
//! exactly the same record, and nothing else: every value it skips is
//! checked against the JSON grammar as serde_json checks it, numbers are
//! converted by the same rules, and strings are decoded the same way. What
//! it is not sure of — any syntax error, a value of the wrong type, a lone
//! surrogate, a deep nesting, a missing id — it *declines*, and the line is
//! read again by the serde reader, which either reads it the same or says
//! what is wrong, in the words it always used. So error messages have one
//! source, and a line declined that could have been read costs only time.

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

/// One model's side of a read: its record's builder and its memo.
struct Target<'b, 'm> {
    builder: RecordBuilder<'m>,
    memo: &'b mut ReadMemo,
}

/// Reads one record line for each of `N` models in one pass over the line
/// (`diff` reads each line for two), into `records`, reusing their buffers.
/// On `Err` the line was not read and each record holds spent buffers for
/// the serde reader; the memos may have learned values meanwhile, which
/// changes no outcome. The capture, if any, goes with the first model.
pub(super) fn read_records<const N: usize>(
    models: [&Model; N],
    json: &str,
    memos: [&mut ReadMemo; N],
    records: [&mut Record; N],
    capture: Option<&mut Capture<'_>>,
) -> Result<(), Declined> {
    let mut records = records;
    let mut t = 0;
    let mut targets = memos.map(|memo| {
        let builder = RecordBuilder::reuse(models[t], std::mem::take(&mut *records[t]));
        t += 1;
        Target { builder, memo }
    });
    let read = Reader::new(json).record(&mut targets, capture);
    for (target, record) in targets.into_iter().zip(records) {
        *record = match read {
            Ok(()) => target.builder.build_with(target.memo),
            Err(Declined) => target.builder.record,
        };
    }
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

    fn record<const N: usize>(
        &mut self,
        targets: &mut [Target<'_, '_>; N],
        mut capture: Option<&mut Capture<'_>>,
    ) -> Read<()> {
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
                "properties" => r.properties(targets, Scope::Contact)?,
                "company" => r.properties(targets, Scope::Company)?,
                "events" => r.array(|r| r.event(targets))?,
                "lists" => r.array(|r| {
                    let name = r.string()?;
                    for target in targets.iter_mut() {
                        target.builder.list(&name);
                    }
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
                for target in targets.iter_mut() {
                    target.builder.record.id.push_str(&id);
                }
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
                // No sign here: negative ids are left to the serde reader.
                let (integer, _) = self.number()?;
                integer.map(|n| Cow::Owned(n.to_string())).ok_or(Declined)
            }
            _ => Err(Declined),
        }
    }

    fn properties<const N: usize>(
        &mut self,
        targets: &mut [Target<'_, '_>; N],
        scope: Scope,
    ) -> Read<()> {
        self.object(|r, key| {
            let slots: [Option<u32>; N] =
                std::array::from_fn(|t| targets[t].builder.model.schema.prop_slot(scope, &key));
            if slots.iter().all(Option::is_none) {
                return r.skip(0);
            }
            if r.peek() == Some(b'[') {
                let mut scalars = Vec::new();
                r.array(|r| {
                    scalars.extend(r.scalar()?);
                    Ok(())
                })?;
                for (target, slot) in targets.iter_mut().zip(slots) {
                    let Some(slot) = slot else { continue };
                    let model = target.builder.model;
                    let values = scalars
                        .iter()
                        .filter_map(|scalar| convert(model, slot, scalar.as_value()));
                    target.builder.record.props[slot as usize] = Prop::Many(values.collect());
                }
            } else {
                let scalar = r.scalar()?;
                for (target, slot) in targets.iter_mut().zip(slots) {
                    let Some(slot) = slot else { continue };
                    let model = target.builder.model;
                    target.builder.record.props[slot as usize] = scalar
                        .as_ref()
                        .and_then(|scalar| convert(model, slot, scalar.as_value()))
                        .map_or(Prop::Missing, Prop::One);
                }
            }
            Ok(())
        })
    }

    /// One event, kept by each model that reads its type.
    fn event<const N: usize>(&mut self, targets: &mut [Target<'_, '_>; N]) -> Read<()> {
        // Per model: the type's slot once "type" was read (None inside
        // when the model reads nothing of it), and the patterns matched.
        let mut kinds: Option<[Option<u32>; N]> = None;
        let mut at: Option<Cow<'a, str>> = None;
        let mut matched = [0u128; N];
        self.object(|r, key| {
            match &*key {
                "type" => {
                    let name = r.string()?;
                    kinds = Some(std::array::from_fn(|t| {
                        event_kind(targets[t].builder.model, &name)
                    }));
                }
                // Parsed once the type is known: unread types are skipped unparsed.
                "at" => at = Some(r.string()?),
                "attributes" => {
                    let wanted: [u64; N] = std::array::from_fn(|t| match kinds {
                        None => u64::MAX,
                        Some(kinds) => match kinds[t] {
                            None => 0,
                            Some(kind) => targets[t].builder.model.attr_slots_wanted(kind),
                        },
                    });
                    r.attributes(targets, wanted, &mut matched)?;
                }
                _ => r.skip(0)?,
            }
            Ok(())
        })?;
        let (Some(kinds), Some(at)) = (kinds, at) else {
            return Err(Declined);
        };
        let mut time = None;
        for (t, target) in targets.iter_mut().enumerate() {
            let Some(kind) = kinds[t] else { continue };
            let at = match time {
                Some(at) => at,
                None => *time.insert(parse_time(&at).ok_or(Declined)?),
            };
            let model = target.builder.model;
            target
                .builder
                .record
                .events
                .push(Event::new(model, kind, at, matched[t]));
        }
        Ok(())
    }

    fn attributes<const N: usize>(
        &mut self,
        targets: &mut [Target<'_, '_>; N],
        wanted: [u64; N],
        matched: &mut [u128; N],
    ) -> Read<()> {
        self.object(|r, key| {
            let slots: [Option<u16>; N] = std::array::from_fn(|t| {
                let slot = targets[t]
                    .builder
                    .model
                    .schema
                    .attr_index
                    .get(&*key)
                    .copied();
                slot.filter(|s| {
                    wanted[t] & 1u64.checked_shl(u32::from(*s)).unwrap_or(u64::MAX) != 0
                })
            });
            if slots.iter().all(Option::is_none) {
                return r.skip(0);
            }
            let mut matches = |scalar: &Scalar<'_>| {
                let text = scalar.text();
                for (t, target) in targets.iter_mut().enumerate() {
                    if let Some(slot) = slots[t] {
                        matched[t] |= target.memo.matches(target.builder.model, slot, &text);
                    }
                }
            };
            if r.peek() == Some(b'[') {
                r.array(|r| {
                    if let Some(scalar) = r.scalar()? {
                        matches(&scalar);
                    }
                    Ok(())
                })
            } else {
                if let Some(scalar) = r.scalar()? {
                    matches(&scalar);
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
