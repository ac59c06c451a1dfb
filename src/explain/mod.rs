//! Why a PromQL query returns no data: parse it, then ask Prometheus, for every vector
//! selector, whether it returns series now and over the window, whether the metric ever
//! existed, whether each label and value ever did, whether it disappeared, and whether a range
//! window is too short for the scrape interval. The first selector that empties the query is
//! the root cause; its remedy is a corrected query or the configuration that produces the data.
//!
//! Used by `msa-doctor explain` and by the `panel.*` checks. Nothing here prints.

pub mod dashboard;

use crate::clients::prom::{Labels, PromApi, PromError, Sample, now};
use crate::clients::{CallError, ErrorKind};
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr, VectorSelector};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use strsim::levenshtein;

/// A selector's verdict, as CONTRACT.md names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// It returns series with non-zero data in the window.
    Present,
    /// Its series exist but every value (or increase, under a rate) is 0 in the window.
    Zero,
    /// The metric name does not exist in the lookback.
    MetricMissing,
    /// A label the selector filters on is never present on the metric.
    LabelMissing,
    /// A label value the selector asks for never occurs.
    ValueMissing,
    /// It existed, but its last sample is older than the window.
    Stale,
    /// It comes and goes.
    Intermittent,
    /// A range window is shorter than four scrape intervals: under two, the function returns
    /// nothing; under four, nothing whenever a scrape is late (gaps).
    WindowTooShort,
    /// Prometheus itself had no data in the window.
    PrometheusDown,
}

/// The whole query's outcome over the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryResult {
    /// Series with data.
    Data,
    /// Series exist, every value is 0.
    Zero,
    /// No series.
    Empty,
}

/// One selector's diagnosis.
#[derive(Clone, Debug, Serialize)]
pub struct SelectorReport {
    /// The selector as written (with its range, when it has one).
    pub selector: String,
    /// The verdict.
    pub verdict: Verdict,
    /// One line, in words.
    pub detail: String,
    /// Replacements to try (e.g. `uri="/orders"`).
    pub suggestions: Vec<String>,
    /// What was seen.
    pub evidence: Value,
    /// A remedy for this selector, when there is one (not serialised; the top level has it).
    #[serde(skip)]
    pub remedy: Option<String>,
}

/// The explanation of one query.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// `msa-doctor/explain/v1`.
    pub schema: &'static str,
    /// The query.
    pub query: String,
    /// The window, e.g. `15m`.
    pub window: String,
    /// Data, zero or empty.
    pub result: QueryResult,
    /// Every selector, in the query's order.
    pub selectors: Vec<SelectorReport>,
    /// The one-line root cause, when the query is empty or zero, or returns data that misleads
    /// (a gappy range window, a grouping label that folds every service into one line).
    pub root_cause: Option<String>,
    /// What to type: a corrected query or the configuration to change.
    pub remedy: Option<String>,
}

/// How far to look.
#[derive(Clone, Copy, Debug)]
pub struct ExplainOptions {
    /// The dashboard's time range.
    pub window: Duration,
    /// How far back "ever existed" looks.
    pub lookback: Duration,
}

impl Default for ExplainOptions {
    fn default() -> Self {
        ExplainOptions {
            window: Duration::from_secs(15 * 60),
            lookback: Duration::from_secs(24 * 3600),
        }
    }
}

/// Why a query could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The PromQL does not parse.
    #[error("{}", render_parse_error(.query, .message, *.column))]
    Parse {
        /// The query.
        query: String,
        /// The parser's message.
        message: String,
        /// 0-based column of the error.
        column: usize,
    },
    /// Prometheus did not answer.
    #[error("{0}")]
    Prom(PromError),
}

fn render_parse_error(query: &str, message: &str, column: usize) -> String {
    let line: String = query
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    format!(
        "invalid PromQL: {message}\n  {line}\n  {}^",
        " ".repeat(line.chars().take(column).count())
    )
}

/// Parses a query; on error, finds the column where the parser first gives up.
pub fn parse(query: &str) -> Result<Expr, ExplainError> {
    match parser::parse(query) {
        Ok(e) => Ok(e),
        Err(message) => {
            let incomplete = |m: &str| {
                let m = m.to_ascii_lowercase();
                // What a prefix of a valid query may say: more input would fix it.
                [
                    "end of input",
                    "unclosed",
                    "<eof>",
                    "unexpected end",
                    "unterminated",
                    "eof",
                ]
                .iter()
                .any(|w| m.contains(w))
            };
            let mut column = query.chars().count();
            let idx: Vec<usize> = query
                .char_indices()
                .map(|(i, _)| i)
                .chain([query.len()])
                .collect();
            for (col, &end) in idx.iter().enumerate().skip(1) {
                if let Err(m) = parser::parse(&query[..end])
                    && !incomplete(&m)
                {
                    column = col.saturating_sub(1);
                    break;
                }
            }
            Err(ExplainError::Parse {
                query: query.to_string(),
                message: message.trim().to_string(),
                column,
            })
        }
    }
}

/// A vector selector found in a query, with its context.
#[derive(Clone, Debug)]
pub struct Found {
    /// The selector.
    pub vs: VectorSelector,
    /// Its range, when it is a matrix selector.
    pub range: Option<Duration>,
    /// The function it is an argument of.
    pub func: Option<String>,
    /// Labels aggregations above it group by.
    pub grouping: Vec<String>,
    /// Every function it is nested in, innermost first.
    pub funcs: Vec<String>,
}

/// Every vector selector of an expression, in order.
pub fn selectors(expr: &Expr) -> Vec<Found> {
    let mut out = Vec::new();
    walk(expr, &[], &[], &mut out);
    out
}

fn walk(e: &Expr, funcs: &[String], grouping: &[String], out: &mut Vec<Found>) {
    let func = funcs.first().map(String::as_str);
    match e {
        Expr::VectorSelector(vs) => out.push(Found {
            vs: vs.clone(),
            range: None,
            func: func.map(str::to_string),
            grouping: grouping.to_vec(),
            funcs: funcs.to_vec(),
        }),
        Expr::MatrixSelector(ms) => out.push(Found {
            vs: ms.vs.clone(),
            range: Some(ms.range),
            func: func.map(str::to_string),
            grouping: grouping.to_vec(),
            funcs: funcs.to_vec(),
        }),
        Expr::Aggregate(a) => {
            let mut g = grouping.to_vec();
            if let Some(promql_parser::parser::LabelModifier::Include(l)) = &a.modifier {
                g.extend(l.labels.iter().cloned());
            }
            walk(&a.expr, funcs, &g, out);
            if let Some(p) = &a.param {
                walk(p, funcs, grouping, out);
            }
        }
        Expr::Unary(u) => walk(&u.expr, funcs, grouping, out),
        Expr::Binary(b) => {
            walk(&b.lhs, funcs, grouping, out);
            walk(&b.rhs, funcs, grouping, out);
        }
        Expr::Paren(p) => walk(&p.expr, funcs, grouping, out),
        Expr::Subquery(s) => walk(&s.expr, funcs, grouping, out),
        Expr::Call(c) => {
            let mut inner = vec![c.func.name.to_string()];
            inner.extend(funcs.iter().cloned());
            for a in &c.args.args {
                walk(a, &inner, grouping, out);
            }
        }
        _ => {}
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{}s", s.max(1))
    }
}

pub use crate::domain::age;

/// Which exporter or job produces a metric family, by its name.
pub fn producer(metric: &str) -> (&'static str, &'static str) {
    let m = metric;
    if m.starts_with("http_server_requests")
        || m.starts_with("jvm_")
        || m.starts_with("process_")
        || m.starts_with("system_")
        || m.starts_with("tomcat_")
        || m.starts_with("hikaricp_")
        || m.starts_with("logback_")
        || m.starts_with("spring_")
        || m.starts_with("executor_")
        || m.starts_with("application_")
        || m.starts_with("disk_")
        || m.starts_with("kafka_consumer_")
        || m.starts_with("kafka_producer_")
    {
        (
            "Spring Boot (Micrometer, /actuator/prometheus)",
            "kubernetes-pods",
        )
    } else if m.starts_with("kafka_") {
        ("a Kafka exporter (kafka_exporter)", "kubernetes-pods")
    } else if m.starts_with("container_") || m.starts_with("machine_") {
        (
            "cAdvisor (the kubelet's /metrics/cadvisor)",
            "kubernetes-cadvisor",
        )
    } else if m.starts_with("node_") {
        ("the node exporter", "node-exporter")
    } else if m.starts_with("kube_") {
        ("kube-state-metrics", "kube-state-metrics")
    } else {
        ("an exporter", "")
    }
}

fn base_name(m: &str) -> String {
    let mut s = m.to_string();
    for suf in [
        "_total", "_count", "_sum", "_bucket", "_max", "_seconds", "_bytes", "_threads", "_ratio",
        "_percent", "_created",
    ] {
        if let Some(x) = s.strip_suffix(suf) {
            s = x.to_string();
        }
    }
    s
}

/// Existing metric names close to a missing one, closest first.
pub fn similar_names(want: &str, have: &[String]) -> Vec<String> {
    let wb = base_name(want);
    let mut scored: Vec<(usize, &String)> = have
        .iter()
        .filter_map(|h| {
            let hb = base_name(h);
            let d = if hb == wb {
                0
            } else if h.starts_with(want) || want.starts_with(h.as_str()) {
                1
            } else {
                let d = levenshtein(&wb, &hb);
                if d > 3.max(wb.len() / 4) {
                    return None;
                }
                d + 1
            };
            Some((d, h))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, h)| h.clone()).collect()
}

/// Existing label values close to a wanted one: same tail or head, then edit distance.
pub fn nearest_values(want: &str, have: &[String]) -> Vec<String> {
    let mut scored: Vec<(usize, &String)> = have
        .iter()
        .map(|h| {
            let contained = want.ends_with(h.as_str())
                || h.ends_with(want)
                || want.starts_with(h.as_str())
                || h.starts_with(want);
            let d = if contained {
                want.len().abs_diff(h.len())
            } else {
                1000 + levenshtein(want, h)
            };
            (d, h)
        })
        .collect();
    scored.sort();
    scored.into_iter().map(|(_, h)| h.clone()).collect()
}

fn matcher_str(name: &str, op: &MatchOp, value: &str) -> String {
    let op = match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    };
    format!("{name}{op}{value:?}")
}

/// Renders a vector selector without offset or @, and its metric name.
pub fn selector_text(vs: &VectorSelector) -> String {
    let ms: Vec<String> = vs
        .matchers
        .matchers
        .iter()
        .filter(|m| m.name != "__name__")
        .map(|m| matcher_str(&m.name, &m.op, &m.value))
        .collect();
    let name = vs.name.clone().unwrap_or_default();
    if ms.is_empty() {
        if name.is_empty() { "{}".into() } else { name }
    } else {
        format!("{name}{{{}}}", ms.join(", "))
    }
}

fn metric_name(vs: &VectorSelector) -> Option<String> {
    vs.name.clone().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.clone())
    })
}

fn matches_op(op: &MatchOp, want: &str, have: &str) -> bool {
    match op {
        MatchOp::Equal => want == have,
        MatchOp::NotEqual => want != have,
        MatchOp::Re(_) => {
            regex::Regex::new(&format!("^(?:{want})$")).is_ok_and(|r| r.is_match(have))
        }
        MatchOp::NotRe(_) => {
            !regex::Regex::new(&format!("^(?:{want})$")).is_ok_and(|r| r.is_match(have))
        }
    }
}

/// Scrape intervals by job (for the window-too-short rule), once per run.
pub async fn scrape_intervals(api: &PromApi) -> Result<BTreeMap<String, Duration>, PromError> {
    api.scrape_intervals().await.map(|m| (*m).clone())
}

/// Runs the query over the window and says data, zero or empty.
pub async fn evaluate(
    api: &PromApi,
    query: &str,
    window: Duration,
) -> Result<(QueryResult, usize), PromError> {
    let end = now();
    let start = end - window.as_secs_f64();
    let step = (window.as_secs_f64() / 120.0).max(1.0);
    // The range's last step may fall a little before series younger than one step; Grafana's
    // refresh would show them, so an instant query at the window's end counts too.
    let (series, at_end) = tokio::join!(
        api.range(query, start, end, step),
        api.instant(query, Some(end))
    );
    Ok(classify(&series?, &at_end?))
}

/// Data, zero or empty, from a query's range over the window and its instant value now.
fn classify(
    series: &[crate::clients::prom::Series],
    now_samples: &[Sample],
) -> (QueryResult, usize) {
    let mut values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .collect();
    let mut n = series.iter().filter(|s| !s.points.is_empty()).count();
    n = n.max(now_samples.len());
    values.extend(now_samples.iter().map(|s| s.value));
    if values.is_empty() {
        return (QueryResult::Empty, 0);
    }
    if values.iter().all(|v| *v == 0.0) {
        return (QueryResult::Zero, n);
    }
    (QueryResult::Data, n)
}

struct Ctx<'a> {
    api: &'a PromApi,
    opts: ExplainOptions,
    names: Vec<String>,
    intervals: BTreeMap<String, Duration>,
}

/// Explains a query against Prometheus.
pub async fn explain(
    api: &PromApi,
    query: &str,
    opts: ExplainOptions,
) -> Result<Explanation, ExplainError> {
    let expr = parse(query)?;
    let found = selectors(&expr);
    let end = now();
    let lb_start = end - opts.lookback.as_secs_f64();
    // Prometheus's own gaps: steps of the window where not even `up` has a sample.
    let up_step = (opts.window.as_secs_f64() / 60.0).max(1.0);
    let step = (opts.window.as_secs_f64() / 120.0).max(1.0);
    // Everything independent goes out at once: the query over the window, the metric names,
    // the scrape intervals, Prometheus's own liveness, and in one batch the query now with each
    // selector's first questions.
    let (series, names, intervals, live, batch) = tokio::join!(
        api.range(query, end - opts.window.as_secs_f64(), end, step),
        api.label_values("__name__", None, lb_start, end),
        scrape_intervals(api),
        api.liveness(opts.window),
        prefetch_all(api, &found, opts.window, query)
    );
    let series = series.map_err(ExplainError::Prom)?;
    let names = names.map_err(ExplainError::Prom)?;
    let intervals = intervals.map_err(ExplainError::Prom)?;
    let (up, up_now) = live.map_err(ExplainError::Prom)?;
    let (now_samples, pres) = batch.map_err(ExplainError::Prom)?;
    let (result, _) = classify(&series, &now_samples);
    let prometheus_gap = {
        let times: Vec<f64> = up
            .iter()
            .max_by_key(|s| s.points.len())
            .map(|s| s.points.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default();
        // A Prometheus younger than one step has no point in the range yet, but has `up` now.
        if times.is_empty() && !up_now.is_empty() {
            0.0
        } else {
            internal_gap(&times, up_step, opts.window.as_secs_f64())
        }
    };
    let cx = Ctx {
        api,
        opts,
        names,
        intervals,
    };
    let reports = futures::future::join_all(
        found
            .iter()
            .zip(pres)
            .map(|(f, pre)| diagnose(&cx, f, pre, prometheus_gap)),
    )
    .await;
    let mut selectors_out = Vec::new();
    for r in reports {
        selectors_out.push(r.map_err(ExplainError::Prom)?);
    }
    let culprit = selectors_out
        .iter()
        .find(|s| !matches!(s.verdict, Verdict::Present | Verdict::Zero))
        .or_else(|| selectors_out.iter().find(|s| s.verdict == Verdict::Zero));
    let (root_cause, remedy) = match (result, culprit) {
        // Data, but misleading: a gappy range, or a grouping label that folds every service
        // into one line. Say why and how, although the query returns something.
        (QueryResult::Data, Some(c)) if c.verdict != Verdict::Zero => (Some(c.detail.clone()), fix_query(query, c).or_else(|| c.remedy.clone())),
        (QueryResult::Data, _) => (None, None),
        (_, Some(c)) => (Some(c.detail.clone()), fix_query(query, c).or_else(|| c.remedy.clone())),
        (QueryResult::Zero, None) => (Some("the query's series exist but every value is 0 in the window".into()), None),
        (QueryResult::Empty, None) => (
            Some("every selector has data, but the expression combines them into nothing (a binary operation whose labels do not match?)".into()),
            Some("# try each side of the operator alone, and add on(...) or ignoring(...) to the binary operation".into()),
        ),
    };
    Ok(Explanation {
        schema: "msa-doctor/explain/v1",
        query: query.to_string(),
        window: secs(opts.window),
        result,
        selectors: selectors_out,
        root_cause,
        remedy,
    })
}

/// How many separate stretches a series was present in, from the times of a range query's
/// points (a missing step starts a new stretch).
pub fn stretches(times: &[f64], step: f64) -> usize {
    times
        .iter()
        .enumerate()
        .filter(|(k, t)| *k == 0 || **t - times[k - 1] > step * 1.5)
        .count()
}

/// The share of a window that Prometheus was away: steps missing between the first and last
/// points of `count(up)` (a Prometheus that started inside the window was not away before it),
/// or all of it with no point at all.
pub fn internal_gap(times: &[f64], step: f64, window: f64) -> f64 {
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return 1.0;
    };
    let span = last - first;
    if span <= 0.0 {
        return 0.0;
    }
    let expected = (span / step).round() + 1.0;
    (1.0 - times.len() as f64 / expected).clamp(0.0, 1.0) * span / window
}

fn fix_query(query: &str, c: &SelectorReport) -> Option<String> {
    let first = c.suggestions.first()?;
    let replace = c.evidence.get("replace")?.as_str()?;
    query
        .contains(replace)
        .then(|| query.replacen(replace, first, 1))
}

/// The first questions about a selector, asked at once (one round trip, concurrently with
/// the query's own evaluation): series in the window, their jobs, whether a range holds two
/// samples, whether the values are all zero, and the grouping labels' shadows.
struct Pre {
    in_window: Vec<Sample>,
    jobs: Vec<Sample>,
    enough: f64,
    zero: bool,
    /// Per grouping label: series carrying `exported_<label>`, and series carrying the label.
    grouping: Vec<(f64, f64)>,
}

/// The first questions of a selector, as instant queries: series in the window, by job,
/// all zero, two samples in its range, and per grouping label the shadowed and labelled counts.
fn prefetch_queries(f: &Found, window: Duration) -> Vec<String> {
    let sel = selector_text(&f.vs);
    let w = secs(window);
    let zero_q = if matches!(
        f.func.as_deref(),
        Some("rate" | "irate" | "increase" | "delta" | "idelta" | "deriv")
    ) {
        format!("sum(increase({sel}[{w}]))")
    } else {
        format!("max(abs(max_over_time({sel}[{w}])))")
    };
    let mut qs = vec![
        format!("count(last_over_time({sel}[{w}]))"),
        format!("count by (job) (last_over_time({sel}[{w}]))"),
        zero_q,
        match f.range {
            Some(r) => format!("count(count_over_time({sel}[{}]) >= 2)", secs(r)),
            // No range: nothing to count; `vector(1)` keeps the batch's shape.
            None => "vector(1)".to_string(),
        },
    ];
    for g in &f.grouping {
        qs.push(format!(
            "count(last_over_time({}[{w}]))",
            with_label(&sel, &format!("exported_{g}"), true)
        ));
        qs.push(format!(
            "count(last_over_time({}[{w}]))",
            with_label(&sel, g, true)
        ));
    }
    qs
}

/// Every selector's first questions in one request (see [`PromApi::instant_batch`]).
async fn prefetch_all(
    api: &PromApi,
    found: &[Found],
    window: Duration,
    query: &str,
) -> Result<(Vec<Sample>, Vec<Pre>), PromError> {
    let per: Vec<Vec<String>> = found.iter().map(|f| prefetch_queries(f, window)).collect();
    let all: Vec<String> = std::iter::once(query.to_string())
        .chain(per.iter().flatten().cloned())
        .collect();
    let mut answers = api.instant_batch(&all).await?.into_iter();
    let now_samples = answers.next().unwrap_or_default();
    let mut out = Vec::new();
    for (f, qs) in found.iter().zip(&per) {
        let mut mine: Vec<Vec<Sample>> = answers.by_ref().take(qs.len()).collect();
        // An empty vector is 0 (count() of nothing).
        let value = |v: &Vec<Sample>| v.first().map(|s| s.value).unwrap_or(0.0);
        let grouping = (0..f.grouping.len())
            .map(|i| (value(&mine[4 + 2 * i]), value(&mine[5 + 2 * i])))
            .collect();
        let enough = value(&mine[3]);
        let zero = mine[2].first().is_some_and(|s| s.value == 0.0);
        let jobs = std::mem::take(&mut mine[1]);
        let in_window = std::mem::take(&mut mine[0]);
        out.push(Pre {
            in_window,
            jobs,
            enough,
            zero,
            grouping,
        });
    }
    Ok((now_samples, out))
}

async fn diagnose(
    cx: &Ctx<'_>,
    f: &Found,
    pre: Pre,
    prometheus_gap: f64,
) -> Result<SelectorReport, PromError> {
    let sel = selector_text(&f.vs);
    let shown = match f.range {
        Some(r) => format!("{sel}[{}]", secs(r)),
        None => sel.clone(),
    };
    let w = secs(cx.opts.window);
    let report = |verdict, detail: String| SelectorReport {
        selector: shown.clone(),
        verdict,
        detail,
        suggestions: vec![],
        evidence: json!({}),
        remedy: None,
    };
    if prometheus_gap >= 0.999 {
        return Ok(report(
            Verdict::PrometheusDown,
            format!(
                "Prometheus has no sample at all in the last {w} (not even up): it was down or is not scraping"
            ),
        ));
    }
    let metric = metric_name(&f.vs);
    // 1. Present now, over the window?
    let in_window = pre.in_window;
    if prometheus_gap > 0.5 && in_window.first().map(|s| s.value).unwrap_or(0.0) <= 0.0 {
        // Not blamed on the metric: Prometheus itself was away most of the window.
        let mut r = report(
            Verdict::PrometheusDown,
            format!(
                "Prometheus itself has no data for {:.0}% of the last {w} (not even up): the gap is Prometheus's, not {sel}'s",
                prometheus_gap * 100.0
            ),
        );
        r.remedy = Some("# was Prometheus restarted, or its storage full? kubectl -n monitoring get pods; kubectl -n monitoring logs deploy/prometheus-server --tail=50".into());
        return Ok(r);
    }
    let count = in_window.first().map(|s| s.value as u64).unwrap_or(0);
    if count > 0 {
        // Window too short for the scrape interval?
        if let Some(range) = f.range {
            let interval = pre
                .jobs
                .iter()
                .filter_map(|s| s.metric.get("job").and_then(|j| cx.intervals.get(j)))
                .max()
                .copied();
            if let Some(iv) = interval
                && range < iv * 2
            {
                let mut r = report(
                    Verdict::WindowTooShort,
                    format!(
                        "the range [{}] is shorter than twice the {} scrape interval: {} sees fewer than two samples and returns nothing",
                        secs(range),
                        secs(iv),
                        f.func.as_deref().unwrap_or("the function")
                    ),
                );
                let better = format!("[{}]", secs((iv * 4).max(Duration::from_secs(60))));
                r.suggestions = vec![format!("{sel}{better}"), format!("{sel}[$__rate_interval]")];
                r.evidence = json!({"scrape_interval": secs(iv), "range": secs(range), "replace": format!("{sel}[{}]", secs(range))});
                return Ok(r);
            }
            // Two to four intervals: two samples at best, so one late scrape empties a step
            // and the graph has gaps (Grafana's $__rate_interval is four intervals).
            if let Some(iv) = interval
                && range < iv * 4
            {
                let mut r = report(
                    Verdict::WindowTooShort,
                    format!(
                        "the range [{}] holds only about {} samples at the {} scrape interval: {} returns nothing whenever a scrape is late, so the graph has gaps",
                        secs(range),
                        (range.as_secs_f64() / iv.as_secs_f64()).floor(),
                        secs(iv),
                        f.func.as_deref().unwrap_or("the function")
                    ),
                );
                let better = format!("[{}]", secs((iv * 4).max(Duration::from_secs(60))));
                r.suggestions = vec![format!("{sel}{better}"), format!("{sel}[$__rate_interval]")];
                r.evidence = json!({"scrape_interval": secs(iv), "range": secs(range), "replace": format!("{sel}[{}]", secs(range))});
                return Ok(r);
            }
        }
        // histogram_quantile over something that is not a histogram's buckets.
        if f.funcs.iter().any(|x| x == "histogram_quantile")
            && let Some(m) = metric_name(&f.vs)
            && !m.ends_with("_bucket")
        {
            let bucket = format!(
                "{}_bucket",
                m.trim_end_matches("_count")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_total")
            );
            let exists = cx.names.iter().any(|n| n == &bucket);
            let mut r = report(
                Verdict::LabelMissing,
                format!(
                    "histogram_quantile needs the le label of {bucket}, but the query reads {m}{}",
                    if exists {
                        String::new()
                    } else {
                        format!(" and {bucket} does not exist (percentile histograms are off)")
                    }
                ),
            );
            if exists {
                r.suggestions = vec![bucket.clone()];
                r.evidence = json!({"label": "le", "replace": m, "bucket_exists": true});
            } else {
                r.evidence = json!({"label": "le", "bucket_exists": false});
                r.remedy = Some("# Spring Boot publishes the buckets only when asked (application.yml):\nmanagement:\n  metrics:\n    distribution:\n      percentiles-histogram:\n        http.server.requests: true".into());
            }
            return Ok(r);
        }
        // A range function needs two samples inside its range: new series, or a scrape
        // interval close to the range, leave it empty although the series exist.
        if let Some(range) = f.range {
            let rs = secs(range);
            if pre.enough <= 0.0 {
                let mut r = report(
                    Verdict::WindowTooShort,
                    format!(
                        "{count} series of {sel} exist, but none has two samples inside [{rs}], so {} returns nothing (the series are new, or scraped less often than every {})",
                        f.func.as_deref().unwrap_or("the function"),
                        secs(range / 2)
                    ),
                );
                r.suggestions = vec![format!("{sel}[$__rate_interval]")];
                r.evidence =
                    json!({"series": count, "range": rs, "replace": format!("{sel}[{rs}]")});
                r.remedy = Some(
                    "# wait a few scrape intervals, or widen the range: [$__rate_interval] or [5m]"
                        .into(),
                );
                return Ok(r);
            }
        }
        // Absent vs zero vs present.
        if pre.zero {
            let mut r = report(
                Verdict::Zero,
                format!(
                    "{count} series of {sel} exist but {} in the last {w}: no traffic",
                    if f.func.is_some() {
                        "never increased"
                    } else {
                        "are all 0"
                    }
                ),
            );
            r.evidence = json!({"series": count});
            r.remedy = Some("# send requests to the service (the guide: log in five times, place an order), then look again".into());
            return Ok(r);
        }
        let mut r = report(Verdict::Present, format!("{count} series in the last {w}"));
        r.evidence = json!({"series": count});
        if matches!(f.func.as_deref(), Some("rate" | "irate" | "increase"))
            && let Some(m) = metric_name(&f.vs)
        {
            // Type metadata is optional (VictoriaMetrics may not serve it): a 404 or an API
            // error means "type unknown"; any other failure is a failure.
            let meta = match cx.api.metadata(&m).await {
                Ok(v) => Some(v),
                Err(CallError {
                    kind: ErrorKind::Api { .. } | ErrorKind::Status { status: 404, .. },
                    ..
                }) => None,
                Err(e) => return Err(e),
            };
            let kind = meta
                .as_ref()
                .and_then(|d| d.get(&m))
                .and_then(|v| v.as_array())
                .and_then(|a| a.first())
                .and_then(|e| e.get("type"))
                .and_then(|t| t.as_str())
                .unwrap_or("");
            if kind == "gauge" {
                r.detail = format!(
                    "{count} series in the last {w}, but {m} is a gauge: {} treats every drop as a counter reset and the graph lies; use deriv() or delta()",
                    f.func.as_deref().unwrap_or("rate")
                );
                r.suggestions = vec![format!(
                    "deriv({sel}[{}])",
                    f.range.map(secs).unwrap_or_else(|| "5m".into())
                )];
                r.evidence = json!({"series": count, "metric_type": "gauge"});
            }
        }
        // A grouping label the series lack (exported_application).
        for (gi, g) in f.grouping.iter().enumerate() {
            let exported = format!("exported_{g}");
            let (shadowed, labelled) = pre.grouping.get(gi).copied().unwrap_or((0.0, count as f64));
            if shadowed > 0.0 {
                let (qa, qt) = (
                    format!("count by ({exported}) (last_over_time({sel}[{w}]))"),
                    format!("count by ({g}) (last_over_time({sel}[{w}]))"),
                );
                let (apps, targets) =
                    tokio::join!(cx.api.instant(&qa, None), cx.api.instant(&qt, None));
                let vals = |v: Vec<Sample>, k: &str| -> Vec<String> {
                    v.iter().filter_map(|s| s.metric.get(k).cloned()).collect()
                };
                let apps = vals(apps?, &exported);
                let targets = vals(targets?, g);
                let mut r = report(
                    Verdict::LabelMissing,
                    format!(
                        "the series group by {g}, but {g} is the target's label ({}) and the app's own tag moved to {exported} ({}): the target also has a {g} label",
                        targets.join(", "),
                        apps.join(", ")
                    ),
                );
                r.suggestions = vec![format!("by ({exported})")];
                r.evidence = json!({"label": g, "exported": true, "target_values": targets, "app_values": apps});
                r.remedy = Some(label_remedy(g, true));
                return Ok(r);
            }
            let missing = count as f64 - labelled;
            if missing > 0.0 {
                let has_exported = shadowed > 0.0;
                let mut r = report(
                    Verdict::LabelMissing,
                    if has_exported {
                        format!(
                            "the series group by {g} but carry {exported}: the target also has a {g} label, so Prometheus renamed the app's own one"
                        )
                    } else {
                        format!(
                            "the series group by {g}, but {} of them have no {g} label",
                            missing as u64
                        )
                    },
                );
                r.evidence = json!({"label": g, "exported": has_exported});
                r.remedy = Some(label_remedy(g, has_exported));
                return Ok(r);
            }
        }
        return Ok(r);
    }
    // 2. Does the metric exist at all?
    let Some(metric) = metric else {
        return Ok(report(
            Verdict::MetricMissing,
            format!("no series match {sel} in the last {w}"),
        ));
    };
    if !cx.names.iter().any(|n| n == &metric) {
        // A missing histogram's buckets are not a typo of its _count or _sum.
        let similar: Vec<String> = similar_names(&metric, &cx.names)
            .into_iter()
            .filter(|n| !metric.ends_with("_bucket") || n.ends_with("_bucket"))
            .collect();
        let (who, job) = producer(&metric);
        let mut r = report(
            Verdict::MetricMissing,
            format!(
                "metric {metric} does not exist in the last {}{}; it comes from {who}",
                secs(cx.opts.lookback),
                similar
                    .first()
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            ),
        );
        let job_targets: Vec<String> = if job.is_empty() {
            vec![]
        } else {
            cx.intervals
                .keys()
                .filter(|j| j.contains(job) || job.contains(j.as_str()))
                .cloned()
                .collect()
        };
        r.suggestions = similar.clone();
        r.evidence = json!({"similar": similar, "producer": who, "job": job, "job_present": !job_targets.is_empty(), "replace": metric});
        r.remedy = Some(producer_remedy(&metric, job, !job_targets.is_empty()));
        return Ok(r);
    }
    // 3. Stale or intermittent?
    let lb = secs(cx.opts.lookback);
    // Each step sees the newest sample of the 5 minutes before it (Prometheus's lookback), so
    // a step under 5 minutes always lands where the last sample is seen: the exact time, not
    // a step earlier (a 24h lookback / 240 is 6 minutes).
    let step = (cx.opts.lookback.as_secs() / 240).clamp(15, 240);
    // The questions of steps 3 and 4 go out together: when it was last seen, and the values
    // of every label the selector matches on (and of its exported_ twin).
    let (from, to) = (now() - cx.opts.lookback.as_secs_f64(), now());
    let labels: Vec<String> =
        f.vs.matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .flat_map(|m| [m.name.clone(), format!("exported_{}", m.name)])
            .collect();
    let last_q = format!("max(max_over_time(timestamp({sel})[{lb}:{step}s]))");
    let (last_seen, label_values) = tokio::join!(
        cx.api.instant(&last_q, None),
        futures::future::join_all(labels.iter().map(|l| cx.api.label_values(
            l,
            Some(&metric),
            from,
            to
        )))
    );
    let last_seen = last_seen?;
    let values_of: BTreeMap<String, Vec<String>> = labels
        .into_iter()
        .zip(label_values.into_iter().collect::<Result<Vec<_>, _>>()?)
        .collect();
    if let Some(ts) = last_seen.first().map(|s| s.value) {
        let ago = now() - ts;
        // Come and go, or gone once? Count the stretches it was present over the lookback.
        let lstep = (cx.opts.lookback.as_secs_f64() / 240.0).max(60.0);
        let presence = cx
            .api
            .range(&format!("count({sel})"), from, to, lstep)
            .await?;
        let times: Vec<f64> = presence
            .first()
            .map(|s| s.points.iter().map(|(t, _)| *t).collect())
            .unwrap_or_default();
        let stretches = stretches(&times, lstep);
        if stretches >= 3 {
            let life = times.len() as f64 * lstep / stretches as f64;
            let mut r = report(
                Verdict::Intermittent,
                format!(
                    "{sel} comes and goes: {stretches} separate stretches in the last {lb}, each about {} long; last seen {} ago, outside the last {w}",
                    age(life),
                    age(ago)
                ),
            );
            r.evidence = json!({"stretches": stretches, "average_lifespan_s": life.round(), "last_seen_seconds_ago": ago.round()});
            r.remedy = Some("# a pod that restarts or a target that flaps: kubectl get pods -A --sort-by=.status.containerStatuses[0].restartCount; msa-doctor --only prometheus.targets".into());
            return Ok(r);
        }
        let mut r = report(
            Verdict::Stale,
            format!(
                "{sel} was last seen {} ago; the window is the last {w}",
                age(ago)
            ),
        );
        r.evidence = json!({"last_seen_seconds_ago": ago.round()});
        r.remedy = Some(format!(
            "# widen the time range past {} (Grafana's time picker), or find why the data stopped (msa-doctor --only prometheus.targets)",
            age(ago)
        ));
        return Ok(r);
    }
    // 4. Labels and values that never occur.
    for m in
        f.vs.matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
    {
        if matches!(m.op, MatchOp::NotEqual | MatchOp::NotRe(_)) && m.value.is_empty() {
            continue;
        }
        let values = values_of.get(&m.name).cloned().unwrap_or_default();
        if values.is_empty() {
            let exported = format!("exported_{}", m.name);
            let exp_values = values_of.get(&exported).cloned().unwrap_or_default();
            let has_exported = exp_values.iter().any(|v| matches_op(&m.op, &m.value, v));
            let mut r = report(
                Verdict::LabelMissing,
                if has_exported {
                    format!(
                        "{metric} has no label {} but has {exported}: the target's own {} label collided with the app's",
                        m.name, m.name
                    )
                } else {
                    format!("{metric} never has a label {:?} in the last {lb}", m.name)
                },
            );
            if has_exported {
                r.suggestions = vec![matcher_str(&exported, &m.op, &m.value)];
                r.evidence = json!({"label": m.name, "exported_values": exp_values, "replace": matcher_str(&m.name, &m.op, &m.value)});
            } else {
                r.evidence = json!({"label": m.name});
            }
            r.remedy = Some(label_remedy(&m.name, has_exported));
            return Ok(r);
        }
        if !values.iter().any(|v| matches_op(&m.op, &m.value, v)) {
            let exported = format!("exported_{}", m.name);
            let exp_values = values_of.get(&exported).cloned().unwrap_or_default();
            if exp_values.iter().any(|v| matches_op(&m.op, &m.value, v)) {
                let mut r = report(
                    Verdict::LabelMissing,
                    format!(
                        "{metric} has {}={:?} only as {exported}: the target's own {} label ({}) collided with the app's",
                        m.name,
                        m.value,
                        m.name,
                        values.join(", ")
                    ),
                );
                r.suggestions = vec![matcher_str(&exported, &m.op, &m.value)];
                r.evidence = json!({"label": m.name, "target_values": values, "replace": matcher_str(&m.name, &m.op, &m.value)});
                r.remedy = Some(label_remedy(&m.name, true));
                return Ok(r);
            }
            let near = nearest_values(&m.value, &values);
            let only_probes =
                m.name == "uri" && values.iter().all(|v| crate::domain::is_probe_uri(v));
            // A value is a likely typo of an existing one only when it is close: contained in
            // it (`/api/orders` and `/orders`) or a few edits away. Otherwise the value may
            // well be right and the event rare (`outcome="SERVER_ERROR"` while nothing failed).
            let close: Vec<&String> = if matches!(m.op, MatchOp::Equal) {
                near.iter()
                    .filter(|v| {
                        let contained = v.len() >= 3
                            && (m.value.ends_with(v.as_str())
                                || v.ends_with(&m.value)
                                || m.value.starts_with(v.as_str())
                                || v.starts_with(&m.value));
                        contained || levenshtein(&m.value, v) <= (m.value.len() / 4).max(2)
                    })
                    .take(3)
                    .collect()
            } else {
                vec![]
            };
            let rare = ["status", "outcome", "exception", "error", "code", "le"]
                .contains(&m.name.as_str());
            let mut r = report(
                Verdict::ValueMissing,
                if only_probes {
                    format!(
                        "label uri never had the value {:?} in the last {lb}: the only uri values are Prometheus's own scrapes ({}), so no user request ever reached the service (Micrometer creates a uri series on its first request)",
                        m.value,
                        values.join(", ")
                    )
                } else if close.is_empty() && rare {
                    format!(
                        "label {} never matched {:?} in the last {lb}: no such request happened (an error panel stays empty while there are no errors); values seen: {}",
                        m.name,
                        m.value,
                        near.iter().take(6).cloned().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    format!(
                        "label {} never had the value {:?} in the last {lb}",
                        m.name, m.value
                    )
                },
            );
            if only_probes {
                r.remedy = Some("# send traffic (the guide: log in five times, place an order), then look again".into());
            }
            if !only_probes {
                r.suggestions = close
                    .iter()
                    .map(|v| matcher_str(&m.name, &m.op, v))
                    .collect();
            }
            r.evidence = json!({"existing_values": near.iter().take(20).collect::<Vec<_>>(), "replace": matcher_str(&m.name, &m.op, &m.value)});
            return Ok(r);
        }
    }
    // Each matcher alone matches something, but not together.
    let series = cx
        .api
        .series(&metric, now() - cx.opts.lookback.as_secs_f64(), now())
        .await
        .unwrap_or_default();
    let keys: BTreeSet<String> =
        f.vs.matchers
            .matchers
            .iter()
            .filter(|m| m.name != "__name__")
            .map(|m| m.name.clone())
            .collect();
    let combos: BTreeSet<String> = series
        .iter()
        .map(|s: &Labels| {
            keys.iter()
                .map(|k| format!("{k}={:?}", s.get(k).cloned().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect();
    let mut r = report(
        Verdict::ValueMissing,
        format!(
            "no series of {metric} has all of {} at once",
            keys.iter().cloned().collect::<Vec<_>>().join(", ")
        ),
    );
    r.evidence = json!({"existing_combinations": combos.into_iter().take(20).collect::<Vec<_>>()});
    Ok(r)
}

fn with_label(sel: &str, label: &str, present: bool) -> String {
    let m = if present {
        format!("{label}!=\"\"")
    } else {
        format!("{label}=\"\"")
    };
    match sel.strip_suffix('}') {
        Some(head) if head.contains('{') => format!("{head}, {m}}}"),
        _ => format!("{sel}{{{m}}}"),
    }
}

fn label_remedy(label: &str, exported: bool) -> String {
    if exported {
        format!(
            "# the scrape job adds a target label {label} that collides with the app's own; let the app's win:\n- job_name: kubernetes-pods\n  honor_labels: true\n# or stop copying the pod label into the target labels (a labeldrop of {label} after the labelmap)"
        )
    } else if label == "application" {
        "# tag every metric with the application name (Spring Boot application.yml):\nmanagement:\n  metrics:\n    tags:\n      application: ${spring.application.name}".into()
    } else {
        format!(
            "# no series carries {label}: check the label name in the app's metrics (curl the pod's /actuator/prometheus)"
        )
    }
}

fn producer_remedy(metric: &str, job: &str, job_present: bool) -> String {
    if metric.starts_with("kafka_")
        && !metric.starts_with("kafka_consumer_")
        && !metric.starts_with("kafka_producer_")
    {
        "# install a Kafka exporter and let Prometheus scrape it:\nhelm repo add prometheus-community https://prometheus-community.github.io/helm-charts\nhelm install kafka-exporter prometheus-community/prometheus-kafka-exporter -n monitoring \\\n  --set kafkaServer={kafka.metacoding.svc.cluster.local:9092} \\\n  --set-string 'podAnnotations.prometheus\\.io/scrape=true'\n# until then, the guide's fallback panel: sum(jvm_memory_used_bytes{area=\"heap\"}) by (application)".into()
    } else if metric.starts_with("container_") {
        "# no job scrapes the kubelet's cAdvisor; add it to prometheus.yml:\n- job_name: kubernetes-cadvisor\n  scheme: https\n  metrics_path: /metrics/cadvisor\n  kubernetes_sd_configs:\n    - role: node\n  tls_config:\n    ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n  bearer_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token".into()
    } else if metric.ends_with("_bucket") {
        "# Spring Boot publishes histogram buckets only when asked (application.yml):\nmanagement:\n  metrics:\n    distribution:\n      percentiles-histogram:\n        http.server.requests: true".into()
    } else if metric.starts_with("http_server_requests") {
        "# Micrometer creates http_server_requests_* on the first request: send one, and check\n# management.endpoints.web.exposure.include contains prometheus".into()
    } else if !job_present && !job.is_empty() {
        format!(
            "# no {job} job has targets in Prometheus: add the job, or check its targets with msa-doctor --only prometheus.targets"
        )
    } else {
        format!(
            "# {metric} is not exported by anything Prometheus scrapes: check the name, or curl the exporter's /metrics"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretches_count_runs_of_steps() {
        assert_eq!(stretches(&[], 60.0), 0);
        assert_eq!(stretches(&[0.0, 60.0, 120.0], 60.0), 1);
        assert_eq!(stretches(&[0.0, 60.0, 300.0, 360.0, 900.0], 60.0), 3);
    }

    #[test]
    fn internal_gaps_ignore_a_late_start() {
        // No `up` at all: Prometheus was away the whole window.
        assert_eq!(internal_gap(&[], 15.0, 900.0), 1.0);
        // Started 60 s ago and scraping since: no gap.
        assert_eq!(
            internal_gap(&[840.0, 855.0, 870.0, 885.0, 900.0], 15.0, 900.0),
            0.0
        );
        let full: Vec<f64> = (0..=60).map(|k| k as f64 * 15.0).collect();
        assert_eq!(internal_gap(&full, 15.0, 900.0), 0.0);
        // Away from 300 s to 750 s: half of the window.
        let holey: Vec<f64> = full
            .iter()
            .copied()
            .filter(|x| *x < 300.0 || *x > 750.0)
            .collect();
        let g = internal_gap(&holey, 15.0, 900.0);
        assert!(g > 0.45 && g < 0.55, "{g}");
    }

    #[test]
    fn nearest_values_put_containment_first() {
        let have: Vec<String> = [
            "/api/orders/{orderId}/status",
            "/orders",
            "/actuator/prometheus",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(nearest_values("/api/orders", &have)[0], "/orders");
    }
}
