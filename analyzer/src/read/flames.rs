//! What the flamegraphs show, for one instance or a service's instances
//! merged: the folded stacks of the profile nearest a time, the growth
//! between two times, and one label value against another.

use heaptide_ui::flame::FlameScope;

use crate::error::{Error, Result};
use crate::read::query::{self, Value};
use crate::store::{InstanceInfo, Store};

/// A label filter, `key:value`, as the pages' `label` parameter gives it.
pub(crate) fn parse_label(field: &str, s: &str) -> Result<(String, String)> {
    s.split_once(':')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!("{s:?} is not a label filter like version:1.4.2"),
            )
        })
}

/// The instances of `scope`'s service it covers: one, those with a label
/// (`label`, or for `base` the base's), or all.
fn members(
    store: &dyn Store,
    scope: &FlameScope,
    label: Option<&str>,
) -> Result<Vec<InstanceInfo>> {
    let filter = label.map(|l| parse_label("label", l)).transpose()?;
    Ok(store
        .instances(Some(&scope.service))?
        .into_iter()
        .filter(|i| scope.instance.as_ref().is_none_or(|x| *x == i.instance))
        .filter(|i| {
            filter
                .as_ref()
                .is_none_or(|(k, v)| i.labels.get(k) == Some(v))
        })
        .collect())
}

/// The folded stacks of the profiles nearest `at_ms` of every member with
/// a label, summed (or averaged per instance), with the newest profile's
/// time and how many instances had one; `None` when none did.
pub(crate) fn folded_at(
    store: &dyn Store,
    scope: &FlameScope,
    label: Option<&str>,
    at_ms: i64,
    per_instance: bool,
) -> Result<Option<(i64, usize, String)>> {
    let members = members(store, scope, label)?;
    let names: Vec<&str> = members.iter().map(|i| i.instance.as_str()).collect();
    let nearest = store.profiles_nearest(&scope.service, &names, at_ms)?;
    let newest = nearest.iter().map(|p| p.ts_ms).max().unwrap_or(i64::MIN);
    let ids: Vec<i64> = nearest.iter().map(|p| p.id).collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let value = match (scope.kind.as_str(), scope.objects) {
        ("old", _) => Value::BytesOlderThan(scope.older_secs()),
        (_, true) => Value::Objects,
        (_, false) => Value::Bytes,
    };
    let scale = if per_instance {
        1.0 / ids.len() as f64
    } else {
        1.0
    };
    let folded = query::folded_sum(store, &ids, value, scale)?;
    Ok(Some((newest, ids.len(), folded)))
}

/// What the members allocated over (`from_ms`, `to_ms`], freed or not:
/// each profile holds its stacks' allocations since its process's previous
/// profile, so the window's profiles add up to the window's allocations.
/// With the newest profile's time and how many profiles were summed.
pub(crate) fn folded_allocs(
    store: &dyn Store,
    scope: &FlameScope,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<(i64, usize, String)>> {
    let window = crate::select::Selector::all(from_ms + 1, to_ms);
    let mut profiles = Vec::new();
    if scope.label.is_none() {
        let sel = crate::select::Selector {
            service: Some(scope.service.clone()),
            instance: scope.instance.clone(),
            ..window
        };
        profiles = store.profiles(&sel)?;
    } else {
        for m in members(store, scope, scope.label.as_deref())? {
            profiles.extend(store.profiles(&window.for_instance(&scope.service, &m.instance))?);
        }
    }
    let Some(newest) = profiles.iter().map(|p| p.ts_ms).max() else {
        return Ok(None);
    };
    let ids: Vec<i64> = profiles.iter().map(|p| p.id).collect();
    let value = match scope.objects {
        true => Value::AllocObjects,
        false => Value::AllocBytes,
    };
    let folded = query::folded_sum(store, &ids, value, 1.0)?;
    Ok(Some((newest, ids.len(), folded)))
}

/// `texts` as the scope shows them: as they are with every frame, else
/// with framework runs folded and application frames marked alike in all.
fn shown(scope: &FlameScope, texts: [String; 2]) -> [String; 2] {
    match scope.all_frames {
        true => texts,
        false => super::fold::fold_frameworks(texts),
    }
}

/// The flamegraph SVG of `scope` at `now_ms`; `None` when it has no
/// profile to draw.
pub fn svg(store: &dyn Store, scope: &FlameScope, now_ms: i64) -> Result<Option<String>> {
    use heaptide_ui::flame::{differential_svg, flame_svg};
    let what = if scope.objects { "objects" } else { "bytes" };
    let drawn = match scope.kind.as_str() {
        "growth" => {
            let to = scope.to.unwrap_or(now_ms);
            let from = scope.from.unwrap_or(to - 3_600_000);
            let label = scope.label.as_deref();
            let (Some((t0, _, b)), Some((t1, _, a))) = (
                folded_at(store, scope, label, from, false)?,
                folded_at(store, scope, label, to, false)?,
            ) else {
                return Ok(None);
            };
            let title = format!("{}: growth of live {what}", scope.who());
            let [b, a] = shown(scope, [b, a]);
            differential_svg(&b, &a, &title, t0, t1, scope.objects)
        }
        "compare" => {
            let at = scope.at.unwrap_or(now_ms);
            let base = scope
                .base
                .as_deref()
                .ok_or_else(|| Error::invalid("base", "compare needs base=key:value"))?;
            let label = scope
                .label
                .as_deref()
                .ok_or_else(|| Error::invalid("label", "compare needs label=key:value"))?;
            let (Some((t0, n0, b)), Some((t1, n1, a))) = (
                folded_at(store, scope, Some(base), at, true)?,
                folded_at(store, scope, Some(label), at, true)?,
            ) else {
                return Ok(None);
            };
            let title = format!(
                "{}: live {what} per instance, {} ({n1}) against {} ({n0})",
                scope.service,
                label.replacen(':', "=", 1),
                base.replacen(':', "=", 1)
            );
            let [b, a] = shown(scope, [b, a]);
            differential_svg(&b, &a, &title, t0, t1, scope.objects)
        }
        "alloc" => {
            let to = scope.to.unwrap_or(now_ms);
            let from = scope.from.unwrap_or(to - 3_600_000);
            let Some((t, n, folded)) = folded_allocs(store, scope, from, to)? else {
                return Ok(None);
            };
            let [folded, _] = shown(scope, [folded, String::new()]);
            let who = format!(
                "{}: {what} allocated over {}, freed or not ({n} profiles)",
                scope.who(),
                heaptide_ui::format::span(((to - from) / 1000) as f64)
            );
            flame_svg(&folded, &who, t, scope.objects)
        }
        _ => {
            let Some((t, _, folded)) = folded_at(
                store,
                scope,
                scope.label.as_deref(),
                scope.at.unwrap_or(now_ms),
                false,
            )?
            else {
                return Ok(None);
            };
            let [folded, _] = shown(scope, [folded, String::new()]);
            if scope.kind == "old" {
                let who = format!(
                    "{}: live bytes older than {}",
                    scope.who(),
                    heaptide_ui::format::span(scope.older_secs() as f64)
                );
                flame_svg(&folded, &who, t, false)
            } else {
                flame_svg(&folded, &scope.who(), t, scope.objects)
            }
        }
    };
    drawn
        .map(Some)
        .map_err(|e| Error::invalid("flamegraph", e.to_string()))
}
