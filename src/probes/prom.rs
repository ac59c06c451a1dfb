//! The Prometheus end of the chain: `prometheus.api` and `prometheus.targets`. The client
//! ([`PromApi`]) lives in [`crate::clients::prom`]; [`api`] builds it for a check, through
//! Grafana's data source proxy (the default) or `--prometheus-url`.

use super::{BuildError, cut, kube as kubeprobe};
use crate::engine::{CheckCtx, Outcome, Probe};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

pub use crate::clients::grafana::GrafanaSession;
pub use crate::clients::prom::{
    Labels, PromApi, PromError, Sample, Series, Target, Targets, now, prom_duration,
    scrape_interval,
};
use crate::clients::{CallError, ErrorKind};

/// The Prometheus client of a check: `--prometheus-url`, else Grafana's proxy with the
/// session and data source that `grafana.login` and `grafana.datasource` recorded.
///
/// Through Grafana it waits for the session and the data source (the checks that use it are
/// eager: the runner stops them if those facts never come).
pub async fn api(cx: &CheckCtx) -> PromApi {
    if let Some(u) = &cx.settings.prometheus_url {
        return PromApi::direct(
            cx.clients.http.clone(),
            u,
            cx.timeout,
            cx.clients.prom_memo(u),
        )
        .with_deadline(cx.deadline);
    }
    let s = cx.facts.wait::<GrafanaSession>().await;
    let d = cx.facts.wait::<super::grafana::Datasource>().await;
    PromApi::via_grafana(
        cx.clients.http.clone(),
        &cx.settings.grafana_url,
        &d.uid,
        &d.name,
        s,
        cx.timeout,
        cx.clients.prom_memo(&format!("grafana:{}", d.uid)),
    )
    .with_deadline(cx.deadline)
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

/// The outcome of a check whose Prometheus answer failed: `error`, naming the call and why.
/// A failed answer is never evidence: the check neither fails with a guessed cause nor passes.
pub fn call_failed(cx: &CheckCtx, e: &CallError) -> Outcome {
    let o = Outcome::error(e.to_string()).evidence("failed_call", &e.call);
    match &e.kind {
        ErrorKind::Forbidden(_) if cx.settings.prometheus_url.is_none() => o.remedy(
            "# log in as a user with the data source query permission (Admin), or use a service-account token:\nexport GRAFANA_TOKEN='glsa_...'",
        ),
        ErrorKind::TimedOut(_) => o.remedy(format!(
            "# a slow answer, not a diagnosis: run again with a longer deadline\nmsa-doctor --timeout {}s",
            (cx.timeout.as_secs() * 3).max(10)
        )),
        _ => o,
    }
}

/// `prometheus.api`'s own finding when no answer comes: Prometheus is not reachable the way
/// the checks reach it. Other failures are [`call_failed`].
fn unreachable(cx: &CheckCtx, api: &PromApi, e: &CallError) -> Outcome {
    let mon = &cx.settings.monitoring_namespace;
    if !e.is_unreachable() {
        return call_failed(cx, e);
    }
    let o = Outcome::fail(format!(
        "Prometheus does not answer via {}: {}",
        api.via,
        e.reason()
    ))
    .evidence("failed_call", &e.call);
    if cx.settings.prometheus_url.is_some() {
        o.remedy(format!("kubectl port-forward svc/prometheus -n {mon} 9090:9090    # or the Service's real name: kubectl get svc -n {mon}"))
    } else {
        o.remedy(format!("kubectl -n {mon} get pods    # is Prometheus running?\n# Grafana > Connections > Data sources > Prometheus > Save & test"))
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
        // Its own subject: never queued behind the other checks' queries.
        let api = api(cx).await.in_lane(crate::clients::Lane::Critical);
        let sent = std::time::Instant::now();
        let (t, build) = tokio::join!(
            api.instant("time()", None),
            api.get("status/buildinfo", &[])
        );
        let rtt = sent.elapsed();
        let samples = match t {
            Ok(s) => s,
            Err(e) => return unreachable(cx, &api, &e),
        };
        let Some(server_time) = samples.first().map(|s| s.value) else {
            return Outcome::error(format!("{} answered time() with no value", api.via));
        };
        // buildinfo is optional (VictoriaMetrics and older servers lack it): only the version.
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

/// The service a label set belongs to: a pod name `<service>-...` (the longest service that
/// prefixes it at a dash), else a label whose value is the service's name.
fn service_by_labels<'a, 'b>(
    pod: Option<&'b String>,
    labels: impl Iterator<Item = Option<&'b String>>,
    services: &HashSet<&'a str>,
) -> Option<&'a str> {
    if let Some(p) = pod {
        return p
            .match_indices('-')
            .map(|(i, _)| &p[..i])
            .rev()
            .find_map(|prefix| services.get(prefix).copied());
    }
    labels
        .flatten()
        .find_map(|v| services.get(v.as_str()).copied())
}

/// Targets grouped by service once, so per-service work is linear in the number of targets.
pub struct TargetIndex<'a> {
    services: HashSet<&'a str>,
    ns: &'a str,
    active: HashMap<&'a str, Vec<&'a Target>>,
    dropped: HashMap<&'a str, Vec<&'a Target>>,
}

impl<'a> TargetIndex<'a> {
    /// Groups the targets of `ns` by the service they belong to.
    pub fn new(targets: &'a Targets, services: &'a [String], ns: &'a str) -> Self {
        let mut ix = TargetIndex {
            services: services.iter().map(String::as_str).collect(),
            ns,
            active: HashMap::new(),
            dropped: HashMap::new(),
        };
        let mut active: HashMap<&'a str, Vec<&'a Target>> = HashMap::new();
        let mut dropped: HashMap<&'a str, Vec<&'a Target>> = HashMap::new();
        for t in &targets.active_targets {
            if let Some(s) = ix.service_of(t) {
                active.entry(s).or_default().push(t);
            }
        }
        for t in &targets.dropped_targets {
            if let Some(s) = ix.service_of(t) {
                dropped.entry(s).or_default().push(t);
            }
        }
        ix.active = active;
        ix.dropped = dropped;
        ix
    }

    /// The service a target belongs to: in the namespace, its pod named `<service>-...`, or a
    /// label naming the service.
    pub fn service_of(&self, t: &Target) -> Option<&'a str> {
        if let Some(tns) = t
            .discovered_labels
            .get(POD_NS)
            .or_else(|| t.labels.get("namespace"))
            .or_else(|| t.labels.get("kubernetes_namespace"))
            && tns != self.ns
        {
            return None;
        }
        let pod = t
            .discovered_labels
            .get(POD_NAME)
            .or_else(|| t.labels.get("pod"))
            .or_else(|| t.labels.get("kubernetes_pod_name"));
        let labels = [
            "app",
            "application",
            "service",
            "job",
            "app_kubernetes_io_name",
        ]
        .into_iter()
        .map(|k| t.labels.get(k));
        service_by_labels(pod, labels, &self.services)
    }

    /// A service's active and dropped targets.
    pub fn of(&self, svc: &str) -> (Vec<&'a Target>, Vec<&'a Target>) {
        (
            self.active.get(svc).cloned().unwrap_or_default(),
            self.dropped.get(svc).cloned().unwrap_or_default(),
        )
    }
}

/// Samples grouped by the service they belong to (a label names it, or its pod is
/// `<service>-...`), once.
pub fn samples_by_service<'a>(
    samples: &'a [Sample],
    services: &'a [String],
) -> HashMap<&'a str, Vec<&'a Sample>> {
    let set: HashSet<&str> = services.iter().map(String::as_str).collect();
    let mut out: HashMap<&str, Vec<&Sample>> = HashMap::new();
    for s in samples {
        let by_label = ["application", "exported_application", "app", "service"]
            .into_iter()
            .find_map(|k| s.metric.get(k).and_then(|v| set.get(v.as_str()).copied()));
        let set = &set;
        let by_pod = move || {
            ["pod", "kubernetes_pod_name"]
                .into_iter()
                .find_map(|k| service_by_labels(s.metric.get(k), std::iter::empty(), set))
        };
        if let Some(svc) = by_label.or_else(by_pod) {
            out.entry(svc).or_default().push(s);
        }
    }
    out
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
        let api = api(cx).await;
        let ns = cx.settings.namespace.clone();
        // The services' Deployments and pods, to say why a service has no target. Optional:
        // without them the message says less, never something else.
        let kube_pods = async {
            let client = cx.kube().await.ok()?;
            let memo = &cx.clients.kube_memo;
            let (list, pods) = tokio::join!(
                memo.deployments(&client, &ns, cx.timeout),
                memo.pods(&client, &ns, cx.timeout)
            );
            let (list, pods) = (list.ok()?, pods.ok()?);
            let mut out: BTreeMap<String, (i32, Vec<String>)> = BTreeMap::new();
            for d in list.iter() {
                let Some(name) = d.metadata.name.clone() else {
                    continue;
                };
                if !cx.settings.services.contains(&name) {
                    continue;
                }
                let selector = d.spec.selector.match_labels.clone().unwrap_or_default();
                let names: Vec<String> = pods
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
            Err(e) => return call_failed(cx, &e),
        };
        let pods = pods.ok().flatten();
        let index = TargetIndex::new(&targets, &cx.settings.services, &ns);
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
            let (active, dropped) = index.of(svc);
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
            if t.health != "down" || index.service_of(t).is_some() {
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
