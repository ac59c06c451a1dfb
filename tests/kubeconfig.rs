//! How msa-doctor reads the kubeconfig: `KUBECONFIG` lists merged as kubectl merges them, a
//! broken entry named, and the user's exec credential plugin (EKS's `aws eks get-token`) run
//! once per run, bounded by the deadline, killed with its children, and named when it hangs or
//! is missing.

use msa_doctor::app::run_plan;
use msa_doctor::cli::Backend;
use msa_doctor::clients::Transport;
use msa_doctor::clients::kube::{KubeSource, build, read_kubeconfig};
use msa_doctor::config;
use msa_doctor::sandbox::stack::start_for_test_with;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = write(dir, name, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

fn exec_kubeconfig(server: &str, command: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("      - {a}\n")).collect();
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: eks\nclusters:\n- name: eks\n  cluster:\n    server: {server}\ncontexts:\n- name: eks\n  context:\n    cluster: eks\n    user: eks-user\n    namespace: metacoding\nusers:\n- name: eks-user\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      args:\n{}      interactiveMode: Never\n",
        command.display(),
        args.concat()
    )
}

fn source(env: Option<String>, timeout: Duration) -> KubeSource {
    KubeSource {
        file: None,
        env: env.map(Into::into),
        context: None,
        timeout,
    }
}

#[test]
fn kubeconfig_lists_merge_as_kubectl_merges_them() {
    let dir = tempfile::tempdir().unwrap();
    let real = write(
        dir.path(),
        "real",
        "apiVersion: v1\nkind: Config\ncurrent-context: a\nclusters:\n- name: a\n  cluster:\n    server: http://127.0.0.1:1\ncontexts:\n- name: a\n  context:\n    cluster: a\n    user: u\nusers:\n- name: u\n  user: {}\n",
    );
    // A missing file before the real one is ignored, as kubectl ignores it.
    let env = format!(
        "{}:{}",
        dir.path().join("missing").display(),
        real.display()
    );
    let kc = read_kubeconfig(&source(Some(env), Duration::from_secs(1)))
        .expect("readable")
        .expect("a kubeconfig");
    assert_eq!(kc.current_context.as_deref(), Some("a"));
    // Only missing files: named.
    let env = format!(
        "{}:{}",
        dir.path().join("x").display(),
        dir.path().join("y").display()
    );
    let e = read_kubeconfig(&source(Some(env), Duration::from_secs(1))).unwrap_err();
    assert!(
        e.reason.contains("KUBECONFIG names no file that exists"),
        "{e:?}"
    );
    assert!(e.reason.contains("/x") && e.reason.contains("/y"), "{e:?}");
    // A broken file is named, not skipped.
    let broken = write(
        dir.path(),
        "broken",
        "apiVersion: v1\nkind: Config\nclusters: [oops\n",
    );
    let env = format!("{}:{}", real.display(), broken.display());
    let e = read_kubeconfig(&source(Some(env), Duration::from_secs(1))).unwrap_err();
    assert!(e.reason.contains(&broken.display().to_string()), "{e:?}");
}

#[tokio::test]
async fn a_hanging_credential_plugin_is_bounded_named_and_killed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    // `aws` that waits for an SSO login that never comes, in a child of its own (a unique
    // sleep, to find it afterwards).
    let marker = format!("sleep 29.{}", std::process::id() % 100_000);
    let aws = script(dir.path(), "aws", &format!("{marker} &\nwait\n"));
    let kc = write(
        dir.path(),
        "kc",
        &exec_kubeconfig(
            "http://127.0.0.1:1",
            &aws,
            &["eks", "get-token", "--cluster-name", "shop"],
        ),
    );
    let t0 = Instant::now();
    let e = build(
        &source(Some(kc.display().to_string()), Duration::from_millis(800)),
        &Transport::new(Duration::from_secs(1)),
    )
    .await
    .err()
    .expect("no client");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1800), "{took:?}");
    assert!(
        e.reason.contains("`aws eks get-token`") && e.reason.contains("did not answer in 800ms"),
        "{e:?}"
    );
    assert!(e.reason.contains("SSO"), "{e:?}");
    std::thread::sleep(Duration::from_millis(200));
    let left = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "the plugin is still running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[tokio::test]
async fn a_missing_credential_plugin_is_named() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let kc = write(
        dir.path(),
        "kc",
        &exec_kubeconfig(
            "http://127.0.0.1:1",
            Path::new("aws-not-installed-here"),
            &["eks", "get-token", "--cluster-name", "shop"],
        ),
    );
    let e = build(
        &source(Some(kc.display().to_string()), Duration::from_secs(1)),
        &Transport::new(Duration::from_secs(1)),
    )
    .await
    .err()
    .expect("no client");
    assert!(
        e.reason
            .contains("`aws-not-installed-here` is not installed"),
        "{e:?}"
    );
}

/// The plugin runs once in a whole run of the checklist (every cluster check shares its
/// token), and its token never shows in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_plugin_runs_once_per_run() {
    let stack = start_for_test_with(&[], Backend::VictoriaMetrics).await;
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let token = "plugin-token-0123456789abcdef";
    let aws = script(
        dir.path(),
        "aws",
        &format!(
            "echo run >> {}\nprintf '%s' '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'",
            count.display()
        ),
    );
    let kc = write(
        dir.path(),
        "kc",
        &exec_kubeconfig(&stack.kube_url, &aws, &["eks", "get-token"]),
    );
    let mut settings = stack.settings();
    settings.kubeconfig = Some(kc);
    settings.timeout = Duration::from_secs(5);
    let plan = config::load(&[]).expect("checklist");
    let report = run_plan(settings, plan).await;
    let reach = report
        .checks
        .iter()
        .find(|c| c.id == "k8s.reachable")
        .expect("k8s.reachable");
    assert_eq!(reach.status.to_string(), "pass", "{}", reach.message);
    let runs = std::fs::read_to_string(&count).unwrap_or_default();
    assert_eq!(
        runs.lines().count(),
        1,
        "the plugin ran {} times",
        runs.lines().count()
    );
    let text = msa_doctor::report::json::render(&report);
    assert!(!text.contains(token));
    stack.shutdown().await;
}
