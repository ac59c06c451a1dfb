//! The practice stack as a whole: a real Prometheus (and VictoriaMetrics) scrapes the emulated
//! pods, two stacks run side by side, nothing outlives a stack, a missing Prometheus is a clear
//! error, and `msa-doctor demo` runs end to end. The tests run concurrently (each stack has its
//! own ports and its own database).
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::cli::Backend;
use msa_doctor::sandbox::faults::{Fault, FaultSet};
use msa_doctor::sandbox::prom::{self, TsdbOptions};
use msa_doctor::sandbox::stack::{Stack, StackOptions, start_for_test, start_for_test_with};
use serde_json::Value;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn query(url: &str, q: &str) -> Vec<Value> {
    let v: Value = client()
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{q}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls a query until it returns series, up to a deadline.
async fn query_until(url: &str, q: &str, within: Duration) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let r = query(url, q).await;
        if !r.is_empty() || t.elapsed() > within {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

async fn assert_scrapes(stack: &Stack) {
    // Every service is an up target (VictoriaMetrics may show a new series a few seconds late).
    let t = Instant::now();
    let mut apps: Vec<String>;
    loop {
        let up = query(&stack.prometheus_url, "up{job=\"kubernetes-pods\"} == 1").await;
        apps = up
            .iter()
            .filter_map(|s| s["metric"]["app"].as_str().map(String::from))
            .collect();
        apps.sort();
        apps.dedup();
        let all = msa_doctor::settings::DEFAULT_SERVICES
            .iter()
            .all(|svc| apps.iter().any(|a| a == svc));
        if all || t.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{:?}: every service up in queries {:.1}s after the stack was ready",
        stack.backend,
        t.elapsed().as_secs_f64()
    );
    for svc in msa_doctor::settings::DEFAULT_SERVICES {
        assert!(
            apps.iter().any(|a| a == svc),
            "{svc} is not an up target: {apps:?}"
        );
    }
    let reqs = query_until(
        &stack.prometheus_url,
        "http_server_requests_seconds_count",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !reqs.is_empty(),
        "no http_server_requests_seconds_count scraped"
    );
    let s = &reqs[0]["metric"];
    assert_eq!(s["job"], "kubernetes-pods");
    assert_eq!(s["namespace"], "metacoding");
    assert!(s["pod"].as_str().is_some_and(|p| !p.is_empty()), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_emulated_pods() {
    let stack = start_for_test(&[]).await;
    eprintln!(
        "prometheus: stack up in {:.2}s, first scrape after {:.2}s",
        stack.startup.as_secs_f64(),
        stack.time_to_first_scrape.as_secs_f64()
    );
    assert_scrapes(&stack).await;
    // Expected about 5.5 s (Prometheus' discovery manager batches updates every 5 s); loose
    // bound for loaded CI machines.
    assert!(
        stack.time_to_first_scrape < Duration::from_secs(15),
        "{:?}",
        stack.time_to_first_scrape
    );
    // Grafana answers, and its data source points at this Prometheus.
    let health = client()
        .get(format!("{}/api/health", stack.grafana_url))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_metrics_scrapes_the_emulated_pods() {
    let stack = start_for_test_with(&[], Backend::VictoriaMetrics).await;
    eprintln!(
        "victoria-metrics: stack up in {:.2}s, first scrape after {:.2}s",
        stack.startup.as_secs_f64(),
        stack.time_to_first_scrape.as_secs_f64()
    );
    assert_scrapes(&stack).await;
    // Expected well under 2 s (a Kubernetes watch, no batching).
    assert!(
        stack.time_to_first_scrape < Duration::from_secs(15),
        "{:?}",
        stack.time_to_first_scrape
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_side_by_side() {
    let (a, b) = tokio::join!(start_for_test(&[]), start_for_test(&[Fault::NoAnnotation]));
    assert_ne!(a.prometheus_url, b.prometheus_url);
    assert_ne!(a.grafana_url, b.grafana_url);
    assert_ne!(a.kube_url, b.kube_url);
    assert_ne!(a.prometheus_pid, b.prometheus_pid);
    assert_scrapes(&a).await;
    // Each Prometheus scrapes only its own pods.
    let inst = |v: &[Value]| -> Vec<String> {
        let mut i: Vec<String> = v
            .iter()
            .filter_map(|s| s["metric"]["instance"].as_str().map(String::from))
            .collect();
        i.sort();
        i
    };
    let ua = inst(&query(&a.prometheus_url, "up{job=\"kubernetes-pods\"}").await);
    let ub = inst(
        &query_until(
            &b.prometheus_url,
            "up{job=\"kubernetes-pods\"}",
            Duration::from_secs(5),
        )
        .await,
    );
    assert!(!ub.is_empty());
    assert!(
        ua.iter().all(|i| !ub.contains(i)),
        "shared targets: {ua:?} / {ub:?}"
    );
    // b's order-service is not scraped, a's is.
    assert!(
        !query(&a.prometheus_url, "up{app=\"order-service\"}")
            .await
            .is_empty()
    );
    assert!(
        query(&b.prometheus_url, "up{app=\"order-service\"}")
            .await
            .is_empty()
    );
    tokio::join!(a.shutdown(), b.shutdown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_process_outlives_its_stack() {
    // Orderly shutdown.
    let stack = start_for_test(&[]).await;
    let pid = stack.prometheus_pid;
    let dir = stack.prometheus_dir().unwrap();
    assert!(pid_alive(pid) && dir.exists());
    let grafana = stack.grafana_url.clone();
    stack.shutdown().await;
    assert!(!pid_alive(pid), "prometheus {pid} outlived shutdown");
    assert!(!dir.exists(), "{} outlived shutdown", dir.display());
    assert!(
        client()
            .get(format!("{grafana}/api/health"))
            .send()
            .await
            .is_err(),
        "Grafana still answers"
    );

    // Dropped without shutdown (a panic unwinding, an early return): killed all the same.
    let stack = start_for_test_with(&[], Backend::VictoriaMetrics).await;
    let pid = stack.prometheus_pid;
    let dir = stack.prometheus_dir().unwrap();
    drop(stack);
    let t = Instant::now();
    while pid_alive(pid) && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !pid_alive(pid),
        "victoria-metrics {pid} outlived its dropped stack"
    );
    assert!(
        !dir.exists(),
        "{} outlived its dropped stack",
        dir.display()
    );
}

#[tokio::test]
async fn a_missing_prometheus_is_a_clear_error() {
    let e = Stack::start(StackOptions {
        faults: FaultSet::healthy(),
        backend: Backend::Prometheus,
        prometheus_bin: Some("/nonexistent/prometheus".into()),
    })
    .await
    .unwrap_err();
    assert!(e.is_not_installed(), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("apt-get update && apt-get install -y --no-install-recommends prometheus"),
        "{msg}"
    );
    // Not on PATH either.
    let e = prom::find_binary_in(
        None,
        "prometheus",
        prom::PROMETHEUS_INSTALL,
        Some(std::ffi::OsStr::new("/nonexistent")),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not on PATH"), "{e}");

    // The command: exit 2, the install line on stderr, nothing on stdout.
    let out = assert_cmd::Command::cargo_bin("msa-doctor")
        .unwrap()
        .args(["demo", "--prometheus-bin", "/nonexistent/prometheus"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("apt-get install -y --no-install-recommends prometheus"),
        "{err}"
    );
}

#[test]
fn the_generated_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let variants: Vec<(Backend, Vec<Fault>, Vec<String>)> = vec![
        (Backend::Prometheus, vec![], vec!["127.0.3.1:10250".into()]),
        (
            Backend::Prometheus,
            vec![Fault::LabelCollision, Fault::SlowScrape],
            vec![],
        ),
        (
            Backend::VictoriaMetrics,
            vec![],
            vec!["127.0.3.1:10250".into()],
        ),
        (
            Backend::VictoriaMetrics,
            vec![Fault::LabelCollision, Fault::SlowScrape],
            vec![],
        ),
    ];
    for (i, (backend, faults, cadvisor)) in variants.into_iter().enumerate() {
        let text = prom::scrape_config(&TsdbOptions {
            backend,
            binary: None,
            faults: FaultSet::of(&faults),
            sd_pods_url: "http://127.0.0.1:1/_sd/pods".into(),
            kube_url: "http://127.0.0.1:1".into(),
            namespaces: vec!["metacoding".into(), "monitoring".into()],
            app_namespace: "metacoding".into(),
            cadvisor_targets: cadvisor,
            pod_ip_prefix: [127, 0, 1],
            pods_scrape_interval: None,
        });
        let path = dir.path().join(format!("config-{i}.yml"));
        std::fs::write(&path, &text).unwrap();
        let out = match backend {
            Backend::Prometheus => StdCommand::new("promtool")
                .arg("check")
                .arg("config")
                .arg(&path)
                .output(),
            Backend::VictoriaMetrics => StdCommand::new("victoria-metrics")
                .arg(format!("-promscrape.config={}", path.display()))
                .arg("-promscrape.config.strictParse")
                .arg("-promscrape.config.dryRun")
                .output(),
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{backend:?} {faults:?} rejected:\n{text}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn demo_lists_faults_and_refuses_unknown_ones() {
    let out = assert_cmd::Command::cargo_bin("msa-doctor")
        .unwrap()
        .args(["demo", "--list-faults"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for f in Fault::ALL {
        assert!(
            text.lines()
                .any(|l| l.starts_with(f.name()) && l.contains(f.describe())),
            "{} missing from:\n{text}",
            f.name()
        );
    }
    let out = assert_cmd::Command::cargo_bin("msa-doctor")
        .unwrap()
        .args(["demo", "--fault", "no-such-fault"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-fault") && err.contains("stale-data"),
        "{err}"
    );
}

/// The children of a process, from /proc/*/stat.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_checklist_and_cleans_up() {
    let out = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("msa-doctor"))
        .args(["demo", "--output", "json", "--fault", "wrong-path"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("practice stack up in") && err.contains("faults: wrong-path"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{err}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(report["schema"], "msa-doctor/v1");
    let code = out.status.code();
    assert!(matches!(code, Some(0 | 1 | 3)), "exit {code:?}: {err}");
    // The exit code is the checklist's.
    let s = &report["summary"];
    let expected = if s["fail"].as_u64() > Some(0) {
        1
    } else if s["error"].as_u64() > Some(0) {
        3
    } else {
        0
    };
    assert_eq!(code, Some(expected), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_running_prints_shell_lines_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("msa-doctor"))
        .args(["demo", "--keep-running", "--fault", "password-changed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = Vec::new();
    let t = Instant::now();
    while exports.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("no shell lines within 60s")
            .unwrap()
            .expect("stdout closed before the shell lines");
        if line.starts_with("export ") {
            exports.push(line);
        }
    }
    eprintln!(
        "keep-running: shell lines after {:.1}s: {exports:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        exports
            .iter()
            .any(|l| l.starts_with("export MSA_DOCTOR_GRAFANA_URL='http://127.0.0.1:"))
    );
    assert!(exports.iter().any(|l| l.starts_with("export KUBECONFIG=")));
    let kids = children_of(pid);
    let prom: Vec<&(u32, String)> = kids
        .iter()
        .filter(|(_, c)| c.contains("prometheus"))
        .collect();
    assert_eq!(prom.len(), 1, "{kids:?}");
    let (prom_pid, cmdline) = prom[0].clone();
    let config = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--config.file="))
        .unwrap()
        .to_string();
    assert!(Path::new(&config).exists());

    StdCommand::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = e.read_to_string(&mut err).await;
    }
    assert!(!err.contains("s3cure-pass"), "a secret on stderr: {err}");
    assert!(!pid_alive(prom_pid), "prometheus outlived the demo");
    assert!(!Path::new(&config).exists(), "{config} outlived the demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_run_stops_everything() {
    use tokio::io::AsyncBufReadExt;
    // grafana-hangs keeps the checklist busy for a check's whole timeout (5 s): time to interrupt.
    let mut child = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("msa-doctor"))
        .args(["demo", "--fault", "grafana-hangs"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the stack did not come up within 60s")
            .unwrap()
            .expect("stderr closed before the stack came up");
        if line.starts_with("data ") {
            break;
        }
    }
    let kids = children_of(pid);
    let (prom_pid, cmdline) = kids
        .iter()
        .find(|(_, c)| c.contains("prometheus"))
        .cloned()
        .unwrap_or_else(|| panic!("no prometheus child: {kids:?}"));
    let config = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("--config.file="))
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    StdCommand::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    while let Ok(Ok(Some(l))) =
        tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await
    {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("SIGINT"), "{rest}");
    assert!(
        !pid_alive(prom_pid),
        "prometheus outlived the interrupted demo"
    );
    assert!(
        !Path::new(&config).exists(),
        "{config} outlived the interrupted demo"
    );
}
