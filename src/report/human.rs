//! The human report: checks grouped by category, one line each, and under every check that did
//! not pass what was seen, the evidence, what to type and where the docs are.
//!
//! It ends with one summary line that starts with `msa-doctor:`, so that no CI log scanner takes
//! it for a test runner's `N passed, N failed` line. Colours come only from [`Styles`].

use super::styles::{Styles, glyph};
use super::{RenderOptions, Report, Verbosity};
use crate::engine::{CheckResult, Status, Summary};
use owo_colors::OwoColorize;
use serde_json::Value;
use std::fmt::{self, Write};
use std::time::Duration;

/// Where the lines under a check start.
const DETAIL: &str = "    ";
/// Longest evidence value shown before it is cut.
const MAX_VALUE: usize = 100;
/// Longest message shown on a passing check's line.
const MAX_PASS_MESSAGE: usize = 72;

/// Renders the report as text for a terminal or a CI log.
pub fn render(report: &Report, opts: RenderOptions) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_report(&mut out, report, opts);
    out
}

fn write_report(out: &mut String, report: &Report, opts: RenderOptions) -> fmt::Result {
    let st = Styles::new(opts.color);
    for (category, checks) in by_category(&report.checks) {
        // `-q`: only what needs the reader's attention.
        let checks: Vec<&CheckResult> = checks
            .into_iter()
            .filter(|r| opts.verbosity != Verbosity::Quiet || is_problem(r.status))
            .collect();
        if checks.is_empty() {
            continue;
        }
        writeln!(out, "{}", category.style(st.header))?;
        for r in checks {
            write_check(out, r, &st, opts)?;
        }
        writeln!(out)?;
    }
    let summary = report.summary();
    let counts: Vec<String> = count_phrases(&summary)
        .into_iter()
        .map(|(status, n, text)| {
            let style = if n > 0 { st.status(status) } else { st.dim };
            text.style(style).to_string()
        })
        .collect();
    writeln!(
        out,
        "msa-doctor: {} in {}",
        counts.join(", "),
        seconds(report.duration)
    )
}

/// A status `-q` keeps: it asks for action or says the check could not run.
fn is_problem(status: Status) -> bool {
    matches!(status, Status::Warn | Status::Fail | Status::Error)
}

fn write_check(out: &mut String, r: &CheckResult, st: &Styles, opts: RenderOptions) -> fmt::Result {
    let unicode = opts.unicode;
    let style = st.status(r.status);
    write!(
        out,
        "  {} {} {}",
        glyph(r.status, unicode).style(style),
        r.title,
        format!("({})", r.id).style(st.dim)
    )?;
    if r.status != Status::Skip {
        write!(out, " {}", millis(r.duration).style(st.dim))?;
    }
    if r.attempts > 1 {
        write!(
            out,
            " {}",
            format!("after {} attempts", r.attempts).style(st.dim)
        )?;
    }
    match r.status {
        Status::Pass if opts.verbosity == Verbosity::Verbose => {
            // `-v`: the whole message and the evidence under the line.
            writeln!(out)?;
            if !r.message.is_empty() {
                writeln!(out, "{DETAIL}{}", r.message.style(style))?;
            }
            for line in evidence_lines(&r.evidence, unicode) {
                writeln!(out, "{DETAIL}{}", line.style(st.dim))?;
            }
            Ok(())
        }
        Status::Pass => {
            if !r.message.is_empty() {
                let sep = if unicode { "·" } else { "-" };
                let msg = cut(&r.message, MAX_PASS_MESSAGE, unicode);
                write!(out, " {}", format!("{sep} {msg}").style(st.dim))?;
            }
            writeln!(out)
        }
        Status::Skip => {
            writeln!(out)?;
            let reason = r.skipped_because.as_deref().unwrap_or(&r.message);
            writeln!(out, "{DETAIL}{}", reason.style(st.dim))
        }
        Status::Warn | Status::Fail | Status::Error => {
            writeln!(out)?;
            if !r.message.is_empty() {
                writeln!(out, "{DETAIL}{}", r.message.style(style))?;
            }
            for line in evidence_lines(&r.evidence, unicode) {
                writeln!(out, "{DETAIL}{}", line.style(st.dim))?;
            }
            if let Some(remedy) = &r.remedy {
                write_remedy(out, remedy, st)?;
            }
            match docs_link(r) {
                Some(link) => writeln!(out, "{DETAIL}see {link}"),
                None => Ok(()),
            }
        }
    }
}

/// `fix: cmd` on one line, or `fix:` over an indented block that can be copied as it is.
fn write_remedy(out: &mut String, remedy: &str, st: &Styles) -> fmt::Result {
    let lines = trimmed_lines(remedy);
    let label = "fix:".style(st.fix);
    match lines.as_slice() {
        [] => Ok(()),
        [one] => writeln!(out, "{DETAIL}{label} {one}"),
        many => {
            writeln!(out, "{DETAIL}{label}")?;
            for line in many {
                if line.is_empty() {
                    writeln!(out)?;
                } else {
                    writeln!(out, "{DETAIL}  {line}")?;
                }
            }
            Ok(())
        }
    }
}

/// The checks grouped by category: categories in the order they first appear, checks in
/// report order.
pub(crate) fn by_category(checks: &[CheckResult]) -> Vec<(&str, Vec<&CheckResult>)> {
    let mut groups: Vec<(&str, Vec<&CheckResult>)> = Vec::new();
    for r in checks {
        match groups.iter_mut().find(|(c, _)| *c == r.category) {
            Some((_, list)) => list.push(r),
            None => groups.push((&r.category, vec![r])),
        }
    }
    groups
}

/// `(status, count, "3 passed")` for every status, in report order.
pub(crate) fn count_phrases(s: &Summary) -> Vec<(Status, usize, String)> {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    vec![
        (Status::Pass, s.pass, format!("{} passed", s.pass)),
        (Status::Warn, s.warn, plural(s.warn, "warning", "warnings")),
        (Status::Fail, s.fail, format!("{} failed", s.fail)),
        (Status::Skip, s.skip, format!("{} skipped", s.skip)),
        (Status::Error, s.error, plural(s.error, "error", "errors")),
    ]
}

/// Where a reader finds a check's documentation: its own `docs`, else the command that prints
/// the embedded section (it works from an installed binary, unlike a path into the source
/// tree); `None` for a check that has neither.
pub(crate) fn docs_link(r: &CheckResult) -> Option<String> {
    let embedded = crate::docs::is_documented(&r.id);
    match &r.docs {
        Some(d) if !(embedded && crate::docs::is_checks_md(d)) => Some(d.clone()),
        _ if embedded => Some(format!("msa-doctor docs {}", r.id)),
        _ => None,
    }
}

/// The remedy's lines without trailing spaces and without blank lines around them.
pub(crate) fn trimmed_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let start = lines
        .iter()
        .position(|l| !l.is_empty())
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(start, |e| e + 1);
    lines[start..end].to_vec()
}

/// A duration as a check's line shows it: `12ms`, or `1.20s` from one second on.
fn millis(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        seconds(d)
    }
}

/// A duration in seconds with two decimals: `0.41s`.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The evidence as `key: value` lines; lists are joined and long values cut.
fn evidence_lines(evidence: &Value, unicode: bool) -> Vec<String> {
    match evidence {
        Value::Null => vec![],
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| cut(&format!("{k}: {}", compact(v, true)), MAX_VALUE, unicode))
            .collect(),
        other => vec![cut(
            &format!("evidence: {}", compact(other, true)),
            MAX_VALUE,
            unicode,
        )],
    }
}

/// One value on one line: strings bare, lists joined with `, `, maps as `{k: v}`.
fn compact(v: &Value, top: bool) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.split_whitespace().collect::<Vec<_>>().join(" "),
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| compact(x, false)).collect();
            if top {
                items.join(", ")
            } else {
                format!("[{}]", items.join(", "))
            }
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{k}: {}", compact(x, false)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub(crate) fn cut(s: &str, max: usize, unicode: bool) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mark = if unicode { "…" } else { "..." };
    let keep = max.saturating_sub(mark.chars().count());
    let mut out: String = s.chars().take(keep).collect();
    out.push_str(mark);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cut_counts_characters_not_bytes() {
        assert_eq!(cut("ééééé", 5, true), "ééééé");
        assert_eq!(cut("éééééé", 5, true), "éééé…");
        assert_eq!(cut("abcdefgh", 6, false), "abc...");
    }

    #[test]
    fn evidence_is_compact() {
        let ev = json!({"deployments": ["order-service", "user-service"], "port": 8080,
            "seen": {"uri": ["/orders"]}, "none": [], "text": "two\nlines"});
        assert_eq!(
            evidence_lines(&ev, true),
            [
                "deployments: order-service, user-service",
                "none: none",
                "port: 8080",
                "seen: {uri: [/orders]}",
                "text: two lines"
            ]
        );
        assert!(evidence_lines(&json!({}), true).is_empty());
        assert_eq!(evidence_lines(&json!("x"), true), ["evidence: x"]);
    }

    #[test]
    fn remedy_lines_lose_surrounding_blank_lines() {
        assert_eq!(trimmed_lines("\n  a  \n\nb\n\n"), ["  a", "", "b"]);
        assert!(trimmed_lines(" \n").is_empty());
    }

    #[test]
    fn durations() {
        assert_eq!(millis(Duration::from_millis(12)), "12ms");
        assert_eq!(millis(Duration::from_millis(1234)), "1.23s");
        assert_eq!(seconds(Duration::from_millis(412)), "0.41s");
    }
}
