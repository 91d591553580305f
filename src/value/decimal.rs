//! Exact handling of DynamoDB numbers (up to 38 significant digits, magnitudes 1E-130 to
//! 9.99…E+125). They are never parsed into floating point: a number is kept as its decimal digits
//! and a power of ten, which is all the pipeline needs to decide a column type and render text.

use std::fmt::Write;

/// A decimal number `(-1)^negative × digits × 10^exponent`, normalised so that `digits` has no
/// leading or trailing zeros (zero is `digits == ""`, never negative).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decimal {
    pub negative: bool,
    pub digits: String,
    pub exponent: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a decimal number")]
pub struct NotANumber(pub String);

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`, the forms DynamoDB accepts and returns.
    pub fn parse(text: &str) -> Result<Decimal, NotANumber> {
        let err = || NotANumber(text.to_string());
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&s) = bytes.first() {
            if s == b'-' || s == b'+' {
                negative = s == b'-';
                i = 1;
            }
        }
        let mut digits = String::with_capacity(text.len());
        let mut seen_digit = false;
        let mut frac_len: i64 = 0;
        let mut in_frac = false;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => {
                    seen_digit = true;
                    digits.push(bytes[i] as char);
                    if in_frac {
                        frac_len += 1;
                    }
                }
                b'.' if !in_frac => in_frac = true,
                b'e' | b'E' => break,
                _ => return Err(err()),
            }
            i += 1;
        }
        if !seen_digit {
            return Err(err());
        }
        let mut exponent: i64 = 0;
        if i < bytes.len() {
            let exp_text = &text[i + 1..];
            let unsigned = exp_text.strip_prefix(['+', '-']).unwrap_or(exp_text);
            if unsigned.is_empty()
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
                || unsigned.len() > 9
            {
                return Err(err());
            }
            exponent = exp_text.parse::<i64>().map_err(|_| err())?;
        }
        exponent -= frac_len;
        let leading = digits.bytes().take_while(|&b| b == b'0').count();
        digits.drain(..leading);
        let trailing = digits.bytes().rev().take_while(|&b| b == b'0').count();
        digits.truncate(digits.len() - trailing);
        exponent += trailing as i64;
        if digits.is_empty() {
            return Ok(Decimal {
                negative: false,
                digits,
                exponent: 0,
            });
        }
        let exponent = i32::try_from(exponent).map_err(|_| err())?;
        Ok(Decimal {
            negative,
            digits,
            exponent,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// Number of significant digits (0 for zero).
    pub fn significant_digits(&self) -> u32 {
        self.digits.len() as u32
    }

    /// Digits after the decimal point needed to write the number exactly.
    pub fn scale(&self) -> u32 {
        if self.exponent < 0 {
            self.exponent.unsigned_abs()
        } else {
            0
        }
    }

    /// Digits before the decimal point (0 for numbers below one).
    pub fn integer_digits(&self) -> u32 {
        (self.digits.len() as i64 + i64::from(self.exponent)).max(0) as u32
    }

    /// The precision a DECIMAL needs to hold this number with its scale.
    pub fn precision(&self) -> u32 {
        self.integer_digits() + self.scale()
    }

    /// The value as i64 when it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        if self.is_zero() {
            return Some(0);
        }
        if self.exponent < 0 || self.integer_digits() > 19 {
            return None;
        }
        let mut magnitude: i128 = 0;
        for b in self.digits.bytes() {
            magnitude = magnitude * 10 + i128::from(b - b'0');
        }
        for _ in 0..self.exponent {
            magnitude *= 10;
        }
        let value = if self.negative { -magnitude } else { magnitude };
        i64::try_from(value).ok()
    }

    /// Plain positional notation (`-12.5`, `0.001`, `1200`); exact, but long for extreme exponents.
    pub fn to_plain(&self) -> String {
        let mut out = String::with_capacity(self.digits.len() + 8);
        self.write_plain(&mut out);
        out
    }

    fn write_plain(&self, out: &mut String) {
        if self.is_zero() {
            out.push('0');
            return;
        }
        if self.negative {
            out.push('-');
        }
        if self.exponent >= 0 {
            out.push_str(&self.digits);
            out.extend(std::iter::repeat_n('0', self.exponent as usize));
        } else {
            let scale = self.exponent.unsigned_abs() as usize;
            if scale >= self.digits.len() {
                out.push_str("0.");
                out.extend(std::iter::repeat_n('0', scale - self.digits.len()));
                out.push_str(&self.digits);
            } else {
                let point = self.digits.len() - scale;
                out.push_str(&self.digits[..point]);
                out.push('.');
                out.push_str(&self.digits[point..]);
            }
        }
    }

    /// A valid JSON number token with the exact value: positional when short, otherwise
    /// scientific (`1E-130`, `9.99E+125`).
    pub fn to_json_number(&self) -> String {
        let mut out = String::new();
        self.write_json_number(&mut out);
        out
    }

    pub fn write_json_number(&self, out: &mut String) {
        let positional_len = self.integer_digits().max(1) + self.scale();
        if positional_len <= 40 {
            self.write_plain(out);
            return;
        }
        if self.negative {
            out.push('-');
        }
        out.push_str(&self.digits[..1]);
        if self.digits.len() > 1 {
            out.push('.');
            out.push_str(&self.digits[1..]);
        }
        let exp = i64::from(self.exponent) + self.digits.len() as i64 - 1;
        let _ = write!(out, "E{}{}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// When `text` is a number in the canonical plain form — an optional `-`, an integer part without
/// leading zeros, and an optional fraction without trailing zeros, not `-0` — returns its integer
/// digits and scale as [`Decimal`] counts them. Such text is exactly what [`Decimal::to_plain`]
/// would render, so it can be used as it is.
pub fn canonical_plain(text: &str) -> Option<(u32, u32)> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if integer.is_empty() || !all_digits(integer) || (integer.len() > 1 && integer.starts_with('0'))
    {
        return None;
    }
    let scale = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && all_digits(f) && !f.ends_with('0') => f.len(),
        Some(_) => return None,
    };
    if integer == "0" && scale == 0 && unsigned.len() != text.len() {
        return None; // "-0"
    }
    let integer_digits = if integer == "0" { 0 } else { integer.len() };
    Some((integer_digits as u32, scale as u32))
}

/// True when `text` is a canonical plain integer short enough to fit i64 without checking.
pub fn plain_integer_fits_i64(text: &str) -> bool {
    matches!(canonical_plain(text), Some((digits, 0)) if digits <= 18)
}

/// True when `text` is canonical plain and fits DECIMAL(`precision`, `scale`).
pub fn plain_fits_decimal(text: &str, precision: u32, scale: u32) -> bool {
    matches!(canonical_plain(text), Some((digits, s)) if s <= scale && digits <= precision.saturating_sub(scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn normalises_zeros_and_signs() {
        assert_eq!(d("0").to_plain(), "0");
        assert_eq!(d("-0.000").to_plain(), "0");
        assert_eq!(d("+001.2300").to_plain(), "1.23");
        assert_eq!(d("1200").digits, "12");
        assert_eq!(d("1200").exponent, 2);
        assert_eq!(d("-1.5E3").to_plain(), "-1500");
        assert_eq!(d("1.5e-3").to_plain(), "0.0015");
    }

    #[test]
    fn rejects_non_numbers() {
        for bad in ["", "-", "1.2.3", "1e", "e5", "0x10", "NaN", "1 ", "1e+"] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn precision_and_scale() {
        let x = d("-123.4500");
        assert_eq!(
            (x.precision(), x.scale(), x.significant_digits()),
            (5, 2, 5)
        );
        let y = d("0.001");
        assert_eq!((y.precision(), y.scale(), y.integer_digits()), (3, 3, 0));
        assert_eq!(d("1E+5").precision(), 6);
    }

    #[test]
    fn i64_edges() {
        assert_eq!(d("9223372036854775807").to_i64(), Some(i64::MAX));
        assert_eq!(d("-9223372036854775808").to_i64(), Some(i64::MIN));
        assert_eq!(d("9223372036854775808").to_i64(), None);
        assert_eq!(d("-9223372036854775809").to_i64(), None);
        assert_eq!(d("1.5").to_i64(), None);
        assert_eq!(d("1E+30").to_i64(), None);
        assert_eq!(d("12E+2").to_i64(), Some(1200));
    }

    #[test]
    fn extreme_magnitudes_stay_exact_in_json() {
        assert_eq!(d("1E-130").to_json_number(), "1E-130");
        let big = format!("9.{}E+125", "9".repeat(37));
        let j = d(&big).to_json_number();
        assert_eq!(d(&j), d(&big));
        let digits38 = "12345678901234567890123456789012345678";
        assert_eq!(d(digits38).to_json_number(), digits38);
        assert_eq!(
            d(&format!("-{digits38}")).to_plain(),
            format!("-{digits38}")
        );
    }

    #[test]
    fn json_numbers_parse_back_to_the_same_value() {
        for s in [
            "0",
            "-1",
            "0.5",
            "123.456",
            "1E-130",
            "-7.25E+90",
            "100",
            "1E+38",
        ] {
            let n = d(s);
            assert_eq!(d(&n.to_json_number()), n, "{s}");
            let v: serde_json::Value = serde_json::from_str(&n.to_json_number()).unwrap();
            assert!(v.is_number(), "{s}");
        }
    }

    #[test]
    fn canonical_plain_text_is_what_to_plain_renders() {
        for text in [
            "0",
            "7",
            "-7",
            "1200",
            "10.5",
            "0.05",
            "-0.05",
            "123456789.01",
            "-9223372036854775808",
        ] {
            let (digits, scale) = canonical_plain(text).unwrap_or_else(|| panic!("{text}"));
            let d = Decimal::parse(text).unwrap();
            assert_eq!(d.to_plain(), text);
            assert_eq!((digits, scale), (d.integer_digits(), d.scale()), "{text}");
        }
        for text in [
            "", "-", "-0", "+1", "01", "1.", ".5", "1.50", "1e3", "1E3", "0.0", "1,5", " 1", "--1",
        ] {
            assert_eq!(canonical_plain(text), None, "{text:?}");
        }
        assert!(plain_integer_fits_i64("-999999999999999999"));
        assert!(
            !plain_integer_fits_i64("1000000000000000000"),
            "19 digits take the exact path"
        );
        assert!(!plain_integer_fits_i64("1.5"));
        assert!(plain_fits_decimal("123.45", 5, 2));
        assert!(!plain_fits_decimal("1234.5", 5, 2));
        assert!(!plain_fits_decimal("1.234", 5, 2));
        assert!(plain_fits_decimal("0.5", 1, 1));
    }
}
