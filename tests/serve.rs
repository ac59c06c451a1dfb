//! The metrics of CONTRACT v1.1 end to end: `check --output prometheus` passes Debian's
//! `promtool check metrics`, and `msa-doctor serve` against the practice stack is scraped by a
//! real Prometheus (static_configs, its own port) in which `msa_doctor_check_status` then
//! appears, with the practice stack's checks passing. `serve` stops cleanly on SIGTERM.
// The practice stack runs Prometheus and manages process groups: Unix only.
#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::cli::Backend;
use msa_doctor::sandbox::stack::start_for_test;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PROMTOOL: &str = "/usr/bin/promtool";

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("msa-doctor")
}

/// `promtool check metrics` over `text`: its exit status and what it said.
fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{PROMTOOL} did not start ({e}): apt-get install -y prometheus")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills a child on drop, so that a failing assertion leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn promtool_rejects_a_broken_exposition() {
    // The check below can fail: promtool is strict about what it reads.
    let (ok, said) = promtool("# TYPE x gauge\nx{a=\"1\"} 1\nx{a=\"1\"} 2\nnot a line\n");
    assert!(!ok, "promtool accepted garbage: {said}");
}

#[test]
fn check_output_prometheus_passes_promtool() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens at this Grafana: every status but pass shows up (fail, skip).
    let grafana = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(bin())
        .args(["check", "--no-kube", "--timeout", "2s", "-o", "prometheus"])
        .args(["--grafana-url", &grafana])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG")
        .env_remove("GRAFANA_PASSWORD")
        .env_remove("GRAFANA_TOKEN")
        .current_dir(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "access.grafana fails");
    let text = String::from_utf8(out.stdout).unwrap();
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool check metrics refused it: {said}\n{text}");
    // One series per status for each check, exactly one of them 1.
    let access: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("msa_doctor_check_status{id=\"access.grafana\""))
        .collect();
    assert_eq!(access.len(), 5, "{access:?}");
    assert!(access.contains(
        &"msa_doctor_check_status{id=\"access.grafana\",category=\"access\",status=\"fail\"} 1"
    ));
    assert_eq!(access.iter().filter(|l| l.ends_with(" 1")).count(), 1);
    for family in [
        "msa_doctor_check_duration_seconds{id=\"access.grafana\"} ",
        "msa_doctor_run_duration_seconds ",
        "msa_doctor_last_run_timestamp_seconds ",
        "msa_doctor_build_info{version=\"",
    ] {
        assert!(text.contains(family), "no {family} in\n{text}");
    }
}

async fn query(prom: &str, q: &str) -> Vec<Value> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let Ok(resp) = client
        .get(format!("{prom}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
    else {
        return vec![];
    };
    let v: Value = resp.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_scraped_by_a_real_prometheus() {
    let stack = start_for_test(&[]).await;
    let t0 = Instant::now();
    let mut serve = Reaped(
        Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--interval", "2s"])
            .args(["--grafana-url", &stack.grafana_url])
            .args(["--grafana-user", &stack.doctor_user])
            .arg("--grafana-password-file")
            .arg(&stack.grafana_password_file)
            .arg("--kubeconfig")
            .arg(&stack.kubeconfig_path)
            .env_remove("KUBECONFIG")
            .env_remove("GRAFANA_PASSWORD")
            .env_remove("GRAFANA_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The first line says where it listens (port 0: the system chose).
    let mut lines = BufReader::new(serve.0.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    // Keep reading stderr (one line per run) so the pipe never fills.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });

    // /metrics answers 503 until the first run ends, then the exposition; /healthz is 200.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let body = loop {
        let r = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
            break r.text().await.unwrap();
        }
        assert_eq!(r.status().as_u16(), 503);
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no run ended in 60s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (ok, said) = promtool(&body);
    assert!(ok, "promtool refused serve's /metrics: {said}\n{body}");
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(health.text().await.unwrap().starts_with("ok: "));

    // A real Prometheus, configured as a user would, scrapes it.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: msa-doctor\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let prometheus_bin =
        msa_doctor::sandbox::prom::find_binary(None, Backend::Prometheus).expect("prometheus");
    let _prometheus = Reaped(
        Command::new(prometheus_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    let series = loop {
        let s = query(
            &prom,
            "msa_doctor_check_status{job=\"msa-doctor\",status=\"pass\"} == 1",
        )
        .await;
        if s.iter().any(|s| s["metric"]["id"] == "panel.orders")
            || t.elapsed() > Duration::from_secs(45)
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let passing: Vec<&str> = series
        .iter()
        .filter_map(|s| s["metric"]["id"].as_str())
        .collect();
    eprintln!(
        "prometheus found {} passing checks {:.1}s after its start: {passing:?}",
        passing.len(),
        t.elapsed().as_secs_f64()
    );
    // The healthy practice stack: the chain from the tunnel to the guide's first panel passes.
    for id in [
        "access.grafana",
        "grafana.login",
        "prometheus.targets",
        "panel.orders",
    ] {
        assert!(
            passing.contains(&id),
            "{id} not passing in Prometheus: {passing:?}\nserve said: {:?}",
            log.lock().unwrap()
        );
    }
    let up = query(&prom, "up{job=\"msa-doctor\"} == 1").await;
    assert_eq!(up.len(), 1, "the target is up: {up:?}");
    let build = query(&prom, "msa_doctor_build_info").await;
    assert_eq!(build.len(), 1);

    // SIGTERM (a pod's stop) ends serve with 0.
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe {
        libc::kill(serve.0.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(": run ") && l.contains("passed")),
        "{:?}",
        log.lock().unwrap()
    );
    stack.shutdown().await;
}
