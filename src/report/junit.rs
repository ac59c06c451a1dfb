//! The JUnit XML report, for CI systems that show test results: one `<testsuite>` per category
//! (in the order categories first appear), one `<testcase>` per check, named by its stable id
//! with the category as `classname`.
//!
//! `fail` is a `<failure>`, `error` an `<error>`, `skip` a `<skipped>` carrying the reason; `pass`
//! and `warn` are successes. The message is the element's `message`; its text holds the remedy,
//! the evidence and the docs link. Every case's `<system-out>` gives the title and the message,
//! and for a warning also the remedy, which would otherwise be lost.

use super::Report;
use super::human::{by_category, docs_link, trimmed_lines};
use crate::engine::{CheckResult, Status};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

/// Renders the report as JUnit XML with a final newline.
pub fn render(report: &Report) -> String {
    let mut junit = quick_junit::Report::new("msa-doctor");
    junit.set_timestamp(chrono::DateTime::<chrono::Utc>::from(report.started_at));
    junit.set_time(report.duration);
    for (category, checks) in by_category(&report.checks) {
        let mut suite = TestSuite::new(category);
        suite.set_time(checks.iter().map(|r| r.duration).sum());
        suite.add_test_cases(checks.into_iter().map(test_case));
        junit.add_test_suite(suite);
    }
    junit.to_string().unwrap_or_else(|e| {
        // quick-junit only fails on a broken writer; a String is not one, but say so if it does.
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- msa-doctor: cannot write JUnit: {e} -->\n")
    })
}

fn test_case(r: &CheckResult) -> TestCase {
    let mut status = match r.status {
        Status::Pass | Status::Warn => TestCaseStatus::success(),
        Status::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
        Status::Error => TestCaseStatus::non_success(NonSuccessKind::Error),
        Status::Skip => TestCaseStatus::skipped(),
    };
    match r.status {
        Status::Pass | Status::Warn => {}
        Status::Skip => {
            status.set_message(r.skipped_because.as_deref().unwrap_or(&r.message));
        }
        Status::Fail | Status::Error => {
            status
                .set_message(r.message.as_str())
                .set_type(r.status.as_str())
                .set_description(details(r));
        }
    }
    let mut case = TestCase::new(r.id.as_str(), status);
    case.set_classname(r.category.as_str()).set_time(r.duration);
    let mut out = format!("{}\n{}: {}\n", r.title, r.status, r.message);
    if r.status == Status::Warn {
        out.push_str(&details(r));
    }
    case.set_system_out(out);
    case
}

/// The remedy, the evidence as pretty JSON and the docs link, as plain text.
fn details(r: &CheckResult) -> String {
    let mut text = String::new();
    if let Some(remedy) = &r.remedy {
        text.push_str("remedy:\n");
        for line in trimmed_lines(remedy) {
            if !line.is_empty() {
                text.push_str("  ");
            }
            text.push_str(line);
            text.push('\n');
        }
    }
    let empty = r.evidence.is_null() || r.evidence.as_object().is_some_and(|m| m.is_empty());
    if !empty && let Ok(json) = serde_json::to_string_pretty(&r.evidence) {
        text.push_str(&format!("evidence: {json}\n"));
    }
    if let Some(link) = docs_link(r) {
        text.push_str(&format!("see {link}\n"));
    }
    text
}
