//! `msa-doctor explain` (a query, a dashboard, every dashboard) and `msa-doctor lint` (a thin
//! call into [`crate::lint`]).

use crate::app::{context, emit, run_in, use_color};
use crate::cli::{ExplainArgs, Format, LintArgs};
use crate::clients::PromApi;
use crate::clients::grafana::GrafanaSession;
use crate::config::{self, ConfigError};
use crate::engine::{CheckCtx, CheckResult, Status};
use crate::exit_code;
use crate::explain::dashboard::{self, DashboardReport, GrafanaApi, PanelStatus};
use crate::explain::{self, ExplainOptions, Explanation, QueryResult, SelectorReport, Verdict};
use crate::report::styles::Styles;
use crate::settings::{self, Env, FileConfig, Settings};
use promql_parser::parser::Expr;
use std::time::Instant;

/// Runs the checks up to `upto` (with their prerequisites) and keeps the facts they learn.
/// On failure, prints why to stderr and returns the exit code.
async fn connect(settings: &Settings, upto: &str) -> Result<CheckCtx, i32> {
    let plan = match config::load(&[]) {
        Ok(p) => p.for_settings(settings.prometheus_url.as_deref()),
        Err(e) => {
            eprintln!("msa-doctor: {e}");
            return Err(exit_code::USAGE);
        }
    };
    let mut s = settings.clone();
    s.only = vec![upto.to_string()];
    s.skip = vec![];
    s.wait = None;
    let cx = context(s);
    let report = run_in(&cx, plan).await;
    let bad: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|c| matches!(c.status, Status::Fail | Status::Error))
        .collect();
    if bad.is_empty()
        && report
            .checks
            .iter()
            .any(|c| c.id == upto && c.status.satisfies_needs())
    {
        return Ok(cx);
    }
    eprintln!("msa-doctor: cannot reach the data: the chain breaks before {upto}");
    for c in bad {
        eprintln!("  {} ({}): {}", c.title, c.id, c.message);
        if let Some(r) = &c.remedy {
            for l in r.lines() {
                eprintln!("      {l}");
            }
        }
    }
    Err(exit_code::ERROR)
}

fn settings_of(args: &crate::cli::CheckArgs) -> Result<Settings, ConfigError> {
    let file = FileConfig::load(args.report.config.as_deref())?;
    settings::resolve(args, &Env::from_process(), file.as_ref())
}

/// `msa-doctor explain`.
pub async fn explain(args: ExplainArgs) -> Result<i32, ConfigError> {
    let settings = settings_of(&args.check)?;
    let out = settings
        .output
        .supported_by("explain", &[Format::Human, Format::Json])
        .map_err(ConfigError::Usage)?;
    if let Some(q) = &args.query {
        // Bad PromQL is a usage error, before any network.
        let expr = explain::parse(q).map_err(|e| ConfigError::Usage(e.to_string()))?;
        let api = if let Some(u) = &settings.prometheus_url {
            let cx = context(settings.clone());
            PromApi::direct(
                cx.clients.http.clone(),
                u,
                settings.timeout,
                cx.clients.prom_memo(u),
            )
        } else {
            let cx = match connect(&settings, "grafana.datasource").await {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            crate::probes::prom::api(&cx).await
        };
        let opts = ExplainOptions {
            window: settings.window,
            lookback: args.lookback,
        };
        let ex = match explain::explain(&api, q, opts).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("msa-doctor: cannot query Prometheus via {}: {e}", api.via);
                return Ok(exit_code::ERROR);
            }
        };
        let text = match out {
            Format::Json => format!(
                "{}\n",
                serde_json::to_string_pretty(&ex).unwrap_or_default()
            ),
            _ => render_explanation(&ex, &expr, use_color(settings.color)),
        };
        let code = if ex.result == QueryResult::Data {
            exit_code::OK
        } else {
            exit_code::FAILED
        };
        return Ok(emit(&text, code));
    }
    // Dashboards need Grafana even with --prometheus-url.
    let mut s = settings.clone();
    s.prometheus_url = None;
    let cx = match connect(&s, "grafana.datasource").await {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let Some(session) = cx.facts.get::<GrafanaSession>() else {
        eprintln!("msa-doctor: no Grafana session");
        return Ok(exit_code::ERROR);
    };
    let g = GrafanaApi::new(
        cx.clients.clone(),
        &settings.grafana_url,
        session,
        settings.timeout,
        None,
    );
    let dss = match dashboard::datasources(&g).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("msa-doctor: {e}");
            return Ok(exit_code::ERROR);
        }
    };
    let uids = match &args.dashboard {
        Some(u) => vec![u.clone()],
        None => match dashboard::dashboard_uids(&g).await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("msa-doctor: {e}");
                return Ok(exit_code::ERROR);
            }
        },
    };
    let start = Instant::now();
    let reports: Vec<DashboardReport> = futures::future::join_all(
        uids.iter()
            .map(|u| dashboard::scan(&g, u, &dss, args.lookback)),
    )
    .await;
    if args.dashboard.is_some()
        && let Some(p) = reports.first().and_then(|r| r.problem.clone())
    {
        eprintln!("msa-doctor: dashboard {:?}: {p}", uids[0]);
        return Ok(exit_code::USAGE);
    }
    let text = match out {
        Format::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": "msa-doctor/explain-dashboards/v1",
                "duration_ms": start.elapsed().as_millis() as u64,
                "dashboards": reports,
            }))
            .unwrap_or_default()
        ),
        _ => render_dashboards(&reports, use_color(settings.color), start.elapsed()),
    };
    let empty = reports
        .iter()
        .any(|r| r.problem.is_some() || r.empty_panels().next().is_some());
    let code = if empty {
        exit_code::FAILED
    } else {
        exit_code::OK
    };
    Ok(emit(&text, code))
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Present => "present",
        Verdict::Zero => "zero",
        Verdict::MetricMissing => "metric-missing",
        Verdict::LabelMissing => "label-missing",
        Verdict::ValueMissing => "value-missing",
        Verdict::Stale => "stale",
        Verdict::Intermittent => "intermittent",
        Verdict::WindowTooShort => "window-too-short",
        Verdict::PrometheusDown => "prometheus-down",
    }
}

fn glyph_of(v: Verdict) -> (&'static str, Status) {
    match v {
        Verdict::Present => ("✔", Status::Pass),
        Verdict::Zero | Verdict::WindowTooShort | Verdict::Intermittent => ("‼", Status::Warn),
        _ => ("✖", Status::Fail),
    }
}

/// The query as a tree, each selector with its verdict.
fn tree(
    expr: &Expr,
    reports: &mut std::slice::Iter<'_, SelectorReport>,
    styles: &Styles,
    prefix: Option<&str>,
    last: bool,
    out: &mut String,
) {
    use owo_colors::OwoColorize;
    // The root (no prefix) has no branch; its children start the drawing.
    let (branch, child_prefix) = match prefix {
        None => ("", String::new()),
        Some(p) if last => ("└─ ", format!("{p}   ")),
        Some(p) => ("├─ ", format!("{p}│  ")),
    };
    let prefix = prefix.unwrap_or("");
    let line =
        |label: String, out: &mut String| out.push_str(&format!("  {prefix}{branch}{label}\n"));
    let kids: Vec<&Expr> = match expr {
        Expr::Aggregate(a) => {
            let by = match &a.modifier {
                Some(promql_parser::parser::LabelModifier::Include(l)) => {
                    format!(" by ({})", l.labels.join(", "))
                }
                Some(promql_parser::parser::LabelModifier::Exclude(l)) => {
                    format!(" without ({})", l.labels.join(", "))
                }
                None => String::new(),
            };
            line(format!("{}{by}", a.op), out);
            let mut k = vec![];
            if let Some(p) = &a.param {
                k.push(p.as_ref());
            }
            k.push(a.expr.as_ref());
            k
        }
        Expr::Call(c) => {
            line(format!("{}()", c.func.name), out);
            c.args.args.iter().map(|a| a.as_ref()).collect()
        }
        Expr::Binary(b) => {
            line(format!("{}", b.op), out);
            vec![b.lhs.as_ref(), b.rhs.as_ref()]
        }
        Expr::Paren(p) => {
            line("( )".into(), out);
            vec![p.expr.as_ref()]
        }
        Expr::Unary(u) => {
            line("-".into(), out);
            vec![u.expr.as_ref()]
        }
        Expr::Subquery(s) => {
            line(
                format!(
                    "subquery [{}:{}]",
                    humantime::format_duration(s.range),
                    s.step
                        .map(|d| humantime::format_duration(d).to_string())
                        .unwrap_or_default()
                ),
                out,
            );
            vec![s.expr.as_ref()]
        }
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => {
            if let Some(r) = reports.next() {
                let (g, st) = glyph_of(r.verdict);
                line(
                    format!(
                        "{}  {}",
                        r.selector,
                        format!("{g} {}", verdict_word(r.verdict)).style(styles.status(st))
                    ),
                    out,
                );
            }
            vec![]
        }
        other => {
            line(format!("{other}"), out);
            vec![]
        }
    };
    let n = kids.len();
    for (i, k) in kids.into_iter().enumerate() {
        tree(k, reports, styles, Some(&child_prefix), i + 1 == n, out);
    }
}

fn render_explanation(ex: &Explanation, expr: &Expr, color: bool) -> String {
    use owo_colors::OwoColorize;
    let styles = Styles::new(color);
    let mut out = String::new();
    let result = match ex.result {
        QueryResult::Data => "data".style(styles.pass).to_string(),
        QueryResult::Zero => "only zeros".style(styles.warn).to_string(),
        QueryResult::Empty => "empty".style(styles.fail).to_string(),
    };
    out.push_str(&format!(
        "{}\nover the last {}: {result}\n\n",
        ex.query, ex.window
    ));
    tree(
        expr,
        &mut ex.selectors.iter(),
        &styles,
        None,
        true,
        &mut out,
    );
    for s in ex
        .selectors
        .iter()
        .filter(|s| s.verdict != Verdict::Present)
    {
        out.push_str(&format!("\n  {}: {}\n", s.selector, s.detail));
        if !s.suggestions.is_empty() {
            out.push_str(&format!("    try: {}\n", s.suggestions.join("  or  ")));
        }
        if let Some(v) = s.evidence.get("existing_values").and_then(|v| v.as_array()) {
            let vals: Vec<String> = v
                .iter()
                .filter_map(|x| x.as_str())
                .take(8)
                .map(str::to_string)
                .collect();
            out.push_str(&format!("    values that exist: {}\n", vals.join(", ")));
        }
    }
    if let Some(rc) = &ex.root_cause {
        out.push_str(&format!("\n{} {rc}\n", "root cause:".style(styles.header)));
    }
    if let Some(r) = &ex.remedy {
        out.push_str(&format!("{}\n", "fix:".style(styles.fix)));
        for l in r.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}

fn render_dashboards(
    reports: &[DashboardReport],
    color: bool,
    took: std::time::Duration,
) -> String {
    use owo_colors::OwoColorize;
    let styles = Styles::new(color);
    let mut out = String::new();
    let (mut total, mut empty) = (0, 0);
    for r in reports {
        out.push_str(&format!(
            "{} ({}), {} to {}\n",
            r.title.style(styles.header),
            r.uid,
            r.time.0,
            r.time.1
        ));
        if !r.variables.is_empty() {
            let vars: Vec<String> = r
                .variables
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            out.push_str(&format!("  variables: {}\n", vars.join(", ")));
        }
        if let Some(p) = &r.problem {
            // The dashboard could not be scanned: an error, as for a panel query that failed.
            out.push_str(&format!(
                "  {} {p}\n",
                "⁉".style(styles.status(Status::Error))
            ));
        }
        for p in &r.panels {
            total += 1;
            let (g, st) = match p.status {
                PanelStatus::Data => ("✔", Status::Pass),
                PanelStatus::Zero => ("‼", Status::Warn),
                PanelStatus::NotPrometheus => ("↷", Status::Skip),
                PanelStatus::Error => ("⁉", Status::Error),
                _ => ("✖", Status::Fail),
            };
            if !matches!(
                p.status,
                PanelStatus::Data | PanelStatus::Zero | PanelStatus::NotPrometheus
            ) {
                empty += 1;
            }
            out.push_str(&format!(
                "  {} {} [{}]: {}\n",
                g.style(styles.status(st)),
                p.panel,
                p.ref_id,
                p.detail
            ));
            if let Some(ex) = &p.explanation
                && p.status != PanelStatus::Data
            {
                out.push_str(&format!("      {}\n", p.expanded.style(styles.dim)));
                if let Some(r) = &ex.remedy {
                    for l in r.lines() {
                        out.push_str(&format!("      {l}\n"));
                    }
                }
            }
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "msa-doctor: {} dashboards, {total} panel queries, {empty} without data, in {:.2}s\n",
        reports.len(),
        took.as_secs_f64()
    ));
    out
}

/// `msa-doctor lint PATH... | -`: the checks that need no live stack (see [`crate::lint`]).
pub fn lint(args: LintArgs) -> Result<i32, ConfigError> {
    crate::lint::run(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(selector: &str, verdict: Verdict) -> SelectorReport {
        SelectorReport {
            selector: selector.into(),
            verdict,
            detail: "d".into(),
            suggestions: vec![],
            evidence: json!({}),
            remedy: None,
        }
    }

    #[test]
    fn the_query_tree_draws_every_branch() {
        let q = "sum(rate(a{b=\"c\"}[1m])) by (x) / count(d) * 60";
        let expr = explain::parse(q).unwrap();
        let ex = Explanation {
            schema: "msa-doctor/explain/v1",
            query: q.into(),
            window: "15m".into(),
            result: QueryResult::Empty,
            selectors: vec![
                sel("a{b=\"c\"}[1m]", Verdict::ValueMissing),
                sel("d", Verdict::Present),
            ],
            root_cause: Some("r".into()),
            remedy: Some("fix".into()),
        };
        let out = render_explanation(&ex, &expr, false);
        let tree: Vec<&str> = out.lines().skip(3).take(7).collect();
        assert_eq!(
            tree,
            vec![
                "  *",
                "  ├─ /",
                "  │  ├─ sum by (x)",
                "  │  │  └─ rate()",
                "  │  │     └─ a{b=\"c\"}[1m]  ✖ value-missing",
                "  │  └─ count",
                "  │     └─ d  ✔ present",
            ],
            "{out}"
        );
        assert!(out.contains("  └─ 60"), "{out}");
        assert!(
            out.contains("root cause: r") && out.contains("fix:\n  fix"),
            "{out}"
        );
    }
}
