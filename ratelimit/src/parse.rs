//! Parsing of quantities such as `10M` or `4Ki` for the command line.

use std::fmt;

/// Why [`parse_quantity`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The input was empty.
    Empty,
    /// The input starts with `-`.
    Negative(String),
    /// The input has a decimal point.
    Fractional(String),
    /// The input does not start with a digit, or has characters that are neither digits nor a
    /// known suffix.
    NotANumber(String),
    /// The suffix after the digits is not one of `k K M G T Ki Mi Gi Ti`.
    UnknownSuffix(String),
    /// The value does not fit in 64 bits.
    Overflow(String),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty quantity"),
            ParseError::Negative(s) => write!(f, "quantity {s:?} is negative"),
            ParseError::Fractional(s) => {
                write!(
                    f,
                    "quantity {s:?} is fractional; use a whole number (e.g. 1500k)"
                )
            }
            ParseError::NotANumber(s) => write!(f, "quantity {s:?} is not a number"),
            ParseError::UnknownSuffix(s) => write!(
                f,
                "quantity {s:?} has an unknown unit suffix; use k/K, M, G, T (x1000) or Ki, Mi, \
                 Gi, Ti (x1024)"
            ),
            ParseError::Overflow(s) => write!(f, "quantity {s:?} is too large (max {})", u64::MAX),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses a non-negative integer with an optional unit suffix: `k`/`K`, `M`, `G`, `T` multiply
/// by powers of 1000, `Ki`, `Mi`, `Gi`, `Ti` by powers of 1024. `"10M"` is 10 000 000, `"4Ki"`
/// is 4096, `"0"` is 0. Rejects empty, negative, fractional, non-numeric and overflowing input.
pub fn parse_quantity(s: &str) -> Result<u64, ParseError> {
    let err = |f: fn(String) -> ParseError| Err(f(s.to_owned()));
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    if s.starts_with('-') {
        return err(ParseError::Negative);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(digits_end);
    if suffix.starts_with('.') || suffix.starts_with(',') {
        return err(ParseError::Fractional);
    }
    if digits.is_empty() {
        return err(ParseError::NotANumber);
    }
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" | "K" => 1000,
        "M" => 1000u64.pow(2),
        "G" => 1000u64.pow(3),
        "T" => 1000u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ if suffix.chars().any(|c| c.is_ascii_digit()) => return err(ParseError::NotANumber),
        _ => return err(ParseError::UnknownSuffix),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|v| v.checked_mul(multiplier))
        .map_or_else(|| err(ParseError::Overflow), Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts() {
        for (s, v) in [
            ("0", 0),
            ("42", 42),
            ("10M", 10_000_000),
            ("4Ki", 4096),
            ("5k", 5000),
            ("5K", 5000),
            ("2G", 2_000_000_000),
            ("3T", 3_000_000_000_000),
            ("1Mi", 1 << 20),
            ("1Gi", 1 << 30),
            ("2Ti", 2 << 40),
            ("18446744073709551615", u64::MAX),
            ("16Mi", 16 << 20),
        ] {
            assert_eq!(parse_quantity(s), Ok(v), "{s}");
        }
    }

    #[test]
    fn rejects_with_clear_messages() {
        use ParseError::*;
        type Ctor = fn(String) -> ParseError;
        let cases: [(&str, Ctor, &str); 11] = [
            ("-1", Negative, "negative"),
            ("-5M", Negative, "negative"),
            ("1.5M", Fractional, "fractional"),
            ("0.5", Fractional, "fractional"),
            ("abc", NotANumber, "not a number"),
            ("M", NotANumber, "not a number"),
            (" 1", NotANumber, "not a number"),
            ("1k2", NotANumber, "not a number"),
            ("10X", UnknownSuffix, "unknown unit"),
            ("18446744073709551616", Overflow, "too large"),
            ("20000000T", Overflow, "too large"),
        ];
        for (s, kind, msg) in cases {
            let e = parse_quantity(s).unwrap_err();
            assert_eq!(e, kind(s.to_owned()));
            let text = e.to_string();
            assert!(text.contains(msg) && text.contains(s), "{s}: {text}");
        }
        assert_eq!(parse_quantity(""), Err(Empty));
        assert_eq!(
            parse_quantity("").unwrap_err().to_string(),
            "empty quantity"
        );
        assert!(matches!(parse_quantity("10MiB"), Err(UnknownSuffix(_))));
        assert!(matches!(parse_quantity("+5"), Err(NotANumber(_))));
    }
}
