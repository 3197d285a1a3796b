//! Exact Kubernetes resource quantities (`500m`, `2Gi`, `1.5`, `1e3`), compared without
//! rounding. (kube_quantity 0.9 scales through f32 and calls `1Gi` smaller than `1073741824`.)

use std::cmp::Ordering;

/// `mantissa × 10^exponent`, exact.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

/// Digits kept from a mantissa: Kubernetes itself keeps at most 18 significant digits.
const MAX_DIGITS: usize = 30;

impl Quantity {
    /// Parses the Kubernetes quantity grammar; `None` for anything else.
    pub fn parse(text: &str) -> Option<Quantity> {
        let text = text.trim();
        let (negative, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty())
            || fraction.contains('.')
            || whole.len() + fraction.len() > MAX_DIGITS
        {
            return None;
        }
        let digits = format!("{whole}{fraction}");
        let mut mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let mut exponent = -i32::try_from(fraction.len()).ok()?;
        let (binary_power, decimal_power) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            other => {
                let power = other.strip_prefix(['e', 'E'])?;
                let power: i32 = power.parse().ok()?;
                if power.abs() > 60 {
                    return None;
                }
                (0, power)
            }
        };
        mantissa = mantissa.checked_mul(1i128.checked_shl(binary_power)?)?;
        exponent += decimal_power;
        if negative {
            mantissa = -mantissa;
        }
        Some(Quantity { mantissa, exponent })
    }

    /// The mantissa scaled to `exponent` (which must not exceed this one's), if it fits.
    fn scaled_to(self, exponent: i32) -> Option<i128> {
        let shift = u32::try_from(self.exponent - exponent).ok()?;
        10i128.checked_pow(shift)?.checked_mul(self.mantissa)
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        let common = self.exponent.min(other.exponent);
        match (self.scaled_to(common), other.scaled_to(common)) {
            (Some(a), Some(b)) => a.cmp(&b),
            // Only a value with a far larger exponent overflows: it is the larger in magnitude.
            (None, Some(_)) => 0.cmp(&self.mantissa.signum()).reverse(),
            (Some(_), None) => 0.cmp(&other.mantissa.signum()),
            (None, None) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Quantity {}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn binary_and_decimal_notations_compare_exactly() {
        for (a, b) in [
            ("1Gi", "1073741824"),
            ("1Mi", "1048576"),
            ("16Gi", "17179869184"),
            ("1Ti", "1099511627776"),
            ("1000000000000", "1T"),
            ("1Gi", "1.073741824G"),
            ("500m", "0.5"),
            ("1", "1000m"),
            ("1e3", "1k"),
            ("2048Mi", "2Gi"),
        ] {
            assert_eq!(q(a), q(b), "{a} == {b}");
        }
        assert!(q("4294967297") > q("4Gi"));
        assert!(q("1073741823") < q("1Gi"));
        assert!(q("100m") < q("1"));
        assert!(q("1Ei") > q("1n"));
    }

    #[test]
    fn nonsense_does_not_parse() {
        for text in ["", "lots", "1.2.3", "Gi", "1Gb", "1e999", "--1", "."] {
            assert!(Quantity::parse(text).is_none(), "{text:?}");
        }
    }
}
