//! The secret canary: every command, in every output format, against servers that echo each
//! request's URL and headers back in their error bodies (Grafana, Prometheus and the
//! Kubernetes API alike), with a password, a token, a session cookie and a kube bearer token
//! that are canaries. None of them may appear on stdout or stderr.

mod support;

use std::process::Command;
use support::tamper::{Mode, Tamper};

const PASSWORD: &str = "canary-Pass-7Q2x";
const TOKEN: &str = "glsa_canaryTOKEN0123456789";
const COOKIE: &str = "canary-cookie-5566aa";
const KUBE_TOKEN: &str = "canary-kube-token-8899bb";

fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n    namespace: metacoding\nusers:\n- name: u\n  user:\n    token: {KUBE_TOKEN}\n"
        ),
    )
    .expect("write kubeconfig");
    p
}

struct Run {
    what: String,
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn run(what: &str, mut c: Command) -> Run {
    let o = c.output().expect("the binary runs");
    Run {
        what: what.to_string(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        code: o.status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_canary_ever_appears() {
    let grafana = Tamper::start("http://127.0.0.1:9", Mode::Echo { cookie: COOKIE }).await;
    let kube = Tamper::start("http://127.0.0.1:9", Mode::Echo { cookie: COOKIE }).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = kubeconfig(dir.path(), &kube.url);
    let bin = env!("CARGO_BIN_EXE_msa-doctor");
    let base = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args)
            .arg("--timeout")
            .arg("2s")
            .env("KUBECONFIG", &kc)
            .env("NO_COLOR", "1")
            .env_remove("GRAFANA_TOKEN")
            .env_remove("GRAFANA_PASSWORD");
        c
    };
    let g = grafana.url.clone();
    let mut runs = Vec::new();
    let jobs: Vec<(String, Command)> = {
        let mut v: Vec<(String, Command)> = Vec::new();
        for f in ["human", "json", "junit", "markdown"] {
            let mut c = base(&["check", "--output", f, "--grafana-url", &g]);
            c.env("GRAFANA_PASSWORD", PASSWORD)
                .env("GRAFANA_USER", "canary-user");
            v.push((format!("check -o {f} (password)"), c));
            let mut c = base(&["check", "--output", f, "--grafana-url", &g]);
            c.env("GRAFANA_TOKEN", TOKEN);
            v.push((format!("check -o {f} (token)"), c));
            let mut c = base(&[
                "check",
                "--output",
                f,
                "--prometheus-url",
                &g,
                "--grafana-url",
                &g,
            ]);
            c.env("GRAFANA_PASSWORD", PASSWORD);
            v.push((format!("check -o {f} --prometheus-url"), c));
        }
        for f in ["human", "json"] {
            let mut c = base(&[
                "explain",
                "--output",
                f,
                "--grafana-url",
                &g,
                "rate(up[1m])",
            ]);
            c.env("GRAFANA_PASSWORD", PASSWORD);
            v.push((format!("explain -o {f}"), c));
            let mut c = base(&["explain", "--output", f, "--prometheus-url", &g, "up"]);
            c.env("GRAFANA_PASSWORD", PASSWORD);
            v.push((format!("explain -o {f} --prometheus-url"), c));
            let mut c = base(&[
                "explain",
                "--output",
                f,
                "--grafana-url",
                &g,
                "--all-dashboards",
            ]);
            c.env("GRAFANA_TOKEN", TOKEN);
            v.push((format!("explain --all-dashboards -o {f}"), c));
        }
        // A URL with user info: refused, and the password is not echoed in the refusal.
        let with_user = g.replace("http://", &format!("http://admin:{PASSWORD}@"));
        for cmd in ["check", "explain"] {
            let mut args = vec![cmd, "--grafana-url", &with_user];
            if cmd == "explain" {
                args.push("up");
            }
            v.push((format!("{cmd} --grafana-url with user info"), base(&args)));
        }
        let mut c = base(&["check", "--output", "json"]);
        c.env("MSA_DOCTOR_GRAFANA_URL", &with_user);
        v.push(("MSA_DOCTOR_GRAFANA_URL with user info".into(), c));
        let mut c = base(&["check", "--help"]);
        c.env("MSA_DOCTOR_GRAFANA_URL", &with_user);
        v.push(("--help with MSA_DOCTOR_GRAFANA_URL set".into(), c));
        v
    };
    for (what, c) in jobs {
        runs.push(tokio::task::spawn_blocking(move || run(&what, c)));
    }
    let mut checked = 0;
    let mut masked = 0;
    let mut leaks = Vec::new();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("canary-user:{PASSWORD}"))
    };
    for r in runs {
        let r = r.await.expect("run");
        checked += 1;
        if r.stdout.contains("<redacted>") || r.stderr.contains("<redacted>") {
            masked += 1;
        }
        assert_ne!(r.code, Some(101), "{}: a panic: {}", r.what, r.stderr);
        for canary in [PASSWORD, TOKEN, COOKIE, KUBE_TOKEN, b64.as_str()] {
            for (stream, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
                if text.contains(canary) {
                    leaks.push(format!("{}: {stream} shows {canary}:\n{}", r.what, text));
                }
            }
        }
        if r.what.contains("user info") && !r.what.contains("--help") {
            assert_eq!(r.code, Some(2), "{}: {}{}", r.what, r.stdout, r.stderr);
        }
    }
    // The servers really echoed the secrets back: the redactor had something to do.
    println!(
        "secret canary: {checked} runs, {masked} with masked secrets, no canary in any output"
    );
    assert!(
        masked >= 4,
        "the echo servers' answers reached the reports in {masked} runs only"
    );
    assert!(leaks.is_empty(), "{}", leaks.join("\n\n"));
}
