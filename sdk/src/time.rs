//! Time: Unix timestamps and RFC 3339 text to the WIT [`Datetime`] (seconds + nanoseconds
//! since the Unix epoch, UTC), with a small dependency-free RFC 3339 parser.

use std::fmt;

use crate::types::Datetime;

/// A timestamp the parser refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError(pub String);

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid RFC 3339 timestamp {:?}", self.0)
    }
}

impl std::error::Error for TimeError {}

/// The datetime `secs` seconds after the Unix epoch.
pub fn datetime_from_unix(secs: i64) -> Datetime {
    Datetime {
        seconds: secs,
        nanoseconds: 0,
    }
}

/// The datetime `ms` milliseconds after the Unix epoch (negative values round down).
pub fn datetime_from_unix_millis(ms: i64) -> Datetime {
    Datetime {
        seconds: ms.div_euclid(1000),
        // rem_euclid(1000) is in 0..1000, so the product fits comfortably in u32.
        nanoseconds: (ms.rem_euclid(1000) as u32) * 1_000_000,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parse an RFC 3339 timestamp with an offset (`2024-01-02T10:00:00-05:00`,
/// `2024-01-02T15:00:00.123Z`) into UTC.
///
/// Accepts `T`, `t` or a space as the date/time separator, `Z`/`z` or `±HH:MM` offsets and
/// up to 9 fractional digits (more are truncated). A leap second (`:60`) is read as the
/// following second.
pub fn parse_rfc3339(text: &str) -> Result<Datetime, TimeError> {
    let err = || TimeError(text.to_string());
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Result<u32, TimeError> {
        let s = b.get(range).ok_or_else(err)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        Ok(s.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, allowed: &[u8]| -> Result<(), TimeError> {
        match b.get(i) {
            Some(c) if allowed.contains(c) => Ok(()),
            _ => Err(err()),
        }
    };
    let year = num(0..4)?;
    sep(4, b"-")?;
    let month = num(5..7)?;
    sep(7, b"-")?;
    let day = num(8..10)?;
    sep(10, b"Tt ")?;
    let hour = num(11..13)?;
    sep(13, b":")?;
    let minute = num(14..16)?;
    sep(16, b":")?;
    let second = num(17..19)?;
    let year = i64::from(year);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(err());
    }

    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
        if end == start {
            return Err(err());
        }
        for (k, d) in b[start..end].iter().take(9).enumerate() {
            nanos += u32::from(d - b'0') * 10u32.pow(8 - k as u32);
        }
        i = end;
    }

    let offset_secs: i64 = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(&s @ (b'+' | b'-')) if b.len() == i + 6 => {
            let oh = num(i + 1..i + 3)?;
            sep(i + 3, b":")?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return Err(err());
            }
            let o = i64::from(oh * 3600 + om * 60);
            if s == b'-' { -o } else { o }
        }
        _ => return Err(err()),
    };

    let local =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok(Datetime {
        seconds: local - offset_secs,
        nanoseconds: nanos,
    })
}

/// Render a datetime as RFC 3339 in UTC (`2024-01-02T15:00:00Z`, with `.nnnnnnnnn` only when
/// the nanoseconds are non-zero).
pub fn to_rfc3339(dt: &Datetime) -> String {
    let days = dt.seconds.div_euclid(86_400);
    let secs = dt.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let frac = if dt.nanoseconds == 0 {
        String::new()
    } else {
        format!(".{:09}", dt.nanoseconds)
    };
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{frac}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dt(seconds: i64, nanoseconds: u32) -> Datetime {
        Datetime {
            seconds,
            nanoseconds,
        }
    }

    #[test]
    fn unix() {
        assert_eq!(datetime_from_unix(1_700_000_000), dt(1_700_000_000, 0));
        assert_eq!(
            datetime_from_unix_millis(1_700_000_000_123),
            dt(1_700_000_000, 123_000_000)
        );
        assert_eq!(datetime_from_unix_millis(-1), dt(-1, 999_000_000));
        assert_eq!(datetime_from_unix_millis(0), dt(0, 0));
    }

    #[test]
    fn parses_offsets_to_utc() {
        // 2024-01-02T15:00:00Z = 1704207600
        assert_eq!(
            parse_rfc3339("2024-01-02T10:00:00-05:00"),
            Ok(dt(1_704_207_600, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-01-02T15:00:00Z"),
            Ok(dt(1_704_207_600, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-01-02t20:30:00+05:30"),
            Ok(dt(1_704_207_600, 0))
        );
        assert_eq!(
            parse_rfc3339("2024-01-02 15:00:00z"),
            Ok(dt(1_704_207_600, 0))
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(dt(0, 0)));
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.5Z"),
            Ok(dt(-1, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00.123456789123+00:00"),
            Ok(dt(1_709_164_800, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z"),
            Ok(dt(1_483_228_800, 0))
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2024-01-02",
            "2024-01-02T10:00:00",
            "2024-01-02T10:00Z",
            "2024-13-02T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-01-32T10:00:00Z",
            "2024-01-02T24:00:00Z",
            "2024-01-02T10:00:00.Z",
            "2024-01-02T10:00:00+0500",
            "2024-01-02T10:00:00+05:00x",
            "2024-01-02T10:00:00Zx",
            "２024-01-02T10:00:00Z",
            "+024-01-02T10:00:00Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renders_utc() {
        assert_eq!(to_rfc3339(&dt(1_704_207_600, 0)), "2024-01-02T15:00:00Z");
        assert_eq!(
            to_rfc3339(&dt(-1, 500_000_000)),
            "1969-12-31T23:59:59.500000000Z"
        );
        assert_eq!(to_rfc3339(&dt(951_782_400, 0)), "2000-02-29T00:00:00Z");
        for s in [0, 1, 86_399, 951_782_400, 4_102_444_800, -62_135_596_800] {
            let text = to_rfc3339(&dt(s, 0));
            assert_eq!(parse_rfc3339(&text), Ok(dt(s, 0)), "{text}");
        }
    }
}
