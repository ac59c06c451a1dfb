//! The cluster end of the chain: `k8s.reachable` (the API answers) and
//! `k8s.scrape-annotations` (each service's pod template asks Prometheus to scrape it, with a
//! path and port that serve metrics), plus lookups other checks use (Grafana's and
//! Prometheus's Services, pods by Deployment).

use super::BuildError;
use crate::clients::kube as kc;
use crate::engine::{CheckCtx, KubeUnavailable, Outcome, Probe};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, PodTemplateSpec, Service};
use std::collections::BTreeMap;
use std::time::Duration;

/// The scrape annotation and its companions.
pub const SCRAPE: &str = "prometheus.io/scrape";
/// The metrics path annotation.
pub const PATH: &str = "prometheus.io/path";
/// The metrics port annotation.
pub const PORT: &str = "prometheus.io/port";
/// Where Spring Boot's Micrometer registry serves Prometheus text.
pub const SPRING_PATH: &str = "/actuator/prometheus";

/// Grafana's Service, as `access.grafana` explains a dead tunnel with it.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    /// The Service's name.
    pub name: String,
    /// Its first port.
    pub port: Option<i32>,
    /// How many ready addresses its Endpoints have.
    pub ready_endpoints: usize,
}

/// Why Grafana's Service was not found.
#[derive(Debug)]
pub enum ServiceLookup {
    /// No `svc/grafana` in the namespace; Grafana-looking Services elsewhere (ns, name, port).
    Missing {
        /// `(namespace, name, port)` of Services whose name contains "grafana".
        others: Vec<(String, String, i32)>,
    },
    /// The API failed.
    Api(String),
}

/// Looks up `svc/grafana` in `ns`, its port and its ready endpoints.
pub async fn grafana_service(
    client: &kube::Client,
    ns: &str,
    timeout: Duration,
) -> Result<ServiceInfo, ServiceLookup> {
    match kc::get_in::<Service>(client, ns, "grafana", timeout).await {
        Ok(Some(svc)) => {
            let port = svc
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map(|p| p.port);
            let ready = match kc::get_in::<Endpoints>(client, ns, "grafana", timeout).await {
                Ok(Some(ep)) => ep
                    .subsets
                    .unwrap_or_default()
                    .iter()
                    .map(|s| s.addresses.as_ref().map_or(0, |a| a.len()))
                    .sum(),
                _ => 0,
            };
            Ok(ServiceInfo {
                name: "grafana".into(),
                port,
                ready_endpoints: ready,
            })
        }
        Ok(None) => {
            let others = match kc::list_all::<Service>(client, timeout).await {
                Ok(list) => list
                    .into_iter()
                    .filter_map(|s| {
                        let name = s.metadata.name.clone()?;
                        if !name.contains("grafana") {
                            return None;
                        }
                        let port = s.spec.as_ref()?.ports.as_ref()?.first()?.port;
                        Some((s.metadata.namespace.clone().unwrap_or_default(), name, port))
                    })
                    .collect(),
                Err(_) => vec![],
            };
            Err(ServiceLookup::Missing { others })
        }
        Err(e) => Err(ServiceLookup::Api(e.to_string())),
    }
}

/// The in-cluster URL of a Prometheus Service in `ns` (a name with "prometheus", port 9090
/// or 80), when there is one.
pub async fn prometheus_service(
    memo: &crate::clients::KubeMemo,
    client: &kube::Client,
    ns: &str,
    timeout: Duration,
) -> Option<String> {
    let list = memo.services(client, ns, timeout).await.ok()?;
    let mut best: Option<(i32, String)> = None;
    for s in list.iter() {
        let Some(name) = s.metadata.name.clone() else {
            continue;
        };
        let lname = name.to_ascii_lowercase();
        if !lname.contains("prometheus")
            || lname.contains("operator")
            || lname.contains("alertmanager")
            || lname.contains("exporter")
            || lname.contains("pushgateway")
        {
            continue;
        }
        let ports = s
            .spec
            .as_ref()
            .and_then(|sp| sp.ports.clone())
            .unwrap_or_default();
        for p in ports {
            let score = match p.port {
                9090 => 3,
                80 => 2,
                _ => 1,
            } + if lname == "prometheus" || lname.ends_with("prometheus-server") {
                2
            } else {
                0
            };
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((
                    score,
                    format!("http://{name}.{ns}.svc.cluster.local:{}", p.port),
                ));
            }
        }
    }
    best.map(|(_, u)| u)
}

/// The reason a cluster check cannot run, as an outcome: `skip` under `--no-kube`, else `error`.
pub fn unavailable(u: &KubeUnavailable) -> Outcome {
    if u.disabled {
        Outcome::skip(u.reason.clone())
    } else {
        Outcome::error(format!("no cluster access: {}", u.reason)).remedy(
            "# point msa-doctor at the cluster (for EKS):\naws eks update-kubeconfig --name <cluster> --region <region>\nkubectl get ns    # must work first\n# or run without cluster checks:\nmsa-doctor --no-kube",
        )
    }
}

/// `kind = "kube.reachable"`: the Kubernetes API answers and the namespace exists.
#[derive(Debug)]
pub struct Reachable;

impl Reachable {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| Reachable)
    }
}

#[async_trait::async_trait]
impl Probe for Reachable {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let client = match cx.kube().await {
            Ok(c) => c,
            Err(u) => return unavailable(&u),
        };
        let ns = &cx.settings.namespace;
        let version = match kc::version(&client, cx.remaining()).await {
            Ok(v) => v,
            Err(e) => {
                let code = match &e.kind {
                    crate::clients::ErrorKind::Forbidden(_) => Some(401),
                    _ => None,
                };
                let text = e.reason();
                return match code {
                    Some(401) => Outcome::fail(format!("the cluster refused the credentials of the kubeconfig: {text}"))
                        .remedy("# EKS credentials expire; refresh them:\naws sts get-caller-identity\naws eks update-kubeconfig --name <cluster> --region <region>"),
                    _ => Outcome::fail(format!("the Kubernetes API does not answer: {text}"))
                        .remedy("kubectl cluster-info\nkubectl config current-context\n# for EKS:\naws eks update-kubeconfig --name <cluster> --region <region>"),
                };
            }
        };
        use k8s_openapi::api::core::v1::Namespace;
        let exists = match kc::get_cluster::<Namespace>(&client, ns, cx.remaining()).await {
            Ok(Some(_)) => Some(true),
            Ok(None) => Some(false),
            Err(_) => None, // may not read namespaces; the next checks will tell
        };
        let context = cx
            .clients
            .kube_context()
            .unwrap_or_else(|| "in-cluster".into());
        match exists {
            Some(false) => {
                let names: Vec<String> = kc::list_all::<Namespace>(&client, cx.remaining())
                    .await
                    .map(|l| l.into_iter().filter_map(|n| n.metadata.name).collect())
                    .unwrap_or_default();
                Outcome::fail(format!("the cluster has no namespace {ns:?} (context {context})"))
                    .evidence("namespaces", &names)
                    .remedy(format!(
                        "kubectl get ns\n# then name the right one:\nmsa-doctor --namespace <namespace>\n# or create the guide's namespace and deploy the services into it:\nkubectl create namespace {ns}"
                    ))
            }
            _ => Outcome::pass(format!(
                "Kubernetes {}.{} answers (context {context})",
                version.major, version.minor
            ))
            .evidence("context", &context)
            .evidence("git_version", &version.git_version),
        }
    }
}

/// `kind = "kube.scrape-annotations"`: every service's pod template carries the scrape
/// annotations, with a path and port that serve metrics.
#[derive(Debug)]
pub struct ScrapeAnnotations;

impl ScrapeAnnotations {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| ScrapeAnnotations)
    }
}

/// What is wrong with one Deployment's annotations.
#[derive(Debug, Default, Clone)]
pub struct AnnotationFindings {
    /// Problems, one line each.
    pub problems: Vec<String>,
    /// Findings that do not stop the scrape (it works if the app listens there), one line each.
    pub warnings: Vec<String>,
    /// The annotations the pod template should get.
    pub patch: BTreeMap<String, String>,
}

fn declared_ports(t: &PodTemplateSpec) -> Vec<i32> {
    t.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.clone().unwrap_or_default())
                .map(|p| p.container_port)
                .collect()
        })
        .unwrap_or_default()
}

fn looks_spring(t: &PodTemplateSpec) -> bool {
    let Some(spec) = t.spec.as_ref() else {
        return true;
    };
    // The guide's services are Spring Boot; say otherwise only when the pod clearly is not.
    let images: String = spec
        .containers
        .iter()
        .filter_map(|c| c.image.clone())
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    ![
        "nginx", "node", "python", "golang", "redis", "mysql", "postgres", "kafka",
    ]
    .iter()
    .any(|w| images.contains(&format!("/{w}")) || images.starts_with(w))
}

/// Inspects one Deployment's metadata and pod template annotations.
pub fn inspect(d: &Deployment) -> AnnotationFindings {
    let empty = BTreeMap::new();
    inspect_template(
        d.metadata.annotations.as_ref().unwrap_or(&empty),
        &d.spec.template,
    )
}

/// Inspects a workload's own annotations and its pod template (Deployment, StatefulSet,
/// DaemonSet alike).
pub fn inspect_template(
    meta_ann: &BTreeMap<String, String>,
    template: &PodTemplateSpec,
) -> AnnotationFindings {
    let mut f = AnnotationFindings::default();
    let empty = BTreeMap::new();
    let tmpl_ann = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .unwrap_or(&empty);
    let ports = declared_ports(template);
    match tmpl_ann.get(SCRAPE).map(String::as_str) {
        Some("true") => {}
        Some(other) => {
            f.problems.push(format!("{SCRAPE} is {other:?} on the pod template; Prometheus keeps only the exact string \"true\""));
            f.patch.insert(SCRAPE.into(), "true".into());
        }
        None if meta_ann.contains_key(SCRAPE) => {
            f.problems.push(format!("{SCRAPE} is on the Deployment's metadata, not on spec.template.metadata, so its pods never get it"));
            f.patch.insert(SCRAPE.into(), "true".into());
        }
        None => {
            f.problems
                .push(format!("the pod template has no {SCRAPE}: \"true\""));
            f.patch.insert(SCRAPE.into(), "true".into());
        }
    }
    let spring = looks_spring(template);
    match tmpl_ann.get(PATH) {
        None if spring => {
            let on_meta = if meta_ann.contains_key(PATH) {
                " (it is on the Deployment's metadata only)"
            } else {
                ""
            };
            f.problems.push(format!("no {PATH} on the pod template{on_meta}: Prometheus scrapes /metrics, Spring Boot serves {SPRING_PATH}"));
            f.patch.insert(
                PATH.into(),
                meta_ann
                    .get(PATH)
                    .cloned()
                    .unwrap_or_else(|| SPRING_PATH.into()),
            );
        }
        Some(p) if spring && p != SPRING_PATH && p.starts_with("/actuator") => {
            f.problems.push(format!(
                "{PATH} is {p:?}; Micrometer's Prometheus endpoint is {SPRING_PATH}"
            ));
            f.patch.insert(PATH.into(), SPRING_PATH.into());
        }
        Some(p) if !p.starts_with('/') => {
            f.problems
                .push(format!("{PATH} is {p:?}, which does not start with '/'"));
            f.patch.insert(
                PATH.into(),
                if spring {
                    SPRING_PATH.into()
                } else {
                    format!("/{p}")
                },
            );
        }
        _ => {}
    }
    match tmpl_ann.get(PORT) {
        Some(p) => match p.parse::<i32>() {
            Ok(n) if ports.is_empty() || ports.contains(&n) => {}
            Ok(n) => {
                f.warnings.push(format!(
                    "{PORT} is {n}, which no container declares (declared: {}); Prometheus scrapes it only if the app really listens there",
                    join_ports(&ports)
                ));
                if let Some(first) = ports.first() {
                    f.patch.insert(PORT.into(), first.to_string());
                }
            }
            Err(_) => {
                f.problems
                    .push(format!("{PORT} is {p:?}, not a port number"));
                if let Some(first) = ports.first() {
                    f.patch.insert(PORT.into(), first.to_string());
                }
            }
        },
        None if ports.len() > 1 => {
            f.warnings.push(format!("no {PORT} while the pod declares several ports ({}): Prometheus scrapes each of them, and all but one fail", join_ports(&ports)));
            f.patch.insert(PORT.into(), ports[0].to_string());
        }
        None if meta_ann.contains_key(PORT) => {
            f.patch.insert(PORT.into(), meta_ann[PORT].clone());
        }
        None => {}
    }
    f
}

fn join_ports(p: &[i32]) -> String {
    if p.is_empty() {
        "none".into()
    } else {
        p.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The `kubectl patch` line that puts annotations on a Deployment's pod template.
pub fn patch_line(ns: &str, name: &str, patch: &BTreeMap<String, String>) -> String {
    let body = serde_json::json!({"spec": {"template": {"metadata": {"annotations": patch}}}});
    format!("kubectl -n {ns} patch deployment {name} --type merge -p '{body}'")
}

/// Closest names first (prefix, then edit distance), for "did you mean".
pub fn nearest<'a>(want: &str, have: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let mut v: Vec<(usize, &String)> = have
        .into_iter()
        .map(|h| {
            let d = if h.starts_with(want) || want.starts_with(h.as_str()) {
                0
            } else {
                levenshtein(want, h)
            };
            (d, h)
        })
        .collect();
    v.sort();
    v.into_iter().map(|(_, h)| h.clone()).collect()
}

/// Edit distance between two strings.
pub fn levenshtein(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// Whether the Prometheus operator's CRDs are served (annotations are then ignored), and the
/// labels its Prometheus selects ServiceMonitors by.
async fn operator(client: &kube::Client) -> Option<BTreeMap<String, String>> {
    use kube::api::{ApiResource, GroupVersionKind};
    let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", "Prometheus");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "prometheuses");
    let list = kc::list_dynamic(client, &ar, Duration::from_secs(2))
        .await
        .ok()?;
    let mut labels = BTreeMap::new();
    for p in list {
        if let Some(sel) = p
            .data
            .pointer("/spec/serviceMonitorSelector/matchLabels")
            .and_then(|m| m.as_object())
        {
            for (k, v) in sel {
                if let Some(v) = v.as_str() {
                    labels.insert(k.clone(), v.to_string());
                }
            }
        }
    }
    Some(labels)
}

/// A ServiceMonitor or PodMonitor: what it selects, and where.
#[derive(Debug, Clone)]
struct Monitor {
    kind: &'static str,
    name: String,
    match_labels: BTreeMap<String, String>,
    /// `None`: any namespace; otherwise these (the monitor's own when unset).
    namespaces: Option<Vec<String>>,
}

async fn monitors(client: &kube::Client) -> Vec<Monitor> {
    use kube::api::{ApiResource, GroupVersionKind};
    let mut out = Vec::new();
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PodMonitor", "podmonitors"),
    ] {
        let gvk = GroupVersionKind::gvk("monitoring.coreos.com", "v1", kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
        let Ok(list) = kc::list_dynamic(client, &ar, Duration::from_secs(3)).await else {
            continue;
        };
        for m in list {
            let own_ns = m.metadata.namespace.clone().unwrap_or_default();
            let match_labels = m
                .data
                .pointer("/spec/selector/matchLabels")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            let ns_sel = m.data.pointer("/spec/namespaceSelector");
            let namespaces =
                if ns_sel.and_then(|n| n.get("any")).and_then(|a| a.as_bool()) == Some(true) {
                    None
                } else {
                    Some(
                        ns_sel
                            .and_then(|n| n.get("matchNames"))
                            .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                            .unwrap_or_else(|| vec![own_ns.clone()]),
                    )
                };
            out.push(Monitor {
                kind: if kind == "ServiceMonitor" {
                    "ServiceMonitor"
                } else {
                    "PodMonitor"
                },
                name: format!("{own_ns}/{}", m.metadata.name.clone().unwrap_or_default()),
                match_labels,
                namespaces,
            });
        }
    }
    out
}

fn subset(want: &BTreeMap<String, String>, have: Option<&BTreeMap<String, String>>) -> bool {
    !want.is_empty()
        && want
            .iter()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
}

/// The monitor that scrapes a Deployment's pods, directly (PodMonitor) or through a Service
/// that selects them (ServiceMonitor).
fn covering(
    d: &Deployment,
    ns: &str,
    services: &[Service],
    monitors: &[Monitor],
) -> Option<String> {
    let pod_labels = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let in_ns = |m: &Monitor| {
        m.namespaces
            .as_ref()
            .is_none_or(|n| n.iter().any(|x| x == ns))
    };
    for m in monitors.iter().filter(|m| in_ns(m)) {
        match m.kind {
            "PodMonitor" if subset(&m.match_labels, pod_labels) => {
                return Some(format!("PodMonitor {}", m.name));
            }
            "ServiceMonitor" => {
                for s in services {
                    let sel = s.spec.as_ref().and_then(|sp| sp.selector.as_ref());
                    let selects_pods = sel.is_some_and(|sel| {
                        !sel.is_empty()
                            && sel
                                .iter()
                                .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
                    });
                    if selects_pods && subset(&m.match_labels, s.metadata.labels.as_ref()) {
                        return Some(format!(
                            "ServiceMonitor {} (via svc/{})",
                            m.name,
                            s.metadata.name.clone().unwrap_or_default()
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn service_monitor(ns: &str, name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut l = format!("    app: {name}\n");
    for (k, v) in labels {
        l.push_str(&format!("    {k}: {v}\n"));
    }
    format!(
        "# this cluster runs the Prometheus operator, which ignores prometheus.io annotations; add a ServiceMonitor:\ncat <<'EOF' | kubectl apply -f -\napiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n{l}spec:\n  selector:\n    matchLabels:\n      app: {name}\n  endpoints:\n    - port: http\n      path: {SPRING_PATH}\nEOF"
    )
}

#[async_trait::async_trait]
impl Probe for ScrapeAnnotations {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let client = match cx.kube().await {
            Ok(c) => c,
            Err(u) => return unavailable(&u),
        };
        let ns = cx.settings.namespace.clone();
        let memo = &cx.clients.kube_memo;
        let (list, op) = tokio::join!(
            memo.deployments(&client, &ns, cx.remaining()),
            tokio::time::timeout(Duration::from_secs(2).min(cx.timeout), operator(&client))
        );
        let list: Vec<Deployment> = match list {
            Ok(l) => l.to_vec(),
            Err(e) => {
                if let crate::clients::ErrorKind::Forbidden(why) = &e.kind {
                    // Bind the role to the subject the API server named.
                    let subject = why
                        .split("User \"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                        .map(|u| match u.strip_prefix("system:serviceaccount:") {
                            Some(sa) => format!("--serviceaccount={sa}"),
                            None => format!("--user={}", crate::probes::shell_quote(u)),
                        })
                        .unwrap_or_else(|| "--user=\"$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')\"".into());
                    return Outcome::error(format!(
                        "no permission to list Deployments in {ns}: {}",
                        e.reason()
                    ))
                    .remedy(format!(
                        "# grant read access to what msa-doctor reads, to the subject the API server named:\nkubectl create role msa-doctor-read -n {ns} --verb=get,list,watch --resource=deployments,statefulsets,pods,services,endpoints\nkubectl create rolebinding msa-doctor-read -n {ns} --role=msa-doctor-read {subject}\n# check:\nkubectl auth can-i list deployments -n {ns} {as_}",
                        as_ = subject.replace("--serviceaccount=", "--as=system:serviceaccount:").replace("--user=", "--as=")
                    ));
                }
                return Outcome::error(e.to_string());
            }
        };
        let operator_labels = op.ok().flatten();
        // With the Prometheus operator, annotations are ignored: ServiceMonitors and
        // PodMonitors decide.
        let (monitors, services) = if operator_labels.is_some() {
            let (m, s) = tokio::join!(
                monitors(&client),
                memo.services(&client, &ns, cx.remaining())
            );
            match s {
                Ok(s) => (m, s.to_vec()),
                Err(e) => return Outcome::error(e.to_string()),
            }
        } else {
            (vec![], vec![])
        };
        let mut covered: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let by_name: BTreeMap<String, &Deployment> = list
            .iter()
            .filter_map(|d| d.metadata.name.clone().map(|n| (n, d)))
            .collect();
        let mut problems: Vec<String> = Vec::new();
        let mut remedies: Vec<String> = Vec::new();
        let mut failing: Vec<String> = Vec::new();
        let mut missing: Vec<String> = Vec::new();
        for svc in &cx.settings.services {
            let Some(d) = by_name.get(svc) else {
                let near = nearest(svc, by_name.keys());
                missing.push(svc.clone());
                problems.push(format!(
                    "{svc}: no such Deployment in {ns}{}",
                    near.first()
                        .map(|n| format!(" (nearest: {n})"))
                        .unwrap_or_default()
                ));
                continue;
            };
            if operator_labels.is_some()
                && let Some(by) = covering(d, &ns, &services, &monitors)
            {
                covered.push(format!("{svc} by {by}"));
                continue;
            }
            let f = inspect(d);
            if f.problems.is_empty() {
                if !f.warnings.is_empty() {
                    warnings.push(format!("{svc}: {}", f.warnings.join("; ")));
                    remedies.push(patch_line(&ns, svc, &f.patch));
                }
                continue;
            }
            failing.push(svc.clone());
            problems.push(format!("{svc}: {}", f.problems.join("; ")));
            match &operator_labels {
                Some(labels) => remedies.push(service_monitor(&ns, svc, labels)),
                None => remedies.push(patch_line(&ns, svc, &f.patch)),
            }
        }
        let not_scraped: Vec<String> = list
            .iter()
            .filter(|d| {
                !cx.settings
                    .services
                    .iter()
                    .any(|s| Some(s) == d.metadata.name.as_ref())
            })
            .filter(|d| inspect(d).patch.contains_key(SCRAPE))
            .filter_map(|d| d.metadata.name.clone())
            .collect();
        if !problems.is_empty() {
            problems.extend(warnings.iter().cloned());
        }
        let mut o = if problems.is_empty() && !warnings.is_empty() {
            Outcome::warn(warnings.join(" | ")).remedy(remedies.join("\n"))
        } else if problems.is_empty() {
            Outcome::pass(format!(
                "all {} services ask to be scraped at {SPRING_PATH}{}",
                cx.settings.services.len(),
                if not_scraped.is_empty() {
                    String::new()
                } else {
                    format!("; not scraped: {}", not_scraped.join(", "))
                }
            ))
        } else {
            let mut o = Outcome::fail(problems.join(" | ")).evidence("deployments", &failing);
            if !missing.is_empty() {
                remedies.push(format!(
                    "kubectl get deploy -n {ns}\n# name the services as they are deployed:\nmsa-doctor --services {}",
                    by_name.keys().cloned().collect::<Vec<_>>().join(",")
                ));
                o = o.evidence("missing", &missing);
            }
            o.remedy(remedies.join("\n"))
        };
        o = o.evidence("not_scraped", &not_scraped);
        if !covered.is_empty() {
            o = o.evidence("scraped_by_monitors", &covered);
        }
        if operator_labels.is_some() {
            o = o.evidence("prometheus_operator", true);
        }
        o
    }
}
