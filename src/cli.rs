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
    long_version = crate::version::LONG_VERSION,
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
    /// Re-run the checklist every interval and serve `/metrics` and `/healthz`.
    Serve(ServeArgs),
    /// Print a check's documentation (embedded in the binary); without ID, the ids.
    Docs(DocsArgs),
    /// Print a shell completion script: bash, zsh, fish or powershell.
    Completion(CompletionArgs),
    /// Print the man page (roff) to stdout.
    Man,
    /// The version, commit, build date and target.
    Version,
    /// The configuration: `config show` prints every setting and where it came from.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `msa-doctor config ...`.
// `Show` carries every option of `check`; the enum is built once per process.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every resolved setting and where it came from (flag, environment, file, default).
    Show(CheckArgs),
    /// Print the config files looked for, in order, and whether each exists.
    Path,
}

/// Options of `serve`.
#[derive(Debug, Args, Default, Clone)]
pub struct ServeArgs {
    /// The address to listen on: `:9464`, `0.0.0.0:9464`, `127.0.0.1:0`.
    #[arg(long, value_name = "ADDR", default_value = ":9464")]
    pub listen: String,
    /// How often the checklist runs.
    #[arg(long, value_parser = duration, value_name = "DURATION", default_value = "1m")]
    pub interval: Duration,
    #[command(flatten)]
    /// Connection and selection options, as for `check`.
    pub check: CheckArgs,
}

/// Options of `docs`.
#[derive(Debug, Args, Default, Clone)]
pub struct DocsArgs {
    /// The check id (`msa-doctor docs` lists them).
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

/// Options of `completion`.
#[derive(Debug, Args, Clone)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// The shells `completion` writes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Bash (`source <(msa-doctor completion bash)`).
    Bash,
    /// Zsh (a `_msa-doctor` file in `$fpath`).
    Zsh,
    /// Fish (`~/.config/fish/completions/msa-doctor.fish`).
    Fish,
    /// PowerShell (`msa-doctor completion powershell | Out-String | Invoke-Expression`).
    Powershell,
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
    /// Prometheus text exposition (`msa_doctor_check_status` ...), for node_exporter's textfile
    /// collector.
    Prometheus,
}

impl Format {
    /// The name `--output` takes.
    pub fn name(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Junit => "junit",
            Format::Markdown => "markdown",
            Format::Prometheus => "prometheus",
        }
    }

    /// `Ok` when `self` is one of `supported`, else the usage error naming them.
    pub fn supported_by(self, command: &str, supported: &[Format]) -> Result<Format, String> {
        if supported.contains(&self) {
            Ok(self)
        } else {
            let names: Vec<&str> = supported.iter().map(|f| f.name()).collect();
            Err(format!(
                "`{command}` cannot write --output {}: it writes {}",
                self.name(),
                names.join(", ")
            ))
        }
    }
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
    /// Grafana as the laptop reaches it (the port-forward) [default: http://localhost:3000].
    // The value is never shown in --help: a URL may hold a password (which is refused).
    #[arg(
        long,
        env = "MSA_DOCTOR_GRAFANA_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub grafana_url: Option<String>,
    /// The Grafana user to log in as [default: admin].
    #[arg(long, env = "GRAFANA_USER", value_name = "USER")]
    pub grafana_user: Option<String>,
    /// A file holding the Grafana password (never a flag value; or set GRAFANA_PASSWORD)
    /// [default: admin].
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
    /// The application namespace [default: metacoding].
    #[arg(short = 'n', long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The namespace of Grafana and Prometheus [default: monitoring].
    #[arg(long, value_name = "NS")]
    pub monitoring_namespace: Option<String>,
    /// The services (Deployments) that must be scraped
    /// [default: user-service,order-service,delivery-service,orchestrator-service].
    #[arg(long, value_delimiter = ',', value_name = "A,B,C")]
    pub services: Option<Vec<String>>,
    /// The Kafka topic of the lag panel [default: order-created].
    #[arg(long, value_name = "NAME")]
    pub topic: Option<String>,
    /// The dashboard's time range ("Last 15 minutes") [default: 15m].
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub window: Option<Duration>,
    /// The deadline of each check [default: 5s].
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Re-run failing checks until they pass or this much time is up.
    #[arg(long, value_parser = duration, value_name = "DURATION")]
    pub wait: Option<Duration>,
    /// Checks running at once at most [default: 16].
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
    /// The config file [default: ./msa-doctor.toml, then the user's config.toml, when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The report format [default: human].
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Warnings fail the run.
    #[arg(long)]
    pub strict: bool,
    /// When to colour the report [default: auto].
    #[arg(long, value_enum, value_name = "WHEN")]
    pub color: Option<ColorChoice>,
    /// Problems and the summary only: checks that warned, failed or errored, and the last line.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Passing checks' details and evidence too.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Options of `list`.
#[derive(Debug, Args, Default, Clone)]
pub struct ListArgs {
    /// A folder of extra check files (`*.toml`); repeatable.
    #[arg(long, value_name = "DIR")]
    pub checks: Vec<PathBuf>,
    /// The config file [default: ./msa-doctor.toml, then the user's config.toml, when present].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `human` (a table) or `json`.
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
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

/// The name help and usage show: `kubectl msa-doctor` when the program was started as
/// kubectl's plugin (a binary or link named `kubectl-msa_doctor`), else `msa-doctor`.
pub fn display_name(argv0: Option<&std::ffi::OsStr>) -> &'static str {
    let stem = argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_stem())
        .and_then(|s| s.to_str())
        .unwrap_or("");
    // kubectl maps `kubectl msa-doctor` to a `kubectl-msa_doctor` on PATH (a dash in a plugin's
    // command is an underscore in its file name); `kubectl-msa-doctor` is accepted too.
    if stem.starts_with("kubectl-msa") {
        "kubectl msa-doctor"
    } else {
        "msa-doctor"
    }
}

/// The clap command, named for how the program was started.
pub fn command_named(name: &'static str) -> clap::Command {
    use clap::CommandFactory;
    let cmd = Cli::command();
    if name == "msa-doctor" {
        cmd
    } else {
        cmd.name(name).bin_name(name).display_name(name)
    }
}

/// Parses `argv` (the first item is the program), naming the program as it was started.
pub fn try_parse_from<I, T>(argv: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
    let name = display_name(argv.first().map(|s| s.as_os_str()));
    let mut cmd = command_named(name);
    let matches = cmd.try_get_matches_from_mut(argv)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// Parses the process's command line (see [`try_parse_from`]).
pub fn try_parse() -> Result<Cli, clap::Error> {
    try_parse_from(std::env::args_os())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[default: X]` the help of `check`'s option `long` shows.
    fn shown_default(long: &str) -> String {
        let cmd = command_named("msa-doctor");
        let check = cmd.find_subcommand("check").expect("check");
        let arg = check
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap_or_else(|| panic!("no --{long}"));
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        help.split("[default: ")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap_or_else(|| panic!("--{long} shows no default: {help}"))
            .to_string()
    }

    #[test]
    fn the_defaults_help_shows_are_the_defaults_that_apply() {
        let d = crate::settings::Settings::defaults();
        let dur = |x: Duration| humantime::format_duration(x).to_string();
        assert_eq!(shown_default("grafana-url"), d.grafana_url);
        assert_eq!(shown_default("namespace"), d.namespace);
        assert_eq!(
            shown_default("monitoring-namespace"),
            d.monitoring_namespace
        );
        assert_eq!(shown_default("services"), d.services.join(","));
        assert_eq!(shown_default("topic"), d.topic);
        assert_eq!(shown_default("window"), dur(d.window));
        assert_eq!(shown_default("timeout"), dur(d.timeout));
        assert_eq!(shown_default("jobs"), d.jobs.to_string());
        assert_eq!(shown_default("output"), d.output.name());
        assert_eq!(shown_default("color"), "auto");
        if let crate::settings::GrafanaAuth::Password { user, .. } = &d.grafana_auth {
            assert_eq!(&shown_default("grafana-user"), user);
        }
    }

    #[test]
    fn the_kubectl_plugin_name() {
        use std::ffi::OsStr;
        assert_eq!(
            display_name(Some(OsStr::new("/usr/local/bin/kubectl-msa_doctor"))),
            "kubectl msa-doctor"
        );
        assert_eq!(
            display_name(Some(OsStr::new("kubectl-msa_doctor.exe"))),
            "kubectl msa-doctor"
        );
        assert_eq!(
            display_name(Some(OsStr::new("/usr/bin/msa-doctor"))),
            "msa-doctor"
        );
        assert_eq!(display_name(None), "msa-doctor");
        let e = try_parse_from(["kubectl-msa_doctor", "--nope"]).unwrap_err();
        assert!(e.to_string().contains("kubectl msa-doctor"), "{e}");
        let cli = try_parse_from(["msa-doctor", "-n", "shop", "-o", "json", "-q"]).unwrap();
        assert_eq!(cli.check.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.check.report.output, Some(Format::Json));
        assert!(cli.check.report.quiet);
    }
}
