//! `msa-doctor config show`: every resolved setting, and where its value came from: a flag, an
//! environment variable, a config file (path and line) or the default. Secrets are never
//! shown: a password or token is "set", with where it came from.
//!
//! It reads what [`crate::settings::resolve`] resolved; the precedence lives there alone.

use crate::cli::CheckArgs;
use crate::settings::{Env, FileConfig, GrafanaAuth, Settings, config_candidates};

/// One row: setting, value, source.
type Row = (&'static str, String, String);

/// Renders the table. `getenv` reads the environment (injected for tests).
pub fn show(
    args: &CheckArgs,
    env: &Env,
    file: Option<&FileConfig>,
    s: &Settings,
    getenv: &dyn Fn(&str) -> Option<String>,
) -> String {
    let file_sets = |key: &str| {
        file.and_then(|f| f.sets(key))
            .map(|at| format!("file {at}"))
    };
    // Where a value came from, given whether a flag set it and the file key.
    let from = |flag: Option<&str>, key: &str| -> String {
        match flag {
            Some(f) => format!("flag {f}"),
            None => file_sets(key).unwrap_or_else(|| "default".into()),
        }
    };
    // Flags that clap also fills from an environment variable.
    let from_env_flag = |given: Option<&String>, var: &str, flag: &str, key: &str| -> String {
        match given {
            Some(v) if getenv(var).as_deref() == Some(v.as_str()) => format!("env {var}"),
            Some(_) => format!("flag {flag}"),
            None => from(None, key),
        }
    };
    let r = &args.report;
    let mut rows: Vec<Row> = Vec::new();
    rows.push((
        "grafana-url",
        crate::report::json::redacted_url(&s.grafana_url),
        from_env_flag(
            args.grafana_url.as_ref(),
            "MSA_DOCTOR_GRAFANA_URL",
            "--grafana-url",
            "grafana-url",
        ),
    ));
    match &s.grafana_auth {
        GrafanaAuth::Token(_) => {
            let src = if let Some(p) = &args.grafana_token_file {
                format!("flag --grafana-token-file {}", p.display())
            } else if env.grafana_token.is_some() {
                "env GRAFANA_TOKEN".into()
            } else {
                file_sets("grafana-token-file").unwrap_or_else(|| "file".into())
            };
            rows.push(("grafana-token", "set".into(), src));
            rows.push((
                "grafana-user",
                "not used (a token is set)".into(),
                "-".into(),
            ));
        }
        GrafanaAuth::Password {
            user, defaulted, ..
        } => {
            rows.push((
                "grafana-user",
                user.clone(),
                from_env_flag(
                    args.grafana_user.as_ref(),
                    "GRAFANA_USER",
                    "--grafana-user",
                    "grafana-user",
                ),
            ));
            let (value, src) = if *defaulted {
                ("the default (admin)".to_string(), "default".to_string())
            } else if let Some(p) = &args.grafana_password_file {
                (
                    "set".into(),
                    format!("flag --grafana-password-file {}", p.display()),
                )
            } else if env.grafana_password.is_some() {
                ("set".into(), "env GRAFANA_PASSWORD".into())
            } else {
                (
                    "set".into(),
                    file_sets("grafana-password-file").unwrap_or_else(|| "file".into()),
                )
            };
            rows.push(("grafana-password", value, src));
        }
    }
    rows.push((
        "prometheus-url",
        s.prometheus_url
            .as_deref()
            .map(crate::report::json::redacted_url)
            .unwrap_or_else(|| "none: through Grafana's data source proxy".into()),
        from_env_flag(
            args.prometheus_url.as_ref(),
            "MSA_DOCTOR_PROMETHEUS_URL",
            "--prometheus-url",
            "prometheus-url",
        ),
    ));
    let (kubeconfig, kube_src) = match (&s.kubeconfig, &args.kubeconfig) {
        (Some(p), Some(_)) => (p.display().to_string(), "flag --kubeconfig".to_string()),
        (Some(p), None) => (p.display().to_string(), from(None, "kubeconfig")),
        (None, _) => match getenv("KUBECONFIG") {
            Some(k) => (k, "env KUBECONFIG".into()),
            None => (
                "inferred: ~/.kube/config, else in-cluster".into(),
                "default".into(),
            ),
        },
    };
    rows.push(("kubeconfig", kubeconfig, kube_src));
    rows.push((
        "context",
        s.context
            .clone()
            .unwrap_or_else(|| "the kubeconfig's current context".into()),
        from(args.context.as_ref().map(|_| "--context"), "context"),
    ));
    rows.push((
        "no-kube",
        s.no_kube.to_string(),
        from(args.no_kube.then_some("--no-kube"), "no-kube"),
    ));
    rows.push((
        "namespace",
        s.namespace.clone(),
        from(
            args.namespace.as_ref().map(|_| "-n/--namespace"),
            "namespace",
        ),
    ));
    rows.push((
        "monitoring-namespace",
        s.monitoring_namespace.clone(),
        from(
            args.monitoring_namespace
                .as_ref()
                .map(|_| "--monitoring-namespace"),
            "monitoring-namespace",
        ),
    ));
    rows.push((
        "services",
        s.services.join(","),
        from(args.services.as_ref().map(|_| "--services"), "services"),
    ));
    rows.push((
        "topic",
        s.topic.clone(),
        from(args.topic.as_ref().map(|_| "--topic"), "topic"),
    ));
    let dur = |d: std::time::Duration| humantime::format_duration(d).to_string();
    rows.push((
        "window",
        dur(s.window),
        from(args.window.map(|_| "--window"), "window"),
    ));
    rows.push((
        "timeout",
        dur(s.timeout),
        from(args.timeout.map(|_| "--timeout"), "timeout"),
    ));
    rows.push((
        "wait",
        s.wait.map(dur).unwrap_or_else(|| "off".into()),
        from(args.wait.map(|_| "--wait"), "wait"),
    ));
    rows.push((
        "jobs",
        s.jobs.to_string(),
        from(args.jobs.map(|_| "--jobs"), "jobs"),
    ));
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(",")
        }
    };
    rows.push((
        "only",
        list(&s.only),
        from((!r.only.is_empty()).then_some("--only"), "only"),
    ));
    rows.push((
        "skip",
        list(&s.skip),
        from((!r.skip.is_empty()).then_some("--skip"), "skip"),
    ));
    let dirs: Vec<String> = s
        .check_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let checks_src = match (r.checks.is_empty(), file_sets("checks")) {
        (false, Some(f)) => format!("flag --checks, then {f}"),
        (false, None) => "flag --checks".into(),
        (true, Some(f)) => f,
        (true, None) => "default".into(),
    };
    rows.push(("checks", list(&dirs), checks_src));
    rows.push((
        "output",
        s.output.name().to_string(),
        from(r.output.map(|_| "-o/--output"), "output"),
    ));
    rows.push((
        "strict",
        s.strict.to_string(),
        from(r.strict.then_some("--strict"), "strict"),
    ));
    let color_src = if r.color.is_some() {
        "flag --color".to_string()
    } else if env.no_color {
        "env NO_COLOR".into()
    } else {
        from(None, "color")
    };
    rows.push(("color", format!("{:?}", s.color).to_lowercase(), color_src));
    let verbosity_src = if r.quiet {
        "flag -q".to_string()
    } else if r.verbose {
        "flag -v".into()
    } else {
        "default".into()
    };
    rows.push((
        "verbosity",
        format!("{:?}", s.verbosity).to_lowercase(),
        verbosity_src,
    ));

    let mut out = String::new();
    let looked: Vec<String> = config_candidates()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    match file {
        Some(f) => out.push_str(&format!("config file: {}\n", f.path().display())),
        None => out.push_str(&format!(
            "config file: none (looked for {})\n",
            looked.join(", ")
        )),
    }
    out.push_str("precedence: flag > environment > config file > default\n\n");
    let w_key = rows.iter().map(|r| r.0.len()).max().unwrap_or(7).max(7);
    let w_val = rows
        .iter()
        .map(|r| r.1.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    out.push_str(&format!(
        "{:<w_key$}  {:<w_val$}  FROM\n",
        "SETTING", "VALUE"
    ));
    for (k, v, src) in rows {
        out.push_str(&format!("{k:<w_key$}  {v:<w_val$}  {src}\n"));
    }
    out
}
