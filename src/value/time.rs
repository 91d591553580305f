//! Which strings are timestamps: RFC 3339 instants that `timestamptz` (PostgreSQL) and
//! `TIMESTAMPTZ` (Redshift) keep exactly.

/// RFC 3339 with an explicit offset (`Z` or `±hh:mm`), upper-case `T`, at most six fractional
/// digits (what `timestamptz`/`TIMESTAMPTZ` keep), no leap second, years 0001–9999.
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
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
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
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
    }
}
