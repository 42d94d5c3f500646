//! Reading the times CRMs send (RFC 3339, plain dates, date-times without
//! an offset, epoch milliseconds) as epoch milliseconds, with a fast path
//! for the `…Z` form nearly every event time has.

/// Parses the date forms CRMs send: RFC 3339, a plain date (midnight UTC),
/// a date-time without offset (UTC) or epoch milliseconds.
pub fn parse_time(text: &str) -> Option<i64> {
    // The common form first, before any trimming or scanning.
    if let Some(ms) = utc_fast_path(text.as_bytes()) {
        return Some(ms);
    }
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    if let Some(ms) = utc_fast_path(text.as_bytes()) {
        return Some(ms);
    }
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts.as_millisecond());
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return jiff::tz::TimeZone::UTC
            .to_timestamp(dt)
            .ok()
            .map(|t| t.as_millisecond());
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` from 1970 on, the form nearly every event
/// time has, read without the general parser; anything else (offsets,
/// leap seconds, impossible days) is left to it. Same result as jiff's
/// `Timestamp::as_millisecond` (fractions truncated).
fn utc_fast_path(b: &[u8]) -> Option<i64> {
    let (head, rest) = b.split_first_chunk::<19>()?;
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let [
        y0,
        y1,
        y2,
        y3,
        b'-',
        m0,
        m1,
        b'-',
        d0,
        d1,
        b'T',
        h0,
        h1,
        b':',
        i0,
        i1,
        b':',
        s0,
        s1,
    ] = *head
    else {
        return None;
    };
    // Each digit's value, all at once; a non-digit shows as a value over 9.
    let digits =
        [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, i0, i1, s0, s1].map(|d| d.wrapping_sub(b'0'));
    if digits.iter().any(|d| *d > 9) {
        return None;
    }
    let n = |i: usize| i64::from(digits[i]);
    let year = n(0) * 1000 + n(1) * 100 + n(2) * 10 + n(3);
    let (month, day) = (n(4) * 10 + n(5), n(6) * 10 + n(7));
    let (hour, minute, second) = (n(8) * 10 + n(9), n(10) * 10 + n(11), n(12) * 10 + n(13));
    let millis = match rest {
        [b'Z'] => 0,
        [b'.', fraction @ .., b'Z'] if (1..=9).contains(&fraction.len()) => {
            if !fraction.iter().all(u8::is_ascii_digit) {
                return None;
            }
            fraction
                .iter()
                .chain(std::iter::repeat(&b'0'))
                .take(3)
                .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'))
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if year < 1970
        || !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}
