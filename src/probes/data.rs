//! The data itself: `data.traffic` (every service received user requests in the window) and
//! `data.time-range` (the newest samples fall inside the window, rate windows fit the scrape
//! interval, and the clocks of this machine, Grafana and Prometheus agree).

use super::grafana::GrafanaInfo;
use super::prom::{
    PromInfo, Sample, TargetIndex, api, call_failed, now, prom_duration, samples_by_service,
};
use super::{BuildError, parse_args};
use crate::domain::age;
use crate::engine::{CheckCtx, Outcome, Probe};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn window_str(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

pub use crate::domain::is_probe_uri;

/// `kind = "data.traffic"`: every service received user requests within the window.
#[derive(Debug)]
pub struct Traffic;

impl Traffic {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| Traffic)
    }
}

#[async_trait::async_trait]
impl Probe for Traffic {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let api = api(cx).await;
        let w = format!("{}s", cx.settings.window.as_secs().max(1));
        let by = "application, exported_application, app, service, pod, kubernetes_pod_name, uri";
        let exist_q =
            format!("count by ({by}) (last_over_time(http_server_requests_seconds_count[{w}]))");
        let incr_q = format!("sum by ({by}) (increase(http_server_requests_seconds_count[{w}]))");
        // A series born inside the window was created by a request inside it (Micrometer
        // starts it at 1), which increase() cannot see.
        let new_q = format!(
            "count by ({by}) (last_over_time(http_server_requests_seconds_count[{w}]) unless http_server_requests_seconds_count offset {w})"
        );
        // One request; each answer is needed: a failed one is never read as "no traffic".
        let mut answers = match api.instant_batch(&[exist_q, incr_q, new_q]).await {
            Ok(a) => a.into_iter(),
            Err(e) => return call_failed(cx, &e),
        };
        let (exist, incr, born) = (
            answers.next().unwrap_or_default(),
            answers.next().unwrap_or_default(),
            answers.next().unwrap_or_default(),
        );
        let services = &cx.settings.services;
        let (exist_by, incr_by, born_by) = (
            samples_by_service(&exist, services),
            samples_by_service(&incr, services),
            samples_by_service(&born, services),
        );
        let none_of: Vec<&Sample> = Vec::new();
        let mut problems = Vec::new();
        let mut evidence = serde_json::Map::new();
        let mut none = Vec::new();
        for svc in &cx.settings.services {
            let all: &Vec<&Sample> = exist_by.get(svc.as_str()).unwrap_or(&none_of);
            let user: Vec<&Sample> = all
                .iter()
                .copied()
                .filter(|s| s.metric.get("uri").is_none_or(|u| !is_probe_uri(u)))
                .collect();
            let mut by_uri: BTreeMap<String, f64> = BTreeMap::new();
            for s in incr_by.get(svc.as_str()).unwrap_or(&none_of) {
                let uri = s.metric.get("uri").cloned().unwrap_or_default();
                if !is_probe_uri(&uri) && s.value.is_finite() {
                    *by_uri.entry(uri).or_default() += s.value;
                }
            }
            for s in born_by.get(svc.as_str()).unwrap_or(&none_of) {
                let uri = s.metric.get("uri").cloned().unwrap_or_default();
                if !is_probe_uri(&uri) {
                    let e = by_uri.entry(uri).or_default();
                    *e = e.max(1.0);
                }
            }
            let total: f64 = by_uri.values().sum();
            if all.is_empty() {
                problems.push(format!(
                    "{svc}: no user request ever (no http_server_requests_seconds series at all in the last {}; Micrometer creates them on the first request)",
                    window_str(cx.settings.window)
                ));
                evidence.insert(svc.clone(), json!({"verdict": "no-series"}));
                none.push(svc.clone());
            } else if user.is_empty() {
                problems.push(format!(
                    "{svc}: no user request ever (only Prometheus's scrapes of /actuator; Micrometer creates the series on the first request)"
                ));
                evidence.insert(svc.clone(), json!({"verdict": "no-request"}));
                none.push(svc.clone());
            } else if total <= 0.0 {
                problems.push(format!(
                    "{svc}: requests happened before, but none in the last {}",
                    window_str(cx.settings.window)
                ));
                evidence.insert(svc.clone(), json!({"verdict": "zero"}));
                none.push(svc.clone());
            } else {
                let top: Vec<String> = by_uri
                    .iter()
                    .filter(|(_, v)| **v > 0.0)
                    .map(|(u, v)| format!("{u} ~{}", v.round()))
                    .collect();
                evidence.insert(
                    svc.clone(),
                    json!({"verdict": "traffic", "requests": total.round(), "uris": top}),
                );
            }
        }
        if problems.is_empty() {
            return Outcome::pass(format!(
                "all {} services received requests in the last {}",
                cx.settings.services.len(),
                window_str(cx.settings.window)
            ))
            .evidence("services", serde_json::Value::Object(evidence));
        }
        let ns = &cx.settings.namespace;
        let first = none.first().cloned().unwrap_or_default();
        Outcome::fail(format!("no traffic: {}", problems.join("; ")))
            .evidence("services", serde_json::Value::Object(evidence))
            .evidence("without_traffic", &none)
            .remedy(format!(
                "# every graph stays empty until someone uses the site; play the guide's scenarios:\n#   1. log in five times (user-service)\n#   2. place an order (order-service, then delivery-service through Kafka)\n#   3. complete a delivery (orchestrator-service)\n# or send a request straight to a service:\nkubectl -n {ns} port-forward deploy/{first} 8080:8080 &\ncurl -s localhost:8080/actuator/health; curl -s localhost:8080/    # any endpoint of the app"
            ))
    }
}

/// `kind = "data.time-range"`: the newest samples fall inside the window, rate windows fit
/// the scrape interval, and the clocks agree.
#[derive(Debug)]
pub struct TimeRange {
    rate_window: Duration,
    max_skew: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeRangeArgs {
    /// The rate window the dashboard's queries use (the guide's `[1m]`).
    rate_window: Option<String>,
    /// The clock difference tolerated.
    max_skew: Option<String>,
}

impl TimeRange {
    /// From `args = { rate_window = "1m", max_skew = "30s" }` (both optional).
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: TimeRangeArgs = parse_args(args)?;
        let d = |s: Option<String>, def: u64| -> Result<Duration, BuildError> {
            match s {
                None => Ok(Duration::from_secs(def)),
                Some(s) => crate::settings::parse_duration(&s).map_err(BuildError::Args),
            }
        };
        Ok(TimeRange {
            rate_window: d(a.rate_window, 60)?,
            max_skew: d(a.max_skew, 30)?,
        })
    }
}

#[async_trait::async_trait]
impl Probe for TimeRange {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let api = api(cx).await;
        let window = cx.settings.window;
        let metrics = "http_server_requests_seconds_count|jvm_memory_used_bytes";
        let fresh_q = format!("count({{__name__=~\"{metrics}\"}})");
        let age_q =
            format!("time() - max(max_over_time(timestamp({{__name__=~\"{metrics}\"}})[6h:1m]))");
        let grafana_date = async {
            if let Some(g) = cx.facts.get::<GrafanaInfo>() {
                return g.date.map(|d| (d, now()));
            }
            // Grafana's clock is a part of this check, not a need: without an answer it is
            // not compared (and the evidence says so).
            let req = cx
                .clients
                .http
                .client()
                .get(format!("{}/api/health", cx.settings.grafana_url));
            let a = cx
                .clients
                .http
                .send(
                    "GET /api/health on Grafana",
                    req,
                    Duration::from_secs(2).min(cx.timeout),
                    crate::clients::Lane::Chain,
                )
                .await
                .ok()?;
            Some((a.date()?, now()))
        };
        let (fresh, targets, gdate) =
            tokio::join!(api.instant(&fresh_q, None), api.targets(), grafana_date);
        let fresh = match fresh {
            Ok(f) => f.first().map(|s| s.value).unwrap_or(0.0),
            Err(e) => return call_failed(cx, &e),
        };
        let mut warns: Vec<String> = Vec::new();
        let mut fails: Vec<String> = Vec::new();
        let mut remedies: Vec<String> = Vec::new();
        let mut o_evidence = serde_json::Map::new();
        let win = window_str(window);
        if fresh <= 0.0 {
            match api.instant(&age_q, None).await {
                Ok(v) if !v.is_empty() => {
                    let a = v[0].value;
                    o_evidence.insert("newest_sample_age_s".into(), json!(a.round()));
                    let msg = format!("data stopped {} ago; your window is {win}", age(a));
                    if a > window.as_secs_f64() {
                        fails.push(msg);
                    } else {
                        warns.push(msg);
                    }
                    remedies.push(format!(
                        "# in Grafana, widen the time picker (top right) past {} to see the old data,\n# and find why it stopped: msa-doctor --only prometheus.targets\nkubectl -n {} get deploy,pods",
                        age(a),
                        cx.settings.namespace
                    ));
                }
                Ok(_) => {
                    fails.push("no sample of http_server_requests_seconds_count or jvm_memory_used_bytes in the last 6 h".into());
                    remedies.push("msa-doctor --only prometheus.targets    # are the services scraped at all?".into());
                }
                Err(e) => return call_failed(cx, &e),
            }
        }
        // The guide's rate windows against the scrape interval of the service targets.
        {
            let t = match targets {
                Ok(t) => t,
                Err(e) => return call_failed(cx, &e),
            };
            let index = TargetIndex::new(&t, &cx.settings.services, &cx.settings.namespace);
            let mine: Vec<&super::prom::Target> = t
                .active_targets
                .iter()
                .filter(|t| t.health == "up" && index.service_of(t).is_some())
                .collect();
            let mut interval = mine
                .iter()
                .filter_map(|t| prom_duration(&t.scrape_interval))
                .max();
            if interval.is_none() {
                // No interval in the targets API (VictoriaMetrics): the jobs' measured ones,
                // asked once per run.
                let by_job = match api.scrape_intervals().await {
                    Ok(m) => m,
                    Err(e) => return call_failed(cx, &e),
                };
                interval = mine
                    .iter()
                    .filter_map(|t| t.labels.get("job").and_then(|j| by_job.get(j)))
                    .max()
                    .copied();
            }
            if let Some(iv) = interval {
                o_evidence.insert("scrape_interval".into(), json!(window_str(iv)));
                let rw = self.rate_window;
                let fix = format!(
                    "# in the panels, let Grafana size the window:\nrate(http_server_requests_seconds_count{{uri=\"/api/orders\", method=\"POST\"}}[$__rate_interval]) * 60\n# or a window of at least 4 scrape intervals: [{}]\n# or scrape more often (prometheus.yml): scrape_interval: 15s",
                    window_str((iv * 4).max(Duration::from_secs(60)))
                );
                if rw < iv * 2 {
                    fails.push(format!(
                        "the guide's [{}] rate window is shorter than twice the {} scrape interval: rate() returns nothing",
                        window_str(rw),
                        window_str(iv)
                    ));
                    remedies.push(fix);
                } else if rw < iv * 4 {
                    warns.push(format!(
                        "the guide's [{}] rate window holds only about {} samples at the {} scrape interval: the graph has gaps",
                        window_str(rw),
                        (rw.as_secs_f64() / iv.as_secs_f64()).floor(),
                        window_str(iv)
                    ));
                    remedies.push(fix);
                }
            }
        }
        // Clocks.
        let mut skews = Vec::new();
        {
            let p = cx.facts.wait::<PromInfo>().await;
            let skew = p.server_time - p.local_time + p.rtt.as_secs_f64() / 2.0;
            o_evidence.insert(
                "prometheus_clock_skew_s".into(),
                json!((skew * 10.0).round() / 10.0),
            );
            if skew.abs() > self.max_skew.as_secs_f64() {
                skews.push(format!(
                    "Prometheus's clock is {:.0} s {}",
                    skew.abs(),
                    if skew > 0.0 { "ahead" } else { "behind" }
                ));
            }
        }
        if let Some((d, local)) = gdate {
            let gs = d
                .duration_since(std::time::UNIX_EPOCH)
                .map(|x| x.as_secs_f64())
                .unwrap_or(0.0);
            let skew = gs - local;
            o_evidence.insert("grafana_clock_skew_s".into(), json!(skew.round()));
            if skew.abs() > self.max_skew.as_secs_f64() + 1.0 {
                skews.push(format!(
                    "Grafana's clock is {:.0} s {}",
                    skew.abs(),
                    if skew > 0.0 { "ahead" } else { "behind" }
                ));
            }
        } else {
            o_evidence.insert(
                "grafana_clock".into(),
                json!("not compared: Grafana's /api/health gave no Date header in time"),
            );
        }
        if !skews.is_empty() {
            fails.push(format!(
                "{} of this machine's: \"Last 15 minutes\" means another time to each",
                skews.join(", ")
            ));
            remedies.push("# put this machine's clock right:\nsudo timedatectl set-ntp true    # Linux\nsudo sntp -sS time.apple.com     # macOS\nsudo hwclock -s                  # WSL after sleep".into());
        }
        let evidence = serde_json::Value::Object(o_evidence);
        if !fails.is_empty() {
            fails.extend(warns);
            return Outcome::fail(fails.join("; "))
                .evidence("time", evidence)
                .remedy(remedies.join("\n"));
        }
        if !warns.is_empty() {
            return Outcome::warn(warns.join("; "))
                .evidence("time", evidence)
                .remedy(remedies.join("\n"));
        }
        Outcome::pass(format!(
            "fresh data inside the last {win}, rate windows fit the scrape interval, clocks agree"
        ))
        .evidence("time", evidence)
    }
}
