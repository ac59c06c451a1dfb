//! `kind = "exec"` with real processes and the real clock: the plugins are the shell scripts
//! in `tests/fixtures/plugins/`.
// The plugins are shell scripts and the tests look at process groups: Unix only.
#![cfg(unix)]

use msa_doctor::engine::{
    CheckCtx, CheckResult, CheckSpec, Clients, Facts, Origin, Outcome, Probe, RunOptions, Runner,
    Severity, Status,
};
use msa_doctor::probes::exec::Exec;
use msa_doctor::settings::Settings;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn plugins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins")
}

/// An exec probe for a fixture, by file name, with arguments.
fn exec(name: &str, args: &[&str]) -> Exec {
    let mut t = toml::Table::new();
    t.insert(
        "command".into(),
        plugins().join(name).display().to_string().into(),
    );
    t.insert(
        "args".into(),
        toml::Value::Array(args.iter().map(|a| toml::Value::from(*a)).collect()),
    );
    Exec::from_args(&t, Some(&plugins())).expect("valid exec args")
}

fn context(timeout: Duration) -> CheckCtx {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Arc::new(Settings::defaults());
    CheckCtx::new(
        settings.clone(),
        Arc::new(Clients::new(&settings)),
        Arc::new(Facts::default()),
        timeout,
    )
}

async fn run(probe: &Exec, timeout: Duration) -> Outcome {
    probe.run(&context(timeout)).await
}

/// Runs one exec check through the runner, as `msa-doctor check` does.
async fn run_check(probe: Exec, timeout: Duration) -> CheckResult {
    let spec = CheckSpec {
        id: "plugin.under-test".into(),
        category: "plugin".into(),
        title: "a plugin".into(),
        kind: "exec".into(),
        needs: vec![],
        needs_via_grafana: vec![],
        severity: Severity::Fail,
        timeout: Some(timeout),
        retry: false,
        remedy: None,
        docs: None,
        origin: Origin::File(plugins().join("checks.toml")),
        probe: Arc::new(probe),
    };
    let runner = Runner::new(vec![spec], RunOptions::default());
    let mut results = runner.run(context(timeout), &mut |_| {}).await;
    results.remove(0)
}

const SHORT: Duration = Duration::from_millis(2000);

#[tokio::test]
async fn a_passing_plugin_passes_with_its_evidence() {
    let o = run(&exec("pass.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(o.message, "the disk has room");
    assert_eq!(o.evidence["free_mb"], 1234);
    assert_eq!(o.evidence["mount"], "/");
    assert_eq!(o.remedy, None);
}

#[tokio::test]
async fn a_failing_plugin_fails_with_its_remedy() {
    let o = run(&exec("fail.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Fail, "{o:?}");
    assert_eq!(o.message, "order-service has no scrape annotation");
    assert_eq!(
        o.remedy.as_deref(),
        Some(
            "kubectl -n metacoding annotate deployment order-service prometheus.io/scrape=true\n\
             kubectl -n metacoding rollout restart deployment order-service"
        )
    );
    assert_eq!(o.evidence["deployment"], "order-service");
}

#[tokio::test]
async fn a_plugin_may_log_before_its_result() {
    let o = run(&exec("logs-then-json.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Warn, "{o:?}");
    assert_eq!(o.message, "consumer lag is 1200 on partition 2");
    assert_eq!(o.evidence["lag"], 1200);
}

#[tokio::test]
async fn garbage_is_an_error_with_the_text_cut() {
    let o = run(&exec("garbage.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    let prefix = format!(
        "plugin {} printed no JSON result: garbage-000 garbage-001",
        plugins().join("garbage.sh").display()
    );
    assert!(o.message.starts_with(&prefix), "{}", o.message);
    // 100 words of 12 bytes were printed; 300 bytes are shown, and how much was cut.
    assert!(o.message.ends_with("… (899 more bytes)"), "{}", o.message);
    assert!(!o.message.contains("garbage-099"), "{}", o.message);
    assert!(
        o.remedy
            .as_deref()
            .unwrap_or_default()
            .contains("one JSON object")
    );
}

#[tokio::test]
async fn an_unknown_status_is_an_error() {
    let o = run(&exec("bad-status.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert!(
        o.message
            .ends_with("gave status \"great\"; expected pass, warn, fail or error"),
        "{}",
        o.message
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error_naming_the_code_and_stderr() {
    let o = run(&exec("exit3.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert_eq!(
        o.message,
        format!(
            "plugin {} exited with code 3: kafka-consumer-groups: cannot reach the broker at kafka:9092",
            plugins().join("exit3.sh").display()
        )
    );
    assert_eq!(o.evidence["stdout"], "some progress on stdout");
}

#[tokio::test]
async fn a_missing_plugin_is_an_error_with_a_remedy() {
    let o = run(&exec("no-such-plugin.sh", &[]), SHORT).await;
    assert_eq!(o.status, Status::Error, "{o:?}");
    assert!(
        o.message.starts_with("cannot start plugin"),
        "{}",
        o.message
    );
    assert!(o.remedy.as_deref().unwrap_or_default().contains("chmod +x"));
}

#[tokio::test]
async fn the_plugin_gets_settings_and_arguments_but_no_secret() {
    let o = run(&exec("env.sh", &["{namespace}/{topic}"]), SHORT).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert_eq!(
        o.message,
        "namespace=metacoding topic=order-created password=unset token=unset arg=metacoding/order-created"
    );
}

/// The state letter of a process (`R`, `S`, `Z`, ...), or `None` when it is gone.
fn state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The state of a process once a kill sent to it had a moment to land: `None` (gone) or
/// `Some('Z')` (dead, not reaped yet) when it was killed.
async fn settled_state(pid: &str) -> Option<char> {
    for _ in 0..50 {
        match state(pid) {
            None | Some('Z') => break,
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    state(pid)
}

#[tokio::test]
async fn a_hanging_plugin_is_killed_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let deadline = Duration::from_millis(500);
    let start = Instant::now();
    let r = run_check(exec("hang.sh", &[&pids.display().to_string()]), deadline).await;
    let took = start.elapsed();

    assert_eq!(r.status, Status::Error, "{r:?}");
    assert_eq!(
        r.message,
        format!(
            "plugin {} did not finish within 500ms; it printed: started, waiting for the child",
            plugins().join("hang.sh").display()
        )
    );
    assert!(
        took >= Duration::from_millis(400),
        "ended too early: {took:?}"
    );
    assert!(
        took < deadline + Runner::GRACE + Duration::from_millis(250),
        "took {took:?}, more than the deadline and a small margin"
    );

    if cfg!(target_os = "linux") {
        let text = std::fs::read_to_string(&pids).expect("the plugin wrote its pids");
        let (shell, child) = text.trim().split_once(' ').expect("two pids");
        // The plugin itself was reaped: no zombie left.
        assert_eq!(state(shell), None, "the plugin {shell} is still there");
        // What it started was killed with it. (Once orphaned, it is init's to reap; an init
        // that never reaps, as in some containers, leaves it as a zombie, which is dead.)
        let s = settled_state(child).await;
        assert!(
            matches!(s, None | Some('Z')),
            "the plugin's child {child} is {s:?}"
        );
    }
}

#[tokio::test]
async fn a_plugin_that_exits_leaves_no_child_behind() {
    // The shell exits at once; its background `sleep` would hold stdout open for 60 s.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("leaves-a-child.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nsleep 60 &\necho \"$!\" > \"$1\"\nprintf '{\"status\":\"pass\",\"message\":\"ok\"}\\n'\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let pidfile = dir.path().join("pid");
    let mut t = toml::Table::new();
    t.insert("command".into(), script.display().to_string().into());
    t.insert(
        "args".into(),
        toml::Value::Array(vec![pidfile.display().to_string().into()]),
    );
    let probe = Exec::from_args(&t, None).unwrap();
    let start = Instant::now();
    let o = run(&probe, Duration::from_secs(5)).await;
    assert_eq!(o.status, Status::Pass, "{o:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    if cfg!(target_os = "linux") {
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let s = settled_state(pid.trim()).await;
        assert!(matches!(s, None | Some('Z')), "the leftover sleep is {s:?}");
    }
}

#[tokio::test]
async fn exec_checks_run_at_the_same_time() {
    let start = Instant::now();
    let slow = |i: u32| {
        let mut t = toml::Table::new();
        t.insert("command".into(), "/bin/sh".into());
        t.insert(
            "args".into(),
            toml::Value::Array(vec![
                "-c".into(),
                "sleep 0.5; printf '{\"status\":\"pass\",\"message\":\"ok\"}'".into(),
            ]),
        );
        CheckSpec {
            id: format!("plugin.p{i}"),
            category: "plugin".into(),
            title: "t".into(),
            kind: "exec".into(),
            needs: vec![],
            needs_via_grafana: vec![],
            severity: Severity::Fail,
            timeout: Some(Duration::from_secs(5)),
            retry: false,
            remedy: None,
            docs: None,
            origin: Origin::BuiltIn("test"),
            probe: Arc::new(Exec::from_args(&t, None).unwrap()),
        }
    };
    let runner = Runner::new((0..4).map(slow).collect(), RunOptions::default());
    let results = runner
        .run(context(Duration::from_secs(5)), &mut |_| {})
        .await;
    assert!(
        results.iter().all(|r| r.status == Status::Pass),
        "{results:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}
