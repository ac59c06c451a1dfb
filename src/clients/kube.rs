//! The Kubernetes API: the client of a run (kubeconfig files merged as kubectl merges them, the
//! user's exec credential plugin run once, under the deadline, in its own process group) and
//! the lists several checks read, fetched once per run and namespace.

use super::error::{CallError, ErrorKind};
use super::redact;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Why there is no Kubernetes client for this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeUnavailable {
    /// True when the user asked for it (`--no-kube`): cluster checks then skip.
    pub disabled: bool,
    /// What went wrong, in words (no secret).
    pub reason: String,
}

fn fail(reason: impl Into<String>) -> KubeUnavailable {
    KubeUnavailable {
        disabled: false,
        reason: redact::clean(&reason.into()),
    }
}

/// Where the kubeconfig comes from.
#[derive(Clone, Debug, Default)]
pub struct KubeSource {
    /// `--kubeconfig`.
    pub file: Option<PathBuf>,
    /// `KUBECONFIG` as set (several paths, the platform's separator).
    pub env: Option<std::ffi::OsString>,
    /// `--context`.
    pub context: Option<String>,
    /// The deadline of the exec plugin and of each call.
    pub timeout: Duration,
}

impl KubeSource {
    /// From the settings and this process's `KUBECONFIG`.
    pub fn from_process(file: Option<PathBuf>, context: Option<String>, timeout: Duration) -> Self {
        KubeSource {
            file,
            env: std::env::var_os("KUBECONFIG"),
            context,
            timeout,
        }
    }
}

/// Reads the kubeconfig as kubectl does: `--kubeconfig`, else every file of `KUBECONFIG`
/// merged (missing files ignored, as kubectl ignores them; a file that cannot be read or
/// parsed is named), else `~/.kube/config`. `Ok(None)`: no kubeconfig at all.
pub fn read_kubeconfig(src: &KubeSource) -> Result<Option<Kubeconfig>, KubeUnavailable> {
    let read = |p: &Path| {
        Kubeconfig::read_from(p)
            .map_err(|e| fail(format!("kubeconfig {}: {}", p.display(), error_chain(&e))))
    };
    if let Some(p) = &src.file {
        if !p.exists() {
            return Err(fail(format!("--kubeconfig {}: no such file", p.display())));
        }
        return read(p).map(Some);
    }
    if let Some(v) = &src.env {
        let paths: Vec<PathBuf> = std::env::split_paths(v)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
            if existing.is_empty() {
                return Err(fail(format!(
                    "KUBECONFIG names no file that exists: {}",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let mut merged = Kubeconfig::default();
            for p in existing {
                let next = read(p)?;
                merged = merged.merge(next).map_err(|e| {
                    fail(format!("KUBECONFIG {}: {}", p.display(), error_chain(&e)))
                })?;
            }
            return Ok(Some(merged));
        }
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from);
    match home.map(|h| h.join(".kube").join("config")) {
        Some(p) if p.exists() => read(&p).map(Some),
        _ => Ok(None),
    }
}

/// Builds the client of a run, and names the context in use.
pub async fn build(
    src: &KubeSource,
    transport: &super::http::Transport,
) -> Result<(kube::Client, Option<String>), KubeUnavailable> {
    let budget = transport.budget();
    let (mut config, context) = match read_kubeconfig(src)? {
        Some(mut kc) => {
            let context = src.context.clone().or_else(|| kc.current_context.clone());
            resolve_exec(&mut kc, context.as_deref(), src.timeout).await?;
            let options = KubeConfigOptions {
                context: src.context.clone(),
                ..Default::default()
            };
            let cfg = kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| fail(format!("kubeconfig: {}", error_chain(&e))))?;
            (cfg, context)
        }
        None => {
            let cfg = kube::Config::incluster().map_err(|_| {
                fail(
                    "no kubeconfig found (KUBECONFIG, ~/.kube/config) and not running in a cluster",
                )
            })?;
            (cfg, Some("in-cluster".to_string()))
        }
    };
    config.connect_timeout = Some(src.timeout);
    config.read_timeout = Some(src.timeout);
    config.write_timeout = Some(src.timeout);
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| fail(format!("kube client: {}", error_chain(&e))))?;
    // The API server's answers are read with the same caps as any other answer (one body,
    // and the run's budget): a larger body is an error, not a memory blow-up.
    let limit = tower::util::MapResponseLayer::new(move |r: http::Response<_>| {
        let budget = budget.clone();
        r.map(|b| {
            super::http::Budgeted::new(
                http_body_util::Limited::new(b, super::http::MAX_BODY),
                budget,
            )
        })
    });
    // Requests are counted with the others (`Transport::counts`, key `kubernetes`).
    let counter = transport.clone();
    let count = tower::util::MapRequestLayer::new(move |r: http::Request<kube::client::Body>| {
        counter.count("kubernetes");
        r
    });
    let client = builder.with_layer(&limit).with_layer(&count).build();
    Ok((client, context))
}

/// Registers the kubeconfig's own secrets with the redactor.
fn register_secrets(kc: &Kubeconfig) {
    use secrecy::ExposeSecret;
    for a in kc.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
        if let Some(t) = &a.token {
            redact::register(t.expose_secret());
        }
        if let Some(k) = &a.client_key_data {
            redact::register(k.expose_secret());
        }
        if let Some(p) = &a.password {
            redact::register(p.expose_secret());
        }
    }
}

/// Runs the exec credential plugin of the context's user once, under the deadline, and puts
/// the credential it returns in its place, so that kube-rs never runs the plugin itself.
async fn resolve_exec(
    kc: &mut Kubeconfig,
    context: Option<&str>,
    timeout: Duration,
) -> Result<(), KubeUnavailable> {
    register_secrets(kc);
    let Some(ctx_name) = context else {
        return Ok(());
    };
    let Some(user) = kc
        .contexts
        .iter()
        .find(|c| c.name == ctx_name)
        .and_then(|c| c.context.as_ref())
        .and_then(|c| c.user.clone())
    else {
        return Ok(());
    };
    let Some(info) = kc
        .auth_infos
        .iter_mut()
        .find(|a| a.name == user)
        .and_then(|a| a.auth_info.as_mut())
    else {
        return Ok(());
    };
    let Some(exec) = info.exec.clone() else {
        return Ok(());
    };
    let cred = run_exec_plugin(&exec, &user, timeout).await?;
    info.exec = None;
    if let Some(t) = cred.token {
        redact::register(&t);
        info.token = Some(t.into());
    }
    if let Some(c) = cred.client_certificate_data {
        info.client_certificate_data = Some(base64_pem(&c));
    }
    if let Some(k) = cred.client_key_data {
        redact::register(&k);
        info.client_key_data = Some(base64_pem(&k).into());
    }
    Ok(())
}

fn base64_pem(pem: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(pem)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ExecStatus {
    token: Option<String>,
    client_certificate_data: Option<String>,
    client_key_data: Option<String>,
}

#[derive(serde::Deserialize)]
struct ExecCredential {
    status: Option<ExecStatus>,
}

/// The command line of a plugin, for messages (`aws eks get-token`: the first two arguments).
fn plugin_words(exec: &kube::config::ExecConfig) -> String {
    let cmd = exec.command.clone().unwrap_or_default();
    let name = Path::new(&cmd)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or(cmd);
    let args: Vec<&str> = exec
        .args
        .iter()
        .flatten()
        .take_while(|a| !a.starts_with('-'))
        .take(2)
        .map(String::as_str)
        .collect();
    std::iter::once(name.as_str())
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run_exec_plugin(
    exec: &kube::config::ExecConfig,
    user: &str,
    timeout: Duration,
) -> Result<ExecStatus, KubeUnavailable> {
    let Some(cmd) = &exec.command else {
        return Err(fail(format!(
            "the kubeconfig user {user} has an exec plugin without a command"
        )));
    };
    let words = plugin_words(exec);
    let mut c = tokio::process::Command::new(cmd);
    c.args(exec.args.iter().flatten());
    for e in exec.env.iter().flatten() {
        if let (Some(n), Some(v)) = (e.get("name"), e.get("value")) {
            c.env(n, v);
        }
    }
    for e in exec.drop_env.iter().flatten() {
        c.env_remove(e);
    }
    let info = serde_json::json!({
        "apiVersion": exec.api_version.clone().unwrap_or_else(|| "client.authentication.k8s.io/v1".into()),
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    c.env("KUBERNETES_EXEC_INFO", info.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    c.process_group(0);
    let child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = if words.starts_with("aws") {
                ": install the AWS CLI v2 (https://docs.aws.amazon.com/cli/), or run msa-doctor where `aws eks update-kubeconfig` was run"
            } else if words.starts_with("gke-gcloud-auth-plugin") {
                ": gcloud components install gke-gcloud-auth-plugin"
            } else if words.starts_with("kubelogin") {
                ": install kubelogin (az aks install-cli)"
            } else {
                ""
            };
            return Err(fail(format!(
                "`{cmd}` is not installed (the kubeconfig user {user} runs `{words}` to get a token){hint}"
            )));
        }
        Err(e) => {
            return Err(fail(format!(
                "cannot run `{words}` for the kubeconfig user {user}: {e}"
            )));
        }
    };
    let pid = child.id();
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Err(fail(format!("`{words}` failed: {e}"))),
        Err(_) => {
            kill_group(pid);
            let hint = if words.starts_with("aws") {
                " is an SSO login or an MFA prompt waiting? Run `aws sso login` (or the command itself) in a terminal, then msa-doctor again"
            } else {
                " is it waiting for a login in a browser or a prompt? Run it in a terminal first"
            };
            return Err(fail(format!(
                "`{words}` (the kubeconfig's credential plugin for user {user}) did not answer in {}:{hint}",
                humantime::format_duration(timeout)
            )));
        }
    };
    if !out.status.success() {
        let err = redact::clean(String::from_utf8_lossy(&out.stderr).trim());
        return Err(fail(format!(
            "`{words}` (the kubeconfig's credential plugin for user {user}) failed ({}): {}",
            out.status,
            super::http::cut(&err, 300)
        )));
    }
    let cred: ExecCredential = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "`{words}` printed something that is not an ExecCredential: {e}"
        ))
    })?;
    let status = cred.status.unwrap_or_default();
    if status.token.is_none() && status.client_key_data.is_none() {
        return Err(fail(format!(
            "`{words}` returned an ExecCredential without a token or a client key"
        )));
    }
    Ok(status)
}

/// Kills a plugin's whole process group (it may have started children of its own).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(p) = pid.and_then(|p| i32::try_from(p).ok())
        && p > 0
    {
        // SAFETY: killpg with a process group id we created (process_group(0) makes the
        // child its group's leader); no memory is touched.
        unsafe {
            libc::killpg(p, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        src = s.source();
    }
    redact::clean(&text)
}

/// A kube-rs error as a call error: 401/403 are [`ErrorKind::Forbidden`], other API statuses
/// [`ErrorKind::Status`], no answer [`ErrorKind::Refused`] or [`ErrorKind::TimedOut`].
pub fn call_error(call: &str, e: &kube::Error, timeout: Duration) -> CallError {
    match e {
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => {
            CallError::new(call, ErrorKind::Forbidden(redact::clean(&s.message)))
        }
        kube::Error::Api(s) => CallError::new(
            call,
            ErrorKind::Status {
                status: s.code,
                excerpt: redact::clean(&s.message),
                html: false,
            },
        ),
        other => {
            let text = error_chain(other);
            let lower = text.to_ascii_lowercase();
            if lower.contains("length limit exceeded") {
                CallError::new(
                    call,
                    ErrorKind::TooLarge(format!(
                        "the answer is larger than {} MiB, the most msa-doctor reads of one answer, or the run's memory budget is spent",
                        super::http::MAX_BODY / (1024 * 1024)
                    )),
                )
            } else if lower.contains("timed out")
                || lower.contains("timeout")
                || lower.contains("elapsed")
            {
                CallError::new(call, ErrorKind::TimedOut(timeout))
            } else if lower.contains("error deserializing") || lower.contains("serde") {
                CallError::new(call, ErrorKind::Undecodable(text))
            } else {
                CallError::new(call, ErrorKind::Refused(text))
            }
        }
    }
}

type ListCell<T> = Arc<OnceCell<Result<Arc<Vec<T>>, CallError>>>;

/// Lists fetched once per run, by namespace. A list is asked with the run's per-call limit
/// (not with what the first asking check had left); each asker waits until its own deadline.
#[derive(Default)]
pub struct KubeMemo {
    /// The per-call limit of a list (`--timeout`); 5 s when unset.
    pub per_call: Option<Duration>,
    deployments: Mutex<HashMap<String, ListCell<Deployment>>>,
    statefulsets: Mutex<HashMap<String, ListCell<StatefulSet>>>,
    pods: Mutex<HashMap<String, ListCell<Pod>>>,
    services: Mutex<HashMap<String, ListCell<Service>>>,
}

async fn list_once<T>(
    cells: &Mutex<HashMap<String, ListCell<T>>>,
    client: &kube::Client,
    ns: &str,
    what: &str,
    (per_call, timeout): (Duration, Duration),
) -> Result<Arc<Vec<T>>, CallError>
where
    T: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    <T as kube::Resource>::DynamicType: Default,
{
    let cell = {
        let mut m = cells.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(ns.to_string()).or_default().clone()
    };
    let call = format!("list {what} in namespace {ns}");
    let init = cell.get_or_init(|| async {
        let api: Api<T> = Api::namespaced(client.clone(), ns);
        match tokio::time::timeout(per_call, api.list(&ListParams::default())).await {
            Ok(Ok(l)) => Ok(Arc::new(l.items)),
            Ok(Err(e)) => Err(call_error(&call, &e, per_call)),
            Err(_) => Err(CallError::new(call.clone(), ErrorKind::TimedOut(per_call))),
        }
    });
    match tokio::time::timeout(timeout, init).await {
        Ok(r) => r.clone(),
        Err(_) => Err(CallError::new(call.clone(), ErrorKind::TimedOut(timeout))),
    }
}

impl KubeMemo {
    /// Empty, with a per-call limit for its lists.
    pub fn with_limit(per_call: Duration) -> Self {
        KubeMemo {
            per_call: Some(per_call),
            ..KubeMemo::default()
        }
    }

    /// The per-call limit of a list, and the asker's own wait.
    fn limits(&self, t: Duration) -> (Duration, Duration) {
        (self.per_call.unwrap_or(Duration::from_secs(5)), t)
    }

    /// The Deployments of a namespace.
    pub async fn deployments(
        &self,
        c: &kube::Client,
        ns: &str,
        t: Duration,
    ) -> Result<Arc<Vec<Deployment>>, CallError> {
        list_once(&self.deployments, c, ns, "Deployments", self.limits(t)).await
    }

    /// The StatefulSets of a namespace.
    pub async fn statefulsets(
        &self,
        c: &kube::Client,
        ns: &str,
        t: Duration,
    ) -> Result<Arc<Vec<StatefulSet>>, CallError> {
        list_once(&self.statefulsets, c, ns, "StatefulSets", self.limits(t)).await
    }

    /// The pods of a namespace.
    pub async fn pods(
        &self,
        c: &kube::Client,
        ns: &str,
        t: Duration,
    ) -> Result<Arc<Vec<Pod>>, CallError> {
        list_once(&self.pods, c, ns, "pods", self.limits(t)).await
    }

    /// The Services of a namespace.
    pub async fn services(
        &self,
        c: &kube::Client,
        ns: &str,
        t: Duration,
    ) -> Result<Arc<Vec<Service>>, CallError> {
        list_once(&self.services, c, ns, "Services", self.limits(t)).await
    }
}

async fn bounded<T>(
    call: String,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(call_error(&call, &e, timeout)),
        Err(_) => Err(CallError::new(call, ErrorKind::TimedOut(timeout))),
    }
}

/// The API server's version (`/version`).
pub async fn version(
    client: &kube::Client,
    timeout: Duration,
) -> Result<k8s_openapi::apimachinery::pkg::version::Info, CallError> {
    bounded("GET /version".into(), timeout, client.apiserver_version()).await
}

/// One object of a namespaced kind, `None` when it does not exist.
pub async fn get_in<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<Option<K>, CallError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let kind = K::kind(&Default::default()).to_string();
    bounded(
        format!("get {kind} {ns}/{name}"),
        timeout,
        api.get_opt(name),
    )
    .await
}

/// One object of a cluster-wide kind (a Namespace), `None` when it does not exist.
pub async fn get_cluster<K>(
    client: &kube::Client,
    name: &str,
    timeout: Duration,
) -> Result<Option<K>, CallError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let kind = K::kind(&Default::default()).to_string();
    bounded(format!("get {kind} {name}"), timeout, api.get_opt(name)).await
}

/// Every object of a kind, in a namespace.
pub async fn list_in<K>(
    client: &kube::Client,
    ns: &str,
    timeout: Duration,
) -> Result<Vec<K>, CallError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let kind = K::plural(&Default::default()).to_string();
    bounded(
        format!("list {kind} in namespace {ns}"),
        timeout,
        api.list(&ListParams::default()),
    )
    .await
    .map(|l| l.items)
}

/// Every object of a kind, in every namespace (or cluster-wide).
pub async fn list_all<K>(client: &kube::Client, timeout: Duration) -> Result<Vec<K>, CallError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let kind = K::plural(&Default::default()).to_string();
    bounded(
        format!("list {kind} in every namespace"),
        timeout,
        api.list(&ListParams::default()),
    )
    .await
    .map(|l| l.items)
}

/// Every object of a custom kind (the Prometheus operator's), in every namespace.
pub async fn list_dynamic(
    client: &kube::Client,
    resource: &kube::discovery::ApiResource,
    timeout: Duration,
) -> Result<Vec<kube::api::DynamicObject>, CallError> {
    let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), resource);
    bounded(
        format!(
            "list {}.{} in every namespace",
            resource.plural, resource.group
        ),
        timeout,
        api.list(&ListParams::default()),
    )
    .await
    .map(|l| l.items)
}
