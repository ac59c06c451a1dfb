//! The objects lint understands, read from the documents: workloads (with their pod template),
//! Services, ServiceMonitors and PodMonitors, and Prometheus configurations (a ConfigMap
//! holding `prometheus.yml`, or a `prometheus.yml` file) with their scrape jobs.
//!
//! Reading only: which workload is a service, and whether it is scraped, is decided in
//! [`super::rules`].

use super::inputs::{Doc, Seg};
use super::yaml::{self, Node};
use std::collections::BTreeMap;

/// A Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob.
#[derive(Debug)]
pub struct Workload {
    /// The document.
    pub doc: usize,
    /// `Deployment`, ...
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, when written.
    pub namespace: Option<String>,
    /// Where `spec.template` is, as a path into the document.
    pub template: Vec<Seg<'static>>,
    /// The pod template's labels.
    pub labels: BTreeMap<String, String>,
    /// The containers.
    pub containers: Vec<Container>,
}

/// One container of a pod template.
#[derive(Debug)]
pub struct Container {
    /// Its name.
    pub name: String,
    /// Its image.
    pub image: String,
    /// Declared ports: name (if any) and number.
    pub ports: Vec<(Option<String>, i64)>,
    /// Environment variables written as plain values.
    pub env: BTreeMap<String, String>,
    /// Every environment variable name (values from ConfigMaps and Secrets too).
    pub env_names: Vec<String>,
    /// Paths of the HTTP probes.
    pub probe_paths: Vec<String>,
}

/// A Service.
#[derive(Debug)]
pub struct Service {
    /// The document.
    pub doc: usize,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.selector`.
    pub selector: BTreeMap<String, String>,
    /// Ports: name, port, targetPort (a number or a name).
    pub ports: Vec<ServicePort>,
}

/// One port of a Service.
#[derive(Debug)]
pub struct ServicePort {
    /// Its name.
    pub name: Option<String>,
    /// `port`.
    pub port: Option<i64>,
    /// `targetPort`, as written.
    pub target: Option<String>,
}

/// A ServiceMonitor or PodMonitor.
#[derive(Debug)]
pub struct Monitor {
    /// The document.
    pub doc: usize,
    /// `ServiceMonitor` or `PodMonitor`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.selector.matchLabels`.
    pub selector: BTreeMap<String, String>,
    /// `spec.endpoints` or `spec.podMetricsEndpoints`.
    pub endpoints: Vec<Endpoint>,
    /// The key holding the endpoints.
    pub endpoints_key: &'static str,
}

/// One endpoint of a monitor.
#[derive(Debug)]
pub struct Endpoint {
    /// Index in the list.
    pub index: usize,
    /// `port` (a port name).
    pub port: Option<String>,
    /// `targetPort` (a number or a name).
    pub target_port: Option<String>,
    /// `path`.
    pub path: Option<String>,
}

/// One scrape job of a Prometheus configuration.
#[derive(Debug)]
pub struct Job {
    /// The document holding the configuration.
    pub doc: usize,
    /// `job_name`.
    pub name: String,
    /// 1-based line of the job in the file.
    pub line: u32,
    /// `metrics_path` (default `/metrics`).
    pub metrics_path: String,
    /// Static targets: `host:port` and their lines.
    pub targets: Vec<(String, u32)>,
    /// `kubernetes_sd_configs` roles (`pod`, `endpoints`, `service`, `endpointslice`).
    pub sd_roles: Vec<String>,
}

impl Job {
    /// Discovers pods (and so honours pod-template annotations, when its relabelling keeps
    /// them).
    pub fn discovers_pods(&self) -> bool {
        self.sd_roles.iter().any(|r| r == "pod")
    }

    /// Discovers the endpoints of Services (and so honours Service annotations).
    pub fn discovers_services(&self) -> bool {
        self.sd_roles
            .iter()
            .any(|r| matches!(r.as_str(), "endpoints" | "endpointslice" | "service"))
    }
}

/// Everything lint understood.
#[derive(Debug, Default)]
pub struct Objects {
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Services.
    pub services: Vec<Service>,
    /// ServiceMonitors and PodMonitors.
    pub monitors: Vec<Monitor>,
    /// Scrape jobs of every Prometheus configuration.
    pub jobs: Vec<Job>,
}

fn string_map(n: Option<&Node>) -> BTreeMap<String, String> {
    n.map(|n| {
        n.entries()
            .iter()
            .filter_map(|e| e.node.str().map(|v| (e.key.clone(), v.to_string())))
            .collect()
    })
    .unwrap_or_default()
}

fn int(n: &Node) -> Option<i64> {
    n.str().and_then(|s| s.parse().ok())
}

/// Reads the objects of the documents.
pub fn read(docs: &[Doc]) -> Objects {
    let mut o = Objects::default();
    for (i, d) in docs.iter().enumerate() {
        let n = &d.node;
        if n.get("scrape_configs").is_some() {
            jobs_of(i, n, 0, &mut o.jobs);
            continue;
        }
        let kind = n.str_at(&["kind"]).unwrap_or("");
        let name = n.str_at(&["metadata", "name"]).unwrap_or("").to_string();
        let namespace = n.str_at(&["metadata", "namespace"]).map(str::to_string);
        match kind {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" => {
                let template: Vec<Seg<'static>> = if kind == "CronJob" {
                    vec![
                        Seg::K("spec"),
                        Seg::K("jobTemplate"),
                        Seg::K("spec"),
                        Seg::K("template"),
                    ]
                } else {
                    vec![Seg::K("spec"), Seg::K("template")]
                };
                let Some(t) = d.at(&template).filter(|t| t.is_map()) else {
                    continue;
                };
                o.workloads.push(Workload {
                    doc: i,
                    kind: kind.into(),
                    name,
                    namespace,
                    labels: string_map(t.at(&["metadata", "labels"])),
                    containers: t
                        .at(&["spec", "containers"])
                        .map(Node::items)
                        .unwrap_or(&[])
                        .iter()
                        .map(container)
                        .collect(),
                    template,
                });
            }
            "Service" => o.services.push(Service {
                doc: i,
                name,
                namespace,
                labels: string_map(n.at(&["metadata", "labels"])),
                selector: string_map(n.at(&["spec", "selector"])),
                ports: n
                    .at(&["spec", "ports"])
                    .map(Node::items)
                    .unwrap_or(&[])
                    .iter()
                    .map(|p| ServicePort {
                        name: p.str_at(&["name"]).map(str::to_string),
                        port: p.get("port").and_then(int),
                        target: p.str_at(&["targetPort"]).map(str::to_string),
                    })
                    .collect(),
            }),
            "ServiceMonitor" | "PodMonitor" => {
                let key = if kind == "ServiceMonitor" {
                    "endpoints"
                } else {
                    "podMetricsEndpoints"
                };
                o.monitors.push(Monitor {
                    doc: i,
                    kind: kind.into(),
                    name,
                    selector: string_map(n.at(&["spec", "selector", "matchLabels"])),
                    endpoints: n
                        .at(&["spec", key])
                        .map(Node::items)
                        .unwrap_or(&[])
                        .iter()
                        .enumerate()
                        .map(|(index, e)| Endpoint {
                            index,
                            port: e.str_at(&["port"]).map(str::to_string),
                            target_port: e.str_at(&["targetPort"]).map(str::to_string),
                            path: e.str_at(&["path"]).map(str::to_string),
                        })
                        .collect(),
                    endpoints_key: key,
                });
            }
            "ConfigMap" => {
                for e in n.get("data").map(Node::entries).unwrap_or(&[]) {
                    let Some(text) = e.node.str() else { continue };
                    if !text.contains("scrape_configs") {
                        continue;
                    }
                    let s = yaml::parse(text);
                    if let Some(cfg) = s.docs.first() {
                        // A block scalar's text starts on the line after its key.
                        jobs_of(i, cfg, e.line, &mut o.jobs);
                    }
                }
            }
            _ => {}
        }
    }
    o
}

fn container(c: &Node) -> Container {
    let mut env = BTreeMap::new();
    let mut env_names = Vec::new();
    for e in c.get("env").map(Node::items).unwrap_or(&[]) {
        if let Some(k) = e.str_at(&["name"]) {
            env_names.push(k.to_string());
            if let Some(v) = e.get("value").and_then(Node::str) {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    let probe_paths = ["livenessProbe", "readinessProbe", "startupProbe"]
        .iter()
        .filter_map(|p| c.str_at(&[p, "httpGet", "path"]).map(str::to_string))
        .collect();
    Container {
        name: c.str_at(&["name"]).unwrap_or("").to_string(),
        image: c.str_at(&["image"]).unwrap_or("").to_string(),
        ports: c
            .get("ports")
            .map(Node::items)
            .unwrap_or(&[])
            .iter()
            .filter_map(|p| {
                Some((
                    p.str_at(&["name"]).map(str::to_string),
                    p.get("containerPort").and_then(int)?,
                ))
            })
            .collect(),
        env,
        env_names,
        probe_paths,
    }
}

fn jobs_of(doc: usize, cfg: &Node, base: u32, out: &mut Vec<Job>) {
    for j in cfg.get("scrape_configs").map(Node::items).unwrap_or(&[]) {
        let mut targets = Vec::new();
        for sc in j.get("static_configs").map(Node::items).unwrap_or(&[]) {
            for t in sc.get("targets").map(Node::items).unwrap_or(&[]) {
                if let Some(s) = t.str() {
                    targets.push((s.to_string(), base + t.line));
                }
            }
        }
        let sd_roles = j
            .get("kubernetes_sd_configs")
            .map(Node::items)
            .unwrap_or(&[])
            .iter()
            .filter_map(|s| s.str_at(&["role"]).map(str::to_string))
            .collect();
        out.push(Job {
            doc,
            sd_roles,
            name: j.str_at(&["job_name"]).unwrap_or("").to_string(),
            line: base + j.line,
            metrics_path: j
                .str_at(&["metrics_path"])
                .unwrap_or("/metrics")
                .to_string(),
            targets,
        });
    }
}

/// Whether every label of the selector is on the labels (an empty selector selects nothing).
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
