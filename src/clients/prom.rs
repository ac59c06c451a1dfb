//! Prometheus's HTTP API, reached directly (`--prometheus-url`) or, by default, through
//! Grafana's data source proxy (`/api/datasources/proxy/uid/<uid>/api/v1/...`) with the login
//! session, because the user has only Grafana's port forwarded.
//!
//! Every answer is checked for its shape: an answer that is not what the API promises is an
//! error ([`ErrorKind::Undecodable`]), never an empty result. Facts that several checks ask for
//! (the targets, a label's values, a metric's metadata) are fetched once per run and shared
//! through a [`PromMemo`].

use super::error::{CallError, ErrorKind};
use super::grafana::GrafanaSession;
use super::http::{Answer, Lane, Transport, cut};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// How a Prometheus call failed (the common call error).
pub type PromError = CallError;

/// Labels of a series or target.
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The series labels.
    pub metric: Labels,
    /// Unix time in seconds.
    pub time: f64,
    /// The value.
    pub value: f64,
}

/// One series of a range query.
#[derive(Debug, Clone)]
pub struct Series {
    /// The series labels.
    pub metric: Labels,
    /// `(unix seconds, value)` points.
    pub points: Vec<(f64, f64)>,
}

/// A target of `/api/v1/targets`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Labels before relabelling.
    #[serde(default)]
    pub discovered_labels: Labels,
    /// Labels after relabelling.
    #[serde(default)]
    pub labels: Labels,
    /// The job.
    #[serde(default)]
    pub scrape_pool: String,
    /// The URL scraped.
    #[serde(default)]
    pub scrape_url: String,
    /// The last scrape error.
    #[serde(default)]
    pub last_error: String,
    /// `up`, `down` or `unknown`.
    #[serde(default)]
    pub health: String,
    /// e.g. `1m`.
    #[serde(default)]
    pub scrape_interval: String,
    /// e.g. `10s`.
    #[serde(default)]
    pub scrape_timeout: String,
    /// Seconds the last scrape took.
    #[serde(default)]
    pub last_scrape_duration: f64,
}

/// Active and dropped targets.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Targets being scraped (required: an answer without them is not a targets answer).
    pub active_targets: Vec<Target>,
    /// Targets relabelling dropped.
    #[serde(default)]
    pub dropped_targets: Vec<Target>,
}

type Cell<V> = Arc<OnceCell<Result<V, CallError>>>;

/// A memoised answer and when it was first asked.
type Fresh<V> = (Instant, Cell<V>);

/// Answers fetched once per run and shared by every check and the explainer.
#[derive(Default)]
pub struct PromMemo {
    targets: OnceCell<Result<Arc<Targets>, CallError>>,
    intervals: OnceCell<Result<Arc<BTreeMap<String, Duration>>, CallError>>,
    liveness: Mutex<HashMap<u64, Fresh<Liveness>>>,
    labels: Mutex<HashMap<String, Fresh<Arc<Vec<String>>>>>,
    metadata: Mutex<HashMap<String, Cell<Value>>>,
}

/// Prometheus's own liveness over a window: `count(up)` as a range, and now.
pub type Liveness = (Arc<Vec<Series>>, Arc<Vec<Sample>>);

/// How long a memoised label list is reused.
const LABELS_FRESH: Duration = Duration::from_secs(30);

/// Above this many bytes of parameters a query is POSTed (a GET URL that long is refused).
const POST_ABOVE: usize = 6 * 1024;

/// A Prometheus HTTP API client, direct or through Grafana's data source proxy.
#[derive(Clone)]
pub struct PromApi {
    transport: Transport,
    base: String,
    session: Option<Arc<GrafanaSession>>,
    timeout: Duration,
    lane: Lane,
    deadline: Option<Instant>,
    memo: Arc<PromMemo>,
    /// `Grafana's proxy to data source "..."` or the direct URL, for messages.
    pub via: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

impl PromApi {
    /// Through Grafana's data source proxy for the data source `uid`.
    pub fn via_grafana(
        transport: Transport,
        grafana_url: &str,
        uid: &str,
        name: &str,
        session: Arc<GrafanaSession>,
        timeout: Duration,
        memo: Arc<PromMemo>,
    ) -> PromApi {
        PromApi {
            transport,
            base: format!("{grafana_url}/api/datasources/proxy/uid/{uid}"),
            session: Some(session),
            timeout,
            lane: Lane::Chain,
            deadline: None,
            memo,
            via: format!("Grafana's proxy to data source {name:?}"),
        }
    }

    /// A direct client (`--prometheus-url`, tests).
    pub fn direct(
        transport: Transport,
        url: &str,
        timeout: Duration,
        memo: Arc<PromMemo>,
    ) -> PromApi {
        PromApi {
            transport,
            base: url.trim_end_matches('/').to_string(),
            session: None,
            timeout,
            lane: Lane::Chain,
            deadline: None,
            memo,
            via: url.to_string(),
        }
    }

    /// The same client with another deadline per call.
    pub fn with_timeout(mut self, timeout: Duration) -> PromApi {
        self.timeout = timeout;
        self
    }

    /// The same client in the background lane (the dashboard scan, explanations).
    pub fn background(mut self) -> PromApi {
        self.lane = Lane::Background;
        self
    }

    /// The same client in another lane.
    pub fn in_lane(mut self, lane: Lane) -> PromApi {
        self.lane = lane;
        self
    }

    /// The same client with every call ending by `deadline` (a check's).
    pub fn with_deadline(mut self, deadline: Instant) -> PromApi {
        self.deadline = Some(deadline);
        self
    }

    /// The same client without a caller's deadline: an answer shared by several checks is
    /// asked with the full per-call limit, not with what the first asker had left; each
    /// asker still waits only until its own deadline ([`PromApi::bounded`]).
    fn shared(&self) -> PromApi {
        let mut s = self.clone();
        s.deadline = None;
        s
    }

    /// Waits for a shared answer until this caller's deadline.
    async fn bounded<'a, V: Clone + 'a>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = &'a Result<V, CallError>>,
    ) -> Result<V, CallError> {
        let left = self.call_timeout();
        match tokio::time::timeout(left, fut).await {
            Ok(r) => r.clone(),
            Err(_) => Err(CallError::new(
                format!("{what} at {}", self.via),
                ErrorKind::TimedOut(left),
            )),
        }
    }

    /// The time a call may take now: the per-call limit, or what is left before the deadline.
    fn call_timeout(&self) -> Duration {
        super::http::within(self.timeout, self.deadline)
    }

    /// The deadline of each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether this client goes through Grafana's proxy.
    pub fn through_grafana(&self) -> bool {
        self.session.is_some()
    }

    /// Names a call for messages: `GET /api/v1/<path> through Grafana's proxy ...`.
    fn call_name(&self, path: &str, params: &[(&str, String)]) -> String {
        let q = params
            .iter()
            .find(|(k, _)| *k == "query" || *k == "match[]")
            .map(|(_, v)| format!(" `{}`", cut(v, 160)));
        let what = match (path, q) {
            ("query" | "query_range", Some(q)) => format!("the query{q}"),
            ("series", Some(q)) => format!("the series of{q}"),
            (p, Some(q)) => format!("/api/v1/{p} for{q}"),
            (p, None) => format!("/api/v1/{p}"),
        };
        if self.session.is_some() {
            format!("{what} through {}", self.via)
        } else {
            format!("{what} at {}", self.via)
        }
    }

    async fn raw(
        &self,
        call: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Answer, CallError> {
        let url = format!("{}/api/v1/{path}", self.base);
        let size: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let client = self.transport.client();
        let mut req = if size > POST_ABOVE {
            client.post(&url).form(params)
        } else {
            client.get(&url).query(params)
        };
        if let Some(s) = &self.session {
            req = s.apply(req);
        }
        // The targets of a large cluster run to tens of MiB: they may use the run's whole
        // budget; every other answer the usual cap.
        let cap = if path == "targets" {
            super::http::RUN_BUDGET
        } else {
            super::http::MAX_BODY
        };
        self.transport
            .send_capped(call, req, self.call_timeout(), self.lane, cap)
            .await
    }

    /// Calls `/api/v1/<path>` and decodes the envelope's `data` as `T`.
    pub async fn get_as<T: DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<T, CallError> {
        let call = self.call_name(path, params);
        let a = self.raw(&call, path, params).await?;
        let via_grafana = self.session.is_some();
        if a.body.len() < 1024 * 1024 {
            return decode(&call, &a, via_grafana);
        }
        // A large answer is decoded off the async threads, so other checks keep running,
        // and within the call's deadline.
        let left = self.call_timeout();
        let c = call.clone();
        let job = tokio::task::spawn_blocking(move || decode(&c, &a, via_grafana));
        match tokio::time::timeout(left, job).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(CallError::new(
                call,
                ErrorKind::Local("the answer's decoding stopped".into()),
            )),
            Err(_) => Err(CallError::new(call, ErrorKind::TimedOut(self.timeout))),
        }
    }

    /// Calls `/api/v1/<path>` and returns the envelope's `data`.
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        self.get_as::<Value>(path, params).await
    }

    /// An instant query.
    pub async fn instant(&self, query: &str, at: Option<f64>) -> Result<Vec<Sample>, CallError> {
        let mut p = vec![("query", query.to_string())];
        if let Some(t) = at {
            p.push(("time", format!("{t:.3}")));
        }
        let call = self.call_name("query", &p);
        let data = self.get("query", &p).await?;
        let bad = |why: String| CallError::new(&call, ErrorKind::Undecodable(why));
        let result = data
            .get("result")
            .ok_or_else(|| bad("no `result` in the answer".into()))?;
        match data.get("resultType").and_then(|t| t.as_str()) {
            Some("vector") => result
                .as_array()
                .ok_or_else(|| bad("`result` is not a list".into()))?
                .iter()
                .map(|s| {
                    sample(s).ok_or_else(|| {
                        bad(format!(
                            "a sample that is not one: {}",
                            cut(&s.to_string(), 120)
                        ))
                    })
                })
                .collect(),
            Some("scalar") => {
                let (time, value) =
                    point(result).ok_or_else(|| bad("a scalar that is not one".into()))?;
                Ok(vec![Sample {
                    metric: Labels::new(),
                    time,
                    value,
                }])
            }
            Some("matrix") => Err(bad(
                "a range vector where an instant one was expected (the query ends in [..])".into(),
            )),
            Some("string") => Ok(vec![]),
            other => Err(bad(format!("resultType {other:?}"))),
        }
    }

    /// A range query.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, CallError> {
        let p = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{:.3}", step.max(0.001))),
        ];
        let call = self.call_name("query_range", &p);
        let data = self.get("query_range", &p).await?;
        let bad = |why: &str| CallError::new(&call, ErrorKind::Undecodable(why.to_string()));
        let list = data
            .get("result")
            .and_then(|r| r.as_array())
            .ok_or_else(|| bad("no `result` list in the answer"))?;
        list.iter()
            .map(|s| {
                let points = s
                    .get("values")
                    .and_then(|v| v.as_array())
                    .ok_or_else(|| bad("a series without `values`"))?
                    .iter()
                    .map(|p| point(p).ok_or_else(|| bad("a point that is not [time, \"value\"]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Series {
                    metric: labels(s.get("metric")),
                    points,
                })
            })
            .collect()
    }

    /// Active and dropped targets, fetched once per run.
    pub async fn targets(&self) -> Result<Arc<Targets>, CallError> {
        let shared = self.shared();
        self.bounded(
            "/api/v1/targets",
            self.memo.targets.get_or_init(|| async move {
                shared
                    .get_as::<Targets>("targets", &[("state", "any".to_string())])
                    .await
                    .map(Arc::new)
            }),
        )
        .await
    }

    /// Series matching a selector between two times.
    pub async fn series(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<Labels>, CallError> {
        let p = [
            ("match[]", selector.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        let list: Vec<BTreeMap<String, Value>> = self.get_as("series", &p).await?;
        Ok(list
            .into_iter()
            .map(|m| {
                m.into_iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
                    .collect()
            })
            .collect())
    }

    /// Values of a label, optionally on series matching a selector, between two times. The
    /// same question within a run is asked once.
    pub async fn label_values(
        &self,
        label: &str,
        selector: Option<&str>,
        start: f64,
        end: f64,
    ) -> Result<Vec<String>, CallError> {
        let key = format!(
            "{label}\u{0}{}\u{0}{}",
            selector.unwrap_or(""),
            (end - start).round()
        );
        let cell = {
            let mut m = self.memo.labels.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&key) {
                Some((at, c)) if at.elapsed() < LABELS_FRESH => c.clone(),
                _ => {
                    let c: Cell<Arc<Vec<String>>> = Arc::default();
                    m.insert(key, (Instant::now(), c.clone()));
                    c
                }
            }
        };
        let shared = self.shared();
        let r = self
            .bounded(
                &format!("the values of label {label}"),
                cell.get_or_init(|| async move {
                    let mut p = vec![
                        ("start", format!("{start:.3}")),
                        ("end", format!("{end:.3}")),
                    ];
                    if let Some(s) = selector {
                        p.push(("match[]", s.to_string()));
                    }
                    shared
                        .get_as::<Vec<String>>(&format!("label/{label}/values"), &p)
                        .await
                        .map(Arc::new)
                }),
            )
            .await;
        r.map(|v| (*v).clone())
    }

    /// Several instant queries in one request: each is tagged with a label of its own and
    /// joined with `or`, and the answer is split back. Where the server refuses the batch (a
    /// query it does not know, a scalar), they are asked one by one.
    pub async fn instant_batch(&self, queries: &[String]) -> Result<Vec<Vec<Sample>>, CallError> {
        const TAG: &str = "__msa_doctor_q";
        if queries.len() <= 1 {
            let mut out = Vec::new();
            for q in queries {
                out.push(self.instant(q, None).await?);
            }
            return Ok(out);
        }
        let joined = queries
            .iter()
            .enumerate()
            .map(|(i, q)| format!("label_replace(({q}), \"{TAG}\", \"{i}\", \"\", \"\")"))
            .collect::<Vec<_>>()
            .join(" or ");
        match self.instant(&joined, None).await {
            Ok(samples) => {
                let mut out: Vec<Vec<Sample>> = vec![Vec::new(); queries.len()];
                let mut untagged = false;
                for mut s in samples {
                    match s.metric.remove(TAG).and_then(|i| i.parse::<usize>().ok()) {
                        Some(i) if i < out.len() => out[i].push(s),
                        _ => untagged = true,
                    }
                }
                if !untagged {
                    return Ok(out);
                }
                // A server that ignores the tags (a proxy's cache, a partial PromQL engine):
                // its batch answer cannot be split; ask one by one.
                let all =
                    futures::future::join_all(queries.iter().map(|q| self.instant(q, None))).await;
                all.into_iter().collect()
            }
            Err(CallError {
                kind: ErrorKind::Api { .. },
                ..
            }) => {
                let all =
                    futures::future::join_all(queries.iter().map(|q| self.instant(q, None))).await;
                all.into_iter().collect()
            }
            Err(e) => Err(e),
        }
    }

    /// The scrape interval of every job with an `up` target, once per run: from the targets
    /// API (Prometheus), else (VictoriaMetrics) from the spacing of each job's `up` samples
    /// over the last 10 minutes, in one query.
    pub async fn scrape_intervals(&self) -> Result<Arc<BTreeMap<String, Duration>>, CallError> {
        let shared = self.shared();
        self.bounded("the scrape intervals", self.memo
            .intervals
            .get_or_init(|| async move {
                let shared = &shared;
                let t = shared.targets().await?;
                let mut out = BTreeMap::new();
                let mut unknown: Vec<&Target> = Vec::new();
                for x in t.active_targets.iter().filter(|x| x.health == "up") {
                    let Some(job) = x.labels.get("job") else {
                        continue;
                    };
                    if out.contains_key(job) {
                        continue;
                    }
                    match prom_duration(&x.scrape_interval) {
                        Some(d) => {
                            out.insert(job.clone(), d);
                        }
                        None => unknown.push(x),
                    }
                }
                if unknown.is_empty() {
                    return Ok(Arc::new(out));
                }
                // VictoriaMetrics: tlast/tfirst_over_time are the samples' own times.
                let q = "max by (job) ((tlast_over_time(up[10m]) - tfirst_over_time(up[10m])) / (count_over_time(up[10m]) - 1))";
                match shared.instant(q, None).await {
                    Ok(v) => {
                        for s in v {
                            if let Some(job) = s.metric.get("job")
                                && s.value.is_finite()
                                && s.value > 0.0
                                && s.value < 3600.0
                                && !out.contains_key(job)
                            {
                                let secs = (s.value * 10.0).round() / 10.0;
                                out.insert(job.clone(), Duration::from_secs_f64(secs));
                            }
                        }
                    }
                    // Prometheus without the interval in its targets (never seen, but):
                    // target by target.
                    Err(CallError {
                        kind: ErrorKind::Api { .. },
                        ..
                    }) => {
                        for x in unknown {
                            if let Some(job) = x.labels.get("job")
                                && !out.contains_key(job)
                                && let Some(d) = scrape_interval(shared, x).await?
                            {
                                out.insert(job.clone(), d);
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
                Ok(Arc::new(out))
            }))
            .await
    }

    /// `count(up)` over the window (one point a `window / 60`) and now: whether Prometheus
    /// itself was there. Asked once per window in a run (reused for 30 s).
    pub async fn liveness(&self, window: Duration) -> Result<Liveness, CallError> {
        let key = window.as_secs();
        let cell = {
            let mut m = self.memo.liveness.lock().unwrap_or_else(|e| e.into_inner());
            match m.get(&key) {
                Some((at, c)) if at.elapsed() < LABELS_FRESH => c.clone(),
                _ => {
                    let c: Cell<Liveness> = Arc::default();
                    m.insert(key, (Instant::now(), c.clone()));
                    c
                }
            }
        };
        let shared = self.shared();
        self.bounded(
            "count(up)",
            cell.get_or_init(|| async move {
                let end = now();
                let step = (window.as_secs_f64() / 60.0).max(1.0);
                let (range, at) = tokio::join!(
                    shared.range("count(up)", end - window.as_secs_f64(), end, step),
                    shared.instant("count(up)", Some(end))
                );
                Ok((Arc::new(range?), Arc::new(at?)))
            }),
        )
        .await
    }

    /// The metadata of a metric (`/api/v1/metadata?metric=`), once per run.
    pub async fn metadata(&self, metric: &str) -> Result<Value, CallError> {
        let cell = {
            let mut m = self.memo.metadata.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(metric.to_string()).or_default().clone()
        };
        let shared = self.shared();
        self.bounded(
            "/api/v1/metadata",
            cell.get_or_init(|| async move {
                shared
                    .get("metadata", &[("metric", metric.to_string())])
                    .await
            }),
        )
        .await
    }
}

/// Decodes Prometheus's envelope, or says why the answer is not one.
fn decode<T: DeserializeOwned>(call: &str, a: &Answer, via_grafana: bool) -> Result<T, CallError> {
    let err = |k: ErrorKind| CallError::new(call, k);
    // One pass over the body, however large: the parser's own error says what is wrong.
    let first = match serde_json::from_slice::<Envelope<T>>(&a.body) {
        Ok(env) if env.status == "success" => {
            return env
                .data
                .ok_or_else(|| err(ErrorKind::Undecodable("a success without `data`".into())));
        }
        Ok(env) if env.status == "error" => {
            return Err(err(ErrorKind::Api {
                error_type: env.error_type.unwrap_or_else(|| "error".into()),
                error: super::redact::clean(&env.error.unwrap_or_default()),
            }));
        }
        Ok(env) => Err(format!(
            "an envelope with status {:?}",
            cut(&env.status, 40)
        )),
        Err(e) => Ok(e),
    };
    if a.status == 401 || a.status == 403 {
        return Err(err(ErrorKind::Forbidden(format!(
            "HTTP {} {}",
            a.status,
            a.message().unwrap_or_else(|| a.excerpt(160))
        ))));
    }
    if via_grafana && (a.status == 502 || a.status == 504) && a.body.is_empty() {
        return Err(err(ErrorKind::Refused(format!(
            "Grafana's proxy answered {} with no body: Grafana cannot reach the data source URL",
            a.status
        ))));
    }
    if a.status != 200 {
        return Err(a.status_error(call));
    }
    // 200, but not the envelope: say whether it is cut short, not JSON, or another shape.
    let why = match first {
        Err(other) => other,
        Ok(e) => match e.classify() {
            serde_json::error::Category::Eof => {
                format!("the JSON is cut short after {} bytes", a.body.len())
            }
            serde_json::error::Category::Syntax if a.is_html() => {
                "an HTML page, not Prometheus's API".to_string()
            }
            serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
                format!("not JSON ({e}): {}", a.excerpt(80))
            }
            serde_json::error::Category::Data => {
                format!("the answer is not of the expected shape ({e})")
            }
        },
    };
    Err(err(ErrorKind::Undecodable(why)))
}

fn labels(v: Option<&Value>) -> Labels {
    v.and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn point(v: &Value) -> Option<(f64, f64)> {
    let a = v.as_array()?;
    let t = a.first()?.as_f64()?;
    let x = a.get(1)?.as_str()?.parse::<f64>().ok()?;
    Some((t, x))
}

fn sample(v: &Value) -> Option<Sample> {
    let (time, value) = point(v.get("value")?)?;
    Some(Sample {
        metric: labels(v.get("metric")),
        time,
        value,
    })
}

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Parses a Prometheus duration (`1m`, `30s`, `1h30m`, `500ms`).
pub fn prom_duration(s: &str) -> Option<Duration> {
    promql_parser::util::parse_duration(s).ok()
}

/// The scrape interval of a target, from `/api/v1/targets` (Prometheus) or, where the API
/// does not give it (VictoriaMetrics), from the gap between its last two `up` samples.
/// `Ok(None)` when the samples do not tell (a target with one sample yet).
pub async fn scrape_interval(api: &PromApi, t: &Target) -> Result<Option<Duration>, CallError> {
    if let Some(d) = prom_duration(&t.scrape_interval) {
        return Ok(Some(d));
    }
    let (Some(job), Some(instance)) = (t.labels.get("job"), t.labels.get("instance")) else {
        return Ok(None);
    };
    let sel = format!("up{{job={job:?}, instance={instance:?}}}");
    // Prometheus: timestamp() is the sample's own time. VictoriaMetrics: timestamp() is the
    // step's time, and tlast_over_time() (unknown to Prometheus) gives the sample's.
    let vm = format!("max(tlast_over_time({sel}[10m]))");
    let q = match api.instant(&vm, None).await {
        Ok(v) if !v.is_empty() => vm,
        Ok(_) => format!("max(timestamp({sel}))"),
        // Prometheus refuses the unknown function: that is the answer, not a failure.
        Err(CallError {
            kind: ErrorKind::Api { .. },
            ..
        }) => format!("max(timestamp({sel}))"),
        Err(e) => return Err(e),
    };
    let Some(last) = api.instant(&q, None).await?.first().map(|s| s.value) else {
        return Ok(None);
    };
    let Some(prev) = api
        .instant(&q, Some(last - 0.001))
        .await?
        .first()
        .map(|s| s.value)
    else {
        return Ok(None);
    };
    let gap = last - prev;
    Ok((gap > 0.0 && gap < 3600.0).then(|| Duration::from_secs_f64((gap * 10.0).round() / 10.0)))
}
