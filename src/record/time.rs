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

/// `YYYY-MM-DDTHH:MM:SS[.fff…]Z` from 1970 to 9998, the form nearly every event
/// time has, read without the general parser; anything else (offsets,
/// leap seconds, impossible days) is left to it. Same result as jiff's
/// `Timestamp::as_millisecond` (fractions truncated).
fn utc_fast_path(b: &[u8]) -> Option<i64> {
    let (head, rest) = b.split_first_chunk::<19>()?;
    if rest.last() != Some(&b'Z')
        || head[4] != b'-'
        || head[7] != b'-'
        || head[10] != b'T'
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    // Two digits at a time; a non-digit shows as a digit value over 9.
    let mut bad = 0u8;
    let mut two = |i: usize| {
        let (tens, ones) = (head[i].wrapping_sub(b'0'), head[i + 1].wrapping_sub(b'0'));
        bad |= u8::from(tens > 9) | u8::from(ones > 9);
        i64::from(tens) * 10 + i64::from(ones)
    };
    let year = two(0) * 100 + two(2);
    let (month, day) = (two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if bad != 0 {
        return None;
    }
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
    // Days in the year before each month, and each month's length.
    const BEFORE: [i64; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];
    // Year 9999 is left to jiff, whose range ends within it.
    if !(1970..=9998).contains(&year)
        || !(1..=12).contains(&month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let m = (month - 1) as usize;
    let february = i64::from(leap && month == 2);
    if day < 1 || day > BEFORE[m + 1] - BEFORE[m] + february {
        return None;
    }
    // Days since 1970-01-01: whole years, their leap days, then this year's.
    let before = year - 1;
    let leap_days = before / 4 - before / 100 + before / 400 - 477;
    let days = (year - 1970) * 365 + leap_days + BEFORE[m] + i64::from(leap && month > 2) + day - 1;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}
