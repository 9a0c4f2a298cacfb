//! Reports derived from a stored run. Only stored runs are read here.

pub mod terminal;

/// A number with four significant digits, without exponent for everyday ranges.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.4e}", v)
    } else if a >= 1000.0 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{:.1}", v)
    } else if a >= 10.0 {
        format!("{:.2}", v)
    } else if a >= 0.01 {
        format!("{:.3}", v)
    } else {
        format!("{:.3e}", v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_keep_about_four_significant_digits() {
        use super::fmt_num;
        assert_eq!(fmt_num(12345.678), "12346");
        assert_eq!(fmt_num(123.456), "123.5");
        assert_eq!(fmt_num(12.3456), "12.35");
        assert_eq!(fmt_num(1.23456), "1.235");
        assert_eq!(fmt_num(0.0012345), "1.234e-3");
        assert_eq!(fmt_num(f64::NAN), "–");
    }
}
