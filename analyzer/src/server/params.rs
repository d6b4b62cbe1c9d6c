//! The query string of every read route, API and dashboards alike, and the
//! one window grammar it speaks (see [`crate::select`]).

use std::time::Duration;

use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use crate::select::{self, Selector};

/// Every parameter a read route takes; each route reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub service: Option<String>,
    pub instance: Option<String>,
    pub metric: Option<String>,
    /// A duration back from now, such as `1h` or `24h`. The dashboards'
    /// older `window` is the same parameter.
    #[serde(alias = "window")]
    pub since: Option<String>,
    /// Unix milliseconds or an RFC 3339 time (UTC without an offset);
    /// overrides `since`.
    #[serde(default, deserialize_with = "time")]
    pub from: Option<i64>,
    #[serde(default, deserialize_with = "time")]
    pub to: Option<i64>,
    /// For profiles: the time wanted, Unix milliseconds.
    pub at: Option<i64>,
    pub format: Option<String>,
    /// For `/v1/site`: the stack id, as the profile endpoints report it.
    pub stack: Option<i64>,
    /// For `/v1/predict`: only exhaustion within this long is predicted.
    pub horizon: Option<String>,
    /// For flamegraphs: `bytes` (default) or `objects`.
    pub value: Option<String>,
    /// For flamegraphs: `live` (default), `growth`, `compare` or `old`.
    pub kind: Option<String>,
    /// For `kind=old` flamegraphs: the least age shown, in seconds.
    pub older: Option<u64>,
    /// For the service page and flamegraphs: only instances with this
    /// label, `key:value`.
    pub label: Option<String>,
    /// For `kind=compare` flamegraphs: the label value set against `label`.
    pub base: Option<String>,
    /// For flamegraphs: `all` shows every frame; by default each run of
    /// framework frames is folded into one.
    pub frames: Option<String>,
    /// For `/v1/leaks` and `/v1/predict`: judge now rather than read what
    /// continuous evaluation kept.
    pub fresh: Option<bool>,
}

/// `from` and `to` as [`select::parse_time`] reads them; empty is absent,
/// as an untouched date picker sends it.
fn time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => select::parse_time("from/to", t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

impl Params {
    /// Whether a flamegraph shows every frame (`frames=all`); `folded`, or
    /// nothing, folds the framework's runs.
    pub fn all_frames(&self) -> ApiResult<bool> {
        match self.frames.as_deref() {
            None | Some("") | Some("folded") => Ok(false),
            Some("all") => Ok(true),
            Some(other) => Err(ApiError::bad(
                "frames",
                format!("frames is all or folded, not {other:?}"),
            )),
        }
    }

    /// A parameter that must be present and non-empty.
    pub fn required<'a>(&'a self, v: &'a Option<String>, name: &str) -> ApiResult<&'a str> {
        v.as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad(name, format!("query parameter {name} is required")))
    }

    /// `since` as a duration; `auto` (the dashboards' default) is none.
    pub fn since(&self) -> ApiResult<Option<Duration>> {
        match self.since.as_deref() {
            None | Some("auto") => Ok(None),
            Some(s) => Ok(Some(select::parse_duration("since", s)?)),
        }
    }

    /// The selector of the query: its service and instance (each optional)
    /// over its window, `default` long when it names none.
    pub fn selector(&self, default: Duration) -> ApiResult<Selector> {
        let (from_ms, to_ms) =
            select::window(self.since()?, self.from, self.to, default, select::now_ms())?;
        Ok(Selector {
            service: self.service.clone().filter(|s| !s.is_empty()),
            instance: self.instance.clone().filter(|s| !s.is_empty()),
            from_ms,
            to_ms,
        })
    }

    /// Like [`Params::selector`], with the service required.
    pub fn service_selector(&self, default: Duration) -> ApiResult<Selector> {
        self.required(&self.service, "service")?;
        self.selector(default)
    }

    /// Service and instance, both required.
    pub fn instance_key(&self) -> ApiResult<(String, String)> {
        Ok((
            self.required(&self.service, "service")?.to_owned(),
            self.required(&self.instance, "instance")?.to_owned(),
        ))
    }

    /// Whether what continuous evaluation kept answers this query: the
    /// default window, and no `fresh=true`.
    pub fn kept_window(&self) -> bool {
        self.fresh != Some(true)
            && self.since().is_ok_and(|s| s.is_none())
            && self.from.is_none()
            && self.to.is_none()
    }

    /// Flamegraphs of objects rather than bytes.
    pub fn objects(&self) -> bool {
        self.value.as_deref() == Some("objects")
    }
}
