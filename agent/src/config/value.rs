//! The kinds of value a setting holds: how each is read from its
//! `HEAPTIDE_*` variable, how it is shown in the docs, and how the
//! builder's value and the variable's combine.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::{Symbolize, Unwinder};

/// A kind of setting value.
pub(crate) trait Value: Sized {
    /// Reads the variable's text; the error says what was expected.
    fn parse_env(text: &str) -> Result<Self, String>;
    /// The value as the docs and the variable write it.
    fn show(&self) -> String;
    /// The builder's value over the variable's: the builder's wins.
    fn layer(set: Option<Self>, env: Option<Self>) -> Option<Self> {
        set.or(env)
    }
}

impl Value for String {
    fn parse_env(text: &str) -> Result<Self, String> {
        Ok(text.trim().to_owned())
    }
    fn show(&self) -> String {
        self.clone()
    }
}

/// The token: an empty variable is no token.
impl Value for Option<String> {
    fn parse_env(text: &str) -> Result<Self, String> {
        Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty()))
    }
    fn show(&self) -> String {
        self.clone().unwrap_or_else(|| "none".into())
    }
}

impl Value for Duration {
    fn parse_env(text: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?;
        if d.is_zero() {
            return Err("must be greater than zero".into());
        }
        Ok(d)
    }
    fn show(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

impl Value for u64 {
    fn parse_env(text: &str) -> Result<Self, String> {
        parse_bytes(text).ok_or_else(|| "expected bytes such as 524288, 512KiB or 1MiB".into())
    }
    fn show(&self) -> String {
        show_bytes(*self)
    }
}

impl Value for usize {
    fn parse_env(text: &str) -> Result<Self, String> {
        u64::parse_env(text).and_then(|b| usize::try_from(b).map_err(|e| e.to_string()))
    }
    fn show(&self) -> String {
        show_bytes(*self as u64)
    }
}

/// A share: `0.8` or `80%`.
impl Value for f64 {
    fn parse_env(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let v = match t.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
            None => t.parse::<f64>(),
        };
        v.map_err(|_| "expected a share such as 0.8 or 80%".into())
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// A switch: `true`/`1` or `false`/`0`.
impl Value for bool {
    fn parse_env(text: &str) -> Result<Self, String> {
        match text.trim() {
            "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => Err("expected true or false".into()),
        }
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Value for Unwinder {
    fn parse_env(text: &str) -> Result<Self, String> {
        Unwinder::parse(text.trim()).ok_or_else(|| "expected auto, frame-pointers or libgcc".into())
    }
    fn show(&self) -> String {
        self.as_str().to_owned()
    }
}

impl Value for Symbolize {
    fn parse_env(text: &str) -> Result<Self, String> {
        Symbolize::parse(text.trim()).ok_or_else(|| "expected agent or analyzer".into())
    }
    fn show(&self) -> String {
        self.as_str().to_owned()
    }
}

/// Labels: `version=1.4.2,region=eu`; the builder's win key by key.
impl Value for BTreeMap<String, String> {
    fn parse_env(text: &str) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or("expected key=value pairs separated by commas")?;
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(out)
    }
    fn show(&self) -> String {
        if self.is_empty() {
            return "none".into();
        }
        let pairs: Vec<String> = self.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(",")
    }
    fn layer(set: Option<Self>, env: Option<Self>) -> Option<Self> {
        match (set, env) {
            (Some(set), Some(mut env)) => {
                env.extend(set);
                Some(env)
            }
            (set, env) => set.or(env),
        }
    }
}

/// Parses `524288`, `512KiB`, `512k`, `1MiB` or `1m`. Hand-written because
/// the only grammar needed is a number and a binary suffix.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The largest binary unit that divides `b`: `512KiB`, `4MiB`.
fn show_bytes(b: u64) -> String {
    let units = [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    match units.iter().find(|(n, _)| b >= *n && (b / n) * n == b) {
        Some((n, unit)) => format!("{}{unit}", b / n),
        None => b.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_read_back() {
        for b in [1u64, 1000, 512 << 10, 4 << 20, 3 << 30] {
            assert_eq!(u64::parse_env(&b.show()), Ok(b));
        }
        for d in [Duration::from_millis(5), Duration::from_secs(60)] {
            assert_eq!(Duration::parse_env(&d.show()), Ok(d));
        }
        let labels = BTreeMap::parse_env("a=1, b = 2").unwrap();
        assert_eq!(BTreeMap::parse_env(&labels.show()), Ok(labels));
    }
}
