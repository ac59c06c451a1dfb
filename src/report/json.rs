//! The JSON report, schema `msa-doctor/v1` (CONTRACT.md):
//! `schema`, `tool {name, version}`, `started_at` (RFC 3339, UTC), `duration_ms`,
//! `target {grafana_url, prometheus, kube_context, namespace}`,
//! `summary {pass, warn, fail, skip, error}` and `checks[]` with `id`, `category`, `title`,
//! `status`, `message`, `remedy` (null when passing), `needs`, `skipped_because`,
//! `duration_ms` and `evidence`, in dependency order.
//!
//! URLs in `target` lose any `user:password@` part, which no output may show.

use super::{Report, Target};
use crate::engine::{CheckResult, Status, Summary};
use serde::Serialize;

/// The schema name written in every JSON report.
pub const SCHEMA: &str = "msa-doctor/v1";

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct JsonReport {
    schema: &'static str,
    tool: Tool,
    started_at: String,
    duration_ms: u64,
    target: Target,
    summary: Summary,
    checks: Vec<JsonCheck>,
}

/// A check with its `docs_url` (v1.1): the check's own `docs`, else its section of
/// `docs/checks.md` relative to the repository root (`msa-doctor docs ID` prints it), else null.
#[derive(Serialize)]
struct JsonCheck {
    #[serde(flatten)]
    check: CheckResult,
    docs_url: Option<String>,
}

fn docs_url(r: &CheckResult) -> Option<String> {
    r.docs
        .clone()
        .or_else(|| crate::docs::is_documented(&r.id).then(|| crate::docs::docs_url(&r.id)))
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
        target: Target {
            grafana_url: redacted_url(&report.target.grafana_url),
            prometheus: redacted_url(&report.target.prometheus),
            ..report.target.clone()
        },
        summary: report.summary(),
        checks: report
            .checks
            .iter()
            .map(|r| JsonCheck {
                check: contract_view(r),
                docs_url: docs_url(r),
            })
            .collect(),
    };
    let mut s =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// The check as the contract shows it, whoever built the result: no remedy when passing, no
/// `skipped_because` unless skipped, and `evidence` always an object.
fn contract_view(r: &CheckResult) -> CheckResult {
    let mut r = r.clone();
    if r.status == Status::Pass {
        r.remedy = None;
    }
    if r.status != Status::Skip {
        r.skipped_because = None;
    }
    if r.evidence.is_null() {
        r.evidence = serde_json::Value::Object(Default::default());
    }
    r
}

/// `url` without its `user:password@` part; anything that is not such a URL is returned as is.
pub(crate) fn redacted_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            // Neither call can fail on an http(s) URL with a host, the only kind that has a user.
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn urls_lose_their_credentials_only() {
        assert_eq!(
            redacted_url("http://admin:s3cret@localhost:3000/"),
            "http://localhost:3000/"
        );
        assert_eq!(
            redacted_url("http://token@grafana:3000"),
            "http://grafana:3000/"
        );
        assert_eq!(
            redacted_url("http://localhost:3000"),
            "http://localhost:3000"
        );
        assert_eq!(redacted_url("grafana-proxy"), "grafana-proxy");
    }
}
