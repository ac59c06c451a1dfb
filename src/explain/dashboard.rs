//! The dashboard scan: every panel (rows and nested panels too) of a dashboard, its variables
//! expanded as Grafana would, its data source references checked, run over the dashboard's
//! own time range; empty panels get the explainer's verdict.

use super::{ExplainOptions, Explanation, QueryResult, evaluate, explain};
use crate::clients::grafana::{Grafana, GrafanaSession};
use crate::clients::prom::{PromApi, now};
use crate::clients::{Clients, Lane};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Grafana's HTTP API with a session, for the scan. Its calls go in the background lane: the
/// guide's chain keeps its slots while a scan runs.
#[derive(Clone)]
pub struct GrafanaApi {
    grafana: Grafana,
    session: Arc<GrafanaSession>,
    clients: Arc<Clients>,
    panels: Arc<PanelMemo>,
}

/// A panel query's evaluation and explanation.
type PanelAnswer = (
    Result<(QueryResult, usize), PanelError>,
    Option<Result<Explanation, PanelError>>,
);

/// Why a panel query has no answer: it failed, or the deadline came first.
#[derive(Clone, Debug)]
enum PanelError {
    Failed(String),
    NotReached,
}

impl PanelError {
    fn of_call(e: &crate::clients::CallError) -> Self {
        match e.kind {
            crate::clients::ErrorKind::TimedOut(_) => PanelError::NotReached,
            _ => PanelError::Failed(e.to_string()),
        }
    }
    fn of_explain(e: super::ExplainError) -> Self {
        match e {
            super::ExplainError::Prom(c) => Self::of_call(&c),
            other => PanelError::Failed(other.to_string()),
        }
    }
}

/// Panel queries already asked in this scan, by data source, query and window: a query that
/// several dashboards share is asked once.
#[derive(Default)]
struct PanelMemo {
    done: std::sync::Mutex<
        std::collections::HashMap<(String, String, u64), Arc<tokio::sync::OnceCell<PanelAnswer>>>,
    >,
}

impl GrafanaApi {
    /// The scan's API client, with the run's clients and the login session; every call ends
    /// by `deadline` when one is given.
    pub fn new(
        clients: Arc<Clients>,
        base: &str,
        session: Arc<GrafanaSession>,
        timeout: Duration,
        deadline: Option<std::time::Instant>,
    ) -> Self {
        GrafanaApi {
            grafana: Grafana {
                transport: clients.http.clone(),
                base: base.to_string(),
                session: Some(session.clone()),
                timeout,
                lane: Lane::Background,
                deadline,
            },
            session,
            clients,
            panels: Arc::default(),
        }
    }

    /// Evaluates a panel query over the window and, when it shows nothing, explains it; once
    /// per data source, query and window in a scan.
    async fn panel_answer(&self, ds: &Ds, query: &str, opts: ExplainOptions) -> PanelAnswer {
        let key = (ds.uid.clone(), query.to_string(), opts.window.as_secs());
        let cell = {
            let mut m = self.panels.done.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(key).or_default().clone()
        };
        cell.get_or_init(|| async {
            // Past the deadline, nothing more is asked: the scan returns what it has.
            if self.grafana.deadline.is_some_and(|d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .as_millis()
                    < 20
            }) {
                return (Err(PanelError::NotReached), None);
            }
            let api = self.prom(ds);
            match evaluate(&api, query, opts.window).await {
                Ok((QueryResult::Data, n)) => (Ok((QueryResult::Data, n)), None),
                Ok((r, n)) => {
                    let ex = explain(&api, query, opts)
                        .await
                        .map_err(PanelError::of_explain);
                    (Ok((r, n)), Some(ex))
                }
                Err(e) => (Err(PanelError::of_call(&e)), None),
            }
        })
        .await
        .clone()
    }

    /// GETs a JSON document; the error names the call and why it failed.
    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.grafana.get_json(path).await.map_err(|e| e.to_string())
    }

    fn prom(&self, ds: &Ds) -> PromApi {
        let api = PromApi::via_grafana(
            self.grafana.transport.clone(),
            &self.grafana.base,
            &ds.uid,
            &ds.name,
            self.session.clone(),
            self.grafana.timeout,
            self.clients.prom_memo(&format!("grafana:{}", ds.uid)),
        )
        .background();
        match self.grafana.deadline {
            Some(d) => api.with_deadline(d),
            None => api,
        }
    }
}

/// A data source as the scan needs it.
#[derive(Clone, Debug, Serialize)]
pub struct Ds {
    /// uid.
    pub uid: String,
    /// Name.
    pub name: String,
    /// Plugin type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it is the default.
    pub is_default: bool,
    /// `jsonData.timeInterval` (the scrape interval Grafana assumes), e.g. `15s`.
    pub time_interval: Option<String>,
}

fn is_prom(kind: &str) -> bool {
    kind == "prometheus" || kind.starts_with("victoriametrics")
}

/// What became of one panel query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PanelStatus {
    /// Series with data.
    Data,
    /// Series, all 0.
    Zero,
    /// No series.
    Empty,
    /// Its data source reference names nothing on this Grafana.
    DatasourceMissing,
    /// A `${DS_...}` input of an exported dashboard that was never replaced.
    DatasourceUnresolved,
    /// Not a Prometheus query (skipped).
    NotPrometheus,
    /// The query could not run.
    Error,
    /// The scan's deadline came before this query was answered (partial results).
    NotReached,
}

/// One panel query's finding.
#[derive(Clone, Debug, Serialize)]
pub struct PanelFinding {
    /// The panel's title.
    pub panel: String,
    /// The panel's id.
    pub panel_id: Option<i64>,
    /// The target's refId.
    pub ref_id: String,
    /// The query as written.
    pub expr: String,
    /// The query with variables expanded.
    pub expanded: String,
    /// What became of it.
    pub status: PanelStatus,
    /// One line.
    pub detail: String,
    /// The explainer's verdict, for empty and zero panels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// One dashboard's scan.
#[derive(Clone, Debug, Serialize)]
pub struct DashboardReport {
    /// uid.
    pub uid: String,
    /// Title.
    pub title: String,
    /// Its time range, e.g. `now-15m` to `now`.
    pub time: (String, String),
    /// The window the queries ran over.
    pub window: String,
    /// Variables and the values used.
    pub variables: BTreeMap<String, String>,
    /// Every panel query.
    pub panels: Vec<PanelFinding>,
    /// A dashboard-level problem (unreadable, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl DashboardReport {
    /// Panel queries that show nothing (empty, broken reference, error).
    pub fn empty_panels(&self) -> impl Iterator<Item = &PanelFinding> {
        self.panels.iter().filter(|p| {
            !matches!(
                p.status,
                PanelStatus::Data
                    | PanelStatus::Zero
                    | PanelStatus::NotPrometheus
                    | PanelStatus::NotReached
            )
        })
    }
}

/// Parses Grafana's relative time (`now-15m`, `now-1h`, `now`) to seconds before now.
pub fn relative_seconds(s: &str) -> Option<f64> {
    let s = s.trim();
    if s == "now" {
        return Some(0.0);
    }
    let rest = s.strip_prefix("now-")?;
    let rest = rest.split('/').next()?;
    let (num, unit) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit())?);
    let n: f64 = num.parse().ok()?;
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        "w" => 7.0 * 86400.0,
        "M" => 30.0 * 86400.0,
        "y" => 365.0 * 86400.0,
        _ => return None,
    };
    Some(n * mult)
}

/// Every panel of a dashboard model: top level, rows' nested panels, very old `rows[]`.
pub fn all_panels(model: &Value) -> Vec<Value> {
    fn push(p: &Value, out: &mut Vec<Value>) {
        if p.get("type").and_then(|t| t.as_str()) == Some("row") {
            for c in p
                .get("panels")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                push(c, out);
            }
        } else {
            out.push(p.clone());
            // Library or nested panels (some schema versions nest inside a panel).
            for c in p
                .get("panels")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                push(c, out);
            }
        }
    }
    let mut out = Vec::new();
    for p in model
        .get("panels")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        push(p, &mut out);
    }
    for r in model
        .get("rows")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        for p in r
            .get("panels")
            .and_then(|x| x.as_array())
            .into_iter()
            .flatten()
        {
            push(p, &mut out);
        }
    }
    out
}

/// The dashboard model of a `GET /api/dashboards/uid/UID` answer (or of a Kubernetes-style
/// `dashboard.grafana.app` object), in the classic shape [`all_panels`] and the scan read:
/// `panels`/`rows`, `templating.list`, `time`. A schema v2 dashboard (Grafana 12: panels are
/// `elements`, placed by a `layout`, variables under `variables`, the range under
/// `timeSettings`) is converted to it. A shape it cannot read is an error saying what is
/// missing, never an empty dashboard.
pub fn dashboard_model(doc: &Value) -> Result<Value, String> {
    let mut m = doc.get("dashboard").unwrap_or(doc);
    // The Kubernetes envelope: apiVersion, kind, metadata, spec.
    if m.get("elements").is_none()
        && m.get("panels").is_none()
        && let Some(spec) = m.get("spec").filter(|s| s.is_object())
    {
        m = spec;
    }
    if !m.is_object() {
        return Err("the answer holds no dashboard object".into());
    }
    if let Some(elements) = m.get("elements") {
        return v2_model(m, elements);
    }
    for key in ["panels", "rows"] {
        if m.get(key).is_some_and(|p| !p.is_array()) {
            return Err(format!("its `{key}` is not a list"));
        }
    }
    if m.get("panels").is_none() && m.get("rows").is_none() {
        return Err(
            "it has no `panels`, `rows` or `elements`: a dashboard shape msa-doctor does not know"
                .into(),
        );
    }
    Ok(m.clone())
}

/// The element names a schema v2 layout places, in the order it shows them (grid items, rows,
/// tabs, auto grids, nested).
fn layout_refs(layout: &Value, out: &mut Vec<String>) {
    match layout {
        Value::Object(o) => {
            if o.get("kind").and_then(|k| k.as_str()) == Some("ElementReference")
                && let Some(n) = o.get("name").and_then(|n| n.as_str())
            {
                out.push(n.to_string());
                return;
            }
            // Keys in a stable order that follows the layout: items, rows, tabs, then the rest.
            for key in ["element", "items", "rows", "tabs", "layout", "spec"] {
                if let Some(v) = o.get(key) {
                    layout_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| layout_refs(v, out)),
        _ => {}
    }
}

/// A v2 `DataQueryKind` (or v2alpha1's `{kind: <plugin>, spec}`) and the query's own
/// `datasource` (v2alpha1), as the classic `{type, uid}` reference, when it names one.
fn v2_datasource(query: &Value, own: Option<&Value>) -> Option<Value> {
    let group = query
        .get("group")
        .and_then(|g| g.as_str())
        .or_else(|| {
            query
                .get("kind")
                .and_then(|k| k.as_str())
                .filter(|k| *k != "DataQuery")
        })
        .or_else(|| own.and_then(|d| d.get("type")).and_then(|t| t.as_str()));
    let uid = query
        .pointer("/datasource/name")
        .and_then(|n| n.as_str())
        .or_else(|| own.and_then(|d| d.get("uid")).and_then(|u| u.as_str()));
    let mut ds = serde_json::Map::new();
    if let Some(g) = group {
        ds.insert("type".into(), Value::String(g.to_string()));
    }
    if let Some(u) = uid {
        ds.insert("uid".into(), Value::String(u.to_string()));
    }
    (!ds.is_empty()).then_some(Value::Object(ds))
}

/// A schema v2 dashboard in the classic shape.
fn v2_model(spec: &Value, elements: &Value) -> Result<Value, String> {
    use serde_json::json;
    let Some(elements) = elements.as_object() else {
        return Err("its `elements` is not a map of element names".into());
    };
    let mut order = Vec::new();
    if let Some(layout) = spec.get("layout") {
        layout_refs(layout, &mut order);
    }
    // Without a layout that places them, every element in name order.
    if order.is_empty() {
        order = elements.keys().cloned().collect();
    }
    let mut seen = std::collections::HashSet::new();
    let mut panels = Vec::new();
    for name in order {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(el) = elements.get(&name) else {
            return Err(format!(
                "its layout places element {name:?}, which `elements` does not hold"
            ));
        };
        let kind = el.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let es = el.get("spec").unwrap_or(&Value::Null);
        match kind {
            "Panel" => {}
            // Its queries live in the library panel, not in the dashboard: as for a classic
            // dashboard's library panels, there is nothing here to run.
            "LibraryPanel" => continue,
            other => {
                return Err(format!(
                    "element {name:?} is of kind {other:?}, not a Panel msa-doctor can read"
                ));
            }
        }
        let Some(queries) = es.pointer("/data/spec/queries").and_then(|q| q.as_array()) else {
            return Err(format!(
                "panel element {name:?} has no `data.spec.queries` list"
            ));
        };
        let mut targets = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let qs = q.get("spec").unwrap_or(&Value::Null);
            let Some(query) = qs.get("query").filter(|x| x.is_object()) else {
                return Err(format!(
                    "query {} of panel element {name:?} has no `spec.query`",
                    i + 1
                ));
            };
            let mut t = serde_json::Map::new();
            // Every field of the query's own spec (expr, legendFormat, instant, ...).
            if let Some(Value::Object(inner)) = query.get("spec") {
                t.extend(inner.clone());
            }
            t.insert(
                "refId".into(),
                qs.get("refId")
                    .cloned()
                    .unwrap_or_else(|| json!(((b'A' + (i % 26) as u8) as char).to_string())),
            );
            t.insert(
                "hide".into(),
                json!(qs.get("hidden").and_then(|h| h.as_bool()).unwrap_or(false)),
            );
            match v2_datasource(query, qs.get("datasource")) {
                Some(ds) => t.insert("datasource".into(), ds),
                None => t.remove("datasource"),
            };
            targets.push(Value::Object(t));
        }
        panels.push(json!({
            "id": es.get("id").cloned().unwrap_or(Value::Null),
            "title": es.get("title").cloned().unwrap_or_else(|| json!(name)),
            "type": es.pointer("/vizConfig/group").or_else(|| es.pointer("/vizConfig/kind")).cloned().unwrap_or_else(|| json!("timeseries")),
            "targets": targets,
        }));
    }
    let mut list = Vec::new();
    for v in spec
        .get("variables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let vs = v.get("spec").unwrap_or(&Value::Null);
        let Some(name) = vs.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        let mut out = serde_json::Map::new();
        out.insert("name".into(), json!(name));
        for key in ["current", "options", "includeAll", "allValue", "regex"] {
            if let Some(x) = vs.get(key) {
                out.insert(key.into(), x.clone());
            }
        }
        let kind = match kind {
            "QueryVariable" => {
                if let Some(q) = vs.get("query") {
                    let text = q
                        .pointer("/spec/query")
                        .or_else(|| q.pointer("/spec/expr"))
                        .cloned()
                        .unwrap_or_else(|| if q.is_string() { q.clone() } else { json!("") });
                    out.insert("query".into(), json!({ "query": text }));
                    if let Some(ds) = v2_datasource(q, vs.get("datasource")) {
                        out.insert("datasource".into(), ds);
                    }
                }
                "query"
            }
            "DatasourceVariable" => {
                let plugin = vs
                    .get("pluginId")
                    .cloned()
                    .unwrap_or_else(|| json!("prometheus"));
                out.insert("query".into(), plugin);
                "datasource"
            }
            "CustomVariable" => "custom",
            "ConstantVariable" => "constant",
            "TextVariable" => "textbox",
            "IntervalVariable" => "interval",
            "AdhocVariable" => "adhoc",
            "GroupByVariable" => "groupby",
            _ => "",
        };
        if !matches!(kind, "query" | "datasource")
            && let Some(q) = vs.get("query")
        {
            out.insert("query".into(), q.clone());
        }
        out.insert("type".into(), json!(kind));
        list.push(Value::Object(out));
    }
    let mut model = json!({
        "title": spec.get("title").cloned().unwrap_or(Value::Null),
        "schemaVersion": "v2",
        "panels": panels,
        "templating": { "list": list },
    });
    if let Some(t) = spec.get("timeSettings") {
        model["time"] = json!({
            "from": t.get("from").cloned().unwrap_or_else(|| json!("now-6h")),
            "to": t.get("to").cloned().unwrap_or_else(|| json!("now")),
        });
    }
    Ok(model)
}

/// Grafana's `roundInterval` (rangeutil.ts): the nearest "nice" interval, in seconds.
fn round_interval(seconds: f64) -> f64 {
    // (below this many seconds, round to this many)
    const STEPS: [(f64, f64); 29] = [
        (0.015, 0.01),
        (0.035, 0.02),
        (0.075, 0.05),
        (0.15, 0.1),
        (0.35, 0.2),
        (0.75, 0.5),
        (1.5, 1.0),
        (3.5, 2.0),
        (7.5, 5.0),
        (12.5, 10.0),
        (17.5, 15.0),
        (25.0, 20.0),
        (45.0, 30.0),
        (90.0, 60.0),
        (210.0, 120.0),
        (450.0, 300.0),
        (750.0, 600.0),
        (1050.0, 900.0),
        (1500.0, 1200.0),
        (2700.0, 1800.0),
        (5400.0, 3600.0),
        (9000.0, 7200.0),
        (16200.0, 10800.0),
        (32400.0, 21600.0),
        (86400.0, 43200.0),
        (604800.0, 86400.0),
        (1814400.0, 604800.0),
        (3628800.0, 2592000.0),
        (f64::INFINITY, 31536000.0),
    ];
    STEPS
        .iter()
        .find(|(below, _)| seconds < *below)
        .map(|(_, to)| *to)
        .unwrap_or(31536000.0)
}

fn dur(seconds: f64) -> String {
    let s = seconds.round().max(1.0) as u64;
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Grafana's built-in interval variables for a range and a scrape interval.
pub fn builtins(range_s: f64, scrape_s: f64) -> BTreeMap<String, String> {
    // As Grafana: round range / max data points, then raise it to the data source's scrape
    // interval (which is not rounded).
    let interval = round_interval(range_s / 1000.0).max(scrape_s);
    let rate = (interval + scrape_s).max(4.0 * scrape_s);
    let mut m = BTreeMap::new();
    m.insert("__interval".into(), dur(interval));
    m.insert(
        "__interval_ms".into(),
        format!("{}", (interval * 1000.0) as u64),
    );
    m.insert("__rate_interval".into(), dur(rate));
    m.insert("__range".into(), dur(range_s));
    m.insert("__range_s".into(), format!("{}", range_s as u64));
    m.insert(
        "__range_ms".into(),
        format!("{}", (range_s * 1000.0) as u64),
    );
    m
}

/// Replaces `$var`, `${var}`, `${var:fmt}` and `[[var]]` with their values.
pub fn expand(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(expr.len());
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && i + 1 < chars.len() && chars[i + 1] == '{' {
            if let Some(end) = chars[i + 2..].iter().position(|c| *c == '}') {
                let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                let mut parts = inner.splitn(2, ':');
                let name = parts.next().unwrap_or("");
                let format = parts.next();
                if let Some(v) = vars.get(name) {
                    // `:regex` escapes a single value; a multi-value is already an escaped
                    // alternation `(a|b)`.
                    let multi = v.starts_with('(') && v.ends_with(')') && v.contains('|');
                    if format == Some("regex") && !multi {
                        out.push_str(&escape_regex(v));
                    } else {
                        out.push_str(v);
                    }
                    i += end + 3;
                    continue;
                }
            }
        } else if c == '$' {
            let name: String = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .collect();
            if !name.is_empty()
                && let Some(v) = vars.get(&name)
            {
                out.push_str(v);
                i += 1 + name.chars().count();
                continue;
            }
        } else if c == '[' && i + 1 < chars.len() && chars[i + 1] == '[' {
            if let Some(end) = chars[i + 2..].windows(2).position(|w| w == [']', ']']) {
                let name: String = chars[i + 2..i + 2 + end].iter().collect();
                if let Some(v) = vars.get(name.split(':').next().unwrap_or("")) {
                    out.push_str(v);
                    i += end + 4;
                    continue;
                }
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Escapes a value as Grafana's `:regex` format does (`\ ^ $ . * + ? ( ) [ ] { } |`; not `-`).
pub fn escape_regex(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if "\\^$.*+?()[]{}|".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A variable's values as Grafana's Prometheus data source writes them into a query
/// (`interpolateQueryExpr`): a variable that is neither multi-value nor has "All" gets only
/// its backslashes and quotes escaped; otherwise every value is regex-escaped for a PromQL
/// string (`.` becomes `\\.`, two backslashes in the query text) and several are joined as
/// `(a|b)`.
pub fn grafana_interpolate(values: &[String], multi_or_all: bool) -> String {
    if !multi_or_all {
        return values
            .first()
            .map(|v| v.replace('\\', "\\\\").replace('\'', "\\\\'"))
            .unwrap_or_default();
    }
    let esc: Vec<String> = values
        .iter()
        .map(|v| {
            let mut out = String::with_capacity(v.len() + 4);
            for c in v.chars() {
                if c == '\\' {
                    out.push_str("\\\\\\\\");
                } else if "$^*{}[]'+?.()|".contains(c) {
                    out.push_str("\\\\");
                    out.push(c);
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect();
    if esc.len() == 1 {
        return esc[0].clone();
    }
    format!("({})", esc.join("|"))
}

fn value_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::Number(n) => vec![n.to_string()],
        _ => vec![],
    }
}

/// Parses `label_values(metric{...}, label)` or `label_values(label)`.
pub fn parse_label_values(q: &str) -> Option<(Option<String>, String)> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    match inner.rfind(',') {
        Some(i) if !inner[i..].contains('}') => Some((
            Some(inner[..i].trim().to_string()),
            inner[i + 1..].trim().to_string(),
        )),
        _ => Some((None, inner.trim().to_string())),
    }
}

struct Resolved {
    vars: BTreeMap<String, String>,
    shown: BTreeMap<String, String>,
    ds_vars: BTreeMap<String, String>,
    /// Variables whose values could not be asked for (the call failed): the dashboard's
    /// panels would be evaluated with a guess, so the scan says so instead.
    failed: Vec<String>,
}

async fn resolve_variables(
    model: &Value,
    prom: Option<&PromApi>,
    range_s: f64,
    scrape_s: f64,
    datasources: &[Ds],
) -> Resolved {
    let mut vars = builtins(range_s, scrape_s);
    let mut shown = BTreeMap::new();
    let mut ds_vars = BTreeMap::new();
    let mut failed = Vec::new();
    let list = model
        .pointer("/templating/list")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    for v in list {
        let Some(name) = v.get("name").and_then(|n| n.as_str()).map(str::to_string) else {
            continue;
        };
        let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let current = v
            .pointer("/current/value")
            .map(value_strings)
            .unwrap_or_default();
        let options: Vec<String> = v
            .get("options")
            .and_then(|o| o.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|o| o.get("value"))
                    .flat_map(value_strings)
                    .filter(|x| x != "$__all")
                    .collect()
            })
            .unwrap_or_default();
        let is_all = current.iter().any(|c| c == "$__all");
        let multi_or_all = ["multi", "includeAll"]
            .iter()
            .any(|k| v.get(*k).and_then(|x| x.as_bool()).unwrap_or(false))
            || is_all;
        let value: String = match kind {
            "datasource" => {
                let want = v
                    .get("query")
                    .and_then(|q| q.as_str())
                    .unwrap_or("prometheus");
                let chosen = current
                    .first()
                    .filter(|c| !c.is_empty() && !c.starts_with('$'))
                    .cloned()
                    .or_else(|| {
                        datasources
                            .iter()
                            .find(|d| d.kind == want && d.is_default)
                            .or_else(|| datasources.iter().find(|d| d.kind == want))
                            .map(|d| d.uid.clone())
                    })
                    .unwrap_or_default();
                ds_vars.insert(name.clone(), chosen.clone());
                chosen
            }
            "constant" | "textbox" => current
                .first()
                .cloned()
                .or_else(|| v.get("query").and_then(|q| q.as_str()).map(str::to_string))
                .unwrap_or_default(),
            "custom" | "interval" => {
                if is_all {
                    v.get("allValue")
                        .and_then(|a| a.as_str())
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| grafana_interpolate(&options, true))
                } else if !current.is_empty() && !current[0].is_empty() {
                    grafana_interpolate(&current, multi_or_all)
                } else {
                    options.first().cloned().unwrap_or_default()
                }
            }
            "query" => {
                let q = match v.get("query") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Object(o)) => o
                        .get("query")
                        .and_then(|q| q.as_str())
                        .unwrap_or("")
                        .to_string(),
                    _ => String::new(),
                };
                let q = expand(&q, &vars);
                // A variable whose own data source is an unreplaced `${DS_...}` input gets no
                // values in Grafana either: do not ask.
                let ds_ref = match v.get("datasource") {
                    Some(Value::String(x)) => Some(x.clone()),
                    Some(Value::Object(o)) => {
                        o.get("uid").and_then(|u| u.as_str()).map(str::to_string)
                    }
                    _ => None,
                };
                let unresolved = ds_ref.is_some_and(|r| {
                    r.starts_with('$') && {
                        let n = r
                            .trim_start_matches("${")
                            .trim_start_matches('$')
                            .trim_end_matches('}');
                        !ds_vars.contains_key(n.split(':').next().unwrap_or(n))
                    }
                });
                let prom = if unresolved { None } else { prom };
                let live: Vec<String> = match (prom, parse_label_values(&q)) {
                    (Some(p), Some((matcher, label))) => {
                        let end = now();
                        match p
                            .label_values(
                                &label,
                                matcher.as_deref(),
                                end - range_s.max(3600.0),
                                end,
                            )
                            .await
                        {
                            Ok(v) => v,
                            Err(e) => {
                                failed.push(format!("variable ${name}: {e}"));
                                vec![]
                            }
                        }
                    }
                    _ => vec![],
                };
                if is_all
                    || (v
                        .get("includeAll")
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false)
                        && current.is_empty())
                {
                    v.get("allValue")
                        .and_then(|a| a.as_str())
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .unwrap_or_else(|| {
                            if live.is_empty() {
                                ".*".into()
                            } else {
                                grafana_interpolate(&live, true)
                            }
                        })
                } else if let Some(c) = current
                    .first()
                    .filter(|c| !c.is_empty() && live.contains(c))
                {
                    let _ = c;
                    grafana_interpolate(&current, multi_or_all)
                } else {
                    // Grafana falls back to the first value the query returns.
                    live.first()
                        .cloned()
                        .unwrap_or_else(|| current.first().cloned().unwrap_or_default())
                }
            }
            _ => current.first().cloned().unwrap_or_default(),
        };
        shown.insert(name.clone(), value.clone());
        vars.insert(name, value);
    }
    Resolved {
        vars,
        shown,
        ds_vars,
        failed,
    }
}

enum DsRef {
    Use(Ds),
    Missing(String),
    Unresolved(String),
    Other(String),
}

fn resolve_ds(r: Option<&Value>, datasources: &[Ds], res: &Resolved) -> DsRef {
    let default = || {
        datasources
            .iter()
            .find(|d| d.is_default)
            .or_else(|| datasources.first())
            .cloned()
    };
    let by = |key: &str| {
        datasources
            .iter()
            .find(|d| d.uid == key || d.name == key)
            .cloned()
    };
    let var_of = |s: &str| -> Option<String> {
        let n = s
            .trim_start_matches("${")
            .trim_start_matches('$')
            .trim_end_matches('}');
        let n = n.split(':').next().unwrap_or(n);
        if res.ds_vars.contains_key(n) {
            res.ds_vars.get(n).cloned()
        } else {
            None
        }
    };
    let key: Option<String> = match r {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Object(o)) => {
            if let Some(t) = o.get("type").and_then(|t| t.as_str())
                && !is_prom(t)
                && t != "datasource"
            {
                return DsRef::Other(t.to_string());
            }
            o.get("uid").and_then(|u| u.as_str()).map(str::to_string)
        }
        _ => None,
    };
    let Some(key) = key else {
        return match default() {
            Some(d) => DsRef::Use(d),
            None => DsRef::Missing("the default data source".into()),
        };
    };
    if key == "-- Grafana --" || key == "grafana" || key == "-- Dashboard --" {
        return DsRef::Other("grafana".into());
    }
    if key.starts_with('$') {
        return match var_of(&key) {
            Some(v) => by(&v).map(DsRef::Use).unwrap_or(DsRef::Missing(v)),
            None => DsRef::Unresolved(key),
        };
    }
    match by(&key) {
        Some(d) if is_prom(&d.kind) => DsRef::Use(d),
        Some(d) => DsRef::Other(d.kind),
        None => DsRef::Missing(key),
    }
}

/// Reads the data sources of a Grafana.
pub async fn datasources(g: &GrafanaApi) -> Result<Vec<Ds>, String> {
    let list = g.get("/api/datasources").await?;
    Ok(list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| Ds {
                    uid: d.get("uid").and_then(|x| x.as_str()).unwrap_or("").into(),
                    name: d.get("name").and_then(|x| x.as_str()).unwrap_or("").into(),
                    kind: d.get("type").and_then(|x| x.as_str()).unwrap_or("").into(),
                    is_default: d
                        .get("isDefault")
                        .and_then(|x| x.as_bool())
                        .unwrap_or(false),
                    time_interval: d
                        .pointer("/jsonData/timeInterval")
                        .and_then(|x| x.as_str())
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The uids of every dashboard.
pub async fn dashboard_uids(g: &GrafanaApi) -> Result<Vec<String>, String> {
    let hits = g.get("/api/search?type=dash-db&limit=5000").await?;
    let list = hits.as_array().ok_or_else(|| {
        "GET /api/search on Grafana: the answer is not a list of dashboards".to_string()
    })?;
    Ok(list
        .iter()
        .filter_map(|h| h.get("uid").and_then(|u| u.as_str()).map(str::to_string))
        .collect())
}

/// Scans one dashboard.
pub async fn scan(
    g: &GrafanaApi,
    uid: &str,
    datasources: &[Ds],
    lookback: Duration,
) -> DashboardReport {
    let mut report = DashboardReport {
        uid: uid.to_string(),
        title: uid.to_string(),
        time: ("now-6h".into(), "now".into()),
        window: String::new(),
        variables: BTreeMap::new(),
        panels: vec![],
        problem: None,
    };
    let doc = match g.get(&format!("/api/dashboards/uid/{uid}")).await {
        Ok(d) => d,
        Err(e) => {
            report.problem = Some(e);
            return report;
        }
    };
    let model = match dashboard_model(&doc) {
        Ok(m) => m,
        Err(why) => {
            if let Some(t) = doc
                .pointer("/dashboard/title")
                .or_else(|| doc.pointer("/dashboard/spec/title"))
                .or_else(|| doc.pointer("/spec/title"))
                .and_then(|t| t.as_str())
            {
                report.title = t.to_string();
            }
            report.problem = Some(format!("cannot read this dashboard: {why}"));
            return report;
        }
    };
    report.title = model
        .get("title")
        .and_then(|t| t.as_str())
        .unwrap_or(uid)
        .to_string();
    let from = model
        .pointer("/time/from")
        .and_then(|t| t.as_str())
        .unwrap_or("now-6h")
        .to_string();
    let to = model
        .pointer("/time/to")
        .and_then(|t| t.as_str())
        .unwrap_or("now")
        .to_string();
    let range_s = match (relative_seconds(&from), relative_seconds(&to)) {
        (Some(f), Some(t)) if f > t => f - t,
        _ => 6.0 * 3600.0,
    };
    // A range Grafana would not draw either (`now-500000000000y`) is this dashboard's problem,
    // not a reason to overflow the clock.
    if range_s > crate::settings::MAX_DURATION.as_secs_f64() {
        report.problem = Some(format!(
            "its time range {from} to {to} is longer than 10 years: set a shorter one (Dashboard settings > Time options)"
        ));
        report.time = (from, to);
        return report;
    }
    report.time = (from, to);
    report.window = dur(range_s);
    let default_ds = datasources
        .iter()
        .find(|d| d.is_default && is_prom(&d.kind))
        .or_else(|| datasources.iter().find(|d| is_prom(&d.kind)));
    let scrape_s = default_ds
        .and_then(|d| d.time_interval.as_deref())
        .and_then(|t| humantime::parse_duration(t).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(15.0);
    let default_prom = default_ds.map(|d| g.prom(d));
    let res = resolve_variables(
        &model,
        default_prom.as_ref(),
        range_s,
        scrape_s,
        datasources,
    )
    .await;
    report.variables = res.shown.clone();
    if !res.failed.is_empty() {
        report.problem = Some(res.failed.join("; "));
        return report;
    }
    let opts = ExplainOptions {
        window: Duration::from_secs_f64(range_s),
        lookback,
    };
    let mut jobs = Vec::new();
    for p in all_panels(&model) {
        let title = p
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or("(untitled)")
            .to_string();
        let panel_id = p.get("id").and_then(|i| i.as_i64());
        let panel_ds = p.get("datasource");
        for t in p
            .get("targets")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            if t.get("hide").and_then(|h| h.as_bool()).unwrap_or(false) {
                continue;
            }
            let Some(expr) = t
                .get("expr")
                .and_then(|e| e.as_str())
                .filter(|e| !e.trim().is_empty())
            else {
                continue;
            };
            let ref_id = t
                .get("refId")
                .and_then(|r| r.as_str())
                .unwrap_or("A")
                .to_string();
            let mixed = matches!(panel_ds, Some(Value::String(s)) if s == "-- Mixed --")
                || panel_ds.and_then(|d| d.get("uid")).and_then(|u| u.as_str())
                    == Some("-- Mixed --");
            let ds_ref = if mixed || t.get("datasource").is_some_and(|d| !d.is_null()) {
                t.get("datasource")
            } else {
                panel_ds
            };
            let expanded = expand(expr, &res.vars);
            let finding = |status, detail: String| PanelFinding {
                panel: title.clone(),
                panel_id,
                ref_id: ref_id.clone(),
                expr: expr.to_string(),
                expanded: expanded.clone(),
                status,
                detail,
                explanation: None,
            };
            match resolve_ds(ds_ref, datasources, &res) {
                DsRef::Other(kind) => report.panels.push(finding(PanelStatus::NotPrometheus, format!("a {kind} query, not Prometheus"))),
                DsRef::Unresolved(name) => report.panels.push(finding(
                    PanelStatus::DatasourceUnresolved,
                    format!("the data source is {name}, an input of an exported dashboard that was never replaced: re-import it and pick the Prometheus data source, or replace {name} with the data source's uid"),
                )),
                DsRef::Missing(key) => report.panels.push(finding(
                    PanelStatus::DatasourceMissing,
                    format!("the data source {key:?} does not exist on this Grafana (data sources: {})", datasources.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")),
                )),
                DsRef::Use(ds) => {
                    let g = g.clone();
                    let f = finding(PanelStatus::Data, String::new());
                    jobs.push(async move {
                        let mut f = f;
                        match g.panel_answer(&ds, &f.expanded, opts).await {
                            (Ok((QueryResult::Data, n)), _) => {
                                f.detail = format!("{n} series");
                            }
                            (Ok((r, _)), ex) => {
                                f.status = if r == QueryResult::Zero { PanelStatus::Zero } else { PanelStatus::Empty };
                                match ex {
                                    Some(Ok(ex)) => {
                                        f.detail = ex.root_cause.clone().unwrap_or_else(|| "no data".into());
                                        f.explanation = Some(ex);
                                    }
                                    Some(Err(PanelError::Failed(e))) => {
                                        f.status = PanelStatus::Error;
                                        f.detail = e.lines().next().unwrap_or("").to_string();
                                    }
                                    Some(Err(PanelError::NotReached)) => {
                                        f.detail = "no data (not explained: the deadline came first)".into();
                                    }
                                    None => f.detail = "no data".into(),
                                }
                            }
                            (Err(PanelError::Failed(e)), _) => {
                                f.status = PanelStatus::Error;
                                f.detail = e;
                            }
                            (Err(PanelError::NotReached), _) => {
                                f.status = PanelStatus::NotReached;
                                f.detail = "not reached before the deadline".into();
                            }
                        }
                        f
                    });
                }
            }
        }
    }
    // Bounded concurrency: a few queries at once, the rest wait.
    use futures::StreamExt;
    let done: Vec<PanelFinding> = futures::stream::iter(jobs).buffered(16).collect().await;
    report.panels.extend(done);
    report
}
