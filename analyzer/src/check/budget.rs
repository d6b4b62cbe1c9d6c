//! The budget file of `analyzer check` (`docs/budgets.md`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use crate::select::Span;

/// The whole file. Unknown keys anywhere are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    /// Applies to every service.
    #[serde(default)]
    pub defaults: Budget,
    /// Per service, over the defaults.
    #[serde(default)]
    pub service: BTreeMap<String, Budget>,
    /// Per `"service/instance"`, over the service's.
    #[serde(default)]
    pub instance: BTreeMap<String, Budget>,
}

/// What to do when the interval straddles the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inconclusive {
    Pass,
    Fail,
}

/// A size in bytes: a number, or a string such as `"512KiB"` or `"1.5 GiB"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size(pub f64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a size such as 512KiB, 64MiB or 1.5GiB"
                ))
            }),
        }
    }
}

/// Parses `1024`, `512KiB`, `64 MiB`, `1.5GiB` (also KB/MB/GB, as binary).
/// Hand-written: three suffixes do not justify a crate.
pub(crate) fn parse_size(s: &str) -> Option<f64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n * mult)
}

/// One set of limits. Every key is optional; an absent key is not checked.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub heap_growth_per_hour: Option<Size>,
    pub rss_growth_per_hour: Option<Size>,
    pub fds_growth_per_hour: Option<f64>,
    pub threads_growth_per_hour: Option<f64>,
    pub heap_growth_per_1k_requests: Option<Size>,
    pub rss_growth_per_1k_requests: Option<Size>,
    pub fds_growth_per_1k_requests: Option<f64>,
    pub threads_growth_per_1k_requests: Option<f64>,
    /// Bytes allocated, freed or not, per 1,000 requests: the churn that
    /// costs CPU and fragments the heap though nothing leaks.
    pub alloc_per_1k_requests: Option<Size>,
    /// Bytes allocated per hour.
    pub alloc_per_hour: Option<Size>,
    /// Alive tokio tasks per hour.
    pub tasks_growth_per_hour: Option<f64>,
    /// Slots in use per hour, by pool name: `{ db = 0 }`.
    pub pool_growth_per_hour: Option<BTreeMap<String, f64>>,
    /// Queue depth per hour, by queue name.
    pub queue_growth_per_hour: Option<BTreeMap<String, f64>>,
    pub peak_heap: Option<Size>,
    pub peak_rss: Option<Size>,
    pub peak_fds: Option<f64>,
    pub peak_threads: Option<f64>,
    pub pause_p99_ms: Option<f64>,
    pub pause_max_ms: Option<f64>,
    /// Start of each process lifetime to ignore (caches filling), e.g. `"1m"`.
    pub warmup: Option<Span>,
    /// `"pass"` (default) or `"fail"`.
    pub inconclusive: Option<Inconclusive>,
    /// Allocation sites allowed to grow: substrings of a frame's function.
    pub allow_sites: Option<Vec<String>>,
    /// With `--baseline`: growth more than this fraction above the
    /// baseline's fails (default 0.25).
    pub baseline_margin: Option<f64>,
    /// A restart during the judged run passes (default false: it fails,
    /// naming the restart and what grew before it).
    pub allow_restarts: Option<bool>,
}

impl Budget {
    /// `self` with every key of `over` that is set taking precedence.
    pub fn merged(&self, over: &Budget) -> Budget {
        macro_rules! pick {
            ($($f:ident),*) => { Budget { $($f: over.$f.clone().or_else(|| self.$f.clone()),)* } };
        }
        pick!(
            heap_growth_per_hour,
            rss_growth_per_hour,
            fds_growth_per_hour,
            threads_growth_per_hour,
            heap_growth_per_1k_requests,
            rss_growth_per_1k_requests,
            fds_growth_per_1k_requests,
            threads_growth_per_1k_requests,
            alloc_per_1k_requests,
            alloc_per_hour,
            tasks_growth_per_hour,
            pool_growth_per_hour,
            queue_growth_per_hour,
            peak_heap,
            peak_rss,
            peak_fds,
            peak_threads,
            pause_p99_ms,
            pause_max_ms,
            warmup,
            inconclusive,
            allow_sites,
            baseline_margin,
            allow_restarts
        )
    }
}

impl BudgetFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::config::read_bounded(path, 1 << 20).map_err(|reason| Error::Config {
            path: path.display().to_string(),
            reason,
        })?;
        Self::parse(&text).map_err(|reason| Error::Config {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let f: BudgetFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for key in f.instance.keys() {
            if !key.contains('/') {
                return Err(format!("instance key {key:?} must be \"service/instance\""));
            }
        }
        for (name, b) in std::iter::once(("defaults", &f.defaults))
            .chain(f.service.iter().map(|(k, v)| (k.as_str(), v)))
            .chain(f.instance.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if b.baseline_margin
                .is_some_and(|m| !(0.0..=100.0).contains(&m))
            {
                return Err(format!("{name}: baseline_margin must be between 0 and 100"));
            }
        }
        Ok(f)
    }

    /// The limits for one instance of a service.
    pub fn for_instance(&self, service: &str, instance: &str) -> Budget {
        let mut b = self.defaults.clone();
        if let Some(s) = self.service.get(service) {
            b = b.merged(s);
        }
        if let Some(i) = self.instance.get(&format!("{service}/{instance}")) {
            b = b.merged(i);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_layers() {
        let f = BudgetFile::parse(
            r#"
            [defaults]
            inconclusive = "fail"
            peak_fds = 1000
            [service.api]
            heap_growth_per_hour = "1.5MiB"
            peak_rss = 1048576
            [instance."api/web-1"]
            peak_rss = "2GiB"
            "#,
        )
        .unwrap();
        let b = f.for_instance("api", "web-1");
        assert_eq!(b.heap_growth_per_hour, Some(Size(1.5 * 1048576.0)));
        assert_eq!(b.peak_rss, Some(Size(2.0 * 1073741824.0)));
        assert_eq!(b.peak_fds, Some(1000.0));
        assert_eq!(b.inconclusive, Some(Inconclusive::Fail));
        assert_eq!(
            f.for_instance("api", "web-2").peak_rss,
            Some(Size(1048576.0))
        );
    }

    #[test]
    fn mistakes_are_errors() {
        assert!(BudgetFile::parse("[service.api]\nheap_grwth_per_hour = 1")
            .unwrap_err()
            .contains("heap_grwth_per_hour"));
        assert!(BudgetFile::parse("[service.api]\npeak_rss = \"lots\"")
            .unwrap_err()
            .contains("lots"));
        assert!(BudgetFile::parse("[instance.web]\npeak_rss = 1")
            .unwrap_err()
            .contains("service/instance"));
        assert!(BudgetFile::parse("[service.api]\nwarmup = \"soon\"")
            .unwrap_err()
            .contains("warmup"));
        assert!(BudgetFile::parse("[service.api]\ninconclusive = \"maybe\"").is_err());
    }
}
