//! The fault matrix: a tampering proxy in front of the practice stack's Grafana (and with it
//! every Prometheus call through Grafana's data source proxy) and in front of its Kubernetes
//! API. For every distinct call the checks make and every way an answer can fail, the real
//! binary runs the checklist through the proxy, and:
//! - no check that passes without the fault `fail`s with it, except the check whose subject
//!   that very answer is (access.grafana for /api/health, ...): a failed answer is never
//!   evidence;
//! - the fault is noticed: some check ends `error` (naming the call) or its subject check
//!   fails; nothing passes on an answer it never got;
//! - the run ends within the deadline (plus the chain's few round trips) and its peak memory
//!   stays under the byte budget.

#![cfg(all(unix, feature = "sandbox"))]

mod support;

use msa_doctor::cli::Backend;
use msa_doctor::sandbox::stack::{Stack, start_for_test_with};
use msa_doctor::sandbox::warm::wait_for_data;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::tamper::{Failure, Matcher, Mode, Tamper};

/// One distinct call: where it goes, which requests it is, and the checks whose own subject
/// it is (they may fail when it fails).
struct Call {
    name: &'static str,
    side: Side,
    matcher: Matcher,
    subject: &'static [&'static str],
    /// The call is optional information (a check goes on without it, saying so).
    optional: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Grafana,
    Kube,
}

const fn m(
    path: &'static str,
    end: Option<&'static str>,
    query: Option<&'static str>,
    not_query: Option<&'static str>,
) -> Matcher {
    Matcher {
        path,
        query,
        not_query,
        end,
    }
}

fn calls() -> Vec<Call> {
    use Side::*;
    let c = |name, side, matcher, subject: &'static [&'static str], optional| Call {
        name,
        side,
        matcher,
        subject,
        optional,
    };
    vec![
        c(
            "grafana GET /api/health",
            Grafana,
            m("/api/health", Some("/api/health"), None, None),
            &["access.grafana"],
            false,
        ),
        c(
            "grafana POST /login",
            Grafana,
            m("/login", Some("/login"), None, None),
            &["grafana.login", "grafana.default-password"],
            false,
        ),
        c(
            "grafana GET /api/datasources",
            Grafana,
            m("/api/datasources", Some("/api/datasources"), None, None),
            &["grafana.datasource"],
            false,
        ),
        c(
            "grafana GET datasource health",
            Grafana,
            m("/api/datasources/uid/", Some("/health"), None, None),
            &["grafana.datasource"],
            false,
        ),
        c(
            "grafana GET /api/search",
            Grafana,
            m("/api/search", None, None, None),
            &[],
            false,
        ),
        c(
            "grafana GET /api/dashboards/uid",
            Grafana,
            m("/api/dashboards/uid/", None, None, None),
            &[],
            false,
        ),
        c(
            "prometheus query time()",
            Grafana,
            m("/proxy/", Some("/api/v1/query"), Some("query=time()"), None),
            &["prometheus.api"],
            false,
        ),
        c(
            "prometheus query (others)",
            Grafana,
            m("/proxy/", Some("/api/v1/query"), None, Some("query=time()")),
            &[],
            false,
        ),
        c(
            "prometheus query_range",
            Grafana,
            m("/proxy/", Some("/api/v1/query_range"), None, None),
            &[],
            false,
        ),
        c(
            "prometheus targets",
            Grafana,
            m("/proxy/", Some("/api/v1/targets"), None, None),
            &[],
            false,
        ),
        c(
            "prometheus series",
            Grafana,
            m("/proxy/", Some("/api/v1/series"), None, None),
            &[],
            false,
        ),
        c(
            "prometheus label values",
            Grafana,
            m("/api/v1/label/", None, None, None),
            &[],
            false,
        ),
        c(
            "prometheus metadata",
            Grafana,
            m("/proxy/", Some("/api/v1/metadata"), None, None),
            &[],
            true,
        ),
        c(
            "prometheus buildinfo",
            Grafana,
            m("/proxy/", Some("/status/buildinfo"), None, None),
            &[],
            true,
        ),
        c(
            "kube list namespaces",
            Kube,
            m("/api/v1/namespaces", Some("/api/v1/namespaces"), None, None),
            &["k8s.reachable"],
            false,
        ),
        c(
            "kube list deployments",
            Kube,
            m("/deployments", None, None, None),
            &[],
            false,
        ),
        c(
            "kube list pods",
            Kube,
            m("/pods", Some("/pods"), None, None),
            &[],
            true,
        ),
        c(
            "kube list services",
            Kube,
            m("/services", None, None, None),
            &[],
            true,
        ),
        c(
            "kube endpoints",
            Kube,
            m("/endpoints", None, None, None),
            &[],
            true,
        ),
        c(
            "kube secrets",
            Kube,
            m("/secrets", None, None, None),
            &[],
            true,
        ),
        c(
            "kube discovery",
            Kube,
            m("/apis", Some("/apis"), None, None),
            &[],
            true,
        ),
        c(
            "kube monitoring.coreos.com",
            Kube,
            m("monitoring.coreos.com", None, None, None),
            &[],
            true,
        ),
    ]
}

struct Outcome {
    statuses: BTreeMap<String, (String, String)>,
    wall: Duration,
    max_rss_kib: i64,
    code: i32,
}

const TIMEOUT_S: u64 = 2;

/// Runs the real binary against these URLs and reads its JSON report and peak memory.
fn run_binary(stack: &Stack, grafana_url: &str, kubeconfig: &std::path::Path) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_msa-doctor"))
        .args([
            "check",
            "--output",
            "json",
            "--timeout",
            &format!("{TIMEOUT_S}s"),
        ])
        .arg("--grafana-url")
        .arg(grafana_url)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("GRAFANA_USER", &stack.doctor_user)
        .env("GRAFANA_PASSWORD", stack.doctor_password.expose())
        .env_remove("GRAFANA_TOKEN")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id() as i32;
    // Read the pipes on threads, then reap the child with wait4 for its peak memory.
    let mut child = child;
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let ro = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let re = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let wall = started.elapsed();
    let stdout = ro.join().expect("stdout thread");
    let stderr = re.join().expect("stderr thread");
    let es = std::process::ExitStatus::from_raw(status);
    assert!(es.signal().is_none(), "killed by a signal: {stderr}");
    let code = es.code().unwrap_or(-1);
    assert_ne!(code, 101, "a panic: {stderr}");
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}), exit {code}: {stdout}\n{stderr}"));
    let statuses = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or("").to_string(),
                (
                    c["status"].as_str().unwrap_or("").to_string(),
                    c["message"].as_str().unwrap_or("").to_string(),
                ),
            )
        })
        .collect();
    Outcome {
        statuses,
        wall,
        max_rss_kib: usage.ru_maxrss,
        code,
    }
}

fn kubeconfig_for(
    stack: &Stack,
    kube_url: &str,
    dir: &std::path::Path,
    name: &str,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&stack.kubeconfig_path).expect("kubeconfig");
    let text = text.replace(&stack.kube_url, kube_url);
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write kubeconfig");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_times_every_failure() {
    let stack = start_for_test_with(&[], Backend::VictoriaMetrics).await;
    let (_, warm) = wait_for_data(&stack, Duration::from_secs(30)).await;
    assert!(warm, "the stack got warm");
    let dir = tempfile::tempdir().expect("tempdir");
    // Baseline through pass-through proxies.
    let g = Tamper::start(&stack.grafana_url, Mode::Pass).await;
    let k = Tamper::start(&stack.kube_url, Mode::Pass).await;
    let kc = kubeconfig_for(&stack, &k.url, dir.path(), "base");
    let stack = std::sync::Arc::new(stack);
    let base = {
        let (s, u, kc) = (stack.clone(), g.url.clone(), kc.clone());
        tokio::task::spawn_blocking(move || run_binary(&s, &u, &kc))
            .await
            .expect("run")
    };
    let good: Vec<&String> = base
        .statuses
        .iter()
        .filter(|(_, (st, _))| st == "pass" || st == "warn")
        .map(|(id, _)| id)
        .collect();
    assert!(
        base.statuses
            .get("data.traffic")
            .is_some_and(|(s, _)| s == "pass"),
        "the healthy baseline passes: {:?}",
        base.statuses
    );
    let calls = calls();
    let total = calls.len() * Failure::ALL.len();
    println!(
        "fault matrix: {} calls x {} failures = {total} runs",
        calls.len(),
        Failure::ALL.len()
    );
    let mut violations: Vec<String> = Vec::new();
    let mut max_wall = Duration::ZERO;
    let mut max_rss = 0i64;
    // A fault may cost the deadline and half a second more than the healthy run itself (a
    // debug build on a shared machine takes a while to start and run the chain).
    let limit = base.wall + Duration::from_millis(TIMEOUT_S * 1000 + 500);
    println!(
        "fault matrix: the healthy run takes {:.2}s, a faulted one may take {:.2}s",
        base.wall.as_secs_f64(),
        limit.as_secs_f64()
    );
    // Three runs at a time, each with its own proxies.
    let mut cases = Vec::new();
    for (ci, call) in calls.iter().enumerate() {
        for f in Failure::ALL {
            cases.push((ci, call, f));
        }
    }
    for batch in cases.chunks(3) {
        let mut handles = Vec::new();
        for (ci, call, f) in batch {
            let mode = Mode::Fail(call.matcher.clone(), *f);
            let (gt, kt) = match call.side {
                Side::Grafana => (
                    Tamper::start(&stack.grafana_url, mode).await,
                    Tamper::start(&stack.kube_url, Mode::Pass).await,
                ),
                Side::Kube => (
                    Tamper::start(&stack.grafana_url, Mode::Pass).await,
                    Tamper::start(&stack.kube_url, mode).await,
                ),
            };
            let kc = kubeconfig_for(&stack, &kt.url, dir.path(), &format!("kc-{ci}-{f:?}"));
            let (s, u) = (stack.clone(), gt.url.clone());
            let h = tokio::task::spawn_blocking(move || run_binary(&s, &u, &kc));
            handles.push((call, *f, gt, kt, h));
        }
        for (call, f, gt, kt, h) in handles {
            let o = h.await.expect("run");
            let hits = gt.hits() + kt.hits();
            max_wall = max_wall.max(o.wall);
            max_rss = max_rss.max(o.max_rss_kib);
            let case = format!("{} x {f:?}", call.name);
            if o.wall > limit {
                violations.push(format!("{case}: took {:?} (limit {limit:?})", o.wall));
            }
            // The run's byte budget (256 MiB of buffers, counted by capacity), the process
            // itself (~40 MiB) and one buffer's copy while it grows.
            if o.max_rss_kib > 352 * 1024 {
                violations.push(format!("{case}: peak RSS {} MiB", o.max_rss_kib / 1024));
            }
            let mut noticed = false;
            for (id, (st, msg)) in &o.statuses {
                let subject = call.subject.contains(&id.as_str());
                if st == "fail" && good.contains(&id) && !subject {
                    violations.push(format!("{case}: {id} fails with a guessed cause: {msg}"));
                }
                if st == "error" || (subject && st == "fail") {
                    noticed = true;
                }
                if st == "error" && !good.contains(&id) {
                    continue;
                }
            }
            // The login's body is not read (its cookie is the answer): a corrupted body with the
            // real headers is a working login.
            let body_unused = call.name == "grafana POST /login"
                && matches!(f, Failure::Truncated | Failure::WrongShape);
            if hits > 0 && !noticed && !call.optional && !body_unused {
                violations.push(format!(
                    "{case}: {hits} answers failed and no check noticed (exit {}): {:?}",
                    o.code,
                    o.statuses
                        .iter()
                        .filter(|(_, (s, _))| s != "pass" && s != "skip")
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    println!(
        "fault matrix: {total} runs, slowest {:.2}s (limit {:.2}s), peak RSS {} MiB",
        max_wall.as_secs_f64(),
        limit.as_secs_f64(),
        max_rss / 1024
    );
    drop(g);
    drop(k);
    if let Ok(s) = std::sync::Arc::try_unwrap(stack) {
        s.shutdown().await;
    }
    assert!(
        violations.is_empty(),
        "{} of {total} cases broke a rule:\n{}",
        violations.len(),
        violations.join("\n")
    );
}
