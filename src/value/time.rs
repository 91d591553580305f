//! Which strings are timestamps: RFC 3339 instants that `timestamptz` (PostgreSQL) and
//! `TIMESTAMPTZ` (Redshift) keep exactly, and the one form they are sent in: UTC with `Z`.
//!
//! The warehouses keep the instant, not the offset it was written with. Sending every value in
//! UTC keeps the instant exactly and spares each COPY from parsing offsets it may not accept
//! (PostgreSQL refuses `+16:00`, which RFC 3339 allows).

use std::borrow::Cow;

/// RFC 3339 with an explicit offset (`Z` or `±hh:mm`), upper-case `T`, at most six fractional
/// digits (what `timestamptz`/`TIMESTAMPTZ` keep), no leap second, years 0001–9999 both as
/// written and in UTC.
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i - start > 6 {
            return false;
        }
    }
    let offset_ok = match &b[i..] {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] if *sign == b'+' || *sign == b'-' => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        _ => false,
    };
    if !offset_ok || &s[17..19] == "60" || &s[0..4] == "0000" {
        return false;
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => {
            use chrono::Datelike;
            (1..=9999).contains(&t.with_timezone(&chrono::Utc).year())
        }
        Err(_) => false,
    }
}

/// The UTC form of a string [`is_timestamp`] accepts: `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z`, the
/// same instant. A value in UTC with `Z` already is returned as it is.
pub fn to_utc(s: &str) -> Cow<'_, str> {
    if s.ends_with('Z') {
        return Cow::Borrowed(s);
    }
    match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Cow::Owned(
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.fZ")
                .to_string(),
        ),
        Err(_) => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_check_is_strict() {
        for ok in [
            "2024-01-01T00:00:00Z",
            "1999-12-31T23:59:59.5-08:00",
            "2024-02-29T12:00:00.000001+00:00",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in [
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.1234567Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01t00:00:00z",
            "0000-01-01T00:00:00Z",
            // Valid as written, but year 0 or 10000 in UTC.
            "0001-01-01T00:30:00+01:00",
            "9999-12-31T23:30:00-01:00",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
        // Offsets RFC 3339 allows but PostgreSQL would refuse: still instants, sent in UTC.
        assert!(is_timestamp("2024-06-01T12:00:00+16:00"));
    }

    #[test]
    fn timestamps_are_sent_in_utc_keeping_the_instant() {
        for (given, utc) in [
            ("2024-06-01T12:00:00+16:00", "2024-05-31T20:00:00Z"),
            (
                "2024-02-29T23:59:59.123456+05:30",
                "2024-02-29T18:29:59.123456Z",
            ),
            ("1999-12-31T23:59:59.5-08:00", "2000-01-01T07:59:59.500Z"),
            ("2024-01-01T00:00:00+00:00", "2024-01-01T00:00:00Z"),
            ("2024-01-01T00:00:00.1Z", "2024-01-01T00:00:00.1Z"),
        ] {
            assert!(is_timestamp(given), "{given}");
            assert_eq!(to_utc(given), utc, "{given}");
            let back = chrono::DateTime::parse_from_rfc3339(utc).unwrap();
            assert_eq!(back, chrono::DateTime::parse_from_rfc3339(given).unwrap());
        }
        assert!(matches!(to_utc("2024-01-01T00:00:00Z"), Cow::Borrowed(_)));
    }
}
