//! Glob patterns for event attributes (`url = "*/pricing*"`), matched
//! case-insensitively against case-folded values.
//!
//! The common shapes (`*text*`, `text*`, `*text`, `text`) become plain
//! substring tests; anything else is translated to a regex once, at compile
//! time.

use memchr::memmem::Finder;
use regex::Regex;

#[derive(Debug)]
pub(crate) enum Pattern {
    Exact(Box<str>),
    /// A prebuilt substring searcher: most patterns are `*text*`.
    Contains(Box<Finder<'static>>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    Regex(Regex),
}

impl Pattern {
    /// Compiles a glob where `*` is any run of characters and `?` one
    /// character. Everything else is literal.
    pub(crate) fn glob(pattern: &str) -> Result<Pattern, String> {
        let folded = pattern.to_lowercase();
        if folded.is_empty() {
            return Err("empty pattern: use \"*\" to accept any value".to_owned());
        }
        let inner = folded.trim_matches('*');
        let wildcard_inside = inner.contains(['*', '?']);
        if !wildcard_inside && !folded.contains('?') {
            let starts = folded.starts_with('*');
            let ends = folded.ends_with('*') && folded.len() > 1;
            let text: Box<str> = inner.into();
            return Ok(match (starts, ends) {
                _ if inner.is_empty() => Pattern::Prefix("".into()),
                (true, true) => {
                    Pattern::Contains(Box::new(Finder::new(text.as_bytes()).into_owned()))
                }
                (false, true) => Pattern::Prefix(text),
                (true, false) => Pattern::Suffix(text),
                (false, false) => Pattern::Exact(text),
            });
        }
        let mut expression = String::with_capacity(folded.len() + 8);
        expression.push_str("^(?s)");
        for ch in folded.chars() {
            match ch {
                '*' => expression.push_str(".*"),
                '?' => expression.push('.'),
                other => expression.push_str(&regex::escape(other.encode_utf8(&mut [0; 4]))),
            }
        }
        expression.push('$');
        Regex::new(&expression)
            .map(Pattern::Regex)
            .map_err(|e| e.to_string())
    }

    /// `value` must already be case-folded.
    pub(crate) fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(text) => value == &**text,
            Pattern::Contains(finder) => finder.find(value.as_bytes()).is_some(),
            Pattern::Prefix(text) => value.starts_with(&**text),
            Pattern::Suffix(text) => value.ends_with(&**text),
            Pattern::Regex(regex) => regex.is_match(value),
        }
    }
}

impl PartialEq for Pattern {
    /// Same written pattern; lets the compiler share one pattern between
    /// the rules and conditions that repeat it.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Pattern::Exact(a), Pattern::Exact(b))
            | (Pattern::Prefix(a), Pattern::Prefix(b))
            | (Pattern::Suffix(a), Pattern::Suffix(b)) => a == b,
            (Pattern::Contains(a), Pattern::Contains(b)) => a.needle() == b.needle(),
            (Pattern::Regex(a), Pattern::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}
