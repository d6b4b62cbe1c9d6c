//! `analyzer check`: gates a soak run on growth budgets, statistically.
//!
//! A growth budget **fails** only when the lower end of the growth's 95%
//! interval is above it, **passes** when the upper end is below it, and is
//! otherwise **inconclusive**, which the budget file turns into a pass or a
//! fail, with an estimate of how much longer a run would have decided.
//! Growth is measured with the same recipe as `leaks`
//! ([`heaptide_stats::growth`]).
//!
//! [`evaluate`](check) judges; [`render`] turns a result into text, JUnit
//! XML or Markdown.

pub mod budget;
mod evaluate;
pub mod render;
pub(crate) mod rules;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::check::budget::BudgetFile;
use crate::detect;
use crate::error::{Error, Result};
use crate::select::Selector;
use crate::store::Store;
use heaptide_wire::metric;
pub use rules::{Measure, Per};

/// A budget line's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetVerdict {
    Pass,
    Fail,
    Inconclusive,
}

/// One budget line, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The budget key, e.g. `heap_growth_per_hour`.
    pub name: String,
    pub verdict: BudgetVerdict,
    /// What the budget file's `inconclusive` made of an inconclusive verdict.
    pub passed: bool,
    pub unit: Measure,
    pub budget: f64,
    /// The measured value: a rate for growth, the peak for ceilings.
    pub measured: f64,
    /// The 95% interval of a rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    pub message: String,
    /// For an inconclusive rate: how much longer a run would likely decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_seconds_needed: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceResult {
    pub service: String,
    pub instance: String,
    pub items: Vec<Item>,
    /// For a failing heap budget: the sites that grow.
    pub sites: Vec<detect::Site>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub passed: bool,
    pub from_ms: i64,
    pub to_ms: i64,
    pub instances: Vec<InstanceResult>,
}

/// A saved result to compare later runs with (`--save-baseline`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Baseline {
    pub version: u32,
    /// `service` to budget name to the measured rate (the largest of the
    /// service's instances).
    pub rates: HashMap<String, HashMap<String, f64>>,
}

impl Baseline {
    pub fn from_result(r: &CheckResult) -> Baseline {
        let mut rates: HashMap<String, HashMap<String, f64>> = HashMap::new();
        for i in &r.instances {
            for item in i.items.iter().filter(|it| it.interval.is_some()) {
                let e = rates
                    .entry(i.service.clone())
                    .or_default()
                    .entry(item.name.clone())
                    .or_insert(f64::MIN);
                *e = e.max(item.measured);
            }
        }
        Baseline { version: 1, rates }
    }
}

/// Judges every instance of every budgeted service with data in the window
/// of `sel` (its service, when set, narrows the budget file's).
pub fn check(
    store: &dyn Store,
    budgets: &BudgetFile,
    sel: &Selector,
    baseline: Option<&Baseline>,
) -> Result<CheckResult> {
    let services: Vec<&str> = match sel.service.as_deref() {
        Some(s) => vec![s],
        None => budgets.service.keys().map(String::as_str).collect(),
    };
    if services.is_empty() {
        return Err(Error::invalid(
            "budget",
            "the budget file names no [service.NAME], and no --service was given",
        ));
    }
    let mut instances = Vec::new();
    for service in services {
        let list = store.instances(Some(service))?;
        if list.is_empty() {
            return Err(Error::invalid(
                "service",
                format!("no data for service {service:?} in the store"),
            ));
        }
        for inst in list {
            let budget = budgets.for_instance(service, &inst.instance);
            let one = sel.for_instance(service, &inst.instance);
            if store.latest(&one, metric::THREADS)?.is_none() {
                continue; // not running during this window
            }
            instances.push(evaluate::instance(store, &one, &budget, baseline)?);
        }
    }
    if instances.is_empty() {
        return Err(Error::invalid(
            "since",
            "no instance of the budgeted services reported in the window",
        ));
    }
    let passed = instances.iter().all(|i| i.items.iter().all(|it| it.passed));
    Ok(CheckResult {
        passed,
        from_ms: sel.from_ms,
        to_ms: sel.to_ms,
        instances,
    })
}
