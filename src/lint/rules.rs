//! The rules: which workloads are services, how Prometheus finds each (`scraped_by`), and what
//! stops it from scraping it where the application serves metrics. Each rule id is stable and
//! documented in `docs/lint.md`; each finding says which file and line to change and what to
//! write there.

use super::app::{self, Expected, Module, Props};
use super::inputs::{Doc, Seg};
use super::manifests::{Monitor, Objects, Service, Workload, selects};
use super::{Finding, Severity, WorkloadInfo};
use std::collections::BTreeMap;

const SCRAPE: &str = "prometheus.io/scrape";
const PATH: &str = "prometheus.io/path";
const PORT: &str = "prometheus.io/port";

/// Every rule: id, default severity, what it means (`docs/lint.md` has a section each).
pub const RULES: &[(&str, Severity, &str)] = &[
    (
        "yaml-syntax",
        Severity::Error,
        "A file is not valid YAML (or JSON); the rest of it was not read",
    ),
    (
        "duplicate-key",
        Severity::Warning,
        "A key appears twice in one mapping; the second one wins",
    ),
    (
        "file-unreadable",
        Severity::Error,
        "A file could not be read",
    ),
    (
        "helm-chart-not-rendered",
        Severity::Warning,
        "A Helm chart was not rendered because helm is not on PATH",
    ),
    (
        "helm-render-failed",
        Severity::Error,
        "helm template failed on a chart",
    ),
    (
        "kustomize-not-rendered",
        Severity::Note,
        "A Kustomize tree was not rendered because kubectl is not on PATH",
    ),
    (
        "kustomize-render-failed",
        Severity::Warning,
        "kubectl kustomize failed on a Kustomize tree",
    ),
    (
        "service-not-found",
        Severity::Error,
        "A name given with --services resolves to no workload",
    ),
    (
        "annotation-not-a-string",
        Severity::Error,
        "An annotation value is not a string (an unquoted true or 8080)",
    ),
    (
        "label-not-a-string",
        Severity::Error,
        "A label value is not a string (an unquoted true or 8080)",
    ),
    (
        "not-scraped",
        Severity::Error,
        "No scrape mechanism covers a service",
    ),
    (
        "scrape-annotation-misplaced",
        Severity::Error,
        "prometheus.io/scrape is on the workload's metadata, not on its pod template",
    ),
    (
        "scrape-annotation-not-true",
        Severity::Error,
        "prometheus.io/scrape is not exactly \"true\"",
    ),
    (
        "scrape-path-mismatch",
        Severity::Error,
        "Prometheus scrapes a path the application does not serve",
    ),
    (
        "scrape-port-mismatch",
        Severity::Error,
        "Prometheus scrapes a port the application does not listen on",
    ),
    (
        "scrape-port-invalid",
        Severity::Error,
        "prometheus.io/port is not a port number",
    ),
    (
        "scrape-port-undeclared",
        Severity::Warning,
        "prometheus.io/port names a port no container declares",
    ),
    (
        "container-port-missing",
        Severity::Error,
        "No containerPort and no prometheus.io/port: no port to scrape",
    ),
    (
        "monitor-selects-nothing",
        Severity::Warning,
        "A ServiceMonitor or PodMonitor selects nothing in these files",
    ),
    (
        "monitor-endpoint-incomplete",
        Severity::Error,
        "A monitor endpoint has no port (often one endpoint split into two list items)",
    ),
    (
        "monitor-port-unknown",
        Severity::Error,
        "A monitor endpoint's port names no port of the Service or pod",
    ),
    (
        "web-starter-missing",
        Severity::Error,
        "The module has no web starter: nothing listens for HTTP",
    ),
    (
        "actuator-missing",
        Severity::Error,
        "The module has no spring-boot-starter-actuator",
    ),
    (
        "prometheus-registry-missing",
        Severity::Error,
        "The module has no micrometer-registry-prometheus",
    ),
    (
        "prometheus-endpoint-not-exposed",
        Severity::Error,
        "The prometheus actuator endpoint is not exposed over HTTP",
    ),
    (
        "application-tag-missing",
        Severity::Warning,
        "management.metrics.tags.application is not set",
    ),
    (
        "percentiles-histogram-missing",
        Severity::Note,
        "http_server_requests_seconds_bucket is not exported: latency panels (histogram_quantile) stay empty",
    ),
    (
        "annotations-not-discovered",
        Severity::Warning,
        "The Prometheus configuration here discovers no pods (or Services), so the annotations are not read",
    ),
    (
        "security-blocks-actuator",
        Severity::Warning,
        "Spring Security may refuse Prometheus's scrape of /actuator/prometheus",
    ),
];

/// Names of infrastructure images and workloads: listed, never checked as services.
const INFRA: &[&str] = &[
    "postgres",
    "mysql",
    "mariadb",
    "mongo",
    "redis",
    "kafka",
    "zookeeper",
    "rabbitmq",
    "elasticsearch",
    "opensearch",
    "memcached",
    "nginx",
    "frontend",
    "react",
    "vue",
    "angular",
    "grafana",
    "prometheus",
    "kibana",
    "logstash",
    "fluent",
    "vault",
    "consul",
    "keycloak",
    "minio",
    "cassandra",
    "etcd",
    "traefik",
    "envoy",
    "jaeger",
    "zipkin",
    "otel",
    "alertmanager",
    "loki",
    "tempo",
    "busybox",
    "adminer",
    "pgadmin",
    "mailhog",
    "localstack",
];

/// One workload with what lint learned about it.
struct Facts<'a> {
    w: &'a Workload,
    doc: &'a Doc,
    module: Option<&'a Module>,
    spring: bool,
    services: Vec<&'a Service>,
    env: BTreeMap<String, String>,
    ports: Vec<(Option<String>, i64)>,
}

impl Facts<'_> {
    fn tpl(&self, rest: &[Seg<'static>]) -> Vec<Seg<'static>> {
        let mut p = self.w.template.clone();
        p.extend_from_slice(rest);
        p
    }

    fn infra(&self) -> Option<String> {
        let mut names: Vec<&str> = vec![self.w.name.as_str()];
        names.extend(self.w.containers.iter().map(|c| app::image_name(&c.image)));
        for n in names {
            let n = n.to_lowercase();
            if let Some(i) = INFRA.iter().find(|i| n.contains(*i)) {
                return Some(format!("infrastructure ({i})"));
            }
        }
        None
    }
}

fn finding(
    rule: &'static str,
    severity: Severity,
    (file, line): (String, u32),
    workload: Option<&str>,
    message: String,
    fix: Option<String>,
) -> Finding {
    Finding {
        rule,
        severity,
        file,
        line,
        workload: workload.map(str::to_string),
        message,
        fix,
    }
}

/// Runs every rule. `services`: the names given with `--services`, else discovery.
pub fn run(
    docs: &[Doc],
    o: &Objects,
    modules: &[Module],
    services: Option<&[String]>,
) -> (Vec<WorkloadInfo>, Vec<Finding>) {
    let mut out = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        value_types(i, d, o, &mut out);
    }
    let facts: Vec<Facts> = o
        .workloads
        .iter()
        .map(|w| {
            let images: Vec<&str> = w.containers.iter().map(|c| c.image.as_str()).collect();
            let module = app::module_for(modules, &w.name, &images);
            let env: BTreeMap<String, String> = w
                .containers
                .iter()
                .flat_map(|c| c.env.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect();
            let spring = module.is_some_and(Module::spring_boot)
                || w.containers.iter().any(|c| {
                    c.image.contains("spring")
                        || c.env_names
                            .iter()
                            .any(|e| e.starts_with("SPRING_") || e.starts_with("MANAGEMENT_"))
                        || c.probe_paths.iter().any(|p| p.starts_with("/actuator"))
                });
            Facts {
                w,
                doc: &docs[w.doc],
                module,
                spring,
                services: o
                    .services
                    .iter()
                    .filter(|s| {
                        selects(&s.selector, &w.labels)
                            && (s.namespace.is_none()
                                || w.namespace.is_none()
                                || s.namespace == w.namespace)
                    })
                    .collect(),
                env,
                ports: w.containers.iter().flat_map(|c| c.ports.clone()).collect(),
            }
        })
        .collect();

    // Which workloads are services, under which name.
    let mut service_of: Vec<Option<String>> = vec![None; facts.len()];
    let mut not_checked: Vec<Option<String>> = vec![None; facts.len()];
    match services {
        Some(names) => {
            for name in names {
                let by_name = facts.iter().position(|f| {
                    f.w.name == *name && matches!(f.w.kind.as_str(), "Deployment" | "StatefulSet")
                });
                let by_service = || {
                    facts
                        .iter()
                        .position(|f| f.services.iter().any(|s| s.name == *name))
                };
                let by_label = || {
                    facts.iter().position(|f| {
                        f.w.labels.get("app") == Some(name)
                            || f.w.labels.get("app.kubernetes.io/name") == Some(name)
                    })
                };
                match by_name.or_else(by_service).or_else(by_label) {
                    Some(i) => service_of[i] = Some(name.clone()),
                    None => out.push(finding(
                        "service-not-found",
                        Severity::Error,
                        (String::new(), 0),
                        None,
                        format!(
                            "--services names {name:?}, but no Deployment or StatefulSet of that name, no Service of that name selecting a workload, and no workload labelled app={name} is in these files"
                        ),
                        Some("msa-doctor lint PATH... (without --services) lists the workloads it finds".into()),
                    )),
                }
            }
            for (i, s) in service_of.iter().enumerate() {
                if s.is_none() {
                    not_checked[i] = Some("not named in --services".into());
                }
            }
        }
        None => {
            for (i, f) in facts.iter().enumerate() {
                if !f.spring && f.services.is_empty() {
                    not_checked[i] =
                        Some("runs no Spring Boot application and no Service selects it".into());
                } else if let (false, Some(why)) = (f.spring, f.infra()) {
                    not_checked[i] = Some(why);
                } else {
                    service_of[i] = Some(
                        f.services
                            .first()
                            .map(|s| s.name.clone())
                            .unwrap_or_else(|| f.w.name.clone()),
                    );
                }
            }
        }
    }

    // Monitors, once each.
    for m in &o.monitors {
        monitor_rules(m, docs, o, &facts, &mut out);
    }

    let operator = !o.monitors.is_empty();
    let mut infos = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        let (file, line) = f.doc.home();
        let scraped_by = if service_of[i].is_some() {
            check_service(f, o, docs, operator, &mut out)
        } else {
            mechanism(f, o, docs).0
        };
        infos.push(WorkloadInfo {
            name: f.w.name.clone(),
            kind: f.w.kind.clone(),
            file,
            line,
            service: service_of[i].clone(),
            spring_boot: f.spring,
            scraped_by,
            not_checked: not_checked[i].clone(),
        });
    }
    (infos, out)
}

/// Annotations and labels must be strings: an unquoted `true` or `8080` makes kubectl reject
/// the whole object.
fn value_types(index: usize, d: &Doc, o: &Objects, out: &mut Vec<Finding>) {
    let workload = d.node.str_at(&["metadata", "name"]);
    let mut metas: Vec<Vec<Seg<'static>>> = vec![vec![Seg::K("metadata")]];
    if let Some(w) = o.workloads.iter().find(|w| w.doc == index) {
        let mut t = w.template.clone();
        t.push(Seg::K("metadata"));
        metas.push(t);
    }
    for meta in metas {
        for (key, rule, what) in [
            ("annotations", "annotation-not-a-string", "annotation"),
            ("labels", "label-not-a-string", "label"),
        ] {
            let mut p = meta.clone();
            p.push(Seg::K(key));
            let Some(map) = d.at(&p) else { continue };
            for e in map.entries() {
                if let Some(t) = e.node.not_a_string() {
                    let text = e.node.str().unwrap_or("");
                    let mut at: Vec<Seg> = p.clone();
                    at.push(Seg::K(&e.key));
                    out.push(finding(
                        rule,
                        Severity::Error,
                        d.locate(&at),
                        workload,
                        format!(
                            "{what} `{}: {text}` is {t}; {what}s must be strings, so kubectl apply rejects this object",
                            e.key
                        ),
                        Some(format!("{}: \"{text}\"", e.key)),
                    ));
                }
            }
        }
    }
}

/// How Prometheus finds a workload, and the services through which it does.
fn mechanism<'a>(f: &Facts<'a>, o: &'a Objects, docs: &[Doc]) -> (&'static str, Vec<&'a Monitor>) {
    let ann = f
        .doc
        .at(&f.tpl(&[Seg::K("metadata"), Seg::K("annotations")]));
    if ann.and_then(|a| a.str_at(&[SCRAPE])) == Some("true") {
        return ("pod-annotations", vec![]);
    }
    if f.services.iter().any(|s| {
        docs[s.doc]
            .node
            .str_at(&["metadata", "annotations", SCRAPE])
            == Some("true")
    }) {
        return ("service-annotations", vec![]);
    }
    let sms: Vec<&Monitor> = o
        .monitors
        .iter()
        .filter(|m| {
            m.kind == "ServiceMonitor" && f.services.iter().any(|s| selects(&m.selector, &s.labels))
        })
        .collect();
    if !sms.is_empty() {
        return ("service-monitor", sms);
    }
    let pms: Vec<&Monitor> = o
        .monitors
        .iter()
        .filter(|m| m.kind == "PodMonitor" && selects(&m.selector, &f.w.labels))
        .collect();
    if !pms.is_empty() {
        return ("pod-monitor", pms);
    }
    if o.jobs
        .iter()
        .any(|j| j.targets.iter().any(|(t, _)| targets_workload(t, f)))
    {
        return ("static-config", vec![]);
    }
    ("none", vec![])
}

fn host_of(target: &str) -> &str {
    let t = target.split("://").last().unwrap_or(target);
    let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
    host.split('.').next().unwrap_or(host)
}

fn port_of(target: &str) -> Option<i64> {
    target.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn targets_workload(t: &str, f: &Facts) -> bool {
    let h = host_of(t);
    h == f.w.name || f.services.iter().any(|s| s.name == h)
}

/// The expected port and path, when the application is known; `port_known` is false when only
/// the manifest says it is Spring Boot and no configuration sets the port.
fn expected_of(f: &Facts) -> Option<(Expected, bool)> {
    match f.module {
        Some(m) if m.spring_boot() => Some((app::expected(&m.props(&f.env)), true)),
        _ if f.spring => {
            let props = Props::from_env(&f.env);
            let known =
                props.get("server.port").is_some() || props.get("management.server.port").is_some();
            Some((app::expected(&props), known))
        }
        _ => None,
    }
}

fn annotations_fix(path: &str, port: i64) -> String {
    format!(
        "under spec.template.metadata.annotations:\n  {SCRAPE}: \"true\"\n  {PATH}: \"{path}\"\n  {PORT}: \"{port}\""
    )
}

/// Checks one service workload; returns how it is scraped.
fn check_service(
    f: &Facts,
    o: &Objects,
    docs: &[Doc],
    operator: bool,
    out: &mut Vec<Finding>,
) -> &'static str {
    let name = Some(f.w.name.as_str());
    let exp = expected_of(f);
    let exp_path = exp.as_ref().map(|(e, _)| e.path.clone());
    let exp_port = exp.as_ref().and_then(|(e, known)| known.then_some(e.port));
    let because = exp
        .as_ref()
        .map(|(e, _)| e.because.clone())
        .unwrap_or_default();
    let declared: Vec<i64> = f.ports.iter().map(|p| p.1).collect();

    let ann_path = f.tpl(&[Seg::K("metadata"), Seg::K("annotations")]);
    let ann = f.doc.at(&ann_path);
    let at_ann = |k: &'static str| {
        let mut p = ann_path.clone();
        p.push(Seg::K(k));
        f.doc.locate(&p)
    };
    let meta_ann = f.doc.node.at(&["metadata", "annotations"]);
    let (scraped_by, monitors) = mechanism(f, o, docs);
    let mut explained = false;

    // Pod-template annotations.
    if let Some(a) = ann.filter(|a| {
        a.entries()
            .iter()
            .any(|e| e.key.starts_with("prometheus.io/"))
    }) {
        explained = true;
        if let Some(v) = a.get(SCRAPE)
            && v.not_a_string().is_none()
            && v.str() != Some("true")
        {
            out.push(finding(
                "scrape-annotation-not-true",
                Severity::Error,
                at_ann(SCRAPE),
                name,
                format!(
                    "{SCRAPE} is {:?}; the usual relabelling keeps only pods whose value is exactly \"true\"",
                    v.str().unwrap_or("")
                ),
                Some(format!("{SCRAPE}: \"true\"")),
            ));
        }
        let path = a.str_at(&[PATH]).unwrap_or("/metrics");
        if let Some(e) = &exp_path
            && path != e
        {
            let written = a.get(PATH).is_some();
            out.push(finding(
                "scrape-path-mismatch",
                Severity::Error,
                if written {
                    at_ann(PATH)
                } else {
                    f.doc.locate(&ann_path)
                },
                name,
                format!(
                    "Prometheus scrapes {path}{}, but the application serves {e} ({because})",
                    if written {
                        ""
                    } else {
                        " (no prometheus.io/path)"
                    }
                ),
                Some(format!("{PATH}: \"{e}\"")),
            ));
        }
        match a.get(PORT) {
            Some(p) => match p.str().and_then(|s| s.parse::<i64>().ok()) {
                None => out.push(finding(
                    "scrape-port-invalid",
                    Severity::Error,
                    at_ann(PORT),
                    name,
                    format!("{PORT} is {:?}, not a port number", p.str().unwrap_or("")),
                    Some(format!(
                        "{PORT}: \"{}\"",
                        exp_port.or(declared.first().copied()).unwrap_or(8080)
                    )),
                )),
                Some(n) => {
                    if let Some(e) = exp_port
                        && n != e
                    {
                        out.push(finding(
                            "scrape-port-mismatch",
                            Severity::Error,
                            at_ann(PORT),
                            name,
                            format!("{PORT} is {n}, but the application listens on {e} ({because})"),
                            Some(format!("{PORT}: \"{e}\"")),
                        ));
                    } else if !declared.is_empty() && !declared.contains(&n) {
                        out.push(finding(
                            "scrape-port-undeclared",
                            Severity::Warning,
                            at_ann(PORT),
                            name,
                            format!(
                                "{PORT} is {n}, which no container declares (declared: {})",
                                join(&declared)
                            ),
                            None,
                        ));
                    }
                }
            },
            None if declared.is_empty() => out.push(finding(
                "container-port-missing",
                Severity::Error,
                f.doc.locate(&f.tpl(&[Seg::K("spec"), Seg::K("containers"), Seg::I(0)])),
                name,
                "no container declares a containerPort and there is no prometheus.io/port: Prometheus has no port to scrape"
                    .into(),
                Some(format!(
                    "ports:\n  - name: http\n    containerPort: {}\n(or {PORT}: \"{0}\" under spec.template.metadata.annotations)",
                    exp_port.unwrap_or(8080)
                )),
            )),
            None => {
                if let Some(e) = exp_port
                    && !declared.contains(&e)
                {
                    out.push(finding(
                        "scrape-port-mismatch",
                        Severity::Error,
                        f.doc.locate(&ann_path),
                        name,
                        format!(
                            "the containers declare port {} and there is no {PORT}, but the application listens on {e} ({because})",
                            join(&declared)
                        ),
                        Some(format!("{PORT}: \"{e}\"")),
                    ));
                }
            }
        }
    } else if meta_ann.and_then(|m| m.entry(SCRAPE)).is_some() {
        explained = true;
        out.push(finding(
            "scrape-annotation-misplaced",
            Severity::Error,
            f.doc.locate(&[Seg::K("metadata"), Seg::K("annotations"), Seg::K(SCRAPE)]),
            name,
            format!(
                "{SCRAPE} is on the {}'s own metadata, not on spec.template.metadata: its pods never get it",
                f.w.kind
            ),
            Some(format!(
                "move the prometheus.io/* annotations under spec.template.metadata.annotations:\n{}",
                annotations_fix(exp_path.as_deref().unwrap_or("/metrics"), exp_port.or(declared.first().copied()).unwrap_or(8080))
                    .lines()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        ));
    }

    // Service annotations.
    for s in &f.services {
        let d = &docs[s.doc];
        let Some(a) = d.node.at(&["metadata", "annotations"]) else {
            continue;
        };
        if a.get(SCRAPE).is_none() {
            continue;
        }
        explained = true;
        let loc =
            |k: &'static str| d.locate(&[Seg::K("metadata"), Seg::K("annotations"), Seg::K(k)]);
        if let Some(v) = a.get(SCRAPE)
            && v.not_a_string().is_none()
            && v.str() != Some("true")
        {
            out.push(finding(
                "scrape-annotation-not-true",
                Severity::Error,
                loc(SCRAPE),
                name,
                format!(
                    "Service {}: {SCRAPE} is {:?}, not \"true\"",
                    s.name,
                    v.str().unwrap_or("")
                ),
                Some(format!("{SCRAPE}: \"true\"")),
            ));
        }
        let path = a.str_at(&[PATH]).unwrap_or("/metrics");
        if let Some(e) = &exp_path
            && path != e
        {
            out.push(finding(
                "scrape-path-mismatch",
                Severity::Error,
                if a.get(PATH).is_some() { loc(PATH) } else { loc(SCRAPE) },
                name,
                format!(
                    "Service {} asks Prometheus to scrape {path}, but the application serves {e} ({because})",
                    s.name
                ),
                Some(format!("{PATH}: \"{e}\" (on Service {})", s.name)),
            ));
        }
        let port = a.str_at(&[PORT]).and_then(|p| p.parse::<i64>().ok());
        if let Some(n) = port
            && exp_port.is_none()
            && !declared.is_empty()
            && !declared.contains(&n)
        {
            out.push(finding(
                "scrape-port-undeclared",
                Severity::Warning,
                loc(PORT),
                name,
                format!(
                    "Service {}: {PORT} is {n}, which no container of {} declares (declared: {})",
                    s.name,
                    f.w.name,
                    join(&declared)
                ),
                None,
            ));
        }
        if let Some(e) = exp_port {
            let targets: Vec<i64> = match port {
                Some(p) => vec![p],
                None => s
                    .ports
                    .iter()
                    .filter_map(|p| resolve_target(p.target.as_deref(), p.port, &f.ports))
                    .collect(),
            };
            if !targets.is_empty() && !targets.contains(&e) {
                out.push(finding(
                    "scrape-port-mismatch",
                    Severity::Error,
                    if port.is_some() { loc(PORT) } else { d.locate(&[Seg::K("spec"), Seg::K("ports")]) },
                    name,
                    format!(
                        "Service {} sends the scrape to port {}, but the application listens on {e} ({because})",
                        s.name,
                        join(&targets)
                    ),
                    Some(format!("{PORT}: \"{e}\" (on Service {})", s.name)),
                ));
            }
        }
    }

    // Monitors: the path and port of each complete endpoint.
    for m in &monitors {
        explained = true;
        let d = &docs[m.doc];
        for ep in m
            .endpoints
            .iter()
            .filter(|e| e.port.is_some() || e.target_port.is_some())
        {
            let base = [Seg::K("spec"), Seg::K(m.endpoints_key), Seg::I(ep.index)];
            let path = ep.path.as_deref().unwrap_or("/metrics");
            if let Some(e) = &exp_path
                && path != e
            {
                let mut p = base.to_vec();
                if ep.path.is_some() {
                    p.push(Seg::K("path"));
                }
                out.push(finding(
                    "scrape-path-mismatch",
                    Severity::Error,
                    d.locate(&p),
                    name,
                    format!(
                        "{} {} scrapes {path}{}, but the application serves {e} ({because})",
                        m.kind,
                        m.name,
                        if ep.path.is_some() { "" } else { " (no path)" }
                    ),
                    Some(format!("path: {e}")),
                ));
            }
            if let Some(e) = exp_port {
                let n = if m.kind == "ServiceMonitor" {
                    f.services
                        .iter()
                        .filter(|s| selects(&m.selector, &s.labels))
                        .flat_map(|s| s.ports.iter())
                        .find(|p| p.name.is_some() && p.name == ep.port)
                        .and_then(|p| resolve_target(p.target.as_deref(), p.port, &f.ports))
                } else {
                    ep.port.as_ref().and_then(|pn| {
                        f.ports
                            .iter()
                            .find(|p| p.0.as_ref() == Some(pn))
                            .map(|p| p.1)
                    })
                };
                if let Some(n) = n
                    && n != e
                {
                    let mut p = base.to_vec();
                    p.push(Seg::K("port"));
                    out.push(finding(
                        "scrape-port-mismatch",
                        Severity::Error,
                        d.locate(&p),
                        name,
                        format!(
                            "{} {} scrapes port {n} (port {:?}), but the application listens on {e} ({because})",
                            m.kind,
                            m.name,
                            ep.port.as_deref().unwrap_or("")
                        ),
                        None,
                    ));
                }
            }
        }
    }

    // Static scrape configurations.
    for j in &o.jobs {
        let d = &docs[j.doc];
        let file = d.locate(&[]).0;
        for (t, line) in j.targets.iter().filter(|(t, _)| targets_workload(t, f)) {
            explained = true;
            if let Some(e) = &exp_path
                && &j.metrics_path != e
            {
                out.push(finding(
                    "scrape-path-mismatch",
                    Severity::Error,
                    (file.clone(), j.line),
                    name,
                    format!(
                        "job {:?} scrapes {} at {}, but the application serves {e} ({because})",
                        j.name, t, j.metrics_path
                    ),
                    Some(format!("metrics_path: {e}")),
                ));
            }
            if let (Some(e), Some(p)) = (exp_port, port_of(t))
                && p != e
            {
                out.push(finding(
                    "scrape-port-mismatch",
                    Severity::Error,
                    (file.clone(), *line),
                    name,
                    format!(
                        "job {:?} scrapes {t}, but the application listens on {e} ({because})",
                        j.name
                    ),
                    Some(format!(
                        "- {}:{e}",
                        t.rsplit_once(':').map(|x| x.0).unwrap_or(t)
                    )),
                ));
            }
        }
    }

    // Annotations work only if the Prometheus configuration discovers what carries them. When
    // the repository holds its Prometheus configuration, check that it does.
    if !o.jobs.is_empty() && matches!(scraped_by, "pod-annotations" | "service-annotations") {
        let pods = scraped_by == "pod-annotations";
        let found = o.jobs.iter().any(|j| {
            if pods {
                j.discovers_pods()
            } else {
                j.discovers_services()
            }
        });
        if !found {
            let j = &o.jobs[0];
            let file = docs[j.doc].locate(&[]).0;
            let (what, role, meta) = if pods {
                ("pods", "pod", "pod")
            } else {
                ("Services' endpoints", "endpoints", "service")
            };
            out.push(finding(
                "annotations-not-discovered",
                Severity::Warning,
                (file, j.line),
                name,
                format!(
                    "{} {} relies on prometheus.io/* annotations, but no job of this Prometheus configuration discovers {what} (kubernetes_sd_configs role: {role}), so they are never read",
                    f.w.kind, f.w.name
                ),
                Some(format!(
                    "- job_name: kubernetes-{what_short}\n  kubernetes_sd_configs:\n    - role: {role}\n  relabel_configs:\n    - source_labels: [__meta_kubernetes_{meta}_annotation_prometheus_io_scrape]\n      action: keep\n      regex: \"true\"\n    - source_labels: [__meta_kubernetes_{meta}_annotation_prometheus_io_path]\n      action: replace\n      target_label: __metrics_path__\n      regex: (.+)\n    - source_labels: [__address__, __meta_kubernetes_{meta}_annotation_prometheus_io_port]\n      action: replace\n      regex: ([^:]+)(?::\\d+)?;(\\d+)\n      replacement: $1:$2\n      target_label: __address__",
                    what_short = if pods { "pods" } else { "service-endpoints" }
                )),
            ));
        }
    }

    if scraped_by == "none" && !explained {
        let fix = match (operator, f.services.first()) {
            (true, Some(s)) => {
                let port = s
                    .ports
                    .iter()
                    .find_map(|p| p.name.clone())
                    .unwrap_or_else(|| "http".into());
                let labels: Vec<String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| format!("      {k}: {v}"))
                    .collect();
                format!(
                    "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: {}\nspec:\n  selector:\n    matchLabels:\n{}\n  endpoints:\n    - port: {port}\n      path: {}",
                    s.name,
                    if labels.is_empty() {
                        "      app: ?".to_string()
                    } else {
                        labels.join("\n")
                    },
                    exp_path.as_deref().unwrap_or("/metrics")
                )
            }
            _ => annotations_fix(
                exp_path.as_deref().unwrap_or("/metrics"),
                exp_port.or(declared.first().copied()).unwrap_or(8080),
            ),
        };
        out.push(finding(
            "not-scraped",
            Severity::Error,
            f.doc.locate(&f.tpl(&[Seg::K("metadata")])),
            name,
            format!(
                "no pod annotation, Service annotation, ServiceMonitor, PodMonitor or static target covers {} {}: Prometheus never scrapes it",
                f.w.kind, f.w.name
            ),
            Some(fix),
        ));
    }

    if let Some(m) = f.module.filter(|m| m.spring_boot()) {
        app_rules(f, m, out);
    }
    scraped_by
}

/// A Service port's target as a number: `targetPort` (a number, or a container port name),
/// else `port`.
fn resolve_target(
    target: Option<&str>,
    port: Option<i64>,
    ports: &[(Option<String>, i64)],
) -> Option<i64> {
    match target {
        Some(t) => t.parse().ok().or_else(|| {
            ports
                .iter()
                .find(|p| p.0.as_deref() == Some(t))
                .map(|p| p.1)
        }),
        None => port,
    }
}

fn join(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// The rules of a monitor on its own: endpoints split in two, ports that name nothing, a
/// selector that selects nothing.
fn monitor_rules(m: &Monitor, docs: &[Doc], o: &Objects, facts: &[Facts], out: &mut Vec<Finding>) {
    let d = &docs[m.doc];
    let selected: Vec<&Service> = o
        .services
        .iter()
        .filter(|s| selects(&m.selector, &s.labels))
        .collect();
    let pods: Vec<&Facts> = facts
        .iter()
        .filter(|f| selects(&m.selector, &f.w.labels))
        .collect();
    let nothing = if m.kind == "ServiceMonitor" {
        selected.is_empty()
    } else {
        pods.is_empty()
    };
    if nothing {
        let what = if m.kind == "ServiceMonitor" {
            "Service"
        } else {
            "pod template"
        };
        let labels: Vec<String> = m.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push(finding(
            "monitor-selects-nothing",
            Severity::Warning,
            d.locate(&[Seg::K("spec"), Seg::K("selector")]),
            None,
            format!(
                "{} {} selects {} but no {what} in these files has {}",
                m.kind,
                m.name,
                if labels.is_empty() {
                    "nothing (no matchLabels)".into()
                } else {
                    labels.join(", ")
                },
                if labels.len() == 1 {
                    "that label"
                } else {
                    "those labels"
                }
            ),
            None,
        ));
    }
    for (i, ep) in m.endpoints.iter().enumerate() {
        let item = [Seg::K("spec"), Seg::K(m.endpoints_key), Seg::I(ep.index)];
        if ep.port.is_none() && ep.target_port.is_none() {
            let prev = i.checked_sub(1).and_then(|p| m.endpoints.get(p));
            let split = ep.path.is_some()
                && prev.is_some_and(|p| {
                    p.path.is_none() && (p.port.is_some() || p.target_port.is_some())
                });
            let service_ports: Vec<&str> = selected
                .iter()
                .flat_map(|s| s.ports.iter().filter_map(|p| p.name.as_deref()))
                .collect();
            let port = prev
                .and_then(|p| p.port.clone())
                .filter(|p| service_ports.is_empty() || service_ports.contains(&p.as_str()))
                .or_else(|| service_ports.first().map(|p| p.to_string()))
                .unwrap_or_else(|| "http".into());
            out.push(finding(
                "monitor-endpoint-incomplete",
                Severity::Error,
                d.locate(&item),
                None,
                if split {
                    format!(
                        "{} {}: this endpoint has a path but no port; with the one above it looks like one endpoint split into two list items (a `-` too many)",
                        m.kind, m.name
                    )
                } else {
                    format!("{} {}: this endpoint names no port, so it scrapes nothing", m.kind, m.name)
                },
                Some(format!(
                    "- port: {port}\n  path: {}",
                    ep.path.as_deref().unwrap_or("/actuator/prometheus")
                )),
            ));
            continue;
        }
        let Some(pn) = &ep.port else { continue };
        if m.kind == "ServiceMonitor" {
            for s in &selected {
                let names: Vec<&str> = s.ports.iter().filter_map(|p| p.name.as_deref()).collect();
                if !names.contains(&pn.as_str()) {
                    let mut p = item.to_vec();
                    p.push(Seg::K("port"));
                    out.push(finding(
                        "monitor-port-unknown",
                        Severity::Error,
                        d.locate(&p),
                        None,
                        if names.is_empty() {
                            format!(
                                "{} {}: port {pn:?} names no port of Service {}, whose ports have no name (a ServiceMonitor's port is a port name)",
                                m.kind, m.name, s.name
                            )
                        } else {
                            format!(
                                "{} {}: port {pn:?} names no port of Service {} (its ports: {})",
                                m.kind, m.name, s.name, names.join(", ")
                            )
                        },
                        Some(match names.first() {
                            Some(n) => format!("port: {n}"),
                            None => format!("name the Service's port: ports:\n  - name: {pn}\n    port: ..."),
                        }),
                    ));
                }
            }
        } else {
            for f in &pods {
                let names: Vec<&str> = f.ports.iter().filter_map(|p| p.0.as_deref()).collect();
                if !names.contains(&pn.as_str()) {
                    let mut p = item.to_vec();
                    p.push(Seg::K("port"));
                    out.push(finding(
                        "monitor-port-unknown",
                        Severity::Error,
                        d.locate(&p),
                        Some(&f.w.name),
                        format!(
                            "{} {}: port {pn:?} names no container port of {} {} (named ports: {})",
                            m.kind,
                            m.name,
                            f.w.kind,
                            f.w.name,
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                        names.first().map(|n| format!("port: {n}")),
                    ));
                }
            }
        }
    }
}

/// The application's own rules: something must listen, serve actuator, and render Prometheus
/// text, and the endpoint must be exposed and reachable.
fn app_rules(f: &Facts, m: &Module, out: &mut Vec<Finding>) {
    let name = Some(f.w.name.as_str());
    let build = (m.build_file.clone(), m.deps_line);
    let boot = "org.springframework.boot";
    if !m.web() {
        out.push(finding(
            "web-starter-missing",
            Severity::Error,
            build.clone(),
            name,
            format!(
                "module {} has no web starter (spring-boot-starter-web or -webflux): nothing listens for HTTP, so there is nothing to scrape",
                m.name
            ),
            Some(m.dependency_line(boot, "spring-boot-starter-web")),
        ));
    }
    if !m.has("spring-boot-starter-actuator") {
        out.push(finding(
            "actuator-missing",
            Severity::Error,
            build.clone(),
            name,
            format!("module {} has no spring-boot-starter-actuator: /actuator/prometheus does not exist", m.name),
            Some(m.dependency_line(boot, "spring-boot-starter-actuator")),
        ));
    }
    if !m.has("micrometer-registry-prometheus") {
        out.push(finding(
            "prometheus-registry-missing",
            Severity::Error,
            build.clone(),
            name,
            format!(
                "module {} has no micrometer-registry-prometheus: actuator has no prometheus endpoint without it",
                m.name
            ),
            Some(m.dependency_line("io.micrometer", "micrometer-registry-prometheus")),
        ));
    }
    let props = m.props(&f.env);
    let config = m
        .main_config()
        .map(|c| (c.to_string(), 1))
        .unwrap_or_else(|| {
            (
                format!("{}/src/main/resources/application.yml", m.dir.display()),
                0,
            )
        });
    let config = if config.1 == 0 { build.clone() } else { config };
    let loc = |p: &app::Prop| {
        if p.line == 0 {
            config.clone()
        } else {
            (p.file.clone(), p.line)
        }
    };
    let include = props.list("management.endpoints.web.exposure.include");
    let exposed = include
        .as_ref()
        .is_some_and(|(l, _)| l.iter().any(|x| x == "prometheus" || x == "*"));
    let excluded = props
        .list("management.endpoints.web.exposure.exclude")
        .filter(|(l, _)| l.iter().any(|x| x == "prometheus" || x == "*"));
    let fix = "management:\n  endpoints:\n    web:\n      exposure:\n        include: health,info,prometheus";
    if let Some((_, p)) = excluded {
        out.push(finding(
            "prometheus-endpoint-not-exposed",
            Severity::Error,
            loc(&p),
            name,
            format!("management.endpoints.web.exposure.exclude is {:?}: the prometheus endpoint is hidden", p.value),
            Some("remove prometheus from management.endpoints.web.exposure.exclude".into()),
        ));
    } else if !exposed {
        let (at, msg) = match &include {
            Some((l, p)) => (
                loc(p),
                format!(
                    "management.endpoints.web.exposure.include is {:?}: the prometheus endpoint is not exposed over HTTP",
                    l.join(",")
                ),
            ),
            None => (
                config.clone(),
                "management.endpoints.web.exposure.include is not set: over HTTP Spring Boot exposes only health".into(),
            ),
        };
        out.push(finding(
            "prometheus-endpoint-not-exposed",
            Severity::Error,
            at,
            name,
            msg,
            Some(fix.into()),
        ));
    }
    if props.get("management.metrics.tags.application").is_none()
        && props
            .get("management.observations.key-values.application")
            .is_none()
    {
        out.push(finding(
            "application-tag-missing",
            Severity::Warning,
            config.clone(),
            name,
            "management.metrics.tags.application is not set: the guide's JVM heap panel groups by the application label, and this service's series will not have it".into(),
            Some("management:\n  metrics:\n    tags:\n      application: ${spring.application.name}".into()),
        ));
    }
    let histogram = ["http.server.requests", "all"].iter().any(|k| {
        props
            .get(&format!(
                "management.metrics.distribution.percentiles-histogram.{k}"
            ))
            .is_some_and(|p| p.value == "true")
    });
    if !histogram {
        out.push(finding(
            "percentiles-histogram-missing",
            Severity::Note,
            config.clone(),
            name,
            "management.metrics.distribution.percentiles-histogram.http.server.requests is not true: no http_server_requests_seconds_bucket series, so latency panels (histogram_quantile) stay empty".into(),
            Some("management:\n  metrics:\n    distribution:\n      percentiles-histogram:\n        http.server.requests: true".into()),
        ));
    }
    match &m.security {
        Some((file, line, false)) => out.push(finding(
            "security-blocks-actuator",
            Severity::Warning,
            (file.clone(), *line),
            name,
            "a Spring Security configuration is here and never mentions actuator: /actuator/prometheus must be permitted, or Prometheus gets 401/403".into(),
            Some(".requestMatchers(\"/actuator/prometheus\", \"/actuator/health/**\").permitAll()".into()),
        )),
        None if m.has("spring-boot-starter-security") => out.push(finding(
            "security-blocks-actuator",
            Severity::Warning,
            build,
            name,
            "spring-boot-starter-security without a configuration of its own: every endpoint but health needs a login, so Prometheus gets 401".into(),
            Some("a SecurityFilterChain bean with .requestMatchers(\"/actuator/prometheus\").permitAll()".into()),
        )),
        _ => {}
    }
}
