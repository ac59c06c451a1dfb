//! The commands, wired together: settings, plan, run, report. `main.rs` only calls [`main`].

use crate::cli::{CheckArgs, Cli, ColorChoice, Command, Format, ListArgs};
use crate::config::{self, ConfigError, Plan};
use crate::engine::{CheckCtx, Clients, Facts, RunEvent, RunOptions, Runner, Selection};
use crate::exit_code;
use crate::report::{self, RenderOptions, Report, Target};
use crate::settings::{self, Env, FileConfig, Settings};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The exit code after SIGINT (Ctrl-C), SIGTERM or SIGHUP interrupted a run (128 + SIGINT, as
/// shells report Ctrl-C).
pub const INTERRUPTED: i32 = 130;

/// Resolves when the process receives SIGINT (Ctrl-C), SIGTERM or SIGHUP (its terminal closed),
/// with the signal's name. A handler that cannot be installed never resolves (the default
/// action then still applies).
pub async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    async fn wait(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                if s.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    tokio::select! {
        _ = wait(SignalKind::interrupt()) => "SIGINT",
        _ = wait(SignalKind::terminate()) => "SIGTERM",
        _ = wait(SignalKind::hangup()) => "SIGHUP",
    }
}

/// Runs the parsed command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let is_demo = matches!(cli.command, Some(Command::Demo(_)));
    let command = async {
        match cli.command {
            None => check(cli.check).await,
            Some(Command::Check(args)) => check(args).await,
            Some(Command::List(args)) => list(args),
            // The practice stack handles the signals itself: it stops its processes first.
            Some(Command::Demo(args)) => demo(args).await,
            Some(Command::Explain(args)) => crate::commands::explain(args).await,
            Some(Command::Lint(args)) => crate::commands::lint(args),
        }
    };
    let result = if is_demo {
        command.await
    } else {
        // A signal drops the run: every check's task and what it started (an exec plugin's
        // process group) is stopped before the process exits.
        tokio::select! {
            r = command => r,
            sig = interrupted() => {
                let _ = writeln!(std::io::stderr(), "msa-doctor: {sig}: stopped");
                return INTERRUPTED;
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("msa-doctor: {e}");
            exit_code::USAGE
        }
    }
}

#[cfg(feature = "sandbox")]
async fn demo(args: crate::cli::DemoArgs) -> Result<i32, ConfigError> {
    crate::sandbox::demo::run(args).await
}

#[cfg(not(feature = "sandbox"))]
async fn demo(_args: crate::cli::DemoArgs) -> Result<i32, ConfigError> {
    Err(ConfigError::Usage(
        "this build has no practice stack: rebuild with the default feature `sandbox`".into(),
    ))
}

/// Loads flags, environment and config file into settings and the validated plan.
pub fn prepare(args: &CheckArgs) -> Result<(Settings, Plan), ConfigError> {
    let file = FileConfig::load(args.report.config.as_deref())?;
    let settings = settings::resolve(args, &Env::from_process(), file.as_ref())?;
    let plan = config::load(&settings.check_dirs)?.for_settings(settings.prometheus_url.as_deref());
    for key in settings.only.iter().chain(&settings.skip) {
        if !plan
            .checks
            .iter()
            .any(|c| &c.id == key || &c.category == key)
        {
            return Err(ConfigError::Usage(format!(
                "--only/--skip {key:?} names no check id or category (see `msa-doctor list`)"
            )));
        }
    }
    Ok((settings, plan))
}

async fn check(args: CheckArgs) -> Result<i32, ConfigError> {
    let (settings, plan) = prepare(&args)?;
    let report = run_plan(settings.clone(), plan).await;
    let code = report.summary().exit_code(settings.strict);
    Ok(print_report(&report, &settings, code))
}

/// A fresh run context: clients built once, no facts yet.
pub fn context(settings: Settings) -> CheckCtx {
    let settings = Arc::new(settings);
    CheckCtx::new(
        settings.clone(),
        Arc::new(Clients::new(&settings)),
        Arc::new(Facts::default()),
        settings.timeout,
    )
}

/// Runs a plan with fresh clients and facts; progress of `--wait` goes to stderr. With
/// `MSA_DOCTOR_REQUEST_COUNTS` set, the requests sent to each server are printed to stderr at
/// the end (for the benchmarks).
pub async fn run_plan(settings: Settings, plan: Plan) -> Report {
    let cx = context(settings);
    let report = run_in(&cx, plan).await;
    if std::env::var_os("MSA_DOCTOR_REQUEST_COUNTS").is_some() {
        let counts = cx.clients.http.counts();
        let line: Vec<String> = counts.iter().map(|(k, n)| format!("{k}={n}")).collect();
        eprintln!("requests: {}", line.join(" "));
    }
    report
}

/// Runs a plan in an existing context (its facts stay there for the caller).
pub async fn run_in(cx: &CheckCtx, plan: Plan) -> Report {
    let settings = cx.settings.clone();
    // Idempotent: a plan already folded has no `needs_via_grafana` left.
    let plan = plan.for_settings(settings.prometheus_url.as_deref());
    let clients = cx.clients.clone();
    let cx = cx.clone();
    let options = RunOptions {
        jobs: settings.jobs,
        default_timeout: settings.timeout,
        wait: settings.wait,
        retry_interval: std::time::Duration::from_secs(2),
        selection: Selection {
            only: settings.only.clone(),
            skip: settings.skip.clone(),
        },
        template_vars: settings.template_vars(),
    };
    let runner = Runner::new(plan.checks, options);
    let started_at = SystemTime::now();
    let start = Instant::now();
    // The spinner rewrites its line with terminal codes: only on a terminal, and not when
    // colour (and so every escape code) is off.
    let terminal = std::io::stderr().is_terminal() && use_color(settings.color);
    let mut progress = move |e: RunEvent| {
        if let RunEvent::Retrying {
            attempt,
            failing,
            remaining,
        } = e
        {
            let secs = remaining.as_secs();
            let line = format!(
                "waiting: attempt {attempt}, {} not passing yet ({}), {secs}s left",
                failing.len(),
                failing.join(", ")
            );
            let mut err = std::io::stderr().lock();
            if terminal {
                let spinner = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let _ = write!(
                    err,
                    "\r\x1b[2K{} {line}",
                    spinner[attempt as usize % spinner.len()]
                );
            } else {
                let _ = writeln!(err, "{line}");
            }
            let _ = err.flush();
        }
    };
    let checks = runner.run(cx, &mut progress).await;
    if terminal && settings.wait.is_some() {
        eprint!("\r\x1b[2K");
    }
    Report {
        started_at,
        duration: start.elapsed(),
        target: Target {
            grafana_url: settings.grafana_url.clone(),
            prometheus: settings
                .prometheus_url
                .clone()
                .unwrap_or_else(|| "grafana-proxy".into()),
            kube_context: clients.kube_context(),
            namespace: settings.namespace.clone(),
        },
        checks,
    }
}

/// Whether the human report is coloured: `--color`, then NO_COLOR, then "is stdout a terminal".
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stdout().is_terminal()
        }
    }
}

fn unicode_ok() -> bool {
    let vars = ["LC_ALL", "LC_CTYPE", "LANG"];
    let locale = vars
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
    let utf8 = match locale {
        Some(l) => {
            let l = l.to_ascii_lowercase();
            l.contains("utf-8") || l.contains("utf8")
        }
        None => true,
    };
    utf8 && std::env::var("TERM")
        .map(|t| t != "dumb" && t != "linux")
        .unwrap_or(true)
}

/// Prints a report to stdout in the chosen format, through [`emit`]: returns `code`, or
/// [`exit_code::ERROR`] when the report could not be written.
pub fn print_report(report: &Report, settings: &Settings, code: i32) -> i32 {
    let opts = RenderOptions {
        color: use_color(settings.color),
        unicode: unicode_ok(),
    };
    let text = report::render(report, settings.output, opts);
    emit(&text, code)
}

/// What became of a write to standard output.
#[derive(Debug)]
pub enum Emitted {
    /// Everything was written and flushed.
    Written,
    /// The reader went away (`msa-doctor ... | head -1`): nothing more to say to anyone.
    Closed,
    /// The write failed otherwise (a full disk, `> /dev/full`, an I/O error).
    Failed(std::io::Error),
}

/// Writes `text` to standard output and flushes it. Not `print!`, which panics on a closed
/// pipe; and no error is swallowed: every report, list and explanation goes through here.
pub fn write_stdout(text: &str) -> Emitted {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Emitted::Written,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Emitted::Closed,
        Err(e) => Emitted::Failed(e),
    }
}

/// The one writer of a command's output: writes `text` to standard output and returns the
/// exit code. `code` stays when the text was written, and when the reader closed the pipe
/// (quietly: `msa-doctor list | head -1` is no error); a write that failed otherwise (say
/// `--output junit > /dev/full`) is named on stderr and the run exits with
/// [`exit_code::ERROR`], never 0 with no report.
pub fn emit(text: &str, code: i32) -> i32 {
    match write_stdout(text) {
        Emitted::Written | Emitted::Closed => code,
        Emitted::Failed(e) => {
            eprintln!("msa-doctor: cannot write to standard output: {e}");
            exit_code::ERROR
        }
    }
}

fn list(args: ListArgs) -> Result<i32, ConfigError> {
    let file = FileConfig::load(args.config.as_deref())?;
    let check_args = CheckArgs {
        report: crate::cli::ReportArgs {
            checks: args.checks.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let settings = settings::resolve(&check_args, &Env::default(), file.as_ref())?;
    // The needs as `check` would run them (through Grafana unless the file names Prometheus).
    let plan = config::load(&settings.check_dirs)?.for_settings(settings.prometheus_url.as_deref());
    let text = match args.output.unwrap_or(Format::Human) {
        Format::Json => {
            let items: Vec<serde_json::Value> = plan
                .checks
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id,
                        "category": c.category,
                        "title": c.title,
                        "kind": c.kind,
                        "needs": c.needs,
                        "severity": match c.severity { crate::engine::Severity::Fail => "fail", crate::engine::Severity::Warn => "warn" },
                        "retry": c.retry,
                        "origin": c.origin.to_string(),
                    })
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&serde_json::json!({ "checks": items }))
                .unwrap_or_default();
            s.push('\n');
            s
        }
        _ => {
            let w_id = plan
                .checks
                .iter()
                .map(|c| c.id.len())
                .max()
                .unwrap_or(2)
                .max(2);
            let w_needs = plan
                .checks
                .iter()
                .map(|c| c.needs.join(",").len())
                .max()
                .unwrap_or(5)
                .max(5);
            let mut s = format!(
                "{:<w_id$}  {:<w_needs$}  {:<40}  ORIGIN\n",
                "ID", "NEEDS", "TITLE"
            );
            for c in &plan.checks {
                let needs = if c.needs.is_empty() {
                    "-".to_string()
                } else {
                    c.needs.join(",")
                };
                s.push_str(&format!(
                    "{:<w_id$}  {:<w_needs$}  {:<40}  {}\n",
                    c.id, needs, c.title, c.origin
                ));
            }
            s
        }
    };
    Ok(emit(&text, exit_code::OK))
}
