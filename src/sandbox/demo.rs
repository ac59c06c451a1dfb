//! `msa-doctor demo`: starts the practice stack on loopback (with `--fault`s), runs the
//! checklist against it in-process and prints the report, or with `--keep-running` prints shell
//! lines for the stack and serves it until Ctrl-C. Whatever happens (a signal, an error, a
//! panic), every child process is stopped and every temporary file removed: the stack lives in
//! values whose drop does that.

use crate::app::Emitted;
use crate::cli::DemoArgs;
use crate::config::ConfigError;
use crate::exit_code;
use crate::sandbox::faults::{Fault, FaultSet};
use crate::sandbox::stack::{Stack, StackOptions};
use crate::settings::Settings;
use std::time::Duration;

/// The exit code after Ctrl-C, SIGTERM or SIGHUP interrupted a run (128 + SIGINT, as shells
/// report).
pub const INTERRUPTED: i32 = crate::app::INTERRUPTED;

/// How long the demo waits for warm data before running the checks anyway.
const WARM_UP: Duration = Duration::from_secs(20);

/// `--list-faults`: one `NAME  what it breaks` line per fault.
pub fn list_faults() -> String {
    let width = Fault::ALL.iter().map(|f| f.name().len()).max().unwrap_or(0);
    Fault::ALL
        .iter()
        .map(|f| format!("{:<width$}  {}\n", f.name(), f.describe()))
        .collect()
}

/// Parses `--fault` names; an unknown name is a usage error listing the valid ones.
pub fn parse_faults(names: &[String]) -> Result<FaultSet, ConfigError> {
    let mut faults = Vec::new();
    for name in names {
        match Fault::parse(name.trim()) {
            Some(f) => faults.push(f),
            None => {
                let valid: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
                return Err(ConfigError::Usage(format!(
                    "unknown fault {name:?}; valid faults: {}",
                    valid.join(", ")
                )));
            }
        }
    }
    Ok(FaultSet::of(&faults))
}

fn fault_names(faults: &FaultSet) -> String {
    let names: Vec<&str> = faults.iter().map(Fault::name).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

use crate::app::interrupted;

/// A line on stderr that cannot panic: after SIGHUP the terminal is gone and `eprintln!`
/// would panic on the failed write, before the stack is stopped.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// The settings of a demo run: the stack's connection and credentials, the report options of
/// the command line.
pub fn demo_settings(stack: &Stack, args: &DemoArgs) -> Settings {
    let mut s = stack.settings();
    let r = &args.report;
    s.only = r.only.clone();
    s.skip = r.skip.clone();
    s.check_dirs = r.checks.clone();
    s.strict = r.strict;
    s.verbosity = crate::report::Verbosity::from_flags(r.quiet, r.verbose);
    if let Some(o) = r.output {
        s.output = o;
    }
    if let Some(c) = r.color {
        s.color = c;
    }
    if let Some(t) = args.timeout {
        s.timeout = t;
    }
    s
}

/// A single-quoted shell word.
fn sh(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Starts the practice stack and runs the checklist against it; returns the exit code.
pub async fn run(args: DemoArgs) -> Result<i32, ConfigError> {
    if args.list_faults {
        return Ok(crate::app::emit(&list_faults(), exit_code::OK));
    }
    let faults = parse_faults(&args.faults)?;
    if args.report.config.is_some() {
        return Err(ConfigError::Usage(
            "demo reads no config file (--config): the practice stack sets every connection option itself"
                .into(),
        ));
    }
    // Validate the checklist and the selection before starting anything.
    let plan = crate::config::load(&args.report.checks)?;
    for key in args.report.only.iter().chain(&args.report.skip) {
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

    let opts = StackOptions {
        faults: faults.clone(),
        backend: args.backend,
        prometheus_bin: args.prometheus_bin.clone(),
    };
    let started = tokio::select! {
        r = Stack::start(opts) => r,
        sig = interrupted() => {
            say!("msa-doctor: {sig} while starting the practice stack; stopped it");
            return Ok(INTERRUPTED);
        }
    };
    let stack = match started {
        Ok(s) => s,
        Err(e) if e.is_not_installed() => return Err(ConfigError::Usage(e.to_string())),
        Err(e) => {
            say!("msa-doctor: {e}");
            return Ok(exit_code::ERROR);
        }
    };
    say!(
        "practice stack up in {:.1}s (first scrape after {:.1}s); faults: {}",
        stack.startup.as_secs_f64(),
        stack.time_to_first_scrape.as_secs_f64(),
        fault_names(&faults)
    );
    // Let the panels' data warm up (two samples for rate(), a first order), so the report
    // shows the faults and not a cold start.
    // The scale fixture's pods are scraped every 10 s, and thousands of first scrapes take longer.
    let warm_up = match stack.scale {
        Some(sc) => {
            say!(
                "scale fixture ({}): {} generated Deployments, {} pods, {} dashboards of {} panels; broken: {}; request counts at {}{} and {}{}",
                crate::sandbox::scale::ENV,
                sc.deployments,
                sc.pods(),
                crate::sandbox::scale::DASHBOARDS,
                crate::sandbox::scale::PANELS,
                crate::sandbox::scale::broken_name(sc),
                stack.grafana_url,
                crate::sandbox::scale::REQUESTS_PATH,
                stack.kube_url,
                crate::sandbox::scale::REQUESTS_PATH
            );
            WARM_UP * 6
        }
        None => WARM_UP,
    };
    let warm = tokio::select! {
        w = crate::sandbox::warm::wait_for_data(&stack, warm_up) => w,
        sig = interrupted() => {
            stack.shutdown().await;
            say!("msa-doctor: {sig}: the practice stack is stopped");
            return Ok(INTERRUPTED);
        }
    };
    match warm {
        (waited, true) => say!("data warm after {:.1}s more", waited.as_secs_f64()),
        (waited, false) => say!(
            "data still incomplete after {:.0}s (as some faults want); running the checks",
            waited.as_secs_f64()
        ),
    }

    if args.keep_running {
        if let Emitted::Failed(e) = print_shell_lines(&stack) {
            stack.shutdown().await;
            say!("msa-doctor: cannot write to standard output: {e}; the practice stack is stopped");
            return Ok(exit_code::ERROR);
        }
        say!("serving the practice stack until Ctrl-C");
        let sig = interrupted().await;
        stack.shutdown().await;
        say!("{sig}: practice stack stopped");
        return Ok(exit_code::OK);
    }

    let settings = demo_settings(&stack, &args);
    let report = tokio::select! {
        r = crate::app::run_plan(settings.clone(), plan) => r,
        sig = interrupted() => {
            stack.shutdown().await;
            say!("msa-doctor: {sig}: the practice stack is stopped");
            return Ok(INTERRUPTED);
        }
    };
    let code = crate::app::print_report(
        &report,
        &settings,
        report.summary().exit_code(settings.strict),
    );
    stack.shutdown().await;
    Ok(code)
}

/// Shell lines a learner can `eval` to point msa-doctor (and kubectl) at the stack; hints on
/// stderr. No secret is printed: a changed password is only named by its file. A closed
/// stdout is no reason to stop serving; a failed write is (the caller's to say).
fn print_shell_lines(stack: &Stack) -> Emitted {
    let lines = format!(
        "export MSA_DOCTOR_GRAFANA_URL={}\nexport KUBECONFIG={}\nexport GRAFANA_USER={}\n\
         # export MSA_DOCTOR_PROMETHEUS_URL={}  # to query the database directly\n",
        sh(&stack.grafana_url),
        sh(&stack.kubeconfig_path.to_string_lossy()),
        sh(&stack.doctor_user),
        // Commented out: a real user reaches Prometheus only through Grafana's data source
        // proxy, and querying it directly would hide the data source faults.
        sh(&stack.prometheus_url)
    );
    let written = crate::app::write_stdout(&lines);
    if stack.doctor_password_defaulted {
        say!("Grafana credentials: msa-doctor uses the default admin/admin");
    } else {
        say!(
            "Grafana's admin password is in {}: run msa-doctor --grafana-password-file {}",
            stack.grafana_password_file.display(),
            sh(&stack.grafana_password_file.to_string_lossy())
        );
    }
    if stack.faults.has(Fault::WrongPassword) {
        say!(
            "(fault wrong-password: admin/admin is refused; the real password is in {})",
            stack.grafana_password_file.display()
        );
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_listed_once() {
        let text = list_faults();
        assert_eq!(text.lines().count(), Fault::ALL.len());
        assert!(
            text.lines()
                .any(|l| l.starts_with("stale-data ") && l.contains("47 minutes"))
        );
    }

    #[test]
    fn unknown_fault_lists_the_valid_ones() {
        let e = parse_faults(&["wrong-pat".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown fault \"wrong-pat\""), "{e}");
        assert!(
            e.contains("wrong-path") && e.contains("latency-50ms"),
            "{e}"
        );
        let ok = parse_faults(&["wrong-path".into(), "slow-scrape".into()]).unwrap();
        assert!(ok.has(Fault::WrongPath) && ok.has(Fault::SlowScrape));
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(sh("a b"), "'a b'");
        assert_eq!(sh("it's"), r"'it'\''s'");
    }
}
