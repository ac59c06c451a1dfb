//! The practice stack at scale, for `scripts/bench-scale.sh` (not a learner's feature).
//!
//! `MSA_DOCTOR_SANDBOX_SCALE=N` adds N generated Deployments of [`REPLICAS`] pods each to the
//! emulated cluster (`svc-0001` ... in the application namespace, each with its ReplicaSet,
//! pods, Service and Endpoints), all annotated for the `kubernetes-pods` job; one of them
//! ([`broken_name`]) lacks its `prometheus.io/path` annotation, so it is scraped at `/metrics`
//! and answers 404. Every generated pod has its own loopback IP from `127.240.0.1` on
//! ([`pod_ip`]); one lightweight server ([`serve`], bound to `0.0.0.0` so that every such IP
//! reaches it, answering loopback peers only) serves all of them on one port, telling the pods
//! apart by the `Host` header, with a tiny Micrometer-like exposition (a request timer
//! whose count grows with time, JVM heap, process CPU). The emulated Grafana gets
//! [`DASHBOARDS`] dashboards of [`PANELS`] panels made from the sample dashboards' Prometheus
//! panels ([`dashboards`]). The emulated Grafana and Kubernetes API then count requests, served
//! at [`REQUESTS_PATH`].
//!
//! Unset, nothing here runs and the stack is the guide's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cluster::ResourceKind;
use super::pods::{PROMETHEUS_CONTENT_TYPE, lock};

/// The environment variable that turns the scale fixture on: the number of generated
/// Deployments.
pub const ENV: &str = "MSA_DOCTOR_SANDBOX_SCALE";
/// Pods per generated Deployment (2,000 Deployments give 10,000 pods).
pub const REPLICAS: usize = 5;
/// The most generated Deployments (the loopback addresses and the file descriptors allow more;
/// the point is a bound).
pub const MAX_DEPLOYMENTS: usize = 5000;
/// Generated dashboards in the emulated Grafana.
pub const DASHBOARDS: usize = 100;
/// Panels per generated dashboard.
pub const PANELS: usize = 20;
/// The scrape interval of the `kubernetes-pods` job when the fixture is on (10,000 targets at
/// the guide's 1 s would be 10,000 scrapes a second on 2 cores).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(10);
/// Where the emulated Grafana and Kubernetes API serve their request counts (scale mode only).
pub const REQUESTS_PATH: &str = "/_sandbox/requests";
/// Requests per second each generated pod pretends to serve.
const POD_RPS: f64 = 0.2;

/// The scale fixture's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    /// Generated Deployments.
    pub deployments: usize,
}

impl Scale {
    /// Reads [`ENV`]: `None` when unset or empty; an error naming the variable when it is not
    /// a whole number from 1 to [`MAX_DEPLOYMENTS`].
    pub fn from_env() -> Result<Option<Scale>, String> {
        match std::env::var(ENV) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{ENV} is not text")),
            Ok(v) => Scale::parse(&v),
        }
    }

    /// Parses a value of [`ENV`] (see [`Scale::from_env`]).
    pub fn parse(v: &str) -> Result<Option<Scale>, String> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<usize>() {
            Ok(n) if (1..=MAX_DEPLOYMENTS).contains(&n) => Ok(Some(Scale { deployments: n })),
            _ => Err(format!(
                "{ENV}={v:?}: expected a number of Deployments from 1 to {MAX_DEPLOYMENTS}"
            )),
        }
    }

    /// Generated pods.
    pub fn pods(&self) -> usize {
        self.deployments * REPLICAS
    }

    /// The index of the broken Deployment (the middle one).
    pub fn broken(&self) -> usize {
        self.deployments / 2
    }

    /// The generated Deployments' names, in order.
    pub fn names(&self) -> Vec<String> {
        (0..self.deployments).map(name).collect()
    }
}

/// The name of generated Deployment `i` (0-based): `svc-0001`, ...
pub fn name(i: usize) -> String {
    format!("svc-{:04}", i + 1)
}

/// The name of the broken Deployment.
pub fn broken_name(scale: Scale) -> String {
    name(scale.broken())
}

/// The IP of generated pod `k` (0-based, `k / REPLICAS` is its Deployment): `127.240.0.1` on,
/// 254 to a /24, away from the guide's /24s (`127.16-239.x.x`).
pub fn pod_ip(k: usize) -> Ipv4Addr {
    let per_b = 254 * 256;
    Ipv4Addr::new(
        127,
        240 + (k / per_b) as u8,
        ((k / 254) % 256) as u8,
        (k % 254 + 1) as u8,
    )
}

/// The inverse of [`pod_ip`].
pub fn pod_index(ip: Ipv4Addr) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    if a != 127 || b < 240 || d == 0 || d == 255 {
        return None;
    }
    Some(usize::from(b - 240) * 254 * 256 + usize::from(c) * 254 + usize::from(d) - 1)
}

/// A stable pseudo-random hex string.
fn hex(seed: &str, len: usize) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::new();
    let mut n = 0u64;
    while out.len() < len {
        for b in seed.bytes().chain(n.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let _ = write!(out, "{h:016x}");
        n += 1;
    }
    out.truncate(len);
    out
}

fn uid(seed: &str) -> String {
    let h = hex(seed, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A short lowercase alphanumeric string, like the ReplicaSet hash and pod suffix.
fn short(seed: &str, len: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hex(seed, len * 2)
        .as_bytes()
        .chunks(2)
        .map(|c| {
            let v = u8::from_str_radix(std::str::from_utf8(c).unwrap_or("0"), 16).unwrap_or(0);
            ALPHA[usize::from(v) % ALPHA.len()] as char
        })
        .collect()
}

/// The Kubernetes objects of the generated Deployments: per Deployment its ReplicaSet,
/// [`REPLICAS`] running pods on `node`, a Service and its Endpoints. `port` is where
/// [`serve`] listens (the containers' port and the scrape annotation's).
pub fn objects(
    scale: Scale,
    namespace: &str,
    node: &str,
    node_ip: Ipv4Addr,
    port: u16,
    now: SystemTime,
) -> Vec<(ResourceKind, Value)> {
    let ts =
        |ago: u64| humantime::format_rfc3339_seconds(now - Duration::from_secs(ago)).to_string();
    let created = ts(26 * 3600);
    let started = ts(8);
    let mut out = Vec::with_capacity(scale.deployments * (4 + REPLICAS));
    for i in 0..scale.deployments {
        let app = name(i);
        let mut annotations = json!({
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port.to_string(),
            "prometheus.io/path": "/actuator/prometheus",
        });
        if i == scale.broken() {
            // The broken one: no path, so the chart's job scrapes /metrics (404).
            annotations
                .as_object_mut()
                .map(|a| a.remove("prometheus.io/path"));
        }
        let image = format!("registry.example.com/shop/{app}:1.4.2");
        let template = json!({
            "metadata": {"labels": {"app": app}, "annotations": annotations},
            "spec": {
                "containers": [{
                    "name": app, "image": image, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
                    "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "k8s"},
                            {"name": "MANAGEMENT_METRICS_TAGS_APPLICATION", "value": app}],
                    "resources": {}
                }],
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"
            }
        });
        let hash = short(&format!("rs/{app}"), 10);
        let rs_name = format!("{app}-{hash}");
        let deploy_uid = uid(&format!("deploy/{namespace}/{app}"));
        let rs_uid = uid(&format!("rs/{namespace}/{rs_name}"));
        let replicas = REPLICAS;
        out.push((
            ResourceKind::Deployment,
            json!({
                "metadata": {"name": app, "namespace": namespace, "uid": deploy_uid, "generation": 1,
                             "creationTimestamp": created, "labels": {"app": app},
                             "annotations": {"deployment.kubernetes.io/revision": "1"}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template,
                         "strategy": {"type": "RollingUpdate"}},
                "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                           "readyReplicas": replicas, "availableReplicas": replicas,
                           "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                           "lastUpdateTime": created, "lastTransitionTime": created}]}
            }),
        ));
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let labels = rs_template["metadata"]["labels"].clone();
        let owner = |kind: &str, name: &str, uid: &str| {
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}])
        };
        out.push((
            ResourceKind::ReplicaSet,
            json!({
                "metadata": {"name": rs_name, "namespace": namespace, "uid": rs_uid, "generation": 1,
                             "creationTimestamp": created, "labels": labels,
                             "ownerReferences": owner("Deployment", &app, &deploy_uid)},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app, "pod-template-hash": hash}},
                         "template": rs_template},
                "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": replicas,
                           "availableReplicas": replicas, "observedGeneration": 1}
            }),
        ));
        let mut addresses = Vec::new();
        for r in 0..replicas {
            let k = i * REPLICAS + r;
            let ip = pod_ip(k).to_string();
            let pod_name = format!("{rs_name}-{}", short(&format!("{rs_name}/{r}"), 5));
            let pod_uid = uid(&format!("pod/{namespace}/{pod_name}"));
            let mut spec = rs_template["spec"].clone();
            spec["nodeName"] = json!(node);
            spec["serviceAccountName"] = json!("default");
            let cond =
                |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": started});
            out.push((
                ResourceKind::Pod,
                json!({
                    "metadata": {"name": pod_name, "generateName": format!("{rs_name}-"), "namespace": namespace,
                                 "uid": pod_uid, "creationTimestamp": started, "labels": labels,
                                 "annotations": rs_template["metadata"]["annotations"],
                                 "ownerReferences": owner("ReplicaSet", &rs_name, &rs_uid)},
                    "spec": spec,
                    "status": {
                        "phase": "Running",
                        "conditions": [cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
                        "hostIP": node_ip.to_string(), "podIP": ip, "podIPs": [{"ip": ip}], "startTime": started,
                        "containerStatuses": [{"name": app, "ready": true, "started": true, "restartCount": 0,
                                               "image": image, "imageID": format!("{image}@sha256:{}", hex(&image, 64)),
                                               "containerID": format!("containerd://{}", hex(&pod_uid, 64)),
                                               "state": {"running": {"startedAt": started}}}],
                        "qosClass": "BestEffort"
                    }
                }),
            ));
            addresses.push(json!({"ip": ip, "nodeName": node,
                                  "targetRef": {"kind": "Pod", "name": pod_name, "namespace": namespace, "uid": pod_uid}}));
        }
        let h = i as u64;
        let cluster_ip = format!("10.97.{}.{}", (h / 250) % 256, h % 250 + 2);
        out.push((
            ResourceKind::Service,
            json!({
                "metadata": {"name": app, "namespace": namespace, "uid": uid(&format!("svc/{namespace}/{app}")),
                             "creationTimestamp": created, "labels": {"app": app}},
                "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                         "selector": {"app": app},
                         "ports": [{"name": "http", "port": 8080, "targetPort": port, "protocol": "TCP"}]},
                "status": {"loadBalancer": {}}
            }),
        ));
        out.push((
            ResourceKind::Endpoints,
            json!({
                "metadata": {"name": app, "namespace": namespace, "uid": uid(&format!("ep/{namespace}/{app}")),
                             "creationTimestamp": created, "labels": {"app": app}},
                "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]
            }),
        ));
    }
    out
}

/// The exposition of generated pod `k` at `elapsed` since the fixture started: a request timer
/// whose count grows at [`POD_RPS`], JVM heap and process CPU, Micrometer's names and tags.
pub fn exposition(k: usize, elapsed: Duration) -> String {
    let app = name(k / REPLICAS);
    // Each pod starts from its own count so that the series differ.
    let count = (elapsed.as_secs_f64() * POD_RPS).floor() as u64 + 3 + (k % 7) as u64;
    let sum = count as f64 * 0.0125;
    let heap = 48_000_000 + (k % 97) * 131_072;
    let tags = format!(
        "application=\"{app}\",error=\"none\",exception=\"none\",method=\"GET\",outcome=\"SUCCESS\",status=\"200\",uri=\"/api/items\""
    );
    let mut s = String::with_capacity(1200);
    s.push_str("# HELP http_server_requests_seconds Duration of HTTP server request handling\n");
    s.push_str("# TYPE http_server_requests_seconds summary\n");
    let _ = writeln!(s, "http_server_requests_seconds_count{{{tags}}} {count}");
    let _ = writeln!(s, "http_server_requests_seconds_sum{{{tags}}} {sum}");
    s.push_str(
        "# HELP http_server_requests_seconds_max Duration of HTTP server request handling\n",
    );
    s.push_str("# TYPE http_server_requests_seconds_max gauge\n");
    let _ = writeln!(s, "http_server_requests_seconds_max{{{tags}}} 0.021");
    s.push_str("# HELP jvm_memory_used_bytes The amount of used memory\n");
    s.push_str("# TYPE jvm_memory_used_bytes gauge\n");
    let _ = writeln!(
        s,
        "jvm_memory_used_bytes{{application=\"{app}\",area=\"heap\",id=\"G1 Eden Space\"}} {heap}"
    );
    let _ = writeln!(
        s,
        "jvm_memory_used_bytes{{application=\"{app}\",area=\"nonheap\",id=\"Metaspace\"}} 61440000"
    );
    s.push_str(
        "# HELP process_cpu_usage The \"recent cpu usage\" for the Java Virtual Machine process\n",
    );
    s.push_str("# TYPE process_cpu_usage gauge\n");
    let _ = writeln!(s, "process_cpu_usage{{application=\"{app}\"}} 0.0025");
    s
}

struct PodsState {
    scale: Scale,
    started: Instant,
}

/// Serves every generated pod on `listener` (bound to `0.0.0.0`, so that connections to any
/// pod IP reach it) until `shutdown` turns true: `/actuator/prometheus` and
/// `/actuator/health` for the pod the `Host` header names, 404 otherwise. Connections from
/// outside loopback are refused with 403 and nothing else.
pub fn serve(
    listener: TcpListener,
    scale: Scale,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let st = Arc::new(PodsState {
        scale,
        started: Instant::now(),
    });
    let router = Router::new().fallback(pod_entry).with_state(st);
    tokio::spawn(async move {
        let mut rx = shutdown;
        let signal = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await;
    })
}

async fn pod_entry(
    State(st): State<Arc<PodsState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if !peer.ip().is_loopback() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let ip = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let Some(k) = ip
        .parse::<Ipv4Addr>()
        .ok()
        .and_then(pod_index)
        .filter(|k| *k < st.scale.pods())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match req.uri().path() {
        "/actuator/prometheus" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            exposition(k, st.started.elapsed()),
        )
            .into_response(),
        "/actuator/health" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/vnd.spring-boot.actuator.v3+json")],
            r#"{"status":"UP"}"#,
        )
            .into_response(),
        path => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"timestamp":"2026-01-01T00:00:00.000+00:00","status":404,"error":"Not Found","path":"{}"}}"#,
                path.replace(['"', '\\'], "")
            ),
        )
            .into_response(),
    }
}

/// The generated dashboards: [`DASHBOARDS`] dashboards of [`PANELS`] panels each, cycling
/// through the sample dashboards' Prometheus panels (the guide's four and the Spring Boot
/// sample's nine); dashboard `i` selects generated service `i` in its `app_name` variable, so
/// the same panel differs across dashboards as it does in a real Grafana with many teams.
pub fn dashboards(scale: Scale) -> Vec<Value> {
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let guide = parse(include_str!("dashboards/msa-monitoring.json"));
    let spring = parse(include_str!("dashboards/spring-boot-observability.json"));
    let is_prom = |p: &&Value| p["datasource"]["type"] == "prometheus";
    let panels: Vec<Value> = guide["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spring["panels"].as_array().into_iter().flatten())
        .filter(is_prom)
        .cloned()
        .collect();
    if panels.is_empty() {
        return Vec::new();
    }
    (0..DASHBOARDS)
        .map(|d| {
            let svc = name(d % scale.deployments);
            let mut templating = spring["templating"].clone();
            if let Some(vars) = templating["list"].as_array_mut() {
                for v in vars.iter_mut().filter(|v| v["name"] == "app_name") {
                    v["current"] = json!({"selected": false, "text": svc, "value": svc});
                }
            }
            let list: Vec<Value> = (0..PANELS)
                .map(|i| {
                    let mut p = panels[(d + i) % panels.len()].clone();
                    p["id"] = json!(i + 1);
                    let title = p["title"].as_str().unwrap_or("panel").to_string();
                    p["title"] = json!(format!("{title} #{}", i + 1));
                    p["gridPos"] = json!({"h": 8, "w": 8, "x": (i % 3) * 8, "y": (i / 3) * 8});
                    p
                })
                .collect();
            json!({
                "uid": format!("scale-{:03}", d + 1),
                "title": format!("Team {:03} services", d + 1),
                "schemaVersion": 39, "version": 1,
                "time": {"from": "now-15m", "to": "now"},
                "templating": templating,
                "panels": list
            })
        })
        .collect()
}

/// Request counts of one emulated server, for [`REQUESTS_PATH`].
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounter {
    /// Counts one request under `key`.
    pub fn count(&self, key: String) {
        *lock(&self.counts).entry(key).or_default() += 1;
    }

    /// `{"total": N, "by": {key: n}}`.
    pub fn snapshot(&self) -> Value {
        let counts = lock(&self.counts);
        json!({"total": counts.values().sum::<u64>(), "by": *counts})
    }
}

/// The counting key of a request: method and path with its variable parts (names, uids,
/// queries) cut, so that the breakdown stays short; a data source proxy call is keyed by the
/// Prometheus API path behind it (`GET proxy /api/v1/targets`).
fn route_key(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["api", "datasources", "proxy", "uid", _, rest @ ..]
        | ["api", "datasources", "proxy", _, rest @ ..] => {
            format!("{method} proxy /{}", rest.join("/"))
        }
        ["api", "dashboards", "uid", _] => format!("{method} /api/dashboards/uid/*"),
        _ => {
            // Kubernetes: up to the resource of a namespace (`.../namespaces/NS/pods`).
            let keep = match segs.iter().position(|s| *s == "namespaces") {
                Some(p) if segs.len() > p + 2 => p + 3,
                _ => segs.len().min(4),
            };
            format!("{method} /{}", segs[..keep].join("/"))
        }
    }
}

/// Middleware for the emulated Grafana: answers [`REQUESTS_PATH`] with the counts and counts
/// every other request.
pub async fn count_grafana(
    State(counter): State<Arc<RequestCounter>>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == REQUESTS_PATH {
        return axum::Json(counter.snapshot()).into_response();
    }
    counter.count(route_key(req.method().as_str(), req.uri().path()));
    next.run(req).await
}

/// Middleware for the emulated Kubernetes API: like [`count_grafana`], but the database's own
/// traffic (HTTP SD at `/_sd/`, VictoriaMetrics' discovery, and watches) is not counted.
pub async fn count_kube(
    State(counter): State<Arc<RequestCounter>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path == REQUESTS_PATH {
        return axum::Json(counter.snapshot()).into_response();
    }
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    // VictoriaMetrics' Kubernetes discovery sends Go's default agent; msa-doctor's kube
    // client sends none.
    let database = agent.starts_with("vm_promscrape")
        || agent.starts_with("Go-http-client")
        || agent.starts_with("Prometheus")
        || agent.contains("VictoriaMetrics");
    let watch = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=1" || p == "watch=true"));
    if !path.starts_with("/_sd/") && !database && !watch {
        // The client's name too, so that a stray client shows in the breakdown.
        let client = agent.split(['/', ' ']).next().unwrap_or_default();
        counter.count(format!(
            "{} ({})",
            route_key(req.method().as_str(), path),
            if client.is_empty() { "-" } else { client }
        ));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_parses_and_bounds() {
        assert_eq!(Scale::parse(""), Ok(None));
        assert_eq!(
            Scale::parse(" 2000 "),
            Ok(Some(Scale { deployments: 2000 }))
        );
        for bad in ["0", "-1", "two", "5001", "1e3"] {
            let e = Scale::parse(bad).unwrap_err();
            assert!(e.contains(ENV) && e.contains("from 1 to 5000"), "{e}");
        }
    }

    #[test]
    fn pod_ips_are_distinct_and_invertible() {
        let mut seen = std::collections::HashSet::new();
        for k in 0..MAX_DEPLOYMENTS * REPLICAS {
            let ip = pod_ip(k);
            assert!(ip.is_loopback());
            assert!(ip.octets()[1] >= 240, "{ip} leaves the guide's /24s alone");
            assert!(seen.insert(ip), "{ip} twice");
            assert_eq!(pod_index(ip), Some(k));
        }
        assert_eq!(pod_index(Ipv4Addr::new(127, 16, 1, 1)), None);
    }

    #[test]
    fn objects_are_consistent_and_one_deployment_is_broken() {
        let scale = Scale { deployments: 10 };
        let objs = objects(
            scale,
            "metacoding",
            "node-1",
            Ipv4Addr::new(127, 1, 1, 254),
            41234,
            SystemTime::now(),
        );
        let of = |k: ResourceKind| objs.iter().filter(move |(kind, _)| *kind == k);
        assert_eq!(of(ResourceKind::Deployment).count(), 10);
        assert_eq!(of(ResourceKind::Pod).count(), 10 * REPLICAS);
        assert_eq!(of(ResourceKind::Service).count(), 10);
        let without_path: Vec<&str> = of(ResourceKind::Deployment)
            .filter(|(_, d)| {
                d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"].is_null()
            })
            .map(|(_, d)| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(without_path, vec![broken_name(scale).as_str()]);
        // Every pod's IP maps back to its own Deployment, and its owner chain is complete.
        for (_, p) in of(ResourceKind::Pod) {
            let ip: Ipv4Addr = p["status"]["podIP"].as_str().unwrap().parse().unwrap();
            let k = pod_index(ip).unwrap();
            assert_eq!(p["metadata"]["labels"]["app"], json!(name(k / REPLICAS)));
            assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
            assert_eq!(p["metadata"]["annotations"]["prometheus.io/port"], "41234");
        }
        let names: std::collections::HashSet<&str> = of(ResourceKind::Pod)
            .map(|(_, p)| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 10 * REPLICAS);
    }

    #[test]
    fn exposition_counts_up_per_pod() {
        let a = exposition(12, Duration::from_secs(0));
        let b = exposition(12, Duration::from_secs(60));
        let count = |s: &str| -> u64 {
            s.lines()
                .find(|l| l.starts_with("http_server_requests_seconds_count{"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        assert_eq!(count(&b) - count(&a), 12);
        assert!(a.contains(r#"application="svc-0003""#), "{a}");
        assert!(a.contains(r#"jvm_memory_used_bytes{application="svc-0003",area="heap""#));
    }

    #[test]
    fn requests_are_keyed_by_route() {
        assert_eq!(
            route_key(
                "GET",
                "/api/datasources/proxy/uid/prometheus/api/v1/targets"
            ),
            "GET proxy /api/v1/targets"
        );
        assert_eq!(
            route_key("POST", "/api/datasources/proxy/1/api/v1/query"),
            "POST proxy /api/v1/query"
        );
        assert_eq!(
            route_key("GET", "/api/v1/namespaces/metacoding/pods/x"),
            "GET /api/v1/namespaces/metacoding/pods"
        );
        assert_eq!(
            route_key("GET", "/apis/apps/v1/namespaces/metacoding/deployments"),
            "GET /apis/apps/v1/namespaces/metacoding/deployments"
        );
        assert_eq!(
            route_key("GET", "/api/v1/namespaces/metacoding"),
            "GET /api/v1/namespaces/metacoding"
        );
        assert_eq!(
            route_key("GET", "/api/dashboards/uid/scale-007"),
            "GET /api/dashboards/uid/*"
        );
    }

    #[test]
    fn dashboards_have_twenty_prometheus_panels() {
        let ds = dashboards(Scale { deployments: 200 });
        assert_eq!(ds.len(), DASHBOARDS);
        for d in &ds {
            let panels = d["panels"].as_array().unwrap();
            assert_eq!(panels.len(), PANELS);
            assert!(
                panels
                    .iter()
                    .all(|p| p["datasource"]["type"] == "prometheus")
            );
        }
        assert_eq!(
            ds[7]["templating"]["list"][0]["current"]["value"],
            "svc-0008"
        );
    }
}
