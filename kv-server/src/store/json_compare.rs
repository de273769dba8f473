//! A transaction's compare of a key's value: two JSON texts compared as
//! JSON, exactly.
//!
//! Both sides stay text until they are compared, as stored. Numbers compare
//! by their decimal value, digit for digit (`1`, `1.0` and `10e-1` are
//! equal; `9007199254740993` is not `9007199254740992`, nor is an integer
//! past 64 bits its neighbour), at any depth. Strings compare decoded, objects
//! as maps (the last of a repeated name counts, as `serde_json` reads
//! them), arrays item by item. A value nested deeper than [`MAX_DEPTH`], or
//! one holding a string that decodes to no Unicode text (a lone surrogate,
//! as a string or as an object's name: then the whole object), compares
//! equal only to the same text.
//!
//! The result must be the same on every node that applies the entry and in
//! every build of one data format (`store::data_format`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::types::CompareOp;

/// Levels of arrays and objects compared as JSON; deeper values compare as
/// text.
pub const MAX_DEPTH: usize = 64;

/// Whether `value <op> operand` holds: `=` and `!=` as JSON, `<` and `>`
/// only between two numbers or two strings (else neither holds).
pub fn holds(value: &str, operand: &str, op: CompareOp) -> bool {
    match op {
        CompareOp::Equal => equal(value.trim(), operand.trim(), 0),
        CompareOp::NotEqual => !equal(value.trim(), operand.trim(), 0),
        CompareOp::Less | CompareOp::Greater => {
            let order = match (Json::read(value.trim()), Json::read(operand.trim())) {
                (Some(Json::Number(a)), Some(Json::Number(b))) => Some(a.cmp(&b)),
                (Some(Json::String(a)), Some(Json::String(b))) => Some(a.cmp(&b)),
                _ => None,
            };
            match order {
                Some(order) if op == CompareOp::Less => order.is_lt(),
                Some(order) => order.is_gt(),
                None => false,
            }
        }
    }
}

/// One JSON value read one level deep: its items stay text.
enum Json<'a> {
    Null,
    Bool(bool),
    Number(Decimal<'a>),
    String(String),
    Array(Vec<&'a RawValue>),
    Object(BTreeMap<String, &'a RawValue>),
}

impl<'a> Json<'a> {
    /// `text` (one JSON value, trimmed) read one level deep; `None` if it
    /// does not read (a lone surrogate in a string).
    fn read(text: &'a str) -> Option<Json<'a>> {
        match text.as_bytes().first()? {
            b'n' => Some(Json::Null),
            b't' => Some(Json::Bool(true)),
            b'f' => Some(Json::Bool(false)),
            b'"' => serde_json::from_str(text).ok().map(Json::String),
            b'[' => serde_json::from_str(text).ok().map(Json::Array),
            b'{' => serde_json::from_str(text).ok().map(Json::Object),
            _ => Decimal::parse(text).map(Json::Number),
        }
    }
}

/// Whether two JSON texts (trimmed) at `depth` are equal as JSON.
fn equal(a: &str, b: &str, depth: usize) -> bool {
    if depth >= MAX_DEPTH {
        return a == b;
    }
    match (Json::read(a), Json::read(b)) {
        (Some(Json::Null), Some(Json::Null)) => true,
        (Some(Json::Bool(a)), Some(Json::Bool(b))) => a == b,
        (Some(Json::Number(a)), Some(Json::Number(b))) => a == b,
        (Some(Json::String(a)), Some(Json::String(b))) => a == b,
        (Some(Json::Array(a)), Some(Json::Array(b))) => {
            a.len() == b.len()
                && a.iter()
                    .zip(&b)
                    .all(|(a, b)| equal(a.get().trim(), b.get().trim(), depth + 1))
        }
        (Some(Json::Object(a)), Some(Json::Object(b))) => {
            a.len() == b.len()
                && a.iter().zip(&b).all(|((name_a, a), (name_b, b))| {
                    name_a == name_b && equal(a.get().trim(), b.get().trim(), depth + 1)
                })
        }
        (None, _) | (_, None) => a == b,
        _ => false,
    }
}

/// A JSON number as its decimal digits: `digits × 10^exponent`, the digits
/// without leading or trailing zeros (none at all for zero). Equal values
/// may split their digits differently around the point, so they compare
/// through [`Ord`], never field by field.
#[derive(Debug)]
struct Decimal<'a> {
    negative: bool,
    /// The significant digits, as text; a number's digits may be split
    /// around its decimal point, so they are kept as two runs.
    digits: (&'a str, &'a str),
    exponent: i64,
}

/// The largest exponent kept (JSON allows any): exponents past it, either
/// way, are taken as it, so two numbers beyond 10^(2^40), or two below
/// 10^-(2^40), may compare equal. Every node must decide a compare alike,
/// so widening it would be a new data format (`store::data_format`).
const MAX_EXPONENT: i64 = 1 << 40;

impl<'a> Decimal<'a> {
    /// Reads a JSON number (`-?int(.frac)?([eE][+-]?exp)?`).
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        let (negative, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let mantissa_end = text.find(['e', 'E']).unwrap_or(text.len());
        let (mantissa, exponent) = text.split_at(mantissa_end);
        let exponent = match exponent.get(1..) {
            None => 0,
            Some(exponent) => {
                let (sign, digits) = match exponent.as_bytes().first()? {
                    b'-' => (-1, &exponent[1..]),
                    b'+' => (1, &exponent[1..]),
                    _ => (1, exponent),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let digits = digits.trim_start_matches('0');
                let value = if digits.len() > 13 {
                    MAX_EXPONENT
                } else {
                    digits.parse::<i64>().unwrap_or(0).min(MAX_EXPONENT)
                };
                sign * value
            }
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        // digits = int ++ frac, scaled by 10^(exponent - frac.len()).
        let exponent = exponent - frac.len() as i64;
        let int = int.trim_start_matches('0');
        let (int, frac, exponent) = if int.is_empty() {
            (int, frac.trim_start_matches('0'), exponent)
        } else {
            (int, frac, exponent)
        };
        // Trailing zeros leave the digits and raise the exponent.
        let (int, frac, exponent) = if frac.trim_end_matches('0').is_empty() {
            let trimmed = int.trim_end_matches('0');
            let zeros = (int.len() - trimmed.len() + frac.len()) as i64;
            (trimmed, "", exponent + zeros)
        } else {
            let trimmed = frac.trim_end_matches('0');
            (int, trimmed, exponent + (frac.len() - trimmed.len()) as i64)
        };
        if int.is_empty() && frac.is_empty() {
            return Some(Decimal {
                negative: false,
                digits: ("", ""),
                exponent: 0,
            });
        }
        Some(Decimal {
            negative,
            digits: (int, frac),
            exponent,
        })
    }

    fn is_zero(&self) -> bool {
        self.digits.0.is_empty() && self.digits.1.is_empty()
    }

    fn digit_count(&self) -> i64 {
        (self.digits.0.len() + self.digits.1.len()) as i64
    }

    fn digits(&self) -> impl Iterator<Item = u8> + '_ {
        self.digits.0.bytes().chain(self.digits.1.bytes())
    }

    /// The order of the absolute values.
    fn cmp_magnitude(&self, other: &Decimal<'_>) -> Ordering {
        // Where the leading digit sits decides, then the digits in turn;
        // with no trailing zeros, the one with digits left is the larger.
        let lead = self.digit_count() + self.exponent;
        let other_lead = other.digit_count() + other.exponent;
        lead.cmp(&other_lead).then_with(|| {
            let mut mine = self.digits();
            let mut theirs = other.digits();
            loop {
                match (mine.next(), theirs.next()) {
                    (Some(a), Some(b)) if a == b => continue,
                    (Some(a), Some(b)) => return a.cmp(&b),
                    (Some(_), None) => return Ordering::Greater,
                    (None, Some(_)) => return Ordering::Less,
                    (None, None) => return Ordering::Equal,
                }
            }
        })
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) if other.negative => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            (false, true) if self.negative => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Decimal<'_> {}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn eq(a: &str, b: &str) -> bool {
        holds(a, b, CompareOp::Equal)
    }

    #[test]
    fn numbers_compare_exactly_by_value() {
        assert!(eq("1", "1.0"));
        assert!(eq("1", "10e-1"));
        assert!(eq("100", "1E2"));
        assert!(eq("0", "-0.0"));
        assert!(eq("0.0010", "1e-3"));
        assert!(eq("1.5", "15e-1"));
        assert!(eq("120.0", "12e1"));
        assert!(eq("-0.25", "-2.5E-1"));
        assert!(!eq("9007199254740993", "9007199254740992"));
        assert!(!eq("1234567890123456789", "1234567890123456788"));
        assert!(!eq("12345678901234567890123", "12345678901234567890124"));
        assert!(holds(
            "12345678901234567890123",
            "12345678901234567890122",
            CompareOp::Greater
        ));
        assert!(holds("-2", "-1", CompareOp::Less));
        assert!(holds("-1", "0", CompareOp::Less));
        assert!(holds("0.5", "1", CompareOp::Less));
        assert!(holds("1e400", "1e399", CompareOp::Greater));
        assert!(eq("1e400", "10e399"));
        assert!(holds("1e-400", "0", CompareOp::Greater));
        assert!(holds("1e99999999999999999999", "1e400", CompareOp::Greater));
    }

    #[test]
    fn structures_compare_as_json_at_every_depth() {
        assert!(eq(
            r#"{"n": 1, "m": [1, "a"]}"#,
            r#"{"m":[1.0,"a"],"n":1e0}"#
        ));
        assert!(!eq(r#"{"n": 1}"#, r#"{"n": 1, "m": 2}"#));
        assert!(!eq("[1, 2]", "[2, 1]"));
        assert!(eq(r#"{"a": 1, "a": 2}"#, r#"{"a": 2}"#));
        assert!(eq(r#""\u0041""#, r#""A""#));
        assert!(!eq("null", "false"));
        assert!(!eq("1", r#""1""#));
        assert!(!holds("[1]", "[2]", CompareOp::Less));
        assert!(holds(r#""a""#, r#""b""#, CompareOp::Less));
    }

    #[test]
    fn values_that_do_not_read_compare_as_text() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(eq(&deep, &deep));
        assert!(holds(&deep, "1", CompareOp::NotEqual));
        assert!(eq(r#""\ud800""#, r#""\ud800""#));
        assert!(holds(r#""\ud800""#, "1", CompareOp::NotEqual));
    }

    proptest! {
        /// On numbers that f64 holds exactly, the order is f64's.
        #[test]
        fn small_numbers_order_as_floats(a in -1_000_000i64..1_000_000, b in -1_000_000i64..1_000_000, scale in 0u32..4) {
            let div = 10f64.powi(scale as i32);
            let (x, y) = (a as f64 / div, b as f64 / div);
            let text = |n: i64| {
                let sign = if n < 0 { "-" } else { "" };
                let n = n.unsigned_abs();
                let p = 10u64.pow(scale);
                format!("{sign}{}.{:0width$}", n / p, n % p, width = scale as usize)
            };
            let (ta, tb) = (text(a), text(b));
            let ta = if scale == 0 { ta.trim_end_matches('.').to_string() } else { ta };
            let tb = if scale == 0 { tb.trim_end_matches('.').to_string() } else { tb };
            let order = Decimal::parse(&ta).unwrap().cmp(&Decimal::parse(&tb).unwrap());
            prop_assert_eq!(Some(order), x.partial_cmp(&y), "{} vs {}", ta, tb);
        }
    }
}
