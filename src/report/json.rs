//! The JSON report, schema `msa-doctor/v1` (CONTRACT.md):
//! `schema`, `tool {name, version}`, `started_at` (RFC 3339, UTC), `duration_ms`,
//! `target {grafana_url, prometheus, kube_context, namespace}`,
//! `summary {pass, warn, fail, skip, error}` and `checks[]` with `id`, `category`, `title`,
//! `status`, `message`, `remedy` (null when passing), `needs`, `skipped_because`,
//! `duration_ms` and `evidence`, in dependency order.

use super::{Report, Target};
use crate::engine::{CheckResult, Summary};
use serde::Serialize;

/// The schema name written in every JSON report.
pub const SCHEMA: &str = "msa-doctor/v1";

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    tool: Tool,
    started_at: String,
    duration_ms: u64,
    target: &'a Target,
    summary: Summary,
    checks: &'a [CheckResult],
}

/// Renders the report as pretty JSON with a final newline.
pub fn render(report: &Report) -> String {
    let doc = JsonReport {
        schema: SCHEMA,
        tool: Tool {
            name: "msa-doctor",
            version: env!("CARGO_PKG_VERSION"),
        },
        started_at: humantime::format_rfc3339_seconds(report.started_at).to_string(),
        duration_ms: report.duration.as_millis() as u64,
        target: &report.target,
        summary: report.summary(),
        checks: &report.checks,
    };
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}
