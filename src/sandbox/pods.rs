//! The processes inside the emulated pods, and the users who call them.
//!
//! Owns what answers on a pod's IP: each Spring Boot service's embedded web server
//! (`/actuator/prometheus` in Micrometer's Spring Boot 3 text format, `/actuator/health`, the
//! business endpoints), the Kafka exporter (`/metrics`), and the node's kubelet (`/healthz` on
//! 10248, cAdvisor's `/metrics/cadvisor` on 10250). It also owns the in-memory state behind
//! them (request timers, JVM gauges, Kafka offsets, CPU seconds) and the traffic generator that
//! plays the guide's scenarios (five logins, an order crossing Kafka, a delivery completion)
//! over steady background requests.
//!
//! It does not decide which pods exist, their names or IPs: `cluster.rs` builds the Kubernetes
//! objects and hands over one [`PodPlan`] per running pod. Everything listens on 127.0.0.0/8.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::faults::{Fault, FaultSet};

/// Content type of Micrometer's Prometheus scrape endpoint (Spring Boot 3).
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain;version=0.0.4;charset=utf-8";
/// Content type of the Go Prometheus client (Kafka exporter, kubelet).
const GO_METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The kubelet's read-only health port.
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;
/// The kubelet's port, where cAdvisor's metrics are served at `/metrics/cadvisor`.
pub const KUBELET_PORT: u16 = 10250;
/// The added delay of the `latency-50ms` fault.
const FAULT_LATENCY: Duration = Duration::from_millis(50);

/// Locks a mutex, ignoring poisoning: the state stays usable after a panicking holder.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What runs in a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodRole {
    /// A Spring Boot service with Micrometer's Prometheus endpoint on its container port.
    SpringBoot,
    /// danielqsj/kafka-exporter on its container port.
    KafkaExporter,
    /// Anything else (a broker, a database, Grafana, Prometheus): it uses CPU, nothing here
    /// answers on its IP.
    Passive,
}

/// One container of a running pod, as cAdvisor sees it.
#[derive(Clone, Debug)]
pub struct ContainerPlan {
    /// Container name.
    pub name: String,
    /// Image as the runtime reports it (`docker.io/...`).
    pub image: String,
    /// The runtime's container id (64 hex digits).
    pub container_id: String,
}

/// One running pod, as the cluster model hands it to the workloads.
#[derive(Clone, Debug)]
pub struct PodPlan {
    /// Namespace.
    pub namespace: String,
    /// Pod name (`<deployment>-<hash>-<suffix>`).
    pub name: String,
    /// The Deployment the pod belongs to (also the Micrometer `application` tag).
    pub deployment: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `status.podIP`.
    pub ip: Ipv4Addr,
    /// The container port the process listens on (if it listens).
    pub port: u16,
    /// What the process is.
    pub role: PodRole,
    /// Whether the process binds its port (false under `nothing-listening`).
    pub listening: bool,
    /// The pod's containers (the pause container is added by cAdvisor).
    pub containers: Vec<ContainerPlan>,
    /// Id of the pod's sandbox (pause) container.
    pub pause_id: String,
    /// CPU seconds per second the process burns when idle.
    pub idle_cpu: f64,
}

/// A tiny deterministic generator (xorshift64*), so that runs are reproducible.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// Formats a double the way Java's `Double.toString` does (Micrometer's exposition).
pub fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return "0.0".into();
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    }
}

/// Formats a value as Go's Prometheus client does (`%g`-like, shortest round trip).
fn go_value(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 1e21 || (v != 0.0 && v.abs() < 1e-4) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        format!("{v}")
    }
}

/// Writes Prometheus text exposition, families sorted by name as both Micrometer and the Go
/// client write them.
#[derive(Default)]
struct Expo {
    families: BTreeMap<String, String>,
    current: String,
}

impl Expo {
    /// Starts (or continues) a family; its samples follow.
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        self.current = name.to_string();
        let block = self.families.entry(name.to_string()).or_default();
        if block.is_empty() {
            let _ = writeln!(block, "# HELP {name} {help}");
            let _ = writeln!(block, "# TYPE {name} {kind}");
        }
    }

    /// One sample of the current family; label names are sorted.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        let mut sorted: Vec<&(&str, &str)> = labels.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let out = self.families.entry(self.current.clone()).or_default();
        out.push_str(name);
        if !sorted.is_empty() {
            out.push('{');
            for (i, (k, v)) in sorted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
    }

    fn finish(self) -> String {
        self.families.into_values().collect()
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// CPU seconds a container has used: an idle rate plus the work it was given.
#[derive(Debug)]
pub struct CpuMeter {
    started: Instant,
    idle_rate: f64,
    initial: f64,
    work: Mutex<f64>,
}

impl CpuMeter {
    fn new(idle_rate: f64, initial: f64) -> CpuMeter {
        CpuMeter {
            started: Instant::now(),
            idle_rate,
            initial,
            work: Mutex::new(0.0),
        }
    }

    /// Cumulative CPU seconds; never decreases.
    pub fn seconds(&self) -> f64 {
        self.initial + self.idle_rate * self.started.elapsed().as_secs_f64() + *lock(&self.work)
    }

    fn add(&self, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            *lock(&self.work) += seconds;
        }
    }
}

/// Micrometer's `TimeWindowMax`: three buffers rotated every 40 s, each sample written to all.
#[derive(Debug)]
struct WindowMax {
    ring: [f64; 3],
    pos: usize,
    rotated: Instant,
}

const MAX_ROTATE: Duration = Duration::from_secs(40);

impl WindowMax {
    fn new(now: Instant) -> WindowMax {
        WindowMax {
            ring: [0.0; 3],
            pos: 0,
            rotated: now,
        }
    }
    fn rotate(&mut self, now: Instant) {
        let mut turns = 0;
        while now.saturating_duration_since(self.rotated) >= MAX_ROTATE {
            self.ring[self.pos] = 0.0;
            self.pos = (self.pos + 1) % 3;
            self.rotated += MAX_ROTATE;
            turns += 1;
            if turns > 3 {
                self.ring = [0.0; 3];
                self.rotated = now;
            }
        }
    }
    fn record(&mut self, v: f64, now: Instant) {
        self.rotate(now);
        for b in &mut self.ring {
            *b = b.max(v);
        }
    }
    fn poll(&mut self, now: Instant) -> f64 {
        self.rotate(now);
        self.ring[self.pos]
    }
}

/// One Micrometer timer: count, total and decaying max.
#[derive(Debug)]
struct TimerStats {
    count: u64,
    sum: f64,
    max: WindowMax,
}

impl TimerStats {
    fn new(now: Instant) -> TimerStats {
        TimerStats {
            count: 0,
            sum: 0.0,
            max: WindowMax::new(now),
        }
    }
    fn record(&mut self, seconds: f64, now: Instant) {
        self.count += 1;
        self.sum += seconds;
        self.max.record(seconds, now);
    }
}

/// The tags of one `http_server_requests_seconds` series (Spring Boot 3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct HttpKey {
    method: String,
    uri: String,
    status: u16,
    exception: String,
}

fn outcome(status: u16) -> &'static str {
    match status {
        100..=199 => "INFORMATIONAL",
        200..=299 => "SUCCESS",
        300..=399 => "REDIRECTION",
        400..=499 => "CLIENT_ERROR",
        500..=599 => "SERVER_ERROR",
        _ => "UNKNOWN",
    }
}

#[derive(Debug)]
struct AppState {
    http: BTreeMap<HttpKey, TimerStats>,
    requests: u64,
    allocated: f64,
    kafka_sent: BTreeMap<&'static str, TimerStats>,
    kafka_received: Option<TimerStats>,
    log_info: u64,
    log_warn: u64,
    last_cpu: Option<(Instant, f64)>,
    cpu_usage: f64,
}

/// One Spring Boot service's JVM: its Micrometer registry and how busy it is.
#[derive(Debug)]
pub struct ServiceApp {
    /// The `application` tag (`management.metrics.tags.application`).
    pub application: String,
    main_class: String,
    started: Instant,
    start_epoch: f64,
    cpu: Arc<CpuMeter>,
    state: Mutex<AppState>,
}

impl ServiceApp {
    fn new(application: &str, cpu: Arc<CpuMeter>) -> ServiceApp {
        let now = Instant::now();
        let simple: String = application
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        let pkg = application.split('-').next().unwrap_or("app");
        ServiceApp {
            application: application.to_string(),
            main_class: format!("com.metacoding.{pkg}.{simple}Application"),
            started: now,
            start_epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
                - 7.5,
            cpu,
            state: Mutex::new(AppState {
                http: BTreeMap::new(),
                requests: 0,
                allocated: 0.0,
                kafka_sent: BTreeMap::new(),
                kafka_received: None,
                log_info: 9,
                log_warn: 0,
                last_cpu: None,
                cpu_usage: 0.0,
            }),
        }
    }

    /// Records one handled HTTP request, as Micrometer's server observation does when the
    /// response is complete: the series appears with its first request.
    pub fn record_http(&self, method: &str, uri: &str, status: u16, exception: &str, seconds: f64) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        let key = HttpKey {
            method: method.to_string(),
            uri: uri.to_string(),
            status,
            exception: exception.to_string(),
        };
        st.http
            .entry(key)
            .or_insert_with(|| TimerStats::new(now))
            .record(seconds, now);
        st.requests += 1;
        st.allocated += 180_000.0 + seconds * 4_000_000.0;
        if status >= 400 && uri != "/actuator/prometheus" {
            st.log_warn += 1;
        }
        drop(st);
        self.cpu.add(seconds * 0.35);
    }

    /// The number of requests counted on `uri` (all methods and statuses).
    pub fn request_count(&self, uri: &str) -> u64 {
        lock(&self.state)
            .http
            .iter()
            .filter(|(k, _)| k.uri == uri)
            .map(|(_, t)| t.count)
            .sum()
    }

    /// The URIs that have series (Micrometer creates them on first request).
    pub fn uris(&self) -> BTreeSet<String> {
        lock(&self.state)
            .http
            .keys()
            .map(|k| k.uri.clone())
            .collect()
    }

    fn work(&self, cpu_seconds: f64, info_logs: u64) {
        self.cpu.add(cpu_seconds);
        let mut st = lock(&self.state);
        st.log_info += info_logs;
        st.allocated += cpu_seconds * 40_000_000.0;
    }

    fn record_kafka_send(&self, result: &'static str, seconds: f64) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.kafka_sent
            .entry(result)
            .or_insert_with(|| TimerStats::new(now))
            .record(seconds, now);
        if result != "success" {
            st.log_warn += 1;
        }
    }

    fn record_kafka_receive(&self, seconds: f64) {
        let now = Instant::now();
        let mut st = lock(&self.state);
        st.kafka_received
            .get_or_insert_with(|| TimerStats::new(now))
            .record(seconds, now);
    }

    /// The scrape body, in the Spring Boot 3 / Micrometer text format with the `application`
    /// tag on every series.
    pub fn render(&self) -> String {
        let now = Instant::now();
        let cpu_now = self.cpu.seconds();
        let mut st = lock(&self.state);
        let uptime = self.started.elapsed().as_secs_f64() + 7.5;
        // process_cpu_usage: the CPU used since the previous scrape, over 2 processors.
        match st.last_cpu {
            Some((t, c)) => {
                let dt = now.saturating_duration_since(t).as_secs_f64();
                if dt > 0.05 {
                    st.cpu_usage = ((cpu_now - c) / dt / 2.0).clamp(0.0, 1.0);
                }
            }
            None => st.cpu_usage = (self.cpu.idle_rate / 2.0).clamp(0.0, 1.0),
        }
        st.last_cpu = Some((now, cpu_now));

        let a = ("application", self.application.as_str());
        let mut e = Expo::default();
        for (name, help, kind, samples) in STEADY_FAMILIES {
            e.family(name, help, kind);
            for (tags, value) in *samples {
                let mut labels = vec![a];
                labels.extend_from_slice(tags);
                e.sample(name, &labels, value);
            }
        }
        let main = [a, ("main_application_class", self.main_class.as_str())];
        for (name, help, value) in [
            (
                "application_ready_time_seconds",
                "Time taken for the application to be ready to service requests",
                "7.512",
            ),
            (
                "application_started_time_seconds",
                "Time taken to start the application",
                "7.431",
            ),
        ] {
            e.family(name, help, "gauge");
            e.sample(name, &main, value);
        }

        // The scrape in progress is an active long task, as in the real output.
        let active = [
            a,
            ("exception", "none"),
            ("method", "GET"),
            ("outcome", "SUCCESS"),
            ("status", "200"),
            ("uri", "UNKNOWN"),
        ];
        e.family("http_server_requests_active_seconds", " ", "summary");
        e.sample("http_server_requests_active_seconds_count", &active, "1");
        e.sample(
            "http_server_requests_active_seconds_sum",
            &active,
            "0.001482917",
        );
        e.family("http_server_requests_active_seconds_max", " ", "gauge");
        e.sample(
            "http_server_requests_active_seconds_max",
            &active,
            "0.001497125",
        );

        // One timer per (method, uri, status, exception) seen so far.
        for (k, t) in st.http.iter_mut() {
            let status = k.status.to_string();
            let labels = [
                a,
                ("error", k.exception.as_str()),
                ("exception", k.exception.as_str()),
                ("method", k.method.as_str()),
                ("outcome", outcome(k.status)),
                ("status", status.as_str()),
                ("uri", k.uri.as_str()),
            ];
            let help = "Duration of HTTP server request handling";
            e.family("http_server_requests_seconds", help, "summary");
            e.sample(
                "http_server_requests_seconds_count",
                &labels,
                &t.count.to_string(),
            );
            e.sample(
                "http_server_requests_seconds_sum",
                &labels,
                &java_double(t.sum),
            );
            e.family("http_server_requests_seconds_max", help, "gauge");
            e.sample(
                "http_server_requests_seconds_max",
                &labels,
                &java_double(t.max.poll(now)),
            );
        }
        for (result, t) in &st.kafka_sent {
            let exception = if *result == "success" {
                "none"
            } else {
                "TimeoutException"
            };
            let labels = [
                a,
                ("exception", exception),
                ("name", "kafkaTemplate"),
                ("result", result),
            ];
            e.family(
                "spring_kafka_template_seconds",
                "KafkaTemplate Timer",
                "summary",
            );
            e.sample(
                "spring_kafka_template_seconds_count",
                &labels,
                &t.count.to_string(),
            );
            e.sample(
                "spring_kafka_template_seconds_sum",
                &labels,
                &java_double(t.sum),
            );
        }
        if let Some(t) = &st.kafka_received {
            let container = "org.springframework.kafka.KafkaListenerEndpointContainer#0-0";
            let labels = [
                a,
                ("exception", "none"),
                ("name", container),
                ("result", "success"),
            ];
            e.family(
                "spring_kafka_listener_seconds",
                "Kafka Listener Timer",
                "summary",
            );
            e.sample(
                "spring_kafka_listener_seconds_count",
                &labels,
                &t.count.to_string(),
            );
            e.sample(
                "spring_kafka_listener_seconds_sum",
                &labels,
                &java_double(t.sum),
            );
        }

        // The heap: Eden fills with allocations and is emptied by each young collection.
        let eden_capacity = 6.7108864e7;
        let allocated = 2.9e7 + uptime * 160_000.0 + st.allocated;
        let young_gcs = (allocated / eden_capacity).floor();
        let code_cache = 1.483104e7 + uptime.min(900.0) * 2_600.0;
        let metaspace = 7.4763144e7 + uptime.min(600.0) * 1_100.0;
        // (area, id, used, committed, max)
        let pools: [(&str, &str, f64, f64, f64); 6] = [
            (
                "heap",
                "G1 Eden Space",
                2_097_152.0 + (allocated % eden_capacity) * 0.96,
                7.5497472e7,
                -1.0,
            ),
            (
                "heap",
                "G1 Old Gen",
                2.3906816e7 + young_gcs * 184_320.0,
                6.1865984e7 + young_gcs * 262_144.0,
                5.36870912e8,
            ),
            (
                "heap",
                "G1 Survivor Space",
                3_151_488.0 + (young_gcs % 3.0) * 262_144.0,
                4_194_304.0,
                -1.0,
            ),
            (
                "nonheap",
                "CodeCache",
                code_cache,
                code_cache + 1_487_424.0,
                5.0331648e7,
            ),
            (
                "nonheap",
                "Compressed Class Space",
                1.0106136e7,
                1.0682368e7,
                1.073741824e9,
            ),
            (
                "nonheap",
                "Metaspace",
                metaspace,
                metaspace + 786_432.0,
                -1.0,
            ),
        ];
        for (name, help, column) in [
            ("jvm_memory_used_bytes", "The amount of used memory", 0),
            (
                "jvm_memory_committed_bytes",
                "The amount of memory in bytes that is committed for the Java virtual machine to use",
                1,
            ),
            (
                "jvm_memory_max_bytes",
                "The maximum amount of memory in bytes that can be used for memory management",
                2,
            ),
        ] {
            e.family(name, help, "gauge");
            for (area, id, used, committed, max) in &pools {
                let v = [used, committed, max][column].round();
                e.sample(name, &[a, ("area", area), ("id", id)], &java_double(v));
            }
        }
        let gc = [
            ("action", "end of minor GC"),
            a,
            ("cause", "G1 Evacuation Pause"),
            ("gc", "G1 Young Generation"),
        ];
        let pauses = young_gcs + 1.0;
        e.family("jvm_gc_pause_seconds", "Time spent in GC pause", "summary");
        e.sample("jvm_gc_pause_seconds_count", &gc, &format!("{pauses}"));
        e.sample(
            "jvm_gc_pause_seconds_sum",
            &gc,
            &java_double(pauses * 0.0041),
        );

        e.family(
            "logback_events_total",
            "Number of log events that were enabled by the effective log level",
            "counter",
        );
        let (info, warn) = (
            java_double(st.log_info as f64),
            java_double(st.log_warn as f64),
        );
        for (level, v) in [
            ("debug", "0.0"),
            ("error", "0.0"),
            ("info", info.as_str()),
            ("trace", "0.0"),
            ("warn", warn.as_str()),
        ] {
            e.sample("logback_events_total", &[a, ("level", level)], v);
        }

        let live = 31.0 + (st.requests % 4) as f64;
        let single: [(&str, &str, &str, f64); 10] = [
            (
                "jvm_gc_memory_allocated_bytes_total",
                "Incremented for an increase in the size of the (young) heap memory pool after one GC to before the next",
                "counter",
                young_gcs * eden_capacity,
            ),
            (
                "jvm_gc_memory_promoted_bytes_total",
                "Count of positive increases in the size of the old generation memory pool before GC to after GC",
                "counter",
                young_gcs * 184_320.0 + 504.0,
            ),
            (
                "jvm_threads_daemon_threads",
                "The current number of live daemon threads",
                "gauge",
                live - 4.0,
            ),
            (
                "jvm_threads_live_threads",
                "The current number of live threads including both daemon and non-daemon threads",
                "gauge",
                live,
            ),
            (
                "jvm_threads_started_threads_total",
                "The total number of application threads started in the JVM",
                "counter",
                38.0 + (st.requests / 40) as f64,
            ),
            (
                "process_cpu_usage",
                "The \"recent cpu usage\" for the Java Virtual Machine process",
                "gauge",
                st.cpu_usage,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch.",
                "gauge",
                (self.start_epoch * 1000.0).round() / 1000.0,
            ),
            (
                "process_uptime_seconds",
                "The uptime of the Java virtual machine",
                "gauge",
                (uptime * 1000.0).round() / 1000.0,
            ),
            (
                "system_cpu_usage",
                "The \"recent cpu usage\" of the system the application is running in",
                "gauge",
                (st.cpu_usage + 0.06 + (uptime / 7.0).sin() * 0.01).clamp(0.0, 1.0),
            ),
            (
                "system_load_average_1m",
                "The sum of the number of runnable entities queued to available processors and the number of runnable entities running on the available processors averaged over a period of time",
                "gauge",
                0.42 + (uptime / 11.0).sin().abs() * 0.3,
            ),
        ];
        for (name, help, kind, value) in single {
            e.family(name, help, kind);
            e.sample(name, &[a], &java_double(value));
        }
        e.finish()
    }
}

/// Tags besides `application`, and the value, of each sample of a steady family.
type SteadySamples = &'static [(&'static [(&'static str, &'static str)], &'static str)];

/// Micrometer families whose values do not move in the emulation: name, help, type, samples.
const STEADY_FAMILIES: &[(&str, &str, &str, SteadySamples)] = &[
    (
        "disk_free_bytes",
        "Usable space for path",
        "gauge",
        &[(&[("path", "/app/.")], "4.1873641472E10")],
    ),
    (
        "disk_total_bytes",
        "Total space for path",
        "gauge",
        &[(&[("path", "/app/.")], "8.4277297152E10")],
    ),
    (
        "executor_active_threads",
        "The approximate number of threads that are actively executing tasks",
        "gauge",
        &[(&[("name", "applicationTaskExecutor")], "0.0")],
    ),
    (
        "executor_pool_max_threads",
        "The maximum allowed number of threads in the pool",
        "gauge",
        &[(&[("name", "applicationTaskExecutor")], "2.147483647E9")],
    ),
    (
        "jvm_buffer_count_buffers",
        "An estimate of the number of buffers in the pool",
        "gauge",
        &[(&[("id", "direct")], "12.0"), (&[("id", "mapped")], "0.0")],
    ),
    (
        "jvm_classes_loaded_classes",
        "The number of classes that are currently loaded in the Java virtual machine",
        "gauge",
        &[(&[], "14823.0")],
    ),
    (
        "jvm_classes_unloaded_classes_total",
        "The total number of classes unloaded since the Java virtual machine has started execution",
        "counter",
        &[(&[], "0.0")],
    ),
    (
        "jvm_gc_pause_seconds_max",
        "Time spent in GC pause",
        "gauge",
        &[(
            &[
                ("action", "end of minor GC"),
                ("cause", "G1 Evacuation Pause"),
                ("gc", "G1 Young Generation"),
            ],
            "0.004",
        )],
    ),
    (
        "jvm_info",
        "JVM version info",
        "gauge",
        &[(
            &[
                ("runtime", "OpenJDK Runtime Environment"),
                ("vendor", "Eclipse Adoptium"),
                ("version", "17.0.11+9"),
            ],
            "1",
        )],
    ),
    (
        "jvm_threads_peak_threads",
        "The peak live thread count since the Java virtual machine started or peak was reset",
        "gauge",
        &[(&[], "35.0")],
    ),
    (
        "process_files_open_files",
        "The open file descriptor count",
        "gauge",
        &[(&[], "71.0")],
    ),
    (
        "system_cpu_count",
        "The number of processors available to the Java virtual machine",
        "gauge",
        &[(&[], "2.0")],
    ),
    (
        "tomcat_sessions_active_current_sessions",
        " ",
        "gauge",
        &[(&[], "0.0")],
    ),
    (
        "tomcat_sessions_created_sessions_total",
        " ",
        "counter",
        &[(&[], "0.0")],
    ),
];

/// The state of one partition: its oldest and next offsets.
#[derive(Clone, Debug)]
struct Partition {
    oldest: i64,
    offset: i64,
}

/// A consumer group: members and committed offsets per topic and partition.
#[derive(Clone, Debug)]
struct Group {
    members: u32,
    offsets: BTreeMap<String, Vec<i64>>,
}

/// A message waiting for its consumer.
#[derive(Clone, Debug)]
struct Delivery {
    due: Instant,
    group: &'static str,
    topic: &'static str,
    partition: usize,
    consumer: &'static str,
}

/// The Kafka broker's state that the exporter reports.
#[derive(Debug)]
struct KafkaState {
    topics: BTreeMap<String, Vec<Partition>>,
    groups: BTreeMap<String, Group>,
    pending: Vec<Delivery>,
    next_order: u64,
}

/// The topic the guide's panel 2 watches.
pub const ORDER_TOPIC: &str = "order-created";
/// The topic orchestrator-service writes when a delivery is completed.
pub const DELIVERY_TOPIC: &str = "delivery-completed";
/// The consumer group of delivery-service on `order-created`.
pub const DELIVERY_GROUP: &str = "delivery-service-group";
/// The consumer group of order-service on `delivery-completed`.
pub const ORDER_GROUP: &str = "order-service-group";

impl KafkaState {
    fn new(topic_missing: bool) -> KafkaState {
        let partitions = |offsets: &[i64]| -> Vec<Partition> {
            offsets
                .iter()
                .map(|&offset| Partition { oldest: 0, offset })
                .collect()
        };
        let internal: Vec<i64> = (0..50).map(|p| [0, 0, 3, 0, 12, 0, 0, 7][p % 8]).collect();
        let mut topics = BTreeMap::new();
        topics.insert("__consumer_offsets".to_string(), partitions(&internal));
        if !topic_missing {
            topics.insert(ORDER_TOPIC.to_string(), partitions(&[1287, 1301, 1295]));
        }
        topics.insert(DELIVERY_TOPIC.to_string(), partitions(&[1240, 1262, 1251]));
        // Each group starts caught up on the topic it reads (if that topic exists).
        let group = |topic: &str| Group {
            members: 1,
            offsets: topics
                .get(topic)
                .map(|t| (topic.to_string(), t.iter().map(|p| p.offset).collect()))
                .into_iter()
                .collect(),
        };
        let groups = BTreeMap::from([
            (DELIVERY_GROUP.to_string(), group(ORDER_TOPIC)),
            (ORDER_GROUP.to_string(), group(DELIVERY_TOPIC)),
        ]);
        KafkaState {
            topics,
            groups,
            pending: Vec::new(),
            next_order: 3850,
        }
    }

    /// Appends a message; `None` when the topic does not exist.
    fn produce(&mut self, topic: &str, key: u64) -> Option<usize> {
        let parts = self.topics.get_mut(topic)?;
        if parts.is_empty() {
            return None;
        }
        let p = (key % parts.len() as u64) as usize;
        parts[p].offset += 1;
        Some(p)
    }

    /// Commits the offsets of the messages whose time has come; returns their consumers.
    fn consume_due(&mut self, now: Instant) -> Vec<&'static str> {
        let (due, keep): (Vec<Delivery>, Vec<Delivery>) =
            self.pending.drain(..).partition(|d| d.due <= now);
        self.pending = keep;
        let mut consumers = Vec::new();
        for d in due {
            let end = self
                .topics
                .get(d.topic)
                .and_then(|t| t.get(d.partition))
                .map(|p| p.offset);
            if let (Some(end), Some(g)) = (end, self.groups.get_mut(d.group)) {
                let offs = g.offsets.entry(d.topic.to_string()).or_default();
                if offs.len() <= d.partition {
                    offs.resize(d.partition + 1, 0);
                }
                offs[d.partition] = (offs[d.partition] + 1).min(end);
                consumers.push(d.consumer);
            }
        }
        consumers
    }

    fn lag(&self, group: &str, topic: &str) -> i64 {
        let Some(parts) = self.topics.get(topic) else {
            return 0;
        };
        let Some(offs) = self.groups.get(group).and_then(|g| g.offsets.get(topic)) else {
            return 0;
        };
        parts
            .iter()
            .zip(offs)
            .map(|(p, o)| (p.offset - o).max(0))
            .sum()
    }

    /// danielqsj/kafka-exporter's `/metrics`.
    fn render(&self) -> String {
        let mut e = Expo::default();
        e.family(
            "kafka_brokers",
            "Number of Brokers in the Kafka Cluster.",
            "gauge",
        );
        e.sample("kafka_brokers", &[], "1");
        e.family(
            "kafka_broker_info",
            "Information about the Kafka Broker.",
            "gauge",
        );
        e.sample(
            "kafka_broker_info",
            &[
                ("address", "kafka.metacoding.svc.cluster.local:9092"),
                ("id", "0"),
            ],
            "0",
        );
        e.family(
            "kafka_topic_partitions",
            "Number of partitions for this Topic",
            "gauge",
        );
        for (t, parts) in &self.topics {
            e.sample(
                "kafka_topic_partitions",
                &[("topic", t)],
                &parts.len().to_string(),
            );
        }
        type PartFn = fn(&Partition) -> String;
        let per_partition: [(&str, &str, PartFn); 7] = [
            (
                "kafka_topic_partition_current_offset",
                "Current Offset of a Broker at Topic/Partition",
                |p| p.offset.to_string(),
            ),
            (
                "kafka_topic_partition_oldest_offset",
                "Oldest Offset of a Broker at Topic/Partition",
                |p| p.oldest.to_string(),
            ),
            (
                "kafka_topic_partition_in_sync_replica",
                "Number of In-Sync Replicas for this Topic/Partition",
                |_| "1".into(),
            ),
            (
                "kafka_topic_partition_leader",
                "Leader Broker ID of this Topic/Partition",
                |_| "0".into(),
            ),
            (
                "kafka_topic_partition_leader_is_preferred",
                "1 if Topic/Partition is using the Preferred Broker",
                |_| "1".into(),
            ),
            (
                "kafka_topic_partition_replicas",
                "Number of Replicas for this Topic/Partition",
                |_| "1".into(),
            ),
            (
                "kafka_topic_partition_under_replicated_partition",
                "1 if Topic/Partition is under Replicated",
                |_| "0".into(),
            ),
        ];
        for (name, help, f) in &per_partition {
            e.family(name, help, "gauge");
            for (t, parts) in &self.topics {
                for (i, p) in parts.iter().enumerate() {
                    let i = i.to_string();
                    e.sample(name, &[("partition", &i), ("topic", t)], &f(p));
                }
            }
        }
        let rows: Vec<(&String, &String, &Vec<i64>)> = self
            .groups
            .iter()
            .flat_map(|(g, grp)| grp.offsets.iter().map(move |(t, o)| (g, t, o)))
            .filter(|(_, t, _)| self.topics.contains_key(*t))
            .collect();
        e.family(
            "kafka_consumergroup_current_offset",
            "Current Offset of a ConsumerGroup at Topic/Partition",
            "gauge",
        );
        for (g, t, offs) in &rows {
            for (i, o) in offs.iter().enumerate() {
                let i = i.to_string();
                e.sample(
                    "kafka_consumergroup_current_offset",
                    &[("consumergroup", g), ("partition", &i), ("topic", t)],
                    &o.to_string(),
                );
            }
        }
        e.family(
            "kafka_consumergroup_current_offset_sum",
            "Current Offset of a ConsumerGroup at Topic for all partitions",
            "gauge",
        );
        for (g, t, offs) in &rows {
            let sum: i64 = offs.iter().sum();
            e.sample(
                "kafka_consumergroup_current_offset_sum",
                &[("consumergroup", g), ("topic", t)],
                &sum.to_string(),
            );
        }
        e.family(
            "kafka_consumergroup_lag",
            "Current Approximate Lag of a ConsumerGroup at Topic/Partition",
            "gauge",
        );
        for (g, t, offs) in &rows {
            let parts = self.topics.get(*t).map(Vec::as_slice).unwrap_or(&[]);
            for (i, (o, p)) in offs.iter().zip(parts).enumerate() {
                let i = i.to_string();
                e.sample(
                    "kafka_consumergroup_lag",
                    &[("consumergroup", g), ("partition", &i), ("topic", t)],
                    &(p.offset - o).max(0).to_string(),
                );
            }
        }
        e.family(
            "kafka_consumergroup_lag_sum",
            "Current Approximate Lag of a ConsumerGroup at Topic for all partitions",
            "gauge",
        );
        for (g, t, _) in &rows {
            e.sample(
                "kafka_consumergroup_lag_sum",
                &[("consumergroup", g), ("topic", t)],
                &self.lag(g, t).to_string(),
            );
        }
        e.family(
            "kafka_consumergroup_members",
            "Amount of members in a consumer group",
            "gauge",
        );
        for (g, grp) in &self.groups {
            e.sample(
                "kafka_consumergroup_members",
                &[("consumergroup", g)],
                &grp.members.to_string(),
            );
        }
        e.family(
            "kafka_exporter_build_info",
            "A metric with a constant '1' value labeled by version, revision, branch, goversion from which kafka_exporter was built, and the goos and goarch for the build.",
            "gauge",
        );
        e.sample(
            "kafka_exporter_build_info",
            &[
                ("branch", "HEAD"),
                ("goarch", "amd64"),
                ("goos", "linux"),
                ("goversion", "go1.20.6"),
                ("revision", "b9a5fd5cc4c3e8c8ae8a4d01fa5d8fa2b0a5b9a4"),
                ("version", "1.7.0"),
            ],
            "1",
        );
        e.finish()
    }
}

/// One request a user (or the traffic generator) makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `POST /login` on user-service; `ok: false` is a wrong password (401).
    Login {
        /// Whether the password is right.
        ok: bool,
    },
    /// `GET /api/users/{userId}` on user-service.
    GetUser(u64),
    /// `POST /api/orders` on order-service: writes to `order-created`.
    PlaceOrder,
    /// `GET /api/orders/{orderId}` on order-service.
    GetOrder(u64),
    /// `GET /api/deliveries/{deliveryId}` on delivery-service.
    GetDelivery(u64),
    /// `PUT /api/orders/{orderId}/complete` on orchestrator-service: the delivery is done.
    CompleteOrder(u64),
    /// `GET /api/orders/{orderId}/status` on orchestrator-service.
    OrderStatus(u64),
}

impl Action {
    /// The service that handles it.
    pub fn service(self) -> &'static str {
        match self {
            Action::Login { .. } | Action::GetUser(_) => "user-service",
            Action::PlaceOrder | Action::GetOrder(_) => "order-service",
            Action::GetDelivery(_) => "delivery-service",
            Action::CompleteOrder(_) | Action::OrderStatus(_) => "orchestrator-service",
        }
    }

    /// HTTP method.
    pub fn method(self) -> &'static str {
        match self {
            Action::Login { .. } | Action::PlaceOrder => "POST",
            Action::CompleteOrder(_) => "PUT",
            _ => "GET",
        }
    }

    /// The `uri` tag Micrometer records (the handler's pattern).
    pub fn uri(self, uri_mismatch: bool) -> &'static str {
        match self {
            Action::Login { .. } => "/login",
            Action::GetUser(_) => "/api/users/{userId}",
            Action::PlaceOrder if uri_mismatch => "/orders",
            Action::PlaceOrder => "/api/orders",
            Action::GetOrder(_) if uri_mismatch => "/orders/{orderId}",
            Action::GetOrder(_) => "/api/orders/{orderId}",
            Action::GetDelivery(_) => "/api/deliveries/{deliveryId}",
            Action::CompleteOrder(_) => "/api/orders/{orderId}/complete",
            Action::OrderStatus(_) => "/api/orders/{orderId}/status",
        }
    }

    /// Parses a real request to `service` into an action.
    pub fn parse(service: &str, method: &Method, path: &str, uri_mismatch: bool) -> Option<Action> {
        let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let id = |s: &str| s.parse::<u64>().ok();
        let orders = if uri_mismatch {
            &["orders"][..]
        } else {
            &["api", "orders"][..]
        };
        match (service, method.as_str()) {
            ("user-service", "POST") if segs == ["login"] => Some(Action::Login { ok: true }),
            ("user-service", "GET") => match segs.as_slice() {
                ["api", "users", x] => id(x).map(Action::GetUser),
                _ => None,
            },
            ("order-service", "POST") if segs == orders => Some(Action::PlaceOrder),
            ("order-service", "GET")
                if segs.len() == orders.len() + 1 && segs.starts_with(orders) =>
            {
                segs.last().and_then(|x| id(x)).map(Action::GetOrder)
            }
            ("delivery-service", "GET") => match segs.as_slice() {
                ["api", "deliveries", x] => id(x).map(Action::GetDelivery),
                _ => None,
            },
            ("orchestrator-service", "PUT") => match segs.as_slice() {
                ["api", "orders", x, "complete"] => id(x).map(Action::CompleteOrder),
                _ => None,
            },
            ("orchestrator-service", "GET") => match segs.as_slice() {
                ["api", "orders", x, "status"] => id(x).map(Action::OrderStatus),
                _ => None,
            },
            _ => None,
        }
    }
}

/// CPU and memory of one running pod, for cAdvisor.
#[derive(Debug)]
struct PodMeters {
    plan: PodPlan,
    containers: Vec<Arc<CpuMeter>>,
    pause: Arc<CpuMeter>,
}

/// The running processes of the cluster and their shared state.
#[derive(Debug)]
pub struct Workloads {
    apps: BTreeMap<String, Arc<ServiceApp>>,
    reachable: BTreeSet<String>,
    kafka: Mutex<KafkaState>,
    pods: Vec<PodMeters>,
    uri_mismatch: bool,
    rng: Mutex<Rng>,
}

impl Workloads {
    fn new(plans: &[PodPlan], faults: &FaultSet) -> Workloads {
        let mut apps = BTreeMap::new();
        let mut reachable = BTreeSet::new();
        let mut pods = Vec::new();
        for plan in plans {
            // The first container is the workload; sidecars idle along.
            let containers: Vec<Arc<CpuMeter>> = plan
                .containers
                .iter()
                .enumerate()
                .map(|(i, _)| match (i, plan.role) {
                    (0, PodRole::SpringBoot) => Arc::new(CpuMeter::new(plan.idle_cpu, 14.2)),
                    (0, _) => Arc::new(CpuMeter::new(plan.idle_cpu, 1.3)),
                    _ => Arc::new(CpuMeter::new(0.000_5, 0.2)),
                })
                .collect();
            if plan.role == PodRole::SpringBoot
                && let Some(cpu) = containers.first()
            {
                apps.insert(
                    plan.deployment.clone(),
                    Arc::new(ServiceApp::new(&plan.deployment, cpu.clone())),
                );
                if plan.listening {
                    reachable.insert(plan.deployment.clone());
                }
            }
            pods.push(PodMeters {
                plan: plan.clone(),
                containers,
                pause: Arc::new(CpuMeter::new(0.000_02, 0.03)),
            });
        }
        let seed = plans
            .first()
            .map(|p| u64::from(u32::from(p.ip)))
            .unwrap_or(7);
        Workloads {
            apps,
            reachable,
            kafka: Mutex::new(KafkaState::new(faults.has(Fault::TopicMissing))),
            pods,
            uri_mismatch: faults.has(Fault::UriMismatch),
            rng: Mutex::new(Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))),
        }
    }

    /// The JVM of a service, if it has a running pod.
    pub fn app(&self, service: &str) -> Option<Arc<ServiceApp>> {
        self.apps.get(service).cloned()
    }

    /// The current consumer lag of a group on a topic (all partitions).
    pub fn kafka_lag(&self, group: &str, topic: &str) -> i64 {
        lock(&self.kafka).lag(group, topic)
    }

    /// The Kafka exporter's current `/metrics` body.
    pub fn kafka_metrics(&self) -> String {
        lock(&self.kafka).render()
    }

    fn rand(&self, lo: f64, hi: f64) -> f64 {
        lock(&self.rng).range(lo, hi)
    }

    /// Handles one business request on its service: records the timer, burns CPU, and
    /// writes to Kafka where the real service would. `from_network` is false for the traffic
    /// generator, which cannot reach a service whose server does not listen. Returns the
    /// status and JSON body, or `None` when the service has no reachable pod.
    pub fn perform(&self, action: Action, from_network: bool) -> Option<(u16, String)> {
        let service = action.service();
        let app = self.apps.get(service)?;
        if !from_network && !self.reachable.contains(service) {
            return None;
        }
        let (lo, hi, cpu) = match action {
            Action::Login { .. } => (0.08, 0.16, 0.12),
            Action::PlaceOrder => (0.02, 0.06, 0.03),
            Action::CompleteOrder(_) => (0.03, 0.09, 0.15),
            _ => (0.004, 0.02, 0.006),
        };
        let seconds = self.rand(lo, hi);
        let (status, body) = match action {
            Action::Login { ok: true } => (
                200,
                r#"{"accessToken":"<redacted>","tokenType":"Bearer"}"#.to_string(),
            ),
            Action::Login { ok: false } => (
                401,
                r#"{"code":"INVALID_CREDENTIALS","message":"Invalid username or password"}"#
                    .to_string(),
            ),
            Action::GetUser(id) => (200, format!(r#"{{"id":{id},"username":"user{id}"}}"#)),
            Action::PlaceOrder => {
                let mut k = lock(&self.kafka);
                k.next_order += 1;
                let id = k.next_order;
                let sent = k.produce(ORDER_TOPIC, id);
                if let Some(p) = sent
                    && self.apps.contains_key("delivery-service")
                {
                    let due = Instant::now() + Duration::from_secs_f64(self.rand(1.0, 2.0));
                    k.pending.push(Delivery {
                        due,
                        group: DELIVERY_GROUP,
                        topic: ORDER_TOPIC,
                        partition: p,
                        consumer: "delivery-service",
                    });
                }
                drop(k);
                let result = if sent.is_some() { "success" } else { "failure" };
                app.record_kafka_send(result, self.rand(0.002, 0.01));
                (200, format!(r#"{{"orderId":{id},"status":"CREATED"}}"#))
            }
            Action::GetOrder(id) => (200, format!(r#"{{"orderId":{id},"status":"DELIVERING"}}"#)),
            Action::GetDelivery(id) => (
                200,
                format!(r#"{{"deliveryId":{id},"status":"IN_PROGRESS"}}"#),
            ),
            Action::CompleteOrder(id) => {
                let mut k = lock(&self.kafka);
                let sent = k.produce(DELIVERY_TOPIC, id);
                if let Some(p) = sent
                    && self.apps.contains_key("order-service")
                {
                    let due = Instant::now() + Duration::from_secs_f64(self.rand(0.3, 0.8));
                    k.pending.push(Delivery {
                        due,
                        group: ORDER_GROUP,
                        topic: DELIVERY_TOPIC,
                        partition: p,
                        consumer: "order-service",
                    });
                }
                drop(k);
                app.record_kafka_send(
                    if sent.is_some() { "success" } else { "failure" },
                    self.rand(0.002, 0.01),
                );
                (200, format!(r#"{{"orderId":{id},"status":"COMPLETED"}}"#))
            }
            Action::OrderStatus(id) => {
                (200, format!(r#"{{"orderId":{id},"status":"DELIVERING"}}"#))
            }
        };
        app.record_http(
            action.method(),
            action.uri(self.uri_mismatch),
            status,
            "none",
            seconds,
        );
        app.work(cpu, 1);
        Some((status, body))
    }

    /// Lets the consumers take the messages whose time has come (1-2 s after an order).
    pub fn run_consumers(&self) {
        let consumers = lock(&self.kafka).consume_due(Instant::now());
        for c in consumers {
            if let Some(app) = self.apps.get(c) {
                app.record_kafka_receive(self.rand(0.01, 0.04));
                app.work(0.05, 1);
            }
        }
    }

    /// The kubelet's `/metrics/cadvisor`: CPU and memory of every container, of each pod's
    /// sandbox (pause) container, of each pod's cgroup (`container=""`, `image=""`) and of the
    /// node's root cgroup.
    pub fn cadvisor_metrics(&self) -> String {
        let mut e = Expo::default();
        let mut cpu_rows: Vec<(Vec<(String, String)>, f64)> = Vec::new();
        let mut mem_rows: Vec<(Vec<(String, String)>, f64)> = Vec::new();
        let mut total = 0.0;
        for pm in &self.pods {
            let p = &pm.plan;
            let cgroup = format!("/kubepods/besteffort/pod{}", p.uid);
            let mut pod_total = 0.0;
            let mut pod_mem = 0.0;
            let labels = |container: &str, id: String, image: &str, name: &str| {
                vec![
                    ("container".to_string(), container.to_string()),
                    ("cpu".to_string(), "total".to_string()),
                    ("id".to_string(), id),
                    ("image".to_string(), image.to_string()),
                    ("name".to_string(), name.to_string()),
                    ("namespace".to_string(), p.namespace.clone()),
                    ("pod".to_string(), p.name.clone()),
                ]
            };
            for (i, (c, m)) in p.containers.iter().zip(&pm.containers).enumerate() {
                let secs = m.seconds();
                pod_total += secs;
                let l = labels(
                    &c.name,
                    format!("{cgroup}/{}", c.container_id),
                    &c.image,
                    &c.container_id,
                );
                cpu_rows.push((l.clone(), secs));
                let mem = match (i, p.role) {
                    (0, PodRole::SpringBoot) => 3.1e8 + (secs * 1.7e5) % 4.0e7,
                    (0, PodRole::KafkaExporter) => 1.8e7,
                    (0, PodRole::Passive) => 2.6e8,
                    _ => 4.2e7,
                };
                pod_mem += mem;
                mem_rows.push((without_cpu(l), mem.round()));
            }
            let pause = pm.pause.seconds();
            pod_total += pause;
            let l = labels(
                "POD",
                format!("{cgroup}/{}", p.pause_id),
                "registry.k8s.io/pause:3.9",
                &p.pause_id,
            );
            cpu_rows.push((l.clone(), pause));
            mem_rows.push((without_cpu(l), 249_856.0));
            pod_mem += 249_856.0;
            cpu_rows.push((labels("", cgroup.clone(), "", ""), pod_total));
            mem_rows.push((without_cpu(labels("", cgroup, "", "")), pod_mem.round()));
            total += pod_total;
        }
        let root = |with_cpu: bool| {
            let mut l = vec![
                ("container".to_string(), String::new()),
                ("id".to_string(), "/".to_string()),
                ("image".to_string(), String::new()),
                ("name".to_string(), String::new()),
                ("namespace".to_string(), String::new()),
                ("pod".to_string(), String::new()),
            ];
            if with_cpu {
                l.push(("cpu".to_string(), "total".to_string()));
            }
            l
        };
        cpu_rows.push((root(true), total + 412.5));
        e.family(
            "container_cpu_usage_seconds_total",
            "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
            "counter",
        );
        for (l, v) in &cpu_rows {
            let refs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            e.sample("container_cpu_usage_seconds_total", &refs, &go_value(*v));
        }
        e.family(
            "container_memory_working_set_bytes",
            "[STABLE] Current working set of the container in bytes",
            "gauge",
        );
        for (l, v) in &mem_rows {
            let refs: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            e.sample("container_memory_working_set_bytes", &refs, &go_value(*v));
        }
        e.finish()
    }
}

fn without_cpu(l: Vec<(String, String)>) -> Vec<(String, String)> {
    l.into_iter().filter(|(k, _)| k != "cpu").collect()
}

/// What [`start`] leaves running.
#[derive(Debug)]
pub struct Running {
    /// The shared state behind every server.
    pub workloads: Arc<Workloads>,
    /// The server and generator tasks.
    pub tasks: Vec<JoinHandle<()>>,
    /// The kubelet's cAdvisor address (`None` under `no-cadvisor`).
    pub cadvisor: Option<SocketAddr>,
}

/// Binds every pod server (and the kubelet's cAdvisor on `node_ip`) first, then starts them
/// and the traffic generator. Fails, binding nothing, if one address is taken.
pub async fn start(
    plans: &[PodPlan],
    node_ip: Ipv4Addr,
    faults: &FaultSet,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Running> {
    let workloads = Arc::new(Workloads::new(plans, faults));
    let latency = faults.has(Fault::Latency50ms);
    let mut bound = Vec::new();
    for plan in plans {
        if !plan.listening || plan.role == PodRole::Passive {
            continue;
        }
        let listener = TcpListener::bind((plan.ip, plan.port)).await?;
        bound.push((plan.clone(), listener));
    }
    let kubelet = if faults.has(Fault::NoCadvisor) {
        None
    } else {
        Some(TcpListener::bind((node_ip, KUBELET_PORT)).await?)
    };
    let cadvisor = match &kubelet {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };

    let mut tasks = Vec::new();
    for (plan, listener) in bound {
        let router = match plan.role {
            PodRole::SpringBoot => {
                Router::new()
                    .fallback(spring_boot)
                    .with_state(Arc::new(PodServer {
                        workloads: workloads.clone(),
                        service: plan.deployment.clone(),
                        deny_actuator: faults.has(Fault::Scrape401)
                            && plan.deployment == "user-service",
                    }))
            }
            PodRole::KafkaExporter => Router::new()
                .fallback(kafka_exporter)
                .with_state(workloads.clone()),
            PodRole::Passive => continue,
        };
        tasks.push(serve(listener, router, shutdown.clone(), latency));
    }
    if let Some(listener) = kubelet {
        let router = Router::new()
            .fallback(kubelet_handler)
            .with_state(workloads.clone());
        tasks.push(serve(listener, router, shutdown.clone(), latency));
    }
    tasks.push(tokio::spawn(traffic(
        workloads.clone(),
        !faults.has(Fault::NoTraffic),
        shutdown,
    )));
    Ok(Running {
        workloads,
        tasks,
        cadvisor,
    })
}

/// Serves `router` on `listener` until `shutdown` turns true (or its sender is gone), then
/// stops accepting and closes idle connections.
pub(crate) fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: watch::Receiver<bool>,
    latency: bool,
) -> JoinHandle<()> {
    let router = if latency {
        router.layer(axum::middleware::from_fn(delay))
    } else {
        router
    };
    tokio::spawn(async move {
        let mut rx = shutdown;
        let signal = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await;
    })
}

/// The `latency-50ms` fault: every answer waits 50 ms.
async fn delay(req: Request, next: Next) -> Response {
    tokio::time::sleep(FAULT_LATENCY).await;
    next.run(req).await
}

/// The kubelet's health port (10248): `ok` on `/healthz`.
pub(crate) fn kubelet_healthz_router() -> Router {
    Router::new().fallback(|req: Request| async move {
        if req.uri().path() == "/healthz" {
            (StatusCode::OK, "ok").into_response()
        } else {
            go_not_found()
        }
    })
}

fn go_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

struct PodServer {
    workloads: Arc<Workloads>,
    service: String,
    deny_actuator: bool,
}

fn json_response(status: u16, content_type: &'static str, body: String) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Spring Boot's error body (`/error` for a non-browser client).
fn spring_error(status: u16, error: &str, path: &str) -> String {
    let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let ts = ts.trim_end_matches('Z').to_string() + "+00:00";
    serde_json::json!({"timestamp": ts, "status": status, "error": error, "path": path}).to_string()
}

/// A Spring Boot service's embedded server.
async fn spring_boot(State(srv): State<Arc<PodServer>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(app) = srv.workloads.app(&srv.service) else {
        return go_not_found();
    };
    let elapsed = |extra: f64| started.elapsed().as_secs_f64() + extra;
    if srv.deny_actuator && (path == "/actuator" || path.starts_with("/actuator/")) {
        // Spring Security's HTTP Basic entry point, before any handler is chosen.
        app.record_http(method.as_str(), "UNKNOWN", 401, "none", elapsed(0.0012));
        let mut resp = json_response(
            401,
            "application/json",
            spring_error(401, "Unauthorized", &path),
        );
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Realm\""),
        );
        return resp;
    }
    if method == Method::GET && path == "/actuator/prometheus" {
        let body = app.render();
        // Micrometer records the scrape when its response completes: it shows in the next one.
        app.record_http("GET", "/actuator/prometheus", 200, "none", elapsed(0.0035));
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
            body,
        )
            .into_response();
    }
    if method == Method::GET
        && (path == "/actuator/health"
            || path == "/actuator/health/liveness"
            || path == "/actuator/health/readiness")
    {
        let uri = if path == "/actuator/health" {
            "/actuator/health"
        } else {
            "/actuator/health/{*path}"
        };
        app.record_http("GET", uri, 200, "none", elapsed(0.002));
        return json_response(
            200,
            "application/vnd.spring-boot.actuator.v3+json",
            r#"{"status":"UP"}"#.to_string(),
        );
    }
    if method == Method::GET && path == "/actuator" {
        app.record_http("GET", "/actuator", 200, "none", elapsed(0.002));
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let link =
            |p: &str| serde_json::json!({"href": format!("http://{host}{p}"), "templated": false});
        let body = serde_json::json!({"_links": {
            "self": link("/actuator"),
            "health": link("/actuator/health"),
            "prometheus": link("/actuator/prometheus"),
        }});
        return json_response(
            200,
            "application/vnd.spring-boot.actuator.v3+json",
            body.to_string(),
        );
    }
    if let Some(action) = Action::parse(&srv.service, &method, &path, srv.workloads.uri_mismatch)
        && let Some((status, body)) = srv.workloads.perform(action, true)
    {
        return json_response(status, "application/json", body);
    }
    // No handler: Spring MVC's resource handler ("/**") answers 404 (Spring Boot 3.2+).
    app.record_http(
        method.as_str(),
        "/**",
        404,
        "NoResourceFoundException",
        elapsed(0.0021),
    );
    json_response(
        404,
        "application/json",
        spring_error(404, "Not Found", &path),
    )
}

/// danielqsj/kafka-exporter: `/metrics`, and its landing page on every other path.
async fn kafka_exporter(State(w): State<Arc<Workloads>>, req: Request) -> Response {
    if req.uri().path() == "/metrics" {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, GO_METRICS_CONTENT_TYPE)],
            w.kafka_metrics(),
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html>\n<head><title>Kafka Exporter</title></head>\n<body>\n<h1>Kafka Exporter</h1>\n<p><a href='/metrics'>Metrics</a></p>\n</body>\n</html>\n",
    )
        .into_response()
}

/// The kubelet on port 10250 (plain HTTP here): cAdvisor's metrics and `/healthz`.
async fn kubelet_handler(State(w): State<Arc<Workloads>>, req: Request) -> Response {
    match req.uri().path() {
        "/metrics/cadvisor" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, GO_METRICS_CONTENT_TYPE)],
            w.cadvisor_metrics(),
        )
            .into_response(),
        "/healthz" => (StatusCode::OK, "ok").into_response(),
        _ => go_not_found(),
    }
}

/// The generator's period between scenario rounds.
const ROUND: Duration = Duration::from_secs(20);

/// Plays the guide's scenarios in a loop (when `traffic`), and always lets Kafka consumers
/// take their messages. Every reachable service gets a request at least every ~2 s.
async fn traffic(w: Arc<Workloads>, traffic: bool, mut shutdown: watch::Receiver<bool>) {
    let services = [
        "user-service",
        "order-service",
        "delivery-service",
        "orchestrator-service",
    ];
    let start = Instant::now();
    let mut next_bg: Vec<Instant> = services.iter().map(|_| start).collect();
    // Scenario steps within a round: five quick logins, an order, the delivery completion.
    let script: [(f64, u8); 7] = [
        (0.5, 0),
        (0.65, 0),
        (0.8, 0),
        (0.95, 0),
        (1.1, 0),
        (3.0, 1),
        (8.0, 2),
    ];
    let mut round_start = start;
    let mut step = 0usize;
    let mut logins = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        w.run_consumers();
        if !traffic {
            continue;
        }
        let now = Instant::now();
        let last_order = lock(&w.kafka).next_order;
        for (i, service) in services.iter().enumerate() {
            if now < next_bg[i] {
                continue;
            }
            next_bg[i] = now + Duration::from_secs_f64(w.rand(0.7, 1.7));
            let roll = w.rand(0.0, 1.0);
            let pick = (w.rand(0.0, 40.0)) as u64;
            // A steady main request per service (orders keep panel 1 moving), and now and
            // then a second one.
            let (main, extra) = match *service {
                "user-service" => (
                    Action::GetUser(100 + pick),
                    (roll < 0.25).then(|| {
                        logins += 1;
                        Action::Login {
                            ok: !logins.is_multiple_of(9),
                        }
                    }),
                ),
                "order-service" => (
                    Action::PlaceOrder,
                    (roll < 0.4).then(|| Action::GetOrder(last_order.saturating_sub(pick))),
                ),
                "delivery-service" => (Action::GetDelivery(2100 + pick), None),
                _ => (
                    Action::OrderStatus(last_order.saturating_sub(pick)),
                    (roll < 0.15)
                        .then(|| Action::CompleteOrder(last_order.saturating_sub(3 + pick))),
                ),
            };
            let _ = w.perform(main, false);
            if let Some(action) = extra {
                let _ = w.perform(action, false);
            }
        }
        let in_round = now.saturating_duration_since(round_start).as_secs_f64();
        while step < script.len() && in_round >= script[step].0 {
            let action = match script[step].1 {
                0 => Action::Login { ok: true },
                1 => Action::PlaceOrder,
                _ => Action::CompleteOrder(lock(&w.kafka).next_order),
            };
            let _ = w.perform(action, false);
            step += 1;
        }
        if now.saturating_duration_since(round_start) >= ROUND {
            round_start = now;
            step = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_doubles_look_like_micrometer() {
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(8377.0), "8377.0");
        assert_eq!(java_double(6291456.0), "6291456.0");
        assert_eq!(java_double(1.5906816e7), "1.5906816E7");
        assert_eq!(java_double(4.294967296e9), "4.294967296E9");
        assert_eq!(java_double(-1.0), "-1.0");
        assert_eq!(java_double(0.047479458), "0.047479458");
        assert_eq!(java_double(1.2664825893213033e-4), "1.2664825893213033E-4");
        assert_eq!(java_double(4e9), "4.0E9");
    }

    #[test]
    fn go_values_look_like_the_go_client() {
        assert_eq!(go_value(3.0), "3");
        assert_eq!(go_value(12.25), "12.25");
        assert_eq!(go_value(7e-9), "7e-09");
        assert_eq!(go_value(1.5e22), "1.5e+22");
    }

    #[test]
    fn window_max_decays_after_three_rotations() {
        let t0 = Instant::now();
        let mut m = WindowMax::new(t0);
        m.record(0.5, t0);
        assert_eq!(m.poll(t0 + Duration::from_secs(50)), 0.5);
        assert_eq!(m.poll(t0 + Duration::from_secs(90)), 0.5);
        assert_eq!(m.poll(t0 + Duration::from_secs(125)), 0.0);
    }

    #[test]
    fn series_appear_with_their_first_request() {
        let app = ServiceApp::new("order-service", Arc::new(CpuMeter::new(0.01, 1.0)));
        let first = app.render();
        assert!(!first.contains("http_server_requests_seconds_count"));
        assert!(first.contains(
            r#"jvm_memory_used_bytes{application="order-service",area="heap",id="G1 Eden Space"}"#
        ));
        app.record_http("POST", "/api/orders", 200, "none", 0.03);
        app.record_http("POST", "/api/orders", 200, "none", 0.05);
        let second = app.render();
        assert!(second.contains(
            r#"http_server_requests_seconds_count{application="order-service",error="none",exception="none",method="POST",outcome="SUCCESS",status="200",uri="/api/orders"} 2"#
        ), "{second}");
        assert!(
            second.contains(r#"uri="/api/orders"} 0.05"#),
            "max is shown: {second}"
        );
    }

    #[test]
    fn actions_parse_from_real_requests() {
        assert_eq!(
            Action::parse("order-service", &Method::POST, "/api/orders", false),
            Some(Action::PlaceOrder)
        );
        assert_eq!(
            Action::parse("order-service", &Method::POST, "/api/orders", true),
            None
        );
        assert_eq!(
            Action::parse("order-service", &Method::GET, "/orders/12", true),
            Some(Action::GetOrder(12))
        );
        assert_eq!(
            Action::parse(
                "orchestrator-service",
                &Method::PUT,
                "/api/orders/7/complete",
                false
            ),
            Some(Action::CompleteOrder(7))
        );
        assert_eq!(
            Action::parse("user-service", &Method::GET, "/login", false),
            None
        );
    }

    #[test]
    fn an_order_raises_lag_until_the_consumer_takes_it() {
        let mut k = KafkaState::new(false);
        assert_eq!(k.lag(DELIVERY_GROUP, ORDER_TOPIC), 0);
        let p = k.produce(ORDER_TOPIC, 3851);
        assert!(p.is_some());
        k.pending.push(Delivery {
            due: Instant::now(),
            group: DELIVERY_GROUP,
            topic: ORDER_TOPIC,
            partition: p.unwrap_or(0),
            consumer: "delivery-service",
        });
        assert_eq!(k.lag(DELIVERY_GROUP, ORDER_TOPIC), 1);
        assert!(k.render().contains(r#"kafka_consumergroup_lag_sum{consumergroup="delivery-service-group",topic="order-created"} 1"#));
        assert_eq!(k.consume_due(Instant::now()), vec!["delivery-service"]);
        assert_eq!(k.lag(DELIVERY_GROUP, ORDER_TOPIC), 0);
    }

    #[test]
    fn a_missing_topic_has_no_series() {
        let k = KafkaState::new(true);
        let body = k.render();
        assert!(!body.contains("order-created"), "{body}");
        assert!(body.contains(r#"kafka_topic_partitions{topic="delivery-completed"} 3"#));
    }
}
