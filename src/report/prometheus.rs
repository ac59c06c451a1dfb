//! The metrics of CONTRACT.md v1.1 ("Metrics") in Prometheus's text exposition format, for
//! `--output prometheus` (node_exporter's textfile collector) and `msa-doctor serve`'s
//! `/metrics`:
//!
//! - `msa_doctor_check_status{id, category, status}`: one series per status, 1 for the
//!   check's current status and 0 for the others, so `== 1` selects and absent never means ok;
//! - `msa_doctor_check_duration_seconds{id}`, `msa_doctor_run_duration_seconds`,
//!   `msa_doctor_last_run_timestamp_seconds` (when the run ended),
//!   `msa_doctor_build_info{version, commit}` = 1.
//!
//! `promtool check metrics` accepts it (tests/serve.rs runs it).

use super::Report;
use crate::engine::Status;
use std::fmt::Write;
use std::time::UNIX_EPOCH;

/// The content type of the text format, for `/metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped as the text format requires.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
}

/// Renders the report's metrics.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "msa_doctor_check_status",
        "Status of each check: 1 for the current status, 0 for the others.",
    );
    for r in &report.checks {
        let (id, category) = (escape_label(&r.id), escape_label(&r.category));
        for status in Status::ALL {
            let _ = writeln!(
                out,
                "msa_doctor_check_status{{id=\"{id}\",category=\"{category}\",status=\"{}\"}} {}",
                status.as_str(),
                u8::from(r.status == status)
            );
        }
    }
    family(
        &mut out,
        "msa_doctor_check_duration_seconds",
        "Wall time of each check's last attempt.",
    );
    for r in &report.checks {
        let _ = writeln!(
            out,
            "msa_doctor_check_duration_seconds{{id=\"{}\"}} {}",
            escape_label(&r.id),
            r.duration.as_secs_f64()
        );
    }
    family(
        &mut out,
        "msa_doctor_run_duration_seconds",
        "Wall time of the whole run.",
    );
    let _ = writeln!(
        out,
        "msa_doctor_run_duration_seconds {}",
        report.duration.as_secs_f64()
    );
    family(
        &mut out,
        "msa_doctor_last_run_timestamp_seconds",
        "When the last run ended, in seconds since the Unix epoch.",
    );
    let ended = (report.started_at + report.duration)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(out, "msa_doctor_last_run_timestamp_seconds {ended}");
    family(
        &mut out,
        "msa_doctor_build_info",
        "Always 1; the labels say which msa-doctor runs.",
    );
    let _ = writeln!(
        out,
        "msa_doctor_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        escape_label(crate::version::COMMIT)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
    }
}
