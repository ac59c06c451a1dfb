//! The Prometheus end of the chain. [`PromApi`] reaches Prometheus directly
//! (`--prometheus-url`) or, by default, through Grafana's data source proxy
//! (`/api/datasources/proxy/uid/<uid>/api/v1/...`) with the login session, because the user
//! has only Grafana's port forwarded. Checks: `prometheus.api` and `prometheus.targets`.

use super::grafana::{Datasource, GrafanaSession, send};
use super::http::describe_reqwest_error;
use super::{BuildError, cut, kube as kubeprobe};
use crate::engine::{CheckCtx, Outcome, Probe};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Labels of a series or target.
pub type Labels = BTreeMap<String, String>;

/// How a Prometheus call failed.
#[derive(Debug, Clone)]
pub enum PromError {
    /// No answer: connection refused, timeout, or Grafana's proxy said 502/504.
    Unreachable(String),
    /// An HTTP status that is not Prometheus's envelope.
    Http {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus's own `status: error` envelope.
    Api {
        /// `bad_data`, `execution`, ...
        error_type: String,
        /// Its message.
        error: String,
    },
}

impl std::fmt::Display for PromError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromError::Unreachable(s) => write!(f, "{s}"),
            PromError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
            PromError::Api { error_type, error } => write!(f, "{error_type}: {error}"),
        }
    }
}

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
}

/// Active and dropped targets.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    /// Targets being scraped.
    #[serde(default)]
    pub active_targets: Vec<Target>,
    /// Targets relabelling dropped.
    #[serde(default)]
    pub dropped_targets: Vec<Target>,
}

/// A Prometheus HTTP API client, direct or through Grafana's data source proxy.
#[derive(Clone)]
pub struct PromApi {
    http: reqwest::Client,
    base: String,
    session: Option<Arc<GrafanaSession>>,
    timeout: Duration,
    /// `grafana-proxy (uid ...)` or the direct URL, for messages.
    pub via: String,
}

impl PromApi {
    /// From the run: `--prometheus-url`, else Grafana's proxy with the session and data source
    /// that `grafana.login` and `grafana.datasource` recorded.
    ///
    /// Through Grafana it waits for the session and the data source (the checks that use it
    /// are eager: the runner stops them if those facts never come).
    pub async fn from_ctx(cx: &CheckCtx) -> Result<PromApi, Outcome> {
        if let Some(u) = &cx.settings.prometheus_url {
            return Ok(PromApi {
                http: cx.clients.http.clone(),
                base: u.trim_end_matches('/').to_string(),
                session: None,
                timeout: cx.timeout,
                via: u.clone(),
            });
        }
        let s = cx.facts.wait::<GrafanaSession>().await;
        let d = cx.facts.wait::<Datasource>().await;
        Ok(PromApi::via_grafana(
            cx.clients.http.clone(),
            &cx.settings.grafana_url,
            &d.uid,
            &d.name,
            s,
            cx.timeout,
        ))
    }

    /// Through Grafana's data source proxy for the data source `uid`.
    pub fn via_grafana(
        http: reqwest::Client,
        grafana_url: &str,
        uid: &str,
        name: &str,
        session: Arc<GrafanaSession>,
        timeout: Duration,
    ) -> PromApi {
        PromApi {
            http,
            base: format!("{grafana_url}/api/datasources/proxy/uid/{uid}"),
            session: Some(session),
            timeout,
            via: format!("Grafana's proxy to data source {name:?}"),
        }
    }

    /// A direct client (tests, `explain --prometheus-url`).
    pub fn direct(http: reqwest::Client, url: &str, timeout: Duration) -> PromApi {
        PromApi {
            http,
            base: url.trim_end_matches('/').to_string(),
            session: None,
            timeout,
            via: url.to_string(),
        }
    }

    /// GETs `/api/v1/<path>` and returns the envelope's `data`.
    pub async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, PromError> {
        let url = format!("{}/api/v1/{path}", self.base);
        let mut req = self.http.get(&url).query(params).timeout(self.timeout);
        if let Some(s) = &self.session {
            req = s.apply(req);
        }
        let a = send(req)
            .await
            .map_err(|e| PromError::Unreachable(describe_reqwest_error(&e)))?;
        let json: Option<Value> = serde_json::from_slice(&a.body).ok();
        if let Some(j) = &json
            && let Some(status) = j.get("status").and_then(|s| s.as_str())
        {
            if status == "success" {
                return Ok(j.get("data").cloned().unwrap_or(Value::Null));
            }
            return Err(PromError::Api {
                error_type: j
                    .get("errorType")
                    .and_then(|s| s.as_str())
                    .unwrap_or("error")
                    .into(),
                error: j.get("error").and_then(|s| s.as_str()).unwrap_or("").into(),
            });
        }
        if self.session.is_some() && (a.status == 502 || a.status == 504) && a.body.is_empty() {
            return Err(PromError::Unreachable(format!(
                "Grafana's proxy answered {} with no body: Grafana cannot reach the data source URL",
                a.status
            )));
        }
        Err(PromError::Http {
            status: a.status,
            body: cut(&a.text(), 200),
        })
    }

    /// An instant query.
    pub async fn instant(&self, query: &str, at: Option<f64>) -> Result<Vec<Sample>, PromError> {
        let mut p = vec![("query", query.to_string())];
        if let Some(t) = at {
            p.push(("time", format!("{t:.3}")));
        }
        let data = self.get("query", &p).await?;
        let result = data.get("result").cloned().unwrap_or(Value::Null);
        match data.get("resultType").and_then(|t| t.as_str()) {
            Some("vector") => Ok(result
                .as_array()
                .map(|a| a.iter().filter_map(sample).collect())
                .unwrap_or_default()),
            Some("scalar") => Ok(point(&result)
                .map(|(time, value)| {
                    vec![Sample {
                        metric: Labels::new(),
                        time,
                        value,
                    }]
                })
                .unwrap_or_default()),
            _ => Ok(vec![]),
        }
    }

    /// A range query.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let p = [
            ("query", query.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
            ("step", format!("{:.3}", step.max(0.001))),
        ];
        let data = self.get("query_range", &p).await?;
        Ok(data
            .get("result")
            .and_then(|r| r.as_array())
            .map(|a| {
                a.iter()
                    .map(|s| Series {
                        metric: labels(s.get("metric")),
                        points: s
                            .get("values")
                            .and_then(|v| v.as_array())
                            .map(|v| v.iter().filter_map(point).collect())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Active and dropped targets.
    pub async fn targets(&self) -> Result<Targets, PromError> {
        let data = self.get("targets", &[("state", "any".to_string())]).await?;
        serde_json::from_value(data).map_err(|e| PromError::Http {
            status: 200,
            body: format!("unexpected /api/v1/targets shape: {e}"),
        })
    }

    /// Series matching a selector between two times.
    pub async fn series(
        &self,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<Labels>, PromError> {
        let p = [
            ("match[]", selector.to_string()),
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        let data = self.get("series", &p).await?;
        Ok(data
            .as_array()
            .map(|a| a.iter().map(|l| labels(Some(l))).collect())
            .unwrap_or_default())
    }

    /// Values of a label, optionally on series matching a selector, between two times.
    pub async fn label_values(
        &self,
        label: &str,
        selector: Option<&str>,
        start: f64,
        end: f64,
    ) -> Result<Vec<String>, PromError> {
        let mut p = vec![
            ("start", format!("{start:.3}")),
            ("end", format!("{end:.3}")),
        ];
        if let Some(s) = selector {
            p.push(("match[]", s.to_string()));
        }
        let data = self.get(&format!("label/{label}/values"), &p).await?;
        Ok(data
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }
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
    humantime::parse_duration(s).ok()
}

/// The scrape interval of a target, from `/api/v1/targets` (Prometheus) or, where the API
/// does not give it (VictoriaMetrics), from the gap between its last two `up` samples.
pub async fn scrape_interval(api: &PromApi, t: &Target) -> Option<Duration> {
    if let Some(d) = prom_duration(&t.scrape_interval) {
        return Some(d);
    }
    let (job, instance) = (t.labels.get("job")?, t.labels.get("instance")?);
    let sel = format!("up{{job={job:?}, instance={instance:?}}}");
    // Prometheus: timestamp() is the sample's own time. VictoriaMetrics: timestamp() is the
    // step's time, and tlast_over_time() (unknown to Prometheus) gives the sample's.
    let vm = format!("max(tlast_over_time({sel}[10m]))");
    let q = match api.instant(&vm, None).await {
        Ok(v) if !v.is_empty() => vm,
        _ => format!("max(timestamp({sel}))"),
    };
    let last = api.instant(&q, None).await.ok()?.first()?.value;
    let prev = api
        .instant(&q, Some(last - 0.001))
        .await
        .ok()?
        .first()?
        .value;
    let gap = last - prev;
    (gap > 0.0 && gap < 3600.0).then(|| Duration::from_secs_f64((gap * 10.0).round() / 10.0))
}

/// What `prometheus.api` learnt: Prometheus's clock and version.
#[derive(Debug, Clone)]
pub struct PromInfo {
    /// `time()` as Prometheus evaluated it.
    pub server_time: f64,
    /// This machine's clock when the answer came.
    pub local_time: f64,
    /// The round trip.
    pub rtt: Duration,
    /// `version` of buildinfo, when served.
    pub version: Option<String>,
}

/// The failure outcome of a Prometheus call, with a remedy that fits how it was reached.
pub fn call_failed(cx: &CheckCtx, api: &PromApi, what: &str, e: &PromError) -> Outcome {
    let mon = &cx.settings.monitoring_namespace;
    match e {
        PromError::Unreachable(s) => {
            let o = Outcome::fail(format!("Prometheus does not answer {what} via {}: {s}", api.via));
            if cx.settings.prometheus_url.is_some() {
                o.remedy(format!("kubectl port-forward svc/prometheus -n {mon} 9090:9090    # or the Service's real name: kubectl get svc -n {mon}"))
            } else {
                o.remedy(format!("kubectl -n {mon} get pods    # is Prometheus running?\n# Grafana > Connections > Data sources > Prometheus > Save & test"))
            }
        }
        PromError::Http { status, body } if *status == 401 || *status == 403 => Outcome::error(format!(
            "{what}: HTTP {status} from {} ({body}): the Grafana session may not query this data source",
            api.via
        ))
        .remedy("# log in as a user with the data source query permission (Admin), or use a service-account token:\nexport GRAFANA_TOKEN='glsa_...'"),
        PromError::Http { status, body } => Outcome::error(format!(
            "{what}: {} answered HTTP {status} with something that is not Prometheus's API: {body}",
            api.via
        )),
        PromError::Api { error_type, error } => Outcome::error(format!("{what}: Prometheus said {error_type}: {error}")),
    }
}

/// `kind = "prometheus.api"`: Prometheus answers queries, directly or through Grafana.
#[derive(Debug)]
pub struct ApiCheck;

impl ApiCheck {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| ApiCheck)
    }
}

#[async_trait::async_trait]
impl Probe for ApiCheck {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let api = match PromApi::from_ctx(cx).await {
            Ok(a) => a,
            Err(o) => return o,
        };
        let sent = std::time::Instant::now();
        let (t, build) = tokio::join!(
            api.instant("time()", None),
            api.get("status/buildinfo", &[])
        );
        let rtt = sent.elapsed();
        let samples = match t {
            Ok(s) => s,
            Err(e) => return call_failed(cx, &api, "a query", &e),
        };
        let Some(server_time) = samples.first().map(|s| s.value) else {
            return Outcome::error(format!("{} answered time() with no value", api.via));
        };
        let version = build.ok().and_then(|b| {
            b.get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        cx.facts.put(PromInfo {
            server_time,
            local_time: now(),
            rtt,
            version: version.clone(),
        });
        let v = version
            .map(|v| format!("Prometheus {v}"))
            .unwrap_or_else(|| "Prometheus".into());
        Outcome::pass(format!("{v} answers queries via {}", api.via)).evidence("via", &api.via)
    }
}

/// `kind = "prometheus.targets"`: every annotated pod of the services is an active target and
/// up; a dropped or down target is explained.
#[derive(Debug)]
pub struct TargetsCheck;

impl TargetsCheck {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| TargetsCheck)
    }
}

const POD_NAME: &str = "__meta_kubernetes_pod_name";
const POD_NS: &str = "__meta_kubernetes_namespace";
const ANN_SCRAPE: &str = "__meta_kubernetes_pod_annotation_prometheus_io_scrape";

/// Whether a target belongs to a service: its pod name starts with `<svc>-`, or a label names it.
pub fn belongs(t: &Target, svc: &str, ns: &str) -> bool {
    let prefix = format!("{svc}-");
    if let Some(tns) = t
        .discovered_labels
        .get(POD_NS)
        .or_else(|| t.labels.get("namespace"))
        .or_else(|| t.labels.get("kubernetes_namespace"))
        && tns != ns
    {
        return false;
    }
    let pod = t
        .discovered_labels
        .get(POD_NAME)
        .or_else(|| t.labels.get("pod"))
        .or_else(|| t.labels.get("kubernetes_pod_name"));
    if let Some(p) = pod {
        return p.starts_with(&prefix);
    }
    [
        "app",
        "application",
        "service",
        "job",
        "app_kubernetes_io_name",
    ]
    .iter()
    .any(|k| t.labels.get(*k).is_some_and(|v| v == svc))
}

/// A scrape error in words, with what to do.
pub fn classify_scrape_error(cx: &CheckCtx, svc: &str, t: &Target) -> (String, String) {
    let ns = &cx.settings.namespace;
    let err = t.last_error.as_str();
    let lower = err.to_ascii_lowercase();
    let url = reqwest::Url::parse(&t.scrape_url).ok();
    let path = url
        .as_ref()
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let addr = url
        .as_ref()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(0)
            )
        })
        .unwrap_or_default();
    let has = |code: &str| {
        lower.contains(&format!("status {code}"))
            || lower.contains(&format!(": {code};"))
            || lower.contains(&format!(" {code} "))
            || lower.ends_with(&format!(" {code}"))
    };
    if has("404") {
        if path != kubeprobe::SPRING_PATH {
            let mut p = BTreeMap::new();
            p.insert(
                kubeprobe::PATH.to_string(),
                kubeprobe::SPRING_PATH.to_string(),
            );
            (
                format!(
                    "{svc} answers 404 on {path}: it is scraped at {path}, Spring Boot serves {}",
                    kubeprobe::SPRING_PATH
                ),
                kubeprobe::patch_line(ns, svc, &p),
            )
        } else {
            (
                format!("{svc} answers 404 on {path}: the actuator's Prometheus endpoint is not exposed"),
                "# build.gradle: implementation 'io.micrometer:micrometer-registry-prometheus'  (Maven: io.micrometer:micrometer-registry-prometheus)\n# application.yml:\nmanagement:\n  endpoints:\n    web:\n      exposure:\n        include: health,info,prometheus".to_string(),
            )
        }
    } else if has("401") || has("403") {
        (
            format!("{svc} refuses the scrape of {path} ({}): a security filter protects /actuator", if has("401") { "401 Unauthorized" } else { "403 Forbidden" }),
            "// Spring Security: let Prometheus read the actuator endpoints\n@Bean\nSecurityFilterChain actuator(HttpSecurity http) throws Exception {\n    http.securityMatcher(\"/actuator/**\")\n        .authorizeHttpRequests(a -> a.anyRequest().permitAll());\n    return http.build();\n}".to_string(),
        )
    } else if lower.contains("connection refused") {
        (
            format!(
                "nothing listens at {addr} for {svc} (connection refused): the app is not up, or it listens on another port"
            ),
            format!(
                "kubectl -n {ns} logs deploy/{svc} --tail=50    # did the web server start, and on which port?\nkubectl -n {ns} get pod -l app={svc} -o jsonpath='{{.items[0].spec.containers[*].ports}}'\n# then make prometheus.io/port name the port the app listens on (server.port or management.server.port)"
            ),
        )
    } else if lower.contains("deadline exceeded")
        || lower.contains("timeout")
        || lower.contains("timed out")
    {
        (
            format!(
                "the scrape of {svc} at {addr} times out: a NetworkPolicy may block Prometheus, or the app is too slow"
            ),
            format!(
                "kubectl get networkpolicy -n {ns}\n# allow the monitoring namespace in:\ncat <<'EOF' | kubectl apply -f -\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: allow-prometheus\n  namespace: {ns}\nspec:\n  podSelector: {{}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              kubernetes.io/metadata.name: {}\nEOF",
                cx.settings.monitoring_namespace
            ),
        )
    } else if lower.contains("no such host") {
        (
            format!(
                "the scrape address of {svc} does not resolve: {}",
                cut(err, 160)
            ),
            format!("kubectl -n {ns} get pods -o wide    # the pod IPs Prometheus should use"),
        )
    } else if lower.contains("status 5") || lower.contains("code returned") && lower.contains(": 5")
    {
        (
            format!(
                "{svc} answers the scrape with a server error: {}",
                cut(err, 160)
            ),
            format!("kubectl -n {ns} logs deploy/{svc} --tail=100"),
        )
    } else {
        (
            format!("the scrape of {svc} fails: {}", cut(err, 200)),
            format!("kubectl -n {ns} logs deploy/{svc} --tail=100"),
        )
    }
}

/// Why relabelling dropped a discovered pod.
fn drop_reason(t: &Target) -> String {
    let d = &t.discovered_labels;
    let job = d.get("job").cloned().unwrap_or_default();
    // Operator jobs (serviceMonitor/..., podMonitor/...) drop what their selector does not
    // match; annotations mean nothing to them.
    if job.starts_with("serviceMonitor/") || job.starts_with("podMonitor/") {
        return format!(
            "the selector of {job} does not match it (annotations are ignored by the Prometheus operator)"
        );
    }
    if !job.is_empty() && !job.contains("pod") {
        return format!("the relabel rules of job {job} drop it");
    }
    match d.get(ANN_SCRAPE).map(String::as_str) {
        None => "the pod has no prometheus.io/scrape annotation, so the keep rule of the kubernetes-pods job drops it".into(),
        Some("true") => match d.get("__meta_kubernetes_pod_phase").map(String::as_str) {
            Some(p @ ("Pending" | "Failed" | "Succeeded")) => format!("the pod is {p}"),
            _ if d.get("__meta_kubernetes_pod_annotation_prometheus_io_scrape_slow").is_some_and(|v| v == "true") => {
                "prometheus.io/scrape-slow moves it to the kubernetes-pods-slow job".into()
            }
            _ => "a relabel rule of the scrape config drops it".into(),
        },
        Some(v) => format!("prometheus.io/scrape is {v:?}; the keep rule wants exactly \"true\""),
    }
}

#[async_trait::async_trait]
impl Probe for TargetsCheck {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let api = match PromApi::from_ctx(cx).await {
            Ok(a) => a,
            Err(o) => return o,
        };
        let ns = cx.settings.namespace.clone();
        let kube_pods = async {
            let client = cx.kube().await.ok()?;
            let deploys: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
                kube::Api::namespaced(client.clone(), &ns);
            let pods_api: kube::Api<k8s_openapi::api::core::v1::Pod> =
                kube::Api::namespaced(client.clone(), &ns);
            // Both lists at once; pods are matched to their Deployment's selector here.
            let lp = kube::api::ListParams::default();
            let (list, pods) = tokio::join!(deploys.list(&lp), pods_api.list(&lp));
            let (list, pods) = (list.ok()?, pods.ok()?);
            let mut out: BTreeMap<String, (i32, Vec<String>)> = BTreeMap::new();
            for d in &list.items {
                let Some(name) = d.metadata.name.clone() else {
                    continue;
                };
                if !cx.settings.services.contains(&name) {
                    continue;
                }
                let selector = d.spec.selector.match_labels.clone().unwrap_or_default();
                let names: Vec<String> = pods
                    .items
                    .iter()
                    .filter(|p| {
                        !selector.is_empty()
                            && selector.iter().all(|(k, v)| {
                                p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)
                            })
                    })
                    .filter_map(|p| p.metadata.name.clone())
                    .collect();
                out.insert(name, (d.spec.replicas.unwrap_or(1), names));
            }
            Some(out)
        };
        let budget = cx
            .timeout
            .saturating_sub(Duration::from_millis(200))
            .max(Duration::from_millis(100));
        let (targets, pods) = tokio::join!(api.targets(), tokio::time::timeout(budget, kube_pods));
        let targets = match targets {
            Ok(t) => t,
            Err(e) => return call_failed(cx, &api, "/api/v1/targets", &e),
        };
        let pods = pods.ok().flatten();
        let any_pod_sd = targets
            .active_targets
            .iter()
            .chain(&targets.dropped_targets)
            .any(|t| t.discovered_labels.contains_key(POD_NAME));
        let mut problems = Vec::new();
        let mut remedies = Vec::new();
        let mut ok = Vec::new();
        let mut per_service = serde_json::Map::new();
        for svc in &cx.settings.services {
            let active: Vec<&Target> = targets
                .active_targets
                .iter()
                .filter(|t| belongs(t, svc, &ns))
                .collect();
            let dropped: Vec<&Target> = targets
                .dropped_targets
                .iter()
                .filter(|t| belongs(t, svc, &ns))
                .collect();
            if let Some(up) = active.iter().find(|t| t.health == "up") {
                ok.push(svc.clone());
                per_service.insert(svc.clone(), serde_json::json!({"health": "up", "scrape_url": up.scrape_url, "scrape_interval": up.scrape_interval}));
                continue;
            }
            if let Some(t) = active.first() {
                if t.health == "down" {
                    let (why, fix) = classify_scrape_error(cx, svc, t);
                    per_service.insert(svc.clone(), serde_json::json!({"health": "down", "scrape_url": t.scrape_url, "last_error": t.last_error}));
                    problems.push(why);
                    remedies.push(fix);
                } else {
                    per_service.insert(
                        svc.clone(),
                        serde_json::json!({"health": t.health, "scrape_url": t.scrape_url}),
                    );
                    problems.push(format!(
                        "{svc} is discovered but not scraped yet ({})",
                        t.scrape_url
                    ));
                    remedies.push(
                        "# wait one scrape interval and run again, or: msa-doctor --wait 1m".into(),
                    );
                }
                continue;
            }
            if let Some(t) = dropped.first() {
                let why = drop_reason(t);
                per_service.insert(
                    svc.clone(),
                    serde_json::json!({"dropped": why, "pod": t.discovered_labels.get(POD_NAME)}),
                );
                problems.push(format!("{svc} is dropped by relabelling: {why}"));
                let mut p = BTreeMap::new();
                p.insert(kubeprobe::SCRAPE.to_string(), "true".to_string());
                p.insert(
                    kubeprobe::PATH.to_string(),
                    kubeprobe::SPRING_PATH.to_string(),
                );
                remedies.push(kubeprobe::patch_line(&ns, svc, &p));
                continue;
            }
            // Not discovered at all.
            match pods.as_ref().and_then(|p| p.get(svc)) {
                Some((replicas, names)) if names.is_empty() => {
                    per_service.insert(
                        svc.clone(),
                        serde_json::json!({"pods": 0, "replicas": replicas}),
                    );
                    problems.push(format!(
                        "{svc} has no pod (replicas {replicas}): nothing to scrape"
                    ));
                    remedies.push(format!(
                        "kubectl -n {ns} get deploy {svc}\nkubectl -n {ns} describe deploy {svc}\nkubectl -n {ns} scale deploy {svc} --replicas=1    # if it was scaled to 0"
                    ));
                }
                Some((_, names)) => {
                    per_service.insert(
                        svc.clone(),
                        serde_json::json!({"pods": names, "discovered": false}),
                    );
                    problems.push(format!(
                        "{svc}'s pods ({}) are not discovered by Prometheus: no kubernetes pod discovery job covers namespace {ns}",
                        names.join(", ")
                    ));
                    remedies.push(pods_job_yaml());
                }
                None if pods.is_some() => {
                    per_service.insert(svc.clone(), serde_json::json!({"deployment": false}));
                    problems.push(format!(
                        "{svc}: no Deployment of that name in {ns}, and no target"
                    ));
                    remedies.push(format!("kubectl get deploy -n {ns}"));
                }
                None => {
                    per_service.insert(svc.clone(), serde_json::json!({"discovered": false}));
                    problems.push(format!(
                        "{svc} is not discovered by Prometheus (no active or dropped target)"
                    ));
                    remedies.push(if any_pod_sd {
                        format!(
                            "kubectl -n {ns} get pods -l app={svc}    # is it deployed and running?"
                        )
                    } else {
                        pods_job_yaml()
                    });
                }
            }
        }
        // Other annotated pods of the namespace that are down (an exporter, a gateway).
        let mut others_down = Vec::new();
        for t in &targets.active_targets {
            if t.health != "down" || cx.settings.services.iter().any(|s| belongs(t, s, &ns)) {
                continue;
            }
            if t.discovered_labels.get(POD_NS).is_some_and(|n| n == &ns) {
                let name = t
                    .discovered_labels
                    .get(POD_NAME)
                    .cloned()
                    .unwrap_or_else(|| t.scrape_url.clone());
                others_down.push(format!("{name}: {}", cut(&t.last_error, 120)));
            }
        }
        let mut dedup = Vec::new();
        for r in remedies {
            if !dedup.contains(&r) {
                dedup.push(r);
            }
        }
        let o = if problems.is_empty() {
            let mut msg = format!("all {} services are scraped and up", ok.len());
            if !others_down.is_empty() {
                msg.push_str(&format!("; also down in {ns}: {}", others_down.join("; ")));
            }
            Outcome::pass(msg)
        } else {
            Outcome::fail(problems.join(" | ")).remedy(dedup.join("\n"))
        };
        o.evidence("services", Value::Object(per_service))
            .evidence("other_targets_down", &others_down)
    }
}

/// The kubernetes-pods scrape job of the community Helm chart, as a remedy.
pub fn pods_job_yaml() -> String {
    "# prometheus.yml (or the chart's values: serverFiles.prometheus.yml.scrape_configs):\n- job_name: kubernetes-pods\n  kubernetes_sd_configs:\n    - role: pod\n  relabel_configs:\n    - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]\n      action: keep\n      regex: true\n    - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]\n      action: replace\n      target_label: __metrics_path__\n      regex: (.+)\n    - source_labels: [__address__, __meta_kubernetes_pod_annotation_prometheus_io_port]\n      action: replace\n      regex: ([^:]+)(?::\\d+)?;(\\d+)\n      replacement: $1:$2\n      target_label: __address__\n    - source_labels: [__meta_kubernetes_namespace]\n      target_label: namespace\n    - source_labels: [__meta_kubernetes_pod_name]\n      target_label: pod".to_string()
}
