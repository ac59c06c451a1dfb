//! The run's settings: a flag beats the environment, which beats the config file
//! (`msa-doctor.toml`), which beats the default. Secrets are wrapped in [`Secret`], which never
//! prints its value.

use crate::cli::{CheckArgs, ColorChoice, Format, ReportArgs};
use crate::config::{ConfigError, line_of};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A password or token: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the checks reach Grafana.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrafanaAuth {
    /// User and password (basic auth and `POST /login`).
    Password {
        /// The login.
        user: String,
        /// The password.
        password: Secret,
        /// Whether the password is the built-in default (nothing was configured).
        defaulted: bool,
    },
    /// A service-account token (`Authorization: Bearer`).
    Token(Secret),
}

/// Everything a run needs to know, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Grafana as the laptop reaches it, without a trailing slash.
    pub grafana_url: String,
    /// How to authenticate to Grafana.
    pub grafana_auth: GrafanaAuth,
    /// Prometheus directly; `None` means through Grafana's data source proxy.
    pub prometheus_url: Option<String>,
    /// The kubeconfig file, when given.
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context, when given.
    pub context: Option<String>,
    /// Cluster checks are off.
    pub no_kube: bool,
    /// The application namespace.
    pub namespace: String,
    /// The namespace of Grafana and Prometheus.
    pub monitoring_namespace: String,
    /// The services (Deployments) that must be scraped.
    pub services: Vec<String>,
    /// The Kafka topic of the lag panel.
    pub topic: String,
    /// The dashboard's time range.
    pub window: Duration,
    /// Each check's deadline.
    pub timeout: Duration,
    /// `--wait`, when given.
    pub wait: Option<Duration>,
    /// Checks running at once at most.
    pub jobs: usize,
    /// Run only these (ids or categories).
    pub only: Vec<String>,
    /// Do not run these.
    pub skip: Vec<String>,
    /// Extra check folders, from the flags then the config file.
    pub check_dirs: Vec<PathBuf>,
    /// The report format.
    pub output: Format,
    /// Warnings fail the run.
    pub strict: bool,
    /// When to colour.
    pub color: ColorChoice,
    /// How much the human report says (`-q`, `-v`).
    pub verbosity: crate::report::Verbosity,
}

impl Settings {
    /// The defaults of CONTRACT.md, for tests and the practice stack.
    pub fn defaults() -> Self {
        Settings {
            grafana_url: "http://localhost:3000".into(),
            grafana_auth: GrafanaAuth::Password {
                user: "admin".into(),
                password: Secret::new("admin"),
                defaulted: true,
            },
            prometheus_url: None,
            kubeconfig: None,
            context: None,
            no_kube: false,
            namespace: "metacoding".into(),
            monitoring_namespace: "monitoring".into(),
            services: DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect(),
            topic: "order-created".into(),
            window: Duration::from_secs(15 * 60),
            timeout: Duration::from_secs(5),
            wait: None,
            jobs: 16,
            only: vec![],
            skip: vec![],
            check_dirs: vec![],
            output: Format::Human,
            strict: false,
            color: ColorChoice::Auto,
            verbosity: crate::report::Verbosity::Normal,
        }
    }

    /// Values for `{name}` in remedy templates.
    pub fn template_vars(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
        };
        put("grafana_url", &self.grafana_url);
        if let Ok(u) = reqwest::Url::parse(&self.grafana_url) {
            let host = u.host_str().unwrap_or("localhost").to_string();
            let port = u.port_or_known_default().unwrap_or(3000);
            put("grafana_host", &format!("{host}:{port}"));
            put("grafana_port", &port.to_string());
        }
        put("namespace", &self.namespace);
        put("monitoring_namespace", &self.monitoring_namespace);
        put("topic", &self.topic);
        put(
            "window",
            &humantime::format_duration(self.window).to_string(),
        );
        put("services", &self.services.join(","));
        m
    }
}

/// The guide's four services.
pub const DEFAULT_SERVICES: [&str; 4] = [
    "user-service",
    "order-service",
    "delivery-service",
    "orchestrator-service",
];

/// The longest duration any option takes: ten years (of 365 days). Longer ones are typing
/// mistakes, and deadlines past them would overflow the clock's arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses `15m`, `1h30m`, `500ms`, `2s`: humantime's syntax, more than zero and at most
/// [`MAX_DURATION`]. The caller names the flag or the config key.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (try 5s, 15m or 1h)"))?;
    if d.is_zero() {
        return Err(format!("invalid duration {s:?}: must be more than zero"));
    }
    if d > MAX_DURATION {
        return Err(format!(
            "invalid duration {s:?}: longer than 10 years (try 5s, 15m or 1h)"
        ));
    }
    Ok(d)
}

/// `msa-doctor.toml`: the options of `check` under their own names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    grafana_url: Option<String>,
    grafana_user: Option<String>,
    grafana_password_file: Option<PathBuf>,
    grafana_token_file: Option<PathBuf>,
    prometheus_url: Option<String>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    no_kube: Option<bool>,
    namespace: Option<String>,
    monitoring_namespace: Option<String>,
    services: Option<Vec<String>>,
    topic: Option<String>,
    window: Option<String>,
    timeout: Option<String>,
    wait: Option<String>,
    jobs: Option<usize>,
    only: Option<Vec<String>>,
    skip: Option<Vec<String>>,
    checks: Option<Vec<PathBuf>>,
    output: Option<Format>,
    strict: Option<bool>,
    color: Option<ColorChoice>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    text: String,
}

impl FileConfig {
    /// Reads `--config FILE`, else the first of [`config_candidates`] that exists; `None`
    /// when there is none.
    pub fn load(explicit: Option<&Path>) -> Result<Option<FileConfig>, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match config_candidates().into_iter().find(|p| p.is_file()) {
                Some(p) => p,
                None => return Ok(None),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut cfg: FileConfig =
            toml::from_str(&text).map_err(|e| ConfigError::at(&path, &text, &e))?;
        // Relative paths in the file are relative to the file.
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dirs) = cfg.checks.as_mut() {
            dirs.iter_mut().for_each(rebase);
        }
        for p in [
            &mut cfg.grafana_password_file,
            &mut cfg.grafana_token_file,
            &mut cfg.kubeconfig,
        ]
        .into_iter()
        .flatten()
        {
            rebase(p);
        }
        cfg.path = path;
        cfg.text = text;
        Ok(Some(cfg))
    }

    /// The file that was read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path:line` when this file sets `key` (kebab-case, as written in it).
    pub fn sets(&self, key: &str) -> Option<String> {
        self.text
            .lines()
            .position(|l| {
                let t = l.trim_start();
                t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
            })
            .map(|i| format!("{}:{}", self.path.display(), i + 1))
    }

    fn duration(&self, key: &str, v: &Option<String>) -> Result<Option<Duration>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) => parse_duration(s)
                .map(Some)
                .map_err(|message| self.invalid(key, message)),
        }
    }

    /// An invalid value of `key` in this file, at the line that sets it.
    fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.clone(),
            line: line_of_key(&self.text, key),
            field: key.to_string(),
            message: message.into(),
        }
    }

    /// Re-labels a value error as this file's, at the line of `key`.
    fn blame(&self, key: &str, e: ConfigError) -> ConfigError {
        match e {
            ConfigError::Usage(message) => self.invalid(key, message),
            other => other,
        }
    }
}

/// The config files looked for when `--config` is not given, in order; the first that exists
/// is read (they are not merged): `./msa-doctor.toml`, then the user's
/// `msa-doctor/config.toml` (see [`user_config_path`]).
pub fn config_candidates() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("msa-doctor.toml")];
    v.extend(user_config_path(
        std::env::var_os("XDG_CONFIG_HOME"),
        dirs::config_dir(),
    ));
    v
}

/// The user's config file: `$XDG_CONFIG_HOME/msa-doctor/config.toml` when that variable holds
/// an absolute path (on every platform), else under the platform's config folder
/// (`~/.config` on Linux, `~/Library/Application Support` on macOS, `%APPDATA%` on Windows).
pub fn user_config_path(
    xdg_config_home: Option<std::ffi::OsString>,
    platform_dir: Option<PathBuf>,
) -> Option<PathBuf> {
    let xdg = xdg_config_home
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    xdg.or(platform_dir)
        .map(|d| d.join("msa-doctor").join("config.toml"))
}

/// `msa-doctor config path`: the files looked for, in order, and which one is read.
pub fn config_paths_text() -> String {
    let mut s = String::new();
    let mut found = false;
    for p in config_candidates() {
        let state = if p.is_file() && !found {
            found = true;
            "read"
        } else if p.is_file() {
            "exists, not read (an earlier one was)"
        } else {
            "absent"
        };
        s.push_str(&format!("{}\t{state}\n", p.display()));
    }
    s
}

fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(key) && t[key.len()..].trim_start().starts_with('=')
        })
        .map(|i| i + 1)
        .unwrap_or_else(|| line_of(text, 0))
}

/// The environment variables that feed the settings (read once, so tests can inject them).
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `GRAFANA_PASSWORD`.
    pub grafana_password: Option<String>,
    /// `GRAFANA_TOKEN`.
    pub grafana_token: Option<String>,
    /// `NO_COLOR` is set (to anything but the empty string): the environment's `--color never`.
    pub no_color: bool,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Env {
            grafana_password: get("GRAFANA_PASSWORD"),
            grafana_token: get("GRAFANA_TOKEN"),
            no_color: get("NO_COLOR").is_some(),
        }
    }
}

fn read_secret(path: &Path, what: &str) -> Result<Secret, ConfigError> {
    let s = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        message: format!("cannot read the {what} file: {e}"),
    })?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        return Err(ConfigError::Read {
            path: path.to_path_buf(),
            message: format!("the {what} file is empty"),
        });
    }
    Ok(Secret::new(s))
}

/// Checks a URL option. A URL with user info (`http://admin:pass@host`) is refused: it would
/// put the password in every report and every request line; the message shows the URL without
/// it and says how to pass the password. An invalid URL is not echoed either (it may hold one).
fn validate_url(url: &str, what: &str) -> Result<String, ConfigError> {
    let u = url.trim().trim_end_matches('/').to_string();
    match reqwest::Url::parse(&u) {
        Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => {
            if !p.username().is_empty() || p.password().is_some() {
                let mut bare = p.clone();
                let _ = bare.set_username("");
                let _ = bare.set_password(None);
                let how = if what.starts_with("Grafana") {
                    "pass the user with --grafana-user (or GRAFANA_USER) and the password with \
                     GRAFANA_PASSWORD or --grafana-password-file FILE (or a token: GRAFANA_TOKEN)"
                } else {
                    "msa-doctor sends Prometheus no credentials: when it needs some, leave \
                     the Prometheus URL out and msa-doctor goes through Grafana's data source \
                     proxy, which holds them"
                };
                return Err(ConfigError::Usage(format!(
                    "the {what} holds a user name or password; give it as {} and {how}",
                    bare.as_str().trim_end_matches('/')
                )));
            }
            Ok(u)
        }
        _ => Err(ConfigError::Usage(format!(
            "invalid {what} {:?}: expected http://host:port or https://host:port",
            without_user_info(url)
        ))),
    }
}

/// The text with anything between `://` and the last `@` before the next `/` cut out, for
/// messages about a URL that did not parse.
fn without_user_info(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}<user info removed>@{}", &url[..start], &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn validate_name(name: &str, what: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Usage(format!(
            "invalid {what} {name:?}: Kubernetes names are lowercase letters, digits and '-'"
        )))
    }
}

/// Merges flags, environment, config file and defaults into [`Settings`].
pub fn resolve(
    args: &CheckArgs,
    env: &Env,
    file: Option<&FileConfig>,
) -> Result<Settings, ConfigError> {
    let d = Settings::defaults();
    let empty = FileConfig::default();
    let f = file.unwrap_or(&empty);
    // A value from the file that does not hold is named with the file and its line.
    let grafana_url = match (&args.grafana_url, &f.grafana_url) {
        (Some(u), _) => validate_url(u, "Grafana URL")?,
        (None, Some(u)) => validate_url(u, "Grafana URL").map_err(|e| f.blame("grafana-url", e))?,
        (None, None) => d.grafana_url,
    };
    let prometheus_url = match (&args.prometheus_url, &f.prometheus_url) {
        (Some(u), _) => Some(validate_url(u, "Prometheus URL")?),
        (None, Some(u)) => {
            Some(validate_url(u, "Prometheus URL").map_err(|e| f.blame("prometheus-url", e))?)
        }
        (None, None) => None,
    };

    // A token (file flag, then GRAFANA_TOKEN, then the config file's token file) wins over a
    // user and password.
    let token = if let Some(p) = &args.grafana_token_file {
        Some(read_secret(p, "token")?)
    } else if let Some(t) = &env.grafana_token {
        Some(Secret::new(t.clone()))
    } else if let Some(p) = &f.grafana_token_file {
        Some(read_secret(p, "token")?)
    } else {
        None
    };
    let grafana_auth = match token {
        Some(t) => GrafanaAuth::Token(t),
        None => {
            let user = args
                .grafana_user
                .clone()
                .or(f.grafana_user.clone())
                .unwrap_or_else(|| "admin".into());
            let (password, defaulted) = if let Some(p) = &args.grafana_password_file {
                (read_secret(p, "password")?, false)
            } else if let Some(p) = &env.grafana_password {
                (Secret::new(p.clone()), false)
            } else if let Some(p) = &f.grafana_password_file {
                (read_secret(p, "password")?, false)
            } else {
                (Secret::new("admin"), true)
            };
            GrafanaAuth::Password {
                user,
                password,
                defaulted,
            }
        }
    };

    // Blames the file when the value came from it and no flag overrode it.
    let blame = |from_flag: bool, key: &str, e: ConfigError| {
        if from_flag { e } else { f.blame(key, e) }
    };
    let namespace = args
        .namespace
        .clone()
        .or(f.namespace.clone())
        .unwrap_or(d.namespace);
    validate_name(&namespace, "namespace")
        .map_err(|e| blame(args.namespace.is_some(), "namespace", e))?;
    let monitoring_namespace = args
        .monitoring_namespace
        .clone()
        .or(f.monitoring_namespace.clone())
        .unwrap_or(d.monitoring_namespace);
    validate_name(&monitoring_namespace, "monitoring namespace").map_err(|e| {
        blame(
            args.monitoring_namespace.is_some(),
            "monitoring-namespace",
            e,
        )
    })?;
    let services: Vec<String> = args
        .services
        .clone()
        .or(f.services.clone())
        .unwrap_or(d.services)
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let services_from_flag = args.services.is_some();
    if services.is_empty() {
        return Err(if services_from_flag {
            ConfigError::Usage("--services names no service".into())
        } else {
            f.invalid("services", "names no service")
        });
    }
    for s in &services {
        validate_name(s, "service name").map_err(|e| blame(services_from_flag, "services", e))?;
    }
    let window = match args.window {
        Some(w) => w,
        None => f.duration("window", &f.window)?.unwrap_or(d.window),
    };
    let timeout = match args.timeout {
        Some(t) => t,
        None => f.duration("timeout", &f.timeout)?.unwrap_or(d.timeout),
    };
    let wait = match args.wait {
        Some(w) => Some(w),
        None => f.duration("wait", &f.wait)?,
    };
    let jobs = args.jobs.or(f.jobs).unwrap_or(d.jobs);
    if jobs == 0 {
        return Err(if args.jobs.is_some() {
            ConfigError::Usage("--jobs must be at least 1".into())
        } else {
            f.invalid("jobs", "must be at least 1")
        });
    }
    let r: &ReportArgs = &args.report;
    let mut check_dirs = r.checks.clone();
    check_dirs.extend(f.checks.clone().unwrap_or_default());
    Ok(Settings {
        grafana_url,
        grafana_auth,
        prometheus_url,
        kubeconfig: args.kubeconfig.clone().or(f.kubeconfig.clone()),
        context: args.context.clone().or(f.context.clone()),
        no_kube: args.no_kube || f.no_kube.unwrap_or(false),
        namespace,
        monitoring_namespace,
        services,
        topic: args.topic.clone().or(f.topic.clone()).unwrap_or(d.topic),
        window,
        timeout,
        wait,
        jobs,
        only: if r.only.is_empty() {
            f.only.clone().unwrap_or_default()
        } else {
            r.only.clone()
        },
        skip: if r.skip.is_empty() {
            f.skip.clone().unwrap_or_default()
        } else {
            r.skip.clone()
        },
        check_dirs,
        output: r.output.or(f.output).unwrap_or(d.output),
        strict: r.strict || f.strict.unwrap_or(false),
        // NO_COLOR is the environment's word on --color: it beats the file, not the flag.
        color: r
            .color
            .or(env.no_color.then_some(ColorChoice::Never))
            .or(f.color)
            .unwrap_or(d.color),
        verbosity: crate::report::Verbosity::from_flags(r.quiet, r.verbose),
    })
}
