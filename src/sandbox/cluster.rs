//! The emulated cluster: its objects and the lifetime of everything it runs.
//!
//! Owns the in-memory model of the practice stack's Kubernetes cluster — namespaces
//! `metacoding` and `monitoring`, one node, the Deployments of the guide (the four services,
//! a Kafka broker, a database, the Kafka exporter, Grafana, Prometheus), their ReplicaSets,
//! the Pods made from each Deployment's pod template, Services and Endpoints — as JSON objects
//! in a versioned [`Store`] with an event history for watches. [`ClusterSim`] allocates a
//! loopback /24 for the pod IPs, starts the pods' processes (`pods.rs`) and the API server
//! (`kube_api.rs`), writes a kubeconfig, and stops it all again.
//!
//! The faults of `faults.rs` that concern the cluster are applied here, when the objects are
//! built (a missing annotation, replicas 0, an extra pod label, ...). This module does not
//! speak HTTP.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::faults::{Fault, FaultSet};
use super::kube_api;
use super::pods::{self, ContainerPlan, PodPlan, PodRole, Workloads, lock};
use super::scale::{self, RequestCounter, Scale};

/// What the cluster is made of.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The services' namespace (`metacoding`).
    pub app_namespace: String,
    /// Grafana's and Prometheus' namespace (`monitoring`).
    pub monitoring_namespace: String,
    /// The faults to build in.
    pub faults: FaultSet,
    /// Grafana's port on 127.0.0.1, where `svc/grafana`'s Endpoints point.
    pub grafana_port: u16,
    /// Generated Deployments added for the scale benchmark (`None`: the guide's cluster only).
    pub scale: Option<Scale>,
}

impl ClusterOptions {
    /// The guide's namespaces, with these faults and Grafana's port.
    pub fn new(faults: FaultSet, grafana_port: u16) -> ClusterOptions {
        ClusterOptions {
            app_namespace: "metacoding".into(),
            monitoring_namespace: "monitoring".into(),
            faults,
            grafana_port,
            scale: None,
        }
    }
}

/// The kinds of object the emulated API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceKind {
    /// core/v1 Namespace (cluster-scoped).
    Namespace,
    /// core/v1 Node (cluster-scoped).
    Node,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// core/v1 Endpoints.
    Endpoints,
}

impl ResourceKind {
    /// Every kind, core/v1 first.
    pub const ALL: [ResourceKind; 7] = [
        ResourceKind::Namespace,
        ResourceKind::Node,
        ResourceKind::Pod,
        ResourceKind::Service,
        ResourceKind::Endpoints,
        ResourceKind::Deployment,
        ResourceKind::ReplicaSet,
    ];

    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            ResourceKind::Deployment | ResourceKind::ReplicaSet => "apps",
            _ => "",
        }
    }

    /// `apiVersion` of the objects.
    pub fn api_version(self) -> &'static str {
        if self.group() == "apps" {
            "apps/v1"
        } else {
            "v1"
        }
    }

    /// `kind` of the objects.
    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "Namespace",
            ResourceKind::Node => "Node",
            ResourceKind::Deployment => "Deployment",
            ResourceKind::ReplicaSet => "ReplicaSet",
            ResourceKind::Pod => "Pod",
            ResourceKind::Service => "Service",
            ResourceKind::Endpoints => "Endpoints",
        }
    }

    /// The resource name in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "namespaces",
            ResourceKind::Node => "nodes",
            ResourceKind::Deployment => "deployments",
            ResourceKind::ReplicaSet => "replicasets",
            ResourceKind::Pod => "pods",
            ResourceKind::Service => "services",
            ResourceKind::Endpoints => "endpoints",
        }
    }

    /// The singular name (discovery).
    pub fn singular(self) -> &'static str {
        match self {
            ResourceKind::Endpoints => "endpoints",
            k => k.plural().trim_end_matches('s'),
        }
    }

    /// kubectl's short names.
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            ResourceKind::Namespace => &["ns"],
            ResourceKind::Node => &["no"],
            ResourceKind::Deployment => &["deploy"],
            ResourceKind::ReplicaSet => &["rs"],
            ResourceKind::Pod => &["po"],
            ResourceKind::Service => &["svc"],
            ResourceKind::Endpoints => &["ep"],
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(self, ResourceKind::Namespace | ResourceKind::Node)
    }

    /// The kind with this group and plural.
    pub fn from_plural(group: &str, plural: &str) -> Option<ResourceKind> {
        ResourceKind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.plural() == plural)
    }
}

/// One change in the store's history.
#[derive(Clone, Debug)]
pub struct StoreEvent {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Kind of the object.
    pub kind: ResourceKind,
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub event_type: &'static str,
    /// The object after the change (with kind and apiVersion).
    pub object: Value,
}

#[derive(Debug)]
struct StoreInner {
    rv: u64,
    min_rv: u64,
    objects: BTreeMap<(ResourceKind, String, String), Value>,
    events: Vec<StoreEvent>,
}

/// The objects of the cluster, versioned like etcd: every change takes the next
/// resourceVersion and is kept in a history that watches read; [`Store::compact`] forgets it.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<StoreInner>,
    changed: watch::Sender<u64>,
}

/// What happened since a resourceVersion.
#[derive(Debug)]
pub enum Since {
    /// The changes after it, oldest first.
    Events(Vec<StoreEvent>),
    /// It was compacted away: only versions from `oldest` on can be watched.
    Expired {
        /// The oldest watchable version.
        oldest: u64,
    },
}

fn object_key(kind: ResourceKind, obj: &Value) -> (ResourceKind, String, String) {
    let meta = &obj["metadata"];
    let ns = if kind.namespaced() {
        meta["namespace"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    let name = meta["name"].as_str().unwrap_or_default().to_string();
    (kind, ns, name)
}

impl Store {
    /// An empty store whose next change gets `first_rv`.
    pub fn new(first_rv: u64) -> Store {
        let rv = first_rv.saturating_sub(1);
        Store {
            inner: Mutex::new(StoreInner {
                rv,
                min_rv: 0,
                objects: BTreeMap::new(),
                events: Vec::new(),
            }),
            changed: watch::channel(rv).0,
        }
    }

    /// The current resourceVersion (what a list answers, always watchable).
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner).rv
    }

    /// Creates or replaces an object; returns its new resourceVersion.
    pub fn upsert(&self, kind: ResourceKind, mut obj: Value) -> u64 {
        let mut st = lock(&self.inner);
        st.rv += 1;
        let rv = st.rv;
        if let Some(m) = obj.as_object_mut() {
            m.insert("apiVersion".into(), kind.api_version().into());
            m.insert("kind".into(), kind.kind().into());
        }
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), rv.to_string().into());
        }
        let key = object_key(kind, &obj);
        let event_type = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key, obj.clone());
        st.events.push(StoreEvent {
            rv,
            kind,
            event_type,
            object: obj,
        });
        drop(st);
        self.changed.send_replace(rv);
        rv
    }

    /// Changes an object in place; returns its new resourceVersion, `None` if it is absent.
    pub fn modify(
        &self,
        kind: ResourceKind,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<u64> {
        let mut obj = self.get(kind, namespace, name)?;
        change(&mut obj);
        Some(self.upsert(kind, obj))
    }

    /// Deletes an object; returns the resourceVersion of the deletion.
    pub fn delete(&self, kind: ResourceKind, namespace: &str, name: &str) -> Option<u64> {
        let ns = if kind.namespaced() { namespace } else { "" };
        let mut st = lock(&self.inner);
        let mut obj = st
            .objects
            .remove(&(kind, ns.to_string(), name.to_string()))?;
        st.rv += 1;
        let rv = st.rv;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), rv.to_string().into());
        }
        st.events.push(StoreEvent {
            rv,
            kind,
            event_type: "DELETED",
            object: obj,
        });
        drop(st);
        self.changed.send_replace(rv);
        Some(rv)
    }

    /// One object (with kind and apiVersion).
    pub fn get(&self, kind: ResourceKind, namespace: &str, name: &str) -> Option<Value> {
        let ns = if kind.namespaced() { namespace } else { "" };
        lock(&self.inner)
            .objects
            .get(&(kind, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The objects of a kind, in one namespace or all, and the list's resourceVersion.
    pub fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let st = lock(&self.inner);
        let items = st
            .objects
            .iter()
            .filter(|((k, ns, _), _)| *k == kind && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.rv)
    }

    /// The changes of a kind after `since` (0: none, the caller lists instead).
    pub fn since(&self, kind: ResourceKind, since: u64) -> Since {
        let st = lock(&self.inner);
        if since < st.min_rv {
            return Since::Expired { oldest: st.min_rv };
        }
        Since::Events(
            st.events
                .iter()
                .filter(|e| e.rv > since && e.kind == kind)
                .cloned()
                .collect(),
        )
    }

    /// Forgets the history, as etcd compaction does: watches from any version before the
    /// current one get `410 Expired`; the current version stays watchable.
    pub fn compact(&self) {
        let mut st = lock(&self.inner);
        st.rv += 1;
        st.min_rv = st.rv;
        st.events.clear();
        let rv = st.rv;
        drop(st);
        self.changed.send_replace(rv);
    }

    /// A receiver that wakes on every change (its value is the newest resourceVersion).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// FNV-1a with a splitmix64 finish, for stable names, hashes and ids.
fn fnv(data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Kubernetes' `rand.SafeEncodeString` alphabet (no vowels, no look-alikes).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn safe_string(seed: &str, len: usize) -> String {
    let mut h = fnv(seed);
    (0..len)
        .map(|i| {
            if i % 12 == 11 {
                h = fnv(&format!("{seed}{i}"));
            }
            let c = SAFE[(h % SAFE.len() as u64) as usize] as char;
            h /= SAFE.len() as u64;
            c
        })
        .collect()
}

fn hex(seed: &str, len: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{:016x}", fnv(&format!("{seed}/{i}"))));
        i += 1;
    }
    s.truncate(len);
    s
}

fn uid(seed: &str) -> String {
    let h = hex(seed, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The image reference the container runtime reports (`docker.io/...`).
fn full_image(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    if !image.contains('/') {
        format!("docker.io/library/{image}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        image.to_string()
    } else {
        format!("docker.io/{image}")
    }
}

fn str_map(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One Deployment of the model, before it becomes JSON.
#[derive(Clone, Debug)]
struct WorkloadDef {
    name: String,
    namespace: String,
    image: String,
    port_name: &'static str,
    port: u16,
    service_port: u16,
    deploy_annotations: Vec<(String, String)>,
    template_annotations: Vec<(String, String)>,
    extra_labels: Vec<(String, String)>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    replicas: u32,
    role: PodRole,
    listening: bool,
    idle_cpu: f64,
    ip_index: u8,
    /// Where the Service's Endpoints point instead of the pod (Grafana's port-forward).
    endpoints_at: Option<(Ipv4Addr, u16)>,
    /// Extra containers without ports (name, image), like Grafana's dashboard sidecar.
    sidecars: Vec<(String, String)>,
}

/// The guide's four services.
pub const SERVICES: [&str; 4] = [
    "user-service",
    "order-service",
    "delivery-service",
    "orchestrator-service",
];

fn scrape_annotations(scrape: bool, path: Option<&str>, port: u16) -> Vec<(String, String)> {
    let mut a = Vec::new();
    if scrape {
        a.push(("prometheus.io/scrape".to_string(), "true".to_string()));
    }
    if let Some(p) = path {
        a.push(("prometheus.io/path".to_string(), p.to_string()));
    }
    a.push(("prometheus.io/port".to_string(), port.to_string()));
    a
}

fn workload_defs(opts: &ClusterOptions) -> Vec<WorkloadDef> {
    let f = &opts.faults;
    let app_ns = opts.app_namespace.as_str();
    let mut defs = Vec::new();
    for (i, name) in SERVICES.iter().enumerate() {
        let mut deploy_annotations = Vec::new();
        let mut template = scrape_annotations(true, Some("/actuator/prometheus"), 8080);
        match *name {
            "order-service" if f.has(Fault::AnnotationOnDeployment) => {
                deploy_annotations = template;
                template = Vec::new();
            }
            "order-service" if f.has(Fault::NoAnnotation) => {
                template = scrape_annotations(false, Some("/actuator/prometheus"), 8080);
            }
            "delivery-service" if f.has(Fault::WrongPath) => {
                template = scrape_annotations(true, None, 8080);
            }
            _ => {}
        }
        let mut env = pairs(&[
            ("SPRING_PROFILES_ACTIVE", "k8s"),
            ("MANAGEMENT_METRICS_TAGS_APPLICATION", name),
        ]);
        if *name != "user-service" {
            env.push(("SPRING_KAFKA_BOOTSTRAP_SERVERS".into(), "kafka:9092".into()));
        }
        defs.push(WorkloadDef {
            name: name.to_string(),
            namespace: app_ns.into(),
            image: format!("metacoding/{name}:1.0"),
            port_name: "http",
            port: 8080,
            service_port: 8080,
            deploy_annotations,
            template_annotations: template,
            // label-collision: a team-wide pod label `application: metacoding`, which the
            // chart's labelmap turns into a target label that overrides (honor_labels: false)
            // Micrometer's own `application="<service>"` tag.
            extra_labels: if f.has(Fault::LabelCollision) {
                pairs(&[("application", "metacoding")])
            } else {
                Vec::new()
            },
            env,
            args: Vec::new(),
            replicas: if f.has(Fault::StaleData) { 0 } else { 1 },
            role: PodRole::SpringBoot,
            listening: !(f.has(Fault::NothingListening) && *name == "orchestrator-service"),
            idle_cpu: 0.004,
            ip_index: i as u8 + 1,
            endpoints_at: None,
            sidecars: Vec::new(),
        });
    }
    let plain = |name: &str,
                 ns: &str,
                 image: &str,
                 port_name: &'static str,
                 port: u16,
                 idx: u8,
                 cpu: f64| {
        WorkloadDef {
            name: name.into(),
            namespace: ns.into(),
            image: image.into(),
            port_name,
            port,
            service_port: port,
            deploy_annotations: Vec::new(),
            template_annotations: Vec::new(),
            extra_labels: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            replicas: 1,
            role: PodRole::Passive,
            listening: false,
            idle_cpu: cpu,
            ip_index: idx,
            endpoints_at: None,
            sidecars: Vec::new(),
        }
    };
    let mut kafka = plain(
        "kafka",
        app_ns,
        "bitnami/kafka:3.7.0",
        "client",
        9092,
        5,
        0.02,
    );
    kafka.env = pairs(&[
        ("KAFKA_CFG_NODE_ID", "0"),
        ("KAFKA_CFG_PROCESS_ROLES", "controller,broker"),
        (
            "KAFKA_CFG_LISTENERS",
            "PLAINTEXT://:9092,CONTROLLER://:9093",
        ),
        ("KAFKA_CFG_ADVERTISED_LISTENERS", "PLAINTEXT://kafka:9092"),
        ("KAFKA_CFG_AUTO_CREATE_TOPICS_ENABLE", "false"),
    ]);
    defs.push(kafka);
    let mut mysql = plain("mysql", app_ns, "mysql:8.0", "mysql", 3306, 6, 0.006);
    mysql.env = pairs(&[("MYSQL_DATABASE", "metacoding")]);
    defs.push(mysql);
    if !f.has(Fault::NoKafkaExporter) {
        let mut exporter = plain(
            "kafka-exporter",
            app_ns,
            "danielqsj/kafka-exporter:v1.7.0",
            "metrics",
            9308,
            7,
            0.001,
        );
        exporter.template_annotations = scrape_annotations(true, Some("/metrics"), 9308);
        exporter.args = vec!["--kafka.server=kafka:9092".into()];
        exporter.role = PodRole::KafkaExporter;
        exporter.listening = true;
        defs.push(exporter);
    }
    let mon = opts.monitoring_namespace.as_str();
    let mut grafana = plain(
        "grafana",
        mon,
        "grafana/grafana:10.4.2",
        "http-grafana",
        3000,
        8,
        0.01,
    );
    grafana.endpoints_at = Some((Ipv4Addr::LOCALHOST, opts.grafana_port));
    // The Helm chart's sidecar that loads dashboards from ConfigMaps: a container without ports.
    grafana.sidecars = vec![(
        "grafana-sc-dashboard".into(),
        "quay.io/kiwigrid/k8s-sidecar:1.26.1".into(),
    )];
    defs.push(grafana);
    let mut prometheus = plain(
        "prometheus",
        mon,
        "prom/prometheus:v2.42.0",
        "web",
        9090,
        9,
        0.03,
    );
    prometheus.args = vec![
        "--config.file=/etc/prometheus/prometheus.yml".into(),
        "--storage.tsdb.path=/prometheus".into(),
    ];
    defs.push(prometheus);
    defs
}

/// The objects and running pods the model produces.
struct Model {
    objects: Vec<(ResourceKind, Value)>,
    plans: Vec<PodPlan>,
}

const NODE: &str = "node-1";

fn pod_template(d: &WorkloadDef) -> Value {
    let mut labels = vec![("app".to_string(), d.name.clone())];
    labels.extend(d.extra_labels.iter().cloned());
    let mut meta = Map::new();
    meta.insert("labels".into(), str_map(&labels));
    if !d.template_annotations.is_empty() {
        meta.insert("annotations".into(), str_map(&d.template_annotations));
    }
    let mut container = json!({
        "name": d.name,
        "image": d.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": d.port_name, "containerPort": d.port, "protocol": "TCP"}],
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"
    });
    if !d.env.is_empty() {
        container["env"] = Value::Array(
            d.env
                .iter()
                .map(|(k, v)| json!({"name": k, "value": v}))
                .collect(),
        );
    }
    if !d.args.is_empty() {
        container["args"] = json!(d.args);
    }
    let mut containers = vec![container];
    for (name, image) in &d.sidecars {
        containers.push(json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "LABEL", "value": "grafana_dashboard"}, {"name": "FOLDER", "value": "/tmp/dashboards"}],
            "resources": {},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File"
        }));
    }
    json!({
        "metadata": meta,
        "spec": {
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler"
        }
    })
}

fn build_model(opts: &ClusterOptions, prefix: [u8; 3], now: SystemTime) -> Model {
    let ts =
        |ago: u64| humantime::format_rfc3339_seconds(now - Duration::from_secs(ago)).to_string();
    let created = ts(26 * 3600);
    let started = ts(8);
    let node_ip = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 254);
    let mut objects = Vec::new();
    let mut plans = Vec::new();

    for ns in [&opts.app_namespace, &opts.monitoring_namespace] {
        objects.push((
            ResourceKind::Namespace,
            json!({
                "metadata": {"name": ns, "uid": uid(&format!("ns/{ns}")), "creationTimestamp": created,
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            }),
        ));
    }
    let node_info = json!({
        "architecture": "amd64", "bootID": uid("boot"), "containerRuntimeVersion": "containerd://1.7.15",
        "kernelVersion": "6.1.0-18-amd64", "kubeProxyVersion": "v1.32.4", "kubeletVersion": "v1.32.4",
        "machineID": hex("machine", 32), "operatingSystem": "linux",
        "osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": uid("system")
    });
    objects.push((
        ResourceKind::Node,
        json!({
            "metadata": {"name": NODE, "uid": uid("node"), "creationTimestamp": created,
                         "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": format!("{}.{}.{}.0/24", prefix[0], prefix[1], prefix[2])},
            "status": {
                "addresses": [{"type": "InternalIP", "address": node_ip.to_string()}, {"type": "Hostname", "address": NODE}],
                "capacity": {"cpu": "2", "memory": "8145100Ki", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "8042700Ki", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastHeartbeatTime": started,
                                "lastTransitionTime": created}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": pods::KUBELET_PORT}},
                "nodeInfo": node_info
            }
        }),
    ));

    for d in workload_defs(opts) {
        let template = pod_template(&d);
        let hash = safe_string(&template.to_string(), 10);
        let rs_name = format!("{}-{hash}", d.name);
        let deploy_uid = uid(&format!("deploy/{}/{}", d.namespace, d.name));
        let rs_uid = uid(&format!("rs/{}/{rs_name}", d.namespace));
        let replicas = d.replicas;
        let ip = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], d.ip_index);

        // Deployment.
        let mut deploy_ann = vec![(
            "deployment.kubernetes.io/revision".to_string(),
            "1".to_string(),
        )];
        deploy_ann.extend(d.deploy_annotations.iter().cloned());
        let generation = if replicas == 0 { 2 } else { 1 };
        let mut status = json!({
            "observedGeneration": generation,
            "conditions": [
                {"type": "Available", "status": "True", "lastUpdateTime": created, "lastTransitionTime": created,
                 "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                {"type": "Progressing", "status": "True", "lastUpdateTime": created, "lastTransitionTime": created,
                 "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{rs_name}\" has successfully progressed.")}
            ]
        });
        if replicas > 0 {
            for f in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
            ] {
                status[f] = json!(replicas);
            }
        }
        objects.push((
            ResourceKind::Deployment,
            json!({
                "metadata": {"name": d.name, "namespace": d.namespace, "uid": deploy_uid, "generation": generation,
                             "creationTimestamp": created, "labels": {"app": d.name}, "annotations": str_map(&deploy_ann)},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": d.name}},
                    "template": template,
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600
                },
                "status": status
            }),
        ));

        // ReplicaSet: the template plus pod-template-hash.
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let mut rs_status = json!({"replicas": replicas, "observedGeneration": 1});
        if replicas > 0 {
            for f in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
                rs_status[f] = json!(replicas);
            }
        }
        let owner = |kind: &str, name: &str, uid: &str| {
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}])
        };
        objects.push((
            ResourceKind::ReplicaSet,
            json!({
                "metadata": {"name": rs_name, "namespace": d.namespace, "uid": rs_uid, "generation": generation,
                             "creationTimestamp": created, "labels": rs_template["metadata"]["labels"].clone(),
                             "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                                             "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(),
                                             "deployment.kubernetes.io/revision": "1"},
                             "ownerReferences": owner("Deployment", &d.name, &deploy_uid)},
                "spec": {"replicas": replicas,
                         "selector": {"matchLabels": {"app": d.name, "pod-template-hash": hash}},
                         "template": rs_template},
                "status": rs_status
            }),
        ));

        // The Pod, made from the template: only its annotations and labels reach the pod.
        let mut pod_refs = Vec::new();
        if replicas > 0 {
            let pod_name = format!("{rs_name}-{}", safe_string(&format!("{rs_name}/0"), 5));
            let pod_uid = uid(&format!("pod/{}/{pod_name}", d.namespace));
            let pause_id = hex(&format!("pause/{pod_name}"), 64);
            let mut containers = vec![(d.name.clone(), d.image.clone())];
            containers.extend(d.sidecars.iter().cloned());
            let containers: Vec<ContainerPlan> = containers
                .into_iter()
                .map(|(name, image)| ContainerPlan {
                    container_id: hex(&format!("container/{pod_name}/{name}"), 64),
                    image: full_image(&image),
                    name,
                })
                .collect();
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| {
                    let repo = c.image.rsplit_once(':').map(|(r, _)| r).unwrap_or(&c.image);
                    json!({
                        "name": c.name, "ready": true, "started": true, "restartCount": 0,
                        "image": c.image, "imageID": format!("{repo}@sha256:{}", hex(&format!("image/{}", c.image), 64)),
                        "containerID": format!("containerd://{}", c.container_id),
                        "state": {"running": {"startedAt": started}}
                    })
                })
                .collect();
            let mut spec = rs_template["spec"].clone();
            spec["nodeName"] = json!(NODE);
            spec["serviceAccountName"] = json!("default");
            spec["enableServiceLinks"] = json!(true);
            spec["priority"] = json!(0);
            let cond =
                |t: &str| json!({"type": t, "status": "True", "lastTransitionTime": started});
            let mut meta = json!({
                "name": pod_name, "generateName": format!("{rs_name}-"), "namespace": d.namespace,
                "uid": pod_uid, "creationTimestamp": started,
                "labels": rs_template["metadata"]["labels"].clone(),
                "ownerReferences": owner("ReplicaSet", &rs_name, &rs_uid)
            });
            if let Some(a) = rs_template["metadata"].get("annotations") {
                meta["annotations"] = a.clone();
            }
            objects.push((
                ResourceKind::Pod,
                json!({
                    "metadata": meta,
                    "spec": spec,
                    "status": {
                        "phase": "Running",
                        "conditions": [cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                                       cond("ContainersReady"), cond("PodScheduled")],
                        "hostIP": node_ip.to_string(),
                        "hostIPs": [{"ip": node_ip.to_string()}],
                        "podIP": ip.to_string(),
                        "podIPs": [{"ip": ip.to_string()}],
                        "startTime": started,
                        "containerStatuses": statuses,
                        "qosClass": "BestEffort"
                    }
                }),
            ));
            pod_refs.push((pod_name.clone(), pod_uid.clone()));
            plans.push(PodPlan {
                namespace: d.namespace.clone(),
                name: pod_name,
                deployment: d.name.clone(),
                uid: pod_uid,
                ip,
                port: d.port,
                role: d.role,
                listening: d.listening,
                containers,
                pause_id,
                idle_cpu: d.idle_cpu,
            });
        }

        // Service and Endpoints.
        let cluster_ip = {
            let h = fnv(&format!("svc/{}/{}", d.namespace, d.name));
            format!("10.96.{}.{}", (h >> 8) % 256, h % 253 + 2)
        };
        objects.push((
            ResourceKind::Service,
            json!({
                "metadata": {"name": d.name, "namespace": d.namespace, "uid": uid(&format!("svc/{}/{}", d.namespace, d.name)),
                             "creationTimestamp": created, "labels": {"app": d.name}},
                "spec": {
                    "type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                    "selector": {"app": d.name},
                    "ports": [{"name": d.port_name, "port": d.service_port, "targetPort": d.port, "protocol": "TCP"}],
                    "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster"
                },
                "status": {"loadBalancer": {}}
            }),
        ));
        let mut endpoints = json!({
            "metadata": {"name": d.name, "namespace": d.namespace, "uid": uid(&format!("ep/{}/{}", d.namespace, d.name)),
                         "creationTimestamp": created, "labels": {"app": d.name}}
        });
        if !pod_refs.is_empty() {
            let (addr_ip, port) = match d.endpoints_at {
                Some((ip, port)) => (ip, port),
                None => (ip, d.port),
            };
            let addresses: Vec<Value> = pod_refs
                .iter()
                .map(|(name, uid)| {
                    json!({"ip": addr_ip.to_string(), "nodeName": NODE,
                           "targetRef": {"kind": "Pod", "name": name, "namespace": d.namespace, "uid": uid}})
                })
                .collect();
            endpoints["subsets"] = json!([{
                "addresses": addresses,
                "ports": [{"name": d.port_name, "port": port, "protocol": "TCP"}]
            }]);
        }
        objects.push((ResourceKind::Endpoints, endpoints));
    }
    Model { objects, plans }
}

/// Candidate /24s for the pod IPs: 127.a.b.0, derived from the process id and a process-wide
/// counter, away from 127.0.x.x (127.0.0.1, Debian's 127.0.1.1).
fn candidate_prefix() -> [u8; 3] {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let x = u64::from(pid)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(u64::from(n).wrapping_mul(40_503));
    let a = 16 + (x % 224) as u8;
    let b = 1 + ((x / 224) % 254) as u8;
    [127, a, b]
}

/// The emulated cluster, running: API server, pods, kubelet and traffic.
#[derive(Debug)]
pub struct ClusterSim {
    /// The API server, `http://127.0.0.1:PORT`.
    pub kube_url: String,
    /// HTTP SD for the `kubernetes-pods` job: `kube_url + "/_sd/pods"`.
    pub sd_pods_url: String,
    /// HTTP SD for the kubelets' cAdvisor: `kube_url + "/_sd/cadvisor"` (`[]` under
    /// `no-cadvisor`).
    pub sd_cadvisor_url: String,
    /// `ip:port` of the kubelet's cAdvisor endpoint (`/metrics/cadvisor`); empty under
    /// `no-cadvisor`.
    pub cadvisor_targets: Vec<String>,
    /// A kubeconfig for the API server (context `msa-doctor-sandbox`, namespace = the app
    /// namespace), in a temporary directory this value owns.
    pub kubeconfig_path: PathBuf,
    /// The /24 of the pod IPs: pods are `a.b.c.1`, `.2`, ...; the node is `.254`.
    pub pod_ip_prefix: [u8; 3],
    /// The options it was built with.
    pub options: ClusterOptions,
    store: Arc<Store>,
    workloads: Arc<Workloads>,
    plans: Vec<PodPlan>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    tempdir: Option<tempfile::TempDir>,
}

impl ClusterSim {
    /// Builds the cluster and starts everything: the kubelet on `a.b.c.254`, each pod's
    /// server on its IP, the traffic generator, and the API server on a free port of
    /// 127.0.0.1. Tries other /24s when an address is taken.
    pub async fn start(opts: ClusterOptions) -> std::io::Result<ClusterSim> {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let now = SystemTime::now();
        let mut last_err = None;
        let mut chosen = None;
        for _ in 0..64 {
            let prefix = candidate_prefix();
            let node_ip = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 254);
            // The kubelet's health port doubles as this /24's lock: one cluster per prefix.
            let healthz = match TcpListener::bind((node_ip, pods::KUBELET_HEALTHZ_PORT)).await {
                Ok(l) => l,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            let model = build_model(&opts, prefix, now);
            match pods::start(&model.plans, node_ip, &opts.faults, shutdown_rx.clone()).await {
                Ok(running) => {
                    chosen = Some((prefix, healthz, model, running));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_err = Some(e),
                Err(e) => {
                    let _ = shutdown.send(true);
                    return Err(e);
                }
            }
        }
        let Some((prefix, healthz, model, running)) = chosen else {
            return Err(last_err.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free loopback /24")
            }));
        };
        let latency = opts.faults.has(Fault::Latency50ms);
        let mut tasks = running.tasks;
        tasks.push(pods::serve(
            healthz,
            pods::kubelet_healthz_router(),
            shutdown_rx.clone(),
            latency,
        ));

        let store = Arc::new(Store::new(1000));
        for (kind, obj) in model.objects {
            store.upsert(kind, obj);
        }
        // The scale fixture: generated Deployments whose pods one server answers for.
        let kube_requests = opts.scale.map(|_| Arc::new(RequestCounter::default()));
        if let Some(sc) = opts.scale {
            let listener = match TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).await {
                Ok(l) => l,
                Err(e) => {
                    let _ = shutdown.send(true);
                    return Err(e);
                }
            };
            let port = listener.local_addr()?.port();
            let node_ip = Ipv4Addr::new(prefix[0], prefix[1], prefix[2], 254);
            for (kind, obj) in scale::objects(sc, &opts.app_namespace, NODE, node_ip, port, now) {
                store.upsert(kind, obj);
            }
            tasks.push(scale::serve(listener, sc, shutdown_rx.clone()));
        }
        let api_listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(l) => l,
            Err(e) => {
                let _ = shutdown.send(true);
                return Err(e);
            }
        };
        let api_addr = api_listener.local_addr()?;
        let kube_url = format!("http://{api_addr}");
        let cadvisor_targets: Vec<String> =
            running.cadvisor.iter().map(SocketAddr::to_string).collect();
        let api = kube_api::ApiState {
            store: store.clone(),
            faults: opts.faults.clone(),
            cadvisor_targets: cadvisor_targets.clone(),
            node_name: NODE.to_string(),
            shutdown: shutdown_rx.clone(),
            server_address: api_addr.to_string(),
        };
        let mut api_router = kube_api::router(Arc::new(api));
        if let Some(counter) = &kube_requests {
            api_router = api_router.layer(axum::middleware::from_fn_with_state(
                counter.clone(),
                scale::count_kube,
            ));
        }
        tasks.push(pods::serve(api_listener, api_router, shutdown_rx, latency));

        let mut sim = ClusterSim {
            sd_pods_url: format!("{kube_url}/_sd/pods"),
            sd_cadvisor_url: format!("{kube_url}/_sd/cadvisor"),
            kube_url,
            cadvisor_targets,
            kubeconfig_path: PathBuf::new(),
            pod_ip_prefix: prefix,
            options: opts,
            store,
            workloads: running.workloads,
            plans: model.plans,
            shutdown,
            tasks,
            tempdir: None,
        };
        // From here on, an error drops `sim`, which stops everything.
        let dir = crate::sandbox::hygiene::owned_tempdir("msa-doctor-cluster-")?;
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, sim.kubeconfig())?;
        sim.kubeconfig_path = path;
        sim.tempdir = Some(dir);
        Ok(sim)
    }

    /// The kubeconfig text: plain HTTP, no credentials, namespace = the app namespace.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: msa-doctor-sandbox\n  cluster:\n    server: {}\n\
             contexts:\n- name: msa-doctor-sandbox\n  context:\n    cluster: msa-doctor-sandbox\n    user: msa-doctor\n    namespace: {}\n\
             current-context: msa-doctor-sandbox\nusers:\n- name: msa-doctor\n  user: {{}}\n",
            self.kube_url, self.options.app_namespace
        )
    }

    /// The node's IP (the kubelet): `a.b.c.254`.
    pub fn node_ip(&self) -> Ipv4Addr {
        let p = self.pod_ip_prefix;
        Ipv4Addr::new(p[0], p[1], p[2], 254)
    }

    /// The running pods (name, IP, port, role), in the model's order.
    pub fn pods(&self) -> &[PodPlan] {
        &self.plans
    }

    /// `ip:port` of a Deployment's pod, if it has one.
    pub fn pod_address(&self, deployment: &str) -> Option<SocketAddr> {
        self.plans
            .iter()
            .find(|p| p.deployment == deployment)
            .map(|p| SocketAddr::from((p.ip, p.port)))
    }

    /// The processes' shared state (request counters, Kafka offsets).
    pub fn workloads(&self) -> &Arc<Workloads> {
        &self.workloads
    }

    /// The objects (for changes a test or the demo makes, like `kubectl annotate`).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// `kubectl annotate pod`: sets (or with `None` removes) an annotation on a pod of a
    /// Deployment, as a MODIFIED event. Returns the new resourceVersion.
    pub fn annotate_pod(&self, deployment: &str, key: &str, value: Option<&str>) -> Option<u64> {
        let pod = self.plans.iter().find(|p| p.deployment == deployment)?;
        self.store
            .modify(ResourceKind::Pod, &pod.namespace, &pod.name, |obj| {
                set_annotation(&mut obj["metadata"], key, value)
            })
    }

    /// `kubectl annotate deployment`: changes the Deployment's own metadata only (its pods
    /// are not touched, as in Kubernetes). Returns the new resourceVersion.
    pub fn annotate_deployment(
        &self,
        namespace: &str,
        deployment: &str,
        key: &str,
        value: Option<&str>,
    ) -> Option<u64> {
        self.store
            .modify(ResourceKind::Deployment, namespace, deployment, |obj| {
                set_annotation(&mut obj["metadata"], key, value)
            })
    }

    /// Points `svc/prometheus`' Endpoints at where the real Prometheus listens.
    pub fn set_prometheus_address(&self, addr: SocketAddr) -> Option<u64> {
        let ns = self.options.monitoring_namespace.clone();
        self.store
            .modify(ResourceKind::Endpoints, &ns, "prometheus", |obj| {
                if let Some(subset) = obj.pointer_mut("/subsets/0") {
                    if let Some(a) = subset.pointer_mut("/addresses/0/ip") {
                        *a = json!(addr.ip().to_string());
                    }
                    if let Some(p) = subset.pointer_mut("/ports/0/port") {
                        *p = json!(addr.port());
                    }
                }
            })
    }

    /// Forgets the watch history (etcd compaction): older resourceVersions get 410.
    pub fn compact(&self) {
        self.store.compact();
    }

    /// Stops every server, watch and generator, waits for them (at most 3 s), and removes
    /// the temporary directory. Afterwards nothing listens on the cluster's addresses.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
                let _ = t.await;
            }
        }
        if let Some(dir) = self.tempdir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for ClusterSim {
    fn drop(&mut self) {
        // Servers stop accepting and close their connections on the signal; aborting drops
        // the listeners at once in case the runtime is going away.
        let _ = self.shutdown.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn set_annotation(meta: &mut Value, key: &str, value: Option<&str>) {
    let Some(m) = meta.as_object_mut() else {
        return;
    };
    let ann = m
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(a) = ann.as_object_mut() {
        match value {
            Some(v) => {
                a.insert(key.to_string(), Value::String(v.to_string()));
            }
            None => {
                a.remove(key);
            }
        }
    }
    if ann.as_object().is_some_and(Map::is_empty) {
        m.remove("annotations");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};

    fn model(faults: &[Fault]) -> Model {
        build_model(
            &ClusterOptions::new(FaultSet::of(faults), 3000),
            [127, 50, 60],
            SystemTime::now(),
        )
    }

    /// Deserialises with k8s-openapi and serialises back: a misspelt or mistyped field would
    /// be dropped or fail, so the round trip must give the same JSON.
    fn roundtrip<T: serde::de::DeserializeOwned + serde::Serialize>(kind: ResourceKind, v: &Value) {
        let mut v = v.clone();
        v["apiVersion"] = json!(kind.api_version());
        v["kind"] = json!(kind.kind());
        let typed: T = match serde_json::from_value(v.clone()) {
            Ok(t) => t,
            Err(e) => panic!("{kind:?} does not deserialise: {e}\n{v:#}"),
        };
        let back = serde_json::to_value(&typed).unwrap_or_default();
        assert_eq!(back, v, "{kind:?} changed in a k8s-openapi round trip");
    }

    #[test]
    fn every_object_round_trips_through_k8s_openapi() {
        for faults in [
            &[][..],
            &[Fault::StaleData, Fault::AnnotationOnDeployment][..],
        ] {
            for (kind, obj) in model(faults).objects {
                match kind {
                    ResourceKind::Namespace => roundtrip::<Namespace>(kind, &obj),
                    ResourceKind::Node => roundtrip::<Node>(kind, &obj),
                    ResourceKind::Deployment => roundtrip::<Deployment>(kind, &obj),
                    ResourceKind::ReplicaSet => roundtrip::<ReplicaSet>(kind, &obj),
                    ResourceKind::Pod => roundtrip::<Pod>(kind, &obj),
                    ResourceKind::Service => roundtrip::<Service>(kind, &obj),
                    ResourceKind::Endpoints => roundtrip::<Endpoints>(kind, &obj),
                }
            }
        }
    }

    fn find(m: &Model, kind: ResourceKind, name_prefix: &str) -> Value {
        m.objects
            .iter()
            .find(|(k, o)| {
                *k == kind
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(name_prefix))
            })
            .map(|(_, o)| o.clone())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn pods_come_from_the_template_not_the_deployment() {
        let m = model(&[Fault::AnnotationOnDeployment]);
        let deploy = find(&m, ResourceKind::Deployment, "order-service");
        assert_eq!(
            deploy["metadata"]["annotations"]["prometheus.io/scrape"],
            "true"
        );
        assert!(
            deploy["spec"]["template"]["metadata"]
                .get("annotations")
                .is_none()
        );
        let pod = find(&m, ResourceKind::Pod, "order-service-");
        assert!(pod["metadata"].get("annotations").is_none(), "{pod:#}");
        let rs = pod["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or_default();
        assert!(
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(rs)
        );
        assert_eq!(
            pod["metadata"]["labels"]["pod-template-hash"],
            rs.trim_start_matches("order-service-")
        );
        let healthy = find(&model(&[]), ResourceKind::Pod, "order-service-");
        assert_eq!(
            healthy["metadata"]["annotations"]["prometheus.io/path"],
            "/actuator/prometheus"
        );
        assert_eq!(healthy["status"]["podIP"], "127.50.60.2");
        assert_ne!(
            healthy["metadata"]["name"], pod["metadata"]["name"],
            "another template, another hash"
        );
    }

    #[test]
    fn stale_data_scales_the_services_to_zero() {
        let m = model(&[Fault::StaleData]);
        let deploy = find(&m, ResourceKind::Deployment, "user-service");
        assert_eq!(deploy["spec"]["replicas"], 0);
        assert!(deploy["status"].get("readyReplicas").is_none());
        assert_eq!(find(&m, ResourceKind::Pod, "user-service-"), Value::Null);
        assert!(
            find(&m, ResourceKind::Endpoints, "user-service")
                .get("subsets")
                .is_none()
        );
        assert!(
            m.plans
                .iter()
                .all(|p| !SERVICES.contains(&p.deployment.as_str()))
        );
        assert!(m.plans.iter().any(|p| p.deployment == "kafka-exporter"));
    }

    #[test]
    fn grafana_endpoints_point_at_the_local_port() {
        let m = build_model(
            &ClusterOptions::new(FaultSet::healthy(), 43000),
            [127, 50, 60],
            SystemTime::now(),
        );
        let ep = find(&m, ResourceKind::Endpoints, "grafana");
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
        assert_eq!(ep["subsets"][0]["ports"][0]["port"], 43000);
    }

    #[test]
    fn the_store_versions_and_compacts() {
        let s = Store::new(10);
        let rv = s.upsert(ResourceKind::Namespace, json!({"metadata": {"name": "a"}}));
        assert_eq!(rv, 10);
        let rv2 = s.modify(ResourceKind::Namespace, "", "a", |o| {
            o["status"] = json!({"phase": "Active"})
        });
        assert_eq!(rv2, Some(11));
        match s.since(ResourceKind::Namespace, 10) {
            Since::Events(e) => assert_eq!(
                e.iter().map(|e| e.event_type).collect::<Vec<_>>(),
                ["MODIFIED"]
            ),
            Since::Expired { .. } => panic!("not compacted yet"),
        }
        s.compact();
        let (_, list_rv) = s.list(ResourceKind::Namespace, None);
        assert!(
            matches!(s.since(ResourceKind::Namespace, 11), Since::Expired { oldest } if oldest == list_rv)
        );
        assert!(
            matches!(s.since(ResourceKind::Namespace, list_rv), Since::Events(e) if e.is_empty())
        );
    }
}
