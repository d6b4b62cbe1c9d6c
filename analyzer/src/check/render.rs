//! A check result as people and CI systems read it: text, JUnit XML and
//! Markdown for `GITHUB_STEP_SUMMARY`.

use std::fmt::Write;

use super::{BudgetVerdict, CheckResult};
use heaptide_ui::format;

/// The human summary.
pub fn text(r: &CheckResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "heaptide check: {}",
        if r.passed { "PASS" } else { "FAIL" }
    );
    for i in &r.instances {
        let _ = writeln!(out, "\n{}/{}", i.service, i.instance);
        for it in &i.items {
            let tag = match (it.verdict, it.passed) {
                (BudgetVerdict::Pass, _) => "pass",
                (BudgetVerdict::Fail, _) => "FAIL",
                (BudgetVerdict::Inconclusive, true) => "inconclusive (passes)",
                (BudgetVerdict::Inconclusive, false) => "INCONCLUSIVE (fails)",
            };
            let _ = writeln!(out, "  {tag:<22} {}: {}", it.name, it.message);
        }
        if !i.sites.is_empty() {
            let _ = writeln!(out, "  growing allocation sites:");
            for s in &i.sites {
                let name = s.name();
                let _ = writeln!(
                    out,
                    "    {:>3.0}%  +{}/h  {name}",
                    s.share * 100.0,
                    format::bytes(s.slope_per_hour)
                );
                for f in s.frames.iter().skip(s.app_frame.unwrap_or(0) + 1).take(4) {
                    let _ = writeln!(out, "           <- {f}");
                }
            }
        }
    }
    out
}

/// Text escaped for XML attributes and content. Characters XML 1.0
/// cannot carry at all (control characters but tab and newlines) become
/// U+FFFD, so a hostile frame name cannot break the report.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: a suite per instance, a test case per budget line.
pub fn junit(r: &CheckResult) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = r.instances.iter().map(|i| i.items.len()).sum();
    let failed: usize = r
        .instances
        .iter()
        .map(|i| i.items.iter().filter(|it| !it.passed).count())
        .sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"heaptide\" tests=\"{total}\" failures=\"{failed}\">"
    );
    for i in &r.instances {
        let f = i.items.iter().filter(|it| !it.passed).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">",
            xml(&format!("{}/{}", i.service, i.instance)),
            i.items.len()
        );
        for it in &i.items {
            let class = xml(&format!("heaptide.{}.{}", i.service, i.instance));
            let _ = write!(
                out,
                "    <testcase classname=\"{class}\" name=\"{}\"",
                xml(&it.name)
            );
            if it.passed && it.verdict != BudgetVerdict::Inconclusive {
                let _ = writeln!(out, "/>");
            } else if it.passed {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                    xml(&format!("inconclusive: {}", it.message))
                );
            } else {
                let mut body = it.message.clone();
                for s in &i.sites {
                    body.push_str(&format!(
                        "\n{:.0}% {}",
                        s.share * 100.0,
                        s.frames.join(" <- ")
                    ));
                }
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    xml(&it.message),
                    xml(&body)
                );
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A Markdown summary, for `GITHUB_STEP_SUMMARY`.
pub fn markdown(r: &CheckResult) -> String {
    let mut out = format!(
        "### heaptide check: {}\n\n",
        if r.passed { "pass" } else { "**fail**" }
    );
    out.push_str("| instance | budget | verdict | measured |\n|---|---|---|---|\n");
    for i in &r.instances {
        for it in &i.items {
            let v = match (it.verdict, it.passed) {
                (BudgetVerdict::Pass, _) => "pass",
                (BudgetVerdict::Fail, _) => "**fail**",
                (BudgetVerdict::Inconclusive, true) => "inconclusive (pass)",
                (BudgetVerdict::Inconclusive, false) => "**inconclusive (fail)**",
            };
            let _ = writeln!(
                out,
                "| {}/{} | `{}` | {v} | {} |",
                i.service,
                i.instance,
                it.name,
                it.message.replace('|', "\\|")
            );
        }
        for s in &i.sites {
            let name = s.name();
            let _ = writeln!(
                out,
                "\ngrowing site ({:.0}%): `{}`",
                s.share * 100.0,
                name.replace('`', "'")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_names_cannot_break_the_junit_report() {
        assert_eq!(
            super::xml("evil\u{1b}]0;x\u{7}<a b=\"c\">&'"),
            "evil\u{fffd}]0;x\u{fffd}&lt;a b=&quot;c&quot;&gt;&amp;&apos;"
        );
    }
}
