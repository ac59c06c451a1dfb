//! `kind = "exec"`: the plugin door. Runs a program with arguments under the check's deadline;
//! it prints one JSON object `{"status", "message", "remedy", "evidence"}` on stdout. Anything
//! else it prints, a non-zero exit or a hang becomes `error`, with what it printed, cut short.
//!
//! The plugin runs in a process group of its own, so that a deadline (or the end of the plugin)
//! also ends what it started: a `sleep` or a `curl` left behind by a shell script would else
//! outlive the check and hold its output open.

use super::{BuildError, cut, parse_args};
use crate::engine::{CheckCtx, Outcome, Probe, Status, fill_template};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

/// A plugin program.
#[derive(Debug)]
pub struct Exec {
    command: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    dir: Option<PathBuf>,
}

/// What a plugin may print.
#[derive(Debug, Deserialize)]
struct PluginResult {
    status: String,
    message: String,
    #[serde(default)]
    remedy: Option<String>,
    #[serde(default)]
    evidence: Option<serde_json::Value>,
}

/// The most of a plugin's output kept.
const MAX_OUTPUT: usize = 256 * 1024;
/// How much of unexpected output a message shows.
const SHOWN: usize = 300;

impl Exec {
    /// From `args = { command = "./plugin.sh", args = ["..."], env = {...} }`; a relative
    /// command with a slash resolves against the check file's folder.
    pub fn from_args(args: &toml::Table, base: Option<&Path>) -> Result<Self, BuildError> {
        let a: Args = parse_args(args)?;
        if a.command.trim().is_empty() {
            return Err(BuildError::Args("command must not be empty".into()));
        }
        // Absolute paths: the plugin runs in the check file's folder, and a relative program
        // path would be read against that folder or ours depending on the platform.
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        let dir = base.map(|b| absolute(b.to_path_buf()));
        let mut command = PathBuf::from(&a.command);
        if command.is_relative()
            && a.command.contains('/')
            && let Some(b) = base
        {
            command = absolute(b.join(command));
        }
        Ok(Exec {
            command,
            args: a.args,
            env: a.env,
            dir,
        })
    }
}

/// Kills a plugin's process group when dropped: at its end, on a timeout, and when the runner
/// stops the check, so nothing it started outlives it.
struct GroupKill(Option<u32>);

impl GroupKill {
    fn kill(&mut self) {
        #[cfg(unix)]
        if let Some(pgid) = self.0.take().and_then(|p| i32::try_from(p).ok())
            && pgid > 0
        {
            // SAFETY: kill(2) with a negative pid signals the process group the plugin leads
            // (created with `process_group(0)`); it touches no memory of this process.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
        // Elsewhere there are no process groups: `kill_on_drop` ends the plugin itself.
        #[cfg(not(unix))]
        self.0.take();
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The plugin's result: all of stdout as JSON, or else its last non-empty line (so a plugin may
/// log before it answers).
fn parse_result(out: &str) -> Option<PluginResult> {
    serde_json::from_str(out).ok().or_else(|| {
        let last = out.lines().rev().find(|l| !l.trim().is_empty())?;
        serde_json::from_str(last.trim()).ok()
    })
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                if out.len() < MAX_OUTPUT {
                    let take = n.min(MAX_OUTPUT - out.len());
                    out.extend_from_slice(&buf[..take]);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Probe for Exec {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let vars = serde_json::Value::Object(cx.settings.template_vars());
        let shown = self.command.display().to_string();
        let mut cmd = tokio::process::Command::new(&self.command);
        cmd.args(self.args.iter().map(|a| fill_template(a, &vars)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        // What the plugin may want to know; never a secret.
        let s = &cx.settings;
        cmd.env("MSA_DOCTOR_GRAFANA_URL", &s.grafana_url)
            .env("MSA_DOCTOR_NAMESPACE", &s.namespace)
            .env("MSA_DOCTOR_MONITORING_NAMESPACE", &s.monitoring_namespace)
            .env("MSA_DOCTOR_SERVICES", s.services.join(","))
            .env("MSA_DOCTOR_TOPIC", &s.topic)
            .env(
                "MSA_DOCTOR_WINDOW",
                humantime::format_duration(s.window).to_string(),
            )
            .env("MSA_DOCTOR_TIMEOUT_MS", cx.timeout.as_millis().to_string())
            .env_remove("GRAFANA_PASSWORD")
            .env_remove("GRAFANA_TOKEN");
        if let Some(p) = &s.prometheus_url {
            cmd.env("MSA_DOCTOR_PROMETHEUS_URL", p);
        }
        for (k, v) in &self.env {
            cmd.env(k, fill_template(v, &vars));
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Outcome::error(format!("cannot start plugin {shown}: {e}"))
                    .remedy(format!(
                        "check that {shown} exists and is executable: chmod +x {shown}"
                    ))
                    .evidence("command", &shown);
            }
        };
        let mut group = GroupKill(child.id());
        let stdout = child.stdout.take().map(|o| tokio::spawn(read_capped(o)));
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_capped(e)));
        // Leave a little of the check's deadline to report what the plugin printed.
        let budget = cx
            .timeout
            .saturating_sub(Duration::from_millis(50))
            .max(Duration::from_millis(10));
        let waited = tokio::time::timeout(budget, child.wait()).await;
        let timed_out = waited.is_err();
        // Whether it ended or not, end everything it started; then reap it.
        group.kill();
        if timed_out {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_millis(200), child.wait()).await;
        }
        let collect = |h: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
            match h {
                Some(h) => tokio::time::timeout(Duration::from_millis(200), h)
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default(),
                None => vec![],
            }
        };
        let out = String::from_utf8_lossy(&collect(stdout).await)
            .trim()
            .to_string();
        let err = String::from_utf8_lossy(&collect(stderr).await)
            .trim()
            .to_string();
        let printed = |o: Outcome| {
            let o = if out.is_empty() {
                o
            } else {
                o.evidence("stdout", cut(&out, SHOWN))
            };
            if err.is_empty() {
                o
            } else {
                o.evidence("stderr", cut(&err, SHOWN))
            }
        };
        if timed_out {
            return printed(Outcome::error(format!(
                "plugin {shown} did not finish within {}{}",
                humantime::format_duration(cx.timeout),
                if out.is_empty() {
                    String::new()
                } else {
                    format!("; it printed: {}", cut(&out, SHOWN))
                }
            )));
        }
        let code = match waited {
            Ok(Ok(status)) => status.code(),
            Ok(Err(e)) => {
                return printed(Outcome::error(format!("plugin {shown}: {e}")));
            }
            Err(_) => None,
        };
        if code != Some(0) {
            let what = match code {
                Some(c) => format!("exited with code {c}"),
                None => "was killed by a signal".into(),
            };
            let said = if !err.is_empty() { &err } else { &out };
            return printed(Outcome::error(format!(
                "plugin {shown} {what}{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {}", cut(said, SHOWN))
                }
            )));
        }
        let parsed: PluginResult = match parse_result(&out) {
            Some(p) => p,
            None => {
                return printed(Outcome::error(format!(
                    "plugin {shown} printed no JSON result: {}",
                    if out.is_empty() { "(nothing)".to_string() } else { cut(&out, SHOWN) }
                )))
                .remedy("a plugin prints one JSON object on stdout: {\"status\":\"pass|warn|fail\",\"message\":\"...\",\"remedy\":\"...\",\"evidence\":{}}");
            }
        };
        let status = match parsed.status.as_str() {
            "pass" => Status::Pass,
            "warn" => Status::Warn,
            "fail" => Status::Fail,
            "error" => Status::Error,
            other => {
                return printed(Outcome::error(format!(
                    "plugin {shown} gave status {other:?}; expected pass, warn, fail or error"
                )));
            }
        };
        let mut o = match status {
            Status::Pass => Outcome::pass(parsed.message),
            Status::Warn => Outcome::warn(parsed.message),
            Status::Fail => Outcome::fail(parsed.message),
            _ => Outcome::error(parsed.message),
        };
        if let Some(r) = parsed.remedy {
            o = o.remedy(r);
        }
        match parsed.evidence {
            Some(serde_json::Value::Object(m)) => o.evidence.extend(m),
            Some(serde_json::Value::Null) | None => {}
            Some(other) => o = o.evidence("plugin", other),
        }
        o
    }
}
