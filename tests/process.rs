//! Process hygiene, through the binary: `demo --keep-running` killed by SIGHUP, SIGTERM,
//! SIGINT or SIGKILL leaves no database process of its own, and no temporary folder (after
//! SIGKILL: none past the next stack start); a hanging exec plugin leaves no process after the
//! run, whether the run ends at the check's deadline or by SIGTERM.
//!
//! Each test runs msa-doctor with its own `TMPDIR`, so the folders it finds there are its own.
//! The stacks use VictoriaMetrics, which is up in about a second.

#![cfg(all(unix, feature = "sandbox"))]

use msa_doctor::sandbox::hygiene::process_alive;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_msa-doctor");

/// The ids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && process_alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("msa-doctor did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !process_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The practice stack's folders under `tmp`.
fn stack_dirs(tmp: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("msa-doctor-"))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// `msa-doctor demo --keep-running --backend victoria-metrics` with `TMPDIR=tmp`, once it
/// printed its shell lines (the stack is up), with the database's process id.
fn keep_running(tmp: &Path) -> (Child, u32) {
    let mut child = Command::new(BIN)
        .args(["demo", "--keep-running", "--backend", "victoria-metrics"])
        .env("TMPDIR", tmp)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("export MSA_DOCTOR_GRAFANA_URL=") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(90)).is_err() {
        let _ = child.kill();
        panic!("the practice stack did not come up within 90s");
    }
    let db = children_of(child.id());
    assert_eq!(db.len(), 1, "one database process: {db:?}");
    (child, db[0])
}

/// A signal msa-doctor catches: it stops the database and removes every folder.
fn caught(sig: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (mut demo, db) = keep_running(tmp.path());
    assert!(
        stack_dirs(tmp.path()).len() >= 3,
        "{:?}",
        stack_dirs(tmp.path())
    );
    signal(demo.id(), sig);
    let status = wait_exit(&mut demo, Duration::from_secs(20));
    assert!(status.code().is_some(), "it exits, not killed: {status:?}");
    assert!(
        wait_gone(db, Duration::from_secs(5)),
        "the database {db} outlived msa-doctor after SIG{sig}"
    );
    assert_eq!(
        stack_dirs(tmp.path()),
        Vec::<PathBuf>::new(),
        "temporary folders left after SIG{sig}"
    );
}

#[test]
fn sighup_stops_the_stack() {
    caught("HUP");
}

#[test]
fn sigterm_stops_the_stack() {
    caught("TERM");
}

#[test]
fn sigint_stops_the_stack() {
    caught("INT");
}

#[test]
fn sigkill_leaves_no_database_and_the_next_start_removes_the_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut demo, db) = keep_running(tmp.path());
    let left = stack_dirs(tmp.path());
    signal(demo.id(), "KILL");
    let _ = wait_exit(&mut demo, Duration::from_secs(5));
    assert!(
        wait_gone(db, Duration::from_secs(5)),
        "the database {db} outlived msa-doctor's SIGKILL"
    );
    // The next stack removes what the killed one could not.
    let (mut next, next_db) = keep_running(tmp.path());
    let now = stack_dirs(tmp.path());
    for d in &left {
        assert!(!now.contains(d), "{} is still there: {now:?}", d.display());
    }
    signal(next.id(), "TERM");
    wait_exit(&mut next, Duration::from_secs(20));
    assert!(wait_gone(next_db, Duration::from_secs(5)));
    assert_eq!(stack_dirs(tmp.path()), Vec::<PathBuf>::new());
}

fn hang_check(dir: &Path, pids: &Path) {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins/hang.sh");
    std::fs::write(
        dir.join("hang.toml"),
        format!(
            "[[check]]\nid = \"cli.hang\"\ntitle = \"a plugin that never ends\"\nkind = \"exec\"\n\
             args = {{ command = {:?}, args = [{:?}] }}\n",
            plugin.display().to_string(),
            pids.display().to_string()
        ),
    )
    .unwrap();
}

fn check_cmd(checks: &Path, timeout: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(["check", "--no-kube", "--only", "cli", "--timeout", timeout])
        .arg("--checks")
        .arg(checks)
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// The plugin's shell and its child, from the file the plugin writes.
fn plugin_pids(pids: &Path, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(text) = std::fs::read_to_string(pids)
            && text.ends_with('\n')
        {
            return text
                .split_whitespace()
                .map(|p| p.parse().unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "the plugin never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_hanging_plugin_leaves_no_process_after_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    hang_check(dir.path(), &pids);
    let status = check_cmd(dir.path(), "1s").status().unwrap();
    assert_eq!(status.code(), Some(3), "the hanging check is an error");
    for pid in plugin_pids(&pids, Duration::ZERO) {
        assert!(
            wait_gone(pid, Duration::from_secs(2)),
            "plugin process {pid} outlived the run"
        );
    }
}

#[test]
fn a_hanging_plugin_leaves_no_process_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    hang_check(dir.path(), &pids);
    let mut run = check_cmd(dir.path(), "60s").spawn().unwrap();
    let plugin = plugin_pids(&pids, Duration::from_secs(20));
    assert_eq!(plugin.len(), 2, "{plugin:?}");
    signal(run.id(), "TERM");
    let status = wait_exit(&mut run, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{status:?}");
    for pid in plugin {
        assert!(
            wait_gone(pid, Duration::from_secs(2)),
            "plugin process {pid} outlived msa-doctor's SIGTERM"
        );
    }
}
