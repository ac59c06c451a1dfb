//! The Grafana end of the chain: `grafana.access` (the port-forward answers, as Grafana),
//! `grafana.login`, `grafana.default-password` and `grafana.datasource`.
//!
//! Facts recorded for the checks that need these: [`GrafanaSession`] (how to authenticate the
//! next calls; never printed) and [`Datasource`] (the Prometheus data source in use).

use super::{BuildError, cut, kube as kubeprobe, parse_args};
use crate::clients::grafana::Grafana;
use crate::clients::{Answer, CallError, ErrorKind, Lane};
use crate::engine::{CheckCtx, Outcome, Probe};
use crate::settings::GrafanaAuth;
use reqwest::Method;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

pub use crate::clients::grafana::GrafanaSession;

/// What `grafana.access` learnt of the server.
#[derive(Clone, Debug)]
pub struct GrafanaInfo {
    /// Its version, when `/api/health` shows it.
    pub version: Option<String>,
    /// The `Date` header of its answer, for clock checks.
    pub date: Option<std::time::SystemTime>,
}

/// The Prometheus data source the checks use.
#[derive(Clone, Debug)]
pub struct Datasource {
    /// Its uid (the proxy path uses it).
    pub uid: String,
    /// Its name.
    pub name: String,
    /// The URL Grafana's pod uses to reach Prometheus.
    pub url: String,
    /// Its plugin type.
    pub kind: String,
}

/// The bodies Grafana reads for a few decisions.
#[derive(Debug, Deserialize)]
struct Health {
    database: Option<String>,
    version: Option<String>,
}

/// Grafana at the run's URL, with a session or without.
fn grafana(cx: &CheckCtx, session: Option<Arc<GrafanaSession>>) -> Grafana {
    Grafana {
        transport: cx.clients.http.clone(),
        base: cx.settings.grafana_url.clone(),
        session,
        timeout: cx.timeout,
        // Each of these checks' calls is its own subject.
        lane: Lane::Critical,
        deadline: Some(cx.deadline),
    }
}

/// The reason of a call that got no answer, in the words the remedies test for
/// ("connection refused", "TLS error (...)", "no such host (...)").
fn no_answer(e: &CallError) -> String {
    match &e.kind {
        ErrorKind::Refused(s) => s.clone(),
        _ => e.reason(),
    }
}

fn url(cx: &CheckCtx, path: &str) -> String {
    format!("{}{}", cx.settings.grafana_url, path)
}

/// The local port of the Grafana URL, for the port-forward remedy.
fn local_port(cx: &CheckCtx) -> u16 {
    reqwest::Url::parse(&cx.settings.grafana_url)
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(3000)
}

fn is_local(cx: &CheckCtx) -> bool {
    reqwest::Url::parse(&cx.settings.grafana_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.to_string()))
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]" || h == "::1")
}

/// `kind = "grafana.access"`: Grafana answers at the URL, as Grafana.
#[derive(Debug)]
pub struct Access;

impl Access {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| Access)
    }
}

#[async_trait::async_trait]
impl Probe for Access {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let health_url = url(cx, "/api/health");
        let port = local_port(cx);
        let ns = &cx.settings.monitoring_namespace;
        let answer = grafana(cx, None)
            .send(Method::GET, "/api/health", None)
            .await;
        let a = match answer {
            Ok(a) => a,
            Err(e) => {
                let why = no_answer(&e);
                if matches!(e.kind, ErrorKind::TimedOut(_)) {
                    return Outcome::fail(format!(
                        "{} accepted the connection but did not answer within {}: a stuck port-forward or a hung Grafana",
                        cx.settings.grafana_url,
                        humantime::format_duration(cx.timeout)
                    ))
                    .evidence("url", &health_url)
                    .evidence("error", "timeout")
                    .remedy(format!(
                        "# stop the old tunnel (Ctrl-C in its terminal), then start it again:\nkubectl port-forward svc/grafana -n {ns} {port}:3000\n# if it still hangs, look at Grafana itself:\nkubectl -n {ns} get pods -l app.kubernetes.io/name=grafana\nkubectl -n {ns} logs deploy/grafana --tail=50"
                    ));
                }
                if why.starts_with("connection refused") && is_local(cx) {
                    return refused_with_cluster(cx, &health_url, port).await;
                }
                let mut o = Outcome::fail(format!(
                    "cannot reach Grafana at {}: {why}",
                    cx.settings.grafana_url
                ))
                .evidence("url", &health_url)
                .evidence("error", &why);
                if why.starts_with("TLS") {
                    o = o.remedy(format!(
                        "# a port-forward speaks plain HTTP: use http://, not https://\nmsa-doctor --grafana-url http://localhost:{port}"
                    ));
                } else if why.starts_with("connection refused") {
                    o = o.remedy(format!(
                        "# nothing listens at {}: check the URL, or use the tunnel of the guide\nkubectl port-forward svc/grafana -n {ns} 3000:3000\nmsa-doctor --grafana-url http://localhost:3000",
                        cx.settings.grafana_url
                    ));
                } else if why.starts_with("no such host") {
                    o = o.remedy(format!(
                        "# the host name does not resolve; the guide reaches Grafana through a tunnel on localhost\nkubectl port-forward svc/grafana -n {ns} 3000:3000\nmsa-doctor --grafana-url http://localhost:3000"
                    ));
                }
                return o;
            }
        };
        let date = a.date();
        let health: Option<Health> = serde_json::from_slice(&a.body).ok();
        match (a.status, health) {
            (200, Some(h)) if h.database.is_some() => {
                let version = h.version.clone();
                cx.facts.put(GrafanaInfo {
                    version: version.clone(),
                    date,
                });
                let v = version.map(|v| format!("Grafana {v}")).unwrap_or_else(|| "Grafana".into());
                Outcome::pass(format!("{v} answers at {}", cx.settings.grafana_url))
                    .evidence("url", &health_url)
            }
            (503, Some(h)) if h.database.is_some() => Outcome::fail(format!(
                "Grafana answers at {} but reports its database as {:?}",
                cx.settings.grafana_url,
                h.database.unwrap_or_default()
            ))
            .evidence("url", &health_url)
            .remedy(format!(
                "kubectl -n {ns} logs deploy/grafana --tail=100\n# a full disk or a broken PersistentVolume is the usual cause:\nkubectl -n {ns} describe pod -l app.kubernetes.io/name=grafana"
            )),
            (status, _) if status >= 500 => Outcome::fail(format!(
                "something answers at {} but fails: HTTP {status}{} (Grafana itself, or a proxy in front of it)",
                cx.settings.grafana_url,
                if a.is_html() { " with an HTML page" } else { "" }
            ))
            .evidence("url", &health_url)
            .evidence("status", status)
            .evidence("body", a.excerpt(200))
            .remedy(format!(
                "kubectl -n {ns} get pods -l app.kubernetes.io/name=grafana\nkubectl -n {ns} logs deploy/grafana --tail=100"
            )),
            (status, _) => {
                let what = if a.is_html() { "an HTML page" } else { "something that is not Grafana's /api/health JSON" };
                let other = port + 1;
                Outcome::fail(format!(
                    "port {port} is taken by another program: {} answered HTTP {status} with {what}",
                    cx.settings.grafana_url
                ))
                .evidence("url", &health_url)
                .evidence("status", status)
                .evidence("body", a.excerpt(200))
                .remedy(format!(
                    "# find the program that listens on port {port}:\nss -ltnp 'sport = :{port}'    # macOS: lsof -nP -iTCP:{port} -sTCP:LISTEN\n# stop it, or forward Grafana to another local port and point msa-doctor there:\nkubectl port-forward svc/grafana -n {ns} {other}:3000\nmsa-doctor --grafana-url http://localhost:{other}"
                ))
            }
        }
    }
}

/// Connection refused on localhost: the tunnel is down. Ask the cluster, when it answers, why.
async fn refused_with_cluster(cx: &CheckCtx, health_url: &str, port: u16) -> Outcome {
    let ns = cx.settings.monitoring_namespace.clone();
    let base = Outcome::fail(format!(
        "nothing listens at {}: connection refused, the kubectl port-forward is not running",
        cx.settings.grafana_url
    ))
    .evidence("url", health_url)
    .evidence("error", "connection refused");
    let default_remedy = format!(
        "kubectl port-forward svc/grafana -n {ns} {port}:3000\n# keep that terminal open while you use Grafana; it stops when the pod restarts"
    );
    let budget = (cx.timeout / 2).min(Duration::from_secs(3));
    let Ok(client) = tokio::time::timeout(budget, cx.kube()).await.unwrap_or(Err(
        crate::engine::KubeUnavailable {
            disabled: false,
            reason: "the cluster did not answer in time".into(),
        },
    )) else {
        return base.remedy(default_remedy);
    };
    match tokio::time::timeout(budget, kubeprobe::grafana_service(&client, &ns, budget)).await {
        Ok(Ok(info)) => {
            let svc = &info.name;
            let remote = info.port.unwrap_or(3000);
            let mut o = base
                .evidence("service", format!("svc/{svc} in {ns}"))
                .evidence("service_port", remote)
                .evidence("ready_endpoints", info.ready_endpoints);
            if info.ready_endpoints == 0 {
                o.message = format!(
                    "nothing listens at {} and svc/{svc} in {ns} has no ready endpoints: the Grafana pod is not running or not ready",
                    cx.settings.grafana_url
                );
                o.remedy(format!(
                    "kubectl -n {ns} get pods -l app.kubernetes.io/name=grafana\nkubectl -n {ns} describe pod -l app.kubernetes.io/name=grafana\nkubectl -n {ns} logs deploy/{svc} --tail=50\n# once the pod is Ready:\nkubectl port-forward svc/{svc} -n {ns} {port}:{remote}"
                ))
            } else {
                o.remedy(format!(
                    "kubectl port-forward svc/{svc} -n {ns} {port}:{remote}\n# keep that terminal open while you use Grafana; it stops when the pod restarts"
                ))
            }
        }
        Ok(Err(kubeprobe::ServiceLookup::Missing { others })) => {
            let mut o = base.evidence("grafana_services_elsewhere", &others);
            o.message = format!(
                "nothing listens at {} and there is no svc/grafana in namespace {ns}",
                cx.settings.grafana_url
            );
            match others.first() {
                Some((other_ns, other_name, other_port)) => o.remedy(format!(
                    "# Grafana's Service has another name or namespace here:\nkubectl port-forward svc/{other_name} -n {other_ns} {port}:{other_port}"
                )),
                None => o.remedy(format!(
                    "# Grafana is not installed: install it (the guide uses the Grafana Helm chart), then forward its port\nhelm repo add grafana https://grafana.github.io/helm-charts\nhelm install grafana grafana/grafana -n {ns} --create-namespace\nkubectl port-forward svc/grafana -n {ns} {port}:80"
                )),
            }
        }
        _ => base.remedy(default_remedy),
    }
}

/// Why a refused password is sent once per run, never again under `--wait`.
const LOCKOUT: &str =
    "a refused password is sent once, as Grafana locks an account after 5 failed logins";

/// `kind = "grafana.login"`: the credentials (or token) are accepted.
#[derive(Debug)]
pub struct Login;

impl Login {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| Login)
    }
}

fn not_grafana(a: &Answer, what: &str) -> Outcome {
    Outcome::error(format!(
        "{what} answered HTTP {} with {}, not a Grafana answer",
        a.status,
        if a.is_html() {
            "an HTML page".to_string()
        } else {
            format!("{:?}", a.excerpt(120))
        }
    ))
    .evidence("status", a.status)
}

fn password_remedy(ns: &str, defaulted: bool, secret: &str, deploy: &str) -> String {
    let first = if defaulted {
        "# msa-doctor tried the guide's default admin/admin; give it the real password:\n"
    } else {
        "# the password given to msa-doctor is refused; read the one the Helm chart set:\n"
    };
    format!(
        "{first}kubectl get secret -n {ns} {secret} -o jsonpath='{{.data.admin-password}}' | base64 -d; echo\nexport GRAFANA_PASSWORD='<that password>'    # or --grafana-password-file FILE\n# or reset it:\nkubectl -n {ns} exec deploy/{deploy} -- grafana cli admin reset-admin-password '<new password>'"
    )
}

/// The Secret that holds Grafana's admin password (a key `admin-password`), and the
/// Deployment that runs Grafana, when the cluster answers: charts name them after the release
/// (`kube-prometheus-stack-grafana`). Only names are read back, never a value.
async fn grafana_secret(cx: &CheckCtx) -> (String, String) {
    use k8s_openapi::api::core::v1::Secret;
    let fallback = ("grafana".to_string(), "grafana".to_string());
    let budget = (cx.timeout / 3).min(Duration::from_secs(2));
    let Ok(Ok(client)) = tokio::time::timeout(budget, cx.kube()).await else {
        return fallback;
    };
    let ns = &cx.settings.monitoring_namespace;
    let (s, d) = tokio::join!(
        crate::clients::kube::list_in::<Secret>(&client, ns, budget),
        cx.clients.kube_memo.deployments(&client, ns, budget)
    );
    let secret = s
        .ok()
        .and_then(|l| {
            l.into_iter()
                .find(|x| {
                    x.data
                        .as_ref()
                        .is_some_and(|d| d.contains_key("admin-password"))
                })
                .and_then(|x| x.metadata.name)
        })
        .unwrap_or(fallback.0);
    let deploy = d
        .ok()
        .and_then(|l| {
            l.iter()
                .filter_map(|x| x.metadata.name.clone())
                .find(|n| n.contains("grafana") && !n.contains("operator"))
        })
        .unwrap_or(fallback.1);
    (secret, deploy)
}

#[async_trait::async_trait]
impl Probe for Login {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let ns = &cx.settings.monitoring_namespace;
        match &cx.settings.grafana_auth {
            GrafanaAuth::Token(token) => {
                let Some(session) = GrafanaSession::bearer(token.expose()) else {
                    return Outcome::fail(
                        "the Grafana token holds characters that cannot be sent in a header",
                    )
                    .remedy(
                        "export GRAFANA_TOKEN=glsa_...    # the token exactly as Grafana showed it",
                    );
                };
                let session = Arc::new(session);
                let answer = grafana(cx, Some(session.clone()))
                    .send(Method::GET, "/api/org", None)
                    .await;
                match answer {
                    Ok(a) if a.status == 200 && a.json().is_some() => {
                        cx.facts.put((*session).clone());
                        Outcome::pass("the service-account token is accepted").evidence("auth", "token")
                    }
                    Ok(a) if a.status == 401 || a.status == 403 => Outcome::fail(format!(
                        "Grafana refused the service-account token: HTTP {} {}",
                        a.status,
                        a.message().unwrap_or_default()
                    ))
                    .evidence("auth", "token")
                    .remedy(format!(
                        "# create a new token: Administration > Users and access > Service accounts > Add service account token\n# (role Admin, or Viewer plus data source query rights), then\nexport GRAFANA_TOKEN='glsa_...'\n# or drop the token and use the admin password:\nunset GRAFANA_TOKEN; kubectl get secret -n {ns} grafana -o jsonpath='{{.data.admin-password}}' | base64 -d"
                    )),
                    Ok(a) => not_grafana(&a, "GET /api/org"),
                    Err(e) => Outcome::error(e.to_string()),
                }
            }
            GrafanaAuth::Password {
                user,
                password,
                defaulted,
            } => {
                let body = serde_json::json!({"user": user, "password": password.expose()});
                let a = match grafana(cx, None)
                    .send(Method::POST, "/login", Some(&body))
                    .await
                {
                    Ok(a) => a,
                    Err(e) => return Outcome::error(e.to_string()),
                };
                match a.status {
                    200 => {
                        // No session cookie (an auth proxy, a renamed cookie): basic auth works on
                        // every API path.
                        let session = GrafanaSession::from_login(&a)
                            .or_else(|| GrafanaSession::basic(user, password.expose()));
                        match session {
                            Some(s) => {
                                cx.facts.put(s);
                                Outcome::pass(format!("logged in to Grafana as {user}"))
                                    .evidence("user", user)
                            }
                            None => Outcome::error(
                                "Grafana accepted the login but gave no usable session",
                            ),
                        }
                    }
                    400 | 401 if a.json().is_some() => {
                        let msg = a.message().unwrap_or_default();
                        let id = a
                            .json()
                            .and_then(|j| {
                                j.get("messageId")
                                    .and_then(|m| m.as_str())
                                    .map(str::to_string)
                            })
                            .unwrap_or_default();
                        if id == "login-attempt.blocked" {
                            return Outcome::fail(format!("Grafana blocks logins for {user} after too many failed attempts"))
                                .no_retry(LOCKOUT)
                                .evidence("user", user)
                                .remedy("# wait 5 minutes before trying again, then give the right password:\nexport GRAFANA_PASSWORD='<password>'");
                        }
                        Outcome::fail(format!(
                            "Grafana refused user {user}: HTTP {} {msg}",
                            a.status
                        ))
                        .no_retry(LOCKOUT)
                        .evidence("user", user)
                        .evidence("default_password_tried", *defaulted)
                        .remedy({
                            let (secret, deploy) = grafana_secret(cx).await;
                            password_remedy(ns, *defaulted, &secret, &deploy)
                        })
                    }
                    _ => not_grafana(&a, "POST /login"),
                }
            }
        }
    }
}

/// `kind = "grafana.default-password"`: warns while admin/admin still logs in.
#[derive(Debug)]
pub struct DefaultPassword;

impl DefaultPassword {
    /// Takes no args.
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        super::no_args(args).map(|_| DefaultPassword)
    }
}

#[async_trait::async_trait]
impl Probe for DefaultPassword {
    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let ns = &cx.settings.monitoring_namespace;
        let body = serde_json::json!({"user": "admin", "password": "admin"});
        match grafana(cx, None).send(Method::POST, "/login", Some(&body)).await {
            Ok(a) if a.status == 200 => Outcome::fail(
                "admin/admin still logs in to Grafana: anyone who reaches the port can change every dashboard",
            )
            .remedy(format!(
                "kubectl -n {ns} exec deploy/grafana -- grafana cli admin reset-admin-password '<new password>'\n# and keep it in the chart's values so an upgrade does not bring admin/admin back:\n#   adminPassword: <new password>   (or admin.existingSecret)\nexport GRAFANA_PASSWORD='<new password>'"
            )),
            Ok(a) if (a.status == 401 || a.status == 400) && a.json().is_some() => {
                Outcome::pass("the default admin/admin password is refused")
            }
            Ok(a) => not_grafana(&a, "POST /login"),
            Err(e) => Outcome::error(e.to_string()),
        }
    }
}

/// `kind = "grafana.datasource"`: a Prometheus data source exists and its health test passes.
#[derive(Debug)]
pub struct DatasourceCheck {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatasourceArgs {
    /// Use the data source with this name rather than the default one.
    name: Option<String>,
}

impl DatasourceCheck {
    /// From `args = { name = "Prometheus" }` (optional).
    pub fn from_args(args: &toml::Table) -> Result<Self, BuildError> {
        let a: DatasourceArgs = parse_args(args)?;
        Ok(DatasourceCheck { name: a.name })
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct DsItem {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    is_default: bool,
    #[serde(default)]
    access: String,
}

/// Data source plugin types that speak the Prometheus API.
const PROM_TYPES: &[&str] = &[
    "prometheus",
    "victoriametrics-datasource",
    "victoriametrics-metrics-datasource",
];

/// The in-cluster URL of Prometheus to suggest.
async fn prometheus_service_url(cx: &CheckCtx) -> String {
    let ns = &cx.settings.monitoring_namespace;
    let fallback = format!("http://prometheus.{ns}.svc.cluster.local:9090");
    let budget = (cx.timeout / 3).min(Duration::from_secs(2));
    let Ok(Ok(client)) = tokio::time::timeout(budget, cx.kube()).await else {
        return fallback;
    };
    match tokio::time::timeout(
        budget,
        kubeprobe::prometheus_service(&cx.clients.kube_memo, &client, ns, budget),
    )
    .await
    {
        Ok(Some(u)) => u,
        _ => fallback,
    }
}

fn provisioning_yaml(ns: &str, url: &str) -> String {
    format!(
        "cat <<'EOF' | kubectl apply -f -\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: grafana-datasources\n  namespace: {ns}\n  labels:\n    grafana_datasource: \"1\"\ndata:\n  prometheus.yaml: |\n    apiVersion: 1\n    datasources:\n      - name: Prometheus\n        type: prometheus\n        uid: prometheus\n        access: proxy\n        url: {url}\n        isDefault: true\n        jsonData:\n          httpMethod: POST\nEOF\nkubectl -n {ns} rollout restart deploy/grafana\n# without the chart's sidecar, mount it at /etc/grafana/provisioning/datasources/"
    )
}

#[async_trait::async_trait]
impl Probe for DatasourceCheck {
    fn eager(&self) -> bool {
        true
    }

    async fn run(&self, cx: &CheckCtx) -> Outcome {
        let session = cx.facts.wait::<GrafanaSession>().await;
        let ns = &cx.settings.monitoring_namespace;
        let g = grafana(cx, Some(session));
        let a = match g.send(Method::GET, "/api/datasources", None).await {
            Ok(a) => a,
            Err(e) => return Outcome::error(e.to_string()),
        };
        if a.status == 403 {
            return Outcome::error(format!(
                "this Grafana user may not read data sources (HTTP 403: {})",
                a.message().unwrap_or_default()
            ))
            .remedy("# log in as an Admin (GRAFANA_USER/GRAFANA_PASSWORD) or use a service-account token with the Admin role:\nexport GRAFANA_TOKEN='glsa_...'");
        }
        let list: Vec<DsItem> = match (a.status, serde_json::from_slice::<Vec<DsItem>>(&a.body)) {
            (200, Ok(l)) => l,
            _ => return not_grafana(&a, "GET /api/datasources"),
        };
        let all: Vec<String> = list
            .iter()
            .map(|d| format!("{} ({})", d.name, d.kind))
            .collect();
        let proms: Vec<&DsItem> = list
            .iter()
            .filter(|d| PROM_TYPES.contains(&d.kind.as_str()))
            .collect();
        if proms.is_empty() {
            let url = prometheus_service_url(cx).await;
            let seen = if all.is_empty() {
                "none at all".to_string()
            } else {
                all.join(", ")
            };
            return Outcome::fail(format!(
                "Grafana has no Prometheus data source (data sources: {seen})"
            ))
            .evidence("datasources", &all)
            .remedy(provisioning_yaml(ns, &url));
        }
        let chosen: &DsItem = match &self.name {
            Some(n) => match proms.iter().find(|d| &d.name == n) {
                Some(d) => d,
                None => {
                    return Outcome::fail(format!(
                        "no Prometheus data source is named {n:?} (there are: {})",
                        proms
                            .iter()
                            .map(|d| d.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .evidence("datasources", &all);
                }
            },
            None => proms
                .iter()
                .find(|d| d.is_default)
                .or_else(|| proms.iter().find(|d| d.name == "Prometheus"))
                .unwrap_or(&proms[0]),
        };
        let several = if proms.len() > 1 {
            format!(
                " ({} Prometheus data sources; the checks use {:?}{})",
                proms.len(),
                chosen.name,
                if chosen.is_default {
                    ", the default"
                } else {
                    ""
                }
            )
        } else {
            String::new()
        };
        let ds = Datasource {
            uid: chosen.uid.clone(),
            name: chosen.name.clone(),
            url: chosen.url.clone(),
            kind: chosen.kind.clone(),
        };
        // The checks downstream may start on it now; they are stopped if the test fails.
        cx.facts.put(ds.clone());
        let health_path = format!("/api/datasources/uid/{}/health", chosen.uid);
        let a = match g.send(Method::GET, &health_path, None).await {
            Ok(a) => a,
            Err(e) => return Outcome::error(e.to_string()).evidence("datasource", &chosen.name),
        };
        let body = a.json();
        let status = body
            .as_ref()
            .and_then(|b| b.get("status"))
            .and_then(|s| s.as_str())
            .unwrap_or("");
        let message = a.message().unwrap_or_default();
        let base = |o: Outcome| {
            o.evidence("datasource", &chosen.name)
                .evidence("uid", &chosen.uid)
                .evidence("url", &chosen.url)
                .evidence("access", &chosen.access)
                .evidence("datasources", &all)
        };
        if a.status == 200 && status == "OK" {
            return base(Outcome::pass(format!(
                "data source {:?} works: {message}{several}",
                chosen.name
            )));
        }
        if a.status == 404 && status.is_empty() {
            // Grafana 9.0-9.3 has no backend health check for Prometheus: the proxy tells instead.
            return base(Outcome::pass(format!(
                "data source {:?} exists (this Grafana has no health endpoint for it; Prometheus is tested through its proxy next){several}",
                chosen.name
            )));
        }
        if status != "ERROR" {
            return base(not_grafana(&a, &format!("GET {health_path}")));
        }
        let good_url = prometheus_service_url(cx).await;
        let ds_url = chosen.url.trim_end_matches('/');
        let lower = message.to_ascii_lowercase();
        let host = reqwest::Url::parse(ds_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default();
        let edit = format!(
            "# Grafana > Connections > Data sources > {} > URL, then Save & test; or in the provisioning ConfigMap:\n",
            chosen.name
        );
        let (why, remedy) = if host == "localhost" || host.starts_with("127.") || host == "::1" {
            (
                format!(
                    "its URL {ds_url} points at localhost, which inside Grafana's pod is the pod itself"
                ),
                format!("{edit}#   url: {good_url}"),
            )
        } else if lower.contains("connection refused") {
            (
                format!("nothing listens at {ds_url} (connection refused)"),
                format!(
                    "kubectl get svc -A | grep -i prometheus    # the Service and its port\n{edit}#   url: {good_url}"
                ),
            )
        } else if lower.contains("no such host") || lower.contains("server misbehaving") {
            (
                format!("the host {host:?} does not resolve inside the cluster"),
                format!(
                    "kubectl get svc -A | grep -i prometheus    # the real Service name\n{edit}#   url: {good_url}"
                ),
            )
        } else if lower.contains("timeout") || lower.contains("deadline exceeded") {
            (
                format!(
                    "{ds_url} did not answer in time (a NetworkPolicy, a wrong port, or Prometheus overloaded)"
                ),
                format!(
                    "kubectl get networkpolicy -n {ns}\nkubectl -n {ns} get pods -l app.kubernetes.io/name=prometheus\n{edit}#   url: {good_url}"
                ),
            )
        } else if lower.starts_with("401")
            || lower.contains("unauthorized")
            || lower.starts_with("403")
        {
            (
                format!("Prometheus at {ds_url} asks for credentials"),
                format!(
                    "{edit}# enable Basic auth (or a bearer header) in the data source with Prometheus's credentials"
                ),
            )
        } else if lower.starts_with("404") {
            (
                format!(
                    "{ds_url} has no /api/v1/query: Prometheus serves under a path prefix (--web.route-prefix), or it is not Prometheus"
                ),
                format!(
                    "{edit}#   url: {ds_url}/prometheus    # add the prefix Prometheus was started with"
                ),
            )
        } else {
            (
                format!("the health test says: {}", cut(&message, 200)),
                format!("{edit}#   url: {good_url}"),
            )
        };
        base(
            Outcome::fail(format!("data source {:?} is broken: {why}", chosen.name))
                .evidence("grafana_said", cut(&message, 300))
                .remedy(remedy),
        )
    }
}
