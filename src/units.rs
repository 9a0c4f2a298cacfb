//! Human-friendly quantities used in plans and on the command line: byte sizes
//! (`64MiB`, `4k`, `1G`) and durations (`3s`, `500ms`, `2m`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written with an optional binary suffix (`k`, `KiB`, `M`, `MiB`, `G`, `GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
    /// A size of `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }
    /// A size of `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(split);
        let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {other:?} (accepted: B, KiB, MiB, GiB, TiB)"
                ))
            }
        };
        let value: f64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a positive number such as 64MiB"))?;
        let bytes = value * mult as f64;
        if !(bytes.is_finite() && bytes >= 1.0) {
            return Err(format!("invalid size {s:?}: must be at least 1 byte"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if b >= 1 << shift && b % (1 << shift) == 0 {
                return write!(f, "{}{}", b >> shift, unit);
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) if n > 0 => Ok(ByteSize(n as u64)),
            Raw::Num(n) => Err(serde::de::Error::custom(format!(
                "invalid size {n}: must be at least 1 byte"
            ))),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A strictly positive duration, written as `3s`, `500ms`, `2m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.starts_with('-') {
            return Err(format!("invalid duration {s:?}: must be positive"));
        }
        let d = humantime::parse_duration(t)
            .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 3s, 500ms, 2m)"))?;
        if d.is_zero() {
            return Err(format!("invalid duration {s:?}: must be greater than zero"));
        }
        Ok(Dur(d))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A number with four significant digits, without exponent for everyday ranges.
/// A ratio to native: two decimals from 0.1 up (`0.21`, `1.07`), two significant
/// digits below (`0.014`, `0.0039`: an emulator's or gVisor's small ratios would
/// all read `0.00` with two decimals), or `–`.
pub fn fmt_ratio(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r > 0.0 && r < 0.1 {
        let digits = (1.0 - r.log10().floor()).clamp(2.0, 9.0) as usize;
        format!("{r:.digits$}")
    } else {
        format!("{r:.2}")
    }
}

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
    use super::*;

    #[test]
    fn small_ratios_keep_two_significant_digits() {
        assert_eq!(fmt_ratio(1.07), "1.07");
        assert_eq!(fmt_ratio(0.21), "0.21");
        assert_eq!(fmt_ratio(0.1), "0.10");
        assert_eq!(fmt_ratio(0.0136), "0.014");
        assert_eq!(fmt_ratio(0.0039), "0.0039");
        assert_eq!(fmt_ratio(0.002), "0.0020");
        assert_eq!(fmt_ratio(0.0), "0.00");
        assert_eq!(fmt_ratio(f64::NAN), "–");
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!("4k".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("1.5G".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("512".parse::<ByteSize>().unwrap(), ByteSize(512));
        assert!("0".parse::<ByteSize>().is_err());
        assert!("-3M".parse::<ByteSize>().is_err());
        assert!("3 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!("3s".parse::<Dur>().unwrap().get(), Duration::from_secs(3));
        assert_eq!(
            "500ms".parse::<Dur>().unwrap().get(),
            Duration::from_millis(500)
        );
        assert!("0s".parse::<Dur>().is_err());
        assert!("-1s".parse::<Dur>().is_err());
        assert!("soon".parse::<Dur>().is_err());
    }
}
