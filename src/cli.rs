//! The command line of CONTRACT.md, with clap. Only parsing lives here: merging with the
//! environment and the config file is [`crate::settings`]'s job.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Tells why a Grafana panel says "No data", and what to type to fix it.
#[derive(Debug, Parser)]
#[command(
    name = "msa-doctor",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; `check` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The options of `check`, when no command is named.
    #[command(flatten)]
    pub check: CheckArgs,
}

/// The commands.
// `check` and `explain` carry every option of the contract; the enum is built once per
// process, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the checklist against a live stack and print the report (the default).
    Check(CheckArgs),
    /// Every check: id, category, needs, title and where it was defined.
    List(ListArgs),
    /// Start the practice stack on loopback and run the checklist against it.
    Demo(DemoArgs),
    /// Say why a PromQL query (or every panel of a dashboard) returns no data.
    Explain(ExplainArgs),
    /// The checks that need no live stack, over Kubernetes YAML files and folders.
    Lint(LintArgs),
}

/// Options of `explain`: a query, or `--dashboard UID` / `--all-dashboards`, plus the
/// connection options of `check`.
#[derive(Debug, Args, Default, Clone)]
pub struct ExplainArgs {
    /// The PromQL query to explain.
    #[arg(value_name = "PROMQL", required_unless_present_any = ["dashboard", "all_dashboards"], conflicts_with_all = ["dashboard", "all_dashboards"])]
    pub query: Option<String>,
    /// Scan every panel of this dashboard (by uid).
    #[arg(long, value_name = "UID", conflicts_with = "all_dashboards")]
    pub dashboard: Option<String>,
    /// Scan every panel of every dashboard.
    #[arg(long)]
    pub all_dashboards: bool,
    /// How far back "did it ever exist" looks.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "24h")]
    pub lookback: Duration,
    #[command(flatten)]
    /// Connection, window and output options, as for `check`.
    pub check: CheckArgs,
}

/// Options of `lint`.
#[derive(Debug, Args, Default, Clone)]
pub struct LintArgs {
    /// Kubernetes YAML/JSON files, folders (recursive, .gitignore honoured), Helm charts,
    /// Kustomize trees; `-` reads manifests from standard input.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// The services that must be scraped (a Deployment/StatefulSet name, a Service name, or an
    /// app label); without it, the services are discovered.
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    pub services: Option<Vec<String>>,
    /// A values file passed to `helm template` for every chart; repeatable.
    #[arg(long, value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// The report format.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<LintFormat>,
    /// Warnings fail the run.
    #[arg(long)]
    pub strict: bool,
    /// When to colour the report.
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
}

/// Output formats of `lint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    /// `file:line: severity: message`, the fix under it.
    Human,
    /// `msa-doctor/lint/v1`, for scripts.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning.
    Sarif,
    /// JUnit XML, one test case per checked workload.
    Junit,
    /// Tables and fixes, for a pull-request comment or a job summary.
    Markdown,
}

/// Output formats of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Grouped by category, for a person.
    Human,
    /// `msa-doctor/v1`, for scripts.
    Json,
    /// JUnit XML, for CI test reports.
    Junit,
    /// A table and the remedies, for a pull-request comment or a job summary.
    Markdown,
}

/// When to colour the human report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorChoice {
    /// Only on a terminal, and not when NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::settings::parse_duration(s)
}

/// Options of `check` (and, through [`ReportArgs`], of `demo`).
#[derive(Debug, Args, Default, Clone)]
pub struct CheckArgs {
    /// Grafana as the laptop reaches it (the port-forward).
    // The value is never shown in --help: a URL may hold a password (which is refused).
    #[arg(
        long,
        env = "MSA_DOCTOR_GRAFANA_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub grafana_url: Option<String>,
    /// The Grafana user to log in as.
    #[arg(long, env = "GRAFANA_USER", value_name = "USER")]
    pub grafana_user: Option<String>,
    /// A file holding the Grafana password (never a flag value; or set GRAFANA_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub grafana_password_file: Option<PathBuf>,
    /// A file holding a Grafana service-account token (or set GRAFANA_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub grafana_token_file: Option<PathBuf>,
    /// Query Prometheus directly instead of through Grafana's data source proxy.
    #[arg(
        long,
        env = "MSA_DOCTOR_PROMETHEUS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub prometheus_url: Option<String>,
    /// The kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Do not talk to the cluster: cluster checks report skip.
    #[arg(long)]
    pub no_kube: bool,
    /// The application namespace.
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The namespace of Grafana and Prometheus.
    #[arg(long, value_name = "NS")]
    pub monitoring_namespace: Option<String>,
    /// The services (Deployments) that must be scraped.
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    pub services: Option<Vec<String>>,
    /// The Kafka topic of the lag panel.
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// The dashboard's time range ("Last 15 minutes").
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub window: Option<Duration>,
    /// The deadline of each check.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Re-run failing checks until they pass or this much time is up.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub wait: Option<Duration>,
    /// Checks running at once at most.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    /// Report and selection options.
    pub report: ReportArgs,
}

/// Options shared by `check` and `demo`: what runs and how it is printed.
#[derive(Debug, Args, Default, Clone)]
pub struct ReportArgs {
    /// Run only this check or category (and its prerequisites); repeatable.
    #[arg(long, value_name = "ID_OR_CATEGORY")]
    pub only: Vec<String>,
    /// Do not run this check or category; repeatable.
    #[arg(long, value_name = "ID_OR_CATEGORY")]
    pub skip: Vec<String>,
    /// A folder of extra check files (`*.toml`); repeatable.
    #[arg(long, value_name = "DIR")]
    pub checks: Vec<PathBuf>,
    /// The config file (default ./msa-doctor.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The report format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Warnings fail the run.
    #[arg(long)]
    pub strict: bool,
    /// When to colour the report.
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
}

/// Options of `list`.
#[derive(Debug, Args, Default, Clone)]
pub struct ListArgs {
    /// A folder of extra check files (`*.toml`); repeatable.
    #[arg(long, value_name = "DIR")]
    pub checks: Vec<PathBuf>,
    /// The config file (default ./msa-doctor.toml when present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `human` (a table) or `json`.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
}

/// Options of `demo`.
#[derive(Debug, Args, Default, Clone)]
pub struct DemoArgs {
    /// Break the practice stack in this named way; repeatable.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<String>,
    /// Print the faults, one per line, and exit.
    #[arg(long)]
    pub list_faults: bool,
    /// The time-series database that scrapes the emulated pods.
    #[arg(long, value_enum, default_value = "prometheus")]
    pub backend: Backend,
    /// The Prometheus binary to run.
    #[arg(long, value_name = "PATH")]
    pub prometheus_bin: Option<PathBuf>,
    /// Print shell lines for the stack, then serve it until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// The deadline of each check.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    /// Report and selection options.
    pub report: ReportArgs,
}

/// The scraper of the practice stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Debian's Prometheus 2.42, discovering pods over HTTP SD.
    #[default]
    Prometheus,
    /// Debian's VictoriaMetrics, with real kubernetes_sd_configs against the emulated API.
    VictoriaMetrics,
}
