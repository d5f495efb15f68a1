//! Compile-time values and exact rational arithmetic.

use std::fmt;

/// An exact rational `num/den` with `den > 0`, in lowest terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rational {
    pub num: i128,
    pub den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Rational {
    pub fn int(n: i128) -> Self {
        Rational { num: n, den: 1 }
    }

    /// `None` when `den == 0`.
    pub fn new(num: i128, den: i128) -> Option<Self> {
        if den == 0 {
            return None;
        }
        let g = gcd(num, den).max(1);
        let sign = if den < 0 { -1 } else { 1 };
        Some(Rational {
            num: sign * num / g,
            den: sign * den / g,
        })
    }

    /// Parses a decimal literal (`8`, `0.4914`, `1e-5`) exactly; `None` on overflow.
    pub fn parse_decimal(text: &str) -> Option<Self> {
        let (mantissa, exp) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int_part}{frac_part}");
        let mut num: i128 = 0;
        for d in digits.bytes() {
            num = num.checked_mul(10)?.checked_add((d - b'0') as i128)?;
        }
        let exp = exp - frac_part.len() as i32;
        if exp.unsigned_abs() > 36 {
            return None;
        }
        let pow = 10i128.checked_pow(exp.unsigned_abs())?;
        if exp >= 0 {
            Rational::new(num.checked_mul(pow)?, 1)
        } else {
            Rational::new(num, pow)
        }
    }

    pub fn checked_add(self, o: Self) -> Option<Self> {
        let num = self
            .num
            .checked_mul(o.den)?
            .checked_add(o.num.checked_mul(self.den)?)?;
        Rational::new(num, self.den.checked_mul(o.den)?)
    }

    pub fn checked_sub(self, o: Self) -> Option<Self> {
        self.checked_add(Rational {
            num: o.num.checked_neg()?,
            den: o.den,
        })
    }

    pub fn checked_mul(self, o: Self) -> Option<Self> {
        Rational::new(self.num.checked_mul(o.num)?, self.den.checked_mul(o.den)?)
    }

    /// `None` on division by zero or overflow.
    pub fn checked_div(self, o: Self) -> Option<Self> {
        if o.num == 0 {
            return None;
        }
        Rational::new(self.num.checked_mul(o.den)?, self.den.checked_mul(o.num)?)
    }

    pub fn is_integer(self) -> bool {
        self.den == 1
    }

    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn cmp_value(self, o: Self) -> Option<std::cmp::Ordering> {
        Some(
            self.num
                .checked_mul(o.den)?
                .cmp(&o.num.checked_mul(self.den)?),
        )
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// An exact fraction as the later stages want it: numerator, denominator and its `f64` value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exact {
    pub num: i64,
    pub den: i64,
    pub value: f64,
}

impl Exact {
    pub fn from_rational(r: Rational) -> Option<Self> {
        Some(Exact {
            num: i64::try_from(r.num).ok()?,
            den: i64::try_from(r.den).ok()?,
            value: r.to_f64(),
        })
    }
}

impl fmt::Display for Exact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(Rational),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
    /// Seconds.
    Duration(Rational),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Num(r) if r.is_integer() => "an integer",
            Value::Num(_) => "a fraction",
            Value::Bool(_) => "a boolean",
            Value::Str(_) => "a string",
            Value::List(_) => "a list",
            Value::Duration(_) => "a duration",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Num(r) => write!(f, "{r}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "\"{s}\""),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Value::Duration(r) => write!(f, "{r}s"),
        }
    }
}

/// Formats a shape as `[1, 28, 28]`.
pub fn shape_str(shape: &[usize]) -> String {
    format!(
        "[{}]",
        shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact() {
        assert_eq!(
            Rational::parse_decimal("0.4914"),
            Rational::new(4914, 10000)
        );
        assert_eq!(Rational::parse_decimal("1e-5"), Rational::new(1, 100000));
        assert_eq!(Rational::parse_decimal("2.5e1"), Some(Rational::int(25)));
        assert_eq!(
            Rational::parse_decimal("99999999999999999999999999999999999999999"),
            None
        );
    }

    #[test]
    fn arithmetic_reduces_and_checks() {
        let a = Rational::new(8, 255).unwrap();
        assert_eq!(a.checked_mul(Rational::int(255)), Some(Rational::int(8)));
        assert_eq!(Rational::new(2, -4), Rational::new(-1, 2));
        assert_eq!(a.checked_div(Rational::int(0)), None);
        assert_eq!(Rational::int(i128::MAX).checked_add(Rational::int(1)), None);
    }
}
