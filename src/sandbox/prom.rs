//! The real time-series database of the practice stack: Debian's Prometheus 2.42 (pods found
//! over HTTP SD, since Debian's build has no Kubernetes SD) or VictoriaMetrics (real
//! `kubernetes_sd_configs` against the emulated API). This module finds the binary, writes the
//! scrape configuration (the community Helm chart's `kubernetes-pods` job, unchanged), backfills
//! old samples for the `stale-data` fault, starts the process on a free loopback port in its own
//! temporary directory, waits for the first scrape and stops it again.

use crate::cli::Backend;
use crate::sandbox::faults::{Fault, FaultSet};
use serde_json::Value;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How to install Debian's Prometheus (the binary `prometheus` and `promtool`).
pub const PROMETHEUS_INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends prometheus";
/// How to install Debian's VictoriaMetrics (the binary `victoria-metrics`).
pub const VICTORIA_METRICS_INSTALL: &str =
    "apt-get update && apt-get install -y --no-install-recommends victoria-metrics";

/// The job that discovers the services' pods.
pub const PODS_JOB: &str = "kubernetes-pods";
/// The job that scrapes the kubelet's cAdvisor.
pub const CADVISOR_JOB: &str = "kubernetes-cadvisor";

/// Where the stale samples of the `stale-data` fault start and end, before now.
pub const STALE_FROM: Duration = Duration::from_secs(60 * 60);
/// The newest stale sample is this old when the stack starts.
pub const STALE_UNTIL: Duration = Duration::from_secs(47 * 60);
/// Step between two stale samples (what a 15 s scrape interval leaves).
pub const STALE_STEP: Duration = Duration::from_secs(15);

/// Why the time-series database could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The binary is neither where `--prometheus-bin` says nor on `PATH`.
    #[error("{binary} not found ({searched}); install it with: {install}")]
    NotInstalled {
        /// `prometheus`, `promtool` or `victoria-metrics`.
        binary: String,
        /// Where it was looked for.
        searched: String,
        /// The command that installs it.
        install: &'static str,
    },
    /// A file of the temporary directory could not be written.
    #[error("cannot prepare {what}: {message}")]
    Prepare {
        /// What was being prepared.
        what: String,
        /// Why it failed.
        message: String,
    },
    /// `promtool tsdb create-blocks-from openmetrics` failed, or the blocks are not queryable.
    #[error("cannot backfill the stale samples: {0}")]
    Backfill(String),
    /// The process did not start or did not become ready.
    #[error("{what} did not start: {message}")]
    Start {
        /// `prometheus` or `victoria-metrics`.
        what: &'static str,
        /// Why, with the end of its log.
        message: String,
    },
    /// No target of `kubernetes-pods` was scraped in time.
    #[error("{what} scraped no {PODS_JOB} target within {}s: {detail}", .waited.as_secs())]
    NoScrape {
        /// `prometheus` or `victoria-metrics`.
        what: &'static str,
        /// How long it waited.
        waited: Duration,
        /// The last state of the targets, and the end of its log.
        detail: String,
    },
}

/// What the time-series database is pointed at.
#[derive(Clone, Debug)]
pub struct TsdbOptions {
    /// Prometheus or VictoriaMetrics.
    pub backend: Backend,
    /// The binary (`--prometheus-bin`); `None` looks on `PATH`.
    pub binary: Option<PathBuf>,
    /// The faults of the stack (`label-collision`, `slow-scrape`, `stale-data` change it).
    pub faults: FaultSet,
    /// The emulated cluster's HTTP SD for the pods (Prometheus).
    pub sd_pods_url: String,
    /// The emulated Kubernetes API (VictoriaMetrics' `kubernetes_sd_configs`).
    pub kube_url: String,
    /// The namespaces VictoriaMetrics watches.
    pub namespaces: Vec<String>,
    /// The application namespace (labels of the stale samples).
    pub app_namespace: String,
    /// `ip:port` of each kubelet's cAdvisor; empty means no `kubernetes-cadvisor` job.
    pub cadvisor_targets: Vec<String>,
    /// The first three bytes of the emulated pod IPs (for stale samples of pods SD does not list).
    pub pod_ip_prefix: [u8; 3],
    /// The `kubernetes-pods` job's own scrape interval (the scale fixture's); `None` keeps the
    /// global 1 s.
    pub pods_scrape_interval: Option<std::time::Duration>,
}

/// A running Prometheus or VictoriaMetrics. Dropping it kills the process and removes its
/// directory; [`Tsdb::shutdown`] does the same and waits for the process to be gone.
pub struct Tsdb {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub url: String,
    /// Which database this is.
    pub backend: Backend,
    /// The process id (gone after shutdown).
    pub pid: u32,
    /// From spawning the process to the first successful scrape of a `kubernetes-pods` target
    /// (or, when every target is down or dropped, to the first time they all were scraped).
    pub time_to_first_scrape: Duration,
    /// The configuration file it runs with.
    pub config_path: PathBuf,
    /// When the newest stale sample was taken (`stale-data` only).
    pub stale_until: Option<SystemTime>,
    child: Child,
    // Declared after the child: dropped (killed) once the child is.
    _watchdog: Option<crate::sandbox::hygiene::Watchdog>,
    dir: Option<TempDir>,
}

impl std::fmt::Debug for Tsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsdb")
            .field("url", &self.url)
            .field("backend", &self.backend)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

fn binary_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Prometheus => "prometheus",
        Backend::VictoriaMetrics => "victoria-metrics",
    }
}

fn install_hint(backend: Backend) -> &'static str {
    match backend {
        Backend::Prometheus => PROMETHEUS_INSTALL,
        Backend::VictoriaMetrics => VICTORIA_METRICS_INSTALL,
    }
}

fn what(backend: Backend) -> &'static str {
    binary_name(backend)
}

/// Finds the backend's binary: `explicit` when given (it must exist), else `PATH`.
pub fn find_binary(explicit: Option<&Path>, backend: Backend) -> Result<PathBuf, PromError> {
    find_binary_in(
        explicit,
        binary_name(backend),
        install_hint(backend),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`find_binary`] with the program name, the install hint and the `PATH` value given (tests).
pub fn find_binary_in(
    explicit: Option<&Path>,
    name: &str,
    install: &'static str,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, PromError> {
    if let Some(p) = explicit {
        return if is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(PromError::NotInstalled {
                binary: name.to_string(),
                searched: format!("{} is not an executable file", p.display()),
                install,
            })
        };
    }
    if let Some(path) = path_var {
        for dir in std::env::split_paths(path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(PromError::NotInstalled {
        binary: name.to_string(),
        searched: "not on PATH".to_string(),
        install,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `promtool`, next to the Prometheus binary, else on `PATH`.
fn find_promtool(prometheus: &Path) -> Result<PathBuf, PromError> {
    if let Some(dir) = prometheus.parent() {
        let p = dir.join("promtool");
        if is_executable(&p) {
            return Ok(p);
        }
    }
    find_binary_in(
        None,
        "promtool",
        PROMETHEUS_INSTALL,
        std::env::var_os("PATH").as_deref(),
    )
}

/// A YAML single-quoted scalar (no escapes inside but `''`).
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The relabel rules of the community Helm chart's `kubernetes-pods` job
/// (`prometheus-community/helm-charts`, `charts/prometheus/values.yaml`), unchanged.
const POD_RELABEL_RULES: &str = r#"    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
        action: keep
        regex: 'true'
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape_slow]
        action: drop
        regex: 'true'
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scheme]
        action: replace
        regex: '(https?)'
        target_label: __scheme__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        action: replace
        target_label: __metrics_path__
        regex: '(.+)'
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        action: replace
        regex: '(\d+);(([A-Fa-f0-9]{1,4}::?){1,7}[A-Fa-f0-9]{1,4})'
        replacement: '[$2]:$1'
        target_label: __address__
      - source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        action: replace
        regex: '(\d+);((([0-9]+?)(\.|$)){4})'
        replacement: '$2:$1'
        target_label: __address__
      - action: labelmap
        regex: '__meta_kubernetes_pod_annotation_prometheus_io_param_(.+)'
        replacement: '__param_$1'
      - action: labelmap
        regex: '__meta_kubernetes_pod_label_(.+)'
      - source_labels: [__meta_kubernetes_namespace]
        action: replace
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        action: replace
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_phase]
        regex: 'Pending|Succeeded|Failed|Completed'
        action: drop
"#;

/// The scrape configuration for a backend: the Helm chart's `kubernetes-pods` job (over HTTP
/// SD for Prometheus, `kubernetes_sd_configs` role pod for VictoriaMetrics) and, when there are
/// kubelets, a `kubernetes-cadvisor` job.
pub fn scrape_config(opts: &TsdbOptions) -> String {
    let faults = &opts.faults;
    let mut y = String::new();
    y.push_str("# The practice stack's scrape configuration, written by `msa-doctor demo`.\n");
    y.push_str("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n");
    if opts.backend == Backend::Prometheus {
        y.push_str("  evaluation_interval: 1s\n");
    }
    y.push_str("scrape_configs:\n");
    let _ = writeln!(y, "  - job_name: {}", q(PODS_JOB));
    // honor_labels: true is the chart's choice (the scraped labels win); the label-collision
    // fault is Prometheus' default, false, where a target label (the pods then carry a label
    // `application`) renames the scraped one to exported_<name>.
    let honor = !faults.has(Fault::LabelCollision);
    let _ = writeln!(y, "    honor_labels: {honor}");
    if faults.has(Fault::SlowScrape) {
        y.push_str("    scrape_interval: 30s\n    scrape_timeout: 10s\n");
    } else if let Some(every) = opts.pods_scrape_interval {
        let secs = every.as_secs().max(1);
        let _ = writeln!(
            y,
            "    scrape_interval: {secs}s\n    scrape_timeout: {}s",
            (secs / 2).max(1)
        );
    }
    match opts.backend {
        Backend::Prometheus => {
            y.push_str("    http_sd_configs:\n");
            let _ = writeln!(y, "      - url: {}", q(&opts.sd_pods_url));
            y.push_str("        refresh_interval: 1s\n");
        }
        Backend::VictoriaMetrics => {
            y.push_str("    kubernetes_sd_configs:\n      - role: pod\n");
            let _ = writeln!(y, "        api_server: {}", q(&opts.kube_url));
            if !opts.namespaces.is_empty() {
                let names: Vec<String> = opts.namespaces.iter().map(|n| q(n)).collect();
                let _ = writeln!(
                    y,
                    "        namespaces:\n          names: [{}]",
                    names.join(", ")
                );
            }
        }
    }
    y.push_str(POD_RELABEL_RULES);
    if !opts.cadvisor_targets.is_empty() {
        let _ = writeln!(y, "  - job_name: {}", q(CADVISOR_JOB));
        y.push_str("    honor_labels: true\n    metrics_path: /metrics/cadvisor\n");
        y.push_str("    static_configs:\n");
        let targets: Vec<String> = opts.cadvisor_targets.iter().map(|t| q(t)).collect();
        let _ = writeln!(y, "      - targets: [{}]", targets.join(", "));
    }
    y
}

/// One series of the stale samples: its labels (name included) and how its value moves.
#[derive(Clone, Debug, PartialEq)]
pub struct StaleSeries {
    /// Labels, `__name__` excluded.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The metric name.
    pub name: String,
    /// Value at the first sample.
    pub start: f64,
    /// Added at every step (a counter) or the amplitude of a wobble (a gauge).
    pub slope: f64,
    /// Counter (monotonic) or gauge.
    pub counter: bool,
}

impl StaleSeries {
    fn value(&self, step: usize) -> f64 {
        if self.counter {
            self.start + self.slope * step as f64
        } else {
            // A heap that fills and is collected: a saw tooth.
            self.start + self.slope * ((step % 8) as f64)
        }
    }
}

/// The pods the stale samples are labelled with: the ones HTTP SD lists now (same names, IPs
/// and pod labels as live scraping would give), else made up from the IP prefix.
#[derive(Clone, Debug, PartialEq)]
pub struct StalePod {
    /// The service (`app` label).
    pub service: String,
    /// The pod's name.
    pub pod: String,
    /// `ip:port`.
    pub instance: String,
    /// The pod's labels after the chart's labelmap (`app`, `pod_template_hash`, ...).
    pub pod_labels: Vec<(String, String)>,
}

/// The guide's four services.
const SERVICES: [&str; 4] = crate::settings::DEFAULT_SERVICES;

/// A Prometheus label name for a Kubernetes label key (what the pod role's meta labels and
/// the chart's labelmap make of it).
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The pods the stale samples are labelled with, per service: the pod HTTP SD lists now (same
/// name, IP and labels as live scraping gives), else a pod of the service's ReplicaSet as it
/// was before the Deployment was scaled down (name `<replicaset>-<suffix>`, the template's
/// labels), else a made-up one. IPs not read from SD are `prefix.1` to `prefix.4`.
pub fn stale_pods(
    sd: Option<&Value>,
    replicasets: Option<&Value>,
    prefix: [u8; 3],
) -> Vec<StalePod> {
    let groups = sd.and_then(Value::as_array).cloned().unwrap_or_default();
    let rs_items = replicasets
        .and_then(|v| v.get("items"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let suffixes = ["x2lqm", "k9vwr", "t4hzp", "m7dcn"];
    let mut pods = Vec::new();
    for (i, svc) in SERVICES.iter().enumerate() {
        let from_sd = groups.iter().find_map(|g| {
            let labels = g.get("labels")?.as_object()?;
            let app = labels.get("__meta_kubernetes_pod_label_app")?.as_str()?;
            if app != *svc {
                return None;
            }
            let name = labels
                .get("__meta_kubernetes_pod_name")?
                .as_str()?
                .to_string();
            let ip = labels
                .get("__meta_kubernetes_pod_ip")?
                .as_str()?
                .to_string();
            let port = labels
                .get("__meta_kubernetes_pod_annotation_prometheus_io_port")
                .and_then(Value::as_str)
                .unwrap_or("8080");
            let mut pod_labels: Vec<(String, String)> = labels
                .iter()
                .filter_map(|(k, v)| {
                    let l = k.strip_prefix("__meta_kubernetes_pod_label_")?;
                    Some((l.to_string(), v.as_str()?.to_string()))
                })
                .collect();
            pod_labels.sort();
            Some(StalePod {
                service: svc.to_string(),
                pod: name,
                instance: format!("{ip}:{port}"),
                pod_labels,
            })
        });
        let ip = format!("{}.{}.{}.{}", prefix[0], prefix[1], prefix[2], i + 1);
        let from_rs = || {
            rs_items.iter().find_map(|rs| {
                let labels = rs.pointer("/spec/template/metadata/labels")?.as_object()?;
                if labels.get("app")?.as_str()? != *svc {
                    return None;
                }
                let name = rs.pointer("/metadata/name")?.as_str()?;
                let mut pod_labels: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(k, v)| Some((sanitize(k), v.as_str()?.to_string())))
                    .collect();
                pod_labels.sort();
                Some(StalePod {
                    service: svc.to_string(),
                    pod: format!("{name}-{}", suffixes[i % 4]),
                    instance: format!("{ip}:8080"),
                    pod_labels,
                })
            })
        };
        pods.push(from_sd.or_else(from_rs).unwrap_or_else(|| StalePod {
            service: svc.to_string(),
            pod: format!("{svc}-7d9f8b6c5-{}", suffixes[i % 4]),
            instance: format!("{ip}:8080"),
            pod_labels: vec![
                ("app".into(), svc.to_string()),
                ("pod_template_hash".into(), "7d9f8b6c5".into()),
            ],
        }));
    }
    pods
}

/// The series the `stale-data` fault backfills: for each service, its HTTP request counters
/// (Micrometer's labels) and its JVM memory, labelled as the `kubernetes-pods` job labels them.
pub fn stale_series(pods: &[StalePod], namespace: &str) -> Vec<StaleSeries> {
    let mut out = Vec::new();
    for p in pods {
        // Pod labels (labelmap), then the chart's target labels; the metric's own labels are
        // added last and win, as with honor_labels: true.
        let mut target: std::collections::BTreeMap<String, String> =
            p.pod_labels.iter().cloned().collect();
        target.extend([
            ("job".to_string(), PODS_JOB.to_string()),
            ("instance".to_string(), p.instance.clone()),
            ("namespace".to_string(), namespace.to_string()),
            ("pod".to_string(), p.pod.clone()),
        ]);
        let requests: &[(&str, &str, f64)] = match p.service.as_str() {
            "user-service" => &[("/login", "POST", 0.4), ("/api/users/{id}", "GET", 0.2)],
            "order-service" => &[
                ("/api/orders", "POST", 0.5),
                ("/api/orders/{orderId}", "GET", 0.3),
            ],
            "delivery-service" => &[("/api/deliveries/{deliveryId}", "GET", 0.2)],
            _ => &[("/api/orders/{orderId}/complete", "PUT", 0.2)],
        };
        let reqs =
            requests
                .iter()
                .copied()
                .chain(std::iter::once(("/actuator/prometheus", "GET", 1.0)));
        for (uri, method, per_step) in reqs {
            let mut labels = target.clone();
            labels.extend(
                [
                    ("application", p.service.as_str()),
                    ("error", "none"),
                    ("exception", "none"),
                    ("method", method),
                    ("outcome", "SUCCESS"),
                    ("status", if method == "POST" { "201" } else { "200" }),
                    ("uri", uri),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            out.push(StaleSeries {
                labels,
                name: "http_server_requests_seconds_count".into(),
                start: 100.0,
                slope: per_step * STALE_STEP.as_secs_f64(),
                counter: true,
            });
        }
        for (area, id, start, wobble) in [
            ("heap", "G1 Eden Space", 4.2e7, 3.0e6),
            ("heap", "G1 Old Gen", 6.1e7, 2.5e5),
            ("nonheap", "Metaspace", 7.9e7, 0.0),
        ] {
            let mut labels = target.clone();
            labels.extend(
                [
                    ("application", p.service.as_str()),
                    ("area", area),
                    ("id", id),
                ]
                .map(|(k, v)| (k.to_string(), v.to_string())),
            );
            out.push(StaleSeries {
                labels,
                name: "jvm_memory_used_bytes".into(),
                start,
                slope: wobble,
                counter: false,
            });
        }
    }
    out
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn series_text(s: &StaleSeries) -> String {
    let labels: Vec<String> = s
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{}{{{}}}", s.name, labels.join(","))
}

/// The timestamps (unix milliseconds) of the stale samples, oldest first, ending at `until`.
pub fn stale_timestamps(until: SystemTime) -> Vec<i64> {
    let end = until
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let span = (STALE_FROM - STALE_UNTIL).as_millis() as i64;
    let step = STALE_STEP.as_millis() as i64;
    let first = end - span;
    (0..=span / step).map(|i| first + i * step).collect()
}

/// The samples as OpenMetrics text (timestamps in seconds, `# EOF` at the end), for
/// `promtool tsdb create-blocks-from openmetrics`; in time order.
pub fn stale_openmetrics(series: &[StaleSeries], timestamps: &[i64]) -> String {
    let mut out = String::new();
    for (step, ts) in timestamps.iter().enumerate() {
        for s in series {
            let _ = writeln!(
                out,
                "{} {} {}.{:03}",
                series_text(s),
                s.value(step),
                ts / 1000,
                ts % 1000
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The samples in Prometheus' text format with millisecond timestamps, for VictoriaMetrics'
/// `/api/v1/import/prometheus`.
pub fn stale_prometheus_text(series: &[StaleSeries], timestamps: &[i64]) -> String {
    let mut out = String::new();
    for s in series {
        for (step, ts) in timestamps.iter().enumerate() {
            let _ = writeln!(out, "{} {} {ts}", series_text(s), s.value(step));
        }
    }
    out
}

/// A free loopback port (bound then released; a rare race is handled by retrying the start).
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// An HTTP client for loopback: no proxy, short deadlines.
pub fn loopback_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

async fn get_json(
    client: &reqwest::Client,
    url: &str,
    query: &[(&str, String)],
) -> Result<Value, String> {
    let resp = client
        .get(url)
        .query(query)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "GET {url}: HTTP {status}: {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// The state of the `kubernetes-pods` pool in a `/api/v1/targets` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Nothing discovered yet, or active targets not scraped yet.
    Pending,
    /// At least one active target is up.
    Up,
    /// Every active target was scraped at least once (or there are only dropped targets) and
    /// none is up.
    SettledDown,
}

/// Reads the `kubernetes-pods` pool of a `/api/v1/targets` answer (Prometheus or
/// VictoriaMetrics). `all_scraped` is true when every active target has been scraped once.
pub fn pool_state(targets: &Value) -> (PoolState, bool) {
    let data = targets.get("data");
    let in_pool = |t: &&Value| {
        t.get("scrapePool").and_then(Value::as_str) == Some(PODS_JOB)
            || t.pointer("/labels/job").and_then(Value::as_str) == Some(PODS_JOB)
            || t.pointer("/discoveredLabels/job").and_then(Value::as_str) == Some(PODS_JOB)
    };
    let active: Vec<&Value> = data
        .and_then(|d| d.get("activeTargets"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(in_pool).collect())
        .unwrap_or_default();
    let dropped = data
        .and_then(|d| d.get("droppedTargets"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(in_pool).count())
        .unwrap_or(0);
    let health = |t: &Value| {
        t.get("health")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string()
    };
    let any_up = active.iter().any(|t| health(t) == "up");
    let all_scraped = !active.is_empty() && active.iter().all(|t| was_scraped(t));
    let state = if any_up {
        PoolState::Up
    } else if all_scraped || (active.is_empty() && dropped > 0) {
        PoolState::SettledDown
    } else {
        PoolState::Pending
    };
    (state, all_scraped || (active.is_empty() && dropped > 0))
}

/// Whether a target of `/api/v1/targets` was scraped at least once. Prometheus says `unknown`
/// and `0001-01-01T00:00:00Z` before, VictoriaMetrics `down` and `1970-01-01T00:00:00Z`.
pub fn was_scraped(target: &Value) -> bool {
    let health = target
        .get("health")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let last = target
        .get("lastScrape")
        .and_then(Value::as_str)
        .unwrap_or("");
    health != "unknown"
        && !last.is_empty()
        && !last.starts_with("0001-")
        && !last.starts_with("1970-")
}

/// Whether every active target, of every job, was scraped at least once.
pub fn every_target_scraped(targets: &Value) -> bool {
    targets
        .pointer("/data/activeTargets")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().all(was_scraped))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(8);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(its log is empty)".to_string()
    } else {
        format!("its log ends with:\n{tail}")
    }
}

fn prep(what: &str) -> impl FnOnce(std::io::Error) -> PromError + '_ {
    move |e| PromError::Prepare {
        what: what.to_string(),
        message: e.to_string(),
    }
}

impl Tsdb {
    /// Finds the binary, writes the configuration, backfills stale samples when asked, starts
    /// the process and waits for its first scrape of a `kubernetes-pods` target.
    pub async fn start(opts: TsdbOptions) -> Result<Tsdb, PromError> {
        let binary = find_binary(opts.binary.as_deref(), opts.backend)?;
        let promtool = if opts.backend == Backend::Prometheus && opts.faults.has(Fault::StaleData) {
            Some(find_promtool(&binary)?)
        } else {
            None
        };
        let dir = crate::sandbox::hygiene::owned_tempdir("msa-doctor-tsdb-")
            .map_err(prep("a temporary directory"))?;
        let config_path = dir.path().join(match opts.backend {
            Backend::Prometheus => "prometheus.yml",
            Backend::VictoriaMetrics => "scrape.yml",
        });
        std::fs::write(&config_path, scrape_config(&opts))
            .map_err(prep("the configuration file"))?;
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).map_err(prep("the data directory"))?;
        let client = loopback_client();

        // Stale samples: labelled with the pods SD lists now.
        let stale = if opts.faults.has(Fault::StaleData) {
            let sd = get_json(&client, &opts.sd_pods_url, &[]).await.ok();
            let rs_url = format!(
                "{}/apis/apps/v1/namespaces/{}/replicasets",
                opts.kube_url.trim_end_matches('/'),
                opts.app_namespace
            );
            let rs = get_json(&client, &rs_url, &[]).await.ok();
            let pods = stale_pods(sd.as_ref(), rs.as_ref(), opts.pod_ip_prefix);
            let until = SystemTime::now() - STALE_UNTIL;
            let series = stale_series(&pods, &opts.app_namespace);
            Some((series, stale_timestamps(until), until))
        } else {
            None
        };
        if let (Some(promtool), Some((series, stamps, _))) = (&promtool, &stale) {
            backfill_blocks(promtool, dir.path(), &data_dir, series, stamps).await?;
        }

        let mut attempt = 0;
        let (child, url, spawned, watchdog) = loop {
            attempt += 1;
            let port = free_port().map_err(prep("a free port"))?;
            let log_path = dir
                .path()
                .join(format!("{}.log", binary_name(opts.backend)));
            let log = std::fs::File::create(&log_path).map_err(prep("the log file"))?;
            let mut cmd = Command::new(&binary);
            match opts.backend {
                Backend::Prometheus => {
                    cmd.arg(format!("--config.file={}", config_path.display()))
                        .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                        .arg("--web.enable-lifecycle")
                        .arg("--log.level=warn");
                }
                Backend::VictoriaMetrics => {
                    cmd.arg(format!("-storageDataPath={}", data_dir.display()))
                        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                        .arg(format!("-promscrape.config={}", config_path.display()))
                        .arg("-promscrape.configCheckInterval=0")
                        .arg("-promscrape.kubernetesSDCheckInterval=1s")
                        .arg("-search.latencyOffset=1s")
                        .arg("-loggerLevel=WARN");
                }
            }
            cmd.current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .kill_on_drop(true);
            // It dies with msa-doctor, even by SIGKILL (Linux; a watchdog elsewhere).
            crate::sandbox::hygiene::die_with_parent(&mut cmd);
            let spawned = Instant::now();
            let mut child = cmd.spawn().map_err(|e| PromError::Start {
                what: what(opts.backend),
                message: format!("cannot run {}: {e}", binary.display()),
            })?;
            let guard = crate::sandbox::hygiene::guard(child.id());
            let url = format!("http://127.0.0.1:{port}");
            match wait_ready(&client, &url, &mut child, opts.backend, &log_path).await {
                Ok(()) => break (child, url, spawned, guard),
                Err(message) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    if attempt < 3 && message.contains("address already in use") {
                        continue;
                    }
                    return Err(PromError::Start {
                        what: what(opts.backend),
                        message,
                    });
                }
            }
        };
        let pid = child.id().unwrap_or(0);
        let mut tsdb = Tsdb {
            url,
            backend: opts.backend,
            pid,
            time_to_first_scrape: Duration::ZERO,
            config_path,
            stale_until: stale.as_ref().map(|s| s.2),
            child,
            _watchdog: watchdog,
            dir: Some(dir),
        };
        let slow = opts.faults.has(Fault::SlowScrape);
        let deadline = Duration::from_secs(if slow { 75 } else { 40 });
        tsdb.time_to_first_scrape = tsdb
            .wait_first_scrape(&client, spawned, deadline, slow)
            .await?;
        if !slow {
            // A rate over [1m] needs two samples: hand the stack out after the second scrape.
            tsdb.wait_second_scrape(&client, Duration::from_secs(5))
                .await;
        }
        if opts.backend == Backend::VictoriaMetrics {
            tsdb.settle_victoria(&client, slow).await;
        }
        if let (Backend::VictoriaMetrics, Some((series, stamps, _))) = (opts.backend, &stale) {
            tsdb.import_victoria(&client, series, stamps).await?;
        }
        if let Some((_, stamps, _)) = &stale {
            tsdb.check_stale_queryable(&client, stamps).await?;
        }
        Ok(tsdb)
    }

    fn log_path(&self) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.path().join(format!("{}.log", binary_name(self.backend))))
    }

    /// The temporary directory holding the configuration, the data and the log.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(TempDir::path)
    }

    /// Waits (at most `within`, then goes on) until every active target of every job has been
    /// scraped twice: its `lastScrape` changed after the first one was seen.
    async fn wait_second_scrape(&self, client: &reqwest::Client, within: Duration) {
        let url = format!("{}/api/v1/targets", self.url);
        let mut first: std::collections::HashMap<String, String> = Default::default();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(v) = get_json(client, &url, &[]).await {
                let active = v
                    .pointer("/data/activeTargets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut done = !active.is_empty();
                for t in &active {
                    let last = t.get("lastScrape").and_then(Value::as_str).unwrap_or("");
                    if !was_scraped(t) {
                        done = false;
                        continue;
                    }
                    let key = format!(
                        "{} {}",
                        t.get("scrapePool").and_then(Value::as_str).unwrap_or(""),
                        t.get("scrapeUrl").and_then(Value::as_str).unwrap_or("")
                    );
                    match first.get(&key) {
                        None => {
                            first.insert(key, last.to_string());
                            done = false;
                        }
                        Some(seen) if seen == last => done = false,
                        Some(_) => {}
                    }
                }
                if done {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes VictoriaMetrics' first samples searchable before anyone queries: a query that
    /// runs before its buffers are flushed caches "no series" for about ten seconds. Flushes,
    /// then waits until `up` answers (at most 10 s; an empty `up`, as when every pod is
    /// dropped, is not an error).
    async fn settle_victoria(&self, client: &reqwest::Client, slow: bool) {
        let flush = format!("{}/internal/force_flush", self.url);
        let url = format!("{}/api/v1/query", self.url);
        let query = [("query", "up".to_string()), ("nocache", "1".to_string())];
        let deadline = Instant::now() + Duration::from_secs(10);
        // Every target of the first batch scraped (a 30 s interval would take too long).
        let targets = format!("{}/api/v1/targets", self.url);
        let mut active = 1;
        while !slow && Instant::now() < deadline {
            match get_json(client, &targets, &[]).await {
                Ok(v) if every_target_scraped(&v) => {
                    active = v
                        .pointer("/data/activeTargets")
                        .and_then(Value::as_array)
                        .map_or(1, Vec::len)
                        .max(1);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        // Then flushed, and `up` answers for each (`-search.latencyOffset` hides the newest
        // second).
        while Instant::now() < deadline {
            let _ = client.get(&flush).send().await;
            if let Ok(v) = get_json(client, &url, &query).await
                && v.pointer("/data/result")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.len() >= active)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn import_victoria(
        &self,
        client: &reqwest::Client,
        series: &[StaleSeries],
        stamps: &[i64],
    ) -> Result<(), PromError> {
        let body = stale_prometheus_text(series, stamps);
        let url = format!("{}/api/v1/import/prometheus", self.url);
        let resp = client
            .post(&url)
            .body(body)
            .send()
            .await
            .map_err(|e| PromError::Backfill(format!("POST {url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(PromError::Backfill(format!(
                "POST {url}: HTTP {}",
                resp.status()
            )));
        }
        // Make the rows searchable now: a query that runs before VictoriaMetrics flushes its
        // buffers caches "no series" for about ten seconds.
        let flush = format!("{}/internal/force_flush", self.url);
        let resp = client
            .get(&flush)
            .send()
            .await
            .map_err(|e| PromError::Backfill(format!("GET {flush}: {e}")))?;
        if !resp.status().is_success() {
            return Err(PromError::Backfill(format!(
                "GET {flush}: HTTP {}",
                resp.status()
            )));
        }
        Ok(())
    }

    /// The stale samples must answer a query at their own time.
    async fn check_stale_queryable(
        &self,
        client: &reqwest::Client,
        stamps: &[i64],
    ) -> Result<(), PromError> {
        let (Some(first), Some(last)) = (stamps.first(), stamps.last()) else {
            return Ok(());
        };
        let url = format!("{}/api/v1/query_range", self.url);
        let query = vec![
            (
                "query",
                "count(http_server_requests_seconds_count)".to_string(),
            ),
            ("start", format!("{}", first / 1000)),
            ("end", format!("{}", last / 1000)),
            ("step", "60".to_string()),
            ("nocache", "1".to_string()),
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last_seen = String::new();
        while Instant::now() < deadline {
            match get_json(client, &url, &query).await {
                Ok(v) => {
                    let points = v
                        .pointer("/data/result/0/values")
                        .and_then(Value::as_array)
                        .map(Vec::len)
                        .unwrap_or(0);
                    if points > 0 {
                        return Ok(());
                    }
                    last_seen = "the range query returned no points".into();
                }
                Err(e) => last_seen = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(PromError::Backfill(format!(
            "the old samples are not queryable: {last_seen}"
        )))
    }

    async fn wait_first_scrape(
        &mut self,
        client: &reqwest::Client,
        spawned: Instant,
        deadline: Duration,
        first_up_is_enough: bool,
    ) -> Result<Duration, PromError> {
        let url = format!("{}/api/v1/targets", self.url);
        let mut first_up: Option<Duration> = None;
        let mut last = String::from("no answer yet");
        loop {
            let waited = spawned.elapsed();
            if waited > deadline {
                let tail = self.log_path().map(|p| log_tail(&p)).unwrap_or_default();
                return Err(PromError::NoScrape {
                    what: what(self.backend),
                    waited,
                    detail: format!("{last}; {tail}"),
                });
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail = self.log_path().map(|p| log_tail(&p)).unwrap_or_default();
                return Err(PromError::Start {
                    what: what(self.backend),
                    message: format!("it exited ({status}); {tail}"),
                });
            }
            match get_json(client, &url, &[]).await {
                Ok(v) => {
                    let (state, all_scraped) = pool_state(&v);
                    if state == PoolState::Up && first_up.is_none() {
                        first_up = Some(spawned.elapsed());
                    }
                    match (state, first_up) {
                        (PoolState::Up, Some(t)) if all_scraped || first_up_is_enough => {
                            return Ok(t);
                        }
                        (PoolState::SettledDown, _) => {
                            return Ok(first_up.unwrap_or_else(|| spawned.elapsed()));
                        }
                        _ => {}
                    }
                    last = format!("targets state {state:?}");
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the process (kill, then wait until it is gone) and removes its directory.
    pub async fn shutdown(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

async fn wait_ready(
    client: &reqwest::Client,
    url: &str,
    child: &mut Child,
    backend: Backend,
    log_path: &Path,
) -> Result<(), String> {
    let path = match backend {
        Backend::Prometheus => "/-/ready",
        Backend::VictoriaMetrics => "/health",
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited ({status}); {}", log_tail(log_path)));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{url}{path} not ready after 30s; {}",
                log_tail(log_path)
            ));
        }
        if let Ok(r) = client.get(format!("{url}{path}")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes the samples as OpenMetrics and turns them into TSDB blocks in `data_dir`.
async fn backfill_blocks(
    promtool: &Path,
    work: &Path,
    data_dir: &Path,
    series: &[StaleSeries],
    stamps: &[i64],
) -> Result<(), PromError> {
    let input = work.join("stale-samples.om.txt");
    std::fs::write(&input, stale_openmetrics(series, stamps)).map_err(prep("the stale samples"))?;
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(data_dir)
        .current_dir(work)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| PromError::Backfill("promtool took more than 60s".into()))?
        .map_err(|e| PromError::Backfill(format!("cannot run {}: {e}", promtool.display())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(PromError::Backfill(format!(
            "promtool exited with {}: {}",
            out.status,
            err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(backend: Backend, faults: &[Fault]) -> TsdbOptions {
        TsdbOptions {
            backend,
            binary: None,
            faults: FaultSet::of(faults),
            sd_pods_url: "http://127.0.0.1:1/_sd/pods".into(),
            kube_url: "http://127.0.0.1:1".into(),
            namespaces: vec!["metacoding".into(), "monitoring".into()],
            app_namespace: "metacoding".into(),
            cadvisor_targets: vec!["127.0.3.1:10250".into()],
            pod_ip_prefix: [127, 0, 1],
            pods_scrape_interval: None,
        }
    }

    #[test]
    fn config_follows_the_faults() {
        let healthy = scrape_config(&opts(Backend::Prometheus, &[]));
        assert!(healthy.contains("honor_labels: true"));
        assert!(healthy.contains("http_sd_configs"));
        assert!(healthy.contains("kubernetes-cadvisor"));
        assert!(!healthy.contains("scrape_interval: 30s"));
        let broken = scrape_config(&opts(
            Backend::Prometheus,
            &[Fault::LabelCollision, Fault::SlowScrape],
        ));
        assert!(broken.contains("honor_labels: false"));
        assert!(broken.contains("scrape_interval: 30s"));
        let mut none = opts(Backend::VictoriaMetrics, &[]);
        none.cadvisor_targets.clear();
        let vm = scrape_config(&none);
        assert!(vm.contains("kubernetes_sd_configs") && vm.contains("role: pod"));
        assert!(!vm.contains("kubernetes-cadvisor"));
    }

    #[test]
    fn missing_binary_names_the_install_command() {
        let e = find_binary_in(None, "prometheus", PROMETHEUS_INSTALL, Some(OsStr::new("")))
            .unwrap_err();
        assert!(
            e.to_string().contains(
                "apt-get update && apt-get install -y --no-install-recommends prometheus"
            )
        );
        let e = find_binary_in(
            Some(Path::new("/nonexistent/prometheus")),
            "prometheus",
            PROMETHEUS_INSTALL,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/prometheus"), "{e}");
    }

    #[test]
    fn stale_samples_cover_the_old_window() {
        let pods = stale_pods(None, None, [127, 0, 1]);
        assert_eq!(pods.len(), 4);
        let series = stale_series(&pods, "metacoding");
        let until = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let stamps = stale_timestamps(until);
        assert_eq!(*stamps.last().unwrap(), 1_800_000_000_000);
        assert_eq!(stamps[0], 1_800_000_000_000 - 13 * 60 * 1000);
        let om = stale_openmetrics(&series, &stamps);
        assert!(om.ends_with("# EOF\n"));
        assert!(om.contains("pod=\"order-service-7d9f8b6c5-"));
        assert!(om.contains("uri=\"/api/orders\""));
    }

    #[test]
    fn pool_state_reads_both_backends() {
        let v: Value = serde_json::json!({"data": {"activeTargets": [
            {"scrapePool": "kubernetes-pods", "health": "up", "lastScrape": "2026-11-25T13:55:29.347Z"},
            {"scrapePool": "kubernetes-pods", "health": "unknown", "lastScrape": "0001-01-01T00:00:00Z"}],
            "droppedTargets": []}});
        assert_eq!(pool_state(&v), (PoolState::Up, false));
        // VictoriaMetrics before the first scrape: down, at the epoch.
        let v: Value = serde_json::json!({"data": {"activeTargets": [
            {"scrapePool": "kubernetes-pods", "health": "down", "lastScrape": "1970-01-01T00:00:00Z"}]}});
        assert_eq!(pool_state(&v), (PoolState::Pending, false));
        assert!(!every_target_scraped(&v));
        let v: Value = serde_json::json!({"data": {"activeTargets": [],
            "droppedTargets": [{"discoveredLabels": {"job": "kubernetes-pods"}}]}});
        assert_eq!(pool_state(&v).0, PoolState::SettledDown);
        assert_eq!(pool_state(&serde_json::json!({})).0, PoolState::Pending);
    }
}
